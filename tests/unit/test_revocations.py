"""Revocations in the store, the cached reader's view of them, and schema migration."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from imageguard.apache.runtime import Runtime, runtime_for
from imageguard.errors import MalformedTicket, StoreError
from imageguard.identity.tickets import decode_cookie_value, issue_ticket, parse_ticket
from imageguard.store import SCHEMA_VERSION, AclStore, CachedAcl


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "acl.db"
    AclStore.create(path).close()
    return path


def test_revoke_user_only_moves_forward(db: Path) -> None:
    with AclStore(db) as store:
        assert store.user_revoked_until("bob") is None
        assert store.revoke_user("bob", until=2000) == 2000
        assert store.revoke_user("bob", until=1000) == 2000
        assert store.revoke_user("bob", until=3000) == 3000
        assert store.user_revoked_until("bob") == 3000


def test_revoke_ticket_in_any_dress(db: Path) -> None:
    value = issue_ticket("bob", ["g"], "secret-0123456789abcdef", timestamp=1_800_000_000)
    digest = parse_ticket(decode_cookie_value(value)).digest
    with AclStore(db) as store:
        assert store.revoke_ticket(value) == digest
        assert store.signature_revoked(digest)
        raw = decode_cookie_value(value)
        assert store.revoke_ticket(raw.replace("!", "%21")) == digest  # twice is fine
        with pytest.raises(MalformedTicket):
            store.revoke_ticket("nonsense")
        assert [kind for kind, _, _ in store.revocations()] == ["ticket"]


def test_revoke_link(db: Path) -> None:
    with AclStore(db) as store:
        sig = store.revoke_link("https://x.org/images/a.jpg?ig_exp=1&ig_lvl=full&ig_sig=AbC-_9")
        assert sig == "AbC-_9" and store.signature_revoked("AbC-_9")
        assert store.revoke_link("Zz_-09") == "Zz_-09"
        with pytest.raises(StoreError):
            store.revoke_link("https://x.org/images/a.jpg?ig_exp=1")


def test_cached_reader_sees_revocations_on_the_next_call(db: Path) -> None:
    cache = CachedAcl(str(db))
    assert cache.revocations_of("abc", "bob") == (False, None)
    with AclStore(db) as store:
        store.revoke_user("bob", until=5)
        store.revoke_link("abc")
    assert cache.revocations_of("abc", "bob") == (True, 5)
    assert cache.signature_revoked("abc")


def test_unrevoked_answers_are_cached_too(db: Path) -> None:
    cache = CachedAcl(str(db))
    cache.revocations_of("abc", "bob")
    assert cache._watch._store is not None
    statements: list[str] = []
    cache._watch._store.storage._conn.set_trace_callback(statements.append)
    for _ in range(3):
        assert cache.revocations_of("abc", "bob") == (False, None)
        assert cache.signature_revoked("x") is False
    assert len(statements) == 1  # only the first lookup of "x" asked SQLite


def test_version_1_store_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE rules (pattern TEXT NOT NULL, principal TEXT NOT NULL,
            level TEXT NOT NULL, anchor TEXT NOT NULL, created_at TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (pattern, principal));
        CREATE INDEX rules_by_anchor ON rules (anchor);
        CREATE TABLE memberships (user TEXT NOT NULL, grp TEXT NOT NULL,
            PRIMARY KEY (user, grp));
        INSERT INTO rules VALUES ('a/', 'anyone', 'full', 'a/', '');
        PRAGMA user_version = 1;
        """
    )
    conn.close()
    with AclStore(path) as store:
        assert [str(r) for r in store.rules()] == ["a/ anyone full"]
        store.revoke_user("bob", until=1)
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def ticket_runtime(db: Path, secrets: Path, secret: str) -> Runtime:
    """A runtime taking auth_tkt logins signed with *secret* (10-minute tickets)."""
    secrets.write_text(secret + "\n")
    secrets.chmod(0o600)
    options = {
        "imageguard.root": str(secrets.parent),
        "imageguard.acl_db": str(db),
        "imageguard.session": "auth_tkt",
        "imageguard.tkt_secret_file": str(secrets),
        "imageguard.tkt_timeout": "10m",
    }
    return runtime_for(options, "")


def test_ticket_logins_are_verified_once_and_still_revocable(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imageguard.identity.tickets import TicketVerifier

    secrets = tmp_path / "secrets"
    runtime = ticket_runtime(db, secrets, "runtime-secret-0123456789")
    verified = []
    real = TicketVerifier.verify_parsed

    def counting(self: TicketVerifier, *args: object, **kw: object) -> object:
        verified.append(1)
        return real(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(TicketVerifier, "verify_parsed", counting)
    now = 1_800_000_000
    cookie = [
        f"auth_tkt={issue_ticket('bob', ['staff'], 'runtime-secret-0123456789', timestamp=now)}"
    ]
    for _ in range(3):
        login = runtime.login(cookie, now=now + 60)
        assert login.identity.user == "bob" and login.identity.groups == {"staff"}
    assert len(verified) == 1  # the digests are computed once
    with AclStore(db) as store:
        store.revoke_user("bob", until=now)
    assert runtime.login(cookie, now=now + 61).identity.user is None  # seen at once
    assert len(verified) == 1
    expired = runtime.login(cookie, now=now + 601)  # past the timeout: verified again
    assert expired.identity.user is None and "expired" in expired.reason
    assert len(verified) == 2
    secrets.write_text("another-secret-0123456789\n")  # rotated out: verified again, refused
    assert runtime.login(cookie, now=now + 70).identity.user is None


def test_spellings_of_one_ticket_share_one_cache_entry(db: Path, tmp_path: Path) -> None:
    import base64

    from imageguard.identity.logins import TicketLogin

    runtime = ticket_runtime(db, tmp_path / "secrets", "spelling-secret-0123456789")
    now = 1_800_000_000
    cookie = issue_ticket("bob", ["a", "b"], "spelling-secret-0123456789", timestamp=now)
    raw = base64.b64decode(cookie).decode()
    spellings = [
        cookie,
        raw,
        raw.replace("!", "%21"),
        f'"{raw}"',
        f'"{raw.replace(",", chr(92) + "054")}"',
        raw[:64].upper() + raw[64:],
    ]
    for value in spellings:
        assert runtime.login([f"auth_tkt={value}"], now=now + 1).identity.user == "bob", value
    source = runtime.logins
    assert isinstance(source, TicketLogin) and len(source._tickets) == 1
