"""The store's records outside SQLite, and the text of ``imageguard export`` and
``imageguard import``: one line a rule, membership or revocation, shell-style quoted.

:func:`format_export` writes what :func:`parse_export` reads back; importing is
:meth:`~imageguard.store.AclStore.import_text`, which checks the whole text first.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from ..errors import ImportFormatError, RuleError
from ..policy.acl import Rule
from ..policy.principals import check_name


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


def format_export(
    rules: list[Rule], memberships: list[Membership], revocations: list[tuple[str, str, int]]
) -> str:
    """The text of an export holding *rules*, *memberships* and *revocations* (as
    :meth:`~imageguard.store.AclStore.revocations` lists them)."""
    lines = [
        "# imageguard ACL export",
        "# rule PATTERN PRINCIPAL LEVEL | member GROUP USER   (shell-style quoting)",
    ]
    for rule in rules:
        lines.append(f"rule {shlex.quote(rule.pattern.text)} {rule.principal} {rule.level.label}")
    for membership in memberships:
        lines.append(f"member {membership.group} {membership.user}")
    if revocations:  # a restored backup must not accept what was revoked
        lines.append("# revoked-user USER UNTIL | revoked-ticket|revoked-link SIGNATURE AT")
    for kind, what, moment in revocations:
        lines.append(f"revoked-{kind} {shlex.quote(what)} {moment}")
    return "\n".join(lines) + "\n"


def parse_export(
    text: str, revocations: list[tuple[str, str, int]] | None = None
) -> tuple[list[Rule], list[Membership]]:
    """Parse the export format; raise :class:`ImportFormatError` at the first bad line.

    Its ``revoked-KIND WHAT MOMENT`` lines are added to *revocations* as (KIND, WHAT,
    MOMENT), in the form of :meth:`~imageguard.store.AclStore.revocations` (ignored when it
    is None).
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
