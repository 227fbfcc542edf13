"""docs/security.md shows what the suites test and measured: the hostile requests of
test_hostile_requests.py, the bad option values of test_faults.py, and the newest soak
results of soak/results/."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from tests.integration.test_faults import BAD_OPTIONS
from tests.integration.test_hostile_requests import CASES, markdown_tables

PROJECT = Path(__file__).resolve().parents[2]
DOC = PROJECT / "docs" / "security.md"
SOAK_RESULTS = PROJECT / "soak" / "results"


def section(name: str) -> str:
    """The text between ``<!-- NAME:begin ... -->`` and ``<!-- NAME:end -->``."""
    found = re.search(
        rf"<!-- {name}:begin[^>]*-->\n(.*?)<!-- {name}:end -->", DOC.read_text(), re.S
    )
    assert found, f"docs/security.md lost its {name} markers"
    return found.group(1)


def bad_options_table() -> str:
    rows = ["| option | bad value | the log line names |", "| --- | --- | --- |"]
    for bad in BAD_OPTIONS:
        value = bad.value.replace("{workdir}", "WD") or " "
        named = (bad.named_as or bad.option).replace("{workdir}", "WD")
        said = bad.said.replace("{workdir}", "WD")
        rows.append(f"| `{bad.option}` | `{value}` | {named}; {said} |")
    return "\n".join(rows) + "\n"


def newest_soak_results() -> dict[str, dict]:
    """The newest result file of each MPM."""
    newest: dict[str, dict] = {}
    for path in sorted(SOAK_RESULTS.glob("*.json")):
        result = json.loads(path.read_text())
        result["file"] = path.name
        newest[result["mpm"]] = result
    return newest


def _requests(r: dict) -> str:
    return f"{r['requests']['answered']:,} ({r['requests']['per_second']:,.0f}/s)"


def _wrong(r: dict) -> str:
    wrong = r["wrong_decisions"]
    return f"**{wrong['total']}** ({wrong['wrong_grants']})"


def _latency(r: dict) -> str:
    return f"{r['latency_ms']['p50']:g} / {r['latency_ms']['p99']:g} ms"


def _rss(r: dict) -> str:
    before, after = r["rss_kb"]["before"], r["rss_kb"]["after"]
    return (
        f"{before['total_kb'] // 1024} / {after['total_kb'] // 1024} MB "
        f"({before['processes']} / {after['processes']} processes)"
    )


def _writes(r: dict) -> str:
    return f"{r['writes']['total']} ({len(r['errors']['writer_errors'])})"


def _graceful(r: dict) -> str:
    return f"{r['graceful']['took_s']:g} s, {r['graceful']['failed_then']}"


SOAK_ROWS: list[tuple[str, Callable[[dict], object]]] = [
    ("result file", lambda r: f"`soak/results/{r['file']}`"),
    ("requests answered", _requests),
    ("wrong decisions (wrong grants)", _wrong),
    (
        "answers with a write in flight",
        lambda r: f"{r['wrong_decisions']['with_write_in_flight']:,}",
    ),
    ("unexpected 5xx", lambda r: r["errors"]["unexpected_5xx"]),
    ("failed connections", lambda r: f"**{r['errors']['failed_connections']}**"),
    ("keep-alive requests re-sent", lambda r: r["requests"]["keepalive_resent"]),
    ("latency p50 / p99", _latency),
    ("Apache RSS before / after", _rss),
    ("writes (writer errors)", _writes),
    ("revoking writes checked by the next requests", lambda r: r["revocations"]["writes_checked"]),
    ("graceful restart: took, failed", _graceful),
    (
        "control (a wrong model) finds wrong grants",
        lambda r: f"{r['control_check']['wrong_grants']:,}",
    ),
]


def soak_table() -> str:
    results = newest_soak_results()
    mpms = [m for m in ("event", "prefork") if m in results]
    rows = ["| | " + " | ".join(mpms) + " |", "| --- |" + " --- |" * len(mpms)]
    for label, cell in SOAK_ROWS:
        rows.append(f"| {label} | " + " | ".join(str(cell(results[m])) for m in mpms) + " |")
    return "\n".join(rows) + "\n"


def test_the_hostile_request_tables_are_the_tests_cases() -> None:
    assert section("hostile-requests") == markdown_tables()


def test_the_count_quoted_is_the_count_tested() -> None:
    assert f"({len(CASES)} requests, four\ntimes)" in DOC.read_text()


def test_the_bad_option_table_is_the_tests_list() -> None:
    assert section("bad-options") == bad_options_table()


def test_the_soak_figures_are_the_newest_results() -> None:
    results = newest_soak_results()
    assert set(results) == {"event", "prefork"}
    assert all(r["passed"] for r in results.values())
    assert section("soak") == soak_table()
