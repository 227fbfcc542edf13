"""Fixups: serve a placeholder image instead of a draft, and let Apache send it.

A request for draft-<anything> gets placeholder.jpg from the same directory. The
handler changes which file Apache's own file handler will send; Python never reads
the bytes.

Apache stat()ed the requested file when it mapped the URL, and its file handler
takes the Content-Length and the number of bytes to send from that stat result
(req.finfo), not from req.filename. So both must change together.
``fixuphandler_without_finfo`` shows what happens otherwise.
"""

import os
from typing import Any, Optional

from mod_python import apache

PLACEHOLDER = "placeholder.jpg"


def _placeholder_for(req: Any) -> Optional[str]:
    """The placeholder's path when the request is for a draft, else None."""
    directory, name = os.path.split(req.filename or "")
    if not name.startswith("draft-"):
        return None
    return os.path.join(directory, PLACEHOLDER)


def fixuphandler(req: Any) -> int:
    placeholder = _placeholder_for(req)
    if placeholder is None:
        return apache.DECLINED
    req.filename = placeholder
    req.finfo = apache.stat(placeholder, apache.APR_FINFO_MIN)  # size, mtime, type
    return apache.OK


def fixuphandler_without_finfo(req: Any) -> int:
    """WRONG: only req.filename changes; the old file's size is still used."""
    placeholder = _placeholder_for(req)
    if placeholder is None:
        return apache.DECLINED
    req.filename = placeholder
    return apache.OK
