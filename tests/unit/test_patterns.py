"""Pattern syntax, matching and specificity."""

from __future__ import annotations

import pytest

from imageguard.errors import PatternError
from imageguard.policy.patterns import anchors_for, compile_pattern


@pytest.mark.parametrize(
    ("pattern", "path", "user", "expected"),
    [
        ("gallery/cat.jpg", "gallery/cat.jpg", None, True),
        ("gallery/cat.jpg", "gallery/cat.jpeg", None, False),
        ("gallery/cat.jpg", "gallery/sub/cat.jpg", None, False),
        ("gallery/*.jpg", "gallery/cat.jpg", None, True),
        ("gallery/*.jpg", "gallery/sub/cat.jpg", None, False),
        ("gallery/*", "gallery/cat.png", None, True),
        ("gallery/c*t.jpg", "gallery/coat.jpg", None, True),
        ("gallery/c*t.jpg", "gallery/cab.jpg", None, False),
        ("gallery/**", "gallery/cat.jpg", None, True),
        ("gallery/**", "gallery/a/b/c/cat.jpg", None, True),
        ("gallery/**", "gallery2/cat.jpg", None, False),
        ("gallery/", "gallery/a/cat.jpg", None, True),
        ("gallery/", "other/cat.jpg", None, False),
        ("gallery/**/cat.jpg", "gallery/cat.jpg", None, True),
        ("gallery/**/cat.jpg", "gallery/x/y/cat.jpg", None, True),
        ("gallery/**/cat.jpg", "gallery/x/y/dog.jpg", None, False),
        ("**/*.png", "a.png", None, True),
        ("**/*.png", "a/b/c.png", None, True),
        ("**/*.png", "a/b/c.jpg", None, False),
        ("**", "anything/at/all.gif", None, True),
        ("users/{user}/**", "users/bob/a.jpg", "bob", True),
        ("users/{user}/**", "users/bob/a.jpg", "alice", False),
        ("users/{user}/**", "users/bob/a.jpg", None, False),
        ("a.b/[x].jpg", "a.b/[x].jpg", None, True),
        ("a.b/[x].jpg", "a_b/x.jpg", None, False),
        ("odd (1)+?.jpg", "odd (1)+?.jpg", None, True),
    ],
)
def test_matching(pattern: str, path: str, user: str | None, expected: bool) -> None:
    assert compile_pattern(pattern).matches(path, user) is expected


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "empty pattern"),
        ("/abs/a.jpg", "relative"),
        ("a//b.jpg", "empty segment"),
        ("a/../b.jpg", "'..'"),
        ("./b.jpg", "'.'"),
        ("a/x**.jpg", "whole segment"),
        ("a/{user}x/b", "whole segment"),
        ("a/{nobody}/b", "whole segment"),
        ("a\\b.jpg", "backslash"),
        ("a/b\n.jpg", "control"),
        ("x" * 1025, "longer than"),
    ],
)
def test_bad_patterns_are_refused(pattern: str, message: str) -> None:
    with pytest.raises(PatternError, match=message):
        compile_pattern(pattern)


def spec(text: str) -> tuple:
    return compile_pattern(text).specificity.key()


def test_specificity_order_is_as_documented() -> None:
    order = [
        "gallery/2024/cat.jpg",  # exact
        "gallery/2024/*.jpg",  # depth 2, bounded, 8 chars
        "gallery/2024/*",  # depth 2, bounded, fewer chars
        "gallery/2024/**/*.jpg",  # depth 2, unbounded
        "gallery/2024/",  # depth 2, unbounded, fewer chars
        "gallery/*/cat.jpg",  # depth 1, bounded
        "gallery/**/*.jpg",  # depth 1, unbounded
        "gallery/",  # depth 1, unbounded, fewer chars
        "*/2024/cat.jpg",  # depth 0, bounded
        "**/*.jpg",  # depth 0, unbounded
        "**",  # depth 0, unbounded, no chars
    ]
    keys = [spec(p) for p in order]
    assert keys == sorted(keys, reverse=True)
    assert len(set(keys)) == len(keys)


