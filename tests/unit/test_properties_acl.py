"""Property tests: patterns and the decision against a plain reference of docs/acl.md.

The reference below is written from the documentation alone, deliberately naive: the
syntax rules as a list of checks, matching as a recursion over segments and characters
(no regular expression), specificity as the four criteria of the table compared one
after the other, and the decision as its five numbered steps, each a filter. Hypothesis
generates patterns, paths, users, groups and rule sets, and the library must agree with
the reference on every one.

One thing the reference takes from the module documentation of imageguard.policy.patterns
rather than from docs/acl.md: names are compared in Unicode's composed form (NFC).
"""

from __future__ import annotations

import os
import tempfile
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from imageguard.errors import PatternError, RuleError
from imageguard.policy.acl import Rule, decide, ranked
from imageguard.policy.patterns import anchors_for, compile_pattern
from imageguard.policy.principals import Identity
from imageguard.store import AclStore

FAST = settings(max_examples=300, deadline=None)
SLOW = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

USER_TOKEN = "{user}"
USERS = ("alice", "bob", "*", "{user}")  # odd but valid names: they must stay literal
GROUPS = ("staff", "team", "b*")
LEVELS = ("full", "preview", "thumb", "deny")
PRINCIPALS = (
    "anyone",
    "authenticated",
    *(f"user:{u}" for u in USERS),
    *(f"group:{g}" for g in GROUPS),
)


# --------------------------------------------------------------------------- reference


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def ref_syntax_error(text: str) -> str | None:
    """Why docs/acl.md's syntax rules refuse *text*, or None when it is a pattern."""
    if not text:
        return "empty"
    if len(text) > 1024:
        return "too long"
    if text != text.strip():
        return "whitespace around the pattern"
    if text.startswith("/"):
        return "leading /"
    if "\\" in text or any(ord(c) < 32 or ord(c) == 127 for c in text):
        return "backslash or control character"
    segments = text.split("/")
    if segments[-1] == "":
        segments[-1] = "**"
    for segment in segments:
        if segment == "":
            return "empty folder"
        if segment in (".", ".."):
            return "dot segment"
        if "**" in segment and segment != "**":
            return "** inside a name"
        if ("{" in segment or "}" in segment) and segment != USER_TOKEN:
            return "{user} inside a name"
    return None


def ref_segments(text: str) -> list[str]:
    segments = text.split("/")
    if segments[-1] == "":
        segments[-1] = "**"
    return segments


def ref_glob(pattern: str, name: str) -> bool:
    """``*`` as any run of characters, everything else literal; one character at a time."""
    if not pattern:
        return not name
    if pattern[0] == "*":
        return any(ref_glob(pattern[1:], name[cut:]) for cut in range(len(name) + 1))
    return bool(name) and name[0] == pattern[0] and ref_glob(pattern[1:], name[1:])


def ref_match_segments(pattern: Sequence[str], path: Sequence[str], user: str | None) -> bool:
    if not pattern:
        return not path
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        # In the middle: any number of folders, none included; at the end: everything
        # below, so at least one more name.
        least = 0 if rest else 1
        return any(
            ref_match_segments(rest, path[skip:], user) for skip in range(least, len(path) + 1)
        )
    if not path:
        return False
    if head == USER_TOKEN:
        return user is not None and path[0] == user and ref_match_segments(rest, path[1:], user)
    return ref_glob(head, path[0]) and ref_match_segments(rest, path[1:], user)


def ref_matches(text: str, relpath: str, user: str | None) -> bool:
    return ref_match_segments(ref_segments(nfc(text)), nfc(relpath).split("/"), user)


@dataclass(frozen=True)
class RefSpecificity:
    exact: bool
    fixed_depth: int
    bounded: bool
    fixed_chars: int


def ref_specificity(text: str) -> RefSpecificity:
    segments = ref_segments(nfc(text))
    recursive = "**" in segments
    wild = any("*" in s or s == USER_TOKEN for s in segments)
    depth = 0
    for segment in segments:
        if "*" in segment:
            break
        depth += 1
    chars = sum(len(s) - s.count("*") for s in segments if s not in ("**", USER_TOKEN))
    return RefSpecificity(not wild and not recursive, depth, not recursive, chars)


