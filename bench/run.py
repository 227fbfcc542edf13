"""make bench: imageguard side by side with static Apache and the alternatives, in one run.

Starts the servers of :mod:`servers` on 127.0.0.1, makes 1,000 real mod_python sessions
(and 1,000 tickets), then runs wrk against every variant for every file size: a warm-up,
then ``--runs`` runs, of which the median counts. Apache is pinned to the first CPU and
wrk to the second where the machine has two. It also measures Apache's memory over
100,000 imageguard requests and the ACL decision in-process with a million rules, prints
the tables and the targets of the benchmark issue, and writes ``results/<stamp>.json``
and ``results/<stamp>.png`` (and ``results/latest.*``).

For the ``imageguard-pg`` variant it starts a private PostgreSQL (on wrk's CPU) holding
the same rules, and stops it at the end; where PostgreSQL cannot run, that variant is
left out, saying why.

    .venv/bin/python bench/run.py                  # the full run (about 15 minutes)
    .venv/bin/python bench/run.py --quick          # a smoke run: every variant, briefly
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import re
import shutil
import sys
import time
import urllib.parse
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aclbench
import report
import wrk
from servers import (
    SECRET,
    SIZES,
    VARIANTS,
    Bench,
    Variant,
    available_variants,
    missing_modules,
    postgres_unavailable,
    running_bench,
    running_postgres,
)

from imageguard.identity.tickets import issue_ticket
from imageguard_devtools.localpg import find_pg_bin
from imageguard_devtools.localserver import LocalApache, machine_facts

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of a measured run")
    parser.add_argument("--warmup", type=int, default=2, help="length of the warm-up run")
    parser.add_argument("--runs", type=int, default=3, help="measured runs (median counts)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--mpm", choices=["event", "prefork"], default="event")
    parser.add_argument("--sizes", default=",".join(SIZES), help="e.g. 8k,4m")
    parser.add_argument(
        "--variants",
        default=",".join(v.name for v in available_variants()),
        help="default: every variant whose Apache modules are installed",
    )
    parser.add_argument("--rules", type=int, default=100_000, help="rules in the served store")
    parser.add_argument("--acl-rules", type=int, default=1_000_000, help="for the microbenchmark")
    parser.add_argument("--logins", type=int, default=1000, help="sessions and tickets rotating")
    parser.add_argument("--rss-requests", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 s runs, small store, no chart"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.runs = 1, 1, 1
        args.rules, args.acl_rules, args.logins, args.rss_requests = 1000, 5000, 20, 3000
    return args


def cpu_plan() -> tuple[str | None, str | None]:
    """(Apache's CPUs, wrk's CPUs): separate ones when there are at least two."""
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2 or shutil.which("taskset") is None:
        return None, None
    half = len(usable) // 2
    return ",".join(map(str, usable[:half])), ",".join(map(str, usable[half:]))


def make_sessions(bench: Bench, count: int) -> list[str]:
    """*count* live mod_python sessions made by the login application; their cookies."""
    server = bench.servers["mp"]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    cookies = []
    try:
        for n in range(count):
            conn.request("GET", f"/app/login?user=u{n}")
            response = conn.getresponse()
            sid = response.read().decode().strip()
            if response.status != 200 or not re.fullmatch(r"[0-9a-f]{32}", sid):
                raise RuntimeError(f"login {n} failed: {response.status} {sid[:200]!r}")
            cookies.append(f"pysid={sid}")
    finally:
        conn.close()
    return cookies


def get_once(url: str, cookie: str | None = None) -> tuple[int, bytes]:
    """One GET of *url* (on 127.0.0.1) on a connection of its own; its status and body."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=20)
    try:
        headers = {"Connection": "close"}
        if cookie:
            headers["Cookie"] = cookie
        conn.request("GET", parts.path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def preflight(bench: Bench, variant: Variant, size: str, cookie: str | None) -> None:
    """One request: it must be a 200 with the whole file, or the run would measure errors."""
    status, body = get_once(bench.url(variant, size), cookie)
    if status != 200 or len(body) != bench.files[size]:
        log = bench.servers[variant.server].error_log_text()[-2000:]
        raise RuntimeError(f"{variant.name} {size}: {status}, {len(body)} bytes; error log:\n{log}")


def cpu_run(
    server: LocalApache, url: str, lua: Path, **options: Any
) -> tuple[wrk.WrkResult, float]:
    """One wrk run (*options* are :func:`wrk.run`'s), and the Apache CPU microseconds
    (all of *server*'s processes, user and system) a request took (nan for no request)."""
    before = server.cpu_seconds()
    done = wrk.run(url, lua, **options)
    used = server.cpu_seconds() - before
    return done, used / done.requests * 1e6 if done.requests else math.nan


def measure(
    bench: Bench, variant: Variant, size: str, lua: Path, args: argparse.Namespace, cpus: str | None
) -> dict[str, Any]:
    url = bench.url(variant, size)
    common = {"connections": args.connections, "cpus": cpus}
    wrk.run(url, lua, seconds=args.warmup, **common)  # type: ignore[arg-type]
    server = bench.servers[variant.server]
    runs, cpu = [], []
    for _ in range(args.runs):
        done, used = cpu_run(server, url, lua, seconds=args.seconds, **common)
        runs.append(done)
        cpu.append(used)
    median = sorted(runs, key=lambda r: r.rps)[len(runs) // 2]
    return {
        # Apache's CPU time per request (all its processes, user and system), the median
        # of the runs: what the server spends, whatever the machine's other load.
        "cpu_us": round(sorted(cpu)[len(cpu) // 2], 1),
        "rps": median.rps,
        "p50_ms": median.p50_ms,
        "p99_ms": median.p99_ms,
        "non_2xx": sum(r.non_2xx for r in runs),
        "socket_errors": sum(r.socket_errors for r in runs),
        "runs_rps": [r.rps for r in runs],
        "bytes": bench.files[size],
    }


def _child_rss_mb(bench: Bench) -> float:
    """The largest resident size among the mod_python server's children, in MB."""
    server = bench.servers["mp"]
    master = server.master_pid()
    sizes = [kb / 1024 for pid, kb in server.rss_kb().items() if pid != master]
    return max(sizes, default=0.0)


def rss_growth(
    bench: Bench, lua: Path, args: argparse.Namespace, cpus: str | None
) -> dict[str, Any]:
    """Children's RSS after about 1,000 imageguard requests and after ``--rss-requests``."""
    variant = next(v for v in VARIANTS if v.name == "imageguard")
    url = bench.url(variant, "8k")
    done = 0
    while done < 1000:
        done += wrk.run(url, lua, seconds=1, connections=4, cpus=cpus).requests
    before = _child_rss_mb(bench), done
    while done < args.rss_requests:
        done += wrk.run(url, lua, seconds=2, connections=args.connections, cpus=cpus).requests
    return {
        "before_mb": round(before[0], 1),
        "before_requests": before[1],
        "after_mb": round(_child_rss_mb(bench), 1),
        "after_requests": done,
    }


def _rounded(load: tuple[float, float, float]) -> list[float]:
    return [round(value, 2) for value in load]


def machine(postgres: bool = False) -> dict[str, Any]:
    versions = {"wrk": ["wrk", "-v"]}
    pg_bin = find_pg_bin() if postgres else None
    if pg_bin is not None:
        versions["postgresql"] = [str(pg_bin / "postgres"), "--version"]
    return machine_facts(**versions)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = {name: SIZES[name] for name in args.sizes.split(",")}
    chosen = [v for v in VARIANTS if v.name in args.variants.split(",")]
    for variant in chosen:
        if missing_modules(variant.server):
            missing = ", ".join(f"mod_{m}" for m in missing_modules(variant.server))
            sys.exit(f"variant {variant.name} needs {missing}: make bench installs its packages")
    left_out = [v.name for v in VARIANTS if missing_modules(v.server)]
    if left_out:
        print(f"left out, their Apache modules are not installed: {', '.join(left_out)}")
    pg_reason = postgres_unavailable()
    if pg_reason:
        names = ", ".join(v.name for v in VARIANTS if v.store == "postgresql")
        print(f"left out, PostgreSQL cannot run here: {names} ({pg_reason})")
        chosen = [v for v in chosen if v.store != "postgresql"]
    on_postgres = [v for v in chosen if v.store == "postgresql"]
    apache_cpus, wrk_cpus = cpu_plan()
    # PostgreSQL runs on wrk's CPUs, not Apache's: "cpu_us" counts Apache's processes
    # only, and a request of imageguard-pg asks nothing of PostgreSQL (each Apache child's
    # listener wakes ten times a second and reads the change counter once a second), so
    # PostgreSQL mostly idles; what it does must not take Apache's CPU from it.
    postgres_cpus = wrk_cpus if on_postgres else None
    started = time.time()
    load_before = os.getloadavg()  # the machine may be shared: how busy it was beforehand
    print(f"building {len(chosen)} variants, {args.rules:,} rules, {args.logins} logins...")
    with ExitStack() as stack:
        pg_dsn = stack.enter_context(running_postgres(postgres_cpus)) if on_postgres else None
        bench = stack.enter_context(
            running_bench(args.mpm, args.rules, sizes, cpus=apache_cpus, pg_dsn=pg_dsn)
        )
        sessions = make_sessions(bench, args.logins)
        tickets = [f"auth_tkt={issue_ticket(f'u{n}', (), SECRET)}" for n in range(args.logins)]
        scripts = {
            "": wrk.script(bench.workdir / "none.lua", []),
            "session": wrk.script(bench.workdir / "sessions.lua", sessions),
            "ticket": wrk.script(bench.workdir / "tickets.lua", tickets),
        }
        first_cookie = {"": None, "session": sessions[0], "ticket": tickets[0]}
        for variant in chosen:
            for size in sizes:
                preflight(bench, variant, size, first_cookie[variant.login])
        extra: dict[str, Any] = {}
        if any(v.name == "imageguard" for v in chosen):
            extra["rss"] = rss_growth(bench, scripts["session"], args, wrk_cpus)
            print(f"memory: {extra['rss']}")
        cells: report.Cells = {}
        for variant in chosen:
            for size in sizes:
                cell = measure(bench, variant, size, scripts[variant.login], args, wrk_cpus)
                cells.setdefault(variant.name, {})[size] = cell
                print(f"  {variant.name:<16} {size:>5}: {cell['rps']:>9,.0f} req/s", flush=True)
        actual_sizes = {name: bench.files[name] for name in sizes}
    print(f"ACL microbenchmark with {args.acl_rules:,} rules...")
    extra["acl"] = aclbench.measure(args.acl_rules).as_dict()
    settings = {
        "mpm": args.mpm,
        "connections": args.connections,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "runs": args.runs,
        "rules": args.rules,
        "logins": args.logins,
        "apache_cpus": apache_cpus,
        "wrk_cpus": wrk_cpus,
        "postgres_cpus": postgres_cpus,
    }
    found = report.targets(cells, extra)
    print()
    print(report.tables(cells, actual_sizes, settings))
    print(report.target_table(found))
    print(
        f"\nload average (1, 5, 15 min) at the start: {' '.join(map(str, _rounded(load_before)))}"
    )
    document = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "machine": machine(postgres=bool(on_postgres)),
        # The 1, 5 and 15 minute load averages when the run started: whether other work
        # kept the machine busy. (During the run they count the bench's own threads too.)
        "load_before": _rounded(load_before),
        "settings": settings,
        "sizes": actual_sizes,
        "variants": {v.name: v.what for v in chosen},
        "cells": cells,
        **extra,
        "targets": [t.__dict__ for t in found],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    report.write_json(args.out / f"{stamp}.json", document)
    shutil.copyfile(args.out / f"{stamp}.json", args.out / "latest.json")
    if not args.quick:
        title = (
            f"{document['machine']['cpu']} ({document['machine']['cpus']} CPUs), "
            f"mpm_{args.mpm}, {args.connections} connections"
        )
        report.chart(args.out / f"{stamp}.png", cells, actual_sizes, title)
        shutil.copyfile(args.out / f"{stamp}.png", args.out / "latest.png")
    print(f"\nwritten: {args.out / stamp}.json" + ("" if args.quick else " and .png"))
    print(f"took {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
