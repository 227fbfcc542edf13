"""imageguard_devtools.localpg against the real PostgreSQL binaries of Debian's package.

One server for the module (started again by each test that finds it stopped), with a
role and a database; the tests that need a server of their own (ports, the context
manager) start one. Skipped, with the reason, where no server can be started.
"""

from __future__ import annotations

import os
import pwd
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from imageguard_devtools import localpg
from imageguard_devtools.localpg import LocalPostgres, PostgresError

pytestmark = pytest.mark.postgres

ROLE = "imageguard"
PASSWORD = "a:b\\c'd e"  # every character the password file and SQL must escape
DATABASE = "acl"


def _skip_unless_available() -> None:
    reason = localpg.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalPostgres]:
    _skip_unless_available()
    pg = LocalPostgres()
    try:
        pg.start()
        pg.create_role(ROLE, PASSWORD)
        pg.create_database(DATABASE, owner=ROLE)
        pg.psql("CREATE TABLE kept (n int PRIMARY KEY)", DATABASE)
        pg.psql(f"ALTER TABLE kept OWNER TO {ROLE}", DATABASE)
        yield pg
    finally:
        pg.cleanup()
    assert not pg.workdir.exists()


@pytest.fixture
def pg(server: LocalPostgres) -> LocalPostgres:
    """The module's server, running."""
    if not server.is_running():
        server.start()
    return server


@pytest.fixture
def passfile(pg: LocalPostgres, tmp_path: Path) -> Path:
    return pg.write_passfile(tmp_path / "pgpass", ROLE, PASSWORD)


def _connect(pg: LocalPostgres, passfile: Path, **options: object) -> psycopg.Connection:
    return psycopg.connect(pg.dsn(ROLE, DATABASE, passfile=str(passfile)), **options)


