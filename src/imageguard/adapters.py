"""The mod_python adapters behind :mod:`imageguard.handlers` (one handler per phase) and
:mod:`imageguard.gatekeeper` (the same steps in one call, the access phase).

Each handler reads a few request facts, asks the pure core (no mod_python there) for a
decision, and turns it into an Apache status. Every path returns an explicit status, and
any exception becomes a refusal with a one-line log entry: an image is never served
because something went wrong. Apache's own default handler then sends the file
(sendfile, Range, HEAD, ETag and 304), so Python never touches the bytes.

How a file is handed to Apache, and why it is safe:

* **The very file that was checked.** The gate opens the admitted file itself, without
  following any link on the way (:meth:`~imageguard.gate.Gate.open`), and only if it is
  the version its checks saw; it keeps the descriptor open until the request
  ends and names it to Apache as ``/proc/self/fd/N``. Apache opens that name, which is
  the open file whatever happens to the path meanwhile: a file or folder swapped for a
  link after the check is never what gets sent.
* **Only Apache's file handler, as an image.** That name has no extension, so none of
  mod_mime's per-extension mappings (``AddHandler type-map``, ``AddOutputFilter
  INCLUDES``, CGI, PHP, languages, encodings) can apply; the handler sets the
  Content-Type itself.
* **A second look after the phases.** Every handler schedules :func:`fixuphandler` for
  its request, and the generated configuration names it as well. The fixup phase runs
  after authorization and after Apache's own type and handler overrides, also when the
  configuration skipped imageguard's later phases: it refuses the request unless an
  imageguard handler admitted it, Apache's file handler will send it, and nothing
  changed the file name or type since.

mod_python decodes request strings strictly as UTF-8, so reading ``req.uri`` or a header
can itself raise; every such read here is guarded (a path that is not UTF-8 is a 404, a
query a 400, a foreign byte in another application's cookie is read around).
"""

from __future__ import annotations

import contextlib
import os
import stat
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from mod_python import apache

from .acl import Decision
from .errors import (
    ConfigError,
    ContentError,
    ImageGuardError,
    RenditionError,
    ShareLinkError,
    StoreError,
    VariantError,
)
from .fileversion import OPEN_FLAGS, FileVersion
from .gate import NOT_FOUND, GateVerdict
from .levels import Level
from .principals import Identity
from .runtime import Login, PlannedRendition, Runtime, runtime_for
from .sharelinks import ShareGrant, carries_link
from .variants import VariantChoice, choose, requested_variant

import _apache  # isort: skip  (mod_python's C module; exists only inside Apache)

#: What the gatekeeper sets in the request's environment for what it admits; its
#: configuration has Apache itself (mod_authz_core, in C) refuse anything without it.
ADMITTED = "IMAGEGUARD_ADMITTED"
#: Where the configuration's ``SetEnvIf Cookie`` line puts the login cookie's value, so
#: that it can be read when the whole Cookie header cannot (a byte that is not UTF-8 in
#: another application's cookie makes mod_python refuse to read the header at all).
LOGIN_COOKIE_ENV = "IMAGEGUARD_LOGIN_COOKIE"
#: The fixup every imageguard handler schedules for its request.
FIXUP_HANDLER = "imageguard.handlers::fixuphandler"
#: The name a preview's watermark gives a viewer who is not logged in (a share link's).
GUEST = "guest"
#: Refusals are never kept by a cache, and look alike whatever was refused.
NO_STORE = "private, no-store"

_STATE_ATTR = "imageguard_state"
_REFUSED_ATTR = "imageguard_refused"
_SENT_ATTR = "imageguard_sent"
_FIXUP_ATTR = "imageguard_fixup"
_PASSED_ATTR = "imageguard_fixup_passed"
_FD_PREFIX = "/proc/self/fd/"


