"""The one table of the ``PythonOption`` values imageguard reads.

Each :class:`Option` says everything imageguard knows about one option, and every
place that needs an option reads :data:`TABLE`:

* :meth:`imageguard.apache.settings.Settings.from_options` parses each option with its
  :attr:`Option.parse` into the :class:`~imageguard.apache.settings.Settings` field
  :attr:`Option.field` (only the checks that weigh several options are written there);
* :class:`imageguard.apache.apacheconf.SiteConfig` writes each option from its field
  :attr:`Option.site`, in the table's order, in the block ``imageguard apache-conf`` prints;
* ``imageguard apache-conf`` has a flag for each option (see :func:`flag_name`), whose
  value becomes that :class:`~imageguard.apache.apacheconf.SiteConfig` field;
* ``imageguard options`` prints the table (:func:`listing`);
* the documentation's option tables are :func:`markdown_table` between the
  :func:`markers` (a unit test compares them; ``make options-table`` rewrites them).

The options of the application's mod_python session (``mod_python.session.*``) are not
imageguard's: they are read with mod_python's own precedence in :mod:`imageguard.apache.settings`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image

from ..errors import ConfigError, ShareLinkError
from ..files.content import DEFAULT_MAX_PIXELS, media_type
from ..files.gate import DEFAULT_EXTENSIONS, parse_extensions
from ..files.renditions import (
    DEFAULT_PREVIEW_SIZE,
    DEFAULT_THUMB_SIZE,
    DEFAULT_WATERMARK,
    check_watermark_template,
)
from ..identity.cookies import COOKIE_NAME
from ..identity.sharelinks import check_realm
from ..identity.tickets import DEFAULT_DIGEST, DEFAULT_TIMEOUT_S, check_digest_name
from ..store.location import parse_location
from ..support.durations import parse_duration
from .names import OPTION_PREFIX

#: Where logins come from: the application's mod_python session, or auth_tkt tickets.
SESSION_SOURCES = ("modpython", "auth_tkt")
DENY_STATUSES = (403, 404)
#: The docs tables, in the order the README shows them.
GROUPS = ("general", "renditions", "tickets")

#: Turns the option's text (``None`` when it is not set) into its Settings value, or
#: raises :class:`ConfigError` naming the option and the value.
Parser = Callable[[str, Any, "str | None"], Any]


@dataclass(frozen=True)
class Option:
    """One ``PythonOption``: how it is parsed, written, offered and documented."""

    #: The ``PythonOption`` name.
    name: str
    #: The :class:`~imageguard.apache.settings.Settings` field it fills ("" for the two parts
    #: of ``session_keys``).
    field: str
    #: The :class:`~imageguard.apache.apacheconf.SiteConfig` field ``apache-conf`` writes it from.
    site: str
    parse: Parser
    #: What :attr:`parse` falls back to when the option is not set.
    default: object
    #: One line, plain text: the docs table, ``imageguard options``, the flag's help.
    meaning: str
    #: The docs table it is listed in (one of :data:`GROUPS`).
    group: str
    #: The default as people read it, when the value does not say it ("the root's real path").
    default_text: str = ""
    #: ``apache-conf``'s flag, when it is not the one :func:`flag_name` derives.
    flag: str = ""
    metavar: str | None = None
    choices: tuple[object, ...] = ()
    #: The flag's help, when it is not :attr:`meaning`.
    flag_help: str = ""
    #: ``apache-conf`` makes the flag's value an absolute path.
    path: bool = False
    #: ``apache-conf`` writes it even when it is the SiteConfig's default.
    always: bool = False
    #: Written only with this login source (``modpython`` or ``auth_tkt``); "" for both.
    source: str = ""
    #: The command line defines the flag for several commands (``--db``, ``--secret-file``).
    shared_flag: bool = False

    @property
    def short(self) -> str:
        """The name without ``imageguard.``: ``cache_dir``."""
        return self.name.removeprefix(OPTION_PREFIX)

    @property
    def descriptive_default(self) -> bool:
        """True when the option has no default value of its own (unset, it means something)."""
        return self.default is None or self.default == ""

    def value(self, options: Mapping[str, str]) -> Any:
        """This option's value in *options* (ConfigError naming it when it is wrong)."""
        return self.parse(self.name, self.default, options.get(self.name))

    def shown_default(self) -> str:
        """The default as the docs and ``imageguard options`` show it."""
        if self.default_text:
            return self.default_text
        return shown(self.default)


