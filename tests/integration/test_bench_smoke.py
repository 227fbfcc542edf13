"""A smoke run of ``make bench``: every variant it compares starts, answers, and is
measured, and the report holds every target. The real run is ``make bench``.

make test does not install mod_wsgi and mod_xsendfile (make bench does): without them
the smoke run measures the other variants."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

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


def test_quick_benchmark_measures_every_variant(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--sizes", "8k", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "latest.json").read_text())
    expected = {v.name for v in _bench_servers().available_variants()}
    assert set(report["cells"]) == set(report["variants"]) == expected
    if all((MODULES_DIR / f"mod_{name}.so").exists() for name in ALL_MODULES):
        assert len(report["variants"]) == 10
    else:
        assert "left out, their Apache modules are not installed" in done.stdout
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
    assert "imageguard" in done.stdout and "x static" in done.stdout
