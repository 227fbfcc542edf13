"""The ways around the gate that a security review found, tried against the real Apache
(both MPMs, both configurations) inside Debian's stock global configuration (see
conftest): other handlers and filters, bytes that are not UTF-8, share links replayed
on another root, and a 404 that told what exists.

The race between the check and the send has its own module (test_race.py), and so do
the configuration mistakes of the three-phase setup (test_misconfiguration.py).
"""

from __future__ import annotations

import time
import urllib.parse
from pathlib import Path

import pytest

from imageguard.identity import sharelinks

from .conftest import HOSTILE_FILES, SECRET, Site, cli
from .hostile_files import CGI_SCRIPT, SCRIPT, SSI_MARK
from .httpfetch import fetch_raw

pytestmark = pytest.mark.apache

IMG = "/images"
SECRET_B = SECRET.encode()
#: The hostile files Apache's file handler must send as they are (the <FilesMatch>
#: one is refused instead, see below).
SENT_AS_THEY_ARE = sorted(name for name in HOSTILE_FILES if name != "files.phtml.jpg")


def one_refusal_line(site: Site, mark: int) -> str:
    """The single imageguard line the request after *mark* wrote (the log phase may
    lag the response a little)."""
    deadline = time.monotonic() + 2
    while True:
        lines = site.log_lines_since(mark)
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    time.sleep(0.05)
    lines = site.log_lines_since(mark)
    assert len(lines) == 1, lines
    return lines[0]


def no_traceback(body: bytes) -> None:
    assert b"Traceback" not in body and b"mod_python" not in body and b"File " not in body


# ----------------------------------------------------------------- 1. other handlers


@pytest.mark.parametrize("name", SENT_AS_THEY_ARE)
@pytest.mark.parametrize("prefix", [IMG, "/unverified"])
def test_uploads_that_are_something_else_too_are_sent_as_their_bytes(
    site: Site, prefix: str, name: str
) -> None:
    """A type map, an SSI page, a .php, an .html, a .fr: each a valid JPEG as well. Only
    Apache's file handler sends them, byte for byte, as image/jpeg."""
    got, headers, body = site.request(f"{prefix}/hostile/{name}", cookie=site.cookie_for("bob"))
    assert got == 200, body[:300]
    assert body == HOSTILE_FILES[name]
    assert headers["content-type"] == "image/jpeg"
    assert headers["x-content-type-options"] == "nosniff"
    for header in ("content-language", "content-encoding", "content-location", "vary-tcn"):
        assert header not in headers
    assert SSI_MARK not in body
    assert b"<title>mod_python" not in body.lower()


def test_the_type_map_polyglot_is_a_type_map_to_apache(site: Site) -> None:
    """The file really is what the review built: a JPEG that mod_negotiation reads as a
    map with an inline HTML body (shown by naming it so outside any protected root)."""
    data = HOSTILE_FILES["holiday.var.jpg"]
    assert data.startswith(b"\xff\xd8") and SCRIPT in data
    docroot = site.workdir / "docroot"
    (docroot / "holiday.var").write_bytes(data)
    (docroot / "holiday.var").chmod(0o644)
    got, headers, body = site.request("/holiday.var")
    assert got == 200 and headers["content-type"].startswith("text/html")
    assert body.strip() == SCRIPT


def test_a_cgi_script_named_like_an_image_is_never_run(site: Site) -> None:
    """On a root without content verification, a shell script called run.cgi.jpg (with
    ExecCGI and a .cgi handler inherited) is sent as bytes, not executed."""
    got, headers, body = site.request(
        "/unverified/hostile/run.cgi.jpg", cookie=site.cookie_for("bob")
    )
    assert got == 200 and body == CGI_SCRIPT
    assert headers["content-type"] == "image/jpeg"
    # With verification, it is not an image at all.
    got, _, body = site.request(f"{IMG}/hostile/run.cgi.jpg", cookie=site.cookie_for("bob"))
    assert got == 415 and b"CGI-RAN" not in body


@pytest.mark.parametrize("prefix", [IMG, "/unverified"])
def test_a_handler_set_by_a_files_section_is_refused_by_the_fixup(site: Site, prefix: str) -> None:
    """A <FilesMatch> of the server configuration (merged after the <Directory>, so its
    SetHandler beats imageguard's SetHandler none) would hand the file to a script
    engine: the fixup sees the handler and refuses."""
    mark = len(site.error_log())
    got, _, body = site.request(f"{prefix}/hostile/files.phtml.jpg", cookie=site.cookie_for("bob"))
    assert got == 500
    assert b"<script>" not in body and b"mod_python" not in body
    line = one_refusal_line(site, mark)
    assert "handler 'mod_python' would serve the image" in line


