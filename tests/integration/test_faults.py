"""Faults injected while a real Apache + mod_python serves imageguard (issue 10, part 2).

Every fault is injected into a server that has already served a good request for the
directory it breaks (its caches are warm), and must give: a refusal that serves nothing
(never a 200 with a protected file, never a traceback in the body, even with
``PythonDebug On``), exactly one ``imageguard:`` line in the error log naming the problem,
an answer within a bounded time, and, once the fault is removed, the right answer at
the next request, without restarting Apache.

Each fault has its own ``<Directory>`` (its own root, ACL store, secret file, rendition
cache, and where it matters its own session directory and application), so faults do not
disturb each other. The server logs at ``info``, so that the refusals of viewers who only
need to log in (written at that level by design) are counted as well. One more server
block per bad ``PythonOption`` value.

Run under both MPMs and both configurations (one-phase gatekeeper, three phases).
"""

from __future__ import annotations

import concurrent.futures
import errno
import grp
import io
import os
import pwd
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from imageguard.apache.apacheconf import SiteConfig, directory_block
from imageguard.apache.settings import OPTIONS
from imageguard.identity import sharelinks
from imageguard.identity.tickets import issue_ticket
from imageguard.store import BUSY_TIMEOUT_S, SAFETY_CHECK_S, SCHEMA_VERSION, AclStore
from imageguard_devtools.localserver import (
    ApacheConfig,
    LocalApache,
    make_workdir,
    prepare_readable,
    prepare_writable,
    run_user,
)

from .conftest import APPS, SECRET, SITE_IDS, SITE_PARAMS, app_block, login_cookie
from .httpfetch import Response, fetch

pytestmark = pytest.mark.apache

RULES = """
rule gallery/ authenticated full
rule thumbs/ authenticated thumb
rule public.jpg anyone full
"""
#: How long the lock fault's writer holds its transaction.
LOCK_HOLD_S = 10.0
JPEG_MAGIC = b"\xff\xd8"
PNG_MAGIC = b"\x89PNG"

#: The faults with a directory of their own, and which of them read their own sessions.
FAULTS = (
    "acl-missing",
    "acl-unreadable",
    "acl-corrupt",
    "acl-schema",
    "acl-locked",
    "acl-locked-journal",
    "session-unreadable",
    "session-truncated",
    "secret-missing",
    "secret-empty",
    "secret-public",
    "cache-full",
    "cache-readonly",
    "cache-deleted",
    "pillow",
)
OWN_SESSIONS = ("session-unreadable", "session-truncated")
TICKETS = ("secret-missing", "secret-empty", "secret-public")
TMPFS = {"cache-full": "64k", "cache-readonly": "1m"}


# ----------------------------------------------------------------------------- the site


@dataclass
class Fault:
    """One protected directory and everything of its own that a fault can break."""

    name: str
    root: Path
    db: Path
    sessions: Path
    app: str
    secrets: Path
    cache: Path

    @property
    def url(self) -> str:
        return f"/f/{self.name}"

    def original(self, relpath: str) -> bytes:
        return (self.root / relpath).read_bytes()


@dataclass(frozen=True)
class BadOption:
    """A ``PythonOption`` with a value imageguard must refuse, and what the log says."""

    option: str
    value: str
    #: What the one log line must hold besides the option's name (the value, usually).
    said: str
    #: The block takes logins from auth_tkt tickets (the request carries one).
    tickets: bool = False
    #: How the log line names the option, when not by its name.
    named_as: str = ""

    @property
    def id(self) -> str:
        return f"{self.option.rsplit('.', 1)[-1]}={self.value}"


@dataclass
class FaultSite:
    server: LocalApache
    workdir: Path
    mpm: str
    mode: str
    faults: dict[str, Fault]
    bad_options: dict[BadOption, str]
    cookies: dict[str, str] = field(default_factory=dict)

    def request(self, path: str, *, cookie: str | None = None) -> Response:
        headers = {"Accept": "image/avif,image/webp,*/*"}
        if cookie is not None:
            headers["Cookie"] = cookie
        return fetch(self.server.port, path, headers=headers)

    def login(self, app: str, user: str) -> str:
        """Log *user* in through the application at *app*; the Cookie header value."""
        return login_cookie(self.request, f"{app}/login?user={user}")

    def cookie(self, fault: Fault, user: str = "alice") -> str:
        """A login for *user* in the sessions *fault* reads, made once per server."""
        key = f"{fault.app}|{user}"
        if key not in self.cookies:
            self.cookies[key] = self.login(fault.app, user)
        return self.cookies[key]

    def error_log(self) -> str:
        return self.server.error_log_text()


