"""Renditions: the smaller images a ``thumb`` or ``preview`` level is served, made with Pillow.

Pure functions, from a file to encoded bytes; caching and serving are elsewhere
(:mod:`imageguard.files.renditioncache`). :func:`make_rendition` does, in order:

1. open the file (not through a symbolic link, and only if it is still the version that
   was checked) with only its own format's decoder, and refuse more pixels than allowed;
2. for a JPEG, ask the decoder for a reduced image (:meth:`PIL.Image.Image.draft`: the
   DCT scales by 1/2, 1/4 or 1/8 while decoding), so a 24-megapixel photo never exists
   in memory at full size; other formats are decoded whole, then reduced first;
3. fit it in a square of ``max_side`` pixels, never enlarging it;
4. turn it upright by its EXIF orientation (read defensively: bad EXIF is ignored);
5. bring the colour mode to one that encodes well (:func:`normalised`);
6. for a preview, draw the watermark text across it (:func:`watermarked`);
7. encode it without any of the original's metadata (no EXIF, GPS, XMP or comments;
   an ICC colour profile is kept when the colours are still the ones it describes).

The output format follows :func:`output_format`: WebP stays WebP, an image with
transparency or a palette (drawings, logos) becomes PNG, a photograph becomes JPEG.
Any failure of Pillow on a hostile or damaged file is a
:class:`~imageguard.errors.ContentError`, never another exception.
"""

from __future__ import annotations

import io
import string
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from ..errors import ContentError, FileChanged, ImageTooLarge, UnreadableFile, UnreadableImage
from ..policy.levels import Level
from .content import SAME_FORMAT, ImageInfo, check_pixels
from .fileversion import FileVersion, open_file

#: Bumped whenever the way renditions are made changes, so old cached ones are not used.
RENDITION_VERSION = 1

#: File extension of each output format (mod_mime picks the Content-Type from it).
FORMAT_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}

_JPEG_QUALITY = {Level.THUMB: 80, Level.PREVIEW: 85}
_WEBP_QUALITY = 80
_WATERMARK_ANGLE = 30
_WATERMARK_OPACITY = 140  # of 255, for the letters and their outline
_OVERLAY_SCALE = 2
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


#: What a watermark template may name: the site's host name, the viewer, today's date.
WATERMARK_FIELDS = ("host", "user", "date")
DEFAULT_WATERMARK = "{host}"
DEFAULT_THUMB_SIZE = 256
DEFAULT_PREVIEW_SIZE = 1024


def check_watermark_template(template: str) -> str:
    """Return *template* if it only names :data:`WATERMARK_FIELDS`, else raise ValueError.

    Fields are plain names (``{user}``): no attribute, index or format spec, so a
    template can never reach into the objects its values come from.
    """
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"watermark {template!r}: {exc}") from None
    for _text, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in WATERMARK_FIELDS or spec or conversion:
            raise ValueError(
                f"watermark {template!r}: {{{field}}} is not one of "
                + ", ".join(f"{{{name}}}" for name in WATERMARK_FIELDS)
            )
    return template


def watermark_text(template: str, *, host: str, user: str, date: str) -> str:
    """The watermark *template* (checked by :func:`check_watermark_template`) filled in."""
    return template.format(host=host, user=user, date=date)


@dataclass(frozen=True)
class RenditionSpec:
    """What to make: *variant* (``thumb`` or ``preview``) fitted in *max_side* pixels,
    with *watermark* text drawn over it (empty: none)."""

    variant: Level
    max_side: int
    watermark: str = ""

    def __post_init__(self) -> None:
        if self.variant not in (Level.THUMB, Level.PREVIEW):
            raise ValueError(f"no rendition is made for level {self.variant.label}")
        if self.max_side < 16:
            raise ValueError(f"a rendition must be at least 16 pixels, not {self.max_side}")


def output_format(info: ImageInfo) -> str:
    """The format a rendition of the image *info* describes is written in."""
    if info.format == "WEBP":
        return "WEBP"
    if info.transparent or info.mode in ("P", "PA", "1"):
        return "PNG"
    return "JPEG"


