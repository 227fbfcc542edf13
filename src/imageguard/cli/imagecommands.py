"""The commands that work on the image files themselves: ``verify`` and ``renditions``.

They read the site's settings the way Apache does: from the ``PythonOption`` lines of
its configuration (``--conf``, the block ``imageguard apache-conf`` printed), with
``--root`` and ``--cache-dir`` to override or to do without one. Renditions are made by
the same code the handlers run, so what ``renditions warm`` makes is exactly what a
request would have made and finds in the cache.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..apache.apacheconf import read_python_options
from ..apache.runtime import Runtime
from ..apache.settings import Settings
from ..errors import ConfigError, ContentError
from ..files.content import ContentChecker
from ..files.gate import Gate
from ..files.renditions import check_renders
from ..policy.levels import Level
from ..policy.principals import GUEST
from ..support.safetext import one_line
from .progress import ProgressBar

CONF_ENV = "IMAGEGUARD_CONF"
ROOT_ENV = "IMAGEGUARD_ROOT"
CACHE_ENV = "IMAGEGUARD_CACHE_DIR"


def add_site_options(parser: argparse.ArgumentParser, *, cache: bool = True) -> None:
    """The options naming the site whose images a command works on."""
    parser.add_argument(
        "--conf",
        default=os.environ.get(CONF_ENV),
        metavar="FILE",
        help=f"Apache config holding the site's PythonOption lines (default: ${CONF_ENV})",
    )
    parser.add_argument(
        "--root",
        default=os.environ.get(ROOT_ENV),
        metavar="DIR",
        help=f"the protected image directory (default: from --conf, or ${ROOT_ENV})",
    )
    if not cache:
        return
    parser.add_argument(
        "--cache-dir",
        default=os.environ.get(CACHE_ENV),
        metavar="DIR",
        help=f"the rendition cache (default: from --conf, or ${CACHE_ENV})",
    )


def site_settings(args: argparse.Namespace) -> Settings:
    """The settings of the site named by ``--conf``, ``--root`` and ``--cache-dir``."""
    options: dict[str, str] = {}
    if args.conf:
        try:
            text = Path(args.conf).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {args.conf}: {exc.strerror}") from None
        options = read_python_options(text, args.root or "")
    elif not args.root:
        raise ConfigError(f"name the site: --conf FILE or --root DIR (or ${CONF_ENV})")
    if args.root:
        options["imageguard.root"] = args.root
    if getattr(args, "cache_dir", None):
        options["imageguard.cache_dir"] = args.cache_dir
    return Settings.from_options(options)


def cache_settings(args: argparse.Namespace) -> Settings:
    """:func:`site_settings` for a command that works on the rendition cache, which must
    then be named (without one, ``warm`` would only find out at the first image)."""
    settings = site_settings(args)
    if not settings.cache_dir:
        raise ConfigError(
            f"no rendition cache: give --cache-dir DIR (or ${CACHE_ENV}), or a --conf "
            "whose block sets imageguard.cache_dir"
        )
    return settings


def image_files(gate: Gate, extensions: frozenset[str], paths: Sequence[str]) -> list[str]:
    """The image files below the root (or below/at *paths*) with an allowed extension.

    Hidden names are skipped, as the gate would refuse them; paths are relative to the
    root or absolute.
    """
    found: list[str] = []
    for given in paths or [gate.root]:
        path = given if os.path.isabs(given) else os.path.join(gate.root, given)
        if os.path.isdir(path):
            found.extend(_walk(path, extensions))
        else:
            found.append(os.path.normpath(path))
    return found


def _walk(top: str, extensions: frozenset[str]) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions:
                yield os.path.join(dirpath, name)


def cmd_verify(args: argparse.Namespace) -> int:
    settings = site_settings(args)
    gate = Gate.create(settings.root, settings.extensions)
    checker = ContentChecker.for_site(settings.extensions, settings.max_pixels)
    files = image_files(gate, settings.extensions, args.paths)
    bad = 0
    with ProgressBar(len(files), "verifying", sys.stderr) as bar:
        for path in files:
            verdict = gate.check("GET", path, "")
            name = one_line(verdict.relpath or path)
            try:
                if not verdict.allowed:
                    raise ContentError(verdict.reason)
                if verdict.version is None:  # an allowed verdict always carries one
                    raise ContentError("the gate allowed it without naming its version")
                info = checker.check(verdict.path, verdict.version)
                if args.deep:
                    check_renders(verdict.path, info, settings.max_pixels)
            except ContentError as exc:
                bad += 1
                bar.line(f"{name}: {one_line(str(exc))}")
            bar.advance(name)
    print(f"{len(files)} file(s) checked, {bad} refused" + ("" if args.deep else " (headers)"))
    return 1 if bad else 0


_LEVELS = {
    "thumb": (Level.THUMB,),
    "preview": (Level.PREVIEW,),
    "all": (Level.THUMB, Level.PREVIEW),
}


def _as_cache_owner(settings: Settings) -> None:
    """Run as root, become the cache directory's owner before touching it.

    The cache is writable by Apache's user; root walking or writing in it could be led
    along a symbolic link planted there. As its owner, nothing is done that the owner
    could not do, and what is made belongs to the owner.
    """
    if os.geteuid() != 0 or not settings.cache_dir:
        return
    owner = os.stat(settings.cache_dir)
    if owner.st_uid == 0:
        return
    os.setgroups([])
    os.setgid(owner.st_gid)
    os.setuid(owner.st_uid)


def cmd_warm(args: argparse.Namespace) -> int:
    settings = cache_settings(args)
    _as_cache_owner(settings)
    runtime = Runtime(settings)
    levels = _LEVELS[args.level]
    if Level.PREVIEW in levels and "{user}" in settings.watermark:
        print(
            "note: previews are not warmed: their watermark names the viewer "
            f"({settings.watermark!r}), so each is made at its viewer's first request",
            file=sys.stderr,
        )
        levels = tuple(level for level in levels if level is not Level.PREVIEW)
    host = args.host or socket.getfqdn()
    files = image_files(runtime.gate, settings.extensions, args.paths)
    made = cached = refused = 0
    with ProgressBar(len(files) * len(levels), "warming", sys.stderr) as bar:
        for path in files:
            verdict = runtime.admit("GET", path, "")
            name = one_line(verdict.relpath or path)
            for level in levels:
                try:
                    if not verdict.allowed:
                        raise ContentError(verdict.reason)
                    planned = runtime.plan_rendition(verdict, level, viewer=GUEST, host=host)
                    if os.path.exists(planned.path):
                        cached += 1
                    else:
                        runtime.make_rendition(planned)
                        made += 1
                except ContentError as exc:
                    refused += 1
                    bar.line(f"{name} ({level.label}): {one_line(str(exc))}")
                bar.advance(name)
    print(f"{made} rendition(s) made, {cached} already cached, {refused} refused")
    return 1 if refused else 0


def cmd_purge(args: argparse.Namespace) -> int:
    settings = cache_settings(args)
    _as_cache_owner(settings)
    runtime = Runtime(settings)
    summary = runtime.renditions.purge(everything=args.all, unused_days=args.unused_days)
    print(
        f"removed {summary.removed} file(s) ({summary.bytes_freed / 1e6:.1f} MB), "
        f"kept {summary.kept}"
    )
    return 0


def add_commands(command: Callable[[str, object, str], argparse.ArgumentParser]) -> None:
    """Register ``verify`` and ``renditions`` with the CLI's *command* factory."""
    p = command("verify", cmd_verify, "report image files whose bytes are not what their name says")
    add_site_options(p, cache=False)
    p.add_argument("--deep", action="store_true", help="decode every image fully (slower)")
    p.add_argument("paths", metavar="PATH", nargs="*", help="files or folders (default: all)")

    p = command("renditions", None, "make or clean the cache of thumb and preview renditions")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    warm = actions.add_parser(
        "warm", help="make renditions now", description="make renditions now, not at first view"
    )
    warm.set_defaults(func=cmd_warm)
    add_site_options(warm)
    warm.add_argument("--level", choices=sorted(_LEVELS), default="thumb", help="default: thumb")
    warm.add_argument(
        "--host",
        help="Apache's ServerName, for a watermark naming {host} (default: this machine's)",
    )
    warm.add_argument("paths", metavar="PATH", nargs="*", help="files or folders (default: all)")
    purge = actions.add_parser(
        "purge",
        help="remove renditions of changed or deleted originals",
        description="remove renditions whose original was changed or deleted",
    )
    purge.set_defaults(func=cmd_purge)
    add_site_options(purge)
    purge.add_argument(
        "--unused-days",
        type=float,
        default=0,
        metavar="N",
        help="also remove renditions not asked for in N days (old {date} previews, ...)",
    )
    purge.add_argument("--all", action="store_true", help="remove every rendition of the site")
