"""The gatekeeper's steps, timed inside Apache: where a request's microseconds go.

The real code, nothing copied: :func:`imageguard.apache.adapters.gatekeeper` itself runs,
and its steps (scheduling the fixup, finding the runtime, gathering the facts,
:func:`imageguard.policy.decision.decide`, applying the outcome) and the policy's own (the gate,
the login, the ACL, the variant sent) are timed by wrapping those functions in this
interpreter. ``bench/profile.py`` runs this handler in an interpreter of its own
(``PythonInterpreter imageguard_timed``), so the wrappers never touch the gatekeeper it
measures next to it.

``fixup`` is scheduling the fixup (the fixup phase's own call, and the cleanup that
closes the descriptor, are not timed here; the whole request's CPU cost includes them);
``apply`` is applying the policy's effects and its outcome. Every
``bench.report_every`` requests a process writes one line to the error log:

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

from imageguard.apache import adapters
from imageguard.policy import decision

_clock = time.perf_counter_ns
_totals: dict[str, int] = {}
_count = [0]
_lock = threading.Lock()
_inside = threading.local()

#: The steps timed (name in the log line -> the functions of the module that make it up):
#: the adapter's, around ``decide``, and the policy's own inside it.
_ADAPTER_STEPS = {
    "fixup": ("_schedule_fixup",),
    "runtime": ("_runtime",),
    "facts": ("_facts",),
    "decide": ("decide",),
    "apply": ("_apply_progress", "_apply"),
}
_STEPS = {"d_gate": "_gate", "d_login": "_login", "d_acl": "_acl", "d_variant": "_variant"}


def _timing(name: str, step: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any) -> Any:
        start = _clock()
        try:
            return step(*args)
        finally:
            spent = _inside.spent
            spent[name] = spent.get(name, 0) + _clock() - start

    return timed


# The module globals the real gatekeeper looks up at each call, wrapped in place (this
# interpreter only): what runs is adapters.gatekeeper itself, step for step.
for _name, _functions in _ADAPTER_STEPS.items():
    for _function in _functions:
        setattr(adapters, _function, _timing(_name, getattr(adapters, _function)))
for _name, _function in _STEPS.items():
    setattr(decision, _function, _timing(_name, getattr(decision, _function)))


def accesshandler(req: Any) -> int:
    """:func:`imageguard.apache.adapters.gatekeeper`, its steps timed by the wrappers above."""
    _inside.spent = {}
    start = _clock()
    status = adapters.gatekeeper(req)
    _record(req, _clock() - start, _inside.spent)
    return status


def _record(req: Any, total: int, spent: dict[str, int]) -> None:
    every = int(req.get_options().get("bench.report_every", "5000"))
    with _lock:
        for name in (*_ADAPTER_STEPS, *_STEPS):
            _totals[name] = _totals.get(name, 0) + spent.get(name, 0)
        inner = sum(spent.get(name, 0) for name in _STEPS)
        _totals["d_rest"] = _totals.get("d_rest", 0) + spent.get("decide", 0) - inner
        _totals["total"] = _totals.get("total", 0) + total
        _count[0] += 1
        if _count[0] < every:
            return
        parts = " ".join(f"{k}={v / _count[0] / 1000:.2f}" for k, v in _totals.items())
        req.log_error(f"TIMED n={_count[0]} {parts}", apache.APLOG_ERR)
        _totals.clear()
        _count[0] = 0
