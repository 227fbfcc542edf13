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
