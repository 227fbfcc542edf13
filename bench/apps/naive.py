"""The naive gatekeeper: what mod_python's documentation leads a user to write.

The authentication handler opens the session with ``Session.Session(req)`` (which locks
it until the request ends, rewrites its access time, and creates a session for a
visitor who has none); the authorization handler opens the database and asks it, for
every request. It checks the same thing imageguard checks for the benchmark's files:
a rule on the file, or on its folder, for the user or for everyone logged in.
"""

import os
import sqlite3
from typing import Any

from mod_python import Session, apache


def authenhandler(req: Any) -> int:
    session = Session.Session(req)
    user = session.get("user")
    if not user:
        return apache.HTTP_UNAUTHORIZED
    req.user = user
    return apache.OK


def authzhandler(req: Any) -> int:
    options = req.get_options()
    relpath = os.path.relpath(req.filename, options["bench.root"])
    folder = os.path.dirname(relpath)
    connection = sqlite3.connect(options["bench.acl_db"])
    try:
        row = connection.execute(
            "SELECT level FROM rules WHERE pattern IN (?, ?) "
            "AND principal IN (?, 'authenticated') AND level = 'full' LIMIT 1",
            (relpath, folder + "/", "user:" + req.user),
        ).fetchone()
    finally:
        connection.close()
    return apache.OK if row else apache.HTTP_FORBIDDEN
