"""Which variant a request asks for, and which one it is given."""

from __future__ import annotations

import pytest

from imageguard.errors import VariantError
from imageguard.policy.levels import Level
from imageguard.policy.variants import choose, requested_variant


@pytest.mark.parametrize(
    ("query", "variant"),
    [
        ("", Level.FULL),
        ("v=thumb", Level.THUMB),
        ("v=preview", Level.PREVIEW),
        ("v=full", Level.FULL),
        ("ig_exp=1&ig_lvl=thumb&ig_sig=x&v=thumb", Level.THUMB),
        ("dev=thumb", Level.FULL),  # another parameter ending in v
        ("v", Level.FULL),
    ],
)
def test_requested_variant(query: str, variant: Level) -> None:
    assert requested_variant(query) is variant


@pytest.mark.parametrize("query", ["v=huge", "v=", "v=THUMB", "v=thumb&v=preview", "v=deny"])
def test_bad_variants_are_refused(query: str) -> None:
    with pytest.raises(VariantError):
        requested_variant(query)


@pytest.mark.parametrize(
    ("asked", "level", "downgrade", "served"),
    [
        (Level.FULL, Level.FULL, True, Level.FULL),
        (Level.THUMB, Level.FULL, False, Level.THUMB),  # less than allowed: always fine
        (Level.PREVIEW, Level.PREVIEW, False, Level.PREVIEW),
        (Level.FULL, Level.PREVIEW, True, Level.PREVIEW),  # the best the level allows
        (Level.FULL, Level.THUMB, True, Level.THUMB),
        (Level.PREVIEW, Level.THUMB, True, Level.THUMB),
        (Level.FULL, Level.PREVIEW, False, None),
        (Level.PREVIEW, Level.THUMB, False, None),
        (Level.THUMB, Level.DENY, True, None),
        (Level.FULL, Level.DENY, True, None),
    ],
)
def test_choose(asked: Level, level: Level, downgrade: bool, served: Level | None) -> None:
    choice = choose(asked, level, downgrade=downgrade)
    assert choice.variant is served
    assert choice.served == (served is not None)
    assert choice.reason


def test_refusal_without_downgrade_names_the_option() -> None:
    assert "imageguard.downgrade off" in choose(Level.FULL, Level.THUMB, downgrade=False).reason
