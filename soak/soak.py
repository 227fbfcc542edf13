"""make soak: imageguard under load while the rights change, against a real Apache.

For each MPM (event, prefork) it builds a site like a deployment of imageguard's
default one-phase configuration (the gatekeeper block ``imageguard.apache.apacheconf``
writes): an image tree of small JPEGs, an ACL store, real mod_python FileSession
logins made by an application (``apps/soaklogin.py``) at ``/app``, the images at
``/images`` (logins from those sessions) and again at ``/tkt`` (logins from auth_tkt
tickets), renditions on. Every worker of the server first serves a few requests at
once (a prefork child imports imageguard and Pillow at its first one), the clients run
for ``--warmup`` seconds, and then, for ``--seconds``:

* ``--clients`` keep-alive connections ask for images as fast as they are answered:
  sessions, tickets and anonymous visitors, originals and ``?v=preview`` / ``?v=thumb``,
  mostly about the users and albums the writer changes (see ``soakclient.py``);
* a writer changes the store every ``--write-interval`` seconds through the store API
  (grant, revoke, group membership added and removed, ``revoke_user``), logging each
  write with the moment it started and the moment it returned; a user whose tickets were
  revoked logs in again (a fresh ticket) a moment later;
* ``apache2 -k graceful`` restarts the server in the middle of the run.

Afterwards every answer is checked against a model of the store (``soakmodel.py``),
with imageguard's own decision code: it must be the answer of a state of the store
between the one in effect when the request was sent (every write returned by then) and
the last one a write in flight during the request led to. The run passes with no wrong
decision, no unexpected status (no 5xx), no failed connection (across the restart too),
at least one revocation checked by a request sent after it returned, no crashed Apache
child, and the store equal to the model at the end. It prints a summary per MPM, writes
``results/<stamp>-<mpm>.json``, and exits with 1 if any run failed.

    .venv/bin/python soak/soak.py                      # both MPMs, 64 clients, 60 s each
    .venv/bin/python soak/soak.py --mpm prefork --seconds 20 --clients 16
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing
import os
import random
import re
import shlex
import shutil
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import soakclient  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from soakclient import (  # noqa: E402
    ANON_SESSION_SITE,
    KIND_NAMES,
    SESSION,
    TICKET,
    Classifier,
    HttpConnection,
    JpegMaker,
    Plan,
    Record,
)
from soakmodel import (  # noqa: E402
    OPS,
    REFUSED,
    AclModel,
    BlindToGrants,
    CheckResult,
    Login,
    Observation,
    Write,
    check,
)

from imageguard.apache.apacheconf import SiteConfig, directory_block  # noqa: E402
from imageguard.files.renditions import fitted_size  # noqa: E402
from imageguard.policy.levels import Level  # noqa: E402
from imageguard.store import AclStore  # noqa: E402
from imageguard_devtools.localserver import (  # noqa: E402
    ApacheConfig,
    LocalApache,
    machine_facts,
    make_workdir,
    prepare_site,
)

APPS = HERE / "apps"
RESULTS = HERE / "results"
SECRET = "soak-ticket-secret-0123456789abcdef"
#: The originals' size, and the renditions' long sides (so the three tell apart by size).
ORIGINAL = (320, 240)
THUMB_SIZE = 48
PREVIEW_SIZE = 160
GROUPS = 10
ALBUM_SIZE = 100


def capacity(clients: int) -> int:
    """Workers the server gets (prefork children, event threads): a quarter more than
    clients, at least 4 more."""
    return clients + max(4, clients // 4)


#: Threads per client process (Python's GIL: several processes keep 64 connections busy).
THREADS_PER_PROCESS = 16


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="soak.py",
        description=(
            "Soak imageguard under changing rights: concurrent clients against a real "
            "Apache + mod_python while a writer changes the ACL store and Apache restarts "
            "gracefully; every answer is checked against the store's state when it was "
            "asked (allowing only for writes still in flight)."
        ),
        epilog=(
            "Exit status 0 when every run passed, 1 when one found a wrong decision, an "
            "unexpected status, a failed connection or another problem (listed). "
            "Example: soak.py --mpm event --clients 16 --seconds 20"
        ),
    )
    parser.add_argument(
        "--mpm",
        choices=["event", "prefork", "both"],
        default="both",
        help="the MPM of each run, or both in turn (default: both)",
    )
    parser.add_argument(
        "--clients", type=int, default=64, help="concurrent keep-alive connections (default: 64)"
    )
    parser.add_argument(
        "--seconds", type=float, default=60, help="length of each run (default: 60)"
    )
    parser.add_argument(
        "--users",
        type=int,
        default=500,
        help="users, each with a session and a ticket (default: 500)",
    )
    parser.add_argument(
        "--images", type=int, default=10_000, help="images in the tree (default: 10000)"
    )
    parser.add_argument(
        "--write-interval",
        type=float,
        default=0.1,
        metavar="SECONDS",
        help="time between two writes to the ACL store (default: 0.1)",
    )
    parser.add_argument(
        "--no-graceful", action="store_true", help="no apache2 -k graceful in the middle"
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS,
        help="where the JSON results go (default: soak/results)",
    )
    parser.add_argument(
        "--client-processes",
        type=int,
        default=0,
        metavar="N",
        help=f"processes the clients are spread over (default: one per {THREADS_PER_PROCESS})",
    )
    parser.add_argument(
        "--lookback",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how long after a revocation a request counts as checking it (default: 1)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=3,
        metavar="SECONDS",
        help="the clients' run before the writer starts, not in the rates (default: 3)",
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="seed of every random choice (default: 1)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (its path is printed)"
    )
    args = parser.parse_args(argv)
    if args.warmup < 0:
        parser.error("--warmup cannot be negative")
    if args.clients < 1 or args.seconds <= 0 or args.users < 1 or args.images < 10:
        parser.error("--clients, --seconds, --users must be positive, --images at least 10")
    if args.write_interval <= 0:
        parser.error("--write-interval must be positive")
    return args


# --------------------------------------------------------------------------- the site


def base_jpeg() -> bytes:
    """The one JPEG every image of the tree is made from (with a comment of its own)."""
    width, height = ORIGINAL
    image = Image.linear_gradient("L").resize(ORIGINAL)
    image = Image.merge("RGB", (image, image.transpose(Image.Transpose.ROTATE_180), image))
    draw = ImageDraw.Draw(image)
    draw.ellipse((width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=(200, 60, 40))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


@dataclass
class Tree:
    """The images: ``users/NAME/me0.jpg`` and ``me1.jpg`` for the first users, then
    albums of 100, ``albums/a000/p000.jpg``..."""

    relpaths: list[str]
    albums: list[str]
    album_images: dict[str, list[int]]
    own_images: list[list[int]]
    jpeg: bytes


def make_tree(root: Path, count: int, users: Sequence[str]) -> Tree:
    jpeg = base_jpeg()
    maker = JpegMaker(jpeg)
    relpaths: list[str] = []
    own: list[list[int]] = [[] for _ in users]
    own_count = min(2 * len(users), count // 5)
    for n in range(own_count):
        own[n // 2].append(len(relpaths))
        relpaths.append(f"users/{users[n // 2]}/me{n % 2}.jpg")
    albums: dict[str, list[int]] = {}
    for n in range(count - own_count):
        album = f"a{n // ALBUM_SIZE:03d}"
        albums.setdefault(album, []).append(len(relpaths))
        relpaths.append(f"albums/{album}/p{n % ALBUM_SIZE:03d}.jpg")
    made: set[Path] = set()
    for relpath in relpaths:
        path = root / relpath
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_bytes(maker.image(relpath))
    return Tree(relpaths, list(albums), albums, own, jpeg)


@dataclass
class People:
    """Users, their login groups, and the ones the writer keeps changing."""

    users: list[str]
    login_groups: list[tuple[str, ...]]
    hot_users: list[int]
    hot_albums: list[str]
    hot_images: list[int]


def make_people(n_users: int, tree: Tree) -> People:
    width = max(3, len(str(n_users - 1)))
    users = [f"u{n:0{width}d}" for n in range(n_users)]
    login_groups: list[tuple[str, ...]] = [
        (f"g{n % GROUPS}", "admins") if n % 50 == 7 else (f"g{n % GROUPS}",) for n in range(n_users)
    ]
    hot_users = list(range(min(n_users, max(5, round(n_users * 0.08)))))
    hot_albums = tree.albums[:8]
    hot_images = [i for album in hot_albums for i in tree.album_images[album][:5]]
    return People(users, login_groups, hot_users, hot_albums, hot_images)


def initial_acl(
    tree: Tree, people: People, rng: random.Random
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """The store at the start: (rules, memberships)."""
    users = people.users
    rules: dict[tuple[str, str], str] = {
        ("albums/", "authenticated"): "thumb",
        ("users/{user}/**", "authenticated"): "full",
        ("users/", "group:admins"): "preview",
    }
    if tree.albums:
        first = tree.albums[0]
        rules[(f"albums/{first}/", "anyone")] = "thumb"
        rules[(tree.relpaths[tree.album_images[first][0]], "anyone")] = "full"
    for k, album in enumerate(tree.albums):
        rules[(f"albums/{album}/", f"group:g{k % GROUPS}")] = "preview"
        images = tree.album_images[album]
        for index in rng.sample(images, min(len(images), 5)):
            exact = tree.relpaths[index]
            principal, level = rng.choice(
                [
                    ("authenticated", "deny"),
                    (f"user:{rng.choice(users)}", "full"),
                    (f"group:g{rng.randrange(GROUPS)}", "full"),
                    ("anyone", "preview"),
                ]
            )
            rules[(exact, principal)] = level
    for album in people.hot_albums:
        user = users[rng.choice(people.hot_users)]
        rules[(f"albums/{album}/*.jpg", f"user:{user}")] = "full"
    members = {(f"g{(3 * n + 1) % GROUPS}", user) for n, user in enumerate(users)}
    members |= {(f"g{rng.randrange(GROUPS)}", users[n]) for n in people.hot_users}
    return (
        sorted((pattern, principal, level) for (pattern, principal), level in rules.items()),
        sorted(members),
    )


def export_text(rules: list[tuple[str, str, str]], members: list[tuple[str, str]]) -> str:
    lines = [f"rule {shlex.quote(p)} {who} {level}" for p, who, level in rules]
    lines += [f"member {group} {user}" for group, user in members]
    return "\n".join(lines) + "\n"


def site_body(workdir: Path, db: Path, sessions: Path, secrets: Path, cache: Path) -> str:
    """The Apache configuration: both sites as ``imageguard apache-conf`` writes them, and
    the login application."""
    root = workdir / "images"
    common = {
        "acl_db": str(db),
        "cache_dir": str(cache),
        "thumb_size": THUMB_SIZE,
        "preview_size": PREVIEW_SIZE,
        "login_url": "/app/login",
    }
    by_session = SiteConfig(
        root=str(root),
        url_path="/images",
        session_type="FileSession",
        session_directory=str(sessions),
        **common,  # type: ignore[arg-type]
    )
    by_ticket = SiteConfig(
        root=str(workdir / "tkt"),  # a link to the same tree: one <Directory> per site
        url_path="/tkt",
        session_source="auth_tkt",
        tkt_secret_file=str(secrets),
        **common,  # type: ignore[arg-type]
    )
    return f"""
