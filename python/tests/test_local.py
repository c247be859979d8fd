"""LRUCache: parameters, values, the load callback (single flight, exceptions) and errors."""

from __future__ import annotations

import pickle
import threading
import time
import traceback

import pytest

import leafcache
from leafcache import LeafcacheError, LRUCache

from conftest import wait_for


def test_get_set_delete_and_the_mapping_protocol():
    c = LRUCache(maximum_capacity=100)
    assert c.get("missing") is None
    assert c.get("missing", "fallback") == "fallback"
    c.set("a", "b")
    c["k"] = b"\x00\xff"
    assert c.get("a") == "b"
    assert c["k"] == b"\x00\xff"
    assert "a" in c and "zzz" not in c
    assert len(c) == 2
    with pytest.raises(KeyError):
        c["zzz"]
    assert c.delete("a") is True
    assert c.delete("a") is False
    assert c.pop("k") == b"\x00\xff"
    assert c.pop("k", "gone") == "gone"
    with pytest.raises(KeyError):
        del c["k"]
    c["x"] = "y"
    del c["x"]
    assert len(c) == 0


def test_str_and_bytes_keys_name_the_same_entry():
    c = LRUCache()
    c["ключ"] = "значение"
    assert c["ключ".encode()] == "значение"
    with pytest.raises(TypeError, match="keys are str or bytes"):
        c[42] = "x"
    with pytest.raises(TypeError):
        c.get(None)


def test_values_round_trip_through_the_json_serializer():
    c = LRUCache()
    for value in [{"a": [1, 2.5, None, True]}, [1, 2], 42, 3.25, None, True, "text", b"\xff\x01"]:
        c["v"] = value
        assert c["v"] == value and type(c["v"]) is type(value)
    c["t"] = (1, 2)
    assert c["t"] == [1, 2], "JSON has no tuples"
    with pytest.raises(TypeError):
        c["s"] = {1, 2}
    c["raw"] = bytearray(b"ab\xff")
    assert c["raw"] == b"ab\xff"


def test_utf8_bytes_read_as_str_unless_decode_is_off():
    assert LRUCache().__class__ is LRUCache
    c = LRUCache()
    c["b"] = b"abc"
    assert c["b"] == "abc"
    raw = LRUCache(decode=False)
    raw["b"] = b"abc"
    raw["s"] = "text"
    assert raw["b"] == b"abc" and raw["s"] == b"text"


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return (self.x, self.y) == (other.x, other.y)


def test_pickle_is_opt_in_and_a_json_cache_refuses_pickled_values():
    p = LRUCache(serializer="pickle")
    p["pt"] = Point(1, 2)
    assert p["pt"] == Point(1, 2)
    p["t"] = (1, 2)
    assert p["t"] == (1, 2)
    with pytest.raises(ValueError, match="serializer"):
        LRUCache(serializer="yaml")
    # The tagged bytes a pickle cache stores are refused by a JSON cache.
    tagged = b"\xffLCp" + pickle.dumps(Point(1, 2), protocol=5)
    j = LRUCache(decode=False)
    j["pt"] = tagged
    with pytest.raises(ValueError, match="does not unpickle"):
        j["pt"]


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="maximum_capacity"):
        LRUCache(maximum_capacity=0)
    with pytest.raises(ValueError, match="maximum_capacity"):
        LRUCache(maximum_capacity=-5)
    with pytest.raises(ValueError, match="expiration_time"):
        LRUCache(expiration_time=0)
    with pytest.raises(ValueError, match="expiration_time"):
        LRUCache(expiration_time=float("nan"))
    with pytest.raises(ValueError, match="invalid duration"):
        LRUCache(expiration_time="soon")
    with pytest.raises(TypeError, match="expiration_time"):
        LRUCache(expiration_time=[1])
    with pytest.raises(TypeError, match="callable"):
        LRUCache(load_callback=42)
    with pytest.raises(ValueError, match="max_bytes"):
        LRUCache(max_bytes=0)
    LRUCache(expiration_time="2m")
    LRUCache(expiration_time=1.5)


