"""The demo application: a mod_python content handler that logs users in and shows a gallery.

Apache loads it (``SetHandler mod_python`` + ``PythonHandler imageguard_devtools.demo.app``, see
:mod:`imageguard_devtools.demo.site`); the venv Python never runs it, which is why ``mod_python``
is imported inside the functions. It stands for "your application": it knows nothing of
imageguard's handlers, it only logs users in with ``mod_python.Session`` the usual way
(``session['user']``, ``session['groups']``). imageguard, configured with the same
session settings, reads those sessions when the browser asks for ``/images/...``.

URLs:

* ``GET /login[?back=/path]``: the login form; ``POST /login``: check the password
  (salted PBKDF2 from ``users.json``), start a session, redirect to ``back`` or the gallery;
* ``POST /logout`` (or ``GET``): end the session;
* ``GET /gallery``: every image under the root as an ``<img src="/images/...">``, with what
  the ACL store says about it; ``GET /`` redirects there.

Options (``PythonOption``): ``imageguard_demo.images_root``, ``imageguard_demo.images_url``,
``imageguard_demo.acl_db``, ``imageguard_demo.users_file``; and mod_python's own session
options, which imageguard's ``<Directory>`` repeats.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import os
import re
import string
import urllib.parse
from pathlib import Path
from typing import Any

from imageguard.errors import ImageGuardError
from imageguard.identity.cookies import find_cookie
from imageguard.policy.levels import Level
from imageguard.policy.principals import Identity, valid_groups
from imageguard.store import AclStore

OPTION_PREFIX = "imageguard_demo."
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp")
MAX_FORM_BYTES = 8192
DEFAULT_BACK = "/gallery"
_SID = re.compile(r"[0-9a-f]{32}\Z")
_TEMPLATE = string.Template((Path(__file__).with_name("page.html")).read_text("utf-8"))
_LOCK_SVG = (
    '<svg class="icon" viewBox="0 0 24 24" width="44" height="44" aria-hidden="true">'
    '<path d="M7 10V7a5 5 0 0 1 10 0v3" fill="none" stroke="currentColor" stroke-width="2"/>'
    '<rect x="4" y="10" width="16" height="11" rx="2" fill="currentColor"/></svg>'
)
#: Compared against when the user name is unknown, so that both cases cost the same.
_DUMMY = {"salt": "00" * 16, "iterations": 100_000, "hash": "00" * 32}


# --------------------------------------------------------------------------- helpers


def esc(value: object) -> str:
    """HTML-escape anything (quotes included) for text and attribute values."""
    return html.escape(str(value), quote=True)


def safe_back(value: str | None) -> str:
    """*value* if it is a path on this site (``/x``, not ``//host`` or ``/\\host``)."""
    if (
        not value
        or not value.startswith("/")
        or value.startswith(("//", "/\\"))
        or len(value) > 2000
        or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)
    ):
        return DEFAULT_BACK
    return value


def _option(req: Any, name: str, default: str = "") -> str:
    return req.get_options().get(OPTION_PREFIX + name, default)


def _cookie_sid(req: Any) -> str | None:
    """The session id the browser sent, if it has mod_python's shape; no session is made."""
    name = req.get_options().get("mod_python.session.cookie_name", "pysid")
    raw = req.headers_in.get("Cookie")
    headers = [] if raw is None else list(raw) if isinstance(raw, list) else [raw]
    value = find_cookie(headers, name) or ""
    return value if _SID.match(value) else None


def _users(req: Any) -> dict[str, dict[str, Any]]:
    with open(_option(req, "users_file"), encoding="utf-8") as handle:
        return json.load(handle)


def password_ok(record: dict[str, Any], password: str) -> bool:
    """Recompute the salted PBKDF2 hash and compare in constant time."""
    got = hashlib.pbkdf2_hmac(
        "sha256", password.encode("utf-8"), bytes.fromhex(record["salt"]), record["iterations"]
    )
    return hmac.compare_digest(got, bytes.fromhex(record["hash"]))


