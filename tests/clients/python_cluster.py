"""redis-py's RedisCluster, with its default settings, against a sharded leafcache (argv: the
RESP door of any node): it reads the slot map, writes and reads keys of every shard, follows
hash tags, runs a pipeline across shards, and refuses a cross-slot MSET as Redis Cluster does.
Exits non-zero on the first failure."""

import sys

import redis
from redis.cluster import RedisCluster


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    rc = RedisCluster(host=host, port=int(port))
    nodes = rc.get_primaries()
    assert len(nodes) == 3, f"three primaries, one per shard: {nodes}"
    for i in range(300):
        rc.set(f"py:{i}", str(i))
    for i in range(300):
        assert rc.get(f"py:{i}") == str(i).encode(), i
    # Each key lives on the shard of its slot: its node answers it, the others redirect.
    owners = {rc.get_node_from_key(f"py:{i}").name for i in range(300)}
    assert len(owners) == 3, f"keys on every shard: {owners}"
    # Hash tags keep keys together: a multi-key command on one slot runs.
    rc.mset({"{user:7}:name": "ada", "{user:7}:mail": "ada@example.com"})
    assert rc.mget("{user:7}:name", "{user:7}:mail") == [b"ada", b"ada@example.com"]
    try:
        rc.execute_command("MSET", "a-key", "1", "another-key", "2")
        raise AssertionError("a cross-slot MSET ran")
    except redis.exceptions.RedisClusterException as e:
        assert "slot" in str(e).lower(), e
    except redis.exceptions.ResponseError as e:
        assert "CROSSSLOT" in str(e), e
    pipe = rc.pipeline()
    for i in range(50):
        pipe.incr(f"py:counter:{i}")
    assert pipe.execute() == [1] * 50
    assert rc.cluster_keyslot("foo") == 12182
    info = rc.cluster_info()
    assert info["cluster_state"] == "ok", info
    print(f"redis-py {redis.__version__} RedisCluster: 300 keys over 3 shards, hash tags, "
          "a cross-slot refusal, a pipeline across shards")


if __name__ == "__main__":
    main()
