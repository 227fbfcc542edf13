"""imageguard's three handlers behind a real Apache 2.4 + mod_python, both MPMs.

Sessions are made by a real mod_python application (apps/sessionapp.py); rules come from
the real CLI (conftest.RULES). Every assertion is about what a browser would get.
"""

from __future__ import annotations

import hashlib
import threading
import time
import urllib.parse

import pytest

from .conftest import Site, cli

pytestmark = pytest.mark.apache

IMG = "/images"


def status(site: Site, path: str, **kw: object) -> int:
    return site.request(path, **kw)[0]  # type: ignore[arg-type]


# --------------------------------------------------------------------------- access gate


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/gate/ok.jpg", 200),
        ("/NOTES.JPG", 200),  # extension check is case-insensitive
        ("/gate/notes.txt", 403),  # extension not allowed
        ("/gate/notes.txt/x.jpg", 403),  # path_info trick
        ("/gate/ok.jpg/x.jpg", 403),  # path_info behind an image
        ("/.hidden/x.jpg", 403),  # hidden segment
        ("/.htaccess", 403),  # hidden file
        ("/gate/dir.jpg", 403),  # a directory named like an image
        ("/gate/fifo.jpg", 403),  # not a regular file
        ("/gate/link-out.jpg", 403),  # symlink leaving the root
        ("/gate/text-link.jpg", 403),  # symlink to a file with a refused extension
        ("/gate/missing.jpg", 404),
        ("/gallery/", 403),  # directory listing
    ],
)
def test_gate_refusals(site: Site, path: str, expected: int) -> None:
    cookie = site.cookie_for("gatekeeper")
    got, headers, body = site.request(IMG + path, cookie=cookie)
    assert got == expected, (path, body[:200])
    if expected != 200:
        assert b"Traceback" not in body
        assert "set-cookie" not in headers


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_gate_refuses_other_methods_with_405(site: Site, method: str) -> None:
    got, headers, _ = site.request(f"{IMG}/gate/ok.jpg", method=method, cookie=site.cookie_for("x"))
    assert got == 405
    assert sorted(headers["allow"].replace(" ", "").split(",")) == ["GET", "HEAD"]


@pytest.mark.parametrize(
    "raw",
    [
        "/images/../outside/outside.jpg",
        "/images/gate/..%2f..%2foutside/outside.jpg",
        "/images/%2e%2e/outside/outside.jpg",
        "/images/gallery/cat.jpg%00.txt",
        "/images/gallery/cat.jpg%0a",
    ],
)
def test_hostile_urls_never_serve(site: Site, raw: str) -> None:
    got, _, body = site.request(raw, cookie=site.cookie_for("x"))
    assert got in (400, 403, 404), raw
    assert b"Traceback" not in body


def test_gate_refusal_logged_in_one_line(site: Site) -> None:
    site.request(f"{IMG}/gate/notes.txt", cookie=site.cookie_for("x"))
    lines = [ln for ln in site.error_log().splitlines() if "extension '.txt' not allowed" in ln]
    assert lines and "/images/gate/notes.txt" in lines[-1]


@pytest.mark.parametrize("prefix", ["/ht", "/ht-any"])
def test_htaccess_gate(site: Site, prefix: str) -> None:
    got, headers, body = site.request(f"{prefix}/a.jpg")
    assert got == 200 and headers["content-type"] == "image/jpeg"
    assert body == (site.workdir / prefix.lstrip("/") / "a.jpg").read_bytes()
    assert status(site, f"{prefix}/a.txt") == 403
    assert status(site, f"{prefix}/a.jpg/x.jpg") == 403
    assert status(site, f"{prefix}/.htaccess") == 403
    assert status(site, f"{prefix}/a.jpg", method="POST") == 405


# --------------------------------------------------------------------------- identity & ACL

# (who logs in, groups in the session, image, expected status)
CASES = [
    ("alice", "", "/gallery/cat.jpg", 200),  # gallery/ authenticated full
    ("bob", "", "/gallery/dog.png", 200),
    ("alice", "", "/private/secret.jpg", 200),  # private/ user:alice
    ("bob", "", "/private/secret.jpg", 403),
    ("bob", "staff", "/gallery/staff-only.jpg", 200),  # group from the session
    ("alice", "", "/gallery/staff-only.jpg", 403),  # exact deny for everyone else
    ("carol", "", "/gallery/editors.jpg", 200),  # group from the store
    ("alice", "", "/gallery/editors.jpg", 403),
    ("alice", "", "/users/alice/me.jpg", 200),  # users/{user}/**
    ("alice", "", "/users/bob/me.jpg", 403),
    ("alice", "", "/link-in.jpg", 200),  # rules apply to the real file
    ("bob", "", "/link-in.jpg", 403),
]


