"""Read-only access to an application's mod_python sessions.

mod_python's ``Session.Session(req)`` is made for the application that owns the session:
without a valid cookie it *creates* a session and sends ``Set-Cookie``, it holds a
session-wide lock for the rest of the request, and it rewrites the session. None of that
is acceptable for a gatekeeper that runs for every image of a gallery page. The readers
here open the stored session read-only instead, in the same places and formats
mod_python writes them:

* ``FileSession``: one pickle per session, ``<directory>/mp_sess/<sid[:2]>/<sid>``;
* ``DbmSession``: one dbm database holding every session, keyed by the sid.

A stored session is a pickled ``dict`` with ``_data`` (the application's keys),
``_created``, ``_accessed`` and ``_timeout``; it is alive while
``now - _accessed <= _timeout``, exactly mod_python's rule.

Sessions hold pickles, so only files the web server wrote may be read: the readers never
follow a sid that is not 32 lower-case hex digits, which also rules out path tricks.
Each reader keeps the last load of every session (a
:class:`~imageguard.support.boundedcache.BoundedCache` by sid) with the
:func:`~imageguard.files.fileversion.validator` of the file it came from, so an unchanged
session costs one ``stat`` per request, not an unpickle.
"""

from __future__ import annotations

import contextlib
import dbm
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ContextManager, Protocol

from ..errors import ConfigError
from ..files.fileversion import Validator, validator
from ..policy.principals import Identity, check_name, valid_groups
from ..support.boundedcache import BoundedCache

DEFAULT_COOKIE = "pysid"
_TORN_READ_RETRIES = 3
_CACHE_LIMIT = 4096


@dataclass(frozen=True)
class StoredSession:
    """A session as mod_python stored it."""

    data: dict[str, Any]
    accessed: float
    timeout: float

    def alive(self, now: float) -> bool:
        """mod_python's own expiry rule: alive while ``now - accessed <= timeout``."""
        return now - self.accessed <= self.timeout


LockFactory = Callable[[], ContextManager[None]]


class SessionReader(Protocol):
    """Loads a session by sid, read-only; ``None`` when it does not exist or is unreadable
    (a FileSession reader raises :class:`ConfigError` when Apache's user may not read it)."""

    def load(self, sid: str, lock: LockFactory | None = None) -> StoredSession | None:
        """Return the stored session for *sid*, or ``None``.

        *lock* makes the lock the session type's writers take (mod_python's global
        mutex), for readers that need it; it is held only while reading.
        """


_HEX_DIGITS = "0123456789abcdef"


def valid_sid(sid: str | None) -> bool:
    """True when *sid* has mod_python's sid form (32 lower-case hex digits).

    (Stripping the hex digits and finding nothing left is several times faster than a
    regular expression, and this runs for every image request.)
    """
    return sid is not None and len(sid) == 32 and not sid.strip(_HEX_DIGITS)


def _decode(blob: bytes) -> StoredSession | None:
    """Unpickle one stored session; ``None`` when the bytes are not a session."""
    try:
        raw = pickle.loads(blob)
        data = raw["_data"]
        accessed = float(raw["_accessed"])
        timeout = float(raw["_timeout"])
    except Exception:
        return None
    if not isinstance(data, dict):
        return None
    return StoredSession(data, accessed, timeout)


#: (validator of what was read, the session decoded from it), by sid.
_SessionCache = BoundedCache[str, tuple[object, StoredSession]]


def _cached(cache: _SessionCache, sid: str, read_at: object) -> StoredSession | None:
    """The session kept for *sid* if it was read from the files at validator *read_at*."""
    entry = cache.get(sid)
    if entry is not None and entry[0] == read_at:
        return entry[1]
    return None