def _read_form(req: Any) -> dict[str, str]:
    try:
        length = int(req.headers_in.get("Content-Length") or 0)
    except ValueError:
        length = 0
    body = req.read(min(length, MAX_FORM_BYTES)) if length > 0 else b""
    pairs = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), max_num_fields=20)
    return {key: value for key, value in reversed(pairs)}  # the first value wins


def _send(req: Any, title: str, body: str, who: str = "", status: int = 200) -> int:
    from mod_python import apache

    page = _TEMPLATE.substitute(title=esc(title), body=body, who=who)
    req.status = status
    req.content_type = "text/html; charset=utf-8"
    req.headers_out["Cache-Control"] = "no-store"
    req.write(page.encode("utf-8"))
    return apache.OK


def _redirect(req: Any, location: str) -> int:
    """303 See Other to a local path (a POST becomes a GET), keeping any Set-Cookie."""
    from mod_python import apache

    req.status = apache.HTTP_SEE_OTHER
    req.headers_out["Location"] = location
    req.headers_out["Cache-Control"] = "no-store"
    req.content_type = "text/html; charset=utf-8"
    req.write(f'<a href="{esc(location)}">continue</a>\n'.encode())
    return apache.OK


def _session_login(req: Any) -> tuple[Any, str | None, list[str]]:
    """(session or None, user, session groups) for this request; makes no new session."""
    from mod_python import Session

    if _cookie_sid(req) is None:
        return None, None, []
    session = Session.Session(req)
    user = session.get("user")
    if session.is_new() or not isinstance(user, str):
        return session, None, []
    groups = session.get("groups") or []
    return session, user, [g for g in groups if isinstance(g, str)]


def _who(user: str | None) -> str:
    if user is None:
        return '<span>Not logged in</span> <a class="btn" href="/login">Log in</a>'
    return (
        f"<span>Logged in as <b>{esc(user)}</b></span>"
        '<form method="post" action="/logout"><button class="quiet">Log out</button></form>'
    )


def _list_images(root: str) -> list[str]:
    """Image paths under *root*, relative with ``/``, hidden entries skipped, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                found.append(rel.replace(os.sep, "/"))
    return sorted(found)


# --------------------------------------------------------------------------- pages


def login_page(req: Any, back: str, error: str = "", status: int = 200) -> int:
    """The login form (also shown again, with *error*, after a failed attempt)."""
    try:
        users = _users(req)
    except (OSError, ValueError):
        users = {}
    listed = "".join(
        f"<li><b>{esc(name)}</b>: {esc(info.get('sees', ''))}</li>" for name, info in users.items()
    )
    going = ""
    if back != DEFAULT_BACK:
        going = f'<p class="note">After logging in you go back to <code>{esc(back)}</code>.</p>'
    problem = f'<p class="error">{esc(error)}</p>' if error else ""
    body = f"""
<section class="login">
  <h1>Log in</h1>
  {problem}
  <form method="post" action="/login">
    <label>User <input type="text" name="user" autocomplete="username" autofocus></label>
    <label>Password
      <input type="password" name="password" autocomplete="current-password"></label>
    <input type="hidden" name="back" value="{esc(back)}">
    <button type="submit">Log in</button>
  </form>
  {going}
  <p class="note">Demo users (their passwords were printed where <code>make demo</code>
  runs):</p>
  <ul class="users">{listed}</ul>
  <p class="note"><a href="/gallery">See the gallery without logging in</a></p>
