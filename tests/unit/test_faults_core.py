"""The core's side of the fault-injection tests (tests/integration/test_faults.py): what a
warm reader of the ACL store does when the store breaks under it, a store locked by a
writer, sessions Apache's user may not read, and option values no request can work with.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import imageguard.store.cached as cached_module
import imageguard.store.freshness as freshness_module
import imageguard.store.sqlite as database_module
from imageguard.apache.settings import Settings
from imageguard.errors import ConfigError, StoreError
from imageguard.identity.sessions import FileSessionReader
from imageguard.policy.levels import Level
from imageguard.policy.principals import Identity
from imageguard.store import SCHEMA_VERSION, AclStore, CachedAcl

ALICE = Identity("alice")
SID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "acl.db"
    with AclStore.create(path) as store:
        store.grant("g/", "authenticated", "full")
    return path


@pytest.fixture
def checked_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every decision makes the safety check (as it does once a second in Apache)."""
    monkeypatch.setattr(freshness_module, "SAFETY_CHECK_S", 0.0)


def test_a_store_overwritten_in_place_is_refused_by_a_warm_reader(
    db: Path, checked_every_time: None
) -> None:
    cache = CachedAcl(str(db))
    assert cache.decide("g/a.jpg", ALICE).level is Level.FULL
    good = db.read_bytes()
    with open(db, "r+b") as handle:  # the same file (inode), other bytes
        handle.write(b"not a database any more " * 200)
    with pytest.raises(StoreError, match="not a database"):
        cache.decide("g/a.jpg", ALICE)
    with pytest.raises(StoreError, match="not a database"):  # and again: not cached
        cache.decide("g/a.jpg", ALICE)
    with open(db, "r+b") as handle:
        handle.write(good)
    assert cache.decide("g/a.jpg", ALICE).level is Level.FULL


def test_a_schema_upgraded_by_a_newer_imageguard_is_refused_by_a_warm_reader(
    db: Path, checked_every_time: None
) -> None:
    cache = CachedAcl(str(db))
    assert cache.decide("g/a.jpg", ALICE).level is Level.FULL

    def set_version(version: int) -> None:
        raw = sqlite3.connect(db, isolation_level=None)
        raw.execute(f"PRAGMA user_version = {version}")
        raw.close()

    set_version(SCHEMA_VERSION + 1)
    for _ in range(2):
        with pytest.raises(StoreError, match="from a newer imageguard"):
            cache.decide("g/a.jpg", ALICE)
    set_version(SCHEMA_VERSION)
    assert cache.decide("g/a.jpg", ALICE).level is Level.FULL


def test_a_store_whose_file_changed_is_opened_again(db: Path, checked_every_time: None) -> None:
    """Permissions changed (a chmod: a new change time) make the reader open the store
    again, as a process that never opened it would; unchanged, it is not reopened."""
    cache = CachedAcl(str(db))
    cache.decide("g/a.jpg", ALICE)
    first = cache._watch._store
    cache.decide("g/b.jpg", ALICE)
    assert cache._watch._store is first
    os.chmod(db, 0o600)
    cache.decide("g/c.jpg", ALICE)
    assert cache._watch._store is not first


