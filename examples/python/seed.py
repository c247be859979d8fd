"""The seed's shape in Python: a hub and a leaf, each an ``LRUCacheDistributed``, the leaf with a
load callback. A write at the leaf reaches the hub, a write at the hub reaches the leaf, and a
miss at the leaf is loaded once however many threads ask for it.

    pip install ./python        # from the repository's root (builds the Rust core)
    python examples/python/seed.py

It runs on loopback (a port the OS picks) and finishes on its own.
"""

import threading
import time

from leafcache import LRUCacheDistributed

loads = []


def load_product(key):
    """The load callback: what a miss costs (a database, a file, a service)."""
    loads.append(key)
    time.sleep(0.05)
    return {"id": key, "name": f"product {key}"}


def eventually(what, check, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not within {seconds} s")
        time.sleep(0.01)


hub = LRUCacheDistributed(
    maximum_capacity=10_000,
    expiration_time=3600,
    local_address=("127.0.0.1", 0),  # the OS picks the port; hub.address says which
)
host, port = hub.address.rsplit(":", 1)
leaf = LRUCacheDistributed(
    load_callback=load_product,
    maximum_capacity=1_000,
    expiration_time=600,
    connection_timeout=5,
    remote_address=(host, port),
)
eventually("the leaf linked to the hub", lambda: leaf.connected)
print(f"hub on {hub.address}, leaf linked: {leaf.connected}")

# A write at the leaf reaches the hub; one at the hub reaches the leaf.
leaf.set("greeting", "hello")
eventually("the hub has the leaf's write", lambda: hub.get("greeting") == "hello")
hub.set("motd", {"text": "all systems go"})
# (`in` does not load: a `get` of a key not there yet would run the load callback, and the
# loaded value, written after the hub's, would win.)
eventually("the leaf has the hub's write", lambda: "motd" in leaf)
assert leaf.get("motd") == {"text": "all systems go"}
print("replicated both ways:", hub.get("greeting"), leaf.get("motd"))

# Twenty threads miss the same key at once: the callback runs once, every thread gets its value.
got = []
threads = [threading.Thread(target=lambda: got.append(leaf.get("p-42"))) for _ in range(20)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert all(v == {"id": "p-42", "name": "product p-42"} for v in got), got
print(f"20 concurrent misses, {len(loads)} load: {got[0]}")

# A counter both sides add to.
leaf.incr("visits", 2)
hub.incr("visits", 3)
eventually("the counter added up", lambda: "visits" in leaf and leaf.get("visits") == "5"
           and hub.get("visits") == "5")
print("visits on both:", leaf.get("visits"), hub.get("visits"))

leaf.close()
hub.close()
print("done")