def fitted_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """*width* x *height* scaled down to fit a *max_side* square (never scaled up)."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def normalised(image: Image.Image) -> Image.Image:
    """*image* in one of the modes ``RGB``, ``RGBA``, ``L`` or ``LA``.

    CMYK and other colour spaces become RGB, a palette becomes RGB (RGBA when it has a
    transparent entry), 1-bit becomes L, and 16-bit greyscale is scaled (not clipped)
    to 8 bits.
    """
    mode = image.mode
    if mode in ("RGB", "L") and "transparency" in image.info:  # one transparent colour
        return image.convert("RGBA" if mode == "RGB" else "LA")
    if mode in ("RGB", "RGBA", "L", "LA"):
        return image
    if mode in _SIXTEEN_BIT_MODES:
        return image.convert("I").point(lambda value: value * (1 / 257)).convert("L")
    if mode == "F":
        return image.point(lambda value: value * 255).convert("L")
    if mode in ("P", "PA"):
        transparent = mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if transparent else "RGB")
    if mode == "1":
        return image.convert("L")
    return image.convert("RGBA" if "A" in mode else "RGB")


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def watermarked(image: Image.Image, text: str) -> Image.Image:
    """*image* with *text* written across it in diagonal rows, half-transparent.

    White letters with a dark outline stay readable on light and dark pictures alike,
    and the rows cover the whole picture, so no part of it can be cropped free of them.
    """
    # Drawn and turned at half the size, then enlarged: a quarter of the work of turning
    # a full-size canvas, which would cost more than decoding the picture.
    width, height = (max(1, side // _OVERLAY_SCALE) for side in image.size)
    size = max(6, min(width, height) // 14)
    font = _font(size)
    stroke = max(1, size // 12)
    label = f"{text}      "
    left, top, right, bottom = (int(v) for v in font.getbbox(label, stroke_width=stroke))
    # Rows on a canvas big enough to cover the image at any angle, then turned.
    side = int((width**2 + height**2) ** 0.5) + 2 * size
    canvas = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    row_height = 3 * (bottom - top)
    repeat = label * (side // max(1, right - left) + 2)
    for row, y in enumerate(range(0, side, row_height)):
        x = -left - (row % 2) * (right - left) // 2
        draw.text(
            (x, y - top),
            repeat,
            font=font,
            fill=(255, 255, 255, _WATERMARK_OPACITY),
            stroke_width=stroke,
            stroke_fill=(0, 0, 0, _WATERMARK_OPACITY),
        )
    turned = canvas.rotate(_WATERMARK_ANGLE, resample=Image.Resampling.BILINEAR)
    x0, y0 = (side - width) // 2, (side - height) // 2
    overlay = turned.crop((x0, y0, x0 + width, y0 + height))
    overlay = overlay.resize(image.size, Image.Resampling.BILINEAR)
    had_alpha = "A" in image.mode
    grey = image.mode in ("L", "LA")
    marked = Image.alpha_composite(image.convert("RGBA"), overlay)
    if grey:
        return marked.convert("LA" if had_alpha else "L")
    return marked if had_alpha else marked.convert("RGB")


#: EXIF orientation -> the transposition that makes the picture upright.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
#: Modes converted before reducing: a palette or 1-bit image resizes badly, and Pillow
#: cannot resize 16-bit greyscale (which becomes 8-bit, smaller, on the way).
_CONVERT_FIRST = frozenset({"P", "PA", "1"}) | _SIXTEEN_BIT_MODES


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1 when absent, or when the EXIF data cannot be read)."""
    try:
        value = image.getexif().get(0x0112, 1)
        return int(value) if value in _UPRIGHT else 1
    except Exception:  # malformed EXIF must not stop a rendition; it is not written
        return 1


