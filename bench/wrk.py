"""Running wrk, and reading what it prints.

Every run uses the same Lua script, which gives each request the next login cookie of a
list (1,000 sessions or tickets rotating), or none for the variants without logins, so
the load generator does the same work for every variant.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
_LATENCY = re.compile(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles (ms), failures."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int


def script(path: Path, cookies: list[str]) -> Path:
    """Write the Lua script that rotates *cookies* (``Cookie`` header values) per request."""
    quoted = ",\n".join(f'  "{cookie}"' for cookie in cookies)
    path.write_text(
        f"""-- imageguard benchmark: each request takes the next cookie of the list.
local cookies = {{
{quoted}
}}
local n = 0
request = function()
  n = n + 1
  if #cookies == 0 then
    return wrk.format("GET")
  end
  return wrk.format("GET", nil, {{["Cookie"] = cookies[(n % #cookies) + 1]}})
end
"""
    )
    return path


def parse(output: str) -> WrkResult:
    """The figures of wrk's ``--latency`` report."""
    total = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if total is None or rps is None:
        raise RuntimeError(f"cannot read wrk's report:\n{output}")
    seconds = float(total.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[total.group(3)]
    latency = {pct: float(value) * _UNITS[unit] for pct, value, unit in _LATENCY.findall(output)}
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        requests=int(total.group(1)),
        seconds=seconds,
        rps=float(rps.group(1)),
        p50_ms=latency.get("50", float("nan")),
        p90_ms=latency.get("90", float("nan")),
        p99_ms=latency.get("99", float("nan")),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


def run(
    url: str,
    lua: Path,
    *,
    seconds: int,
    connections: int,
    threads: int = 1,
    cpus: str | None = None,
) -> WrkResult:
    """One wrk run against *url* (pinned to *cpus* when given)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (make bench installs the Debian package)")
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(lua),
        url,
    ]
    if cpus:
        command = ["taskset", "-c", cpus, *command]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    return parse(done.stdout)
