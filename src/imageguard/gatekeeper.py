"""The one-phase handler: name this module in Apache's configuration.

    PythonAccessHandler imageguard.gatekeeper
    Require env IMAGEGUARD_ADMITTED

It does in the access phase what :mod:`imageguard.handlers` does in three (gate,
login, ACL), with the same answers, for one Python call per request instead of three;
Apache's own ``Require env`` then refuses whatever it did not admit, and the fixup it
schedules (:func:`imageguard.handlers.fixuphandler`) refuses what the configuration let
through anyway. Like :mod:`imageguard.handlers`, it imports nothing when loaded and is
published whole (see there why).
"""


def accesshandler(req):  # noqa: ANN001, ANN201 - mod_python's request object, an int status
    """Access phase: gate, login and ACL in one; admitted requests are marked for Apache."""
    try:
        from .apache.adapters import gatekeeper as handle
    except Exception as exc:
        from .handlers import _unavailable

        return _unavailable(req, exc)
    return handle(req)
