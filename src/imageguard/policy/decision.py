"""The request policy in one place: a request's facts in, an outcome out.

:func:`decide` is the whole of imageguard's answer to an image request, in order:

1. **gate**: the method, the name asked for, the file on disk; the file is opened
   below the root without following links and bound to the version checked
   (:meth:`Runtime.admit_open`). A refusal here is final; where existence is hidden
   (``deny_status 404``) a missing file is refused like a denied one, login redirect
   included.
2. **login**: the configuration's :class:`LoginSource` says who is asking.
3. **authenticate**: a viewer who is not logged in goes on only when a rule lets anyone
   see the image or a share link does; otherwise a page navigation is sent to
   ``imageguard.login_url`` and anything else gets 401 (404 where existence is hidden).
4. **authorize**: the level (the ACL's, or a share link's if higher) and the variant
   asked for (``?v=``) choose what is sent: the original (its content verified) or a
   rendition, else the deny status (with the padlock picture when
   ``imageguard.placeholder`` is on and the request is not a page navigation).

Nothing here imports mod_python: the adapters (:mod:`imageguard.apache.adapters`) gather
:class:`Facts` from Apache's request and apply the :class:`Outcome`. The three-phase
configuration calls :func:`decide` once per phase with the phase to stop after; a
:class:`Progress` kept on the request carries what the earlier phases worked out, so
each step runs once per request whichever phases are configured.

Errors are outcomes too: :func:`refusal_for` turns any exception into the refusal the
policy gives it (a file that is not an image 415, an unknown variant 400, a broken
configuration or store 500, ...).

Every outcome but a phase's "go on" carries its access-log note (``Outcome.note``, which
the adapters put in ``req.notes`` for ``%{imageguard}n``): ``VIEWER DECISION``, the
viewer's user name (:func:`log_viewer`) and the level served or the refusal's token
(``deny:acl``, ``error:store``, ...; :data:`NOTE_TOKENS`). The notes are made of
strings worked out beforehand, so a request costs one concatenation at most.
"""

from __future__ import annotations

import enum
import functools
import os
import stat
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol

from ..errors import (
    ConfigError,
    ContentError,
    ImageGuardError,
    RenditionError,
    ShareLinkError,
    StoreError,
    StoreUnavailable,
    VariantError,
)
from ..files.fileversion import OPEN_FLAGS, FileVersion
from ..files.gate import (
    ALLOWED_METHODS,
    FORBIDDEN,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    OK,
    UNSUPPORTED_MEDIA_TYPE,
    GateVerdict,
)
from ..identity.sessions import LockFactory
from ..identity.sharelinks import ShareGrant, carries_link
from .levels import Level
from .principals import ANONYMOUS, GUEST, Identity
from .variants import VariantChoice, choose, requested_variant

if TYPE_CHECKING:
    from ..apache.runtime import Runtime
    from .acl import Decision

# Apache's log levels (syslog's numbers), so that no mod_python import is needed here.
LOG_ERR = 3
LOG_WARNING = 4
LOG_INFO = 6

MOVED_TEMPORARILY = 302
BAD_REQUEST = 400
UNAUTHORIZED = 401
INTERNAL_SERVER_ERROR = 500
SERVICE_UNAVAILABLE = 503
#: How often a rendition is made again when a purge removes it before it is opened.
_RENDITION_ATTEMPTS = 3

#: Refusals are never kept by a cache, and look alike whatever was refused.
NO_STORE = "private, no-store"


# --------------------------------------------------------------------------- the log note

#: The viewer of the access-log note when there is none: no valid login, or a request
#: refused before its login was read (the gate's refusals, some errors).
NOBODY = "-"

