"""auth_tkt tickets and share links through a real Apache with imageguard (both MPMs).

``/tktimages`` takes logins from tickets (sha256, 2 h timeout, not bound to addresses);
``/tktbound`` from sha512 tickets bound to the client's address, 10 min timeout. Both
share the ACL store of the other tests (conftest.RULES) and the secret file
``state/secrets`` (conftest.SECRET on its first line).
"""

from __future__ import annotations

import base64
import io
import time
import urllib.parse

import pytest
from PIL import Image
from pyramid.authentication import AuthTicket

from imageguard.identity import sharelinks
from imageguard.identity.tickets import issue_ticket, ticket_digest

from .conftest import SECRET, Site, cli

pytestmark = pytest.mark.apache

IMG = "/tktimages"
SECRET_B = SECRET.encode()


def cookie(value: str) -> str:
    return f"auth_tkt={value}"


def status(site: Site, path: str, value: str | None = None, **kw: object) -> int:
    return site.request(path, cookie=cookie(value) if value else None, **kw)[0]  # type: ignore[arg-type]


def raw_ticket(
    user: str,
    groups: str = "",
    *,
    ts: int | None = None,
    secret: bytes = SECRET_B,
    digest: str = "sha256",
    ip: str = "0.0.0.0",
    data: str = "",
) -> str:
    stamp = int(time.time()) if ts is None else ts
    mac = ticket_digest(secret, ip, stamp, user, groups, data, digest)
    return f"{mac}{stamp:08x}{user}!{groups}!{data}"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_valid_ticket_in_every_dress(site: Site) -> None:
    text = raw_ticket("alice")
    for value in (b64(text), text, text.replace("!", "%21"), f'"{b64(text)}"'):
        assert status(site, f"{IMG}/private/secret.jpg", value) == 200, value
    assert status(site, f"{IMG}/private/secret.jpg", b64(raw_ticket("bob"))) == 403


def test_issued_ticket_and_tokens_as_groups(site: Site) -> None:
    value = issue_ticket("bob", ["staff"], SECRET)
    assert status(site, f"{IMG}/gallery/staff-only.jpg", value) == 200
    assert status(site, f"{IMG}/gallery/staff-only.jpg", issue_ticket("bob", [], SECRET)) == 403


def test_pyramid_ticket_through_apache(site: Site) -> None:
    ticket = AuthTicket(SECRET, "alice", "0.0.0.0", tokens=["staff"], hashalg="sha256")
    assert status(site, f"{IMG}/private/secret.jpg", ticket.cookie_value()) == 200


def test_quoted_ticket_with_two_groups_through_apache(site: Site) -> None:
    # WebOb (under Pyramid) sends a raw ticket holding ',' quoted, the comma as \054.
    ticket = AuthTicket(SECRET, "bob", "0.0.0.0", tokens=["staff", "editors"], hashalg="sha256")
    quoted = '"' + ticket.cookie_value().replace(",", "\\054") + '"'
    assert status(site, f"{IMG}/gallery/staff-only.jpg", quoted) == 200


@pytest.mark.parametrize(
    ("why", "value"),
    [
        ("tampered uid", lambda t: t.replace("bob!", "alice!")),
        ("tampered tokens", lambda t: t.replace("!staff!", "!admin!")),
        ("tampered timestamp", lambda t: t[:64] + f"{int(t[64:72], 16) + 1:08x}" + t[72:]),
        ("tampered digest", lambda t: ("0" if t[0] != "0" else "1") + t[1:]),
        ("garbage", lambda t: "not-a-ticket"),
    ],
)
def test_tampered_tickets_are_refused(site: Site, why: str, value: object) -> None:
    text = raw_ticket("bob", "staff")
    forged = value(text)  # type: ignore[operator]
    got, _, body = site.request(f"{IMG}/gallery/cat.jpg", cookie=cookie(b64(forged)))
    assert got == 401, why
    assert b"Traceback" not in body


