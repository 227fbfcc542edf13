"""The gatekeeper's steps, timed inside Apache: where a request's microseconds go.

The real code, nothing copied: the same calls as :func:`imageguard.adapters.gatekeeper`
(gather the facts, :func:`imageguard.decision.decide`, apply the outcome), each between
two clock readings, and the policy's own steps (the gate, the login, the ACL, the
variant sent) timed by wrapping the decision module's step functions in this
interpreter. ``bench/profile.py`` runs this handler in an interpreter of its own
(``PythonInterpreter imageguard_timed``), so the wrappers never touch the gatekeeper it
measures next to it.

``fixup`` is scheduling the fixup (the fixup phase's own call is not timed here; the
whole request's cost as wrk sees it includes it). Every ``bench.report_every``
requests a process writes one line to the error log:

    TIMED n=20000 fixup=1.1 runtime=2.0 facts=3.2 decide=20.1 d_gate=8.0 ... total=38.0

(microseconds, averages over those requests; the ``d_`` steps are parts of ``decide``,
``d_rest`` what it spends outside them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from mod_python import apache

from imageguard import adapters, decision

_clock = time.perf_counter_ns
_totals: dict[str, int] = {}
_count = [0]
_lock = threading.Lock()
_inside = threading.local()

#: The decision's steps timed inside ``decide`` (name in the log line -> function).
_STEPS = {"d_gate": "_gate", "d_login": "_login", "d_acl": "_acl", "d_variant": "_variant"}


def _timing(name: str, step: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any) -> Any:
        start = _clock()
        try:
            return step(*args)
        finally:
            spent = _inside.__dict__.setdefault("spent", {})
            spent[name] = spent.get(name, 0) + _clock() - start

    return timed


for _name, _function in _STEPS.items():
    setattr(decision, _function, _timing(_name, getattr(decision, _function)))


def accesshandler(req: Any) -> int:
    """:func:`imageguard.adapters.gatekeeper`, step by step between clock readings."""
    _inside.spent = {}
    marks = [("start", _clock())]
    try:
        adapters._schedule_fixup(req)
        marks.append(("fixup", _clock()))
        runtime = adapters._runtime(req)
        marks.append(("runtime", _clock()))
        facts = adapters._facts(req, runtime)
        marks.append(("facts", _clock()))
        progress = decision.Progress()
        try:
            outcome = decision.decide(facts, runtime, progress)
        finally:
            adapters._apply_progress(req, progress)
        marks.append(("decide", _clock()))
        status = adapters._apply(req, outcome, facts.file)
        if status == apache.OK:
            req.subprocess_env[adapters.ADMITTED] = "1"
        marks.append(("apply", _clock()))
    except Exception as exc:
        return adapters._fail_closed(req, "gatekeeper", exc)
    _record(req, marks, _inside.spent)
    return status


def _record(req: Any, marks: list[tuple[str, int]], spent: dict[str, int]) -> None:
    every = int(req.get_options().get("bench.report_every", "5000"))
    decided = dict((name, after - before) for (_, before), (name, after) in zip(marks, marks[1:]))
    with _lock:
        for name, value in decided.items():
            _totals[name] = _totals.get(name, 0) + value
        for name in _STEPS:
            _totals[name] = _totals.get(name, 0) + spent.get(name, 0)
        rest = decided.get("decide", 0) - sum(spent.values())
        _totals["d_rest"] = _totals.get("d_rest", 0) + rest
        _totals["total"] = _totals.get("total", 0) + marks[-1][1] - marks[0][1]
        _count[0] += 1
        if _count[0] < every:
            return
        parts = " ".join(f"{k}={v / _count[0] / 1000:.2f}" for k, v in _totals.items())
        req.log_error(f"TIMED n={_count[0]} {parts}", apache.APLOG_ERR)
        _totals.clear()
        _count[0] = 0
