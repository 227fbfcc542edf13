"""``python -m imageguard_devtools.demo`` (``make demo``): build the demo site and serve it.

Apache runs in the foreground on 127.0.0.1 until Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from imageguard.errors import ImageGuardError

from ..localserver import MPMS, ApacheError
from .site import RULES, DemoError, DemoSite, build_demo

PROG = "python -m imageguard_devtools.demo"


def _default_port() -> int:
    text = os.environ.get("PORT", "").strip()
    return int(text) if text.isdigit() else 8080


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Build a sample gallery protected by imageguard (three demo users, an ACL "
            "store, a small mod_python login application) and serve it with a private "
            "Apache on 127.0.0.1 until Ctrl-C."
        ),
    )
    parser.add_argument(
        "--port",
        type=int,
        default=_default_port(),
        help="TCP port on 127.0.0.1 (default: $PORT, else 8080)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(".demo"),
        help="work directory, wiped and recreated on each run (default: ./.demo)",
    )
    parser.add_argument("--mpm", choices=MPMS, default="event", help="Apache MPM (default: event)")
    return parser


def port_in_use(port: int) -> bool:
    """True when something already listens on 127.0.0.1:*port* (bound as Apache binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _shown(path: Path) -> str:
    """*path* relative to the current directory when below it, for shorter commands."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _cli() -> str:
    local = Path(sys.executable).parent / "imageguard"
    return shlex.quote(_shown(local.absolute())) if local.exists() else "imageguard"


def banner(site: DemoSite) -> str:
    """What is printed before Apache starts: URL, users, paths, commands to try."""
    db = shlex.quote(_shown(site.db))
    cli = f"{_cli()} --db {db}"
    width = max(len(u.name) + len(u.password) for u in site.users) + 5
    lines = [
        "",
        f"imageguard demo: open {site.url}",
        "",
        "Demo users (user / password: what they may see):",
    ]
    for user in site.users:
        login = f"{user.name} / {user.password}"
        groups = []
        if user.store_groups:
            groups.append(f"group {', '.join(user.store_groups)} from the ACL store")
        if user.session_groups:
            groups.append(f"group {', '.join(user.session_groups)} from the session")
        extra = f"  [{'; '.join(groups)}]" if groups else ""
        lines.append(f"  {login:<{width}} {user.sees}{extra}")
    lines += [
        f"  {'(not logged in)':<{width}} public/ only",
        "  Thumbnails are 256 px, previews 1024 px with the viewer's name written across;",
        "  both are made once with Pillow, kept in state/cache/, and sent by Apache.",
        "",
        "Rules:",
        *(f"  {pattern:<22} {principal:<15} {level}" for pattern, principal, level in RULES),
        "",
        f"Work directory  {site.workdir}",
        f"ACL store       {site.db}",
        f"Error log       {site.error_log}",
        f"Access log      {site.access_log}",
        "",
        "Try while it runs (rules apply at once; reload the gallery):",
        f"  {cli} rules",
        f"  {cli} explain --user bob gallery/draft.jpg",
        f"  {cli} grant gallery/draft.jpg user:bob full",
        f"  {cli} group add staff bob      # bob may see staff/ (gallery/ stays thumbs:",
        "                                      #   his user: rule outranks group:staff)",
        f"  {cli} grant gallery/ user:bob preview",
        f"  curl -i {site.server.url('/images/staff/roadmap.png')}",
        "",
        "Ctrl-C stops the server.",
    ]
    return "\n".join(lines)


def _fail(message: str, status: int = 1) -> NoReturn:
    print(f"{PROG}: {message}", file=sys.stderr)
    sys.exit(status)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.port < 65536:
        _fail(f"--port must be between 1 and 65535, not {args.port}", 2)
    # SIGTERM/SIGHUP stop Apache the same way Ctrl-C does (no orphaned apache2).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        if port_in_use(args.port):
            _fail(
                f"port {args.port} on 127.0.0.1 is already in use; "
                f"try another one: PORT={args.port + 1} make demo (or --port)"
            )
        print(f"Building the demo in {args.workdir.absolute()} ...", flush=True)
        site = build_demo(args.workdir, args.port, args.mpm)
        print(banner(site), flush=True)
        status = site.server.run_foreground()
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130
    except (DemoError, ApacheError, ImageGuardError, OSError) as exc:
        _fail(str(exc))
    if status != 0:
        _fail(f"apache2 exited with status {status}; see {site.error_log}")
    print("\nApache stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
