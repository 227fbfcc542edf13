"""The ACL store: rules and group memberships in one SQLite file.

Why SQLite, and how it is used:

* WAL mode, so that Apache's readers never block a writer (the CLI, the application's
  grant on upload) and a writer never blocks them;
* a busy timeout, so that two writers queue instead of failing;
* every write in one ``BEGIN IMMEDIATE`` transaction: a failed import or a bad rule
  changes nothing;
* ``PRAGMA user_version`` holds the schema version, checked on every open;
* each rule is stored with its *anchor* (see :func:`imageguard.patterns.anchors_for`),
  indexed, so the rules that can match a path come back from one indexed query, however
  many rules the store holds.

:class:`AclStore` is the read-write API for the CLI and for applications.
:class:`CachedAcl` is the read side used inside Apache: it keeps what it read in memory
and asks SQLite only whether anything changed (``PRAGMA data_version``, answered from
shared memory), so an unchanged store costs no query, and a change made by any other
connection is seen by the very next request.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .acl import Decision, Rule, decide
from .errors import ImportFormatError, NoSuchRule, RuleError, StoreError
from .levels import Level
from .patterns import anchors_for, compile_pattern
from .principals import Identity, check_name, parse_principal

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 5.0

_SCHEMA = """
CREATE TABLE rules (
    pattern    TEXT NOT NULL,
    principal  TEXT NOT NULL,
    level      TEXT NOT NULL CHECK (level IN ('full', 'preview', 'thumb', 'deny')),
    anchor     TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    PRIMARY KEY (pattern, principal)
);
CREATE INDEX rules_by_anchor ON rules (anchor);
CREATE TABLE memberships (
    user TEXT NOT NULL,
    grp  TEXT NOT NULL,
    PRIMARY KEY (user, grp)
);
"""


@functools.lru_cache(maxsize=65536)
def _rule_from_row(pattern: str, principal: str, level: str) -> Rule:
    """Rebuild a rule from its stored text; compiled patterns are shared between paths."""
    return Rule.parse(pattern, principal, level)


def _connect(path: str, *, create: bool) -> sqlite3.Connection:
    """Open *path*; unless *create*, a missing file is an error, never a new empty store."""
    mode = "rwc" if create else "rw"
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode={mode}"
    try:
        try:
            conn = sqlite3.connect(
                uri,
                uri=True,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.OperationalError:
            if create or not os.path.exists(path):
                raise
            # Readable but not writable (e.g. Apache's user): read-only is enough to decide.
            uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
            conn = sqlite3.connect(
                uri,
                uri=True,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    except sqlite3.Error as exc:
        if not create and not os.path.exists(path):
            raise StoreError(f"ACL store {path} does not exist: run 'imageguard init'") from None
        raise StoreError(f"cannot open ACL store {path}: {exc}") from None
    return conn


def _schema_version(conn: sqlite3.Connection, path: str) -> int:
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not an imageguard ACL store: {exc}") from None


def _match_owner(path: str) -> None:
    """When root writes a store owned by another user (Apache's), give it the side files.

    SQLite creates ``-wal`` and ``-shm`` next to the database as whoever opens it first;
    if that is root, Apache's user could no longer use them.
    """
    if os.geteuid() != 0:
        return
    try:
        owner = os.stat(path)
    except OSError:
        return
    if owner.st_uid == 0:
        return
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(OSError):
            side = os.stat(path + suffix)
            if side.st_uid != owner.st_uid:
                os.chown(path + suffix, owner.st_uid, owner.st_gid)


@dataclass(frozen=True)
class Membership:
    """A user's membership of a group, kept in the store."""

    group: str
    user: str


@dataclass(frozen=True)
class ImportSummary:
    """What an import did."""

    rules: int
    memberships: int
    replaced: bool


class AclStore:
    """Read-write access to an ACL store (the CLI's and applications' API).

    Open an existing store with ``AclStore(path)``; create one with
    :meth:`AclStore.create`. Methods raise :class:`~imageguard.errors.RuleError` for a
    malformed rule and :class:`~imageguard.errors.StoreError` for everything about the file.
    The object may be shared between threads.
    """

    def __init__(self, path: str | os.PathLike[str], *, _create: bool = False) -> None:
        self.path = os.fspath(path)
        self._lock = threading.RLock()
        self._conn = _connect(self.path, create=_create)
        if _create:
            self._initialise()
        version = _schema_version(self._conn, self.path)
        if version != SCHEMA_VERSION:
            self._conn.close()
            if version == 0:
                raise StoreError(f"{self.path} is not an imageguard ACL store (no schema)")
            raise StoreError(
                f"{self.path} has schema version {version}; this imageguard reads version "
                f"{SCHEMA_VERSION}"
            )
        _match_owner(self.path)

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> AclStore:
        """Create a new, empty store at *path* (an existing store is opened unchanged)."""
        return cls(path, _create=True)

    def _initialise(self) -> None:
        if _schema_version(self._conn, self.path) != 0:
            return
        has_tables = self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if has_tables:
            raise StoreError(f"{self.path} is an SQLite file of another program; not touched")
        self._conn.execute("PRAGMA journal_mode = WAL")
        with self._transaction() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- plumbing ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it commits, or none of it."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write ACL store {self.path}: {exc}") from None
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise StoreError(f"cannot write ACL store {self.path}: {exc}") from None
        _match_owner(self.path)

    def _query(self, sql: str, params: Iterable[object] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read ACL store {self.path}: {exc}") from None

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> AclStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- rules ------------------------------------------------------------------------

    def grant(self, pattern: str, principal: str, level: str | Level) -> Rule:
        """Give *principal* *level* on *pattern*, replacing the level it had there."""
        rule = Rule.parse(pattern, principal, str(level))
        with self._transaction() as conn:
            self._put_rule(conn, rule)
        return rule

    @staticmethod
    def _put_rule(conn: sqlite3.Connection, rule: Rule) -> None:
        conn.execute(
            "INSERT INTO rules (pattern, principal, level, anchor) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (pattern, principal) DO UPDATE SET level = excluded.level",
            (rule.pattern.text, str(rule.principal), rule.level.label, rule.pattern.anchor),
        )

    def revoke(self, pattern: str, principal: str) -> None:
        """Remove the rule for *principal* on *pattern*; :class:`NoSuchRule` if there is none."""
        text = compile_pattern(pattern).text
        who = str(parse_principal(principal))
        with self._transaction() as conn:
            gone = conn.execute(
                "DELETE FROM rules WHERE pattern = ? AND principal = ?", (text, who)
            ).rowcount
        if not gone:
            raise NoSuchRule(f"no rule for {who} on {text}")

    def rules(self) -> list[Rule]:
        """Every rule, ordered by pattern then principal."""
        rows = self._query(
            "SELECT pattern, principal, level FROM rules ORDER BY pattern, principal"
        )
        return [_rule_from_row(*row) for row in rows]

    def candidates(self, relpath: str) -> list[Rule]:
        """The rules that could match *relpath* (found by anchor; matching is up to the caller)."""
        anchors = anchors_for(relpath)
        marks = ",".join("?" * len(anchors))
        rows = self._query(
            f"SELECT pattern, principal, level FROM rules WHERE anchor IN ({marks})", anchors
        )
        return [_rule_from_row(*row) for row in rows]

    # -- groups -----------------------------------------------------------------------

    def add_member(self, group: str, user: str) -> None:
        """Make *user* a member of *group* (no error when already a member)."""
        check_name(group, "group")
        check_name(user, "user")
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO memberships (user, grp) VALUES (?, ?)", (user, group)
            )

    def remove_member(self, group: str, user: str) -> None:
        """Remove *user* from *group*; :class:`NoSuchRule` when not a member."""
        with self._transaction() as conn:
            gone = conn.execute(
                "DELETE FROM memberships WHERE user = ? AND grp = ?", (user, group)
            ).rowcount
        if not gone:
            raise NoSuchRule(f"{user} is not a member of group {group}")

    def groups_of(self, user: str) -> frozenset[str]:
        """The groups the store makes *user* a member of."""
        rows = self._query("SELECT grp FROM memberships WHERE user = ?", (user,))
        return frozenset(row[0] for row in rows)

    def memberships(self) -> list[Membership]:
        """Every membership, ordered by group then user."""
        rows = self._query("SELECT grp, user FROM memberships ORDER BY grp, user")
        return [Membership(*row) for row in rows]

    # -- decisions --------------------------------------------------------------------

    def decide(self, relpath: str, identity: Identity) -> Decision:
        """What *identity* (plus its groups from the store) may see of *relpath*."""
        if identity.user is not None:
            identity = identity.with_groups(self.groups_of(identity.user))
        return decide(self.candidates(relpath), relpath, identity)

    # -- export / import --------------------------------------------------------------

    def export_text(self) -> str:
        """The whole store as text that :meth:`import_text` reads back."""
        lines = [
            "# imageguard ACL export",
            "# rule PATTERN PRINCIPAL LEVEL | member GROUP USER   (shell-style quoting)",
        ]
        for rule in self.rules():
            lines.append(
                f"rule {shlex.quote(rule.pattern.text)} {rule.principal} {rule.level.label}"
            )
        for membership in self.memberships():
            lines.append(f"member {membership.group} {membership.user}")
        return "\n".join(lines) + "\n"

    def import_text(self, text: str, *, replace: bool = False) -> ImportSummary:
        """Add (or with *replace*, substitute) the rules and memberships in *text*.

        The whole text is checked first; a single bad line raises
        :class:`ImportFormatError` naming it, and nothing is changed.
        """
        rules, members = parse_export(text)
        with self._transaction() as conn:
            if replace:
                conn.execute("DELETE FROM rules")
                conn.execute("DELETE FROM memberships")
            for rule in rules:
                self._put_rule(conn, rule)
            conn.executemany(
                "INSERT OR IGNORE INTO memberships (user, grp) VALUES (?, ?)",
                [(m.user, m.group) for m in members],
            )
        return ImportSummary(len(rules), len(members), replace)