def test_refusals_are_logged(site: Site) -> None:
    site.request(f"{IMG}/gallery/cat.jpg", cookie=cookie(b64(raw_ticket("eve", secret=b"x" * 20))))
    assert "ignored login cookie: ticket signature matches no configured secret" in site.error_log()


def test_expired_and_future_tickets(site: Site) -> None:
    now = int(time.time())
    assert (
        status(site, f"{IMG}/gallery/cat.jpg", b64(raw_ticket("bob", ts=now - 2 * 3600 - 60)))
        == 401
    )
    assert status(site, f"{IMG}/gallery/cat.jpg", b64(raw_ticket("bob", ts=now - 3600))) == 200
    assert status(site, f"{IMG}/gallery/cat.jpg", b64(raw_ticket("bob", ts=now + 600))) == 401
    assert status(site, f"{IMG}/gallery/cat.jpg", b64(raw_ticket("bob", ts=now + 60))) == 200


def test_wrong_secret_and_rotation(site: Site) -> None:
    new = "rotated-secret-0123456789"
    old_ticket = b64(raw_ticket("bob"))
    new_ticket = b64(raw_ticket("bob", secret=new.encode()))
    assert status(site, f"{IMG}/gallery/cat.jpg", new_ticket) == 401
    try:
        site.secrets.write_text(f"{new}\n{SECRET}\n")  # rotation: the new secret on top
        assert status(site, f"{IMG}/gallery/cat.jpg", new_ticket) == 200
        assert status(site, f"{IMG}/gallery/cat.jpg", old_ticket) == 200
        site.secrets.write_text(f"{new}\n")  # the old secret retired
        assert status(site, f"{IMG}/gallery/cat.jpg", old_ticket) == 401
        assert status(site, f"{IMG}/gallery/cat.jpg", new_ticket) == 200
    finally:
        site.secrets.write_text(SECRET + "\n")
    assert status(site, f"{IMG}/gallery/cat.jpg", old_ticket) == 200


def test_ipv4_binding(site: Site) -> None:
    bound = b64(raw_ticket("bob", digest="sha512", ip="127.0.0.1"))
    assert status(site, "/tktbound/gallery/cat.jpg", bound) == 200
    assert status(site, "/tktbound/gallery/cat.jpg", bound, source="127.0.0.2") == 401
    unbound = b64(raw_ticket("bob", digest="sha512"))
    assert status(site, "/tktbound/gallery/cat.jpg", unbound) == 401
    # The same address-bound ticket means nothing where tickets are not bound.
    assert status(site, f"{IMG}/gallery/cat.jpg", b64(raw_ticket("bob", ip="127.0.0.1"))) == 401


def test_ipv6_binding(site: Site) -> None:
    mine = AuthTicket(SECRET, "bob", "::1", hashalg="sha512").cookie_value()
    other = AuthTicket(SECRET, "bob", "2001:db8::1", hashalg="sha512").cookie_value()
    assert status(site, "/tktbound/gallery/cat.jpg", mine, host="::1") == 200
    assert status(site, "/tktbound/gallery/cat.jpg", other, host="::1") == 401


def test_revoke_user_is_seen_on_the_next_request(site: Site) -> None:
    value = b64(raw_ticket("ursula", ts=int(time.time()) - 5))
    assert status(site, f"{IMG}/gallery/cat.jpg", value) == 200
    out = cli(site.db, "revoke-user", "ursula").stdout
    assert "refused from the next request on" in out
    assert status(site, f"{IMG}/gallery/cat.jpg", value) == 401
    later = b64(raw_ticket("ursula", ts=int(time.time()) + 2))  # a fresh login afterwards
    assert status(site, f"{IMG}/gallery/cat.jpg", later) == 200


def test_revoke_one_ticket(site: Site) -> None:
    first = b64(raw_ticket("victor", ts=int(time.time()) - 10))
    second = b64(raw_ticket("victor", ts=int(time.time()) - 5))
    assert status(site, f"{IMG}/gallery/cat.jpg", first) == 200
    cli(site.db, "revoke-ticket", first)
    assert status(site, f"{IMG}/gallery/cat.jpg", first) == 401
    assert status(site, f"{IMG}/gallery/cat.jpg", second) == 200


