"""The ``imageguard`` command: manage who may see which image, and write Apache's config."""

from __future__ import annotations

import argparse
import dataclasses
import os
import pwd
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .apache.apacheconf import SiteConfig, directory_block, htaccess, read_python_options
from .apache.names import DB_ENV, SECRET_ENV
from .apache.options import TABLE, Option, flag_name, listing
from .apache.settings import Settings
from .errors import ImageGuardError
from .files.renditioncache import check_placement
from .identity import sharelinks
from .identity.secretfile import SecretFile
from .identity.tickets import issue_ticket
from .imagecommands import add_commands, add_site_options, site_settings
from .policy.acl import ranked
from .policy.levels import Level
from .policy.principals import Identity, check_name
from .policy.variants import VARIANT_PARAM
from .store import AclStore
from .support.durations import parse_duration

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
The ACL store is an SQLite file: --db PATH, or the {DB_ENV} environment variable.
Tickets and share links are signed with the secrets of --secret-file (or ${SECRET_ENV}).
Exit status: 0 done (explain: granted), 1 explain: denied, 2 error (nothing changed).
"""


class CliError(ImageGuardError):
    """A usage problem the CLI reports in one line."""


def _db_path(args: argparse.Namespace) -> str:
    if not args.db:
        raise CliError(f"no ACL store given: use --db PATH or set {DB_ENV}")
    return args.db


def _open(args: argparse.Namespace) -> AclStore:
    return AclStore(_db_path(args))


def cmd_init(args: argparse.Namespace) -> int:
    path = Path(_db_path(args))
    existed = path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with AclStore.create(path):
        pass
    if args.owner:
        entry = pwd.getpwnam(args.owner)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        os.chown(path.parent, entry.pw_uid, entry.pw_gid)
    print(f"{'ACL store already there' if existed else 'created ACL store'}: {path}")
    if not os.access(path.parent, os.W_OK):
        print(f"note: {path.parent} must be writable by Apache's user (SQLite's WAL files)")
    return 0


def cmd_grant(args: argparse.Namespace) -> int:
    with _open(args) as store:
        rule = store.grant(args.pattern, args.principal, args.level)
    print(f"granted: {rule}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    with _open(args) as store:
        store.revoke(args.pattern, args.principal)
    print(f"revoked: {args.pattern} {args.principal}")
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    with _open(args) as store:
        rules = store.rules()
    if not rules:
        print("no rules: every image is denied (imageguard grant PATTERN PRINCIPAL LEVEL)")
        return 0
    width_p = max(len(r.pattern.text) for r in rules)
    width_w = max(len(str(r.principal)) for r in rules)
    print(f"{'PATTERN':<{width_p}}  {'PRINCIPAL':<{width_w}}  LEVEL")
    for rule in rules:
        print(f"{rule.pattern.text:<{width_p}}  {rule.principal!s:<{width_w}}  {rule.level}")
    return 0


def cmd_group(args: argparse.Namespace) -> int:
    with _open(args) as store:
        if args.action == "add":
            store.add_member(args.group, args.user)
            print(f"{args.user} is now in group {args.group}")
        elif args.action == "remove":
            store.remove_member(args.group, args.user)
            print(f"{args.user} is no longer in group {args.group}")
        else:
            members = [m for m in store.memberships() if not args.group or m.group == args.group]
            for membership in members:
                print(f"{membership.group}  {membership.user}")
            if not members:
                print("no group memberships in the store")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    relpath = args.relpath.strip("/")
    if args.user is None and args.group:
        raise CliError("--group needs --user: an anonymous viewer has no groups")
    identity = Identity(
        check_name(args.user, "user") if args.user is not None else None,
        frozenset(check_name(g, "group") for g in args.group),
    )
    with _open(args) as store:
        if identity.user is not None:
            identity = identity.with_groups(store.groups_of(identity.user))
        candidates = store.candidates(relpath)
    matching = ranked(candidates, relpath, identity)
    print(f"{relpath} for {identity}:")
    if not matching:
        print("  deny: no rule matches (nothing is visible unless a rule grants it)")
        return 1
    deciding = matching[0]
    print(f"  {deciding.level.label}: decided by rule '{deciding}'")
    print(f"  ({deciding.pattern.specificity}, principal class {deciding.principal.kind.name})")
    if len(matching) > 1:
        print("  outranked rules, in order:")
        for rule in matching[1:]:
            print(f"    {rule}  ({rule.pattern.specificity})")
    return 0 if deciding.level > Level.DENY else 1


def cmd_export(args: argparse.Namespace) -> int:
    with _open(args) as store:
        text = store.export_text()
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        tmp = Path(args.output + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(args.output)
        print(f"exported to {args.output}", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
    with _open(args) as store:
        summary = store.import_text(text, replace=args.replace)
    verb = "replaced the store with" if summary.replaced else "imported"
    added = f", and added {summary.revocations} revocation(s)" if summary.revocations else ""
    print(f"{verb} {summary.rules} rule(s) and {summary.memberships} membership(s){added}")
    return 0


def cmd_apache_conf(args: argparse.Namespace) -> int:
    root = os.path.abspath(args.root)
    if args.htaccess:
        sys.stdout.write(htaccess(args.extensions or "", root))
        return 0
    values: dict[str, Any] = {}
    for option in TABLE:  # each option's flag sets its SiteConfig field
        value = getattr(args, _flag_dest(option))
        if value is None or value == "":
            continue
        values[option.site] = os.path.abspath(value) if option.path else value
    site = SiteConfig(
        **values,
        url_path=args.url_path,
        session_type=args.session_type,
        session_directory=args.session_dir,
        dbm_filename=args.dbm_file or "",
        mode="three-phase" if args.three_phases else "one-phase",
    )
    if site.placeholder and not site.cache_dir:
        raise CliError("--placeholder needs --cache-dir: the padlock picture is kept there")
    if site.session_source == "auth_tkt" and not site.tkt_secret_file:
        raise CliError("--session auth_tkt needs --secret-file (or $IMAGEGUARD_SECRET_FILE)")
    block = directory_block(site)
    # What Apache would refuse at the first request is refused now, before it is pasted.
    settings = Settings.from_options(read_python_options(block, root))
    if settings.cache_dir:
        check_placement(os.path.realpath(settings.cache_dir), os.path.realpath(root))
    sys.stdout.write(block)
    return 0


def _secrets(args: argparse.Namespace) -> tuple[bytes, ...]:
    if not args.secret_file:
        raise CliError(f"no secret file given: use --secret-file FILE or set {SECRET_ENV}")
    return SecretFile(args.secret_file).secrets()


def cmd_ticket(args: argparse.Namespace) -> int:
    secret = _secrets(args)[0]
    try:
        value = issue_ticket(
            args.user,
            args.group,
            secret,
            user_data=args.data,
            digest=args.digest,
            ip=args.ip,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(value)
    return 0


def cmd_revoke_user(args: argparse.Namespace) -> int:
    with _open(args) as store:
        until = store.revoke_user(args.user)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(until))
    print(f"tickets of {args.user} issued until {stamp} are refused from the next request on")
    return 0


def cmd_revoke_ticket(args: argparse.Namespace) -> int:
    with _open(args) as store:
        digest = store.revoke_ticket(args.ticket, args.digest)
    print(f"revoked ticket {digest[:16]}...")
    return 0


def _share_realm(args: argparse.Namespace) -> str:
    """The realm a link is signed for: --realm, or the site's (``--conf``/``--root``)."""
    if args.realm:
        return str(args.realm)
    if not (args.conf or args.root):
        raise CliError(
            "name the root the link is for: --root DIR or --conf FILE (or --realm NAME "
            "when the site sets imageguard.share_realm); a link works only there"
        )
    return site_settings(args).link_realm


