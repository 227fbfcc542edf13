"""Variants: which form of an image a request asks for, and which one it is given.

An image is served in one of three variants, named like the levels that allow them:
``full`` (the original file, untouched), ``preview`` (fitted in ``imageguard.preview_size``
and watermarked) and ``thumb`` (fitted in ``imageguard.thumb_size``).

A request names the variant it wants in its query, ``?v=thumb`` or ``?v=preview`` (a
gallery page links its thumbnails that way); without ``v`` it asks for the original.
What it gets, given the level the ACL grants (see :func:`choose`):

* the level is at least the variant asked for: that variant;
* the level is lower but not ``deny``: the best variant the level allows (``preview``
  or ``thumb``) when downgrading is on (``imageguard.downgrade``, the default), else a
  refusal;
* the level is ``deny``: a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import VariantError
from .levels import Level

#: The query parameter naming the variant.
VARIANT_PARAM = "v"

_BY_NAME = {"full": Level.FULL, "preview": Level.PREVIEW, "thumb": Level.THUMB}


def requested_variant(query: str) -> Level:
    """The variant the query string *query* asks for (``full`` when it names none).

    Raises :class:`VariantError` for an unknown or repeated ``v``.
    """
    found: Level | None = None
    if f"{VARIANT_PARAM}=" not in query:
        return Level.FULL
    for part in query.split("&"):
        name, sep, value = part.partition("=")
        if name != VARIANT_PARAM or not sep:
            continue
        if found is not None:
            raise VariantError("the query names the variant twice")
        try:
            found = _BY_NAME[value]
        except KeyError:
            raise VariantError(
                f"unknown variant {value[:40]!r}: use v=thumb, v=preview or no v"
            ) from None
    return Level.FULL if found is None else found


@dataclass(frozen=True)
class VariantChoice:
    """What :func:`choose` decided: the variant to serve (``None``: refuse) and why."""

    variant: Level | None
    reason: str

    @property
    def served(self) -> bool:
        """True when a variant is to be served."""
        return self.variant is not None


def choose(asked: Level, level: Level, *, downgrade: bool = True) -> VariantChoice:
    """The variant served to a viewer with *level* who asked for *asked* (module doc).

    There are only 32 questions, so the answers are worked out once (:data:`_CHOICES`).
    """
    return _CHOICES[(asked, level, downgrade)]


def _choose(asked: Level, level: Level, downgrade: bool) -> VariantChoice:
    if level is Level.DENY:
        return VariantChoice(None, "level deny")
    if level >= asked:
        return VariantChoice(asked, f"level {level.label} allows {asked.label}")
    if downgrade:
        return VariantChoice(level, f"asked for {asked.label}, level {level.label} gives {level}")
    return VariantChoice(
        None, f"asked for {asked.label} but level is {level.label} (imageguard.downgrade off)"
    )


_CHOICES = {
    (asked, level, downgrade): _choose(asked, level, downgrade)
    for asked in Level
    for level in Level
    for downgrade in (True, False)
}
