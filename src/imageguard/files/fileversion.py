"""A file's version: what changes whenever the file is edited or replaced.

Every cache that must notice a changed file (content verdicts, renditions, decoded
sessions, the secret file, the ACL store and its change stamp) compares the one
validator defined here, :func:`validator`: the file's (device, inode, size,
modification time, change time). :class:`FileVersion` is the same five numbers with
names, for the callers that read them (rendition names).
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO, NamedTuple

from ..errors import FileChanged

#: A file's (device, inode, size, mtime_ns, ctime_ns): see :func:`validator`.
Validator = tuple[int, int, int, int, int]


def validator(st: os.stat_result) -> Validator:
    """What changes whenever the file *st* describes is edited or replaced.

    The device and inode change when the file is replaced (a rename over it); the size
    and modification time when it is written. The change time is there because a
    program may rewrite a file in place to the same size and set its modification time
    back (``cp -p``, ``rsync --inplace -t``); it cannot set the change time. A plain
    tuple (about 80 ns), so that the per-request checks of sessions, secrets and the
    ACL store's change stamp cost no more than the ``stat`` they follow.
    """
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def stat_validator(path: str) -> Validator | None:
    """The :func:`validator` of the file at *path* (links followed), or ``None`` when
    there is no such file (nor folder on the way); other :class:`OSError` propagate."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class FileVersion(NamedTuple):
    """A file's :func:`validator` with names: equal versions mean the same bytes (and a
    version equals the plain validator tuple of the same ``stat``).

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
        # tuple.__new__ directly: a third cheaper than the named tuple's own __new__.
        return _tuple_new(cls, validator(st))


_tuple_new = tuple.__new__


#: How a checked file is opened: read-only; the last name not followed (a link put there
#: since the check fails to open); a FIFO put there cannot stall the open; not inherited
#: by programs Apache starts.
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_GONE = (errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.ENXIO)


def open_version(path: str, version: FileVersion) -> int:
    """A read-only descriptor of *path*, if it is still the regular file at *version*.

    The descriptor is what the caller reads or hands on, so whatever happens to the
    name afterwards, the bytes are those of the file that was checked: the open file's
    own ``fstat`` must match *version* (device, inode, size and times), so a file
    swapped for another, or for a link to one, between the check and this open is
    refused. Raises :class:`~imageguard.errors.FileChanged` when the file is not that
    version any more (or gone, or now a link), :class:`OSError` when it cannot be
    opened at all (permissions). The caller closes the descriptor.
    """
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError as exc:
        if exc.errno in _GONE:
            raise FileChanged(f"{path} changed since it was checked: {exc.strerror}") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or FileVersion.of(st) != version:
            raise FileChanged(f"{path} changed since it was checked")
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_file(path: str, version: FileVersion | None = None, fd: int = -1) -> BinaryIO:
    """The file to read: a copy of *fd* (an open descriptor of that very file, already
    bound to its name), rewound; else *path* opened as :func:`open_version` opens it (or,
    without a *version* to hold it to, with the same flags and no check)."""
    if fd >= 0:
        handle = os.fdopen(os.dup(fd), "rb")
        handle.seek(0)
        return handle
    opened = os.open(path, OPEN_FLAGS) if version is None else open_version(path, version)
    return os.fdopen(opened, "rb")
