"""The mod_python handlers, by phase: name this module in Apache's configuration.

    PythonAccessHandler imageguard.handlers   # extension and path gate
    PythonAuthenHandler imageguard.handlers   # who is asking, from the application's session
    PythonAuthzHandler  imageguard.handlers   # what they may see, from the ACL store

(the access handler also works alone, from an ``.htaccess`` file). Every one of them
schedules :func:`fixuphandler` for its request, which refuses anything no imageguard
handler admitted: a ``PythonFixupHandler`` line is not needed.

This module is deliberately tiny, imports nothing when it is loaded, and is published
in ``sys.modules`` only once it has run to the end (see ``imageguard/__init__.py``):
mod_python's ``import_module()`` hands out a module found in ``sys.modules`` without
waiting for its import to finish, so under a threaded MPM requests arriving together
at a fresh Apache child could otherwise find a half-run module and fail with a 500.
Each function's ``import`` of :mod:`imageguard.apache.adapters` waits, as Python's import
system does, until the implementation is complete. Should that import fail (Pillow
missing from Apache's ``PythonPath``, say), the request is refused with a 500 and one
log line, never a traceback, not even with ``PythonDebug On``.
"""


def _unavailable(req, exc: BaseException) -> int:  # noqa: ANN001
    """Refuse a request whose handler could not be loaded (500, one log line, and the
    access log's note, ``imageguard.apache.adapters.LOG_NOTE``)."""
    try:  # noqa: SIM105 - contextlib is not imported here (see the module docstring)
        req.log_error(f"imageguard: refused, its handlers cannot be loaded: {exc!r}"[:2000], 3)
    except BaseException:
        pass
    try:  # noqa: SIM105
        req.notes["imageguard"] = "- error:unavailable"
    except BaseException:
        pass
    return 500


def calling(name: str, doc: str):  # noqa: ANN201 - a mod_python handler
    """A handler that imports :mod:`imageguard.apache.adapters` when first called and
    calls its function *name* (500 and one log line if the import fails)."""

    def handler(req):  # noqa: ANN001
        try:  # as "from .apache.adapters import <name>" would: the module sys.modules has
            adapters = __import__("apache.adapters", globals(), None, (name,), 1)
        except Exception as exc:
            return _unavailable(req, exc)
        return getattr(adapters, name)(req)

    handler.__name__ = handler.__qualname__ = name
    handler.__doc__ = doc
    return handler


accesshandler = calling(
    "accesshandler", "Access phase: refuse methods, path tricks and files the gate does not allow."
)
authenhandler = calling(
    "authenhandler", "Authentication phase: ``req.user`` from the application's session."
)
authzhandler = calling(
    "authzhandler", "Authorization phase: serve the image only if the ACL grants a served level."
)
fixuphandler = calling(
    "fixuphandler", "Fixup phase: refuse what no imageguard handler admitted (scheduled by each)."
)
