"""Two Apache servers sharing one PostgreSQL ACL store, the way a site with more than one
web server runs imageguard.

The module builds one store (on the session's PostgreSQL) and two servers on their own
loopback ports: **A** under mpm_event, **B** under mpm_prefork with three children at
start. Both serve the same image tree with the same secret file, take logins from
auth_tkt tickets (stateless: one cookie works on both), and have Debian's stock
``mime.conf`` and ``negotiation.conf`` around them. Each server has:

* ``/img``: the tree, with a rendition cache of the server's own (``cache-a``,
  ``cache-b``);
* ``/shared``: the same tree through another link, with one cache directory both servers
  write into (``cache-shared``);
* ``/stale``: the same tree with ``imageguard.stale_ok on``.

Every Apache child process answers the way its own
:class:`~imageguard.store.listener.ChangeListener` lets it, so the tests that measure
how fast a change reaches the servers hold one keep-alive connection to *each* child
that has talked to PostgreSQL (a *pin*; which child answered is read from a probe log
written with ``%P``) and probe every one of them.

The outage tests stop and kill PostgreSQL: they get a second pair of servers on a
PostgreSQL of their own, so the rest of the session's store is never disturbed.

Figures (latencies, counts, timings) are printed: run with ``-s`` to see them.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import itertools
import os
import random
import shutil
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from PIL import Image

from imageguard.apache.apacheconf import SiteConfig, directory_block
from imageguard.identity.tickets import issue_ticket
from imageguard.store import AclStore
from imageguard.store.listener import HEALTH_S
from imageguard.store.postgres import CHANNEL
from imageguard_devtools.localserver import (
    ApacheConfig,
    LocalApache,
    make_workdir,
    prepare_readable,
    prepare_writable,
)

from .conftest import CLI, SECRET, PgServer, needs_apache, private_postgres
from .httpfetch import Response, fetch

pytestmark = [*needs_apache(), pytest.mark.postgres]

#: How soon a change committed to the store must be seen by every child of both servers.
PROPAGATION_S = 0.1
#: How long the probes go on after a change (well past PROPAGATION_S).
PROBE_AFTER_S = 0.35
#: What each path's rules give (set up in every store this module makes).
RULES = [
    ("gallery/", "authenticated", "full"),
    ("private/", "user:alice", "full"),
    ("thumbs/", "authenticated", "thumb"),
    ("render/", "authenticated", "full"),
]
RENDER_IMAGES = 16
#: A PostgreSQL backend reports its statistics (pg_stat_database) when it goes idle, at
#: most once a second; what it ran within a second of its last report waits for its next
#: statement or for PGSTAT_IDLE_INTERVAL, ten seconds: so long after a backend's last
#: statement, all of it is counted.
STATS_SETTLE_S = 10.5


# --------------------------------------------------------------------------- the tree


def photo(path: Path, size: tuple[int, int], seed: int) -> None:
    """A JPEG with gradients and a few shapes, different for every *seed*."""
    rng = random.Random(seed)
    base = Image.linear_gradient("L").resize(size)
    image = Image.merge(
        "RGB",
        (
            base,
            base.rotate(90 + seed % 4 * 90).resize(size),
            Image.new("L", size, rng.randrange(256)),
        ),
    )
    for _ in range(6):
        x, y = rng.randrange(size[0] - 20), rng.randrange(size[1] - 20)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        image.paste(colour, (x, y, x + rng.randrange(10, 80), y + rng.randrange(10, 80)))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=90)


def make_tree(root: Path) -> None:
    photo(root / "gallery" / "cat.jpg", (640, 480), 1)
    Image.new("RGB", (64, 48), "brown").save(root / "gallery" / "dog.png", "PNG")
    photo(root / "gallery" / "never.jpg", (64, 48), 2)  # never asked for before an outage
    photo(root / "private" / "secret.jpg", (64, 48), 3)
    photo(root / "prop" / "p.jpg", (64, 48), 4)
    photo(root / "thumbs" / "t.jpg", (640, 480), 5)
    for index in range(RENDER_IMAGES):
        size = (300 + 20 * index, 240 + 10 * (index % 7))
        photo(root / "render" / f"r{index:02d}.jpg", size, 100 + index)


def ticket(user: str, groups: tuple[str, ...] = (), *, age: int = 5) -> str:
    """The ``Cookie`` header of an auth_tkt ticket for *user*, issued *age* seconds ago."""
    return "auth_tkt=" + issue_ticket(user, groups, SECRET, timestamp=int(time.time()) - age)


def decode(body: bytes) -> Image.Image:
    """*body* decoded to its last pixel (a truncated image raises)."""
    image = Image.open(io.BytesIO(body))
    image.load()
    return image


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    """One of the Apache servers, and what the tests need of it."""

    name: str
    apache: LocalApache
    probe_log: Path

    @property
    def port(self) -> int:
        return self.apache.port

    def request(self, path: str, cookie: str | None = None) -> Response:
        headers = {"Accept": "image/avif,image/webp,*/*"}
        if cookie:
            headers["Cookie"] = cookie
        return fetch(self.port, path, headers=headers)

    def children(self) -> set[int]:
        master = self.apache.master_pid()
        return {pid for pid in self.apache.server_pids() if pid != master}

    def error_log(self) -> str:
        return self.apache.error_log_text()

    def pid_of(self, tag: str, timeout: float = 3) -> int:
        """The pid of the child that answered the request tagged *tag* (``X-Probe``), from
        the probe log (written after the response, hence the wait)."""
        return self.pids_of([tag], timeout)[tag]

    def pids_of(self, tags: list[str], timeout: float = 3) -> dict[str, int]:
        """:meth:`pid_of` for each of *tags*, the log read once (more if need be)."""
        deadline = time.monotonic() + timeout
        while True:
            found = {}
            with contextlib.suppress(FileNotFoundError):
                for line in self.probe_log.read_text().splitlines():
                    fields = line.split()
                    if len(fields) >= 2:
                        found[fields[1]] = int(fields[0])
            missing = [tag for tag in tags if tag not in found]
            if not missing:
                return {tag: found[tag] for tag in tags}
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no probe log line for {missing[:3]}")
            time.sleep(0.01)


@dataclass
class Pair:
    """The store, the tree and the two servers sharing them."""

    pg: PgServer
    dsn: str
    dbname: str
    workdir: Path
    root: Path
    secrets: Path
    caches: dict[str, Path]
    servers: list[Server]

    @property
    def a(self) -> Server:
        return self.servers[0]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The real ``imageguard`` command line on this pair's store."""
        result = subprocess.run(
            [*CLI, "--db", self.dsn, *args], capture_output=True, text=True, check=False
        )
        if check:
            assert result.returncode == 0, f"imageguard {' '.join(args)}: {result.stderr}"
        return result

    def command(self, *args: str) -> Callable[[], None]:
        """A change made by running the command line with *args* (for measure_switch)."""

        def run() -> None:
            self.cli(*args)

        return run

    def psql(self, sql: str) -> str:
        return self.pg.server.psql(sql)

    def xact_commit(self) -> int:
        return int(
            self.psql(f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{self.dbname}'")
        )

    def connections(self) -> list[tuple[int, str]]:
        """(client port, application_name) of every TCP connection to the store."""
        out = self.psql(
            "SELECT client_port, application_name FROM pg_stat_activity "
            f"WHERE datname = '{self.dbname}' AND client_port IS NOT NULL"
        )
        rows = []
        for line in out.splitlines():
            port, _, name = line.partition("|")
            rows.append((int(port), name))
        return rows

    def last_statements(self, application_name: str) -> dict[int, str]:
        """When each connection named *application_name* last began or ended a statement
        (``state_change``), by client port."""
        out = self.psql(
            "SELECT client_port, state_change FROM pg_stat_activity "
            f"WHERE datname = '{self.dbname}' AND application_name = '{application_name}'"
        )
        return dict(
            (int(port), moment)
            for port, _, moment in (line.partition("|") for line in out.splitlines())
        )

    def connections_by_child(self, server: Server) -> dict[int, dict[int, str]]:
        """The store's connections each child process of *server* holds: their client
        ports and application names (matched through the sockets in /proc)."""
        names = dict(self.connections())
        ports = client_ports(self.pg.server.port)
        return {
            pid: {port: names.get(port, "?") for port in sockets_of(pid, ports)}
            for pid in server.children()
        }

    def warm_children(self, server: Server) -> set[int]:
        """The children of *server* that hold a listener connection to the store."""
        return {
            pid
            for pid, held in self.connections_by_child(server).items()
            if "imageguard listener" in held.values()
        }


def client_ports(pg_port: int) -> dict[int, int]:
    """Socket inode -> local port of every established TCP connection to *pg_port*."""
    found = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
        if state == "01" and int(remote.split(":")[1], 16) == pg_port:
            found[inode] = int(local.split(":")[1], 16)
    return found


def sockets_of(pid: int, ports: dict[int, int]) -> list[int]:
    """The local ports of the sockets among *ports* (inode -> port) process *pid* holds."""
    held = []
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[len("socket:[") : -1])
                if inode in ports:
                    held.append(ports[inode])
    return held