DocumentRoot {workdir / "docroot"}
<Directory {workdir / "docroot"}>
    Require all granted
</Directory>
{directory_block(by_session)}
{directory_block(by_ticket)}
Alias /app {workdir / "app"}
<Directory {workdir / "app"}>
    Require all granted
    SetHandler mod_python
    PythonHandler soaklogin
    PythonPath "[{str(APPS)!r}] + sys.path"
    PythonOption mod_python.session.application_path /
    PythonOption mod_python.session.session_type FileSession
    PythonOption mod_python.file_session.database_directory {sessions}
</Directory>
"""


@dataclass
class Site:
    workdir: Path
    db: Path
    server: LocalApache
    tree: Tree
    people: People
    model: AclModel  # the store as built


@contextmanager
def running_site(mpm: str, args: argparse.Namespace, rng: random.Random) -> Iterator[Site]:
    """Build the tree, the store and the configuration; yield the running server."""
    workdir = make_workdir(f"imageguard-soak-{mpm}-")
    try:
        root = workdir / "images"
        root.mkdir()
        width = max(3, len(str(args.users - 1)))
        tree = make_tree(root, args.images, [f"u{n:0{width}d}" for n in range(args.users)])
        people = make_people(args.users, tree)
        (workdir / "tkt").symlink_to(root)
        (workdir / "app").symlink_to(APPS)
        (workdir / "docroot").mkdir()
        state = workdir / "state"
        sessions = state / "sessions"
        sessions.mkdir(parents=True)
        cache = state / "cache"
        cache.mkdir()
        db = state / "acl.db"
        rules, members = initial_acl(tree, people, rng)
        with AclStore.create(db) as store:
            store.import_text(export_text(rules, members), replace=True)
        secrets = prepare_site([workdir, APPS], state, SECRET)
        config = ApacheConfig(
            workdir=workdir / "apache",
            body=site_body(workdir, db, sessions, secrets, cache),
            mpm=mpm,
            # prefork: every child there from the start (MinSpareServers is StartServers:
            # fewer would make Apache start new, cold children during the run).
            start_servers=capacity(args.clients) if mpm == "prefork" else 2,
            prefork_max_request_workers=capacity(args.clients),
            # event: ServerLimit is max_processes, twice what the clients need, so that a
            # graceful restart finds free slots while the old processes finish.
            threads_per_child=25,
            max_processes=max(4, 2 * math.ceil(capacity(args.clients) / 25)),
        )
        with LocalApache(config) as server:
            yield Site(workdir, db, server, tree, people, AclModel(rules, members))
    finally:
        if args.keep:
            print(f"  work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def log_in(site: Site) -> list[str]:
    """A real mod_python session per user, made by the application; their ids."""
    conn = HttpConnection(site.server.port)
    sids = []
    try:
        for user, groups in zip(site.people.users, site.people.login_groups):
            query = f"user={user}&groups={','.join(groups)}"
            request = f"GET /app/login?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
            _sent, _received, status, body, _retried = conn.exchange(request)
            sid = body.decode(errors="replace").strip()
            if status != 200 or not re.fullmatch(r"[0-9a-f]{32}", sid):
                raise RuntimeError(f"login of {user}: {status} {sid[:300]!r}")
            sids.append(sid)
    finally:
        conn.close()
    return sids


def make_plan(site: Site, sids: list[str]) -> Plan:
    tree, people = site.tree, site.people
    sizes = {
        int(Level.FULL): ORIGINAL,
        int(Level.PREVIEW): fitted_size(*ORIGINAL, PREVIEW_SIZE),
        int(Level.THUMB): fitted_size(*ORIGINAL, THUMB_SIZE),
    }
    return Plan(
        port=site.server.port,
        users=tuple(people.users),
        login_groups=tuple(people.login_groups),
        sids=tuple(sids),
        secret=SECRET,
        relpaths=tuple(tree.relpaths),
        base_jpeg=tree.jpeg,
        sizes=sizes,
        hot_users=tuple(people.hot_users),
        hot_images=tuple(people.hot_images),
        hot_album_images=tuple(i for a in people.hot_albums for i in tree.album_images[a]),
        own_images=tuple(tuple(found) for found in tree.own_images),
    )


# --------------------------------------------------------------------------- the writer


class Writer(threading.Thread):
    """Changes the store every *interval* seconds from *start_at* to *end_at*, and logs
    each write (:class:`soakmodel.Write`). Users whose tickets it revoked log in again
    (a ticket stamped after the revocation) 0.2 to 1.5 s later."""

    def __init__(
        self,
        site: Site,
        stamps: Any,
        rng: random.Random,
        interval: float,
        start_at: float,
        end_at: float,
    ) -> None:
        super().__init__(name="soak-writer", daemon=True)
        self.db = site.db
        self.model = site.model.copy()
        self.stamps = stamps
        self.rng = rng
        self.interval = interval
        self.start_at = start_at
        self.end_at = end_at
        people, tree = site.people, site.tree
        self.users = people.users
        self.hot_users = people.hot_users
        self.patterns: list[str] = [f"albums/{a}/" for a in people.hot_albums]
        self.patterns += [f"albums/{a}/*.jpg" for a in people.hot_albums]
        self.patterns += [tree.relpaths[i] for i in people.hot_images]
        self.patterns += [f"users/{people.users[n]}/" for n in people.hot_users]
        self.pool = set(self.patterns) | {"albums/"}
        self.principals = [f"user:{people.users[n]}" for n in people.hot_users]
        self.groups = [f"g{n}" for n in range(GROUPS)]
        self.writes: list[Write] = []
        self.errors: list[str] = []
        self.reissued = 0
        self._pending: dict[int, tuple[float, int]] = {}  # user -> (when, new stamp)

    def run(self) -> None:
        try:
            store = AclStore(self.db)
        except Exception as exc:
            self.errors.append(f"cannot open the store: {exc}")
            return
        with store:
            slot = 0
            while True:
                due = self.start_at + slot * self.interval
                if due >= self.end_at:
                    break
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                slot += 1
                self._log_in_again()
                op, args = self._choose()
                started = time.monotonic()
                try:
                    if op == "revoke_user":
                        moment = store.revoke_user(args[0], int(args[1]))
                        args = (args[0], str(moment))
                    else:
                        getattr(store, op)(*args)
                except Exception as exc:
                    self.errors.append(f"{op} {' '.join(args)}: {type(exc).__name__}: {exc}")
                    continue
                write = Write(op, args, started, time.monotonic())
                self.model.apply(write)
                self.writes.append(write)
                if op == "revoke_user":
                    user = self.users.index(args[0])
                    later = write.returned + self.rng.uniform(0.2, 1.5)
                    self._pending[user] = (later, int(args[1]) + 1)

    def _log_in_again(self) -> None:
        now = time.monotonic()
        for user, (when, stamp) in list(self._pending.items()):
            if when <= now:
                self.stamps[user] = stamp
                self.reissued += 1
                del self._pending[user]

    def _choose(self) -> tuple[str, tuple[str, ...]]:
        rng, model = self.rng, self.model
        r = rng.random()
        if 0.35 <= r < 0.65:
            ours = [(p, who) for p, who, _level in model.rules() if p in self.pool]
            if ours:
                return "revoke", rng.choice(ours)
        elif 0.65 <= r < 0.85:
            name = self.users[rng.choice(self.hot_users)]
            mine = sorted(model.groups_of(name))
            if r >= 0.75 and mine:
                return "remove_member", (rng.choice(mine), name)
            others = [g for g in self.groups if g not in mine]
            if others:
                return "add_member", (rng.choice(others), name)
        elif r >= 0.85:
            ready = [
                n
                for n in self.hot_users
                if n not in self._pending
                and self.stamps[n] > (model.revoked_until(self.users[n]) or -1)
            ]
            if ready:
                user = rng.choice(ready)
                until = max(int(time.time()), int(self.stamps[user]))
                return "revoke_user", (self.users[user], str(until))
        pattern = "albums/" if rng.random() < 0.02 else rng.choice(self.patterns)
        r = rng.random()
        if r < 0.35:
            principal = rng.choice(self.principals)
        elif r < 0.7:
            principal = f"group:{rng.choice(self.groups)}"
        elif r < 0.9:
            principal = "authenticated"
        else:
            principal = "anyone"
        return "grant", (pattern, principal, rng.choice(["full", "preview", "thumb", "deny"]))


class Restarter(threading.Thread):
    """``apache2 -k graceful`` at *at*; records when, how long, which processes."""

    def __init__(self, server: LocalApache, at: float) -> None:
        super().__init__(name="soak-graceful", daemon=True)
        self.server = server
        self.at = at
        self.started = self.returned = 0.0
        self.pids_before: list[int] = []
        self.pids_after: list[int] = []
        self.master = 0
        self.error = ""

    def run(self) -> None:
        pause = self.at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        self.pids_before = self.server.server_pids()
        self.master = self.server.master_pid() or 0
        self.started = time.monotonic()
        try:
            self.server.graceful()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        self.returned = time.monotonic()
        self.pids_after = self.server.server_pids()


# --------------------------------------------------------------------------- measuring


def apache_rss(server: LocalApache) -> dict[str, int]:
    """The resident memory of every process of the server (VmRSS), summed, in kB."""
    sizes = list(server.rss_kb().values())
    return {"total_kb": sum(sizes), "processes": len(sizes), "largest_kb": max(sizes, default=0)}


#: The error-log lines the run causes by design: refusals, and revoked tickets ignored.
EXPECTED_LOG_LINE = re.compile(
    r"imageguard: (denied (user|anonymous)|ignored login cookie: tickets of \S+ issued "
    r"until \d+ were revoked)"
)


def error_log_summary(text: str) -> dict[str, Any]:
    """Apache's error log: lines by module and level, the refusals the run causes by
    design, every other line at level error or above, crashed children, tracebacks."""
    levels: Counter[str] = Counter()
    expected = 0
    other = []
    for line in text.splitlines():
        found = re.match(r"^\[[^\]]*\] \[([^\]]*)\]", line)
        if not found:
            continue
        levels[found.group(1)] += 1
        if re.search(r":(error|crit|alert|emerg)$", found.group(1)):
            if EXPECTED_LOG_LINE.search(line):
                expected += 1
            else:
                other.append(line)
    return {
        "lines_by_level": dict(levels.most_common()),
        "refusals_logged": expected,
        "other_errors": len(other),
        "other_error_examples": other[:10],
        "crashed_children": sum("exit signal" in line for line in text.splitlines()),
        "tracebacks": text.count("Traceback"),
    }


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def warm_children(plan: Plan, connections: int, rng: random.Random) -> float:
    """Open *connections* at once and send a few requests on each while all are open, so
    that every prefork child (one per open connection) has imported imageguard and Pillow
    before the run, as every event thread's process has; returns the seconds it took."""
    opened = threading.Barrier(connections)
    answered = threading.Barrier(connections)
    picks = [soakclient.Chooser(plan, random.Random(rng.random())) for _ in range(connections)]
    problems: list[str] = []
    stamp = int(time.time()) - 5

    def one(chooser: soakclient.Chooser) -> None:
        conn = HttpConnection(plan.port)
        try:
            conn.exchange(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # connected
            opened.wait(timeout=120)
            for _ in range(3):
                kind, user, image, asked = chooser.pick()
                _login, cookie, prefix = _login_for(plan, kind, user, stamp)
                path = f"{prefix}/{plan.relpaths[image]}{soakclient.QUERIES[asked]}"
                request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{cookie}\r\n"
                status = conn.exchange(request.encode())[2]
                if status not in (200, 401, 403):
                    problems.append(f"{path}: {status}")
            answered.wait(timeout=120)
        except Exception as exc:
            problems.append(f"{type(exc).__name__}: {exc}")
            opened.abort()
            answered.abort()
        finally:
            conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=(chooser,)) for chooser in picks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if problems:
        raise RuntimeError(f"warming the server's children: {problems[:5]}")
    return time.monotonic() - started


