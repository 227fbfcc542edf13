"""The ACL store in a PostgreSQL database (:class:`PostgresStorage`), for sites with more
than one web server: every Apache and the command line share one store.

How it is used:

* psycopg 3 in autocommit mode, each read one statement, each write one explicit
  transaction (``READ COMMITTED``; an export reads in one ``REPEATABLE READ`` snapshot);
* no server-side prepared statements and no session state, so a connection may go
  through PgBouncer in transaction mode (the listener of :mod:`.listener` may not);
* the tables live in the database the location names, which should be imageguard's own
  (``CREATE DATABASE imageguard``); :meth:`PostgresStorage._prepare_schema` refuses a
  database holding another program's ``rules`` table;
* every transaction that writes a row of the store (or truncates a table) adds one to
  ``imageguard_meta.changes`` and sends ``NOTIFY imageguard_changes``, once, through
  triggers: a reader learns of every committed change, made through imageguard or with
  ``psql``, and the counter tells it what it missed while it was disconnected;
* connecting waits at most :data:`CONNECT_TIMEOUT_S`, and TCP keepalives plus
  ``tcp_user_timeout`` end a connection whose peer vanished, unless the location sets
  those parameters itself.
"""

from __future__ import annotations

import contextlib
import functools
import shlex
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ..errors import StoreError, StoreUnavailable
from .location import connection_params, import_psycopg
from .storage import Cursor, Storage

#: The channel every change is announced on (the payload is empty: one per transaction).
CHANNEL = "imageguard_changes"
#: libpq's connect_timeout (whole seconds; libpq takes anything under 2 as 2).
CONNECT_TIMEOUT_S = 2
#: Connection parameters added unless the location sets them.
_DEFAULT_PARAMS = {
    "connect_timeout": str(CONNECT_TIMEOUT_S),
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "2",
    "tcp_user_timeout": "5000",
}
#: Taken by whoever creates or upgrades the schema, so two creators do not collide.
_SCHEMA_LOCK = 0x1A6E_0ACD
SCHEMA_VERSION = 3
_TABLES = ("rules", "memberships", "revoked_users", "revoked_signatures")
#: The transaction-local setting that says this transaction has counted its change.
_DONE_SETTING = "imageguard.counted_in"

#: The schema of version 3 (the version the SQLite store reached through its migrations:
#: the model is the same). Text compares byte by byte (COLLATE "C"), as in SQLite, so both
#: stores list and export in the same order.
_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE imageguard_meta (
        single         boolean PRIMARY KEY DEFAULT true CHECK (single),
        schema_version integer NOT NULL,
        changes        bigint NOT NULL DEFAULT 0
    )""",
    f"INSERT INTO imageguard_meta (schema_version) VALUES ({SCHEMA_VERSION})",
    """CREATE TABLE rules (
        pattern    text COLLATE "C" NOT NULL,
        principal  text COLLATE "C" NOT NULL,
        level      text NOT NULL CHECK (level IN ('full', 'preview', 'thumb', 'deny')),
        anchor     text COLLATE "C" NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (pattern, principal)
    )""",
    "CREATE INDEX rules_by_anchor ON rules (anchor)",
    """CREATE TABLE memberships (
        "user" text COLLATE "C" NOT NULL,
        grp    text COLLATE "C" NOT NULL,
        PRIMARY KEY ("user", grp)
    )""",
    # Tickets of "user" stamped at or before "until" (Unix time) are refused.
    """CREATE TABLE revoked_users (
        "user" text COLLATE "C" PRIMARY KEY,
        until  bigint NOT NULL
    )""",
    """CREATE TABLE revoked_signatures (
        signature  text COLLATE "C" PRIMARY KEY,
        kind       text COLLATE "C" NOT NULL CHECK (kind IN ('ticket', 'link')),
        revoked_at bigint NOT NULL
    )""",
    # Once per transaction however many rows it changes (a transaction-local setting
    # remembers it): an import of many rules updates the counter row once, not once a
    # rule, and notifies once.
    f"""CREATE FUNCTION imageguard_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF current_setting('{_DONE_SETTING}', true) IS DISTINCT FROM
                txid_current()::text THEN
            UPDATE imageguard_meta SET changes = changes + 1;
            PERFORM pg_notify('{CHANNEL}', '');
            PERFORM set_config('{_DONE_SETTING}', txid_current()::text, true);
        END IF;
        RETURN NULL;
    END
    $$""",
    # Row triggers fire only for rows really written (a revoke that removes nothing
    # changes nothing); TRUNCATE has statement triggers only.
    *(
        f"CREATE TRIGGER {table}_changed AFTER INSERT OR UPDATE OR DELETE "
        f"ON {table} FOR EACH ROW EXECUTE FUNCTION imageguard_changed()"
        for table in _TABLES
    ),
    *(
        f"CREATE TRIGGER {table}_truncated AFTER TRUNCATE "
        f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION imageguard_changed()"
        for table in _TABLES
    ),
)


@functools.lru_cache(maxsize=256)
def _dialect(sql: str) -> str:
    """The model's SQL (``?`` parameters) as psycopg takes it (``%s``)."""
    return sql.replace("%", "%%").replace("?", "%s")


