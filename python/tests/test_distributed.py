"""LRUCacheDistributed: addresses and secrets, Python nodes linked to each other, and a Python
leaf under a `leafcache` hub process converging across a cut."""

from __future__ import annotations

import re
import warnings

import pytest
import redis

from leafcache import LeafcacheError, LRUCache, LRUCacheDistributed

from conftest import wait_for

SECRET = "test-secret"


def hub(**kwargs) -> LRUCacheDistributed:
    return LRUCacheDistributed(local_address=("127.0.0.1", 0), secret=SECRET, **kwargs)


def test_addresses_follow_the_seed_and_are_checked():
    with hub() as h:
        assert re.fullmatch(r"127\.0\.0\.1:\d+", h.address)
        port = h.address.rsplit(":", 1)[1]
        # The port as a str, as in the seed's ('192.168.1.1', '5555').
        with LRUCacheDistributed(remote_address=("127.0.0.1", port), secret=SECRET) as leaf:
            wait_for(lambda: leaf.connected, what="the leaf to link")
        with LRUCacheDistributed(remote_address=h.address, secret=SECRET) as leaf:
            wait_for(lambda: leaf.connected, what="the leaf to link by host:port text")
    bad = [
        ({"remote_address": ("", 5555)}, ValueError, "all interfaces"),
        ({"remote_address": ("127.0.0.1", "http")}, ValueError, "port"),
        ({"remote_address": ("127.0.0.1", 70000)}, ValueError, "port"),
        ({"remote_address": ("127.0.0.1", 1.5)}, TypeError, "port"),
        ({"remote_address": ("127.0.0.1",)}, ValueError, "pair"),
        ({"remote_address": 5555}, TypeError, "tuple"),
        ({"remote_address": "nowhere"}, ValueError, "remote_address"),
        ({"local_address": (5555, 5555)}, TypeError, "host"),
        ({"connection_timeout": 0}, ValueError, "connection_timeout"),
        ({"connection_timeout": "soon"}, ValueError, "connection_timeout"),
        ({"flush": "always"}, ValueError, "root"),
    ]
    for kwargs, error, text in bad:
        with pytest.raises(error, match=text):
            LRUCacheDistributed(secret=SECRET, **kwargs)


def test_listening_beyond_this_host_needs_a_secret(monkeypatch):
    monkeypatch.delenv("LEAFCACHE_SECRET", raising=False)
    for address in [("", 5555), ("0.0.0.0", "5555"), ("::", 5555)]:
        with pytest.raises(ValueError, match="no secret"):
            LRUCacheDistributed(local_address=address)
    # Loopback needs none.
    LRUCacheDistributed(local_address=("127.0.0.1", 0)).close()
    # A hub beyond this host without a secret warns (raised here, so nothing is dialed).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeWarning, match="no secret"):
            LRUCacheDistributed(remote_address=("192.0.2.1", 5555))


def test_a_taken_port_is_an_error_at_once():
    with hub() as h:
        with pytest.raises(LeafcacheError, match="binding"):
            LRUCacheDistributed(local_address=h.address, secret=SECRET)


def test_python_nodes_replicate_both_ways_and_counters_add_up():
    with hub(name="py-hub") as h, LRUCacheDistributed(
        remote_address=h.address, secret=SECRET, name="py-leaf", connection_timeout=2
    ) as leaf:
        wait_for(lambda: leaf.connected, what="the leaf to link")
        assert isinstance(leaf, LRUCache)
        leaf["from-leaf"] = {"n": 1}
        h["from-hub"] = "hello"
        wait_for(lambda: h.get("from-leaf") == {"n": 1}, what="the leaf's write at the hub")
        wait_for(lambda: leaf.get("from-hub") == "hello", what="the hub's write at the leaf")
        leaf.incr("hits", 2)
        h.incr("hits", 3)
        wait_for(lambda: leaf.get("hits") == "5" and h.get("hits") == "5", what="the sum")
        assert leaf.delete("from-hub")
        wait_for(lambda: "from-hub" not in h, what="the delete at the hub")
        (link,) = leaf.links()
        assert link["direction"] == "upstream" and link["state"] == "up"
        assert link["peer_name"] == "py-hub"
        assert any(l["peer_name"] == "py-leaf" for l in h.links())


