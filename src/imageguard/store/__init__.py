"""The ACL store: rules, group memberships and revocations in one SQLite file.

* :mod:`.aclstore`: :class:`AclStore`, the read-write API for the CLI and applications;
* :mod:`.cached`: :class:`CachedAcl`, the read side used inside Apache, which keeps what
  it read in memory and per request only checks the change stamp;
* :mod:`.stamp`: the change stamp, a file beside the store that every committed write
  makes one byte longer, so that one ``stat`` tells a reader whether anything changed;
* :mod:`.exchange`: the records the store hands out, and the text format of
  ``imageguard export`` and ``imageguard import``;
* :mod:`.database`: the SQLite plumbing under them: WAL mode, the busy timeout, one
  transaction per write, the schema version and its migrations.

The names below are the store's API (``from imageguard.store import AclStore``); the
constants the tests adjust are set in the module that uses them (``SAFETY_CHECK_S`` in
:mod:`.cached`, ``STAMP_LIMIT`` in :mod:`.stamp`, ``BUSY_TIMEOUT_S`` in :mod:`.database`
and :mod:`.cached`), not here.
"""

from .aclstore import AclStore
from .cached import CACHE_LIMIT, CachedAcl
from .database import BUSY_TIMEOUT_S, SCHEMA_VERSION
from .exchange import ImportSummary, Membership, parse_export
from .stamp import SAFETY_CHECK_S, STAMP_LIMIT, STAMP_SUFFIX, bump_stamp, stamp_path

# Importable from here as they were from the single module the store was (tests use them).
from .cached import _stat_key as _stat_key  # isort: skip
from .database import _MIGRATIONS as _MIGRATIONS  # isort: skip

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
    "bump_stamp",
    "parse_export",
    "stamp_path",
]
