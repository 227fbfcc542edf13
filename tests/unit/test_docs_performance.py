"""docs/performance.md quotes the benchmark's own results: every figure of its two
results tables, and the memory and ACL figures of the targets, are read back from the
``bench/results/`` file the page names for them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "performance.md").read_text()
SIZES = ("8k", "200k", "4m")


def section(heading: str) -> str:
    start = DOC.index(heading)
    end = DOC.find("\n## ", start + len(heading))
    return DOC[start : end if end > 0 else len(DOC)]


def results_named_in(text: str) -> dict[str, Any]:
    """The results file the section's tables come from (the link after "From")."""
    found = re.search(r"From\s+\[[^\]]*\]\(\.\./(bench/results/[\w.-]+\.json)\)", text)
    assert found, "the section names no results file"
    return json.loads((ROOT / found.group(1)).read_text())


def table_rows(text: str) -> list[list[str]]:
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("| ")
    ]
    return rows[1:]  # no header (the separator line starts with "| ---" and is dropped below)


def as_shown(value: float, shown: str) -> float:
    """*value* rounded to as many decimals as the page shows in *shown*."""
    decimals = len(shown.strip().partition(".")[2])
    return round(value, decimals)


def number(cell: str) -> float:
    return float(cell.replace("*", "").replace(",", "").split()[0])


@pytest.mark.parametrize(
    "heading",
    [
        "## Results after the redesign, mpm_event",
        "## Results after the redesign, mpm_prefork",
        "## Results, mpm_event",
        "## Results, mpm_prefork",
    ],
)
def test_results_tables_are_the_benchmarks(heading: str) -> None:
    text = section(heading)
    results = results_named_in(text)
    rows = [row for row in table_rows(text) if not row[0].startswith("---")]
    assert [row[0].strip("*") for row in rows] == list(results["variants"])
    for row in rows:
        cells = results["cells"][row[0].strip("*")]
        for index, size in enumerate(SIZES):
            rps_cell, latency_cell = row[1 + 2 * index], row[2 + 2 * index]
            measured = cells[size]
            assert number(rps_cell) == round(measured["rps"]), (row[0], size)
            if latency_cell:
                for shown, key in zip(latency_cell.split("/"), ("p50_ms", "p99_ms")):
                    assert as_shown(measured[key], shown) == float(shown), (row[0], size, key)


def test_the_memory_and_acl_targets_are_the_benchmarks() -> None:
    event = results_named_in(section("## Results, mpm_event"))
    prefork = results_named_in(section("## Results, mpm_prefork"))
    targets = section("## The targets")
    for results in (event, prefork):
        rss = results["rss"]
        growth = f"+{rss['after_mb'] - rss['before_mb']:.1f} MB ({rss['before_mb']:.1f}"
        assert growth in targets, growth
    acl = event["acl"]
    assert f"{acl['warm_p50_us']:.1f} us (p99 {acl['warm_p99_us']:.1f} us)" in targets


def test_the_send_paths_tables_are_bench_sendpaths_results() -> None:
    """Each table of "The 4 MB result, explained" is the medians of the sendpaths file
    named just before it (requests a second, shown whole)."""
    text = section("## The 4 MB result, explained")
    parts = re.split(r"From\s+\[[^\]]*\]\(\.\./(bench/results/sendpaths-[\w.-]+\.json)\)", text)
    assert len(parts) >= 5, "two results files, each followed by its table"
    for name, after in zip(parts[1::2], parts[2::2]):
        results = json.loads((ROOT / name).read_text())
        lines = [line for line in after.split("\n\n", 2)[1].splitlines() if line.startswith("|")]
        header = [cell.strip().strip("`") for cell in lines[0].strip("|").split("|")]
        rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
        assert [row[0] for row in rows] == list(results["sizes"])
        for row in rows:
            medians = results["sizes"][row[0]]["median_rps"]
            assert header[1:] == list(medians)
            assert [number(cell) for cell in row[1:]] == [round(v) for v in medians.values()]


def test_where_the_time_goes_is_bench_profile_results() -> None:
    """The per-request CPU figures and the cost of each guarantee, as the profile file the
    section names measured them (microseconds, one decimal)."""
    text = section("## Where imageguard's time goes")
    found = re.search(r"From\s+\[[^\]]*\]\(\.\./(bench/results/profile-[\w.-]+\.json)\)", text)
    assert found, "the section names no profile results file"
    results = json.loads((ROOT / found.group(1)).read_text())
    rows = {
        row[0].split(":")[0].strip("*` "): row[1:] for row in table_rows(text) if row[0] != "---"
    }
    shown = [name for name in results["cpu_us"] if name in rows]
    assert "imageguard" in shown and "floor" in shown, sorted(rows)
    for name in shown:
        assert number(rows[name][0]) == results["cpu_us"][name], name
    assert number(rows["imageguard"][1]) == results["above_floor_us"]
    for name, value in results["guarantees_above_floor_us"].items():
        assert number(rows[f"guarantees {name}"][1]) == value, name
    assert f"floor / imageguard {results['floor_over_imageguard']:.2f}" in text
    for name, value in results["steps_us"].items():
        assert re.search(rf"\b{name}\s+{value:.2f} us", text), name
    other = re.search(r"\(\.\./(bench/results/profile-[\w.-]+-prefork\.json)\)", text)
    assert other, "the section names the prefork profile too"
    prefork = json.loads((ROOT / other.group(1)).read_text())["guarantees_above_floor_us"]
    quoted = f"cost {prefork['+all three']} us above an empty handler together, the binding "
    assert quoted + f"{prefork['+bound']} us" in " ".join(text.split())


