"""An access handler that lets only image files through (the thread's gate, fixed).

* Every path through the function returns a status: OK ("no objection", the
  ``Require`` lines still decide) or 403.
* It judges ``req.filename``, the file Apache mapped the URL to, never ``req.uri``:
  ``/notes.txt/x.jpg`` ends in ``.jpg`` but maps to ``notes.txt``.
* Extra path after a file name (``req.path_info``) is refused too.
"""

import os
from typing import Any

from mod_python import apache

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp"})


def accesshandler(req: Any) -> int:
    extension = os.path.splitext(req.filename or "")[1].lower()
    if extension in IMAGE_EXTENSIONS and not req.path_info:
        return apache.OK
    return apache.HTTP_FORBIDDEN
