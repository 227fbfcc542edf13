"""Data safety of the ACL store: writers killed with SIGKILL, writers at the same time,
a full disk, and a backup taken while Apache serves and writers write.

1. **kill -9**: a writer (``store_writer.py``: grants, revokes, group changes, user and
   link revocations, imports of up to 600 rules in one transaction, through the API and
   through the CLI's code) is killed at a random moment, ``IMAGEGUARD_KILL_ROUNDS``
   times (200 by default; ``IMAGEGUARD_KILL_SEED`` repeats a run), always on the same
   store so that damage would accumulate. After each kill the store must pass
   ``PRAGMA integrity_check``, have the schema a new store has, and hold exactly what
   the writer's log of acknowledged writes says, plus or minus the one write that was
   under way (whole, never in part). Then the store must take a write, and that write
   must bump the change stamp so that a reader open all along (a :class:`CachedAcl`, as
   in Apache) sees it at once. Some rounds kill the creation of a new store, or the
   upgrade of an old one, instead.
2. **Writers at once**: real ``imageguard`` processes, ``init`` included, on one new
   store at the same time: every write that exited 0 is there, none failed. Processes
   (and threads) creating one new store at the same moment all succeed. A writer kept
   waiting longer than the busy timeout, or meeting a full disk, is told so in one line
   (status 2) and changes nothing.
3. **Backups**: an export is one state of the store, revocations included. ``imageguard
   export`` (and SQLite's online backup) while writers write and Apache answers requests
   (both MPMs): each backup is one state of the store (every writer's writes a prefix of
   them, each whole), restoring it with ``imageguard import`` gives exactly the store
   as it was then and the same ``imageguard explain`` answers, and Apache answered every
   request right, with no 5xx.

Only the last test starts Apache (marked ``apache``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import imageguard.cli as cli_module
import imageguard.store.sqlite as database_module
from imageguard.cli.commandline import build_parser
from imageguard.identity.tickets import issue_ticket
from imageguard.policy.levels import Level
from imageguard.policy.principals import Identity
from imageguard.store import (
    _MIGRATIONS,
    SCHEMA_VERSION,
    AclStore,
    CachedAcl,
    _stat_key,
    parse_export,
    stamp_path,
)

from .conftest import CLI, MPMS, Site, build_site, cli
from .store_writer import StoreState, apply, import_text_of, read_log, read_state

WRITER = Path(__file__).with_name("store_writer.py")
KILL_ROUNDS = int(os.environ.get("IMAGEGUARD_KILL_ROUNDS", "200"))


# --------------------------------------------------------------------------- kill -9


class Zygote:
    """The process that forks the writers (``store_writer.py zygote``)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WRITER), "zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError(f"the zygote ended (status {self.proc.wait()})")
        return dict(json.loads(answer))

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def schema_of(path: Path) -> list[tuple[str, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name"
        ).fetchall()


def check_file(path: Path, version: int = SCHEMA_VERSION) -> None:
    """SQLite finds nothing wrong with *path*, which is in WAL mode at schema *version*."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], path
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal", path
        assert conn.execute("PRAGMA user_version").fetchone()[0] == version, path
    finally:
        conn.close()


def make_v1_store(path: Path) -> None:
    """A store as the first schema version made it, with one rule."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        for statement in _MIGRATIONS[1]:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO rules (pattern, principal, level, anchor) "
            "VALUES ('old/', 'anyone', 'thumb', 'old')"
        )
        conn.execute("PRAGMA user_version = 1")
        conn.execute("COMMIT")
    finally:
        conn.close()