class _NotUTF8(Exception):
    """A request attribute whose bytes are not UTF-8: mod_python cannot hand it over."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class _Sent(NamedTuple):
    """What an imageguard handler told Apache to send (checked again by the fixup)."""

    filename: str
    content_type: str


class _RequestState:
    """What one request has learnt so far; kept on the request object across phases.

    mod_python keeps one request object per Apache request for every phase, so the
    configuration is looked up once, and the gate's verdict, the login and the decision
    are each worked out once, whichever phases are configured.
    """

    __slots__ = (
        "decision",
        "fd",
        "filename",
        "login",
        "query",
        "runtime",
        "share",
        "share_checked",
        "verdict",
    )

    def __init__(self, filename: str, runtime: Runtime, query: str) -> None:
        self.filename = filename
        self.runtime = runtime
        self.query = query
        self.login: Login | None = None
        self.verdict: GateVerdict | None = None
        #: The admitted file, open (-1: none); closed when the request ends.
        self.fd = -1
        self.decision: Decision | None = None
        self.share: ShareGrant | None = None
        self.share_checked = False


# --------------------------------------------------------------------------- reading


def _text(req: Any, name: str) -> str:
    """The request attribute *name* ("" when unset); :class:`_NotUTF8` if unreadable."""
    try:
        return getattr(req, name) or ""
    except UnicodeDecodeError:
        raise _NotUTF8(name) from None


def _header(req: Any, name: str) -> str | None:
    """The request header *name*, or None when it is absent or not UTF-8."""
    try:
        value = req.headers_in.get(name)
    except UnicodeDecodeError:
        return None
    if isinstance(value, list):
        return ", ".join(value)
    return value


def _new_state(req: Any) -> _RequestState:
    runtime = runtime_for(req.get_options(), (req.hlist.directory or "").rstrip("/"))
    return _RequestState(_text(req, "filename"), runtime, _text(req, "args"))


def _state(req: Any) -> _RequestState:
    """This request's state; made anew if the file name changed since it was stored."""
    state = getattr(req, _STATE_ATTR, None)
    if state is None or state.filename != _text(req, "filename"):
        state = _new_state(req)
        setattr(req, _STATE_ATTR, state)
    return state


def _cookie_headers(req: Any, runtime: Runtime) -> list[str]:
    """The request's Cookie header values, or, when they are not UTF-8, the login
    cookie as the configuration's ``SetEnvIf`` line found it in them."""
    try:
        value = req.headers_in.get("Cookie")
    except UnicodeDecodeError:
        return _login_cookie_from_env(req, runtime)
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _login_cookie_from_env(req: Any, runtime: Runtime) -> list[str]:
    try:
        value = req.subprocess_env.get(LOGIN_COOKIE_ENV)
    except UnicodeDecodeError:
        _log(req, apache.APLOG_ERR, "ignored login cookie: its value is not UTF-8")
        return []
    if value is None:
        _log(
            req,
            apache.APLOG_WARNING,
            f"ignored a Cookie header that is not UTF-8; the SetEnvIf line of "
            f"`imageguard apache-conf` reads the login cookie out of such headers "
            f"({LOGIN_COOKIE_ENV} is not set)",
        )
        return []
    return [f"{runtime.login_cookie}={value}"]


def _wants_html(req: Any) -> bool:
    return "text/html" in (_header(req, "Accept") or "")


# --------------------------------------------------------------------------- logging