def test_capacity_evicts_the_least_recently_used():
    c = LRUCache(maximum_capacity=64)
    for i in range(1000):
        c[f"k{i}"] = "v"
    assert len(c) <= 64
    assert c.stats()["evictions"] >= 1000 - 64
    assert "k999" in c


def test_the_eviction_policy_is_chosen_per_cache():
    for eviction in ["lru", "lfu", "s3fifo", "S3FIFO"]:
        c = LRUCache(maximum_capacity=100, eviction=eviction)
        for i in range(1000):
            c[f"k{i}"] = "v"
            assert f"k{i}" in c, "the entry just written is held"
        assert len(c) <= 100
    # A hot set read twice survives a one-pass scan under s3fifo, not under lru.
    survivors = {}
    for eviction in ["lru", "s3fifo"]:
        c = LRUCache(maximum_capacity=1000, eviction=eviction)
        hot = [f"hot{i}" for i in range(300)]
        for k in hot:
            c[k] = "h"
        for _ in range(2):
            for k in hot:
                c[k]
        for i in range(3000):
            c[f"scan{i}"] = "s"
        survivors[eviction] = sum(k in c for k in hot)
    assert survivors["lru"] == 0 and survivors["s3fifo"] > 250, survivors
    with pytest.raises(ValueError, match="eviction"):
        LRUCache(eviction="arc")


def test_entries_expire():
    c = LRUCache(expiration_time=0.05)
    c["short"] = "v"
    c.set("long", "v", ttl="1h")
    assert c["short"] == "v"
    wait_for(lambda: c.get("short") is None, what="the entry to expire")
    assert c["long"] == "v"
    with pytest.raises(ValueError):
        c.set("k", "v", ttl=-1)


def test_oversized_values_are_refused_and_nothing_is_evicted():
    c = LRUCache(max_bytes=64 * 1024)
    c["keep"] = "v"
    with pytest.raises(ValueError, match="exceeds"):
        c["big"] = "x" * (1 << 20)
    assert c["keep"] == "v" and "big" not in c


def test_incr_counts_ints_and_floats_and_refuses_non_numbers():
    c = LRUCache()
    assert c.incr("n") == 1
    assert c.incr("n", 41) == 42
    assert c.incr("n", -2) == 40
    assert c.get("n") == "40", "a counter reads as its text, as over Redis"
    assert c.incr("f", 0.5) == 0.5
    c["s"] = "abc"
    with pytest.raises(ValueError, match="increment refused"):
        c.incr("s")
    with pytest.raises(ValueError, match="increment refused"):
        c.incr("n", 2**63 - 1)
    with pytest.raises(TypeError):
        c.incr("n", "1")
    with pytest.raises(ValueError):
        c.incr("n", 2**64)
    assert c["n"] == "40"


def test_the_load_callback_fills_misses_once():
    calls = []

    def load(key):
        calls.append(key)
        return {"key": repr(key)}

    c = LRUCache(load_callback=load, maximum_capacity=10, expiration_time=60)
    assert c.get("a") == {"key": "'a'"}
    assert c["a"] == {"key": "'a'"}
    assert c.get(b"\xff") == {"key": "b'\\xff'"}, "a key that is not UTF-8 reaches the callback as bytes"
    assert calls == ["a", b"\xff"]
    assert c.stats()["loads"] == 2 and c.stats()["misses"] == 2 and c.stats()["hits"] == 1


