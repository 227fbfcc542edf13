"""The mod_python adapters behind :mod:`imageguard.handlers` (one handler per phase) and
:mod:`imageguard.gatekeeper` (the same steps in one call, the access phase).

Each handler reads a few request facts, asks the pure core (no mod_python there) for a
decision, and turns it into an Apache status. Every path returns an explicit status, and
any exception becomes a refusal with a one-line log entry: an image is never served
because something went wrong. Apache's own default handler then sends the file
(sendfile, Range, HEAD, ETag and 304), so Python never touches the bytes.
"""

from __future__ import annotations

import contextlib
import os
import urllib.parse
from collections.abc import Iterator
from typing import Any

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
from .gate import GateVerdict
from .levels import Level
from .principals import Identity
from .runtime import Login, Runtime, runtime_for
from .sharelinks import ShareGrant, carries_link
from .variants import VariantChoice, choose, requested_variant

import _apache  # isort: skip  (mod_python's C module; exists only inside Apache)

_STATE_ATTR = "imageguard_state"
#: The name a preview's watermark gives a viewer who is not logged in (a share link's).
GUEST = "guest"


class _RequestState:
    """What one request has learnt so far; kept on the request object across phases.

    mod_python keeps one request object per Apache request for every phase, so the
    configuration is looked up once, and the gate's verdict, the login and the decision
    are each worked out once, whichever phases are configured.
    """

    __slots__ = (
        "decision",
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
        self.verdict: GateVerdict | None = None
        self.login: Login | None = None
        self.decision: Decision | None = None
        self.share: ShareGrant | None = None
        self.share_checked = False


def _new_state(req: Any) -> _RequestState:
    runtime = runtime_for(req.get_options(), (req.hlist.directory or "").rstrip("/"))
    return _RequestState(req.filename, runtime, req.args or "")


def _state(req: Any) -> _RequestState:
    """This request's state; made anew if the file name changed since it was stored."""
    state = getattr(req, _STATE_ATTR, None)
    if state is None or state.filename != req.filename:
        state = _new_state(req)
        setattr(req, _STATE_ATTR, state)
    return state


def _one_line(text: str) -> str:
    """Make *text* safe for one log line: control characters are escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _log(req: Any, level: int, message: str) -> None:
    req.log_error(_one_line(f"imageguard: {message} [{req.uri}]"), level)


def _fail_closed(req: Any, phase: str, exc: BaseException) -> int:
    """Log an error in one line and refuse the request.

    A file that cannot be served as an image is 415, an unknown variant 400, a bad
    configuration, store or cache 500, any other imageguard error 403, a bug 500.
    """
    if isinstance(exc, (ConfigError, StoreError, RenditionError)):
        _log(req, apache.APLOG_ERR, f"{phase}: {exc}")
        return apache.HTTP_INTERNAL_SERVER_ERROR
    if isinstance(exc, ContentError):
        _log(req, apache.APLOG_ERR, f"{phase}: refused {req.filename}: {exc}")
        return apache.HTTP_UNSUPPORTED_MEDIA_TYPE
    if isinstance(exc, VariantError):
        _log(req, apache.APLOG_ERR, f"{phase}: refused: {exc}")
        return apache.HTTP_BAD_REQUEST
    if isinstance(exc, ImageGuardError):
        _log(req, apache.APLOG_ERR, f"{phase}: refused: {exc}")
        return apache.HTTP_FORBIDDEN
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}" if tb else "?"
    _log(req, apache.APLOG_ERR, f"{phase}: internal error {type(exc).__name__}: {exc} at {where}")
    return apache.HTTP_INTERNAL_SERVER_ERROR


def _gate(req: Any, state: _RequestState) -> GateVerdict:
    if state.verdict is None:
        state.verdict = state.runtime.admit(req.method, req.filename or "", req.path_info or "")
    return state.verdict


def _gate_refusal(req: Any, state: _RequestState) -> int | None:
    """The status refusing this request at the gate (logged), or None when it may go on."""
    verdict = _gate(req, state)
    if verdict.allowed:
        return None
    _log(req, apache.APLOG_ERR, f"access refused ({verdict.status}): {verdict.reason}")
    if verdict.status == apache.HTTP_METHOD_NOT_ALLOWED:
        req.allow_methods(["GET", "HEAD"], 1)  # Apache builds the Allow header from this
    return verdict.status


def _cookie_headers(req: Any) -> list[str]:
    value = req.headers_in.get("Cookie")
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


@contextlib.contextmanager
def _dbm_lock(server: Any) -> Iterator[None]:
    """mod_python's global mutex 0, which guards its DbmSession database."""
    _apache._global_lock(server, None, 0)
    try:
        yield
    finally:
        _apache._global_unlock(server, None, 0)


def _login(req: Any, state: _RequestState) -> Login:
    if state.login is None:
        runtime = state.runtime
        lock = None
        if runtime.needs_dbm_lock:
            server = req.server
            lock = lambda: _dbm_lock(server)  # noqa: E731 - made only for DbmSession
        login = runtime.login(_cookie_headers(req), lock, client_ip=req.useragent_ip or "")
        if login.suspicious:
            _log(req, apache.APLOG_ERR, f"ignored login cookie: {login.reason}")
        if login.user_data:
            req.subprocess_env["REMOTE_USER_DATA"] = login.user_data
        if login.identity.groups:
            req.subprocess_env["REMOTE_USER_TOKENS"] = ",".join(sorted(login.identity.groups))
        state.login = login
    return state.login


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


def _wants_html(req: Any) -> bool:
    return "text/html" in (req.headers_in.get("Accept") or "")


def _login_redirect(req: Any, login_url: str) -> int:
    back = req.unparsed_uri or req.uri
    joiner = "&" if "?" in login_url else "?"
    req.err_headers_out["Location"] = f"{login_url}{joiner}back={urllib.parse.quote(back, safe='')}"
    req.err_headers_out["Cache-Control"] = "no-store"
    return apache.HTTP_MOVED_TEMPORARILY


def accesshandler(req: Any) -> int:
    """Access phase: refuse methods, path tricks and extensions the gate does not allow."""
    try:
        refusal = _gate_refusal(req, _state(req))
        return apache.OK if refusal is None else refusal
    except Exception as exc:
        return _fail_closed(req, "access", exc)


def authenhandler(req: Any) -> int:
    """Authentication phase: set ``req.user`` from the application's session.

    A request without a valid login goes on only when a rule lets anyone see the image;
    otherwise a page navigation is sent to ``imageguard.login_url`` and anything else
    gets 401.
    """
    try:
        state = _state(req)
        refusal = _gate_refusal(req, state)
        if refusal is not None:
            return refusal
        return _authenticate(req, state, _login(req, state))
    except Exception as exc:
        return _fail_closed(req, "authen", exc)


def _authenticate(req: Any, state: _RequestState, login: Login) -> int:
    """Set ``req.user``, or refuse a viewer who is not logged in and may see nothing."""
    if login.identity.authenticated:
        req.user = login.identity.user
        return apache.OK
    if _decision(state).granted or _shared_level(req, state, login.identity):
        req.user = ""  # logged as "" in the access log: an anonymous viewer
        return apache.OK
    login_url = state.runtime.settings.login_url
    if login_url and _wants_html(req):
        return _login_redirect(req, login_url)
    _log(req, apache.APLOG_INFO, f"login required: {login.reason}")
    return apache.HTTP_UNAUTHORIZED


def _send_instead(req: Any, path: str, finfo: Any = None) -> None:
    """Have Apache send the file *path* in answer to this request (see the shared notes:
    ``req.finfo`` must describe the new file, or the response is cut at the old size)."""
    if finfo is None:
        finfo = apache.stat(path, apache.APR_FINFO_MIN)
    if finfo.filetype != apache.APR_REG:
        raise RenditionError(f"{path} vanished before it could be sent")
    req.filename = path
    req.finfo = finfo


def _allow(req: Any, state: _RequestState, login: Login, choice: VariantChoice) -> int:
    """Let Apache send the variant chosen: the original, or a rendition swapped in."""
    runtime = state.runtime
    if choice.variant is not Level.FULL:
        assert state.verdict is not None and choice.variant is not None
        viewer = login.identity.user or GUEST
        host = req.server.server_hostname or ""
        planned = runtime.plan_rendition(state.verdict, choice.variant, viewer=viewer, host=host)
        finfo = apache.stat(planned.path, apache.APR_FINFO_MIN)  # one stat when it is made
        if finfo.filetype != apache.APR_REG:
            runtime.make_rendition(planned)
            finfo = None
        _send_instead(req, planned.path, finfo)
    req.headers_out["Cache-Control"] = runtime.cache_control
    req.headers_out.add("Vary", "Cookie")
    req.headers_out["X-Content-Type-Options"] = "nosniff"
    return apache.OK


def _deny(req: Any, state: _RequestState, login: Login, why: str) -> int:
    """Refuse with the deny status (logged); with the placeholder, a padlock as the body."""
    runtime = state.runtime
    _log(req, apache.APLOG_ERR, f"denied {login.identity}: {why}")
    req.err_headers_out["Cache-Control"] = "private, no-store"
    status = runtime.settings.deny_status
    if not runtime.settings.placeholder or _wants_html(req):
        return status
    placeholder = runtime.placeholder
    assert placeholder is not None
    _send_instead(req, placeholder)
    req.status = status  # Apache's own file handler sends the padlock with this status
    return apache.OK


def authzhandler(req: Any) -> int:
    """Authorization phase: the ACL's level and the variant asked for decide what is sent."""
    try:
        state = _state(req)
        refusal = _gate_refusal(req, state)
        if refusal is not None:
            return refusal
        return _authorize(req, state, _login(req, state))
    except Exception as exc:
        return _fail_closed(req, "authz", exc)


def _authorize(req: Any, state: _RequestState, login: Login) -> int:
    """Let Apache send the variant the level and the request decide, or refuse."""
    decision = _decision(state)
    level = max(decision.level, _shared_level(req, state, login.identity))
    asked = requested_variant(state.query)
    choice = choose(asked, level, downgrade=state.runtime.settings.downgrade)
    if choice.served:
        return _allow(req, state, login, choice)
    why = decision.reason
    if level > decision.level:
        why += f"; a share link grants {level.label}"
    if level > Level.DENY:
        why += f"; {choice.reason}"
    return _deny(req, state, login, why)


#: What the gatekeeper sets in the request's environment for what it admits; its
#: configuration has Apache itself (mod_authz_core, in C) refuse anything without it.
ADMITTED = "IMAGEGUARD_ADMITTED"


def gatekeeper(req: Any) -> int:
    """All three phases' work in the access phase, for one Python call per request.

    The same steps, in the same order, as :func:`accesshandler`, :func:`authenhandler`
    and :func:`authzhandler`, with the same answers. What it lets through is marked with
    :data:`ADMITTED`, and the configuration ends with ``Require env IMAGEGUARD_ADMITTED``:
    if this handler did not run, or refused, Apache refuses the request by itself.
    """
    try:
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


# mod_python looks handlers up by phase name; keep the module's public surface explicit.
__all__ = ["ADMITTED", "accesshandler", "authenhandler", "authzhandler", "gatekeeper"]
