"""A small application that logs users in with mod_python.Session.

It is a content handler (``SetHandler mod_python``), as any mod_python application is,
and knows nothing of imageguard: it puts the user name and groups into the session
(``session["user"]``, ``session["groups"]``), and imageguard, configured with the same
session options, reads that session when the browser asks for an image.

    POST /myapp/login   user=...&password=...   a session for that user, 303 to /myapp/
    POST /myapp/logout                          the session ends, 303 to /myapp/
    GET  /myapp/                                who is logged in
"""

import hmac
import urllib.parse
from typing import Any

from mod_python import Session, apache

# A stand-in for your user database: name -> (password, groups).
USERS: dict[str, tuple[str, list[str]]] = {
    "alice": ("alice-secret", ["staff"]),
    "bob": ("bob-secret", []),
    "carol": ("carol-secret", []),
}
MAX_FORM = 4096


def _form(req: Any) -> dict[str, str]:
    length = int(req.headers_in.get("Content-Length") or 0)
    if length > MAX_FORM:
        return {}
    return dict(urllib.parse.parse_qsl(req.read(length).decode("utf-8", "replace")))


def _check(user: str, password: str) -> list[str] | None:
    """The user's groups if the password is right, else None."""
    known, groups = USERS.get(user, ("", []))
    same = hmac.compare_digest(known.encode(), password.encode())
    return list(groups) if known and same else None


def _see_other(req: Any, location: str) -> int:
    # A 303 returned as OK keeps headers_out, where the session put its Set-Cookie.
    req.status = apache.HTTP_SEE_OTHER
    req.headers_out["Location"] = location
    req.content_type = "text/plain"
    req.write(f"see {location}\n")
    return apache.OK


def handler(req: Any) -> int:
    action = req.uri.rstrip("/").rsplit("/", 1)[-1]
    session = Session.Session(req)
    if action == "login" and req.method == "POST":
        form = _form(req)
        groups = _check(form.get("user", ""), form.get("password", ""))
        if groups is None:
            return apache.HTTP_FORBIDDEN
        if not session.is_new():  # a new session id at login: no session fixation
            session.delete()
            session.unlock()
            session = Session.Session(req)  # its stored data gone: a new id and cookie
        session["user"] = form["user"]
        session["groups"] = groups
        session.save()
        return _see_other(req, "/myapp/")
    if action == "logout" and req.method == "POST":
        session.invalidate()
        return _see_other(req, "/myapp/")
    if action != "myapp":
        return apache.HTTP_NOT_FOUND
    req.content_type = "text/plain"
    req.write(f"logged in as {session.get('user', 'nobody')}\n")
    return apache.OK
