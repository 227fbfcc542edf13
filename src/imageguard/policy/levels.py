"""Access levels: how much of an image a viewer may see."""

from __future__ import annotations

import enum

from ..errors import LevelError


class Level(enum.IntEnum):
    """What a rule grants, ordered so that a larger value shows more of the image.

    ``DENY`` shows nothing, ``THUMB`` a small rendition, ``PREVIEW`` a larger, watermarked
    rendition, and ``FULL`` the original file, untouched.
    """

    DENY = 0
    THUMB = 1
    PREVIEW = 2
    FULL = 3

    @property
    def label(self) -> str:
        """The lower-case name used in rules, on the command line and in logs."""
        return self.name.lower()

    def __str__(self) -> str:
        return self.label


_BY_LABEL = {level.label: level for level in Level}


def parse_level(text: str) -> Level:
    """Return the level named by *text* (``full``, ``preview``, ``thumb`` or ``deny``)."""
    try:
        return _BY_LABEL[text.strip().lower()]
    except KeyError:
        choices = ", ".join(level.label for level in sorted(Level, reverse=True))
        raise LevelError(f"unknown level {text!r}: use one of {choices}") from None
