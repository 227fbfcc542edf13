"""The rendition cache: each rendition made once, kept as a file that Apache sends itself.

Layout, below the cache directory (``imageguard.cache_dir``)::

    srv-images-5d41402a/                 one folder per protected root (name + hash)
      gallery/cat.jpg/                   one folder per original, by its path
        1835021-48213-1764000000123456789-1764000000223456789.preview1024-3f9a0c2d1b7e.jpg
        └inode┘ └size┘ └── mtime (ns) ──┘ └── ctime (ns) ──┘ └variant, size┘ └params┘
      .locks/  .static/                  lock files; the placeholder padlock

The name carries the original's identity and modification (inode, size, modification
and change times), the
variant and its size, and a digest of everything else that shapes the result (the
watermark text as drawn, the format, the rendering code's version): editing or
replacing an image, changing a size or a watermark, each leads to a new name, never
to a stale picture. Roots sharing a cache directory each have their own folder, so
purging one never touches another's renditions.

A rendition is written to a temporary file in its own directory, flushed to disk, then
renamed into place, so no reader ever sees a partial one. While one is made, an
exclusive ``flock`` on one of :data:`LOCK_SLOTS` lock files (chosen by the name's hash)
keeps every other thread and process asking for the same rendition waiting, and then
finds it made: fifty simultaneous first requests cost one rendering. At most
:data:`RENDERING_AT_ONCE` renditions are made at a time per process, which bounds the
memory they take. ``flock`` works on read-only files, so the lock files may belong to
whoever created them; where none can be opened at all, renditions are still made
correctly, only perhaps more than once.

A file that cannot be rendered (truncated, corrupt) is remembered per process for its
version, so it costs one attempt, not one per request.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..errors import ConfigError, ContentError, RenditionError
from ..support.boundedcache import BoundedCache
from .content import ImageInfo
from .fileversion import FileVersion
from .renditions import (
    FORMAT_EXTENSIONS,
    RENDITION_VERSION,
    RenditionSpec,
    make_rendition,
    output_format,
)

#: How many lock files each root's cache keeps in ``.locks/``.
LOCK_SLOTS = 64
#: How many renditions one process makes at the same time (each holds a decoded image).
RENDERING_AT_ONCE = 2
#: A temporary file older than this is a leftover of a crash; ``purge`` removes it.
STALE_TEMP_S = 3600

_LOCK_DIR = ".locks"
_STATIC_DIR = ".static"
_TEMP_PREFIX = ".tmp-"
_TEMP_SUFFIX = ".part"
_ENTRY = re.compile(
    r"^(?P<inode>\d+)-(?P<size>\d+)-(?P<mtime>\d+)-(?P<ctime>\d+)"
    r"\.(?P<tag>[a-z]+\d+-[0-9a-f]{12})\.[a-z]+$"
)
_SLUG = re.compile(r"[^A-Za-z0-9]+")
_MEMO_LIMIT = 4096
_FAILED_LIMIT = 10_000


def entry_suffix(spec: RenditionSpec, fmt: str) -> str:
    """The part of a rendition's file name that depends on what is made, not on whom of."""
    params = f"{RENDITION_VERSION}\n{fmt}\n{spec.watermark}".encode()
    digest = hashlib.sha256(params).hexdigest()[:12]
    return f"{spec.variant.label}{spec.max_side}-{digest}{FORMAT_EXTENSIONS[fmt]}"


def entry_name(version: FileVersion, spec: RenditionSpec, fmt: str) -> str:
    """The file name of rendition *spec*, as *fmt*, of an original at *version*."""
    return f"{_version_part(version)}.{entry_suffix(spec, fmt)}"


def _version_part(version: FileVersion) -> str:
    return f"{version.inode}-{version.size}-{version.mtime_ns}-{version.ctime_ns}"


def root_folder(root: str) -> str:
    """The folder of the cache directory that holds the renditions of *root*."""
    slug = _SLUG.sub("-", root).strip("-")[-40:] or "root"
    return f"{slug}-{hashlib.sha256(root.encode()).hexdigest()[:8]}"


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


