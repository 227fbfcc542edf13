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
test fails, the file before (its bytes, mode and owner), and whether it was enabled,
are put back as they were.

It runs as root in a directory only root may write, and still trusts no name there:
a link or anything but a regular file at ``imageguard.conf`` is refused, never followed,
as is a ``conf-enabled/imageguard.conf`` that is not the link to it; files are written
under a fresh name of ``mkstemp``'s and renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
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
    """Apache's configuration directory as Debian's tools find it, made absolute (the
    tools are handed the same absolute name)."""
    given = environ.get("APACHE_CONFDIR") or DEFAULT_CONFDIR
    if any(ch.isspace() or not ch.isprintable() for ch in given):
        # apache2ctl passes it on unquoted (-d $APACHE_CONFDIR): it would be split.
        raise InstallError(
            f"APACHE_CONFDIR {given!r}: apache2ctl cannot take a directory whose name holds "
            "spaces or control characters"
        )
    return Path(os.path.abspath(given))


def _tool_env(environ: Mapping[str, str], confdir: Path) -> dict[str, str]:
    """The environment of Debian's tools: the sbin PATH, every ``APACHE_*`` setting, and
    *confdir* as ``APACHE_CONFDIR`` when one was given."""
    env = {"PATH": _SBIN, "LANG": "C.UTF-8"}
    env.update((name, value) for name, value in environ.items() if name.startswith("APACHE_"))
    if "APACHE_CONFDIR" in env:
        env["APACHE_CONFDIR"] = str(confdir)
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
            errors="replace",  # a file name in a message may be in any encoding
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


@dataclass(frozen=True)
class _Previous:
    """The file that was there before: its bytes, and its mode and owner (to put back)."""

    data: bytes
    status: os.stat_result

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def _previous(path: Path) -> _Previous | None:
    """The regular file at *path* (None for none); a link or anything else there is
    refused, never followed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if not os.path.islink(path):
            raise
        raise InstallError(
            f"{path} is a symbolic link: not followed, and not replaced (imageguard writes a "
            "file of its own there; remove the link first)"
        ) from exc
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode):  # a directory, a FIFO: nothing to read or keep
        os.close(fd)
        raise InstallError(f"{path} is not a regular file: not replaced")
    with os.fdopen(fd, "rb") as opened:
        return _Previous(opened.read(), status)


def _write(path: Path, data: bytes, like: os.stat_result | None = None) -> None:
    """Replace *path* with *data* at once (a reader sees the old file or the new one): a
    new file of a name no one can have made beforehand, renamed over it. Mode 0644 and
    this process's owner, or *like*'s mode and owner (a file put back as it was)."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fchmod(out.fileno(), 0o644 if like is None else stat.S_IMODE(like.st_mode))
            if like is not None and os.geteuid() == 0:
                os.fchown(out.fileno(), like.st_uid, like.st_gid)
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _links_to(link: Path, path: Path) -> bool:
    return os.path.realpath(link) == os.path.realpath(path)


def _tail(output: str, lines: int = 12) -> str:
    kept = [line for line in output.splitlines() if line.strip()][-lines:]
    return "\n".join(f"  {line}" for line in kept) or "  (no output)"


def _needs_backup(path: Path, previous: _Previous, force: bool) -> bool:
    """Whether *previous*, about to be replaced, is kept as ``.bak``: yes for a file
    imageguard did not write or one changed since, which only *force* replaces (else
    :class:`InstallError`); no for the file imageguard wrote, as it wrote it."""
    state = stamp_state(previous.text)
    if state == "intact":
        return False
    if not force:
        why = (
            "was changed since imageguard wrote it"
            if state == "edited"
            else "was not written by imageguard apache-conf --install"
        )
        raise InstallError(
            f"{path} {why}: not overwritten (compare it with `imageguard apache-conf`'s "
            "output; --force replaces it and keeps it as imageguard.conf.bak)"
        )
    return True