def cmd_share(args: argparse.Namespace) -> int:
    relpath = args.relpath.strip("/")
    realm = _share_realm(args)
    try:
        expires = int(time.time()) + parse_duration(args.expires)
        params = sharelinks.sign(
            relpath, args.level, expires, _secrets(args)[0], args.user or "", realm=realm
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.level != "full":  # ask for the variant too: it works with downgrade off
        params[VARIANT_PARAM] = args.level
    url = sharelinks.link(args.url_path, relpath, params)
    print(args.base_url.rstrip("/") + url if args.base_url else url)
    return 0


def cmd_share_revoke(args: argparse.Namespace) -> int:
    with _open(args) as store:
        signature = store.revoke_link(args.link)
    print(f"revoked share link {signature[:16]}...")
    return 0


def cmd_revocations(args: argparse.Namespace) -> int:
    with _open(args) as store:
        found = store.revocations()
    for kind, what, moment in found:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(moment))
        shown = what if kind == "user" else what[:16] + "..."
        print(f"{kind:<6}  {stamp}  {shown}")
    if not found:
        print("no revocations")
    return 0


def cmd_options(args: argparse.Namespace) -> int:
    sys.stdout.write(listing())
    return 0


def _flag_dest(option: Option) -> str:
    """Where argparse keeps *option*'s apache-conf flag: its SiteConfig field's name, or,
    for a flag several commands share, the flag's own."""
    if option.shared_flag:
        return flag_name(option).removeprefix("--").replace("-", "_")
    return option.site