def keep_most_specific(texts: Sequence[str]) -> set[str]:
    """The table's criteria one after the other, each keeping only the best."""
    specs = {t: ref_specificity(t) for t in texts}
    left = list(texts)
    if any(specs[t].exact for t in left):
        left = [t for t in left if specs[t].exact]
    deepest = max(specs[t].fixed_depth for t in left)
    left = [t for t in left if specs[t].fixed_depth == deepest]
    if any(specs[t].bounded for t in left):
        left = [t for t in left if specs[t].bounded]
    most = max(specs[t].fixed_chars for t in left)
    return {t for t in left if specs[t].fixed_chars == most}


PRINCIPAL_CLASS = {"user": 3, "group": 2, "authenticated": 1, "anyone": 0}
LEVEL_ORDER = {"deny": 0, "thumb": 1, "preview": 2, "full": 3}


def ref_answers_to(principal: str, user: str | None, groups: frozenset[str]) -> bool:
    if principal == "anyone":
        return True
    if user is None:
        return False
    if principal == "authenticated":
        return True
    kind, _, name = principal.partition(":")
    return name == user if kind == "user" else name in groups


def ref_class(principal: str) -> int:
    return PRINCIPAL_CLASS[principal.partition(":")[0]]


RefRule = tuple[str, str, str]  # pattern, principal, level


def ref_decide(
    rules: Sequence[RefRule], relpath: str, user: str | None, groups: frozenset[str]
) -> tuple[str, list[RefRule], list[RefRule]]:
    """The level, the rules that apply, and the rules that could have decided."""
    rules = [(nfc(pattern), who, level) for pattern, who, level in rules]
    # 1. keep the rules that apply
    applicable = [
        r for r in rules if ref_matches(r[0], relpath, user) and ref_answers_to(r[1], user, groups)
    ]
    # 2. nothing left: deny
    if not applicable:
        return "deny", [], []
    # 3. the most specific pattern wins, whoever it names
    best = keep_most_specific([r[0] for r in applicable])
    left = [r for r in applicable if r[0] in best]
    # 4. among those, the strongest principal class
    strongest = max(ref_class(r[1]) for r in left)
    left = [r for r in left if ref_class(r[1]) == strongest]
    # 5. deny beats any allow; otherwise the highest level
    if any(r[2] == "deny" for r in left):
        return "deny", applicable, [r for r in left if r[2] == "deny"]
    top = max(LEVEL_ORDER[r[2]] for r in left)
    return (
        next(lv for lv, n in LEVEL_ORDER.items() if n == top),
        applicable,
        [r for r in left if LEVEL_ORDER[r[2]] == top],
    )


def triple(rule: Rule) -> RefRule:
    return (rule.pattern.text, str(rule.principal), rule.level.label)


# --------------------------------------------------------------------------- strategies

# Regular-expression metacharacters, a newline and a space: the library must keep every
# one of them literal in a name.
NAME_CHARS = "ab.*+([?\n é\u0301"
path_names = st.one_of(
    st.text(alphabet=NAME_CHARS, min_size=1, max_size=3).filter(lambda s: s not in (".", "..")),
    st.sampled_from(USERS),
)
relpaths = st.lists(path_names, min_size=1, max_size=4).map("/".join)


def pattern_name_ok(name: str) -> bool:
    return ref_syntax_error(name) is None and "**" not in name


pattern_names = st.one_of(
    st.text(alphabet="ab.*+([? é\u0301", min_size=1, max_size=4).filter(pattern_name_ok),
    st.just("**"),
    st.just(USER_TOKEN),
    st.sampled_from(USERS).filter(pattern_name_ok),
)


@st.composite
def free_patterns(draw: st.DrawFn) -> str:
    text = "/".join(draw(st.lists(pattern_names, min_size=1, max_size=4)))
    if draw(st.booleans()) and not text.endswith("**"):
        text += "/"
    assume(ref_syntax_error(text) is None)
    return text


