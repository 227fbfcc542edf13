"""imageguard: gate an Apache image directory with an application's own logins.

The Python API for applications::

    from imageguard import AclStore, Identity

    with AclStore("/var/lib/imageguard/acl.db") as acl:
        acl.grant("users/bob/cat.jpg", "user:bob", "full")
        print(acl.decide("users/bob/cat.jpg", Identity("bob")).level)

The mod_python handlers live in :mod:`imageguard.handlers` and
:mod:`imageguard.gatekeeper` (imported by Apache only). The rest is grouped by concern,
one subpackage each: :mod:`~imageguard.policy` (who may see what),
:mod:`~imageguard.identity` (who is asking), :mod:`~imageguard.files` (which bytes are
sent), :mod:`~imageguard.store` (the ACL store), :mod:`~imageguard.apache` (the
mod_python glue), :mod:`~imageguard.cli` (the ``imageguard`` command) and
:mod:`~imageguard.support` (helpers several of them use, kept apart so that none has to
import another for one); the exceptions are in :mod:`imageguard.errors`.
"""

import importlib.util as _importlib_util
import sys as _sys

from .errors import ImageGuardError, RuleError, StoreError
from .policy.acl import Decision, Rule
from .policy.levels import Level
from .policy.principals import Identity
from .store import AclStore

__version__ = "0.1.0"

__all__ = [
    "AclStore",
    "Decision",
    "Identity",
    "ImageGuardError",
    "Level",
    "Rule",
    "RuleError",
    "StoreError",
    "__version__",
]


def _publish_whole(name: str) -> None:
    """Import submodule *name* and only then put it in ``sys.modules``.

    mod_python looks a handler module up in ``sys.modules`` without waiting for its
    import to finish, and Python puts a module there before running its code: under a
    threaded MPM, requests arriving together at a fresh Apache child could get a
    half-run module and fail with 500 ("contains no 'accesshandler'"). The modules
    Apache names are therefore run to the end here, while the package is being
    imported (which other threads wait for), and published in one step.
    """
    full = f"{__name__}.{name}"
    if full in _sys.modules:
        return
    spec = _importlib_util.find_spec(full)
    if spec is None or spec.loader is None:
        raise ImportError(f"imageguard cannot find its own module {full}", name=full)
    module = _importlib_util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _sys.modules[full] = module
    globals()[name] = module


_publish_whole("gatekeeper")
_publish_whole("handlers")