def test_single_flight_with_32_threads():
    calls = []
    release = threading.Event()

    def load(key):
        calls.append(key)
        release.wait(10)
        return f"loaded {key}"

    c = LRUCache(load_callback=load)
    results = []
    barrier = threading.Barrier(33)

    def reader():
        barrier.wait()
        results.append(c.get("hot"))

    threads = [threading.Thread(target=reader) for _ in range(32)]
    for t in threads:
        t.start()
    barrier.wait()
    wait_for(lambda: calls, what="the first load to start")
    release.set()
    for t in threads:
        t.join(10)
    assert calls == ["hot"], "one load for 32 concurrent misses"
    assert results == ["loaded hot"] * 32


def test_a_blocked_callback_does_not_block_other_keys():
    release = threading.Event()
    entered = threading.Event()

    def load(key):
        if key == "slow":
            entered.set()
            release.wait(10)
        return key * 2

    c = LRUCache(load_callback=load)
    slow = threading.Thread(target=lambda: c.get("slow"))
    slow.start()
    assert entered.wait(5)
    started = time.monotonic()
    assert c.get("fast") == "fastfast"
    c["other"] = "set meanwhile"
    assert c["other"] == "set meanwhile"
    assert time.monotonic() - started < 5, "other keys went on while the callback blocked"
    assert slow.is_alive(), "the slow load is still waiting"
    release.set()
    slow.join(5)
    assert c["slow"] == "slowslow"


class Unavailable(Exception):
    pass


def test_callback_exceptions_reach_every_waiter_and_are_not_cached():
    attempts = []
    release = threading.Event()

    def load(key):
        attempts.append(key)
        if len(attempts) == 1:
            release.wait(10)
            raise Unavailable(f"backend down for {key}")
        return "second try"

    c = LRUCache(load_callback=load)
    errors = []

    def reader():
        try:
            c.get("k")
        except Unavailable as e:
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    wait_for(lambda: attempts, what="the load to start")
    time.sleep(0)  # let the other readers reach the flight; they wait on it or start after it
    release.set()
    for t in threads:
        t.join(10)
    assert errors, "the callback's exception reached the callers"
    e = errors[0]
    assert isinstance(e, Unavailable) and str(e) == "backend down for k"
    frames = traceback.extract_tb(e.__traceback__)
    assert any(f.name == "load" for f in frames), "the traceback reaches into the callback"
    assert "k" not in c, "a failed load stores nothing"
    assert c.get("k") == "second try", "the next get loads again"
    assert c.stats()["load_errors"] == 1


def test_a_value_the_serializer_cannot_store_fails_the_load():
    c = LRUCache(load_callback=lambda key: object())
    with pytest.raises(TypeError, match="not JSON serializable"):
        c.get("k")
    assert "k" not in c


def test_clear_close_and_context_manager():
    with LRUCache() as c:
        c["a"] = "b"
        c.clear()
        assert len(c) == 0
        c["a"] = "b"
    assert c.closed
    with pytest.raises(LeafcacheError, match="closed"):
        c.get("a")
    c.close()


def test_module_exports_and_docstrings():
    assert leafcache.__version__
    for name in ["LRUCache", "LRUCacheDistributed", "SharedCache", "init", "get", "set", "pop", "purge", "start"]:
        obj = getattr(leafcache, name)
        assert obj.__doc__, f"{name} has a docstring"
    assert issubclass(leafcache.LRUCacheDistributed, LRUCache)


def test_numbers_set_from_python_count():
    c = LRUCache(maximum_capacity=100)
    c.set("n", 0)
    assert c.incr("n") == 1
    assert c.incr("n", 5) == 6
    c.set("f", 1.5)
    # An integer increment of a float is refused, and leaves the float as it was.
    with pytest.raises(ValueError):
        c.incr("f")
    assert c.get("f") == 1.5
    assert c.incr("f", 0.25) == 1.75
    # A number set with an expiry counts too.
    c.set("t", 7, ttl=3600)
    assert c.incr("t") == 8
    # Other objects are still not numbers.
    c.set("l", [1])
    with pytest.raises(ValueError):
        c.incr("l")
    assert c.get("l") == [1]
