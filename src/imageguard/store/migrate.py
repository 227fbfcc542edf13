"""Copying an ACL store to another database (``imageguard migrate``), and proving the copy
decides as the original does.

The copy goes through the export text (:mod:`.exchange`), the same way a backup and a
restore do, in one transaction on the target. The proof then asks both stores the
question the handlers ask: for every rule, a few paths that rule is about, which rules
can match it, and so what each viewer the answer may depend on may see (each user or
group member those rules name, a user the path names, a stranger who is logged in, and
an anonymous viewer). Any difference is reported and makes the command fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..errors import StoreError
from ..policy.acl import Rule, decide
from ..policy.patterns import USER_TOKEN
from ..policy.principals import ANONYMOUS, Identity, PrincipalKind
from .aclstore import AclStore
from .exchange import ImportSummary

#: A user name no store holds: "logged in, but nobody the rules name".
_STRANGER = "imageguard-migrate-stranger"


@dataclass(frozen=True)
class Comparison:
    """What a verification asked, and where the two stores disagreed."""

    paths: int
    viewers: int
    decisions: int
    differences: tuple[str, ...]


def copy_store(source: AclStore, target: AclStore, *, replace: bool = False) -> ImportSummary:
    """Copy every rule, membership and revocation of *source* into *target*.

    A target that already holds rules or memberships is refused unless *replace*, which
    substitutes them (revocations are only ever added).
    """
    if not replace and (target.rules() or target.memberships()):
        raise StoreError(
            f"{target.path} already holds rules or memberships: give --replace to "
            "substitute them, or migrate into an empty store"
        )
    return target.import_text(source.export_text(), replace=True)


def missing_revocations(source: AclStore, target: AclStore) -> list[str]:
    """The revocations of *source* that *target* does not enforce (a user's counts when
    the target refuses tickets up to the same moment or a later one)."""
    theirs = {(kind, what): moment for kind, what, moment in target.revocations()}
    return [
        f"{kind} {what}"
        for kind, what, moment in source.revocations()
        if (kind, what) not in theirs or (kind == "user" and theirs[(kind, what)] < moment)
    ]


def sample_paths(pattern: str, users: list[str]) -> list[str]:
    """A few paths *pattern* is about: each ``*`` made a name, each ``**`` no segment and
    two (a file and a folder with a file, at the end), a trailing ``/`` a file below,
    ``{user}`` each of *users*."""
    text = pattern + "**" if pattern.endswith("/") else pattern
    segments = text.split("/")
    shortest: list[str] = []
    longest: list[str] = []
    for number, segment in enumerate(segments):
        if segment == "**":
            last = number == len(segments) - 1
            shortest += ["photo.jpg"] if last else []
            longest += ["a", "photo.jpg"] if last else ["a", "b"]
        else:
            shortest.append(segment.replace("*", "x"))
            longest.append(segment.replace("*", "x"))
    found: set[str] = set()
    for shape in ("/".join(shortest), "/".join(longest)):
        if USER_TOKEN in shape:
            found.update(shape.replace(USER_TOKEN, user) for user in users)
        else:
            found.add(shape)
    return sorted(path for path in found if path)


def compare_decisions(
    source: AclStore, target: AclStore, advance: Callable[[str], None] | None = None
) -> Comparison:
    """Ask both stores, for every path of :func:`sample_paths`, the rules that can match
    it (one indexed query per store, as Apache asks), and decide with them for every
    viewer whose answer may differ from a stranger's: each user a candidate rule names,
    each member of a group one names, a user the path names, plus a logged-in stranger
    and an anonymous viewer. Groups come from each store's own memberships, read once.
    *advance* is called once per rule (a progress bar)."""
    rules = source.rules()
    groups, their_groups = _groups_of_users(source), _groups_of_users(target)
    names = sorted(
        set(groups) | {r.principal.name for r in rules if r.principal.kind is PrincipalKind.USER}
    )
    differences: list[str] = []
    asked: set[str] = set()
    decisions = 0
    for rule in rules:
        for path in _new_paths(rule, names, asked):
            mine, theirs = source.candidates(path), target.candidates(path)
            for person in _viewers_for(path, mine + theirs, groups, their_groups, names):
                decisions += 1
                ours = decide(mine, path, _with_groups(person, groups))
                other = decide(theirs, path, _with_groups(person, their_groups))
                if (ours.level, _rule_text(ours.rule)) != (other.level, _rule_text(other.rule)):
                    differences.append(
                        f"{path} for {person}: {ours.level.label} ({ours.reason}) in "
                        f"{source.path}, {other.level.label} ({other.reason}) in {target.path}"
                    )
        if advance is not None:
            advance(rule.pattern.text)
    return Comparison(len(asked), len(names) + 2, decisions, tuple(differences))


def _groups_of_users(store: AclStore) -> dict[str, frozenset[str]]:
    """Every user's groups in *store*, from one read of its memberships."""
    found: dict[str, set[str]] = {}
    for membership in store.memberships():
        found.setdefault(membership.user, set()).add(membership.group)
    return {user: frozenset(names) for user, names in found.items()}


def _viewers_for(
    path: str,
    candidates: list[Rule],
    groups: dict[str, frozenset[str]],
    their_groups: dict[str, frozenset[str]],
    names: list[str],
) -> list[Identity]:
    """The viewers whose answer for *path* may differ from a stranger's (see
    :func:`compare_decisions`), then the stranger and an anonymous viewer."""
    named: set[str] = set()
    for rule in candidates:
        principal = rule.principal
        if principal.kind is PrincipalKind.USER and principal.name:
            named.add(principal.name)
        elif principal.kind is PrincipalKind.GROUP:
            named.update(
                u
                for table in (groups, their_groups)
                for u, g in table.items()
                if principal.name in g
            )
    named.update(set(path.split("/")).intersection(names))  # {user} rules
    return [Identity(name) for name in sorted(named)] + [Identity(_STRANGER), ANONYMOUS]


def _with_groups(person: Identity, groups: dict[str, frozenset[str]]) -> Identity:
    if person.user is None:
        return person
    return person.with_groups(groups.get(person.user, frozenset()))


def _new_paths(rule: Rule, users: list[str], asked: set[str]) -> Iterator[str]:
    for path in sample_paths(rule.pattern.text, users):
        if path not in asked:
            asked.add(path)
            yield path


def _rule_text(rule: Rule | None) -> str:
    return str(rule) if rule is not None else ""
