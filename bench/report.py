"""The benchmark's report: tables, the targets checked against them, JSON and a chart."""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: One measured cell: variant and size -> figures (rps, p50_ms, p99_ms, non_2xx, runs...).
Cells = dict[str, dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class Target:
    """A goal from the benchmark issue, and whether this run met it."""

    name: str
    wanted: str
    measured: str
    met: bool


def ratio(cells: Cells, variant: str, other: str, size: str) -> float:
    """*variant*'s requests/s divided by *other*'s at *size* (nan when either is missing)."""
    try:
        return float(cells[variant][size]["rps"] / cells[other][size]["rps"])
    except (KeyError, ZeroDivisionError):
        return math.nan


def cpu_us(cells: Cells, variant: str, size: str) -> float:
    """Apache's CPU microseconds per request for *variant* at *size* (nan when missing)."""
    try:
        return float(cells[variant][size]["cpu_us"])
    except KeyError:
        return math.nan


def tables(cells: Cells, sizes: dict[str, int], settings: dict[str, Any]) -> str:
    """One table per file size: req/s, latency, and the ratios to static and imageguard."""
    postgres = ""
    if any(cell_variant.endswith("-pg") for cell_variant in cells):
        postgres = f", PostgreSQL on CPU {settings.get('postgres_cpus') or 'any'}"
    out = [
        f"MPM {settings['mpm']}, {settings['connections']} connections, wrk on CPU "
        f"{settings['wrk_cpus'] or 'any'}, Apache on CPU {settings['apache_cpus'] or 'any'}"
        f"{postgres}, {settings['runs']} run(s) of {settings['seconds']} s after a "
        f"{settings['warmup']} s warm-up; req/s is the median run",
        "",
    ]
    header = f"{'variant':<16} {'req/s':>9} {'CPU us':>7} {'p50 ms':>8} {'p99 ms':>8} "
    header += f"{'non-2xx':>8} {'x static':>9} {'x imageguard':>13}"
    for size, actual in sizes.items():
        out += [f"File {size} ({actual:,} bytes)", header, "-" * len(header)]
        for variant, by_size in cells.items():
            cell = by_size.get(size)
            if cell is None:
                continue
            out.append(
                f"{variant:<16} {cell['rps']:>9,.0f} {cell.get('cpu_us', math.nan):>7.1f} "
                f"{cell['p50_ms']:>8.2f} "
                f"{cell['p99_ms']:>8.2f} {cell['non_2xx']:>8} "
                f"{ratio(cells, variant, 'static', size):>9.2f} "
                f"{ratio(cells, variant, 'imageguard', size):>13.2f}"
            )
        out.append("")
    return "\n".join(out)


#: The comparisons a target's wanted text starts with; a bare number must be equalled.
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
}


def _check(name: str, wanted: str, value: float, fmt: str = "{:.2f}") -> Target:
    """The target *name*, met when *value* is as *wanted* says: "<op> <number> [unit]"
    (*value* in that unit) or a bare number it must equal; nan is not measured."""
    words = wanted.split()
    if words[0] in _COMPARE:
        compare, bound = _COMPARE[words[0]], float(words[1])
    else:
        compare, bound = operator.eq, float(words[0])
    measured = "not measured" if math.isnan(value) else fmt.format(value)
    return Target(name, wanted, measured, not math.isnan(value) and compare(value, bound))


def targets(cells: Cells, extra: dict[str, Any]) -> list[Target]:
    """The issue's targets, measured in this run."""
    found = [
        _check("imageguard / floor at 8 KB", ">= 0.85", ratio(cells, "imageguard", "floor", "8k")),
        _check("imageguard / naive at 8 KB", ">= 3.0", ratio(cells, "imageguard", "naive", "8k")),
        _check(
            "imageguard / static at 4 MB", ">= 0.95", ratio(cells, "imageguard", "static", "4m")
        ),
    ]
    # The redesign's targets: the gatekeeper's own cost in Apache CPU, and its lead over
    # streaming the file through a content handler.
    floor, gated = cpu_us(cells, "floor", "8k"), cpu_us(cells, "imageguard", "8k")
    found += [
        _check("floor CPU / imageguard CPU a request, 8 KB", ">= 0.80", floor / gated),
        _check("imageguard CPU above the floor's, 8 KB", "<= 15 us", gated - floor, "{:.1f} us"),
        _check("imageguard / stream at 8 KB", ">= 1.3", ratio(cells, "imageguard", "stream", "8k")),
    ]
    sizes = sorted({size for by_size in cells.values() for size in by_size})
    for rival in ("stream", "stream-sendfile", "xsendfile"):
        worst = min((ratio(cells, "imageguard", rival, size) for size in sizes), default=math.nan)
        found.append(_check(f"imageguard / {rival}, every size", "> 1.0", worst, "lowest {:.2f}"))
    if "imageguard-pg" in cells:
        # The store in PostgreSQL changes one thing per request: the change check reads the
        # listener's generation instead of stat()ing SQLite's change stamp. At least a tie.
        worst = min(ratio(cells, "imageguard-pg", "imageguard", size) for size in sizes)
        found.append(
            _check("imageguard-pg / imageguard, every size", ">= 0.95", worst, "lowest {:.2f}")
        )
    p99 = max(
        (
            cells["imageguard"][size]["p99_ms"] / cells["static"][size]["p99_ms"]
            for size in sizes
            if size in cells.get("imageguard", {}) and size in cells.get("static", {})
        ),
        default=math.nan,
    )
    found.append(_check("imageguard p99 / static p99", "<= 2.0", p99, "highest {:.2f}"))
    failures = sum(
        cell["non_2xx"] + cell["socket_errors"]
        for variant, by_size in cells.items()
        if variant.startswith("imageguard")
        for cell in by_size.values()
    )
    found.append(
        _check("imageguard: non-2xx responses and socket errors", "0", float(failures), "{:.0f}")
    )
    rss = extra.get("rss")
    if rss:
        found.append(
            _check(
                f"child RSS growth, {rss['before_requests']:,} -> "
                f"{rss['after_requests']:,} requests",
                "<= 10 MB",
                rss["after_mb"] - rss["before_mb"],
                "{:+.1f} MB",
            )
        )
    acl = extra.get("acl")
    if acl:
        found += [
            _check(
                f"ACL decision p50, warm, {acl['rules']:,} rules",
                "<= 20 us",
                acl["warm_p50_us"],
                "{:.1f} us",
            ),
            _check(
                "ACL decision after a change (cold), slowest of 50",
                "<= 1 ms",
                acl["cold_max_us"] / 1000,
                "{:.3f} ms",
            ),
            Target(
                "grant and revoke seen by the next decision",
                "yes",
                "yes" if acl["grant_seen"] and acl["revoke_seen"] else "no",
                bool(acl["grant_seen"] and acl["revoke_seen"]),
            ),
        ]
    return found


