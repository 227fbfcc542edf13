"""The mod_python adapters behind :mod:`imageguard.handlers` (one handler per phase) and
:mod:`imageguard.gatekeeper` (the same steps in one call, the access phase).

Each handler gathers the request's :class:`~imageguard.policy.decision.Facts` (:func:`_facts`),
asks :func:`imageguard.policy.decision.decide` (no mod_python there) for the
:class:`~imageguard.policy.decision.Outcome`, and applies it (:func:`_apply`): every policy
choice is made there, none here. Every path returns an explicit status, and any
exception becomes a refusal with a one-line log entry: an image is never served because
something went wrong. Apache's own default handler then sends the file
(sendfile, Range, HEAD, ETag and 304), so Python never touches the bytes.

How a file is handed to Apache, and why it is safe:

* **The very file that was checked.** The gate opens the admitted file itself, without
  following any link on the way (:meth:`~imageguard.files.gate.Gate.open`), and only if it is
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

Every decision leaves a note for the access log, ``req.notes["imageguard"]`` (``%{imageguard}n``
in a ``LogFormat``): the viewer and the level served or the refusal's token, as the
policy made it (:attr:`~imageguard.policy.decision.Outcome.note`); setting it is the
whole cost per request.

mod_python decodes request strings strictly as UTF-8, so reading ``req.uri`` or a header
can itself raise; every such read here is guarded (a path that is not UTF-8 is a 404, a
query a 400, a foreign byte in another application's cookie is read around).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

from mod_python import apache

from ..errors import RenditionError
from ..policy.decision import (
    NO_STORE,
    NOBODY,
    NOTE_WORDS,
    Action,
    Facts,
    FileFacts,
    Outcome,
    Phase,
    Progress,
    Send,
    Unreadable,
    decide,
    log_viewer,
    refusal_for,
)
from ..support.safetext import one_line
from .names import ADMITTED_ENV, FIXUP_HANDLER, LOGIN_COOKIE_ENV
from .runtime import Runtime, runtime_for

import _apache  # isort: skip  (mod_python's C module; exists only inside Apache)

#: What the gatekeeper sets in the request's environment for what it admits
#: (:data:`~imageguard.apache.names.ADMITTED_ENV`); its configuration has Apache itself
#: (mod_authz_core, in C) refuse anything without it.
ADMITTED = ADMITTED_ENV

_STATE_ATTR = "imageguard_state"
_REFUSED_ATTR = "imageguard_refused"
_SENT_ATTR = "imageguard_sent"
_FIXUP_ATTR = "imageguard_fixup"
_PASSED_ATTR = "imageguard_fixup_passed"
_FD_PREFIX = "/proc/self/fd/"
_PHASES = {"access": Phase.ACCESS, "authen": Phase.AUTHEN, "authz": Phase.AUTHZ}
#: The name each phase's errors are logged under.
_PHASE_NAMES = {Phase.ALL: "gatekeeper", **{phase: name for name, phase in _PHASES.items()}}

#: The request note the access log reads as ``%{imageguard}n``: ``VIEWER DECISION``
#: (docs/deployment.md, "The decision in the access log").
LOG_NOTE = "imageguard"
#: The note of a refusal that could not be described otherwise.
_UNDESCRIBED = NOBODY + NOTE_WORDS["error:internal"]
#: What follows the viewer in the notes of the fixup's own refusals.
_NOT_ADMITTED_WORD = NOTE_WORDS["error:not-admitted"]
_OVERRIDDEN_WORD = NOTE_WORDS["error:overridden"]

__all__ = [
    "ADMITTED",
    "FIXUP_HANDLER",
    "LOGIN_COOKIE_ENV",
    "LOG_NOTE",
    "NO_STORE",
    "accesshandler",
    "authenhandler",
    "authzhandler",
    "fixuphandler",
    "gatekeeper",
]


class _Sent(NamedTuple):
    """What an imageguard handler told Apache to send (checked again by the fixup)."""

    filename: str
    content_type: str


class _RequestState(NamedTuple):
    """What the phases of one request share (kept on mod_python's request object, the
    same for every phase): the configuration, the facts, and the policy's progress."""

    runtime: Runtime
    facts: Facts
    progress: Progress