</section>"""
    return _send(req, "Log in", body, _who(None), status)


def login(req: Any) -> int:
    from mod_python import Session, apache

    if req.method in ("GET", "HEAD"):
        args = dict(urllib.parse.parse_qsl(req.args or ""))
        return login_page(req, safe_back(args.get("back")))
    if req.method != "POST":
        req.allow_methods(["GET", "HEAD", "POST"], 1)
        return apache.HTTP_METHOD_NOT_ALLOWED
    form = _read_form(req)
    name = form.get("user", "").strip()
    back = safe_back(form.get("back"))
    users = _users(req)
    record = users.get(name)
    matched = password_ok(record or _DUMMY, form.get("password", ""))
    if record is None or not matched:
        req.log_error(f"imageguard demo: failed login for {name[:40]!r}", apache.APLOG_NOTICE)
        return login_page(req, back, "Wrong user name or password.")
    # Never adopt a session id the browser brought (session fixation): without a Cookie
    # header mod_python starts a fresh session, with a new id and a Set-Cookie.
    if "Cookie" in req.headers_in:
        del req.headers_in["Cookie"]
    session = Session.Session(req)
    session["user"] = name
    session["groups"] = list(record.get("groups", []))
    session.save()
    return _redirect(req, back)


def logout(req: Any) -> int:
    from mod_python import Session

    if _cookie_sid(req) is not None:
        Session.Session(req).invalidate()  # deletes it and expires the cookie
    return _redirect(req, "/login")


def _figure(url: str, rel: str, level: Level | None, reason: str) -> str:
    src = esc(url)
    if level is None:
        acl = f'<div class="acl">{esc(reason)}</div>'
    else:
        note = {
            Level.PREVIEW: " (a smaller copy with your name written across it)",
            Level.THUMB: " (a small copy only)",
        }.get(level, "")
        acl = (
            f'<div class="acl">ACL: <span class="level level-{level.label}">{level.label}'
            f"</span>{esc(note)} &middot; {esc(reason)}</div>"
        )
    return f"""
<figure class="card">
  <div class="frame">
    <img src="{src}" alt="{esc(rel)}" onload="ig(this, 1)" onerror="ig(this, 0)">
    <div class="lock">{_LOCK_SVG}<b>Refused</b>
      <span>Apache did not send it: imageguard said no</span></div>
  </div>
  <figcaption>
    <div class="path"><a href="{src}"><code>{esc(rel)}</code></a>
      <span class="verdict">loading</span></div>
    {acl}
  </figcaption>
</figure>"""


def gallery(req: Any) -> int:
    from mod_python import apache

    if req.method not in ("GET", "HEAD"):
        req.allow_methods(["GET", "HEAD"], 1)
        return apache.HTTP_METHOD_NOT_ALLOWED
    session, user, session_groups = _session_login(req)
    if session is not None and user is not None:
        session.save()  # mod_python's timeout counts from the last save: stay logged in
    groups = valid_groups(session_groups)
    identity = Identity(user, groups) if user is not None else Identity()
    root = _option(req, "images_root")
    base = _option(req, "images_url", "/images").rstrip("/")
    db = _option(req, "acl_db")
    images = _list_images(root)

    decisions: dict[str, tuple[Level | None, str]] = {}
    store_groups: frozenset[str] = frozenset()
    rules_html = ""
    try:
        with AclStore(db) as store:
            if user is not None:
                store_groups = store.groups_of(user)
            for rel in images:
                decision = store.decide(rel, identity)
                decisions[rel] = (decision.level, decision.reason)
            rows = "".join(
                f"<tr><td><code>{esc(r.pattern.text)}</code></td>"
                f"<td><code>{esc(r.principal)}</code></td><td>{esc(r.level.label)}</td></tr>"
                for r in store.rules()
            )
            members = ", ".join(f"{esc(m.user)} &isin; {esc(m.group)}" for m in store.memberships())
        rules_html = (
            f"<table><tr><th>Pattern</th><th>Principal</th><th>Level</th></tr>{rows}</table>"
            f'<p class="note">Group memberships kept in the store: {members or "none"}.</p>'
        )
    except ImageGuardError as exc:
        rules_html = f'<p class="error">Cannot read the ACL store: {esc(exc)}</p>'

    figures = "".join(
        _figure(
            f"{base}/{urllib.parse.quote(rel)}",
            rel,
            *decisions.get(rel, (None, "the ACL store could not be read")),
        )
        for rel in images
    )
    explain_steps = f"""
  <p>Every picture is a plain <code>&lt;img src="{esc(base)}/..."&gt;</code>. For each one
  Apache ran imageguard's three handlers before sending anything:</p>
  <ol>
    <li><b>access</b>: is it an image file inside the protected root, asked for with GET?</li>
    <li><b>authen</b>: whose <code>pysid</code> session cookie is this? The session file
      is the one this application wrote; imageguard only reads it.</li>
    <li><b>authz</b>: which level does the most specific matching rule grant?</li>
  </ol>
  <p><code>full</code>: Apache sent the file itself (sendfile, ETag, Range; Python never
  touches the bytes). <code>preview</code> or <code>thumb</code>: imageguard pointed Apache
  at a smaller copy made once with Pillow and kept in its cache (the preview carries a
  watermark naming you), and Apache sent that. <code>deny</code>: 403 (401 when nobody is
  logged in), shown here as a lock. The size under each picture is what arrived; the line
  below it is what <code>imageguard explain</code> says.</p>"""
    if user is None:
        intro = f"""
