"""The servers the benchmark measures: three Apache instances on 127.0.0.1, one file tree.

* ``mp``: Apache with mod_python: the floor handler, imageguard with mod_python sessions
  and with auth_tkt tickets, the naive gatekeeper, stream-through (``req.write`` and
  ``req.sendfile``), and the login application that makes the sessions;
* ``plain``: Apache with neither mod_python nor mod_wsgi: static files, and Apache's C
  ticket module mod_auth_tkt;
* ``wsgi``: Apache with mod_wsgi (which embeds Python too, so not beside mod_python) and
  mod_xsendfile: the X-Sendfile application.

The ACL store is an SQLite file, and for the ``imageguard-pg`` variant also a database
of a private PostgreSQL (:func:`running_postgres`, which ``run.py`` starts when that
variant is measured) holding the same rules.

Every variant serves the same files (``tree/bench/img-*.jpg``), from a directory of
its own holding hard links to them, because two ``<Directory>`` blocks naming one
directory would merge their options.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from secrets import token_urlsafe

from PIL import Image

from imageguard.apache.apacheconf import (
    SiteConfig,
    directory_block,
    python_path,
    python_path_directive,
)
from imageguard.store import AclStore
from imageguard_devtools import localpg
from imageguard_devtools.localserver import (
    MODULES_DIR,
    ApacheConfig,
    LocalApache,
    make_workdir,
    prepare_site,
    run_user,
)

APPS = Path(__file__).resolve().parent / "apps"
SECRET = "benchmark-ticket-secret-0123456789"
LOGIN_URL = "http://login.invalid/login"

#: One directory per <Directory> block (options of blocks naming one directory would
#: merge), each a real directory whose files are hard links to the tree's: the same
#: bytes, one page cache, and a real root as a site would configure it.
LINKS = (
    "static",
    "floor",
    "ig",
    "igpg",
    "ig3",
    "igtkt",
    "naive",
    "stream",
    "streamsf",
    "xsf",
    "tkt",
    "app",
)
#: size name -> bytes aimed at
SIZES = {"8k": 8 * 1024, "200k": 200 * 1024, "4m": 4 * 1024 * 1024}


@dataclass(frozen=True)
class Variant:
    """One way of serving the files, and where its requests go."""

    name: str
    server: str  # "mp", "plain" or "wsgi"
    prefix: str  # URL path prefix
    login: str  # "session", "ticket" or "" (none)
    what: str
    store: str = "sqlite"  # the ACL store of the imageguard variants: "sqlite" or "postgresql"


VARIANTS: tuple[Variant, ...] = (
    Variant("static", "plain", "/static", "", "Apache alone, no handler"),
    Variant("floor", "mp", "/floor", "", "one trivial mod_python access handler"),
    Variant("imageguard", "mp", "/ig", "session", "one phase (gatekeeper), FileSession, ACL"),
    Variant(
        "imageguard-pg",
        "mp",
        "/igpg",
        "session",
        "the same, the ACL store in PostgreSQL",
        store="postgresql",
    ),
    Variant("imageguard-3", "mp", "/ig3", "session", "three phases (access+authen+authz)"),
    Variant("imageguard-tkt", "mp", "/igtkt", "ticket", "one phase, auth_tkt tickets"),
    Variant("naive", "mp", "/naive", "session", "Session.Session(req) + SQL per request"),
    Variant("stream", "mp", "/stream", "session", "content handler, read + req.write"),
    Variant("stream-sendfile", "mp", "/streamsf", "session", "content handler, req.sendfile"),
    Variant("xsendfile", "wsgi", "/xsf", "session", "mod_wsgi app + X-Sendfile"),
    Variant("mod_auth_tkt", "plain", "/tkt", "ticket", "Apache's C ticket module, no ACL"),
)

#: The modules each server loads beyond Apache's own (``mod_<name>.so``). make test
#: installs those of "mp" and "plain"; make bench also those of "wsgi".
SERVER_MODULES = {"mp": ("python",), "plain": ("auth_tkt",), "wsgi": ("wsgi", "xsendfile")}


def missing_modules(server: str) -> list[str]:
    """The modules *server* needs that are not installed."""
    return [
        name for name in SERVER_MODULES[server] if not (MODULES_DIR / f"mod_{name}.so").exists()
    ]


def postgres_unavailable() -> str | None:
    """None when the benchmark can run its own PostgreSQL and reach it; else why not."""
    reason = localpg.unavailable_reason()
    if reason is not None:
        return reason
    try:
        import psycopg  # noqa: F401 - imageguard's PostgreSQL store needs it (and libpq)
    except ImportError as exc:
        return f"psycopg cannot be imported (pip install 'imageguard[postgresql]'): {exc}"
    return None


def available_variants() -> tuple[Variant, ...]:
    """The variants whose server has every module it needs and whose store can run."""
    return tuple(
        v
        for v in VARIANTS
        if not missing_modules(v.server)
        and not (v.store == "postgresql" and postgres_unavailable())
    )


def make_files(directory: Path, sizes: dict[str, int]) -> dict[str, int]:
    """A real JPEG close to each size (content verification reads them); name -> bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, target in sizes.items():
        side = 16
        while True:  # noise compresses badly: about 2.4 bytes a pixel at quality 90
            image = Image.effect_noise((side, side), 64).convert("RGB")
            path = directory / f"img-{name}.jpg"
            image.save(path, "JPEG", quality=90)
            size = path.stat().st_size
            if size >= target * 0.97:
                break
            side = max(side + 1, int(side * min(1.5, (target / size) ** 0.5)))
        made[name] = size
    return made