#: Every decision word the access-log note can hold after the viewer, and what it means
#: (docs/deployment.md lists them; a unit test checks each outcome uses one of these).
NOTE_TOKENS: dict[str, str] = {
    "full": "the original was sent",
    "preview": "the watermarked preview was sent",
    "thumb": "the thumbnail was sent",
    "deny:method": "a method other than GET or HEAD (405)",
    "deny:gate": "the gate refused the name: its extension, a hidden segment, extra path, "
    "a folder or another file that is not a regular one, a link out of the root (403)",
    "deny:not-found": "no such file (404)",
    "deny:login-required": "not logged in, and nothing lets anyone see the image: 401, the "
    "login redirect (302), or 404 where existence is hidden",
    "deny:acl": "the viewer may not see the image, or not the variant asked for: the deny "
    "status (403 or 404), with the padlock picture when it is on",
    "deny:not-image": "its bytes are not the image its extension names (415)",
    "deny:bad-request": "an unknown ?v= variant, or a path or query that is not UTF-8 (400 or 404)",
    "deny:refused": "another refusal imageguard names in the error log (403)",
    "error:permission": "Apache's user may not read the file (403)",
    "error:store-unavailable": "the ACL store cannot be reached now (503)",
    "error:store": "the ACL store is missing, unreadable or broken (500)",
    "error:config": "a PythonOption has a value imageguard cannot use (500)",
    "error:rendition": "a rendition could not be made or opened: the cache (500)",
    "error:internal": "a bug (500)",
    "error:not-admitted": "the fixup refused a request no imageguard handler admitted (500)",
    "error:overridden": "the fixup refused an image another handler, name or type would "
    "have been sent as (500)",
    "error:unavailable": "imageguard's handlers cannot be loaded: the PythonPath (500)",
}

#: What is left as it is in a user name of the note; everything else is %-escaped.
_VIEWER_SAFE = "@+:"


def log_viewer(user: str | None) -> str:
    """*user* as the access-log note names it: :data:`NOBODY` for no user, else one word
    that Apache writes as it is and a reader can decode (``urllib.parse.unquote``).

    A user name comes from a session or a ticket, and may hold anything: every character
    but ASCII letters, digits and ``-._~@+:`` is %-escaped as UTF-8 bytes (a space as
    ``%20``, a quote as ``%22``, a ``%`` as ``%25``), and a user named ``-`` is ``%2D``.
    """
    if not user:
        return NOBODY
    if user == NOBODY:
        return "%2D"
    return urllib.parse.quote(user, safe=_VIEWER_SAFE, errors="backslashreplace")


#: What follows the viewer in a note, by token (" deny:acl"): notes are made of these and
#: a viewer, so a token that is not in :data:`NOTE_TOKENS` fails at import, not in a request.
NOTE_WORDS: dict[str, str] = {token: f" {token}" for token in NOTE_TOKENS}

#: " full", " preview", " thumb": what follows the viewer of an image sent.
_SERVED_WORDS: dict[Level, str] = {
    level: NOTE_WORDS[level.label] for level in Level if level is not Level.DENY
}
_ACL_WORD = NOTE_WORDS["deny:acl"]
_NOT_FOUND_WORD = NOTE_WORDS["deny:not-found"]
_LOGIN_WORD = NOTE_WORDS["deny:login-required"]
_GATE_NOTES = {
    METHOD_NOT_ALLOWED: NOBODY + NOTE_WORDS["deny:method"],
    NOT_FOUND: NOBODY + _NOT_FOUND_WORD,
    FORBIDDEN: NOBODY + NOTE_WORDS["deny:gate"],
}
_SERVED_TO_ANYONE = NOBODY + _SERVED_WORDS[Level.FULL]
_LOGIN_REQUIRED = NOBODY + _LOGIN_WORD


# --------------------------------------------------------------------------- facts


class HeaderLookup(Protocol):
    """Read access to the request's headers: a value, or None when absent or unreadable."""

    def get(self, name: str) -> str | None: ...


class _NoHeaders:
    def get(self, name: str) -> str | None:
        return None


NO_HEADERS: HeaderLookup = _NoHeaders()


