"""``imageguard apache-conf --install``: the stamp that tells imageguard's file from an
edited one, the undoing of a failed install (with stand-ins for Debian's tools), and the
real ``a2enconf``/``apache2ctl`` run against a copy of /etc/apache2 (APACHE_CONFDIR),
never against /etc/apache2 itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from imageguard.apache.install import InstallError, install, stamp_state, stamped

BLOCK = (
    "# imageguard: /images is visible only to whom the ACL store allows.\n"
    "Alias /images /srv/images\n"
)
REAL_CONFDIR = Path("/etc/apache2")
#: Where a2enconf and a2disconf keep their markers (enabled_by_admin/NAME, ...).
REAL_STATEDIR = Path("/var/lib/apache2")


# --------------------------------------------------------------------------- the stamp


def test_a_stamped_file_is_intact_until_edited() -> None:
    text = stamped(BLOCK)
    assert text.endswith(BLOCK) and text.startswith("# imageguard apache-conf --install")
    assert stamp_state(text) == "intact"
    assert stamp_state(text.replace("/srv/images\n", "/srv/photos\n")) == "edited"
    assert stamp_state(text + "Require all granted\n") == "edited"
    assert stamp_state(text.replace("(edit this file", "(changed this file")) == "edited"
    first, rest = text.split("\n", 1)
    assert stamp_state(first.replace(first[-6:], "000000") + "\n" + rest) == "edited"


def test_a_file_without_the_stamp_is_foreign() -> None:
    assert stamp_state(BLOCK) == "foreign"
    assert stamp_state("") == "foreign"
    assert stamp_state(" " + stamped(BLOCK)) == "foreign"


def test_stamping_adds_a_final_newline() -> None:
    assert stamped(BLOCK.rstrip("\n")) == stamped(BLOCK)


# --------------------------------------------------------------------------- undoing


class Tools:
    """Stand-ins for a2enconf, a2disconf and apache2ctl on a directory like /etc/apache2.

    ``failing_test`` makes configtest fail once the file holds that text (or always,
    with ``"*"``)."""

    def __init__(self, confdir: Path, failing_test: str = "") -> None:
        self.confdir = confdir
        self.failing_test = failing_test
        self.ran: list[str] = []

    def __call__(self, argv: Sequence[str], env: dict[str, str]) -> tuple[int, str]:
        assert env["APACHE_CONFDIR"] == str(self.confdir)
        self.ran.append(" ".join(argv))
        link = self.confdir / "conf-enabled" / "imageguard.conf"
        if argv[0] == "a2enconf":
            link.symlink_to("../conf-available/imageguard.conf")
            return 0, "Enabling conf imageguard."
        if argv[0] == "a2disconf":
            link.unlink()
            return 0, ""
        conf = self.confdir / "conf-available" / "imageguard.conf"
        text = conf.read_text() if link.exists() else ""
        if self.failing_test == "*" or (self.failing_test and self.failing_test in text):
            return 1, "AH00526: Syntax error on line 5 of imageguard.conf:\nInvalid command"
        return 0, "Syntax OK"


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    for name in ("conf-available", "conf-enabled"):
        (tmp_path / "apache2" / name).mkdir(parents=True)
    return tmp_path / "apache2"


def env_for(confdir: Path) -> dict[str, str]:
    return {"APACHE_CONFDIR": str(confdir), "PATH": "/nowhere"}


def test_a_first_install_writes_enables_and_tests(confdir: Path) -> None:
    tools = Tools(confdir)
    done = install(BLOCK, environ=env_for(confdir), run=tools)
    assert (done.changed, done.enabled_now, done.backup, done.configtest) == (
        True,
        True,
        None,
        "Syntax OK",
    )
    assert done.path.read_text() == stamped(BLOCK)
    assert oct(done.path.stat().st_mode & 0o777) == "0o644"
    assert tools.ran == ["apache2ctl configtest", "a2enconf -q imageguard", "apache2ctl configtest"]
    again = Tools(confdir)
    done = install(BLOCK, environ=env_for(confdir), run=again)
    assert (done.changed, done.enabled_now) == (False, False)
    assert again.ran == ["apache2ctl configtest", "apache2ctl configtest"]
    assert sorted(p.name for p in (confdir / "conf-available").iterdir()) == ["imageguard.conf"]


def test_a_new_block_replaces_the_one_imageguard_wrote(confdir: Path) -> None:
    install(BLOCK, environ=env_for(confdir), run=Tools(confdir))
    newer = BLOCK.replace("/srv/images", "/srv/photos")
    done = install(newer, environ=env_for(confdir), run=Tools(confdir))
    assert done.changed and done.backup is None and done.path.read_text() == stamped(newer)


@pytest.mark.parametrize("kind", ["edited", "foreign"])
def test_a_file_changed_by_hand_is_kept_unless_forced(confdir: Path, kind: str) -> None:
    path = confdir / "conf-available" / "imageguard.conf"
    mine = stamped(BLOCK) + "# the admin's line\n" if kind == "edited" else "Alias /x /y\n"
    path.write_text(mine)
    tools = Tools(confdir)
    with pytest.raises(InstallError, match="not overwritten") as refused:
        install(BLOCK, environ=env_for(confdir), run=tools)
    assert ("changed since" in str(refused.value)) == (kind == "edited")
    assert path.read_text() == mine and tools.ran == []  # refused before any tool runs
    done = install(BLOCK, force=True, environ=env_for(confdir), run=Tools(confdir))
    assert done.backup == path.with_name("imageguard.conf.bak")
    assert done.backup.read_text() == mine and path.read_text() == stamped(BLOCK)


def test_a_failed_test_puts_back_the_file_and_disables_it(confdir: Path) -> None:
    tools = Tools(confdir, failing_test="/srv/images")
    with pytest.raises(InstallError, match="configtest fails with the new") as failed:
        install(BLOCK, environ=env_for(confdir), run=tools)
    assert "disabled imageguard again" in str(failed.value) and "Invalid command" in str(
        failed.value
    )
    assert tools.ran[-1] == "a2disconf -q imageguard"
    assert list((confdir / "conf-available").iterdir()) == []
    assert list((confdir / "conf-enabled").iterdir()) == []


def test_a_failed_test_restores_the_enabled_file_it_replaced(confdir: Path) -> None:
    install(BLOCK, environ=env_for(confdir), run=Tools(confdir))
    before = (confdir / "conf-available" / "imageguard.conf").read_text()
    broken = BLOCK + "Bogus directive\n"
    tools = Tools(confdir, failing_test="Bogus")
    with pytest.raises(InstallError, match="restored the previous"):
        install(broken, environ=env_for(confdir), run=tools)
    assert "a2disconf -q imageguard" not in tools.ran  # it was enabled before: it stays so
    assert (confdir / "conf-available" / "imageguard.conf").read_text() == before
    assert (confdir / "conf-enabled" / "imageguard.conf").exists()


def test_nothing_is_written_when_the_configuration_is_broken_already(confdir: Path) -> None:
    tools = Tools(confdir, failing_test="*")
    with pytest.raises(InstallError, match="before anything is changed"):
        install(BLOCK, environ=env_for(confdir), run=tools)
    assert tools.ran == ["apache2ctl configtest"]
    assert list((confdir / "conf-available").iterdir()) == []


def test_a_directory_without_conf_available_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="not a Debian-style"):
        install(BLOCK, environ=env_for(tmp_path), run=Tools(tmp_path))


def test_a_failed_test_restores_the_mode_of_the_file_it_replaced(confdir: Path) -> None:
    path = confdir / "conf-available" / "imageguard.conf"
    mine = b"# the admin's own, not UTF-8: caf\xe9\nAlias /x /y\n"
    path.write_bytes(mine)
    path.chmod(0o640)
    with pytest.raises(InstallError, match="restored the previous"):
        install(BLOCK, force=True, environ=env_for(confdir), run=Tools(confdir, "/srv/images"))
    assert path.read_bytes() == mine and oct(path.stat().st_mode & 0o777) == "0o640"
    backup = path.with_name("imageguard.conf.bak")
    assert backup.read_bytes() == mine and oct(backup.stat().st_mode & 0o777) == "0o640"
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "imageguard.conf",
        "imageguard.conf.bak",
    ]


def test_a_file_that_is_not_utf8_is_foreign(confdir: Path) -> None:
    path = confdir / "conf-available" / "imageguard.conf"
    path.write_bytes(b"Alias /x /caf\xe9\n")
    with pytest.raises(InstallError, match="not written by imageguard"):
        install(BLOCK, environ=env_for(confdir), run=Tools(confdir))
    done = install(BLOCK, force=True, environ=env_for(confdir), run=Tools(confdir))
    assert done.backup is not None and done.backup.read_bytes() == b"Alias /x /caf\xe9\n"


def test_a_link_in_place_of_the_file_is_never_followed(confdir: Path, tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$hash\n")
    secret.chmod(0o600)
    path = confdir / "conf-available" / "imageguard.conf"
    path.symlink_to(secret)
    tools = Tools(confdir)
    with pytest.raises(InstallError, match="is a symbolic link"):
        install(BLOCK, force=True, environ=env_for(confdir), run=tools)
    assert tools.ran == [] and path.is_symlink() and secret.read_text() == "root:$6$hash\n"
    assert not path.with_name("imageguard.conf.bak").exists()


def test_a_planted_temporary_name_is_not_written_through(confdir: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    victim.chmod(0o600)
    available = confdir / "conf-available"
    for pid in range(os.getpid() - 2, os.getpid() + 3):  # the name a writer could guess
        (available / f".imageguard.conf.{pid}.tmp").symlink_to(victim)
    done = install(BLOCK, environ=env_for(confdir), run=Tools(confdir))
    assert victim.read_text() == "keep me\n" and oct(victim.stat().st_mode & 0o777) == "0o600"
    assert not done.path.is_symlink() and done.path.read_text() == stamped(BLOCK)


def test_an_enabled_name_that_is_not_the_link_to_the_file_is_refused(confdir: Path) -> None:
    enabled = confdir / "conf-enabled" / "imageguard.conf"
    enabled.write_text("Alias /images /elsewhere\n")  # what Apache reads, not a2enconf's link
    tools = Tools(confdir)
    with pytest.raises(InstallError, match="is not a link to"):
        install(BLOCK, environ=env_for(confdir), run=tools)
    assert tools.ran == [] and list((confdir / "conf-available").iterdir()) == []


def test_the_link_is_taken_out_when_a2disconf_fails(confdir: Path) -> None:
    class NoDisconf(Tools):
        def __call__(self, argv: Sequence[str], env: dict[str, str]) -> tuple[int, str]:
            if argv[0] == "a2disconf":
                self.ran.append(" ".join(argv))
                return 1, "ERROR: something went wrong"
            return super().__call__(argv, env)

    with pytest.raises(InstallError, match="a2disconf failed") as failed:
        install(BLOCK, environ=env_for(confdir), run=NoDisconf(confdir, "/srv/images"))
    link = confdir / "conf-enabled" / "imageguard.conf"
    assert f"removed {link}" in str(failed.value)
    assert not os.path.lexists(link) and list((confdir / "conf-available").iterdir()) == []


def test_a_relative_apache_confdir_is_made_absolute_for_the_tools(
    confdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(confdir.parent)
    tools = Tools(confdir)  # it checks that the tools are given the absolute directory
    done = install(BLOCK, environ={"APACHE_CONFDIR": confdir.name}, run=tools)
    assert done.path == confdir / "conf-available" / "imageguard.conf"


@pytest.mark.parametrize("name", ["apache2 copy", "apache2\nx"])
def test_an_apache_confdir_apache2ctl_cannot_take_is_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / name / "conf-available").mkdir(parents=True)
    with pytest.raises(InstallError, match="apache2ctl cannot take"):
        install(BLOCK, environ={"APACHE_CONFDIR": str(tmp_path / name)}, run=Tools(tmp_path))


def test_something_else_than_a_file_in_place_of_the_conf_is_refused(confdir: Path) -> None:
    path = confdir / "conf-available" / "imageguard.conf"
    path.mkdir()
    tools = Tools(confdir)
    with pytest.raises(InstallError, match="is not a regular file: not replaced"):
        install(BLOCK, force=True, environ=env_for(confdir), run=tools)
    assert tools.ran == [] and path.is_dir()


def test_a_failing_a2enconf_takes_the_new_file_back(confdir: Path) -> None:
    class NoEnconf(Tools):
        def __call__(self, argv: Sequence[str], env: dict[str, str]) -> tuple[int, str]:
            if argv[0] == "a2enconf":
                self.ran.append(" ".join(argv))
                return 1, "ERROR: Conf imageguard does not exist!"
            return super().__call__(argv, env)

    tools = NoEnconf(confdir)
    with pytest.raises(InstallError, match="a2enconf imageguard failed") as failed:
        install(BLOCK, environ=env_for(confdir), run=tools)
    assert "does not exist" in str(failed.value)
    assert list((confdir / "conf-available").iterdir()) == []
    assert not os.path.lexists(confdir / "conf-enabled" / "imageguard.conf")
    assert tools.ran == ["apache2ctl configtest", "a2enconf -q imageguard"]


def test_an_a2enconf_that_enables_another_file_is_undone(confdir: Path) -> None:
    class Elsewhere(Tools):
        def __call__(self, argv: Sequence[str], env: dict[str, str]) -> tuple[int, str]:
            if argv[0] == "a2enconf":  # APACHE_CONF_AVAILABLE pointing somewhere else, say
                self.ran.append(" ".join(argv))
                other = self.confdir / "other.conf"
                other.write_text("# not imageguard's\n")
                (self.confdir / "conf-enabled" / "imageguard.conf").symlink_to(other)
                return 0, ""
            return super().__call__(argv, env)

    tools = Elsewhere(confdir)
    with pytest.raises(InstallError, match="enabled another file than"):
        install(BLOCK, environ=env_for(confdir), run=tools)
    assert tools.ran == [
        "apache2ctl configtest",
        "a2enconf -q imageguard",
        "a2disconf -q imageguard",
    ]
    assert list((confdir / "conf-available").iterdir()) == []
    assert not os.path.lexists(confdir / "conf-enabled" / "imageguard.conf")


# --------------------------------------------------------------------------- for real

TOOLS_THERE = all(shutil.which(t, path="/usr/sbin:/usr/bin") for t in ("a2enconf", "apache2ctl"))
real_tools = pytest.mark.skipif(
    not (TOOLS_THERE and (REAL_CONFDIR / "conf-available").is_dir()),
    reason="Debian's apache2 (a2enconf, apache2ctl, /etc/apache2) is not installed",
)


def listing(directory: Path) -> list[tuple[str, str]]:
    """Every entry below *directory* and what it is (a link's target, a file's bytes)."""
    found = []
    for path in sorted(directory.rglob("*")):
        if path.is_symlink():
            found.append((str(path), "-> " + os.readlink(path)))
        elif path.is_file():
            found.append((str(path), path.read_bytes().hex()[:64] + str(path.stat().st_size)))
    return found


@pytest.fixture
def copied(tmp_path: Path) -> Iterator[Path]:
    """A copy of /etc/apache2; /etc/apache2 and a2enconf's markers in /var/lib/apache2
    are compared before and after."""
    before = listing(REAL_CONFDIR), listing(REAL_STATEDIR)
    copy = tmp_path / "apache2"
    shutil.copytree(REAL_CONFDIR, copy, symlinks=True)
    yield copy
    assert listing(REAL_CONFDIR) == before[0], "the test changed /etc/apache2"
    assert listing(REAL_STATEDIR) == before[1], "the test changed /var/lib/apache2"


def run_cli(confdir: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "APACHE_CONFDIR": str(confdir),
        "APACHE_STATE_DIRECTORY": str(tmp / "apache2-state"),  # a2enconf's markers
    }
    assert env["APACHE_CONFDIR"] != str(REAL_CONFDIR)
    (tmp / "images").mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "imageguard.cli", "--db", str(tmp / "acl.db"), "apache-conf"]
    argv += ["--root", str(tmp / "images"), "--install", *extra]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)


def included(confdir: Path) -> str:
    done = subprocess.run(
        ["apache2ctl", "-t", "-D", "DUMP_INCLUDES"],
        env={"PATH": "/usr/sbin:/usr/bin:/bin", "APACHE_CONFDIR": str(confdir)},
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout


@real_tools
def test_install_for_real_into_a_copy_of_etc_apache2(copied: Path, tmp_path: Path) -> None:
    done = run_cli(copied, tmp_path)
    assert done.returncode == 0, done.stderr
    conf = copied / "conf-available" / "imageguard.conf"
    assert f"wrote: {conf}" in done.stdout and "enabled it: a2enconf imageguard" in done.stdout
    assert "apache2ctl configtest: Syntax OK" in done.stdout
    assert (copied / "conf-enabled" / "imageguard.conf").resolve() == conf.resolve()
    assert (tmp_path / "apache2-state" / "conf" / "enabled_by_admin" / "imageguard").exists()
    # Included at server level, outside any <VirtualHost>, and Apache's test passes.
    assert f"{copied}/conf-enabled/imageguard.conf" in included(copied)
    assert stamp_state(conf.read_text()) == "intact"
    assert "<Directory " in conf.read_text() and "PythonImport" in conf.read_text()

    again = run_cli(copied, tmp_path)
    assert again.returncode == 0 and f"unchanged: {conf}" in again.stdout
    assert "enabled it" not in again.stdout

    conf.write_text(conf.read_text().replace("EnableSendfile On", "EnableSendfile Off"))
    refused = run_cli(copied, tmp_path)
    assert refused.returncode == 2
    assert "was changed since imageguard wrote it: not overwritten" in refused.stderr
    assert "EnableSendfile Off" in conf.read_text()
    forced = run_cli(copied, tmp_path, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "EnableSendfile Off" in (copied / "conf-available" / "imageguard.conf.bak").read_text()
    assert stamp_state(conf.read_text()) == "intact"


@real_tools
def test_a_block_apache_refuses_is_taken_back_for_real(copied: Path, tmp_path: Path) -> None:
    # Without mod_python enabled, Apache does not know the block's Python* directives.
    for name in ("python.load", "python.conf"):
        (copied / "mods-enabled" / name).unlink(missing_ok=True)
    done = run_cli(copied, tmp_path)
    assert done.returncode == 2
    assert "apache2ctl configtest fails with the new" in done.stderr
    assert "Invalid command 'PythonImport'" in done.stderr
    assert "disabled imageguard again" in done.stderr and "removed" in done.stderr
    assert not (copied / "conf-available" / "imageguard.conf").exists()
    assert not (copied / "conf-enabled" / "imageguard.conf").is_symlink()
    assert "imageguard.conf" not in included(copied)


@real_tools
def test_flags_that_do_not_go_with_install(copied: Path, tmp_path: Path) -> None:
    done = run_cli(copied, tmp_path, "--htaccess")
    assert done.returncode == 2 and "an .htaccess is copied by hand" in done.stderr
    env = {**os.environ, "APACHE_CONFDIR": str(copied)}
    alone = subprocess.run(
        [sys.executable, "-m", "imageguard.cli", "apache-conf", "--root", str(tmp_path), "--force"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert alone.returncode == 2 and "--force only goes with --install" in alone.stderr
    assert list((copied / "conf-available").glob("imageguard*")) == []
