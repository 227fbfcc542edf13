"""The ACL store on a real PostgreSQL (LocalPostgres), and on SQLite beside it: one model,
two storages, the same answers; the reader's change tracking, outage and recovery;
``imageguard migrate``.

Every test that needs PostgreSQL gets a fresh database of the session's server
(``conftest.postgres``) and is skipped, saying why, where PostgreSQL cannot run.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imageguard.errors import ConfigError, NoSuchRule, StoreError, StoreUnavailable
from imageguard.policy.levels import Level
from imageguard.policy.principals import ANONYMOUS, Identity
from imageguard.store import AclStore, CachedAcl, parse_location
from imageguard.store import listener as listener_module
from imageguard.store.postgres import PostgresStorage
from imageguard_devtools.localpg import LocalPostgres

from .conftest import PG_PASSWORD, PG_ROLE, PgServer, private_postgres

pytestmark = pytest.mark.postgres

CLI = [sys.executable, "-m", "imageguard.cli"]

RULES = """\
rule 'gallery/**' authenticated thumb
rule 'gallery/*.jpg' group:staff full
rule gallery/secret.jpg group:staff deny
rule 'users/{user}/**' authenticated full
rule 'public/' anyone full
rule 'caf\u00e9/*.jpg' user:zo\u00e9 preview
member staff carol
member staff dave
member viewers bob
revoked-user mallory 1700000000
revoked-ticket abcdef0123 1700000001
revoked-link sig-one 1700000002
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new store's location, in each kind of storage."""
    if request.param == "sqlite":
        return str(tmp_path / "acl.db")
    server: PgServer = request.getfixturevalue("postgres")
    return server.new_store()


@pytest.fixture
def pg_location(postgres: PgServer) -> str:
    return postgres.new_store()


def cli(location: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--db", location, *args], capture_output=True, text=True, check=check
    )


# ----------------------------------------------------------------- one model, two storages


def test_the_model_behaves_alike_in_both(location: str) -> None:
    with AclStore.create(location) as store:
        store.import_text(RULES)
        assert len(store.rules()) == 6  # their order: checked against SQLite's below
        assert store.groups_of("carol") == {"staff"}
        assert store.decide("gallery/a.jpg", Identity("carol")).level is Level.FULL
        assert store.decide("gallery/secret.jpg", Identity("carol")).level is Level.DENY
        assert store.decide("gallery/a.jpg", Identity("bob")).level is Level.THUMB
        assert store.decide("users/bob/x.jpg", Identity("bob")).level is Level.FULL
        assert store.decide("users/bob/x.jpg", Identity("eve")).level is Level.DENY
        assert store.decide("public/p.png", ANONYMOUS).level is Level.FULL
        assert store.decide("caf\u00e9/x.jpg", Identity("zo\u00e9")).level is Level.PREVIEW
        store.grant("gallery/a.jpg", "user:bob", "preview")
        store.grant("gallery/a.jpg", "user:bob", "full")  # replaces
        assert store.decide("gallery/a.jpg", Identity("bob")).level is Level.FULL
        store.revoke("gallery/a.jpg", "user:bob")
        with pytest.raises(NoSuchRule):
            store.revoke("gallery/a.jpg", "user:bob")
        store.add_member("staff", "carol")  # already: no error
        store.remove_member("staff", "dave")
        with pytest.raises(NoSuchRule):
            store.remove_member("staff", "dave")
        assert store.revoke_user("mallory", 1600000000) == 1700000000  # only ever later
        assert store.revoke_user("mallory", 1800000000) == 1800000000
        assert store.user_revoked_until("mallory") == 1800000000
        assert store.user_revoked_until("bob") is None
        assert store.signature_revoked("sig-one") and not store.signature_revoked("sig-two")
        assert store.revoke_link("https://x.example/a.jpg?ig_exp=1&ig_sig=sig-two") == "sig-two"
        assert store.signature_revoked("sig-two")


