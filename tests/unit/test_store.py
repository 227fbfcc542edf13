"""The SQLite ACL store: writes, reads, export/import, and the cached reader."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from imageguard.errors import ImportFormatError, NoSuchRule, RuleError, StoreError
from imageguard.policy.levels import Level
from imageguard.policy.principals import Identity
from imageguard.store import SCHEMA_VERSION, AclStore, CachedAcl


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "acl.db"
    AclStore.create(path).close()
    return path


def test_create_sets_wal_and_schema(db: Path) -> None:
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_create_is_idempotent(db: Path) -> None:
    with AclStore(db) as store:
        store.grant("a/", "anyone", "full")
    with AclStore.create(db) as store:
        assert [str(r) for r in store.rules()] == ["a/ anyone full"]


def test_missing_store_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist: run 'imageguard init'"):
        AclStore(tmp_path / "none.db")
    assert not (tmp_path / "none.db").exists()


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not an imageguard ACL store"):
        AclStore(junk)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="no schema"):
        AclStore(other)
    with pytest.raises(StoreError, match="another program"):
        AclStore.create(other)


def test_newer_schema_is_refused(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="schema version"):
        AclStore(db)


def test_grant_replaces_level_and_revoke_removes(db: Path) -> None:
    with AclStore(db) as store:
        store.grant("a/x.jpg", "user:bob", "thumb")
        store.grant("a/x.jpg", "user:bob", Level.FULL)
        assert [str(r) for r in store.rules()] == ["a/x.jpg user:bob full"]
        store.revoke("a/x.jpg", "user:bob")
        assert store.rules() == []
        with pytest.raises(NoSuchRule):
            store.revoke("a/x.jpg", "user:bob")


def test_bad_rules_change_nothing(db: Path) -> None:
    with AclStore(db) as store:
        store.grant("a/", "anyone", "full")
        for args in [("a//b", "anyone", "full"), ("a/", "bob", "full"), ("a/", "anyone", "x")]:
            with pytest.raises(RuleError):
                store.grant(*args)
        assert len(store.rules()) == 1


def test_memberships_count_in_decisions(db: Path) -> None:
    with AclStore(db) as store:
        store.grant("s/", "group:staff", "full")
        assert store.decide("s/a.jpg", Identity("ann")).level is Level.DENY
        store.add_member("staff", "ann")
        store.add_member("staff", "ann")  # twice is fine
        assert store.groups_of("ann") == {"staff"}
        assert store.decide("s/a.jpg", Identity("ann")).level is Level.FULL
        store.remove_member("staff", "ann")
        assert store.decide("s/a.jpg", Identity("ann")).level is Level.DENY
        with pytest.raises(NoSuchRule):
            store.remove_member("staff", "ann")


def test_candidates_use_anchors(db: Path) -> None:
    with AclStore(db) as store:
        for pattern in ["a/b/c.jpg", "a/", "a/b/*.jpg", "**/*.jpg", "x/", "a/b/d.jpg"]:
            store.grant(pattern, "anyone", "full")
        found = sorted(r.pattern.text for r in store.candidates("a/b/c.jpg"))
        assert found == ["**/*.jpg", "a/", "a/b/*.jpg", "a/b/c.jpg"]


def test_export_import_round_trip(db: Path, tmp_path: Path) -> None:
    with AclStore(db) as store:
        store.grant("with space/a b.jpg", "user:bob", "preview")
        store.grant("users/{user}/**", "authenticated", "full")
        store.grant("q'uote/*.jpg", "group:g", "deny")
        store.add_member("g", "carol")
        text = store.export_text()
    other = tmp_path / "other.db"
    with AclStore.create(other) as copy:
        summary = copy.import_text(text)
        assert (summary.rules, summary.memberships) == (3, 1)
        assert copy.export_text() == text


def test_bad_import_changes_nothing(db: Path) -> None:
    with AclStore(db) as store:
        store.grant("keep/", "anyone", "full")
        bad = "rule a/ anyone full\nrule b/ nobody full\n"
        with pytest.raises(ImportFormatError, match="line 2"):
            store.import_text(bad, replace=True)
        assert [str(r) for r in store.rules()] == ["keep/ anyone full"]
        for line in ["grant a/ anyone full", "rule a/ anyone", "member g", "rule 'a/ anyone full"]:
            with pytest.raises(ImportFormatError, match="line 1"):
                store.import_text(line)


def test_import_replace(db: Path) -> None:
    with AclStore(db) as store:
        store.grant("old/", "anyone", "full")
        store.import_text("# comment\n\nrule new/ anyone thumb\n", replace=True)
        assert [str(r) for r in store.rules()] == ["new/ anyone thumb"]


def test_cached_reader_sees_every_commit_of_another_connection(db: Path) -> None:
    cache = CachedAcl(str(db))
    bob = Identity("bob")
    assert cache.decide("p/a.jpg", bob).level is Level.DENY
    with AclStore(db) as writer:
        writer.grant("p/a.jpg", "user:bob", "full")
        assert cache.decide("p/a.jpg", bob).level is Level.FULL
        writer.revoke("p/a.jpg", "user:bob")
        assert cache.decide("p/a.jpg", bob).level is Level.DENY
        writer.grant("p/", "group:g", "full")
        writer.add_member("g", "bob")
        assert cache.decide("p/a.jpg", bob).level is Level.FULL


def test_cached_reader_does_not_query_when_nothing_changed(db: Path) -> None:
    cache = CachedAcl(str(db))
    with AclStore(db) as writer:
        writer.grant("p/", "anyone", "full")
    cache.decide("p/a.jpg", Identity("bob"))
    store = cache._watch._store
    assert store is not None
    statements: list[str] = []
    store.storage._conn.set_trace_callback(statements.append)
    for _ in range(5):
        cache.decide("p/a.jpg", Identity("bob"))
    assert statements == []


def test_every_write_bumps_the_change_stamp(db: Path) -> None:
    stamp = Path(str(db) + ".changes")
    with AclStore(db) as store:
        store.grant("a/", "anyone", "full")
        first = stamp.stat().st_size
        store.add_member("g", "u")
        store.revoke("a/", "anyone")
        assert stamp.stat().st_size == first + 2
        with pytest.raises(RuleError):
            store.grant("a//", "anyone", "full")
        assert stamp.stat().st_size == first + 2


def test_large_stamp_is_replaced(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import imageguard.store.stamp as stamp_module

    monkeypatch.setattr(stamp_module, "STAMP_LIMIT", 3)
    cache = CachedAcl(str(db))
    stamp = Path(str(db) + ".changes")
    with AclStore(db) as store:
        for n in range(5):
            store.grant(f"p{n}/", "anyone", "full")
            assert cache.decide(f"p{n}/a.jpg", Identity()).level is Level.FULL
    assert stamp.stat().st_size <= 3


def test_writes_by_other_tools_are_seen_by_the_safety_check(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import imageguard.store.freshness as freshness_module

    cache = CachedAcl(str(db))
    assert cache.decide("x/a.jpg", Identity()).level is Level.DENY
    raw = sqlite3.connect(db)
    raw.execute(
        "INSERT INTO rules (pattern, principal, level, anchor) "
        "VALUES ('x/', 'anyone', 'full', 'x/')"
    )
    raw.commit()
    assert cache.decide("x/a.jpg", Identity()).level is Level.DENY  # stamp untouched
    monkeypatch.setattr(freshness_module, "SAFETY_CHECK_S", 0.0)
    assert cache.decide("x/a.jpg", Identity()).level is Level.FULL


def test_cached_reader_reopens_a_replaced_file(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store replaced by another file (not through the API) is seen by the safety check."""
    import imageguard.store.freshness as freshness_module

    monkeypatch.setattr(freshness_module, "SAFETY_CHECK_S", 0.0)
    cache = CachedAcl(str(db))
    assert cache.decide("p/a.jpg", Identity()).level is Level.DENY
    fresh = tmp_path / "fresh.db"
    with AclStore.create(fresh) as store:
        store.grant("p/", "anyone", "full")
    fresh.replace(db)
    assert cache.decide("p/a.jpg", Identity()).level is Level.FULL


