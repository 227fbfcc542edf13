"""The ACL store: rules and group memberships in one SQLite file.

Why SQLite, and how it is used:

* WAL mode, so that Apache's readers never block a writer (the CLI, the application's
  grant on upload) and a writer never blocks them;
* a busy timeout, so that two writers queue instead of failing;
* every write in one ``BEGIN IMMEDIATE`` transaction: a failed import or a bad rule
  changes nothing;
* ``PRAGMA user_version`` holds the schema version, checked on every open;
* each rule is stored with its *anchor* (see :func:`imageguard.policy.patterns.anchors_for`),
  indexed, so the rules that can match a path come back from one indexed query, however
  many rules the store holds.

:class:`AclStore` is the read-write API for the CLI and for applications.
:class:`CachedAcl` is the read side used inside Apache: it keeps what it read in memory
and, per request, only looks at the store's *change stamp*: a file beside the store
(``acl.db.changes``) that every committed write through :class:`AclStore` makes one byte
longer. One ``stat`` tells whether anything changed, with no SQLite transaction (whose
shared-memory locks are what many Apache processes would otherwise contend on), so a
change made through the CLI or the API is seen by the very next request. As a safety net
for writes made with other tools, SQLite's ``data_version`` is also checked once a second.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from .errors import ImportFormatError, NoSuchRule, PatternError, RuleError, StoreError
from .files.fileversion import Validator, stat_validator
from .identity.sharelinks import PARAM_SIGNATURE
from .identity.tickets import decode_cookie_value, parse_ticket
from .policy.acl import Decision, Rule, decide
from .policy.levels import Level, parse_level
from .policy.patterns import anchors_for, compile_pattern
from .policy.principals import Identity, check_name, parse_principal
from .support.boundedcache import BoundedCache

_T = TypeVar("_T")

BUSY_TIMEOUT_S = 5.0
STAMP_SUFFIX = ".changes"
#: The change stamp is replaced by an empty one (a new inode) when it grows past this.
STAMP_LIMIT = 1 << 20
#: How often a reader also asks SQLite itself whether anything changed.
SAFETY_CHECK_S = 1.0

#: Each step brings the schema from the version before it to its own number (SQL
#: statements, or a function given the connection); a new store runs them all, an older
#: store the ones it lacks, in one transaction.
_MIGRATIONS: dict[int, tuple[str | Callable[[sqlite3.Connection], None], ...]] = {
    1: (
        """CREATE TABLE rules (
            pattern    TEXT NOT NULL,
            principal  TEXT NOT NULL,
            level      TEXT NOT NULL CHECK (level IN ('full', 'preview', 'thumb', 'deny')),
            anchor     TEXT NOT NULL,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
            PRIMARY KEY (pattern, principal)
        )""",
        "CREATE INDEX rules_by_anchor ON rules (anchor)",
        """CREATE TABLE memberships (
            user TEXT NOT NULL,
            grp  TEXT NOT NULL,
            PRIMARY KEY (user, grp)
        )""",
    ),
    2: (
        # Tickets of `user` stamped at or before `until` (Unix time) are refused.
        "CREATE TABLE revoked_users (user TEXT PRIMARY KEY, until INTEGER NOT NULL)",
        # One ticket, or one share link, by its signature.
        """CREATE TABLE revoked_signatures (
            signature  TEXT PRIMARY KEY,
            kind       TEXT NOT NULL CHECK (kind IN ('ticket', 'link')),
            revoked_at INTEGER NOT NULL
        )""",
    ),
}


def _compose_patterns(conn: sqlite3.Connection) -> None:
    """Version 3: patterns and anchors in Unicode NFC (see imageguard.policy.patterns), so that
    a rule stored as typed in decomposed form is found for the paths it names. Two rules
    that become one keep the lower level: a deny is never lost to the merge."""
    rows = conn.execute("SELECT pattern, principal, level, anchor FROM rules").fetchall()
    for pattern, principal, level, anchor in rows:
        if pattern.isascii():
            continue
        try:
            composed = compile_pattern(pattern)
        except PatternError:  # left as it was: the matcher refuses it as before
            continue
        if composed.text == pattern and composed.anchor == anchor:
            continue
        conn.execute("DELETE FROM rules WHERE pattern = ? AND principal = ?", (pattern, principal))
        found = conn.execute(
            "SELECT level FROM rules WHERE pattern = ? AND principal = ?",
            (composed.text, principal),
        ).fetchone()
        if found is not None:
            level = min(parse_level(level), parse_level(found[0])).label
        conn.execute(
            "INSERT OR REPLACE INTO rules (pattern, principal, level, anchor) VALUES (?, ?, ?, ?)",
            (composed.text, principal, level, composed.anchor),
        )


_MIGRATIONS[3] = (_compose_patterns,)
SCHEMA_VERSION = max(_MIGRATIONS)


@functools.lru_cache(maxsize=65536)
def _rule_from_row(pattern: str, principal: str, level: str) -> Rule:
    """Rebuild a rule from its stored text; compiled patterns are shared between paths."""
    return Rule.parse(pattern, principal, level)


def _open(path: str, mode: str) -> sqlite3.Connection:
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode={mode}"
    return sqlite3.connect(
        uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )


def _connect(path: str, *, create: bool) -> sqlite3.Connection:
    """Open *path*; unless *create*, a missing file is an error, never a new empty store."""
    try:
        try:
            conn = _open(path, "rwc" if create else "rw")
        except sqlite3.OperationalError:
            if create or not os.path.exists(path):
                raise
            # Readable but not writable (e.g. Apache's user): read-only is enough to decide.
            conn = _open(path, "ro")
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    except sqlite3.Error as exc:
        if not create and not os.path.exists(path):
            raise StoreError(f"ACL store {path} does not exist: run 'imageguard init'") from None
        raise StoreError(f"cannot open ACL store {path}: {exc}") from None
    return conn


def _schema_version(conn: sqlite3.Connection, path: str) -> int:
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.OperationalError as exc:  # locked, unreadable: says nothing of its kind
        raise StoreError(f"cannot read ACL store {path}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not an imageguard ACL store: {exc}") from None


def stamp_path(path: str) -> str:
    """The change stamp of the store at *path* (see the module docstring)."""
    return path + STAMP_SUFFIX


def bump_stamp(path: str) -> None:
    """Record one committed change: make the stamp a byte longer (a new, empty one when large).

    Called after the commit, so a reader that sees the new stamp also sees the new data.
    """
    stamp = stamp_path(path)
    try:
        if os.stat(stamp).st_size >= STAMP_LIMIT:
            fresh = stamp + ".new"
            with open(fresh, "wb"):
                pass
            os.replace(fresh, stamp)
    except FileNotFoundError:
        pass
    fd = os.open(stamp, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, b".")
    finally:
        os.close(fd)


def _match_owner(path: str) -> None:
    """When root writes a store owned by another user (Apache's), give it the side files.

    SQLite creates ``-wal`` and ``-shm`` next to the database as whoever opens it first;
    if that is root, Apache's user could no longer use them (the change stamp likewise).
    """
    if os.geteuid() != 0:
        return
    try:
        owner = os.stat(path)
    except OSError:
        return
    if owner.st_uid == 0:
        return
    for suffix in ("-wal", "-shm", STAMP_SUFFIX):
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
    revocations: int = 0


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
        try:
            self._prepare_schema(_create)
        except BaseException:
            self._conn.close()
            raise
        _match_owner(self.path)

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> AclStore:
        """Create a new, empty store at *path* (an existing store is opened unchanged)."""
        return cls(path, _create=True)

    def _prepare_schema(self, create: bool) -> None:
        """Check the schema version; create a new store or upgrade an older one."""
        version = _schema_version(self._conn, self.path)
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, from a newer imageguard; this "
                f"one reads up to version {SCHEMA_VERSION}"
            )
        if version == 0:
            if not create:
                raise StoreError(f"{self.path} is not an imageguard ACL store (no schema)")
            tables = self._query("SELECT count(*) FROM sqlite_master")[0][0]
            # Tables and no version: another program's file, unless another process has
            # just created the store (its tables and version commit together).
            if tables and _schema_version(self._conn, self.path) == 0:
                raise StoreError(f"{self.path} is an SQLite file of another program; not touched")
            self._use_wal()
        try:
            with self._transaction() as conn:
                current = _schema_version(conn, self.path)  # another process may have upgraded
                for step in range(current + 1, SCHEMA_VERSION + 1):
                    for statement in _MIGRATIONS[step]:
                        if callable(statement):
                            statement(conn)
                        else:
                            conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except StoreError as exc:
            if version and "readonly" in str(exc):
                raise StoreError(
                    f"{self.path} has schema version {version}, older than this imageguard's "
                    f"{SCHEMA_VERSION}, and this user may not upgrade it: run "
                    f"'imageguard --db {self.path} rules' once as its owner"
                ) from None
            raise

    def _use_wal(self) -> None:
        """Put a new store in WAL mode. Two processes creating it at the same moment both
        ask for the lock this needs while each holds a read lock, and SQLite then fails one
        at once rather than wait: retry that one for as long as the busy timeout."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise StoreError(f"cannot write ACL store {self.path}: {exc}") from None
            time.sleep(0.01)

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
            except BaseException as exc:
                # SQLite has already rolled back after some errors (a full disk, I/O).
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"cannot write ACL store {self.path}: {exc}") from None
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise StoreError(f"cannot write ACL store {self.path}: {exc}") from None
            try:
                bump_stamp(self.path)
            except OSError as exc:
                raise StoreError(
                    f"the change was saved, but {stamp_path(self.path)} could not be updated "
                    f"({exc.strerror}): Apache sees it within {SAFETY_CHECK_S:g} s"
                ) from None
        _match_owner(self.path)

    @contextlib.contextmanager
    def _one_read(self) -> Iterator[None]:
        """Queries made inside see one state of the store (one read transaction)."""
        with self._lock:
            try:
                self._conn.execute("BEGIN")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read ACL store {self.path}: {exc}") from None
            try:
                yield
            finally:
                if self._conn.in_transaction:  # a read: nothing to lose if this fails
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")

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

    # -- revocations ------------------------------------------------------------------

    def revoke_user(self, user: str, until: int | None = None) -> int:
        """Refuse every ticket of *user* stamped at or before *until* (default: now).

        Returns the moment recorded (a later revocation of the same user only extends it).
        """
        check_name(user, "user")
        moment = int(time.time()) if until is None else int(until)
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO revoked_users (user, until) VALUES (?, ?) "
                "ON CONFLICT (user) DO UPDATE SET until = max(until, excluded.until)",
                (user, moment),
            )
            return int(
                conn.execute("SELECT until FROM revoked_users WHERE user = ?", (user,)).fetchone()[
                    0
                ]
            )

    def revoke_ticket(self, cookie_value: str, digest: str = "sha256") -> str:
        """Refuse one ticket (given as its cookie value, in any dress); returns its digest."""
        signature = parse_ticket(decode_cookie_value(cookie_value), digest).digest
        self._revoke_signature(signature, "ticket")
        return signature

    def revoke_link(self, url_or_signature: str) -> str:
        """Refuse one share link (its URL, or its ``ig_sig`` value); returns the signature."""
        query = urllib.parse.urlsplit(url_or_signature).query
        found = dict(urllib.parse.parse_qsl(query)).get(PARAM_SIGNATURE) if query else None
        signature = found or url_or_signature.strip()
        if not signature or any(c in signature for c in "?&=/ "):
            raise StoreError(f"{url_or_signature!r} is neither a share link nor its signature")
        self._revoke_signature(signature, "link")
        return signature

    def _revoke_signature(self, signature: str, kind: str) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO revoked_signatures (signature, kind, revoked_at) "
                "VALUES (?, ?, ?)",
                (signature, kind, int(time.time())),
            )

    def user_revoked_until(self, user: str) -> int | None:
        """Tickets of *user* stamped at or before this moment are refused (None: none are)."""
        rows = self._query("SELECT until FROM revoked_users WHERE user = ?", (user,))
        return int(rows[0][0]) if rows else None

    def signature_revoked(self, signature: str) -> bool:
        """True when the ticket or share link with this signature was revoked."""
        rows = self._query("SELECT 1 FROM revoked_signatures WHERE signature = ?", (signature,))
        return bool(rows)

    def revocations(self) -> list[tuple[str, str, int]]:
        """Every revocation as (kind, what, moment): kinds ``user``, ``ticket``, ``link``."""
        users = self._query("SELECT 'user', user, until FROM revoked_users ORDER BY user")
        signatures = self._query(
            "SELECT kind, signature, revoked_at FROM revoked_signatures ORDER BY kind, revoked_at"
        )
        return [(str(k), str(w), int(m)) for k, w, m in users + signatures]

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
        with self._one_read():  # the store as one commit left it, whatever commits meanwhile
            rules, memberships = self.rules(), self.memberships()
            revocations = self.revocations()
        for rule in rules:
            lines.append(
                f"rule {shlex.quote(rule.pattern.text)} {rule.principal} {rule.level.label}"
            )
        for membership in memberships:
            lines.append(f"member {membership.group} {membership.user}")
        if revocations:  # a restored backup must not accept what was revoked
            lines.append("# revoked-user USER UNTIL | revoked-ticket|revoked-link SIGNATURE AT")
        for kind, what, moment in revocations:
            lines.append(f"revoked-{kind} {shlex.quote(what)} {moment}")
        return "\n".join(lines) + "\n"

    def import_text(self, text: str, *, replace: bool = False) -> ImportSummary:
        """Add (or with *replace*, substitute) the rules and memberships in *text*.

        The whole text is checked first; a single bad line raises
        :class:`ImportFormatError` naming it, and nothing is changed.
        Revocations are always added, never replaced: an import cannot undo one.
        """
        revocations: list[tuple[str, str, int]] = []
        rules, members = parse_export(text, revocations)
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
            for kind, what, moment in revocations:
                if kind == "user":
                    conn.execute(
                        "INSERT INTO revoked_users (user, until) VALUES (?, ?) "
                        "ON CONFLICT (user) DO UPDATE SET until = max(until, excluded.until)",
                        (what, moment),
                    )
                else:
                    conn.execute(
                        "INSERT OR IGNORE INTO revoked_signatures (signature, kind, revoked_at) "
                        "VALUES (?, ?, ?)",
                        (what, kind, moment),
                    )
        return ImportSummary(len(rules), len(members), replace, len(revocations))


