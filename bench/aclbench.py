"""The ACL decision in-process: warm and cold lookups against a store of a million rules.

* **warm**: :meth:`CachedAcl.decide` for paths it has seen, the store unchanged: what
  every image request pays;
* **cold**: the first decision after a grant, which finds the change stamp moved, opens
  a new snapshot and asks SQLite for the path's candidate rules;
* **seen**: a grant, then a revoke, each visible to the very next decision.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from imageguard.policy.levels import Level
from imageguard.policy.principals import Identity
from imageguard.store import AclStore, CachedAcl


@dataclass(frozen=True)
class AclFigures:
    rules: int
    build_s: float
    warm_p50_us: float
    warm_p99_us: float
    cold_p50_us: float
    cold_max_us: float
    grant_seen: bool
    revoke_seen: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _store(path: Path, rules: int) -> float:
    started = time.perf_counter()
    lines = [f"rule albums/a{i // 1000}/p{i}.jpg user:u{i % 5000} full" for i in range(rules)]
    lines += [
        "rule albums/ authenticated thumb",
        "rule 'albums/*/cover.jpg' anyone preview",
        "rule 'users/{user}/**' authenticated full",
    ]
    lines += [f"member group{i % 100} u{i}" for i in range(5000)]
    with AclStore.create(path) as store:
        store.import_text("\n".join(lines) + "\n", replace=True)
    return time.perf_counter() - started


def _timed(acl: CachedAcl, relpath: str, identity: Identity) -> tuple[float, Level]:
    started = time.perf_counter_ns()
    level = acl.decide(relpath, identity).level
    return (time.perf_counter_ns() - started) / 1000, level


def measure(rules: int = 1_000_000, samples: int = 20_000) -> AclFigures:
    """Build a store of *rules* rules in a temporary directory and time decisions."""
    with tempfile.TemporaryDirectory(prefix="imageguard-aclbench-") as directory:
        db = Path(directory) / "acl.db"
        build = _store(db, rules)
        acl = CachedAcl(str(db))
        paths = [f"albums/a{i // 1000}/p{i}.jpg" for i in range(0, rules, max(1, rules // 500))]
        viewers = [Identity(f"u{i}", frozenset({"staff"})) for i in range(0, 5000, 50)]
        for relpath in paths:  # first sight of each path: fills the snapshot
            for viewer in viewers[:5]:
                acl.decide(relpath, viewer)
        warm = []
        for n in range(samples):
            relpath = paths[n % len(paths)]
            warm.append(_timed(acl, relpath, viewers[n % 5])[0])
        cold = []
        with AclStore(db) as store:
            for n in range(50):
                relpath = paths[(n * 7) % len(paths)]
                store.grant(f"albums/x{n}.jpg", "user:nobody", "full")  # any write
                cold.append(_timed(acl, relpath, viewers[n % len(viewers)])[0])
            target, viewer = paths[3], Identity("stranger")
            before = _timed(acl, target, viewer)[1]
            store.grant(target, "user:stranger", "full")
            granted = _timed(acl, target, viewer)[1]
            store.revoke(target, "user:stranger")
            revoked = _timed(acl, target, viewer)[1]
        warm.sort()
        return AclFigures(
            rules=rules,
            build_s=round(build, 1),
            warm_p50_us=round(statistics.median(warm), 2),
            warm_p99_us=round(warm[int(len(warm) * 0.99)], 2),
            cold_p50_us=round(statistics.median(cold), 1),
            cold_max_us=round(max(cold), 1),
            grant_seen=before is Level.THUMB and granted is Level.FULL,
            revoke_seen=revoked is Level.THUMB,
        )