def parse_export(text: str) -> tuple[list[Rule], list[Membership]]:
    """Parse the export format; raise :class:`ImportFormatError` at the first bad line."""
    rules: list[Rule] = []
    members: list[Membership] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            words = shlex.split(stripped)
            if words[0] == "rule" and len(words) == 4:
                rules.append(Rule.parse(words[1], words[2], words[3]))
            elif words[0] == "member" and len(words) == 3:
                members.append(
                    Membership(check_name(words[1], "group"), check_name(words[2], "user"))
                )
            else:
                raise RuleError("expected 'rule PATTERN PRINCIPAL LEVEL' or 'member GROUP USER'")
        except ValueError as exc:
            raise ImportFormatError(f"line {number}: {exc}") from None
    return rules, members


class CachedAcl:
    """The store as Apache's handlers read it: decisions from memory until anything changes.

    One instance per process (it is thread-safe). Each :meth:`decide` checks, without a
    query, whether the store changed since the last call: the file's identity (a
    replaced file is reopened) and SQLite's ``data_version`` (bumped by every commit
    of another connection). Only then are the cached candidates and groups dropped.
    """

    _CANDIDATE_LIMIT = 50_000

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._store: AclStore | None = None
        self._file_id: tuple[int, int] | None = None
        self._data_version: int | None = None
        self._candidates: dict[str, list[Rule]] = {}
        self._groups: dict[str, frozenset[str]] = {}

    def _fresh_store(self) -> AclStore:
        """The open store, reopened if the file was replaced; caches dropped on any change."""
        try:
            st = os.stat(self.path)
        except OSError:
            self._drop()
            raise StoreError(
                f"ACL store {self.path} does not exist: run 'imageguard init'"
            ) from None
        file_id = (st.st_dev, st.st_ino)
        if self._store is None or file_id != self._file_id:
            self._drop()
            self._store = AclStore(self.path)
            self._file_id = file_id
        version = self._store._query("PRAGMA data_version")[0][0]
        if version != self._data_version:
            self._candidates.clear()
            self._groups.clear()
            self._data_version = version
        return self._store

    def _drop(self) -> None:
        if self._store is not None:
            self._store.close()
        self._store = None
        self._file_id = None
        self._data_version = None
        self._candidates.clear()
        self._groups.clear()

    def decide(self, relpath: str, identity: Identity) -> Decision:
        """What *identity* may see of *relpath*, using cached rules when nothing changed."""
        with self._lock:
            store = self._fresh_store()
            rules = self._candidates.get(relpath)
            if rules is None:
                if len(self._candidates) >= self._CANDIDATE_LIMIT:
                    self._candidates.clear()
                rules = self._candidates[relpath] = store.candidates(relpath)
            if identity.user is not None:
                groups = self._groups.get(identity.user)
                if groups is None:
                    groups = self._groups[identity.user] = store.groups_of(identity.user)
                identity = identity.with_groups(groups)
        return decide(rules, relpath, identity)
