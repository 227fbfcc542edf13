"""A file's version: what changes whenever the file is edited or replaced."""

from __future__ import annotations

import os
from typing import NamedTuple


class FileVersion(NamedTuple):
    """A file's (device, inode, size, mtime, ctime): equal versions mean the same bytes.

    The change time is there because a program may rewrite a file in place to the same
    size and set its modification time back (``cp -p``, ``rsync --inplace -t``); it
    cannot set the change time.

    A caller holding a ``stat`` result it made anyway gets the version for free; caches
    keyed by it (content verdicts, renditions) never serve what an old file said. A
    named tuple, because one is made on every request and tuples are the cheapest
    immutable, hashable records Python has.
    """

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int = 0

    @classmethod
    def of(cls, st: os.stat_result) -> FileVersion:
        """The version described by a ``stat`` result."""
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
