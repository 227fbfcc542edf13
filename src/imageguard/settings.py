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

from .errors import ConfigError
from .gate import DEFAULT_EXTENSIONS, parse_extensions
from .sessions import DEFAULT_COOKIE, SessionKeys

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
}


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


def _key(options: Mapping[str, str], name: str, default: str) -> str:
    value = options.get(name, default).strip()
    if not value:
        raise ConfigError(f"{name} is empty")
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
            raise ConfigError("imageguard.max_age must not be negative")
        login_url = options.get("imageguard.login_url", "").strip() or None
        if login_url and not (
            login_url.startswith("/")
            or login_url.startswith("https://")
            or login_url.startswith("http://")
        ):
            raise ConfigError("imageguard.login_url must be a path (/login) or an http(s) URL")
        session_type = options.get("mod_python.session.session_type", "DbmSession").strip()
        if session_type not in SESSION_TYPES:
            raise ConfigError(
                f"mod_python.session.session_type {session_type!r}: imageguard reads "
                f"{' and '.join(SESSION_TYPES)} (a MemorySession is invisible to other requests)"
            )
        return cls(
            root=options.get("imageguard.root", "").strip() or default_root,
            extensions=parse_extensions(options.get("imageguard.extensions", DEFAULT_EXTENSIONS)),
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
            cookie_name=_key(options, "mod_python.session.cookie_name", DEFAULT_COOKIE),
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
