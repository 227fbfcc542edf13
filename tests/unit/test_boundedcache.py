"""The bounded cache: size bound, first-in-first-out eviction, and what threads see."""

from __future__ import annotations

import functools
import random
import threading
import types

import pytest

from imageguard.support.boundedcache import BoundedCache


def test_get_put_and_default() -> None:
    cache: BoundedCache[str, int] = BoundedCache(4)
    assert cache.get("a") is None
    assert cache.get("a", -1) == -1
    cache.put("a", 1)
    assert cache.get("a") == 1
    assert "a" in cache and "b" not in cache
    assert len(cache) == 1


def test_the_entry_put_longest_ago_is_evicted_first() -> None:
    cache: BoundedCache[int, str] = BoundedCache(3)
    for key in range(3):
        cache.put(key, str(key))
    assert cache.get(0) == "0"  # a hit records nothing: 0 is still the oldest
    cache.put(3, "3")
    assert len(cache) == 3
    assert cache.get(0) is None
    assert [cache.get(k) for k in (1, 2, 3)] == ["1", "2", "3"]


def test_putting_a_key_again_replaces_it_and_makes_it_the_newest() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 10)  # replaced, not added: nothing evicted
    assert len(cache) == 2 and cache.get("a") == 10
    cache.put("c", 3)  # "b" is now the oldest
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == (10, 3)


def test_the_bound_holds_over_many_keys() -> None:
    cache: BoundedCache[int, int] = BoundedCache(100)
    for key in range(10_000):
        cache.put(key, key * 2)
        assert len(cache) <= 100
    assert [cache.get(k) for k in range(9_900, 10_000)] == [k * 2 for k in range(9_900, 10_000)]
    assert cache.get(9_899) is None


@pytest.mark.parametrize("maxsize", [0, -1, True, 1.5, "10"])
def test_a_size_below_one_or_not_an_integer_is_refused(maxsize: object) -> None:
    with pytest.raises(ValueError, match="maxsize"):
        BoundedCache(maxsize)  # type: ignore[arg-type]


def test_get_or_make_makes_once_and_keeps_none_values() -> None:
    cache: BoundedCache[str, int | None] = BoundedCache(8)
    calls: list[str] = []

    def make(key: str, value: int | None) -> int | None:
        calls.append(key)
        return value

    assert cache.get_or_make("n", lambda: make("n", None)) is None
    assert cache.get_or_make("n", lambda: make("n", 5)) is None  # None is a stored value
    assert cache.get_or_make("x", lambda: make("x", 7)) == 7
    assert cache.get_or_make("x", lambda: make("x", 8)) == 7
    assert calls == ["n", "x"]


def test_an_error_while_making_is_not_stored() -> None:
    cache: BoundedCache[str, int] = BoundedCache(8)

    def fail() -> int:
        raise OSError("no")

    with pytest.raises(OSError):
        cache.get_or_make("k", fail)
    assert "k" not in cache
    assert cache.get_or_make("k", lambda: 3) == 3


def test_discard_and_clear() -> None:
    cache: BoundedCache[str, int] = BoundedCache(8)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.discard("a")
    cache.discard("missing")
    assert cache.get("a") is None and cache.get("b") == 2
    cache.clear()
    assert len(cache) == 0


def test_a_hit_is_one_call_of_the_dictionarys_own_get() -> None:
    # The per-request cost: no Python-level function runs on a look-up.
    cache: BoundedCache[str, int] = BoundedCache(8)
    assert isinstance(cache.get, types.BuiltinMethodType)
    assert not isinstance(cache.put, types.BuiltinMethodType)


def test_two_threads_filling_one_entry_both_make_it_and_the_last_write_wins() -> None:
    cache: BoundedCache[str, str] = BoundedCache(8)
    both_missed = threading.Barrier(2, timeout=5)
    first_stored = threading.Event()
    made: list[str] = []
    returned: dict[str, str] = {}

    def make(name: str) -> str:
        both_missed.wait()  # neither finds the entry: both compute it
        made.append(name)
        if name == "late":
            assert first_stored.wait(5)  # store only after "early" has stored its value
        return f"value of {name}"

    def fill(name: str) -> None:
        returned[name] = cache.get_or_make("key", lambda: make(name))
        if name == "early":
            first_stored.set()

    threads = [threading.Thread(target=fill, args=(n,)) for n in ("early", "late")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(made) == ["early", "late"]
    # Each thread gets the value it made; the cache keeps the one written last.
    assert returned == {"early": "value of early", "late": "value of late"}
    assert cache.get("key") == "value of late"


def test_many_threads_never_see_a_wrong_value_or_break_the_bound() -> None:
    cache: BoundedCache[int, int] = BoundedCache(64)
    errors: list[BaseException] = []
    sizes: list[int] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(20_000):
                key = rng.randrange(256)
                action = rng.random()
                if action < 0.45:
                    found = cache.get(key)
                    if found is not None and found != key * key:
                        raise AssertionError(f"{key} -> {found}")
                elif action < 0.9:
                    assert cache.get_or_make(key, functools.partial(pow, key, 2)) == key * key
                elif action < 0.98:
                    cache.put(key, key * key)
                else:
                    cache.discard(key)
                sizes.append(len(cache))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert max(sizes) <= 64
    assert len(cache) == 64  # 256 keys were put: the cache is full, not over