def test_user_segment_counts_as_fixed_depth() -> None:
    assert spec("users/{user}/**") > spec("users/*/**")
    assert spec("users/{user}/**") > spec("users/")


def test_trailing_slash_is_recursive_wildcard() -> None:
    assert spec("gallery/") == spec("gallery/**")


def test_exact_beats_any_wildcard_however_deep() -> None:
    assert spec("a.jpg") > spec("a/b/c/d/e/f/*.jpg")


@pytest.mark.parametrize(
    ("pattern", "anchor"),
    [
        ("gallery/cat.jpg", "gallery/cat.jpg"),
        ("gallery/*.jpg", "gallery/"),
        ("gallery/", "gallery/"),
        ("gallery/2024/**", "gallery/2024/"),
        ("**/*.jpg", ""),
        ("*.jpg", ""),
        ("users/{user}/**", "users/"),
    ],
)
def test_anchor_is_fixed_leading_directories(pattern: str, anchor: str) -> None:
    assert compile_pattern(pattern).anchor == anchor


def test_every_matching_pattern_anchor_is_among_the_path_anchors() -> None:
    path = "gallery/2024/summer/cat.jpg"
    patterns = [
        "gallery/2024/summer/cat.jpg",
        "gallery/**",
        "gallery/2024/*/cat.jpg",
        "**/*.jpg",
        "gallery/2024/summer/",
        "*/2024/**",
    ]
    anchors = set(anchors_for(path))
    for text in patterns:
        pattern = compile_pattern(text)
        assert pattern.matches(path, None), text
        assert pattern.anchor in anchors, text


def test_anchors_for() -> None:
    assert anchors_for("a/b/c.jpg") == ["", "a/", "a/b/", "a/b/c.jpg"]
    assert anchors_for("c.jpg") == ["", "c.jpg"]


# A name as a keyboard types it (composed, NFC) and as a Mac writes it (decomposed, NFD).
COMPOSED = "photos/\u00e9t\u00e9.jpg"
DECOMPOSED = "photos/e\u0301te\u0301.jpg"


@pytest.mark.parametrize("pattern", [COMPOSED, DECOMPOSED, "photos/*t\u00e9.jpg", "photos/"])
@pytest.mark.parametrize("path", [COMPOSED, DECOMPOSED])
def test_composed_and_decomposed_names_are_one_name(pattern: str, path: str) -> None:
    """A deny rule typed one way covers the file uploaded the other way."""
    assert compile_pattern(pattern).matches(path, None)


def test_patterns_and_anchors_are_kept_composed() -> None:
    assert compile_pattern(DECOMPOSED).text == COMPOSED
    assert compile_pattern(DECOMPOSED).anchor == COMPOSED
    assert anchors_for(DECOMPOSED) == ["", "photos/", COMPOSED]


def test_user_names_are_never_normalised_into_another_account() -> None:
    """NFC is many-to-one: the Kelvin sign composes to K. A user "\u212aate" must not
    get Kate's folder, so names must already be composed (check_name), and {user} takes
    the name as it is."""
    from imageguard.errors import PrincipalError
    from imageguard.policy.principals import check_name

    pattern = compile_pattern("users/{user}/**")
    assert not pattern.matches("users/Kate/private.jpg", "\u212aate")
    assert not pattern.matches("users/Jos\u00e9/a.jpg", "Jose\u0301")
    assert pattern.matches("users/Jose\u0301/a.jpg", "Jos\u00e9")  # the path is composed
    assert not pattern.matches("users/a/b/x.jpg", "a/b")  # not a name: never a match
    for name in ("\u212aate", "Jose\u0301", "\u2126mega"):
        with pytest.raises(PrincipalError, match="composed form"):
            check_name(name, "user")
    assert check_name("Jos\u00e9", "user") == "Jos\u00e9"
