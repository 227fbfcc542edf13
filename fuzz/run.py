"""Run imageguard's atheris fuzz targets, each for a bounded time; exit 1 if any fails.

    .venv/bin/python fuzz/run.py                      # every target, 60 s each
    .venv/bin/python fuzz/run.py --seconds 5 cookies  # one target, briefly

(``make fuzz FUZZ_ARGS="--seconds 600"`` runs it with its arguments.) Each target starts
from a fresh corpus in a temporary folder, seeded by the target itself (``--seeds``),
and runs under libFuzzer with ``-max_total_time``, ``-rss_limit_mb`` and a per-input
``-timeout``. An input that makes a target raise, hang or exceed the memory limit is
written to the artifacts folder (``fuzz/artifacts/``, ignored by git) as
``<target>-crash-...`` (or ``-timeout-``, ``-oom-``), and the run fails. Replay one with

    .venv/bin/python fuzz/fuzz_tickets.py fuzz/artifacts/tickets-crash-...
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = {
    "tickets": HERE / "fuzz_tickets.py",
    "cookies": HERE / "fuzz_cookies.py",
    "sharelinks": HERE / "fuzz_sharelinks.py",
}
#: A single input that takes this long is a hang (libFuzzer's -timeout, seconds).
INPUT_TIMEOUT_S = 10
_EXECUTED = re.compile(r"stat::number_of_executed_units:\s*(\d+)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "targets", nargs="*", help=f"targets to run: {', '.join(TARGETS)} (default: all)"
    )
    parser.add_argument("--seconds", type=int, default=60, help="time per target (default 60)")
    parser.add_argument(
        "--rss-limit-mb", type=int, default=2048, help="memory limit per target (default 2048)"
    )
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=HERE / "artifacts",
        help="where failing inputs are written (default fuzz/artifacts)",
    )
    args = parser.parse_args(argv)
    if args.seconds < 1:
        parser.error("--seconds must be at least 1")
    unknown = [name for name in args.targets if name not in TARGETS]
    if unknown:
        parser.error(f"no such target: {', '.join(unknown)} (there are {', '.join(TARGETS)})")
    return args


def libfuzzer_command(
    script: Path, corpus: Path, seconds: int, rss_limit_mb: int, prefix: str
) -> list[str]:
    return [
        sys.executable,
        str(script),
        f"-max_total_time={seconds}",
        f"-rss_limit_mb={rss_limit_mb}",
        f"-timeout={INPUT_TIMEOUT_S}",
        f"-artifact_prefix={prefix}",
        "-print_final_stats=1",
        str(corpus),
    ]


def run_target(name: str, args: argparse.Namespace) -> bool:
    """Fuzz one target; True when it ran its time without a failure."""
    script = TARGETS[name]
    args.artifacts.mkdir(parents=True, exist_ok=True)
    before = set(args.artifacts.iterdir())
    with tempfile.TemporaryDirectory(prefix=f"imageguard-fuzz-{name}-") as folder:
        corpus = Path(folder) / "corpus"
        seeded = subprocess.run(
            [sys.executable, str(script), "--seeds", str(corpus)],
            capture_output=True,
            text=True,
            check=False,
        )
        if seeded.returncode != 0:
            print(f"{name}: writing the seeds failed\n{seeded.stdout}{seeded.stderr}")
            return False
        seeds = len(list(corpus.iterdir()))
        command = libfuzzer_command(
            script, corpus, args.seconds, args.rss_limit_mb, f"{args.artifacts}/{name}-"
        )
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=args.seconds + INPUT_TIMEOUT_S + 120,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            print(f"{name}: FAILED, still running {exc.timeout:.0f} s after it should have stopped")
            return False
        output = done.stdout + done.stderr
        grown = len(list(corpus.iterdir()))
    found = sorted(set(args.artifacts.iterdir()) - before)
    executed = _EXECUTED.findall(output)
    runs = executed[-1] if executed else "?"
    if done.returncode != 0 or found:
        print(f"{name}: FAILED (exit status {done.returncode}) after {runs} runs")
        start = output.find("=== Uncaught Python exception")
        lines = output[start:].splitlines()[:80] if start >= 0 else output.splitlines()[-60:]
        print("\n".join(lines))
        for path in found:
            print(f"{name}: failing input kept in {path}")
        return False
    print(f"{name}: ok, {runs} runs in {args.seconds} s, corpus {seeds} -> {grown} inputs")
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: pip install -e '.[test]' (Linux on x86_64 only)")
        return 2
    failed = [name for name in (args.targets or list(TARGETS)) if not run_target(name, args)]
    if failed:
        print(f"fuzzing failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
