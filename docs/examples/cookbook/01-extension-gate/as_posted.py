"""The access handler from the 2006 mailing-list thread, retold for images.

Its bug is kept on purpose: the second ``return`` sits under the ``if``, right after
the first, so it can never run. A file with any other extension falls off the end of
the function, which then returns None. mod_python does not read None as "no
objection": the request ends with 500 Internal Server Error.
"""

import os
from typing import Any

from mod_python import apache


def accesshandler(req: Any) -> int:
    if os.path.splitext(req.filename)[1] == ".jpg":
        return apache.OK
        return apache.HTTP_FORBIDDEN