def server_body(workdir: Path, name: str, dsn: str, secrets: Path, caches: dict[str, Path]) -> str:
    def site(url: str, cache: str = "", **extra: object) -> str:
        config = SiteConfig(
            root=str(workdir / url.strip("/")),
            url_path=url,
            acl_db=dsn,
            session_source="auth_tkt",
            tkt_secret_file=str(secrets),
            cache_dir=str(caches[cache]) if cache else "",
            **extra,  # type: ignore[arg-type]
        )
        return directory_block(config)

    probe_log = workdir / f"apache-{name}" / "logs" / "probe.log"
    return f"""
Include /etc/apache2/mods-available/mime.conf
Include /etc/apache2/mods-available/negotiation.conf
# The probes hold one keep-alive connection per child for a whole test.
KeepAliveTimeout 120
MaxKeepAliveRequests 0
SetEnvIf X-Probe "." imageguard_probe
CustomLog "{probe_log}" "%P %{{X-Probe}}i %>s %{{usec}}t %D" env=imageguard_probe
{site("/img", name)}
{site("/shared", "shared")}
{site("/stale", name, stale_ok=True)}
"""


def build_pair(pg: PgServer, label: str) -> Iterator[Pair]:
    """The tree, a store with :data:`RULES`, and servers A (event) and B (prefork)."""
    workdir = make_workdir(f"imageguard-multi-{label}-")
    root = workdir / "images"
    make_tree(root)
    for link in ("img", "shared", "stale"):
        (workdir / link).symlink_to(root)
    state = workdir / "state"
    caches = {name: state / f"cache-{name}" for name in ("a", "b", "shared")}
    for cache in caches.values():
        cache.mkdir(parents=True)
    secrets = state / "secrets"
    secrets.write_text(SECRET + "\n")
    dsn = pg.new_store()
    dbname = urllib.parse.urlsplit(dsn).path.lstrip("/")
    pair = Pair(pg, dsn, dbname, workdir, root, secrets, caches, [])
    pair.cli("init")
    with AclStore(dsn) as store:
        for pattern, principal, level in RULES:
            store.grant(pattern, principal, level)
    prepare_readable(workdir)
    prepare_writable(state)
    secrets.chmod(0o640)
    try:
        with contextlib.ExitStack() as stack:
            for name, mpm in (("a", "event"), ("b", "prefork")):
                apache = LocalApache(
                    ApacheConfig(
                        workdir=workdir / f"apache-{name}",
                        body=server_body(workdir, name, dsn, secrets, caches),
                        mpm=mpm,
                        start_servers=3 if mpm == "prefork" else 2,
                        extra_modules=("negotiation",),
                        python_debug=True,
                    )
                )
                stack.enter_context(apache)
                pair.servers.append(
                    Server(name.upper(), apache, apache.config.log_dir / "probe.log")
                )
            yield pair
    finally:
        if not os.environ.get("IMAGEGUARD_KEEP_WORKDIR"):
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def pair(postgres: PgServer) -> Iterator[Pair]:
    yield from build_pair(postgres, "main")


