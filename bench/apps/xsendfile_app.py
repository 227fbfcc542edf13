"""X-Sendfile: a WSGI application (mod_wsgi) that checks like imageguard, then answers
with an ``X-Sendfile`` header for mod_xsendfile to send the file.

Its checks are imageguard's pure core (the same gate, session reader and cached ACL),
configured from ``SetEnv`` values, so the only difference is the serving path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from imageguard.apache.runtime import runtime_for
from imageguard.policy.levels import Level

_OPTIONS = (
    "imageguard.root",
    "imageguard.acl_db",
    "mod_python.session.session_type",
    "mod_python.file_session.database_directory",
)


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    runtime = runtime_for({name: environ[name] for name in _OPTIONS}, "")
    filename = os.path.join(runtime.gate.root, environ["PATH_INFO"].lstrip("/"))
    verdict = runtime.admit(environ["REQUEST_METHOD"], filename, "")
    if not verdict.allowed:
        start_response(f"{verdict.status} Refused", [("Content-Type", "text/plain")])
        return [b"refused\n"]
    cookies = environ.get("HTTP_COOKIE")
    login = runtime.login([cookies] if cookies else [], client_ip=environ["REMOTE_ADDR"])
    if not login.identity.authenticated:
        start_response("401 Unauthorized", [("Content-Type", "text/plain")])
        return [b"log in\n"]
    if runtime.decide(verdict.relpath, login.identity).level < Level.FULL:
        start_response("403 Forbidden", [("Content-Type", "text/plain")])
        return [b"forbidden\n"]
    start_response("200 OK", [("Content-Type", "image/jpeg"), ("X-Sendfile", verdict.path)])
    return [b""]
