"""Copying an ACL store to another database (``imageguard migrate``), and proving the copy
decides as the original does.

The copy goes through the export text (:mod:`.exchange`), the same way a backup and a
restore do, in one transaction on the target. The proof then asks both stores the
question the handlers ask: for every rule, a few paths that rule is about, and every
viewer the store knows of (each user named by a rule or a membership, a stranger who is
logged in, and an anonymous viewer), what may be seen. Any difference is reported and
makes the command fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..errors import StoreError
from ..policy.acl import Rule
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


def viewers(store: AclStore) -> list[Identity]:
    """Everyone the comparison asks for: each user a rule or membership names, a
    stranger, and an anonymous viewer (groups come from the store, as in Apache)."""
    names = {m.user for m in store.memberships()}
    names.update(
        rule.principal.name
        for rule in store.rules()
        if rule.principal.kind is PrincipalKind.USER and rule.principal.name
    )
    return [Identity(name) for name in sorted(names)] + [Identity(_STRANGER), ANONYMOUS]


def compare_decisions(
    source: AclStore, target: AclStore, advance: Callable[[str], None] | None = None
) -> Comparison:
    """Ask both stores every (path, viewer) of :func:`sample_paths` and :func:`viewers`;
    *advance* is called once per rule (a progress bar)."""
    people = viewers(source)
    names = [person.user for person in people if person.user is not None]
    differences: list[str] = []
    asked: set[str] = set()
    decisions = 0
    for rule in source.rules():
        for path in _new_paths(rule, names, asked):
            for person in people:
                decisions += 1
                mine, theirs = source.decide(path, person), target.decide(path, person)
                if (mine.level, _rule_text(mine.rule)) != (theirs.level, _rule_text(theirs.rule)):
                    differences.append(
                        f"{path} for {person}: {mine.level.label} ({mine.reason}) in "
                        f"{source.path}, {theirs.level.label} ({theirs.reason}) in {target.path}"
                    )
        if advance is not None:
            advance(rule.pattern.text)
    return Comparison(len(asked), len(people), decisions, tuple(differences))


def _new_paths(rule: Rule, users: list[str], asked: set[str]) -> Iterator[str]:
    for path in sample_paths(rule.pattern.text, users):
        if path not in asked:
            asked.add(path)
            yield path


def _rule_text(rule: Rule | None) -> str:
    return str(rule) if rule is not None else ""
