"""The secret file, share links and durations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imageguard import sharelinks
from imageguard.durations import parse_duration
from imageguard.errors import ConfigError, ShareLinkError
from imageguard.levels import Level
from imageguard.secretfile import SecretFile, parse_secrets

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


def test_link_round_trip() -> None:
    params = sharelinks.sign("gallery/cat.jpg", "preview", NOW + 60, A, "bob")
    url = sharelinks.link("/images/", "gallery/cat.jpg", params)
    assert url.startswith("/images/gallery/cat.jpg?ig_exp=")
    query = url.split("?", 1)[1]
    assert sharelinks.carries_link(query)
    grant = sharelinks.verify("gallery/cat.jpg", query, [B, A], now=NOW)
    assert (grant.level, grant.user, grant.expires) == (Level.PREVIEW, "bob", NOW + 60)


def test_link_with_spaces_in_the_path() -> None:
    params = sharelinks.sign("a b/c d.jpg", "full", NOW + 60, A)
    url = sharelinks.link("/images", "a b/c d.jpg", params)
    assert "/images/a%20b/c%20d.jpg?" in url
    sharelinks.verify("a b/c d.jpg", url.split("?", 1)[1], [A], now=NOW)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda q: q.replace("ig_lvl=thumb", "ig_lvl=full"), "signature"),
        (lambda q: q.replace(f"ig_exp={NOW + 60}", f"ig_exp={NOW + 6000}"), "signature"),
        (lambda q: q + "&ig_user=eve", "signature"),
        (lambda q: q.replace("ig_sig=", "ig_sig=x"), "signature"),
        (lambda q: q.replace("ig_exp=", "ig_exp=x"), "malformed"),
        (lambda q: q.replace("ig_lvl=thumb", "ig_lvl=deny"), "deny"),
        (lambda q: "ig_sig=abc", "missing"),
    ],
)
def test_changed_links_are_refused(change: object, message: str) -> None:
    query = "&".join(
        f"{k}={v}" for k, v in sharelinks.sign("p/x.jpg", "thumb", NOW + 60, A).items()
    )
    with pytest.raises(ShareLinkError, match=message):
        sharelinks.verify("p/x.jpg", change(query), [A], now=NOW)  # type: ignore[operator]


def test_link_for_another_path_expired_or_retired() -> None:
    params = sharelinks.sign("p/x.jpg", "full", NOW + 60, A)
    query = "&".join(f"{k}={v}" for k, v in params.items())
    with pytest.raises(ShareLinkError, match="signature"):
        sharelinks.verify("p/y.jpg", query, [A], now=NOW)
    with pytest.raises(ShareLinkError, match="expired"):
        sharelinks.verify("p/x.jpg", query, [A], now=NOW + 61)
    with pytest.raises(ShareLinkError, match="secret retired"):
        sharelinks.verify("p/x.jpg", query, [B], now=NOW)


def test_links_cannot_grant_deny_or_name_bad_users() -> None:
    with pytest.raises(ShareLinkError):
        sharelinks.sign("p/x.jpg", "deny", NOW, A)
    with pytest.raises(ValueError):
        sharelinks.sign("p/x.jpg", "full", NOW, A, user="a/b")


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