def make_tree(root: Path) -> None:
    """The images of one fault's root (small, so that renditions cost little)."""
    for rel, colour, size in (
        ("gallery/cat.jpg", "orange", (64, 48)),
        ("gallery/dog.jpg", "brown", (64, 48)),
        ("public.jpg", "green", (64, 48)),
        ("thumbs/a.jpg", "red", (600, 400)),
        ("thumbs/b.jpg", "blue", (600, 400)),
        ("thumbs/c.jpg", "yellow", (600, 400)),
    ):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.linear_gradient("L").resize(size).convert("RGB")
        Image.blend(image, Image.new("RGB", size, colour), 0.5).save(path, "JPEG")
    for rel, colour in (("thumbs/p.png", "purple"), ("thumbs/q.png", "pink")):
        Image.new("RGB", (300, 200), colour).save(root / rel, "PNG")


def make_store(path: Path) -> None:
    with AclStore.create(path) as store:
        store.import_text(RULES)


def run_ids() -> tuple[int, int]:
    """The uid and gid of Apache's children."""
    user, group = run_user()
    return pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid


def store_side_files_to_apache(db: Path) -> None:
    """After root wrote the store: SQLite's side files it created go to Apache's user
    (as imageguard's own writers do); the store file itself is left as it is."""
    uid, gid = run_ids()
    for each in db.parent.glob(db.name + "-*"):
        if each.stat().st_uid != uid:
            os.chown(each, uid, gid)


def mount_tmpfs(directory: Path, size: str) -> None:
    uid, gid = run_ids()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755,uid={uid},gid={gid}",
         "tmpfs", str(directory)],
        check=True,
    )  # fmt: skip


def unmount(directory: Path) -> None:
    if subprocess.run(["umount", str(directory)], check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(directory)], check=False)


#: Every option imageguard reads, each with a value it must refuse. The log line must
#: name the option and hold ``said``.
BAD_OPTIONS = [
    BadOption("imageguard.root", "/nonexistent/images", "'/nonexistent/images'"),
    BadOption("imageguard.extensions", ".txt", ".txt"),
    BadOption("imageguard.acl_db", "/nonexistent/acl.db", "does not exist", named_as="ACL store"),
    # A PostgreSQL location holding its password: refused, and the password not logged.
    BadOption("imageguard.acl_db", "postgresql://ig:pw@db.invalid/ig", "password file"),
    BadOption("imageguard.stale_ok", "perhaps", "'perhaps'"),
    BadOption("imageguard.deny_status", "500", "500"),
    BadOption("imageguard.deny_status", "forbidden", "'forbidden'"),
    BadOption("imageguard.max_age", "1h", "'1h'"),
    BadOption("imageguard.max_age", "-5", "-5"),
    BadOption("imageguard.login_url", "javascript:alert(1)", "'javascript:alert(1)'"),
    BadOption("imageguard.user_key", " ", "empty"),
    BadOption("imageguard.groups_key", " ", "empty"),
    BadOption("imageguard.session", "ldap", "'ldap'"),
    BadOption("imageguard.tkt_cookie", "a;b", "'a;b'", tickets=True),
    BadOption(
        "imageguard.tkt_secret_file",
        "/nonexistent/secrets",
        "No such file",
        tickets=True,
        named_as="secret file /nonexistent/secrets",
    ),
    BadOption("imageguard.tkt_digest", "sha1", "'sha1'", tickets=True),
    BadOption("imageguard.tkt_timeout", "forever", "'forever'", tickets=True),
    BadOption("imageguard.tkt_timeout", "0", "0", tickets=True),
    BadOption("imageguard.tkt_allow_no_timeout", "maybe", "'maybe'", tickets=True),
    BadOption("imageguard.tkt_bind_ip", "maybe", "'maybe'", tickets=True),
    BadOption("imageguard.cache_dir", "/nonexistent/cache", "'/nonexistent/cache'"),
    BadOption("imageguard.thumb_size", "big", "'big'"),
    BadOption("imageguard.thumb_size", "5", "5"),
    BadOption("imageguard.preview_size", "huge", "'huge'"),
    BadOption("imageguard.preview_size", "99999", "99999"),
    BadOption("imageguard.watermark", "{secret}", "{secret}"),
    BadOption("imageguard.downgrade", "sometimes", "'sometimes'"),
    BadOption("imageguard.verify_content", "perhaps", "'perhaps'"),
    BadOption("imageguard.max_pixels", "lots", "'lots'"),
    BadOption("imageguard.max_pixels", "0", "0"),
    BadOption("imageguard.placeholder", "maybe", "'maybe'"),
    BadOption("imageguard.colour", "blue", "unknown option"),
    BadOption("mod_python.session.session_type", "MemorySession", "'MemorySession'"),
    BadOption("mod_python.session.cookie_name", "a;b", "'a;b'"),
    # A session directory Apache's user may not read ({workdir}: the site's work directory).
    BadOption(
        "mod_python.file_session.database_directory",
        "{workdir}/private",
        "Permission denied",
        named_as="cannot read the sessions in {workdir}/private/mp_sess",
    ),
]


