"""Apache configuration for imageguard, written for this very installation.

:func:`python_path` finds where this imageguard and Pillow are installed, so the
``PythonPath`` line works when pasted; :func:`directory_block` and :func:`htaccess` write
the rest. The test suite starts Apache with exactly this output, so what the CLI prints
is what the tests prove.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import imageguard

from ..errors import ConfigError
from ..identity.cookies import COOKIE_NAME
from .names import (
    ADMITTED_ENV,
    GATEKEEPER_MODULE,
    HANDLER_MODULE,
    INTERPRETER,
    LOGIN_COOKIE_ENV,
    OPTION_PREFIX,
)
from .options import TABLE

__all__ = [
    "EXAMPLE_SITE",
    "EXAMPLE_TICKET_SITE",
    "GATEKEEPER_MODULE",
    "HANDLER_MODULE",
    "INTERPRETER",
    "LOGIN_COOKIE_ENV",
    "MODES",
    "SITE_DEFAULTS",
    "SITE_ONLY",
    "SiteConfig",
    "directory_block",
    "htaccess",
    "python_path",
    "python_path_directive",
    "read_python_options",
    "shipped_files",
]

#: How the handlers are configured: all in the access phase, or one per phase.
MODES = ("one-phase", "three-phase")


def python_path() -> list[str]:
    """The directories Apache's embedded Python needs: imageguard's and Pillow's.

    ``PythonPath`` replaces ``sys.path`` and ignores ``.pth`` files, so an editable
    install is invisible to Apache unless the source directory itself is listed: these
    are the directories holding the ``imageguard`` and ``PIL`` packages (``src/`` for an
    editable install, site-packages for a regular one), computed from the running
    interpreter, which must be built from the same ``python3`` mod_python embeds or
    Pillow's C extension will not load. The generated configuration and the test
    suite's private Apache (:mod:`imageguard_devtools.localserver`) both use this.
    """
    found = [str(Path(imageguard.__file__).resolve().parents[1])]
    try:
        import PIL

        pillow = str(Path(PIL.__file__).resolve().parents[1])
        if pillow not in found:
            found.append(pillow)
    except ImportError:  # Pillow is only needed for renditions
        pass
    return found


def python_path_line(directories: Sequence[str]) -> str:
    """``PythonPath "['a', 'b'] + sys.path"`` for *directories* (eval()ed once per interpreter)."""
    return f'PythonPath "{list(directories)!r} + sys.path"'


def python_path_directive(extra: list[str] | None = None) -> str:
    """The ``PythonPath`` directive for :func:`python_path` (plus *extra* directories)."""
    return python_path_line(python_path() + list(extra or []))


@dataclass(frozen=True)
class SiteConfig:
    """What a site tells imageguard about itself; the defaults match mod_python's.

    Each field but those in :data:`SITE_ONLY` is the :attr:`~imageguard.apache.options.Option.site`
    of one option in :data:`imageguard.apache.options.TABLE`, which writes it when it differs
    from the default here (a unit test checks the two name the same fields).
    """

    root: str
    #: Where the Alias serves the root ("" for no Alias).
    url_path: str = "/images"
    acl_db: str = "/var/lib/imageguard/acl.db"
    stale_ok: bool = False
    #: The application's mod_python session: its type, and where it is kept.
    session_type: str = "FileSession"
    session_directory: str = "/var/lib/imageguard/sessions"
    dbm_filename: str = ""
    #: The login cookie (pysid or auth_tkt unless the application renamed it).
    cookie_name: str = ""
    login_url: str = ""
    deny_status: int = 403
    max_age: int = 0
    extensions: str = ""
    #: "modpython" (the application's mod_python session) or "auth_tkt" (signed tickets).
    session_source: str = "modpython"
    tkt_secret_file: str = ""
    tkt_digest: str = ""
    tkt_timeout: str = ""
    tkt_bind_ip: bool = False
    tkt_allow_no_timeout: bool = False
    #: Renditions: where they are kept (without it, thumb and preview are not served).
    cache_dir: str = ""
    thumb_size: int = 0
    preview_size: int = 0
    watermark: str = ""
    downgrade: bool = True
    placeholder: bool = False
    #: Refuse files whose bytes are not the image their extension names.
    verify_content: bool = True
    max_pixels: int = 0
    #: Where share links are valid (default: the root's real path).
    share_realm: str = ""
    user_key: str = ""
    groups_key: str = ""
    #: "one-phase": imageguard.gatekeeper does everything in the access phase (fastest);
    #: "three-phase": imageguard.handlers in the access, authen and authz phases.
    mode: str = "one-phase"

    def option_lines(self) -> list[str]:
        """The ``PythonOption`` lines for this site, in the table's order (defaults left out).

        The application's session options follow ``imageguard.session``'s place.
        """
        lines = []
        for option in TABLE:
            if option.source and option.source != self.session_source:
                continue
            value = getattr(self, option.site)
            if option.always or value != SITE_DEFAULTS[option.site]:
                lines.append(f"PythonOption {option.name} {_conf_value(value)}")
            if option.name == "imageguard.session" and self.session_source == "modpython":
                lines += self._session_lines()
        return lines

    def _session_lines(self) -> list[str]:
        """The options of the application's mod_python session, as it sets them."""
        lines = [f"PythonOption mod_python.session.session_type {self.session_type}"]
        if self.session_type == "FileSession":
            lines.append(
                f"PythonOption mod_python.file_session.database_directory {self.session_directory}"
            )
        elif self.dbm_filename:
            lines.append(
                f"PythonOption mod_python.dbm_session.database_filename {self.dbm_filename}"
            )
        if self.cookie_name:
            lines.append(f"PythonOption mod_python.session.cookie_name {self.cookie_name}")
        return lines

    def login_cookie_line(self) -> str:
        """The ``SetEnvIf`` line that copies the login cookie's value into the request's
        environment, for the requests whose Cookie header mod_python cannot read (a byte
        that is not UTF-8 in any cookie on the domain)."""
        tickets = self.session_source == "auth_tkt"
        name = self.cookie_name or ("auth_tkt" if tickets else "pysid")
        if not COOKIE_NAME.fullmatch(name):
            raise ConfigError(f"{name!r} cannot be a cookie name")
        escaped = re.escape(name)
        # The last cookie of that name wins, as mod_python's own reading does; a session
        # id is 32 hex digits, a ticket any run of cookie-value characters (quoted or not).
        value = r"(\"[^\";,\s]*\"|[^\";,\s]+)" if tickets else r"([0-9a-f]{32})"
        return (
            f'SetEnvIf Cookie "^(?:.*[;,])?\\s*{escaped}={value}\\s*(?:[;,]|$)" '
            f"{LOGIN_COOKIE_ENV}=$1"
        )


