"""The ``imageguard`` command line: its parser, built by one small function per group of
commands, and :func:`main`, which runs the command it parses."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .. import __version__
from ..apache.apacheconf import SITE_DEFAULTS, SiteConfig
from ..apache.names import DB_ENV, SECRET_ENV
from ..apache.options import TABLE, flag_name
from ..errors import ImageGuardError
from . import commands as cmd
from .doctor import add_doctor_command
from .imagecommands import add_commands, add_site_options

DESCRIPTION = """\
Protect an Apache image directory with your application's own logins.

Rules say which principal may see which images at which level:
  imageguard grant 'gallery/**' authenticated thumb
  imageguard grant 'users/{user}/**' authenticated full
  imageguard grant gallery/secret.jpg group:staff deny
Principals: user:NAME, group:NAME, authenticated, anyone.
Levels, most to least: full, preview, thumb, deny.
The most specific pattern wins; see docs/acl.md for the whole order.
"""

EPILOG = f"""\
The ACL store is an SQLite file or a PostgreSQL database: --db PATH or
--db postgresql://USER@HOST/DBNAME (password in ~/.pgpass or PGPASSFILE),
or the {DB_ENV} environment variable.
Tickets and share links are signed with the secrets of --secret-file (or ${SECRET_ENV}).
Exit status: 0 done (explain: granted), 1 explain: denied, 2 error (nothing changed).
"""

#: Adds one command: its name, the function it runs (None: it has subcommands) and its
#: help; returns the command's parser, for its arguments.
Command = Callable[[str, object, str], argparse.ArgumentParser]


def add_option_flags(parser: argparse.ArgumentParser) -> None:
    """A flag for each option of :data:`imageguard.apache.options.TABLE`, its kind read from the
    default of the SiteConfig field it sets (``--no-X`` for an option on by default)."""
    for option in TABLE:
        if option.shared_flag:
            continue  # defined with the command line's other shared flags
        default = SITE_DEFAULTS[option.site]
        kwargs: dict[str, Any] = {"dest": option.site}
        help_text = option.flag_help or f"{option.meaning} (default: {option.shown_default()})"
        if isinstance(default, bool):
            kwargs["action"] = "store_false" if default else "store_true"
            if default:
                help_text = f"turn {option.short} off; on, it does this: {option.meaning}"
        else:
            kwargs["default"] = None
            kwargs["metavar"] = None if option.choices else option.metavar
            if isinstance(default, int):
                kwargs["type"] = int
            if option.choices:
                kwargs["choices"] = option.choices
            if default is dataclasses.MISSING:
                kwargs["required"] = True
                help_text = f"{option.meaning} (required)"
        parser.add_argument(flag_name(option), help=help_text.replace("%", "%%"), **kwargs)


def _secret_file_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--secret-file",
        default=os.environ.get(SECRET_ENV),
        metavar="FILE",
        help=f"secrets, newest first (default: ${SECRET_ENV})",
    )


def _rule_commands(command: Command) -> None:
    """init, grant, revoke, rules, group, explain: the rules and groups in the store."""
    p = command("init", cmd.cmd_init, "create the ACL store (an existing one is left as it is)")
    p.add_argument("--owner", metavar="USER", help="hand the store to USER (e.g. www-data)")

    p = command("grant", cmd.cmd_grant, "give PRINCIPAL a LEVEL on the images PATTERN matches")
    p.add_argument("pattern", metavar="PATTERN", help="e.g. gallery/cat.jpg, 'gallery/**'")
    p.add_argument("principal", metavar="PRINCIPAL", help="user:NAME, group:NAME, ...")
    p.add_argument("level", metavar="LEVEL", help="full, preview, thumb or deny")

    p = command("revoke", cmd.cmd_revoke, "remove PRINCIPAL's rule on PATTERN")
    p.add_argument("pattern", metavar="PATTERN")
    p.add_argument("principal", metavar="PRINCIPAL")

    command("rules", cmd.cmd_rules, "list every rule")

    p = command("group", cmd.cmd_group, "manage group memberships kept in the store")
    p.add_argument("action", choices=["add", "remove", "list"])
    p.add_argument("group", metavar="GROUP", nargs="?")
    p.add_argument("user", metavar="USER", nargs="?")

    p = command("explain", cmd.cmd_explain, "show which level a user gets for RELPATH, and why")
    p.add_argument("--user", metavar="NAME", help="the viewer (omit for an anonymous one)")
    p.add_argument(
        "--group", metavar="G", action="append", default=[], help="a group from the session"
    )
    p.add_argument(
        "--root",
        metavar="DIR",
        help="the protected directory: lets RELPATH be an absolute path below it",
    )
    p.add_argument(
        "relpath",
        metavar="RELPATH",
        help="image path relative to the root (or an absolute one, with --root)",
    )


def _exchange_commands(command: Command) -> None:
    """export, import: the whole store as text, and back."""
    p = command("export", cmd.cmd_export, "write every rule, membership and revocation as text")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")

    p = command("import", cmd.cmd_import, "read rules, memberships and revocations from an export")
    p.add_argument("file", metavar="FILE", help="an export file, or - for stdin")
    p.add_argument(
        "--replace",
        action="store_true",
        help="drop every other rule and membership first (revocations stay)",
    )

    p = command(
        "migrate",
        cmd.cmd_migrate,
        "copy a store to another database, then check both decide alike on every rule's paths",
    )
    p.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="STORE",
        help="the store to copy: sqlite:PATH, PATH or postgresql://...",
    )
    p.add_argument(
        "--to",
        dest="target",
        required=True,
        metavar="STORE",
        help="where to copy it (created when missing): postgresql://... or a path",
    )
    p.add_argument(
        "--replace",
        action="store_true",
        help="substitute the target's rules and memberships (default: it must be empty)",
    )


def _apache_conf_command(command: Command) -> None:
    """apache-conf: a flag per PythonOption, and the site's session and layout."""
    p = command("apache-conf", cmd.cmd_apache_conf, "print Apache config for this installation")
    add_option_flags(p)  # --root, --login-url, --cache-dir, ...: one per PythonOption
    _secret_file_option(p)  # imageguard.tkt_secret_file (and --db: imageguard.acl_db)
    p.add_argument("--url-path", default="/images", metavar="PATH", help="default: /images")
    p.add_argument("--session-type", default="FileSession", choices=["FileSession", "DbmSession"])
    p.add_argument(
        "--session-dir",
        default=SiteConfig.session_directory,
        metavar="DIR",
        help="FileSession database_directory, as the application sets it",
    )
    p.add_argument("--dbm-file", metavar="FILE", help="DbmSession database_filename")
    p.add_argument("--htaccess", action="store_true", help="print the .htaccess gate instead")
    p.add_argument(
        "--install",
        action="store_true",
        help="write the block to $APACHE_CONFDIR/conf-available/imageguard.conf (default "
        "/etc/apache2), enable it with a2enconf and run apache2ctl configtest; a failed "
        "test puts everything back",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="with --install: replace an imageguard.conf changed by hand (kept as .bak)",
    )
    p.add_argument(
        "--three-phases",
        action="store_true",
        help="one handler per phase (access, authen, authz) instead of the one-phase "
        "gatekeeper: the same answers, a little slower, Apache's phases shown as they are",
    )


