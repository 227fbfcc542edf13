"""The small interface between the ACL store's model and the database holding it.

:class:`~imageguard.store.AclStore` holds the model (rules, memberships, revocations,
what a viewer may see) and writes its SQL once, in the dialect SQLite and PostgreSQL
share: ``?`` parameters, ``INSERT ... ON CONFLICT``, ``"user"`` quoted (a reserved word in
PostgreSQL). A :class:`Storage` runs that SQL and owns everything else, which is where the
two differ: connecting, the schema and its upgrades, transactions, and how readers learn
of a change (a stamp file for SQLite, ``NOTIFY`` for PostgreSQL).

* :class:`~imageguard.store.sqlite.SqliteStorage`: one file, WAL mode;
* :class:`~imageguard.store.postgres.PostgresStorage`: one database, psycopg 3.

:func:`open_storage` picks one by the location's form (:mod:`.location`).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol


class Cursor(Protocol):
    """What a statement run in a write transaction gives back."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> tuple | None: ...


class Writer(Protocol):
    """The statements of one write transaction (``?`` parameters in both dialects)."""

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> object: ...


class Storage(abc.ABC):
    """One ACL store's database: its connection (shared by threads, one statement at a
    time), its schema, and the transactions the model is built of. Every failure is a
    :class:`~imageguard.errors.StoreError` naming :attr:`location`; a database that cannot
    be reached at all is its subclass :class:`~imageguard.errors.StoreUnavailable`."""

    #: How messages name the store: the file's path, or the connection string (which
    #: never holds a password: see :mod:`.location`).
    location: str

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[Writer]:
        """One write transaction: all of it commits, or none of it; readers are told."""

    @abc.abstractmethod
    def one_read(self) -> AbstractContextManager[None]:
        """Queries made inside see one state of the store (one read transaction)."""

    @abc.abstractmethod
    def query(self, sql: str, params: Iterable[object] = ()) -> list[tuple]:
        """The rows of one read statement."""

    @abc.abstractmethod
    def check_schema(self) -> None:
        """Check again, as at the first open, that this imageguard can read the store (a
        newer imageguard may have upgraded it since)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection."""


def open_storage(location: str, *, create: bool = False) -> Storage:
    """The storage named by *location* (a path or ``sqlite:PATH``, or a PostgreSQL
    connection string); with *create*, a new store is made when there is none."""
    from .location import parse_location

    where = parse_location(location)
    if where.is_postgresql:
        from .postgres import PostgresStorage

        return PostgresStorage(where.target, create=create)
    from .sqlite import SqliteStorage

    return SqliteStorage(where.target, create=create)
