"""A real Apache 2.4 with mod_python, protecting a generated image tree with imageguard.

One server per MPM (``event`` and ``prefork``), module-scoped per test module. The site:

* ``/images``: the directory block ``imageguard apache-conf`` prints (FileSession),
  with a login URL;
* ``/dbimages``: the same tree with DbmSession and ``deny_status 404``;
* ``/ht``: a directory gated only by an ``.htaccess`` holding the access handler;
  ``/ht-any`` the same under the parent's ``Satisfy Any``;
* ``/strict``: the same tree with renditions but no downgrading, a watermark naming
  the viewer, and the placeholder padlock for refusals;
* ``/broken``: imageguard pointed at an ACL store that does not exist;
* ``/unverified``: the same tree with ``imageguard.verify_content off``;
* ``/other``: a second root (``images2``) with its own ACL store and the same secret
  file, to show that share links work only where they were made;
* ``/unguarded``: only the gatekeeper's ``Require env`` line, no handler;
* ``/app`` and ``/dbapp``: the "application" (``apps/sessionapp.py``), which logs users
  in with ``mod_python.Session`` using FileSession and DbmSession.

The server runs with Debian's stock global configuration around it: ``mime.conf``
(``AddHandler type-map var``, ``AddOutputFilter INCLUDES .shtml``, languages and
charsets by extension) and ``negotiation.conf``, with mod_negotiation, mod_include,
mod_cgi and mod_access_compat loaded, and a parent directory that hands every site
``Options +Includes +ExecCGI +MultiViews +Indexes``, ``Satisfy Any``, a CGI handler for
``.cgi``, a script handler for ``.php`` (mod_python's test handler stands in for PHP)
and, through a ``<FilesMatch>``, one for names holding ``.phtml.``. ``PythonDebug`` is
on, so any traceback would reach the client.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from imageguard.apache.apacheconf import SiteConfig, directory_block, htaccess
from imageguard_devtools.localpg import LocalPostgres, unavailable_reason
from imageguard_devtools.localserver import (
    APACHE_BIN,
    MODULES_DIR,
    ApacheConfig,
    LocalApache,
    free_port,
    make_workdir,
    prepare_readable,
    prepare_writable,
    run_user,
)

from . import hostile_files
from .httpfetch import fetch

APPS = Path(__file__).parent / "apps"
#: The ticket and share-link secret of the test sites (first line of their secret file).
SECRET = "integration-secret-0123456789"
CLI = [sys.executable, "-m", "imageguard.cli"]
MPMS = ["event", "prefork"]
#: (MPM, how the handlers are configured): every site test runs against each.
SITE_PARAMS = [(mpm, mode) for mode in ("one-phase", "three-phase") for mpm in MPMS]
SITE_IDS = [f"{mpm}-{mode}" for mpm, mode in SITE_PARAMS]

# Every rule the tests rely on; the comments say which test uses it.
RULES = """
rule gallery/ authenticated full
rule gallery/public.jpg anyone full
rule gallery/staff-only.jpg group:staff full
rule gallery/staff-only.jpg authenticated deny
rule gallery/editors.jpg group:editors full
rule gallery/editors.jpg authenticated deny
rule 'users/{user}/**' authenticated full
rule private/ user:alice full
rule previews/ authenticated preview
rule gate/ authenticated full
rule 'NOTES.JPG' authenticated full
rule link-in.jpg authenticated full
rule hostile/ authenticated full
rule race/ authenticated full
member editors carol
"""


def make_images(root: Path) -> None:
    """The image tree, with the awkward files the gate must refuse."""
    colours = {
        "gallery/public.jpg": "green",
        "gallery/cat.jpg": "orange",
        "gallery/dog.png": "brown",
        "gallery/staff-only.jpg": "blue",
        "gallery/editors.jpg": "purple",
        "users/alice/me.jpg": "pink",
        "users/bob/me.jpg": "grey",
        "private/secret.jpg": "black",
        "previews/p.jpg": "yellow",
        "gate/ok.jpg": "white",
        "NOTES.JPG": "red",
        ".hidden/x.jpg": "red",
    }
    for rel, colour in colours.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = "PNG" if rel.endswith(".png") else "JPEG"
        Image.new("RGB", (64, 48), colour).save(path, fmt)
    (root / "gate" / "notes.txt").write_text("not an image\n")
    (root / "gate" / "dir.jpg").mkdir()
    os.mkfifo(root / "gate" / "fifo.jpg")
    (root / ".htaccess").write_text("# never served\n")
    outside = root.parent / "outside"
    outside.mkdir()
    Image.new("RGB", (8, 8), "red").save(outside / "outside.jpg", "JPEG")
    (root / "gate" / "link-out.jpg").symlink_to(outside / "outside.jpg")
    (root / "link-in.jpg").symlink_to(root / "private" / "secret.jpg")
    (root / "gate" / "text-link.jpg").symlink_to(root / "gate" / "notes.txt")
    make_hostile_files(root / "hostile")


#: The uploads that other handlers of a stock Debian Apache would read as something else.
HOSTILE_FILES = {
    "holiday.var.jpg": hostile_files.type_map_jpeg(),  # AddHandler type-map var
    "page.shtml.jpg": hostile_files.ssi_jpeg(),  # AddOutputFilter INCLUDES .shtml
    "script.php.jpg": hostile_files.html_jpeg(),  # AddHandler for .php (a script engine)
    "page.html.jpg": hostile_files.html_jpeg(),  # text/html by mime.types
    "files.phtml.jpg": hostile_files.html_jpeg(),  # a <FilesMatch> with SetHandler
    "fr.fr.jpg": hostile_files.with_comment(b"bonjour"),  # AddLanguage fr .fr
}


def make_hostile_files(folder: Path) -> None:
    folder.mkdir()
    for name, data in HOSTILE_FILES.items():
        (folder / name).write_bytes(data)
    script = folder / "run.cgi.jpg"  # AddHandler cgi-script .cgi, ExecCGI inherited
    script.write_bytes(hostile_files.CGI_SCRIPT)
    script.chmod(0o755)
    # A name that is not UTF-8 on disk (Latin-1 "café.jpg"), and a link leading to it.
    latin1 = folder / os.fsdecode(b"caf\xe9.jpg")
    latin1.write_bytes(hostile_files.with_comment(b"latin-1"))
    (folder / "to-latin1.jpg").symlink_to(latin1.name)


def needs_apache(*modules: str) -> list[pytest.MarkDecorator]:
    """The marks of a test module that starts apache2 with mod_python (and the Apache
    *modules* named, ``auth_tkt`` for mod_auth_tkt): skipped where any is missing."""
    names = ("python", *modules)
    present = Path(APACHE_BIN).exists() and all(
        (MODULES_DIR / f"mod_{name}.so").exists() for name in names
    )
    packages = ["apache2", *(f"libapache2-mod-{name.replace('_', '-')}" for name in names)]
    reason = f"{', '.join(packages[:-1])} and {packages[-1]} are not installed"
    return [pytest.mark.apache, pytest.mark.skipif(not present, reason=reason)]


def hello_docroot(base: Path) -> str:
    """A document root *base*/docs serving ``index.html`` ("hi\\n") to anyone; the
    configuration body that serves it."""
    docs = base / "docs"
    docs.mkdir()
    (docs / "index.html").write_text("hi\n")
    prepare_readable(docs)
    return f'DocumentRoot "{docs}"\n<Directory "{docs}">\n    Require all granted\n</Directory>'


def login_cookie(request: Callable[[str], tuple[int, dict[str, str], bytes]], url: str) -> str:
    """GET the application's login *url* through *request*: a 200 that sets a session;
    returns the ``Cookie`` header value."""
    status, headers, body = request(url)
    assert status == 200, body
    found = re.search(r"pysid=([0-9a-f]{32})", headers.get("set-cookie", ""))
    assert found, headers
    return f"pysid={found.group(1)}"


def cli(db: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real ``imageguard`` CLI against *db*."""
    return subprocess.run(
        [*CLI, "--db", str(db), *args], capture_output=True, text=True, check=check
    )


