"""Principals (who a rule is about) and identities (who is asking)."""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import PrincipalError


class PrincipalKind(enum.IntEnum):
    """The principal classes, ordered by precedence: a larger value wins a tie."""

    ANYONE = 0
    AUTHENTICATED = 1
    GROUP = 2
    USER = 3


_MAX_NAME = 128

#: The viewer a preview's watermark names when nobody is logged in (a share link's
#: anonymous holder), and whom ``imageguard renditions warm`` makes previews for.
GUEST = "guest"


def check_name(name: str, what: str) -> str:
    """Return *name* if it can name a user or group, else raise :class:`PrincipalError`.

    A name must be usable as one path segment (``users/{user}/**`` substitutes it), so it
    may not be empty, ``.`` or ``..``, nor contain ``/``, whitespace or control characters;
    and it must be in Unicode composed form (NFC), the form paths are compared in, so
    that no two names of different accounts stand for one folder.
    """
    if not name:
        raise PrincipalError(f"{what} name is empty")
    if len(name) > _MAX_NAME:
        raise PrincipalError(f"{what} name is longer than {_MAX_NAME} characters")
    if name in {".", ".."} or "/" in name or "\\" in name:
        raise PrincipalError(f"{what} name {name!r} cannot be a path segment")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise PrincipalError(f"{what} name {name!r} contains whitespace or control characters")
    if not name.isascii() and unicodedata.normalize("NFC", name) != name:
        # Paths are compared composed (imageguard.policy.patterns): a name in another form
        # would meet another account's folders ("\u212aate", a Kelvin sign, is "Kate").
        raise PrincipalError(f"{what} name {name!r} is not in Unicode composed form (NFC)")
    return name


def valid_groups(names: Iterable[object]) -> frozenset[str]:
    """The group names among *names* that :func:`check_name` accepts.

    For groups read from a login (a session's list, a ticket's tokens): a value that
    cannot name a group (not text, empty, a path trick, not NFC) grants nothing and is
    left out, while the login itself stays valid.
    """
    found = set()
    for name in names:
        if not isinstance(name, str):
            continue
        try:
            found.add(check_name(name, "group"))
        except PrincipalError:
            continue
    return frozenset(found)


@dataclass(frozen=True, order=True)
class Principal:
    """Who a rule applies to: ``user:NAME``, ``group:NAME``, ``authenticated`` or ``anyone``."""

    kind: PrincipalKind
    name: str = ""

    def __str__(self) -> str:
        if self.kind is PrincipalKind.USER:
            return f"user:{self.name}"
        if self.kind is PrincipalKind.GROUP:
            return f"group:{self.name}"
        return self.kind.name.lower()


ANYONE = Principal(PrincipalKind.ANYONE)
AUTHENTICATED = Principal(PrincipalKind.AUTHENTICATED)


def parse_principal(text: str) -> Principal:
    """Parse ``user:NAME``, ``group:NAME``, ``authenticated`` or ``anyone``."""
    text = text.strip()
    lowered = text.lower()
    if lowered == "anyone":
        return ANYONE
    if lowered == "authenticated":
        return AUTHENTICATED
    prefix, sep, name = text.partition(":")
    if sep and prefix.lower() == "user":
        return Principal(PrincipalKind.USER, check_name(name, "user"))
    if sep and prefix.lower() == "group":
        return Principal(PrincipalKind.GROUP, check_name(name, "group"))
    raise PrincipalError(
        f"unknown principal {text!r}: use user:NAME, group:NAME, authenticated or anyone"
    )


@dataclass(frozen=True)
class Identity:
    """Who is asking: a user name (``None`` when anonymous) and the groups they belong to."""

    user: str | None = None
    groups: frozenset[str] = field(default_factory=frozenset)

    @property
    def authenticated(self) -> bool:
        """True when the request carries a valid login."""
        return self.user is not None

    def with_groups(self, more: frozenset[str]) -> Identity:
        """Return this identity with *more* groups added (e.g. memberships from the store)."""
        if more <= self.groups:
            return self
        return Identity(self.user, self.groups | more)

    def principals(self) -> frozenset[Principal]:
        """Every principal this identity answers to."""
        found = {ANYONE}
        if self.user is not None:
            found.add(AUTHENTICATED)
            found.add(Principal(PrincipalKind.USER, self.user))
            found.update(Principal(PrincipalKind.GROUP, g) for g in self.groups)
        return frozenset(found)

    def __str__(self) -> str:
        if self.user is None:
            return "anonymous"
        if not self.groups:
            return f"user {self.user}"
        return f"user {self.user} (groups: {', '.join(sorted(self.groups))})"


ANONYMOUS = Identity()
