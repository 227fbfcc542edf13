"""Run a private Apache 2.4 + mod_python on 127.0.0.1 for tests, the demo and benchmarks.

This module runs in the ordinary (venv) Python and never imports ``mod_python``: it only
writes an ``httpd.conf`` into a work directory and drives the system ``apache2`` binary.

Why it is built the way it is (each point was checked on Debian 12, Apache 2.4,
libapache2-mod-python 3.5):

* The generated configuration is self-contained (``apache2 -f CONF``) and names every path
  itself (ServerRoot, DefaultRuntimeDir, PidFile, ErrorLog, Mutex, ...), so the Debian
  ``APACHE_*`` variables from ``/etc/apache2/envvars`` are not needed and the system
  instance in ``/etc/apache2`` is never touched.
* Apache is started with a *clean* environment. The embedded interpreter derives its
  prefix from the ``python3`` it finds on ``PATH``; a venv or pyenv ``bin/`` on ``PATH``
  makes the children load the wrong standard library (or die with
  "No module named 'encodings'").
* ``PythonPath`` *replaces* ``sys.path`` in the embedded interpreter and is not a site
  directory (``.pth`` files, hence editable installs, are ignored), so the directories
  holding ``imageguard`` and Pillow are listed explicitly (see :func:`default_python_path`).
* Started as root, Apache's children drop to ``www-data``: every file they read must be
  readable, every directory they write must be writable by that user. Started as another
  user, ``User``/``Group`` are ignored and the children keep that user. :func:`run_user`,
  :func:`prepare_readable` and :func:`prepare_writable` deal with that.
* The server listens on 127.0.0.1 only.

Typical use::

    with LocalApache(ApacheConfig(workdir=wd, body=body)) as server:
        urllib.request.urlopen(server.url("/img/a.jpg"))
"""

from __future__ import annotations

import contextlib
import grp
import http.client
import os
import platform
import pwd
import re
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imageguard.apache.apacheconf import python_path, python_path_line

__all__ = [
    "APACHE_BIN",
    "CLEAN_ENV",
    "MODULES_DIR",
    "ApacheConfig",
    "ApacheError",
    "LocalApache",
    "default_python_path",
    "free_port",
    "make_workdir",
    "prepare_readable",
    "prepare_writable",
    "run_user",
]

#: The Apache binary (Debian's name for httpd).
APACHE_BIN = "/usr/sbin/apache2"

#: Where Debian installs Apache's and mod_python's shared modules.
MODULES_DIR = Path("/usr/lib/apache2/modules")

#: The whole environment Apache is started with. A venv/pyenv directory on PATH would make
#: mod_python's embedded interpreter pick up the wrong prefix and standard library.
CLEAN_ENV: dict[str, str] = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}

#: Modules loaded in every generated configuration, besides the MPM.
#: unixd: User/Group and privilege drop; authz_core/authn_core: ``Require``, ``AuthType``,
#: ``AuthName``; authz_user: ``Require valid-user`` (without it the authen/authz phases of
#: mod_python never run); mime: Content-Type; alias: ``Alias``; dir: ``DirectoryIndex``;
#: log_config: the access log; headers/setenvif: small conveniences for callers' bodies.
BASE_MODULES: tuple[str, ...] = (
    "unixd",
    "authz_core",
    "authz_user",
    "authn_core",
    "mime",
    "alias",
    "dir",
    "log_config",
    "headers",
    "setenvif",
    "python",
)

MPMS: tuple[str, ...] = ("event", "prefork")

_TAIL_LINES = 40


class ApacheError(RuntimeError):
    """Apache refused the configuration, did not come up, or did not go away."""


# --------------------------------------------------------------------------- helpers


def _first_line(command: Sequence[str]) -> str:
    """The first line a version command prints (on stdout, else stderr), or "unknown"."""
    try:
        out = subprocess.run(list(command), capture_output=True, text=True, check=False)
        return (out.stdout or out.stderr).splitlines()[0].strip()
    except (OSError, IndexError):
        return "unknown"


