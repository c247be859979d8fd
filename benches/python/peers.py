"""The Python package beside the Python caches users pick today, in one run.

    benches/python/run.sh                 # makes the virtualenv, installs everything, runs this

1. In one process, one thread: get (hits) and set (overwrites) ops/s of leafcache.LRUCache,
   functools.lru_cache, cachetools.TTLCache, cachebox.TTLCache and moka_py.Moka.
2. Several processes on one host: 90% get / 10% set ops/s, summed, of the leafcache module-level
   cache shared through a root, diskcache (SQLite), and redis-py against redis-server over a Unix
   socket.
3. The seed's read-through workload: files behind the load callback, Zipf-distributed reads,
   a cache holding a quarter of the files; ops/s and hit ratio through each library's own
   read-through (or get-else-load-and-set where it has none).

Medians of 5 runs; figures go in BENCHMARKS.md."""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cachebox
import cachetools
import diskcache
import moka_py
import redis

import leafcache

KEYS = [f"key:{i}" for i in range(10_000)]
VALUE = "v" * 64
OPS = 200_000
RUNS = 5


def median_rate(fn, ops: int) -> float:
    rates = []
    for _ in range(RUNS):
        started = time.perf_counter()
        fn()
        rates.append(ops / (time.perf_counter() - started))
    return statistics.median(rates)


def in_process() -> None:
    rng = random.Random(1)
    order = [rng.choice(KEYS) for _ in range(OPS)]
    print("## 1. one process, one thread (ops/s, median of 5)")
    print(f"{'cache':<34}{'get (hit)':>14}{'set':>14}")

    def row(name, get, set_, fill):
        fill()
        g = median_rate(lambda: [get(k) for k in order], OPS)
        s = median_rate(lambda: [set_(k) for k in order], OPS) if set_ else None
        print(f"{name:<34}{g:>14,.0f}{(f'{s:,.0f}' if s else 'n/a'):>14}")

    lc = leafcache.LRUCache(maximum_capacity=100_000, expiration_time=3600)
    row("leafcache.LRUCache", lc.get, lambda k: lc.set(k, VALUE),
        lambda: [lc.set(k, VALUE) for k in KEYS])
    lc_item = leafcache.LRUCache(maximum_capacity=100_000, expiration_time=3600)
    row("leafcache.LRUCache [k]", lc_item.__getitem__,
        lambda k: lc_item.__setitem__(k, VALUE), lambda: [lc_item.__setitem__(k, VALUE) for k in KEYS])

    @functools.lru_cache(maxsize=100_000)
    def memo(k):
        return VALUE

    row("functools.lru_cache (memoizer)", memo, None, lambda: [memo(k) for k in KEYS])
    tc = cachetools.TTLCache(maxsize=100_000, ttl=3600)
    row("cachetools.TTLCache", tc.get, lambda k: tc.__setitem__(k, VALUE),
        lambda: [tc.__setitem__(k, VALUE) for k in KEYS])
    cb = cachebox.TTLCache(maxsize=100_000, global_ttl=3600)
    row("cachebox.TTLCache", cb.get, lambda k: cb.insert(k, VALUE),
        lambda: [cb.insert(k, VALUE) for k in KEYS])
    mk = moka_py.Moka(100_000, ttl=3600)
    row("moka_py.Moka", mk.get, lambda k: mk.set(k, VALUE),
        lambda: [mk.set(k, VALUE) for k in KEYS])
    d = {}
    row("dict (no eviction, no TTL)", d.get, lambda k: d.__setitem__(k, VALUE),
        lambda: [d.__setitem__(k, VALUE) for k in KEYS])


# 2. Several processes -------------------------------------------------------------------------

def open_backend(kind: str, where: str):
    """(get, set, role) for one process."""
    if kind in ("leafcache", "leafcache-nosync"):
        c = leafcache.init("bench", root=where, flush="always" if kind == "leafcache" else "100ms")
        return c.get, c.set, c.role
    if kind == "diskcache":
        c = diskcache.Cache(where)
        return c.get, c.set, "client"
    if kind == "redis":
        r = redis.Redis(unix_socket_path=where)
        return r.get, r.set, "client"
    raise ValueError(kind)


def worker(kind: str, where: str, seconds: float, start, out) -> None:
    get, set_, role = open_backend(kind, where)
    rng = random.Random(os.getpid())
    for k in KEYS[:1000]:
        set_(k, VALUE)
    start.wait()
    ops = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            k = rng.choice(KEYS)
            if rng.random() < 0.1:
                set_(k, VALUE)
            else:
                get(k)
        ops += 100
    out.put((role, ops / seconds))


