"""The floor: one trivial access handler. What mod_python's dispatch alone costs."""

from mod_python import apache


def accesshandler(req):
    return apache.OK
