"""What each of the ``imageguard`` command's subcommands does, but ``verify`` and
``renditions`` (:mod:`.imagecommands`): one ``cmd_*`` function each, given the parsed
arguments, returning the exit status (:mod:`.commandline` builds the command line)."""

from __future__ import annotations

import argparse
import os
import pwd
import sys
import time
from pathlib import Path
from typing import Any

from ..apache.apacheconf import (
    SiteConfig,
    directory_block,
    htaccess,
    python_path_directive,
    read_python_options,
)
from ..apache.install import CONF_NAME, install
from ..apache.names import DB_ENV, SECRET_ENV
from ..apache.options import TABLE, Option, flag_name, listing
from ..apache.settings import Settings
from ..errors import ImageGuardError
from ..files.gate import relative_to_root
from ..files.renditioncache import check_placement
from ..identity import sharelinks
from ..identity.secretfile import SecretFile
from ..identity.tickets import issue_ticket
from ..policy.acl import ranked
from ..policy.levels import Level
from ..policy.principals import Identity, check_name
from ..policy.variants import VARIANT_PARAM
from ..store import AclStore
from ..store.location import looks_like_postgresql, parse_location
from ..store.migrate import compare_decisions, copy_store, missing_revocations
from ..support.durations import parse_duration
from .imagecommands import site_settings
from .progress import ProgressBar


class CliError(ImageGuardError):
    """A usage problem the CLI reports in one line."""


def _db_path(args: argparse.Namespace) -> str:
    if not args.db:
        raise CliError(f"no ACL store given: use --db PATH or set {DB_ENV}")
    return args.db


def _open(args: argparse.Namespace) -> AclStore:
    return AclStore(_db_path(args))


def cmd_init(args: argparse.Namespace) -> int:
    location = parse_location(_db_path(args))
    if location.is_postgresql:
        if args.owner:
            raise CliError("--owner is for an SQLite file; PostgreSQL has roles (GRANT SELECT)")
        with AclStore.create(location.target):
            pass
        print(f"ACL store ready: {location.target}")
        return 0
    path = Path(location.target)
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


def _rule_path(given: str, root: str | None) -> str:
    """*given* as the path rules are written for: relative to the root. An absolute path
    must lie below *root* (``--root``); it is never quietly read as a relative one."""
    if not given.startswith("/"):
        return given.strip("/")
    if root is None:
        raise CliError(
            f"{given} is an absolute path: give --root DIR (the protected directory), or "
            "the path relative to it"
        )
    top = os.path.normpath(os.path.abspath(root))
    path = os.path.normpath(given)
    for base, candidate in ((top, path), (os.path.realpath(top), os.path.realpath(path))):
        below = relative_to_root(candidate, base)
        if below:  # "" is the root itself, not a file below it
            return below
    raise CliError(f"{given} is not below the root {root}")


def cmd_explain(args: argparse.Namespace) -> int:
    relpath = _rule_path(args.relpath, args.root)
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


def cmd_migrate(args: argparse.Namespace) -> int:
    with AclStore(args.source) as source, AclStore.create(args.target) as target:
        summary = copy_store(source, target, replace=args.replace)
        print(
            f"copied {summary.rules} rule(s), {summary.memberships} membership(s) and "
            f"{summary.revocations} revocation(s) to {target.path}"
        )
        rules = len(source.rules())
        with ProgressBar(rules, "checking", sys.stderr) as bar:
            found = compare_decisions(source, target, bar.advance)
        lost = missing_revocations(source, target)
        if lost:
            raise CliError(f"{len(lost)} revocation(s) missing from the copy, first: {lost[0]}")
    for line in found.differences[:20]:
        print(f"differs: {line}", file=sys.stderr)
    if found.differences:
        raise CliError(
            f"{len(found.differences)} of {found.decisions} decision(s) differ between the "
            "two stores (the target was written meanwhile?)"
        )
    print(
        f"checked {found.decisions} decision(s): {found.paths} path(s) from every rule, for "
        f"{found.viewers} viewer(s); both stores decide alike"
    )
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


def _absolute(value: str) -> str:
    """A path flag's value as an absolute path (a PostgreSQL location as it is)."""
    return value if looks_like_postgresql(value) else os.path.abspath(value)


def cmd_apache_conf(args: argparse.Namespace) -> int:
    root = os.path.abspath(args.root)
    if args.force and not args.install:
        raise CliError("--force only goes with --install")
    if args.htaccess:
        if args.install:
            raise CliError("--install writes the server's block; an .htaccess is copied by hand")
        sys.stdout.write(htaccess(args.extensions or "", root, python_path_directive()))
        return 0
    values: dict[str, Any] = {}
    for option in TABLE:  # each option's flag sets its SiteConfig field
        value = getattr(args, _flag_dest(option))
        if value is None or value == "":
            continue
        values[option.site] = _absolute(value) if option.path else value
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
        raise CliError(f"--session auth_tkt needs --secret-file (or ${SECRET_ENV})")
    block = directory_block(site)
    # What Apache would refuse at the first request is refused now, before it is pasted.
    settings = Settings.from_options(read_python_options(block, root))
    if settings.cache_dir:
        check_placement(os.path.realpath(settings.cache_dir), os.path.realpath(root))
    if args.install:
        return _install(block, args.force)
    sys.stdout.write(block)
    return 0


def _install(block: str, force: bool) -> int:
    """``apache-conf --install``: the block into Apache's conf-available, enabled, tested."""
    done = install(block, force=force)
    if done.backup is not None:
        print(f"kept the file it replaces as {done.backup}")
    print(f"{'wrote' if done.changed else 'unchanged'}: {done.path}")
    if done.enabled_now:
        print(f"enabled it: a2enconf {CONF_NAME}")
    said = done.configtest.splitlines()[-1] if done.configtest else "passed"
    print(f"apache2ctl configtest: {said}")
    print("Apache uses it once reloaded: systemctl reload apache2 (or apache2ctl graceful)")
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
