"""How :class:`~imageguard.store.CachedAcl` knows that what it remembers is still the
store's state: one *watch* per kind of storage.

A watch answers two questions. :meth:`unchanged` comes on every request and must cost
next to nothing: is the snapshot found at this *version* still current? :meth:`refresh`
comes only when the answer was no (under the reader's lock): what is the version now,
reopening the store if it was replaced or its connection lost? Between them, :meth:`store`
hands out the store to query.

* :class:`SqliteWatch`: one ``stat`` of the change stamp per request (:mod:`.stamp`), and
  SQLite's ``data_version`` at most every :data:`~imageguard.store.stamp.SAFETY_CHECK_S`;
* :class:`PostgresWatch`: the generation of a :class:`~imageguard.store.listener.ChangeListener`
  per request, an attribute read; shared by every reader of one database in a process.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import ClassVar, Hashable, Protocol

from ..errors import StoreError, StoreUnavailable
from ..files.fileversion import Validator, stat_validator
from .aclstore import AclStore
from .listener import ChangeListener
from .postgres import CONNECT_TIMEOUT_S, PostgresStorage
from .stamp import SAFETY_CHECK_S, stamp_path


class Watch(Protocol):
    """What a :class:`~imageguard.store.CachedAcl` asks of its storage's change tracking."""

    location: str

    def unchanged(self, version: Hashable, checked_at: float, now: float) -> bool:
        """True when a snapshot found at *version* (last confirmed at *checked_at*) is
        still the store's state at *now*: the per-request check."""

    def refresh(self, known: Hashable | None) -> Hashable:
        """The store's version now (*known*: the version of the snapshot in hand)."""

    def store(self) -> AclStore:
        """The store to query for the current version's answers."""

    def failed(self) -> None:
        """A query through :meth:`store` found the database unreachable."""

    def close(self) -> None:
        """Close what the watch opened."""


def stat_key(path: str) -> Validator | None:
    """The :func:`~imageguard.files.fileversion.stat_validator` of the file at *path* (the
    store, its change stamp), or ``None`` when it does not exist. For the store's own file
    this is what changes when it is changed other than by SQLite's WAL writes (overwritten
    in place, its permissions changed, replaced); for the stamp, every committed write."""
    try:
        return stat_validator(path)
    except OSError as exc:  # its folder unsearchable, say: a store fault, not the image's
        raise StoreError(f"cannot read ACL store {path}: {exc.strerror}") from None


class SqliteWatch:
    """An SQLite file's changes: its stamp per request, SQLite itself once a second
    (which also notices a store replaced by another file, removed, overwritten in place
    or made unreadable, and a schema upgraded by a newer imageguard)."""

    def __init__(self, path: str) -> None:
        self.location = path
        self._stamp = stamp_path(path)
        self._store: AclStore | None = None
        self._file_id: Validator | None = None
        #: Raised at every (re)open, so no version of an earlier file is ever current.
        self._opened = 0

    def unchanged(self, version: Hashable, checked_at: float, now: float) -> bool:
        return (
            now - checked_at < SAFETY_CHECK_S
            and isinstance(version, tuple)
            and version[1] == stat_key(self._stamp)
        )

    def refresh(self, known: Hashable | None) -> Hashable:
        stamp = stat_key(self._stamp)  # read before the data: a later write is seen later
        file_id = stat_key(self.location)
        if file_id is None:
            self.close()
            raise StoreError(f"ACL store {self.location} does not exist: run 'imageguard init'")
        if self._store is None or file_id != self._file_id:
            self.close()
            self._store = AclStore(self.location)
            self._file_id = file_id
            self._opened += 1
        storage = self._store.storage
        version = (self._opened, stamp, storage.data_version())  # type: ignore[attr-defined]
        if known is not None and version != known and known[0] == self._opened:  # type: ignore[index]
            try:  # changed since it was opened: by a newer imageguard?
                storage.check_schema()
            except BaseException:
                self.close()
                raise
        return version

    def store(self) -> AclStore:
        if self._store is None:  # closed by another thread's refresh meanwhile
            raise StoreError(f"ACL store {self.location} was closed while it was read")
        return self._store

    def failed(self) -> None:
        """Nothing to do: a file is not unreachable the way a server is."""

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
        self._store = None
        self._file_id = None


class PostgresWatch:
    """A PostgreSQL store's changes, as its :class:`ChangeListener` hears them; one per
    database and process (:meth:`shared`), with one connection for queries beside the
    listener's: two connections per Apache process, whatever its threads."""

    _shared: ClassVar[dict[tuple[int, str], PostgresWatch]] = {}
    _shared_lock = threading.Lock()

    def __init__(self, conninfo: str) -> None:
        self.location = conninfo
        self.listener = ChangeListener(conninfo)
        self._store: AclStore | None = None
        #: The listener's connection count when the query connection was opened: one
        #: opened before the listener's last reconnection may have died with it.
        self._opened_at = 0
        self._lock = threading.Lock()

    @classmethod
    def shared(cls, conninfo: str) -> PostgresWatch:
        """The watch of *conninfo* in this process (made at its first use)."""
        key = (os.getpid(), conninfo)
        with cls._shared_lock:
            watch = cls._shared.get(key)
            if watch is None:
                watch = cls._shared[key] = cls(conninfo)
            return watch

    def unchanged(self, version: Hashable, checked_at: float, now: float) -> bool:
        return self.listener.current(now) == version

    def refresh(self, known: Hashable | None) -> Hashable:
        self.listener.start(wait=CONNECT_TIMEOUT_S + 1)
        version = self._vouched()
        with self._lock:
            if not self._open():
                self._reopen()
            elif known is not None and version != known:
                try:  # changed: by a newer imageguard?
                    self._store.storage.check_schema()  # type: ignore[union-attr]
                except StoreUnavailable:
                    self._close_store()
                    self.listener.suspect()
                    raise
        return version

    def store(self) -> AclStore:
        self._vouched()
        with self._lock:
            if not self._open():  # lost with the connection, and PostgreSQL is back
                self._reopen()
            return self._store  # type: ignore[return-value]

    def _vouched(self) -> int:
        version = self.listener.current(time.monotonic())
        if version is None:
            raise StoreUnavailable(
                f"ACL store {self.location} is unreachable: "
                f"{self.listener.last_error or 'no word from PostgreSQL'}"
            )
        return version

    def _open(self) -> bool:
        """True when the query connection is open and not known to be broken."""
        storage = self._store.storage if self._store is not None else None
        return (
            isinstance(storage, PostgresStorage)
            and not storage.broken
            and self._opened_at == self.listener.connections
        )

    def _reopen(self) -> None:
        self._close_store()
        try:
            self._opened_at = self.listener.connections
            self._store = AclStore(self.location)
        except StoreUnavailable:
            self.listener.suspect()
            raise

    def failed(self) -> None:
        with self._lock:
            self._close_store()
        self.listener.suspect()

    def _close_store(self) -> None:
        if self._store is not None:
            with contextlib.suppress(Exception):  # a lost connection may fail to close
                self._store.close()
        self._store = None

    def close(self) -> None:
        """Stop the listener and close the query connection (for tests and tools; the
        handlers keep theirs for the life of the process)."""
        self.listener.stop()
        with self._lock:
            self._close_store()
        with self._shared_lock:
            for key, watch in list(self._shared.items()):
                if watch is self:
                    del self._shared[key]