def test_the_redesigns_targets_are_the_benchmarks() -> None:
    """The rows of the targets table for the redesign's CPU and stream-through targets
    show what the results file of the event section measured."""
    text = section("## Results after the redesign, mpm_event")
    event = results_named_in(text)
    prefork_text = section("## Results after the redesign, mpm_prefork")
    prefork = results_named_in(prefork_text)
    for section_text, results in ((text, event), (prefork_text, prefork)):
        checked = []
        for variant, by_size in results["cells"].items():  # the CPU figures quoted
            quoted = re.search(rf"\b{re.escape(variant)} ([\d.]+) us", section_text)
            if quoted:
                assert float(quoted.group(1)) == by_size["8k"]["cpu_us"], variant
                checked.append(variant)
        assert {"floor", "static"} <= set(checked), checked  # the loop compared something
    targets = section("## The targets")
    for column, results in ((2, event), (3, prefork)):
        measured = {target["name"]: target["measured"] for target in results["targets"]}
        for name in (
            "floor CPU / imageguard CPU a request, 8 KB",
            "imageguard CPU above the floor's, 8 KB",
            "imageguard / stream at 8 KB",
        ):
            (row,) = [row for row in table_rows(targets) if row[0] == name]
            assert row[column] == measured[name], name
        (row,) = [row for row in table_rows(targets) if "after the redesign" in row[0]]
        cells = results["cells"]
        p99 = [cells["imageguard"][n]["p99_ms"] / cells["static"][n]["p99_ms"] for n in SIZES[:2]]
        assert row[column] == ", ".join(f"{ratio:.2f}" for ratio in p99)
    cells = event["cells"]
    p99 = [cells["imageguard"][n]["p99_ms"] / cells["static"][n]["p99_ms"] for n in SIZES[:2]]
    ig, static = (
        [cells[variant][n]["p99_ms"] for n in SIZES[:2]] for variant in ("imageguard", "static")
    )
    quoted = (  # the tail-latency paragraph, whitespace aside
        f"{p99[0]:.2f} and {p99[1]:.2f} times static's ({ig[0]:.2f} and {ig[1]:.1f} ms "
        f"against {static[0]:.2f} and {static[1]:.2f} ms)"
    )
    assert quoted in " ".join(DOC.split())


def test_the_postgresql_store_section_is_the_benchmarks() -> None:
    """The section on the PostgreSQL store quotes two results files: the run of
    bench/run.py it names first (req/s, the ratio to static, Apache's CPU a request and
    how much above static's, per file and variant, and imageguard-pg / imageguard), and
    the interleaved rounds of bench/pgstore.py it names second (their medians, and the
    spread of the rounds)."""
    text = section("## The PostgreSQL store")
    flat = " ".join(text.split())
    parts = re.split(r"From\s+\[[^\]]*\]\(\.\./(bench/results/[\w.-]+\.json)\)", text)
    assert len(parts) == 5, "two results files, each followed by its table"
    run = json.loads((ROOT / parts[1]).read_text())
    interleaved = json.loads((ROOT / parts[3]).read_text())
    names = {"8 KB": "8k", "200 KB": "200k", "4 MB": "4m"}

    cells = run["cells"]
    rows = [row for row in table_rows(parts[2]) if not row[0].startswith("---")]
    shown = [(names[row[0]], row[1].strip("*")) for row in rows]
    variants = ("static", "imageguard", "imageguard-pg")
    assert shown == [(size, variant) for size in SIZES for variant in variants]
    for row, (size, variant) in zip(rows, shown):
        cell, floor = cells[variant][size], cells["static"][size]
        assert number(row[2]) == round(cell["rps"]), (size, variant)
        assert row[3] == f"{cell['rps'] / floor['rps']:.2f}", (size, variant)
        assert row[4] == f"{cell['cpu_us']:.1f} us", (size, variant)
        above = "" if variant == "static" else f"{cell['cpu_us'] - floor['cpu_us']:.1f} us"
        assert row[5] == above, (size, variant)
    ratios = ", ".join(
        f"{cells['imageguard-pg'][size]['rps'] / cells['imageguard'][size]['rps']:.2f} at {name}"
        for name, size in names.items()
    )
    assert f"imageguard-pg / imageguard: {ratios}." in flat
    assert f"load average {run['load_before'][0]} at the start" in flat
    assert run["settings"]["postgres_cpus"] == run["settings"]["wrk_cpus"]  # "wrk's CPU"

    rows = [row for row in table_rows(parts[4]) if not row[0].startswith("---")]
    summary = interleaved["summary"]
    assert [names[row[0]] for row in rows] == list(summary)
    for row in rows:
        figures = summary[names[row[0]]]
        assert [number(cell) for cell in row[1:3]] == [
            round(figures["imageguard_rps"]),
            round(figures["imageguard_pg_rps"]),
        ]
        assert row[3:] == [
            f"{figures['imageguard_cpu_us']:.1f} us",
            f"{figures['imageguard_pg_cpu_us']:.1f} us",
            f"{figures['pg_over_sqlite_rps']:.2f}",
            f"{figures['pg_minus_sqlite_cpu_us']:+.1f} us",
        ]
    spreads = []
    for size, by_variant in interleaved["rounds"].items():
        pairs = zip(by_variant["imageguard"], by_variant["imageguard-pg"])
        differences = [pg["cpu_us"] - sqlite["cpu_us"] for sqlite, pg in pairs]
        name = next(name for name, known in names.items() if known == size)
        spreads.append(f"{min(differences):+.1f} to {max(differences):+.1f} us at {name}")
    assert "difference ranged from " + " and from ".join(spreads) + "." in flat
    rounds = {len(runs) for by_size in interleaved["rounds"].values() for runs in by_size.values()}
    assert len(rounds) == 1 and f"({rounds.pop()} rounds of 5 s)" in flat
    assert "5 s measured per variant, in ABBA order" in interleaved["what"]