def check_scratch(op: dict[str, Any], acked: bool, reference: list[tuple[str, ...]]) -> None:
    """A store whose creation (or upgrade) was killed is usable, and was if acknowledged."""
    path = Path(op["path"])
    if op["kind"] == "upgrade":
        with sqlite3.connect(path) as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert version == SCHEMA_VERSION if acked else version in (1, SCHEMA_VERSION)
        # A version and its tables go together: an upgrade is all or nothing.
        assert ("revoked_users" in tables) == (version == SCHEMA_VERSION), (version, tables)
        with AclStore(path) as store:  # upgrades what the kill interrupted
            assert [str(r) for r in store.rules()] == ["old/ anyone thumb"]
    elif acked:
        AclStore(path).close()  # no create: the schema must be there
    else:
        AclStore.create(path).close()  # whatever the kill left, init completes it
    check_file(path)
    assert schema_of(path) == reference
    for suffix in ("", "-wal", "-shm", ".changes"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def test_kill_9_loses_no_acknowledged_write_and_leaves_no_half_write(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("IMAGEGUARD_KILL_SEED", "0")) or None)
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    reference_db = tmp_path / "reference.db"
    AclStore.create(reference_db).close()
    reference = schema_of(reference_db)
    db = tmp_path / "acl.db"
    work = tmp_path / "work"
    work.mkdir()
    with AclStore.create(db) as store:
        store.import_text("rule base/ authenticated thumb\nmember g0 u0\n")
    model = read_state(str(db))
    reader = CachedAcl(str(db))  # open across all rounds, like an Apache process
    zygote = Zygote()
    stats: Counter[str] = Counter()
    acks = 0
    started = time.monotonic()
    try:
        for number in range(KILL_ROUNDS):
            log = work / f"log-{number}"
            errors = work / f"stderr-{number}"
            args: dict[str, Any] = {
                "db": str(db),
                "log": str(log),
                "work": str(work),
                "stderr": str(errors),
                "seed": rng.randrange(1 << 30),
                "cache_pages": rng.choice([0, 0, 5]),
                "stamp_limit": rng.choice([0, 16]),
            }
            roll = rng.random()
            if roll < 0.15:
                args["scratch"] = str(tmp_path / f"new-{number}.db")
                delay = rng.uniform(0, 0.006)
            elif roll < 0.25:
                args["scratch"] = str(tmp_path / f"old-{number}.db")
                args["upgrade"] = True
                make_v1_store(Path(args["scratch"]))
                delay = rng.uniform(0, 0.006)
            elif roll < 0.35:
                delay = 0.0  # while opening the store
            else:
                delay = -rng.uniform(0, 0.12)  # that long after its first write began
            pid = zygote.ask({"run": args})["pid"]
            if delay < 0:  # the writer's start takes longer on a busy machine: wait for it
                give_up = time.monotonic() + 30
                while not (log.exists() and log.stat().st_size) and time.monotonic() < give_up:
                    time.sleep(0.001)
            time.sleep(abs(delay))
            os.kill(pid, signal.SIGKILL)
            status = zygote.ask({"reap": pid})["status"]
            trouble = errors.read_text() if errors.exists() else ""
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, trouble
            assert trouble == "", trouble

            # What the log says: acknowledged writes, and at most one under way.
            records = read_log(str(log))
            assert not [r for r in records if "error" in r], records[-3:]
            pending: dict[str, Any] | None = None
            scratch: tuple[dict[str, Any], bool] | None = None
            for record in records:
                if "begin" in record:
                    assert pending is None, record
                    pending = record["begin"]
                    continue
                assert pending is not None and record["ack"] == pending["seq"], record
                if pending["kind"] in ("create", "upgrade"):
                    scratch = (pending, True)
                model = apply(model, pending)
                acks += 1
                pending = None
            if pending is not None and pending["kind"] in ("create", "upgrade"):
                scratch = (pending, False)
            if scratch is not None:
                check_scratch(*scratch, reference)
                stats[f"{scratch[0]['kind']} {'done' if scratch[1] else 'killed'}"] += 1

            # The store: sound, and exactly the acknowledged writes (+ the one under way).
            check_file(db)
            assert schema_of(db) == reference
            found = read_state(str(db))
            if found != model:
                assert pending is not None, model.describe_difference(found)
                with_pending = apply(model, pending)
                assert found == with_pending, (
                    f"round {number}: neither without nor with the {pending['kind']} under "
                    f"way: without: {model.describe_difference(found)}; "
                    f"with: {with_pending.describe_difference(found)}"
                )
                model = with_pending
                stats[f"{pending['kind']} under way: committed"] += 1
            elif pending is not None and pending["kind"] not in ("create", "upgrade"):
                stats[f"{pending['kind']} under way: not committed"] += 1
            if not records or (scratch is None and len(records) == 1):
                stats["killed before its first write returned"] += 1

            # It takes a write, whose stamp a reader open all along notices at once.
            probe = f"probe/r{number}.jpg"
            assert reader.decide(probe, Identity("probe")).level is Level.DENY
            stamp = _stat_key(stamp_path(str(db)))
            with AclStore(db) as store:
                store.grant(probe, "user:probe", "full")
            model = apply(
                model,
                {"kind": "grant", "pattern": probe, "principal": "user:probe", "level": "full"},
            )
            assert _stat_key(stamp_path(str(db))) != stamp
            assert reader.decide(probe, Identity("probe")).level is Level.FULL
            for leftover in work.glob("import-*"):
                leftover.unlink()
    finally:
        zygote.close()
    elapsed = time.monotonic() - started
    assert read_state(str(db)) == model
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(stats.items()))
    print(
        f"\nkill -9: {KILL_ROUNDS} rounds in {elapsed:.1f} s (seed {seed}), {acks} "
        f"acknowledged writes, store now {len(model.rules)} rules; {summary}"
    )
    # The rounds reached the moments that matter (they are random, but not rare).
    assert sum(v for k, v in stats.items() if "under way" in k) >= KILL_ROUNDS // 10, stats