<h1>Gallery: what anyone may see</h1>
<form class="inline-login" method="post" action="/login">
  <b>Not logged in.</b>
  <input type="text" name="user" placeholder="user" autocomplete="username">
  <input type="password" name="password" placeholder="password"
         autocomplete="current-password">
  <input type="hidden" name="back" value="{esc(DEFAULT_BACK)}">
  <button type="submit">Log in</button>
</form>
<p class="lead">Without a session your browser is <b>anonymous</b>: only rules for
<code>anyone</code> apply. Open a locked image's link and imageguard sends you to the
login page first (<code>imageguard.login_url</code>), then back to the image.</p>"""
        details = f"""
<h2>What imageguard did</h2>
<div class="explain">{explain_steps}</div>"""
    else:
        from_session = ", ".join(sorted(groups)) or "none"
        from_store = ", ".join(sorted(store_groups)) or "none"
        intro = f"""
<h1>Gallery for {esc(user)}</h1>
<p class="lead">Groups from your session: <b>{esc(from_session)}</b>; from the ACL store:
<b>{esc(from_store)}</b>. Each picture below is requested from Apache, which asks
imageguard whether <b>{esc(user)}</b> may see it.</p>"""
        details = f"""
<h2>What imageguard did</h2>
<div class="explain">
  <p>This page comes from a small mod_python application
  (<code>imageguard_devtools.demo.app</code>). When you logged in it did what any
  mod_python application does:
  <code>session = Session.Session(req)</code>, <code>session["user"] = {esc(repr(user))}</code>,
  <code>session["groups"] = {esc(repr(sorted(groups)))}</code>, <code>session.save()</code>.</p>
  {explain_steps}
</div>"""
    body = f"""{intro}
<p class="tally" id="tally">Loading {len(images)} image(s)...</p>
<div class="grid">{figures}</div>
{details}
<h2>Rules in the ACL store</h2>
{rules_html}
<h2>Try it</h2>
<p class="note">Rules change while Apache runs; reload this page to see the effect.</p>
<pre>.venv/bin/imageguard --db {esc(db)} explain --user bob gallery/draft.jpg
.venv/bin/imageguard --db {esc(db)} grant gallery/draft.jpg user:bob full
.venv/bin/imageguard --db {esc(db)} group add staff bob</pre>"""
    title = f"Gallery for {user}" if user is not None else "Gallery"
    return _send(req, title, body, _who(user))


# --------------------------------------------------------------------------- entry point


def handler(req: Any) -> int:
    """mod_python's content handler: dispatch on the path."""
    from mod_python import apache

    path = req.uri
    if path == "/":
        return _redirect(req, DEFAULT_BACK)
    if path == "/login":
        return login(req)
    if path == "/logout":
        return logout(req)
    if path == "/gallery":
        return gallery(req)
    return apache.HTTP_NOT_FOUND