@pytest.fixture(scope="module")
def outage_pair(postgres: PgServer) -> Iterator[Pair]:
    """Two servers on a PostgreSQL of their own, which the tests stop and kill (the
    session's ``postgres`` fixture is asked for its skip when none can run)."""
    with private_postgres() as server:
        yield from build_pair(server, "outage")


class Commits:
    """The moments the store's NOTIFY reached this process: when a change was committed
    (to a millisecond or two), whoever made it."""

    def __init__(self, dsn: str) -> None:
        self._conn = psycopg.connect(dsn, autocommit=True, application_name="multiserver test")
        self._conn.execute(f"LISTEN {CHANNEL}")
        self.heard: list[float] = []
        self._news = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for _ in self._conn.notifies(timeout=0.05, stop_after=1):
                with self._news:
                    self.heard.append(time.monotonic())
                    self._news.notify_all()

    def first_after(self, mark: float, timeout: float = 5) -> float:
        """The first notification heard after *mark* (monotonic), waited for."""

        def found() -> float | None:
            return next((moment for moment in self.heard if moment > mark), None)

        with self._news:
            if not self._news.wait_for(lambda: found() is not None, timeout):
                raise AssertionError("the store's change was never notified")
            return found()  # type: ignore[return-value]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._conn.close()


@pytest.fixture(scope="module")
def commits(pair: Pair) -> Iterator[Commits]:
    heard = Commits(pair.dsn)
    yield heard
    heard.close()


# --------------------------------------------------------------------------- requests


def spread(server: Server, path: str, cookie: str | None, count: int, clients: int) -> Counter[int]:
    """*count* requests for *path* on new connections from *clients* threads at once (so
    that they reach several children); the statuses."""

    def one(_: int) -> int:
        return server.request(path, cookie)[0]

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return Counter(pool.map(one, range(count)))


def warm(pair: Pair, cookie: str, path: str = "/img/gallery/cat.jpg") -> None:
    """Requests enough for every child of both servers to have connected to the store."""
    for server in pair.servers:
        clients = len(server.children()) + 2
        statuses = spread(server, path, cookie, 8 * clients, clients)
        assert set(statuses) == {200}, (server.name, statuses)


def warm_every_child(pair: Pair, cookie: str, path: str) -> None:
    """:func:`warm`, then requests one after the other (which make no new child) until
    every child of both servers holds its listener connection."""
    warm(pair, cookie, path)
    deadline = time.monotonic() + 10
    for server in pair.servers:
        while not server.children() <= pair.warm_children(server):
            assert time.monotonic() < deadline, f"{server.name}: children left cold"
            for _ in range(2 * len(server.children())):
                assert server.request(path, cookie)[0] == 200


@dataclass
class Probe:
    pid: int
    sent: float
    done: float
    status: int


class Pins:
    """One keep-alive connection to each child of *server* that holds a connection to the
    store (every child that could answer from what it remembers)."""

    def __init__(self, pair: Pair, server: Server, path: str, cookie: str) -> None:
        self.server = server
        self.conns: dict[int, http.client.HTTPConnection] = {}
        extras: list[http.client.HTTPConnection] = []
        missing: set[int] = set()
        try:
            for _ in range(60):
                missing = pair.warm_children(server) - self.conns.keys()
                if self.conns and not missing:
                    break
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                tag = f"pin-{uuid.uuid4().hex}"
                status = self._send(conn, path, {"Cookie": cookie, "X-Probe": tag})
                assert status == 200, (server.name, status)
                pid = server.pid_of(tag)
                if pid in self.conns:
                    extras.append(conn)
                else:
                    self.conns[pid] = conn
            else:
                raise AssertionError(f"{server.name}: no connection reached children {missing}")
        except BaseException:
            self.close()
            raise
        finally:
            for conn in extras:
                conn.close()

    @staticmethod
    def _send(
        conn: http.client.HTTPConnection, path: str, headers: dict[str, str], last: bool = False
    ) -> int:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.will_close and not last:  # Apache drops the connection after a 503
            raise AssertionError(f"the server closed a pinned connection ({response.status})")
        return response.status

    def probe(self, pid: int, path: str, cookie: str | None, *, last: bool = False) -> Probe:
        """GET *path* from child *pid*; *last*: the connection may close after it."""
        headers = {"X-Probe": f"{pid}-{uuid.uuid4().hex[:8]}"}
        if cookie:
            headers["Cookie"] = cookie
        sent = time.monotonic()
        status = self._send(self.conns[pid], path, headers, last)
        return Probe(pid, sent, time.monotonic(), status)

    def each(self, path: str, cookie: str | None) -> dict[int, int]:
        """The status every pinned child answers for *path*."""
        return {pid: self.probe(pid, path, cookie).status for pid in self.conns}

    def check_pids(self) -> None:
        """Every pinned connection is still served by the child it was pinned to."""
        for pid in self.conns:
            tag = f"check-{uuid.uuid4().hex}"
            self._send(self.conns[pid], "/img/gallery/dog.png", {"X-Probe": tag})
            assert self.server.pid_of(tag) == pid, f"{self.server.name}: pin {pid} moved"

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()


