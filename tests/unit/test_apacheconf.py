"""The shipped apache_conf/ files are what the (integration-tested) generator writes, and
the CLI reads a site's options back from such a block."""

from __future__ import annotations

from pathlib import Path

import pytest

from imageguard.apache.apacheconf import htaccess, read_python_options, shipped_files
from imageguard.cli.doctorconf import read_conf
from imageguard.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[2] / "apache_conf"


def test_shipped_files_match_generator() -> None:
    for name, text in shipped_files().items():
        on_disk = (SHIPPED / name).read_text()
        assert on_disk == text, f"apache_conf/{name} is stale: run make apache-conf"


def test_shipped_conf_has_the_gatekeeper_and_apaches_own_check() -> None:
    text = (SHIPPED / "imageguard.conf").read_text()
    assert "PythonAccessHandler imageguard.gatekeeper" in text
    assert "Require env IMAGEGUARD_ADMITTED" in text
    assert "PythonAuthzHandler" not in text and "Require valid-user" not in text


def test_shipped_three_phase_conf_has_every_phase_and_the_require_line() -> None:
    text = (SHIPPED / "imageguard-three-phases.conf").read_text()
    for directive in (
        "PythonAccessHandler imageguard.handlers",
        "PythonAuthenHandler imageguard.handlers",
        "PythonAuthzHandler imageguard.handlers",
        "AuthType imageguard",
        "Require valid-user",
    ):
        assert directive in text


CONF = """
PythonOption imageguard.max_pixels 1000000
<Directory /srv/images>
    PythonOption imageguard.acl_db /var/lib/imageguard/acl.db
    PythonOption imageguard.cache_dir /var/cache/imageguard
    PythonOption imageguard.watermark "{host} # {user}"
</Directory>
<Directory "/srv/other">
    PythonOption imageguard.root /srv/elsewhere
    PythonOption imageguard.thumb_size 100
</Directory>
<Directory /var/www/app>
    PythonOption mod_python.session.session_type FileSession
</Directory>
"""


def test_read_python_options_picks_one_block() -> None:
    options = read_python_options(CONF, "/srv/images")
    assert options == {
        "imageguard.max_pixels": "1000000",
        "imageguard.acl_db": "/var/lib/imageguard/acl.db",
        "imageguard.cache_dir": "/var/cache/imageguard",
        "imageguard.watermark": "{host} # {user}",
        "imageguard.root": "/srv/images",
    }
    assert read_python_options(CONF, "/srv/elsewhere")["imageguard.thumb_size"] == "100"


def test_read_python_options_needs_one_block() -> None:
    with pytest.raises(ConfigError, match="found /srv/images, /srv/other; name the one"):
        read_python_options(CONF)
    with pytest.raises(ConfigError, match="for /nowhere, found none"):
        read_python_options(CONF, "/nowhere")


def test_generated_block_reads_back() -> None:
    options = read_python_options(shipped_files()["imageguard.conf"])
    assert options["imageguard.root"] == "/srv/images"
    assert options["imageguard.cache_dir"] == "/var/cache/imageguard"


def test_the_doctor_finds_nothing_wrong_in_a_shipped_file() -> None:
    """imageguard doctor --conf reads every file the generator writes as it is meant:
    its handlers, the mode, and no mistake in it."""
    from imageguard.cli.doctorconf import static_problems

    modes = {
        "imageguard.conf": "one-phase",
        "imageguard-three-phases.conf": "three-phase",
        "imageguard-tickets.conf": "one-phase",
        "htaccess.example": "gate",
    }
    for name, text in shipped_files().items():
        conf = read_conf(text, name, "/images/")
        assert conf.mode == modes[name], name
        assert static_problems(conf) == [], name
        assert conf.kind == ("htaccess" if name == "htaccess.example" else "block")
        if conf.kind == "block":
            assert (conf.alias, conf.directory) == ("/images", "/srv/images")


def test_an_htaccess_root_with_a_space_stays_one_argument() -> None:
    text = htaccess("jpg png", "/srv/My Photos")
    assert 'PythonOption imageguard.root "/srv/My Photos"\n' in text
    assert 'PythonOption imageguard.extensions "jpg png"\n' in text
    assert read_conf(text, ".htaccess").option("imageguard.root") == "/srv/My Photos"


@pytest.mark.parametrize("root", ['/srv/a"b', "/srv/a\nPythonHandler evil"])
def test_an_htaccess_root_that_cannot_be_written_is_refused(root: str) -> None:
    with pytest.raises(ConfigError):
        htaccess(root=root)
