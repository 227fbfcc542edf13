"""``stat``, ``fstat`` and ``close`` that keep Python's lock: the request path's system calls.

Python's ``os.stat``, ``os.fstat`` and ``os.close`` release the interpreter's lock
around the system call, so that other threads can run while it waits. For a call that
takes a microsecond that is a loss under Apache's threaded MPM: mod_python runs
requests on many threads of one process, they queue for the lock, and every release
hands it to a waiting thread and puts this one to sleep until it gets the lock back,
two context switches for nothing. Measured with ``strace -f -c`` under the benchmark's
load (mpm_event, 16 connections), the one-phase gatekeeper made 54 ``futex`` calls a
request when it used the ``os`` functions, against 9 for a trivial handler.

The functions here call the C library through :class:`ctypes.PyDLL`, which keeps the
lock, as :mod:`imageguard.files.beneath` does for ``openat2()``. ``stat`` is Linux's
``statx()`` (glibc 2.28 and later), whose structure is the same on every architecture.
Where it is missing or refused (an old C library, a seccomp filter), they fall back to
the ``os`` functions for good, with the same results. The price: a file system that
stalls a ``stat`` (a hung network mount) stalls the child's other Python threads too.

They return what the request path compares: a file's
:data:`~imageguard.files.fileversion.Validator` and its mode, exactly as ``os.stat`` would
give them (the unit tests compare the two).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

#: A file's (device, inode, size, mtime_ns, ctime_ns), as :func:`.fileversion.validator`.
Validator = tuple[int, int, int, int, int]

_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_AT_SYMLINK_NOFOLLOW = 0x100
# STATX_TYPE | STATX_MODE | STATX_INO | STATX_SIZE | STATX_MTIME | STATX_CTIME
_WANTED = 0x001 | 0x002 | 0x100 | 0x200 | 0x040 | 0x080
#: ``struct statx`` is 256 bytes; a fresh buffer per call, as threads share this module.
_Buffer = ctypes.c_char * 256
# struct statx: the mask, the mode, the inode, the size, the change and modification
# times (seconds, nanoseconds) and the device (major, minor), skipping everything else.
_FIELDS = struct.Struct("=I24xH2xQQ48xqI4xqI4x8xII")


def _load() -> tuple[ctypes._CFuncPtr | None, ctypes._CFuncPtr | None]:  # type: ignore[name-defined]
    try:
        libc = ctypes.PyDLL(None, use_errno=True)
        statx, close = libc.statx, libc.close
    except (OSError, AttributeError):
        return None, None
    # Plain ints, bytes and a buffer need no argtypes (whose conversions cost a tenth of
    # the call): int statx(int, const char *, int, unsigned, struct statx *), int close(int).
    statx.restype = close.restype = ctypes.c_int
    return statx, close


_statx, _close = _load()
_makedev = os.makedev


def _from_os(st: os.stat_result) -> tuple[Validator, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns), st.st_mode


def _call(dirfd: int, path: bytes, flags: int, shown: str | int) -> tuple[Validator, int] | None:
    """``statx()``'s answer; None when this system has no usable ``statx()``."""
    global _statx
    call = _statx
    if call is None:
        return None
    buffer = _Buffer()
    if call(dirfd, path, flags, _WANTED, buffer) != 0:
        error = ctypes.get_errno()
        if error in (errno.ENOSYS, errno.EPERM):  # no statx here, or a filter refusing it
            _statx = None
            return None
        raise OSError(error, os.strerror(error), shown)
    mask, mode, ino, size, c_s, c_ns, m_s, m_ns, major, minor = _FIELDS.unpack_from(buffer)
    if mask & _WANTED != _WANTED:  # a file system that cannot tell them: ask os.stat
        return None
    mtime_ns = m_s * 1_000_000_000 + m_ns
    return (_makedev(major, minor), ino, size, mtime_ns, c_s * 1_000_000_000 + c_ns), mode


def stat(path: str, *, follow: bool = True) -> tuple[Validator, int]:
    """The validator and mode of the file at *path* (links followed unless *follow* is
    false); :class:`OSError` as ``os.stat`` raises it (FileNotFoundError, ...)."""
    found = _call(_AT_FDCWD, os.fsencode(path), 0 if follow else _AT_SYMLINK_NOFOLLOW, path)
    if found is not None:
        return found
    return _from_os(os.stat(path) if follow else os.lstat(path))


def fstat(fd: int) -> tuple[Validator, int]:
    """The validator and mode of the open file *fd*; :class:`OSError` as ``os.fstat``."""
    found = _call(fd, b"", _AT_EMPTY_PATH, fd)
    if found is not None:
        return found
    return _from_os(os.fstat(fd))


def close(fd: int) -> None:
    """Close *fd*; :class:`OSError` as ``os.close`` raises it."""
    call = _close
    if call is None:
        os.close(fd)
        return
    if call(fd) != 0:
        error = ctypes.get_errno()
        if error != errno.EINTR:  # on Linux the descriptor is closed even then
            raise OSError(error, os.strerror(error))