class FileFacts(NamedTuple):
    """What Apache's own look-up (``req.finfo``) says of the file asked for, when it
    found a regular file there; trusted only for what :meth:`describes` checks."""

    device: int
    inode: int
    size: int
    mtime_s: int

    def describes(self, version: FileVersion) -> bool:
        """True when this is the file at *version* (same file, size, whole seconds)."""
        return (
            self.inode == version.inode
            and self.device == version.device
            and self.size == version.size
            and self.mtime_s == version.mtime_ns // 1_000_000_000
        )


class Facts(NamedTuple):
    """Everything the policy may know of one request (immutable; a named tuple because
    one is made for every request, and tuples are the cheapest records Python has).

    ``filename`` is the file Apache mapped the URL to (never the URL itself), ``uri``
    the URL as asked (for the login redirect's ``back=``), ``cookies`` the ``Cookie``
    header values, ``accept`` the ``Accept`` header, ``host`` the server's name (for
    watermarks), ``now`` the request's time. ``file`` is Apache's ``finfo`` of
    ``filename`` when it is a regular file. ``headers`` reads any other header (for
    login sources that need one); ``session_lock`` makes the lock mod_python's own
    session writers take, for sources that must read under it. ``cookie_note`` is a
    problem met reading the cookies, logged (level, text) if the login is looked at.
    """

    method: str
    filename: str
    path_info: str = ""
    query: str = ""
    uri: str = ""
    cookies: tuple[str, ...] = ()
    client_ip: str = ""
    accept: str = ""
    host: str = ""
    now: float = 0.0
    file: FileFacts | None = None
    headers: HeaderLookup = NO_HEADERS
    session_lock: LockFactory | None = None
    cookie_note: tuple[int, str] | None = None

    @property
    def navigation(self) -> bool:
        """True for a browser's page navigation (it accepts HTML), not an ``<img>``."""
        return "text/html" in self.accept


# --------------------------------------------------------------------------- logins


@dataclass(frozen=True)
class Login:
    """Who a request's login names.

    ``identity`` is :data:`~imageguard.policy.principals.ANONYMOUS` when there is no valid login;
    ``reason`` says why, and ``suspicious`` marks a credential that cannot have come from
    the login's issuer (worth a log line at error level). A well-formed session cookie
    naming no session is not suspicious: after a logout or mod_python's clean-up of
    expired sessions, every browser still sends one.
    """

    identity: Identity
    reason: str
    suspicious: bool = False
    #: The ticket's user data (auth_tkt logins only), handed on as REMOTE_USER_DATA.
    user_data: str = ""

    @functools.cached_property
    def log_viewer(self) -> str:
        """The viewer as the access-log note names it (:func:`log_viewer`): escaped once
        per login, which the login sources keep, not per request."""
        return log_viewer(self.identity.user)

    @functools.cached_property
    def env(self) -> tuple[tuple[str, str], ...]:
        """The environment this login sets (REMOTE_USER_DATA, REMOTE_USER_TOKENS):
        worked out once per login, which the login sources keep, not per request."""
        env = []
        if self.user_data:
            env.append(("REMOTE_USER_DATA", self.user_data))
        if self.identity.groups:
            env.append(("REMOTE_USER_TOKENS", ",".join(sorted(self.identity.groups))))
        return tuple(env)


def anonymous(reason: str, *, suspicious: bool = False) -> Login:
    """No login, and why."""
    return Login(ANONYMOUS, reason, suspicious)


class LoginSource(Protocol):
    """Where logins come from: mod_python sessions, auth_tkt tickets, anything else.

    :func:`decide` asks only :meth:`login`; it never knows which source it has.
    """

    #: The cookie holding the login, if any: the adapters recover it through the
    #: configuration's ``SetEnvIf`` line when mod_python cannot read the Cookie header.
    cookie_name: str | None

    def login(self, facts: Facts) -> Login:
        """Who the request names (read-only; never raises for what a client sent)."""
        ...


# --------------------------------------------------------------------------- outcome


