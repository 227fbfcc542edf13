"""The store's change stamp: how a reader learns, with one ``stat``, that the store changed.

The stamp is a file beside the store (``acl.db.changes``) that every committed write
through :class:`~imageguard.store.AclStore` makes one byte longer, after the commit. A
reader (:class:`~imageguard.store.CachedAcl`) compares the stamp's
:func:`~imageguard.files.fileversion.stat_validator` with the one it last saw: no SQLite
transaction (whose shared-memory locks are what many Apache processes would otherwise
contend on), and a change made through the CLI or the API is seen by the very next
request. As a safety net for writes made with other tools, readers also ask SQLite's
``data_version`` every :data:`SAFETY_CHECK_S`.
"""

from __future__ import annotations

import os

STAMP_SUFFIX = ".changes"
#: The change stamp is replaced by an empty one (a new inode) when it grows past this.
STAMP_LIMIT = 1 << 20
#: How often a reader also asks SQLite itself whether anything changed.
SAFETY_CHECK_S = 1.0


def stamp_path(path: str) -> str:
    """The change stamp of the store at *path*."""
    return path + STAMP_SUFFIX


def bump_stamp(path: str) -> None:
    """Record one committed change: make the stamp a byte longer (a new, empty one when large).

    Called after the commit, so a reader that sees the new stamp also sees the new data.
    """
    stamp = stamp_path(path)
    try:
        if os.stat(stamp).st_size >= STAMP_LIMIT:
            fresh = stamp + ".new"
            with open(fresh, "wb"):
                pass
            os.replace(fresh, stamp)
    except FileNotFoundError:
        pass
    fd = os.open(stamp, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, b".")
    finally:
        os.close(fd)
