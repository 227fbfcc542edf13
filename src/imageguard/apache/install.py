"""``imageguard apache-conf --install``: the generated block installed the Debian way.

The block is written to ``conf-available/imageguard.conf`` of Apache's configuration
directory (``$APACHE_CONFDIR``, else ``/etc/apache2``), enabled with ``a2enconf``, and
checked with ``apache2ctl configtest``; Debian's three tools honour ``APACHE_CONFDIR``
too, so a copy of the directory can stand in for the real one. A file there is included
at server level (``IncludeOptional conf-enabled/*.conf`` in Debian's ``apache2.conf``),
outside every ``<VirtualHost>``, which suits the block: its ``PythonImport``, ``Alias``
and ``<Directory>`` are all server-level directives, and every virtual host inherits
the ``Alias`` and the ``<Directory>`` section.

What was written is stamped: the file's first line holds the SHA-256 of the rest
(:func:`stamped`). A later ``--install`` overwrites the file only when that still holds,
so an administrator's edit (or a file imageguard did not write) is never lost without
``--force``, which keeps the old file beside it as ``imageguard.conf.bak``. When the
test fails, the file before, and whether it was enabled, are put back as they were.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ImageGuardError

__all__ = [
    "CONF_NAME",
    "DEFAULT_CONFDIR",
    "InstallError",
    "Installed",
    "confdir_of",
    "install",
    "run_tool",
    "stamp_state",
    "stamped",
]

#: The name ``a2enconf`` knows the configuration by.
CONF_NAME = "imageguard"
DEFAULT_CONFDIR = "/etc/apache2"
#: Where Debian's tools live (they are not on a normal user's PATH).
_SBIN = "/usr/sbin:/usr/bin:/sbin:/bin"
_STAMP = re.compile(
    r"# imageguard apache-conf --install, sha256 of the lines below: ([0-9a-f]{64})"
)
_STAMP_LINE = "# imageguard apache-conf --install, sha256 of the lines below: {digest}\n"
_NOTICE = "# (edit this file and the next --install refuses to overwrite it without --force)\n"

#: Runs one command: (argv, environment) -> its exit status and output.
Runner = Callable[[Sequence[str], dict[str, str]], tuple[int, str]]


class InstallError(ImageGuardError):
    """The block was not installed; the message says why and what was put back."""


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def stamped(block: str) -> str:
    """*block* as ``--install`` writes it: a first line holding the SHA-256 of the rest."""
    rest = _NOTICE + (block if block.endswith("\n") else block + "\n")
    return _STAMP_LINE.format(digest=_digest(rest)) + rest


def stamp_state(text: str) -> str:
    """What the file *text* says of itself: ``"intact"`` (written by ``--install`` and not
    changed since), ``"edited"`` (written by it, changed since) or ``"foreign"`` (not
    written by it)."""
    first, _, rest = text.partition("\n")
    found = _STAMP.fullmatch(first)
    if found is None:
        return "foreign"
    return "intact" if _digest(rest) == found.group(1) else "edited"


def confdir_of(environ: Mapping[str, str]) -> Path:
    """Apache's configuration directory as Debian's tools find it."""
    return Path(environ.get("APACHE_CONFDIR") or DEFAULT_CONFDIR)


def _tool_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of Debian's tools: the sbin PATH, and every ``APACHE_*`` setting."""
    env = {"PATH": _SBIN, "LANG": "C.UTF-8"}
    env.update((name, value) for name, value in environ.items() if name.startswith("APACHE_"))
    return env