class Action(enum.Enum):
    """What the adapter does with an :class:`Outcome`."""

    #: Go on to the next phase (only from a phase that does not decide alone).
    PASS = "pass"
    #: Have Apache send ``send``: the original or a rendition.
    ADMIT = "admit"
    #: Send the browser to the login page (``Location`` in ``headers``).
    REDIRECT = "redirect"
    #: Refuse with ``status``; with a ``send``, that file (the padlock) is the body.
    REFUSE = "refuse"


class Send(NamedTuple):
    """A file for Apache's own file handler: the open descriptor *fd* of the file at
    *version*, found at *path*, sent as *content_type*."""

    fd: int
    version: FileVersion
    path: str
    content_type: str


class Outcome(NamedTuple):
    """The policy's answer to one request (or one phase of it).

    ``reason`` is the log line ("" for none) at ``level``; ``user`` is what ``req.user``
    becomes (None: unchanged); ``headers`` are the response's headers (the error
    headers of a refusal), ``vary`` is added to ``Vary``; ``allow`` the methods a 405
    names; ``note`` the access log's ``%{imageguard}n`` (``VIEWER DECISION``; "" only
    for a phase's "go on").
    """

    action: Action
    status: int
    reason: str = ""
    level: int = LOG_ERR
    send: Send | None = None
    user: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    vary: str = ""
    allow: tuple[str, ...] = ()
    note: str = ""


_NO_STORE_HEADERS = (("Cache-Control", NO_STORE),)
PASSED = Outcome(Action.PASS, OK)


class Phase(enum.Enum):
    """Where :func:`decide` stops: after the gate, after the login, or at the end."""

    ACCESS = "access"
    AUTHEN = "authen"
    #: The authorization phase alone: the variant for the login, no login check first.
    AUTHZ = "authz"
    ALL = "all"


class Progress:
    """What one request has worked out so far, and the effects the adapter must apply:
    descriptors to close when the request ends, log lines, environment variables.

    The three phases of one request share one; each step runs once per request.
    """

    __slots__ = (
        "decision",
        "env",
        "fd",
        "login",
        "notes",
        "opened",
        "share",
        "share_checked",
        "verdict",
    )

    def __init__(self) -> None:
        self.verdict: GateVerdict | None = None
        #: The admitted file, open (-1: none).
        self.fd = -1
        self.login: Login | None = None
        self.decision: Decision | None = None
        #: The request's valid share link, once looked for (``share_checked``).
        self.share: ShareGrant | None = None
        self.share_checked = False
        self.opened: list[int] = []
        self.notes: list[tuple[int, str]] = []
        self.env: list[tuple[str, str]] = []


# --------------------------------------------------------------------------- the policy


def decide(facts: Facts, runtime: Runtime, progress: Progress, phase: Phase = Phase.ALL) -> Outcome:
    """The outcome of the request *facts* under *runtime*'s configuration (module doc).

    Raises what a step raises (a bad ``?v=``, a file that is not an image, a store that
    cannot be read); :func:`refusal_for` gives the outcome of each.
    """
    verdict = _gate(facts, runtime, progress)  # 1. the gate, and the file opened
    if not verdict.allowed:
        return _gate_refusal(facts, runtime, progress, verdict)
    if phase is Phase.ACCESS:  # the gate alone is the last word only without an ACL store
        if not runtime.gate_only:
            return PASSED
        return _admit(runtime, _original(runtime, progress), None, _SERVED_TO_ANYONE)
    login = _login(facts, runtime, progress)  # 2. who is asking
    user: str | None = None
    if phase is not Phase.AUTHZ:  # 3. may they see anything at all without a login?
        identity = login.identity
        if not identity.authenticated and not _anyone_may_see(facts, runtime, progress, identity):
            return _login_refusal(facts, runtime, progress, login)
        user = identity.user or ""  # "" in the access log: an anonymous viewer
        if phase is Phase.AUTHEN:
            return Outcome(Action.PASS, OK, user=user)
    return _authorize(facts, runtime, progress, login, user)  # 4. what they are sent