def preflight(site: Site, plan: Plan, rng: random.Random, count: int = 60) -> None:
    """Before the run: a sample of requests, one at a time, each must be the model's
    answer (a site that does not answer as configured would make the run meaningless)."""
    conn = HttpConnection(plan.port)
    classifier = Classifier(plan)
    chooser = soakclient.Chooser(plan, rng)
    model = site.model
    stamp = int(time.time()) - 5
    try:
        for _ in range(count):
            kind, user, image, asked = chooser.pick()
            login, cookie, prefix = _login_for(plan, kind, user, stamp)
            relpath = plan.relpaths[image]
            query = soakclient.QUERIES[asked]
            request = (
                f"GET {prefix}/{relpath}{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Accept: image/*\r\n{cookie}\r\n"
            ).encode()
            _s, _r, status, body, _retried = conn.exchange(request)
            got = classifier.delivered(status, body, relpath)
            want, anonymous = model.expected(login, relpath, asked)
            refusal = 401 if anonymous else 403
            if got != want or (got == REFUSED and status != refusal):
                raise RuntimeError(
                    f"preflight: {login} asked {prefix}/{relpath}{query}: got {status} "
                    f"(delivered {got}), the store says {want} ({refusal} if refused)\n"
                    f"--- error log (tail):\n{site.server.error_log_text()[-3000:]}"
                )
    finally:
        conn.close()