class FileSessionReader:
    """Reads mod_python ``FileSession`` files under *directory* (the ``database_directory``).

    mod_python rewrites a session file in place (truncate, then write), so a read can
    meet an empty or half-written file; such a read is retried a few times and then
    treated as no session (the request is refused, never wrongly allowed).
    """

    def __init__(self, directory: str) -> None:
        self.sessions_dir = os.path.join(directory, "mp_sess")
        self._cache: _SessionCache = BoundedCache(_CACHE_LIMIT)

    def path_of(self, sid: str) -> str:
        """Where mod_python keeps the session *sid*."""
        return f"{self.sessions_dir}/{sid[:2]}/{sid}"

    def load(self, sid: str, lock: LockFactory | None = None) -> StoredSession | None:
        """Return the stored session for *sid*, or ``None`` (missing, torn, not a session);
        :class:`ConfigError` when Apache's user may not read it (permissions, I/O).

        No lock is taken (*lock* is ignored): a torn read is detected and retried instead,
        so a page request holding its session lock never stalls the images it shows. An
        unchanged session costs one ``stat``.
        """
        if not valid_sid(sid):
            return None
        path = self.path_of(sid)
        try:
            cached = _cached(self._cache, sid, validator(os.stat(path)))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self._unreadable(exc) from None
        if cached is not None:
            return cached
        for _attempt in range(_TORN_READ_RETRIES):
            try:
                with open(path, "rb") as handle:
                    read_at = validator(os.fstat(handle.fileno()))
                    blob = handle.read()
            except (FileNotFoundError, NotADirectoryError):
                return None
            except OSError as exc:
                raise self._unreadable(exc) from None
            session = _decode(blob) if blob else None
            if session is not None:
                self._cache.put(sid, (read_at, session))
                return session
            time.sleep(0.001)
        return None

    def _unreadable(self, exc: OSError) -> ConfigError:
        """The error for sessions Apache's user cannot read (not a viewer's fault: every
        login of the directory is lost). It names the folder, never the session id."""
        return ConfigError(
            f"cannot read the sessions in {self.sessions_dir}: {exc.strerror} (Apache's "
            "user must be able to read the application's session files)"
        )


class DbmSessionReader:
    """Reads mod_python ``DbmSession`` entries from the dbm database *filename*.

    mod_python guards the database with its global mutex 0 while it opens, reads or
    writes it. The handler passes a factory for that same lock to :meth:`load`; it is
    held only while the entry is read, never for the rest of the request.
    """

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self._cache: _SessionCache = BoundedCache(_CACHE_LIMIT)

    def _files(self) -> list[str]:
        # The ndbm flavour writes <name>.db (or .dir and .pag); gdbm and dumb use others.
        names = [self.filename + ext for ext in ("", ".db", ".dir", ".pag", ".dat")]
        return [name for name in names if os.path.exists(name)]

    def _validator(self) -> tuple[Validator, ...] | None:
        try:
            found = tuple(validator(os.stat(name)) for name in self._files())
        except OSError:
            return None
        return found or None

    def load(self, sid: str, lock: LockFactory | None = None) -> StoredSession | None:
        """Return the stored session for *sid*, or ``None``."""
        if not valid_sid(sid):
            return None
        read_at = self._validator()
        if read_at is None:
            return None
        cached = _cached(self._cache, sid, read_at)
        if cached is not None:
            return cached
        blob = self._read(sid.encode(), lock or contextlib.nullcontext)
        session = _decode(blob) if blob else None
        if session is not None:
            self._cache.put(sid, (read_at, session))
        return session

    def _read(self, key: bytes, lock: LockFactory) -> bytes | None:
        with lock():
            try:
                with dbm.open(self.filename, "r") as db:
                    return db.get(key)
            except Exception:
                return None


@dataclass(frozen=True)
class SessionKeys:
    """Which session keys hold the user name and the groups."""

    user_key: str = "user"
    groups_key: str = "groups"


def identity_from_session(session: StoredSession, keys: SessionKeys) -> Identity | None:
    """The identity a live session's data names, or ``None`` when it names no valid user.

    The groups may be stored as a list, tuple, set or a comma/space separated string.
    Invalid group names are ignored; an invalid user name means no identity.
    """
    user = session.data.get(keys.user_key)
    if not isinstance(user, str):
        return None
    try:
        check_name(user, "user")
    except ValueError:
        return None
    raw = session.data.get(keys.groups_key, ())
    if isinstance(raw, str):
        raw = raw.replace(",", " ").split()
    if not isinstance(raw, (list, tuple, set, frozenset)):
        return Identity(user)
    return Identity(user, valid_groups(raw))
