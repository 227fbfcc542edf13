"""The login sources: who a request's credentials name, behind one small interface.

Each source implements :class:`~imageguard.policy.decision.LoginSource`: a ``cookie_name``
(or None) and ``login(facts) -> Login``. The policy (:func:`imageguard.policy.decision.decide`)
only ever calls ``login``; which source a configuration has is chosen once, when its
:class:`~imageguard.apache.runtime.Runtime` is built (:func:`login_source`).

* :class:`FileSessionLogin` and :class:`DbmSessionLogin`: the application's mod_python
  session, read-only (:mod:`imageguard.identity.sessions`);
* :class:`TicketLogin`: a signed auth_tkt ticket (:mod:`imageguard.identity.tickets`), checked
  against the store's revocations at every request.

A source of your own (a signed header from a fronting proxy, say) is any object with
those two members; ``docs/phases.md`` shows one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from math import inf
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, TicketError, TicketExpired
from ..policy.decision import Facts, Login, anonymous
from ..policy.principals import Identity
from ..support.boundedcache import BoundedCache
from .cookies import find_cookie
from .sessions import (
    DbmSessionReader,
    FileSessionReader,
    SessionKeys,
    SessionReader,
    StoredSession,
    identity_from_session,
    valid_sid,
)
from .tickets import (
    ParsedTicket,
    TicketVerifier,
    VerifiedTicket,
    decode_cookie_value,
    parse_ticket,
)

if TYPE_CHECKING:
    from ..apache.settings import Settings
    from ..policy.decision import LoginSource
    from ..store import CachedAcl

_LOGIN_LIMIT = 4096
_TICKET_LIMIT = 10_000

_NO_SESSION_COOKIE = anonymous("no session cookie")
_NO_TICKET_COOKIE = anonymous("no ticket cookie")
_MALFORMED_SESSION_COOKIE = anonymous("malformed session cookie", suspicious=True)
_NO_STORED_SESSION = anonymous("session cookie names no stored session")
_SESSION_EXPIRED = anonymous("session expired")
_NO_USER_IN_SESSION = anonymous("session holds no logged-in user")


class SessionLogin:
    """The application's mod_python session, read-only: the cookie names a session, the
    session (alive, by mod_python's own rule) names the user and groups."""

    #: Whether reading takes the lock the session type's writers take.
    uses_lock = False

    def __init__(self, reader: SessionReader, cookie_name: str, keys: SessionKeys) -> None:
        self.reader = reader
        self.cookie_name: str | None = cookie_name
        self.keys = keys
        # sid -> (the stored session object, the login it gives): the reader returns the
        # same object while the session is unchanged, so the user and group names are
        # not validated again at every request.
        self._logins: BoundedCache[str, tuple[StoredSession, Login]] = BoundedCache(_LOGIN_LIMIT)

    def login(self, facts: Facts) -> Login:
        """Who the request's session cookie belongs to."""
        sid = find_cookie(facts.cookies, self.cookie_name or "")
        if sid is None:
            return _NO_SESSION_COOKIE
        if not valid_sid(sid):
            return _MALFORMED_SESSION_COOKIE
        session = self.reader.load(sid, facts.session_lock if self.uses_lock else None)
        if session is None:
            return _NO_STORED_SESSION
        if not session.alive(facts.now):
            return _SESSION_EXPIRED
        known = self._logins.get(sid)
        if known is not None and known[0] is session:
            return known[1]
        identity = identity_from_session(session, self.keys)
        login = _NO_USER_IN_SESSION if identity is None else Login(identity, "session")
        self._logins.put(sid, (session, login))
        return login


class FileSessionLogin(SessionLogin):
    """mod_python's ``FileSession``: one pickle per session, no lock needed to read."""

    def __init__(self, directory: str, cookie_name: str, keys: SessionKeys) -> None:
        super().__init__(FileSessionReader(directory), cookie_name, keys)


class DbmSessionLogin(SessionLogin):
    """mod_python's ``DbmSession``: one dbm file, read under mod_python's global mutex
    (``facts.session_lock``), as its writers do."""

    uses_lock = True

    def __init__(self, filename: str, cookie_name: str, keys: SessionKeys) -> None:
        super().__init__(DbmSessionReader(filename), cookie_name, keys)


class TicketLogin:
    """A signed auth_tkt ticket in a cookie (mod_auth_tkt's format).

    A ticket's digests are computed once while the secrets are unchanged and the ticket
    has not expired; its revocation is looked up at every request, so a revocation is
    seen by the next one.
    """

    def __init__(
        self,
        settings: Settings,
        secrets: Callable[[], tuple[bytes, ...]],
        acl: Callable[[], CachedAcl],
    ) -> None:
        self.cookie_name: str | None = settings.tkt_cookie
        self._settings = settings
        self._secrets = secrets
        self._acl = acl
        # Built at the first ticket, from the secrets then in the file (never without).
        self._verifier: TicketVerifier | None = None
        # (the ticket's parts, bound address) -> (the secrets it was verified with, the
        # moment it expires, the ticket, its login).
        self._tickets: BoundedCache[
            tuple[ParsedTicket, str], tuple[Sequence[bytes], float, VerifiedTicket, Login]
        ] = BoundedCache(_TICKET_LIMIT)

    def _verifier_for(self, secrets: tuple[bytes, ...]) -> TicketVerifier:
        verifier = self._verifier
        if verifier is None or verifier.secrets is not secrets:
            settings = self._settings
            verifier = self._verifier = TicketVerifier(
                secrets=secrets,
                digest=settings.tkt_digest,
                timeout=settings.tkt_timeout,
                allow_no_timeout=settings.tkt_allow_no_timeout,
                bind_ip=settings.tkt_bind_ip,
            )
        return verifier

    def login(self, facts: Facts) -> Login:
        """Who the request's ticket names, unless it is forged, expired or revoked."""
        value = find_cookie(facts.cookies, self.cookie_name or "")
        if not value:
            return _NO_TICKET_COOKIE
        verifier = self._verifier_for(self._secrets())
        try:
            # The ticket as its parts, whatever the dress of the cookie: many spellings
            # of one ticket are one entry (a client cannot fill the cache with them).
            parsed = parse_ticket(decode_cookie_value(value), verifier.digest)
        except TicketError as exc:
            return anonymous(str(exc), suspicious=True)
        key = (parsed, facts.client_ip if self._settings.tkt_bind_ip else "")
        known = self._tickets.get(key)
        if known is not None and known[0] is verifier.secrets and facts.now <= known[1]:
            ticket, login = known[2], known[3]
        else:
            try:
                ticket = verifier.verify_parsed(parsed, facts.client_ip, facts.now)
            except TicketExpired as exc:
                return anonymous(str(exc))
            except TicketError as exc:
                return anonymous(str(exc), suspicious=True)
            identity = Identity(ticket.user, ticket.groups)
            login = Login(identity, "ticket", user_data=ticket.user_data)
            expires = ticket.timestamp + verifier.timeout if verifier.timeout else inf
            self._tickets.put(key, (verifier.secrets, expires, ticket, login))
        signature_revoked, revoked_until = self._acl().revocations_of(ticket.digest, ticket.user)
        if signature_revoked:
            return anonymous(f"ticket of {ticket.user} was revoked", suspicious=True)
        if revoked_until is not None and ticket.timestamp <= revoked_until:
            return anonymous(
                f"tickets of {ticket.user} issued until {revoked_until} were revoked",
                suspicious=True,
            )
        return login


def login_source(
    settings: Settings, secrets: Callable[[], tuple[bytes, ...]], acl: Callable[[], CachedAcl]
) -> LoginSource:
    """The login source *settings* name (``imageguard.session`` and mod_python's
    ``session_type``); chosen once per configuration."""
    if settings.session_source == "auth_tkt":
        return TicketLogin(settings, secrets, acl)
    if ":" in settings.session_source:
        return own_source(settings.session_source, settings, secrets)
    keys, cookie = settings.session_keys, settings.cookie_name
    if settings.session_type == "FileSession":
        return FileSessionLogin(settings.session_directory, cookie, keys)
    if settings.session_type == "DbmSession":
        return DbmSessionLogin(settings.dbm_filename, cookie, keys)
    raise ConfigError(
        f"mod_python.session.session_type {settings.session_type!r} cannot be read from "
        "another request: use FileSession or DbmSession"
    )


def own_source(
    name: str, settings: Settings, secrets: Callable[[], tuple[bytes, ...]]
) -> LoginSource:
    """The site's own login source ``package.module:callable`` (``imageguard.session``):
    the callable is imported (from the interpreter's ``PythonPath``) and called once per
    configuration with the :class:`~imageguard.apache.settings.Settings` and the secrets of
    ``imageguard.tkt_secret_file`` (a function: they are re-read when the file changes);
    what it returns must have a ``login(facts)`` method and a ``cookie_name``."""
    module_name, _, path = name.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in path.split("."):
            found = getattr(found, part)
    except Exception as exc:  # ImportError, AttributeError, or the module's own error
        raise ConfigError(f"imageguard.session {name}: cannot be loaded: {exc!r}") from None
    try:
        source = found(settings, secrets)
    except Exception as exc:
        raise ConfigError(f"imageguard.session {name}: making the source failed: {exc!r}") from None
    if not callable(getattr(source, "login", None)) or not hasattr(source, "cookie_name"):
        raise ConfigError(
            f"imageguard.session {name} gave {type(source).__name__}, which is not a login "
            "source: it needs a login(facts) method and a cookie_name attribute"
        )
    return source