def _login_for(plan: Plan, kind: int, user: int, stamp: int) -> tuple[Login, str, str]:
    from imageguard.identity.tickets import issue_ticket

    if kind == SESSION:
        return (
            Login("session", plan.users[user], frozenset(plan.login_groups[user])),
            f"Cookie: pysid={plan.sids[user]}\r\n",
            plan.session_prefix,
        )
    if kind == TICKET:
        ticket = issue_ticket(
            plan.users[user], plan.login_groups[user], plan.secret, timestamp=stamp
        )
        return (
            Login("ticket", plan.users[user], frozenset(plan.login_groups[user]), stamp),
            f"Cookie: auth_tkt={ticket}\r\n",
            plan.ticket_prefix,
        )
    prefix = plan.session_prefix if kind == ANON_SESSION_SITE else plan.ticket_prefix
    return Login("anonymous"), "", prefix


def observations(plan: Plan, records: Sequence[Record]) -> list[Observation]:
    """The clients' records as the checker reads them (one Login object per login)."""
    logins: dict[tuple[int, int, int], Login] = {}
    found = []
    for sent, received, kind, user, image, asked, stamp, status, delivered, _r, _e in records:
        key = (kind, user, stamp)
        login = logins.get(key)
        if login is None:
            if kind in (SESSION, TICKET):
                login = Login(
                    KIND_NAMES[kind],
                    plan.users[user],
                    frozenset(plan.login_groups[user]),
                    stamp if kind == TICKET else 0,
                )
            else:
                login = Login("anonymous")
            logins[key] = login
        found.append(
            Observation(
                sent, received, login, plan.relpaths[image], Level(asked), status, delivered
            )
        )
    return found


