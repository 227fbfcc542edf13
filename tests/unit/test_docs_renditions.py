"""docs/renditions.md says what the code does: its tables are checked against it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from imageguard.apache.settings import OPTIONS, Settings
from imageguard.policy.levels import Level, parse_level
from imageguard.policy.variants import choose, requested_variant

DOC = (Path(__file__).resolve().parents[2] / "docs" / "renditions.md").read_text()


def table_after(heading: str) -> list[list[str]]:
    """The rows of the first Markdown table after the line *heading*."""
    rows: list[list[str]] = []
    for line in DOC[DOC.index(heading) :].splitlines():
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # no header, no separator


def test_variant_table_is_what_choose_does() -> None:
    rows = table_after("| level \\ asked for |")
    asked = [Level.FULL, Level.PREVIEW, Level.THUMB]
    assert [parse_level(row[0].strip("`")) for row in rows] == sorted(Level, reverse=True)
    for row in rows:
        level = parse_level(row[0].strip("`"))
        for cell, wanted in zip(row[1:], asked):
            served = cell.split()[0]
            choice = choose(wanted, level, downgrade=True)
            if served == "refused":
                assert not choice.served
            else:
                assert choice.variant is parse_level("full" if served == "original" else served)
                # A footnote marks exactly the cells that downgrading decides.
                assert ("¹" in cell) == (not choose(wanted, level, downgrade=False).served)


@pytest.mark.parametrize(
    ("query", "variant"), [("", Level.FULL), ("v=preview", Level.PREVIEW), ("v=thumb", Level.THUMB)]
)
def test_documented_queries(query: str, variant: Level) -> None:
    assert requested_variant(query) is variant


def test_every_rendition_option_is_documented_with_its_default() -> None:
    rows = {row[0].strip("`"): row[1].strip("`") for row in table_after("## Options")}
    rendition_options = {
        "imageguard.cache_dir",
        "imageguard.thumb_size",
        "imageguard.preview_size",
        "imageguard.watermark",
        "imageguard.downgrade",
        "imageguard.verify_content",
        "imageguard.max_pixels",
        "imageguard.placeholder",
    }
    assert set(rows) == rendition_options and rendition_options <= set(OPTIONS)
    defaults = Settings.from_options({})
    for name, shown in rows.items():
        value = getattr(defaults, name.removeprefix("imageguard."))
        if isinstance(value, bool):
            assert shown == ("on" if value else "off"), name
        elif value is None:
            assert shown == "none", name
        else:
            assert shown == str(value), name


def test_statuses_named_in_the_doc_exist() -> None:
    statuses = set(re.findall(r"\b(4\d\d|5\d\d)\b", DOC))
    assert {"400", "403", "404", "415", "500"} <= statuses
