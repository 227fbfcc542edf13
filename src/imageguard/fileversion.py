"""A file's version: what changes whenever the file is edited or replaced."""

from __future__ import annotations

import os
from typing import NamedTuple


class FileVersion(NamedTuple):
    """A file's (device, inode, size, mtime): equal versions mean the same bytes.

    A caller holding a ``stat`` result it made anyway gets the version for free; caches
    keyed by it (content verdicts, renditions) never serve what an old file said. A
    named tuple, because one is made on every request and tuples are the cheapest
    immutable, hashable records Python has.
    """

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileVersion:
        """The version described by a ``stat`` result."""
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