@contextlib.contextmanager
def pinned(pair: Pair, cookie: str) -> Iterator[list[Pins]]:
    pins: list[Pins] = []
    try:
        for server in pair.servers:
            pins.append(Pins(pair, server, "/img/gallery/cat.jpg", cookie))
        yield pins
    finally:
        for each in pins:
            each.close()


@dataclass
class Switch:
    """How long one change took to reach the pinned children of one server, in seconds
    after the commit: how long any child could still give the old answer (*stale*: the
    completion of the last old answer, an upper bound of when it was decided), and when
    every child had given the new one (*answered*: the completion of the first new answer,
    which includes that request's own work: the child's new queries to the store)."""

    server: str
    children: int
    probes: int
    stale: float
    answered: float


def measure_switch(
    pins: list[Pins],
    commits: Commits,
    path: str,
    cookie: str | None,
    before: int,
    after: int,
    change: Callable[[], None],
) -> list[Switch]:
    """Probe *path* on every pinned child of both servers from the moment *change*
    commits (its NOTIFY): the time until each server's every child answers *after*.

    Each child has a thread of its own that asks every 5 ms until the child gives the new
    answer, then every 25 ms until :data:`PROBE_AFTER_S` (an old answer again fails).
    """
    for each in pins:
        answers = each.each(path, cookie)
        assert set(answers.values()) == {before}, (each.server.name, answers)
    found: dict[str, list[Probe]] = {each.server.name: [] for each in pins}
    failures: list[BaseException] = []
    mark = time.monotonic()

    def loop(each: Pins, pid: int) -> None:
        try:
            heard = commits.first_after(mark, timeout=15)
            while True:
                probe = each.probe(pid, path, cookie)
                found[each.server.name].append(probe)
                if probe.done > heard + PROBE_AFTER_S:
                    return
                time.sleep(0.025 if probe.status == after else 0.005)
        except BaseException as exc:
            failures.append(exc)

    threads = [
        threading.Thread(target=loop, args=(each, pid)) for each in pins for pid in each.conns
    ]
    for thread in threads:
        thread.start()
    try:
        change()
        returned = time.monotonic()
    finally:
        for thread in threads:
            thread.join()
    if failures:
        raise failures[0]
    committed = min(commits.first_after(mark), returned)
    return [
        settle(each.server.name, found[each.server.name], committed, before, after) for each in pins
    ]


def settle(name: str, probes: list[Probe], committed: float, before: int, after: int) -> Switch:
    """What the probes of server *name*'s children say of the change (see Switch)."""
    odd = [p for p in probes if p.status not in (before, after)]
    assert not odd, f"{name}: answers neither {before} nor {after}: {odd[:5]}"
    stale = answered = 0.0
    pids = sorted({p.pid for p in probes})
    for pid in pids:
        mine = sorted((p for p in probes if p.pid == pid), key=lambda p: p.sent)
        old = [p for p in mine if p.status == before and p.done > committed]
        new = [p for p in mine if p.status == after]
        assert new, f"{name}: child {pid} never answered {after} after the change"
        went_back = [p for p in old if p.sent > new[0].sent]
        assert not went_back, f"{name}: child {pid} answered {before} again after {after}"
        late = [p for p in mine if p.sent >= committed + PROPAGATION_S]
        assert late, f"{name}: child {pid} was not probed {PROPAGATION_S * 1000:.0f} ms after"
        stale = max([stale, *(p.done - committed for p in old)])
        answered = max(answered, new[0].done - committed)
    return Switch(name, len(pids), len(probes), stale, answered)


def report(what: str, switches: list[Switch]) -> str:
    return f"{what}: " + ", ".join(
        f"{s.server} old answers until {s.stale * 1000:.1f} ms, all {s.children} children "
        f"answered anew by {s.answered * 1000:.1f} ms ({s.probes} probes)"
        for s in switches
    )


#: The bound of Switch.answered: the first new answer's own request included, and the
#: machine perhaps busy; far below the listener's once-a-second poll all the same.
ANSWERED_S = 0.3


def assert_fast(what: str, switches: list[Switch]) -> None:
    line = report(what, switches)
    print(line)
    stale = [s for s in switches if s.stale >= PROPAGATION_S]
    assert not stale, f"old answers {PROPAGATION_S * 1000:.0f} ms after the commit: {line}"
    slow = [s for s in switches if s.answered >= ANSWERED_S]
    assert not slow, f"new answers not given within {ANSWERED_S * 1000:.0f} ms: {line}"


# --------------------------------------------------------------------------- 1. grants


