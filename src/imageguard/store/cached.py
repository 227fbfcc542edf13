"""The store as Apache's handlers read it: :class:`CachedAcl`, one per process, keeps
what it read in memory and, per request, only checks the change stamp (:mod:`.stamp`);
only a change, or the once-a-second safety check, reaches SQLite.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from ..errors import StoreError
from ..files.fileversion import Validator, stat_validator
from ..policy.acl import Decision, Rule, decide
from ..policy.principals import Identity
from ..support.boundedcache import BoundedCache
from .aclstore import AclStore
from .database import BUSY_TIMEOUT_S
from .stamp import SAFETY_CHECK_S, stamp_path

_T = TypeVar("_T")


#: How many answers of each kind a :class:`CachedAcl` keeps per version of the store.
CACHE_LIMIT = 50_000
_MISSING = object()


class _Snapshot:
    """What a :class:`CachedAcl` knows at one version of the store."""

    __slots__ = (
        "candidates",
        "checked_at",
        "data_version",
        "decisions",
        "groups",
        "revoked_signatures",
        "revoked_users",
        "validator",
    )

    def __init__(self, validator: Validator | None, data_version: int, now: float) -> None:
        self.validator = validator
        self.data_version = data_version
        self.checked_at = now
        self.candidates: BoundedCache[str, list[Rule]] = BoundedCache(CACHE_LIMIT)
        self.decisions: BoundedCache[tuple[str, str | None, frozenset[str]], Decision] = (
            BoundedCache(CACHE_LIMIT)
        )
        self.groups: BoundedCache[str, frozenset[str]] = BoundedCache(CACHE_LIMIT)
        self.revoked_users: BoundedCache[str, int | None] = BoundedCache(CACHE_LIMIT)
        self.revoked_signatures: BoundedCache[str, bool] = BoundedCache(CACHE_LIMIT)


def _stat_key(path: str) -> Validator | None:
    """The :func:`~imageguard.files.fileversion.validator` of the file at *path* (the store, its
    change stamp), or ``None`` when it does not exist. For the store's own file this is
    what changes when it is changed other than by SQLite's WAL writes (overwritten in
    place, its permissions changed, replaced); for the stamp, every committed write."""
    try:
        return stat_validator(path)
    except OSError as exc:  # its folder unsearchable, say: a store fault, not the image's
        raise StoreError(f"cannot read ACL store {path}: {exc.strerror}") from None


class CachedAcl:
    """The store as Apache's handlers read it: decisions from memory until anything changes.

    One instance per process, shared by its threads. Per :meth:`decide`, the cost of
    finding out that nothing changed is one ``stat`` of the change stamp; only a change,
    or the once-a-second safety check (which also notices a store replaced by another
    file, removed, overwritten in place or made unreadable, and a schema upgraded by a
    newer imageguard, and checks it again as at its first open), reaches SQLite. The
    in-memory state is an immutable-ish snapshot replaced as a whole, so readers need no
    lock on the fast path.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp = stamp_path(path)
        self._lock = threading.Lock()
        self._store: AclStore | None = None
        self._file_id: Validator | None = None
        self._snapshot: _Snapshot | None = None

    def _current(self) -> _Snapshot:
        """The snapshot for the store as it is now (refreshed under the lock if needed)."""
        stamp = _stat_key(self._stamp)
        snapshot = self._snapshot
        now = time.monotonic()
        if (
            snapshot is not None
            and snapshot.validator == stamp
            and now - snapshot.checked_at < SAFETY_CHECK_S
        ):
            return snapshot
        with self._turn():
            return self._refresh(stamp, now)

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """This reader's lock (its one connection serves one query at a time), waited for
        no longer than SQLite waits for the store: when a writer locks the store, each
        request of the process is refused after one busy timeout, never after the timeouts
        of every request queued before it."""
        if not self._lock.acquire(timeout=BUSY_TIMEOUT_S):
            raise StoreError(
                f"cannot read ACL store {self.path}: busy, this request waited "
                f"{BUSY_TIMEOUT_S:g} s behind another one reading it (locked by a writer?)"
            )
        try:
            yield
        finally:
            self._lock.release()

    def _refresh(self, stamp: Validator | None, now: float) -> _Snapshot:
        """Reopen a replaced or vanished store, and start a new snapshot if anything changed."""
        file_id = _stat_key(self.path)
        if file_id is None:
            self._close()
            raise StoreError(f"ACL store {self.path} does not exist: run 'imageguard init'")
        if self._store is None or file_id != self._file_id:
            self._close()
            self._store = AclStore(self.path)
            self._file_id = file_id
        version = self._store._query("PRAGMA data_version")[0][0]
        snapshot = self._snapshot
        if (
            snapshot is not None
            and snapshot.validator == stamp
            and snapshot.data_version == version
        ):
            snapshot.checked_at = now  # the safety check found nothing new
            return snapshot
        if snapshot is not None:  # changed since it was opened: by a newer imageguard?
            try:
                self._store._prepare_schema(create=False)
            except BaseException:
                self._close()
                raise
        self._snapshot = _Snapshot(stamp, version, now)
        return self._snapshot

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
        self._store = None
        self._file_id = None
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
            if self._store is None:  # closed by another thread's refresh meanwhile
                raise StoreError(f"ACL store {self.path} was closed while it was read")
            value = query(self._store, key)
        cache.put(key, value)
        return value