def add_option_flags(parser: argparse.ArgumentParser) -> None:
    """A flag for each option of :data:`imageguard.apache.options.TABLE`, its kind read from the
    default of the SiteConfig field it sets (``--no-X`` for an option on by default)."""
    defaults = {field.name: field.default for field in dataclasses.fields(SiteConfig)}
    for option in TABLE:
        if option.shared_flag:
            continue  # defined with the command line's other shared flags
        default = defaults[option.site]
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


def build_parser() -> argparse.ArgumentParser:
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
        metavar="PATH",
        help=f"the ACL store (default: ${DB_ENV})",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, func: object, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    def secret_file_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--secret-file",
            default=os.environ.get(SECRET_ENV),
            metavar="FILE",
            help=f"secrets, newest first (default: ${SECRET_ENV})",
        )

    p = command("init", cmd_init, "create the ACL store (an existing one is left as it is)")
    p.add_argument("--owner", metavar="USER", help="hand the store to USER (e.g. www-data)")

    p = command("grant", cmd_grant, "give PRINCIPAL a LEVEL on the images PATTERN matches")
    p.add_argument("pattern", metavar="PATTERN", help="e.g. gallery/cat.jpg, 'gallery/**'")
    p.add_argument("principal", metavar="PRINCIPAL", help="user:NAME, group:NAME, ...")
    p.add_argument("level", metavar="LEVEL", help="full, preview, thumb or deny")

    p = command("revoke", cmd_revoke, "remove PRINCIPAL's rule on PATTERN")
    p.add_argument("pattern", metavar="PATTERN")
    p.add_argument("principal", metavar="PRINCIPAL")

    command("rules", cmd_rules, "list every rule")

    p = command("group", cmd_group, "manage group memberships kept in the store")
    p.add_argument("action", choices=["add", "remove", "list"])
    p.add_argument("group", metavar="GROUP", nargs="?")
    p.add_argument("user", metavar="USER", nargs="?")

    p = command("explain", cmd_explain, "show which level a user gets for RELPATH, and why")
    p.add_argument("--user", metavar="NAME", help="the viewer (omit for an anonymous one)")
    p.add_argument(
        "--group", metavar="G", action="append", default=[], help="a group from the session"
    )
    p.add_argument("relpath", metavar="RELPATH", help="image path relative to the root")

    p = command("export", cmd_export, "write every rule, membership and revocation as text")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")

    p = command("import", cmd_import, "read rules, memberships and revocations from an export")
    p.add_argument("file", metavar="FILE", help="an export file, or - for stdin")
    p.add_argument(
        "--replace",
        action="store_true",
        help="drop every other rule and membership first (revocations stay)",
    )

    p = command("apache-conf", cmd_apache_conf, "print Apache config for this installation")
    add_option_flags(p)  # --root, --login-url, --cache-dir, ...: one per PythonOption
    secret_file_option(p)  # imageguard.tkt_secret_file (and --db: imageguard.acl_db)
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
        "--three-phases",
        action="store_true",
        help="one handler per phase (access, authen, authz) instead of the one-phase "
        "gatekeeper: the same answers, a little slower, Apache's phases shown as they are",
    )

    p = command("ticket", cmd_ticket, "print an auth_tkt cookie value for USER")
    p.add_argument("user", metavar="USER")
    p.add_argument("--group", metavar="G", action="append", default=[], help="a token/group")
    p.add_argument("--data", default="", metavar="TEXT", help="user data carried in the ticket")
    p.add_argument("--digest", default="sha256", choices=["sha256", "sha512", "md5"])
    p.add_argument("--ip", default="0.0.0.0", metavar="ADDR", help="bind to this address")
    secret_file_option(p)

    p = command("revoke-user", cmd_revoke_user, "refuse every ticket of USER issued until now")
    p.add_argument("user", metavar="USER")

    p = command("revoke-ticket", cmd_revoke_ticket, "refuse one ticket (its cookie value)")
    p.add_argument("ticket", metavar="TICKET")
    p.add_argument("--digest", default="sha256", choices=["sha256", "sha512", "md5"])

    p = command("share", cmd_share, "print a signed, expiring link to one image")
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
    secret_file_option(p)

    p = command("share-revoke", cmd_share_revoke, "refuse one share link (URL or signature)")
    p.add_argument("link", metavar="URL")

    command("revocations", cmd_revocations, "list revoked users, tickets and share links")

    add_commands(command)

    command("options", cmd_options, "list the PythonOption settings imageguard reads")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