def test_grants_and_revocations_reach_every_child_of_both_servers(
    pair: Pair, commits: Commits
) -> None:
    carol = ticket("carol")
    warm(pair, carol, "/img/gallery/dog.png")
    path = "/img/prop/p.jpg"

    def via_api(method: str, *args: str) -> Callable[[], None]:
        def change() -> None:
            with AclStore(pair.dsn) as store:
                getattr(store, method)(*args)

        return change

    rounds = [
        ("CLI grant", 403, 200, pair.command("grant", "prop/p.jpg", "user:carol", "full")),
        ("CLI revoke", 200, 403, pair.command("revoke", "prop/p.jpg", "user:carol")),
        ("API grant", 403, 200, via_api("grant", "prop/p.jpg", "user:carol", "full")),
        ("API revoke", 200, 403, via_api("revoke", "prop/p.jpg", "user:carol")),
        ("CLI grant", 403, 200, pair.command("grant", "prop/", "authenticated", "full")),
        ("API revoke", 200, 403, via_api("revoke", "prop/", "authenticated")),
    ]
    worst: dict[str, tuple[float, float]] = {}
    with pinned(pair, carol) as pins:
        for index, (what, before, after, change) in enumerate(rounds, 1):
            switches = measure_switch(pins, commits, path, carol, before, after, change)
            assert_fast(f"round {index} {what} ({before} -> {after})", switches)
            for s in switches:
                stale, answered = worst.get(s.server, (0.0, 0.0))
                worst[s.server] = (max(stale, s.stale), max(answered, s.answered))
        for each in pins:
            each.check_pids()
    print(
        "propagation, worst of",
        len(rounds),
        "rounds:",
        ", ".join(
            f"{name} old answers until {stale * 1000:.1f} ms, new ones by {answered * 1000:.1f} ms"
            for name, (stale, answered) in worst.items()
        ),
    )


# --------------------------------------------------------------------------- 2. revocations


def test_revocations_reach_both_servers(pair: Pair, commits: Commits) -> None:
    ursula = ticket("ursula")
    victor = ticket("victor")
    other_victor = ticket("victor", age=3)  # another ticket of the same user
    link = pair.cli(
        "share",
        "private/secret.jpg",
        "--level",
        "full",
        "--expires",
        "10m",
        "--url-path",
        "/img",
        "--root",
        str(pair.root),
        "--secret-file",
        str(pair.secrets),
    ).stdout.strip()
    assert "ig_sig=" in link, link
    path = "/img/gallery/cat.jpg"
    warm(pair, ursula)
    with pinned(pair, ursula) as pins:
        switches = measure_switch(
            pins, commits, path, ursula, 200, 401, pair.command("revoke-user", "ursula")
        )
        assert_fast("revoke-user", switches)
        value = victor.removeprefix("auth_tkt=")
        switches = measure_switch(
            pins,
            commits,
            path,
            victor,
            200,
            401,
            pair.command("revoke-ticket", value),
        )
        assert_fast("revoke-ticket", switches)
        switches = measure_switch(
            pins, commits, link, None, 200, 401, pair.command("share-revoke", link)
        )
        assert_fast("share-revoke (a share link)", switches)
        for each in pins:
            assert set(each.each(path, other_victor).values()) == {200}  # only that ticket
            assert set(each.each(path, ticket("ursula", age=-2)).values()) == {200}  # later login
            each.check_pids()


# --------------------------------------------------------------------------- 3. queries


def test_no_query_per_request_when_nothing_changed(pair: Pair) -> None:
    rita = ticket("rita")
    path = "/img/gallery/cat.jpg"
    warm_every_child(pair, rita, path)
    label = uuid.uuid4().hex[:8]

    def one_round(kind: str) -> Counter[int]:
        """Requests one after the other (no new child needed), tagged for the probe log:
        they take turns among the idle children."""
        statuses: Counter[int] = Counter()
        for index in range(200):
            for server in pair.servers:
                headers = {"Cookie": rita, "X-Probe": f"{kind}-{label}-{index}"}
                statuses[fetch(server.port, path, headers=headers)[0]] += 1
        return statuses

    # Every child's first answer since the last change costs its queries: a first round,
    # whose transactions PostgreSQL may report up to STATS_SETTLE_S later.
    assert one_round("prime") == Counter({200: 400})
    children = {server.name: server.children() for server in pair.servers}

    def listeners() -> int:
        return sum(1 for _, name in pair.connections() if name == "imageguard listener")

    listening = listeners()
    time.sleep(STATS_SETTLE_S)
    start = time.monotonic()
    before = pair.xact_commit()
    queried = pair.last_statements("imageguard store")
    statuses = one_round("measure")
    sent = time.monotonic()
    queried_after = pair.last_statements("imageguard store")
    time.sleep(1.2)
    after = pair.xact_commit()
    elapsed = time.monotonic() - start
    listening = max(listening, listeners())
    grown = after - before
    served = {
        server.name: len(
            {
                line.split()[0]
                for line in server.probe_log.read_text().splitlines()
                if f" measure-{label}-" in line
            }
        )
        for server in pair.servers
    }
    # Prefork ends idle children beyond MaxSpareServers meanwhile: the most there were.
    processes = max(sum(map(len, children.values())), listening)
    # A query connection that ran a statement, or was opened, during the round.
    used = [port for port, moment in queried_after.items() if queried.get(port) != moment]
    # The listeners' polls (one a second each, at most one per process), one report of
    # each a second late, and a little for the rest (autovacuum, say).
    bound = (elapsed + 1) * processes + 5
    print(
        f"transactions: {grown} during 400 requests answered by {served} children "
        f"({sent - start:.2f} s of requests, {elapsed:.2f} s measured, {listening} listeners "
        f"in {processes} processes; bound {bound:.0f}); query connections used meanwhile: "
        f"{len(used)} of {len(queried_after)}"
    )
    assert statuses == Counter({200: 400})
    assert not used, f"query connections ran statements meanwhile (ports {used})"
    for server in pair.servers:  # a new child would connect (prefork may end idle ones)
        assert server.children() <= children[server.name], f"{server.name}: a new child"
    assert grown <= bound, f"{grown} transactions for 400 unchanged requests (bound {bound:.0f})"
    assert grown < 100, f"{grown} transactions for 400 unchanged requests"


# --------------------------------------------------------------------------- 4. connections