def app_block(url: str, directory: Path, *session_options: str) -> str:
    """The application's directory: a content handler using mod_python.Session."""
    options = "\n".join("    " + line for line in session_options)
    return f"""
Alias {url} {directory}
<Directory {directory}>
    Require all granted
    SetHandler mod_python
    PythonHandler sessionapp
    PythonPath "[{str(APPS)!r}] + sys.path"
    PythonOption mod_python.session.application_path /
{options}
</Directory>
"""


@dataclass(frozen=True)
class Tree:
    """A work directory holding what every test site starts from."""

    workdir: Path
    #: The test image tree (:func:`make_images`).
    root: Path
    #: Where Apache's user writes: the sessions, the ACL store.
    state: Path
    sessions: Path
    #: The ACL store, holding :data:`RULES`.
    db: Path


def make_tree(prefix: str) -> Tree:
    """A new work directory (``make_workdir(prefix)``) with the image tree in ``images``,
    ``state/sessions`` and an ACL store ``state/acl.db`` that holds :data:`RULES`, and
    ``app`` linked to the application (``apps/``). Making the tree readable and ``state``
    writable by Apache's user is left to the caller, once its own files are there."""
    workdir = make_workdir(prefix)
    root = workdir / "images"
    root.mkdir()
    make_images(root)
    state = workdir / "state"
    sessions = state / "sessions"
    sessions.mkdir(parents=True)
    db = state / "acl.db"
    cli(db, "init")
    (workdir / "rules.txt").write_text(RULES)
    cli(db, "import", str(workdir / "rules.txt"))
    (workdir / "app").symlink_to(APPS)
    return Tree(workdir, root, state, sessions, db)