# --------------------------------------------------------------------------- writers at once


def run_cli(db: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--db", str(db), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def command_of(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The imageguard command of a :func:`run_cli` run (what follows ``--db PATH``)."""
    return list(result.args[len(CLI) + 2 :])


def failures(results: list[subprocess.CompletedProcess[str]]) -> list[str]:
    """The runs that did not exit 0, each described in one line; a failure must be told
    in one line of ``imageguard: error: ...`` (never a traceback) with status 2."""
    found = []
    for result in results:
        if result.returncode == 0:
            continue
        lines = result.stderr.splitlines()
        told_well = (
            result.returncode == 2
            and len(lines) == 1
            and lines[0].startswith("imageguard: error: ")
        )
        assert told_well, f"{command_of(result)}: status {result.returncode}:\n{result.stderr}"
        found.append(f"{command_of(result)}: {lines[0]}")
    return found


def test_concurrent_cli_writers_lose_nothing(tmp_path: Path) -> None:
    """Writers start on a store that does not exist yet, each with ``imageguard init``
    (as deployment scripts do), then grant, share one rule and join groups at once;
    one of them imports 4,000 rules in one transaction meanwhile."""
    db = tmp_path / "acl.db"
    workers, writes = 6, 4
    big = tmp_path / "big.txt"
    big.write_text("".join(f"rule big/{i}.jpg user:bulk thumb\n" for i in range(4000)))

    def worker(number: int) -> list[subprocess.CompletedProcess[str]]:
        done = [run_cli(db, "init")]
        for i in range(writes):
            if number == 0 and i == writes // 2:
                done.append(run_cli(db, "import", str(big)))
            level = ("full", "preview", "thumb", "deny")[(number + i) % 4]
            done.append(run_cli(db, "grant", f"w{number}/{i}.jpg", f"user:w{number}", level))
            done.append(run_cli(db, "grant", "shared/", "group:all", level))
            done.append(run_cli(db, "group", "add", f"g{i % 3}", f"w{number}u{i}"))
        return done

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = [r for done in pool.map(worker, range(workers)) for r in done]
    assert failures(results) == []
    with AclStore(db) as store:
        rules = {(r.pattern.text, str(r.principal)): r.level.label for r in store.rules()}
        members = {(m.group, m.user) for m in store.memberships()}
    shared_levels = set()
    for result in results:  # every write acknowledged (status 0) is in the store
        command = command_of(result)
        if command[0] == "grant" and command[1] == "shared/":
            shared_levels.add(command[3])
        elif command[0] == "grant":
            assert rules[(command[1], command[2])] == command[3], command
        elif command[0] == "group":
            assert (command[2], command[3]) in members, command
    assert rules[("shared/", "group:all")] in shared_levels
    assert sum(1 for key in rules if key[0].startswith("big/")) == 4000
    assert len(rules) == workers * writes + 1 + 4000
    check_file(db)


class CliServers:
    """Processes that each run ``imageguard`` commands at a moment they are told
    (``store_writer.py cli``): commands of several processes start at one moment."""

    def __init__(self, count: int, busy_timeout: float | None = None) -> None:
        env = dict(os.environ)
        if busy_timeout is not None:  # SQLite's busy timeout of the store, in seconds
            env["IMAGEGUARD_TEST_BUSY_TIMEOUT"] = str(busy_timeout)
        self.procs = [
            subprocess.Popen(
                [sys.executable, str(WRITER), "cli"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(count)
        ]
        for proc in self.procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"

    def at_once(
        self, db: Path, commands: list[list[str]]
    ) -> list[subprocess.CompletedProcess[str]]:
        """Run the *commands*, one a process, all starting at the same moment."""
        assert len(commands) == len(self.procs)
        start = time.time() + 0.03
        argvs = [["--db", str(db), *command] for command in commands]
        for proc, argv in zip(self.procs, argvs):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"at": start, "argv": argv}) + "\n")
            proc.stdin.flush()
        results = []
        for proc, argv in zip(self.procs, argvs):
            assert proc.stdout is not None
            answer = json.loads(proc.stdout.readline())
            results.append(
                subprocess.CompletedProcess(
                    [*CLI, *argv], answer["status"], answer["stdout"], answer["stderr"]
                )
            )
        return results

    def close(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=30)


