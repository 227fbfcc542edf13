"""Access phase: let only image files through, judged by the file Apache mapped.

The handler from the 2006 mailing-list thread, done right:

* it looks at ``req.filename`` (the file Apache is about to send), never at
  ``req.uri`` (what the client typed);
* it refuses extra path after the file name (``/photo.jpg/x.jpg``);
* every path through the function returns a status.

``uri_accesshandler`` is the wrong way, kept only to show what it lets through.
"""

import os
from typing import Any

from mod_python import apache

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".webp"}


def accesshandler(req: Any) -> int:
    extension = os.path.splitext(req.filename or "")[1].lower()
    if extension not in IMAGE_EXTENSIONS:
        req.log_error(f"gate_by_extension: not an image: {req.filename}", apache.APLOG_INFO)
        return apache.HTTP_FORBIDDEN
    if req.path_info:
        req.log_error(f"gate_by_extension: extra path {req.path_info!r}", apache.APLOG_INFO)
        return apache.HTTP_NOT_FOUND
    return apache.OK  # no objection: the Require lines still apply


def uri_accesshandler(req: Any) -> int:
    """WRONG: judges the URL. /notes.txt/x.jpg ends in .jpg but maps to notes.txt."""
    extension = os.path.splitext(req.uri)[1].lower()
    if extension not in IMAGE_EXTENSIONS:
        return apache.HTTP_FORBIDDEN
    return apache.OK