def bad_option_line(bad: BadOption, workdir: Path) -> str:
    value = bad.value.replace("{workdir}", str(workdir))
    value = f'"{value}"' if not value.strip() or " " in value else value
    return f"PythonOption {bad.option} {value}"


def build_fault_site(mpm: str, mode: str) -> Iterator[FaultSite]:
    workdir = make_workdir(f"imageguard-faults-{mpm}-")
    mounted: list[Path] = []
    try:
        yield from _build(workdir, mpm, mode, mounted)
    finally:
        for directory in mounted:
            unmount(directory)
        if not os.environ.get("IMAGEGUARD_KEEP_WORKDIR"):
            shutil.rmtree(workdir, ignore_errors=True)


def _build(workdir: Path, mpm: str, mode: str, mounted: list[Path]) -> Iterator[FaultSite]:
    template = workdir / "template.db"
    make_store(template)
    shared_sessions = workdir / "sessions"
    shared_sessions.mkdir()
    caches = workdir / "caches"  # root's, as /var/cache is: Apache cannot recreate one
    caches.mkdir()
    apps_dir = workdir / "apps"
    apps_dir.mkdir()
    apps = {"/app": shared_sessions}
    faults: dict[str, Fault] = {}
    for name in FAULTS:
        root = workdir / "trees" / name
        make_tree(root)
        state = workdir / "state" / name
        state.mkdir(parents=True)
        db = state / "acl.db"
        shutil.copy(template, db)
        if name == "acl-locked-journal":
            with sqlite3.connect(db) as conn:
                conn.execute("PRAGMA journal_mode = DELETE")
        sessions, app = shared_sessions, "/app"
        if name in OWN_SESSIONS:
            sessions, app = state / "sessions", f"/app-{name}"
            sessions.mkdir()
            apps[app] = sessions
        secrets = state / "secrets"
        secrets.write_text(SECRET + "\n")
        cache = caches / name
        cache.mkdir()
        faults[name] = Fault(name, root, db, sessions, app, secrets, cache)
    # The bad options: one block each, over one tree reached through a link per block.
    opts_tree = workdir / "trees" / "options"
    make_tree(opts_tree)
    opts_state = workdir / "state" / "options"
    opts_state.mkdir()
    opts_db = opts_state / "acl.db"
    shutil.copy(template, opts_db)
    opts_secrets = opts_state / "secrets"
    opts_secrets.write_text(SECRET + "\n")
    opts_cache = caches / "options"
    opts_cache.mkdir()
    (workdir / "opts").mkdir()
    (workdir / "private" / "mp_sess").mkdir(parents=True)
    prepare_readable(workdir)
    for directory in [workdir / "state", shared_sessions, *(caches / n for n in FAULTS)]:
        prepare_writable(directory)
    prepare_writable(opts_cache)
    for secret_file in [*(f.secrets for f in faults.values()), opts_secrets]:
        secret_file.chmod(0o640)
    (workdir / "private").chmod(0o700)  # root's: Apache's user may not look inside
    for name, size in TMPFS.items():
        mount_tmpfs(faults[name].cache, size)
        mounted.append(faults[name].cache)

    blocks = []
    for fault in faults.values():
        (workdir / "links").mkdir(exist_ok=True)
        config = SiteConfig(
            mode=mode,
            root=str(fault.root),
            url_path=fault.url,
            acl_db=str(fault.db),
            session_source="auth_tkt" if fault.name in TICKETS else "modpython",
            session_type="FileSession",
            session_directory=str(fault.sessions),
            tkt_secret_file=str(fault.secrets),
            cache_dir=str(fault.cache),
        )
        blocks.append(directory_block(config))
    bad_options: dict[BadOption, str] = {}
    for number, bad in enumerate(BAD_OPTIONS):
        link = workdir / "opts" / f"o{number}"
        link.symlink_to(opts_tree)
        config = SiteConfig(
            mode=mode,
            root=str(link),
            url_path=f"/o{number}",
            acl_db=str(opts_db),
            session_source="auth_tkt" if bad.tickets else "modpython",
            session_type="FileSession",
            session_directory=str(shared_sessions),
            tkt_secret_file=str(opts_secrets),
            cache_dir=str(opts_cache),
        )
        block = directory_block(config)
        line = bad_option_line(bad, workdir)
        block = block.replace("</Directory>", f"    {line}\n</Directory>")
        blocks.append(block)
        bad_options[bad] = f"/o{number}"
    for url, sessions in apps.items():
        link = apps_dir / url.strip("/")
        link.symlink_to(APPS)
        blocks.append(
            app_block(
                url,
                link,
                "PythonOption mod_python.session.session_type FileSession",
                f"PythonOption mod_python.file_session.database_directory {sessions}",
            )
        )
    docroot = workdir / "docroot"
    docroot.mkdir()
    docroot_block = f"<Directory {docroot}>\n    Require all granted\n</Directory>"
    body = "\n".join([f"DocumentRoot {docroot}", docroot_block, *blocks])
    server = LocalApache(
        ApacheConfig(
            workdir=workdir / "apache",
            body=body,
            mpm=mpm,
            python_debug=True,
            log_level="info",
            # Prefork: idle children for the lock test's four clients, whose requests to
            # the rollback-journal store keep a child busy for seconds.
            start_servers=6 if mpm == "prefork" else 2,
        )
    )
    with server:
        yield FaultSite(server, workdir, mpm, mode, faults, bad_options)