def parse_export(
    text: str, revocations: list[tuple[str, str, int]] | None = None
) -> tuple[list[Rule], list[Membership]]:
    """Parse the export format; raise :class:`ImportFormatError` at the first bad line.

    Its ``revoked-KIND WHAT MOMENT`` lines are added to *revocations* as (KIND, WHAT,
    MOMENT), in the form of :meth:`AclStore.revocations` (ignored when it is None).
    """
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
            elif words[0] in _REVOKED and len(words) == 3:
                kind, what = _REVOKED[words[0]], words[1]
                if kind == "user":
                    check_name(what, "user")
                elif not what or any(c in what for c in "?&=/ ") or not what.isprintable():
                    raise RuleError(f"{what!r} is not a {kind} signature")
                if not (words[2].isascii() and words[2].isdigit() and int(words[2]) < 2**63):
                    raise RuleError(f"{words[2]!r} is not a moment (Unix time)")
                if revocations is not None:
                    revocations.append((kind, what, int(words[2])))
            else:
                raise RuleError(
                    "expected 'rule PATTERN PRINCIPAL LEVEL', 'member GROUP USER' or "
                    "'revoked-user|revoked-ticket|revoked-link WHAT MOMENT'"
                )
        except ValueError as exc:
            raise ImportFormatError(f"line {number}: {exc}") from None
    return rules, members