def store_lines(rules: int) -> list[str]:
    """The store's export text, a line each: *rules* rules for other files, the few that
    decide the bench's, and 1,000 group memberships."""
    lines = [
        "rule bench/ authenticated full",
        "rule bench/img-4m.jpg group:archive deny",
        "rule 'bench/*.jpg' group:editors full",
    ]
    lines += [f"rule albums/a{i // 100}/p{i}.jpg user:u{i % 1000} full" for i in range(rules - 3)]
    lines += [f"member group{i % 50} u{i}" for i in range(1000)]
    return lines


def make_store(location: Path | str, rules: int) -> None:
    """The ACL store at *location*, an SQLite file's Path or a PostgreSQL database's DSN:
    the rules and memberships of :func:`store_lines`, in one import, as a site would."""
    with AclStore.create(location) as store:
        store.import_text("\n".join(store_lines(rules)) + "\n", replace=True)


@dataclass
class Bench:
    """The running servers and what the variants need to reach them."""

    workdir: Path
    servers: dict[str, LocalApache]
    tree: Path
    db: Path
    sessions: Path
    secrets: Path
    files: dict[str, int]
    pg_dsn: str | None = None  # the PostgreSQL store of imageguard-pg, when it is served

    def url(self, variant: Variant, size: str) -> str:
        server = self.servers[variant.server]
        return server.url(f"{variant.prefix}/bench/img-{size}.jpg")


def session_site(links: Path, name: str, db: Path | str, sessions: Path, **more: str) -> SiteConfig:
    """imageguard on the directory *name*, served at ``/name``, with the FileSessions and
    the ACL store *db* (an SQLite file, or a PostgreSQL database's DSN)."""
    return SiteConfig(
        root=str(links / name),
        url_path=f"/{name}",
        acl_db=str(db),
        session_type="FileSession",
        session_directory=str(sessions),
        **more,  # type: ignore[arg-type]
    )