@pytest.fixture(scope="module", params=SITE_PARAMS, ids=SITE_IDS)
def fsite(request: pytest.FixtureRequest) -> Iterator[FaultSite]:
    yield from build_fault_site(*request.param)


# ----------------------------------------------------------------------------- checks


def no_traceback(body: bytes) -> None:
    for needle in (b"Traceback", b'File "', b"mod_python"):
        assert needle not in body, body[:600]


def not_an_image(body: bytes) -> None:
    assert not body.startswith(JPEG_MAGIC) and not body.startswith(PNG_MAGIC), body[:40]


def lines_since(site: FaultSite, mark: int, needle: str = "imageguard:") -> list[str]:
    return [ln for ln in site.error_log()[mark:].splitlines() if needle in ln]


def one_line(site: FaultSite, mark: int) -> str:
    """The single imageguard line written since *mark* (the log phase may lag the
    response a little), and no traceback anywhere in the log since."""
    deadline = time.monotonic() + 2
    while not lines_since(site, mark) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.05)
    lines = lines_since(site, mark)
    assert len(lines) == 1, lines
    assert "Traceback" not in site.error_log()[mark:]
    return lines[0]


def refused(site: FaultSite, path: str, status: int, *, cookie: str | None = None) -> str:
    """Request *path*: refused with *status*, nothing served, one log line (returned)."""
    mark = len(site.error_log())
    got, headers, body = site.request(path, cookie=cookie)
    assert got == status, (path, got, body[:300])
    no_traceback(body)
    not_an_image(body)
    assert headers.get("cache-control") == "private, no-store", headers
    return one_line(site, mark)


def served(site: FaultSite, path: str, expected: bytes | None, *, cookie: str | None) -> bytes:
    """Request *path*: 200 with *expected* as the body (any image when None), no log line."""
    mark = len(site.error_log())
    got, headers, body = site.request(path, cookie=cookie)
    assert got == 200, (path, got, body[:300])
    if expected is not None:
        assert body == expected
    assert headers["content-type"].startswith("image/")
    time.sleep(0.05)
    assert lines_since(site, mark) == []
    return body


def thumb(site: FaultSite, path: str, *, cookie: str) -> None:
    """A thumb rendition is served for *path* (256 pixels at most on its long side)."""
    body = served(site, path, None, cookie=cookie)
    image = Image.open(io.BytesIO(body))
    assert max(image.size) <= 256


def report(site: FaultSite, fault: str, status: int, line: str, recovery: str) -> None:
    """One row of the fault table (shown with ``pytest -s``)."""
    message = re.sub(r"^.*?imageguard: ", "imageguard: ", line)
    print(f"\nFAULT [{site.mpm}-{site.mode}] {fault} | {status} | {message} | {recovery}")


def refused_after_safety_check(
    site: FaultSite, path: str, status: int, injected_at: float, *, cookie: str
) -> str:
    """Requests from the moment a fault was injected: a grant may still come from the
    cache of a process for at most ``SAFETY_CHECK_S`` (the store's documented safety
    check), never later; after that every request is refused. The refusal's line."""
    while True:
        sent = time.monotonic()
        got, _, body = site.request(path, cookie=cookie)
        if got != 200:
            break
        assert sent < injected_at + SAFETY_CHECK_S, "a grant served after the safety check"
        time.sleep(0.05)
    assert got == status, (got, body[:300])
    no_traceback(body)
    # Every process has made its safety check since the fault: all of them refuse.
    time.sleep(max(0.0, injected_at + SAFETY_CHECK_S + 0.05 - time.monotonic()))
    found = [refused(site, path, status, cookie=cookie) for _ in range(3)]
    return found[0]


