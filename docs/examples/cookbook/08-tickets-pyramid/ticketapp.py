"""A Pyramid application whose login ticket also opens the protected images.

At login, Pyramid's ``AuthTktCookieHelper`` writes an ``auth_tkt`` cookie signed with
the first secret of imageguard's secret file; the groups go into the ticket as its
tokens. imageguard (``imageguard.session auth_tkt``) checks that cookie on each image
request inside Apache, without calling this application. The helper's settings must
match imageguard's options: the cookie name, the digest (Pyramid 2 defaults to
sha512, imageguard to sha256), the address binding, and a timeout no longer than
``imageguard.tkt_timeout``.

    GET  /pyramid/login?back=/tickets/...   the form
    POST /pyramid/login                     user, password, back: the ticket, 303 to back
    POST /pyramid/logout                    the cookie deleted, every ticket of the user refused
    GET  /pyramid/                          who is logged in
"""

import hmac
import html
from collections.abc import Callable
from typing import Any

from pyramid.authentication import AuthTktCookieHelper
from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPForbidden, HTTPSeeOther
from pyramid.response import Response
from pyramid.security import forget, remember

from imageguard import AclStore

# A stand-in for your user database: name -> (password, groups).
USERS: dict[str, tuple[str, list[str]]] = {
    "alice": ("alice-secret", ["staff"]),
    "bob": ("bob-secret", []),
    "erin": ("erin-secret", ["staff"]),
}
HOME = "/pyramid/"

FORM = """<!doctype html>
<title>Log in</title>
<form method="post" action="/pyramid/login">
  <input type="hidden" name="back" value="{back}">
  <label>User <input name="user"></label>
  <label>Password <input name="password" type="password"></label>
  <button>Log in</button>
</form>
"""


def newest_secret(path: str) -> str:
    """The first secret of imageguard's secret file: the one new tickets are signed with."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip() and not line.lstrip().startswith("#"):
                return line.strip()
    raise RuntimeError(f"{path} holds no secret")


def safe_back(value: str) -> str:
    """*value* if it is a path on this site, else the home page."""
    if not value.startswith("/") or value.startswith(("//", "/\\")) or len(value) > 2000:
        return HOME
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return HOME
    return value


class TicketPolicy:
    """Pyramid's security policy: the login is the auth_tkt cookie imageguard reads."""

    def __init__(self, secret: str, secure_cookie: bool) -> None:
        self.helper = AuthTktCookieHelper(
            secret,
            cookie_name="auth_tkt",  # imageguard.tkt_cookie
            hashalg="sha256",  # imageguard.tkt_digest
            include_ip=False,  # imageguard.tkt_bind_ip off
            timeout=30 * 60,  # imageguard.tkt_timeout 30m
            reissue_time=5 * 60,  # a fresh ticket for an active user
            secure=secure_cookie,  # True behind https (leave it on in production)
            http_only=True,
            samesite="Lax",
            path="/",  # the cookie must reach the image URLs
            wild_domain=False,  # one cookie, for this host only
        )

    def identity(self, request: Any) -> dict[str, Any] | None:
        return self.helper.identify(request)

    def authenticated_userid(self, request: Any) -> str | None:
        found = self.identity(request)
        return found["userid"] if found else None

    def permits(self, request: Any, context: Any, permission: str) -> bool:
        return self.identity(request) is not None

    def remember(self, request: Any, userid: str, **kw: Any) -> list[tuple[str, str]]:
        return self.helper.remember(request, userid, tokens=tuple(kw.get("groups", ())))

    def forget(self, request: Any, **kw: Any) -> list[tuple[str, str]]:
        return self.helper.forget(request)


def login_form(request: Any) -> Response:
    back = safe_back(request.params.get("back", ""))
    return Response(FORM.format(back=html.escape(back, quote=True)))


def login(request: Any) -> Response:
    user = request.POST.get("user", "")
    known, groups = USERS.get(user, ("", []))
    if not known or not hmac.compare_digest(known, request.POST.get("password", "")):
        return HTTPForbidden()
    back = safe_back(request.POST.get("back", ""))
    return HTTPSeeOther(back, headers=remember(request, user, groups=groups))


def logout(request: Any) -> Response:
    user = request.authenticated_userid
    if user is not None:  # a copied cookie must not outlive the logout: refuse them all
        with AclStore(request.registry.settings["acl_db"]) as acl:
            acl.revoke_user(user)
    return HTTPSeeOther(HOME, headers=forget(request))


def home(request: Any) -> Response:
    user = request.authenticated_userid or "nobody"
    return Response(f"logged in as {user}\n", content_type="text/plain")


def make_app(secret_file: str, acl_db: str, secure_cookie: bool = True) -> Callable[..., Any]:
    """The WSGI application; *acl_db* is imageguard's store (for the logout)."""
    config = Configurator(settings={"acl_db": acl_db})
    config.set_security_policy(TicketPolicy(newest_secret(secret_file), secure_cookie))
    config.add_route("home", "/pyramid/")
    config.add_route("login", "/pyramid/login")
    config.add_route("logout", "/pyramid/logout")
    config.add_view(home, route_name="home")
    config.add_view(login_form, route_name="login", request_method="GET")
    config.add_view(login, route_name="login", request_method="POST")
    config.add_view(logout, route_name="logout", request_method="POST")
    return config.make_wsgi_app()