# --------------------------------------------------------------------------- share links


def share(
    site: Site,
    relpath: str,
    level: str = "full",
    expires: int = 3600,
    user: str = "",
    *,
    secret: bytes = SECRET_B,
    prefix: str = IMG,
) -> str:
    """A link for *relpath* signed for the realm of the site's root (its real path)."""
    realm = str(site.root.resolve())
    params = sharelinks.sign(relpath, level, int(time.time()) + expires, secret, user, realm=realm)
    return sharelinks.link(prefix, relpath, params)


def test_share_link_grants_anonymous_access(site: Site) -> None:
    assert status(site, f"{IMG}/private/secret.jpg") == 401
    url = share(site, "private/secret.jpg")
    got, _, body = site.request(url)
    assert got == 200 and body == (site.root / "private/secret.jpg").read_bytes()
    # The same link works where logins are mod_python sessions, too.
    assert status(site, share(site, "private/secret.jpg", prefix="/images")) == 200


def test_share_link_made_by_the_cli(site: Site, tmp_path: object) -> None:
    out = cli(
        site.db,
        "share",
        "private/secret.jpg",
        "--level",
        "full",
        "--expires",
        "5m",
        "--url-path",
        IMG,
        "--root",
        str(site.root),
        "--secret-file",
        str(site.secrets),
    ).stdout.strip()
    assert status(site, out) == 200


@pytest.mark.parametrize(
    "tamper",
    [
        lambda url: url.replace("private/secret.jpg", "gallery/cat.jpg"),
        lambda url: url.replace("ig_lvl=full", "ig_lvl=preview"),
        lambda url: url.replace("ig_exp=", "ig_exp=1"),
        lambda url: url[:-2] + ("AA" if not url.endswith("AA") else "BB"),
    ],
    ids=["other path", "other level", "other expiry", "other signature"],
)
def test_tampered_share_links_are_refused(site: Site, tamper: object) -> None:
    url = tamper(share(site, "private/secret.jpg"))  # type: ignore[operator]
    assert status(site, url) == 401


def test_expired_link_and_retired_secret(site: Site) -> None:
    assert status(site, share(site, "private/secret.jpg", expires=-5)) == 401
    assert (
        status(site, share(site, "private/secret.jpg", secret=b"retired-secret-0123456789")) == 401
    )


def test_share_link_bound_to_a_user(site: Site) -> None:
    url = share(site, "private/secret.jpg", user="walter")
    assert status(site, url) == 401
    assert status(site, url, b64(raw_ticket("walter"))) == 200
    assert status(site, url, b64(raw_ticket("xena"))) == 403


def test_revoked_share_link(site: Site) -> None:
    url = share(site, "private/secret.jpg")
    assert status(site, url) == 200
    cli(site.db, "share-revoke", "http://example.org" + url)
    assert status(site, url) == 401
    assert "share link refused: share link was revoked" in site.error_log()


def test_share_link_below_full_gets_its_rendition(site: Site) -> None:
    url = share(site, "private/secret.jpg", level="thumb")
    query = urllib.parse.urlsplit(url).query
    assert "ig_lvl=thumb" in query
    original = (site.root / "private/secret.jpg").read_bytes()
    for cookie in (None, f"auth_tkt={b64(raw_ticket('bob'))}"):
        got, headers, body = site.request(url, cookie=cookie)
        assert got == 200 and headers["content-type"] == "image/jpeg"
        assert body != original  # a rendition made for the link, not the original
        assert Image.open(io.BytesIO(body)).size == (64, 48)  # never enlarged
    # A link for a thumb does not open the original, even to a viewer asking for it.
    assert status(site, url.replace("ig_lvl=thumb", "ig_lvl=full")) == 401
