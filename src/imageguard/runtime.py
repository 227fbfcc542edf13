"""What the handlers keep between requests, and the request-independent steps they take.

A :class:`Runtime` is built once per distinct configuration (see :func:`runtime_for`) and
holds the parsed :class:`~imageguard.settings.Settings`, the :class:`~imageguard.gate.Gate`,
the session reader and the cached ACL. The handlers in :mod:`imageguard.handlers` only
translate between Apache's request and these objects. Nothing here imports mod_python.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from .acl import Decision
from .cookies import find_cookie
from .errors import ConfigError
from .gate import Gate
from .principals import ANONYMOUS, Identity
from .sessions import (
    LockFactory,
    SessionReader,
    StoredSession,
    identity_from_session,
    make_reader,
    valid_sid,
)
from .settings import Settings, is_relevant
from .store import CachedAcl

_IDENTITY_LIMIT = 4096


@dataclass(frozen=True)
class Login:
    """The outcome of reading a request's session.

    ``identity`` is :data:`~imageguard.principals.ANONYMOUS` when there is no valid login;
    ``reason`` says why, and ``suspicious`` marks a cookie that cannot have come from
    mod_python (worth a log line at error level). A well-formed cookie naming no session
    is not suspicious: after a logout or mod_python's clean-up of expired sessions, every
    browser still sends one.
    """

    identity: Identity
    reason: str
    suspicious: bool = False


class Runtime:
    """The long-lived objects for one configuration."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gate = Gate.create(settings.root, settings.extensions)
        self.sessions: SessionReader = make_reader(
            settings.session_type, settings.session_directory, settings.dbm_filename
        )
        self._acl = CachedAcl(settings.acl_db) if settings.acl_db else None
        # sid -> (the stored session object, the identity it names): the session reader
        # returns the same object while the session is unchanged, so this skips
        # re-validating the user and group names on every request.
        self._identities: dict[str, tuple[StoredSession, Identity | None]] = {}

    @property
    def acl(self) -> CachedAcl:
        """The cached ACL store; a :class:`ConfigError` when ``imageguard.acl_db`` is unset."""
        if self._acl is None:
            raise ConfigError("imageguard.acl_db is not set: name the ACL store (imageguard init)")
        return self._acl

    def login(
        self,
        cookie_headers: Iterable[str],
        lock: LockFactory | None = None,
        now: float | None = None,
    ) -> Login:
        """Find who the request's session cookie belongs to, reading the session read-only."""
        sid = find_cookie(cookie_headers, self.settings.cookie_name)
        if sid is None:
            return Login(ANONYMOUS, "no session cookie")
        if not valid_sid(sid):
            return Login(ANONYMOUS, "malformed session cookie", suspicious=True)
        session = self.sessions.load(sid, lock)
        if session is None:
            return Login(ANONYMOUS, "session cookie names no stored session")
        if not session.alive(time.time() if now is None else now):
            return Login(ANONYMOUS, "session expired")
        identity = self._identity(sid, session)
        if identity is None:
            return Login(ANONYMOUS, "session holds no logged-in user")
        return Login(identity, "session")

    def _identity(self, sid: str, session: StoredSession) -> Identity | None:
        known = self._identities.get(sid)
        if known is not None and known[0] is session:
            return known[1]
        identity = identity_from_session(session, self.settings.session_keys)
        if len(self._identities) >= _IDENTITY_LIMIT:
            self._identities.clear()
        self._identities[sid] = (session, identity)
        return identity

    def decide(self, relpath: str, identity: Identity) -> Decision:
        """What *identity* may see of *relpath* according to the ACL store."""
        return self.acl.decide(relpath, identity)


_RUNTIMES: dict[tuple[tuple[str, str], ...], Runtime] = {}
_RUNTIMES_LOCK = threading.Lock()


def runtime_for(
    options: Mapping[str, str],
    default_root: str,
    build: Callable[[Settings], Runtime] = Runtime,
) -> Runtime:
    """The runtime for these options, built on first use and kept for the process's life.

    The key is the relevant options themselves, so two directories configured alike share
    one runtime and a directory configured differently gets its own. A configuration
    error is raised every time (and not kept), so that fixing the config takes effect.
    """
    key = tuple(sorted((k, v) for k, v in options.items() if is_relevant(k)))
    if "imageguard.root" not in options:
        key += (("default_root", default_root),)
    found = _RUNTIMES.get(key)
    if found is not None:
        return found
    with _RUNTIMES_LOCK:
        found = _RUNTIMES.get(key)
        if found is None:
            found = _RUNTIMES[key] = build(Settings.from_options(dict(key), default_root))
        return found
