"""redis-py, with its default settings, against two leaves of one tree (argv: leaf-a, leaf-b as
host:port): the string and key commands, pipelines, transactions with WATCH, pub/sub across the
tree, WAIT, introspection, and redis-py's client-side cache, which must hear of a write made at
the other leaf. Exits non-zero on the first failure."""

import sys
import time

import redis
from redis.cache import CacheConfig


def connect(addr, **kwargs):
    host, port = addr.rsplit(":", 1)
    return redis.Redis(host=host, port=int(port), **kwargs)


def eventually(what, check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout}s: {what}")
        time.sleep(0.01)


def main():
    a_addr, b_addr = sys.argv[1], sys.argv[2]
    a = connect(a_addr)
    b = connect(b_addr)
    checked = []

    for key in list(a.scan_iter(match="py:*")):
        a.delete(key)

    # Defaults: what redis-py 8 opens with.
    assert a.ping()
    hello = a.execute_command("HELLO")
    checked.append(f"redis-py {redis.__version__} connects with its defaults (HELLO answers {type(hello).__name__})")

    # Strings.
    a.delete("py:s")
    assert a.append("py:s", "Hello") == 5
    assert a.append("py:s", " World") == 11
    assert a.getrange("py:s", 0, 4) == b"Hello"
    assert a.setrange("py:s", 6, "Redis") == 11
    assert a.get("py:s") == b"Hello Redis"
    assert a.strlen("py:s") == 11
    assert a.getex("py:s", ex=100) == b"Hello Redis" and a.ttl("py:s") == 100
    assert a.getex("py:s", persist=True) == b"Hello Redis" and a.ttl("py:s") == -1
    assert a.getset("py:s", "new") == b"Hello Redis"
    assert a.setnx("py:s", "x") is False
    assert a.msetnx({"py:m1": "a", "py:m2": "b"}) in (True, 1)
    a.mset({"py:l1": "ohmytext", "py:l2": "mynewtext"})
    assert a.lcs("py:l1", "py:l2") == b"mytext"
    assert a.set("py:ex", "v", px=5000) and 0 < a.pttl("py:ex") <= 5000
    checked.append("string commands")

    # Counters: increments at both leaves add up on both, a float increment, Redis's errors.
    a.delete("py:counter")
    for _ in range(100):
        a.incr("py:counter")
        b.incrby("py:counter", 2)
    eventually("300 at leaf-a", lambda: a.get("py:counter") == b"300")
    eventually("300 at leaf-b", lambda: b.get("py:counter") == b"300")
    assert a.decr("py:counter") == 299 and a.decrby("py:counter", 9) == 290
    assert a.incrbyfloat("py:counter", 0.5) == 290.5
    try:
        a.incr("py:counter")
        raise AssertionError("INCR of a float must fail")
    except redis.ResponseError as e:
        assert "not an integer" in str(e), e
    a.set("py:counter", "5")
    eventually("the SET reaches leaf-b", lambda: b.get("py:counter") == b"5")
    assert b.incr("py:counter") == 6
    eventually("both leaves agree", lambda: a.get("py:counter") == b.get("py:counter") == b"6")
    checked.append("counters that add up across two leaves")

    # Hashes: fields written at both leaves merge; HINCRBY fields add up; WRONGTYPE.
    a.delete("py:h")
    a.hset("py:h", mapping={"name": "ada", "lang": "rust"})
    b.hset("py:h", "city", "paris")
    for _ in range(10):
        a.hincrby("py:h", "visits", 1)
        b.hincrby("py:h", "visits", 1)
    want = {b"name": b"ada", b"lang": b"rust", b"city": b"paris", b"visits": b"20"}
    eventually("the union at leaf-a", lambda: a.hgetall("py:h") == want)
    eventually("the union at leaf-b", lambda: b.hgetall("py:h") == want)
    assert a.hlen("py:h") == 4 and a.hexists("py:h", "city")
    assert sorted(a.hkeys("py:h")) == sorted(want.keys())
    assert a.hmget("py:h", ["name", "nope"]) == [b"ada", None]
    assert a.hdel("py:h", "lang") == 1
    eventually("the HDEL at leaf-b", lambda: b.hget("py:h", "lang") is None)
    assert a.hincrbyfloat("py:h", "score", 1.5) == 1.5
    assert a.hsetnx("py:h", "name", "x") in (False, 0)
    assert a.hstrlen("py:h", "name") == 3
    assert a.hrandfield("py:h") in want.keys() | {b"score"}
    assert dict(a.hscan("py:h")[1])[b"name"] == b"ada"
    assert a.type("py:h") == b"hash"
    try:
        a.get("py:h")
        raise AssertionError("GET of a hash must fail")
    except redis.ResponseError as e:
        assert str(e).startswith("WRONGTYPE"), e
    checked.append("hashes that merge field by field across two leaves")

    # Keys.
    a.set("py:r1", "v", ex=30)
    assert a.rename("py:r1", "py:r2") and a.ttl("py:r2") == 30
    assert a.copy("py:r2", "py:r3") and a.get("py:r3") == b"v"
    assert a.ttl("py:r3") == 30, "COPY keeps the TTL"
    assert a.persist("py:r3")
    assert a.expire("py:r3", 10, nx=True) is True
    assert a.expire("py:r3", 5, gt=True) is False
    assert a.expiretime("py:r3") > time.time()
    assert a.object("encoding", "py:r3") == b"embstr"
    assert a.memory_usage("py:r3") > 0
    payload = a.dump("py:r3")
    assert a.restore("py:r4", 0, payload)
    assert a.get("py:r4") == b"v"
    assert a.exists("py:r2", "py:r3") == 2
    assert a.touch("py:r2") == 1
    assert a.unlink("py:r2") == 1
    assert a.type("py:r3") == b"string"
    assert any(k.startswith(b"py:") for k in a.scan_iter(match="py:*", _type="string"))
    assert a.randomkey() is not None
    checked.append("key commands")

    # Pipelines and transactions, WATCH with redis-py's retry loop.
    with a.pipeline() as p:
        res = p.set("py:t", "1").get("py:t").execute()
    assert res == [True, b"1"], res

    def swap(pipe):
        current = pipe.get("py:t")
        pipe.multi()
        pipe.set("py:t", current + b"+")

    a.transaction(swap, "py:t")
    assert a.get("py:t") == b"1+"
    checked.append("pipelines, MULTI/EXEC and WATCH")

    # WAIT: the leaf's hub acknowledges.
    a.set("py:w", "v")
    assert a.wait(1, 5000) == 1
    checked.append("WAIT counts the hub's acknowledgement")

    # Introspection.
    a.client_setname("py-app")
    assert a.client_getname() in ("py-app", b"py-app")
    assert any(c.get("name") == "py-app" for c in a.client_list())
    assert a.info("keyspace")["db0"]["expires"] >= 1
    assert a.config_get("maxclients")
    assert a.command_count() > 50
    checked.append("CLIENT, INFO, CONFIG, COMMAND")

    # Pub/sub across the tree: subscribe at leaf-b, publish at leaf-a.
    sub = b.pubsub()
    sub.subscribe("py:news")
    eventually("subscription confirmed", lambda: sub.get_message(timeout=0.1) is not None)
    received = []

    def got_it():
        a.publish("py:news", "hello")
        msg = sub.get_message(timeout=0.2)
        if msg and msg["type"] == "message":
            received.append(msg["data"])
        return bool(received)

    eventually("a message published at leaf-a reaches leaf-b", got_it)
    assert received[0] == b"hello"
    sub.close()
    checked.append("pub/sub across the tree")

    # Client-side caching: the cache must hear of a write made at the other leaf.
    cached = connect(b_addr, protocol=3, cache_config=CacheConfig())
    a.set("py:cached", "v1")
    eventually("v1 reaches leaf-b", lambda: b.get("py:cached") == b"v1")
    hits = lambda: b.info("stats")["keyspace_hits"]
    assert cached.get("py:cached") == b"v1"
    before = hits()
    for _ in range(5):
        assert cached.get("py:cached") == b"v1"
    assert hits() == before, "repeated reads are served from redis-py's cache"
    a.set("py:cached", "v2")
    eventually("the cache is invalidated and re-reads v2", lambda: cached.get("py:cached") == b"v2")
    checked.append("client-side cache (cache_config) invalidated by a write at another leaf")

    for line in checked:
        print(f"ok - {line}")


if __name__ == "__main__":
    main()
