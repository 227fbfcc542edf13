"""The store as Apache's handlers read it: :class:`CachedAcl`, one per configuration and
process, keeps what it read in memory and, per request, only asks its watch
(:mod:`.freshness`) whether the store changed: one ``stat`` for SQLite, an attribute read
for PostgreSQL. Only a change, or SQLite's once-a-second safety check, reaches the
database.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from typing import TypeVar

from ..errors import StoreError, StoreUnavailable
from ..policy.acl import Decision, Rule, decide
from ..policy.principals import Identity
from ..support.boundedcache import BoundedCache
from .aclstore import AclStore
from .freshness import PostgresWatch, SqliteWatch, Watch
from .location import parse_location
from .sqlite import BUSY_TIMEOUT_S

_T = TypeVar("_T")


#: How many answers of each kind a :class:`CachedAcl` keeps per version of the store.
CACHE_LIMIT = 50_000
_MISSING = object()


class _Snapshot:
    """What a :class:`CachedAcl` knows at one version of the store."""

    __slots__ = (
        "candidates",
        "checked_at",
        "decisions",
        "groups",
        "revoked_signatures",
        "revoked_users",
        "version",
    )

    def __init__(self, version: Hashable, now: float) -> None:
        #: The watch's token for the store's state these answers belong to.
        self.version = version
        self.checked_at = now
        self.candidates: BoundedCache[str, list[Rule]] = BoundedCache(CACHE_LIMIT)
        self.decisions: BoundedCache[tuple[str, str | None, frozenset[str]], Decision] = (
            BoundedCache(CACHE_LIMIT)
        )
        self.groups: BoundedCache[str, frozenset[str]] = BoundedCache(CACHE_LIMIT)
        self.revoked_users: BoundedCache[str, int | None] = BoundedCache(CACHE_LIMIT)
        self.revoked_signatures: BoundedCache[str, bool] = BoundedCache(CACHE_LIMIT)


class CachedAcl:
    """The store as Apache's handlers read it: decisions from memory until anything changes.

    One instance per configuration and process, shared by its threads. Per
    :meth:`decide`, finding out that nothing changed costs what the watch's
    :meth:`~imageguard.store.freshness.Watch.unchanged` costs; the in-memory state is a
    snapshot replaced as a whole, so readers need no lock on that path.

    A PostgreSQL store that cannot be reached raises
    :class:`~imageguard.errors.StoreUnavailable` (a 503), unless *stale_ok*: then the
    answers remembered before the outage still stand, and only what was never asked is
    refused, until PostgreSQL is back.
    """

    def __init__(self, location: str, *, stale_ok: bool = False) -> None:
        self.path = location
        self.stale_ok = stale_ok
        where = parse_location(location)
        self._watch: Watch = (
            PostgresWatch.shared(where.target) if where.is_postgresql else SqliteWatch(where.target)
        )
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None

    def _current(self) -> _Snapshot:
        """The snapshot for the store as it is now (refreshed under the lock if needed)."""
        snapshot = self._snapshot
        now = time.monotonic()
        if snapshot is not None and self._watch.unchanged(
            snapshot.version, snapshot.checked_at, now
        ):
            return snapshot
        with self._turn():
            return self._refresh(now)

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """This reader's lock (its one connection serves one query at a time), waited for
        no longer than SQLite waits for a locked store: when the store is slow to answer (a
        writer holds SQLite's lock, a PostgreSQL query hangs), each request of the process
        is refused after one busy timeout, never after the timeouts of every request
        queued before it."""
        if not self._lock.acquire(timeout=BUSY_TIMEOUT_S):
            raise StoreError(
                f"cannot read ACL store {self.path}: busy, this request waited "
                f"{BUSY_TIMEOUT_S:g} s behind another one reading it (locked by a writer?)"
            )
        try:
            yield
        finally:
            self._lock.release()

    def _refresh(self, now: float) -> _Snapshot:
        """Ask the watch for the store's version; start a new snapshot if it changed."""
        snapshot = self._snapshot
        try:
            version = self._watch.refresh(snapshot.version if snapshot is not None else None)
        except StoreUnavailable:
            if self.stale_ok and snapshot is not None:
                return snapshot  # the last known answers; misses are still refused
            raise
        except BaseException:
            self._snapshot = None
            raise
        if snapshot is not None and snapshot.version == version:
            snapshot.checked_at = now  # the safety check found nothing new
            return snapshot
        self._snapshot = _Snapshot(version, now)
        return self._snapshot

    def close(self) -> None:
        """Close what this reader opened (tests and tools; the handlers keep theirs)."""
        self._watch.close()
        self._snapshot = None

    def decide(self, relpath: str, identity: Identity) -> Decision:
        """What *identity* may see of *relpath*: remembered per viewer and path until the
        store changes, so a repeated request costs the change check and one look-up."""
        snapshot = self._current()
        key = (relpath, identity.user, identity.groups)
        found = snapshot.decisions.get(key)
        if found is not None:
            return found
        rules = self._cached(snapshot.candidates, relpath, AclStore.candidates)
        if identity.user is not None:
            groups = self._cached(snapshot.groups, identity.user, AclStore.groups_of)
            identity = identity.with_groups(groups)
        decision = decide(rules, relpath, identity)
        snapshot.decisions.put(key, decision)
        return decision

    def revocations_of(self, signature: str, user: str) -> tuple[bool, int | None]:
        """(:meth:`signature_revoked`, :meth:`user_revoked_until`) with one change check."""
        snapshot = self._current()
        return (
            self._cached(snapshot.revoked_signatures, signature, AclStore.signature_revoked),
            self._cached(snapshot.revoked_users, user, AclStore.user_revoked_until),
        )

    def signature_revoked(self, signature: str) -> bool:
        """As :meth:`AclStore.signature_revoked`, from memory when nothing changed."""
        snapshot = self._current()
        return self._cached(snapshot.revoked_signatures, signature, AclStore.signature_revoked)

    def _cached(
        self, cache: BoundedCache[str, _T], key: str, query: Callable[[AclStore, str], _T]
    ) -> _T:
        """The cached answer for *key*, asking the store when there is none yet (two
        threads asking together may both query it; either answer is this snapshot's)."""
        found = cache.get(key, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[return-value]
        with self._turn():
            store = self._watch.store()
            try:
                value = query(store, key)
            except StoreUnavailable:
                self._watch.failed()
                raise
        cache.put(key, value)
        return value
