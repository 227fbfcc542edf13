"""Path patterns: which images a rule is about, and how specific it is.

A pattern is a path relative to the protected root, with ``/`` between segments:

* a plain path (``gallery/2024/cat.jpg``) matches that one file;
* ``*`` matches any run of characters inside one segment (``gallery/*.jpg``);
* ``**`` as a whole segment matches any number of segments, none included
  (``gallery/**/cat.jpg`` matches ``gallery/cat.jpg`` and ``gallery/a/b/cat.jpg``);
* a trailing ``/`` means everything below (``gallery/`` is ``gallery/**``);
* ``{user}`` as a whole segment matches the requesting user's own name
  (``users/{user}/**``), and never matches for an anonymous request.

Specificity, used to pick the rule that decides, compares these in turn (the first
difference decides, larger wins):

1. an exact path (no wildcard, no ``{user}``, no trailing ``/``) beats every other pattern;
2. the *literal depth*: how many leading segments are fixed (plain text or ``{user}``),
   so ``gallery/2024/*.jpg`` (2) beats ``gallery/**/*.jpg`` (1) beats ``**/*.jpg`` (0);
3. a *bounded* pattern (a fixed number of segments, no ``**``) beats an unbounded one,
   so ``gallery/*`` beats ``gallery/``;
4. the number of fixed characters (``{user}`` and wildcards not counted),
   so ``gallery/*.jpg`` beats ``gallery/*``.

Patterns equal on all four are equally specific; the principal and level then decide
(see :mod:`imageguard.policy.acl`).

Names are compared in Unicode's composed form (NFC): ``café.jpg`` typed on a keyboard
(``é`` one character) and the same name as a Mac or an upload form may write it on disk
(``e`` and a combining accent) look the same, so a rule about one is a rule about the
other (:func:`canonical`). Without that, a deny rule typed in one form would not cover
a file uploaded under the other. User and group names are not normalised but must be
composed already (:func:`imageguard.policy.principals.check_name`): two accounts are never
made one.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from ..errors import PatternError

USER_TOKEN = "{user}"
_MAX_PATTERN = 1024
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
#: A {user} segment in a compiled pattern; matching puts the user's name in its place.
_USER_REGEX = "([^/]+)"


def canonical(path: str) -> str:
    """*path* in the form patterns and paths are compared in: Unicode NFC."""
    return path if path.isascii() else unicodedata.normalize("NFC", path)


@dataclass(frozen=True)
class Specificity:
    """How specific a pattern is; instances compare so that the more specific is larger."""

    exact: bool
    literal_depth: int
    bounded: bool
    literal_chars: int

    def key(self) -> tuple[bool, int, bool, int]:
        """The tuple that orders patterns (see the module docstring)."""
        return (self.exact, self.literal_depth, self.bounded, self.literal_chars)

    def __lt__(self, other: Specificity) -> bool:
        return self.key() < other.key()

    def __str__(self) -> str:
        if self.exact:
            return "exact path"
        kind = "bounded" if self.bounded else "recursive"
        return (
            f"{kind} wildcard, {self.literal_depth} fixed segment(s), "
            f"{self.literal_chars} fixed char(s)"
        )


@dataclass(frozen=True)
class Pattern:
    """A compiled path pattern. Build one with :func:`compile_pattern`."""

    text: str
    anchor: str
    specificity: Specificity
    regex: re.Pattern[str]
    user_groups: int

    def matches(self, relpath: str, user: str | None) -> bool:
        """True when *relpath* matches, ``{user}`` segments standing for *user*."""
        relpath = canonical(relpath)
        if self.specificity.exact:
            return relpath == self.text
        if self.user_groups:
            # The user's own name in place of each {user}: names captured first and
            # compared after could be the wrong folders where a ** before them can take
            # more or fewer ("**/{user}/**" took c, not bob, in a/bob/c/d.jpg).
            # The name is taken as it is: user names are refused unless composed (see
            # principals.check_name), so "\u212aate" (a Kelvin sign) is never "Kate".
            if user is None or "/" in user or user not in relpath:
                return False
            return _with_user(self.regex.pattern, user).fullmatch(relpath) is not None
        return self.regex.fullmatch(relpath) is not None

    def __str__(self) -> str:
        return self.text


@functools.lru_cache(maxsize=4096)
def _with_user(regex: str, user: str) -> re.Pattern[str]:
    """*regex* (a compiled pattern's) with *user*'s name in place of each ``{user}``."""
    return re.compile(regex.replace(_USER_REGEX, re.escape(user)), re.DOTALL)


def _segments(text: str) -> list[str]:
    """Split and validate a pattern's segments (a trailing ``/`` becomes ``**``)."""
    if not text:
        raise PatternError("empty pattern: use ** for everything under the root")
    if len(text) > _MAX_PATTERN:
        raise PatternError(f"pattern longer than {_MAX_PATTERN} characters")
    if _FORBIDDEN_CHARS.search(text):
        raise PatternError(f"pattern {text!r} contains a backslash or a control character")
    if text.startswith("/"):
        raise PatternError(f"pattern {text!r} must be relative to the root (no leading /)")
    segments = text.split("/")
    if segments[-1] == "":
        segments[-1] = "**"
    for segment in segments:
        if segment == "":
            raise PatternError(f"pattern {text!r} has an empty segment (//)")
        if segment in {".", ".."}:
            raise PatternError(f"pattern {text!r} has a {segment!r} segment")
        if "**" in segment and segment != "**":
            raise PatternError(f"pattern {text!r}: ** must be a whole segment")
        if ("{" in segment or "}" in segment) and segment != USER_TOKEN:
            raise PatternError(f"pattern {text!r}: {USER_TOKEN} must be a whole segment")
    return segments


def _is_literal(segment: str) -> bool:
    return "*" not in segment and segment != USER_TOKEN


def _segment_regex(segment: str) -> str:
    if segment == USER_TOKEN:
        return _USER_REGEX
    return "[^/]*".join(re.escape(part) for part in segment.split("*"))


def _regex(segments: list[str]) -> str:
    out = ""
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        if segment == "**":
            # In the middle: zero or more whole segments, each with its slash.
            # At the end: at least one more character of path, any depth.
            out += ".+" if index == last else "(?:[^/]+/)*"
            continue
        out += _segment_regex(segment)
        if index != last:
            out += "/"
    return out


def compile_pattern(text: str) -> Pattern:
    """Validate and compile *text* (see the module docstring for the syntax)."""
    if text != text.strip():
        # Trimmed, " a.jpg" would be a rule about a.jpg: refused instead, as every name
        # in a pattern is matched as written.
        raise PatternError(f"pattern {text!r} begins or ends with whitespace")
    stripped = canonical(text)
    segments = _segments(stripped)
    exact = all(_is_literal(s) for s in segments) and not stripped.endswith("/")
    depth = 0
    for segment in segments:
        if segment != USER_TOKEN and not _is_literal(segment):
            break
        depth += 1
    anchor_segments = []
    for segment in segments:
        if not _is_literal(segment):
            break
        anchor_segments.append(segment)
    anchor = stripped if exact else "".join(s + "/" for s in anchor_segments)
    literal_chars = sum(len(s.replace("*", "")) for s in segments if s not in {"**", USER_TOKEN})
    specificity = Specificity(
        exact=exact,
        literal_depth=depth,
        bounded="**" not in segments,
        literal_chars=literal_chars,
    )
    return Pattern(
        text=stripped,
        anchor=anchor,
        specificity=specificity,
        regex=re.compile(_regex(segments), re.DOTALL),
        user_groups=segments.count(USER_TOKEN),
    )


def anchors_for(relpath: str) -> list[str]:
    """Every anchor under which a rule matching *relpath* can be stored.

    A pattern's anchor is its exact path, or its fixed leading directories followed by
    ``/`` (``""`` when the first segment is already a wildcard). A rule can only match a
    path when its anchor is one of the path's ancestor directories or the path itself,
    which lets the store fetch the few candidate rules with one indexed query. Anchors
    are in :func:`canonical` form, like the patterns they come from.
    """
    parts = canonical(relpath).split("/")
    found = [""]
    prefix = ""
    for part in parts[:-1]:
        prefix += part + "/"
        found.append(prefix)
    found.append("/".join(parts))
    return found
