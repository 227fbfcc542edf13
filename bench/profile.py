"""Where imageguard's time goes inside Apache: the gatekeeper's steps, timed under load.

    .venv/bin/python bench/profile.py [--seconds 10] [--mpm event] [--out bench/results]

Starts the benchmark's servers with one more directory, ``/igtimed``, served by
``apps/timed_gatekeeper.py`` (the gatekeeper's real code, its steps between clock
readings, in an interpreter of its own), loads it with wrk and 1,000 rotating sessions,
and prints the average microseconds of each step next to the whole request's cost (the
Apache CPU time a request, and the requests a second), and the floor's. ``make bench``
runs it after ``bench/run.py``; the figures are written to
``<out>/profile-<stamp>-<mpm>.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers
import wrk
from run import cpu_plan, make_sessions

from imageguard.apacheconf import directory_block
from imageguard.localserver import machine_facts
from imageguard.names import GATEKEEPER_MODULE, INTERPRETER

TIMED_INTERPRETER = "imageguard_timed"
TIMED_IMPORT = f"PythonImport mod_python.apache {TIMED_INTERPRETER}"
TIMED = servers.Variant("imageguard-timed", "mp", "/igtimed", "session", "timed steps")


def _swap(block: str, old: str, new: str) -> str:
    """*block* with its one *old* line replaced (an error unless there is exactly one)."""
    if block.count(old) != 1:
        raise RuntimeError(f"the generated block has {block.count(old)} of {old!r}, not one")
    return block.replace(old, new)


def _with_timed_block(original: object, every: int) -> object:
    def body(links: Path, tree: Path, db: Path, sessions: Path, secrets: Path) -> str:
        site = servers.session_site(links, "igtimed", db, sessions)
        block = directory_block(site, extra_python_path=[str(servers.APPS)])
        block = _swap(
            block,
            f"PythonAccessHandler {GATEKEEPER_MODULE}",
            "PythonAccessHandler timed_gatekeeper",
        )
        block = _swap(
            block, "</Directory>", f"    PythonOption bench.report_every {every}\n</Directory>"
        )
        # Its own interpreter: the timing wrappers stay out of the measured gatekeeper.
        block = _swap(block, f"PythonImport mod_python.apache {INTERPRETER}\n", f"{TIMED_IMPORT}\n")
        block = _swap(
            block, f"PythonInterpreter {INTERPRETER}\n", f"PythonInterpreter {TIMED_INTERPRETER}\n"
        )
        return original(links, tree, db, sessions, secrets) + block  # type: ignore[operator]

    return body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--mpm", choices=["event", "prefork"], default="event")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    started = time.time()
    servers.LINKS = (*servers.LINKS, "igtimed")
    # Each process logs its averages every so many requests: prefork's sixteen processes
    # each see a sixteenth of them.
    every = 5000 if args.mpm == "event" else 100
    servers._mp_body = _with_timed_block(servers._mp_body, every)  # type: ignore[assignment]
    apache_cpus, wrk_cpus = cpu_plan()
    variants = {v.name: v for v in servers.VARIANTS}
    with servers.running_bench(args.mpm, 100_000, {"8k": 8 * 1024}, cpus=apache_cpus) as bench:
        cookies = wrk.script(bench.workdir / "sessions.lua", make_sessions(bench, 1000))
        none = wrk.script(bench.workdir / "none.lua", [])
        rates, cpu = {}, {}
        server = bench.servers["mp"]
        for variant, lua in (
            (variants["floor"], none),
            (variants["imageguard"], cookies),
            (TIMED, cookies),
        ):
            url = bench.url(variant, "8k")
            wrk.run(url, lua, seconds=2, connections=16, cpus=wrk_cpus)  # warm-up
            before = servers.cpu_seconds(server)
            done = wrk.run(url, lua, seconds=args.seconds, connections=16, cpus=wrk_cpus)
            if done.non_2xx or done.socket_errors:
                print(f"{variant.name}: {done.non_2xx} non-2xx answers", file=sys.stderr)
                return 1
            rates[variant.name] = done.rps
            cpu[variant.name] = (servers.cpu_seconds(server) - before) / done.requests * 1e6
        log = server.error_log_text()
        lines = re.findall(r"TIMED n=\d+ (.*)$", log, flags=re.MULTILINE)
    if not lines:
        print("no timing lines were logged:\n" + log[-1500:], file=sys.stderr)
        return 1
    steps: dict[str, list[float]] = {}
    for line in lines[len(lines) // 2 :]:  # the later half: warm caches
        for name, value in re.findall(r"(\w+)=([\d.]+)", line):
            steps.setdefault(name, []).append(float(value))
    averages = {name: round(sum(values) / len(values), 2) for name, values in steps.items()}
    extra = cpu["imageguard"] - cpu["floor"]
    print(f"mpm_{args.mpm}, 8 KB file, 16 connections, 1,000 sessions, 100,000 rules")
    for name, rate in rates.items():
        print(f"  {name:<18} {rate:>9,.0f} req/s  {cpu[name]:6.1f} us of Apache CPU a request")
    print(
        f"  imageguard costs {extra:.1f} us of CPU a request more than the floor "
        f"(floor / imageguard {cpu['floor'] / cpu['imageguard']:.2f}); its steps:"
    )
    for name, value in averages.items():
        inside = "  (in decide)" if name.startswith("d_") else ""
        print(f"    {name:<14} {value:6.2f} us{inside}")
    document = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "machine": machine_facts(wrk=["wrk", "-v"]),
        "mpm": args.mpm,
        "seconds": args.seconds,
        "rps": {name: round(rate, 1) for name, rate in rates.items()},
        "cpu_us": {name: round(value, 1) for name, value in cpu.items()},
        "above_floor_us": round(extra, 1),
        "floor_over_imageguard": round(cpu["floor"] / cpu["imageguard"], 2),
        "steps_us": averages,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    out = args.out / f"profile-{stamp}-{args.mpm}.json"
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