def shown(value: object) -> str:
    """*value* as an option's text: ``on``/``off``, ``none``, words joined by spaces."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None or value == "":
        return "none"
    if isinstance(value, tuple):
        return " ".join(str(item) for item in value)
    return str(value)


# ------------------------------------------------------------------------ parsers


def _given(default: object, text: str | None) -> str:
    """The option's text, or its default's when it is not set."""
    if text is not None:
        return text
    if isinstance(default, tuple):
        return " ".join(str(item) for item in default)
    return str(default)


def text_or_default(name: str, default: Any, text: str | None) -> Any:
    """Stripped text; unset or blank means the default."""
    return (text or "").strip() or default


def store_location(name: str, default: Any, text: str | None) -> Any:
    """An ACL store's location: a path, or a PostgreSQL connection string without a
    password (see :mod:`imageguard.store.location`); unset or blank means the default."""
    value = text_or_default(name, default, text)
    if value is not None:
        try:
            parse_location(value)
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    return value


def whole(name: str, default: Any, text: str | None) -> Any:
    """A whole number; unset or blank means the default."""
    if text is None or not text.strip():
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {text!r}") from None


def not_negative(name: str, default: Any, text: str | None) -> int:
    value: int = whole(name, default, text)
    if value < 0:
        raise ConfigError(f"{name} must not be negative, not {value}")
    return value


def deny_status(name: str, default: Any, text: str | None) -> int:
    value: int = whole(name, default, text)
    if value not in DENY_STATUSES:
        raise ConfigError(f"{name} must be 403 or 404, not {value}")
    return value


def pixels(name: str, default: Any, text: str | None) -> int:
    value: int = whole(name, default, text)
    pillow_limit = Image.MAX_IMAGE_PIXELS or 2**62
    if not 1 <= value <= pillow_limit:
        raise ConfigError(
            f"{name} must lie between 1 and {pillow_limit} "
            f"(Pillow's own decompression-bomb limit), not {value}"
        )
    return value


def flag(name: str, default: Any, text: str | None) -> Any:
    """``on``/``off`` (or yes/no, true/false, 1/0); unset or blank means the default."""
    word = (text or "").strip().lower()
    if not word:
        return default
    if word in ("on", "yes", "true", "1"):
        return True
    if word in ("off", "no", "false", "0"):
        return False
    raise ConfigError(f"{name} must be on or off, not {word!r}")


def duration(name: str, default: Any, text: str | None) -> Any:
    """Seconds, or ``30m``, ``2h``, ``1d``; unset or blank means the default."""
    value = (text or "").strip()
    if not value:
        return default
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def key(name: str, default: Any, text: str | None) -> str:
    """A name that must not be blank."""
    value = _given(default, text).strip()
    if not value:
        raise ConfigError(f"{name} is empty")
    return value


def cookie_name(name: str, default: Any, text: str | None) -> str:
    value = key(name, default, text)
    if not COOKIE_NAME.fullmatch(value):
        raise ConfigError(
            f"{name} {value!r} cannot be a cookie name "
            "(letters, digits and !#$%&'*+-.^_`|~)"
        )
    return value


def login_url(name: str, default: Any, text: str | None) -> str | None:
    value = (text or "").strip() or None
    if value and not value.startswith(("/", "https://", "http://")):
        raise ConfigError(f"{name} {value!r} is not a path (/login) or an http(s) URL")
    return value


#: A login source of the site's own: ``package.module:callable``.
_OWN_SOURCE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def session_source(name: str, default: Any, text: str | None) -> str:
    value = _given(default, text).strip()
    if value.lower() in SESSION_SOURCES:
        return value.lower()
    if _OWN_SOURCE.fullmatch(value):
        return value
    raise ConfigError(
        f"{name} must be modpython, auth_tkt or a login source of your own "
        f"(package.module:callable), not {value!r}"
    )


def digest(name: str, default: Any, text: str | None) -> str:
    try:
        return check_digest_name(_given(default, text))
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def extensions(name: str, default: Any, text: str | None) -> frozenset[str]:
    """File extensions that name image types (the parsers' messages name the option)."""
    found = parse_extensions(_given(default, text))
    for extension in sorted(found):
        media_type(extension)  # ConfigError for an extension that does not name images
    return found


def watermark(name: str, default: Any, text: str | None) -> str:
    try:
        return check_watermark_template(_given(default, text))
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def share_realm(name: str, default: Any, text: str | None) -> str:
    value = (text or "").strip()
    if value:
        try:
            check_realm(value)
        except ShareLinkError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    return value


# ------------------------------------------------------------------------ the table

_TICKETS = "auth_tkt"
_SESSIONS = "modpython"

#: Every option imageguard defines, in the order the generated block writes them.
TABLE: tuple[Option, ...] = (
    Option(
        "imageguard.root", "root", "root", text_or_default, "",
        "the protected directory",
        "general", default_text="the handler's directory", metavar="DIR", path=True,
    ),
    Option(
        "imageguard.acl_db", "acl_db", "acl_db", store_location, None,
        "the ACL store: an SQLite file, or a PostgreSQL database (postgresql://USER@HOST/DB "
        "or service=NAME; the password in a password file, never here); required by the "
        "authen and authz handlers",
        "general", flag="--db", metavar="STORE", path=True, always=True, shared_flag=True,
    ),
    Option(
        "imageguard.stale_ok", "stale_ok", "stale_ok", flag, False,
        "on: while a PostgreSQL store cannot be reached, answers remembered before the "
        "outage still stand (off: every request that needs the store gets 503)",
        "general",
    ),
    Option(
        "imageguard.tkt_secret_file", "tkt_secret_file", "tkt_secret_file", text_or_default,
        None,
        "file of ticket and share-link secrets, one per line, newest first; re-read when it "
        "changes (required for tickets and share links)",
        "tickets", flag="--secret-file", path=True, shared_flag=True,
    ),
    # In a block for mod_python sessions, the application's session options follow here.
    Option(
        "imageguard.session", "session_source", "session_source", session_source,
        "modpython",
        "where logins come from: modpython (the application's mod_python session), "
        "auth_tkt (signed tickets), or package.module:callable (a source of your own)",
        "tickets", choices=SESSION_SOURCES,
    ),
    Option(
        "imageguard.tkt_digest", "tkt_digest", "tkt_digest", digest, DEFAULT_DIGEST,
        "the tickets' digest: sha256, sha512 or md5 (only for old issuers)",
        "tickets", choices=("sha256", "sha512", "md5"), source=_TICKETS,
    ),
    Option(
        "imageguard.tkt_timeout", "tkt_timeout", "tkt_timeout", duration, DEFAULT_TIMEOUT_S,
        "a ticket's lifetime from its timestamp: seconds, or 30m, 2h, 1d (0 only with "
        "imageguard.tkt_allow_no_timeout on)",
        "tickets", default_text="2h", metavar="DURATION", source=_TICKETS,
    ),
    Option(
        "imageguard.tkt_bind_ip", "tkt_bind_ip", "tkt_bind_ip", flag, False,
        "on: a ticket is only good from the address it was issued for (IPv4 as "
        "mod_auth_tkt does, IPv6 as Pyramid does)",
        "tickets", source=_TICKETS,
    ),
    Option(
        "imageguard.tkt_cookie", "tkt_cookie", "cookie_name", cookie_name, "auth_tkt",
        "the cookie holding the ticket",
        "tickets", flag="--cookie-name", metavar="NAME", source=_TICKETS,
        flag_help="the login cookie, if the application renamed it (default: pysid for "
        "mod_python sessions, auth_tkt for tickets)",
    ),
    Option(
        "imageguard.tkt_allow_no_timeout", "tkt_allow_no_timeout", "tkt_allow_no_timeout",
        flag, False,
        "on to accept tickets that never expire (imageguard.tkt_timeout 0)",
        "tickets", source=_TICKETS,
    ),
    Option(
        "imageguard.login_url", "login_url", "login_url", login_url, None,
        "where an anonymous page navigation is sent to log in: a path (/login) or an "
        "http(s) URL",
        "general", metavar="URL",
    ),
    Option(
        "imageguard.deny_status", "deny_status", "deny_status", deny_status, 403,
        "the status of a denied image: 403, or 404 to hide that it exists (from everyone)",
        "general", choices=DENY_STATUSES,
    ),
    Option(
        "imageguard.max_age", "max_age", "max_age", not_negative, 0,
        "Cache-Control: private, max-age= of an allowed image, in seconds; above 0 a "
        "browser shows the image from its cache without asking, also after a logout and "
        "to the next user of the same browser",
        "general", metavar="SECONDS",
    ),
    Option(
        "imageguard.extensions", "extensions", "extensions", extensions, DEFAULT_EXTENSIONS,
        "the file extensions served, case-insensitive",
        "general", metavar="LIST",
    ),
    Option(
        "imageguard.cache_dir", "cache_dir", "cache_dir", text_or_default, None,
        "where renditions and the placeholder are kept; needed to serve thumb and preview",
        "renditions", metavar="DIR", path=True,
    ),
    Option(
        "imageguard.thumb_size", "thumb_size", "thumb_size", whole, DEFAULT_THUMB_SIZE,
        "long side of a thumb rendition, in pixels (at least 16)",
        "renditions", metavar="PX",
    ),
    Option(
        "imageguard.preview_size", "preview_size", "preview_size", whole,
        DEFAULT_PREVIEW_SIZE,
        "long side of a preview rendition, in pixels (at least thumb_size, at most 8192)",
        "renditions", metavar="PX",
    ),
    Option(
        "imageguard.watermark", "watermark", "watermark", watermark, DEFAULT_WATERMARK,
        "text drawn across previews; may hold {host}, {user} and {date}",
        "renditions", metavar="TEXT",
    ),
    Option(
        "imageguard.downgrade", "downgrade", "downgrade", flag, True,
        "serve the best permitted smaller variant instead of refusing",
        "renditions",
    ),
    Option(
        "imageguard.placeholder", "placeholder", "placeholder", flag, False,
        "answer refused image requests with a padlock picture (needs deny_status 403 and "
        "a cache_dir)",
        "renditions",
    ),
    Option(
        "imageguard.verify_content", "verify_content", "verify_content", flag, True,
        "refuse files whose bytes are not the image their extension names",
        "renditions",
    ),
    Option(
        "imageguard.share_realm", "share_realm", "share_realm", share_realm, "",
        "where share links are valid: a link signed for another realm is refused",
        "general", default_text="the root's real path", metavar="NAME",
    ),
    Option(
        "imageguard.max_pixels", "max_pixels", "max_pixels", pixels, DEFAULT_MAX_PIXELS,
        "refuse images with more pixels than this before decoding them (decompression "
        "bombs; at most Pillow's own limit)",
        "renditions", metavar="N",
    ),
    Option(
        "imageguard.user_key", "", "user_key", key, "user",
        "the session key holding the user name",
        "general", metavar="KEY", source=_SESSIONS,
    ),
    Option(
        "imageguard.groups_key", "", "groups_key", key, "groups",
        'the session key holding the user\'s groups (a list, or "a,b")',
        "general", metavar="KEY", source=_SESSIONS,
    ),
)  # fmt: skip

#: The options by name.
BY_NAME: dict[str, Option] = {option.name: option for option in TABLE}


def flag_name(option: Option) -> str:
    """``apache-conf``'s flag for *option*: ``--cache-dir``, and ``--no-downgrade`` for an
    option that is on unless turned off."""
    if option.flag:
        return option.flag
    dashed = option.short.replace("_", "-")
    return f"--no-{dashed}" if option.default is True else f"--{dashed}"


def listing() -> str:
    """What ``imageguard options`` prints: each option, its meaning and its default."""
    width = max(len(option.name) for option in TABLE)
    return "".join(
        f"{option.name:<{width}}  {option.meaning} (default: {option.shown_default()})\n"
        for option in TABLE
    )


def markdown_table(group: str) -> str:
    """The docs table of the options in *group*."""
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}, not {group!r}")
    lines = ["| option | default | meaning |", "| --- | --- | --- |"]
    for option in TABLE:
        if option.group != group:
            continue
        default = option.shown_default()
        if not option.descriptive_default:
            default = f"`{default}`"
        lines.append(f"| `{option.name}` | {default} | {option.meaning} |")
    return "\n".join(lines) + "\n"


def markers(group: str) -> tuple[str, str]:
    """The comment lines the generated table of *group* stands between in a docs page."""
    return f"<!-- options table: {group} (generated: make options-table) -->", "<!-- end -->"


_MARKED = re.compile(
    r"^(<!-- options table: (\w+) \(generated: make options-table\) -->\n)(.*?)^(<!-- end -->)$",
    re.MULTILINE | re.DOTALL,
)


def marked_tables(text: str) -> list[tuple[str, str]]:
    """The (group, table) pairs between markers in a docs page's *text*."""
    return [(match.group(2), match.group(3)) for match in _MARKED.finditer(text)]


def rewrite_tables(text: str) -> str:
    """*text* with every marked table replaced by the one the table generates now."""
    return _MARKED.sub(
        lambda m: m.group(1) + markdown_table(m.group(2)) + m.group(4), text
    )