# ----------------------------------------------------------------------------- the ACL


def set_schema_version(db: Path, version: int) -> None:
    """What a newer imageguard's upgrade does to the store (through SQLite, as root)."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute(f"PRAGMA user_version = {version}")
    finally:
        conn.close()
    store_side_files_to_apache(db)


def moved_away(path: Path) -> Callable[[], object]:
    """Move *path* aside (so it is missing); returns what puts it back."""
    away = path.with_name(path.name + ".moved-away")
    path.rename(away)
    return lambda: away.rename(path)


def break_acl_store(fault: Fault, how: str) -> Callable[[], object]:
    """Break the fault's ACL store *how*; returns what mends it."""
    db = fault.db
    if how == "missing":
        return moved_away(db)
    if how == "unreadable":
        mode = stat.S_IMODE(db.stat().st_mode)
        db.chmod(0)
        return lambda: db.chmod(mode)
    if how == "corrupt":
        good = db.read_bytes()
        with open(db, "r+b") as handle:  # in place: the same file, other bytes
            handle.write(b"this is no longer an SQLite database " * 100)

        def mend() -> None:
            with open(db, "r+b") as handle:
                handle.write(good)

        return mend
    assert how == "schema"
    set_schema_version(db, SCHEMA_VERSION + 1)
    return lambda: set_schema_version(db, SCHEMA_VERSION)


#: How the ACL store is broken: what its log line says ({db}: the store's path), and
#: the fault table's name for it.
ACL_STORE_FAULTS = {
    "missing": (["ACL store {db} does not exist"], "ACL store renamed away"),
    "unreadable": (["cannot open ACL store {db}"], "ACL store chmod 000"),
    "corrupt": (["{db}", "not a database"], "ACL store overwritten with garbage"),
    "schema": (
        [f"schema version {SCHEMA_VERSION + 1}, from a newer imageguard"],
        "ACL store of a newer schema",
    ),
}


@pytest.mark.parametrize("how", list(ACL_STORE_FAULTS))
def test_acl_store_broken(fsite: FaultSite, how: str) -> None:
    fault = fsite.faults[f"acl-{how}"]
    said, name = ACL_STORE_FAULTS[how]
    cookie = fsite.cookie(fault)
    path = f"{fault.url}/gallery/cat.jpg"
    served(fsite, path, fault.original("gallery/cat.jpg"), cookie=cookie)
    mend = break_acl_store(fault, how)
    try:
        line = refused_after_safety_check(fsite, path, 500, time.monotonic(), cookie=cookie)
        for part in said:
            assert part.format(db=fault.db) in line, line
    finally:
        mend()
    served(fsite, path, fault.original("gallery/cat.jpg"), cookie=cookie)
    report(fsite, name, 500, line, "200 at the next request")


#: A writer that takes the store's write lock and holds it: BEGIN EXCLUSIVE and a write,
#: neither committed nor rolled back for the time given.
HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
conn.execute("INSERT INTO memberships (user, grp) VALUES ('holder', 'lock')")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


@dataclass
class Timed:
    sent: float
    took: float
    status: int
    body: bytes


def hammer(site: FaultSite, path: str, cookie: str, until: float) -> list[Timed]:
    """Requests for *path*, one after the other, until the moment *until*."""
    answers = []
    while time.monotonic() < until:
        sent = time.monotonic()
        status, _, body = site.request(path, cookie=cookie)
        answers.append(Timed(sent, time.monotonic() - sent, status, body))
        time.sleep(0.1)
    return answers