# --------------------------------------------------------------------------- one run


@dataclass
class RunResult:
    mpm: str
    document: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def run_one(mpm: str, args: argparse.Namespace) -> RunResult:
    rng = random.Random(f"{args.seed}-{mpm}")
    result = RunResult(mpm)
    began = time.time()
    print(f"soak mpm_{mpm}: building {args.images:,} images, {args.users} users...", flush=True)
    with running_site(mpm, args, rng) as site:
        server = site.server
        sids = log_in(site)
        stamp0 = int(time.time()) - 5
        plan = make_plan(site, sids)
        preflight(site, plan, random.Random(args.seed))
        slots = capacity(args.clients)
        took = warm_children(plan, slots, random.Random(args.seed))
        print(f"  {slots} connections at once warmed the children: {took:.1f} s", flush=True)
        context = multiprocessing.get_context("fork")
        stamps = context.RawArray("q", [stamp0] * len(plan.users))
        processes = args.client_processes or math.ceil(args.clients / THREADS_PER_PROCESS)
        processes = max(1, min(processes, args.clients))
        rss_before = apache_rss(server)
        log_mark = len(server.error_log_text())
        warm_at = time.monotonic() + 1.0 + 0.1 * processes
        start_at = warm_at + args.warmup
        end_at = start_at + args.seconds
        outputs = [str(site.workdir / f"clients-{n}.pickle") for n in range(processes)]
        workers = []
        for n in range(processes):
            threads = args.clients // processes + (1 if n < args.clients % processes else 0)
            worker = context.Process(
                target=soakclient.run_worker,
                args=(plan, stamps, threads, args.seed * 100 + n, warm_at, end_at, outputs[n]),
                name=f"soak-clients-{n}",
            )
            worker.start()
            workers.append(worker)
        writer_rng = random.Random(f"{args.seed}-writer")
        writer = Writer(site, stamps, writer_rng, args.write_interval, start_at, end_at)
        writer.start()
        restarter = None
        if not args.no_graceful:
            restarter = Restarter(server, start_at + args.seconds / 2)
            restarter.start()
        print(
            f"  running: {args.clients} clients in {processes} process(es), "
            f"{args.warmup:g} s warm-up then {args.seconds:g} s, "
            f"a write every {args.write_interval * 1000:g} ms"
            + ("" if args.no_graceful else f", graceful restart at {args.seconds / 2:g} s"),
            flush=True,
        )
        try:
            for worker in workers:
                worker.join(timeout=args.warmup + args.seconds + soakclient.TIMEOUT_S + 60)
                if worker.exitcode != 0:
                    result.failures.append(f"client process {worker.name}: exit {worker.exitcode}")
        finally:
            for worker in workers:
                if worker.is_alive():
                    worker.terminate()
                    worker.join()
        writer.join()
        if restarter is not None:
            restarter.join()
        rss_after = apache_rss(server)
        pids_end = server.server_pids()
        log = error_log_summary(server.error_log_text()[log_mark:])
        with AclStore(site.db) as store:
            store_state = (
                sorted((r.pattern.text, str(r.principal), r.level.label) for r in store.rules()),
                sorted((m.group, m.user) for m in store.memberships()),
                {what: moment for kind, what, moment in store.revocations() if kind == "user"},
            )
        records, client_cpu = soakclient.merge([o for o in outputs if os.path.exists(o)])
        initial = site.model
    print(f"  checking {len(records):,} answers against {len(writer.writes)} writes...", flush=True)
    checked_at = time.monotonic()
    seen = observations(plan, records)
    found = check(initial, writer.writes, seen, args.lookback)
    check_seconds = time.monotonic() - checked_at
    # The control: the same answers against a model that misses every write giving more
    # must show wrong grants, or this run's check had nothing to catch.
    control = check(initial.copy(BlindToGrants), writer.writes, seen, args.lookback)
    model = writer.model
    model_state = (model.rules(), model.memberships(), model.revocations())
    result.document = report(
        mpm,
        args,
        began,
        records=records,
        found=found,
        writer=writer,
        restarter=restarter,
        start_at=start_at,
        rss=(rss_before, rss_after),
        pids_end=pids_end,
        log=log,
        model_matches=model_state == store_state,
        client_cpu=client_cpu,
        processes=processes,
        check_seconds=check_seconds,
        control=control,
    )
    result.failures += result.document["failures"]
    result.document["failures"] = result.failures
    result.document["passed"] = not result.failures
    return result