def test_both_storages_export_the_same_text(tmp_path: Path, pg_location: str) -> None:
    with AclStore.create(tmp_path / "acl.db") as lite, AclStore.create(pg_location) as pg:
        for store in (lite, pg):
            store.import_text(RULES)
            store.revoke_link("sig-b")
            store.revoke_link("sig-a")
        assert pg.export_text() == lite.export_text()
        assert [str(r) for r in pg.rules()] == [str(r) for r in lite.rules()]
        assert pg.memberships() == lite.memberships()


def test_a_failed_import_changes_nothing(location: str) -> None:
    with AclStore.create(location) as store:
        store.import_text(RULES)
        before = store.export_text()
        with pytest.raises(StoreError, match="line 2"):
            store.import_text("rule a.jpg anyone full\nrule b.jpg nobody:x full\n", replace=True)
        assert store.export_text() == before


# ----------------------------------------------------------------- PostgreSQL's own refusals


def test_a_password_in_the_location_is_refused() -> None:
    for given in (
        "postgresql://imageguard:hunter2@db.example/imageguard",
        "host=db.example dbname=imageguard password=hunter2",
    ):
        with pytest.raises(ConfigError, match="password file"):
            parse_location(given)
    assert parse_location("service=imageguard").is_postgresql
    assert not parse_location("/var/lib/imageguard/acl.db").is_postgresql
    assert parse_location("sqlite:/srv/a=b/acl.db").target == "/srv/a=b/acl.db"


def test_an_empty_database_is_no_store_until_init(pg_location: str) -> None:
    with pytest.raises(StoreError, match="holds no imageguard ACL store: run"):
        AclStore(pg_location)
    done = cli(pg_location, "rules", check=False)
    assert done.returncode == 2 and done.stderr.rstrip().endswith("' init"), done.stderr
    assert cli(pg_location, "init").stdout.startswith("ACL store ready")
    assert cli(pg_location, "init").returncode == 0  # again: opened unchanged


def test_another_programs_tables_are_not_touched(postgres: PgServer) -> None:
    location = postgres.new_store()
    dbname = location.split("/")[-1].split("?")[0]
    postgres.server.psql(
        f"CREATE TABLE rules (x int); ALTER TABLE rules OWNER TO {PG_ROLE}", dbname
    )
    with pytest.raises(StoreError, match="another program"):
        AclStore.create(location)


def test_a_newer_schema_is_refused(pg_location: str, postgres: PgServer) -> None:
    AclStore.create(pg_location).close()
    dbname = pg_location.split("/")[-1].split("?")[0]
    postgres.server.psql("UPDATE imageguard_meta SET schema_version = 99", dbname)
    with pytest.raises(StoreError, match="newer imageguard"):
        AclStore(pg_location)


def test_two_creators_at_once_make_one_store(pg_location: str) -> None:
    errors: list[BaseException] = []

    def create() -> None:
        try:
            AclStore.create(pg_location).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with AclStore(pg_location) as store:
        assert store.rules() == []


def test_a_wrong_password_is_unavailable_not_a_crash(postgres: PgServer, tmp_path: Path) -> None:
    location = postgres.new_store()
    wrong = tmp_path / "pgpass"
    postgres.server.write_passfile(wrong, PG_ROLE, PG_PASSWORD + "-not")
    bad = location.split("?")[0] + f"?passfile={wrong}"
    with pytest.raises(StoreUnavailable, match="password authentication failed"):
        AclStore(bad)


def test_the_cli_works_on_postgresql(pg_location: str) -> None:
    cli(pg_location, "init")
    cli(pg_location, "grant", "gallery/**", "authenticated", "thumb")
    assert cli(pg_location, "rules").stdout.split()[3:] == ["gallery/**", "authenticated", "thumb"]
    done = cli(pg_location, "init", "--owner", "www-data", check=False)
    assert done.returncode == 2 and "--owner is for an SQLite file" in done.stderr


# ----------------------------------------------------------------- the reader


@pytest.fixture
def reader(pg_location: str) -> Iterator[tuple[str, CachedAcl]]:
    with AclStore.create(pg_location) as store:
        store.import_text(RULES)
    acl = CachedAcl(pg_location)
    yield pg_location, acl
    acl.close()