def test_a_wrong_secret_is_refused():
    with hub() as h, LRUCacheDistributed(remote_address=h.address, secret="wrong") as leaf:
        wait_for(
            lambda: leaf.links() and leaf.links()[0]["state"] == "refused",
            what="the hub to refuse the leaf",
        )
        assert not leaf.connected
        leaf["k"] = "kept locally"
        assert leaf["k"] == "kept locally" and "k" not in h


def test_links_form_only_within_one_cluster():
    with hub(cluster="blue") as h, LRUCacheDistributed(
        remote_address=h.address, secret=SECRET, cluster="green"
    ) as leaf:
        wait_for(
            lambda: leaf.links() and leaf.links()[0]["state"] == "refused",
            what="the hub to refuse a leaf of another cluster",
        )
        assert "cluster" in (leaf.links()[0]["last_error"] or "")


def test_a_rooted_node_keeps_its_data_across_restarts(tmp_path):
    root = tmp_path / "node"
    with LRUCacheDistributed(root=root, flush="always", snapshot="1h") as n:
        n["k"] = {"kept": True}
        n.incr("count", 7)
        with pytest.raises(ValueError, match="in use"):
            LRUCacheDistributed(root=root)
    with LRUCacheDistributed(root=root) as n:
        assert n["k"] == {"kept": True}
        assert n.incr("count") == 8


def start_rust_hub(processes, leafcache_bin):
    child = processes.start(
        [
            str(leafcache_bin), "serve", "--name", "rust-hub",
            "--listen", "127.0.0.1:0", "--resp", "127.0.0.1:0", "--secret", SECRET,
            "--loglevel", "warn",
        ]
    )
    line = child.stdout.readline()
    found = dict(re.findall(r"(\w+)=(\S+)", line))
    assert "listen" in found and "resp" in found, f"unexpected status line {line!r}"
    host, port = found["resp"].rsplit(":", 1)
    return child, found["listen"], redis.Redis(host=host, port=int(port))


def test_a_python_leaf_and_a_rust_hub_converge_across_a_cut(processes, leafcache_bin, proxy_factory):
    child, listen, r = start_rust_hub(processes, leafcache_bin)
    proxy = proxy_factory(listen)
    with LRUCacheDistributed(
        remote_address=proxy.address, secret=SECRET, connection_timeout=1, name="py-leaf"
    ) as leaf:
        wait_for(lambda: leaf.connected, what="the leaf to link through the proxy")
        leaf["a"] = "from python"
        r.set("b", "from redis")
        wait_for(lambda: r.get("a") == b"from python", what="python's write at the hub")
        wait_for(lambda: leaf.get("b") == "from redis", what="the hub's write at the leaf")

        proxy.cut()
        wait_for(lambda: not leaf.connected, what="the leaf to see the cut")
        # Both sides go on alone: reads and writes, on distinct keys and on the same ones.
        leaf["during-leaf"] = "1"
        r.set("during-hub", "2")
        leaf["both"] = "python's"
        r.set("both", "hub's")
        leaf.incr("count", 10)
        r.incrby("count", 5)
        leaf.delete("b")
        assert r.get("during-leaf") is None and leaf.get("during-hub") is None

        proxy.heal()
        wait_for(lambda: leaf.connected, what="the leaf to relink", timeout=30)

        def converged():
            both = r.get("both")
            return (
                r.get("during-leaf") == b"1"
                and leaf.get("during-hub") == "2"
                and both is not None
                and leaf.get("both") == both.decode()
                and leaf.get("count") == "15"
                and r.get("count") == b"15"
                and r.get("b") is None
                and leaf.get("b") is None
            )

        wait_for(converged, what="both sides to converge", timeout=30)
    assert child.poll() is None, "the hub kept running"
