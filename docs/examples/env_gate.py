"""The gatekeeper pattern in miniature: decide in the access phase, mark what was
admitted, and let Apache's own ``Require env`` refuse everything else.

NEVER USE THIS IN PRODUCTION: like authen_header, it believes the X-Demo-User header,
which any client can send. It exists to show what Apache does around such a gate:
internal redirects, subrequests and mod_cache (see env_gate.conf, cache_gate.conf).

accesshandler: looks the file name up in ALLOWED. What it admits gets DEMO_ADMITTED
in the request's environment (for ``Require env``), a note (for the fixup) and private
caching headers. Every call writes one line to the error log, so you can see which
requests, subrequests and redirects reached it.
fixuphandler: refuses any request the access handler did not admit itself.
"""

import os
from typing import Any

from mod_python import apache

#: File name -> who may see it; "*" is anyone, even without a name. Others: nobody.
ALLOWED = {
    "open.jpg": {"*"},
    "page.shtml": {"*"},
    "secret.jpg": {"alice"},
    "notes.txt": {"alice"},
}
ENV = "DEMO_ADMITTED"  # what "Require env DEMO_ADMITTED" looks for
NOTE = "env_gate"  # per request: a subrequest or redirect starts with no notes


def _admits(req: Any) -> bool:
    """Decide, and log what the request looked like when it reached the gate."""
    name = os.path.basename(req.filename or "")
    viewer = req.headers_in.get("X-Demo-User", "")
    who = ALLOWED.get(name, set())
    admitted = "*" in who or viewer in who
    # mod_python has no req.is_initial_req(): a subrequest has req.main (the request
    # that made it), an internal redirect req.prev (the request it replaces).
    main = req.main.uri if req.main else "-"
    prev = req.prev.uri if req.prev else "-"
    req.log_error(
        f"env_gate: {req.uri} main={main} prev={prev} "
        f"{ENV}={req.subprocess_env.get(ENV, '-')} viewer={viewer or '-'} "
        f"-> {'admitted' if admitted else 'refused'}",
        apache.APLOG_NOTICE,
    )
    if admitted:
        req.subprocess_env[ENV] = "1"
        req.notes[NOTE] = "admitted"
    return admitted


def accesshandler(req: Any) -> int:
    if not _admits(req):
        return apache.HTTP_FORBIDDEN
    # What a shared cache must not keep, and what the answer depends on.
    req.headers_out["Cache-Control"] = "private"
    req.headers_out.add("Vary", "X-Demo-User")
    return apache.OK  # no objection: "Require env DEMO_ADMITTED" now passes


def accesshandler_without_cache_headers(req: Any) -> int:
    """WRONG with mod_cache: the same decision, but nothing says "private"."""
    if not _admits(req):
        return apache.HTTP_FORBIDDEN
    return apache.OK


def fixuphandler(req: Any) -> int:
    """The second look: runs even when Apache skipped the access phase."""
    if req.notes.get(NOTE) == "admitted":
        return apache.OK
    req.log_error(f"env_gate: fixup refused {req.uri}", apache.APLOG_NOTICE)
    return apache.HTTP_FORBIDDEN