def test_cached_reader_fails_closed_when_store_vanishes(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import imageguard.store.freshness as freshness_module

    monkeypatch.setattr(freshness_module, "SAFETY_CHECK_S", 0.0)
    cache = CachedAcl(str(db))
    cache.decide("p/a.jpg", Identity())
    db.unlink()
    with pytest.raises(StoreError, match="does not exist"):
        cache.decide("p/a.jpg", Identity())


def test_open_read_transaction_does_not_block_writer(db: Path) -> None:
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM rules").fetchone()
    done = threading.Event()

    def write() -> None:
        with AclStore(db) as store:
            store.grant("w/", "anyone", "full")
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    thread.join(timeout=3)
    assert done.is_set(), "a reader's open transaction blocked a writer"
    reader.execute("COMMIT")


def test_cached_reader_is_thread_safe(db: Path) -> None:
    with AclStore(db) as writer:
        writer.grant("t/", "authenticated", "full")
    cache = CachedAcl(str(db))
    errors: list[BaseException] = []

    def hammer(n: int) -> None:
        try:
            for i in range(300):
                level = cache.decide(f"t/{i % 17}.jpg", Identity(f"u{n}")).level
                assert level is Level.FULL
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_a_deny_typed_composed_covers_a_decomposed_upload(db: Path) -> None:
    """The hostile-request suite's case: the file on disk is NFD, the rule NFC."""
    with AclStore(db) as store:
        store.grant("photos/", "authenticated", "full")
        store.grant("photos/\u00e9t\u00e9.jpg", "authenticated", "deny")
        decision = store.decide("photos/e\u0301te\u0301.jpg", Identity("bob"))
        assert decision.level is Level.DENY, decision.reason
        # Granted the other way round, the rule is one rule.
        store.grant("photos/e\u0301te\u0301.jpg", "user:alice", "full")
        assert [str(r) for r in store.candidates("photos/\u00e9t\u00e9.jpg")].count(
            "photos/\u00e9t\u00e9.jpg user:alice full"
        ) == 1
    acl = CachedAcl(str(db))
    assert acl.decide("photos/e\u0301te\u0301.jpg", Identity("bob")).level is Level.DENY


def _as_version_2(db: Path, *rows: tuple[str, str, str, str]) -> None:
    """Make *db* a version-2 store holding *rows* as that version wrote them."""
    conn = sqlite3.connect(db)
    conn.executemany("INSERT INTO rules (pattern, principal, level, anchor) VALUES (?,?,?,?)", rows)
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()


def test_version_3_composes_the_patterns_an_older_store_kept_decomposed(db: Path) -> None:
    """A rule stored decomposed by version 2 (pattern and anchor in NFD) would no longer
    be found by its anchor: the upgrade composes it, and a merge keeps the lower level."""
    nfd = "photos/e\u0301te\u0301.jpg"
    nfc = "photos/\u00e9t\u00e9.jpg"
    _as_version_2(
        db,
        ("photos/", "authenticated", "full", "photos/"),
        (nfd, "authenticated", "deny", nfd),
        (nfd, "user:alice", "full", nfd),
        (nfc, "user:alice", "thumb", nfc),
        ("te\u0301/*.jpg", "anyone", "thumb", "te\u0301/"),
    )
    with AclStore(db) as store:
        assert store.decide(nfc, Identity("bob")).level is Level.DENY
        assert store.decide(nfd, Identity("bob")).level is Level.DENY
        assert store.decide(nfc, Identity("alice")).level is Level.THUMB  # the lower one
        assert store.decide("t\u00e9/x.jpg", Identity()).level is Level.THUMB
        assert len(store.rules()) == 4
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    anchors = {row[0] for row in conn.execute("SELECT anchor FROM rules")}
    assert anchors == {"photos/", nfc, "t\u00e9/"}
    conn.close()


def test_an_older_store_that_cannot_be_upgraded_says_what_to_run(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Apache's user may only read the store: it is told how to upgrade it, once."""
    from imageguard.store import sqlite as database

    _as_version_2(db)
    opened = database._open
    monkeypatch.setattr(database, "_open", lambda path, mode: opened(path, "ro"))
    with pytest.raises(StoreError, match=r"schema version 2, older .* run 'imageguard --db"):
        AclStore(db)


@pytest.mark.parametrize("moment", ["99999999999999999999", "\u0661\u0662", "\u00b2", "-1"])
def test_a_revocation_line_with_a_bad_moment_is_a_format_error(db: Path, moment: str) -> None:
    """Not an OverflowError from SQLite, nor Arabic-Indic digits read as a number."""
    with AclStore(db) as store, pytest.raises(ImportFormatError, match="is not a moment"):
        store.import_text(f"revoked-user bob {moment}\n")


def test_a_store_whose_folder_cannot_be_searched_is_a_store_error(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stat that fails otherwise than 'no such file' is the store's fault (500), not
    the image's (which the handlers would answer with 403)."""
    import os

    acl = CachedAcl(str(db))
    assert acl.decide("a.jpg", Identity("bob")).level is Level.DENY
    real_stat = os.stat

    def refused(path: object, *args: object, **kw: object) -> os.stat_result:
        if str(path).startswith(str(db)):
            raise PermissionError(13, "Permission denied")
        return real_stat(path, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", refused)
    with pytest.raises(StoreError, match="Permission denied"):
        acl.decide("b.jpg", Identity("bob"))  # its change stamp is looked at every time