def run_tool(argv: Sequence[str], env: dict[str, str]) -> tuple[int, str]:
    """Run one of Debian's Apache tools; its status and output (a missing tool is 127)."""
    found = shutil.which(argv[0], path=env["PATH"])
    if found is None:
        return 127, f"{argv[0]}: not found in {env['PATH']}"
    try:
        done = subprocess.run(
            [found, *argv[1:]],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return 126, f"{argv[0]}: {exc}"
    return done.returncode, (done.stdout + done.stderr).strip()


@dataclass(frozen=True)
class Installed:
    """What :func:`install` did: the file, whether it changed and was newly enabled, where
    a replaced file was kept, and configtest's words."""

    path: Path
    changed: bool
    enabled_now: bool
    backup: Path | None
    configtest: str


def _write(path: Path, text: str) -> None:
    """Replace *path* with *text* at once (a reader sees the old file or the new one)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _tail(output: str, lines: int = 12) -> str:
    kept = [line for line in output.splitlines() if line.strip()][-lines:]
    return "\n".join(f"  {line}" for line in kept) or "  (no output)"


def install(
    block: str,
    *,
    force: bool = False,
    environ: Mapping[str, str] | None = None,
    run: Runner = run_tool,
) -> Installed:
    """Install *block* as ``conf-available/imageguard.conf``, enable it and test the whole
    configuration (module doc). Raises :class:`InstallError` when the file was changed
    by hand (without *force*), a tool is missing or fails, or the test fails; whatever
    was changed is then put back first."""
    environ = os.environ if environ is None else environ
    confdir = confdir_of(environ)
    available = confdir / "conf-available"
    if not available.is_dir():
        raise InstallError(
            f"{available} is not a directory: not a Debian-style Apache configuration "
            "(set APACHE_CONFDIR, or install the block by hand: docs/deployment.md)"
        )
    env = _tool_env(environ)
    path = available / f"{CONF_NAME}.conf"
    enabled_link = confdir / "conf-enabled" / f"{CONF_NAME}.conf"
    new_text = stamped(block)

    status, output = run(["apache2ctl", "configtest"], env)
    if status != 0:
        raise InstallError(
            f"apache2ctl configtest fails before anything is changed; fix that first "
            f"(nothing was written):\n{_tail(output)}"
        )

    before = path.read_text(encoding="utf-8") if path.exists() else None
    backup: Path | None = None
    if before is not None and before != new_text:
        state = stamp_state(before)
        if state != "intact" and not force:
            why = (
                "was changed since imageguard wrote it"
                if state == "edited"
                else ("was not written by imageguard apache-conf --install")
            )
            raise InstallError(
                f"{path} {why}: not overwritten (compare it with `imageguard apache-conf`'s "
                "output; --force replaces it and keeps it as imageguard.conf.bak)"
            )
        if state != "intact":
            backup = path.with_name(f"{path.name}.bak")
            _write(backup, before)
    was_enabled = enabled_link.exists() or enabled_link.is_symlink()

    def put_back(enabled_now: bool) -> str:
        """Undo: the file as it was, and the configuration disabled if enabled here."""
        undone = []
        if enabled_now:
            status, output = run(["a2disconf", "-q", CONF_NAME], env)
            undone.append(
                f"disabled {CONF_NAME} again" if status == 0 else f"a2disconf failed: {output}"
            )
        if before is None:
            path.unlink(missing_ok=True)
            undone.append(f"removed {path}")
        elif before != new_text:
            _write(path, before)
            undone.append(f"restored the previous {path}")
        return "; ".join(undone)

    if before != new_text:
        _write(path, new_text)
    enabled_now = False
    if not was_enabled:
        status, output = run(["a2enconf", "-q", CONF_NAME], env)
        if status != 0:
            undone = put_back(False)
            raise InstallError(f"a2enconf {CONF_NAME} failed ({undone}):\n{_tail(output)}")
        enabled_now = True
    status, output = run(["apache2ctl", "configtest"], env)
    if status != 0:
        undone = put_back(enabled_now)
        raise InstallError(
            f"apache2ctl configtest fails with the new {path}, so it was not kept "
            f"({undone}):\n{_tail(output)}"
        )
    return Installed(path, before != new_text, enabled_now, backup, output)
