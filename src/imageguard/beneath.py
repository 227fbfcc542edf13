"""Opening a file below a directory without following any symbolic link on the way.

A path checked by name and opened by name is looked up twice, and anything that can
rename in between (a file or a folder swapped for a link) changes what the second look
finds. :func:`open_beneath` opens a path relative to a directory so that no link is
followed at all, the last name included, and nothing outside the directory is reached:

* with Linux's ``openat2()`` and ``RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH`` (Linux 5.6
  and later): one system call, the kernel refusing any link on the way;
* elsewhere (an older kernel, a seccomp filter that refuses the call), folder by folder
  with ``openat()``, each folder opened inside the one opened before it with
  ``O_NOFOLLOW``: the same guarantee, one call a folder.

Folders are opened with ``O_PATH``: like Apache, this needs a folder's search
permission, not its read permission.
"""

from __future__ import annotations

import ctypes
import errno
import os

#: Folders are opened only to look names up in them.
FOLDER_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC

_SYS_OPENAT2 = 437  # the same number on every architecture (new system calls share one)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
#: Names that would not be a plain step down ("a//b", "./a", "a/../b", an absolute path).
_STRAY_NAMES = frozenset({"", ".", ".."})
#: What says "no openat2 here": not in this kernel, or refused by a seccomp filter.
_UNAVAILABLE = frozenset({errno.ENOSYS, errno.EPERM})


class _OpenHow(ctypes.Structure):
    """``struct open_how`` of ``openat2()``."""

    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


def _load_syscall() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    # PyDLL: the call keeps Python's lock, as a system call this short should; under a
    # threaded MPM, releasing it hands the interpreter to another thread and waits to
    # get it back, which costs more than the call.
    try:
        function = ctypes.PyDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_long
    function.argtypes = (
        ctypes.c_long,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_void_p,
        ctypes.c_size_t,
    )
    return function


_syscall = _load_syscall()
_hows: dict[int, _OpenHow] = {}


def open_folder(path: str) -> int:
    """A descriptor of the folder *path* (links followed) to open names below it."""
    return os.open(path, FOLDER_FLAGS)


def open_beneath(top: int, relpath: str, flags: int) -> int:
    """A descriptor of *relpath* (``a/b/c.jpg``) below the folder open as *top*
    (:func:`open_folder`), opened with *flags*, no symbolic link followed on the way.

    Raises :class:`OSError`: ``ELOOP`` (or ``ENOTDIR``, ``EXDEV``) where a link, a file
    in place of a folder, or a name other than a plain step down (``..``, ``.``, an
    empty one) was met, ``ENOENT`` for a name that is not there, ``EACCES`` for a
    permission refused. *top* itself may have been reached through links (it is
    configuration, not something an uploader names).
    """
    if _STRAY_NAMES.intersection(relpath.split("/")):
        raise OSError(errno.EXDEV, "a path that is not plain names below its directory", relpath)
    if _syscall is not None:
        fd = _openat2(top, relpath, flags)
        if fd is not None:
            return fd
    return _open_folder_by_folder(top, relpath, flags)


def _openat2(top: int, relpath: str, flags: int) -> int | None:
    """The descriptor ``openat2()`` gives, or None when this system has no openat2."""
    global _syscall
    how = _hows.get(flags)
    if how is None:
        how = _hows[flags] = _OpenHow(
            flags | os.O_NOFOLLOW,
            0,
            _RESOLVE_NO_SYMLINKS | _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS,
        )
    assert _syscall is not None
    fd = int(
        _syscall(_SYS_OPENAT2, top, os.fsencode(relpath), ctypes.byref(how), ctypes.sizeof(how))
    )
    if fd >= 0:
        return fd
    error = ctypes.get_errno()
    if error in _UNAVAILABLE:
        _syscall = None  # from now on, folder by folder
        return None
    raise OSError(error, os.strerror(error), relpath)


def _open_folder_by_folder(top: int, relpath: str, flags: int) -> int:
    *folders, name = relpath.split("/")
    current = top
    try:
        for folder in folders:
            inner = os.open(folder, FOLDER_FLAGS | os.O_NOFOLLOW, dir_fd=current)
            if current != top:
                os.close(current)
            current = inner
        return os.open(name, flags | os.O_NOFOLLOW, dir_fd=current)
    finally:
        if current != top:
            os.close(current)
