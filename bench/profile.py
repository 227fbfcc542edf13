"""Where imageguard's time goes inside Apache: the gatekeeper's steps, timed under load.

    .venv/bin/python bench/profile.py [--seconds 10] [--mpm event]

Starts the benchmark's servers with one more directory, ``/igtimed``, served by
``apps/timed_gatekeeper.py`` (the gatekeeper's real code, its steps between clock
readings, in an interpreter of its own), loads it with wrk and 1,000 rotating sessions,
and prints the average microseconds of each step next to the whole request's cost as
wrk sees it, and the floor's.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers
import wrk
from run import cpu_plan, make_sessions

from imageguard.apache.apacheconf import directory_block
from imageguard.apache.names import GATEKEEPER_MODULE, INTERPRETER

TIMED_INTERPRETER = "imageguard_timed"
TIMED_IMPORT = f"PythonImport mod_python.apache {TIMED_INTERPRETER}"
TIMED = servers.Variant("imageguard-timed", "mp", "/igtimed", "session", "timed steps")


def _swap(block: str, old: str, new: str) -> str:
    """*block* with its one *old* line replaced (an error unless there is exactly one)."""
    if block.count(old) != 1:
        raise RuntimeError(f"the generated block has {block.count(old)} of {old!r}, not one")
    return block.replace(old, new)


def _with_timed_block(original: object) -> object:
    def body(links: Path, tree: Path, db: Path, sessions: Path, secrets: Path) -> str:
        site = servers.session_site(links, "igtimed", db, sessions)
        block = directory_block(site, extra_python_path=[str(servers.APPS)])
        block = _swap(
            block,
            f"PythonAccessHandler {GATEKEEPER_MODULE}",
            "PythonAccessHandler timed_gatekeeper",
        )
        block = _swap(
            block, "</Directory>", "    PythonOption bench.report_every 5000\n</Directory>"
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
    args = parser.parse_args()
    servers.LINKS = (*servers.LINKS, "igtimed")
    servers._mp_body = _with_timed_block(servers._mp_body)  # type: ignore[assignment]
    apache_cpus, wrk_cpus = cpu_plan()
    variants = {v.name: v for v in servers.VARIANTS}
    with servers.running_bench(args.mpm, 100_000, {"8k": 8 * 1024}, cpus=apache_cpus) as bench:
        cookies = wrk.script(bench.workdir / "sessions.lua", make_sessions(bench, 1000))
        none = wrk.script(bench.workdir / "none.lua", [])
        rates = {}
        for variant, lua in (
            (variants["floor"], none),
            (variants["imageguard"], cookies),
            (TIMED, cookies),
        ):
            url = bench.url(variant, "8k")
            wrk.run(url, lua, seconds=2, connections=16, cpus=wrk_cpus)  # warm-up
            rates[variant.name] = wrk.run(
                url, lua, seconds=args.seconds, connections=16, cpus=wrk_cpus
            ).rps
        log = bench.servers["mp"].error_log_text()
        lines = re.findall(r"TIMED n=\d+ (.*)$", log, flags=re.MULTILINE)
    if not lines:
        print("no timing lines were logged", file=sys.stderr)
        return 1
    steps: dict[str, list[float]] = {}
    for line in lines[len(lines) // 2 :]:  # the later half: warm caches
        for name, value in re.findall(r"(\w+)=([\d.]+)", line):
            steps.setdefault(name, []).append(float(value))
    print(f"mpm_{args.mpm}, 8 KB file, 16 connections, 1,000 sessions, 100,000 rules")
    for name, rate in rates.items():
        print(f"  {name:<18} {rate:>9,.0f} req/s  ({1e6 / rate:6.1f} us of one CPU a request)")
    extra = 1e6 / rates["imageguard"] - 1e6 / rates["floor"]
    print(f"  imageguard costs {extra:.1f} us a request more than the floor; its steps:")
    for name, values in steps.items():
        inside = "  (in decide)" if name.startswith("d_") else ""
        print(f"    {name:<14} {sum(values) / len(values):6.2f} us{inside}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
