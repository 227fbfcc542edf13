"""Run a private PostgreSQL server on 127.0.0.1 for tests and benchmarks.

Like :class:`imageguard_devtools.localserver.LocalApache`, it never touches the system's
clusters (``/etc/postgresql``, ``/var/lib/postgresql``, ``pg_ctlcluster``): it drives
Debian's server binaries (``/usr/lib/postgresql/<N>/bin``) directly on a data directory
of its own under ``/tmp``, and leaves nothing running once stopped.

Why it is built the way it is (each point was checked on Debian 12, PostgreSQL 15):

* ``initdb`` and ``postgres`` refuse to run as root. Run as root, the server runs as the
  ``postgres`` system user that Debian's package creates, so the data directory, the
  socket directory and the log file belong to that user and the work directory must be
  reachable by it: :func:`~imageguard_devtools.localserver.make_workdir` makes one under
  ``/tmp``, not under pytest's ``/tmp/pytest-of-root`` (mode 0700). The harness's own
  files (the settings file, the superuser's password file) stay the caller's.
* The server listens on 127.0.0.1 only (TCP: password logins with ``scram-sha-256``) and
  on a Unix socket in its own directory (``trust``: :meth:`LocalPostgres.psql` connects
  there as the superuser without a password).
* ``fsync``, ``full_page_writes`` off: nothing is flushed to disk, which only matters if
  the machine crashes. ``synchronous_commit`` stays on: with it off, a commit returns
  before its WAL has left the server's shared memory, and :meth:`LocalPostgres.kill`
  (an outage) would lose it.
* Every process of the server carries a ``cluster_name`` unique to this object in its
  title (``postgres: imageguard-1a2b3c4d: checkpointer``), and the postmaster names the
  data directory on its command line, so scanning /proc finds them all, also after the
  postmaster was killed.

Typical use::

    with LocalPostgres() as pg:
        pg.create_role("imageguard", "secret")
        pg.create_database("acl", owner="imageguard")
        passfile = pg.write_passfile(workdir / "pgpass", "imageguard", "secret")
        psycopg.connect(pg.dsn("imageguard", "acl", passfile=str(passfile)))
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from imageguard_devtools.localserver import _alive, _tail, free_port, make_workdir

__all__ = [
    "PG_BIN_ROOT",
    "SERVER_USER",
    "LocalPostgres",
    "PostgresError",
    "find_pg_bin",
    "unavailable_reason",
]

#: Where Debian installs each PostgreSQL major version's programs (``<N>/bin``).
PG_BIN_ROOT = Path("/usr/lib/postgresql")

#: The system user the server runs as when started by root (created by Debian's package).
SERVER_USER = "postgres"

#: The superuser ``initdb`` creates.
SUPERUSER = "postgres"

#: The programs a server needs, all in one bin directory.
SERVER_PROGRAMS: tuple[str, ...] = ("initdb", "pg_ctl", "postgres")

#: The whole environment the PostgreSQL programs run with: messages in English (start()
#: recognises "could not bind"), no PG* variable of the caller's.
CLEAN_ENV: dict[str, str] = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}

STOP_MODES: tuple[str, ...] = ("smart", "fast", "immediate")


class PostgresError(RuntimeError):
    """initdb, the server or psql failed; the message says which, with their output."""


# --------------------------------------------------------------------------- helpers


def _version_key(directory: Path) -> tuple[int, ...]:
    """``15`` -> (15,), ``9.6`` -> (9, 6); names that are not versions sort first."""
    try:
        return tuple(int(part) for part in directory.name.split("."))
    except ValueError:
        return ()


def find_pg_bin(root: Path = PG_BIN_ROOT) -> Path | None:
    """The bin directory of the newest PostgreSQL under *root* that has ``initdb``,
    ``pg_ctl`` and ``postgres``, or None."""
    if not root.is_dir():
        return None
    found = [
        version / "bin"
        for version in root.iterdir()
        if _version_key(version)
        and all(os.access(version / "bin" / name, os.X_OK) for name in SERVER_PROGRAMS)
    ]
    return max(found, key=lambda b: _version_key(b.parent), default=None)


def _server_ids() -> tuple[int, int] | None:
    """(uid, gid) the server runs as when started by root, or None when there is no such
    user."""
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def unavailable_reason() -> str | None:
    """None when a :class:`LocalPostgres` can be started here, otherwise why not (one
    line, for a test's skip reason)."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        return (
            f"Debian's postgresql package is not installed (make test installs it): "
            f"no {PG_BIN_ROOT}/<version>/bin with {', '.join(SERVER_PROGRAMS)}"
        )
    if not os.access(bin_dir / "psql", os.X_OK):
        return f"{bin_dir}/psql is missing (Debian's postgresql-client package)"
    if os.geteuid() == 0 and _server_ids() is None:
        return (
            f"running as root and there is no {SERVER_USER!r} system user to run "
            "PostgreSQL as (Debian's postgresql package creates it)"
        )
    return None