def _one_line(text: str) -> str:
    """Make *text* safe for one log line: control characters are escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _where(req: Any) -> str:
    """The requested path for the log, whatever bytes it holds."""
    for name in ("uri", "unparsed_uri"):
        with contextlib.suppress(UnicodeDecodeError):
            return getattr(req, name) or ""
    return "(a request target that is not UTF-8)"


def _log(req: Any, level: int, message: str) -> None:
    req.log_error(_one_line(f"imageguard: {message} [{_where(req)}]"), level)


# --------------------------------------------------------------------------- refusing


def _refuse(req: Any, status: int, message: str, level: int = apache.APLOG_ERR) -> int:
    """Refuse with *status*: one log line, no caching, and remembered for the fixup."""
    _log(req, level, message)
    req.err_headers_out["Cache-Control"] = NO_STORE
    setattr(req, _REFUSED_ATTR, status)
    return status


def _failure(exc: BaseException) -> tuple[int, str]:
    """The status and log message for an exception that ended a handler.

    A request that cannot be read as UTF-8 is 404 (its path) or 400 (its query), a file
    that cannot be served as an image 415, an unknown variant 400, a file Apache's user
    may not read 403, a bad configuration,
    store or cache 500, any other imageguard error 403, a bug 500.
    """
    if isinstance(exc, _NotUTF8):
        if exc.what == "args":
            return apache.HTTP_BAD_REQUEST, "refused: the query string is not UTF-8"
        return apache.HTTP_NOT_FOUND, f"refused: the requested {exc.what} is not UTF-8"
    if isinstance(exc, (ConfigError, StoreError, RenditionError)):
        return apache.HTTP_INTERNAL_SERVER_ERROR, str(exc)
    if isinstance(exc, ContentError):
        return apache.HTTP_UNSUPPORTED_MEDIA_TYPE, f"refused: {exc}"
    if isinstance(exc, VariantError):
        return apache.HTTP_BAD_REQUEST, f"refused: {exc}"
    if isinstance(exc, ImageGuardError):
        return apache.HTTP_FORBIDDEN, f"refused: {exc}"
    if isinstance(exc, PermissionError):
        return apache.HTTP_FORBIDDEN, f"refused: Apache's user cannot read it: {exc.filename}"
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}" if tb else "?"
    return apache.HTTP_INTERNAL_SERVER_ERROR, (
        f"internal error {type(exc).__name__}: {exc} at {where}"
    )


def _fail_closed(req: Any, phase: str, exc: BaseException) -> int:
    """Log *exc* in one line and refuse the request; never raises, whatever it holds."""
    try:
        status, message = _failure(exc)
        return _refuse(req, status, f"{phase}: {message}")
    except BaseException:
        with contextlib.suppress(BaseException):
            req.log_error("imageguard: refused a request it could not describe", 3)
        with contextlib.suppress(BaseException):
            setattr(req, _REFUSED_ATTR, 500)
        return 500


# --------------------------------------------------------------------------- steps


def _schedule_fixup(req: Any) -> None:
    """Have :func:`fixuphandler` look at this request once all its phases have run."""
    if not getattr(req, _FIXUP_ATTR, False):
        req.add_handler("PythonFixupHandler", FIXUP_HANDLER)
        setattr(req, _FIXUP_ATTR, True)


def _gate(req: Any, state: _RequestState) -> GateVerdict:
    if state.verdict is None:
        verdict, fd = state.runtime.admit_open(
            _text(req, "method"), state.filename, _text(req, "path_info")
        )
        if fd >= 0:
            _close_at_end(req, fd)
        state.verdict, state.fd = verdict, fd
    return state.verdict


def _close_at_end(req: Any, fd: int) -> None:
    """Close *fd* when the request ends (after Apache has sent what it names)."""
    try:
        req.register_cleanup(os.close, fd)
    except BaseException:
        os.close(fd)
        raise


def _gate_refusal(req: Any, state: _RequestState) -> int | None:
    """The status refusing this request at the gate (logged), or None when it may go on.

    Where existence is hidden (``deny_status 404``), a file that is not there is refused
    as a denied one is, login redirect included, so the two cannot be told apart.
    """
    verdict = _gate(req, state)
    if verdict.allowed:
        return None
    runtime = state.runtime
    if verdict.status == NOT_FOUND and runtime.hides_existence and not runtime.gate_only:
        return _refuse_unseen(req, state, _login(req, state), verdict.reason)
    if verdict.status == apache.HTTP_METHOD_NOT_ALLOWED:
        req.allow_methods(["GET", "HEAD"], 1)  # Apache builds the Allow header from this
    return _refuse(req, verdict.status, f"access refused ({verdict.status}): {verdict.reason}")


def _login(req: Any, state: _RequestState) -> Login:
    if state.login is None:
        runtime = state.runtime
        lock = None
        if runtime.needs_dbm_lock:
            server = req.server
            lock = lambda: _dbm_lock(server)  # noqa: E731 - made only for DbmSession
        login = runtime.login(_cookie_headers(req, runtime), lock, client_ip=req.useragent_ip or "")
        if login.suspicious:
            _log(req, apache.APLOG_ERR, f"ignored login cookie: {login.reason}")
        if login.user_data:
            req.subprocess_env["REMOTE_USER_DATA"] = login.user_data
        if login.identity.groups:
            req.subprocess_env["REMOTE_USER_TOKENS"] = ",".join(sorted(login.identity.groups))
        state.login = login
    return state.login


@contextlib.contextmanager
def _dbm_lock(server: Any) -> Iterator[None]:
    """mod_python's global mutex 0, which guards its DbmSession database."""
    _apache._global_lock(server, None, 0)
    try:
        yield
    finally:
        _apache._global_unlock(server, None, 0)


