"""Content verification: is a file really the image its extension says it is?

A web server picks a file's Content-Type from its name, so an HTML page or a script
uploaded as ``cat.jpg`` would reach browsers from the image directory. Before anything
is served, :class:`ContentChecker` asks Pillow to identify the file from its header,
with the decoders limited to the formats the allowed extensions name, and refuses the
file unless:

* the format found is the one its extension names (``.jpg`` and ``.jpeg``: JPEG,
  ``.png``: PNG, ``.gif``: GIF, ``.webp``: WEBP, ...);
* the image has at most ``max_pixels`` pixels (a decompression bomb is refused from its
  header, before anything is decoded);
* the file is not empty and its header can be read.

Reading a header costs one ``open`` and a few hundred bytes, once per version of a file
per process: verdicts are kept, keyed by the file's
:class:`~imageguard.files.fileversion.FileVersion`, so an unchanged file is never read again
and an edited or replaced one is checked afresh.
Refusals are kept too, so a hostile file costs one read, however often it is asked for.
"""

from __future__ import annotations

import mimetypes
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from ..errors import (
    ConfigError,
    ContentError,
    FormatMismatch,
    ImageTooLarge,
    UnreadableFile,
    UnreadableImage,
)
from ..support.boundedcache import BoundedCache
from .fileversion import FileVersion, open_file

#: The Pillow format each extension promises.
EXTENSION_FORMATS: dict[str, str] = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".png": "PNG",
    ".apng": "PNG",
    ".gif": "GIF",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}

#: The media type Apache is told to send for an image in each format.
FORMAT_MEDIA_TYPES: dict[str, str] = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}


def media_type(extension: str) -> str:
    """The media type of files named with *extension* (``.jpg``: ``image/jpeg``).

    imageguard sets the Content-Type itself (Apache never sees the image's name, see
    :mod:`imageguard.apache.adapters`), from this table for the formats it verifies and from
    the system's ``/etc/mime.types`` for others; ConfigError unless it is an image type.
    """
    ext = extension.lower()
    fmt = EXTENSION_FORMATS.get(ext)
    found = FORMAT_MEDIA_TYPES[fmt] if fmt else mimetypes.guess_type(f"x{ext}", strict=False)[0]
    if not found or not found.startswith("image/"):
        raise ConfigError(
            f"imageguard.extensions: {extension} files are {found or 'of no known type'}, "
            "not images; imageguard only serves images"
        )
    return found


#: 50 megapixels: a 24-megapixel camera picture passes, a 10,000 x 10,000 bomb does not.
DEFAULT_MAX_PIXELS = 50_000_000

#: Formats Pillow reports for files that are also a format of the table above: a JPEG
#: whose MPF segment lists several pictures (phones' depth maps and gain maps, cameras'
#: embedded previews) is identified as MPO, and is a JPEG all the same.
SAME_FORMAT = {"MPO": "JPEG"}


@dataclass(frozen=True)
class ImageInfo:
    """What a file's header says about the image in it."""

    format: str
    mode: str
    width: int
    height: int
    #: The header declares transparency (an alpha band, or a transparent palette entry).
    transparent: bool

    @property
    def pixels(self) -> int:
        """Width times height."""
        return self.width * self.height


def expected_format(extension: str) -> str:
    """The Pillow format *extension* (``.jpg``) promises; ConfigError if imageguard knows none."""
    try:
        return EXTENSION_FORMATS[extension.lower()]
    except KeyError:
        known = " ".join(sorted(EXTENSION_FORMATS))
        raise ConfigError(
            f"imageguard cannot verify the content of {extension} files (it knows {known}); "
            "set imageguard.verify_content off to serve them unchecked"
        ) from None


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """Raise :class:`ImageTooLarge` when a *width* x *height* image exceeds *max_pixels*."""
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{width}x{height} is {width * height:,} pixels, more than the "
            f"{max_pixels:,} of imageguard.max_pixels"
        )