#: The SiteConfig fields that are not an option's: where and how the site is served,
#: and the application's session.
SITE_ONLY = frozenset(
    {"url_path", "mode", "session_type", "session_directory", "dbm_filename"}
)
#: Each field's default (``dataclasses.MISSING`` for ``root``): an option is written when
#: its field differs from it, and ``apache-conf``'s flag takes its kind from it.
SITE_DEFAULTS: dict[str, object] = {
    field.name: field.default for field in dataclasses.fields(SiteConfig)
}


def _conf_value(value: object) -> str:
    """*value* as an Apache directive argument: on/off, or quoted when it holds spaces."""
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value)
    if any(ch in text for ch in '"\\\n\r'):
        raise ConfigError(f"{text!r}: quotes, backslashes and newlines cannot be written")
    return f'"{text}"' if " " in text or not text else text


#: The commented example PythonPath of the shipped .htaccess (no indentation).
_PORTABLE_HTACCESS_PATH = (
    "# PythonPath \"['/opt/imageguard/venv/lib/python3.11/site-packages'] + sys.path\"\n"
    "# (not needed when imageguard is installed for /usr/bin/python3 itself; for a venv,\n"
    "#  `imageguard apache-conf --htaccess` prints the right line for your installation)"
)
PORTABLE_PYTHON_PATH = (
    "# PythonPath \"['/opt/imageguard/venv/lib/python3.11/site-packages'] + sys.path\"\n"
    "    # (not needed when imageguard is installed for /usr/bin/python3 itself; for a venv,\n"
    "    #  `imageguard apache-conf` prints the right line for your installation)"
)