def _share(req: Any, state: _RequestState) -> ShareGrant | None:
    """The request's valid share link, if it carries one (a bad one is logged, not used)."""
    if not state.share_checked:
        state.share_checked = True
        query = state.query
        if carries_link(query):
            assert state.verdict is not None
            try:
                state.share = state.runtime.share(state.verdict.relpath, query)
            except ShareLinkError as exc:
                _log(req, apache.APLOG_ERR, f"share link refused: {exc}")
    return state.share


def _shared_level(req: Any, state: _RequestState, identity: Identity) -> Level:
    """The level a share link gives this viewer (DENY without a usable link)."""
    grant = _share(req, state)
    if grant is None or (grant.user and grant.user != identity.user):
        return Level.DENY
    return grant.level


def _decision(state: _RequestState) -> Decision:
    if state.decision is None:
        assert state.verdict is not None and state.login is not None
        state.decision = state.runtime.decide(state.verdict.relpath, state.login.identity)
    return state.decision


def _login_redirect(req: Any, login_url: str) -> int:
    try:
        back = req.unparsed_uri or req.uri
    except UnicodeDecodeError:
        back = ""
    joiner = "&" if "?" in login_url else "?"
    req.err_headers_out["Location"] = f"{login_url}{joiner}back={urllib.parse.quote(back, safe='')}"
    req.err_headers_out["Cache-Control"] = NO_STORE
    setattr(req, _REFUSED_ATTR, apache.HTTP_MOVED_TEMPORARILY)
    return apache.HTTP_MOVED_TEMPORARILY


def _refuse_unseen(req: Any, state: _RequestState, login: Login, why: str) -> int:
    """Refuse a viewer who may not see the file, where existence is hidden: 404, or
    the login redirect of a page navigation by someone not logged in, whether the file
    is there or not."""
    login_url = state.runtime.settings.login_url
    if login_url and not login.identity.authenticated and _wants_html(req):
        _log(req, apache.APLOG_INFO, f"login required: {login.reason}")
        return _login_redirect(req, login_url)
    return _refuse(req, apache.HTTP_NOT_FOUND, f"denied {login.identity}: {why}")


def _authenticate(req: Any, state: _RequestState, login: Login) -> int:
    """Set ``req.user``, or refuse a viewer who is not logged in and may see nothing.

    A request without a valid login goes on only when a rule lets anyone see the image,
    or a share link does; otherwise a page navigation is sent to ``imageguard.login_url``
    and anything else gets 401 (404 where existence is hidden).
    """
    if login.identity.authenticated:
        req.user = login.identity.user
        return apache.OK
    decision = _decision(state)
    if decision.granted or _shared_level(req, state, login.identity):
        req.user = ""  # logged as "" in the access log: an anonymous viewer
        return apache.OK
    if state.runtime.hides_existence:
        return _refuse_unseen(req, state, login, decision.reason)
    login_url = state.runtime.settings.login_url
    if login_url and _wants_html(req):
        return _login_redirect(req, login_url)
    return _refuse(
        req, apache.HTTP_UNAUTHORIZED, f"login required: {login.reason}", apache.APLOG_INFO
    )