@dataclass
class Site:
    """A running server and what the tests need to know about it."""

    server: LocalApache
    workdir: Path
    root: Path
    db: Path
    sessions: Path
    mpm: str
    secrets: Path
    ipv6_port: int
    cache: Path
    mode: str = "one-phase"
    #: The second root and its ACL store (``/other``).
    other_root: Path = Path()
    other_db: Path = Path()
    cookies: dict[str, str] = field(default_factory=dict)

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        cookie: str | None = None,
        headers: dict[str, str] | None = None,
        source: str | None = None,
        host: str = "127.0.0.1",
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request; returns (status, lower-cased headers, body).

        *source* binds the client's address (e.g. 127.0.0.2); *host* ``::1`` talks to the
        server's IPv6 listener.
        """
        sent = dict(headers or {})
        sent.setdefault("Accept", "image/avif,image/webp,*/*")
        if cookie is not None:
            sent["Cookie"] = cookie
        port = self.ipv6_port if host == "::1" else self.server.port
        return fetch(port, path, method=method, headers=sent, source=source, host=host)

    def login(self, user: str, groups: str = "", *, app: str = "/app", timeout: int = 0) -> str:
        """Log *user* in through the application; returns the ``Cookie`` header value."""
        query = f"user={user}"
        if groups:
            query += f"&groups={groups}"
        if timeout:
            query += f"&timeout={timeout}"
        return login_cookie(self.request, f"{app}/login?{query}")

    def cookie_for(self, user: str, groups: str = "") -> str:
        """A logged-in cookie for *user*, made once per server."""
        key = f"{user}|{groups}"
        if key not in self.cookies:
            self.cookies[key] = self.login(user, groups)
        return self.cookies[key]

    def error_log(self) -> str:
        return self.server.error_log_text()

    def log_lines_since(self, mark: int, needle: str = "imageguard:") -> list[str]:
        """The error log lines holding *needle* written after *mark* (``len(error_log())``)."""
        return [ln for ln in self.error_log()[mark:].splitlines() if needle in ln]


def build_site(
    mpm: str,
    mode: str = "one-phase",
    *,
    extra_body: Callable[[Path], str] | None = None,
    **server_settings: object,
) -> Iterator[Site]:
    """Build the site with imageguard configured in *mode* ("one-phase": the gatekeeper,
    "three-phase": the three handlers), start Apache with *server_settings*
    (ApacheConfig fields), yield it.

    *extra_body*, given the work directory, returns more server configuration (it may
    create the files that configuration names, readable by Apache's user).
    """
    tree = make_tree(f"imageguard-it-{mpm}-")
    workdir, root, state, sessions, db = tree.workdir, tree.root, tree.state, tree.sessions, tree.db
    ht = workdir / "ht"
    ht.mkdir()
    Image.new("RGB", (8, 8), "blue").save(ht / "a.jpg", "JPEG")
    (ht / "a.txt").write_text("text\n")
    (ht / ".htaccess").write_text(htaccess(root=str(ht)))
    ht_any = workdir / "ht-any"
    shutil.copytree(ht, ht_any)
    (ht_any / ".htaccess").write_text(htaccess(root=str(ht_any)))
    # One <Directory> per application path: options of two blocks naming the same
    # directory would merge, so each application reaches apps/ through its own link.
    (workdir / "dbapp").symlink_to(APPS)
    docroot = workdir / "docroot"
    docroot.mkdir()
    prepare_readable(workdir)
    # A file Apache's user may not read (an upload moved into place from mkstemp, 0600).
    Image.new("RGB", (8, 8), "black").save(root / "private" / "locked.jpg", "JPEG")
    (root / "private" / "locked.jpg").chmod(0o600)
    secrets = state / "secrets"
    secrets.write_text(SECRET + "\n")
    cache = state / "cache"
    cache.mkdir()
    other_root = workdir / "images2"
    (other_root / "private").mkdir(parents=True)
    shutil.copy(root / "private" / "secret.jpg", other_root / "private" / "secret.jpg")
    other_db = state / "other-acl.db"
    cli(other_db, "init")
    prepare_readable(other_root)
    prepare_writable(state)
    secrets.chmod(0o640)

    images = SiteConfig(
        mode=mode,
        root=str(root),
        url_path="/images",
        acl_db=str(db),
        session_type="FileSession",
        session_directory=str(sessions),
        login_url="/app/login",
        tkt_secret_file=str(secrets),  # for share links
        cache_dir=str(cache),
    )
    (workdir / "strict").symlink_to(root)
    (workdir / "unguarded").symlink_to(root)
    strict = SiteConfig(
        mode=mode,
        root=str(workdir / "strict"),
        url_path="/strict",
        acl_db=str(db),
        session_type="FileSession",
        session_directory=str(sessions),
        cache_dir=str(cache),
        watermark="{user} {date}",
        downgrade=False,
        placeholder=True,
    )
    # Two <Directory> blocks naming one directory would merge their options, so the
    # other sites reach their trees through symbolic links (imageguard.root resolves them).
    (workdir / "dbimages").symlink_to(root)
    (workdir / "broken").symlink_to(ht)
    (workdir / "tktimages").symlink_to(root)
    (workdir / "tktbound").symlink_to(root)
    dbm_file = state / "dbm-sessions"
    dbimages = SiteConfig(
        mode=mode,
        root=str(workdir / "dbimages"),
        url_path="/dbimages",
        acl_db=str(db),
        session_type="DbmSession",
        dbm_filename=str(dbm_file),
        deny_status=404,
        max_age=60,
        login_url="/dbapp/login",
    )
    (workdir / "unverified").symlink_to(root)
    unverified = SiteConfig(
        mode=mode,
        root=str(workdir / "unverified"),
        url_path="/unverified",
        acl_db=str(db),
        session_type="FileSession",
        session_directory=str(sessions),
        verify_content=False,
    )
    other = SiteConfig(
        mode=mode,
        root=str(other_root),
        url_path="/other",
        acl_db=str(other_db),
        session_type="FileSession",
        session_directory=str(sessions),
        tkt_secret_file=str(secrets),  # the same secret file as /images
    )
    tickets = SiteConfig(
        mode=mode,
        root=str(workdir / "tktimages"),
        url_path="/tktimages",
        acl_db=str(db),
        session_source="auth_tkt",
        tkt_secret_file=str(secrets),
        login_url="/login",
        cache_dir=str(cache),
    )
    bound = SiteConfig(
        mode=mode,
        root=str(workdir / "tktbound"),
        url_path="/tktbound",
        acl_db=str(db),
        session_source="auth_tkt",
        tkt_secret_file=str(secrets),
        tkt_digest="sha512",
        tkt_timeout="10m",
        tkt_bind_ip=True,
    )
    broken = SiteConfig(
        mode=mode,
        root=str(workdir / "broken"),
        url_path="/broken",
        acl_db=str(state / "missing.db"),
    )
    ipv6_port = free_port()
    file_app = app_block(
        "/app",
        workdir / "app",
        "PythonOption mod_python.session.session_type FileSession",
        f"PythonOption mod_python.file_session.database_directory {sessions}",
    )
    dbm_app = app_block(
        "/dbapp",
        workdir / "dbapp",
        "PythonOption mod_python.session.session_type DbmSession",
        f"PythonOption mod_python.dbm_session.database_filename {dbm_file}",
    )
    body = f"""
# Debian's stock global configuration: types, handlers, filters, languages by extension.
Include /etc/apache2/mods-available/mime.conf
Include /etc/apache2/mods-available/negotiation.conf
# A parent directory as careless as they come. A Satisfy Any (Apache 2.2 habits,
# mod_access_compat), every option, a CGI handler and a script engine by extension,
# and a script engine by <FilesMatch>: the blocks imageguard writes must hold anyway.
<Directory {workdir}>
    Satisfy Any
    Options +Includes +ExecCGI +MultiViews +Indexes
    AddHandler cgi-script .cgi
    AddHandler mod_python .php
    PythonHandler mod_python.testhandler
</Directory>
<FilesMatch "[.]phtml[.]">
    SetHandler mod_python
    PythonHandler mod_python.testhandler
</FilesMatch>
DocumentRoot {docroot}
<Directory {docroot}>
    Require all granted
</Directory>
{directory_block(images)}
{directory_block(dbimages)}
{directory_block(broken)}
{directory_block(strict)}
{directory_block(tickets)}
{directory_block(bound)}
{directory_block(unverified)}
{directory_block(other)}
# The gatekeeper's safety net alone: if its handler is missing, Apache refuses.
Alias /unguarded {workdir / "unguarded"}
<Directory {workdir / "unguarded"}>
    Satisfy All
    Require env IMAGEGUARD_ADMITTED
</Directory>
Listen [::1]:{ipv6_port}
Alias /ht {ht}
<Directory {ht}>
    Satisfy All
    Require all granted
    AllowOverride All
</Directory>
# Under Satisfy Any, Apache ignores the access handler's refusal when a Require passes;
# the fixup the handler scheduled refuses the request again.
Alias /ht-any {ht_any}
<Directory {ht_any}>
    Require all granted
    AllowOverride All
</Directory>
{file_app}
{dbm_app}
{extra_body(workdir) if extra_body else ""}
"""
    server = LocalApache(
        ApacheConfig(
            workdir=workdir / "apache",
            body=body,
            mpm=mpm,
            extra_modules=("access_compat", "negotiation", "include", "cgi"),
            python_debug=True,
            **server_settings,
        )  # type: ignore[arg-type]
    )
    try:
        with server:
            yield Site(
                server,
                workdir,
                root,
                db,
                sessions,
                mpm,
                secrets,
                ipv6_port,
                cache,
                mode,
                other_root,
                other_db,
            )
    finally:
        if not os.environ.get("IMAGEGUARD_KEEP_WORKDIR"):
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module", params=SITE_PARAMS, ids=SITE_IDS)
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    yield from build_site(*request.param)


# --------------------------------------------------------------------------- PostgreSQL

PG_ROLE = "imageguard"
PG_PASSWORD = "imageguard-test-password"


@dataclass
class PgServer:
    """A private PostgreSQL (LocalPostgres) with a role for imageguard whose password is
    in a passfile Apache's user can read (libpq ignores one others can read)."""

    server: LocalPostgres
    passfile: Path
    databases: int = 0

    def new_store(self) -> str:
        """The location of a new, empty database owned by imageguard's role."""
        self.databases += 1
        name = f"acl_{os.getpid()}_{self.databases}"
        self.server.create_database(name, PG_ROLE)
        return self.server.dsn(PG_ROLE, name, passfile=str(self.passfile))


@contextlib.contextmanager
def private_postgres() -> Iterator[PgServer]:
    """A started LocalPostgres with imageguard's role and its passfile; removed after."""
    server = LocalPostgres()
    try:
        server.start()
        server.create_role(PG_ROLE, PG_PASSWORD)
        user, group = run_user()
        owner = (pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)
        passfile = server.write_passfile(
            server.workdir / "imageguard.pgpass", PG_ROLE, PG_PASSWORD, owner=owner
        )
        server.workdir.chmod(0o755)  # made so; Apache's user must reach the passfile
        yield PgServer(server, passfile)
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    """One PostgreSQL for the session (skipped, saying why, where none can run)."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no PostgreSQL here: {reason}")
    with private_postgres() as server:
        yield server