def test_a_change_reaches_the_reader_in_milliseconds(reader: tuple[str, CachedAcl]) -> None:
    location, acl = reader
    bob = Identity("bob")
    assert acl.decide("gallery/n.jpg", bob).level is Level.THUMB
    took = []
    with AclStore(location) as store:
        for level in ("full", "preview", "deny", "thumb"):
            start = time.monotonic()
            store.grant("gallery/n.jpg", "user:bob", level)
            while acl.decide("gallery/n.jpg", bob).level.label != level:
                assert time.monotonic() - start < 1.0, f"{level} not seen after 1 s"
                time.sleep(0.0005)
            took.append(time.monotonic() - start)
    assert max(took) < 0.1, took


def test_a_change_made_with_psql_is_seen_too(
    reader: tuple[str, CachedAcl], postgres: PgServer
) -> None:
    location, acl = reader
    assert acl.decide("public/p.png", ANONYMOUS).level is Level.FULL
    dbname = location.split("/")[-1].split("?")[0]
    postgres.server.psql("DELETE FROM rules WHERE pattern = 'public/'", dbname)
    deadline = time.monotonic() + 1.0
    while acl.decide("public/p.png", ANONYMOUS).level is Level.FULL:
        assert time.monotonic() < deadline, "a change made outside imageguard was missed"
        time.sleep(0.001)


def test_no_query_when_nothing_changed(
    reader: tuple[str, CachedAcl], monkeypatch: pytest.MonkeyPatch
) -> None:
    _location, acl = reader
    carol = Identity("carol")
    acl.decide("gallery/a.jpg", carol)
    acl.revocations_of("sig-x", "carol")
    asked: list[str] = []
    real = PostgresStorage.query

    def counted(self: PostgresStorage, sql: str, params: object = ()) -> list[tuple]:
        asked.append(sql)
        return real(self, sql, params)  # type: ignore[arg-type]

    monkeypatch.setattr(PostgresStorage, "query", counted)
    for _ in range(2000):
        assert acl.decide("gallery/a.jpg", carol).level is Level.FULL
        acl.revocations_of("sig-x", "carol")
    acl.revocations_of("sig-x", "carol")
    assert asked == [], asked


# ----------------------------------------------------------------- outage and recovery


@pytest.fixture
def own_server(postgres: PgServer) -> Iterator[tuple[LocalPostgres, str]]:
    """A PostgreSQL of its own, to stop and start (the session's is asked for its skip)."""
    with private_postgres() as server:
        location = server.new_store()
        with AclStore.create(location) as store:
            store.import_text(RULES)
        yield server.server, location


def wait_for(what: str, check: object, timeout: float = 10.0) -> float:
    """Call *check* until it returns true; the seconds it took."""
    start = time.monotonic()
    while True:
        try:
            if check():  # type: ignore[operator]
                return time.monotonic() - start
        except StoreUnavailable as exc:
            last = exc
        else:
            last = None
        assert time.monotonic() - start < timeout, f"{what}: not after {timeout} s ({last})"
        time.sleep(0.02)


