"""The servers the benchmark measures: three Apache instances on 127.0.0.1, one file tree.

* ``mp``: Apache with mod_python: the floor handler, imageguard with mod_python sessions
  and with auth_tkt tickets, the naive gatekeeper, stream-through (``req.write`` and
  ``req.sendfile``), and the login application that makes the sessions;
* ``plain``: Apache with neither mod_python nor mod_wsgi: static files, and Apache's C
  ticket module mod_auth_tkt;
* ``wsgi``: Apache with mod_wsgi (which embeds Python too, so not beside mod_python) and
  mod_xsendfile: the X-Sendfile application.

Every variant serves the same files (``tree/bench/img-*.jpg``), from a directory of
its own holding hard links to them, because two ``<Directory>`` blocks naming one
directory would merge their options.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from imageguard.apache.apacheconf import (
    SiteConfig,
    directory_block,
    python_path,
    python_path_directive,
)
from imageguard.store import AclStore
from imageguard_devtools.localserver import (
    MODULES_DIR,
    ApacheConfig,
    LocalApache,
    make_workdir,
    prepare_site,
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


VARIANTS: tuple[Variant, ...] = (
    Variant("static", "plain", "/static", "", "Apache alone, no handler"),
    Variant("floor", "mp", "/floor", "", "one trivial mod_python access handler"),
    Variant("imageguard", "mp", "/ig", "session", "one phase (gatekeeper), FileSession, ACL"),
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


def available_variants() -> tuple[Variant, ...]:
    """The variants whose server has every module it needs."""
    return tuple(v for v in VARIANTS if not missing_modules(v.server))


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


def make_store(db: Path, rules: int) -> None:
    """The ACL store: *rules* rules for other files, and the few that decide the bench's."""
    lines = [
        "rule bench/ authenticated full",
        "rule bench/img-4m.jpg group:archive deny",
        "rule 'bench/*.jpg' group:editors full",
    ]
    lines += [f"rule albums/a{i // 100}/p{i}.jpg user:u{i % 1000} full" for i in range(rules - 3)]
    lines += [f"member group{i % 50} u{i}" for i in range(1000)]
    with AclStore.create(db) as store:
        store.import_text("\n".join(lines) + "\n", replace=True)


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

    def url(self, variant: Variant, size: str) -> str:
        server = self.servers[variant.server]
        return server.url(f"{variant.prefix}/bench/img-{size}.jpg")


def session_site(links: Path, name: str, db: Path, sessions: Path, **more: str) -> SiteConfig:
    """imageguard on the directory *name*, served at ``/name``, with the FileSessions."""
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


@contextmanager
def running_bench(
    mpm: str = "event",
    rules: int = 100_000,
    sizes: dict[str, int] = SIZES,
    cpus: str | None = None,
    keep: bool = False,
) -> Iterator[Bench]:
    """Build the tree, the store and the servers (those whose modules are installed);
    yield them running."""
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
        secrets = prepare_site([workdir, APPS], state, SECRET)
        # prefork: as many children from the start as wrk has connections, so no child is
        # born (and imports Python packages) while a run is being measured.
        start = 2 if mpm == "event" else 16
        common = {"mpm": mpm, "cpus": cpus, "max_processes": 4, "start_servers": start}
        configs = {
            "mp": ApacheConfig(
                workdir=workdir / "apache-mp",
                body=_mp_body(links, tree, db, sessions, secrets),
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
            yield Bench(workdir, servers, tree, db, sessions, secrets, files)
    finally:
        if not keep and not os.environ.get("IMAGEGUARD_KEEP_WORKDIR"):
            shutil.rmtree(workdir, ignore_errors=True)