def _ticket_commands(command: Command) -> None:
    """ticket, revoke-user, revoke-ticket: auth_tkt tickets, issued and refused."""
    p = command("ticket", cmd.cmd_ticket, "print an auth_tkt cookie value for USER")
    p.add_argument("user", metavar="USER")
    p.add_argument("--group", metavar="G", action="append", default=[], help="a token/group")
    p.add_argument("--data", default="", metavar="TEXT", help="user data carried in the ticket")
    p.add_argument("--digest", default="sha256", choices=["sha256", "sha512", "md5"])
    p.add_argument("--ip", default="0.0.0.0", metavar="ADDR", help="bind to this address")
    _secret_file_option(p)

    p = command("revoke-user", cmd.cmd_revoke_user, "refuse every ticket of USER issued until now")
    p.add_argument("user", metavar="USER")

    p = command("revoke-ticket", cmd.cmd_revoke_ticket, "refuse one ticket (its cookie value)")
    p.add_argument("ticket", metavar="TICKET")
    p.add_argument("--digest", default="sha256", choices=["sha256", "sha512", "md5"])


def _share_commands(command: Command) -> None:
    """share, share-revoke, revocations: signed links to one image, and what is refused."""
    p = command("share", cmd.cmd_share, "print a signed, expiring link to one image")
    p.add_argument("relpath", metavar="RELPATH", help="image path relative to the root")
    p.add_argument("--level", required=True, choices=["thumb", "preview", "full"])
    p.add_argument("--expires", required=True, metavar="DURATION", help="e.g. 30m, 2h, 7d")
    p.add_argument("--user", metavar="NAME", help="only this logged-in user may use it")
    p.add_argument("--url-path", default="/images", metavar="PATH", help="default: /images")
    p.add_argument("--base-url", metavar="URL", help="e.g. https://example.org")
    add_site_options(p, cache=False)
    p.add_argument(
        "--realm",
        metavar="NAME",
        help="the imageguard.share_realm of the site (default: its root's real path)",
    )
    _secret_file_option(p)

    p = command("share-revoke", cmd.cmd_share_revoke, "refuse one share link (URL or signature)")
    p.add_argument("link", metavar="URL")

    command("revocations", cmd.cmd_revocations, "list revoked users, tickets and share links")


def _options_command(command: Command) -> None:
    command("options", cmd.cmd_options, "list the PythonOption settings imageguard reads")


#: The groups of commands, in the order ``imageguard --help`` lists them.
COMMAND_GROUPS: tuple[Callable[[Command], None], ...] = (
    _rule_commands,
    _exchange_commands,
    _apache_conf_command,
    add_doctor_command,  # doctor
    _ticket_commands,
    _share_commands,
    add_commands,  # verify, renditions
    _options_command,
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of the whole command line; each command's ``func`` is what it runs."""
    parser = argparse.ArgumentParser(
        prog="imageguard",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"imageguard {__version__}")
    parser.add_argument(
        "--db",
        default=os.environ.get(DB_ENV),
        metavar="STORE",
        help=f"the ACL store: a path or a postgresql:// location (default: ${DB_ENV})",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, func: object, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    for add_group in COMMAND_GROUPS:
        add_group(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``imageguard`` command with *argv* (default: ``sys.argv``); its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "group" and args.action != "list" and not (args.group and args.user):
        parser.error(f"group {args.action} needs GROUP and USER")
    try:
        return int(args.func(args))
    except ImageGuardError as exc:
        print(f"imageguard: error: {exc}", file=sys.stderr)
        return 2
    except KeyError as exc:  # pwd.getpwnam
        print(f"imageguard: error: no such user {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"imageguard: error: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 2
