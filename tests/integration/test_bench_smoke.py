"""A smoke run of ``make bench``: every variant it compares starts, answers, and is
measured, and the report holds every target. The real run is ``make bench``.

make test does not install mod_wsgi and mod_xsendfile (make bench does): without them
the smoke run measures the other variants. The imageguard-pg variant (the ACL store in a
private PostgreSQL) is measured where PostgreSQL can run; elsewhere its test is skipped,
saying why."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imageguard_devtools.localserver import MODULES_DIR

BENCH = Path(__file__).resolve().parents[2] / "bench" / "run.py"
#: The modules of every variant: mod_python, mod_auth_tkt, mod_wsgi and mod_xsendfile.
ALL_MODULES = ("python", "auth_tkt", "wsgi", "xsendfile")

pytestmark = [
    pytest.mark.apache,
    pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed"),
]


def _bench_servers():
    spec = importlib.util.spec_from_file_location(
        "imageguard_bench_servers", BENCH.with_name("servers.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


@dataclass
class QuickRun:
    """What one ``run.py --quick`` printed and wrote."""

    stdout: str
    report: dict[str, Any]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    """One smoke run of the benchmark, for the module's tests."""
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--sizes", "8k", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return QuickRun(done.stdout, json.loads((out / "latest.json").read_text()))


def test_quick_benchmark_measures_every_variant(quick_run: QuickRun) -> None:
    report = quick_run.report
    servers = _bench_servers()
    expected = {v.name for v in servers.available_variants()}
    assert set(report["cells"]) == set(report["variants"]) == expected
    all_modules = all((MODULES_DIR / f"mod_{name}.so").exists() for name in ALL_MODULES)
    no_postgres = servers.postgres_unavailable()
    if all_modules and not no_postgres:
        assert len(report["variants"]) == len(servers.VARIANTS) == 11
    if not all_modules:
        assert "left out, their Apache modules are not installed" in quick_run.stdout
    if no_postgres:
        assert "left out, PostgreSQL cannot run here: imageguard-pg" in quick_run.stdout
    if not (MODULES_DIR / "mod_wsgi.so").exists():
        assert "xsendfile" not in report["variants"]
    for variant, by_size in report["cells"].items():
        cell = by_size["8k"]
        assert cell["rps"] > 0 and cell["cpu_us"] > 0, variant
        if variant.startswith("imageguard"):
            assert cell["non_2xx"] == 0 and cell["socket_errors"] == 0, (variant, cell)
    names = [target["name"] for target in report["targets"]]
    assert any("floor" in name for name in names) and any("ACL decision" in n for n in names)
    assert "imageguard CPU above the floor's, 8 KB" in names
    assert report["rss"]["after_requests"] >= report["rss"]["before_requests"] > 0
    assert "imageguard" in quick_run.stdout and "x static" in quick_run.stdout


def test_quick_benchmark_measures_imageguard_on_postgresql(quick_run: QuickRun) -> None:
    """The imageguard-pg row: the gatekeeper with its store in the run's own PostgreSQL
    answered every request, beside imageguard's row in the tables."""
    reason = _bench_servers().postgres_unavailable()
    if reason is not None:
        pytest.skip(f"imageguard-pg not measured, no PostgreSQL here: {reason}")
    report = quick_run.report
    assert "imageguard-pg" in report["variants"], quick_run.stdout[-3000:]
    cell = report["cells"]["imageguard-pg"]["8k"]
    assert cell["rps"] > 0 and cell["cpu_us"] > 0
    assert cell["non_2xx"] == 0 and cell["socket_errors"] == 0, cell
    assert list(report["cells"])[:4] == ["static", "floor", "imageguard", "imageguard-pg"]
    assert report["settings"]["postgres_cpus"] == report["settings"]["wrk_cpus"]
    assert report["machine"]["postgresql"].startswith("postgres (PostgreSQL)")
    names = [target["name"] for target in report["targets"]]
    assert "imageguard-pg / imageguard, every size" in names
    rows = [line.split()[0] for line in quick_run.stdout.splitlines() if line.startswith("image")]
    assert rows[rows.index("imageguard") + 1] == "imageguard-pg", rows