def report(mpm: str, args: argparse.Namespace, began: float, **run: Any) -> dict[str, Any]:
    """The result document of one run (also what the summary prints)."""
    records: list[Record] = run["records"]
    found: CheckResult = run["found"]
    writer: Writer = run["writer"]
    restarter: Restarter | None = run["restarter"]
    start_at: float = run["start_at"]
    # Errors count from the warm-up on; rates and latencies over the measured run only.
    every_answer = [r for r in records if r[7] != 0]
    statuses = Counter(r[7] for r in every_answer)
    answered = [r for r in every_answer if r[0] >= start_at]
    delivered = Counter(r[8] for r in answered)
    failed = [r for r in records if r[7] == 0]
    unexpected = {s: n for s, n in statuses.items() if s not in (200, 401, 403)}
    server_errors = sum(n for s, n in unexpected.items() if s >= 500)
    latencies = [(r[1] - r[0]) * 1000 for r in answered]
    timeline = [0] * math.ceil(args.seconds)
    for r in answered:
        second = int(r[0] - start_at)
        if 0 <= second < len(timeline):
            timeline[second] += 1
    names = {3: "full", 2: "preview", 1: "thumb", 0: "refused", -1: "unrecognised", -2: "other"}
    kinds = Counter(KIND_NAMES[r[2]] for r in answered)
    write_ms = [(w.returned - w.started) * 1000 for w in writer.writes]
    revoking = Counter(writer.writes[k].op for k in found.first_checks)
    firsts = [gap * 1000 for gap in found.first_checks.values()]
    graceful: dict[str, Any] = {"done": False}
    if restarter is not None:
        g0, g1 = restarter.started, restarter.returned
        near = [r for r in answered if g0 - 1 <= r[0] <= g1 + 2]
        old = set(restarter.pids_before) - {restarter.master}
        graceful = {
            "done": not restarter.error,
            "error": restarter.error,
            "at_s": round(g0 - start_at, 3),
            "took_s": round(g1 - g0, 3),
            "master_kept": restarter.master in run["pids_end"],
            "children_before": len(old),
            "processes_after_run": len(run["pids_end"]),
            "old_children_left_after_run": len(old & set(run["pids_end"])),
            "answered_from_1s_before_to_2s_after": len(near),
            "max_latency_ms_then": round(max(((r[1] - r[0]) * 1000 for r in near), default=0), 1),
            "failed_then": sum(1 for r in failed if g0 - 1 <= r[0] <= g1 + 2),
            "keepalive_resent_then": sum(1 for r in near if r[9]),
        }
    log = run["log"]
    document: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(began)),
        "machine": machine(),
        "mpm": mpm,
        "settings": {
            "clients": args.clients,
            "client_processes": run["processes"],
            "seconds": args.seconds,
            "warmup_s": args.warmup,
            "users": args.users,
            "images": args.images,
            "write_interval_s": args.write_interval,
            "graceful": not args.no_graceful,
            "lookback_s": args.lookback,
            "seed": args.seed,
            "configuration": "one-phase gatekeeper (imageguard.apache.apacheconf.directory_block), "
            f"FileSession at /images, auth_tkt at /tkt, thumb_size {THUMB_SIZE}, "
            f"preview_size {PREVIEW_SIZE}, originals {ORIGINAL[0]}x{ORIGINAL[1]}",
        },
        "requests": {
            "answered": len(answered),
            "answered_during_warmup": len(every_answer) - len(answered),
            "per_second": round(len(answered) / args.seconds, 1),
            "by_login": dict(kinds),
            "by_status": {str(s): n for s, n in sorted(statuses.items())},
            "delivered": {names[d]: n for d, n in sorted(delivered.items(), reverse=True)},
            "keepalive_resent": sum(1 for r in answered if r[9]),
            "answered_each_second": timeline,
        },
        "wrong_decisions": {
            "total": found.wrong,
            "wrong_grants": found.count("wrong grant"),
            "wrong_denials": found.count("wrong denial"),
            "wrong_refusal_status": found.count("wrong refusal status"),
            "unrecognised_bodies": found.count("unrecognised body"),
            "examples": [f.describe(writer.writes) for f in found.findings[:20]],
            "checked": found.checked,
            "with_write_in_flight": found.in_flight,
            "in_flight_and_states_differ": found.ambiguous,
        },
        "errors": {
            "unexpected_statuses": {str(s): n for s, n in sorted(unexpected.items())},
            "unexpected_5xx": server_errors,
            "failed_connections": len(failed),
            "failed_examples": sorted({r[10] for r in failed})[:10],
            "writer_errors": writer.errors[:20],
            "error_log": log,
        },
        "latency_ms": {
            "p50": round(percentile(latencies, 0.50), 2),
            "p90": round(percentile(latencies, 0.90), 2),
            "p99": round(percentile(latencies, 0.99), 2),
            "max": round(max(latencies, default=0), 2),
        },
        "writes": {
            "total": len(writer.writes),
            "by_op": {op: sum(1 for w in writer.writes if w.op == op) for op in OPS},
            "write_ms_p50": round(percentile(write_ms, 0.5), 2),
            "write_ms_max": round(max(write_ms, default=0), 2),
            "tickets_reissued": writer.reissued,
            "model_matches_store_at_end": run["model_matches"],
            "log": [
                [round(w.started - start_at, 4), round(w.returned - start_at, 4), str(w)]
                for w in writer.writes
            ],
        },
        "revocations": {
            "requests_checking_one": found.revocation_checks,
            "writes_checked": len(found.first_checks),
            "writes_checked_by_op": dict(revoking),
            "first_check_after_ms_p50": round(percentile(firsts, 0.5), 2),
            "first_check_after_ms_max": round(max(firsts, default=0), 2),
        },
        "graceful": graceful,
        "rss_kb": {"before": run["rss"][0], "after": run["rss"][1]},
        "client_cpu_us_per_request": round(run["client_cpu"] / max(1, len(records)) * 1e6, 1),
        "check_seconds": round(run["check_seconds"], 1),
        "control_check": {
            "model": "misses every grant of more than deny and every membership added",
            "wrong_grants": run["control"].wrong_grants,
            "wrong_decisions": run["control"].wrong,
            "example": (
                run["control"].findings[0].describe(writer.writes)
                if run["control"].findings
                else ""
            ),
        },
    }
    failures = []
    if found.wrong:
        failures.append(f"{found.wrong} wrong decision(s)")
    if server_errors:
        failures.append(f"{server_errors} unexpected 5xx")
    if len(unexpected) and sum(unexpected.values()) > server_errors:
        failures.append(f"unexpected statuses {unexpected}")
    if failed:
        failures.append(f"{len(failed)} failed connection(s)")
    if writer.errors:
        failures.append(f"{len(writer.errors)} write(s) failed")
    if not run["model_matches"]:
        failures.append("the store at the end is not the model's state")
    if not answered:
        failures.append("no request was answered")
    if not run["control"].wrong_grants:
        failures.append("the control check (a model missing every grant) found no wrong grant")
    if not found.revocation_checks:
        failures.append("no request checked a revocation (nothing proven: run longer)")
    if restarter is not None and restarter.error:
        failures.append(f"graceful restart failed: {restarter.error}")
    if log["crashed_children"]:
        failures.append(f"{log['crashed_children']} Apache child(ren) crashed")
    if log["tracebacks"]:
        failures.append(f"{log['tracebacks']} Python traceback(s) in the error log")
    document["failures"] = failures
    return document