# --------------------------------------------------------------------------- handlers


def gatekeeper(req: Any) -> int:
    """All three phases' work in the access phase, for one Python call per request.

    The same decision as :func:`accesshandler`, :func:`authenhandler` and
    :func:`authzhandler` together, with the same answers. What it lets through is marked
    with :data:`ADMITTED`, and the configuration ends with ``Require env
    IMAGEGUARD_ADMITTED``: if this handler did not run, or refused, Apache refuses the
    request by itself.
    """
    try:
        _schedule_fixup(req)
        runtime = _runtime(req)
        status = _run(req, runtime, _facts(req, runtime), Progress(), Phase.ALL)
        if status == apache.OK:  # an image, or the padlock with the deny status
            req.subprocess_env[ADMITTED] = "1"
        return status
    except Exception as exc:
        return _fail_closed(req, "gatekeeper", exc)


def accesshandler(req: Any) -> int:
    """Access phase: refuse methods, path tricks and extensions the gate does not allow.

    Where no ACL store is configured (the gate alone, e.g. from an ``.htaccess``), this
    is the last word, and it hands the admitted file to Apache itself; otherwise the
    authorization phase does that.
    """
    return _phase(req, "access")


def authenhandler(req: Any) -> int:
    """Authentication phase: set ``req.user`` from the application's login."""
    return _phase(req, "authen")


def authzhandler(req: Any) -> int:
    """Authorization phase: the ACL's level and the variant asked for decide what is sent."""
    return _phase(req, "authz")


def _phase(req: Any, name: str) -> int:
    """One phase of the three: the policy up to *name*'s step, with what the earlier
    phases of this request worked out; any exception is a refusal."""
    try:
        _schedule_fixup(req)
        state = _state(req)
        return _run(req, state.runtime, state.facts, state.progress, _PHASES[name])
    except Exception as exc:
        return _fail_closed(req, name, exc)


def _run(req: Any, runtime: Runtime, facts: Facts, progress: Progress, phase: Phase) -> int:
    """Decide (an exception is the refusal :func:`refusal_for` gives it, noted with the
    viewer when the login was read), apply the effects met on the way, apply the
    outcome."""
    try:
        outcome = decide(facts, runtime, progress, phase)
    except Exception as exc:
        outcome = refusal_for(exc, _PHASE_NAMES[phase], _login_viewer(progress))
    finally:
        _apply_progress(req, progress)
    return _apply(req, outcome, facts.file)


# --------------------------------------------------------------------------- facts


def _runtime(req: Any) -> Runtime:
    return runtime_for(req.get_options(), (req.hlist.directory or "").rstrip("/"))


def _state(req: Any) -> _RequestState:
    """This request's state; made anew if the file name changed since it was stored."""
    state: _RequestState | None = getattr(req, _STATE_ATTR, None)
    if state is None or state.facts.filename != _text(req, "filename"):
        runtime = _runtime(req)
        state = _RequestState(runtime, _facts(req, runtime), Progress())
        setattr(req, _STATE_ATTR, state)
    return state


def _facts(req: Any, runtime: Runtime) -> Facts:
    """What the policy may know of *req* (:class:`Unreadable` for a path or query that
    is not UTF-8, in that order)."""
    filename = _text(req, "filename")
    query = _text(req, "args")
    headers = _Headers(req.headers_in)
    cookies, note = _cookies(req, headers, runtime.logins.cookie_name)
    return Facts(
        _text(req, "method"),
        filename,
        _text(req, "path_info"),
        query,
        _back(req),
        cookies,
        req.useragent_ip or "",
        headers.get("Accept") or "",
        req.server.server_hostname or "",
        time.time(),
        _file_facts(req.finfo),
        headers,
        lambda: _global_mutex(req.server),
        note,
    )


def _file_facts(finfo: Any) -> FileFacts | None:
    """What an Apache ``finfo`` says of a regular file (None for anything else)."""
    if finfo.filetype != apache.APR_REG:
        return None
    return FileFacts(finfo.device, finfo.inode, finfo.size, finfo.mtime)


