"""Renditions made with Pillow: sizes, orientation, colour modes, metadata, watermark."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from imageguard.errors import FileChanged, ImageTooLarge, UnreadableImage
from imageguard.files.content import identify
from imageguard.files.fileversion import FileVersion
from imageguard.files.renditions import (
    RenditionSpec,
    check_renders,
    check_watermark_template,
    fitted_size,
    make_rendition,
    output_format,
    watermark_text,
)
from imageguard.policy.levels import Level

FORMATS = ["JPEG", "PNG", "GIF", "WEBP"]
THUMB = RenditionSpec(Level.THUMB, 64)


def render(path: Path, spec: RenditionSpec = THUMB, max_pixels: int = 10**8) -> Image.Image:
    info = identify(str(path), Image.open(path).format or "", FORMATS, max_pixels)
    image = Image.open(io.BytesIO(make_rendition(str(path), info, spec, max_pixels)))
    image.load()
    return image


def test_fitted_size() -> None:
    assert fitted_size(1600, 1200, 256) == (256, 192)
    assert fitted_size(1200, 1600, 256) == (192, 256)
    assert fitted_size(100, 50, 256) == (100, 50)  # never enlarged
    assert fitted_size(10000, 1, 256) == (256, 1)


def test_spec_checks_itself() -> None:
    with pytest.raises(ValueError):
        RenditionSpec(Level.FULL, 256)
    with pytest.raises(ValueError):
        RenditionSpec(Level.THUMB, 8)


def test_exif_orientation_is_applied_and_metadata_dropped(tmp_path: Path) -> None:
    path = tmp_path / "o.jpg"
    image = Image.new("RGB", (400, 200), "red")
    image.paste((0, 0, 255), (0, 0, 200, 200))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    exif[0x010F] = "Maker"
    exif.get_ifd(0x8825)[2] = (1.0, 2.0, 3.0)
    image.save(path, exif=exif, comment=b"a comment")
    out = render(path)
    assert out.size == (32, 64)  # upright: taller than wide
    assert out.getpixel((16, 5))[2] > 200  # the blue half is now on top
    assert not out.getexif() and "comment" not in out.info


@pytest.mark.parametrize(
    ("mode", "fmt", "out_format", "out_mode"),
    [
        ("CMYK", "JPEG", "JPEG", "RGB"),
        ("L", "JPEG", "JPEG", "L"),
        ("I;16", "PNG", "JPEG", "L"),
        ("RGBA", "PNG", "PNG", "RGBA"),
        ("LA", "PNG", "PNG", "LA"),
        ("P", "GIF", "PNG", "RGB"),
        ("1", "PNG", "PNG", "L"),
        ("RGB", "WEBP", "WEBP", "RGB"),
        ("RGBA", "WEBP", "WEBP", "RGBA"),
    ],
)
def test_colour_modes(tmp_path: Path, mode: str, fmt: str, out_format: str, out_mode: str) -> None:
    path = tmp_path / f"x.{fmt.lower()}"
    Image.new(mode, (200, 100)).save(path, fmt)
    out = render(path)
    assert (out.format, out.mode, out.size) == (out_format, out_mode, (64, 32))


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "g.png"
    Image.new("I;16", (100, 100), 32768).save(path)
    assert abs(render(path).getpixel((5, 5)) - 128) <= 1  # type: ignore[operator]


def test_palette_transparency_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "t.gif"
    frames = [Image.new("P", (80, 40), index) for index in (1, 2)]
    for frame in frames:
        frame.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (253 * 3))
    frames[0].paste(0, (0, 0, 40, 40))  # left half transparent
    frames[0].save(path, save_all=True, append_images=frames[1:], transparency=0)
    out = render(path)
    assert (out.format, out.mode) == ("PNG", "RGBA")
    assert out.getpixel((5, 5))[3] == 0  # transparent
    assert out.getpixel((60, 5)) == (255, 0, 0, 255)  # the first frame, red


def test_preview_is_watermarked(tmp_path: Path) -> None:
    path = tmp_path / "p.jpg"
    Image.linear_gradient("L").resize((800, 600)).convert("RGB").save(path, quality=95)
    plain = render(path, RenditionSpec(Level.PREVIEW, 400))
    marked = render(path, RenditionSpec(Level.PREVIEW, 400, "example.org alice 2026-11-25"))
    assert plain.size == marked.size == (400, 300)
    difference = ImageChops.difference(plain, marked).convert("L")
    assert ImageStat.Stat(difference).mean[0] > 3  # visible...
    assert ImageStat.Stat(difference).mean[0] < 60  # ...but the picture still shows


def test_too_many_pixels_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    Image.new("RGB", (300, 300)).save(path)
    with pytest.raises(ImageTooLarge):
        render(path, max_pixels=300 * 300 - 1)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.jpg"
    Image.effect_noise((300, 300), 40).convert("RGB").save(path)
    info = identify(str(path), "JPEG", FORMATS, 10**8)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(UnreadableImage, match="cannot decode it"):
        make_rendition(str(path), info, THUMB, 10**8)


def test_output_format_choice(tmp_path: Path) -> None:
    def info_of(mode: str, fmt: str, **params: object) -> object:
        path = tmp_path / f"i.{fmt.lower()}"
        Image.new(mode, (4, 4)).save(path, fmt, **params)
        return identify(str(path), fmt, FORMATS, 10**6)

    assert output_format(info_of("RGB", "JPEG")) == "JPEG"  # type: ignore[arg-type]
    assert output_format(info_of("RGB", "PNG")) == "JPEG"  # type: ignore[arg-type]
    assert output_format(info_of("RGB", "PNG", transparency=(0, 0, 0))) == "PNG"  # type: ignore[arg-type]
    assert output_format(info_of("P", "GIF")) == "PNG"  # type: ignore[arg-type]
    assert output_format(info_of("RGB", "WEBP")) == "WEBP"  # type: ignore[arg-type]


@pytest.mark.parametrize("template", ["{host}", "{user} on {host}, {date}", "no fields", ""])
def test_watermark_templates(template: str) -> None:
    assert check_watermark_template(template) == template


@pytest.mark.parametrize(
    "template", ["{user.__class__}", "{user[0]}", "{user!r}", "{date:%Y}", "{password}", "{"]
)
def test_watermark_templates_cannot_reach_further(template: str) -> None:
    with pytest.raises(ValueError):
        check_watermark_template(template)


def test_watermark_text() -> None:
    assert watermark_text("{user}@{host} {date}", host="h", user="u", date="d") == "u@h d"


MEMORY_PROBE = """
import json, resource, sys, time
from imageguard.files.content import identify
from imageguard.policy.levels import Level
from imageguard.files.renditions import RenditionSpec, make_rendition
info = identify(sys.argv[1], "JPEG", ["JPEG"], 50_000_000)
make_rendition(sys.argv[1], info, RenditionSpec(Level.THUMB, 64), 50_000_000)  # warm up
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
make_rendition(sys.argv[1], info, RenditionSpec(Level.PREVIEW, 1024, "host user"), 50_000_000)
seconds = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_kib": after - before, "seconds": seconds}))
"""


def test_24_megapixel_preview_stays_far_below_the_decoded_size(tmp_path: Path) -> None:
    path = tmp_path / "24mp.jpg"
    Image.radial_gradient("L").resize((6000, 4000)).convert("RGB").save(path, quality=85)
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    measured = json.loads(result.stdout)
    decoded_kib = 6000 * 4000 * 4 // 1024  # Pillow keeps RGB in 4 bytes a pixel
    assert measured["growth_kib"] < decoded_kib * 0.5, measured


def test_check_renders_finds_truncation(tmp_path: Path) -> None:
    path = tmp_path / "t.jpg"
    Image.effect_noise((400, 300), 50).convert("RGB").save(path, "JPEG")
    check_renders(str(path), identify(str(path), "JPEG", FORMATS, 10**6), 10**6)
    path.write_bytes(path.read_bytes()[:3000])
    info = identify(str(path), "JPEG", FORMATS, 10**6)  # the header is still fine
    with pytest.raises(UnreadableImage, match="truncated"):
        check_renders(str(path), info, 10**6)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_malformed_exif_is_ignored_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg"
    Image.new("RGB", (200, 100), "red").save(
        path, exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12"
    )
    out = render(path)
    assert out.size == (64, 32)


def test_any_pillow_failure_is_a_content_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "x.jpg"
    Image.new("RGB", (200, 100)).save(path)
    info = identify(str(path), "JPEG", FORMATS, 10**6)

    def broken(*args: object, **kw: object) -> None:
        raise struct.error("unpack requires a buffer of 4 bytes")

    monkeypatch.setattr(Image.Image, "thumbnail", broken)
    with pytest.raises(UnreadableImage, match="cannot decode it: error: unpack"):
        make_rendition(str(path), info, THUMB, 10**6)


def test_a_replaced_or_linked_file_is_not_rendered(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg"
    Image.new("RGB", (200, 100)).save(path)
    version = FileVersion.of(os.stat(path))
    info = identify(str(path), "JPEG", FORMATS, 10**6)
    Image.new("RGB", (300, 100)).save(path)  # replaced after the check
    with pytest.raises(FileChanged, match="changed since it was checked"):
        make_rendition(str(path), info, THUMB, 10**6, version)
    link = tmp_path / "link.jpg"
    link.symlink_to(path)
    with pytest.raises(UnreadableImage):
        make_rendition(str(link), info, THUMB, 10**6)


def test_single_colour_transparency_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "t.png"
    image = Image.new("RGB", (100, 100), (255, 255, 255))
    image.paste((0, 0, 0), (0, 0, 50, 100))
    image.save(path, transparency=(255, 255, 255))
    out = render(path)
    assert (out.format, out.mode) == ("PNG", "RGBA")
    assert out.getpixel((60, 10))[3] == 0 and out.getpixel((5, 10))[3] == 255


def test_multi_picture_jpeg_renders(tmp_path: Path) -> None:
    path = tmp_path / "phone.jpg"
    frames = [Image.new("RGB", (400, 300), "red"), Image.new("RGB", (40, 30), "blue")]
    frames[0].save(path, "MPO", save_all=True, append_images=frames[1:])
    info = identify(str(path), "JPEG", FORMATS, 10**6)
    out = Image.open(io.BytesIO(make_rendition(str(path), info, THUMB, 10**6)))
    assert out.size == (64, 48) and out.getpixel((5, 5))[0] > 200
