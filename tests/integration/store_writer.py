"""A writer of the ACL store that is killed with SIGKILL at random moments, and the model
of the store that its log of acknowledged writes describes (tests/integration/
test_store_safety.py).

The writer logs, one JSON line each, ``{"begin": OP}`` before it starts a write and
``{"ack": SEQ}`` once the write has returned: an acknowledged write was committed; at
most one write (the last begun, not acknowledged) was under way when the kill came,
and it must be in the store entirely or not at all.

Writers are forked from a *zygote* (``python store_writer.py zygote``) that has imported
imageguard once: a kill then lands in imageguard's and SQLite's code, not in the
interpreter's start-up. The zygote reads one JSON command a line on stdin and answers
one JSON line on stdout:

* ``{"run": ARGS}``: fork a writer (see :func:`run_writer`), answer ``{"pid": PID}``;
* ``{"reap": PID}``: wait for that writer to end, answer ``{"status": STATUS}``.

``python store_writer.py cli`` runs ``imageguard`` commands when told (see
:func:`cli_server`).

Its writers use the real code paths: :class:`~imageguard.store.AclStore` directly, and
:func:`imageguard.cli.main` (``grant``, ``revoke``, ``group add|remove``, ``import``), the
code the ``imageguard`` command runs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import shlex
import sqlite3
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import imageguard.cli as cli
import imageguard.store.cached as cached_module
import imageguard.store.sqlite as database_module
import imageguard.store.stamp as stamp_module
from imageguard.policy.acl import Rule
from imageguard.policy.patterns import compile_pattern
from imageguard.policy.principals import check_name
from imageguard.store import AclStore

Op = dict[str, Any]
LEVELS = ("full", "preview", "thumb", "deny")
CREATED_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@dataclass
class StoreState:
    """Everything the store holds that a write can change."""

    rules: dict[tuple[str, str], str] = field(default_factory=dict)
    members: set[tuple[str, str]] = field(default_factory=set)  # (group, user)
    revoked_users: dict[str, int] = field(default_factory=dict)
    revoked_signatures: set[tuple[str, str]] = field(default_factory=set)  # (signature, kind)

    def copy(self) -> StoreState:
        return StoreState(
            dict(self.rules),
            set(self.members),
            dict(self.revoked_users),
            set(self.revoked_signatures),
        )

    def describe_difference(self, other: StoreState) -> str:
        """What *other* has that this state has not, and the reverse (for messages)."""
        parts = []
        for name in ("rules", "members", "revoked_users", "revoked_signatures"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if isinstance(mine, dict):
                mine, theirs = set(mine.items()), set(theirs.items())
            extra, missing = sorted(theirs - mine)[:5], sorted(mine - theirs)[:5]
            if extra or missing:
                parts.append(
                    f"{name}: {len(theirs - mine)} more, e.g. {extra}; "
                    f"{len(mine - theirs)} fewer, e.g. {missing}"
                )
        return "; ".join(parts) or "no difference"


def apply(state: StoreState, op: Op) -> StoreState:
    """The state after *op* (a write as the writer logs it) committed on *state*."""
    new = state.copy()
    kind = op["kind"]
    if kind == "grant":
        new.rules[(op["pattern"], op["principal"])] = op["level"]
    elif kind == "revoke":
        del new.rules[(op["pattern"], op["principal"])]
    elif kind == "member_add":
        new.members.add((op["group"], op["user"]))
    elif kind == "member_remove":
        new.members.remove((op["group"], op["user"]))
    elif kind == "import":
        if op["replace"]:
            new.rules.clear()
            new.members.clear()
        for pattern, principal, level in op["rules"]:
            new.rules[(pattern, principal)] = level
        new.members.update((group, user) for group, user in op["members"])
        for user, until in op.get("revoked_users", []):
            new.revoked_users[user] = max(new.revoked_users.get(user, 0), until)
        new.revoked_signatures.update((sig, "link") for sig in op.get("revoked_links", []))
    elif kind == "revoke_user":
        new.revoked_users[op["user"]] = max(new.revoked_users.get(op["user"], 0), op["until"])
    elif kind == "revoke_link":
        new.revoked_signatures.add((op["signature"], "link"))
    elif kind not in ("create", "upgrade"):  # writes to a scratch store
        raise ValueError(f"unknown write {kind!r}")
    return new


def read_state(path: str) -> StoreState:
    """The store's content, each row checked whole (a half-written row fails here)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")  # one snapshot for all four tables
        state = StoreState()
        for pattern, principal, level, anchor, created_at in conn.execute(
            "SELECT pattern, principal, level, anchor, created_at FROM rules"
        ):
            rule = Rule.parse(pattern, principal, level)
            assert rule.pattern.text == pattern and str(rule.principal) == principal, pattern
            assert level in LEVELS and anchor == compile_pattern(pattern).anchor, (pattern, anchor)
            assert CREATED_AT.fullmatch(created_at), (pattern, created_at)
            state.rules[(pattern, principal)] = level
        for user, group in conn.execute("SELECT user, grp FROM memberships"):
            state.members.add((check_name(group, "group"), check_name(user, "user")))
        for user, until in conn.execute("SELECT user, until FROM revoked_users"):
            assert isinstance(until, int), (user, until)
            state.revoked_users[check_name(user, "user")] = until
        for signature, kind, moment in conn.execute(
            "SELECT signature, kind, revoked_at FROM revoked_signatures"
        ):
            assert signature and kind in ("ticket", "link") and isinstance(moment, int)
            state.revoked_signatures.add((signature, kind))
        conn.execute("COMMIT")
        return state
    finally:
        conn.close()