def _mp_body(links: Path, tree: Path, db: Path, sessions: Path, secrets: Path) -> str:
    session_options = (
        "PythonOption mod_python.session.session_type FileSession\n"
        f"    PythonOption mod_python.file_session.database_directory {sessions}"
    )
    imageguard_options = f"PythonOption imageguard.acl_db {db}\n    {session_options}"
    apps_path = python_path_directive([str(APPS)])
    imageguard = session_site(links, "ig", db, sessions)
    three_phases = session_site(links, "ig3", db, sessions, mode="three-phase")
    tickets = SiteConfig(
        root=str(links / "igtkt"),
        url_path="/igtkt",
        acl_db=str(db),
        session_source="auth_tkt",
        tkt_secret_file=str(secrets),
    )

    def content(url: str, name: str, handler: str) -> str:
        return f"""
Alias {url} {links / name}
<Directory {links / name}>
    Require all granted
    {apps_path}
    SetHandler mod_python
    PythonHandler {handler}
    PythonOption imageguard.root {links / name}
    {imageguard_options}
</Directory>"""

    return f"""
EnableSendfile On
Alias /floor {links / "floor"}
<Directory {links / "floor"}>
    Require all granted
    {apps_path}
    PythonAccessHandler floor
</Directory>
{directory_block(imageguard)}
{directory_block(three_phases)}
{directory_block(tickets)}
Alias /naive {links / "naive"}
<Directory {links / "naive"}>
    {apps_path}
    PythonAuthenHandler naive
    PythonAuthzHandler naive
    AuthType naive
    AuthName "bench"
    Require valid-user
    PythonOption bench.root {links / "naive"}
    PythonOption bench.acl_db {db}
    {session_options}
</Directory>
{content("/stream", "stream", "stream")}
{content("/streamsf", "streamsf", "stream::sendfile_handler")}
Alias /app {links / "app"}
<Directory {links / "app"}>
    Require all granted
    {apps_path}
    SetHandler mod_python
    PythonHandler login
    PythonOption mod_python.session.application_path /
    {session_options}
</Directory>
"""


def _pg_body(links: Path, dsn: str, sessions: Path) -> str:
    """The imageguard-pg block: imageguard's, with the store in PostgreSQL. Its handler
    runs in the same interpreter (and so the same processes) as imageguard's, as a site
    moving its store would have it: each Apache child then keeps a listener thread on
    PostgreSQL (woken ten times a second) also while the SQLite variant is measured."""
    return directory_block(session_site(links, "igpg", dsn, sessions))


def _plain_body(links: Path) -> str:
    return f"""
EnableSendfile On
TKTAuthSecret "{SECRET}"
TKTAuthDigestType SHA256
Alias /static {links / "static"}
<Directory {links / "static"}>
    Require all granted
</Directory>
Alias /tkt {links / "tkt"}
<Directory {links / "tkt"}>
    AuthType None
    AuthName "bench"
    TKTAuthLoginURL {LOGIN_URL}
    TKTAuthTimeout 2h
    TKTAuthTimeoutRefresh 0
    TKTAuthIgnoreIP on
    Require valid-user
</Directory>
"""


def _wsgi_body(links: Path, tree: Path, db: Path, sessions: Path) -> str:
    paths = ":".join(python_path())
    return f"""
EnableSendfile On
WSGIPythonPath "{paths}"
WSGIApplicationGroup %{{GLOBAL}}
WSGIScriptAlias /xsf {APPS / "xsendfile_app.py"}
<Directory {APPS}>
    Require all granted
</Directory>
<Location /xsf>
    SetEnv imageguard.root {links / "xsf"}
    SetEnv imageguard.acl_db {db}
    SetEnv mod_python.session.session_type FileSession
    SetEnv mod_python.file_session.database_directory {sessions}
    XSendFile On
</Location>
XSendFilePath {links / "xsf"}
"""


def _hard_link_tree(source: Path, target: Path) -> None:
    """*target*: the directories of *source*, its files hard links to *source*'s."""
    for directory, _dirnames, filenames in os.walk(source):
        here = target / Path(directory).relative_to(source)
        here.mkdir(parents=True, exist_ok=True)
        for name in filenames:
            os.link(Path(directory) / name, here / name)


PG_ROLE = "imageguard"
PG_DATABASE = "acl"