def machine_facts(**versions: Sequence[str]) -> dict[str, Any]:
    """What a benchmark's or a soak's results record of the machine: CPU model and count,
    kernel, Python, Apache's version, and the first line of each command in *versions*
    (``wrk=["wrk", "-v"]``)."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    found: dict[str, Any] = {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "apache": _first_line([APACHE_BIN, "-v"]),
    }
    found.update((name, _first_line(command)) for name, command in versions.items())
    return found


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (bind to port 0).

    There is a small race until Apache binds it; :meth:`LocalApache.start` retries with a
    fresh port when the port was chosen automatically and Apache reports it in use.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_user() -> tuple[str, str]:
    """The (user, group) Apache's children run as.

    Apache only switches user when started as root (to ``User``/``Group``, here
    ``www-data``); otherwise the directives are ignored and the children keep the
    current user and primary group.
    """
    if os.geteuid() == 0:
        return ("www-data", "www-data")
    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    return (user, group)


def _run_ids() -> tuple[int, int]:
    user, group = run_user()
    return pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid


def _add_mode(path: Path, bits: int) -> None:
    """OR ``bits`` into the mode of ``path`` (no-op when already set)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & bits != bits:
        os.chmod(path, mode | bits)


def _make_parents_traversable(path: Path) -> None:
    """Give every ancestor of ``path`` o+x so another user can reach it.

    pytest's ``tmp_path`` lives under ``/tmp/pytest-of-<user>``, which is 0700. Ancestors
    we do not own (e.g. ``/``) are left alone; they are normally traversable anyway.
    """
    for parent in path.resolve().parents:
        with contextlib.suppress(PermissionError):
            _add_mode(parent, stat.S_IXOTH)


def prepare_readable(path: str | os.PathLike[str]) -> None:
    """Make ``path`` (a file or a directory tree) readable by Apache's run user.

    Directories get o+rx, files o+r, and every parent directory o+x. Needed when Apache
    runs as root and its children drop to www-data; harmless otherwise.
    """
    root = Path(path)
    _make_parents_traversable(root)
    if root.is_dir():
        _add_mode(root, stat.S_IROTH | stat.S_IXOTH)
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames:
                _add_mode(Path(dirpath, name), stat.S_IROTH | stat.S_IXOTH)
            for name in filenames:
                file = Path(dirpath, name)
                if not file.is_symlink():
                    _add_mode(file, stat.S_IROTH)
    else:
        _add_mode(root, stat.S_IROTH)


def prepare_writable(path: str | os.PathLike[str]) -> None:
    """Create directory ``path`` if needed and make it writable by Apache's run user.

    As root the directory (and anything already in it) is chowned to www-data: session
    files and dbm files are then owned by the user that writes them. As another user the
    directory is simply made u+rwx, since the children run as that user.
    """
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    _make_parents_traversable(directory)
    if os.geteuid() == 0:
        uid, gid = _run_ids()
        os.chown(directory, uid, gid)
        for dirpath, dirnames, filenames in os.walk(directory):
            for name in dirnames + filenames:
                os.chown(Path(dirpath, name), uid, gid, follow_symlinks=False)
    _add_mode(directory, stat.S_IRWXU)


def prepare_site(
    readable: Sequence[str | os.PathLike[str]], state: str | os.PathLike[str], secret: str
) -> Path:
    """Write *secret* to ``<state>/secrets`` and ready the files for Apache's run user:
    each of *readable* readable (:func:`prepare_readable`), *state* writable
    (:func:`prepare_writable`), the secrets file then mode 0640. Returns its path."""
    secrets = Path(state) / "secrets"
    secrets.write_text(secret + "\n")
    for path in readable:
        prepare_readable(path)
    prepare_writable(state)
    secrets.chmod(0o640)
    return secrets


def make_workdir(prefix: str = "imageguard-apache-") -> Path:
    """Create a fresh work directory under /tmp, mode 0755, reachable by the run user.

    Prefer this over pytest's ``tmp_path`` for anything Apache's children must read:
    ``/tmp`` is world-traversable, ``/tmp/pytest-of-root`` is not.
    """
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(directory, 0o755)
    return directory


def default_python_path() -> list[str]:
    """Directories to put in front of the embedded interpreter's ``sys.path``: the same
    as the generated configuration's (:func:`imageguard.apache.apacheconf.python_path`)."""
    return python_path()


def _check_conf_string(value: str, what: str) -> str:
    """Reject values that cannot be put between double quotes in httpd.conf."""
    if any(ch in value for ch in ('"', "\\", "\n", "\r")):
        raise ValueError(f"{what} must not contain quotes, backslashes or newlines: {value!r}")
    return value


