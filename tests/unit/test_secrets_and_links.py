"""The secret file, share links and durations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imageguard.errors import ConfigError, ShareLinkError
from imageguard.identity import sharelinks
from imageguard.identity.secretfile import SecretFile, parse_secrets
from imageguard.policy.levels import Level
from imageguard.support.durations import parse_duration

A = b"first-secret-0123456789"
B = b"second-secret-0123456789"


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_parse_secrets() -> None:
    text = f"# rotated 2026-11\n\n  {A.decode()}  \n{B.decode()}\n"
    assert parse_secrets(text) == (A, B)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "holds no secret"), ("# only a comment\n", "holds no secret"), ("short\n", "16")],
)
def test_bad_secret_files(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_secrets(text)


def test_secret_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    path = write(tmp_path / "secrets", A.decode() + "\n")
    secrets = SecretFile(str(path))
    first = secrets.secrets()
    assert first == (A,)
    assert secrets.secrets() is first  # unchanged: the same tuple, no re-read
    write(path, f"{B.decode()}\n{A.decode()}\n")
    os.utime(path, ns=(1, 2))  # a new mtime even within one clock tick
    assert secrets.secrets() == (B, A)


def test_secret_file_refusals(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not set"):
        SecretFile("")
    with pytest.raises(ConfigError, match="No such file"):
        SecretFile(str(tmp_path / "missing")).secrets()
    open_file = write(tmp_path / "open", A.decode() + "\n", mode=0o644)
    with pytest.raises(ConfigError, match="readable by everyone"):
        SecretFile(str(open_file)).secrets()


NOW = 1_800_000_000
#: The realm of the links below (a site's root by default).
REALM = "/srv/images"


def test_link_round_trip() -> None:
    params = sharelinks.sign("gallery/cat.jpg", "preview", NOW + 60, A, "bob", realm=REALM)
    url = sharelinks.link("/images/", "gallery/cat.jpg", params)
    assert url.startswith("/images/gallery/cat.jpg?ig_exp=")
    query = url.split("?", 1)[1]
    assert sharelinks.carries_link(query)
    grant = sharelinks.verify("gallery/cat.jpg", query, [B, A], now=NOW, realm=REALM)
    assert (grant.level, grant.user, grant.expires) == (Level.PREVIEW, "bob", NOW + 60)


def test_link_with_spaces_in_the_path() -> None:
    params = sharelinks.sign("a b/c d.jpg", "full", NOW + 60, A, realm=REALM)
    url = sharelinks.link("/images", "a b/c d.jpg", params)
    assert "/images/a%20b/c%20d.jpg?" in url
    sharelinks.verify("a b/c d.jpg", url.split("?", 1)[1], [A], now=NOW, realm=REALM)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda q: q.replace("ig_lvl=thumb", "ig_lvl=full"), "signature"),
        (lambda q: q.replace(f"ig_exp={NOW + 60}", f"ig_exp={NOW + 6000}"), "signature"),
        (lambda q: q + "&ig_user=eve", "signature"),
        (lambda q: q[:-1] + ("B" if q.endswith("A") else "A"), "signature"),
        (lambda q: q.replace("ig_exp=", "ig_exp=x"), "malformed"),
        (lambda q: q.replace("ig_lvl=thumb", "ig_lvl=deny"), "deny"),
        (lambda q: "ig_sig=abc", "missing"),
    ],
)
def test_changed_links_are_refused(change: object, message: str) -> None:
    query = "&".join(
        f"{k}={v}" for k, v in sharelinks.sign("p/x.jpg", "thumb", NOW + 60, A, realm=REALM).items()
    )
    with pytest.raises(ShareLinkError, match=message):
        sharelinks.verify("p/x.jpg", change(query), [A], now=NOW, realm=REALM)  # type: ignore[operator]


def test_link_for_another_path_expired_or_retired() -> None:
    params = sharelinks.sign("p/x.jpg", "full", NOW + 60, A, realm=REALM)
    query = "&".join(f"{k}={v}" for k, v in params.items())
    with pytest.raises(ShareLinkError, match="signature"):
        sharelinks.verify("p/y.jpg", query, [A], now=NOW, realm=REALM)
    with pytest.raises(ShareLinkError, match="expired"):
        sharelinks.verify("p/x.jpg", query, [A], now=NOW + 61, realm=REALM)
    with pytest.raises(ShareLinkError, match="secret retired"):
        sharelinks.verify("p/x.jpg", query, [B], now=NOW, realm=REALM)


def test_links_cannot_grant_deny_or_name_bad_users() -> None:
    with pytest.raises(ShareLinkError):
        sharelinks.sign("p/x.jpg", "deny", NOW, A, realm=REALM)
    with pytest.raises(ValueError):
        sharelinks.sign("p/x.jpg", "full", NOW, A, user="a/b", realm=REALM)


def test_a_link_works_only_in_the_realm_it_was_made_for() -> None:
    query = "&".join(
        f"{k}={v}" for k, v in sharelinks.sign("p/x.jpg", "full", NOW + 60, A, realm=REALM).items()
    )
    assert sharelinks.verify("p/x.jpg", query, [A], now=NOW, realm=REALM).level is Level.FULL
    for other in ("/srv/other-images", "/srv/images/", "/SRV/IMAGES"):
        with pytest.raises(ShareLinkError, match="made for another root"):
            sharelinks.verify("p/x.jpg", query, [A], now=NOW, realm=other)


def test_links_of_the_first_format_are_refused() -> None:
    """Version 1 links named no root: no root can tell they were made for it."""
    import base64
    import hashlib
    import hmac

    key = hmac.new(A, b"imageguard share link key", hashlib.sha256).digest()
    payload = b"\n".join([b"imageguard-share-v1", b"p/x.jpg", b"full", str(NOW + 60).encode(), b""])
    old = base64.urlsafe_b64encode(hmac.new(key, payload, hashlib.sha256).digest()).rstrip(b"=")
    query = f"ig_exp={NOW + 60}&ig_lvl=full&ig_sig={old.decode()}"
    with pytest.raises(ShareLinkError, match="signature does not match"):
        sharelinks.verify("p/x.jpg", query, [A], now=NOW, realm=REALM)


@pytest.mark.parametrize(
    "signature",
    ["%C3%A9" * 20, "%FF%FE", "a" * 42 + "%E9", "a" * 44, "a" * 42 + "=", " " + "a" * 43, ""],
    ids=["non-ascii", "not-utf8", "one-non-ascii", "too-long", "padded", "space", "empty"],
)
def test_malformed_signatures_are_refused_as_invalid_links(signature: str) -> None:
    query = f"ig_exp={NOW + 60}&ig_lvl=full&ig_sig={signature}"
    with pytest.raises(ShareLinkError, match="malformed"):
        sharelinks.verify("p/x.jpg", query, [A], now=NOW, realm=REALM)


@pytest.mark.parametrize("expiry", ["\u0661\u0662", " 1800000060", "1_800_000_060", "-5", "1e9"])
def test_expiries_that_are_not_plain_digits_are_refused(expiry: str) -> None:
    params = sharelinks.sign("p/x.jpg", "full", NOW + 60, A, realm=REALM)
    query = f"ig_exp={expiry}&ig_lvl=full&ig_sig={params['ig_sig']}"
    with pytest.raises(ShareLinkError, match="malformed"):
        sharelinks.verify("p/x.jpg", query, [A], now=NOW, realm=REALM)


@pytest.mark.parametrize("secrets", [[], [b""], [b"short"], [A, b"x" * 15]])
def test_no_link_is_signed_or_checked_with_an_empty_or_short_secret(secrets: list[bytes]) -> None:
    params = sharelinks.sign("p/x.jpg", "full", NOW + 60, A, realm=REALM)
    query = "&".join(f"{k}={v}" for k, v in params.items())
    with pytest.raises(ConfigError, match="secret"):
        sharelinks.verify("p/x.jpg", query, secrets, now=NOW, realm=REALM)
    for secret in [secret for secret in secrets if len(secret) < 16] or [b""]:
        with pytest.raises(ConfigError, match="secret"):
            sharelinks.sign("p/x.jpg", "full", NOW + 60, secret, realm=REALM)


@pytest.mark.parametrize(
    "secrets", [[], (), [b""], [b"fifteen-bytes!!"], ["a-str-secret-0123456789"]]
)
def test_a_ticket_verifier_cannot_be_built_without_usable_secrets(secrets: list[bytes]) -> None:
    from imageguard.identity.tickets import TicketVerifier

    with pytest.raises(ConfigError, match="secret"):
        TicketVerifier(secrets=secrets)


@pytest.mark.parametrize("realm", ["", "a\nb", "a\rb", "a\0b"])
def test_a_realm_is_one_line(realm: str) -> None:
    with pytest.raises(ShareLinkError, match="realm"):
        sharelinks.sign("p/x.jpg", "full", NOW + 60, A, realm=realm)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1w", 604800)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "2x", "-5", "1.5h", "2 h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