def _gate(facts: Facts, runtime: Runtime, progress: Progress) -> GateVerdict:
    verdict = progress.verdict
    if verdict is None:
        verdict, fd = runtime.admit_open(facts.method, facts.filename, facts.path_info)
        if fd >= 0:
            progress.opened.append(fd)
        progress.verdict, progress.fd = verdict, fd
    return verdict


def _gate_refusal(
    facts: Facts, runtime: Runtime, progress: Progress, verdict: GateVerdict
) -> Outcome:
    if verdict.status == NOT_FOUND and runtime.hides_existence and not runtime.gate_only:
        login = _login(facts, runtime, progress)
        return _unseen(facts, runtime, login, verdict.reason, _NOT_FOUND_WORD)
    allow = ALLOWED_METHODS if verdict.status == METHOD_NOT_ALLOWED else ()
    reason = f"access refused ({verdict.status}): {verdict.reason}"
    note = _GATE_NOTES.get(verdict.status, _GATE_NOTES[FORBIDDEN])
    return _refusal(verdict.status, reason, allow=allow, note=note)


def _login(facts: Facts, runtime: Runtime, progress: Progress) -> Login:
    login = progress.login
    if login is None:
        if facts.cookie_note is not None:
            progress.notes.append(facts.cookie_note)
        login = progress.login = runtime.logins.login(facts)
        if login.suspicious:
            progress.notes.append((LOG_ERR, f"ignored login cookie: {login.reason}"))
        progress.env.extend(login.env)
    return login


def _acl(runtime: Runtime, progress: Progress) -> Decision:
    decision = progress.decision
    if decision is None:
        verdict, login = progress.verdict, progress.login
        if verdict is None or login is None:
            raise RuntimeError("the ACL was asked before the gate and the login")
        decision = progress.decision = runtime.decide(verdict.relpath, login.identity)
    return decision


def _shared_level(facts: Facts, runtime: Runtime, progress: Progress, identity: Identity) -> Level:
    """The level the request's share link gives this viewer (DENY without a usable one);
    a link that does not verify is logged and ignored."""
    if not progress.share_checked:
        progress.share_checked = True
        verdict = progress.verdict
        if verdict is not None and carries_link(facts.query):
            try:
                progress.share = runtime.share(verdict.relpath, facts.query, facts.now)
            except ShareLinkError as exc:
                progress.notes.append((LOG_ERR, f"share link refused: {exc}"))
    share = progress.share
    if share is None or (share.user and share.user != identity.user):
        return Level.DENY
    return share.level


def _anyone_may_see(facts: Facts, runtime: Runtime, progress: Progress, identity: Identity) -> bool:
    """True when a viewer who is not logged in may see something of the file: a rule
    for anyone, or a share link."""
    return _acl(runtime, progress).granted or bool(
        _shared_level(facts, runtime, progress, identity)
    )


def _login_refusal(facts: Facts, runtime: Runtime, progress: Progress, login: Login) -> Outcome:
    """The answer to a viewer who is not logged in and may see nothing."""
    if runtime.hides_existence:
        reason = _acl(runtime, progress).reason
        return _unseen(facts, runtime, login, reason, _LOGIN_WORD)
    login_url = runtime.settings.login_url
    if login_url and facts.navigation:
        return _redirect(facts, login_url)
    return _refusal(UNAUTHORIZED, f"login required: {login.reason}", LOG_INFO, note=_LOGIN_REQUIRED)


def _unseen(facts: Facts, runtime: Runtime, login: Login, why: str, word: str) -> Outcome:
    """Refuse a viewer who may not see the file, where existence is hidden: 404, or the
    login redirect of a page navigation by someone not logged in, file there or not;
    *word* follows the viewer in the note (:data:`NOTE_WORDS`)."""
    login_url = runtime.settings.login_url
    if login_url and not login.identity.authenticated and facts.navigation:
        return _redirect(facts, login_url, f"login required: {login.reason}")
    note = login.log_viewer + word
    return _refusal(NOT_FOUND, f"denied {login.identity}: {why}", note=note)