def _authorize(req: Any, state: _RequestState, login: Login) -> int:
    """Let Apache send the variant the level and the request decide, or refuse.

    Everything is made from the file the gate opened (:meth:`Runtime.admit_open`), so a
    name swapped meanwhile changes nothing of what is checked, rendered or sent.
    """
    decision = _decision(state)
    level = max(decision.level, _shared_level(req, state, login.identity))
    if level is Level.DENY:  # before the query is read: a bad ?v= must not tell "there"
        return _deny(req, state, login, decision.reason)
    asked = requested_variant(state.query)
    choice = choose(asked, level, downgrade=state.runtime.settings.downgrade)
    if choice.served:
        return _allow(req, state, login, choice)
    why = decision.reason
    if level > decision.level:
        why += f"; a share link grants {level.label}"
    return _deny(req, state, login, f"{why}; {choice.reason}")


def _allow(req: Any, state: _RequestState, login: Login, choice: VariantChoice) -> int:
    """Let Apache send the variant chosen: the original, or a rendition of it."""
    runtime = state.runtime
    verdict = state.verdict
    assert verdict is not None and choice.variant is not None
    if choice.variant is Level.FULL:
        _send_original(req, state)
    else:
        viewer = login.identity.user or GUEST
        host = req.server.server_hostname or ""
        planned = runtime.plan_rendition(
            verdict, choice.variant, viewer=viewer, host=host, fd=state.fd
        )
        fd, version = _open_rendition(req, runtime, planned, state.fd)
        _send(req, fd, version, planned.path, planned.media_type)
    req.headers_out["Cache-Control"] = runtime.cache_control
    req.headers_out.add("Vary", "Cookie")
    req.headers_out["X-Content-Type-Options"] = "nosniff"
    return apache.OK


def _send_original(req: Any, state: _RequestState) -> None:
    """Send the admitted original, verified (once per version), by its descriptor."""
    runtime, verdict = state.runtime, state.verdict
    assert verdict is not None and verdict.version is not None and state.fd >= 0
    runtime.check_content(verdict, state.fd)
    _send(req, state.fd, verdict.version, verdict.path, runtime.media_type(verdict.path))


def _open_rendition(
    req: Any, runtime: Runtime, planned: PlannedRendition, original: int
) -> tuple[int, FileVersion]:
    """The rendition *planned*, open (made first, from the *original* descriptor, if it is
    not in the cache)."""
    try:
        return _open_regular(req, planned.path)
    except FileNotFoundError:
        runtime.make_rendition(planned, original)
    try:
        return _open_regular(req, planned.path)
    except OSError as exc:
        raise RenditionError(f"{planned.path} cannot be opened: {exc.strerror}") from None


