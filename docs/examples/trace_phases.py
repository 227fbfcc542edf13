"""Show which request phases run, in which order, and what each one sees.

Register this module for every phase (see trace_phases.conf). Each phase handler
appends one line to a request note; the content handler sends the lines back as the
response body and the phase names in an ``X-Phases`` header. The log phase and the
cleanup run after the response has gone, so they write to Apache's error log.

For learning only: it answers every request under /trace/ with a text page.
"""

from typing import Any

from mod_python import apache

PREFIX = "/trace/"
NOTE = "trace_phases"


def _record(req: Any, phase: str) -> None:
    """Append "<phase> filename=... path_info=... user=..." to the request's note."""
    line = f"{phase:<17} filename={req.filename} path_info={req.path_info!r} user={req.user}"
    earlier = req.notes.get(NOTE)
    req.notes[NOTE] = f"{earlier}\n{line}" if earlier else line


def _trace_id(req: Any) -> str:
    """The X-Trace-Id request header, to find this request's lines in the error log."""
    return req.headers_in.get("X-Trace-Id", "-")


def _cleanup(req: Any) -> None:
    """Called when Apache frees the request, after the log phase."""
    req.log_error(f"trace_phases {_trace_id(req)}: cleanup", apache.APLOG_NOTICE)


# Server-wide phases: they run for every request of the server, before Apache knows
# which <Directory> applies, so they must pick their own requests by URL.


def postreadrequesthandler(req: Any) -> int:
    if not req.uri.startswith(PREFIX):
        return apache.DECLINED
    _record(req, "post-read-request")
    req.register_cleanup(_cleanup, req)  # calls _cleanup(req) at the very end
    return apache.DECLINED


def transhandler(req: Any) -> int:
    if not req.uri.startswith(PREFIX):
        return apache.DECLINED
    _record(req, "translate")
    return apache.DECLINED  # let Apache map the URL to a file as usual


# Per-directory phases: configured in <Directory>, they only see its requests.


def headerparserhandler(req: Any) -> int:
    _record(req, "header-parser")
    return apache.DECLINED


def accesshandler(req: Any) -> int:
    _record(req, "access")
    return apache.DECLINED


def authenhandler(req: Any) -> int:
    _record(req, "authen")
    req.user = "tracer"  # returning OK without setting req.user is a 500
    return apache.OK


def authzhandler(req: Any) -> int:
    _record(req, "authz")
    return apache.DECLINED  # the Require lines decide


def typehandler(req: Any) -> int:
    _record(req, "type-checker")
    return apache.DECLINED  # let mod_mime set the Content-Type


def fixuphandler(req: Any) -> int:
    _record(req, "fixups")
    return apache.DECLINED


def handler(req: Any) -> int:
    _record(req, "content")
    lines = req.notes[NOTE].split("\n")
    req.headers_out["X-Phases"] = " ".join(line.split()[0] for line in lines)
    req.content_type = "text/plain; charset=utf-8"
    req.write("\n".join(lines) + "\n")
    return apache.OK


def loghandler(req: Any) -> int:
    phases = " ".join(line.split()[0] for line in req.notes.get(NOTE, "").split("\n"))
    req.log_error(
        f"trace_phases {_trace_id(req)}: log, status {req.status}, after: {phases}",
        apache.APLOG_NOTICE,
    )
    return apache.DECLINED