def _redirect(facts: Facts, login_url: str, reason: str = "") -> Outcome:
    joiner = "&" if "?" in login_url else "?"
    location = f"{login_url}{joiner}back={urllib.parse.quote(facts.uri, safe='')}"
    headers = (("Location", location), ("Cache-Control", NO_STORE))
    return Outcome(
        Action.REDIRECT, MOVED_TEMPORARILY, reason, LOG_INFO, headers=headers, note=_LOGIN_REQUIRED
    )


def _authorize(
    facts: Facts, runtime: Runtime, progress: Progress, login: Login, user: str | None
) -> Outcome:
    """The variant the level and the request decide, or the deny status."""
    decision = _acl(runtime, progress)
    level = max(decision.level, _shared_level(facts, runtime, progress, login.identity))
    if level is Level.DENY:  # before the query is read: a bad ?v= must not tell "there"
        return _deny(facts, runtime, progress, login, decision.reason, user)
    choice = choose(requested_variant(facts.query), level, downgrade=runtime.settings.downgrade)
    if choice.variant is not None:
        send = _variant(facts, runtime, progress, login, choice)
        return _admit(runtime, send, user, login.log_viewer + _SERVED_WORDS[choice.variant])
    why = decision.reason
    if level > decision.level:
        why += f"; a share link grants {level.label}"
    return _deny(facts, runtime, progress, login, f"{why}; {choice.reason}", user)


def _admit(runtime: Runtime, send: Send, user: str | None, note: str) -> Outcome:
    return Outcome(
        Action.ADMIT,
        OK,
        send=send,
        user=user,
        headers=runtime.served_headers,
        vary="Cookie",
        note=note,
    )


def _deny(
    facts: Facts, runtime: Runtime, progress: Progress, login: Login, why: str, user: str | None
) -> Outcome:
    """The deny status (logged); with the placeholder, a padlock as the body."""
    status = runtime.settings.deny_status
    reason = f"denied {login.identity}: {why}"
    note = login.log_viewer + _ACL_WORD
    if not runtime.settings.placeholder or facts.navigation:
        return _refusal(status, reason, user=user, note=note)
    send = _open_regular(progress, runtime.placeholder_path, "image/png")
    return Outcome(
        Action.REFUSE, status, reason, send=send, user=user, headers=_NO_STORE_HEADERS, note=note
    )


def _refusal(
    status: int,
    reason: str,
    level: int = LOG_ERR,
    *,
    user: str | None = None,
    allow: tuple[str, ...] = (),
    note: str,
) -> Outcome:
    return Outcome(
        Action.REFUSE,
        status,
        reason,
        level,
        user=user,
        headers=_NO_STORE_HEADERS,
        allow=allow,
        note=note,
    )


# --------------------------------------------------------------------------- what is sent


def _variant(
    facts: Facts, runtime: Runtime, progress: Progress, login: Login, choice: VariantChoice
) -> Send:
    """The variant chosen: the original, or a rendition made from the file the gate
    opened (so a name swapped meanwhile changes nothing of what is checked or sent)."""
    if choice.variant is Level.FULL:
        return _original(runtime, progress)
    verdict = progress.verdict
    if verdict is None or choice.variant is None:
        raise RuntimeError("a rendition was asked for before the gate admitted a file")
    planned = runtime.plan_rendition(
        verdict,
        choice.variant,
        viewer=login.identity.user or GUEST,
        host=facts.host,
        fd=progress.fd,
        now=facts.now,
    )
    for _ in range(_RENDITION_ATTEMPTS):
        try:
            return _open_regular(progress, planned.path, planned.media_type)
        except FileNotFoundError:  # not made yet, or made and purged again: (re)make it
            runtime.make_rendition(planned, progress.fd)
    try:
        return _open_regular(progress, planned.path, planned.media_type)
    except FileNotFoundError as exc:  # made, and gone again every time
        raise RenditionError(f"{planned.path} cannot be opened: {exc.strerror}") from None