@pytest.fixture
def journal_store(db: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The store in rollback-journal mode, where a writer's lock does stop readers, with
    a short busy timeout."""
    raw = sqlite3.connect(db, isolation_level=None)
    raw.execute("PRAGMA journal_mode = DELETE")
    raw.close()
    for module in (database_module, cached_module):  # SQLite's wait, and the reader's
        monkeypatch.setattr(module, "BUSY_TIMEOUT_S", 0.3)
    yield db


def hold_lock(db: Path, seconds: float) -> tuple[threading.Thread, threading.Event]:
    """A writer holding BEGIN EXCLUSIVE (and a write) for *seconds*, in a thread."""
    held = threading.Event()

    def run() -> None:
        conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("INSERT INTO memberships (user, grp) VALUES ('w', 'g')")
        held.set()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
        conn.close()

    thread = threading.Thread(target=run)
    thread.start()
    assert held.wait(5)
    return thread, held


def test_a_locked_store_is_said_to_be_locked_not_foreign(journal_store: Path) -> None:
    thread, _ = hold_lock(journal_store, 1.0)
    try:
        with pytest.raises(StoreError) as caught:
            AclStore(journal_store)
    finally:
        thread.join()
    assert f"cannot read ACL store {journal_store}: database is locked" in str(caught.value)
    AclStore(journal_store).close()


def test_readers_waiting_for_a_locked_store_do_not_queue_behind_each_other(
    journal_store: Path, checked_every_time: None
) -> None:
    """Each request waits for the store about as long as SQLite's busy timeout, however
    many other requests of the process wait too (they share one connection)."""
    cache = CachedAcl(str(journal_store))
    assert cache.decide("g/a.jpg", ALICE).level is Level.FULL
    thread, _ = hold_lock(journal_store, 4.0)
    took: list[float] = []
    outcomes: list[str] = []

    def ask() -> None:
        start = time.monotonic()
        try:
            outcomes.append(cache.decide("g/a.jpg", ALICE).level.label)
        except StoreError as exc:
            outcomes.append(str(exc))
        took.append(time.monotonic() - start)

    askers = [threading.Thread(target=ask) for _ in range(8)]
    try:
        for asker in askers:
            asker.start()
        for asker in askers:
            asker.join()
    finally:
        thread.join()
    assert len(outcomes) == len(took) == len(askers), (outcomes, took)  # none died otherwise
    assert all("locked" in outcome or "busy" in outcome for outcome in outcomes), outcomes
    assert max(took) < 2 * cached_module.BUSY_TIMEOUT_S + 1.0, sorted(took)
    assert cache.decide("g/a.jpg", ALICE).level is Level.FULL


def test_sessions_apache_may_not_read_are_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(The tests run as root, who may read anything: the refusal is simulated.)"""
    reader = FileSessionReader(str(tmp_path))
    real_stat = os.stat

    def denied(path: object, *args: object, **kwargs: object) -> os.stat_result:
        if str(path).startswith(str(tmp_path)):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", denied)
    with pytest.raises(ConfigError) as caught:
        reader.load(SID)
    message = str(caught.value)
    assert f"cannot read the sessions in {tmp_path}/mp_sess: Permission denied" in message
    assert SID not in message  # a session id is a credential: never in the log
    monkeypatch.undo()
    assert reader.load(SID) is None  # missing: no session, as before


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("imageguard.tkt_cookie", "a;b", "imageguard.tkt_cookie 'a;b' cannot be a cookie name"),
        ("imageguard.tkt_cookie", "a b", "imageguard.tkt_cookie 'a b' cannot be a cookie name"),
        ("mod_python.session.cookie_name", "x=y", "cookie_name 'x=y' cannot be a cookie name"),
        ("imageguard.tkt_digest", "sha1", "imageguard.tkt_digest: unknown ticket digest 'sha1'"),
        ("imageguard.max_age", "-5", "imageguard.max_age must not be negative, not -5"),
        ("imageguard.max_pixels", "0", "not 0"),
        ("imageguard.login_url", "javascript:x", "imageguard.login_url 'javascript:x' is not"),
    ],
)
def test_a_bad_option_value_is_named_with_its_option(option: str, value: str, said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_options({option: value}, "/srv/images")
    assert said in str(caught.value)


def test_good_cookie_names_are_kept() -> None:
    settings = Settings.from_options(
        {"imageguard.tkt_cookie": "my_tkt-2", "mod_python.session.cookie_name": "app.sid"}, "/r"
    )
    assert (settings.tkt_cookie, settings.cookie_name) == ("my_tkt-2", "app.sid")
