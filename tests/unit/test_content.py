"""Content verification: a file's bytes against the format its extension promises."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from imageguard.errors import (
    ConfigError,
    FormatMismatch,
    ImageTooLarge,
    UnreadableFile,
    UnreadableImage,
)
from imageguard.files.content import ContentChecker, expected_format, identify
from imageguard.files.fileversion import FileVersion

ALLOWED = (".jpg", ".jpeg", ".png", ".gif", ".webp")


def version(path: Path) -> FileVersion:
    return FileVersion.of(os.stat(path))


def png_header(path: Path, width: int, height: int) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + b""
    )


@pytest.mark.parametrize(
    ("name", "fmt", "mode", "transparent"),
    [
        ("a.jpg", "JPEG", "RGB", False),
        ("a.jpeg", "JPEG", "L", False),
        ("a.png", "PNG", "RGBA", True),
        ("a.gif", "GIF", "P", False),
        ("a.webp", "WEBP", "RGB", False),
    ],
)
def test_real_images_pass(
    tmp_path: Path, name: str, fmt: str, mode: str, transparent: bool
) -> None:
    path = tmp_path / name
    Image.new(mode, (30, 20)).save(path, fmt)
    info = ContentChecker(ALLOWED).check(str(path), version(path))
    assert (info.format, info.width, info.height, info.transparent) == (fmt, 30, 20, transparent)


@pytest.mark.parametrize(
    ("name", "content", "error", "message"),
    [
        ("page.jpg", b"<html><script>alert(1)</script></html>", FormatMismatch, "not a JPEG"),
        ("script.png", b"#!/bin/sh\nrm -rf /\n", FormatMismatch, "not a PNG"),
        ("empty.gif", b"", UnreadableImage, "file is empty"),
    ],
)
def test_impostors_are_refused(
    tmp_path: Path, name: str, content: bytes, error: type[Exception], message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(error, match=message):
        ContentChecker(ALLOWED).check(str(path), version(path))


def test_other_allowed_format_under_the_wrong_name(tmp_path: Path) -> None:
    path = tmp_path / "x.gif"
    Image.new("RGB", (4, 4)).save(path, "PNG")
    with pytest.raises(FormatMismatch, match="file is PNG, but its name promises GIF"):
        ContentChecker(ALLOWED).check(str(path), version(path))


def test_formats_nobody_allowed_are_never_parsed(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg"
    Image.new("RGB", (4, 4)).save(path, "BMP")  # Pillow reads BMP, but it is not allowed
    with pytest.raises(FormatMismatch, match="nor any allowed format"):
        identify(str(path), "JPEG", ["JPEG", "PNG"], 10**6)


def test_too_many_pixels(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    png_header(path, 9000, 9000)  # 81 megapixels announced, nothing to decode
    with pytest.raises(ImageTooLarge, match="9000x9000 is 81,000,000 pixels"):
        ContentChecker(ALLOWED, max_pixels=50_000_000).check(str(path), version(path))
    bomb = tmp_path / "bomb.png"
    png_header(bomb, 30000, 30000)  # beyond Pillow's own refusal
    with pytest.raises(ImageTooLarge, match="decompression bomb"):
        ContentChecker(ALLOWED).check(str(bomb), version(bomb))


def test_verdicts_are_kept_per_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.jpg"
    Image.new("RGB", (8, 8)).save(path, "JPEG")
    checker = ContentChecker(ALLOWED)
    calls: list[str] = []
    real = identify

    def counting(*args: object, **kw: object) -> object:
        calls.append(str(args[0]))
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr("imageguard.files.content.identify", counting)
    first = version(path)
    for _ in range(3):
        checker.check(str(path), first)
    assert len(calls) == 1  # one header read for any number of requests
    path.write_text("<html>now a page</html>")
    with pytest.raises(FormatMismatch):
        checker.check(str(path), version(path))
    with pytest.raises(FormatMismatch):  # refusals are kept too
        checker.check(str(path), version(path))
    assert len(calls) == 2


def test_multi_picture_jpeg_is_a_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "phone.jpg"
    frames = [Image.new("RGB", (40, 30), "red"), Image.new("RGB", (20, 15), "blue")]
    frames[0].save(path, "MPO", save_all=True, append_images=frames[1:])
    assert Image.open(path).format == "MPO"  # what Pillow calls it
    info = ContentChecker(ALLOWED).check(str(path), version(path))
    assert (info.format, info.width) == ("JPEG", 40)


def test_refused_reads_are_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.jpg"
    Image.new("RGB", (8, 8)).save(path, "JPEG")
    checker = ContentChecker(ALLOWED)
    real_open = Image.open

    def refused(*args: object, **kw: object) -> object:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("imageguard.files.content.Image.open", refused)
    with pytest.raises(UnreadableFile, match="Permission denied"):
        checker.check(str(path), version(path))
    monkeypatch.setattr("imageguard.files.content.Image.open", real_open)
    assert checker.check(str(path), version(path)).format == "JPEG"


def test_unknown_extension_cannot_be_verified() -> None:
    assert expected_format(".JPG") == "JPEG"
    with pytest.raises(ConfigError, match="verify_content off"):
        expected_format(".svg")
    with pytest.raises(ConfigError):
        ContentChecker([".jpg", ".svg"])