@st.composite
def patterns_of(draw: st.DrawFn, relpath: str) -> str:
    """A pattern made from *relpath*, each name kept, widened or replaced: most match."""
    out: list[str] = []
    for name in relpath.split("/"):
        how = draw(st.sampled_from(["keep"] * 3 + ["star", "prefix", "user", "deep", "other"]))
        if how == "keep" and draw(st.integers(0, 4)) == 0 and (not out or out[-1] != "**"):
            out.append("**")  # standing for no folder at all
        if how == "keep":
            out.append(name if pattern_name_ok(name) else "*")
        elif how == "star":
            out.append("*")
        elif how == "prefix":
            cut = draw(st.integers(0, len(name)))
            piece = name[:cut] + "*"
            out.append(piece if pattern_name_ok(piece) else "*")
        elif how == "user":
            out.append(USER_TOKEN)
        elif how == "deep":
            if not out or out[-1] != "**":
                out.append("**")
        else:
            out.append(draw(pattern_names))
    text = "/".join(out)
    if len(out) > 1 and draw(st.integers(0, 3)) == 0:
        text = "/".join(out[:-1]) + "/"  # everything below the folder instead of the name
    assume(ref_syntax_error(text) is None)
    return text


identities = st.builds(
    Identity,
    st.one_of(st.none(), st.sampled_from(USERS)),
    st.frozensets(st.sampled_from(GROUPS)),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[str, Identity, list[RefRule]]:
    identity = draw(identities)
    relpath = draw(relpaths)
    # Most rules are made to apply: patterns from the path, principals the viewer has.
    theirs = ["anyone", "authenticated"]
    if identity.user is not None:
        theirs += [f"user:{identity.user}", *(f"group:{g}" for g in identity.groups)]
    # A few patterns shared by several rules: ties in specificity are the interesting part.
    pool = draw(
        st.lists(
            st.one_of(patterns_of(relpath), patterns_of(relpath), free_patterns()),
            min_size=1,
            max_size=3,
        )
    )
    pattern = st.sampled_from(pool)
    principal = st.one_of(st.sampled_from(theirs), st.sampled_from(PRINCIPALS))
    levels = st.sampled_from(LEVELS)
    rules = draw(st.lists(st.tuples(pattern, principal, levels), min_size=1, max_size=7))
    return relpath, identity, rules


# --------------------------------------------------------------------------- patterns

pattern_texts = st.one_of(
    free_patterns(),
    st.text(alphabet="ab./*{}\\ \t\x00\x7f\x85\u3000[?useré\u0301", max_size=12),
    st.lists(
        st.sampled_from(["a", "*", "**", "{user}", "{", "user}", ".", "..", "", " ", "\\"]),
        max_size=5,
    ).map("/".join),
)


@FAST
@given(pattern_texts)
def test_patterns_are_accepted_exactly_as_the_syntax_rules_say(text: str) -> None:
    expected = ref_syntax_error(text)
    try:
        pattern = compile_pattern(text)
    except PatternError:
        assert expected is not None, f"{text!r} was refused, but the documented rules allow it"
        return
    assert expected is None, f"{text!r} was accepted, but docs/acl.md refuses it: {expected}"
    # What is kept is what was given (composed): never a rule about another name.
    assert pattern.text == nfc(text)


@FAST
@given(st.text(max_size=40))
def test_any_text_compiles_or_is_refused_with_a_pattern_error(text: str) -> None:
    try:
        pattern = compile_pattern(text)
    except PatternError:
        return
    # Accepted: kept as given (composed), and compiling it again changes nothing.
    assert pattern.text == nfc(text)
    assert compile_pattern(pattern.text).text == pattern.text


@FAST
@given(st.data())
def test_matching_agrees_with_the_reference(data: st.DataObject) -> None:
    relpath = data.draw(relpaths)
    text = data.draw(st.one_of(patterns_of(relpath), free_patterns()))
    user = data.draw(st.one_of(st.none(), st.sampled_from(USERS)))
    pattern = compile_pattern(text)
    assert pattern.matches(relpath, user) is ref_matches(text, relpath, user), (text, relpath, user)


@FAST
@given(st.data())
def test_a_matching_pattern_is_found_under_one_of_the_path_anchors(data: st.DataObject) -> None:
    relpath = data.draw(relpaths)
    pattern = compile_pattern(data.draw(patterns_of(relpath)))
    user = data.draw(st.sampled_from(USERS))
    if pattern.matches(relpath, user):
        assert pattern.anchor in anchors_for(relpath)


@FAST
@given(free_patterns(), free_patterns())
def test_specificity_orders_patterns_as_the_table_does(one: str, two: str) -> None:
    mine, theirs = compile_pattern(one).specificity, compile_pattern(two).specificity
    best = keep_most_specific([one, two])
    if best == {one, two}:
        assert mine.key() == theirs.key(), (one, two)
    elif best == {one}:
        assert theirs < mine and not mine < theirs, (one, two)
    else:
        assert mine < theirs and not theirs < mine, (one, two)
    ref = ref_specificity(one)
    assert (mine.exact, mine.literal_depth, mine.bounded, mine.literal_chars) == (
        ref.exact,
        ref.fixed_depth,
        ref.bounded,
        ref.fixed_chars,
    )


# --------------------------------------------------------------------------- decision


def check_against_reference(
    relpath: str, identity: Identity, rules: Sequence[RefRule], decision_rules: Sequence[Rule]
) -> None:
    level, applicable, deciders = ref_decide(rules, relpath, identity.user, identity.groups)
    decision = decide(decision_rules, relpath, identity)
    assert decision.level.label == level, (rules, relpath, identity)
    if decision.rule is None:
        assert not applicable
    else:
        assert triple(decision.rule) in deciders
    assert decision.granted is (level != "deny")
    order = ranked(decision_rules, relpath, identity)
    assert sorted(map(triple, order)) == sorted(applicable)
    if order:
        assert order[0] == decision.rule


@FAST
@given(scenarios())
def test_decisions_agree_with_the_documented_steps(
    scenario: tuple[str, Identity, list[RefRule]],
) -> None:
    relpath, identity, rules = scenario
    parsed = [Rule.parse(*r) for r in rules]
    check_against_reference(relpath, identity, rules, parsed)
    # The order of the rules never matters.
    check_against_reference(relpath, identity, rules, list(reversed(parsed)))


@FAST
@given(scenarios(), st.sampled_from(LEVELS))
def test_an_exact_rule_of_the_strongest_class_decides(
    scenario: tuple[str, Identity, list[RefRule]], level: str
) -> None:
    relpath, identity, rules = scenario
    assume(ref_syntax_error(relpath) is None and ref_specificity(relpath).exact)
    # For a user, a rule naming them on this very file; for a visitor, one for anyone.
    who = f"user:{identity.user}" if identity.user is not None else "anyone"
    others = [r for r in rules if (nfc(r[0]), r[1]) != (nfc(relpath), who)]
    decision = decide([Rule.parse(*r) for r in [*others, (relpath, who, level)]], relpath, identity)
    assert decision.level.label == level
    assert decision.rule is not None and triple(decision.rule) == (nfc(relpath), who, level)


@FAST
@given(
    st.text(max_size=20),
    st.one_of(st.text(max_size=20), st.sampled_from(PRINCIPALS)),
    st.one_of(st.text(max_size=12), st.sampled_from(LEVELS)),
)
def test_malformed_rules_raise_rule_errors_only(pattern: str, principal: str, level: str) -> None:
    try:
        rule = Rule.parse(pattern, principal, level)
    except RuleError:
        return
    # Accepted: about the pattern given, and read back as itself.
    assert rule.pattern.text == nfc(pattern)
    assert triple(Rule.parse(*triple(rule))) == triple(rule)


# --------------------------------------------------------------------------- the store


@pytest.fixture(scope="module")
def store() -> Iterator[AclStore]:
    with tempfile.TemporaryDirectory() as folder:
        acl = AclStore.create(os.path.join(folder, "acl.db"))
        try:
            yield acl
        finally:
            acl.close()


@SLOW
@given(scenarios(), st.frozensets(st.sampled_from(GROUPS)))
def test_the_store_decides_as_the_reference(
    store: AclStore,
    scenario: tuple[str, Identity, list[RefRule]],
    stored_groups: frozenset[str],
) -> None:
    relpath, identity, rules = scenario
    store.import_text("", replace=True)
    latest: dict[tuple[str, str], str] = {}
    for pattern, principal, level in rules:
        store.grant(pattern, principal, level)
        latest[(nfc(pattern), principal)] = level  # a second grant replaces the first
    if identity.user is not None:
        for group in stored_groups:
            store.add_member(group, identity.user)
    groups = identity.groups | stored_groups if identity.user is not None else identity.groups
    kept = [(p, who, lv) for (p, who), lv in latest.items()]
    level, _, deciders = ref_decide(kept, relpath, identity.user, groups)
    decision = store.decide(relpath, identity)
    assert decision.level.label == level, (kept, relpath, identity, stored_groups)
    if decision.rule is not None:
        assert triple(decision.rule) in deciders
