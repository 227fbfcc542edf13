"""The placeholder: a small "locked" picture sent with a refusal instead of an empty body.

With ``imageguard.placeholder on``, an image request that is refused (and is not a page
navigation) is answered with the deny status and this picture, so a gallery shows a
padlock where a picture is withheld, not a broken-image icon. It is drawn once with
Pillow, kept in the cache directory, and sent by Apache like any other file.
"""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

#: The placeholder's file name in the cache (bump the version when the drawing changes).
PLACEHOLDER_NAME = "locked-v1.png"

_BACKGROUND = (226, 229, 234)
_INK = (96, 104, 118)


def locked_image(size: int = 96) -> bytes:
    """A *size* x *size* PNG of a padlock on a light grey ground."""
    scale = 4  # drawn large, then reduced: smooth edges without an anti-aliasing mode
    side = size * scale
    image = Image.new("RGB", (side, side), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    unit = side / 16
    # The shackle: a thick arc above the body.
    draw.arc(
        (5 * unit, 2.5 * unit, 11 * unit, 9.5 * unit),
        start=180,
        end=360,
        fill=_INK,
        width=round(1.2 * unit),
    )
    draw.line((5.6 * unit, 6 * unit, 5.6 * unit, 8 * unit), fill=_INK, width=round(1.2 * unit))
    draw.line((10.4 * unit, 6 * unit, 10.4 * unit, 8 * unit), fill=_INK, width=round(1.2 * unit))
    # The body, with a keyhole.
    draw.rounded_rectangle(
        (3.5 * unit, 7.5 * unit, 12.5 * unit, 14 * unit), radius=round(unit), fill=_INK
    )
    draw.ellipse((7.1 * unit, 9.3 * unit, 8.9 * unit, 11.1 * unit), fill=_BACKGROUND)
    draw.rectangle((7.6 * unit, 10.5 * unit, 8.4 * unit, 12.5 * unit), fill=_BACKGROUND)
    out = io.BytesIO()
    image.resize((size, size), Image.Resampling.LANCZOS).save(out, "PNG", optimize=True)
    return out.getvalue()
