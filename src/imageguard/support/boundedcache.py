"""A bounded in-memory cache for the handlers: at most *maxsize* entries, the oldest put
evicted first, lookups as fast as a dictionary's.

Every cache the handlers keep between requests (content verdicts, decoded sessions, ACL
decisions, rendition names, ...) is one of these, so a process's memory stays bounded
whatever names, cookies or links clients send.

**Eviction: first in, first out.** When a :meth:`~BoundedCache.put` of a new key finds
the cache holding *maxsize* entries, the entry put longest ago is dropped first (one
entry, in constant time). A hit records nothing, so :meth:`~BoundedCache.get` is a single
C-level dictionary look-up: measured on CPython 3.11, about 32 ns per hit, against
about 26 ns for a plain ``dict.get`` on a module-level dictionary and 61 ns for a method
written in Python that calls one. Keeping recency (LRU with ``move_to_end`` on every
hit) measured 72 ns per hit without a lock and 180 ns with one; the caches are sized
well above what a process's working set holds, so the better choice of victim would
rarely matter, while every request would pay for it. Emptying the whole cache when it
is full, the policy this module replaced, is as cheap on hits but makes every hot entry
miss at once after each overflow; here a hot entry costs at most one extra miss per
*maxsize* insertions of other keys. (A plain ``dict`` evicting ``next(iter(d))``
would be first-in-first-out too, but its eviction scans the deleted slots at the front
of the dictionary: about 30 µs an eviction at 100,000 entries, against 0.2 µs with the
``OrderedDict`` used here.)

**Threads.** mod_python runs handlers on many threads of one process under mpm_event,
and they share one cache. Under CPython's global interpreter lock:

* :meth:`~BoundedCache.get` never blocks and never sees a half-made entry: it returns
  a value some :meth:`~BoundedCache.put` stored for that key, or the default;
* :meth:`~BoundedCache.put` takes the cache's lock only to evict and insert (no caller
  code runs under it), so puts are serialised and the size bound holds at every
  moment (the oldest entry goes before a new one comes in);
* **two threads filling the same entry both compute it, and the last write wins.**
  :meth:`~BoundedCache.get_or_make` calls ``make`` *without* holding any lock, so a
  slow computation (a header read, an unpickle, an SQLite query) never makes the other
  requests of the process wait; two threads that miss the same key together both call
  ``make``, each gets back the value it made, and the value stored is the one put
  last. The cached values must therefore be pure functions of their key (or carry
  what they were made from, like a validator, which the caller compares): either
  thread's value is then right. A caller that must compute something only once (a
  rendition written to disk) needs a lock of its own around the computation; the
  rendition cache has one.

An exception raised by ``make`` propagates and nothing is stored, so an error is not
remembered unless the caller stores it as a value on purpose.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_MISSING = object()


class BoundedCache(Generic[K, V]):
    """At most *maxsize* entries; the entry put longest ago is evicted first.

    ``get(key, default=None)`` is the underlying dictionary's own ``get`` (bound once,
    here, so a hit costs one C call); the rest is documented per method. See the module
    docstring for the eviction policy and for what threads see.
    """

    __slots__ = ("_data", "_lock", "get", "maxsize")

    def __init__(self, maxsize: int) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"a bounded cache needs a maxsize of at least 1, not {maxsize!r}")
        self.maxsize = maxsize
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        #: The value stored for a key, or *default* (``None``) when there is none.
        self.get = self._data.get

    def put(self, key: K, value: V) -> None:
        """Store *value* for *key*, replacing what was there and counting as the newest
        entry; a new key first evicts the oldest entry when the cache is full."""
        data = self._data
        with self._lock:
            if key in data:
                data[key] = value
                data.move_to_end(key)
                return
            if len(data) >= self.maxsize:  # evicted first: never more than maxsize entries,
                data.popitem(last=False)  # not even for a moment another thread can see
            data[key] = value

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        """The value stored for *key*; on a miss, ``make()`` is called (no lock held),
        its result stored and returned. Two threads missing together both make a value:
        see the module docstring."""
        found = self._data.get(key, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[return-value]
        value = make()
        self.put(key, value)
        return value

    def discard(self, key: K) -> None:
        """Forget *key* (no error when it is not there)."""
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __repr__(self) -> str:
        return f"<BoundedCache {len(self._data)}/{self.maxsize}>"
