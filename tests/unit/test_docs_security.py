"""docs/security.md's table of hostile requests is the test suite's table."""

from __future__ import annotations

import re
from pathlib import Path

from tests.integration.test_hostile_requests import CASES, markdown_tables

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def _section() -> str:
    text = DOC.read_text()
    found = re.search(
        r"<!-- hostile-requests:begin[^>]*-->\n(.*?)<!-- hostile-requests:end -->", text, re.S
    )
    assert found, "docs/security.md lost its hostile-requests markers"
    return found.group(1)


def test_the_hostile_request_tables_are_the_tests_cases() -> None:
    assert _section() == markdown_tables()


def test_the_count_quoted_is_the_count_tested() -> None:
    assert f"({len(CASES)} requests, four\ntimes)" in DOC.read_text()