def _pids_named(title: str) -> list[int]:
    """Live processes whose command line holds *title*, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if title.encode() in cmdline and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def _listening(port: int) -> list[str]:
    """The addresses a TCP socket listens on at *port*, from /proc/net/tcp and tcp6."""
    found = []
    for table, family, size in (("tcp", socket.AF_INET, 4), ("tcp6", socket.AF_INET6, 16)):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, _remote, state = line.split()[1:4]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # Each 32-bit word is in host (little-endian) order.
            packed = b"".join(raw[i : i + 4][::-1] for i in range(0, size, 4))
            found.append(socket.inet_ntop(family, packed))
    return sorted(found)


# --------------------------------------------------------------------------- no server


def test_the_newest_complete_bin_directory_is_chosen(tmp_path: Path) -> None:
    def version(name: str, *programs: str) -> None:
        (tmp_path / name / "bin").mkdir(parents=True)
        for program in programs:
            path = tmp_path / name / "bin" / program
            path.write_text("#!/bin/sh\n")
            path.chmod(0o755)

    everything = ("initdb", "pg_ctl", "postgres")
    version("9.6", *everything)
    version("13", *everything)
    version("16", "initdb", "pg_ctl")  # the client packages only, say
    version("latest", *everything)
    assert localpg.find_pg_bin(tmp_path) == tmp_path / "13" / "bin"
    assert localpg.find_pg_bin(tmp_path / "nothing") is None


def test_without_binaries_the_reason_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(localpg, "find_pg_bin", lambda root=localpg.PG_BIN_ROOT: None)
    reason = localpg.unavailable_reason()
    assert reason is not None and "postgresql package is not installed" in reason
    with pytest.raises(PostgresError, match="make test installs it"):
        LocalPostgres()


# --------------------------------------------------------------------------- one server


def test_a_role_logs_in_over_tcp_with_its_password_file(
    pg: LocalPostgres, passfile: Path
) -> None:
    assert passfile.read_text() == f"127.0.0.1:{pg.port}:*:{ROLE}:a\\:b\\\\c'd e\n"
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    with _connect(pg, passfile) as conn:
        row = conn.execute(
            "SELECT current_user, current_database(), host(inet_server_addr()),"
            " inet_server_port()"
        ).fetchone()
    assert row == (ROLE, DATABASE, "127.0.0.1", pg.port)


def test_a_wrong_or_missing_password_is_refused(pg: LocalPostgres, tmp_path: Path) -> None:
    wrong = pg.write_passfile(tmp_path / "wrong", ROLE, "not it")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _connect(pg, wrong)
    empty = tmp_path / "empty"
    empty.write_text("")
    empty.chmod(0o600)
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        _connect(pg, empty)


def test_the_dsn_names_no_password(pg: LocalPostgres) -> None:
    assert pg.dsn(ROLE, DATABASE) == f"postgresql://{ROLE}@127.0.0.1:{pg.port}/{DATABASE}"
    assert pg.dsn("a b", "c/d", passfile="/tmp/x y") == (
        f"postgresql://a%20b@127.0.0.1:{pg.port}/c%2Fd?passfile=%2Ftmp%2Fx%20y"
    )
    assert pg.password not in pg.superuser_dsn()
    with psycopg.connect(pg.superuser_dsn()) as conn:  # the harness's own password file
        query = "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
        assert conn.execute(query).fetchone() == ("postgres", True)


def test_the_password_file_goes_to_its_owner(pg: LocalPostgres, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        owner = pwd.getpwnam("www-data")
        ids = (owner.pw_uid, owner.pw_gid)
    else:
        ids = (os.geteuid(), os.getegid())
    path = pg.write_passfile(tmp_path / "for-apache", ROLE, PASSWORD, owner=ids)
    info = path.stat()
    assert (info.st_uid, info.st_gid) == ids
    assert stat.S_IMODE(info.st_mode) == 0o600


def test_psql_errors_name_the_cause(pg: LocalPostgres) -> None:
    assert pg.psql("SELECT 1, 'x'; SELECT 2") == "1|x\n2"
    with pytest.raises(PostgresError, match='relation "nowhere" does not exist'):
        pg.psql("SELECT * FROM nowhere")


def test_it_listens_on_127_0_0_1_only(pg: LocalPostgres) -> None:
    assert _listening(pg.port) == ["127.0.0.1"]
    assert (pg.socket_dir / f".s.PGSQL.{pg.port}").is_socket()


def test_it_runs_as_the_postgres_user_when_root(pg: LocalPostgres) -> None:
    expected = pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid()
    pids = pg.server_pids()
    assert pg.postmaster_pid() in pids and len(pids) > 3  # checkpointer, walwriter, ...
    assert {Path(f"/proc/{pid}").stat().st_uid for pid in pids} == {expected}


def test_a_restart_keeps_the_data(pg: LocalPostgres, passfile: Path) -> None:
    with _connect(pg, passfile) as conn:
        conn.execute("INSERT INTO kept VALUES (1) ON CONFLICT DO NOTHING")
    port = pg.port
    pg.restart()
    assert pg.port == port
    assert "1" in pg.psql("SELECT n FROM kept", DATABASE).split()


def test_a_killed_server_starts_again_with_crash_recovery(
    pg: LocalPostgres, passfile: Path
) -> None:
    conn = _connect(pg, passfile, autocommit=True)
    conn.execute("INSERT INTO kept VALUES (2) ON CONFLICT DO NOTHING")  # committed
    pids = pg.server_pids()
    pg.kill()
    assert not pg.is_running()
    assert not _pids_named(pg.cluster_name) and not set(_pids_named("postgres")) & set(pids)
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()
    pg.start()
    assert "2" in pg.psql("SELECT n FROM kept", DATABASE).split()
    assert "automatic recovery in progress" in pg.log_text()
    with _connect(pg, passfile) as again:  # the same DSN works again
        assert again.execute("SELECT count(*) FROM kept").fetchone() is not None


def test_stop_leaves_no_process(pg: LocalPostgres) -> None:
    pids = pg.server_pids()
    assert pids
    pg.stop()
    assert not pg.is_running()
    assert not [pid for pid in pids if pid in _pids_named("postgres")]
    assert not _pids_named(pg.cluster_name)
    assert not (pg.data_dir / "postmaster.pid").exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", pg.port), timeout=2).close()
    pg.stop()  # a stopped server is left alone


def test_starting_twice_is_refused(pg: LocalPostgres) -> None:
    with pytest.raises(PostgresError, match="already running"):
        pg.start()


# --------------------------------------------------------------------------- own servers


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_port_taken_meanwhile_is_replaced(
    busy_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    _skip_unless_available()
    ports = iter([busy_port])
    real = localpg.free_port
    monkeypatch.setattr(localpg, "free_port", lambda: next(ports, None) or real())
    with LocalPostgres() as pg:
        assert pg.port != busy_port
        assert pg.psql("SELECT 1") == "1"
        assert "could not bind" in pg.log_text()
        workdir, name = pg.workdir, pg.cluster_name
    assert not workdir.exists() and not _pids_named(name)


def test_a_port_asked_for_and_taken_fails_with_the_log(busy_port: int) -> None:
    _skip_unless_available()
    pg = LocalPostgres(port=busy_port)
    try:
        with pytest.raises(PostgresError, match="could not bind") as failure:
            pg.start()
        assert f"port {busy_port}" in str(failure.value)
        assert not pg.is_running()
    finally:
        pg.cleanup()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root's server runs as another user")
def test_a_workdir_the_postgres_user_cannot_reach_is_refused(tmp_path: Path) -> None:
    _skip_unless_available()
    hidden = tmp_path / "hidden"  # under /tmp/pytest-of-root, mode 0700
    pg = LocalPostgres(workdir=hidden)
    try:
        with pytest.raises(PostgresError, match="cannot reach"):
            pg.start()
    finally:
        pg.cleanup()
