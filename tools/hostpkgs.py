#!/usr/bin/python3
"""Install the Debian packages make needs, and leave the system Apache and PostgreSQL as
they were found.

Debian's maintainer scripts enable a module when its package is installed (installing
libapache2-mod-wsgi-py3 enables mod_wsgi, and the system Apache then refuses to start
beside mod_python), and they may start the apache2 service; installing postgresql creates
a cluster ``main`` and starts it. This tool installs what is missing, then puts
``/etc/apache2/{mods,conf,sites}-enabled`` back as they were, stops a system apache2 that
the install started and a system PostgreSQL cluster that it started (and starts again
one that ran before and was stopped)::

    hostpkgs.py install PKG...   install the missing packages, keep the host as found
    hostpkgs.py snapshot FILE    write the three directories' entries, whether the system
                                 apache2 runs and which system PostgreSQL clusters run
                                 to FILE as JSON
    hostpkgs.py check FILE       compare the host with FILE; exit 1 naming every difference

A system PostgreSQL cluster is a postmaster whose configuration file is in
``/etc/postgresql`` or whose data directory is in ``/var/lib/postgresql`` (Debian's
``pg_ctlcluster`` starts each with both); the private servers of the tests
(``imageguard_devtools.localpg``) run from a data directory under /tmp and do not count.

Standard library only: it runs under /usr/bin/python3 before the venv exists.
``IMAGEGUARD_ETC_APACHE`` names another configuration directory (used by the tests, which
also pass their own command runner).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

SYSTEM_ETC = Path("/etc/apache2")
ETC_VARIABLE = "IMAGEGUARD_ETC_APACHE"
#: The directories kept as found: directory -> (what one entry enables, the Debian tool
#: that disables one by name).
KINDS = {
    "mods-enabled": ("module", "/usr/sbin/a2dismod"),
    "conf-enabled": ("conf", "/usr/sbin/a2disconf"),
    "sites-enabled": ("site", "/usr/sbin/a2dissite"),
}
APACHE2CTL = "/usr/sbin/apache2ctl"
SERVICE = "/usr/sbin/service"
PG_CTLCLUSTER = "/usr/bin/pg_ctlcluster"
#: Where Debian keeps its PostgreSQL clusters' configuration (``<version>/<name>/``) and,
#: by default, their data directories.
PG_ETC = Path("/etc/postgresql")
PG_DATA = Path("/var/lib/postgresql")

#: One directory's entries: name -> the symlink's target as written in the link, or None
#: when the entry is not a symlink.
Entries = dict[str, Optional[str]]
#: Runs a command (argv, capture output?) and returns its result; tests pass a fake one.
Runner = Callable[[Sequence[str], bool], "subprocess.CompletedProcess[str]"]


class HostError(Exception):
    """A step failed; the message says which and why."""


def run_command(argv: Sequence[str], capture: bool) -> subprocess.CompletedProcess[str]:
    """Run *argv*; a command that does not exist gives exit status 127, as in a shell."""
    try:
        return subprocess.run(list(argv), text=True, capture_output=capture, check=False)
    except FileNotFoundError:
        return subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]}: not found")


def system_apache_pids(proc: Path = Path("/proc")) -> list[int]:
    """The processes of the system apache2 service.

    Those are the processes running ``apache2`` without ``-f``: the private servers of the
    tests, the demo and the benchmark always name their own configuration with ``-f``.
    """
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if os.path.basename(argv[0]) == b"apache2" and b"-f" not in argv[1:]:
            pids.append(int(entry.name))
    return sorted(pids)


def _postmaster_settings(argv: Sequence[str]) -> tuple[str | None, str | None]:
    """The data directory and configuration file a ``postgres`` command line names
    (``-D DIR``, ``-c config_file=FILE``, ``--config-file=FILE`` ...), None where it names
    none."""
    settings: dict[str, str] = {}
    data_dir = None
    args = list(argv[1:])
    while args:
        arg = args.pop(0)
        value: str | None
        if arg in ("-D", "-c"):
            value = args.pop(0) if args else None
        elif arg.startswith(("-D", "-c")):
            value = arg[2:]
        elif arg.startswith("--") and "=" in arg:
            value = arg[2:]
            arg = "-c"
        else:
            continue
        if value is None:
            continue
        if arg.startswith("-D"):
            data_dir = value
        elif "=" in value:
            name, _eq, setting = value.partition("=")
            settings[name.replace("-", "_").lower()] = setting
    return data_dir or settings.get("data_directory"), settings.get("config_file")


def postgres_cluster(argv: Sequence[str]) -> str | None:
    """The system PostgreSQL cluster a process runs, from its command line: ``15/main``
    (or the data directory, for one not laid out as Debian's), or None for a process that
    is no postmaster or none of the system's (a private server with its data in /tmp)."""
    if not argv or os.path.basename(argv[0]) not in ("postgres", "postmaster"):
        return None
    data_dir, config_file = _postmaster_settings(argv)
    if config_file is not None:
        config = Path(os.path.normpath(config_file))
        parts = config.relative_to(PG_ETC).parts if config.is_relative_to(PG_ETC) else ()
        if len(parts) == 3 and parts[2] == "postgresql.conf":
            return f"{parts[0]}/{parts[1]}"
    if data_dir is not None:
        data = Path(os.path.normpath(data_dir))
        if data.is_relative_to(PG_DATA):
            parts = data.relative_to(PG_DATA).parts
            return f"{parts[0]}/{parts[1]}" if len(parts) == 2 else str(data)
        if config_file is not None and Path(config_file).is_relative_to(PG_ETC):
            return str(data)
    return None


def system_postgres_clusters(proc: Path = Path("/proc")) -> list[str]:
    """The system PostgreSQL clusters that run (see :func:`postgres_cluster`), sorted."""
    found = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        argv = [arg.decode(errors="replace") for arg in raw.split(b"\0")]
        while argv and not argv[-1]:
            argv.pop()
        cluster = postgres_cluster(argv)
        if cluster is not None:
            found.add(cluster)
    return sorted(found)


def default_etc() -> Path:
    return Path(os.environ.get(ETC_VARIABLE) or SYSTEM_ETC)


def default_sudo() -> tuple[str, ...]:
    return () if os.geteuid() == 0 else ("sudo",)


def say(message: str) -> None:
    print(f"hostpkgs: {message}", flush=True)


@dataclass
class Host:
    """The machine, as far as this tool touches it; every part can be replaced in tests."""

    etc: Path = field(default_factory=default_etc)
    run: Runner = run_command
    apache_pids: Callable[[], list[int]] = system_apache_pids
    postgres_clusters: Callable[[], list[str]] = system_postgres_clusters
    sudo: tuple[str, ...] = field(default_factory=default_sudo)
    #: Disable with a2dismod/a2disconf/a2dissite? None: when they are installed and etc
    #: is the system's (they only act on /etc/apache2).
    a2tools: bool | None = None
    report: Callable[[str], None] = say
    sleep: Callable[[float], None] = time.sleep
    #: How long a stopped apache2 (or PostgreSQL cluster) may take to exit, in seconds.
    stop_timeout: float = 15.0

    def uses_a2tools(self) -> bool:
        if self.a2tools is not None:
            return self.a2tools
        return self.etc == SYSTEM_ETC and all(os.access(t, os.X_OK) for _k, t in KINDS.values())

    def check(self, argv: Sequence[str], what: str) -> None:
        result = self.run(argv, False)
        if result.returncode != 0:
            raise HostError(f"{what} failed (exit {result.returncode}): {' '.join(argv)}")


@dataclass(frozen=True)
class State:
    """What is kept as found: the entries of the three directories (None for a directory
    that does not exist), whether the system apache2 runs and which system PostgreSQL
    clusters run."""

    dirs: dict[str, Entries | None]
    running: bool
    postgres: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(
            {
                "dirs": self.dirs,
                "system_apache2_running": self.running,
                "system_postgresql_clusters_running": list(self.postgres),
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> State:
        data = json.loads(text)
        return cls(
            dirs={name: data["dirs"].get(name) for name in KINDS},
            running=bool(data["system_apache2_running"]),
            # A snapshot written before PostgreSQL was recorded: none ran.
            postgres=tuple(data.get("system_postgresql_clusters_running", ())),
        )


def read_entries(directory: Path) -> Entries | None:
    if not directory.is_dir():
        return None
    return {
        path.name: os.readlink(path) if path.is_symlink() else None
        for path in sorted(directory.iterdir())
    }


def read_dirs(etc: Path) -> dict[str, Entries | None]:
    return {name: read_entries(etc / name) for name in KINDS}


def take_state(host: Host) -> State:
    return State(
        read_dirs(host.etc), bool(host.apache_pids()), tuple(sorted(host.postgres_clusters()))
    )


def _describe(target: str | None) -> str:
    return "not a symlink" if target is None else f"-> {target}"


def dir_differences(before: dict[str, Entries | None], now: dict[str, Entries | None]) -> list[str]:
    """Every difference between two readings of the three directories, one line each."""
    found = []
    for name in KINDS:
        old, new = before.get(name), now.get(name)
        if old is None and new is None:
            continue
        if new is None:
            found.append(f"{name}: existed before, does not exist now")
            continue
        if old is None:
            found.append(f"{name}: did not exist before, exists now")
            old = {}
        for entry in sorted(old.keys() | new.keys()):
            if entry not in old:
                found.append(f"{name}/{entry}: added ({_describe(new[entry])})")
            elif entry not in new:
                found.append(f"{name}/{entry}: removed (was {_describe(old[entry])})")
            elif old[entry] != new[entry]:
                found.append(
                    f"{name}/{entry}: was {_describe(old[entry])}, now {_describe(new[entry])}"
                )
    return found


def differences(before: State, now: State) -> list[str]:
    found = dir_differences(before.dirs, now.dirs)
    if before.running != now.running:
        found.append(
            "the system apache2 was running and is not now"
            if before.running
            else "the system apache2 was not running and runs now"
        )
    return found + postgres_differences(before.postgres, now.postgres)


def postgres_differences(before: Sequence[str], now: Sequence[str]) -> list[str]:
    """One line for each system PostgreSQL cluster that runs in one reading only."""
    found = [
        f"the system PostgreSQL cluster {cluster} was running and is not now"
        for cluster in sorted(set(before) - set(now))
    ]
    found += [
        f"the system PostgreSQL cluster {cluster} was not running and runs now"
        for cluster in sorted(set(now) - set(before))
    ]
    return found


def _stem(entry: str) -> str:
    """The name a2dismod & co. take: ``wsgi.load`` -> ``wsgi``."""
    base, dot, suffix = entry.rpartition(".")
    return base if dot and suffix in ("load", "conf") else entry


def _remove(host: Host, path: Path) -> None:
    if os.access(path.parent, os.W_OK):
        path.unlink()
    else:
        host.check([*host.sudo, "rm", "-f", "--", str(path)], f"removing {path}")


def _symlink(host: Host, target: str, path: Path) -> None:
    if os.access(path.parent, os.W_OK):
        if path.is_symlink() or path.exists():
            path.unlink()
        os.symlink(target, path)
    else:
        host.check([*host.sudo, "ln", "-sfn", "--", target, str(path)], f"linking {path}")


def restore(host: Host, baseline: dict[str, Entries | None]) -> bool:
    """Put the three directories back as in *baseline*; whether anything was changed.

    A module (conf, site) none of whose entries existed before is disabled with Debian's
    tool, which also records that the administrator disabled it; any other entry that was
    added or changed is removed, and any entry that vanished or changed is linked again.
    """
    changed = False
    current = read_dirs(host.etc)
    if host.uses_a2tools():
        for name, (kind, tool) in KINDS.items():
            before, after = baseline.get(name) or {}, current.get(name) or {}
            old_stems = {_stem(entry) for entry in before}
            added = {_stem(entry) for entry in after if entry not in before} - old_stems
            for stem in sorted(added):
                result = host.run([*host.sudo, tool, "-q", "-f", stem], True)
                if result.returncode == 0:
                    host.report(f"disabled {kind} {stem} that the install enabled")
                    changed = True
                else:
                    output = (result.stdout or "") + (result.stderr or "")
                    host.report(
                        f"{Path(tool).name} {stem} failed ({output.strip()}); removing its links"
                    )
        current = read_dirs(host.etc)
    for name, (kind, _tool) in KINDS.items():
        old, new = baseline.get(name), current.get(name)
        if old is None or new is None:
            continue  # a whole directory appeared or vanished: left to the verification
        directory = host.etc / name
        for entry in sorted(new):
            if entry not in old:
                _remove(host, directory / entry)
                host.report(f"removed {name}/{entry} that the install added")
                changed = True
        for entry, target in sorted(old.items()):
            if entry in new and new[entry] == target:
                continue
            if target is None:
                host.report(f"cannot restore {name}/{entry}: it was not a symlink")
                continue
            _symlink(host, target, directory / entry)
            how = "disabled" if entry not in new else "changed"
            host.report(f"re-enabled {kind} {_stem(entry)} ({entry} {how} by the install)")
            changed = True
    return changed


def is_installed(host: Host, package: str) -> bool:
    result = host.run(["dpkg-query", "-W", "-f=${Status}", package], True)
    words = (result.stdout or "").split()
    return result.returncode == 0 and len(words) == 3 and words[2] == "installed"


def apt_install(host: Host, packages: Sequence[str]) -> None:
    argv = [*host.sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install"]
    host.check([*argv, "-y", "-qq", *packages], "apt-get install")
    host.report(f"installed {' '.join(packages)}")


def _wait_until(host: Host, done: Callable[[], bool]) -> bool:
    waited = 0.0
    while not done():
        if waited >= host.stop_timeout:
            return False
        host.sleep(0.2)
        waited += 0.2
    return True


def _service_command(
    host: Host, commands: Sequence[Sequence[str]], done: Callable[[], bool]
) -> str:
    """Run the first of *commands* after which *done* holds; the one that did, or ''."""
    for argv in commands:
        host.run([*host.sudo, *argv], True)
        if _wait_until(host, done):
            return " ".join(argv)
    return ""


def keep_apache_running_state(host: Host, was_running: bool, config_changed: bool) -> None:
    """Leave the system apache2 running if it was, stopped if it was not."""
    running = bool(host.apache_pids())
    if not was_running and running:
        how = _service_command(
            host,
            ([APACHE2CTL, "stop"], [SERVICE, "apache2", "stop"]),
            lambda: not host.apache_pids(),
        )
        if not how:
            raise HostError(
                f"the install started the system apache2 and it could not be stopped: "
                f"processes {host.apache_pids()} still run"
            )
        host.report(f"stopped the system apache2 that the install started ({how})")
    elif was_running and not running:
        how = _service_command(
            host,
            ([APACHE2CTL, "start"], [SERVICE, "apache2", "start"]),
            lambda: bool(host.apache_pids()),
        )
        if not how:
            raise HostError("the system apache2 ran before the install and does not start now")
        host.report(f"started the system apache2 again, which ran before the install ({how})")
    elif was_running and config_changed:
        # It may have been restarted by a maintainer script with what it had enabled.
        host.run([*host.sudo, APACHE2CTL, "graceful"], True)
        host.report("reloaded the system apache2 with its configuration as found")


def _debian_cluster(cluster: str) -> list[str] | None:
    """``15/main`` -> ["15", "main"], what pg_ctlcluster takes; None for a data directory."""
    parts = cluster.split("/")
    return parts if len(parts) == 2 and all(parts) else None


def keep_postgres_running_state(host: Host, were_running: Sequence[str]) -> None:
    """Stop each system PostgreSQL cluster that runs now and did not before, start again
    each that ran before and does not now. ``service postgresql stop``, which stops every
    cluster, is only tried when none ran before."""
    running = set(host.postgres_clusters())
    for cluster in sorted(running - set(were_running)):
        commands = []
        debian = _debian_cluster(cluster)
        if debian is not None:
            commands.append([PG_CTLCLUSTER, *debian, "stop"])
        if not were_running:
            commands.append([SERVICE, "postgresql", "stop"])
        _put_cluster(
            host, cluster, commands, False,
            f"the install started the system PostgreSQL cluster {cluster} and it could not "
            "be stopped",
            f"stopped the system PostgreSQL cluster {cluster} that the install started",
        )  # fmt: skip
    for cluster in sorted(set(were_running) - running):
        debian = _debian_cluster(cluster)
        _put_cluster(
            host, cluster, [[PG_CTLCLUSTER, *debian, "start"]] if debian is not None else [],
            True,
            f"the system PostgreSQL cluster {cluster} ran before the install and does not "
            "start now",
            f"started the system PostgreSQL cluster {cluster} again, which ran before the "
            "install",
        )  # fmt: skip


def _put_cluster(
    host: Host,
    cluster: str,
    commands: Sequence[Sequence[str]],
    running: bool,
    failure: str,
    done: str,
) -> None:
    """Run *commands* until *cluster* runs (*running*) or not; report *done*, or raise
    HostError saying *failure*."""
    how = _service_command(
        host, commands, lambda: (cluster in host.postgres_clusters()) == running
    )
    if not how:
        raise HostError(failure)
    host.report(f"{done} ({how})")


def install(host: Host, packages: Sequence[str]) -> int:
    """Install the missing *packages*, keeping the system Apache and PostgreSQL as found;
    exit status."""
    was_running = bool(host.apache_pids())
    postgres_before = host.postgres_clusters()
    missing = [package for package in packages if not is_installed(host, package)]
    if not missing:
        host.report(f"already installed: {' '.join(packages)}")
        return 0
    status = 0
    host.check([*host.sudo, "apt-get", "update", "-qq"], "apt-get update")
    if not is_installed(host, "apache2"):
        # No Apache yet, so no configuration of the host's to keep: Debian's defaults for
        # a fresh Apache (what the apache2 package enables) are the baseline, so apache2
        # is installed alone first and the configuration read after that.
        try:
            apt_install(host, ["apache2"])
        except HostError:
            keep_apache_running_state(host, was_running, config_changed=False)
            raise
        host.report("apache2 was new: Debian's defaults for a fresh Apache are what is kept")
        missing = [package for package in missing if package != "apache2"]
    baseline = read_dirs(host.etc)
    try:
        if missing:
            apt_install(host, missing)
    except HostError as error:
        print(f"hostpkgs: {error}", file=sys.stderr)
        status = 1  # a maintainer script may still have enabled something: restore anyway
    changed = restore(host, baseline)
    keep_apache_running_state(host, was_running, changed)
    keep_postgres_running_state(host, postgres_before)
    problems = dir_differences(baseline, read_dirs(host.etc))
    if bool(host.apache_pids()) != was_running:
        problems.append("the system apache2 is not in the state it was found in")
    problems += postgres_differences(postgres_before, host.postgres_clusters())
    if problems:
        print(
            "hostpkgs: the system Apache or PostgreSQL is not as it was before the install:\n  "
            + "\n  ".join(problems),
            file=sys.stderr,
        )
        return 1
    return status


def main(argv: Sequence[str] | None = None, host: Host | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="install missing packages").add_argument(
        "packages", nargs="+"
    )
    commands.add_parser("snapshot", help="write the state to FILE").add_argument("file")
    commands.add_parser("check", help="compare the state with FILE").add_argument("file")
    args = parser.parse_args(argv)
    host = host or Host()
    try:
        if args.command == "install":
            return install(host, args.packages)
        if args.command == "snapshot":
            Path(args.file).write_text(take_state(host).to_json() + "\n")
            return 0
        before = State.from_json(Path(args.file).read_text())
        found = differences(before, take_state(host))
        if found:
            print(
                f"hostpkgs: the host (Apache in {host.etc}, PostgreSQL) is not as recorded "
                f"in {args.file}:\n  "
                + "\n  ".join(found),
                file=sys.stderr,
            )
            return 1
        host.report(
            f"the host (Apache in {host.etc}, PostgreSQL) is as recorded in {args.file}"
        )
        return 0
    except (HostError, OSError, ValueError, KeyError) as error:
        print(f"hostpkgs: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
