"""The ACL store: rules, group memberships and revocations, in one SQLite file or one
PostgreSQL database (for several web servers sharing it).

* :mod:`.aclstore`: :class:`AclStore`, the read-write API for the CLI and applications,
  and the model's SQL, written once for both databases;
* :mod:`.cached`: :class:`CachedAcl`, the read side used inside Apache, which keeps what
  it read in memory and per request only asks whether the store changed;
* :mod:`.freshness`: how it asks: the SQLite file's change stamp, or the PostgreSQL
  listener's generation;
* :mod:`.exchange`: the records the store hands out, and the text format of
  ``imageguard export`` and ``imageguard import``;
* :mod:`.storage`: the small interface between the model and the database, which
  :func:`~.storage.open_storage` picks by the location's form (:mod:`.location`);
* :mod:`.sqlite`: the SQLite storage: WAL mode, the busy timeout, one transaction per
  write, the schema version and its migrations; :mod:`.stamp`, its change stamp, a file
  beside the store that every committed write makes one byte longer;
* :mod:`.postgres`: the PostgreSQL storage (psycopg 3), whose triggers count and announce
  every change; :mod:`.listener`, the background connection that hears them.

The names below are the store's API (``from imageguard.store import AclStore``); the
constants the tests adjust are set in the module that uses them (``SAFETY_CHECK_S`` in
:mod:`.freshness`, ``STAMP_LIMIT`` in :mod:`.stamp`, ``BUSY_TIMEOUT_S`` in :mod:`.sqlite`
and :mod:`.cached`), not here.
"""

from .aclstore import AclStore
from .cached import CACHE_LIMIT, CachedAcl
from .exchange import ImportSummary, Membership, parse_export
from .location import StoreLocation, parse_location
from .sqlite import BUSY_TIMEOUT_S, SCHEMA_VERSION
from .stamp import SAFETY_CHECK_S, STAMP_LIMIT, STAMP_SUFFIX, bump_stamp, stamp_path

# Importable from here as they were from the single module the store was (tests use them).
from .freshness import stat_key as _stat_key  # noqa: F401  # isort: skip
from .sqlite import _MIGRATIONS as _MIGRATIONS  # isort: skip

__all__ = [
    "BUSY_TIMEOUT_S",
    "CACHE_LIMIT",
    "SAFETY_CHECK_S",
    "SCHEMA_VERSION",
    "STAMP_LIMIT",
    "STAMP_SUFFIX",
    "AclStore",
    "CachedAcl",
    "ImportSummary",
    "Membership",
    "StoreLocation",
    "bump_stamp",
    "parse_export",
    "parse_location",
    "stamp_path",
]