def test_acl_store_locked_by_a_writer(fsite: FaultSite) -> None:
    """A writer holds the store's write lock (BEGIN EXCLUSIVE) for 10 s. The store as
    ``imageguard init`` makes it (WAL) never makes a reader wait: every request is
    answered at once, correctly. A store in rollback-journal mode (one restored from a
    copy made otherwise, say) does make readers wait: every request is answered within
    twice SQLite's busy timeout (its own wait, and at most one behind another request of
    its process), served from the still-valid cache or once the lock is gone, or refused
    with one line; never hanging, never a traceback. Run once per server, with three
    clients on the journal store and one on the WAL store at the same time."""
    wal, journal = fsite.faults["acl-locked"], fsite.faults["acl-locked-journal"]
    cookie = fsite.cookie(wal)
    path = "/gallery/cat.jpg"
    for fault in (wal, journal):
        served(fsite, fault.url + path, fault.original(path[1:]), cookie=cookie)
    mark = len(fsite.error_log())
    holders = [
        subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(fault.db), str(LOCK_HOLD_S)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for fault in (wal, journal)
    ]
    try:
        for holder in holders:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        locked_at = time.monotonic()
        until = locked_at + LOCK_HOLD_S - 0.5
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            on_wal = pool.submit(hammer, fsite, wal.url + path, cookie, until)
            on_journal = [
                pool.submit(hammer, fsite, journal.url + path, cookie, until) for _ in range(3)
            ]
            wal_answers = on_wal.result()
            journal_answers = [a for job in on_journal for a in job.result()]
        for holder in holders:
            assert holder.wait(timeout=LOCK_HOLD_S + 5) == 0
    finally:
        for holder in holders:
            if holder.poll() is None:
                holder.kill()
                holder.wait()
        for fault in (wal, journal):
            store_side_files_to_apache(fault.db)
    # WAL: the writer never blocks a reader.
    assert {a.status for a in wal_answers} == {200}
    assert all(a.body == wal.original(path[1:]) for a in wal_answers)
    # (Had the writer blocked them, they would have waited SQLite's busy timeout.)
    assert max(a.took for a in wal_answers) < BUSY_TIMEOUT_S / 2, [a.took for a in wal_answers]
    # Rollback journal: bounded waits, a grant only from the cache or once the lock went.
    slowest = max(a.took for a in journal_answers)
    print(
        f"\nLOCK [{fsite.mpm}-{fsite.mode}] journal: {len(journal_answers)} requests, "
        f"statuses {sorted({a.status for a in journal_answers})}, slowest {slowest:.1f} s"
    )
    assert slowest < 2 * BUSY_TIMEOUT_S + 2, [round(a.took, 1) for a in journal_answers]
    for answer in journal_answers:
        assert answer.status in (200, 500), answer
        no_traceback(answer.body)
        if answer.status == 200:
            assert answer.body == journal.original(path[1:])
    refusals = [a for a in journal_answers if a.status == 500]
    # The lock was felt: a request refused, or one kept waiting for it.
    assert refusals or slowest > 1.0, [round(a.took, 2) for a in journal_answers]
    deadline = time.monotonic() + 3  # the log phase may lag the response a little
    while len(lines_since(fsite, mark)) < len(refusals) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)
    lines = lines_since(fsite, mark)
    assert len(lines) == len(refusals), lines
    for line in lines:  # SQLite's busy timeout, or the process's other request's
        assert f"cannot read ACL store {journal.db}: " in line and f"{journal.url}{path}" in line
        assert "database is locked" in line or "busy, this request waited" in line, line
    assert "Traceback" not in fsite.error_log()[mark:]
    # Released: answered at once, correctly.
    for fault in (wal, journal):
        served(fsite, fault.url + path, fault.original(path[1:]), cookie=cookie)
    for kind in ("database is locked", "busy, this request waited"):
        for line in (line for line in lines if kind in line):
            report(fsite, "ACL store locked (rollback journal)", 500, line, "200 once released")
            break


# ----------------------------------------------------------------------------- sessions


def session_file(fault: Fault, cookie: str) -> Path:
    sid = cookie.split("=", 1)[1]
    return fault.sessions / "mp_sess" / sid[:2] / sid


def test_session_directory_unreadable(fsite: FaultSite) -> None:
    fault = fsite.faults["session-unreadable"]
    cookie = fsite.cookie(fault)
    path = f"{fault.url}/gallery/cat.jpg"
    served(fsite, path, fault.original("gallery/cat.jpg"), cookie=cookie)
    mode = stat.S_IMODE(fault.sessions.stat().st_mode)
    fault.sessions.chmod(0)
    try:
        line = refused(fsite, path, 500, cookie=cookie)
        assert f"cannot read the sessions in {fault.sessions}/mp_sess" in line
        assert "Permission denied" in line
        assert cookie.split("=", 1)[1] not in line  # a session id is a credential
        # What needs no session is not disturbed.
        served(fsite, f"{fault.url}/public.jpg", fault.original("public.jpg"), cookie=None)
    finally:
        fault.sessions.chmod(mode)
    served(fsite, path, fault.original("gallery/cat.jpg"), cookie=cookie)
    report(fsite, "session directory chmod 000", 500, line, "200 at the next request")