# -- the writer ------------------------------------------------------------------------


def _pattern(rng: random.Random) -> str:
    folder = f"k{rng.randrange(12)}"
    shape = rng.randrange(6)
    if shape == 0:
        text = f"{folder}/"
    elif shape == 1:
        text = f"{folder}/**/x{rng.randrange(20)}.png"
    elif shape == 2:
        text = f"users/{{user}}/{folder}/**"
    elif shape == 3:
        text = f"{folder}/with space {rng.randrange(20)}.jpg"  # quoted in an import
    else:
        text = f"{folder}/i{rng.randrange(80)}.jpg"
    return compile_pattern(text).text


def _principal(rng: random.Random) -> str:
    return rng.choice(
        ["anyone", "authenticated", f"user:u{rng.randrange(10)}", f"group:g{rng.randrange(6)}"]
    )


def _next_op(rng: random.Random, state: StoreState, seq: int, work: str) -> Op:
    """A random write, valid for *state* (a revoke names a rule that is there)."""
    via = rng.choice(["cli", "api"])
    roll = rng.random()
    if roll < 0.25:
        return {
            "kind": "grant",
            "via": via,
            "pattern": _pattern(rng),
            "principal": _principal(rng),
            "level": rng.choice(LEVELS),
        }
    if roll < 0.38 and state.rules:
        pattern, principal = rng.choice(sorted(state.rules))
        return {"kind": "revoke", "via": via, "pattern": pattern, "principal": principal}
    if roll < 0.48:
        group, user = f"g{rng.randrange(6)}", f"u{rng.randrange(10)}"
        return {"kind": "member_add", "via": via, "group": group, "user": user}
    if roll < 0.55 and state.members:
        group, user = rng.choice(sorted(state.members))
        return {"kind": "member_remove", "via": via, "group": group, "user": user}
    if roll < 0.62:
        return {
            "kind": "revoke_user",
            "via": "api",
            "user": f"u{rng.randrange(10)}",
            "until": rng.randrange(1_600_000_000, 1_900_000_000),
        }
    if roll < 0.66:
        return {"kind": "revoke_link", "via": "api", "signature": f"{rng.getrandbits(128):032x}"}
    # An import: many rules and memberships in one transaction, sometimes replacing all.
    size = rng.choice([20, 150, 600])
    rules = [[_pattern(rng), _principal(rng), rng.choice(LEVELS)] for _ in range(size)]
    members = [[f"g{rng.randrange(6)}", f"u{rng.randrange(10)}"] for _ in range(size // 10)]
    revocations = rng.random() < 0.3  # as a backup holds them
    return {
        "kind": "import",
        "via": rng.choice(["cli", "cli", "api"]),
        "replace": rng.random() < 0.15,
        "rules": rules,
        "members": members,
        "revoked_users": [
            [f"u{rng.randrange(10)}", rng.randrange(1_600_000_000, 1_900_000_000)]
            for _ in range(3 if revocations else 0)
        ],
        "revoked_links": [f"{rng.getrandbits(128):032x}" for _ in range(2 if revocations else 0)],
        "file": os.path.join(work, f"import-{os.getpid()}-{seq}.txt"),
    }


def _cli(db: str, *args: str) -> None:
    status = cli.main(["--db", db, *args])
    if status != 0:
        raise RuntimeError(f"imageguard {' '.join(args)} exited with {status}")


def _perform(op: Op, db: str, store: AclStore) -> None:
    kind, via = op["kind"], op.get("via", "api")
    if kind == "grant":
        if via == "cli":
            _cli(db, "grant", op["pattern"], op["principal"], op["level"])
        else:
            store.grant(op["pattern"], op["principal"], op["level"])
    elif kind == "revoke":
        if via == "cli":
            _cli(db, "revoke", op["pattern"], op["principal"])
        else:
            store.revoke(op["pattern"], op["principal"])
    elif kind in ("member_add", "member_remove"):
        action = "add" if kind == "member_add" else "remove"
        if via == "cli":
            _cli(db, "group", action, op["group"], op["user"])
        elif action == "add":
            store.add_member(op["group"], op["user"])
        else:
            store.remove_member(op["group"], op["user"])
    elif kind == "revoke_user":
        store.revoke_user(op["user"], op["until"])
    elif kind == "revoke_link":
        store.revoke_link(op["signature"])
    elif kind == "import":
        if via == "cli":
            _cli(db, "import", op["file"], *(["--replace"] if op["replace"] else []))
        else:
            with open(op["file"], encoding="utf-8") as handle:
                store.import_text(handle.read(), replace=op["replace"])
    else:
        raise ValueError(f"unknown write {kind!r}")


def import_text_of(op: Op) -> str:
    """The export-format text of an import write."""
    lines = ["# written by store_writer"]
    lines += [f"rule {shlex.quote(p)} {who} {level}" for p, who, level in op["rules"]]
    lines += [f"member {group} {user}" for group, user in op["members"]]
    lines += [f"revoked-user {user} {until}" for user, until in op["revoked_users"]]
    lines += [f"revoked-link {sig} {int(time.time())}" for sig in op["revoked_links"]]
    return "\n".join(lines) + "\n"


def run_writer(args: dict[str, Any]) -> None:
    """Write at random until killed (or *max_seconds* pass), logging to *log*.

    *args*: ``db`` (the store), ``log``, ``work`` (a folder for import files), ``seed``;
    ``scratch`` (a store to create first, or to upgrade with ``upgrade``: its creation
    or upgrade is the first write); ``cache_pages`` (a small page cache on every
    connection, so that a large transaction spills uncommitted pages into the WAL before
    its commit); ``stamp_limit`` (a small one, so the change stamp is often replaced).
    """
    rng = random.Random(args["seed"])
    log = os.open(args["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def emit(record: dict[str, Any]) -> None:
        os.write(log, (json.dumps(record) + "\n").encode())

    if args.get("cache_pages"):
        pages = int(args["cache_pages"])
        connect = database_module._connect

        def small_cache(path: str, *, create: bool) -> sqlite3.Connection:
            conn = connect(path, create=create)
            conn.execute(f"PRAGMA cache_size = {pages}")
            return conn

        database_module._connect = small_cache  # type: ignore[assignment]
    if args.get("stamp_limit"):
        stamp_module.STAMP_LIMIT = int(args["stamp_limit"])
    seq = 0
    if args.get("scratch"):
        kind = "upgrade" if args.get("upgrade") else "create"
        emit({"begin": {"seq": seq, "kind": kind, "path": args["scratch"]}})
        path = args["scratch"]
        (AclStore(path) if kind == "upgrade" else AclStore.create(path)).close()
        emit({"ack": seq})
        seq += 1
    db = args["db"]
    deadline = time.monotonic() + float(args.get("max_seconds", 30))
    with AclStore(db) as store:
        state = StoreState(
            {(r.pattern.text, str(r.principal)): r.level.label for r in store.rules()},
            {(m.group, m.user) for m in store.memberships()},
        )
        while time.monotonic() < deadline:
            op = _next_op(rng, state, seq, args["work"])
            op["seq"] = seq
            if op["kind"] == "import":
                with open(op["file"], "w", encoding="utf-8") as handle:
                    handle.write(import_text_of(op))
            emit({"begin": op})
            try:
                _perform(op, db, store)
            except Exception as exc:
                emit({"error": seq, "message": f"{type(exc).__name__}: {exc}"})
                raise
            emit({"ack": seq})
            state = apply(state, op)
            seq += 1


def read_log(path: str) -> list[dict[str, Any]]:
    """The complete records of a writer's log (a line cut short by the kill is dropped:
    the write it announced had not started)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    return [json.loads(line) for line in lines[:-1]]  # the part after the last newline


# -- the zygote ------------------------------------------------------------------------


def _child(args: dict[str, Any]) -> None:
    code = 1
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)  # the CLI's messages must not reach the zygote's answers
        err = os.open(args["stderr"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(err, 2)
        run_writer(args)
        code = 0
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
    finally:
        os._exit(code)


def zygote() -> None:
    """Fork writers on request (see the module docstring)."""
    for line in sys.stdin:
        command = json.loads(line)
        if "run" in command:
            pid = os.fork()
            if pid == 0:
                _child(command["run"])
            answer: dict[str, int] = {"pid": pid}
        elif "reap" in command:
            _, status = os.waitpid(int(command["reap"]), 0)
            answer = {"status": status}
        else:
            raise ValueError(f"unknown command {command!r}")
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def cli_server() -> None:
    """Run ``imageguard`` commands (its ``main``) when told, at a given moment.

    Says ``ready`` on stdout, then reads one JSON line a command on stdin,
    ``{"at": TIME, "argv": [...]}``, waits until ``time.time()`` is *TIME* and runs the
    command, answering ``{"status": S, "stdout": ..., "stderr": ...}`` as the command
    would have ended on its own: an exception that escapes ``main`` is a traceback on
    stderr and status 1, as Python reports it. Several servers told the same moment run
    their commands at once, without paying for a process start each time.
    ``IMAGEGUARD_TEST_BUSY_TIMEOUT`` (seconds) replaces the store's busy timeout.
    """
    if os.environ.get("IMAGEGUARD_TEST_BUSY_TIMEOUT"):
        for module in (database_module, cached_module):
            module.BUSY_TIMEOUT_S = float(os.environ["IMAGEGUARD_TEST_BUSY_TIMEOUT"])
    print("ready", flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        out, err = io.StringIO(), io.StringIO()
        while time.time() < command["at"]:
            pass
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = cli.main(command["argv"])
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else 1
            except Exception:
                traceback.print_exc()
                status = 1
        answer = {"status": status, "stdout": out.getvalue(), "stderr": err.getvalue()}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["zygote"]:
        zygote()
    elif sys.argv[1:] == ["cli"]:
        cli_server()
    else:
        sys.exit("usage: store_writer.py zygote|cli")
