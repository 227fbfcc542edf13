"""The floor: one trivial access handler. What mod_python's dispatch alone costs."""

from typing import Any

from mod_python import apache


def accesshandler(req: Any) -> int:
    return apache.OK
