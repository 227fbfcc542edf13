"""What an application does when a user uploads a picture into their own folder.

The rule ``users/{user}/**`` already lets the owner see it: nothing to grant. To show
one picture to one other user, the application adds a rule for that file, and takes
it back the same way (each call is one transaction; Apache sees it at the next request).
"""

import os
import tempfile

from imageguard import AclStore


def store_upload(root: str, user: str, name: str, data: bytes) -> str:
    """Write *data* as users/USER/NAME below *root*, whole or not at all."""
    folder = os.path.join(root, "users", user)
    os.makedirs(folder, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=".upload-")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(temporary, 0o644)  # mkstemp makes it 0600: Apache's user must read it
    os.replace(temporary, os.path.join(folder, name))
    return f"users/{user}/{name}"


def share_with(acl_db: str, relpath: str, friend: str) -> None:
    with AclStore(acl_db) as acl:
        acl.grant(relpath, f"user:{friend}", "full")


def unshare(acl_db: str, relpath: str, friend: str) -> None:
    with AclStore(acl_db) as acl:
        acl.revoke(relpath, f"user:{friend}")