@pytest.mark.parametrize(("user", "groups", "path", "expected"), CASES)
def test_acl_table(site: Site, user: str, groups: str, path: str, expected: int) -> None:
    got, headers, body = site.request(IMG + path, cookie=site.cookie_for(user, groups))
    assert got == expected, body[:200]
    if expected == 200:
        assert headers["cache-control"] == "private, max-age=0"
        assert "Cookie" in headers["vary"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["content-type"].startswith("image/")
        original = (site.root / path.lstrip("/")).resolve().read_bytes()
        assert body == original
    else:
        assert "no-store" in headers.get("cache-control", "")
    assert "set-cookie" not in headers


def test_anonymous_sees_only_anyone_images(site: Site) -> None:
    got, headers, _ = site.request(f"{IMG}/gallery/public.jpg")
    assert got == 200 and headers["cache-control"].startswith("private")
    assert status(site, f"{IMG}/gallery/cat.jpg") == 401
    assert "set-cookie" not in site.request(f"{IMG}/gallery/cat.jpg")[1]


def test_anonymous_page_navigation_goes_to_login(site: Site) -> None:
    got, headers, _ = site.request(
        f"{IMG}/gallery/cat.jpg?x=1", headers={"Accept": "text/html,application/xhtml+xml"}
    )
    assert got == 302
    location = headers["location"]
    assert location.startswith("/app/login?back=")
    back = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["back"][0]
    assert back == f"{IMG}/gallery/cat.jpg?x=1"


@pytest.mark.parametrize(
    ("cookie", "why"),
    [
        ("pysid=0123456789abcdef0123456789abcdef", "forged sid: no such session"),
        ("pysid=../../../../etc/passwd", "path trick in the sid"),
        ("pysid=ZZZ", "malformed sid"),
        ("other=1", "no session cookie"),
    ],
)
def test_invalid_sessions_are_anonymous(site: Site, cookie: str, why: str) -> None:
    got, _, body = site.request(f"{IMG}/gallery/cat.jpg", cookie=cookie)
    assert got == 401, why
    assert b"Traceback" not in body
    assert status(site, f"{IMG}/gallery/public.jpg", cookie=cookie) == 200


def test_forged_cookie_is_logged(site: Site) -> None:
    site.request(f"{IMG}/gallery/cat.jpg", cookie="pysid=../../etc/passwd")
    lines = [ln for ln in site.error_log().splitlines() if "ignored login cookie" in ln]
    assert lines and "malformed session cookie" in lines[-1]


def test_session_without_user_is_anonymous(site: Site) -> None:
    _, headers, _ = site.request("/app/visit")
    cookie = headers["set-cookie"].split(";")[0]
    assert status(site, f"{IMG}/gallery/cat.jpg", cookie=cookie) == 401


def test_expired_session_is_refused(site: Site) -> None:
    cookie = site.login("eve", timeout=1)
    assert status(site, f"{IMG}/gallery/cat.jpg", cookie=cookie) == 200
    time.sleep(2.2)
    assert status(site, f"{IMG}/gallery/cat.jpg", cookie=cookie) == 401


def test_logout_is_seen_on_next_request(site: Site) -> None:
    cookie = site.login("dave")
    assert status(site, f"{IMG}/gallery/cat.jpg", cookie=cookie) == 200
    assert site.request("/app/logout", cookie=cookie)[0] == 200
    assert status(site, f"{IMG}/gallery/cat.jpg", cookie=cookie) == 401


def test_user_is_in_access_log(site: Site) -> None:
    site.request(f"{IMG}/gallery/dog.png", cookie=site.cookie_for("bob"))
    lines = site.server.wait_for_access_log("bob [")
    assert any("/images/gallery/dog.png" in ln for ln in lines), lines[-3:]


def test_image_requests_do_not_wait_for_a_locked_session(site: Site) -> None:
    """A page request holding its session lock must not stall that user's images."""
    cookie = site.login("frank")
    holder = threading.Thread(
        target=site.request, args=("/app/hold?seconds=3",), kwargs={"cookie": cookie}
    )
    holder.start()
    time.sleep(0.5)
    started = time.monotonic()
    got = status(site, f"{IMG}/gallery/cat.jpg", cookie=cookie)
    took = time.monotonic() - started
    holder.join()
    assert got == 200
    assert took < 1.5, f"image waited {took:.2f}s for the session lock"


# --------------------------------------------------------------------------- Apache sends it


def test_range_head_and_304_are_apaches(site: Site) -> None:
    cookie = site.cookie_for("alice")
    path = f"{IMG}/gallery/cat.jpg"
    original = (site.root / "gallery/cat.jpg").read_bytes()
    got, headers, body = site.request(path, cookie=cookie)
    assert got == 200 and body == original
    etag = headers["etag"]
    got, headers, body = site.request(path, cookie=cookie, headers={"Range": "bytes=10-99"})
    assert got == 206 and body == original[10:100]
    assert headers["content-range"] == f"bytes 10-99/{len(original)}"
    got, headers, body = site.request(path, method="HEAD", cookie=cookie)
    assert got == 200 and body == b"" and int(headers["content-length"]) == len(original)
    got, _, body = site.request(path, cookie=cookie, headers={"If-None-Match": etag})
    assert got == 304 and body == b""
    # A refused user gets no 304 either: conditional requests pass the ACL first.
    got, _, _ = site.request(
        "/images/private/secret.jpg", cookie=site.cookie_for("bob"), headers={"If-None-Match": etag}
    )
    assert got == 403


# --------------------------------------------------------------------------- live changes


def test_grant_and_revoke_seen_on_next_request(site: Site) -> None:
    cookie = site.cookie_for("gina")
    path = f"{IMG}/private/secret.jpg"
    assert status(site, path, cookie=cookie) == 403
    cli(site.db, "grant", "private/secret.jpg", "user:gina", "full")
    assert status(site, path, cookie=cookie) == 200
    cli(site.db, "revoke", "private/secret.jpg", "user:gina")
    assert status(site, path, cookie=cookie) == 403
    cli(site.db, "group", "add", "editors", "gina")
    assert status(site, f"{IMG}/gallery/editors.jpg", cookie=cookie) == 200
    cli(site.db, "group", "remove", "editors", "gina")
    assert status(site, f"{IMG}/gallery/editors.jpg", cookie=cookie) == 403


def test_many_requests_with_changes_never_serve_stale_grants(site: Site) -> None:
    """After each revoke, every later request is refused, on every worker."""
    cookie = site.cookie_for("hank")
    path = f"{IMG}/private/secret.jpg"
    for _ in range(3):
        cli(site.db, "grant", "private/secret.jpg", "user:hank", "full")
        assert {status(site, path, cookie=cookie) for _ in range(10)} == {200}
        cli(site.db, "revoke", "private/secret.jpg", "user:hank")
        assert {status(site, path, cookie=cookie) for _ in range(10)} == {403}


# --------------------------------------------------------------------------- DbmSession


def test_dbm_sessions_and_404_deny(site: Site) -> None:
    cookie = site.login("alice", app="/dbapp")
    got, headers, body = site.request("/dbimages/private/secret.jpg", cookie=cookie)
    assert got == 200 and headers["cache-control"] == "private, max-age=60"
    assert (
        hashlib.sha256(body).digest()
        == hashlib.sha256((site.root / "private/secret.jpg").read_bytes()).digest()
    )
    bob = site.login("bob", app="/dbapp")
    assert status(site, "/dbimages/private/secret.jpg", cookie=bob) == 404
    assert site.request("/dbapp/logout", cookie=cookie)[0] == 200
    # Where existence is hidden, a viewer who is not logged in gets 404 too, not 401.
    assert status(site, "/dbimages/private/secret.jpg", cookie=cookie) == 404


# --------------------------------------------------------------------------- failures


def test_missing_store_fails_closed_with_one_log_line(site: Site) -> None:
    got, _, body = site.request("/broken/a.jpg", cookie=site.cookie_for("alice"))
    assert got == 500
    assert b"Traceback" not in body and b"imageguard" not in body
    lines = [ln for ln in site.error_log().splitlines() if "missing.db does not exist" in ln]
    assert lines, site.error_log()[-2000:]
    assert "Traceback" not in site.error_log()


def test_image_requests_never_create_write_or_touch_sessions(site: Site) -> None:
    cookie = site.login("ivy")
    sid = cookie.split("=", 1)[1]
    session_file = site.sessions / "mp_sess" / sid[:2] / sid
    before = session_file.stat()
    content = session_file.read_bytes()
    count = sum(1 for p in (site.sessions / "mp_sess").rglob("*") if p.is_file())
    for _ in range(5):
        assert status(site, f"{IMG}/gallery/cat.jpg", cookie=cookie) == 200
        assert status(site, f"{IMG}/gallery/public.jpg") == 200  # anonymous
        assert status(site, f"{IMG}/gallery/cat.jpg") == 401  # anonymous, refused
    after = session_file.stat()
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)
    assert session_file.read_bytes() == content
    assert sum(1 for p in (site.sessions / "mp_sess").rglob("*") if p.is_file()) == count


def test_without_the_gatekeeper_apache_refuses(site: Site) -> None:
    # The one-phase configuration's last line, alone: nothing is served, whatever the
    # client sends (request headers never become environment variables).
    for headers in ({}, {"IMAGEGUARD_ADMITTED": "1", "Imageguard-Admitted": "1"}):
        got, _, body = site.request("/unguarded/gallery/public.jpg", headers=headers)
        assert got == 403 and not body.startswith(b"\xff\xd8")
