"""``make demo`` end to end: the demo site behind a real Apache, driven like a browser.

The expected rights of each demo user are written out here, from the demo's documented
rules, not computed with the demo's own code: if a rule or an image changes, this table
has to change with it, on purpose.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from imageguard.store import AclStore
from imageguard_devtools.demo.site import DemoSite, build_demo
from imageguard_devtools.localserver import make_workdir

from .httpfetch import Response, fetch

pytestmark = pytest.mark.apache

ALL_IMAGES = {
    "public/welcome.jpg",
    "public/harbour.png",
    "gallery/sunrise.jpg",
    "gallery/forest.webp",
    "gallery/ocean.png",
    "gallery/draft.jpg",
    "gallery/panorama.webp",
    "staff/roadmap.png",
    "staff/payroll.jpg",
    "users/alice/holiday.jpg",
    "users/bob/garden.webp",
    "users/carol/studio.png",
}
PUBLIC = {"public/welcome.jpg", "public/harbour.png"}
# gallery/ is for everyone logged in, except draft.jpg (denied; group editors may): staff
# get the originals, bob thumbnails, everyone else watermarked previews.
GALLERY = {
    "gallery/sunrise.jpg",
    "gallery/forest.webp",
    "gallery/ocean.png",
    "gallery/panorama.webp",
}

#: user -> (password, the images Apache must send; every other image is refused)
EXPECTED: dict[str, tuple[str, set[str]]] = {
    # group staff, from the ACL store
    "alice": (
        "wonderland",
        PUBLIC | GALLERY | {"staff/roadmap.png", "staff/payroll.jpg"} | {"users/alice/holiday.jpg"},
    ),
    "bob": ("builder", PUBLIC | GALLERY | {"users/bob/garden.webp"}),
    # group editors, from the session
    "carol": ("christmas", PUBLIC | GALLERY | {"gallery/draft.jpg", "users/carol/studio.png"}),
}


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoSite]:
    workdir = make_workdir("imageguard-demo-test-")
    try:
        site = build_demo(workdir, 0, "event")
        with site.server:
            yield site
    finally:
        if not os.environ.get("IMAGEGUARD_KEEP_WORKDIR"):
            shutil.rmtree(workdir, ignore_errors=True)


def request(
    site: DemoSite,
    path: str,
    *,
    method: str = "GET",
    cookie: str | None = None,
    form: dict[str, str] | None = None,
    accept: str = "image/avif,image/webp,*/*",
) -> Response:
    """One request; returns (status, lower-cased headers, body). Redirects not followed."""
    headers = {"Accept": accept}
    body = None
    if cookie:
        headers["Cookie"] = cookie
    if form is not None:
        body = urllib.parse.urlencode(form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return fetch(site.server.port, path, method=method, headers=headers, body=body)


def login(site: DemoSite, user: str, password: str, back: str | None = None) -> Response:
    form = {"user": user, "password": password}
    if back is not None:
        form["back"] = back
    return request(site, "/login", method="POST", form=form, accept="text/html")


def cookie_of(response: Response) -> str:
    status, headers, body = response
    assert status == 303, body[:500]
    found = re.search(r"pysid=([0-9a-f]{32})", headers.get("set-cookie", ""))
    assert found, headers
    return f"pysid={found.group(1)}"


def image_status(site: DemoSite, cookie: str | None) -> dict[str, int]:
    return {rel: request(site, f"/images/{rel}", cookie=cookie)[0] for rel in sorted(ALL_IMAGES)}


def gallery_images(page: bytes) -> set[str]:
    return set(re.findall(r'<img src="/images/([^"]+)"', page.decode()))


def test_help_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "imageguard_devtools.demo", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for option in ("--port", "--workdir", "--mpm"):
        assert option in result.stdout


def test_demo_tree_on_disk(demo: DemoSite) -> None:
    assert set(demo.image_paths()) == ALL_IMAGES
    assert "PythonAuthzHandler imageguard.handlers" in demo.server.config.conf_path.read_text()


def test_root_goes_to_gallery(demo: DemoSite) -> None:
    status, headers, _ = request(demo, "/", accept="text/html")
    assert status in (301, 302, 303)
    assert headers["location"].endswith("/gallery")


def test_gallery_without_login_offers_the_login(demo: DemoSite) -> None:
    status, headers, body = request(demo, "/gallery", accept="text/html")
    if status in (302, 303):
        assert "/login" in headers["location"]
        return
    assert status == 200
    assert b'action="/login"' in body
    assert b"Not logged in" in body
    assert "set-cookie" not in headers  # looking is not a reason to start a session
    assert gallery_images(body) == ALL_IMAGES


def test_login_form_keeps_back(demo: DemoSite) -> None:
    status, _, body = request(
        demo, "/login?back=%2Fimages%2Fstaff%2Froadmap.png", accept="text/html"
    )
    assert status == 200
    assert b'name="password"' in body
    assert b'name="back" value="/images/staff/roadmap.png"' in body


@pytest.mark.parametrize(
    ("user", "password"), [("alice", "builder"), ("alice", ""), ("mallory", "wonderland")]
)
def test_wrong_password_fails(demo: DemoSite, user: str, password: str) -> None:
    status, headers, body = login(demo, user, password)
    assert status == 200
    assert "location" not in headers
    assert "pysid=" not in headers.get("set-cookie", "")
    assert b"Wrong user name or password" in body


@pytest.mark.parametrize("user", sorted(EXPECTED))
def test_each_user_sees_exactly_their_images(demo: DemoSite, user: str) -> None:
    password, allowed = EXPECTED[user]
    response = login(demo, user, password)
    cookie = cookie_of(response)
    assert response[1]["location"] == "/gallery"

    status, _, page = request(demo, "/gallery", cookie=cookie, accept="text/html")
    assert status == 200
    assert f"Gallery for {user}".encode() in page
    assert gallery_images(page) == ALL_IMAGES

    got = image_status(demo, cookie)
    assert {rel for rel, code in got.items() if code == 200} == allowed, got
    assert {code for rel, code in got.items() if rel not in allowed} <= {401, 403}, got


def test_anonymous_sees_only_public(demo: DemoSite) -> None:
    got = image_status(demo, None)
    assert {rel for rel, code in got.items() if code == 200} == PUBLIC, got
    assert {code for rel, code in got.items() if rel not in PUBLIC} <= {401, 403}, got


@pytest.mark.parametrize(
    ("user", "password", "size", "fmt"),
    [
        ("alice", "wonderland", (1280, 960), "PNG"),  # staff: the original
        ("carol", "christmas", (1024, 768), "JPEG"),  # a watermarked preview
        ("bob", "builder", (256, 192), "JPEG"),  # thumbnails only
    ],
)
def test_gallery_level_decides_what_arrives(
    demo: DemoSite, user: str, password: str, size: tuple[int, int], fmt: str
) -> None:
    cookie = cookie_of(login(demo, user, password))
    status, _, body = request(demo, "/images/gallery/ocean.png", cookie=cookie)
    assert status == 200
    image = Image.open(io.BytesIO(body))
    assert (image.size, image.format) == (size, fmt)
    original = (demo.images / "gallery/ocean.png").read_bytes()
    assert (body == original) == (user == "alice")


def test_preview_watermarks_differ_by_viewer(demo: DemoSite) -> None:
    carol = cookie_of(login(demo, "carol", "christmas"))
    with AclStore(demo.db) as store:
        store.grant("gallery/", "user:bob", "preview")
    try:
        bob = cookie_of(login(demo, "bob", "builder"))
        one = request(demo, "/images/gallery/sunrise.jpg", cookie=carol)[2]
        two = request(demo, "/images/gallery/sunrise.jpg", cookie=bob)[2]
        assert Image.open(io.BytesIO(one)).size == Image.open(io.BytesIO(two)).size
        assert one != two  # "imageguard demo · carol · ..." against "... bob ..."
    finally:
        with AclStore(demo.db) as store:
            store.grant("gallery/", "user:bob", "thumb")


def test_allowed_image_is_the_file_on_disk(demo: DemoSite) -> None:
    cookie = cookie_of(login(demo, "alice", "wonderland"))
    for rel, mime in [("users/alice/holiday.jpg", "image/jpeg"), ("staff/roadmap.png", None)]:
        status, headers, body = request(demo, f"/images/{rel}", cookie=cookie)
        assert status == 200
        assert body == (demo.images / rel).read_bytes()
        if mime:
            assert headers["content-type"] == mime


def test_direct_image_link_goes_through_login_and_back(demo: DemoSite) -> None:
    target = "/images/staff/roadmap.png"
    status, headers, _ = request(demo, target, accept="text/html")
    assert status == 302
    location = headers["location"]
    assert location.startswith("/login?back=")
    back = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["back"][0]
    assert back == target
    response = login(demo, "alice", "wonderland", back=back)
    assert response[1]["location"] == target
    assert request(demo, target, cookie=cookie_of(response))[0] == 200


@pytest.mark.parametrize("back", ["//evil.example/x", "https://evil.example/", "/\\evil", ""])
def test_login_never_redirects_off_site(demo: DemoSite, back: str) -> None:
    response = login(demo, "bob", "builder", back=back)
    cookie_of(response)
    assert response[1]["location"] == "/gallery"


def test_logout_ends_the_session(demo: DemoSite) -> None:
    cookie = cookie_of(login(demo, "bob", "builder"))
    assert request(demo, "/images/users/bob/garden.webp", cookie=cookie)[0] == 200
    status, headers, _ = request(demo, "/logout", method="POST", cookie=cookie)
    assert status == 303
    assert "1970" in headers.get("set-cookie", "")  # the cookie is expired
    assert request(demo, "/images/users/bob/garden.webp", cookie=cookie)[0] == 401


def test_a_new_rule_applies_at_once(demo: DemoSite) -> None:
    cookie = cookie_of(login(demo, "bob", "builder"))
    assert request(demo, "/images/gallery/draft.jpg", cookie=cookie)[0] == 403
    with AclStore(demo.db) as store:
        store.grant("gallery/draft.jpg", "user:bob", "full")
    try:
        assert request(demo, "/images/gallery/draft.jpg", cookie=cookie)[0] == 200
    finally:
        with AclStore(demo.db) as store:
            store.revoke("gallery/draft.jpg", "user:bob")
    assert request(demo, "/images/gallery/draft.jpg", cookie=cookie)[0] == 403


def test_no_python_errors_logged(demo: DemoSite) -> None:
    log = demo.server.error_log_text()
    assert "Traceback" not in log, log[-3000:]
    assert "internal error" not in log


def test_workdir_is_reachable(demo: DemoSite) -> None:
    # make_workdir's directory stays usable by Apache's user after build_demo recreated it.
    assert Path(demo.workdir).stat().st_mode & 0o005 == 0o005
