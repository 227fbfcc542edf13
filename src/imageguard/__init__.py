"""imageguard: gate an Apache image directory with an application's own logins.

The Python API for applications::

    from imageguard import AclStore, Identity

    with AclStore("/var/lib/imageguard/acl.db") as acl:
        acl.grant("users/bob/cat.jpg", "user:bob", "full")
        print(acl.decide("users/bob/cat.jpg", Identity("bob")).level)

The mod_python handlers live in :mod:`imageguard.handlers` (imported by Apache only).
"""

from .acl import Decision, Rule
from .errors import ImageGuardError, RuleError, StoreError
from .levels import Level
from .principals import Identity

# Everything imageguard.handlers needs is imported here, with the package, on purpose:
# mod_python's import_module() returns a module from sys.modules without waiting for it
# to finish importing, so a thread arriving while another imports the handlers module
# would find it half-initialised ("contains no 'accesshandler'"). With its dependencies
# already loaded, the handlers module itself executes in microseconds.
from .runtime import Runtime, runtime_for  # noqa: F401  (preloaded, see above)
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