@dataclass(frozen=True)
class PurgeSummary:
    """What :meth:`RenditionCache.purge` removed."""

    kept: int
    removed: int
    bytes_freed: int


class RenditionCache:
    """Renditions of the images below *root*, kept in a folder of *directory*."""

    def __init__(self, directory: str, root: str) -> None:
        top = os.path.realpath(directory)
        if not os.path.isdir(top):
            raise ConfigError(f"imageguard.cache_dir {directory!r} is not a directory")
        root_real = os.path.realpath(root)
        check_placement(top, root_real)
        self.root = root_real
        self.directory = f"{top}/{root_folder(root_real)}"
        self._suffixes: BoundedCache[tuple[RenditionSpec, str], str] = BoundedCache(_MEMO_LIMIT)
        self._failed: BoundedCache[tuple[str, FileVersion], tuple[type[ContentError], str]] = (
            BoundedCache(_FAILED_LIMIT)
        )
        self._rendering = threading.BoundedSemaphore(RENDERING_AT_ONCE)

    def path_for(
        self, relpath: str, version: FileVersion, info: ImageInfo, spec: RenditionSpec
    ) -> str:
        """Where the rendition *spec* of the original *relpath* at *version* is kept.

        Only string work, with the part that hashes the parameters remembered: this is
        what a request for an already made rendition costs here.
        """
        fmt = output_format(info)
        suffix = self._suffixes.get((spec, fmt))
        if suffix is None:
            suffix = entry_suffix(spec, fmt)
            self._suffixes.put((spec, fmt), suffix)
        return f"{self.directory}/{relpath}/{_version_part(version)}.{suffix}"

    def make(
        self,
        path: str,
        relpath: str,
        version: FileVersion,
        info: ImageInfo,
        spec: RenditionSpec,
        max_pixels: int,
        fd: int = -1,
    ) -> None:
        """Make the rendition *path* names, unless another request made it meanwhile.

        The original is read from *fd* when it is given (an open descriptor of it),
        else from the root by *relpath*, refused unless it is still at *version*.

        Raises :class:`~imageguard.errors.ContentError` when the original cannot be
        rendered, and :class:`~imageguard.errors.RenditionError` when the result cannot
        be stored. A failure leaves nothing behind in the cache.
        """
        failed = self._failed.get((relpath, version))
        if failed is not None:
            raise failed[0](failed[1])
        with self._locked(path):
            if os.path.exists(path):  # made while this request waited for the lock
                return
            try:
                with self._rendering:
                    data = make_rendition(
                        f"{self.root}/{relpath}", info, spec, max_pixels, version, fd
                    )
            except ContentError as exc:
                self._failed.put((relpath, version), (type(exc), str(exc)))
                raise
            self._store(path, data)

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
        fd = _open_lock(self._lock_path(path))
        if fd is None:
            yield
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                raise RenditionError(f"cannot lock the cache: {exc.strerror}") from None
            yield
        finally:
            os.close(fd)  # releases the lock

    def _store(self, path: str, data: bytes) -> None:
        """Write *data* to *path* atomically: a temporary file in its directory, renamed."""
        directory = os.path.dirname(path)
        fd, temp = _temporary_file(directory)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fchmod(out.fileno(), 0o644)
                os.fsync(out.fileno())  # never a renamed, empty file after a power cut
            os.replace(temp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise RenditionError(f"cannot write to the cache: {exc.strerror}: {path}") from None

    def purge(
        self, *, everything: bool = False, unused_days: float = 0, now: float | None = None
    ) -> PurgeSummary:
        """Remove renditions whose original is gone or changed, temporary files left by a
        crash, and directories left empty; with *unused_days*, also renditions nobody
        asked for in that many days (old ``{date}`` previews, old sizes or watermarks);
        with *everything*, every rendition. Files that are not renditions stay."""
        current = time.time() if now is None else now
        kept = removed = freed = 0
        for dirpath, _dirnames, filenames in os.walk(self.directory, topdown=False):
            relpath = os.path.relpath(dirpath, self.directory)
            # The cache's own files (.locks, .static) and the root folder itself: the
            # originals' directories never start with a dot (the gate refuses those).
            if relpath.startswith("."):
                continue
            emptied = False
            for name in filenames:
                path = f"{dirpath}/{name}"
                if self._stale(relpath, name, current, everything, unused_days):
                    freed += _remove(path)
                    removed += 1
                    emptied = True
                elif _ENTRY.match(name):
                    kept += 1
            if emptied or _settled(dirpath):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)  # only succeeds when empty
        return PurgeSummary(kept, removed, freed)

    def _stale(
        self, relpath: str, name: str, now: float, everything: bool, unused_days: float
    ) -> bool:
        path = f"{self.directory}/{relpath}/{name}"
        try:
            st = os.lstat(path)
        except OSError:
            return False
        if name.startswith(_TEMP_PREFIX) and name.endswith(_TEMP_SUFFIX):
            return now - st.st_mtime > STALE_TEMP_S
        found = _ENTRY.match(name)
        if found is None:
            return False  # not ours: left alone, even by everything
        if everything:
            return True
        if unused_days and now - max(st.st_atime, st.st_mtime) > unused_days * 86400:
            return True
        try:
            original = FileVersion.of(os.stat(f"{self.root}/{relpath}"))
        except OSError:
            return True
        # The name starts with the version part of the original it was made from.
        return name.partition(".")[0] != _version_part(original)

    def entries(self) -> Iterator[str]:
        """Every rendition file in this root's part of the cache (paths)."""
        for dirpath, _dirnames, filenames in os.walk(self.directory):
            for name in filenames:
                if _ENTRY.match(name):
                    yield f"{dirpath}/{name}"