def _quote_ident(name: str) -> str:
    """*name* as an SQL identifier in double quotes."""
    if not name or "\0" in name:
        raise ValueError(f"not a usable SQL name: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(text: str) -> str:
    """*text* as an SQL string literal (standard_conforming_strings is on)."""
    if "\0" in text:
        raise ValueError("an SQL string cannot hold a NUL character")
    return "'" + text.replace("'", "''") + "'"


def _passfile_field(text: str) -> str:
    """One field of a libpq password file: ``\\`` and ``:`` escaped with ``\\``."""
    if any(ch in text for ch in "\n\r\0"):
        raise ValueError(f"a password file field cannot hold a line break or NUL: {text!r}")
    return text.replace("\\", "\\\\").replace(":", "\\:")


def _write_private(path: Path, text: str, owner: tuple[int, int] | None = None) -> Path:
    """Write *text* to *path* with mode 0600 (never readable by others, not even for a
    moment), then chown it to *owner* when given. A symlink at *path* is refused."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        if owner is not None:
            os.fchown(fd, *owner)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    return path


def _argv(pid: int) -> list[bytes] | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None


# --------------------------------------------------------------------------- server


class LocalPostgres:
    """One private PostgreSQL server: a data directory in *workdir* (a fresh one under
    /tmp when None) and a TCP port on 127.0.0.1 (a free one when None).

    ``start()`` initialises the data directory the first time, ``stop()`` shuts the
    server down and waits until none of its processes is left, ``kill()`` SIGKILLs them
    all (an outage: the next ``start()`` recovers from the WAL). Used as a context
    manager it starts, and at the end :meth:`cleanup` stops it and removes *workdir*.
    """

    host = "127.0.0.1"

    def __init__(self, workdir: Path | None = None, port: int | None = None) -> None:
        reason = unavailable_reason()
        bin_dir = find_pg_bin()
        if reason is not None or bin_dir is None:
            raise PostgresError(reason or f"no PostgreSQL server binaries in {PG_BIN_ROOT}")
        self.bin_dir = bin_dir
        if workdir is None:
            workdir = make_workdir("imageguard-pg-")
        self.workdir = Path(workdir).resolve()
        if any(ch in str(self.workdir) for ch in "'\\\n\r"):  # quoted in the settings
            raise ValueError(f"workdir must not hold quotes, backslashes or newlines: {workdir}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._auto_port = port is None
        self._port = free_port() if port is None else int(port)
        self._started_before = False
        self._password = secrets.token_urlsafe(24)
        #: Unique to this object: in the title of each of the server's processes.
        self.cluster_name = f"imageguard-{secrets.token_hex(4)}"
        self._ids = _server_ids() if os.geteuid() == 0 else None

    # Paths and facts -------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.workdir / "socket"

    @property
    def log_file(self) -> Path:
        return self.workdir / "postgresql.log"

    @property
    def settings_file(self) -> Path:
        """The settings the data directory's postgresql.conf includes (rewritten at each
        start)."""
        return self.workdir / "postgresql.local.conf"

    @property
    def passfile(self) -> Path:
        """The superuser's libpq password file (for TCP connections as ``postgres``)."""
        return self.workdir / "pgpass"

    @property
    def superuser(self) -> str:
        return SUPERUSER

    @property
    def password(self) -> str:
        """The superuser's password (TCP logins only: the Unix socket trusts)."""
        return self._password

    def log_text(self) -> str:
        """The whole server log ("" before the first start)."""
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def dsn(self, user: str, dbname: str, passfile: str | None = None) -> str:
        """A libpq URL for *user* on *dbname* over TCP, with ``?passfile=`` when given;
        the password itself is never put in it."""
        quote = urllib.parse.quote
        url = f"postgresql://{quote(user, safe='')}@{self.host}:{self.port}"
        url += "/" + quote(dbname, safe="")
        if passfile is not None:
            url += "?" + urllib.parse.urlencode({"passfile": passfile}, quote_via=quote)
        return url

    def superuser_dsn(self, dbname: str = "postgres") -> str:
        """:meth:`dsn` of the superuser, with its password file."""
        return self.dsn(SUPERUSER, dbname, passfile=str(self.passfile))

    def write_passfile(
        self, path: Path, user: str, password: str, owner: tuple[int, int] | None = None
    ) -> Path:
        """Write a libpq password file for *user* on this server (any database), mode
        0600 and chowned to *owner* (uid, gid) when given: libpq ignores a password file
        that others may read, so it must belong to the user that connects (www-data for
        Apache's children)."""
        fields = [self.host, str(self.port), "*", user, password]
        line = ":".join(f if f == "*" else _passfile_field(f) for f in fields)
        return _write_private(Path(path), line + "\n", owner)

    # Running the programs --------------------------------------------------------------
    def _run(
        self,
        argv: Sequence[str],
        *,
        as_server: bool = True,
        input_text: str | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run one of the PostgreSQL programs; as the server's user when *as_server* and
        this process is root."""
        ids = self._ids if as_server else None
        extra: dict[str, Any] = {}
        if ids is not None:
            extra = {"user": ids[0], "group": ids[1], "extra_groups": []}
        try:
            return subprocess.run(
                list(argv),
                env=dict(CLEAN_ENV),
                cwd=str(self.workdir),
                input=input_text,
                stdin=None if input_text is not None else subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                **extra,
            )
        except subprocess.TimeoutExpired as exc:
            raise PostgresError(
                f"{Path(argv[0]).name} did not finish within {timeout}s\n{self._log_tail()}"
            ) from exc

    def _program(self, name: str) -> str:
        return str(self.bin_dir / name)

    def _log_tail(self) -> str:
        return f"--- {self.log_file} (tail):\n{_tail(self.log_file)}"

    def _give_to_server(self, path: Path) -> None:
        if self._ids is not None:
            os.chown(path, *self._ids)

    def _check_reachable(self) -> None:
        """Fail early when the server's user cannot write its directories (a work
        directory under a 0700 one, such as pytest's ``/tmp/pytest-of-root``)."""
        if self._ids is None:
            return
        script = 'for d; do test -w "$d" -a -x "$d" || echo "$d"; done'
        result = subprocess.run(
            ["/bin/sh", "-c", script, "sh", str(self.data_dir), str(self.socket_dir)],
            env=dict(CLEAN_ENV),
            cwd="/",
            user=self._ids[0],
            group=self._ids[1],
            extra_groups=[],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or result.stdout.strip():
            raise PostgresError(
                f"the {SERVER_USER} user cannot reach {result.stdout.split() or self.workdir}: "
                "use a work directory under /tmp (make_workdir) whose parents others may enter"
            )

    def is_initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def _prepare_directories(self) -> None:
        os.chmod(self.workdir, 0o755)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self.socket_dir.mkdir(mode=0o755, exist_ok=True)
        self.log_file.touch(mode=0o640, exist_ok=True)
        for path in (self.data_dir, self.socket_dir, self.log_file):
            self._give_to_server(path)
        self._check_reachable()

    def _initdb(self) -> None:
        pwfile = self.workdir / ".initdb-password"
        _write_private(pwfile, self._password + "\n", self._ids)
        try:
            result = self._run(
                [
                    self._program("initdb"),
                    f"--pgdata={self.data_dir}",
                    f"--username={SUPERUSER}",
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            )
        finally:
            pwfile.unlink()
        if result.returncode != 0:
            raise PostgresError(
                f"initdb failed for {self.data_dir} (exit {result.returncode}):\n"
                f"{(result.stdout + result.stderr).strip()}"
            )
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a") as out:  # root may write the server user's file
            out.write(f"\n# imageguard_devtools.localpg\ninclude '{self.settings_file}'\n")

    def _write_settings(self) -> None:
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "cluster_name": f"'{self.cluster_name}'",
            "max_connections": "200",
            "shared_buffers": "'32MB'",
            "fsync": "off",
            "full_page_writes": "off",
            "synchronous_commit": "on",
            "ssl": "off",
            "logging_collector": "off",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
        }
        self.settings_file.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        os.chmod(self.settings_file, 0o644)  # the server's user reads it
        self.write_passfile(self.passfile, SUPERUSER, self._password)

    # Lifecycle -------------------------------------------------------------------------
    def postmaster_pid(self) -> int | None:
        """Pid of the running postmaster (from postmaster.pid), or None."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def server_pids(self) -> list[int]:
        """Pids of all live processes of this server: the postmaster (and a child not yet
        renamed), whose command line names the data directory, and the children, whose
        title names :attr:`cluster_name`."""
        data_dir = str(self.data_dir).encode()
        title = f"postgres: {self.cluster_name}: ".encode()
        pids: list[int] = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            argv = _argv(int(entry.name))
            if not argv:
                continue
            ours = argv[0].startswith(title) or (
                os.path.basename(argv[0]) in (b"postgres", b"postmaster") and data_dir in argv
            )
            if ours and _alive(int(entry.name)):
                pids.append(int(entry.name))
        return sorted(pids)

    def is_running(self) -> bool:
        return bool(self.server_pids())

    def start(self, timeout: float = 30) -> LocalPostgres:
        """Initialise the data directory on the first start, then start the server and
        return once it accepts connections (``pg_ctl -w``).

        A port chosen automatically that another process took meanwhile is replaced by a
        fresh one, before the first successful start only (later ones keep the port that
        DSNs already name). Raises :class:`PostgresError` with the log's tail.
        """
        if self.is_running():
            raise PostgresError(f"a server for {self.data_dir} is already running")
        self._prepare_directories()
        if not self.is_initialised():
            self._initdb()
        attempts = 3 if self._auto_port and not self._started_before else 1
        for attempt in range(attempts):
            self._write_settings()
            log_size = self.log_file.stat().st_size
            result = self._run(
                [
                    self._program("pg_ctl"),
                    "start",
                    f"--pgdata={self.data_dir}",
                    f"--log={self.log_file}",
                    "--wait",
                    f"--timeout={max(1, int(timeout))}",
                    "--silent",
                ],
                timeout=timeout + 10,
            )
            if result.returncode == 0 and self.is_running():
                self._started_before = True
                return self
            self._kill_all()
            with self.log_file.open(errors="replace") as log:
                log.seek(log_size)
                new_lines = log.read()
            if "could not bind" in new_lines and attempt + 1 < attempts:
                self._port = free_port()
                continue
            raise PostgresError(
                f"pg_ctl start failed for {self.data_dir} on port {self.port} "
                f"(exit {result.returncode}):\n{(result.stdout + result.stderr).strip()}\n"
                f"{self._log_tail()}"
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self, mode: str = "fast", timeout: float = 30) -> None:
        """Shut the server down (``pg_ctl stop -m MODE``: smart, fast or immediate) and
        wait until all its processes exit; what is left after *timeout* is SIGKILLed. A
        server that is not running is left alone."""
        if mode not in STOP_MODES:
            raise ValueError(f"mode must be one of {STOP_MODES}, not {mode!r}")
        if self.postmaster_pid() is not None:
            self._run(
                [
                    self._program("pg_ctl"),
                    "stop",
                    f"--pgdata={self.data_dir}",
                    f"--mode={mode}",
                    "--wait",
                    f"--timeout={max(1, int(timeout))}",
                    "--silent",
                ],
                timeout=timeout + 10,
            )
        if not self._wait_gone(timeout):
            self._kill_all()
            if self.server_pids():
                raise PostgresError(
                    f"postgres processes {self.server_pids()} did not exit ({self.data_dir})\n"
                    f"{self._log_tail()}"
                )

    def restart(self, timeout: float = 30) -> LocalPostgres:
        """:meth:`stop` (fast), then :meth:`start`."""
        self.stop(timeout=timeout)
        return self.start(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the postmaster and all its children at once, as a crash would, and wait
        until they are gone. The next :meth:`start` runs crash recovery."""
        self._kill_all()
        if self.server_pids():
            raise PostgresError(f"postgres processes {self.server_pids()} survived SIGKILL")

    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.server_pids():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def _kill_all(self) -> None:
        """SIGKILL every process of the server until none is left (5 s at most). The
        postmaster is stopped first, so it forks no new backend while its children are
        being listed."""
        postmaster = self.postmaster_pid()
        if postmaster is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(postmaster, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pids = self.server_pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        if not self.server_pids():
            self._remove_stale_locks()

    def _remove_stale_locks(self) -> None:
        """Remove postmaster.pid and the socket's lock file once every process of the
        server is dead.

        pg_ctl leaves the postmaster a child of init: killed, it stays a zombie until init
        reaps it (1.5 s here; never under a shell as PID 1), and its pid, which still
        answers ``kill(pid, 0)``, makes a new postmaster take the lock files for a running
        server's and refuse to start. Crash recovery does not need them (it goes by
        pg_control and the WAL).
        """
        for lock in [self.data_dir / "postmaster.pid", *self.socket_dir.glob(".s.PGSQL.*.lock")]:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()

    # SQL -------------------------------------------------------------------------------
    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run *sql* (one or more statements) as the superuser over the Unix socket with
        psql; its output, unaligned and without headers (``psql -At``), without the last
        newline. Raises :class:`PostgresError` with psql's errors when a statement
        fails."""
        result = self._run(
            [
                self._program("psql"),
                "--no-psqlrc",
                "--quiet",
                "--no-align",
                "--tuples-only",
                "--set=ON_ERROR_STOP=1",
                f"--host={self.socket_dir}",
                f"--port={self.port}",
                f"--username={SUPERUSER}",
                f"--dbname={dbname}",
                "--file=-",
            ],
            as_server=False,
            input_text=sql,
        )
        if result.returncode != 0:
            raise PostgresError(
                f"psql on {dbname} failed (exit {result.returncode}): {result.stderr.strip()}"
            )
        return result.stdout.removesuffix("\n")

    def create_role(self, name: str, password: str) -> None:
        """Create a login role *name* with *password* (stored as a SCRAM hash; the
        statement goes to psql on its standard input, never on a command line)."""
        self.psql(f"CREATE ROLE {_quote_ident(name)} LOGIN PASSWORD {_quote_literal(password)};")

    def create_database(self, name: str, owner: str) -> None:
        self.psql(f"CREATE DATABASE {_quote_ident(name)} OWNER {_quote_ident(owner)};")

    # Cleaning up -----------------------------------------------------------------------
    def cleanup(self) -> None:
        """Stop the server (SIGKILL when it will not stop) and remove the work
        directory."""
        try:
            self.stop()
        except PostgresError:
            self._kill_all()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc_info: Any) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"LocalPostgres(port={self.port}, workdir={str(self.workdir)!r})"

