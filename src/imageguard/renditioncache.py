"""The rendition cache: each rendition made once, kept as a file that Apache sends itself.

Layout, below the cache directory (``imageguard.cache_dir``)::

    gallery/cat.jpg/1835021-48213-1764000000123456789.preview1024-3f9a0c2d1b7e.jpg
    └ the original's ┘ └inode┘ └size┘ └─ mtime (ns) ─┘ └variant, size┘ └ params ┘

One directory per original, named by its path below the protected root, holding one
file per rendition. The name carries the original's identity and modification (inode,
size, mtime), the variant and its size, and a digest of everything else that shapes
the result (the watermark text as drawn, the rendering code's version): editing or
replacing an image, changing a size or a watermark, each leads to a new name, never to
a stale picture. ``purge`` removes what no current original can ask for any more.

A rendition is written to a temporary file in its own directory, then renamed into
place, so no reader ever sees a partial one. While one is made, an exclusive ``flock``
on one of :data:`LOCK_SLOTS` lock files (chosen by the name's hash) keeps every other
thread and process asking for the same rendition waiting, and then finds it made: fifty
simultaneous first requests cost one rendering. ``flock`` works on read-only files, so
the lock files may belong to whoever created them; where none can be opened at all,
renditions are still made correctly, only perhaps more than once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .content import ImageInfo
from .errors import ConfigError, RenditionError
from .fileversion import FileVersion
from .renditions import (
    FORMAT_EXTENSIONS,
    RENDITION_VERSION,
    RenditionSpec,
    make_rendition,
    output_format,
)

#: How many lock files the cache keeps in ``.locks/`` (renditions share them by hash).
LOCK_SLOTS = 64
#: A temporary file older than this is a leftover of a crash; ``purge`` removes it.
STALE_TEMP_S = 3600

_LOCK_DIR = ".locks"
_STATIC_DIR = ".static"
_TEMP_PREFIX = ".tmp-"
_ENTRY = re.compile(
    r"^(?P<inode>\d+)-(?P<size>\d+)-(?P<mtime>\d+)\.(?P<tag>[a-z]+\d+-[0-9a-f]{12})\.[a-z]+$"
)


def entry_name(version: FileVersion, spec: RenditionSpec, fmt: str) -> str:
    """The file name of rendition *spec*, as *fmt*, of an original at *version*."""
    params = f"{RENDITION_VERSION}\n{fmt}\n{spec.watermark}".encode()
    digest = hashlib.sha256(params).hexdigest()[:12]
    return (
        f"{version.inode}-{version.size}-{version.mtime_ns}."
        f"{spec.variant.label}{spec.max_side}-{digest}{FORMAT_EXTENSIONS[fmt]}"
    )


@dataclass(frozen=True)
class PurgeSummary:
    """What :meth:`RenditionCache.purge` removed."""

    kept: int
    removed: int
    bytes_freed: int


class RenditionCache:
    """Renditions of the images below *root*, kept in *directory*."""

    def __init__(self, directory: str, root: str) -> None:
        real = os.path.realpath(directory)
        if not os.path.isdir(real):
            raise ConfigError(f"imageguard.cache_dir {directory!r} is not a directory")
        root_real = os.path.realpath(root)
        if real == root_real or real.startswith(root_real.rstrip("/") + "/"):
            raise ConfigError(
                "imageguard.cache_dir must not lie inside imageguard.root: its files "
                "would be served as originals"
            )
        self.directory = real
        self.root = root_real

    def path_for(
        self, relpath: str, version: FileVersion, info: ImageInfo, spec: RenditionSpec
    ) -> str:
        """Where the rendition *spec* of the original *relpath* at *version* is kept."""
        name = entry_name(version, spec, output_format(info))
        return f"{self.directory}/{relpath}/{name}"

    def get(
        self,
        relpath: str,
        version: FileVersion,
        info: ImageInfo,
        spec: RenditionSpec,
        max_pixels: int,
    ) -> str:
        """The path of the rendition, made now if it is not in the cache yet.

        Raises :class:`~imageguard.errors.ContentError` when the original cannot be
        rendered, and :class:`~imageguard.errors.RenditionError` when the result cannot
        be stored. A failure leaves nothing behind in the cache.
        """
        path = self.path_for(relpath, version, info, spec)
        if os.path.exists(path):
            return path
        original = f"{self.root}/{relpath}"
        with self._locked(path):
            if os.path.exists(path):  # made while this request waited for the lock
                return path
            data = make_rendition(original, info, spec, max_pixels)
            self._store(path, data)
        return path

    def keep(self, name: str, make: Callable[[], bytes]) -> str:
        """The path of the cache's own file *name* (the placeholder), made if missing."""
        path = f"{self.directory}/{_STATIC_DIR}/{name}"
        if not os.path.exists(path):
            with self._locked(path):
                if not os.path.exists(path):
                    self._store(path, make())
        return path

    def _lock_path(self, path: str) -> str:
        slot = int(hashlib.sha256(path.encode()).hexdigest()[:8], 16) % LOCK_SLOTS
        return f"{self.directory}/{_LOCK_DIR}/{slot:02d}"

    @contextlib.contextmanager
    def _locked(self, path: str) -> Iterator[None]:
        """Hold the exclusive lock of *path*'s slot (or none, if no lock file opens)."""
        lock_path = self._lock_path(path)
        fd = _open_lock(lock_path)
        if fd is None:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _store(self, path: str, data: bytes) -> None:
        """Write *data* to *path* atomically: a temporary file in its directory, renamed."""
        directory, name = os.path.split(path)
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=".part", dir=directory)
        except OSError as exc:
            raise RenditionError(f"cannot write to the cache: {exc.strerror}: {directory}") from exc
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                os.fchmod(out.fileno(), 0o644)
            os.replace(temp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise RenditionError(f"cannot store {name}: {exc.strerror}") from None

    def purge(self, *, everything: bool = False, now: float | None = None) -> PurgeSummary:
        """Remove renditions whose original is gone or changed (all of them: *everything*),
        temporary files left by a crash, and directories left empty."""
        current = time.time() if now is None else now
        kept = removed = freed = 0
        for dirpath, _dirnames, filenames in os.walk(self.directory, topdown=False):
            relpath = os.path.relpath(dirpath, self.directory)
            # The cache's own files (.locks, .static) and the cache root itself: the
            # originals' directories never start with a dot (the gate refuses those).
            if relpath.startswith("."):
                continue
            for name in filenames:
                path = f"{dirpath}/{name}"
                if self._is_stale(relpath, name, current) or everything:
                    freed += _remove(path)
                    removed += 1
                else:
                    kept += 1
            if dirpath != self.directory:
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)  # only succeeds when empty
        return PurgeSummary(kept, removed, freed)

    def _is_stale(self, relpath: str, name: str, now: float) -> bool:
        if name.startswith(_TEMP_PREFIX):
            with contextlib.suppress(OSError):
                return now - os.lstat(f"{self.directory}/{relpath}/{name}").st_mtime > STALE_TEMP_S
            return True
        found = _ENTRY.match(name)
        if found is None:
            return False  # not ours: leave it alone
        try:
            st = os.stat(f"{self.root}/{relpath}")
        except OSError:
            return True
        return (st.st_ino, st.st_size, st.st_mtime_ns) != (
            int(found["inode"]),
            int(found["size"]),
            int(found["mtime"]),
        )

    def entries(self) -> Iterator[str]:
        """Every rendition file in the cache (paths)."""
        for dirpath, _dirnames, filenames in os.walk(self.directory):
            for name in filenames:
                if _ENTRY.match(name):
                    yield f"{dirpath}/{name}"


def _open_lock(path: str) -> int | None:
    """A read-only descriptor of lock file *path*, created if possible; None if impossible."""
    for _ in range(2):
        try:
            return os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            with contextlib.suppress(OSError):
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                with contextlib.suppress(OSError):
                    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                return None
            raise
    return None


def _remove(path: str) -> int:
    try:
        size = os.lstat(path).st_size
        os.unlink(path)
    except OSError:
        return 0
    return size