def _original(runtime: Runtime, progress: Progress) -> Send:
    """The admitted original, its content verified (once per version)."""
    verdict = progress.verdict
    if verdict is None or verdict.version is None or progress.fd < 0:
        raise RuntimeError("the original was asked for before the gate opened it")
    runtime.check_content(verdict, progress.fd)
    return Send(progress.fd, verdict.version, verdict.path, runtime.media_type(verdict.path))


def _open_regular(progress: Progress, path: str, content_type: str) -> Send:
    """The regular file *path* (no link followed), open until the request ends;
    FileNotFoundError when there is none, RenditionError when it cannot be opened (a
    link, a folder, a FIFO planted in the cache) or is not a regular file."""
    try:
        fd = os.open(path, OPEN_FLAGS)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise RenditionError(f"{path} cannot be opened: {exc.strerror}") from None
    progress.opened.append(fd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise RenditionError(f"{path} is not a regular file")
    return Send(fd, FileVersion.of(st), path, content_type)


# --------------------------------------------------------------------------- failures


class Unreadable(Exception):
    """A request attribute whose bytes are not UTF-8 (mod_python cannot hand it over)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def refusal_for(exc: BaseException, phase: str, viewer: str = NOBODY) -> Outcome:
    """The refusal of a request whose decision raised *exc* in *phase* (logged); *viewer*
    is the note's (:func:`log_viewer`), when the login was read before.

    A request that cannot be read as UTF-8 is 404 (its path) or 400 (its query), a file
    that cannot be served as an image 415, an unknown variant 400, a file Apache's user
    may not read 403, a store that cannot be reached now 503, a bad configuration, store
    or cache 500, any other imageguard error 403, a bug 500.
    """
    status, message, token = _failure(exc)
    return _refusal(status, f"{phase}: {message}", note=viewer + NOTE_WORDS[token])


def _failure(exc: BaseException) -> tuple[int, str, str]:
    """The status, the log line and the note's token of a request that raised *exc*."""
    if isinstance(exc, Unreadable):
        if exc.what == "args":
            return BAD_REQUEST, "refused: the query string is not UTF-8", "deny:bad-request"
        return NOT_FOUND, f"refused: the requested {exc.what} is not UTF-8", "deny:bad-request"
    if isinstance(exc, StoreUnavailable):
        return SERVICE_UNAVAILABLE, str(exc), "error:store-unavailable"
    if isinstance(exc, ConfigError):
        return INTERNAL_SERVER_ERROR, str(exc), "error:config"
    if isinstance(exc, StoreError):
        return INTERNAL_SERVER_ERROR, str(exc), "error:store"
    if isinstance(exc, RenditionError):
        return INTERNAL_SERVER_ERROR, str(exc), "error:rendition"
    if isinstance(exc, ContentError):
        return UNSUPPORTED_MEDIA_TYPE, f"refused: {exc}", "deny:not-image"
    if isinstance(exc, VariantError):
        return BAD_REQUEST, f"refused: {exc}", "deny:bad-request"
    if isinstance(exc, ImageGuardError):
        return FORBIDDEN, f"refused: {exc}", "deny:refused"
    if isinstance(exc, PermissionError):
        message = f"refused: Apache's user cannot read it: {exc.filename}"
        return FORBIDDEN, message, "error:permission"
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}" if tb else "?"
    message = f"internal error {type(exc).__name__}: {exc} at {where}"
    return INTERNAL_SERVER_ERROR, message, "error:internal"


__all__ = [
    "NOBODY",
    "NOTE_TOKENS",
    "NOTE_WORDS",
    "Action",
    "Facts",
    "FileFacts",
    "Login",
    "LoginSource",
    "Outcome",
    "Phase",
    "Progress",
    "Send",
    "decide",
    "log_viewer",
    "refusal_for",
]
