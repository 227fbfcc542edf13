"""The names imageguard shares with Apache's configuration, each defined once.

The generated configuration (:mod:`imageguard.apache.apacheconf`) writes them and the
handlers (:mod:`imageguard.apache.adapters`) read them; both import them from here.
"""

from __future__ import annotations

#: The prefix of every ``PythonOption`` imageguard defines.
OPTION_PREFIX = "imageguard."
#: The modules Apache configurations name: one handler per phase, and the one-phase one.
HANDLER_MODULE = "imageguard.handlers"
GATEKEEPER_MODULE = "imageguard.gatekeeper"
#: The fixup every imageguard handler schedules for its request.
FIXUP_HANDLER = f"{HANDLER_MODULE}::fixuphandler"
#: The mod_python interpreter the handlers run in (their own, so their PythonPath
#: cannot clash with an application's).
INTERPRETER = "imageguard"
#: What the gatekeeper sets in the request's environment for what it admits; its
#: configuration has Apache itself (``Require env``) refuse anything without it.
ADMITTED_ENV = "IMAGEGUARD_ADMITTED"
#: Where the configuration's ``SetEnvIf Cookie`` line puts the login cookie's value.
LOGIN_COOKIE_ENV = "IMAGEGUARD_LOGIN_COOKIE"
#: The environment variables the command line reads its defaults from.
DB_ENV = "IMAGEGUARD_DB"
SECRET_ENV = "IMAGEGUARD_SECRET_FILE"