def _open_regular(req: Any, path: str) -> tuple[int, FileVersion]:
    """A read-only descriptor of the regular file *path* (no link followed), closed when
    the request ends, and its version."""
    fd = os.open(path, OPEN_FLAGS)
    _close_at_end(req, fd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise RenditionError(f"{path} is not a regular file")
    return fd, FileVersion.of(st)


def _describes(finfo: Any, version: FileVersion) -> bool:
    """True when Apache's *finfo* is that of the file at *version* (same file, size, time)."""
    return bool(
        finfo.filetype == apache.APR_REG
        and finfo.inode == version.inode
        and finfo.device == version.device
        and finfo.size == version.size
        and finfo.mtime == version.mtime_ns // 1_000_000_000
    )


def _send(req: Any, fd: int, version: FileVersion, path: str, content_type: str) -> None:
    """Have Apache's own file handler send the open file *fd* (at *version*, found at
    *path* when it was opened) as *content_type*.

    Apache is given ``/proc/self/fd/N``, the name of that open file (see the module
    docstring), and a ``finfo`` describing it (without one, Apache would cut the file at
    the size of the one first asked for). Apache's own ``finfo`` of the name asked for
    usually is that file's already; otherwise the file is looked up by *path*, and by
    its descriptor only if *path* names another file by now (each ``/proc`` look-up
    costs more than an ordinary one).
    """
    name = f"{_FD_PREFIX}{fd}"
    if not _describes(req.finfo, version):
        finfo = apache.stat(path, apache.APR_FINFO_MIN)
        if not _describes(finfo, version):
            finfo = apache.stat(name, apache.APR_FINFO_MIN)
            if finfo.filetype != apache.APR_REG:
                raise RenditionError(f"{name} is not a regular file")
        req.finfo = finfo
    req.filename = name
    req.content_type = content_type
    setattr(req, _SENT_ATTR, _Sent(name, content_type))


def _deny(req: Any, state: _RequestState, login: Login, why: str) -> int:
    """Refuse with the deny status (logged); with the placeholder, a padlock as the body."""
    runtime = state.runtime
    status = runtime.settings.deny_status
    if not runtime.settings.placeholder or _wants_html(req):
        return _refuse(req, status, f"denied {login.identity}: {why}")
    _log(req, apache.APLOG_ERR, f"denied {login.identity}: {why}")
    req.err_headers_out["Cache-Control"] = NO_STORE
    placeholder = runtime.placeholder
    assert placeholder is not None
    fd, version = _open_regular(req, placeholder)
    _send(req, fd, version, placeholder, "image/png")
    req.status = status  # Apache's own file handler sends the padlock with this status
    return apache.OK


# --------------------------------------------------------------------------- handlers


def accesshandler(req: Any) -> int:
    """Access phase: refuse methods, path tricks and extensions the gate does not allow.

    Where no ACL store is configured (the gate alone, e.g. from an ``.htaccess``), this
    is the last word, and it hands the admitted file to Apache itself; otherwise the
    authorization phase does that.
    """
    return _phase(req, "access", _admit_alone)


def authenhandler(req: Any) -> int:
    """Authentication phase: set ``req.user`` from the application's session."""
    return _phase(req, "authen", lambda req, state: _authenticate(req, state, _login(req, state)))


def authzhandler(req: Any) -> int:
    """Authorization phase: the ACL's level and the variant asked for decide what is sent."""
    return _phase(req, "authz", lambda req, state: _authorize(req, state, _login(req, state)))


def _phase(req: Any, phase: str, step: Callable[[Any, _RequestState], int]) -> int:
    """One phase of the three: the fixup scheduled, the gate passed, then *step*; any
    exception is a refusal."""
    try:
        _schedule_fixup(req)
        state = _state(req)
        refusal = _gate_refusal(req, state)
        if refusal is not None:
            return refusal
        return step(req, state)
    except Exception as exc:
        return _fail_closed(req, phase, exc)


def _admit_alone(req: Any, state: _RequestState) -> int:
    if state.runtime.gate_only:
        _send_original(req, state)
    return apache.OK


def gatekeeper(req: Any) -> int:
    """All three phases' work in the access phase, for one Python call per request.

    The same steps, in the same order, as :func:`accesshandler`, :func:`authenhandler`
    and :func:`authzhandler`, with the same answers. What it lets through is marked with
    :data:`ADMITTED`, and the configuration ends with ``Require env IMAGEGUARD_ADMITTED``:
    if this handler did not run, or refused, Apache refuses the request by itself.
    """
    try:
        _schedule_fixup(req)
        state = _new_state(req)  # one phase: nothing to hand on to a later one
        refusal = _gate_refusal(req, state)
        if refusal is not None:
            return refusal
        login = _login(req, state)
        status = _authenticate(req, state, login)
        if status == apache.OK:
            status = _authorize(req, state, login)
        if status == apache.OK:
            req.subprocess_env[ADMITTED] = "1"
        return status
    except Exception as exc:
        return _fail_closed(req, "gatekeeper", exc)


def fixuphandler(req: Any) -> int:
    """Fixup phase: refuse what no imageguard handler admitted, or what is about to be
    sent otherwise than as it was admitted.

    It runs after every access and authorization step, after mod_mime has typed the
    request and after Apache applied ``SetHandler`` and ``ForceType``, also when the
    configuration skipped imageguard's later phases (a ``Require`` that needs no user,
    ``Satisfy Any``, a missing ``PythonAuthzHandler`` line). Every handler schedules it
    for its request, and the generated configuration names it too (``PythonFixupHandler``):
    that line also covers a request that reached the directory without any access check
    (an ``ErrorDocument`` or internal redirect into it, whose configuration equals its
    parent's). So it catches:

    * a refusal the configuration overrode: refused again, with the same status;
    * a request no handler admitted (authorization never ran, or no phase did): 500;
    * a file name, Content-Type or handler changed after admission: 500.
    """
    try:
        if getattr(req, _PASSED_ATTR, False):  # scheduled and configured both: once is enough
            return apache.OK
        refused = getattr(req, _REFUSED_ATTR, None)
        if refused is not None:
            _log(
                req,
                apache.APLOG_ERR,
                f"fixup: refused ({refused}) again: the configuration let the request go on "
                "after imageguard refused it (Satisfy Any with a Require that passes?)",
            )
            return int(refused)
        sent = getattr(req, _SENT_ATTR, None)
        if sent is None:
            return _refuse(req, apache.HTTP_INTERNAL_SERVER_ERROR, _not_admitted(req))
        problem = _sent_otherwise(req, sent)
        if problem:
            return _refuse(req, apache.HTTP_INTERNAL_SERVER_ERROR, f"fixup: {problem}")
        setattr(req, _PASSED_ATTR, True)
        return apache.OK
    except Exception as exc:
        return _fail_closed(req, "fixup", exc)


def _not_admitted(req: Any) -> str:
    """The fixup's reason for a request that no imageguard handler admitted."""
    if req.prev is not None or req.main is not None:
        # Apache skips every access check of an internal redirect or a subrequest whose
        # configuration equals its parent's.
        kind = "internal redirect" if req.prev is not None else "subrequest"
        return (
            f"fixup: no imageguard handler admitted this {kind}: Apache skipped its access "
            "checks, as its configuration equals the original request's (an ErrorDocument "
            "or an internal_redirect pointing into the same protected directory?)"
        )
    return (
        "fixup: no imageguard handler admitted this request: its authorization did not "
        "run (a Require that needs no user, Satisfy Any, or no PythonAuthzHandler line "
        "where an ACL store is configured)"
    )


def _sent_otherwise(req: Any, sent: _Sent) -> str:
    """Why the request would not be sent as it was admitted ("" when it would)."""
    filename = _text(req, "filename")
    if filename != sent.filename:
        return f"the file name changed after imageguard admitted the request: {filename}"
    handler = _text(req, "handler")
    if handler:
        return (
            f"handler {handler!r} would serve the image instead of Apache's file handler "
            "(a SetHandler or ForceType of a <Files>, <FilesMatch> or <Location> section?)"
        )
    content_type = _text(req, "content_type")
    if content_type != sent.content_type:
        return f"the Content-Type changed to {content_type!r} after admission"
    return ""


# mod_python looks handlers up by phase name; keep the module's public surface explicit.
__all__ = [
    "ADMITTED",
    "FIXUP_HANDLER",
    "LOGIN_COOKIE_ENV",
    "accesshandler",
    "authenhandler",
    "authzhandler",
    "fixuphandler",
    "gatekeeper",
]
