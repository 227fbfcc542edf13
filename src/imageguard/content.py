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
per process: verdicts are kept, keyed by the file's (device, inode, size, mtime), so
an unchanged file is never read again and an edited or replaced one is checked afresh.
Refusals are kept too, so a hostile file costs one read, however often it is asked for.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from .errors import ConfigError, ContentError, FormatMismatch, ImageTooLarge, UnreadableImage
from .fileversion import FileVersion

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

#: 50 megapixels: a 24-megapixel camera picture passes, a 10,000 x 10,000 bomb does not.
DEFAULT_MAX_PIXELS = 50_000_000


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


def identify(path: str, expected: str, decoders: Iterable[str], max_pixels: int) -> ImageInfo:
    """Read the header of the image file *path*; raise :class:`ContentError` unless it is
    an *expected*-format image of at most *max_pixels* pixels.

    Only the *decoders* named may look at the file, so a format nobody allowed (an EPS,
    say, which Pillow would hand to Ghostscript) is never parsed at all.
    """
    try:
        with Image.open(path, formats=list(decoders)) as image:
            found = image.format or "?"
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
        if os.path.getsize(path) == 0:
            raise UnreadableImage("file is empty") from None
        raise FormatMismatch(f"file is not a {expected} image (nor any allowed format)") from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"Pillow refuses it as a decompression bomb: {exc}") from None
    except ContentError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UnreadableImage(f"header cannot be read: {exc}") from None


class ContentChecker:
    """Verifies files against their extensions, remembering each version's verdict.

    One instance per configuration, shared by a process's threads. A verdict costs a
    dictionary look-up once known; the cache is emptied when it holds ``limit`` entries.
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
        self._limit = limit
        # (version, extension) -> ImageInfo, or (ContentError subclass, message).
        self._verdicts: dict[
            tuple[FileVersion, str], ImageInfo | tuple[type[ContentError], str]
        ] = {}
        self._lock = threading.Lock()

    def check(self, path: str, version: FileVersion) -> ImageInfo:
        """The image in *path* (at *version*), or :class:`ContentError` saying why not."""
        extension = os.path.splitext(path)[1].lower()
        key = (version, extension)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._verdict(path, extension)
            with self._lock:
                if len(self._verdicts) >= self._limit:
                    self._verdicts.clear()
                self._verdicts[key] = verdict
        if isinstance(verdict, ImageInfo):
            return verdict
        error, message = verdict
        raise error(message)

    def _verdict(self, path: str, extension: str) -> ImageInfo | tuple[type[ContentError], str]:
        expected = self.formats.get(extension)
        if expected is None:
            return (FormatMismatch, f"extension {extension!r} is not verified")
        try:
            return identify(path, expected, self.decoders, self.max_pixels)
        except ContentError as exc:
            return (type(exc), str(exc))

    def condemn(self, version: FileVersion, extension: str, error: ContentError) -> None:
        """Remember that this file version cannot be served (decoding it failed)."""
        with self._lock:
            self._verdicts[(version, extension.lower())] = (type(error), str(error))


def decode_fully(path: str, info: ImageInfo) -> None:
    """Decode the whole image (its first frame); :class:`UnreadableImage` if that fails.

    A header can be fine while the rest of the file is cut off or damaged. A JPEG is
    decoded at 1/8 scale, which still reads every byte but builds a small image.
    """
    try:
        with Image.open(path, formats=[info.format]) as image:
            if info.format == "JPEG":
                image.draft(None, (1, 1))
            image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UnreadableImage(f"cannot decode it: {exc}") from None
