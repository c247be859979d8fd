"""A Python node in a sharded cluster: `leafcache up` runs two shards (real processes), and a
`LRUCacheDistributed` given the same shard map reads the other shard's keys at its door, before
any load callback; the map's mistakes are clear errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis

from leafcache import LRUCacheDistributed

from conftest import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_python_node_reads_another_shards_keys_at_its_door(
    tmp_path: Path, leafcache_bin: Path, processes
):
    doors = {"red": f"127.0.0.1:{free_port()}", "green": f"127.0.0.1:{free_port()}"}
    topology = tmp_path / "shards.toml"
    text = '[cluster]\nname = "py-shards"\nsecret = "py-shards-secret"\n'
    for shard, door in doors.items():
        text += f'[[node]]\nname = "{shard}"\nshard = "{shard}"\nresp = "{door}"\n'
    topology.write_text(text)
    processes.start([str(leafcache_bin), "up", str(topology)])
    green = redis.Redis(host="127.0.0.1", port=int(doors["green"].rsplit(":", 1)[1]))
    wait_for(lambda: _answers(green), what="the green shard's door")

    shards = {name: [door] for name, door in doors.items()}
    with LRUCacheDistributed(name="py-red", shards=shards, shard="red") as cache:
        # Keys of the green shard (its door answers them; the red one would send them there).
        keys = [f"k{i}" for i in range(200)]
        green_keys = [k for k in keys if _owner(green, k) == "green"]
        assert 40 < len(green_keys) < 160, len(green_keys)
        for k in green_keys[:20]:
            green.set(k, "from green")
        for k in green_keys[:20]:
            assert cache.get(k) == "from green", k
        assert cache.get(green_keys[25]) is None  # a miss there is a miss here
        red_key = next(k for k in keys if k not in green_keys)
        cache[red_key] = "mine"
        assert cache.get(red_key) == "mine"

    # With a load callback, the owning shard is asked first; the callback only on its miss.
    loaded = []

    def load(key):
        loaded.append(key)
        return f"loaded {key}"

    with LRUCacheDistributed(load, name="py-red-2", shards=shards, shard="red") as cache:
        assert cache.get(green_keys[0]) == "from green"
        assert cache.get(green_keys[30]) == f"loaded {green_keys[30]}"
        assert loaded == [green_keys[30]]


def _answers(r: redis.Redis) -> bool:
    try:
        return r.ping()
    except redis.exceptions.ConnectionError:
        return False


def _owner(r: redis.Redis, key: str) -> str:
    """The shard of `key`, as the cluster's own map says (the green door answers its keys and
    sends the others away)."""
    try:
        r.execute_command("READWRITE")
        r.get(key)
        return "green"
    except redis.exceptions.MovedError:
        return "red"


def test_a_shard_map_that_cannot_work_is_refused():
    with pytest.raises(ValueError, match="needs shard"):
        LRUCacheDistributed(shards={"a": ["127.0.0.1:1"]})
    with pytest.raises(ValueError, match="is not one of"):
        LRUCacheDistributed(name="n", shards={"a": ["127.0.0.1:1"]}, shard="b")
    with pytest.raises(ValueError, match="pass both"):
        LRUCacheDistributed(shard="a")
    with pytest.raises(TypeError):
        LRUCacheDistributed(name="n", shards={"a": [42]}, shard="a")