def test_session_file_truncated_mid_write(fsite: FaultSite) -> None:
    fault = fsite.faults["session-truncated"]
    cookie = fsite.login(fault.app, "tom")  # a session of its own: it gets damaged
    path = f"{fault.url}/gallery/cat.jpg"
    served(fsite, path, fault.original("gallery/cat.jpg"), cookie=cookie)
    stored = session_file(fault, cookie)
    whole = stored.read_bytes()
    with open(stored, "r+b") as handle:  # mod_python rewrites in place: truncate, write
        handle.truncate(len(whole) // 2)
    line = refused(fsite, path, 401, cookie=cookie)
    assert "login required" in line
    with open(stored, "r+b") as handle:  # the write completes
        handle.write(whole)
    served(fsite, path, fault.original("gallery/cat.jpg"), cookie=cookie)
    report(fsite, "session file truncated", 401, line, "200 once the file is whole")


# ----------------------------------------------------------------------------- secrets


def ticket_cookie(user: str = "alice") -> str:
    return f"auth_tkt={issue_ticket(user, secret=SECRET)}"


def share_link(fault: Fault, relpath: str) -> str:
    params = sharelinks.sign(
        relpath, "full", int(time.time()) + 600, SECRET.encode(), realm=str(fault.root.resolve())
    )
    return sharelinks.link(fault.url, relpath, params)


def break_secret_file(fault: Fault, how: str) -> Callable[[], object]:
    """Break the fault's secret file *how*; returns what mends it."""
    secrets = fault.secrets
    if how == "missing":
        return moved_away(secrets)
    if how == "empty":
        text = secrets.read_text()
        secrets.write_text("")
        return lambda: secrets.write_text(text)
    assert how == "public"
    secrets.chmod(0o644)
    return lambda: secrets.chmod(0o640)


@pytest.mark.parametrize(
    ("how", "said"),
    [
        ("missing", "No such file or directory"),
        ("empty", "holds no secret"),
        ("public", "is readable by everyone"),
    ],
)
def test_secret_file_broken(fsite: FaultSite, how: str, said: str) -> None:
    """Tickets and share links need the secret file; what needs neither goes on."""
    fault = fsite.faults[f"secret-{how}"]
    ticket = ticket_cookie()
    path = f"{fault.url}/gallery/cat.jpg"
    link = share_link(fault, "gallery/dog.jpg")
    served(fsite, path, fault.original("gallery/cat.jpg"), cookie=ticket)
    served(fsite, link, fault.original("gallery/dog.jpg"), cookie=None)
    mend = break_secret_file(fault, how)
    try:
        line = refused(fsite, path, 500, cookie=ticket)
        assert f"secret file {fault.secrets}" in line and said in line
        assert SECRET not in line
        link_line = refused(fsite, link, 500)
        assert f"secret file {fault.secrets}" in link_line and said in link_line
        served(fsite, f"{fault.url}/public.jpg", fault.original("public.jpg"), cookie=None)
        refused(fsite, path, 401)  # no ticket: not logged in, as ever
    finally:
        mend()
    served(fsite, path, fault.original("gallery/cat.jpg"), cookie=ticket)
    served(fsite, link, fault.original("gallery/dog.jpg"), cookie=None)
    report(fsite, f"secret file {how}", 500, line, "200 at the next request")


# ----------------------------------------------------------------------------- renditions


def leftovers(cache: Path) -> list[Path]:
    """Temporary files a failed rendition left in the cache (there must be none)."""
    return [p for p in cache.rglob(".tmp-*") if p.is_file()]


def fill(directory: Path) -> Path:
    """Fill the file system of *directory* to the last byte; the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def test_rendition_cache_full(fsite: FaultSite) -> None:
    fault = fsite.faults["cache-full"]
    cookie = fsite.cookie(fault)
    thumb(fsite, f"{fault.url}/thumbs/a.jpg", cookie=cookie)
    filler = fill(fault.cache)
    try:
        line = refused(fsite, f"{fault.url}/thumbs/b.jpg", 500, cookie=cookie)
        assert f"cannot write to the cache: No space left on device: {fault.cache}/" in line
        assert leftovers(fault.cache) == []
        # What is cached already, and the originals, are still served.
        thumb(fsite, f"{fault.url}/thumbs/a.jpg", cookie=cookie)
        path = f"{fault.url}/gallery/cat.jpg"
        served(fsite, path, fault.original("gallery/cat.jpg"), cookie=cookie)
    finally:
        filler.unlink()
    thumb(fsite, f"{fault.url}/thumbs/b.jpg", cookie=cookie)
    report(fsite, "rendition cache full", 500, line, "200 once space is freed")


def test_rendition_cache_read_only(fsite: FaultSite) -> None:
    fault = fsite.faults["cache-readonly"]
    cookie = fsite.cookie(fault)
    thumb(fsite, f"{fault.url}/thumbs/a.jpg", cookie=cookie)
    subprocess.run(["mount", "-o", "remount,ro", str(fault.cache)], check=True)
    try:
        line = refused(fsite, f"{fault.url}/thumbs/b.jpg", 500, cookie=cookie)
        assert f"cannot write to the cache: Read-only file system: {fault.cache}/" in line
        thumb(fsite, f"{fault.url}/thumbs/a.jpg", cookie=cookie)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(fault.cache)], check=True)
    thumb(fsite, f"{fault.url}/thumbs/b.jpg", cookie=cookie)
    report(fsite, "rendition cache read-only", 500, line, "200 once writable")


def test_rendition_cache_deleted(fsite: FaultSite) -> None:
    """The cache directory deleted under a parent Apache's user cannot write (as
    /var/cache): renditions are refused, in a process that had already read the
    configuration as in one that has not."""
    fault = fsite.faults["cache-deleted"]
    cookie = fsite.cookie(fault)
    thumb(fsite, f"{fault.url}/thumbs/a.jpg", cookie=cookie)
    shutil.rmtree(fault.cache)
    lines: list[str] = []
    try:
        for _ in range(4):  # whichever process answers
            lines.append(refused(fsite, f"{fault.url}/thumbs/a.jpg", 500, cookie=cookie))
    finally:
        fault.cache.mkdir()
        prepare_writable(fault.cache)
    for line in lines:
        # A process that built its configuration before cannot make the folder again;
        # one that builds it now finds that the option names no directory.
        assert (
            f"cannot write to the cache: Permission denied: {fault.cache}/" in line
            or f"imageguard.cache_dir '{fault.cache}' is not a directory" in line
        ), line
    thumb(fsite, f"{fault.url}/thumbs/a.jpg", cookie=cookie)
    for kind in ("cannot write to the cache", "is not a directory"):
        for line in (line for line in lines if kind in line):
            report(fsite, "rendition cache deleted", 500, line, "200 once recreated")
            break


# ----------------------------------------------------------------------------- Pillow


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header announces *width* x *height* pixels, with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def broken_jpeg(good: bytes) -> bytes:
    """A JPEG whose headers are intact and whose Huffman tables are garbage."""
    at = good.index(b"\xff\xc4") + 5  # into the first DHT segment's counts
    return good[:at] + b"\xff" * 16 + good[at + 16 :]


PILLOW_FAULTS = {
    # name: (file, how the good file is broken, what the log line says)
    "truncated": ("thumbs/a.jpg", lambda good: good[: len(good) * 2 // 5], "cannot decode it"),
    "corrupt": ("thumbs/b.jpg", broken_jpeg, "cannot decode it"),
    "header-lies": ("thumbs/p.png", lambda good: png_claiming(3000, 3000), "cannot decode it"),
    "bomb": ("thumbs/q.png", lambda good: png_claiming(40_000, 40_000), "decompression bomb"),
}


@pytest.mark.parametrize("kind", sorted(PILLOW_FAULTS))
def test_pillow_fails_on_a_file(fsite: FaultSite, kind: str) -> None:
    """A file replaced, while served, by one Pillow cannot render: 415 for the viewers
    allowed to see it, one line; the original's next version renders again."""
    fault = fsite.faults["pillow"]
    cookie = fsite.cookie(fault)
    relpath, breaking, said = PILLOW_FAULTS[kind]
    path = f"{fault.url}/{relpath}"
    thumb(fsite, path, cookie=cookie)
    good = fault.original(relpath)
    (fault.root / relpath).write_bytes(breaking(good))
    try:
        line = refused(fsite, path, 415, cookie=cookie)
        assert said in line and relpath in line, line
        refused(fsite, path, 415, cookie=cookie)  # remembered, and still one line
    finally:
        (fault.root / relpath).write_bytes(good)
    thumb(fsite, path, cookie=cookie)
    report(fsite, f"Pillow: {kind} file", 415, line, "200 for the file's next version")


# ----------------------------------------------------------------------------- options


@pytest.mark.parametrize("bad", BAD_OPTIONS, ids=[bad.id for bad in BAD_OPTIONS])
def test_a_bad_option_value_is_refused(fsite: FaultSite, bad: BadOption) -> None:
    url = fsite.bad_options[bad]
    # A ticket, or a session of the application most faults share (all but OWN_SESSIONS).
    cookie = ticket_cookie() if bad.tickets else fsite.cookie(fsite.faults["pillow"])
    for relpath in ("gallery/cat.jpg", "public.jpg"):
        line = refused(fsite, f"{url}/{relpath}", 500, cookie=cookie)
        named_as = bad.named_as.replace("{workdir}", str(fsite.workdir))
        assert (named_as or bad.option) in line, line
        assert bad.said in line, line
    report(fsite, f"{bad.option} {bad.value!r}", 500, line, "(configuration: needs a reload)")


def test_every_option_has_a_bad_value_above() -> None:
    """Each option imageguard reads is tried, except imageguard.share_realm, whose only
    bad values (empty, several lines) cannot be written in a PythonOption line."""
    tried = {bad.option for bad in BAD_OPTIONS}
    assert set(OPTIONS) - tried == {"imageguard.share_realm"}