def test_each_child_holds_at_most_two_connections(pair: Pair) -> None:
    rita = ticket("rita")
    warm(pair, rita)

    def held() -> dict[str, dict[int, dict[int, str]]]:
        return {server.name: pair.connections_by_child(server) for server in pair.servers}

    first = held()
    for server in pair.servers:
        statuses = spread(server, "/img/gallery/dog.png", rita, 200, len(server.children()))
        assert statuses == Counter({200: 200})
    second = held()
    for label, snapshot in (("after warming", first), ("after 200 more requests", second)):
        lines = []
        for name, children in snapshot.items():
            for pid, conns in sorted(children.items()):
                counts = Counter(conns.values())
                lines.append(
                    f"{name} pid {pid}: "
                    + (", ".join(f"{n} x{c}" for n, c in sorted(counts.items())) or "none")
                )
                assert set(counts) <= {"imageguard listener", "imageguard store"}, (name, pid)
                assert counts["imageguard listener"] <= 1, (name, pid, counts)
                assert counts["imageguard store"] <= 1, (name, pid, counts)
        print(f"connections {label}:\n  " + "\n  ".join(lines))
    # The children that answered both times kept the very same connections.
    for name in first:
        for pid, conns in second[name].items():
            if first[name].get(pid):
                assert conns == first[name][pid], f"{name} pid {pid}: {first[name][pid]} -> {conns}"
    children = sum(len(server.children()) for server in pair.servers)
    ours = [row for row in pair.connections() if row[1].startswith("imageguard")]
    mapped = sum(len(conns) for snapshot in second.values() for conns in snapshot.values())
    print(
        f"the store's imageguard connections: {len(ours)} for {children} children "
        f"({mapped} found in the children's sockets)"
    )
    assert len(ours) == mapped, "connections to the store that no child of A or B holds"
    assert len(ours) <= 2 * children
    for name, snapshot in second.items():
        warm_ones = [pid for pid, conns in snapshot.items() if conns]
        assert len(warm_ones) >= 2, f"{name}: the requests reached only {warm_ones}"


# --------------------------------------------------------------------------- 7. renditions


def test_renditions_are_identical_on_both_servers(pair: Pair) -> None:
    rita = ticket("rita")
    tom = ticket("tom")
    asked = [
        ("/gallery/cat.jpg?v=thumb", rita),
        ("/gallery/cat.jpg?v=preview", rita),
        ("/thumbs/t.jpg", tom),  # a thumb viewer asking for the original gets the thumb
        ("/thumbs/t.jpg?v=thumb", rita),
    ]
    bodies: dict[str, bytes] = {}
    for suffix, cookie in asked:
        got = {}
        for server in pair.servers:
            for prefix in ("/img", "/shared"):
                status, headers, body = server.request(prefix + suffix, cookie)
                assert status == 200, (server.name, prefix + suffix, status, body[:300])
                assert headers["content-type"] == "image/jpeg"
                got[f"{server.name} {prefix}"] = body
        reference = got["A /img"]
        different = [where for where, body in got.items() if body != reference]
        assert not different, f"{suffix}: not the bytes server A sent: {different}"
        bodies[suffix] = reference
    thumb, preview = (
        decode(bodies["/gallery/cat.jpg?v=thumb"]),
        decode(bodies["/gallery/cat.jpg?v=preview"]),
    )
    assert thumb.size == (256, 192) and preview.size == (640, 480)
    assert bodies["/gallery/cat.jpg?v=preview"] != (pair.root / "gallery/cat.jpg").read_bytes()
    assert bodies["/thumbs/t.jpg"] == bodies["/thumbs/t.jpg?v=thumb"]
    assert decode(bodies["/thumbs/t.jpg"]).size == (256, 192)
    # Each server made its own copy in its own cache: the same name, the same bytes.
    names = {
        name: sorted(
            p.relative_to(pair.caches[name])
            for p in pair.caches[name].rglob("*.jpg")
            if p.is_file()
        )
        for name in ("a", "b")
    }
    assert names["a"] and names["a"] == names["b"]
    for relative in names["a"]:
        assert (pair.caches["a"] / relative).read_bytes() == (
            pair.caches["b"] / relative
        ).read_bytes()
    print(f"renditions: {len(bodies)} variants byte-identical on A, B, /img and /shared")


