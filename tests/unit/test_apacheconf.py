"""The shipped apache_conf/ files are what the (integration-tested) generator writes."""

from __future__ import annotations

from pathlib import Path

from imageguard.apacheconf import shipped_files

SHIPPED = Path(__file__).resolve().parents[2] / "apache_conf"


def test_shipped_files_match_generator() -> None:
    for name, text in shipped_files().items():
        on_disk = (SHIPPED / name).read_text()
        assert on_disk == text, f"apache_conf/{name} is stale: run make apache-conf"


def test_shipped_conf_has_every_phase_and_the_require_line() -> None:
    text = (SHIPPED / "imageguard.conf").read_text()
    for directive in (
        "PythonAccessHandler imageguard.handlers",
        "PythonAuthenHandler imageguard.handlers",
        "PythonAuthzHandler imageguard.handlers",
        "AuthType imageguard",
        "Require valid-user",
    ):
        assert directive in text
