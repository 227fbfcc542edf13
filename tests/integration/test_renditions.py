"""Renditions and content verification behind a real Apache (event and prefork).

Three viewers of the same pictures: ``tina`` has ``thumb``, ``pete`` has ``preview`` and
``fred`` has ``full`` on ``r/``. Every answer is decoded with Pillow here; the originals
are compared by hash. ``/strict`` serves the same tree without downgrading, with a
watermark naming the viewer and the placeholder padlock for refusals.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import os
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from imageguard.files.placeholder import locked_image
from imageguard.files.renditioncache import root_folder

from .conftest import Site, cli

pytestmark = pytest.mark.apache

IMG = "/images"
RULES = [
    ("r/", "user:tina", "thumb"),
    ("r/", "user:pete", "preview"),
    ("r/", "user:fred", "full"),
]


def photo(path: Path, size: tuple[int, int] = (1600, 1200), seed: int = 0) -> None:
    """A JPEG with a gradient and shapes (so that a watermark shows), EXIF and GPS."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    image = Image.merge(
        "RGB",
        (image.getchannel(0), image.rotate(90).getchannel(0), Image.new("L", size, 90 + seed)),
    )
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    exif.get_ifd(0x8825)[2] = (48.0, 51.0, 24.0)  # GPSLatitude
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=90, exif=exif, comment=b"private comment")


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG announcing *width* x *height* pixels with almost no data: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def rsite(site: Site) -> Iterator[Site]:
    """The shared site with the pictures and rules of this module."""
    r = site.root / "r"
    photo(r / "photo.jpg")
    photo(r / "edited.jpg")
    photo(r / "range.jpg")
    for n in range(3):
        photo(r / f"burst-{n}.jpg", (1200, 900), seed=n)
    Image.new("RGBA", (600, 400), (20, 120, 200, 128)).save(r / "alpha.png")
    (r / "page.jpg").write_text("<html><script>alert(document.cookie)</script></html>\n")
    (r / "empty.jpg").write_bytes(b"")
    Image.new("RGB", (300, 200), "green").save(r / "png-named.gif", "PNG")
    good = (r / "photo.jpg").read_bytes()
    (r / "truncated.jpg").write_bytes(good[: len(good) // 3])
    png_header_only(r / "bomb.png", 20_000, 20_000)  # beyond Pillow's own limit
    png_header_only(r / "big.png", 8_000, 8_000)  # beyond imageguard.max_pixels only
    for path in r.iterdir():
        path.chmod(0o644)
    for rule in RULES:
        cli(site.db, "grant", *rule)
    yield site


def get(site: Site, path: str, user: str | None, **kw: object) -> tuple[int, dict[str, str], bytes]:
    cookie = site.cookie_for(user) if user else None
    return site.request(path, cookie=cookie, **kw)  # type: ignore[arg-type]


def decoded(body: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(body))
    image.load()
    return image


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_files(site: Site, relpath: str) -> list[Path]:
    directory = site.cache / root_folder(os.path.realpath(site.root)) / relpath
    return sorted(directory.iterdir()) if directory.is_dir() else []


# ----------------------------------------------------------------------------- levels


def test_full_viewer_gets_the_original_bytes(rsite: Site) -> None:
    status, headers, body = get(rsite, f"{IMG}/r/photo.jpg", "fred")
    assert status == 200
    assert sha(body) == sha((rsite.root / "r/photo.jpg").read_bytes())
    assert headers["content-type"] == "image/jpeg"


def test_thumb_viewer_gets_a_small_clean_rendition(rsite: Site) -> None:
    status, headers, body = get(rsite, f"{IMG}/r/photo.jpg", "tina")
    assert status == 200, body[:200]
    assert headers["content-type"] == "image/jpeg"
    assert headers["cache-control"].startswith("private")
    image = decoded(body)
    assert image.size == (256, 192)
    # No metadata of the original survives: no EXIF (maker, GPS), no comment.
    assert not image.getexif()
    assert "comment" not in image.info
    assert b"Camera maker" not in body and b"private comment" not in body


def test_preview_viewer_gets_a_watermarked_preview(rsite: Site) -> None:
    status, _, body = get(rsite, f"{IMG}/r/photo.jpg", "pete")
    assert status == 200
    preview = decoded(body)
    assert preview.size == (1024, 768)
    assert not preview.getexif()
    # The same picture scaled without a watermark differs visibly from what was served.
    plain = Image.open(rsite.root / "r/photo.jpg").convert("RGB").resize(preview.size)
    difference = ImageChops.difference(plain, preview.convert("RGB")).convert("L")
    changed = difference.point(lambda v: 255 if v > 40 else 0).histogram()[255] / (1024 * 768)
    assert changed > 0.03, f"only {changed:.1%} of the pixels differ: no visible watermark"
    # ... while the picture itself is still the same one (a close match on average).
    assert ImageStat.Stat(difference).mean[0] < 40


@pytest.mark.parametrize(
    ("user", "variant", "size"),
    [
        ("fred", "thumb", (256, 192)),
        ("fred", "preview", (1024, 768)),
        ("pete", "thumb", (256, 192)),
        ("tina", "preview", (256, 192)),  # downgraded to what the level allows
        ("tina", "thumb", (256, 192)),
    ],
)
def test_variant_asked_for(rsite: Site, user: str, variant: str, size: tuple[int, int]) -> None:
    status, _, body = get(rsite, f"{IMG}/r/photo.jpg?v={variant}", user)
    assert status == 200
    assert decoded(body).size == size


def test_unknown_variant_is_a_bad_request(rsite: Site) -> None:
    assert get(rsite, f"{IMG}/r/photo.jpg?v=huge", "fred")[0] == 400
    assert "unknown variant 'huge'" in rsite.error_log()


def test_transparency_gives_a_png(rsite: Site) -> None:
    status, headers, body = get(rsite, f"{IMG}/r/alpha.png", "tina")
    assert status == 200 and headers["content-type"] == "image/png"
    image = decoded(body)
    assert image.mode == "RGBA" and image.size == (256, 171)
    assert image.getpixel((10, 10))[3] == 128


def test_no_downgrade_refuses_with_a_placeholder(rsite: Site) -> None:
    url = "/strict/r/photo.jpg"
    status, headers, body = get(rsite, url, "tina")
    assert status == 403
    assert headers["content-type"] == "image/png"
    assert body == locked_image()
    assert "no-store" in headers["cache-control"]
    assert "imageguard.downgrade off" in rsite.error_log()
    # A page navigation gets Apache's ordinary error page, not a picture.
    status, headers, body = get(rsite, url, "tina", headers={"Accept": "text/html"})
    assert status == 403 and headers["content-type"].startswith("text/html")
    # What the level allows is still served when asked for.
    assert get(rsite, url + "?v=thumb", "tina")[0] == 200


def test_watermark_names_the_viewer(rsite: Site) -> None:
    # /strict's watermark is "{user} {date}": each viewer gets a preview of their own.
    a = get(rsite, "/strict/r/photo.jpg?v=preview", "pete")
    b = get(rsite, "/strict/r/photo.jpg?v=preview", "fred")
    assert a[0] == b[0] == 200
    assert sha(a[2]) != sha(b[2])
    names = [p.name for p in cache_files(rsite, "r/photo.jpg")]
    assert len({n for n in names if ".preview1024-" in n}) >= 2  # one per viewer


# ----------------------------------------------------------------------------- the cache


def test_concurrent_first_requests_make_one_file(rsite: Site) -> None:
    relpath = "r/burst-0.jpg"
    assert cache_files(rsite, relpath) == []
    cookie = rsite.cookie_for("tina")

    def one(_: int) -> tuple[int, bytes]:
        status, _, body = rsite.request(f"{IMG}/{relpath}", cookie=cookie)
        return status, body

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(one, range(50)))
    assert {status for status, _ in answers} == {200}
    bodies = {body for _, body in answers}
    assert len(bodies) == 1  # every client got the same, complete file
    assert decoded(bodies.pop()).size == (256, 192)
    files = cache_files(rsite, relpath)
    assert len(files) == 1, files  # one rendition, no temporary file left behind
    assert files[0].read_bytes() == answers[0][1]


def test_edited_original_gets_a_new_rendition(rsite: Site) -> None:
    url = f"{IMG}/r/edited.jpg?v=thumb"
    first = get(rsite, url, "fred")
    assert first[0] == 200
    before = cache_files(rsite, "r/edited.jpg")
    path = rsite.root / "r/edited.jpg"
    Image.new("RGB", (800, 800), "purple").save(path, "JPEG")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
    second = get(rsite, url, "fred")
    assert second[0] == 200
    assert decoded(second[2]).size == (256, 256)
    assert decoded(second[2]).getpixel((128, 128))[0] > 100  # purple, not the old picture
    assert second[1]["etag"] != first[1]["etag"]
    after = cache_files(rsite, "r/edited.jpg")
    assert len(after) == len(before) + 1


def test_range_head_and_304_on_a_rendition(rsite: Site) -> None:
    url = f"{IMG}/r/range.jpg?v=preview"
    status, headers, whole = get(rsite, url, "fred")
    assert status == 200
    original_etag = get(rsite, f"{IMG}/r/range.jpg", "fred")[1]["etag"]
    assert headers["etag"] != original_etag  # each variant has its own validator
    status, part_headers, part = get(rsite, url, "fred", headers={"Range": "bytes=100-1099"})
    assert status == 206
    assert part == whole[100:1100]
    assert part_headers["content-range"] == f"bytes 100-1099/{len(whole)}"
    status, head_headers, empty = get(rsite, url, "fred", method="HEAD")
    assert status == 200 and empty == b""
    assert int(head_headers["content-length"]) == len(whole)
    status, _, body = get(rsite, url, "fred", headers={"If-None-Match": headers["etag"]})
    assert status == 304 and body == b""
    status, _, _ = get(rsite, url, "fred", headers={"If-Modified-Since": headers["last-modified"]})
    assert status == 304


def test_warm_then_serve_from_the_cache(rsite: Site) -> None:
    relpath = "r/burst-1.jpg"
    result = cli(
        rsite.db,
        "renditions",
        "warm",
        "--root",
        str(rsite.root),
        "--cache-dir",
        str(rsite.cache),
        relpath,
    )
    assert "1 rendition(s) made" in result.stdout, result.stdout + result.stderr
    files = cache_files(rsite, relpath)
    assert len(files) == 1
    if os.geteuid() == 0:  # root became the cache's owner before writing in it
        assert files[0].stat().st_uid == rsite.cache.stat().st_uid != 0
    made = files[0].stat().st_mtime_ns
    status, _, body = get(rsite, f"{IMG}/{relpath}", "tina")
    assert status == 200 and body == files[0].read_bytes()
    assert cache_files(rsite, relpath) == files and files[0].stat().st_mtime_ns == made


def test_purge_removes_renditions_of_deleted_originals(rsite: Site) -> None:
    relpath = "r/burst-2.jpg"
    assert get(rsite, f"{IMG}/{relpath}", "tina")[0] == 200
    assert len(cache_files(rsite, relpath)) == 1
    (rsite.root / relpath).unlink()
    result = cli(
        rsite.db, "renditions", "purge", "--root", str(rsite.root), "--cache-dir", str(rsite.cache)
    )
    assert result.returncode == 0, result.stderr
    assert "removed " in result.stdout
    assert not (rsite.cache / relpath).exists()
    assert cache_files(rsite, "r/photo.jpg")  # renditions of existing originals stay
    again = cli(
        rsite.db, "renditions", "purge", "--root", str(rsite.root), "--cache-dir", str(rsite.cache)
    )
    assert again.stdout.startswith("removed 0 file(s)")  # everything left is current


# ----------------------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    ("relpath", "reason"),
    [
        ("r/page.jpg", "file is not a JPEG image"),
        ("r/empty.jpg", "file is empty"),
        ("r/png-named.gif", "file is PNG, but its name promises GIF"),
    ],
)
def test_bytes_that_are_not_the_promised_image_are_refused(
    rsite: Site, relpath: str, reason: str
) -> None:
    # Only a viewer the ACL lets see the file learns that it is not an image.
    for user, expected in (("fred", 415), (None, 401)):
        status, headers, body = get(rsite, f"{IMG}/{relpath}", user)
        assert status == expected
        assert b"<script>" not in body
        assert headers["content-type"].startswith("text/html")  # Apache's error page
    assert f"{relpath}: {reason}" in rsite.error_log()