def _reduced(image: Image.Image, info: ImageInfo, max_side: int) -> Image.Image:
    """*image* fitted in *max_side*, upright, in a mode :func:`normalised` gives.

    A JPEG is decoded already reduced (``draft``); other formats are decoded whole and
    reduced (``thumbnail`` uses ``reduce``) before anything else touches them, so no
    full-size copy is ever made.
    """
    orientation = _orientation(image)
    if info.format == "JPEG":
        image.draft(None, fitted_size(info.width, info.height, max_side))
    if image.mode in _CONVERT_FIRST:
        image = normalised(image)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    if orientation != 1:
        image = image.transpose(_UPRIGHT[orientation])
    return normalised(image)


def _icc_profile(icc: bytes | None, source_mode: str, result: Image.Image) -> bytes | None:
    """The source's ICC profile *icc* when it still describes the result's colours."""
    if not icc or source_mode not in ("RGB", "RGBA", "L", "LA"):
        return None
    same_family = (source_mode[0] == "L") == (result.mode[0] == "L")
    return icc if same_family else None


def encoded(image: Image.Image, fmt: str, variant: Level, icc: bytes | None = None) -> bytes:
    """*image* written as *fmt* with no metadata besides an optional ICC profile."""
    image.info = {}
    out = io.BytesIO()
    extra: dict[str, object] = {"icc_profile": icc} if icc else {}
    if fmt == "JPEG":
        flat = image.convert("RGB") if image.mode not in ("RGB", "L") else image
        flat.save(
            out,
            "JPEG",
            quality=_JPEG_QUALITY[variant],
            progressive=variant is Level.PREVIEW,
            exif=b"",
            **extra,
        )
    elif fmt == "PNG":
        image.save(out, "PNG", exif=b"", **extra)
    elif fmt == "WEBP":
        image.save(out, "WEBP", quality=_WEBP_QUALITY, exif=b"", xmp=b"", **extra)
    else:
        raise ValueError(f"renditions are not written as {fmt}")
    return out.getvalue()


def make_rendition(
    path: str,
    info: ImageInfo,
    spec: RenditionSpec,
    max_pixels: int,
    version: FileVersion | None = None,
    fd: int = -1,
) -> bytes:
    """The encoded rendition *spec* of the image file *path* (whose header gave *info*).

    With *version*, the file opened must be that version (not replaced since it was
    checked); with *fd*, an open descriptor of that file, it is read from there. Raises
    :class:`~imageguard.errors.ContentError` for a file that cannot be made into one:
    too many pixels, truncated, corrupt, or not what its header claimed.
    """
    check_pixels(info.width, info.height, max_pixels)
    try:
        with (
            open_file(path, version, fd) as handle,
            Image.open(handle, formats=[info.format]) as source,
        ):
            found = SAME_FORMAT.get(source.format or "?", source.format)
            if found != info.format:
                raise UnreadableImage(f"file changed: now {source.format}, was {info.format}")
            check_pixels(*source.size, max_pixels)
            icc = source.info.get("icc_profile")
            source_mode = source.mode
            image = _reduced(source, info, spec.max_side)
            if spec.watermark:
                image = watermarked(image, spec.watermark)
            return encoded(
                image, output_format(info), spec.variant, _icc_profile(icc, source_mode, image)
            )
    except (ContentError, FileChanged):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"Pillow refuses it as a decompression bomb: {exc}") from None
    except OSError as exc:
        if exc.errno is not None:
            raise UnreadableFile(f"cannot read it: {exc.strerror}") from None
        raise UnreadableImage(f"cannot decode it: {exc}") from None
    except Exception as exc:  # Pillow meets hostile files with many exception types
        raise UnreadableImage(f"cannot decode it: {type(exc).__name__}: {exc}") from None


def check_renders(path: str, info: ImageInfo, max_pixels: int) -> None:
    """Make a small rendition in memory: :class:`ContentError` when the file cannot be
    rendered (what ``imageguard verify --deep`` checks, beyond the header)."""
    make_rendition(path, info, RenditionSpec(Level.THUMB, 16), max_pixels)