@pytest.mark.parametrize(
    "path",
    [
        "/images/gallery/cat",
        "/images/hostile/holiday",
        "/images/hostile/page.shtml",
        "/images/gallery/",
    ],
)
def test_multiviews_and_listings_inherited_from_a_parent_serve_nothing(
    site: Site, path: str
) -> None:
    got, _, body = site.request(path, cookie=site.cookie_for("bob"))
    assert got in (403, 404)
    assert not body.startswith(b"\xff\xd8") and SCRIPT not in body and b"Index of" not in body


def test_range_head_and_304_still_come_from_apache(site: Site) -> None:
    cookie = site.cookie_for("bob")
    path = f"{IMG}/hostile/holiday.var.jpg"
    original = HOSTILE_FILES["holiday.var.jpg"]
    got, headers, _ = site.request(path, cookie=cookie)
    etag = headers["etag"]
    got, headers, body = site.request(path, cookie=cookie, headers={"Range": "bytes=2-9"})
    assert got == 206 and body == original[2:10]
    got, headers, body = site.request(path, method="HEAD", cookie=cookie)
    assert got == 200 and body == b"" and int(headers["content-length"]) == len(original)
    assert headers["content-type"] == "image/jpeg"
    got, _, body = site.request(path, cookie=cookie, headers={"If-None-Match": etag})
    assert got == 304 and body == b""


# ----------------------------------------------------------------- 5. bytes, not UTF-8


def raw(site: Site, target: bytes, cookie: bytes = b"", accept: bytes = b"image/*") -> tuple:
    request = b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: " + accept + b"\r\n"
    if cookie:
        request += b"Cookie: " + cookie + b"\r\n"
    return fetch_raw(site.server.port, request + b"Connection: close\r\n\r\n")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"/images/caf%e9.jpg", 404),  # a Latin-1 name, percent-encoded
        (b"/images/%ff.jpg", 404),
        (b"/images/gallery/%c0%ae%c0%ae/cat.jpg", 404),  # overlong UTF-8 for "."
        (b"/images/%c0%af..%c0%afoutside/outside.jpg", 404),
        (b"/images/caf\xe9.jpg", 404),  # the byte itself, in the request line
        (b"/images/hostile/caf%e9.jpg", 404),  # that file exists, under that name
        (b"/images/gallery/cat.jpg?v=\xff", 400),  # a query that is not UTF-8
        (b"/images/gallery/cat.jpg?\xe9t\xe9", 400),
    ],
)
def test_paths_and_queries_that_are_not_utf8_get_a_clean_refusal(
    site: Site, target: bytes, expected: int
) -> None:
    mark = len(site.error_log())
    got, _, body = raw(site, target, cookie=site.cookie_for("bob").encode())
    assert got == expected, body[:300]
    no_traceback(body)
    assert "not UTF-8" in one_refusal_line(site, mark)
    assert "Traceback" not in site.error_log()


def test_a_link_to_a_name_that_is_not_utf8_is_refused(site: Site) -> None:
    mark = len(site.error_log())
    got, _, body = site.request(f"{IMG}/hostile/to-latin1.jpg", cookie=site.cookie_for("bob"))
    assert got == 403
    no_traceback(body)
    assert "not UTF-8" in one_refusal_line(site, mark)


@pytest.mark.parametrize(
    "foreign",
    [b"tracker=\xff\xfe", b"lang=fran\xe7ais", b'pref="\xc3("', b"\xe9t\xe9=1"],
    ids=["binary", "latin-1", "broken-utf8", "latin-1-name"],
)
def test_a_foreign_cookie_does_not_lock_the_user_out(site: Site, foreign: bytes) -> None:
    """Another application's cookie with bytes that are not UTF-8, before and after the
    session cookie, in one header or two: the login still works, nothing is logged."""
    session = site.cookie_for("alice").encode()
    expected = (site.root / "gallery/cat.jpg").read_bytes()
    mark = len(site.error_log())
    for cookie in (foreign + b"; " + session, session + b"; " + foreign):
        got, _, body = raw(site, b"/images/gallery/cat.jpg", cookie=cookie)
        assert got == 200 and body == expected
    two_headers = (
        b"GET /images/gallery/cat.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: " + foreign
        + b"\r\nCookie: " + session + b"\r\nConnection: close\r\n\r\n"
    )  # fmt: skip
    got, _, body = fetch_raw(site.server.port, two_headers)
    assert got == 200 and body == expected
    # Without a session, the same foreign cookie is just an anonymous viewer.
    got, _, body = raw(site, b"/images/gallery/cat.jpg", cookie=foreign)
    assert got == 401
    no_traceback(body)
    assert site.log_lines_since(mark, "Traceback") == []


