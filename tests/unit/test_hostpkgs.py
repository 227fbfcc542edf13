"""tools/hostpkgs.py: packages are installed, the system Apache and PostgreSQL are left as
they were found.

A fake Debian plays dpkg, apt-get (whose maintainer scripts enable modules, switch the
MPM, start the services), a2dismod & co., apache2ctl, pg_ctlcluster and service on an etc
tree in tmp_path.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

HOSTPKGS = Path(__file__).resolve().parents[2] / "tools" / "hostpkgs.py"


def _load_tool():
    spec = importlib.util.spec_from_file_location("imageguard_tools_hostpkgs", HOSTPKGS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


hostpkgs = _load_tool()

#: What Debian's apache2 package enables on a fresh install (a part of it).
APACHE_DEFAULTS = {
    "mods-enabled": ["alias.conf", "alias.load", "mime.load", "mpm_event.conf", "mpm_event.load"],
    "conf-enabled": ["charset.conf", "security.conf"],
    "sites-enabled": ["000-default.conf"],
}


def _available(directory: str) -> str:
    return "../" + directory.replace("-enabled", "-available") + "/"


def enable(etc: Path, directory: str, *entries: str) -> None:
    (etc / directory).mkdir(parents=True, exist_ok=True)
    for entry in entries:
        link = etc / directory / entry
        if link.is_symlink():
            link.unlink()
        os.symlink(_available(directory) + entry, link)


def disable(etc: Path, directory: str, *entries: str) -> None:
    for entry in entries:
        link = etc / directory / entry
        if link.is_symlink() or link.exists():
            link.unlink()


def listing(etc: Path) -> dict[str, dict[str, str]]:
    return {
        name: {p.name: os.readlink(p) for p in sorted((etc / name).iterdir())}
        for name in ("mods-enabled", "conf-enabled", "sites-enabled")
        if (etc / name).is_dir()
    }


def _install_apache(fake: FakeDebian) -> None:
    for directory, entries in APACHE_DEFAULTS.items():
        enable(fake.etc, directory, *entries)


class FakeDebian:
    """dpkg, apt-get, a2dis*, apache2ctl and service on a fake etc tree."""

    def __init__(self, etc: Path, installed: Sequence[str] = ("apache2",)) -> None:
        self.etc = etc
        self.installed = set(installed)
        self.running = False
        #: The system PostgreSQL clusters that run ("15/main").
        self.clusters: set[str] = set()
        self.pg_stop_works = True
        self.calls: list[list[str]] = []  # each with the command's name, not its path
        self.said: list[str] = []
        self.apt_fails = False
        self.stop_works = True
        #: package -> what its maintainer scripts do to the host
        self.postinst: dict[str, Callable[[FakeDebian], None]] = {
            "apache2": _install_apache,
            "libapache2-mod-python": lambda f: enable(f.etc, "mods-enabled", "python.load"),
            "libapache2-mod-wsgi-py3": lambda f: enable(
                f.etc, "mods-enabled", "wsgi.load", "wsgi.conf"
            ),
            # postgresql-common creates the cluster main and starts it.
            "postgresql": lambda f: f.clusters.add("15/main"),
        }

    def pids(self) -> list[int]:
        return [4242, 4243] if self.running else []

    def running_clusters(self) -> list[str]:
        return sorted(self.clusters)

    def host(self, **more):
        options: dict[str, object] = {
            "etc": self.etc,
            "run": self,
            "apache_pids": self.pids,
            "postgres_clusters": self.running_clusters,
            "sudo": (),
            "a2tools": True,
            "report": self.said.append,
            "sleep": lambda _seconds: None,
            "stop_timeout": 1.0,
        }
        options.update(more)
        return hostpkgs.Host(**options)

    def __call__(self, argv: Sequence[str], capture: bool) -> subprocess.CompletedProcess[str]:
        argv = [Path(argv[0]).name, *argv[1:]]
        self.calls.append(argv)
        name = argv[0]
        if name == "env":  # env DEBIAN_FRONTEND=noninteractive apt-get ...
            argv = argv[2:]
            name = argv[0]
        out, status = "", 0
        if name == "dpkg-query":
            package = argv[-1]
            if package in self.installed:
                out = "install ok installed"
            else:
                status = 1
        elif name == "apt-get" and argv[1] == "install":
            for package in [a for a in argv[2:] if not a.startswith("-")]:
                if package != "apache2" and "apache2" not in self.installed:
                    self.install("apache2")  # every module package depends on it
                self.install(package)
            status = 100 if self.apt_fails else 0
        elif name in ("a2dismod", "a2disconf", "a2dissite"):
            directory = {"a2dismod": "mods", "a2disconf": "conf", "a2dissite": "sites"}[name]
            stem = argv[-1]
            disable(self.etc, f"{directory}-enabled", f"{stem}.load", f"{stem}.conf")
        elif name == "pg_ctlcluster":  # pg_ctlcluster VERSION NAME ACTION
            cluster, action = f"{argv[1]}/{argv[2]}", argv[3]
            if action == "stop" and self.pg_stop_works:
                self.clusters.discard(cluster)
            elif action == "start":
                self.clusters.add(cluster)
        elif name == "service" and argv[1] == "postgresql":
            if argv[2] == "stop" and self.pg_stop_works:
                self.clusters.clear()
        elif name in ("apache2ctl", "service"):
            action = argv[-1]
            if action == "stop" and self.stop_works:
                self.running = False
            elif action == "start":
                self.running = True
        return subprocess.CompletedProcess(argv, status, out, "")

    def install(self, package: str) -> None:
        if package in self.installed:
            return
        self.installed.add(package)
        self.postinst.get(package, lambda _f: None)(self)

    def apt_installs(self) -> list[list[str]]:
        return [
            [a for a in call[call.index("install") + 1 :] if not a.startswith("-")]
            for call in self.calls
            if "apt-get" in call and "install" in call
        ]


@pytest.fixture
def fake(tmp_path: Path) -> FakeDebian:
    debian = FakeDebian(tmp_path / "apache2")
    _install_apache(debian)
    enable(debian.etc, "mods-enabled", "auth_tkt.load")  # the host's own choice
    return debian


def test_a_module_the_install_enabled_is_disabled_again(fake: FakeDebian) -> None:
    before = listing(fake.etc)
    status = hostpkgs.install(fake.host(), ["libapache2-mod-wsgi-py3"])
    assert status == 0
    assert "libapache2-mod-wsgi-py3" in fake.installed
    assert listing(fake.etc) == before
    assert ["a2dismod", "-q", "-f", "wsgi"] in fake.calls  # once for wsgi.load and .conf
    assert "disabled module wsgi that the install enabled" in fake.said


def test_modules_enabled_before_stay_enabled(fake: FakeDebian) -> None:
    enable(fake.etc, "mods-enabled", "python.load")
    fake.postinst["libapache2-mod-python"] = lambda f: enable(f.etc, "mods-enabled", "python.load")
    before = listing(fake.etc)
    assert hostpkgs.install(fake.host(), ["libapache2-mod-python", "wrk"]) == 0
    assert listing(fake.etc) == before
    assert not any(call[0] == "a2dismod" for call in fake.calls)


def test_entries_the_install_removed_or_changed_come_back(fake: FakeDebian) -> None:
    def switch_mpm(f: FakeDebian) -> None:  # as libapache2-mod-php does
        disable(f.etc, "mods-enabled", "mpm_event.load", "mpm_event.conf")
        enable(f.etc, "mods-enabled", "mpm_prefork.load", "mpm_prefork.conf")
        disable(f.etc, "conf-enabled", "security.conf")
        os.unlink(f.etc / "sites-enabled" / "000-default.conf")
        os.symlink("/somewhere/else.conf", f.etc / "sites-enabled" / "000-default.conf")

    fake.postinst["libapache2-mod-php"] = switch_mpm
    before = listing(fake.etc)
    assert hostpkgs.install(fake.host(), ["libapache2-mod-php"]) == 0
    assert listing(fake.etc) == before
    assert "disabled module mpm_prefork that the install enabled" in fake.said
    assert any(line.startswith("re-enabled module mpm_event") for line in fake.said)
    assert any(line.startswith("re-enabled conf security") for line in fake.said)
    assert any(line.startswith("re-enabled site 000-default") for line in fake.said)


def test_without_debians_tools_the_links_are_removed(fake: FakeDebian) -> None:
    before = listing(fake.etc)
    assert hostpkgs.install(fake.host(a2tools=False), ["libapache2-mod-wsgi-py3"]) == 0
    assert listing(fake.etc) == before
    assert not any(call[0] == "a2dismod" for call in fake.calls)
    assert "removed mods-enabled/wsgi.load that the install added" in fake.said


def test_a_second_file_of_a_module_enabled_before_is_removed_alone(fake: FakeDebian) -> None:
    # auth_tkt.load was enabled without its .conf: a2dismod auth_tkt would take both.
    fake.postinst["libapache2-mod-auth-tkt"] = lambda f: enable(
        f.etc, "mods-enabled", "auth_tkt.load", "auth_tkt.conf"
    )
    before = listing(fake.etc)
    assert hostpkgs.install(fake.host(), ["libapache2-mod-auth-tkt"]) == 0
    assert listing(fake.etc) == before
    assert not any(call[0] == "a2dismod" for call in fake.calls)


def test_a_fresh_apache_is_installed_first_and_its_defaults_kept(tmp_path: Path) -> None:
    fake = FakeDebian(tmp_path / "apache2", installed=())
    status = hostpkgs.install(fake.host(), ["apache2", "libapache2-mod-python", "wrk"])
    assert status == 0
    assert fake.apt_installs() == [["apache2"], ["libapache2-mod-python", "wrk"]]
    expected = {d: {e: _available(d) + e for e in sorted(es)} for d, es in APACHE_DEFAULTS.items()}
    assert listing(fake.etc) == expected  # Debian's defaults, and not mod_python
    assert any("fresh Apache" in line for line in fake.said)


def test_apache2_comes_first_even_when_not_asked_for(tmp_path: Path) -> None:
    fake = FakeDebian(tmp_path / "apache2", installed=())
    assert hostpkgs.install(fake.host(), ["libapache2-mod-wsgi-py3"]) == 0
    assert fake.apt_installs() == [["apache2"], ["libapache2-mod-wsgi-py3"]]
    assert "wsgi.load" not in listing(fake.etc)["mods-enabled"]


def test_nothing_missing_nothing_done(fake: FakeDebian) -> None:
    fake.installed.add("wrk")
    assert hostpkgs.install(fake.host(), ["apache2", "wrk"]) == 0
    assert all(call[0] == "dpkg-query" for call in fake.calls)


def test_apache_started_by_the_install_is_stopped(fake: FakeDebian) -> None:
    def start(f: FakeDebian) -> None:
        enable(f.etc, "mods-enabled", "wsgi.load")
        f.running = True

    fake.postinst["libapache2-mod-wsgi-py3"] = start
    assert hostpkgs.install(fake.host(), ["libapache2-mod-wsgi-py3"]) == 0
    assert not fake.running
    assert ["apache2ctl", "stop"] in fake.calls
    assert any(line.startswith("stopped the system apache2") for line in fake.said)


def test_apache_that_will_not_stop_fails_the_install(fake: FakeDebian) -> None:
    def start(f: FakeDebian) -> None:
        f.running = True

    fake.postinst["libapache2-mod-wsgi-py3"] = start
    fake.stop_works = False
    with pytest.raises(hostpkgs.HostError, match="could not be stopped"):
        hostpkgs.install(fake.host(), ["libapache2-mod-wsgi-py3"])


def test_apache_running_before_keeps_running_and_reloads(fake: FakeDebian) -> None:
    fake.running = True
    assert hostpkgs.install(fake.host(), ["libapache2-mod-wsgi-py3"]) == 0
    assert fake.running
    assert ["apache2ctl", "graceful"] in fake.calls and ["apache2ctl", "stop"] not in fake.calls


def test_a_failed_install_still_restores(fake: FakeDebian) -> None:
    fake.apt_fails = True
    before = listing(fake.etc)
    assert hostpkgs.install(fake.host(), ["libapache2-mod-wsgi-py3"]) == 1
    assert listing(fake.etc) == before


def test_what_cannot_be_restored_fails_the_install(
    fake: FakeDebian, capsys: pytest.CaptureFixture[str]
) -> None:
    (fake.etc / "conf-enabled" / "local.conf").write_text("# the admin's own file\n")
    fake.postinst["breaker"] = lambda f: (f.etc / "conf-enabled" / "local.conf").unlink()
    assert hostpkgs.install(fake.host(), ["breaker"]) == 1
    err = capsys.readouterr().err
    assert "not as it was before the install" in err and "conf-enabled/local.conf" in err


def test_check_names_every_difference(
    fake: FakeDebian, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot = tmp_path / "host.json"
    host = fake.host()
    assert hostpkgs.main(["snapshot", str(snapshot)], host) == 0
    assert hostpkgs.main(["check", str(snapshot)], host) == 0
    enable(fake.etc, "mods-enabled", "wsgi.load")
    disable(fake.etc, "conf-enabled", "charset.conf")
    os.unlink(fake.etc / "sites-enabled" / "000-default.conf")
    os.symlink("/elsewhere.conf", fake.etc / "sites-enabled" / "000-default.conf")
    fake.running = True
    capsys.readouterr()
    assert hostpkgs.main(["check", str(snapshot)], host) == 1
    err = capsys.readouterr().err
    assert "mods-enabled/wsgi.load: added" in err
    assert "conf-enabled/charset.conf: removed" in err
    assert "sites-enabled/000-default.conf: was -> ../sites-available/000-default.conf" in err
    assert "was not running and runs now" in err


def test_the_etc_directory_comes_from_the_environment(
    fake: FakeDebian, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGEGUARD_ETC_APACHE", str(fake.etc))
    snapshot = tmp_path / "host.json"
    assert hostpkgs.main(["snapshot", str(snapshot)]) == 0
    assert '"wsgi.load"' not in snapshot.read_text()
    assert '"auth_tkt.load"' in snapshot.read_text()
    enable(fake.etc, "mods-enabled", "wsgi.load")
    assert hostpkgs.main(["check", str(snapshot)]) == 1


def test_the_system_apache_is_the_one_without_f(tmp_path: Path) -> None:
    processes = {
        "10": b"/usr/sbin/apache2\0-k\0start\0",
        "11": b"/usr/sbin/apache2\0-f\0/tmp/imageguard-x/httpd.conf\0-k\0start\0",
        "12": b"/usr/bin/python3\0-m\0apache2\0",
        "13": b"",
    }
    for pid, cmdline in processes.items():
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "cmdline").write_bytes(cmdline)
    (tmp_path / "self").mkdir()
    assert hostpkgs.system_apache_pids(tmp_path) == [10]


# --------------------------------------------------------------------------- PostgreSQL


def test_a_cluster_the_install_started_is_stopped(fake: FakeDebian) -> None:
    assert hostpkgs.install(fake.host(), ["postgresql", "libpq5"]) == 0
    assert "postgresql" in fake.installed
    assert not fake.clusters
    assert ["pg_ctlcluster", "15", "main", "stop"] in fake.calls
    assert (
        "stopped the system PostgreSQL cluster 15/main that the install started "
        "(/usr/bin/pg_ctlcluster 15 main stop)" in fake.said
    )


def test_a_cluster_running_before_keeps_running(fake: FakeDebian) -> None:
    fake.clusters.add("15/main")
    assert hostpkgs.install(fake.host(), ["postgresql"]) == 0
    assert fake.clusters == {"15/main"}
    assert not any(call[0] in ("pg_ctlcluster", "service") for call in fake.calls)


def test_only_the_new_cluster_is_stopped(fake: FakeDebian) -> None:
    fake.clusters.add("13/main")
    fake.postinst["postgresql-15"] = lambda f: f.clusters.add("15/main")
    assert hostpkgs.install(fake.host(), ["postgresql-15"]) == 0
    assert fake.clusters == {"13/main"}
    # service postgresql stop would stop 13/main too: not tried while another ran before.
    assert not any(call[0] == "service" for call in fake.calls)


def test_service_stops_a_cluster_pg_ctlcluster_cannot_name(fake: FakeDebian) -> None:
    fake.postinst["postgresql"] = lambda f: f.clusters.add("/srv/pgdata")
    assert hostpkgs.install(fake.host(), ["postgresql"]) == 0
    assert not fake.clusters
    assert ["service", "postgresql", "stop"] in fake.calls
    assert not any(call[0] == "pg_ctlcluster" for call in fake.calls)


def test_a_cluster_the_install_stopped_is_started_again(fake: FakeDebian) -> None:
    fake.clusters.add("15/main")
    fake.postinst["postgresql-contrib"] = lambda f: f.clusters.discard("15/main")
    assert hostpkgs.install(fake.host(), ["postgresql-contrib"]) == 0
    assert fake.clusters == {"15/main"}
    assert ["pg_ctlcluster", "15", "main", "start"] in fake.calls
    started = "started the system PostgreSQL cluster 15/main again"
    assert any(line.startswith(started) for line in fake.said)


def test_a_cluster_that_will_not_stop_fails_the_install(fake: FakeDebian) -> None:
    fake.pg_stop_works = False
    with pytest.raises(hostpkgs.HostError, match="cluster 15/main and it could not be stopped"):
        hostpkgs.install(fake.host(), ["postgresql"])


def test_check_names_a_cluster_that_started_or_stopped(
    fake: FakeDebian, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot = tmp_path / "host.json"
    host = fake.host()
    fake.clusters.add("13/main")
    assert hostpkgs.main(["snapshot", str(snapshot)], host) == 0
    assert '"13/main"' in snapshot.read_text()
    assert hostpkgs.main(["check", str(snapshot)], host) == 0
    fake.clusters = {"15/main"}
    capsys.readouterr()
    assert hostpkgs.main(["check", str(snapshot)], host) == 1
    err = capsys.readouterr().err
    assert "the system PostgreSQL cluster 13/main was running and is not now" in err
    assert "the system PostgreSQL cluster 15/main was not running and runs now" in err


def test_a_snapshot_from_before_postgresql_was_recorded_reads_as_none_running(
    fake: FakeDebian, tmp_path: Path
) -> None:
    snapshot = tmp_path / "host.json"
    host = fake.host()
    assert hostpkgs.main(["snapshot", str(snapshot)], host) == 0
    text = snapshot.read_text().replace('"system_postgresql_clusters_running": []', '"x": 0')
    snapshot.write_text(text)
    assert hostpkgs.main(["check", str(snapshot)], host) == 0
    fake.clusters.add("15/main")
    assert hostpkgs.main(["check", str(snapshot)], host) == 1


POSTGRES = "/usr/lib/postgresql/15/bin/postgres"
DEBIAN_CONF = "config_file=/etc/postgresql/15/main/postgresql.conf"


@pytest.mark.parametrize(
    ("argv", "cluster"),
    [
        # How pg_ctlcluster starts Debian's clusters.
        ([POSTGRES, "-D", "/var/lib/postgresql/15/main", "-c", DEBIAN_CONF], "15/main"),
        ([POSTGRES, "-D", "/srv/pg", "-c", DEBIAN_CONF.replace("15/main", "16/big")], "16/big"),
        (["/usr/lib/postgresql/13/bin/postmaster", "-D/var/lib/postgresql/13/old"], "13/old"),
        ([POSTGRES, "-D", "/var/lib/postgresql/data"], "/var/lib/postgresql/data"),
        ([POSTGRES, "-D", "/srv/pg", "--config-file=/etc/postgresql/extra.conf"], "/srv/pg"),
        ([POSTGRES, "-c", "data_directory=/var/lib/postgresql/15/x"], "15/x"),
        # imageguard_devtools.localpg's private servers, and anything else.
        ([POSTGRES, "-D", "/tmp/imageguard-pg-1234/data"], None),
        ([POSTGRES, "-D", "/var/lib/postgresql/../../tmp/x"], None),
        (["postgres: 15/main: checkpointer "], None),
        (["postgres: imageguard-1a2b: walwriter "], None),
        (["/usr/bin/python3", "-D", "/var/lib/postgresql/15/main"], None),
        ([POSTGRES], None),
        ([], None),
    ],
)
def test_which_postmaster_is_a_system_cluster(argv: list[str], cluster: str | None) -> None:
    assert hostpkgs.postgres_cluster(argv) == cluster


def test_system_clusters_are_read_from_proc(tmp_path: Path) -> None:
    processes = {
        "20": b"/usr/lib/postgresql/15/bin/postgres\0-D\0/var/lib/postgresql/15/main\0-c\0"
        + DEBIAN_CONF.encode()
        + b"\0",
        "21": b"postgres: 15/main: checkpointer " + b"\0" * 40,
        "22": b"/usr/lib/postgresql/15/bin/postgres\0-D\0/tmp/imageguard-pg-x/data\0",
        "23": b"postgres: imageguard-1a2b3c4d: walwriter " + b"\0" * 40,
        "24": b"",
    }
    for pid, cmdline in processes.items():
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "cmdline").write_bytes(cmdline)
    (tmp_path / "self").mkdir()
    assert hostpkgs.system_postgres_clusters(tmp_path) == ["15/main"]
