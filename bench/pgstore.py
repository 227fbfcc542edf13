"""imageguard with its ACL store in SQLite and in PostgreSQL, side by side in one Apache,
runs interleaved: what the store's kind costs a request, on a machine whose speed drifts.

``run.py`` measures each variant's runs one after the other, so a slower minute of the
machine lands on one variant only; here each round measures both, in alternating order
(ABBA), after both were warmed alike, and the figures are the medians of the rounds and
of the per-round ratios. The servers, the store (100,000 rules) and the 1,000 sessions
are ``run.py``'s; results go to ``results/pgstore-<stamp>-<mpm>.json``.

    .venv/bin/python bench/pgstore.py                     # 8 KB, 7 rounds of 5 s
    .venv/bin/python bench/pgstore.py --sizes 8k,200k --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report
import wrk
from run import cpu_plan, cpu_run, machine, make_sessions, preflight
from servers import SIZES, VARIANTS, postgres_unavailable, running_bench, running_postgres

PAIR = ("imageguard", "imageguard-pg")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=5, help="length of a measured run")
    parser.add_argument("--warmup", type=int, default=10, help="seconds of load per variant")
    parser.add_argument("--sizes", default="8k", help="e.g. 8k,200k")
    parser.add_argument("--mpm", choices=["event", "prefork"], default="event")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    return parser.parse_args(argv)


def median_of(runs: list[dict[str, float]], key: str) -> float:
    return round(statistics.median(run[key] for run in runs), 1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reason = postgres_unavailable()
    if reason:
        sys.exit(f"PostgreSQL cannot run here: {reason}")
    sizes = {name: SIZES[name] for name in args.sizes.split(",")}
    variants = {v.name: v for v in VARIANTS if v.name in PAIR}
    apache_cpus, wrk_cpus = cpu_plan()  # PostgreSQL on wrk's CPUs, as in run.py
    started = time.time()
    load_before = [round(value, 2) for value in os.getloadavg()]
    rounds: dict[str, dict[str, list[dict[str, float]]]] = {}
    with ExitStack() as stack:
        dsn = stack.enter_context(running_postgres(wrk_cpus))
        bench = stack.enter_context(
            running_bench(args.mpm, 100_000, sizes, cpus=apache_cpus, pg_dsn=dsn)
        )
        sessions = make_sessions(bench, 1000)
        lua = wrk.script(bench.workdir / "sessions.lua", sessions)
        server = bench.servers["mp"]
        common: dict[str, Any] = {"connections": args.connections, "cpus": wrk_cpus}
        for size in sizes:
            for name in PAIR:  # every viewer's decision remembered by every child, alike
                preflight(bench, variants[name], size, sessions[0])
                wrk.run(bench.url(variants[name], size), lua, seconds=args.warmup, **common)
            for number in range(args.rounds):
                order = PAIR if number % 2 == 0 else PAIR[::-1]
                for name in order:
                    url = bench.url(variants[name], size)
                    wrk.run(url, lua, seconds=1, **common)
                    done, used = cpu_run(server, url, lua, seconds=args.seconds, **common)
                    if done.non_2xx or done.socket_errors:
                        log = server.error_log_text()[-3000:]
                        sys.exit(f"{name} {size}: {done.non_2xx} non-2xx answers; log:\n{log}")
                    run = {"rps": round(done.rps, 1), "cpu_us": round(used, 1)}
                    rounds.setdefault(size, {}).setdefault(name, []).append(run)
                    print(f"  {size:>5} round {number} {name:<14} {run}", flush=True)
    summary: dict[str, dict[str, float]] = {}
    for size, by_name in rounds.items():
        sqlite, postgres = by_name["imageguard"], by_name["imageguard-pg"]
        pairs = list(zip(sqlite, postgres))
        summary[size] = {
            "imageguard_rps": median_of(sqlite, "rps"),
            "imageguard_pg_rps": median_of(postgres, "rps"),
            "imageguard_cpu_us": median_of(sqlite, "cpu_us"),
            "imageguard_pg_cpu_us": median_of(postgres, "cpu_us"),
            # The median of the rounds' own ratios and differences: each round's pair ran
            # within seconds of each other.
            "pg_over_sqlite_rps": round(
                statistics.median(p["rps"] / s["rps"] for s, p in pairs), 2
            ),
            "pg_minus_sqlite_cpu_us": round(
                statistics.median(p["cpu_us"] - s["cpu_us"] for s, p in pairs), 1
            ),
        }
    document = {
        "what": (
            "imageguard (ACL store in SQLite) and imageguard-pg (the same rules in PostgreSQL) "
            f"in one Apache, mpm_{args.mpm}, {args.connections} connections, 1,000 sessions, "
            f"100,000 rules; after {args.warmup} s of load each, {args.rounds} rounds of a 1 s "
            f"warm-up and {args.seconds} s measured per variant, in ABBA order; cpu_us is "
            "Apache's CPU time a request"
        ),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "machine": machine(postgres=True),
        "load_before": load_before,
        "settings": {"apache_cpus": apache_cpus, "wrk_cpus": wrk_cpus, "postgres_cpus": wrk_cpus},
        "rounds": rounds,
        "summary": summary,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    path = args.out / f"pgstore-{stamp}-{args.mpm}.json"
    report.write_json(path, document)
    for size, figures in summary.items():
        print(f"{size}: {figures}")
    print(f"written: {path}\ntook {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
