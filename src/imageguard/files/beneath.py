"""Opening a file below a directory without following any symbolic link on the way.

A path checked by name and opened by name is looked up twice, and anything that can
rename in between (a file or a folder swapped for a link) changes what the second look
finds. :func:`open_beneath` opens a path below a directory so that no link is followed
at all, the last name included, and nothing outside the directory is reached:

* with Linux's ``openat2()`` and ``RESOLVE_NO_SYMLINKS`` (Linux 5.6 and later): one
  system call on the whole path, the kernel refusing any link on the way. The directory
  must therefore be given by its real path (no link in it either), as imageguard's
  gate keeps its root;
* elsewhere (an older kernel, a seccomp filter that refuses the call), folder by folder
  with ``openat()``, each folder opened inside the one opened before it with
  ``O_NOFOLLOW``: the same guarantee below the directory, one call a folder.

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
_AT_FDCWD = -100
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
#: Names that would not be a plain step down ("a//b", "./a", "a/../b", an absolute path).
_STRAY_NAMES = frozenset({"", ".", ".."})


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
    # get it back, which costs more than the call. (A tree on a network file system that
    # stalls an open stalls the child's other Python threads for as long.)
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
#: flags -> (the open_how for them, a pointer to it, its size): made once per flags.
_hows: dict[int, tuple[_OpenHow, object, int]] = {}


def open_beneath(directory: str, relpath: str, flags: int) -> int:
    """A descriptor of *relpath* (``a/b/c.jpg``) below *directory* (its real path),
    opened with *flags*, no symbolic link followed on the way.

    Raises :class:`OSError`: ``ELOOP`` (or ``ENOTDIR``, ``EXDEV``) where a link, a file
    in place of a folder, or a name other than a plain step down (``..``, ``.``, an
    empty one) was met, ``ENOENT`` for a name that is not there, ``EACCES`` for a
    permission refused.
    """
    if _STRAY_NAMES.intersection(relpath.split("/")):
        raise OSError(errno.EXDEV, "a path that is not plain names below its directory", relpath)
    call = _syscall  # read once: another thread may find openat2 missing meanwhile
    if call is not None:
        fd = _openat2(call, f"{directory.rstrip('/')}/{relpath}", flags)
        if fd is not None:
            return fd
    return _open_folder_by_folder(directory, relpath, flags)


def _openat2(call: ctypes._CFuncPtr, path: str, flags: int) -> int | None:  # type: ignore[name-defined]
    """The descriptor ``openat2()`` gives for *path*, or None when this system turns out
    to have no usable openat2 (from then on, every open goes folder by folder)."""
    global _syscall
    made = _hows.get(flags)
    if made is None:
        how = _OpenHow(flags | os.O_NOFOLLOW, 0, _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS)
        made = _hows[flags] = (how, ctypes.pointer(how), ctypes.sizeof(how))
    fd = int(call(_SYS_OPENAT2, _AT_FDCWD, os.fsencode(path), made[1], made[2]))
    if fd >= 0:
        return fd
    error = ctypes.get_errno()
    if error == errno.ENOSYS or (error == errno.EPERM and not _works(call)):
        _syscall = None
        return None
    raise OSError(error, os.strerror(error), path)


def _works(call: ctypes._CFuncPtr) -> bool:  # type: ignore[name-defined]
    """True when ``openat2()`` opens ``/`` here: an EPERM was then about one file (an
    antivirus, a FUSE file system), not a seccomp filter refusing the call itself."""
    how = _OpenHow(FOLDER_FLAGS, 0, _RESOLVE_NO_SYMLINKS)
    fd = int(call(_SYS_OPENAT2, _AT_FDCWD, b"/", ctypes.byref(how), ctypes.sizeof(how)))
    if fd < 0:
        return False
    os.close(fd)
    return True


def _open_folder_by_folder(directory: str, relpath: str, flags: int) -> int:
    *folders, name = relpath.split("/")
    current = os.open(directory, FOLDER_FLAGS)
    try:
        for folder in folders:
            inner = os.open(folder, FOLDER_FLAGS | os.O_NOFOLLOW, dir_fd=current)
            os.close(current)
            current = inner
        return os.open(name, flags | os.O_NOFOLLOW, dir_fd=current)
    finally:
        os.close(current)