class _Undo:
    """What :func:`install` changed, to be put back when the test fails."""

    def __init__(
        self,
        path: Path,
        enabled: Path,
        previous: _Previous | None,
        run: Runner,
        env: dict[str, str],
    ) -> None:
        self.path = path
        self.enabled = enabled
        self.previous = previous
        self.run = run
        self.env = env
        self.wrote = False
        self.enabled_here = False

    def __call__(self) -> str:
        """Put the file back as it was (or remove it), and disable the configuration if
        it was enabled here; what was done, in words."""
        undone = []
        if self.enabled_here:
            status, output = self.run(["a2disconf", "-q", CONF_NAME], self.env)
            if status == 0:
                undone.append(f"disabled {CONF_NAME} again")
            else:
                undone.append(f"a2disconf failed: {' '.join(output.split())}")
            if os.path.islink(self.enabled) and _links_to(self.enabled, self.path):
                undone.append(self._step(f"removed {self.enabled}", self.enabled.unlink))
        if self.wrote and self.previous is None:
            undone.append(self._step(f"removed {self.path}", self.path.unlink))
        elif self.wrote and self.previous is not None:
            previous = self.previous
            undone.append(
                self._step(
                    f"restored the previous {self.path}",
                    lambda: _write(self.path, previous.data, previous.status),
                )
            )
        return "; ".join(undone)

    @staticmethod
    def _step(done: str, action: Callable[[], None]) -> str:
        try:
            action()
        except OSError as exc:
            return f"could not: {done} ({exc.strerror or exc})"
        return done


def install(
    block: str,
    *,
    force: bool = False,
    environ: Mapping[str, str] | None = None,
    run: Runner = run_tool,
) -> Installed:
    """Install *block* as ``conf-available/imageguard.conf``, enable it and test the whole
    configuration (module doc). Raises :class:`InstallError` when the file was changed
    by hand (without *force*), something other than a regular file or a2enconf's link
    holds a name it uses, a tool is missing or fails, or the test fails; whatever was
    changed is then put back first."""
    environ = os.environ if environ is None else environ
    confdir = confdir_of(environ)
    available = confdir / "conf-available"
    if not available.is_dir():
        raise InstallError(
            f"{available} is not a directory: not a Debian-style Apache configuration "
            "(set APACHE_CONFDIR, or install the block by hand: docs/deployment.md)"
        )
    env = _tool_env(environ, confdir)
    path = available / f"{CONF_NAME}.conf"
    enabled = confdir / "conf-enabled" / f"{CONF_NAME}.conf"
    was_enabled = os.path.lexists(enabled)
    if was_enabled and not _links_to(enabled, path):
        raise InstallError(
            f"{enabled} is not a link to {path}: Apache would go on reading it instead "
            "(remove it, or replace it with the link a2enconf makes)"
        )
    new_data = stamped(block).encode("utf-8")
    previous = _previous(path)
    changed = previous is None or previous.data != new_data
    backup_needed = previous is not None and changed and _needs_backup(path, previous, force)

    status, output = run(["apache2ctl", "configtest"], env)
    if status != 0:
        raise InstallError(
            f"apache2ctl configtest fails before anything is changed; fix that first "
            f"(nothing was written):\n{_tail(output)}"
        )

    backup: Path | None = None
    if backup_needed and previous is not None:
        backup = path.with_name(f"{path.name}.bak")
        _write(backup, previous.data, previous.status)
    undo = _Undo(path, enabled, previous, run, env)
    if changed:
        _write(path, new_data)
        undo.wrote = True
    if not was_enabled:
        status, output = run(["a2enconf", "-q", CONF_NAME], env)
        undo.enabled_here = status == 0 or os.path.lexists(enabled)
        if status != 0:
            raise InstallError(f"a2enconf {CONF_NAME} failed ({undo()}):\n{_tail(output)}")
        if not _links_to(enabled, path):
            raise InstallError(
                f"a2enconf {CONF_NAME} enabled another file than {path} ({undo()}): are "
                "APACHE_CONF_AVAILABLE or APACHE_CONF_ENABLED set?"
            )
    status, output = run(["apache2ctl", "configtest"], env)
    if status != 0:
        raise InstallError(
            f"apache2ctl configtest fails with the new {path}, so it was not kept "
            f"({undo()}):\n{_tail(output)}"
        )
    return Installed(path, changed, undo.enabled_here, backup, output)
