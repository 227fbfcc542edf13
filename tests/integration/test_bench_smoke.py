"""A smoke run of ``make bench``: every variant it compares starts, answers, and is
measured, and the report holds every target. The real run is ``make bench``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imageguard.localserver import MODULES_DIR

BENCH = Path(__file__).resolve().parents[2] / "bench" / "run.py"

pytestmark = [
    pytest.mark.apache,
    pytest.mark.skipif(
        shutil.which("wrk") is None
        or not (MODULES_DIR / "mod_wsgi.so").exists()
        or not (MODULES_DIR / "mod_xsendfile.so").exists(),
        reason="wrk, libapache2-mod-wsgi-py3 and libapache2-mod-xsendfile are not installed",
    ),
]


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
    assert set(report["cells"]) == set(report["variants"]) and len(report["variants"]) == 10
    for variant, by_size in report["cells"].items():
        cell = by_size["8k"]
        assert cell["rps"] > 0, variant
        if variant.startswith("imageguard"):
            assert cell["non_2xx"] == 0 and cell["socket_errors"] == 0, (variant, cell)
    names = [target["name"] for target in report["targets"]]
    assert any("floor" in name for name in names) and any("ACL decision" in n for n in names)
    assert report["rss"]["after_requests"] >= report["rss"]["before_requests"] > 0
    assert "imageguard" in done.stdout and "x static" in done.stdout
