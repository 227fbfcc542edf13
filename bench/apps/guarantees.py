"""The floor, plus each piece of work imageguard's guarantees cannot do without, alone.

``bench/profile.py`` serves one directory per handler here, each in imageguard's own
interpreter with ``Require all granted``, so that the difference between two of them
is what one piece costs inside Apache:

* :func:`floor`: an access handler that does nothing (the benchmark's floor);
* the same with :func:`fixup` as a ``PythonFixupHandler`` that does nothing: the second
  mod_python dispatch of every request, which the fixup's checks need;
* :func:`fresh`: the two ``stat`` calls that make a logout and a change of rights seen by
  the next request (the session file's and the ACL's change stamp; here two files the
  options name);
* :func:`bound`: the file opened below its folder without following links
  (:func:`~imageguard.files.beneath.open_beneath`), its ``fstat``, and Apache handed
  ``/proc/self/fd/N`` (the bytes sent are the bytes checked), the descriptor closed when
  the request ends, as the gatekeeper does;
* :func:`everything`: ``fresh`` and ``bound`` together, with the fixup.

What the gatekeeper costs beyond ``everything`` is its own Python: the facts, the
policy and the outcome.
"""

from __future__ import annotations

import os
from typing import Any

from mod_python import apache

from imageguard.files.beneath import open_beneath
from imageguard.files.fileversion import OPEN_FLAGS


def floor(req: Any) -> int:
    return apache.OK


def fixup(req: Any) -> int:
    return apache.OK


def _fresh(req: Any) -> None:
    options = req.get_options()
    os.stat(options["bench.session_file"])
    os.stat(options["bench.stamp"])


def _bound(req: Any) -> None:
    folder, name = os.path.split(req.filename)
    fd = open_beneath(folder, name, OPEN_FLAGS)
    req.register_cleanup(os.close, fd)
    os.fstat(fd)
    req.filename = f"/proc/self/fd/{fd}"
    req.content_type = "image/jpeg"


def fresh(req: Any) -> int:
    _fresh(req)
    return apache.OK


def bound(req: Any) -> int:
    _bound(req)
    return apache.OK


def everything(req: Any) -> int:
    _fresh(req)
    _bound(req)
    return apache.OK
