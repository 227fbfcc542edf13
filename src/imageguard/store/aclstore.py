"""The ACL store's read-write API (:class:`AclStore`), for the CLI and for applications:
rules, group memberships, revocations, the decision for one viewer, export and import.

The model is written here once, in SQL that SQLite and PostgreSQL both run; the storage
under it (:mod:`.storage`) is an SQLite file or a PostgreSQL database, chosen by how the
store is named. Each rule is stored with its *anchor* (see
:func:`imageguard.policy.patterns.anchors_for`), indexed, so the rules that can match a
path come back from one indexed query, however many rules the store holds.
"""

from __future__ import annotations

import functools
import os
import time
import urllib.parse
from collections.abc import Iterable

from ..errors import NoSuchRule, StoreError
from ..identity.sharelinks import PARAM_SIGNATURE
from ..identity.tickets import decode_cookie_value, parse_ticket
from ..policy.acl import Decision, Rule, decide
from ..policy.levels import Level
from ..policy.patterns import anchors_for, compile_pattern
from ..policy.principals import Identity, check_name, parse_principal
from .exchange import ImportSummary, Membership, format_export, parse_export
from .storage import Storage, Writer, open_storage


@functools.lru_cache(maxsize=65536)
def _rule_from_row(pattern: str, principal: str, level: str) -> Rule:
    """Rebuild a rule from its stored text; compiled patterns are shared between paths."""
    return Rule.parse(pattern, principal, level)