def test_a_foreign_cookie_does_not_hide_a_ticket(site: Site) -> None:
    from imageguard.identity.tickets import issue_ticket

    ticket = issue_ticket("bob", [], SECRET).encode()
    expected = (site.root / "gallery/cat.jpg").read_bytes()
    for cookie in (b"x=\xff; auth_tkt=" + ticket, b"auth_tkt=" + ticket + b"; y=\xe9"):
        got, _, body = raw(site, b"/tktimages/gallery/cat.jpg", cookie=cookie)
        assert got == 200 and body == expected


def test_a_forged_login_cookie_that_is_not_utf8_is_refused(site: Site) -> None:
    mark = len(site.error_log())
    got, _, body = raw(site, b"/tktimages/gallery/cat.jpg", cookie=b"auth_tkt=\xff\xfe!x!y")
    assert got == 401
    no_traceback(body)
    assert "login cookie" in one_refusal_line(site, mark)


@pytest.mark.parametrize(
    "signature",
    ["%C3%A9" * 22, "%FF" * 43, "\u00e9" * 43, "a" * 43 + "%00"],
    ids=["non-ascii", "not-utf8", "raw-non-ascii", "nul"],
)
def test_a_malformed_share_link_is_an_invalid_link(site: Site, signature: str) -> None:
    expires = int(time.time()) + 600
    target = f"/images/private/secret.jpg?ig_exp={expires}&ig_lvl=full&ig_sig={signature}"
    mark = len(site.error_log())
    got, _, body = raw(site, target.encode("utf-8"))
    assert got == 401  # an anonymous viewer with a link that grants nothing
    no_traceback(body)
    assert "share link refused" in one_refusal_line(site, mark)


# ----------------------------------------------------------------- 3. share-link realms


def link_for(site: Site, realm_root: Path, prefix: str, relpath: str = "private/secret.jpg") -> str:
    params = sharelinks.sign(
        relpath, "full", int(time.time()) + 600, SECRET_B, realm=str(realm_root.resolve())
    )
    return sharelinks.link(prefix, relpath, params)


def test_a_share_link_works_only_on_the_root_it_was_made_for(site: Site) -> None:
    """Two roots, one secret file: a link made for /images does not open the file of the
    same name below /other, and the other way round."""
    for_images = link_for(site, site.root, IMG)
    for_other = link_for(site, site.other_root, "/other")
    assert site.request(for_images)[0] == 200
    assert site.request(for_other)[0] == 200
    mark = len(site.error_log())
    replayed = for_images.replace(IMG, "/other", 1)
    got, _, body = site.request(replayed)
    assert got == 401 and not body.startswith(b"\xff\xd8")
    assert "made for another root" in one_refusal_line(site, mark)
    assert site.request(for_other.replace("/other", IMG, 1))[0] == 401


def test_a_link_revoked_on_one_root_is_not_replayed_on_another(site: Site) -> None:
    url = link_for(site, site.root, IMG)
    assert site.request(url)[0] == 200
    cli(site.db, "share-revoke", url)
    assert site.request(url)[0] == 401
    assert site.request(url.replace(IMG, "/other", 1))[0] == 401


def test_the_cli_signs_for_the_root_it_is_given(site: Site) -> None:
    def cli_link(root: Path, prefix: str) -> str:
        return cli(
            site.db, "share", "private/secret.jpg", "--level", "full", "--expires", "5m",
            "--url-path", prefix, "--root", str(root), "--secret-file", str(site.secrets),
        ).stdout.strip()  # fmt: skip

    assert site.request(cli_link(site.root, IMG))[0] == 200
    assert site.request(cli_link(site.other_root, "/other"))[0] == 200
    assert site.request(cli_link(site.root, "/other"))[0] == 401


# ----------------------------------------------------------------- 6. 404 hides existence