def test_concurrent_init_of_one_new_store(tmp_path: Path) -> None:
    """``imageguard init`` run by several processes at the same moment on a new store (as
    deployment scripts on several hosts sharing it may): every one succeeds, every time."""
    servers = CliServers(6)
    results = []
    try:
        for round_number in range(50):
            db = tmp_path / f"acl-{round_number}.db"
            results += servers.at_once(db, [["init"]] * 6)
            check_file(db)
    finally:
        servers.close()
    assert failures(results) == []


def test_a_writer_kept_waiting_too_long_is_told_in_one_line(tmp_path: Path) -> None:
    """Another process holds the write lock longer than the busy timeout (made 1 s here
    instead of 5): writers give up with a one-line error (status 2), change nothing, and
    a writer whose wait is shorter than the timeout succeeds."""
    db = tmp_path / "acl.db"
    AclStore.create(db).close()
    (tmp_path / "rules.txt").write_text("rule i/ anyone full\nmember g v\n")
    commands = [
        ["grant", "a/", "anyone", "full"],
        ["group", "add", "g", "u"],
        ["import", str(tmp_path / "rules.txt")],
        ["revoke-user", "bob"],
    ]
    servers = CliServers(len(commands), busy_timeout=1)
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    try:
        holder.execute("BEGIN IMMEDIATE")
        refused = servers.at_once(db, commands)
        holder.execute("ROLLBACK")
        holder.execute("BEGIN IMMEDIATE")  # held for less than the timeout this time
        release = threading.Timer(0.4, holder.execute, ["ROLLBACK"])
        release.start()
        waited = servers.at_once(db, commands)
        release.join()
    finally:
        holder.close()
        servers.close()
    told = failures(refused)
    assert len(told) == len(commands) and all("database is locked" in t for t in told), told
    assert failures(waited) == []
    with AclStore(db) as store:
        assert {str(r) for r in store.rules()} == {"a/ anyone full", "i/ anyone full"}
        assert {(m.group, m.user) for m in store.memberships()} == {("g", "u"), ("g", "v")}