def directory_block(
    site: SiteConfig, *, extra_python_path: list[str] | None = None, portable: bool = False
) -> str:
    """The httpd.conf snippet that protects *site.root*, served at *site.url_path*.

    With *portable*, the ``PythonPath`` line is a commented example instead of this
    installation's directories (for the shipped ``apache_conf/`` files).
    """
    if site.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {site.mode!r}")
    root = os.path.abspath(site.root)
    path_line = PORTABLE_PYTHON_PATH if portable else python_path_directive(extra_python_path)
    indent = "    "
    options = "\n".join(indent + line for line in site.option_lines())
    alias = f"Alias {site.url_path.rstrip('/') or '/'} {root}\n" if site.url_path else ""
    one = site.mode == "one-phase"
    handlers = _ONE_PHASE if one else _THREE_PHASES
    said_yes = "the handler below has" if one else "the three phases below have"
    return f"""# imageguard: {site.url_path or root} is visible only to whom the ACL store allows.
# Apache serves the files itself once {said_yes} said yes.
# Every Apache child makes imageguard's interpreter as it starts: made at the first
# requests instead, mod_python makes one per simultaneous request and mixes them up.
# Keep this line outside every <VirtualHost>: inside one, mod_python never runs it.
PythonImport mod_python.apache {INTERPRETER}
{alias}<Directory {root}>
    # Only Apache's own file handler sends what lies here, as an image: no listings,
    # SSI, CGI or MultiViews, and no handler or type that the server or a parent
    # directory sets (links are followed: imageguard checks where they lead itself).
    Options FollowSymLinks
    AllowOverride None
    SetHandler none
    ForceType none
    <IfModule mod_dir.c>
        DirectoryIndex disabled
    </IfModule>
    # An inherited "Satisfy Any" (Apache 2.2 style) would let the access phase alone
    # decide; imageguard's refusals must stand.
    <IfModule mod_access_compat.c>
        Satisfy All
    </IfModule>
    # Let the kernel copy image bytes straight to the socket (off by default in Apache).
    EnableSendfile On

    # Where this imageguard and Pillow are installed (PythonPath replaces sys.path).
    {path_line}
    # A separate interpreter keeps this PythonPath from clashing with an application's.
    PythonInterpreter {INTERPRETER}

{handlers}
    # After every other phase, also for a request Apache let in without asking the
    # handlers above (an ErrorDocument or internal redirect into this directory, a
    # Require that needs no user, Satisfy Any): refuse what imageguard did not admit.
    PythonFixupHandler {HANDLER_MODULE}

    # mod_python cannot read a Cookie header holding a byte that is not UTF-8 (another
    # application's cookie, say): Apache picks the login cookie out for imageguard.
    <IfModule mod_setenvif.c>
        {site.login_cookie_line()}
    </IfModule>
    # Logins: these must match the application's own settings.
{options}
</Directory>
"""


_THREE_PHASES = f"""    # Phase 1, access: only image files inside the root, only GET and HEAD.
    PythonAccessHandler {HANDLER_MODULE}
    # Phase 2, authentication: the user and groups from the application's session.
    PythonAuthenHandler {HANDLER_MODULE}
    # Phase 3, authorization: the per-image ACL decides.
    PythonAuthzHandler {HANDLER_MODULE}
    # The authen and authz phases only run when Apache is told a user is required.
    AuthType imageguard
    AuthName "images"
    Require valid-user
"""

_ONE_PHASE = f"""    # All in the access phase, one Python call per request: only image files inside
    # the root, only GET and HEAD; the user from the application's session; the
    # per-image ACL. What it admits it marks, and Apache itself refuses the rest,
    # also when the handler did not run at all.
    PythonAccessHandler {GATEKEEPER_MODULE}
    Require env {ADMITTED_ENV}
"""


def htaccess(extensions: str = "", root: str = "", python_path: str = "") -> str:
    """An ``.htaccess`` that gates a directory by extension and path (no logins).

    *python_path* is the ``PythonPath`` line that lets Apache's Python find imageguard
    (:func:`python_path_directive` for this installation; "" leaves it out, for a server
    whose configuration already has it).
    """
    lines = [
        "# imageguard access gate: only image files, only GET and HEAD, no path tricks.",
        "# Apache reads this file only where AllowOverride is not None: under",
        "# AllowOverride None it is ignored without a word, and every file is served",
        "# to anyone (`imageguard doctor URL --image NAME` tells). Whoever may write it",
        "# runs Python code inside Apache. Where the server's <Directory> holds",
        "# imageguard's options and PythonPath (the three-phase split), allow it the",
        "# handler lines only: AllowOverride None, plus",
        "#   AllowOverrideList PythonAccessHandler PythonFixupHandler",
        "# It hands Apache the file it checked, opened (/proc must be mounted); the fixup",
        "# refuses the request again if the server's configuration lets it through after",
        "# a refusal (an inherited 'Satisfy Any', say), or without asking the gate at all",
        "# (an ErrorDocument or internal redirect into this directory).",
    ]
    if python_path:
        lines += [
            "# Where imageguard and Pillow are installed (PythonPath replaces sys.path);",
            "# without it every request is a 500: No module named 'imageguard'.",
            python_path,
        ]
    lines += [f"PythonAccessHandler {HANDLER_MODULE}", f"PythonFixupHandler {HANDLER_MODULE}"]
    if root:
        lines.append(f"PythonOption imageguard.root {_conf_value(root)}")
    if extensions:
        lines.append(f"PythonOption imageguard.extensions {_conf_value(extensions)}")
    return "\n".join(lines) + "\n"