@pytest.mark.parametrize("everything", [False, True], ids=["purge", "purge-all"])
def test_purge_while_both_servers_render(pair: Pair, everything: bool) -> None:
    rita = ticket("rita")
    work = [
        (f"/render/r{index:02d}.jpg", variant)
        for index in range(RENDER_IMAGES)
        for variant in ("thumb", "preview")
    ]
    reference: dict[tuple[str, str], bytes] = {}
    for relpath, variant in work:  # from A's own cache, never purged here
        status, _, body = pair.a.request(f"/img{relpath}?v={variant}", rita)
        assert status == 200
        decode(body)
        reference[relpath, variant] = body
    purge = ["renditions", "purge", "--root", str(pair.root), "--cache-dir"]
    purge.append(str(pair.caches["shared"]))
    assert pair.cli(*purge, "--all").returncode == 0  # start from an empty shared cache
    marks = {server.name: len(server.error_log()) for server in pair.servers}
    stop = threading.Event()
    purges: list[str] = []
    purge_failures: list[str] = []

    def purger() -> None:
        while not stop.is_set():
            args = [*purge, "--all"] if everything else purge
            result = pair.cli(*args, check=False)
            if result.returncode != 0:
                purge_failures.append(result.stderr)
            purges.append(result.stdout.strip())

    def client(server: Server, seed: int) -> list[tuple[str, str, int, bytes]]:
        rng = random.Random(seed)
        done = []
        for passes in itertools.count():  # two passes, and while fewer than 3 purges ran
            if passes >= 8 or (passes >= 2 and len(purges) >= 3):
                break
            order = list(work)
            rng.shuffle(order)
            for relpath, variant in order:
                status, _, body = server.request(f"/shared{relpath}?v={variant}", rita)
                done.append((relpath, variant, status, body))
        return done

    purging = threading.Thread(target=purger)
    started = time.monotonic()
    purging.start()
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            jobs = [
                pool.submit(client, server, seed) for seed, server in enumerate(pair.servers * 3)
            ]
            answers = list(itertools.chain.from_iterable(job.result() for job in jobs))
    finally:
        stop.set()
        purging.join()
    elapsed = time.monotonic() - started
    statuses = Counter(status for _, _, status, _ in answers)
    wrong = []
    for relpath, variant, status, body in answers:
        if status != 200:
            wrong.append(f"{relpath}?v={variant}: {status}")
            continue
        try:
            decode(body)
        except Exception as exc:  # Pillow's many errors for a partial file
            wrong.append(f"{relpath}?v={variant}: {len(body)} bytes do not decode: {exc}")
            continue
        if body != reference[relpath, variant]:
            wrong.append(f"{relpath}?v={variant}: not the reference bytes")
    logged = [
        f"{server.name}: {line}"
        for server in pair.servers
        for line in server.error_log()[marks[server.name] :].splitlines()
        if line.strip() and "(Re)importing module" not in line  # a new child's imports
    ]
    print(
        f"purge{' --all' if everything else ''} during rendering: {len(answers)} answers "
        f"{dict(statuses)} in {elapsed:.1f} s, {len(purges)} purges "
        f"(last: {purges[-1] if purges else '-'!r})"
    )
    assert not purge_failures, purge_failures[:3]
    assert len(purges) >= 3, "the purges did not overlap the requests"
    assert not wrong, (
        f"{len(wrong)} wrong answers of {len(answers)}:\n"
        + "\n".join(wrong[:10])
        + "\nlogged:\n"
        + "\n".join(logged[:10])
    )
    assert not logged, "\n".join(logged[:10])


# --------------------------------------------------------------------------- 6. stale_ok


def test_stale_ok_keeps_remembered_answers_through_an_outage(outage_pair: Pair) -> None:
    pair = outage_pair
    pg = pair.pg.server
    bob = ticket("bob")
    until_answering(pair, bob)
    warm(pair, bob, "/stale/gallery/dog.png")
    dog = (pair.root / "gallery/dog.png").read_bytes()
    remembered = {
        "/stale/gallery/dog.png": 200,
        "/stale/private/secret.jpg": 403,
        "/img/gallery/dog.png": 200,
        "/img/private/secret.jpg": 403,
    }
    masters = [server.apache.master_pid() for server in pair.servers]
    during: dict[str, list[int]] = {}
    with pinned(pair, bob) as pins:
        for each in pins:  # every child that may answer remembers these
            for path, expected in remembered.items():
                assert set(each.each(path, bob).values()) == {expected}, (each.server.name, path)
        pg.kill()
        down = time.monotonic()
        try:
            time.sleep(HEALTH_S + 0.2)  # by then no child trusts its listener, by design
            for each in pins:
                for pid in each.conns:
                    where = f"{each.server.name} pid {pid}"
                    status, _, body = fetch_on(each, pid, "/stale/gallery/dog.png", bob)
                    assert (status, body) == (200, dog), f"{where}: {status}"
                    status = each.probe(pid, "/stale/private/secret.jpg", bob).status
                    assert status == 403, f"{where}: a remembered refusal got {status}"
                    # A 503 ends the connection, so one per pinned child.
                    status = each.probe(pid, "/img/gallery/dog.png", bob, last=True).status
                    assert status == 503, f"{where}: the default configuration gave {status}"
            for path in (
                "/img/gallery/dog.png",
                "/img/private/secret.jpg",
                "/stale/gallery/never.jpg",
            ):
                for server in pair.servers:
                    answers = tagged(server, path, bob, 4 * len(server.children()))
                    during[f"{server.name} {path}"] = sorted({pid for pid, _ in answers})
                    statuses = Counter(status for _, status in answers)
                    assert set(statuses) == {503}, (server.name, path, statuses)
            outage = time.monotonic() - down
        finally:
            pg.start()
        up = time.monotonic()
    print(
        f"stale_ok: {outage:.1f} s into the outage, every pinned child still gave its "
        "remembered 200 and 403 under stale_ok and 503 under the default; 503 for "
        + "; ".join(f"{where} ({len(pids)} children)" for where, pids in during.items())
    )
    back = until_answering(pair, bob, "/stale/gallery/never.jpg")
    print(f"stale_ok: all children answering from the store {back - up:.2f} s after the restart")
    assert back - up < 5
    for server in pair.servers:
        answers = tagged(server, "/img/private/secret.jpg", bob, 3 * len(server.children()))
        assert {status for _, status in answers} == {403}
    assert [server.apache.master_pid() for server in pair.servers] == masters


def tagged(server: Server, path: str, cookie: str, count: int) -> list[tuple[int, int]]:
    """*count* requests on new connections, four at a time: (pid, status) of each."""

    def one(_: int) -> tuple[str, int]:
        tag = f"t-{uuid.uuid4().hex}"
        headers = {"Cookie": cookie, "X-Probe": tag}
        return tag, fetch(server.port, path, headers=headers)[0]

    with ThreadPoolExecutor(max_workers=4) as pool:
        done = list(pool.map(one, range(count)))
    pids = server.pids_of([tag for tag, _ in done])
    return [(pids[tag], status) for tag, status in done]


