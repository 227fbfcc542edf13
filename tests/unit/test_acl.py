"""The decision algorithm, case by case (docs/acl.md)."""

from __future__ import annotations

import pytest

from imageguard.errors import LevelError, PrincipalError
from imageguard.policy.acl import Rule, decide, ranked
from imageguard.policy.levels import Level, parse_level
from imageguard.policy.principals import ANONYMOUS, Identity, parse_principal

BOB = Identity("bob", frozenset({"staff"}))
ALICE = Identity("alice")


def rules(*triples: str) -> list[Rule]:
    return [Rule.parse(*t.split()) for t in triples]


def level(rule_texts: list[str], who: Identity, path: str = "g/cat.jpg") -> Level:
    return decide(rules(*rule_texts), path, who).level


# (rules, identity, expected level, what the case shows)
TABLE = [
    ([], BOB, Level.DENY, "nothing matches: deny"),
    (["g/** anyone full"], ANONYMOUS, Level.FULL, "anyone covers anonymous"),
    (["g/** authenticated full"], ANONYMOUS, Level.DENY, "authenticated excludes anonymous"),
    (["g/** authenticated full"], ALICE, Level.FULL, "authenticated covers any user"),
    (["g/** group:staff full"], ALICE, Level.DENY, "group rule needs membership"),
    (["g/** group:staff full"], BOB, Level.FULL, "group rule covers members"),
    (["g/** user:bob full"], ALICE, Level.DENY, "user rule covers only that user"),
    # specificity beats principal class
    (["g/cat.jpg anyone thumb", "g/** user:bob full"], BOB, Level.THUMB, "exact path beats user"),
    (["g/cat.jpg anyone deny", "g/** user:bob full"], BOB, Level.DENY, "exact deny beats broad"),
    (["g/*.jpg anyone preview", "g/** user:bob full"], BOB, Level.PREVIEW, "bounded > recursive"),
    (["g/** anyone thumb", "** user:bob full"], BOB, Level.THUMB, "deeper anchor wins"),
    # equal specificity: principal class
    (["g/** anyone full", "g/** user:bob deny"], BOB, Level.DENY, "user beats anyone"),
    (["g/** group:staff deny", "g/** user:bob thumb"], BOB, Level.THUMB, "user beats group"),
    (["g/** authenticated full", "g/** group:staff thumb"], BOB, Level.THUMB, "group > authn"),
    (["g/** anyone full", "g/** authenticated deny"], BOB, Level.DENY, "authn beats anyone"),
    (["g/** anyone thumb", "g/** authenticated deny"], ANONYMOUS, Level.THUMB, "n/a to anon"),
    # equal specificity and class: deny beats allow, then highest level
    (["g/** group:staff full", "g/** group:other deny"], BOB, Level.FULL, "other group n/a"),
    (
        ["g/** group:staff full", "g/** group:team deny"],
        Identity("bob", frozenset({"staff", "team"})),
        Level.DENY,
        "deny among equal groups wins",
    ),
    (
        ["g/** group:staff thumb", "g/** group:team preview"],
        Identity("bob", frozenset({"staff", "team"})),
        Level.PREVIEW,
        "highest allow among equal groups",
    ),
    # {user}
    (["users/{user}/** authenticated full"], BOB, Level.DENY, "not bob's folder"),
]


@pytest.mark.parametrize(("texts", "who", "expected", "why"), TABLE, ids=[c[3] for c in TABLE])
def test_precedence_table(texts: list[str], who: Identity, expected: Level, why: str) -> None:
    assert level(texts, who) is expected, why


def test_user_folder() -> None:
    texts = ["users/{user}/** authenticated full"]
    assert level(texts, BOB, "users/bob/a.jpg") is Level.FULL
    assert level(texts, ALICE, "users/bob/a.jpg") is Level.DENY
    assert level(texts, ANONYMOUS, "users/bob/a.jpg") is Level.DENY


def test_decision_names_rule_and_reason() -> None:
    decision = decide(rules("g/** anyone thumb", "g/cat.jpg user:bob full"), "g/cat.jpg", BOB)
    assert decision.level is Level.FULL and decision.granted
    assert str(decision.rule) == "g/cat.jpg user:bob full"
    assert "grants full" in decision.reason and "outranks 1" in decision.reason
    denied = decide([], "g/cat.jpg", BOB)
    assert not denied.granted and denied.rule is None
    assert "no rule matches g/cat.jpg" in denied.reason


def test_ranked_puts_deciding_rule_first() -> None:
    order = ranked(
        rules(
            "** anyone full", "g/** user:bob thumb", "g/** group:staff deny", "g/x.jpg anyone deny"
        ),
        "g/cat.jpg",
        BOB,
    )
    assert [str(r) for r in order] == [
        "g/** user:bob thumb",
        "g/** group:staff deny",
        "** anyone full",
    ]


@pytest.mark.parametrize("text", ["bob", "user:", "group:", "user:a/b", "role:x", "user:a b", ""])
def test_bad_principals(text: str) -> None:
    with pytest.raises(PrincipalError):
        parse_principal(text)


def test_principal_round_trip() -> None:
    for text in ["user:bob", "group:staff", "authenticated", "anyone"]:
        assert str(parse_principal(text)) == text
    assert str(parse_principal(" ANYONE ")) == "anyone"


def test_levels() -> None:
    assert [parse_level(t) for t in ("deny", "thumb", "preview", "FULL")] == sorted(Level)
    with pytest.raises(LevelError, match="use one of full, preview, thumb, deny"):
        parse_level("all")
