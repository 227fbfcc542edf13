"""The gatekeeper's steps, timed inside Apache: where a request's microseconds go.

The same calls, in the same order, as :func:`imageguard.adapters.gatekeeper` on its
way to letting a logged-in viewer have the original, each between two clock readings
(``fixup`` is scheduling the fixup; the fixup phase's own call is not timed here, the
whole request's cost as wrk sees it includes it).
Every ``bench.report_every`` requests a process writes one line to the error log:

    TIMED n=20000 state=3.1 gate=7.9 login=12.4 ... total=38.0

(microseconds, averages over those requests). Used by ``bench/profile.py``; a request
that takes another way (a refusal, a rendition) is answered by the real gatekeeper.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from mod_python import apache

from imageguard import adapters

_clock = time.perf_counter_ns
_totals: dict[str, int] = {}
_count = [0]
_lock = threading.Lock()


def accesshandler(req: Any) -> int:
    marks = [("start", _clock())]

    def mark(name: str) -> None:
        marks.append((name, _clock()))

    adapters._schedule_fixup(req)
    mark("fixup")
    state = adapters._new_state(req)
    mark("state")
    if adapters._gate_refusal(req, state) is not None:
        return adapters.gatekeeper(req)
    mark("gate")
    login = adapters._login(req, state)
    mark("login")
    if adapters._authenticate(req, state, login) != apache.OK:
        return adapters.gatekeeper(req)
    mark("authenticate")
    adapters._decision(state)
    mark("acl")
    status = adapters._authorize(req, state, login)
    mark("authorize")
    if status == apache.OK:
        req.subprocess_env[adapters.ADMITTED] = "1"
    mark("admit")
    _record(req, marks)
    return status


def _record(req: Any, marks: list[tuple[str, int]]) -> None:
    every = int(req.get_options().get("bench.report_every", "5000"))
    with _lock:
        for (_, before), (name, after) in zip(marks, marks[1:]):
            _totals[name] = _totals.get(name, 0) + after - before
        _totals["total"] = _totals.get("total", 0) + marks[-1][1] - marks[0][1]
        _count[0] += 1
        if _count[0] < every:
            return
        parts = " ".join(f"{k}={v / _count[0] / 1000:.2f}" for k, v in _totals.items())
        req.log_error(f"TIMED n={_count[0]} {parts}", apache.APLOG_ERR)
        _totals.clear()
        _count[0] = 0
