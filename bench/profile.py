"""Where imageguard's time goes inside Apache: the gatekeeper's steps, timed under load.

    .venv/bin/python bench/profile.py [--seconds 5] [--rounds 3] [--mpm event] [--out DIR]

Starts the benchmark's servers with one more directory, ``/igtimed``, served by
``apps/timed_gatekeeper.py`` (the gatekeeper's real code, its steps between clock
readings, in an interpreter of its own), loads it with wrk and 1,000 rotating sessions,
and prints the average microseconds of each step next to the whole request's cost (the
Apache CPU time a request, and the requests a second), and the floor's. It also serves
the handlers of ``apps/guarantees.py``, each doing one piece of the work imageguard's
guarantees need and nothing else, and prints what each costs above an empty handler.
Every variant runs ``--rounds`` times, interleaved; the median round by CPU counts.
``make bench`` runs it after ``bench/run.py``; the figures are written to
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
from run import cpu_plan, cpu_run, get_once, machine, make_sessions

from imageguard.apache.apacheconf import directory_block, python_path_directive
from imageguard.apache.names import GATEKEEPER_MODULE, INTERPRETER

TIMED_INTERPRETER = "imageguard_timed"
TIMED_IMPORT = f"PythonImport mod_python.apache {TIMED_INTERPRETER}"
TIMED = servers.Variant("imageguard-timed", "mp", "/igtimed", "session", "timed steps")
#: bench/apps/guarantees.py's handlers: name -> (access handler, with the trivial fixup).
GUARANTEES = {
    "floor": ("floor", False),
    "+fixup": ("floor", True),
    "+fresh": ("fresh", False),
    "+bound": ("bound", False),
    "+all three": ("everything", True),
}


def _guarantee_link(name: str) -> str:
    return "g" + "".join(ch for ch in name if ch.isalnum())


def _guarantee_blocks(links: Path, db: Path, secrets: Path) -> str:
    """One directory per handler of bench/apps/guarantees.py, in imageguard's interpreter."""
    blocks = []
    for name, (handler, with_fixup) in GUARANTEES.items():
        folder = links / _guarantee_link(name)
        fixup_line = "PythonFixupHandler guarantees::fixup" if with_fixup else ""
        blocks.append(f"""
Alias /{folder.name} {folder}
<Directory {folder}>
    Require all granted
    EnableSendfile On
    {python_path_directive([str(servers.APPS)])}
    PythonInterpreter {INTERPRETER}
    PythonAccessHandler guarantees::{handler}
    {fixup_line}
    PythonOption bench.session_file {db}
    PythonOption bench.stamp {secrets}
</Directory>""")
    return "".join(blocks)


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
        whole = original(links, tree, db, sessions, secrets)  # type: ignore[operator]
        return whole + block + _guarantee_blocks(links, db, secrets)

    return body


def _prime(url: str, cookie: str, requests: int = 40) -> None:
    """Requests one at a time, each on a new connection (so that each child gets some):
    the handler modules are imported before the load, one thread at a time. (mod_python
    hands out a module another thread is still importing, which then "contains no
    'accesshandler'"; imageguard's own modules are published whole, the benchmark's
    are not.)"""
    for _ in range(requests):
        get_once(url, cookie)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mpm", choices=["event", "prefork"], default="event")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    started = time.time()
    servers.LINKS = (*servers.LINKS, "igtimed", *map(_guarantee_link, GUARANTEES))
    # Each process logs its averages every so many requests: prefork's sixteen processes
    # each see a sixteenth of them.
    every = 5000 if args.mpm == "event" else 100
    servers._mp_body = _with_timed_block(servers._mp_body, every)  # type: ignore[assignment]
    apache_cpus, wrk_cpus = cpu_plan()
    variants = {v.name: v for v in servers.VARIANTS}
    with servers.running_bench(args.mpm, 100_000, {"8k": 8 * 1024}, cpus=apache_cpus) as bench:
        sessions = make_sessions(bench, 1000)
        cookies = wrk.script(bench.workdir / "sessions.lua", sessions)
        none = wrk.script(bench.workdir / "none.lua", [])
        server = bench.servers["mp"]
        runs: list[tuple[str, str, Path]] = [
            ("floor", bench.url(variants["floor"], "8k"), none),
            ("imageguard", bench.url(variants["imageguard"], "8k"), cookies),
            (TIMED.name, bench.url(TIMED, "8k"), cookies),
        ]
        runs += [
            (f"guarantees {name}", server.url(f"/{_guarantee_link(name)}/bench/img-8k.jpg"), none)
            for name in GUARANTEES
        ]
        for _name, url, _lua in runs:
            _prime(url, sessions[0])
        measured: dict[str, list[tuple[float, float]]] = {}
        for _round in range(args.rounds):  # interleaved: a slow moment hits every variant
            for name, url, lua in runs:
                wrk.run(url, lua, seconds=1, connections=16, cpus=wrk_cpus)  # warm-up
                done, used = cpu_run(
                    server, url, lua, seconds=args.seconds, connections=16, cpus=wrk_cpus
                )
                if done.non_2xx or done.socket_errors:
                    log = server.error_log_text()[-3000:]
                    print(f"{name}: {done.non_2xx} non-2xx answers; log:\n{log}", file=sys.stderr)
                    return 1
                measured.setdefault(name, []).append((used, done.rps))
        # The median run by CPU time, with its rate.
        medians = {name: sorted(pairs)[len(pairs) // 2] for name, pairs in measured.items()}
        cpu = {name: used for name, (used, _rate) in medians.items()}
        rates = {name: rate for name, (_used, rate) in medians.items()}
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
    base = cpu["guarantees floor"]
    guarantees = {name: round(cpu[f"guarantees {name}"] - base, 1) for name in GUARANTEES}
    print("  what the guarantees cost alone, Apache CPU above an empty handler's:")
    for name, value in guarantees.items():
        print(f"    {name:<14} {value:6.1f} us")
    document = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "machine": machine(),
        "mpm": args.mpm,
        "seconds": args.seconds,
        "rps": {name: round(rate, 1) for name, rate in rates.items()},
        "cpu_us": {name: round(value, 1) for name, value in cpu.items()},
        "above_floor_us": round(extra, 1),
        "floor_over_imageguard": round(cpu["floor"] / cpu["imageguard"], 2),
        "rounds": args.rounds,
        "steps_us": averages,
        "guarantees_above_floor_us": guarantees,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    out = args.out / f"profile-{stamp}-{args.mpm}.json"
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