def machine() -> dict[str, Any]:
    found = machine_facts()
    found["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return found


def summary(doc: dict[str, Any]) -> str:
    """The readable summary of one run."""
    s, req, wrong, err = doc["settings"], doc["requests"], doc["wrong_decisions"], doc["errors"]
    lat, writes, rev, g, rss = (
        doc["latency_ms"],
        doc["writes"],
        doc["revocations"],
        doc["graceful"],
        doc["rss_kb"],
    )
    delivered = ", ".join(f"{k} {v:,}" for k, v in req["delivered"].items())
    logins = ", ".join(f"{k} {v:,}" for k, v in req["by_login"].items())
    ops = ", ".join(f"{k} {v}" for k, v in writes["by_op"].items())
    lines = [
        f"mpm_{doc['mpm']}: {s['clients']} clients, {s['seconds']:g} s, {s['users']} users, "
        f"{s['images']:,} images, a write every {s['write_interval_s'] * 1000:g} ms",
        f"  requests answered    {req['answered']:,} ({req['per_second']:,.0f}/s); {logins}",
        f"  delivered            {delivered}",
        f"  wrong decisions      {wrong['total']} (grants {wrong['wrong_grants']}, denials "
        f"{wrong['wrong_denials']}, refusal status {wrong['wrong_refusal_status']}, "
        f"unrecognised bodies {wrong['unrecognised_bodies']}) of {wrong['checked']:,} checked; "
        f"{wrong['with_write_in_flight']:,} had a write in flight, "
        f"{wrong['in_flight_and_states_differ']:,} of them between states that differ",
        f"  errors               5xx {err['unexpected_5xx']}, other unexpected statuses "
        f"{err['unexpected_statuses'] or 'none'}, failed connections "
        f"{err['failed_connections']} (idle keep-alive connections re-sent "
        f"{req['keepalive_resent']}), writer errors {len(err['writer_errors'])}",
        f"  latency              p50 {lat['p50']:.2f} ms, p90 {lat['p90']:.2f} ms, "
        f"p99 {lat['p99']:.2f} ms, max {lat['max']:.1f} ms",
        f"  writes               {writes['total']} ({ops}); took p50 "
        f"{writes['write_ms_p50']:.2f} ms; tickets re-issued {writes['tickets_reissued']}; "
        f"store = model at the end: {'yes' if writes['model_matches_store_at_end'] else 'NO'}",
        f"  revocations          {rev['requests_checking_one']:,} requests sent after a "
        f"revocation returned would have shown the old grant; {rev['writes_checked']} revoking "
        f"writes checked ({rev['writes_checked_by_op']}), the first check "
        f"{rev['first_check_after_ms_p50']:.1f} ms after the write returned (median)",
    ]
    if g.get("done") or g.get("error"):
        lines.append(
            f"  graceful restart     at {g['at_s']:.1f} s, took {g['took_s']:.2f} s"
            + (f", FAILED: {g['error']}" if g["error"] else "")
            + f"; around it: {g['answered_from_1s_before_to_2s_after']:,} answered, "
            f"{g['failed_then']} failed, {g['keepalive_resent_then']} re-sent, max latency "
            f"{g['max_latency_ms_then']:.0f} ms; old children left at the end "
            f"{g['old_children_left_after_run']} of {g['children_before']}"
        )
    lines.append(f"  answered each second {' '.join(map(str, req['answered_each_second']))}")
    lines.append(
        f"  Apache RSS           before {rss['before']['total_kb'] / 1024:.0f} MB "
        f"({rss['before']['processes']} processes), after "
        f"{rss['after']['total_kb'] / 1024:.0f} MB ({rss['after']['processes']} processes)"
    )
    log = err["error_log"]
    lines.append(
        f"  error log            {log['refusals_logged']:,} refusals logged, "
        f"{log['other_errors']} other error lines, crashed children "
        f"{log['crashed_children']}, tracebacks {log['tracebacks']}"
    )
    control = doc["control_check"]
    lines.append(
        f"  control check        a model that misses every grant finds "
        f"{control['wrong_grants']:,} wrong grants in these answers (the check can fail)"
    )
    lines.append(
        f"  client               {doc['client_cpu_us_per_request']:.0f} us CPU a request; "
        f"check took {doc['check_seconds']:.1f} s"
    )
    for example in wrong["examples"][:5]:
        lines.append(f"    {example}")
    for example in err["failed_examples"][:5]:
        lines.append(f"    failed: {example}")
    for example in log["other_error_examples"][:5]:
        lines.append(f"    log: {example[:300]}")
    verdict = "PASS" if not doc["failures"] else "FAIL: " + "; ".join(doc["failures"])
    lines.append(f"  verdict              {verdict}")
    return "\n".join(lines)


def to_json(document: dict[str, Any]) -> str:
    """*document* as indented JSON, each list of plain values on one line."""

    def one_line(found: re.Match[str]) -> str:
        try:
            return json.dumps(json.loads(found.group(0)))
        except ValueError:
            return found.group(0)

    return re.sub(r"\[[^\[\]{}]*\]", one_line, json.dumps(document, indent=1)) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    mpms = ["event", "prefork"] if args.mpm == "both" else [args.mpm]
    started = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    args.results_dir.mkdir(parents=True, exist_ok=True)
    passed = True
    written = []
    for mpm in mpms:
        try:
            result = run_one(mpm, args)
        except Exception as exc:
            traceback.print_exc()
            print(f"soak mpm_{mpm} could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
            passed = False
            continue
        print(summary(result.document), flush=True)
        path = args.results_dir / f"{stamp}-{mpm}.json"
        path.write_text(to_json(result.document))
        written.append(path)
        passed = passed and not result.failures
    for path in written:
        print(f"written: {path}")
    print(f"took {time.time() - started:.0f} s; {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