def _text(req: Any, name: str) -> str:
    """The request attribute *name* ("" when unset); :class:`Unreadable` if not UTF-8."""
    try:
        return getattr(req, name) or ""
    except UnicodeDecodeError:
        raise Unreadable(name) from None


def _back(req: Any) -> str:
    """The URL as asked, for a login redirect's ``back=`` ("" when it is not UTF-8)."""
    try:
        return req.unparsed_uri or req.uri or ""
    except UnicodeDecodeError:
        return ""


class _Headers:
    """The request's headers for the policy: None when absent or not UTF-8."""

    __slots__ = ("table",)

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, name: str) -> str | None:
        try:
            value = self.table.get(name)
        except UnicodeDecodeError:
            return None
        return ", ".join(value) if isinstance(value, list) else value


def _cookies(
    req: Any, headers: _Headers, login_cookie: str | None
) -> tuple[tuple[str, ...], tuple[int, str] | None]:
    """The Cookie header values; when they are not UTF-8 (a byte of another
    application's cookie makes mod_python refuse the whole header), the login cookie as
    the configuration's ``SetEnvIf`` line found it in them (:data:`LOGIN_COOKIE_ENV`),
    and what to log about it."""
    try:
        value = headers.table.get("Cookie")
    except UnicodeDecodeError:
        pass
    else:
        if value is None:
            return (), None
        return (tuple(value) if isinstance(value, list) else (value,)), None
    try:
        found = req.subprocess_env.get(LOGIN_COOKIE_ENV)
    except UnicodeDecodeError:
        return (), (apache.APLOG_ERR, "ignored login cookie: its value is not UTF-8")
    if found is None or login_cookie is None:
        return (), (
            apache.APLOG_WARNING,
            f"ignored a Cookie header that is not UTF-8; the SetEnvIf line of "
            f"`imageguard apache-conf` reads the login cookie out of such headers "
            f"({LOGIN_COOKIE_ENV} is not set)",
        )
    return (f"{login_cookie}={found}",), None


@contextlib.contextmanager
def _global_mutex(server: Any) -> Iterator[None]:
    """mod_python's global mutex 0, which guards its DbmSession database."""
    _apache._global_lock(server, None, 0)
    try:
        yield
    finally:
        _apache._global_unlock(server, None, 0)


# --------------------------------------------------------------------------- outcomes


def _apply_progress(req: Any, progress: Progress) -> None:
    """Close the policy's descriptors when the request ends; log its notes; set its
    environment (REMOTE_USER_DATA, REMOTE_USER_TOKENS)."""
    opened, progress.opened = progress.opened, []
    for n, fd in enumerate(opened):
        try:
            req.register_cleanup(os.close, fd)
        except BaseException:
            for rest in opened[n:]:
                with contextlib.suppress(OSError):
                    os.close(rest)
            raise
    for level, message in progress.notes:
        _log(req, level, message)
    progress.notes.clear()
    for name, value in progress.env:
        req.subprocess_env[name] = value
    progress.env.clear()


def _apply(req: Any, outcome: Outcome, file: FileFacts | None) -> int:
    """Turn the policy's *outcome* into Apache's terms; the status to return."""
    if outcome.user is not None:
        req.user = outcome.user
    action = outcome.action
    if action is Action.PASS:
        return apache.OK
    _note(req, outcome.note)
    if outcome.reason:
        _log(req, outcome.level, outcome.reason)
    if action is Action.ADMIT and outcome.send is not None:
        _send(req, outcome.send, file)
        headers = req.headers_out
        for name, value in outcome.headers:
            headers[name] = value
        headers.add("Vary", outcome.vary)
        return apache.OK
    for name, value in outcome.headers:
        req.err_headers_out[name] = value
    if outcome.allow:
        req.allow_methods(list(outcome.allow), 1)  # Apache builds the Allow header from this
    if outcome.send is not None:  # the padlock, sent by Apache's file handler
        _send(req, outcome.send, file)
        req.status = outcome.status
        return apache.OK
    setattr(req, _REFUSED_ATTR, outcome.status)
    return outcome.status