#: The example site that the shipped ``apache_conf/imageguard.conf`` is written for.
EXAMPLE_SITE = SiteConfig(
    root="/srv/images",
    url_path="/images",
    acl_db="/var/lib/imageguard/acl.db",
    session_type="FileSession",
    session_directory="/var/lib/myapp/sessions",
    login_url="/login",
    cache_dir="/var/cache/imageguard",
)


#: The same site, with logins from auth_tkt tickets instead of mod_python sessions.
EXAMPLE_TICKET_SITE = SiteConfig(
    root="/srv/images",
    url_path="/images",
    acl_db="/var/lib/imageguard/acl.db",
    login_url="/login",
    session_source="auth_tkt",
    tkt_secret_file="/etc/imageguard/secrets",
    tkt_digest="sha256",
    tkt_timeout="2h",
    cache_dir="/var/cache/imageguard",
)


def shipped_files() -> dict[str, str]:
    """The files in ``apache_conf/``, by name (a test checks they match this output)."""
    return {
        "imageguard.conf": directory_block(EXAMPLE_SITE, portable=True),
        "imageguard-three-phases.conf": directory_block(
            dataclasses.replace(EXAMPLE_SITE, mode="three-phase"), portable=True
        ),
        "imageguard-tickets.conf": directory_block(EXAMPLE_TICKET_SITE, portable=True),
        "htaccess.example": htaccess(python_path=_PORTABLE_HTACCESS_PATH),
    }


_DIRECTORY_OPEN = re.compile(r"^\s*<Directory\s+\"?([^\">]+)\"?\s*>", re.IGNORECASE)
_DIRECTORY_CLOSE = re.compile(r"^\s*</Directory\s*>", re.IGNORECASE)
_PYTHON_OPTION = re.compile(r"^\s*PythonOption\s+(\S+)\s+(.*?)\s*$", re.IGNORECASE)


def read_python_options(text: str, root: str = "") -> dict[str, str]:
    """The ``PythonOption`` values one protected directory of an Apache config sets.

    *text* may hold several ``<Directory>`` blocks; options outside any block apply to
    all of them. The block is the one whose ``imageguard.root`` (or directory) is
    *root*, or, without *root*, the only block that sets ``imageguard`` options.
    Raises :class:`ConfigError` when that is not exactly one block.
    """
    common: dict[str, str] = {}
    blocks: list[tuple[str, dict[str, str]]] = []
    current: dict[str, str] | None = None
    for line in text.splitlines():
        opened = _DIRECTORY_OPEN.match(line)
        if opened:
            current = {}
            blocks.append((opened.group(1).strip(), current))
            continue
        if _DIRECTORY_CLOSE.match(line):
            current = None
            continue
        option = _PYTHON_OPTION.match(line)
        if option:
            value = option.group(2)
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            (common if current is None else current)[option.group(1)] = value
    ours = [
        (directory, options)
        for directory, options in blocks
        if any(name.startswith(OPTION_PREFIX) for name in options)
    ]
    if root:
        wanted = os.path.realpath(root)
        ours = [
            (directory, options)
            for directory, options in ours
            if os.path.realpath(options.get("imageguard.root", directory)) == wanted
        ]
    if len(ours) != 1:
        found = ", ".join(d for d, _ in ours) or "none"
        which = f" for {root}" if root else ""
        raise ConfigError(
            f"expected one <Directory> block with imageguard options{which}, found {found}"
            + ("" if root else "; name the one you mean with --root")
        )
    directory, options = ours[0]
    merged = {**common, **options}
    merged.setdefault("imageguard.root", directory)
    return merged
