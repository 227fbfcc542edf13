"""Refusals of the configuration, the command line and the store that no other test reaches:
each names what was wrong, and none changes anything."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from imageguard.apache.apacheconf import SiteConfig, directory_block
from imageguard.apache.settings import Settings
from imageguard.cli import main
from imageguard.errors import ConfigError, ImportFormatError, NoSuchRule, StoreError
from imageguard.store import AclStore, parse_export
from imageguard.store import sqlite as database


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("imageguard.downgrade", "maybe", "imageguard.downgrade must be on or off, not 'maybe'"),
        ("imageguard.thumb_size", "big", "imageguard.thumb_size must be a whole number"),
        ("imageguard.watermark", "{user.name}", "imageguard.watermark: watermark '{user.name}'"),
        ("imageguard.share_realm", "a\rb", "imageguard.share_realm: share link realm"),
        ("imageguard.tkt_timeout", "soon", "imageguard.tkt_timeout: "),
    ],
)
def test_a_bad_option_is_refused_naming_it(option: str, value: str, said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_options({option: value}, "/srv/images")
    assert said in str(caught.value)


def test_a_placeholder_needs_deny_status_403() -> None:
    options = {"imageguard.placeholder": "on", "imageguard.deny_status": "404"}
    with pytest.raises(ConfigError, match=r"placeholder on needs imageguard\.deny_status 403"):
        Settings.from_options(options, "/srv/images")


def test_a_value_apache_cannot_hold_is_not_written() -> None:
    site = SiteConfig(root="/srv/images", watermark='say "hi"')
    with pytest.raises(ConfigError, match="quotes, backslashes and newlines cannot be written"):
        directory_block(site, portable=True)


def test_an_unknown_mode_and_a_bad_cookie_name_are_refused() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        directory_block(SiteConfig(root="/srv/images", mode="two-phase"), portable=True)
    with pytest.raises(ConfigError, match="cannot be a cookie name"):
        SiteConfig(root="/srv/images", cookie_name="a;b").login_cookie_line()


@pytest.fixture
def store(tmp_path: Path) -> AclStore:
    return AclStore.create(tmp_path / "acl.db")


def test_deleting_what_is_not_there_says_so(store: AclStore) -> None:
    with store:
        with pytest.raises(NoSuchRule, match=r"no rule for user:bob on gallery/a\.jpg"):
            store.revoke("gallery/a.jpg", "user:bob")
        with pytest.raises(NoSuchRule, match="bob is not a member of group staff"):
            store.remove_member("staff", "bob")
        with pytest.raises(StoreError, match="is neither a share link nor its signature"):
            store.revoke_link("a b")


def test_revocations_imported_keep_the_later_moment(store: AclStore) -> None:
    with store:
        store.revoke_user("bob", until=3000)
        store.revoke_link("sig-1")
        before = store.revocations()
        store.import_text("revoked-user bob 1000\nrevoked-user ann 2000\nrevoked-link sig-1 5\n")
        assert store.user_revoked_until("bob") == 3000  # an import cannot undo a revocation
        assert store.user_revoked_until("ann") == 2000
        assert store.revocations() == [("user", "ann", 2000), *before]  # sig-1's moment kept


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("rule a.jpg anyone\n", "line 1: expected 'rule PATTERN PRINCIPAL LEVEL'"),
        ("# c\nrevoked-ticket 'a/b' 1\n", "line 2: 'a/b' is not a ticket signature"),
    ],
)
def test_a_bad_export_line_is_named(text: str, said: str) -> None:
    with pytest.raises(ImportFormatError) as caught:
        parse_export(text)
    assert said in str(caught.value)


def test_a_write_the_lock_refuses_is_a_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "acl.db"
    AclStore.create(path).close()
    monkeypatch.setattr(database, "BUSY_TIMEOUT_S", 0.05)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        refused = f"cannot write ACL store {re.escape(str(path))}: .*locked"
        with AclStore(path) as store, pytest.raises(StoreError, match=refused):
            store.grant("a.jpg", "anyone", "full")
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    with AclStore(path) as store:
        assert store.rules() == []


@pytest.fixture
def no_site_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("IMAGEGUARD_CONF", "IMAGEGUARD_ROOT", "IMAGEGUARD_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_site_env")
@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["verify"], "name the site: --conf FILE or --root DIR"),
        (["verify", "--conf", "/nonexistent/site.conf"], "cannot read /nonexistent/site.conf"),
        (["share", "a.jpg", "--level", "thumb", "--expires", "1h"], "name the root the link"),
        (["apache-conf", "--root", "/srv/images", "--placeholder"], "needs --cache-dir"),
    ],
)
def test_the_command_line_refuses_in_one_line(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and said in err


def test_group_add_needs_a_group_and_a_user(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--db", "/nonexistent/acl.db", "group", "add", "staff"])
    assert caught.value.code == 2
    assert "group add needs GROUP and USER" in capsys.readouterr().err