def identify(
    path: str,
    expected: str,
    decoders: Iterable[str],
    max_pixels: int,
    version: FileVersion | None = None,
    fd: int = -1,
) -> ImageInfo:
    """Read the header of the image file *path*; raise :class:`ContentError` unless it is
    an *expected*-format image of at most *max_pixels* pixels.

    Only the *decoders* named may look at the file, so a format nobody allowed (an EPS,
    say, which Pillow would hand to Ghostscript) is never parsed at all. With *version*,
    the file read must be that version (see :func:`~imageguard.files.fileversion.open_version`):
    a file swapped since it was checked raises :class:`~imageguard.errors.FileChanged`
    instead of lending its verdict to the other. With *fd*, an open descriptor of the
    file at *version*, the header is read from it (a copy of the descriptor, from the
    start) instead of opening *path*.
    """
    try:
        with (
            open_file(path, version, fd) as handle,
            Image.open(handle, formats=list(decoders)) as image,
        ):
            found = image.format or "?"
            found = SAME_FORMAT.get(found, found)
            if found != expected:
                raise FormatMismatch(f"file is {found}, but its name promises {expected}")
            width, height = image.size
            check_pixels(width, height, max_pixels)
            return ImageInfo(
                found,
                image.mode,
                width,
                height,
                "A" in image.mode or "transparency" in image.info,
            )
    except UnidentifiedImageError:
        if (version.size == 0) if version is not None else _is_empty(path):
            raise UnreadableImage("file is empty") from None
        raise FormatMismatch(f"file is not a {expected} image (nor any allowed format)") from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"Pillow refuses it as a decompression bomb: {exc}") from None
    except ContentError:
        raise
    except OSError as exc:
        if exc.errno is not None:  # the system refused the read: not the file's fault
            raise UnreadableFile(f"cannot read it: {exc.strerror}") from None
        raise UnreadableImage(f"header cannot be read: {exc}") from None
    except (SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise UnreadableImage(f"header cannot be read: {exc}") from None


def _is_empty(path: str) -> bool:
    try:
        return os.path.getsize(path) == 0
    except OSError:
        return False


#: A verdict: what the header said, or the refusal (its class and message).
Verdict = ImageInfo | tuple[type[ContentError], str]


class ContentChecker:
    """Verifies files against their extensions, remembering each version's verdict.

    One instance per configuration, shared by a process's threads. A verdict costs a
    dictionary look-up once known; at most ``limit`` are kept (a
    :class:`~imageguard.support.boundedcache.BoundedCache`: the oldest goes first). Two threads
    asking about a new file together may both read its header; either verdict is right.
    Build one for a site with :meth:`for_site`.
    """

    def __init__(
        self,
        extensions: Iterable[str],
        max_pixels: int = DEFAULT_MAX_PIXELS,
        *,
        limit: int = 100_000,
    ) -> None:
        self.formats = {ext: expected_format(ext) for ext in extensions}
        self.decoders = tuple(sorted(set(self.formats.values())))
        self.max_pixels = max_pixels
        self._verdicts: BoundedCache[tuple[FileVersion, str], Verdict] = BoundedCache(limit)

    @classmethod
    def for_site(
        cls, extensions: Iterable[str], max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> ContentChecker:
        """The checker of a site serving *extensions*: it verifies those whose format
        imageguard knows (:data:`EXTENSION_FORMATS`) and refuses the others as not
        verified; the handlers and ``imageguard verify`` both use this one."""
        return cls((ext for ext in extensions if ext in EXTENSION_FORMATS), max_pixels)

    def check(self, path: str, version: FileVersion, fd: int = -1) -> ImageInfo:
        """The image in *path* (at *version*), or :class:`ContentError` saying why not.

        With *fd*, an open descriptor of that very file, its header is read from there
        rather than from the path (which may name another file by then).
        """
        extension = os.path.splitext(path)[1].lower()
        key = (version, extension)
        verdict = self._verdicts.get(key)
        if verdict is None:  # UnreadableFile from here on is raised, and not kept
            verdict = self._verdict(path, extension, version, fd)
            self._verdicts.put(key, verdict)
        if isinstance(verdict, ImageInfo):
            return verdict
        error, message = verdict
        raise error(message)

    def _verdict(self, path: str, extension: str, version: FileVersion, fd: int = -1) -> Verdict:
        expected = self.formats.get(extension)
        if expected is None:
            return (FormatMismatch, f"extension {extension!r} is not verified")
        try:
            return identify(path, expected, self.decoders, self.max_pixels, version, fd)
        except UnreadableFile:
            raise  # a refused read (permissions, too many open files) may pass: not kept
        except ContentError as exc:
            return (type(exc), str(exc))
