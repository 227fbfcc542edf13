"""Rules and the decision: which level a viewer gets for an image.

A rule is ``(pattern, principal, level)``. To decide what *identity* may see of the image
at *relpath* (a path relative to the protected root):

1. Keep the rules whose pattern matches *relpath* (``{user}`` standing for the identity's
   user name) and whose principal the identity answers to: ``anyone`` always,
   ``authenticated`` when logged in, ``user:NAME`` for its own name, ``group:NAME`` for
   each of its groups (from the session and from the store).
2. If none is left, the answer is ``deny``: nothing is visible unless a rule says so.
3. Keep only the rules whose pattern is the most specific (see
   :mod:`imageguard.policy.patterns` for the order). A specific rule about a file therefore
   overrides a broad rule about its folder, whoever the broad rule names.
4. Among those, keep only the rules of the strongest principal class:
   ``user:`` beats ``group:`` beats ``authenticated`` beats ``anyone``.
5. If any rule left says ``deny``, the answer is ``deny``. Otherwise the highest level
   left wins (``full`` > ``preview`` > ``thumb``).

The :class:`Decision` carries the level, the rule that decided and a sentence saying why,
so a refusal in the log and ``imageguard explain`` tell the same story.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .levels import Level, parse_level
from .patterns import Pattern, compile_pattern
from .principals import Identity, Principal, parse_principal


@dataclass(frozen=True)
class Rule:
    """One grant or denial: *principal* gets *level* on the images *pattern* matches."""

    pattern: Pattern
    principal: Principal
    level: Level

    @classmethod
    def parse(cls, pattern: str, principal: str, level: str) -> Rule:
        """Build a rule from its three text parts, validating each."""
        return cls(compile_pattern(pattern), parse_principal(principal), parse_level(level))

    def applies_to(
        self, relpath: str, identity: Identity, principals: frozenset[Principal]
    ) -> bool:
        """True when this rule's principal is in *principals* and its pattern matches."""
        return self.principal in principals and self.pattern.matches(relpath, identity.user)

    def __str__(self) -> str:
        return f"{self.pattern.text} {self.principal} {self.level.label}"


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`decide`: a level, the rule behind it (if any), and why."""

    level: Level
    rule: Rule | None
    reason: str

    @property
    def granted(self) -> bool:
        """True when the level shows anything at all."""
        return self.level > Level.DENY


def _precedence(rule: Rule) -> tuple[tuple[bool, int, bool, int], int, bool, int]:
    """Sort key, larger first: specificity, principal class, deny before allow, level."""
    return (
        rule.pattern.specificity.key(),
        rule.principal.kind,
        rule.level is Level.DENY,
        rule.level,
    )


def ranked(rules: Iterable[Rule], relpath: str, identity: Identity) -> list[Rule]:
    """The rules that apply to *identity* on *relpath*, the deciding one first.

    Sorting by (specificity, principal class, deny first, level), largest first, is the
    algorithm of this module's docstring in one step: the first rule is the one that
    steps 3 to 5 keep.
    """
    principals = identity.principals()
    applicable = [rule for rule in rules if rule.applies_to(relpath, identity, principals)]
    applicable.sort(key=_precedence, reverse=True)
    return applicable


def decide(rules: Iterable[Rule], relpath: str, identity: Identity) -> Decision:
    """Return what *identity* may see of *relpath* under *rules* (algorithm: module doc)."""
    applicable = ranked(rules, relpath, identity)
    if not applicable:
        return Decision(Level.DENY, None, f"no rule matches {relpath} for {identity}")
    deciding = applicable[0]
    if deciding.level is Level.DENY:
        why = f"rule '{deciding}' denies"
    else:
        why = f"rule '{deciding}' grants {deciding.level.label}"
    if len(applicable) > 1:
        why += f"; it outranks {len(applicable) - 1} other matching rule(s)"
    return Decision(deciding.level, deciding, why)
