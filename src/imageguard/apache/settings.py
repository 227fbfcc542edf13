"""Settings: the ``PythonOption`` values imageguard reads, parsed and checked once.

Apache hands every request the merged options of its directory. Parsing them costs
time, so :class:`Settings` is built once per distinct set of options and kept (see
:mod:`imageguard.apache.runtime`); a wrong value raises :class:`ConfigError` naming the option.
Each option is parsed as its row of :data:`imageguard.apache.options.TABLE` says; only the
checks that weigh several options, and the application's own mod_python session
options (read with mod_python's precedence), are written here.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..files.content import EXTENSION_FORMATS
from ..identity.sessions import DEFAULT_COOKIE, SessionKeys
from .names import OPTION_PREFIX
from .options import BY_NAME, DENY_STATUSES, SESSION_SOURCES, TABLE, cookie_name

__all__ = [
    "DENY_STATUSES",
    "OPTIONS",
    "PREFIX",
    "SESSION_PREFIXES",
    "SESSION_SOURCES",
    "SESSION_TYPES",
    "Settings",
    "is_relevant",
]

PREFIX = OPTION_PREFIX
SESSION_PREFIXES = (
    "mod_python.session.",
    "mod_python.file_session.",
    "mod_python.dbm_session.",
)
SESSION_TYPES = ("FileSession", "DbmSession")

#: Every option imageguard reads, with its meaning (from :data:`imageguard.apache.options.TABLE`).
OPTIONS: dict[str, str] = {option.name: option.meaning for option in TABLE}


def is_relevant(name: str) -> bool:
    """True for the option names that shape imageguard's behaviour."""
    return name.startswith(PREFIX) or name.startswith(SESSION_PREFIXES)


@dataclass(frozen=True)
class Settings:
    """Everything imageguard's handlers need to know about one directory.

    Built by :meth:`from_options` only: each field but the session's comes from the
    option :data:`imageguard.apache.options.TABLE` names it in, with the default given there.
    """

    root: str
    extensions: frozenset[str]
    acl_db: str | None
    stale_ok: bool
    deny_status: int
    max_age: int
    login_url: str | None
    #: From ``imageguard.user_key`` and ``imageguard.groups_key``.
    session_keys: SessionKeys
    #: The application's mod_python session, read with mod_python's own options.
    session_type: str
    session_directory: str
    dbm_filename: str
    cookie_name: str
    session_source: str
    tkt_cookie: str
    tkt_secret_file: str | None
    tkt_digest: str
    tkt_timeout: int
    tkt_allow_no_timeout: bool
    tkt_bind_ip: bool
    cache_dir: str | None
    thumb_size: int
    preview_size: int
    watermark: str
    downgrade: bool
    verify_content: bool
    max_pixels: int
    placeholder: bool
    share_realm: str

    @property
    def link_realm(self) -> str:
        """The realm share links for this root are signed for and checked against."""
        return self.share_realm or os.path.realpath(self.root)

    @classmethod
    def from_options(cls, options: Mapping[str, str], default_root: str = "") -> Settings:
        """Parse and check *options*; *default_root* is used when ``imageguard.root`` is unset."""
        unknown = sorted(k for k in options if k.startswith(PREFIX) and k not in BY_NAME)
        if unknown:
            raise ConfigError(f"unknown option {unknown[0]} (known: {', '.join(OPTIONS)})")
        values: dict[str, Any] = {option.name: option.value(options) for option in TABLE}
        _check_together(values)
        session_type = options.get("mod_python.session.session_type", "DbmSession").strip()
        if values["imageguard.session"] == "modpython" and session_type not in SESSION_TYPES:
            raise ConfigError(
                f"mod_python.session.session_type {session_type!r}: imageguard reads "
                f"{' and '.join(SESSION_TYPES)} (a MemorySession is invisible to other requests)"
            )
        fields = {option.field: values[option.name] for option in TABLE if option.field}
        fields["root"] = fields["root"] or default_root
        keys = SessionKeys(values["imageguard.user_key"], values["imageguard.groups_key"])
        name = "mod_python.session.cookie_name"
        return cls(
            **fields,
            session_keys=keys,
            session_type=session_type,
            session_directory=_session_directory(options),
            dbm_filename=_dbm_filename(options),
            cookie_name=cookie_name(name, DEFAULT_COOKIE, options.get(name)),
        )


def _check_together(values: Mapping[str, Any]) -> None:
    """The checks that weigh several options (each option alone is checked by its parser)."""
    unverifiable = sorted(
        ext for ext in values["imageguard.extensions"] if ext not in EXTENSION_FORMATS
    )
    if values["imageguard.verify_content"] and unverifiable:
        raise ConfigError(
            f"imageguard.extensions: the content of {unverifiable[0]} files cannot be "
            "verified; set imageguard.verify_content off to serve them unchecked"
        )
    thumb_size, preview_size = values["imageguard.thumb_size"], values["imageguard.preview_size"]
    if not 16 <= thumb_size <= preview_size <= 8192:
        raise ConfigError(
            "imageguard.thumb_size and imageguard.preview_size must satisfy "
            f"16 <= thumb_size <= preview_size <= 8192 (they are {thumb_size} and "
            f"{preview_size})"
        )
    if values["imageguard.placeholder"] and values["imageguard.deny_status"] != 403:
        raise ConfigError(
            "imageguard.placeholder on needs imageguard.deny_status 403: with 404, a "
            "padlock would tell a denied image from a missing one"
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
