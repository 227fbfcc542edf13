"""The mod_python handlers, by phase: name this module in Apache's configuration.

    PythonAccessHandler imageguard.handlers   # extension and path gate
    PythonAuthenHandler imageguard.handlers   # who is asking, from the application's session
    PythonAuthzHandler  imageguard.handlers   # what they may see, from the ACL store

(the access handler also works alone, from an ``.htaccess`` file).

This module is deliberately tiny, imports nothing when it is loaded, and is published
in ``sys.modules`` only once it has run to the end (see ``imageguard/__init__.py``):
mod_python's ``import_module()`` hands out a module found in ``sys.modules`` without
waiting for its import to finish, so under a threaded MPM requests arriving together
at a fresh Apache child could otherwise find a half-run module and fail with a 500.
Each function's ``import`` of :mod:`imageguard.adapters` waits, as Python's import
system does, until the implementation is complete.
"""


def accesshandler(req):  # noqa: ANN001, ANN201 - mod_python's request object, an int status
    """Access phase: refuse methods, path tricks and files the gate does not allow."""
    from .adapters import accesshandler as handle

    return handle(req)


def authenhandler(req):  # noqa: ANN001, ANN201
    """Authentication phase: ``req.user`` from the application's session, read-only."""
    from .adapters import authenhandler as handle

    return handle(req)


def authzhandler(req):  # noqa: ANN001, ANN201
    """Authorization phase: serve the image only if the ACL grants a served level."""
    from .adapters import authzhandler as handle

    return handle(req)