@pytest.mark.parametrize("stale_ok", [False, True])
def test_an_outage_is_503_or_stale_and_heals_itself(
    own_server: tuple[LocalPostgres, str], stale_ok: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, location = own_server
    monkeypatch.setattr(listener_module, "RETRY_S", (0.05, 0.1))
    acl = CachedAcl(location, stale_ok=stale_ok)
    carol = Identity("carol")
    try:
        assert acl.decide("gallery/a.jpg", carol).level is Level.FULL
        server.kill()
        wait_for(
            "the outage noticed", lambda: acl._watch.listener.current(time.monotonic()) is None
        )
        for _ in range(20):  # no connection attempt per request: each refusal is immediate
            start = time.monotonic()
            if stale_ok:
                assert acl.decide("gallery/a.jpg", carol).level is Level.FULL
            else:
                with pytest.raises(StoreUnavailable, match="unreachable"):
                    acl.decide("gallery/a.jpg", carol)
            with pytest.raises(StoreUnavailable):
                acl.decide("gallery/never-asked.jpg", carol)  # nothing remembered: refused
            assert time.monotonic() - start < 0.05
        server.start()
        took = wait_for(
            "recovery",
            lambda: acl.decide("gallery/never-asked.jpg", carol).level is Level.FULL,
        )
        assert took < 5.0
        with AclStore(location) as store:
            store.grant("gallery/a.jpg", "user:carol", "deny")
        wait_for("a change after recovery", lambda: not acl.decide("gallery/a.jpg", carol).granted)
    finally:
        acl.close()


def test_the_first_request_waits_for_the_listener_not_longer(
    own_server: tuple[LocalPostgres, str],
) -> None:
    server, location = own_server
    server.stop()
    acl = CachedAcl(location)
    try:
        start = time.monotonic()
        with pytest.raises(StoreUnavailable, match="unreachable") as caught:
            acl.decide("gallery/a.jpg", Identity("carol"))
        assert time.monotonic() - start < 4.0  # the connect timeout, once
        # One line naming the store once, then libpq's reason.
        assert str(caught.value).count(location) == 1, caught.value
        assert "Connection refused" in str(caught.value), caught.value
    finally:
        acl.close()


# ----------------------------------------------------------------- migrate


def test_migrate_copies_and_proves_it(tmp_path: Path, pg_location: str) -> None:
    source = str(tmp_path / "acl.db")
    with AclStore.create(source) as store:
        store.import_text(RULES)
    done = cli(source, "migrate", "--from", f"sqlite:{source}", "--to", pg_location)
    assert "copied 6 rule(s), 3 membership(s) and 3 revocation(s)" in done.stdout
    assert "both stores decide alike" in done.stdout, done.stdout
    with AclStore(source) as lite, AclStore(pg_location) as pg:
        assert pg.export_text() == lite.export_text()
    again = cli(source, "migrate", "--from", source, "--to", pg_location, check=False)
    assert again.returncode == 2 and "--replace" in again.stderr
    assert (
        cli(source, "migrate", "--from", source, "--to", pg_location, "--replace").returncode == 0
    )


def test_migrate_reports_a_copy_that_decides_otherwise(
    tmp_path: Path, pg_location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imageguard.cli.commandline import main
    from imageguard.store import migrate

    source = str(tmp_path / "acl.db")
    with AclStore.create(source) as store:
        store.import_text(RULES)
    real_copy = migrate.copy_store

    def lossy(src: AclStore, dst: AclStore, *, replace: bool = False) -> object:
        summary = real_copy(src, dst, replace=replace)
        dst.revoke("gallery/secret.jpg", "group:staff")  # a deny lost on the way
        return summary

    monkeypatch.setattr("imageguard.cli.commands.copy_store", lossy)
    assert main(["migrate", "--from", source, "--to", pg_location]) == 2


def test_the_counter_counts_transactions_that_wrote(pg_location: str, postgres: PgServer) -> None:
    """One change per transaction that wrote a row, however many rows (an import of
    thousands updates the counter row once, not once a rule), and none for a revoke that
    removed nothing: a server never drops its cache for nothing."""
    dbname = pg_location.split("/")[-1].split("?")[0]

    def counter() -> int:
        return int(postgres.server.psql("SELECT changes FROM imageguard_meta", dbname))

    with AclStore.create(pg_location) as store:
        start = counter()
        store.import_text("".join(f"rule 'g/{n}/*.jpg' user:u{n} full\n" for n in range(2000)))
        assert counter() == start + 1
        with pytest.raises(NoSuchRule):
            store.revoke("nothing/x.jpg", "user:bob")
        store.add_member("staff", "bob")
        store.add_member("staff", "bob")  # already a member: nothing written
        assert counter() == start + 2
        postgres.server.psql("TRUNCATE memberships", dbname)
        assert counter() == start + 3