def multi_process(redis_socket: str) -> None:
    print()
    print("## 2. processes on one host, 90% get / 10% set (ops/s, median of 5)")
    print("   sum over the processes; in brackets the serving process, and one client process")
    ctx = mp.get_context("spawn")
    print(f"{'cache':<40}{'2 processes':>30}{'4 processes':>30}")
    for kind, label in [
        ("leafcache", "leafcache shared root (flush=always)"),
        ("leafcache-nosync", "leafcache shared root (flush=100ms)"),
        ("diskcache", "diskcache (SQLite)"),
        ("redis", "redis-py -> redis-server, Unix socket"),
    ]:
        cells = []
        for procs in (2, 4):
            sums, servers, clients = [], [], []
            for _ in range(RUNS):
                where = redis_socket if kind == "redis" else tempfile.mkdtemp(prefix="lcb-")
                start, out = ctx.Barrier(procs + 1), ctx.Queue()
                ps = [ctx.Process(target=worker, args=(kind, where, 1.0, start, out)) for _ in range(procs)]
                for p in ps:
                    p.start()
                start.wait()
                got = [out.get() for _ in ps]
                for p in ps:
                    p.join()
                sums.append(sum(r for _, r in got))
                servers += [r for role, r in got if role == "serving"]
                clients += [r for role, r in got if role == "client"]
            med = statistics.median
            detail = (f"{med(servers):,.0f} + " if servers else "") + f"{med(clients):,.0f}"
            cells.append(f"{med(sums):,.0f} ({detail})")
        print(f"{label:<40}{cells[0]:>30}{cells[1]:>30}")


# 3. Read-through -------------------------------------------------------------------------------

def read_through(redis_socket: str) -> None:
    print()
    files = 2_000
    capacity = files // 4
    reads = 100_000
    folder = Path(tempfile.mkdtemp(prefix="lcfiles-"))
    for i in range(files):
        (folder / f"f{i}").write_bytes(os.urandom(4096))
    rng = random.Random(7)
    weights = [1 / (i + 1) ** 1.1 for i in range(files)]
    order = [str(folder / f"f{i}") for i in rng.choices(range(files), weights=weights, k=reads)]
    print(f"## 3. read-through: {files} files of 4 KiB, {reads} Zipf(1.1) reads, capacity {capacity}")
    print(f"{'cache':<40}{'reads/s':>12}{'hit ratio':>11}")
    loads = [0]

    def read(path):
        loads[0] += 1
        with open(path, "rb") as f:
            return f.read()

    def row(name, make):
        rates, ratio = [], 0.0
        for _ in range(RUNS):
            get = make()
            loads[0] = 0
            started = time.perf_counter()
            for p in order:
                get(p)
            rates.append(reads / (time.perf_counter() - started))
            ratio = 1 - loads[0] / reads
        print(f"{name:<40}{statistics.median(rates):>12,.0f}{ratio:>11.3f}")

    row("none (read every time)", lambda: read)
    row("leafcache.LRUCache(load_callback)",
        lambda: leafcache.LRUCache(load_callback=read, maximum_capacity=capacity, decode=False).get)
    row("functools.lru_cache", lambda: functools.lru_cache(maxsize=capacity)(read))
    row("cachetools.cached(LRUCache)",
        lambda: cachetools.cached(cachetools.LRUCache(maxsize=capacity))(read))
    row("cachebox.cached(LRUCache)",
        lambda: cachebox.cached(cachebox.LRUCache(maxsize=capacity))(read))

    def moka():
        m = moka_py.Moka(capacity)
        return lambda p: m.get_with(p, lambda: read(p))

    row("moka_py.Moka.get_with", moka)

    def disk():
        c = diskcache.Cache(tempfile.mkdtemp(prefix="lcd-"), size_limit=capacity * 4096 * 2,
                            eviction_policy="least-recently-used")
        return c.memoize()(read)

    row("diskcache.memoize (LRU, bytes-bounded)", disk)

    def via_redis():
        r = redis.Redis(unix_socket_path=redis_socket)
        r.flushall()
        r.config_set("maxmemory", str(capacity * (4096 + 200)))
        r.config_set("maxmemory-policy", "allkeys-lru")

        def get(p):
            v = r.get(p)
            if v is None:
                v = read(p)
                r.set(p, v)
            return v

        return get

    row("redis-py get / read + set (allkeys-lru)", via_redis)


if __name__ == "__main__":
    sock = sys.argv[1]
    print(f"python {sys.version.split()[0]}, leafcache {leafcache.__version__}, "
          f"cachetools {cachetools.__version__ if hasattr(cachetools, '__version__') else '?'}, "
          f"redis-py {redis.__version__}")
    in_process()
    multi_process(sock)
    read_through(sock)