@pytest.mark.parametrize(
    ("relpath", "reason"),
    [
        ("r/bomb.png", "Pillow refuses it as a decompression bomb"),
        ("r/big.png", "8000x8000 is 64,000,000 pixels, more than the 50,000,000"),
    ],
)
def test_decompression_bomb_is_refused_quickly(rsite: Site, relpath: str, reason: str) -> None:
    started = time.monotonic()
    for variant in ("", "?v=thumb"):
        assert get(rsite, f"{IMG}/{relpath}{variant}", "fred")[0] == 415
    assert time.monotonic() - started < 2
    assert f"{relpath}: {reason}" in rsite.error_log()
    assert cache_files(rsite, relpath) == []


def test_truncated_image_is_refused_without_a_cache_entry(rsite: Site) -> None:
    assert get(rsite, f"{IMG}/r/truncated.jpg", "fred")[0] == 200  # the original, as it is
    assert get(rsite, f"{IMG}/r/truncated.jpg?v=thumb", "fred")[0] == 415
    assert get(rsite, f"{IMG}/r/truncated.jpg?v=thumb", "tina")[0] == 415
    assert "image file is truncated" in rsite.error_log()
    # The failed rendition is remembered for renditions only: full viewers still get it.
    for _ in range(4):  # whichever process answers
        assert get(rsite, f"{IMG}/r/truncated.jpg", "fred")[0] == 200
    files = cache_files(rsite, "r/truncated.jpg")
    assert files == [], files  # no partial rendition, no temporary file


def test_verify_command_reports_the_impostors(rsite: Site) -> None:
    result = cli(rsite.db, "verify", "--root", str(rsite.root), "r", check=False)
    assert result.returncode == 1
    out = result.stderr + result.stdout
    for relpath in ("r/page.jpg", "r/empty.jpg", "r/png-named.gif", "r/bomb.png", "r/big.png"):
        assert relpath in out
    assert "r/photo.jpg" not in out
    deep = cli(rsite.db, "verify", "--deep", "--root", str(rsite.root), "r", check=False)
    assert "r/truncated.jpg: cannot decode it" in deep.stderr + deep.stdout


def test_no_tracebacks_in_the_log(rsite: Site) -> None:
    log = rsite.error_log()
    assert "Traceback" not in log
    assert "internal error" not in log
