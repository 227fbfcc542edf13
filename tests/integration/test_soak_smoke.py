"""A short run of ``make soak`` under each MPM: clients, a writer changing the ACL store
every 100 ms and a graceful restart in the middle, every answer checked against the
store's state when it was asked. The real run is ``make soak`` (64 clients, 60 s).
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imageguard_devtools.localserver import (
    ApacheConfig,
    ApacheError,
    LocalApache,
    make_workdir,
)

from .conftest import hello_docroot, needs_apache

SOAK = Path(__file__).resolve().parents[2] / "soak" / "soak.py"
SMALL = [
    "--clients", "8",
    "--seconds", "8",
    "--warmup", "1",
    "--users", "50",
    "--images", "300",
    "--write-interval", "0.1",
]  # fmt: skip

pytestmark = needs_apache()


@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_short_soak_finds_nothing_wrong(mpm: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SOAK), "--mpm", mpm, *SMALL, "--results-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout[-4000:] + done.stderr[-4000:]
    assert done.returncode == 0, output
    [path] = tmp_path.glob(f"*-{mpm}.json")
    result = json.loads(path.read_text())
    assert result["passed"] and result["failures"] == [], output
    assert result["requests"]["answered"] > 0
    assert result["wrong_decisions"]["total"] == 0, result["wrong_decisions"]["examples"]
    assert result["errors"]["unexpected_5xx"] == 0
    assert result["errors"]["unexpected_statuses"] == {}
    assert result["errors"]["failed_connections"] == 0, result["errors"]["failed_examples"]
    assert result["errors"]["error_log"]["crashed_children"] == 0
    assert result["writes"]["total"] >= 50 and not result["errors"]["writer_errors"]
    assert result["writes"]["model_matches_store_at_end"]
    # Revocations were checked by requests sent after they returned, and none showed.
    assert result["revocations"]["requests_checking_one"] > 0
    assert result["revocations"]["writes_checked"] > 0
    assert result["graceful"]["done"] and result["graceful"]["failed_then"] == 0
    # The same answers judged by a model that misses every grant: the check can fail.
    assert result["control_check"]["wrong_grants"] > 0
    assert result["rss_kb"]["before"]["total_kb"] > 0 and result["latency_ms"]["p99"] > 0
    assert f"mpm_{mpm}" in done.stdout and "verdict              PASS" in done.stdout


@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_graceful_restart_keeps_the_master_and_replaces_the_children(mpm: str) -> None:
    """LocalApache.graceful(), which the soak uses: apache2 -k graceful with the server's
    own configuration file."""
    base = make_workdir("igsoak-graceful-")
    try:
        body = hello_docroot(base)
        server = LocalApache(ApacheConfig(workdir=base / "run", body=body, mpm=mpm))
        with pytest.raises(ApacheError, match="no server"):
            server.graceful()
        with server:
            master = server.master_pid()
            children = set(server.server_pids()) - {master}
            server.graceful()
            assert server.master_pid() == master
            deadline = time.monotonic() + 15
            while set(server.server_pids()) & children and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not set(server.server_pids()) & children  # every old child has gone
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            conn.request("GET", "/")
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b"hi\n")
            conn.close()
            assert "graceful restart" in server.error_log_text().lower()
    finally:
        shutil.rmtree(base, ignore_errors=True)
