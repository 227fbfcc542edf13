"""The ACL store in one SQLite file (:class:`SqliteStorage`): connecting, the schema and
its migrations, and the transactions every read and write goes through.

Why SQLite, and how it is used:

* WAL mode, so that Apache's readers never block a writer (the CLI, the application's
  grant on upload) and a writer never blocks them;
* a busy timeout, so that two writers queue instead of failing;
* every write in one ``BEGIN IMMEDIATE`` transaction: a failed import or a bad rule
  changes nothing; each commit then bumps the change stamp (:mod:`.stamp`);
* ``PRAGMA user_version`` holds the schema version, checked on every open; an older
  store is brought up to date by the steps of :data:`_MIGRATIONS` it lacks.

:class:`SqliteStorage` is that plumbing, behind :class:`~imageguard.store.storage.Storage`;
:class:`~imageguard.store.AclStore` builds the store's API on it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator

from ..errors import PatternError, StoreError
from ..policy.levels import parse_level
from ..policy.patterns import compile_pattern
from .stamp import SAFETY_CHECK_S, STAMP_SUFFIX, bump_stamp, stamp_path
from .storage import Storage, Writer

BUSY_TIMEOUT_S = 5.0

#: Each step brings the schema from the version before it to its own number (SQL
#: statements, or a function given the connection); a new store runs them all, an older
#: store the ones it lacks, in one transaction.
_MIGRATIONS: dict[int, tuple[str | Callable[[sqlite3.Connection], None], ...]] = {
    1: (
        """CREATE TABLE rules (
            pattern    TEXT NOT NULL,
            principal  TEXT NOT NULL,
            level      TEXT NOT NULL CHECK (level IN ('full', 'preview', 'thumb', 'deny')),
            anchor     TEXT NOT NULL,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
            PRIMARY KEY (pattern, principal)
        )""",
        "CREATE INDEX rules_by_anchor ON rules (anchor)",
        """CREATE TABLE memberships (
            user TEXT NOT NULL,
            grp  TEXT NOT NULL,
            PRIMARY KEY (user, grp)
        )""",
    ),
    2: (
        # Tickets of `user` stamped at or before `until` (Unix time) are refused.
        "CREATE TABLE revoked_users (user TEXT PRIMARY KEY, until INTEGER NOT NULL)",
        # One ticket, or one share link, by its signature.
        """CREATE TABLE revoked_signatures (
            signature  TEXT PRIMARY KEY,
            kind       TEXT NOT NULL CHECK (kind IN ('ticket', 'link')),
            revoked_at INTEGER NOT NULL
        )""",
    ),
}


def _compose_patterns(conn: sqlite3.Connection) -> None:
    """Version 3: patterns and anchors in Unicode NFC (see imageguard.policy.patterns), so that
    a rule stored as typed in decomposed form is found for the paths it names. Two rules
    that become one keep the lower level: a deny is never lost to the merge."""
    rows = conn.execute("SELECT pattern, principal, level, anchor FROM rules").fetchall()
    for pattern, principal, level, anchor in rows:
        if pattern.isascii():
            continue
        try:
            composed = compile_pattern(pattern)
        except PatternError:  # left as it was: the matcher refuses it as before
            continue
        if composed.text == pattern and composed.anchor == anchor:
            continue
        conn.execute("DELETE FROM rules WHERE pattern = ? AND principal = ?", (pattern, principal))
        found = conn.execute(
            "SELECT level FROM rules WHERE pattern = ? AND principal = ?",
            (composed.text, principal),
        ).fetchone()
        if found is not None:
            level = min(parse_level(level), parse_level(found[0])).label
        conn.execute(
            "INSERT OR REPLACE INTO rules (pattern, principal, level, anchor) VALUES (?, ?, ?, ?)",
            (composed.text, principal, level, composed.anchor),
        )


_MIGRATIONS[3] = (_compose_patterns,)
SCHEMA_VERSION = max(_MIGRATIONS)


def _open(path: str, mode: str) -> sqlite3.Connection:
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode={mode}"
    return sqlite3.connect(
        uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )


def _connect(path: str, *, create: bool) -> sqlite3.Connection:
    """Open *path*; unless *create*, a missing file is an error, never a new empty store."""
    try:
        try:
            conn = _open(path, "rwc" if create else "rw")
        except sqlite3.OperationalError:
            if create or not os.path.exists(path):
                raise
            # Readable but not writable (e.g. Apache's user): read-only is enough to decide.
            conn = _open(path, "ro")
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    except sqlite3.Error as exc:
        if not create and not os.path.exists(path):
            raise StoreError(f"ACL store {path} does not exist: run 'imageguard init'") from None
        raise StoreError(f"cannot open ACL store {path}: {exc}") from None
    return conn


def _readonly_hint(exc: sqlite3.Error, path: str) -> str:
    """What to do when SQLite refuses a read for want of write access: a store in WAL mode
    is read through its ``-shm`` file, which a reader must be able to create (in the
    store's directory) when no other connection has it open."""
    if "readonly" not in str(exc):
        return ""
    folder = os.path.dirname(os.path.abspath(path))
    return (
        f" (reading a store needs write access to {folder}, where SQLite keeps its -shm "
        "file: Apache's user must be able to write there; run a command as the store's "
        "owner, e.g. with sudo -u www-data, or as root)"
    )


def _schema_version(conn: sqlite3.Connection, path: str) -> int:
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.OperationalError as exc:  # locked, unreadable: says nothing of its kind
        hint = _readonly_hint(exc, path)
        raise StoreError(f"cannot read ACL store {path}: {exc}{hint}") from None
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not an imageguard ACL store: {exc}") from None


def _match_owner(path: str) -> None:
    """When root writes a store owned by another user (Apache's), give it the side files.

    SQLite creates ``-wal`` and ``-shm`` next to the database as whoever opens it first;
    if that is root, Apache's user could no longer use them (the change stamp likewise).
    """
    if os.geteuid() != 0:
        return
    try:
        owner = os.stat(path)
    except OSError:
        return
    if owner.st_uid == 0:
        return
    for suffix in ("-wal", "-shm", STAMP_SUFFIX):
        with contextlib.suppress(OSError):
            side = os.stat(path + suffix)
            if side.st_uid != owner.st_uid:
                os.chown(path + suffix, owner.st_uid, owner.st_gid)


class SqliteStorage(Storage):
    """One ACL store's SQLite file: its connection (shared by threads, one query at a
    time), its schema, and the read and write transactions the model is built of."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = False) -> None:
        self.path = self.location = os.fspath(path)
        self._lock = threading.RLock()
        self._conn = _connect(self.path, create=create)
        try:
            self._prepare_schema(create)
        except BaseException:
            self._conn.close()
            raise
        _match_owner(self.path)

    def _prepare_schema(self, create: bool) -> None:
        """Check the schema version; create a new store or upgrade an older one."""
        version = _schema_version(self._conn, self.path)
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, from a newer imageguard; this "
                f"one reads up to version {SCHEMA_VERSION}"
            )
        if version == 0:
            if not create:
                raise StoreError(f"{self.path} is not an imageguard ACL store (no schema)")
            tables = self.query("SELECT count(*) FROM sqlite_master")[0][0]
            # Tables and no version: another program's file, unless another process has
            # just created the store (its tables and version commit together).
            if tables and _schema_version(self._conn, self.path) == 0:
                raise StoreError(f"{self.path} is an SQLite file of another program; not touched")
            self._use_wal()
        try:
            with self.transaction():
                conn = self._conn
                current = _schema_version(conn, self.path)  # another process may have upgraded
                for step in range(current + 1, SCHEMA_VERSION + 1):
                    for statement in _MIGRATIONS[step]:
                        if callable(statement):
                            statement(conn)
                        else:
                            conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except StoreError as exc:
            if version and "readonly" in str(exc):
                raise StoreError(
                    f"{self.path} has schema version {version}, older than this imageguard's "
                    f"{SCHEMA_VERSION}, and this user may not upgrade it: run "
                    f"'imageguard --db {self.path} rules' once as its owner"
                ) from None
            raise

    def _use_wal(self) -> None:
        """Put a new store in WAL mode. Two processes creating it at the same moment both
        ask for the lock this needs while each holds a read lock, and SQLite then fails one
        at once rather than wait: retry that one for as long as the busy timeout."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise StoreError(f"cannot write ACL store {self.path}: {exc}") from None
            time.sleep(0.01)

    def check_schema(self) -> None:
        self._prepare_schema(create=False)

    def data_version(self) -> int:
        """SQLite's ``data_version``: changes when another connection commits."""
        return int(self.query("PRAGMA data_version")[0][0])

    # -- plumbing ---------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Writer]:
        """One write transaction: all of it commits, or none of it."""
        with self._lock:
            self._begin("BEGIN IMMEDIATE", "write")
            try:
                yield self._conn
            except BaseException as exc:
                # SQLite has already rolled back after some errors (a full disk, I/O).
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"cannot write ACL store {self.path}: {exc}") from None
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise StoreError(f"cannot write ACL store {self.path}: {exc}") from None
            try:
                bump_stamp(self.path)
            except OSError as exc:
                raise StoreError(
                    f"the change was saved, but {stamp_path(self.path)} could not be updated "
                    f"({exc.strerror}): Apache sees it within {SAFETY_CHECK_S:g} s"
                ) from None
        _match_owner(self.path)

    @contextlib.contextmanager
    def one_read(self) -> Iterator[None]:
        """Queries made inside see one state of the store (one read transaction)."""
        with self._lock:
            self._begin("BEGIN", "read")
            try:
                yield
            finally:
                if self._conn.in_transaction:  # a read: nothing to lose if this fails
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")

    def _begin(self, statement: str, doing: str) -> None:
        """Start a transaction with *statement*; when SQLite refuses, raise StoreError
        "cannot *doing* ACL store ..." (*doing*: ``read`` or ``write``)."""
        try:
            self._conn.execute(statement)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot {doing} ACL store {self.path}: {exc}") from None

    def query(self, sql: str, params: Iterable[object] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read ACL store {self.path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()