def same_answer(first: tuple, second: tuple) -> None:
    """Two answers alike in status, headers (all but Date) and body."""
    (status_a, headers_a, body_a), (status_b, headers_b, body_b) = first, second
    assert status_a == status_b
    strip = {"date"}
    assert {k: v for k, v in headers_a.items() if k not in strip} == {
        k: v for k, v in headers_b.items() if k not in strip
    }
    assert body_a == body_b


@pytest.mark.parametrize(
    "hidden",
    [
        "private/secret.jpg",  # there, denied
        "gate/dir.jpg",  # a directory named like an image
        "gate/fifo.jpg",  # not a regular file
        "gate/link-out.jpg",  # a link leading out of the root
        "gate/text-link.jpg",  # a link to a file with a refused extension
        "private/locked.jpg",  # there, but not readable by Apache's user
        "nofolder/x.jpg",  # Apache splits off path_info where the disk stops matching
        "users/zed/me.jpg",  # ...so a missing folder used to tell users apart
        "gate/ok.jpg/x.jpg",  # extra path after a file that is there
    ],
)
def test_with_deny_status_404_what_is_there_looks_like_what_is_not(site: Site, hidden: str) -> None:
    missing = "private/missing.jpg"
    bob = site.login("bob", app="/dbapp")
    for cookie in (None, bob):
        same_answer(
            site.request(f"/dbimages/{hidden}", cookie=cookie),
            site.request(f"/dbimages/{missing}", cookie=cookie),
        )
        assert site.request(f"/dbimages/{missing}", cookie=cookie)[0] == 404


@pytest.mark.parametrize("query", ["?v=bogus", "?v=thumb&v=thumb", "?v=%ff"])
def test_with_deny_status_404_a_bad_variant_does_not_tell_either(site: Site, query: str) -> None:
    """A logged-in viewer who may not see a file gets the same 404 whatever the query
    asks for; only a viewer allowed to see it learns that the variant is unknown."""
    bob = site.login("bob", app="/dbapp")
    same_answer(
        site.request(f"/dbimages/private/secret.jpg{query}", cookie=bob),
        site.request(f"/dbimages/private/absent.jpg{query}", cookie=bob),
    )
    alice = site.login("alice", app="/dbapp")
    assert site.request(f"/dbimages/private/secret.jpg{query}", cookie=alice)[0] == 400


def test_with_deny_status_404_the_login_redirect_does_not_tell_either(site: Site) -> None:
    """A page navigation by someone not logged in goes to the login page whether the
    image is there or not; logged in, both are 404."""
    html = {"Accept": "text/html,application/xhtml+xml"}
    answers = []
    for relpath in ("private/secret.jpg", "private/absent.jpg"):  # names of one length
        got, headers, body = site.request(f"/dbimages/{relpath}", headers=html)
        assert got == 302
        location = urllib.parse.urlsplit(headers.pop("location"))
        assert location.path == "/dbapp/login"
        assert urllib.parse.parse_qs(location.query)["back"] == [f"/dbimages/{relpath}"]
        quoted = urllib.parse.quote(relpath, safe="").encode()
        answers.append((got, headers, body.replace(quoted, b"PATH")))
    same_answer(*answers)
    bob = site.login("bob", app="/dbapp")
    same_answer(
        site.request("/dbimages/private/secret.jpg", cookie=bob, headers=html),
        site.request("/dbimages/private/missing.jpg", cookie=bob, headers=html),
    )


def test_a_file_apache_cannot_read_is_refused_cleanly(site: Site) -> None:
    mark = len(site.error_log())
    got, _, body = site.request(f"{IMG}/private/locked.jpg", cookie=site.cookie_for("alice"))
    assert got == 403 and not body.startswith(b"\xff\xd8")
    no_traceback(body)
    assert "not readable by Apache's user" in one_refusal_line(site, mark)


def test_refusals_are_never_cached(site: Site) -> None:
    for path, cookie in (
        (f"{IMG}/gallery/missing.jpg", site.cookie_for("bob")),
        (f"{IMG}/private/secret.jpg", site.cookie_for("bob")),
        (f"{IMG}/gallery/cat.jpg", None),
        (f"{IMG}/gate/notes.txt", None),
    ):
        got, headers, _ = site.request(path, cookie=cookie)
        assert got in (401, 403, 404)
        assert "no-store" in headers["cache-control"], (path, headers)