class AclStore:
    """Read-write access to an ACL store (the CLI's and applications' API).

    Open an existing store with ``AclStore(location)``, where *location* is an SQLite
    file's path (or ``sqlite:PATH``) or a PostgreSQL connection string
    (``postgresql://imageguard@db.example/imageguard``, ``service=imageguard``); create
    one with :meth:`AclStore.create`. Methods raise :class:`~imageguard.errors.RuleError`
    for a malformed rule and :class:`~imageguard.errors.StoreError` for everything about
    the database. The object may be shared between threads.
    """

    def __init__(self, location: str | os.PathLike[str], *, _create: bool = False) -> None:
        self.storage: Storage = open_storage(os.fspath(location), create=_create)

    @property
    def path(self) -> str:
        """The store's name in messages: a path, or a connection string (no password)."""
        return self.storage.location

    @classmethod
    def create(cls, location: str | os.PathLike[str]) -> AclStore:
        """Create a new, empty store at *location* (an existing store is opened unchanged)."""
        return cls(location, _create=True)

    def close(self) -> None:
        """Close the connection."""
        self.storage.close()

    def __enter__(self) -> AclStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _query(self, sql: str, params: Iterable[object] = ()) -> list[tuple]:
        return self.storage.query(sql, params)

    # -- rules ------------------------------------------------------------------------

    def grant(self, pattern: str, principal: str, level: str | Level) -> Rule:
        """Give *principal* *level* on *pattern*, replacing the level it had there."""
        rule = Rule.parse(pattern, principal, str(level))
        with self.storage.transaction() as conn:
            self._put_rule(conn, rule)
        return rule

    @staticmethod
    def _put_rule(conn: Writer, rule: Rule) -> None:
        conn.execute(
            "INSERT INTO rules (pattern, principal, level, anchor) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (pattern, principal) DO UPDATE SET level = excluded.level",
            (rule.pattern.text, str(rule.principal), rule.level.label, rule.pattern.anchor),
        )

    def revoke(self, pattern: str, principal: str) -> None:
        """Remove the rule for *principal* on *pattern*; :class:`NoSuchRule` if there is none."""
        text = compile_pattern(pattern).text
        who = str(parse_principal(principal))
        self._delete(
            "DELETE FROM rules WHERE pattern = ? AND principal = ?",
            (text, who),
            f"no rule for {who} on {text}",
        )

    def _delete(self, sql: str, params: tuple[str, str], missing: str) -> None:
        """Run the DELETE *sql*; :class:`NoSuchRule` saying *missing* when nothing went."""
        with self.storage.transaction() as conn:
            gone = conn.execute(sql, params).rowcount
        if not gone:
            raise NoSuchRule(missing)

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
        with self.storage.transaction() as conn:
            conn.execute(
                'INSERT INTO memberships ("user", grp) VALUES (?, ?) ON CONFLICT DO NOTHING',
                (user, group),
            )

    def remove_member(self, group: str, user: str) -> None:
        """Remove *user* from *group*; :class:`NoSuchRule` when not a member."""
        self._delete(
            'DELETE FROM memberships WHERE "user" = ? AND grp = ?',
            (user, group),
            f"{user} is not a member of group {group}",
        )

    def groups_of(self, user: str) -> frozenset[str]:
        """The groups the store makes *user* a member of."""
        rows = self._query('SELECT grp FROM memberships WHERE "user" = ?', (user,))
        return frozenset(row[0] for row in rows)

    def memberships(self) -> list[Membership]:
        """Every membership, ordered by group then user."""
        rows = self._query('SELECT grp, "user" FROM memberships ORDER BY grp, "user"')
        return [Membership(*row) for row in rows]

    # -- revocations ------------------------------------------------------------------

    def revoke_user(self, user: str, until: int | None = None) -> int:
        """Refuse every ticket of *user* stamped at or before *until* (default: now).

        Returns the moment recorded (a later revocation of the same user only extends it).
        """
        check_name(user, "user")
        moment = int(time.time()) if until is None else int(until)
        with self.storage.transaction() as conn:
            self._put_revocation(conn, "user", user, moment)
            row = conn.execute(
                'SELECT until FROM revoked_users WHERE "user" = ?', (user,)
            ).fetchone()
        if row is None:  # cannot be: written in this very transaction
            raise StoreError(f"the revocation of {user} was not recorded in {self.path}")
        return int(row[0])

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
        with self.storage.transaction() as conn:
            self._put_revocation(conn, kind, signature, int(time.time()))

    @staticmethod
    def _put_revocation(conn: Writer, kind: str, what: str, moment: int) -> None:
        """Record one revocation, as :meth:`revocations` lists it: a user's moment is only
        ever moved later, a signature's first moment is kept."""
        if kind == "user":
            conn.execute(
                'INSERT INTO revoked_users ("user", until) VALUES (?, ?) '
                'ON CONFLICT ("user") DO UPDATE SET until = CASE WHEN excluded.until > '
                "revoked_users.until THEN excluded.until ELSE revoked_users.until END",
                (what, moment),
            )
        else:
            conn.execute(
                "INSERT INTO revoked_signatures (signature, kind, revoked_at) "
                "VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (what, kind, moment),
            )

    def user_revoked_until(self, user: str) -> int | None:
        """Tickets of *user* stamped at or before this moment are refused (None: none are)."""
        rows = self._query('SELECT until FROM revoked_users WHERE "user" = ?', (user,))
        return int(rows[0][0]) if rows else None

    def signature_revoked(self, signature: str) -> bool:
        """True when the ticket or share link with this signature was revoked."""
        rows = self._query("SELECT 1 FROM revoked_signatures WHERE signature = ?", (signature,))
        return bool(rows)

    def revocations(self) -> list[tuple[str, str, int]]:
        """Every revocation as (kind, what, moment): kinds ``user``, ``ticket``, ``link``."""
        users = self._query('SELECT \'user\', "user", until FROM revoked_users ORDER BY "user"')
        signatures = self._query(
            "SELECT kind, signature, revoked_at FROM revoked_signatures "
            "ORDER BY kind, revoked_at, signature"
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
        with self.storage.one_read():  # the store as one commit left it, whatever commits meanwhile
            rules, memberships = self.rules(), self.memberships()
            revocations = self.revocations()
        return format_export(rules, memberships, revocations)

    def import_text(self, text: str, *, replace: bool = False) -> ImportSummary:
        """Add (or with *replace*, substitute) the rules and memberships in *text*.

        The whole text is checked first; a single bad line raises
        :class:`ImportFormatError` naming it, and nothing is changed.
        Revocations are always added, never replaced: an import cannot undo one.
        """
        revocations: list[tuple[str, str, int]] = []
        rules, members = parse_export(text, revocations)
        with self.storage.transaction() as conn:
            if replace:
                conn.execute("DELETE FROM rules")
                conn.execute("DELETE FROM memberships")
            for rule in rules:
                self._put_rule(conn, rule)
            conn.executemany(
                'INSERT INTO memberships ("user", grp) VALUES (?, ?) ON CONFLICT DO NOTHING',
                [(m.user, m.group) for m in members],
            )
            for kind, what, moment in revocations:
                self._put_revocation(conn, kind, what, moment)
        return ImportSummary(len(rules), len(members), replace, len(revocations))