def test_a_full_disk_during_an_import_is_told_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The disk fills up in the middle of an import (SQLite's ``max_page_count`` gives the
    same error, SQLITE_FULL): one line and status 2, nothing imported, the store fine."""
    db = tmp_path / "acl.db"
    with AclStore.create(db) as store:
        store.grant("a/", "anyone", "full")
    before = read_state(str(db))
    big = tmp_path / "big.txt"
    big.write_text("".join(f"rule big/{i}/x.jpg user:u{i} full\n" for i in range(3000)))
    connect = database_module._connect

    def small_disk(path: str, *, create: bool) -> sqlite3.Connection:
        conn = connect(path, create=create)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # full after 2 more pages
        return conn

    monkeypatch.setattr(database_module, "_connect", small_disk)
    status = cli_module.main(["--db", str(db), "import", str(big)])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert err.startswith("imageguard: error: ") and "database or disk is full" in err, err
    assert read_state(str(db)) == before
    with AclStore(db) as store:
        store.grant("b/", "anyone", "full")
    check_file(db)


def test_concurrent_creation_in_one_process(tmp_path: Path) -> None:
    """``AclStore.create`` from several threads at once (an application's workers starting
    up): every one opens the store. Two connections switching a new file to WAL at the
    same moment deadlock in SQLite, which then fails one at once, without waiting."""
    problems: Counter[str] = Counter()
    for round_number in range(40):
        db = tmp_path / f"acl-{round_number}.db"
        barrier = threading.Barrier(4)

        def create(path: Path = db, start: threading.Barrier = barrier) -> None:
            start.wait()
            try:
                AclStore.create(path).close()
            except Exception as exc:
                problems[f"{type(exc).__name__}: {exc}".replace(str(path), "DB")] += 1

        threads = [threading.Thread(target=create) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert problems == Counter()


def test_creation_racing_another_process_is_not_a_foreign_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process creates the store just after this one found it empty: this one
    must not take the new tables for another program's."""
    db = tmp_path / "acl.db"
    real = database_module._schema_version
    first = [True]

    def then_another_process_creates_it(conn: sqlite3.Connection, path: str) -> int:
        version = real(conn, path)
        if first[0]:
            first[0] = False
            assert run_cli(db, "init").returncode == 0
        return version

    monkeypatch.setattr(database_module, "_schema_version", then_another_process_creates_it)
    with AclStore.create(db) as store:
        store.grant("a/", "anyone", "full")
    assert not first[0]
    check_file(db)


# --------------------------------------------------------------------------- backups


