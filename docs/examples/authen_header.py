"""A TOY login: authentication from a request header, authorization from a table.

NEVER USE THIS IN PRODUCTION. Any client can send any header, so anyone can claim
to be anyone. It exists only to show the authentication and authorization phases
with nothing else in the way; imageguard takes the user from the application's
session instead.

authenhandler: who is asking? Sets req.user from the X-Demo-User header.
authzhandler:  may they see this file? Looks the file name up in ALLOWED.
"""

import os
from typing import Any

from mod_python import apache

# File name -> users who may see it. Files not listed here are left to the
# directory's Require lines.
ALLOWED = {
    "alice.jpg": {"alice"},
    "team.jpg": {"alice", "bob"},
}


def authenhandler(req: Any) -> int:
    user = req.headers_in.get("X-Demo-User", "").strip()
    if not user:
        return apache.HTTP_UNAUTHORIZED  # ends the request: 401
    req.user = user  # required: OK without req.user is a 500
    return apache.OK


def authzhandler(req: Any) -> int:
    users = ALLOWED.get(os.path.basename(req.filename or ""))
    if users is None:
        return apache.DECLINED  # not in the table: the Require lines decide
    if req.user in users:
        return apache.OK  # ends authorization: the Require lines are not evaluated
    return apache.HTTP_FORBIDDEN
