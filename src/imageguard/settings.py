"""Settings: the ``PythonOption`` values imageguard reads, parsed and checked once.

Apache hands every request the merged options of its directory. Parsing them costs
time, so :class:`Settings` is built once per distinct set of options and kept (see
:mod:`imageguard.runtime`); a wrong value raises :class:`ConfigError` naming the option.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass

from PIL import Image

from .content import DEFAULT_MAX_PIXELS, EXTENSION_FORMATS, media_type
from .cookies import COOKIE_NAME
from .durations import parse_duration
from .errors import ConfigError, ShareLinkError
from .gate import DEFAULT_EXTENSIONS, parse_extensions
from .renditions import (
    DEFAULT_PREVIEW_SIZE,
    DEFAULT_THUMB_SIZE,
    DEFAULT_WATERMARK,
    check_watermark_template,
)
from .sessions import DEFAULT_COOKIE, SessionKeys
from .sharelinks import check_realm
from .tickets import DEFAULT_DIGEST, DEFAULT_TIMEOUT_S, check_digest_name

PREFIX = "imageguard."
SESSION_PREFIXES = (
    "mod_python.session.",
    "mod_python.file_session.",
    "mod_python.dbm_session.",
)
DENY_STATUSES = (403, 404)
SESSION_TYPES = ("FileSession", "DbmSession")

#: Every option imageguard reads, with its meaning (``imageguard options`` prints this).
OPTIONS: dict[str, str] = {
    "imageguard.root": "the protected directory (default: the directory of the handler)",
    "imageguard.extensions": "allowed file extensions (default: .jpg .jpeg .png .gif .webp)",
    "imageguard.acl_db": "the SQLite ACL store (required by the authen and authz handlers)",
    "imageguard.deny_status": "status for a denied image: 403 (default) or 404",
    "imageguard.max_age": "Cache-Control max-age, in seconds, of an allowed image (default 0)",
    "imageguard.login_url": "where an anonymous page navigation is sent to log in (optional)",
    "imageguard.user_key": "session key holding the user name (default: user)",
    "imageguard.groups_key": "session key holding the user's groups (default: groups)",
    "imageguard.session": "where logins come from: modpython (default) or auth_tkt",
    "imageguard.tkt_cookie": "cookie holding the auth_tkt ticket (default: auth_tkt)",
    "imageguard.tkt_secret_file": "file of ticket and share-link secrets, newest first",
    "imageguard.tkt_digest": "ticket digest: sha256 (default), sha512 or md5",
    "imageguard.tkt_timeout": "ticket lifetime: seconds or 30m, 2h, 1d (default 2h)",
    "imageguard.tkt_allow_no_timeout": "on to accept tickets that never expire (default off)",
    "imageguard.tkt_bind_ip": "on to bind tickets to the client's address (default off)",
    "imageguard.cache_dir": "where thumb and preview renditions are kept (needed to serve them)",
    "imageguard.thumb_size": "long side of a thumb rendition, in pixels (default 256)",
    "imageguard.preview_size": "long side of a preview rendition, in pixels (default 1024)",
    "imageguard.watermark": "text drawn over previews; may hold {host} {user} {date} "
    "(default {host})",
    "imageguard.downgrade": "serve the best permitted smaller variant instead of refusing "
    "(default on)",
    "imageguard.verify_content": "refuse files whose bytes are not the image their extension "
    "names (default on)",
    "imageguard.max_pixels": "refuse images with more pixels than this (default 50000000)",
    "imageguard.placeholder": "on to answer denied image requests with a lock picture "
    "(default off)",
    "imageguard.share_realm": "where share links are valid: links signed for another "
    "realm are refused (default: the root's real path)",
}
SESSION_SOURCES = ("modpython", "auth_tkt")


def is_relevant(name: str) -> bool:
    """True for the option names that shape imageguard's behaviour."""
    return name.startswith(PREFIX) or name.startswith(SESSION_PREFIXES)


def _int(options: Mapping[str, str], name: str, default: int) -> int:
    text = options.get(name)
    if text is None or not text.strip():
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {text!r}") from None


def _flag(options: Mapping[str, str], name: str, default: bool = False) -> bool:
    text = options.get(name, "").strip().lower()
    if not text:
        return default
    if text in ("on", "yes", "true", "1"):
        return True
    if text in ("off", "no", "false", "0"):
        return False
    raise ConfigError(f"{name} must be on or off, not {text!r}")


