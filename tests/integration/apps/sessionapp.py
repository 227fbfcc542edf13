"""A stand-in for "the application": logs users in with mod_python.Session.

It runs inside Apache as a content handler (``SetHandler mod_python``), exactly as an
application using mod_python sessions would, so the sessions imageguard reads in the
tests are real ones. Actions, by the last URL segment:

* ``login?user=NAME&groups=a,b&timeout=SECONDS``: a session holding the user and groups;
* ``visit``: a session with no user in it (a visitor who has not logged in);
* ``logout``: invalidates the session;
* ``hold?seconds=S``: keeps the session locked (mod_python's default) for S seconds;
* ``whoami``: the user name in the session, if any.
"""

import time
import urllib.parse

from mod_python import Session, apache


def handler(req):
    action = req.uri.rstrip("/").rsplit("/", 1)[-1]
    args = dict(urllib.parse.parse_qsl(req.args or ""))
    req.content_type = "text/plain"
    session = Session.Session(req)
    if action == "login":
        session["user"] = args["user"]
        if args.get("groups"):
            session["groups"] = args["groups"].split(",")
        if args.get("timeout"):
            session.set_timeout(int(args["timeout"]))
        session.save()
    elif action == "visit":
        session["visits"] = session.get("visits", 0) + 1
        session.save()
    elif action == "logout":
        session.invalidate()
    elif action == "hold":
        session.save()
        time.sleep(float(args.get("seconds", "1")))
    elif action != "whoami":
        return apache.HTTP_NOT_FOUND
    req.write(f"{action} {session.id()} {session.get('user', '-')}\n")
    return apache.OK
