"""Every generated configuration block shown in the README and docs/ is the generator's
own output for the example site (the files in apache_conf/), to the letter.

(test_docs_truth.py holds every other configuration block to the code as well.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from imageguard.apache.apacheconf import shipped_files

ROOT = Path(__file__).resolve().parents[2]
PAGES = [
    ROOT / "README.md",
    *sorted(
        page
        for page in (ROOT / "docs").rglob("*.md")
        if "node_modules" not in page.relative_to(ROOT).parts
    ),
]
FENCED = re.compile(r"^```apache(?:conf)?\n(.*?)^```", re.MULTILINE | re.DOTALL)
#: How a block imageguard apache-conf writes begins.
GENERATED = "# imageguard: "


def generated_blocks() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for block in FENCED.findall(page.read_text()):
            if block.startswith(GENERATED):
                found.append((page.name, block))
    return found


def test_the_docs_show_generated_blocks() -> None:
    assert len(generated_blocks()) >= 2  # phases.md and tickets.md show whole blocks


@pytest.mark.parametrize(("page", "block"), generated_blocks())
def test_a_shown_block_is_a_shipped_file(page: str, block: str) -> None:
    shipped = {text.strip(): name for name, text in shipped_files().items()}
    assert block.strip() in shipped, f"{page} shows a block that apache-conf does not write"