def _duration(options: Mapping[str, str], name: str, default: int) -> int:
    text = options.get(name, "").strip()
    if not text:
        return default
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _key(options: Mapping[str, str], name: str, default: str) -> str:
    value = options.get(name, default).strip()
    if not value:
        raise ConfigError(f"{name} is empty")
    return value


def _digest(options: Mapping[str, str]) -> str:
    try:
        return check_digest_name(options.get("imageguard.tkt_digest", DEFAULT_DIGEST))
    except ConfigError as exc:
        raise ConfigError(f"imageguard.tkt_digest: {exc}") from None


def _cookie_name(options: Mapping[str, str], name: str, default: str) -> str:
    value = _key(options, name, default)
    if not COOKIE_NAME.fullmatch(value):
        raise ConfigError(
            f"{name} {value!r} cannot be a cookie name (letters, digits and !#$%&'*+-.^_`|~)"
        )
    return value


@dataclass(frozen=True)
class Settings:
    """Everything imageguard's handlers need to know about one directory."""

    root: str
    extensions: frozenset[str]
    acl_db: str | None
    deny_status: int
    max_age: int
    login_url: str | None
    session_keys: SessionKeys
    session_type: str
    session_directory: str
    dbm_filename: str
    cookie_name: str
    session_source: str = "modpython"
    tkt_cookie: str = "auth_tkt"
    tkt_secret_file: str | None = None
    tkt_digest: str = DEFAULT_DIGEST
    tkt_timeout: int = DEFAULT_TIMEOUT_S
    tkt_allow_no_timeout: bool = False
    tkt_bind_ip: bool = False
    cache_dir: str | None = None
    thumb_size: int = DEFAULT_THUMB_SIZE
    preview_size: int = DEFAULT_PREVIEW_SIZE
    watermark: str = DEFAULT_WATERMARK
    downgrade: bool = True
    verify_content: bool = True
    max_pixels: int = DEFAULT_MAX_PIXELS
    placeholder: bool = False
    share_realm: str = ""

    @property
    def link_realm(self) -> str:
        """The realm share links for this root are signed for and checked against."""
        return self.share_realm or os.path.realpath(self.root)

    @classmethod
    def from_options(cls, options: Mapping[str, str], default_root: str = "") -> Settings:
        """Parse and check *options*; *default_root* is used when ``imageguard.root`` is unset."""
        unknown = sorted(k for k in options if k.startswith(PREFIX) and k not in OPTIONS)
        if unknown:
            raise ConfigError(f"unknown option {unknown[0]} (known: {', '.join(OPTIONS)})")
        deny_status = _int(options, "imageguard.deny_status", 403)
        if deny_status not in DENY_STATUSES:
            raise ConfigError(f"imageguard.deny_status must be 403 or 404, not {deny_status}")
        max_age = _int(options, "imageguard.max_age", 0)
        if max_age < 0:
            raise ConfigError(f"imageguard.max_age must not be negative, not {max_age}")
        login_url = options.get("imageguard.login_url", "").strip() or None
        if login_url and not (
            login_url.startswith("/")
            or login_url.startswith("https://")
            or login_url.startswith("http://")
        ):
            raise ConfigError(
                f"imageguard.login_url {login_url!r} is not a path (/login) or an http(s) URL"
            )
        session_source = options.get("imageguard.session", "modpython").strip().lower()
        if session_source not in SESSION_SOURCES:
            raise ConfigError(
                f"imageguard.session must be modpython or auth_tkt, not {session_source!r}"
            )
        session_type = options.get("mod_python.session.session_type", "DbmSession").strip()
        if session_source == "modpython" and session_type not in SESSION_TYPES:
            raise ConfigError(
                f"mod_python.session.session_type {session_type!r}: imageguard reads "
                f"{' and '.join(SESSION_TYPES)} (a MemorySession is invisible to other requests)"
            )
        extensions = parse_extensions(options.get("imageguard.extensions", DEFAULT_EXTENSIONS))
        for extension in sorted(extensions):
            media_type(extension)  # ConfigError for an extension that does not name images
        verify_content = _flag(options, "imageguard.verify_content", True)
        unverifiable = sorted(ext for ext in extensions if ext not in EXTENSION_FORMATS)
        if verify_content and unverifiable:
            raise ConfigError(
                f"imageguard.extensions: the content of {unverifiable[0]} files cannot be "
                "verified; set imageguard.verify_content off to serve them unchecked"
            )
        thumb_size = _int(options, "imageguard.thumb_size", DEFAULT_THUMB_SIZE)
        preview_size = _int(options, "imageguard.preview_size", DEFAULT_PREVIEW_SIZE)
        if not 16 <= thumb_size <= preview_size <= 8192:
            raise ConfigError(
                "imageguard.thumb_size and imageguard.preview_size must satisfy "
                f"16 <= thumb_size <= preview_size <= 8192 (they are {thumb_size} and "
                f"{preview_size})"
            )
        max_pixels = _int(options, "imageguard.max_pixels", DEFAULT_MAX_PIXELS)
        pillow_limit = Image.MAX_IMAGE_PIXELS or 2**62
        if not 1 <= max_pixels <= pillow_limit:
            raise ConfigError(
                f"imageguard.max_pixels must lie between 1 and {pillow_limit} "
                f"(Pillow's own decompression-bomb limit), not {max_pixels}"
            )
        placeholder = _flag(options, "imageguard.placeholder")
        if placeholder and deny_status != 403:
            raise ConfigError(
                "imageguard.placeholder on needs imageguard.deny_status 403: with 404, a "
                "padlock would tell a denied image from a missing one"
            )
        try:
            watermark = check_watermark_template(
                options.get("imageguard.watermark", DEFAULT_WATERMARK)
            )
        except ValueError as exc:
            raise ConfigError(f"imageguard.watermark: {exc}") from None
        share_realm = options.get("imageguard.share_realm", "").strip()
        if share_realm:
            try:
                check_realm(share_realm)
            except ShareLinkError as exc:
                raise ConfigError(f"imageguard.share_realm: {exc}") from None
        return cls(
            root=options.get("imageguard.root", "").strip() or default_root,
            extensions=extensions,
            acl_db=options.get("imageguard.acl_db", "").strip() or None,
            deny_status=deny_status,
            max_age=max_age,
            login_url=login_url,
            session_keys=SessionKeys(
                _key(options, "imageguard.user_key", "user"),
                _key(options, "imageguard.groups_key", "groups"),
            ),
            session_type=session_type,
            session_directory=_session_directory(options),
            dbm_filename=_dbm_filename(options),
            cookie_name=_cookie_name(options, "mod_python.session.cookie_name", DEFAULT_COOKIE),
            session_source=session_source,
            tkt_cookie=_cookie_name(options, "imageguard.tkt_cookie", "auth_tkt"),
            tkt_secret_file=options.get("imageguard.tkt_secret_file", "").strip() or None,
            tkt_digest=_digest(options),
            tkt_timeout=_duration(options, "imageguard.tkt_timeout", DEFAULT_TIMEOUT_S),
            tkt_allow_no_timeout=_flag(options, "imageguard.tkt_allow_no_timeout"),
            tkt_bind_ip=_flag(options, "imageguard.tkt_bind_ip"),
            cache_dir=options.get("imageguard.cache_dir", "").strip() or None,
            thumb_size=thumb_size,
            preview_size=preview_size,
            watermark=watermark,
            downgrade=_flag(options, "imageguard.downgrade", True),
            verify_content=verify_content,
            max_pixels=max_pixels,
            placeholder=placeholder,
            share_realm=share_realm,
        )


def _session_directory(options: Mapping[str, str]) -> str:
    """Where mod_python's FileSession keeps its files, by mod_python's own precedence."""
    return (
        options.get("mod_python.file_session.database_directory")
        or options.get("mod_python.session.database_directory")
        or tempfile.gettempdir()
    )


def _dbm_filename(options: Mapping[str, str]) -> str:
    """Where mod_python's DbmSession keeps its database, by mod_python's own precedence."""
    if options.get("mod_python.dbm_session.database_filename"):
        return options["mod_python.dbm_session.database_filename"]
    directory = (
        options.get("mod_python.dbm_session.database_directory")
        or options.get("mod_python.session.database_directory")
        or tempfile.gettempdir()
    )
    return os.path.join(directory, "mp_sess.dbm")
