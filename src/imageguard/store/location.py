"""Where an ACL store lives: an SQLite file or a PostgreSQL database, told apart by how
``imageguard.acl_db`` (or ``--db``) names it.

* ``/var/lib/imageguard/acl.db``, ``acl.db`` or ``sqlite:PATH``: an SQLite file;
* ``postgresql://USER@HOST:PORT/DBNAME?...`` (or ``postgres://``), or a libpq
  ``key=value`` string such as ``service=imageguard`` or ``host=/run/postgresql
  dbname=imageguard``: a PostgreSQL database, reached through psycopg 3.

A PostgreSQL location may not carry its password: it would then stand in the Apache
configuration, in ``ps`` output and in log lines. libpq takes it from a password file
instead (``passfile=FILE`` in the location, ``PGPASSFILE``, or ``~/.pgpass`` of the user
the process runs as), or from a ``service`` entry's own file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
_URL_SCHEMES = ("postgresql://", "postgres://")
_SQLITE_PREFIX = "sqlite:"
#: A libpq key=value string starts with one of libpq's keywords and an '='.
_KEYWORD_FORM = re.compile(r"\s*[a-z_]+\s*=")
_PASSWORD_HINT = (
    "put the password in a password file instead (passfile=FILE in the location, "
    "PGPASSFILE, or ~/.pgpass of the user the process runs as), mode 0600"
)


@dataclass(frozen=True)
class StoreLocation:
    """A parsed store location: its *kind* (``sqlite`` or ``postgresql``) and *target*
    (the file's path, or the libpq connection string as given)."""

    kind: str
    target: str

    @property
    def is_postgresql(self) -> bool:
        return self.kind == POSTGRESQL

    def __str__(self) -> str:
        return self.target


def looks_like_postgresql(text: str) -> bool:
    """True when *text* names a PostgreSQL database rather than an SQLite file."""
    if text.startswith(_URL_SCHEMES):
        return True
    return not text.startswith(("/", ".")) and bool(_KEYWORD_FORM.match(text))


def parse_location(text: str) -> StoreLocation:
    """The store *text* names; :class:`ConfigError` for an empty name, a PostgreSQL
    location with a password in it, or one libpq cannot parse."""
    if not text or not text.strip():
        raise ConfigError("no ACL store named")
    if text.startswith(_SQLITE_PREFIX):
        path = text[len(_SQLITE_PREFIX) :]
        if not path:
            raise ConfigError("sqlite: names no file (sqlite:/var/lib/imageguard/acl.db)")
        return StoreLocation(SQLITE, path)
    if not looks_like_postgresql(text):
        return StoreLocation(SQLITE, text)
    params = connection_params(text)
    if params.get("password"):
        raise ConfigError(f"the ACL store's location holds a password: {_PASSWORD_HINT}")
    return StoreLocation(POSTGRESQL, text)


def connection_params(conninfo: str) -> dict[str, str]:
    """libpq's reading of *conninfo* (a URL or key=value string), as a dict."""
    psycopg = import_psycopg()
    try:
        return {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(conninfo).items()}
    except psycopg.ProgrammingError as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else "malformed"
        raise ConfigError(f"not a PostgreSQL location libpq can read: {message}") from None


def import_psycopg():  # noqa: ANN201 - the module, typed by its stubs where used
    """psycopg 3, or a :class:`ConfigError` saying how to install it."""
    try:
        import psycopg
        import psycopg.conninfo
    except ImportError as exc:
        raise ConfigError(
            f"a PostgreSQL ACL store needs psycopg 3 and the system's libpq "
            f"(pip install 'imageguard[postgresql]'; apt install libpq5): {exc}"
        ) from None
    return psycopg