def check_placement(cache_dir: str, root: str) -> None:
    """ConfigError unless the (real) cache directory and root lie outside each other."""
    if _inside(cache_dir, root):
        raise ConfigError(
            "imageguard.cache_dir must not lie inside imageguard.root: its files would "
            "be served as originals"
        )
    if _inside(root, cache_dir):
        raise ConfigError(
            "imageguard.root must not lie inside imageguard.cache_dir: purging the cache "
            "would reach the originals"
        )


def _open_lock(path: str) -> int | None:
    """A read-only descriptor of lock file *path*, created if possible; None if impossible."""
    for _ in range(2):
        try:
            return os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except FileNotFoundError:
            with contextlib.suppress(OSError):
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                with contextlib.suppress(OSError):
                    return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
                return None
            raise RenditionError(f"cannot open a cache lock: {exc.strerror}") from None
    return None


def _remove(path: str) -> int:
    try:
        size = os.lstat(path).st_size
        os.unlink(path)
    except OSError:
        return 0
    return size


#: How often a folder is made again when a purge removes it between its making and the
#: temporary file's.
_FOLDER_ATTEMPTS = 10
#: A purge leaves an empty folder younger than this (seconds) that it did not empty itself:
#: a request on this or another server has just made it for a rendition.
FRESH_FOLDER_S = 60.0


def _settled(directory: str) -> bool:
    """True when *directory* was last changed long enough ago that no writer is about to
    put a file in it (see FRESH_FOLDER_S)."""
    try:
        return time.time() - os.stat(directory).st_mtime > FRESH_FOLDER_S
    except OSError:
        return False


def _temporary_file(directory: str) -> tuple[int, str]:
    """A new temporary file in *directory*, made (again) if missing: (its fd, its path)."""
    attempts = _FOLDER_ATTEMPTS
    while True:
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
            return tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX, dir=directory)
        except FileNotFoundError as exc:  # removed by a purge in between: make it again
            attempts -= 1
            if attempts:
                continue
            error: OSError = exc
        except OSError as exc:
            error = exc
        raise RenditionError(f"cannot write to the cache: {error.strerror}: {directory}") from error