def target_table(found: list[Target]) -> str:
    width = max(len(t.name) for t in found)
    lines = [f"{'target':<{width}}  {'wanted':<8}  {'measured':<14}  met"]
    for t in found:
        lines.append(
            f"{t.name:<{width}}  {t.wanted:<8}  {t.measured:<14}  {'yes' if t.met else 'NO'}"
        )
    return "\n".join(lines)


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n")


def chart(path: Path, cells: Cells, sizes: dict[str, int], title: str) -> None:
    """Grouped bars: each variant's requests/s relative to static, per file size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(cells)
    names = list(sizes)
    width = 0.8 / max(1, len(variants))
    figure, axes = plt.subplots(figsize=(11, 5.2), dpi=110)
    colours = plt.get_cmap("tab10" if len(variants) <= 10 else "tab20")
    for index, variant in enumerate(variants):
        values = [ratio(cells, variant, "static", size) for size in names]
        positions = [n + (index - (len(variants) - 1) / 2) * width for n in range(len(names))]
        bars = axes.bar(
            positions,
            [0 if math.isnan(v) else v for v in values],
            width,
            label=variant,
            color=colours(index % colours.N),
            edgecolor="black" if variant.startswith("imageguard") else "none",
            linewidth=1.2,
        )
        for bar, variant_value in zip(bars, values):
            if not math.isnan(variant_value):
                axes.annotate(
                    f"{variant_value:.2f}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=6.5,
                    rotation=90,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
    axes.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    highest = max(
        (
            v
            for variant in variants
            for v in (ratio(cells, variant, "static", n) for n in names)
            if not math.isnan(v)
        ),
        default=1.0,
    )
    axes.set_xticks(range(len(names)))
    axes.set_xticklabels(
        [
            f"{name} file\n(static: {cells['static'][name]['rps']:,.0f} req/s)"
            if name in cells.get("static", {})
            else name
            for name in names
        ]
    )
    axes.set_ylabel("requests/s relative to static Apache")
    axes.set_ylim(0, max(1.25, highest * 1.12))
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def markdown_table(document: dict[str, Any]) -> str:
    """The results table of docs/performance.md for a saved result: requests a second
    (the median run) and p50 / p99 latency, per variant and size."""
    sizes = sorted(document["sizes"], key=lambda size: document["sizes"][size])
    names = {"8k": "8 KB", "200k": "200 KB", "4m": "4 MB"}
    header = "| variant |" + "".join(
        f" {names.get(size, size)} req/s | p50 / p99 ms |" for size in sizes
    )
    lines = [header, "| --- |" + " ---: | ---: |" * len(sizes)]
    for variant, by_size in document["cells"].items():
        bold = variant == "imageguard"
        cells = []
        for size in sizes:
            cell = by_size[size]
            rps = f"{cell['rps']:,.0f}"
            latency = f"{_shown(cell['p50_ms'])} / {_shown(cell['p99_ms'])}"
            if cell["rps"] == 0:
                rps, latency = "**0 (hangs)**", ""
            elif bold:
                rps = f"**{rps}**"
            cells.append(f" {rps} | {latency} |")
        name = f"**{variant}**" if bold else variant
        lines.append(f"| {name} |" + "".join(cells))
    return "\n".join(lines)


def _shown(ms: float) -> str:
    """Milliseconds with two decimals below 20, one from there (as the page shows them)."""
    return f"{ms:.2f}" if ms < 20 else f"{ms:.1f}"


def main(argv: list[str]) -> int:
    """Draw the chart of a saved result again: ``report.py results/<stamp>.json``; with
    ``--markdown``, print its table for docs/performance.md instead."""
    if argv[:1] == ["--markdown"]:
        for name in argv[1:]:
            print(markdown_table(json.loads(Path(name).read_text())))
        return 0
    for name in argv:
        path = Path(name)
        document = json.loads(path.read_text())
        machine = document["machine"]
        settings = document["settings"]
        title = (
            f"{machine['cpu']} ({machine['cpus']} CPUs), mpm_{settings['mpm']}, "
            f"{settings['connections']} connections"
        )
        from servers import VARIANTS  # the benchmark's own order, whatever the file's

        cells = document["cells"]
        ordered = {v.name: cells[v.name] for v in VARIANTS if v.name in cells}
        sizes = dict(sorted(document["sizes"].items(), key=lambda item: item[1]))
        chart(path.with_suffix(".png"), ordered, sizes, title)
        print(f"drew {path.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
