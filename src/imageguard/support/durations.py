"""Durations as people write them: ``90``, ``90s``, ``30m``, ``2h``, ``7d``, ``1w``."""

from __future__ import annotations

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> int:
    """Seconds in *text*; a bare number is seconds. :class:`ValueError` when malformed."""
    value = text.strip().lower()
    factor = 1
    if value and value[-1] in _UNITS:
        factor = _UNITS[value[-1]]
        value = value[:-1]
    if not value.isdigit():
        raise ValueError(f"{text!r} is not a duration (like 90, 30m, 2h, 7d)")
    return int(value) * factor