def pin(pids: list[int], cpus: str) -> None:
    """Keep the processes *pids* on *cpus* (``taskset -c`` syntax: "1", "0,1" or "2-3");
    the processes they fork later inherit it."""
    chosen: set[int] = set()
    for part in cpus.split(","):
        first, _, last = part.partition("-")
        chosen.update(range(int(first), int(last or first) + 1))
    for pid in pids:
        try:
            os.sched_setaffinity(pid, chosen)
        except ProcessLookupError:  # a backend that ended meanwhile
            continue


@contextmanager
def running_postgres(cpus: str | None = None) -> Iterator[str]:
    """A private PostgreSQL (:class:`~imageguard_devtools.localpg.LocalPostgres`) with an
    empty database owned by a role for imageguard, whose password is in a password file
    Apache's user owns (libpq ignores one others may read); yields the database's DSN.
    With *cpus*, the server's processes, and the backends it forks later, run only
    there. Stopped, and its directory removed, when the block ends, also on failure."""
    password = token_urlsafe(18)
    with localpg.LocalPostgres() as server:
        if cpus:
            pin(server.server_pids(), cpus)
        server.create_role(PG_ROLE, password)
        server.create_database(PG_DATABASE, PG_ROLE)
        user, group = run_user()
        owner = (pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)
        passfile = server.write_passfile(
            server.workdir / "imageguard.pgpass", PG_ROLE, password, owner=owner
        )
        server.workdir.chmod(0o755)  # Apache's user must reach the password file
        yield server.dsn(PG_ROLE, PG_DATABASE, passfile=str(passfile))


@contextmanager
def running_bench(
    mpm: str = "event",
    rules: int = 100_000,
    sizes: dict[str, int] = SIZES,
    cpus: str | None = None,
    keep: bool = False,
    pg_dsn: str | None = None,
) -> Iterator[Bench]:
    """Build the tree, the store and the servers (those whose modules are installed);
    yield them running. With *pg_dsn* (an empty database, :func:`running_postgres`),
    the same rules go there too, and the mod_python server serves imageguard-pg."""
    workdir = make_workdir("imageguard-bench-")
    try:
        tree = workdir / "tree"
        files = make_files(tree / "bench", sizes)
        links = workdir / "v"
        links.mkdir()
        for name in LINKS:
            _hard_link_tree(tree, links / name)
        state = workdir / "state"
        sessions = state / "sessions"
        sessions.mkdir(parents=True)
        db = state / "acl.db"
        make_store(db, rules)
        if pg_dsn is not None:
            make_store(pg_dsn, rules)
        secrets = prepare_site([workdir, APPS], state, SECRET)
        mp_body = _mp_body(links, tree, db, sessions, secrets)
        if pg_dsn is not None:
            mp_body += _pg_body(links, pg_dsn, sessions)
        # prefork: as many children from the start as wrk has connections, so no child is
        # born (and imports Python packages) while a run is being measured.
        start = 2 if mpm == "event" else 16
        common = {"mpm": mpm, "cpus": cpus, "max_processes": 4, "start_servers": start}
        configs = {
            "mp": ApacheConfig(
                workdir=workdir / "apache-mp",
                body=mp_body,
                **common,  # type: ignore[arg-type]
            ),
            "plain": ApacheConfig(
                workdir=workdir / "apache-plain",
                body=_plain_body(links),
                python=False,
                extra_modules=("auth_tkt",),
                **common,  # type: ignore[arg-type]
            ),
            "wsgi": ApacheConfig(
                workdir=workdir / "apache-wsgi",
                body=_wsgi_body(links, tree, db, sessions),
                python=False,
                extra_modules=("env", "wsgi", "xsendfile"),
                **common,  # type: ignore[arg-type]
            ),
        }
        with ExitStack() as stack:
            servers = {
                name: stack.enter_context(LocalApache(config))
                for name, config in configs.items()
                if not missing_modules(name)
            }
            yield Bench(workdir, servers, tree, db, sessions, secrets, files, pg_dsn)
    finally:
        if not keep and not os.environ.get("IMAGEGUARD_KEEP_WORKDIR"):
            shutil.rmtree(workdir, ignore_errors=True)
