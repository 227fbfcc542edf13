"""The application's login page, which sends the user back where imageguard found them.

imageguard sends a browser that opens a protected image without a login to
``imageguard.login_url`` with ``back=<the image's URL>``. This page keeps ``back`` in
its form and, once the password is right, starts the mod_python session imageguard
reads and redirects there. ``back`` comes from the client: only a path on this site
is followed (not ``//evil.example/``, which a browser reads as another host).

    GET  /account/login?back=/private/sea.jpg   the form
    POST /account/login                          user, password, back: 303 to back
    GET  /account/                               who is logged in
"""

import hmac
import html
import urllib.parse
from typing import Any

from mod_python import Session, apache

# A stand-in for your user database: name -> (password, groups).
USERS: dict[str, tuple[str, list[str]]] = {
    "alice": ("alice-secret", ["staff"]),
    "bob": ("bob-secret", []),
    "carol": ("carol-secret", []),
}
HOME = "/account/"
MAX_FORM = 4096

FORM = """<!doctype html>
<title>Log in</title>
<form method="post" action="/account/login">
  <input type="hidden" name="back" value="{back}">
  <label>User <input name="user" autocomplete="username"></label>
  <label>Password <input name="password" type="password" autocomplete="current-password"></label>
  <button>Log in</button>
</form>
"""


def safe_back(value: str) -> str:
    """*value* if it is a path on this site, else the home page."""
    if (
        not value.startswith("/")
        or value.startswith(("//", "/\\"))
        or len(value) > 2000
        or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)
    ):
        return HOME
    return value


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


def _log_in(req: Any, user: str, groups: list[str]) -> None:
    """A fresh session (a new id: no session fixation) holding the user and groups."""
    session = Session.Session(req)
    if not session.is_new():
        session.delete()
        session.unlock()
        session = Session.Session(req)
    session["user"] = user
    session["groups"] = groups
    session.save()


def handler(req: Any) -> int:
    req.headers_out["Cache-Control"] = "no-store"
    action = req.uri.rstrip("/").rsplit("/", 1)[-1]
    if action == "login" and req.method == "POST":
        form = _form(req)
        groups = _check(form.get("user", ""), form.get("password", ""))
        if groups is None:
            return apache.HTTP_FORBIDDEN
        _log_in(req, form["user"], groups)
        # A 303 returned as OK keeps headers_out, where the session put its Set-Cookie.
        req.status = apache.HTTP_SEE_OTHER
        req.headers_out["Location"] = safe_back(form.get("back", ""))
        return apache.OK
    if action == "login":
        back = dict(urllib.parse.parse_qsl(req.args or "")).get("back", "")
        req.content_type = "text/html; charset=utf-8"
        req.write(FORM.format(back=html.escape(safe_back(back), quote=True)))
        return apache.OK
    if action == "account":
        req.content_type = "text/plain"
        req.write("this is your account page\n")
        return apache.OK
    return apache.HTTP_NOT_FOUND