def connect(conninfo: str, *, purpose: str) -> Any:
    """An autocommit psycopg connection to *conninfo*, with bounded waits (see the module
    docstring); *purpose* names it in ``pg_stat_activity``. Raises StoreUnavailable."""
    psycopg = import_psycopg()
    params = connection_params(conninfo)
    extra = {key: value for key, value in _DEFAULT_PARAMS.items() if key not in params}
    extra.setdefault("application_name", params.get("application_name") or f"imageguard {purpose}")
    try:
        return psycopg.connect(conninfo, autocommit=True, prepare_threshold=None, **extra)
    except psycopg.Error as exc:
        reason = first_line(exc)
        raise StoreUnavailable(f"cannot reach ACL store {conninfo}: {reason}", reason) from None


def first_line(exc: BaseException) -> str:
    """The first line of *exc*'s message (libpq's run over several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def store_error(location: str, doing: str, exc: BaseException) -> StoreError:
    """The StoreError for psycopg's *exc* while *doing* (``read``, ``write``): a lost or
    refused connection is :class:`StoreUnavailable`, anything else a plain StoreError."""
    psycopg = import_psycopg()
    message = f"cannot {doing} ACL store {location}: {first_line(exc)}"
    if isinstance(exc, psycopg.OperationalError):
        return StoreUnavailable(message)
    return StoreError(message)


class _Writer:
    """The statements of one transaction, in the model's dialect."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        return self._conn.execute(_dialect(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(_dialect(sql), [tuple(row) for row in rows])


class PostgresStorage(Storage):
    """One ACL store's PostgreSQL database: one connection (shared by threads, one
    statement at a time), the schema, and the transactions the model is built of."""

    def __init__(self, conninfo: str, *, create: bool = False) -> None:
        self.location = conninfo
        self._psycopg = import_psycopg()
        self._lock = threading.RLock()
        self._conn = connect(conninfo, purpose="store")
        try:
            self._prepare_schema(create)
        except BaseException:
            self._conn.close()
            raise

    def _prepare_schema(self, create: bool) -> None:
        """Check the schema version; create the schema in a new (empty) database."""
        version = self._schema_version()
        if version == SCHEMA_VERSION:
            return
        if version is not None and version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.location} has schema version {version}, from a newer imageguard; "
                f"this one reads up to version {SCHEMA_VERSION}"
            )
        if version is not None:  # older versions of this store do not exist yet
            raise StoreError(f"{self.location} has an unknown schema version {version}")
        if not create:
            raise StoreError(
                f"{self.location} holds no imageguard ACL store: run "
                f"imageguard --db {shlex.quote(self.location)} init"
            )
        with self.transaction() as conn:
            conn.execute(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
            if self._schema_version() is not None:  # another creator was first
                return
            taken = conn.execute(
                "SELECT count(*) FROM pg_catalog.pg_tables WHERE tablename = ANY(?) "
                "AND schemaname = ANY(current_schemas(false))",
                (list(_TABLES),),
            ).fetchone()
            if taken and taken[0]:
                raise StoreError(
                    f"{self.location} has tables named like imageguard's of another "
                    "program; not touched (give imageguard a database of its own)"
                )
            for statement in _SCHEMA:
                self._conn.execute(statement)

    def _schema_version(self) -> int | None:
        """The schema version, or None when the database has no imageguard schema."""
        # pg_tables, not to_regclass(): a transaction that waited for another creator's
        # lock must see the tables that creator committed meanwhile.
        rows = self.query(
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE tablename = 'imageguard_meta' "
            "AND schemaname = ANY(current_schemas(false))"
        )
        if not rows[0][0]:
            return None
        return int(self.query("SELECT schema_version FROM imageguard_meta")[0][0])

    def check_schema(self) -> None:
        self._prepare_schema(create=False)

    def changes(self) -> int:
        """The change counter: one more for every statement that changed the store."""
        return int(self.query("SELECT changes FROM imageguard_meta")[0][0])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_Writer]:
        with self._lock:
            try:
                with self._conn.transaction():
                    yield _Writer(self._conn)
            except self._psycopg.Error as exc:
                raise store_error(self.location, "write", exc) from None

    @contextlib.contextmanager
    def one_read(self) -> Iterator[None]:
        with self._lock:
            try:
                self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            except self._psycopg.Error as exc:
                raise store_error(self.location, "read", exc) from None
            try:
                yield
            finally:
                with contextlib.suppress(self._psycopg.Error):
                    self._conn.execute("ROLLBACK")

    def query(self, sql: str, params: Iterable[object] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(_dialect(sql), tuple(params)).fetchall()
            except self._psycopg.Error as exc:
                raise store_error(self.location, "read", exc) from None

    @property
    def broken(self) -> bool:
        """True when the connection was lost (the storage must be opened again)."""
        return bool(self._conn.broken or self._conn.closed)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
