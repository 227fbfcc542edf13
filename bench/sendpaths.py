"""How Apache sends a file, five ways, in one server: why mod_python's ``req.sendfile()``
outran Apache's own file handler at 4 MB (docs/performance.md, "The 4 MB result").

    .venv/bin/python bench/sendpaths.py [--mpm event] [--rounds 3] [--seconds 4]

One Apache serves the same random file from five directories:

* ``sendfile``: Apache's file handler, ``EnableSendfile On`` (what imageguard's block sets);
* ``mmap``: Apache's file handler, ``EnableSendfile Off`` (Apache's default): the core
  output filter maps the file and ``writev()``s the mapping;
* ``read``: ``EnableSendfile Off`` and ``EnableMMAP Off``: ``read()`` and ``write()``;
* ``sendfile-nommap``: ``EnableSendfile On`` and ``EnableMMAP Off``;
* ``req.sendfile``: a mod_python handler calling ``req.sendfile(req.filename)``.

For each size, wrk loads each directory in turn, ``--rounds`` times (interleaved, so a
noisy moment hits every variant alike); the median requests a second are kept. With
``--strace``, the system calls of five requests to each are counted first (needs strace).
The result goes to bench/results/sendpaths-<date>-<mpm>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import wrk

from imageguard_devtools.localserver import (
    ApacheConfig,
    LocalApache,
    machine_facts,
    make_workdir,
    prepare_readable,
)

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = {"8 KB": 8_000, "200 KB": 200_000, "4 MB": 4_000_000}
#: variant -> the directives of its directory.
VARIANTS = {
    "sendfile": "EnableSendfile On",
    "mmap": "EnableSendfile Off",
    "read": "EnableSendfile Off\n    EnableMMAP Off",
    "sendfile-nommap": "EnableSendfile On\n    EnableMMAP Off",
    "req.sendfile": "SetHandler mod_python\n    PythonHandler sendpaths_app",
}
APP = """
from mod_python import apache

def handler(req):
    req.content_type = "image/jpeg"
    req.sendfile(req.filename)
    return apache.OK
"""


def site(work: Path, size: int) -> str:
    app = work / "app"
    app.mkdir(exist_ok=True)
    (app / "sendpaths_app.py").write_text(APP)
    data = os.urandom(size)
    blocks = []
    for variant, directives in VARIANTS.items():
        folder = work / "data" / variant
        folder.mkdir(parents=True)
        (folder / "file.jpg").write_bytes(data)
        blocks.append(
            f"Alias /{variant} {folder}\n<Directory {folder}>\n    Require all granted\n"
            f"    PythonPath \"['{app}'] + sys.path\"\n    {directives}\n</Directory>"
        )
    prepare_readable(work)
    return "\n".join(blocks)


def requests_per_second(port: int, variant: str, seconds: int, lua: Path) -> float:
    """wrk's requests a second against one variant; an error if any answer failed (an
    error page served fast is no figure)."""
    found = wrk.run(
        f"http://127.0.0.1:{port}/{variant}/file.jpg",
        lua,
        seconds=seconds,
        connections=8,
        threads=2,
    )
    if found.non_2xx or found.socket_errors:
        raise RuntimeError(
            f"{variant}: {found.non_2xx} non-2xx answers, {found.socket_errors} socket errors"
        )
    return found.rps


def syscalls(server: LocalApache, variant: str, work: Path) -> dict[str, int]:
    """The calls that move the bytes, counted over five requests."""
    out = work / f"strace-{variant}.txt"
    args = ["strace", "-f", "-c", "-o", str(out)]
    for pid in server.server_pids():
        args += ["-p", str(pid)]
    tracer = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    time.sleep(1)
    for _ in range(5):
        subprocess.run(
            ["curl", "-s", "-o", "/dev/null", server.url(f"/{variant}/file.jpg")], check=True
        )
    tracer.terminate()
    tracer.wait()
    counts = {}
    for line in out.read_text().splitlines():
        parts = line.split()
        if parts and parts[-1] in {"sendfile", "writev", "write", "mmap", "munmap", "read"}:
            counts[parts[-1]] = int(parts[3])
    return counts


def measure(mpm: str, size: int, rounds: int, seconds: int, strace: bool) -> dict:
    work = make_workdir("imageguard-sendpaths-")
    server = LocalApache(ApacheConfig(workdir=work / "apache", body=site(work, size), mpm=mpm))
    try:
        with server:
            for variant in VARIANTS:  # warm (page cache, the handler's import), and check
                with urllib.request.urlopen(server.url(f"/{variant}/file.jpg")) as answer:
                    if len(answer.read()) != size:
                        raise RuntimeError(f"{variant} did not send the whole file")
            lua = wrk.script(work / "plain.lua", [])
            calls = {v: syscalls(server, v, work) for v in VARIANTS} if strace else {}
            runs: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for _ in range(rounds):
                for variant in VARIANTS:
                    runs[variant].append(requests_per_second(server.port, variant, seconds, lua))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "median_rps": {v: round(statistics.median(r), 1) for v, r in runs.items()},
        "runs": runs,
        "syscalls_for_5_requests": calls,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mpm", default="event", choices=("event", "prefork"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--strace", action="store_true", help="count the system calls too")
    args = parser.parse_args()
    result = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "mpm": args.mpm,
        "machine": machine_facts(wrk=["wrk", "-v"]),
        "wrk": "-t2 -c8",
        "rounds": args.rounds,
        "seconds": args.seconds,
        "sizes": {},
    }
    for label, size in SIZES.items():
        found = measure(args.mpm, size, args.rounds, args.seconds, args.strace)
        result["sizes"][label] = found
        print(label, json.dumps(found["median_rps"]), json.dumps(found["syscalls_for_5_requests"]))
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = RESULTS / f"sendpaths-{stamp}-{args.mpm}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