#: The export's revocation lines, and the kind each holds (see AclStore.revocations).
_REVOKED = {"revoked-user": "user", "revoked-ticket": "ticket", "revoked-link": "link"}


#: How many answers of each kind a :class:`CachedAcl` keeps per version of the store.
CACHE_LIMIT = 50_000
_MISSING = object()


class _Snapshot:
    """What a :class:`CachedAcl` knows at one version of the store."""

    __slots__ = (
        "candidates",
        "checked_at",
        "data_version",
        "decisions",
        "groups",
        "revoked_signatures",
        "revoked_users",
        "validator",
    )

    def __init__(self, validator: Validator | None, data_version: int, now: float) -> None:
        self.validator = validator
        self.data_version = data_version
        self.checked_at = now
        self.candidates: BoundedCache[str, list[Rule]] = BoundedCache(CACHE_LIMIT)
        self.decisions: BoundedCache[tuple[str, str | None, frozenset[str]], Decision] = (
            BoundedCache(CACHE_LIMIT)
        )
        self.groups: BoundedCache[str, frozenset[str]] = BoundedCache(CACHE_LIMIT)
        self.revoked_users: BoundedCache[str, int | None] = BoundedCache(CACHE_LIMIT)
        self.revoked_signatures: BoundedCache[str, bool] = BoundedCache(CACHE_LIMIT)


