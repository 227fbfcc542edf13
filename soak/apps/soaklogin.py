"""The soak's application: logs users in with mod_python.Session, as a real one would.

``GET /app/login?user=NAME&groups=a,b`` stores the user (and the groups, if any) in a
new session of the configured type (FileSession in the soak) and answers with the
session's id, which the clients then send as the ``pysid`` cookie.
"""

import urllib.parse
from typing import Any

from mod_python import Session, apache


def handler(req: Any) -> int:
    args = dict(urllib.parse.parse_qsl(req.args or ""))
    if req.uri.rstrip("/").rsplit("/", 1)[-1] != "login" or "user" not in args:
        return apache.HTTP_NOT_FOUND
    session = Session.Session(req)
    session["user"] = args["user"]
    if args.get("groups"):
        session["groups"] = args["groups"].split(",")
    session.save()
    req.content_type = "text/plain"
    req.write(session.id())
    return apache.OK