def _tail(path: Path, lines: int = _TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- config


@dataclass
class ApacheConfig:
    """Everything needed to write one self-contained ``httpd.conf``.

    ``body`` is the caller's fragment (DocumentRoot, ``<Directory>`` blocks, handlers,
    ``PythonOption`` lines, ``Alias``...). The generated prologue denies everything under
    ``/`` and disables ``.htaccess`` there, so the body must grant access
    (``Require all granted``) and set ``AllowOverride`` for the directories it serves.

    ``port=0`` picks a free port now (and lets :meth:`LocalApache.start` retry with
    another one if it was taken in the meantime). ``python_path=None`` means
    :func:`default_python_path`.
    """

    workdir: Path
    body: str = ""
    port: int = 0
    mpm: str = "event"
    python_path: list[str] | None = None
    #: Apache ``LogLevel`` value: "warn" (default), "info", "debug", ... Note that
    #: mod_python logs without a module tag ("[:notice]"), so a per-module level such as
    #: "warn python:debug" is accepted but has no effect, and that Apache writes
    #: notice-level messages (e.g. mod_python's "(Re)importing module") at any LogLevel.
    log_level: str = "warn"
    #: Extra module names (as in ``mod_<name>.so``) to load, e.g. ("authz_host",).
    extra_modules: Sequence[str] = ()
    #: Server-wide ``PythonOption`` pairs (seen by ``req.get_options()`` everywhere).
    python_options: dict[str, str] = field(default_factory=dict)
    #: Event MPM sizing: processes at start, threads per process. MaxRequestWorkers is
    #: ``max_processes * threads_per_child``.
    threads_per_child: int = 25
    #: Upper bound on child processes (event) / on simultaneous requests (prefork).
    max_processes: int = 4
    start_servers: int = 2
    prefork_max_request_workers: int = 20
    #: ``PythonDebug On`` sends Python tracebacks to the client (useful in tests).
    python_debug: bool = False
    #: Load mod_python (and write its PythonPath/PythonOption lines). Off for a server
    #: that must not embed it: plain static serving, or mod_wsgi, which embeds Python too.
    python: bool = True
    #: CPUs the server may run on (``taskset -c`` syntax, e.g. "0" or "0-1"); None: any.
    cpus: str | None = None
    auto_port: bool = field(init=False, default=False, repr=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        if self.mpm not in MPMS:
            raise ValueError(f"mpm must be one of {MPMS}, not {self.mpm!r}")
        if not self.port:
            self.port = free_port()
            self.auto_port = True
        if self.python_path is None:
            self.python_path = default_python_path()
        self.python_path = [str(Path(p)) for p in self.python_path]
        for entry in self.python_path:
            _check_conf_string(entry, "python_path entries")
        _check_conf_string(str(self.workdir), "workdir")
        if any(ch.isspace() for ch in str(self.workdir)):
            raise ValueError(f"workdir must not contain whitespace: {self.workdir}")

    # Paths inside the work directory -------------------------------------------------
    @property
    def conf_path(self) -> Path:
        return self.workdir / "httpd.conf"

    @property
    def run_dir(self) -> Path:
        return self.workdir / "run"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "httpd.pid"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def error_log(self) -> Path:
        return self.log_dir / "error.log"

    @property
    def access_log(self) -> Path:
        return self.log_dir / "access.log"

    @property
    def lock_dir(self) -> Path:
        return self.workdir / "lock"

    def modules(self) -> list[str]:
        names = [f"mpm_{self.mpm}", *BASE_MODULES]
        if not self.python:
            names.remove("python")
        for name in self.extra_modules:
            if name not in names:
                names.append(name)
        return names

    def python_path_directive(self) -> str:
        """``PythonPath "['a', 'b'] + sys.path"``: eval()ed once per interpreter."""
        return python_path_line(self.python_path or [])

    def _mpm_block(self) -> str:
        if self.mpm == "event":
            workers = self.max_processes * self.threads_per_child
            return "\n".join(
                [
                    "<IfModule mpm_event_module>",
                    f"    ServerLimit             {self.max_processes}",
                    f"    StartServers            {self.start_servers}",
                    f"    ThreadLimit             {self.threads_per_child}",
                    f"    ThreadsPerChild         {self.threads_per_child}",
                    f"    MinSpareThreads         {self.threads_per_child}",
                    f"    MaxSpareThreads         {workers}",
                    f"    MaxRequestWorkers       {workers}",
                    "    MaxConnectionsPerChild  0",
                    "</IfModule>",
                ]
            )
        workers = self.prefork_max_request_workers
        return "\n".join(
            [
                "<IfModule mpm_prefork_module>",
                f"    ServerLimit             {workers}",
                f"    StartServers            {self.start_servers}",
                f"    MinSpareServers         {min(self.start_servers, workers)}",
                f"    MaxSpareServers         {min(self.start_servers + 2, workers)}",
                f"    MaxRequestWorkers       {workers}",
                "    MaxConnectionsPerChild  0",
                "</IfModule>",
            ]
        )

    def render(self) -> str:
        """The complete httpd.conf text."""
        lines: list[str] = [
            "# Generated by imageguard_devtools.localserver; rewritten on start, do not edit.",
            f'ServerRoot "{self.workdir}"',
            f'DefaultRuntimeDir "{self.run_dir}"',
            f'PidFile "{self.pid_file}"',
            # Apache's own file-based mutexes (accept, logs, ...) live in the work dir,
            # never in /var/lock/apache2 of the system instance.
            f"Mutex file:{self.lock_dir} default",
            "",
        ]
        # Debian compiles some modules in (unixd, log_config, ...): "LoadModule" of a
        # built-in module is a syntax error, hence the IfModule guard on each line.
        for name in self.modules():
            lines.append(
                f"<IfModule !{name}_module>\n"
                f'    LoadModule {name}_module "{MODULES_DIR}/mod_{name}.so"\n'
                "</IfModule>"
            )
        lines += ["", f"Listen 127.0.0.1:{self.port}", "ServerName 127.0.0.1", ""]
        if os.geteuid() == 0:
            user, group = run_user()
            lines += [f"User {user}", f"Group {group}", ""]
        lines += [
            self._mpm_block(),
            "",
            "Timeout 30",
            "KeepAlive On",
            "MaxKeepAliveRequests 100",
            "KeepAliveTimeout 5",
            "HostnameLookups Off",
            "ServerTokens Prod",
            "ServerSignature Off",
            "TraceEnable Off",
            "",
            f'ErrorLog "{self.error_log}"',
            f"LogLevel {self.log_level}",
            # combined (which already holds %u, the authenticated user) + %D microseconds.
            'LogFormat "%h %l %u %t \\"%r\\" %>s %b \\"%{Referer}i\\" \\"%{User-Agent}i\\" %D"'
            " imageguard",
            f'CustomLog "{self.access_log}" imageguard',
            "",
            'TypesConfig "/etc/mime.types"',
            "DirectoryIndex index.html",
            "AccessFileName .htaccess",
            "",
            "<Directory />",
            "    Options FollowSymLinks",  # as in Debian's apache2.conf
            "    AllowOverride None",
            "    Require all denied",
            "</Directory>",
            '<Files ".ht*">',
            "    Require all denied",
            "</Files>",
            "",
        ]
        if self.python:
            lines += self._python_lines()
        lines += ["", "# ---- caller's configuration", self.body.strip(), ""]
        return "\n".join(lines)

    def _python_lines(self) -> list[str]:
        lines = [
            # mod_python's session mutexes: with this APR (pthread serialization) they
            # need no files, but keep any lock files out of /tmp if a build uses them.
            f'PythonOption mod_python.mutex_directory "{self.lock_dir}"',
            self.python_path_directive(),
        ]
        if self.python_debug:
            lines.append("PythonDebug On")
        for key, value in self.python_options.items():
            lines.append(
                f"PythonOption {_check_conf_string(key, 'option')} "
                f'"{_check_conf_string(value, "option value")}"'
            )
        return lines


# --------------------------------------------------------------------------- server


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (the state first, field 3
    of proc(5)), or None when the process is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # "pid (comm) S ..." - comm may hold spaces/parens, so split after the last ")".
    return data.rsplit(")", 1)[1].split()


def _proc_state(pid: int) -> str | None:
    """Single-letter process state from /proc, or None when the process is gone."""
    fields = _proc_stat(pid)
    return None if fields is None else fields[0]


def _alive(pid: int) -> bool:
    state = _proc_state(pid)
    return state is not None and state not in ("Z", "X")


class LocalApache:
    """One Apache instance described by an :class:`ApacheConfig`.

    ``start()`` daemonizes Apache (``-k start``) and returns when it answers HTTP;
    ``stop()`` terminates it and waits until none of its processes is left, so a test
    can start many servers in a row. Usable as a context manager.
    """

    def __init__(self, config: ApacheConfig) -> None:
        self.config = config

    # Convenience accessors -----------------------------------------------------------
    @property
    def port(self) -> int:
        return self.config.port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    def url(self, path: str = "/") -> str:
        """Absolute URL for ``path`` on this server."""
        if not path.startswith("/"):
            path = "/" + path
        return self.base_url + path

    def error_log_text(self) -> str:
        """The whole error log ("" before the first start)."""
        try:
            return self.config.error_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def access_log_lines(self) -> list[str]:
        """Access log lines (combined format + %D), oldest first."""
        try:
            return self.config.access_log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def wait_for_access_log(self, needle: str, timeout: float = 5) -> list[str]:
        """The access log lines holding *needle*, once there is one (or after *timeout*).

        Apache writes the access log in the log phase, after the response has gone, so a
        client that just got its answer may look before the line is there.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.access_log_lines() if needle in line]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    # Setup ---------------------------------------------------------------------------
    def write_config(self) -> Path:
        """Create the work directory layout and write httpd.conf; return its path."""
        cfg = self.config
        for directory in (cfg.workdir, cfg.run_dir, cfg.log_dir, cfg.lock_dir):
            directory.mkdir(parents=True, exist_ok=True)
        os.chmod(cfg.workdir, 0o755)
        # The parent (root) opens the logs and the pid file; the children (www-data) need
        # the lock directory for file-based mutexes reopened in child_init.
        prepare_writable(cfg.lock_dir)
        cfg.conf_path.write_text(cfg.render())
        return cfg.conf_path

    def _apache(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        pinned = ["taskset", "-c", self.config.cpus] if self.config.cpus else []
        return subprocess.run(
            [*pinned, APACHE_BIN, "-f", str(self.config.conf_path), *args],
            env=dict(CLEAN_ENV),
            cwd=str(self.config.workdir),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def config_test(self) -> str:
        """Run ``apache2 -t``; raise :class:`ApacheError` with its output on failure."""
        result = self._apache("-t")
        output = (result.stdout + result.stderr).strip()
        if result.returncode != 0:
            raise ApacheError(
                f"apache2 -t failed for {self.config.conf_path} (exit {result.returncode}):\n"
                f"{output}"
            )
        return output

    def check_python_path_readable(self) -> None:
        """Fail early when the run user cannot read a ``python_path`` directory.

        Otherwise the symptom is an ImportError in the error log at the first request.
        Only meaningful when root (children drop to www-data).
        """
        if os.geteuid() != 0 or not self.config.python or not self.config.python_path:
            return
        user, group = run_user()
        script = 'for d; do test -r "$d" -a -x "$d" || echo "$d"; done'
        result = subprocess.run(
            ["/bin/sh", "-c", script, "sh", *self.config.python_path],
            env=dict(CLEAN_ENV),
            user=user,
            group=group,
            extra_groups=[],
            capture_output=True,
            text=True,
            check=False,
        )
        bad = result.stdout.split()
        if bad:
            raise ApacheError(
                f"{user} cannot read (or there is no) python_path directory {bad}; "
                "use prepare_readable() or put them under a world-readable directory"
            )

    # Lifecycle -----------------------------------------------------------------------
    def master_pid(self) -> int | None:
        """Pid of the running master process (from the pid file), or None."""
        try:
            pid = int(self.config.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def server_pids(self) -> list[int]:
        """Pids of all live processes (master and children) of this server.

        Apache's children keep the master's command line, which names this server's
        unique conf path, so scanning /proc finds them even after the master is gone.
        """
        needle = str(self.config.conf_path).encode()
        pids: list[int] = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            parts = cmdline.split(b"\0")
            if needle in parts and parts[0].endswith(b"apache2") and _alive(int(entry.name)):
                pids.append(int(entry.name))
        return sorted(pids)

    def is_running(self) -> bool:
        return bool(self.server_pids())

    def cpu_seconds(self) -> float:
        """The CPU time (user and system) the live processes of this server have used."""
        ticks = 0
        for pid in self.server_pids():
            fields = _proc_stat(pid)
            if fields is not None:  # else gone meanwhile
                ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        return ticks / os.sysconf("SC_CLK_TCK")

    def rss_kb(self) -> dict[int, int]:
        """The resident memory (VmRSS, kB) of each live process of this server, by pid."""
        sizes = {}
        for pid in self.server_pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:  # gone meanwhile
                continue
            found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
            if found:
                sizes[pid] = int(found.group(1))
        return sizes

    def start(self, timeout: float = 20) -> LocalApache:
        """Write the config, test it, start Apache daemonized and wait until it answers.

        Raises :class:`ApacheError` with apache2's output when the config test or the
        start fails, and with the tail of error.log when it does not answer in time.
        """
        if self.is_running():
            raise ApacheError(f"a server for {self.config.conf_path} is already running")
        attempts = 3 if self.config.auto_port else 1
        for attempt in range(attempts):
            self.write_config()
            self.check_python_path_readable()
            self.config_test()
            result = self._apache("-k", "start")
            output = (result.stdout + result.stderr).strip()
            if result.returncode == 0:
                break
            self._kill_leftovers()
            if "Address already in use" in output and attempt + 1 < attempts:
                self.config.port = free_port()
                continue
            raise ApacheError(
                f"apache2 -k start failed (exit {result.returncode}):\n{output}\n"
                f"--- {self.config.error_log} (tail):\n{_tail(self.config.error_log)}"
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Poll until a plain ``GET /`` gets any HTTP response (status does not matter)."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.master_pid() is None and not self.is_running():
                # pid file not written yet right after -k start, or Apache died.
                time.sleep(0.05)
                if not self.is_running():
                    last_error = ApacheError("no apache2 process is running")
                    continue
            conn = http.client.HTTPConnection("127.0.0.1", self.config.port, timeout=2)
            try:
                conn.request("GET", "/", headers={"User-Agent": "imageguard-localserver-probe"})
                conn.getresponse().read()
                return
            except (OSError, http.client.HTTPException) as exc:
                last_error = exc
                time.sleep(0.05)
            finally:
                conn.close()
        raise ApacheError(
            f"Apache on port {self.config.port} did not answer within {timeout}s "
            f"(last error: {last_error!r})\n"
            f"--- {self.config.error_log} (tail):\n{_tail(self.config.error_log)}"
        )

    def stop(self, timeout: float = 15) -> None:
        """Stop the server (SIGTERM to the master) and wait until all its processes exit.

        ``graceful-stop`` is not used: it waits for open keep-alive connections, with no
        limit by default. Anything still alive after ``timeout`` is SIGKILLed. A server
        that is not running is left alone.
        """
        pid = self.master_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if not self._wait_gone(timeout):
            self._kill_leftovers()
            if not self._wait_gone(5):
                raise ApacheError(
                    f"apache2 processes {self.server_pids()} did not exit ({self.config.conf_path})"
                )
        with contextlib.suppress(FileNotFoundError):
            self.config.pid_file.unlink()

    def graceful(self, timeout: float = 20) -> None:
        """Restart gracefully: ``apache2 -f CONF -k graceful`` with this server's own
        configuration file (as it is on disk: not rewritten).

        The master re-reads the configuration and replaces its children, each once it
        has finished the request it is serving; the listening socket stays open, so no
        connection is refused meanwhile. Returns when the server answers again; raises
        :class:`ApacheError` when no server is running or Apache refuses the restart
        (a configuration that no longer passes its test).
        """
        if self.master_pid() is None:
            raise ApacheError(f"no server for {self.config.conf_path} is running")
        result = self._apache("-k", "graceful")
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            raise ApacheError(
                f"apache2 -k graceful failed (exit {result.returncode}):\n{output}\n"
                f"--- {self.config.error_log} (tail):\n{_tail(self.config.error_log)}"
            )
        self._wait_ready(timeout)

    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.server_pids():
                return True
            time.sleep(0.05)
        return not self.server_pids()

    def _kill_leftovers(self) -> None:
        for pid in self.server_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def run_foreground(self, replace_process: bool = False) -> int:
        """Run Apache in the foreground (``-DFOREGROUND``) until Ctrl-C; for ``make demo``.

        With ``replace_process=True`` the Python process is replaced (``os.execve``) by
        apache2 and this never returns. Otherwise apache2 runs as a child: Ctrl-C (which
        the terminal delivers to both) stops it, this waits for it to exit and returns its
        exit status, so the caller can clean up afterwards.
        """
        self.write_config()
        self.check_python_path_readable()
        self.config_test()
        argv = [APACHE_BIN, "-f", str(self.config.conf_path), "-DFOREGROUND"]
        print(f"Serving on {self.base_url}/  (Ctrl-C stops; error log: {self.config.error_log})")
        if replace_process:
            os.chdir(self.config.workdir)
            os.execve(APACHE_BIN, argv, dict(CLEAN_ENV))
        proc = subprocess.Popen(argv, env=dict(CLEAN_ENV), cwd=str(self.config.workdir))
        try:
            return proc.wait()
        except KeyboardInterrupt:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                return proc.wait()
        finally:
            self._wait_gone(5)

    # Context manager -----------------------------------------------------------------
    def __enter__(self) -> LocalApache:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"LocalApache(mpm={self.config.mpm!r}, url={self.base_url!r}, "
            f"workdir={str(self.config.workdir)!r})"
        )