def _stat_key(path: str) -> Validator | None:
    """The :func:`~imageguard.files.fileversion.validator` of the file at *path* (the store, its
    change stamp), or ``None`` when it does not exist. For the store's own file this is
    what changes when it is changed other than by SQLite's WAL writes (overwritten in
    place, its permissions changed, replaced); for the stamp, every committed write."""
    try:
        return stat_validator(path)
    except OSError as exc:  # its folder unsearchable, say: a store fault, not the image's
        raise StoreError(f"cannot read ACL store {path}: {exc.strerror}") from None


class CachedAcl:
    """The store as Apache's handlers read it: decisions from memory until anything changes.

    One instance per process, shared by its threads. Per :meth:`decide`, the cost of
    finding out that nothing changed is one ``stat`` of the change stamp; only a change,
    or the once-a-second safety check (which also notices a store replaced by another
    file, removed, overwritten in place or made unreadable, and a schema upgraded by a
    newer imageguard, and checks it again as at its first open), reaches SQLite. The
    in-memory state is an immutable-ish snapshot replaced as a whole, so readers need no
    lock on the fast path.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp = stamp_path(path)
        self._lock = threading.Lock()
        self._store: AclStore | None = None
        self._file_id: Validator | None = None
        self._snapshot: _Snapshot | None = None

    def _current(self) -> _Snapshot:
        """The snapshot for the store as it is now (refreshed under the lock if needed)."""
        stamp = _stat_key(self._stamp)
        snapshot = self._snapshot
        now = time.monotonic()
        if (
            snapshot is not None
            and snapshot.validator == stamp
            and now - snapshot.checked_at < SAFETY_CHECK_S
        ):
            return snapshot
        with self._turn():
            return self._refresh(stamp, now)

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """This reader's lock (its one connection serves one query at a time), waited for
        no longer than SQLite waits for the store: when a writer locks the store, each
        request of the process is refused after one busy timeout, never after the timeouts
        of every request queued before it."""
        if not self._lock.acquire(timeout=BUSY_TIMEOUT_S):
            raise StoreError(
                f"cannot read ACL store {self.path}: busy, this request waited "
                f"{BUSY_TIMEOUT_S:g} s behind another one reading it (locked by a writer?)"
            )
        try:
            yield
        finally:
            self._lock.release()

    def _refresh(self, stamp: Validator | None, now: float) -> _Snapshot:
        """Reopen a replaced or vanished store, and start a new snapshot if anything changed."""
        file_id = _stat_key(self.path)
        if file_id is None:
            self._close()
            raise StoreError(f"ACL store {self.path} does not exist: run 'imageguard init'")
        if self._store is None or file_id != self._file_id:
            self._close()
            self._store = AclStore(self.path)
            self._file_id = file_id
        version = self._store._query("PRAGMA data_version")[0][0]
        snapshot = self._snapshot
        if (
            snapshot is not None
            and snapshot.validator == stamp
            and snapshot.data_version == version
        ):
            snapshot.checked_at = now  # the safety check found nothing new
            return snapshot
        if snapshot is not None:  # changed since it was opened: by a newer imageguard?
            try:
                self._store._prepare_schema(create=False)
            except BaseException:
                self._close()
                raise
        self._snapshot = _Snapshot(stamp, version, now)
        return self._snapshot

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
        self._store = None
        self._file_id = None
        self._snapshot = None

    def decide(self, relpath: str, identity: Identity) -> Decision:
        """What *identity* may see of *relpath*: remembered per viewer and path until the
        store changes, so a repeated request costs the change check and one look-up."""
        snapshot = self._current()
        key = (relpath, identity.user, identity.groups)
        found = snapshot.decisions.get(key)
        if found is not None:
            return found
        rules = self._cached(snapshot.candidates, relpath, AclStore.candidates)
        if identity.user is not None:
            groups = self._cached(snapshot.groups, identity.user, AclStore.groups_of)
            identity = identity.with_groups(groups)
        decision = decide(rules, relpath, identity)
        snapshot.decisions.put(key, decision)
        return decision

    def revocations_of(self, signature: str, user: str) -> tuple[bool, int | None]:
        """(:meth:`signature_revoked`, :meth:`user_revoked_until`) with one change check."""
        snapshot = self._current()
        return (
            self._cached(snapshot.revoked_signatures, signature, AclStore.signature_revoked),
            self._cached(snapshot.revoked_users, user, AclStore.user_revoked_until),
        )

    def signature_revoked(self, signature: str) -> bool:
        """As :meth:`AclStore.signature_revoked`, from memory when nothing changed."""
        snapshot = self._current()
        return self._cached(snapshot.revoked_signatures, signature, AclStore.signature_revoked)

    def _cached(
        self, cache: BoundedCache[str, _T], key: str, query: Callable[[AclStore, str], _T]
    ) -> _T:
        """The cached answer for *key*, asking the store when there is none yet (two
        threads asking together may both query it; either answer is this snapshot's)."""
        found = cache.get(key, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[return-value]
        with self._turn():
            if self._store is None:  # closed by another thread's refresh meanwhile
                raise StoreError(f"ACL store {self.path} was closed while it was read")
            value = query(self._store, key)
        cache.put(key, value)
        return value