def _send(req: Any, send: Send, file: FileFacts | None) -> None:
    """Have Apache's own file handler send the open file of *send*.

    Apache is given ``/proc/self/fd/N``, the name of that open file (see the module
    docstring), and a ``finfo`` describing it (without one, Apache would cut the file at
    the size of the one first asked for). Apache's own ``finfo`` of the name asked for
    (*file*) usually is that file's already; otherwise the file is looked up by its
    path, and by its descriptor only if the path names another file by now (each
    ``/proc`` look-up costs more than an ordinary one).
    """
    name = f"{_FD_PREFIX}{send.fd}"
    if file is None or not file.describes(send.version):
        finfo = apache.stat(send.path, apache.APR_FINFO_MIN)
        found = _file_facts(finfo)
        if found is None or not found.describes(send.version):
            finfo = apache.stat(name, apache.APR_FINFO_MIN)
            if finfo.filetype != apache.APR_REG:
                raise RenditionError(f"{name} is not a regular file")
        req.finfo = finfo
    req.filename = name
    req.content_type = send.content_type
    setattr(req, _SENT_ATTR, _Sent(name, send.content_type))


def _schedule_fixup(req: Any) -> None:
    """Have :func:`fixuphandler` look at this request once all its phases have run."""
    if not getattr(req, _FIXUP_ATTR, False):
        req.add_handler("PythonFixupHandler", FIXUP_HANDLER)
        setattr(req, _FIXUP_ATTR, True)


# --------------------------------------------------------------------------- logging


def _where(req: Any) -> str:
    """The requested path for the log, whatever bytes it holds."""
    for name in ("uri", "unparsed_uri"):
        with contextlib.suppress(UnicodeDecodeError):
            return getattr(req, name) or ""
    return "(a request target that is not UTF-8)"


def _log(req: Any, level: int, message: str) -> None:
    req.log_error(one_line(f"imageguard: {message} [{_where(req)}]"), level)


def _refuse(req: Any, status: int, message: str, note: str) -> int:
    """Refuse with *status*: one log line, no caching, the access log's *note*, and
    remembered for the fixup."""
    _log(req, apache.APLOG_ERR, message)
    req.err_headers_out["Cache-Control"] = NO_STORE
    _note(req, note)
    setattr(req, _REFUSED_ATTR, status)
    return status


def _note(req: Any, note: str) -> None:
    """Leave *note* for the access log. Only the log would miss it: a note that cannot
    be set never changes the answer (a refusal stays the refusal it was, an image is
    still sent), so whatever setting it raises is dropped."""
    try:  # noqa: SIM105 - per request: a bare try costs nothing, suppress() a call
        req.notes[LOG_NOTE] = note
    except Exception:
        pass


def _login_viewer(progress: Progress) -> str:
    """The note's viewer for a request whose decision raised: the login's, when it was
    read and can be named, else :data:`NOBODY` (an error's refusal never depends on it)."""
    try:
        login = progress.login
        return NOBODY if login is None else login.log_viewer
    except Exception:
        return NOBODY


def _viewer(req: Any) -> str:
    """The note's viewer for a request that failed outside the policy: whom a handler
    already named in ``req.user``, else :data:`NOBODY`."""
    try:
        return log_viewer(req.user)
    except Exception:
        return NOBODY


def _fail_closed(req: Any, phase: str, exc: BaseException) -> int:
    """Log *exc* in one line and refuse the request; never raises, whatever it holds."""
    try:
        outcome = refusal_for(exc, phase, _viewer(req))
        return _refuse(req, outcome.status, outcome.reason, outcome.note)
    except BaseException:
        with contextlib.suppress(BaseException):
            req.log_error("imageguard: refused a request it could not describe", 3)
        with contextlib.suppress(BaseException):
            setattr(req, _REFUSED_ATTR, 500)
        with contextlib.suppress(BaseException):
            _note(req, _UNDESCRIBED)
        return 500


# --------------------------------------------------------------------------- the fixup


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
            note = _viewer(req) + _NOT_ADMITTED_WORD
            return _refuse(req, apache.HTTP_INTERNAL_SERVER_ERROR, _not_admitted(req), note)
        problem = _sent_otherwise(req, sent)
        if problem:
            note = _viewer(req) + _OVERRIDDEN_WORD
            return _refuse(req, apache.HTTP_INTERNAL_SERVER_ERROR, f"fixup: {problem}", note)
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
