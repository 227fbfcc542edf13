"""Stream-through: a content handler that checks like imageguard, then sends the bytes
itself, the way a PHP script behind the images would (``readfile``), or with
mod_python's ``req.sendfile``.

The checks are imageguard's own (the same gate, session reader and cached ACL), so the
only difference from imageguard is who sends the file.
"""

from __future__ import annotations

from typing import Any

from mod_python import apache

from imageguard.apache.runtime import runtime_for
from imageguard.files.gate import GateVerdict
from imageguard.policy.levels import Level

CHUNK = 64 * 1024


def _checked(req: Any) -> GateVerdict | int:
    """The file to send, or the refusal status."""
    runtime = runtime_for(req.get_options(), "")
    verdict = runtime.admit(req.method, req.filename or "", req.path_info or "")
    if not verdict.allowed:
        return verdict.status
    cookies = req.headers_in.get("Cookie")
    login = runtime.login([cookies] if cookies else [], client_ip=req.useragent_ip or "")
    if not login.identity.authenticated:
        return apache.HTTP_UNAUTHORIZED
    if runtime.decide(verdict.relpath, login.identity).level < Level.FULL:
        return apache.HTTP_FORBIDDEN
    return verdict


def handler(req: Any) -> int:
    """Read the file and write it out in chunks."""
    checked = _checked(req)
    if isinstance(checked, int):
        return checked
    req.content_type = "image/jpeg"
    req.set_content_length(checked.version.size)
    with open(checked.path, "rb") as source:
        while True:
            chunk = source.read(CHUNK)
            if not chunk:
                break
            req.write(chunk, 0)
    return apache.OK


def sendfile_handler(req: Any) -> int:
    """Let mod_python's req.sendfile send it (which maps the file and writev()s it:
    it never calls sendfile(), see bench/sendpaths.py)."""
    checked = _checked(req)
    if isinstance(checked, int):
        return checked
    req.content_type = "image/jpeg"
    req.sendfile(checked.path)
    return apache.OK
