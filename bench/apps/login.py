"""Makes the benchmark's sessions the way an application does: with mod_python.Session.

``GET /login?user=NAME`` stores NAME in a new FileSession and answers with its id.
"""

import urllib.parse
from typing import Any

from mod_python import Session, apache


def handler(req: Any) -> int:
    args = dict(urllib.parse.parse_qsl(req.args or ""))
    session = Session.Session(req)
    session["user"] = args["user"]
    session.save()
    req.content_type = "text/plain"
    req.write(session.id())
    return apache.OK