def until_answering(pair: Pair, cookie: str, path: str = "/img/gallery/dog.png") -> float:
    """Wait until both servers answer *path* with 200 from every child that answers
    (PostgreSQL just restarted, say); the moment they did."""
    deadline = time.monotonic() + 10
    while True:
        statuses: Counter[int] = Counter()
        for server in pair.servers:
            statuses += spread(server, path, cookie, 3 * len(server.children()), 4)
        if set(statuses) == {200}:
            return time.monotonic()
        assert time.monotonic() < deadline, f"{path}: still {statuses}"
        time.sleep(0.05)


def fetch_on(pins: Pins, pid: int, path: str, cookie: str) -> Response:
    """GET *path* on the connection pinned to *pid*, with its body."""
    conn = pins.conns[pid]
    conn.request("GET", path, headers={"Cookie": cookie})
    response = conn.getresponse()
    body = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


# --------------------------------------------------------------------------- 5. outage


@dataclass
class Answer:
    server: str
    granted: bool
    sent: float
    done: float
    status: int


def test_postgresql_restart_during_requests(outage_pair: Pair) -> None:
    pair = outage_pair
    pg = pair.pg.server
    bob = ticket("bob")
    granted, denied = "/img/gallery/cat.jpg", "/img/private/secret.jpg"
    until_answering(pair, bob)
    warm(pair, bob, granted)
    masters = [server.apache.master_pid() for server in pair.servers]
    marks = {server.name: len(server.error_log()) for server in pair.servers}
    answers: list[Answer] = []
    stop = threading.Event()

    def client(server: Server, offset: int) -> None:
        for count in itertools.count(offset):
            if stop.is_set():
                return
            path = granted if count % 2 == 0 else denied
            sent = time.monotonic()
            try:
                status = server.request(path, bob)[0]
            except OSError:
                status = 0
            answers.append(Answer(server.name, path == granted, sent, time.monotonic(), status))
            time.sleep(0.005)

    clients = [
        threading.Thread(target=client, args=(server, offset))
        for server in pair.servers
        for offset in (0, 1)
    ]
    for thread in clients:
        thread.start()
    try:
        time.sleep(0.5)
        stopping = time.monotonic()
        pg.stop()
        down = time.monotonic()
        time.sleep(2)
        starting = time.monotonic()
        pg.start()
        up = time.monotonic()
        deadline = up + 8
        while time.monotonic() < deadline:  # until both servers have been right for 1.5 s
            time.sleep(0.25)
            now = time.monotonic()
            recent = [a for a in answers if a.sent > now - 1.5]
            wrong = [a for a in answers if a.sent > up and not right(a)]
            if wrong and now - max(a.done for a in wrong) > 1.5 and recent:
                break
            if not wrong and now - up > 1.5:
                break
    finally:
        stop.set()
        for thread in clients:
            thread.join()
    statuses = Counter((a.server, a.granted, a.status) for a in answers)
    odd = [a for a in answers if a.status not in ((200, 503) if a.granted else (403, 503))]
    before = [a for a in answers if a.done < stopping and not right(a)]
    outage = [a for a in answers if down + 0.5 <= a.sent and a.done <= starting]
    not_503 = [a for a in outage if a.status != 503]
    slow_503 = [a for a in answers if a.status == 503 and a.done - a.sent >= 1]
    last_served = max(
        (a.done - stopping for a in answers if stopping <= a.sent <= starting and a.status != 503),
        default=None,
    )
    recovered = {}
    for server in pair.servers:
        after = [a for a in answers if a.server == server.name and a.sent >= starting]
        wrong = [a for a in after if not right(a)]
        recovered[server.name] = max((a.done for a in wrong), default=starting) - up
        assert after and right(after[-1]), f"{server.name} not answering correctly again"
        assert [a for a in after if a.sent > up + recovered[server.name]], server.name
    longest_503 = max((a.done - a.sent for a in answers if a.status == 503), default=0.0)
    print(
        f"outage: PostgreSQL stopped in {down - stopping:.2f} s, down {starting - down:.2f} s, "
        f"started in {up - starting:.2f} s; {len(answers)} answers {dict(statuses)}; "
        f"{len(outage)} during the outage, the slowest 503 took {longest_503 * 1000:.0f} ms; "
        "last answer from memory "
        + (f"{last_served * 1000:.0f} ms after the stop" if last_served is not None else "none")
        + "; correct again "
        + ", ".join(f"{name} {value:.2f} s" for name, value in recovered.items())
        + " after PostgreSQL was up"
    )
    assert not odd, f"unexpected answers: {odd[:5]}"
    assert not before, f"wrong answers before the outage: {before[:5]}"
    assert outage and not not_503, f"answers other than 503 during the outage: {not_503[:5]}"
    assert not slow_503, f"503s that took a second or more: {slow_503[:5]}"
    assert all(value < 5 for value in recovered.values()), recovered
    assert [server.apache.master_pid() for server in pair.servers] == masters
    for server in pair.servers:
        log = server.error_log()[marks[server.name] :]
        lines = [line for line in log.splitlines() if line.strip()]
        assert "Traceback" not in log
        broken = [line for line in lines if not line.startswith("[")]
        assert not broken, f"{server.name}: log entries over several lines: {broken[:5]}"
        unreachable = [line for line in lines if "unreachable" in line or "cannot" in line]
        assert unreachable, f"{server.name}: the 503s were not logged"
        print(f"{server.name} error log during the outage: {len(lines)} lines, e.g. {lines[-1]}")


def right(answer: Answer) -> bool:
    return answer.status == (200 if answer.granted else 403)