def test_export_is_one_snapshot_of_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer commits one import (a rule and a membership) while an export is
    between reading the rules and reading the memberships: the export has both or
    neither, never the membership without its rule."""
    db = tmp_path / "acl.db"
    with AclStore.create(db) as store:
        store.import_text("rule a/ anyone full\nmember staff alice\n")
    real_rules = AclStore.rules
    exporter = AclStore(db)

    fired: list[bool] = []

    def rules_then_another_writer(self: AclStore) -> list[Any]:
        found = real_rules(self)
        if self is exporter:
            with AclStore(db) as other:
                other.import_text("rule b/ group:late full\nmember late bob\n")
            fired.append(True)
        return found

    monkeypatch.setattr(AclStore, "rules", rules_then_another_writer)
    with exporter:
        rules, members = parse_export(exporter.export_text())
    assert fired, "the other writer never ran between the two reads"
    exported = {str(r) for r in rules}, {(m.group, m.user) for m in members}
    # The export's read began before the other writer committed: it is the state before.
    assert exported == ({"a/ anyone full"}, {("staff", "alice")})
    with AclStore(db) as store:  # and the other writer's import did land
        assert "b/ group:late full" in {str(r) for r in store.rules()}


def test_a_backup_restores_revocations(tmp_path: Path) -> None:
    """``export`` then ``import`` into a new store: the revoked users, tickets and links
    are revoked there too, and ``import --replace`` of an older backup undoes none."""
    db, copy = tmp_path / "acl.db", tmp_path / "copy.db"
    secret = b"backup-secret-0123456789"
    ticket = issue_ticket("mallory", [], secret)
    with AclStore.create(db) as store:
        store.grant("a/", "anyone", "full")
        store.revoke_user("alice", 1_700_000_000)
        ticket_signature = store.revoke_ticket(ticket)
        link_signature = store.revoke_link("/images/a/x.jpg?ig_exp=1&ig_sig=Ab-_9z")
        revoked = store.revocations()
    assert len(revoked) == 3
    backup = tmp_path / "backup.txt"
    assert run_cli(db, "export", "-o", str(backup)).returncode == 0
    assert run_cli(copy, "init").returncode == 0
    done = run_cli(copy, "import", str(backup))
    assert done.returncode == 0 and "added 3 revocation(s)" in done.stdout, done
    with AclStore(copy) as restored:
        assert restored.revocations() == revoked
        assert restored.user_revoked_until("alice") == 1_700_000_000
        assert restored.signature_revoked(ticket_signature)
        assert restored.signature_revoked(link_signature)
        restored.revoke_user("alice", 1_800_000_000)
    # An older backup, imported with --replace, replaces rules; revocations stay.
    assert run_cli(copy, "import", "--replace", str(backup)).returncode == 0
    with AclStore(copy) as restored:
        assert restored.user_revoked_until("alice") == 1_800_000_000
        assert len(restored.revocations()) == 3
        assert [str(r) for r in restored.rules()] == ["a/ anyone full"]


# --------------------------------------------------------------------------- backup while serving

#: What Apache must answer all along (cookie user or None, image, status): rules of
#: conftest.RULES that no writer touches; carol is in group editors by the store.
SERVED = [
    ("alice", "/images/gallery/cat.jpg", 200),
    ("alice", "/images/private/secret.jpg", 200),
    ("bob", "/images/private/secret.jpg", 403),
    ("carol", "/images/gallery/editors.jpg", 200),
    ("alice", "/images/gallery/editors.jpg", 403),
    (None, "/images/gallery/public.jpg", 200),
    (None, "/images/gallery/cat.jpg", 401),
]
#: Who ``explain`` is asked for: (user, groups from a session).
VIEWERS: list[tuple[str | None, tuple[str, ...]]] = [
    (None, ()),
    ("carol", ()),
    ("popu3", ("staff",)),
    ("w1u2", ()),
    ("w2u1", ("pg1",)),
]


def population() -> str:
    """Rules, memberships and revocations for the store to hold besides conftest.RULES."""
    lines = []
    for i in range(400):
        folder = f"pop/f{i % 25}"
        shape = i % 5
        pattern = {
            0: f"{folder}/i{i}.jpg",
            1: f"{folder}/",
            2: f"'{folder}/**/with space {i}.png'",
            3: f"{folder}/*.jpg",
            4: f"'pop/users/{{user}}/f{i % 25}/**'",
        }[shape]
        who = ["anyone", "authenticated", f"user:popu{i % 7}", f"group:pg{i % 4}", "group:staff"]
        level = ("full", "preview", "thumb", "deny")[i % 4]
        lines.append(f"rule {pattern} {who[i % 5]} {level}")
    lines += [f"member pg{i % 4} popu{i}" for i in range(12)]
    lines += ["member pg1 w2u1", "revoked-user popu1 1700000000", "revoked-link popsig1 1"]
    return "\n".join(lines) + "\n"


def batch(writer: str, n: int) -> dict[str, Any]:
    """Batch *n* of *writer*, as a write of store_writer's model: w1 and w2 import two
    rules, a membership and a revocation in one transaction (w1 through the API, w2 with
    the CLI); w3 grants one rule or adds one member with the CLI, in turn."""
    if writer == "w3":
        if n % 2:
            return {"kind": "member_add", "group": "w3g", "user": f"w3u{n}"}
        return {"kind": "grant", "pattern": f"w3/{n}.jpg", "principal": "user:w3", "level": "full"}
    return {
        "kind": "import",
        "replace": False,
        "rules": [
            [f"{writer}/{n}/a.jpg", f"user:{writer}u{n}", "full"],
            [f"{writer}/{n}/b.jpg", f"group:{writer}g{n}", "thumb"],
        ],
        "members": [[f"{writer}g{n}", f"{writer}u{n}"]],
        "revoked_users": [[f"{writer}u{n}", 1_700_000_000 + n]],
        "revoked_links": [f"{writer}sig{n}"] if writer == "w2" else [],
    }


def batch_parts(state: StoreState, op: dict[str, Any]) -> list[bool]:
    """Which of the rows *op* writes are in *state* (each as *op* wrote it)."""
    if op["kind"] == "grant":
        return [state.rules.get((op["pattern"], op["principal"])) == op["level"]]
    if op["kind"] == "member_add":
        return [(op["group"], op["user"]) in state.members]
    return (
        [state.rules.get((p, who)) == level for p, who, level in op["rules"]]
        + [(g, u) in state.members for g, u in op["members"]]
        + [state.revoked_users.get(u) == until for u, until in op["revoked_users"]]
        + [(sig, "link") in state.revoked_signatures for sig in op["revoked_links"]]
    )


def batches_in(state: StoreState, started: dict[str, int]) -> dict[str, int]:
    """How many batches of each writer *state* holds; each whole, and the first ones."""
    found = {}
    for writer, count in started.items():
        present = []
        for n in range(count):
            parts = batch_parts(state, batch(writer, n))
            assert all(parts) or not any(parts), f"half of {writer}'s batch {n}: {parts}"
            present.append(all(parts))
        held = sum(present)
        assert present == [True] * held + [False] * (count - held), (writer, present)
        found[writer] = held
    return found


def without_later_batches(
    source: Path, target: Path, held: dict[str, int], started: dict[str, int]
) -> None:
    """Copy *source* (SQLite's backup API) to *target*, then delete from the copy the rows
    of every batch after the first *held* of each writer: the store as it was when it
    held just those."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
        for writer, count in started.items():
            for n in range(held[writer], count):
                op = batch(writer, n)
                if op["kind"] == "grant":
                    rules, members, users, links = [[op["pattern"], op["principal"]]], [], [], []
                elif op["kind"] == "member_add":
                    rules, members, users, links = [], [[op["group"], op["user"]]], [], []
                else:
                    rules, members = op["rules"], op["members"]
                    users, links = op["revoked_users"], op["revoked_links"]
                for rule in rules:
                    dst.execute("DELETE FROM rules WHERE pattern = ? AND principal = ?", rule[:2])
                for group, user in members:
                    dst.execute("DELETE FROM memberships WHERE grp = ? AND user = ?", (group, user))
                for user, _ in users:
                    dst.execute("DELETE FROM revoked_users WHERE user = ?", (user,))
                for sig in links:
                    dst.execute("DELETE FROM revoked_signatures WHERE signature = ?", (sig,))


def path_for(pattern: str, user: str | None) -> str:
    """An image path *pattern* matches (for *user*, when it holds ``{user}``)."""
    out = []
    for segment in pattern.rstrip("/").split("/"):
        if segment == "**":
            out += ["d1", "d2"]
        elif segment == "{user}":
            out.append(user or "nobody")
        else:
            out.append(segment.replace("*", "x"))
    if pattern.endswith(("/", "**")):
        out.append("probe.jpg")
    return "/".join(out)


def explain_all(db: Path, patterns: list[str]) -> list[tuple[int, str]]:
    """``imageguard explain`` (the command's own code, in this process) for every viewer
    on a path of every pattern: (exit status, output) each."""
    parser = build_parser()
    answers = []
    for user, groups in VIEWERS:
        who = (["--user", user] if user else []) + [f"--group={g}" for g in groups]
        for pattern in patterns:
            args = parser.parse_args(["--db", str(db), "explain", *who, path_for(pattern, user)])
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                status = args.func(args)
            answers.append((status, out.getvalue()))
    return answers


@pytest.fixture(scope="module", params=MPMS)
def backup_site(request: pytest.FixtureRequest) -> Iterator[Site]:
    yield from build_site(request.param)


@pytest.mark.apache
def test_backup_while_serving_and_writing_restores_the_same_decisions(
    backup_site: Site, tmp_path: Path
) -> None:
    site, db = backup_site, backup_site.db
    (tmp_path / "population.txt").write_text(population())
    assert cli(db, "import", str(tmp_path / "population.txt")).returncode == 0
    cookies = {user: site.login(user) for user in ("alice", "bob", "carol")}
    log_mark = len(site.error_log())
    base = read_state(str(db))
    stop = threading.Event()
    started = {"w1": 0, "w2": 0, "w3": 0}
    acked = {"w1": 0, "w2": 0, "w3": 0}
    problems: list[str] = []

    def write(writer: str) -> None:
        with AclStore(db) as store:
            while not stop.is_set():
                n = started[writer]
                op = batch(writer, n)
                started[writer] += 1
                if writer == "w1":
                    store.import_text(import_text_of(op))
                    done = 0
                elif writer == "w2":
                    text = import_text_of(op)
                    done = run_cli(db, "import", "-", stdin=text).returncode
                elif op["kind"] == "grant":
                    done = run_cli(db, "grant", op["pattern"], op["principal"], "full").returncode
                else:
                    done = run_cli(db, "group", "add", op["group"], op["user"]).returncode
                if done != 0:
                    problems.append(f"{writer} batch {n}: status {done}")
                    return
                acked[writer] += 1
                if writer == "w1":
                    time.sleep(0.01)

    answers: Counter[int] = Counter()
    wrong: list[str] = []
    during_exports = [0]
    exporting = threading.Event()

    def serve() -> None:
        index = 0
        while not stop.is_set():
            user, path, expected = SERVED[index % len(SERVED)]
            index += 1
            got = site.request(path, cookie=cookies[user] if user else None)[0]
            answers[got] += 1
            if exporting.is_set():
                during_exports[0] += 1
            if got != expected:
                wrong.append(f"{user} {path}: {got}, not {expected}")
            time.sleep(0.005)  # leave the writers and the export some of the machine

    threads = [threading.Thread(target=write, args=(w,)) for w in started]
    threads += [threading.Thread(target=serve) for _ in range(3)]
    backups: list[tuple[str, Path]] = []
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while min(acked.values()) < 2 and not problems and time.monotonic() < deadline:
            time.sleep(0.05)
        for number in range(3):
            target = tmp_path / f"export-{number}.txt"
            exporting.set()
            done = run_cli(db, "export", "-o", str(target))
            exporting.clear()
            assert done.returncode == 0, done.stderr
            backups.append(("export", target))
            copy = tmp_path / f"backup-{number}.db"  # SQLite's own online backup
            with sqlite3.connect(db) as src, sqlite3.connect(copy) as dst:
                src.backup(dst)
            backups.append(("backup API", copy))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    assert problems == [] and wrong == [], (problems, wrong[:10])
    assert answers[200] > 0 and during_exports[0] > 0, answers
    assert not [status for status in answers if status >= 500], answers
    troubles = [
        line
        for line in site.error_log()[log_mark:].splitlines()
        if "Traceback" in line or "ACL store" in line or "locked" in line
    ]
    assert troubles == []

    assert started == acked  # every writer stopped after a write that returned
    assert batches_in(read_state(str(db)), started) == acked  # and every one is there
    for number, (how, path) in enumerate(backups):
        restored = tmp_path / f"restored-{number}.db"
        if how == "export":
            assert cli(restored, "init").returncode == 0
            assert cli(restored, "import", str(path)).returncode == 0
        else:
            check_file(path)
            assert schema_of(path) == schema_of(db)
            restored = path
        state = read_state(str(restored))
        held = batches_in(state, started)  # one state of the store, each batch whole
        # ... the very state it had when it held those batches:
        expected = base
        for writer, count in held.items():
            for n in range(count):
                expected = apply(expected, batch(writer, n))
        assert state == expected, expected.describe_difference(state)
        then = tmp_path / f"original-{number}.db"
        without_later_batches(db, then, held, started)
        assert read_state(str(then)) == state
        if number == 0:  # the decisions, replayed with explain on both
            patterns = sorted({pattern for pattern, _ in state.rules})
            assert explain_all(restored, patterns) == explain_all(then, patterns)
            for pattern in patterns[:: len(patterns) // 3]:  # and with the real command
                relpath = path_for(pattern, "alice")
                ours = cli(restored, "explain", "--user", "alice", relpath, check=False)
                theirs = cli(then, "explain", "--user", "alice", relpath, check=False)
                assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout)


def test_the_documented_export_format_imports(tmp_path: Path) -> None:
    """docs/acl.md's example of the export format is what ``import`` reads."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "acl.md").read_text()
    section = doc.split("### The export format", 1)[1]
    example = section.split("```\n", 2)[1]
    db = tmp_path / "acl.db"
    with AclStore.create(db) as store:
        summary = store.import_text(example)
        assert (summary.rules, summary.memberships, summary.revocations) == (2, 1, 2)
        assert store.user_revoked_until("alice") == 1767225600
        assert parse_export(store.export_text()) == parse_export(example)
