//! Client-side caching across a tree: a client of leaf-b tracks keys, and every way a key can
//! change at leaf-b — a write at leaf-a replicated through the hub, eviction, expiry, a purge, a
//! change made during a partition and resynced — sends it an invalidation, after which a re-read
//! returns the new value. Also RESP2 redirection, BCAST, OPTIN, NOLOOP and the table's bound.
//!
//! The links run on a [`MemoryNet`] so partitions can be cut and healed; the clients talk TCP.

mod support;

use std::time::{Duration, Instant};

use leafcache::net::MemoryNet;
use leafcache::{CacheConfig, Node, ServerLimits};
use support::resp::{Client, V};

struct Tree {
    net: MemoryNet,
    hub: Node,
    a: Node,
    b: Node,
}

async fn tree(b_capacity: u64, max_tracked_keys: usize) -> Tree {
    let net = MemoryNet::new();
    let hub = Node::builder()
        .name("hub")
        .transport(net.host("hub"))
        .local_address("mem:hub")
        .connection_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let leaf = |name: &str, config: CacheConfig| {
        Node::builder()
            .name(name)
            .transport(net.host(name))
            .remote_address("mem:hub")
            .connection_timeout(Duration::from_millis(500))
            .default_cache(config)
            .resp_address("127.0.0.1:0")
            .server_limits(ServerLimits {
                max_tracked_keys,
                ..ServerLimits::default()
            })
            .build()
            .unwrap()
    };
    let a = leaf("leaf-a", CacheConfig::new());
    let b = leaf(
        "leaf-b",
        CacheConfig::new().max_entries(b_capacity).shards(1),
    );
    Tree { net, hub, a, b }
}

/// A RESP3 client of `node` with tracking on (in `mode`).
fn tracker(node: &Node, mode: &str) -> Client {
    let mut c = Client::connect(node.resp_addr().unwrap());
    assert!(matches!(c.cmd("HELLO 3"), V::Map(_)));
    assert_eq!(
        c.cmd(&format!("CLIENT TRACKING on{mode}")),
        V::Simple("OK".into())
    );
    c
}

/// Waits for `key` to read `value` at `node`.
async fn until_value(node: &Node, key: &str, value: &str) {
    support::eventually(
        Duration::from_secs(10),
        &format!("{key}={value}"),
        || match node.default_cache().get(key) {
            Some(v) if v == value.as_bytes() => Ok(()),
            other => Err(format!("holds {other:?}")),
        },
    )
    .await;
}

/// Reads replies until an invalidation push arrives (other replies are returned to the caller's
/// check through `seen`), failing after the deadline.
fn expect_invalidation(c: &mut Client, key: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let want = match key {
        Some(k) => V::Array(vec![V::b(k)]),
        None => V::Null,
    };
    while Instant::now() < deadline {
        if let Some(v) = c.read_within(Duration::from_millis(100)) {
            match v {
                V::Push(p) if p[0] == V::b("invalidate") => {
                    if p[1] == want {
                        return;
                    }
                }
                other => panic!("unexpected reply while waiting for an invalidation: {other:?}"),
            }
        }
    }
    panic!("no invalidation of {key:?} arrived");
}

fn no_push(c: &mut Client) {
    if let Some(v) = c.read_within(Duration::from_millis(300)) {
        panic!("unexpected push: {v:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracked_key_is_invalidated_whatever_changes_it() {
    let t = tree(16, 1000).await;
    let (a, b) = (t.a.default_cache(), t.b.default_cache());
    let mut c = tracker(&t.b, "");

    // A write at leaf-a, replicated through the hub.
    a.set("k", "v1").unwrap();
    until_value(&t.b, "k", "v1").await;
    assert_eq!(c.cmd("GET k"), V::b("v1"));
    a.set("k", "v2").unwrap();
    expect_invalidation(&mut c, Some("k"));
    assert_eq!(c.cmd("GET k"), V::b("v2"));

    // Eviction at leaf-b: sixteen other keys push k out.
    for i in 0..16 {
        b.set(format!("fill{i}"), "x").unwrap();
    }
    expect_invalidation(&mut c, Some("k"));
    assert_eq!(c.cmd("GET k"), V::Null);

    // Expiry: noticed by the node's active expiry, with nobody touching the key.
    b.set_with_ttl("short", "v", Duration::from_millis(300))
        .unwrap();
    assert_eq!(c.cmd("GET short"), V::b("v"));
    expect_invalidation(&mut c, Some("short"));
    assert_eq!(c.cmd("GET short"), V::Null);

    // A purge made at leaf-a: everything is invalidated.
    a.set("p", "v").unwrap();
    until_value(&t.b, "p", "v").await;
    assert_eq!(c.cmd("GET p"), V::b("v"));
    a.purge();
    expect_invalidation(&mut c, None);
    support::eventually(
        Duration::from_secs(10),
        "purge reaches leaf-b",
        || match b.get("p") {
            None => Ok(()),
            Some(v) => Err(format!("still holds {v:?}")),
        },
    )
    .await;
    assert_eq!(c.cmd("GET p"), V::Null);

    // A change made while leaf-b is cut off, resynced when the link comes back.
    a.set("q", "before").unwrap();
    until_value(&t.b, "q", "before").await;
    assert_eq!(c.cmd("GET q"), V::b("before"));
    t.net.cut("leaf-b", "hub");
    a.set("q", "during").unwrap();
    until_value(&t.hub, "q", "during").await;
    no_push(&mut c);
    assert_eq!(
        c.cmd("GET q"),
        V::b("before"),
        "leaf-b serves its copy while cut off"
    );
    t.net.heal("leaf-b", "hub");
    expect_invalidation(&mut c, Some("q"));
    assert_eq!(c.cmd("GET q"), V::b("during"));

    // And a change made at leaf-a while leaf-a is the one cut off.
    t.net.cut("leaf-a", "hub");
    a.set("q", "offline").unwrap();
    no_push(&mut c);
    t.net.heal("leaf-a", "hub");
    expect_invalidation(&mut c, Some("q"));
    assert_eq!(c.cmd("GET q"), V::b("offline"));

    // A local write by another client of leaf-b.
    let mut other = Client::connect(t.b.resp_addr().unwrap());
    other.cmd("SET q local");
    expect_invalidation(&mut c, Some("q"));
    assert_eq!(c.cmd("GET q"), V::b("local"));
    for n in [&t.a, &t.b, &t.hub] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp2_clients_get_invalidations_through_a_redirect_subscriber() {
    let t = tree(1000, 1000).await;
    let mut sub = Client::connect(t.b.resp_addr().unwrap());
    let sub_id = sub.cmd("CLIENT ID");
    let confirm = sub.cmd("SUBSCRIBE __redis__:invalidate");
    assert_eq!(confirm.items()[0], V::b("subscribe"));
    let mut c = Client::connect(t.b.resp_addr().unwrap());
    assert_eq!(
        c.cmd(&format!("CLIENT TRACKING on REDIRECT {}", sub_id.text())),
        V::Simple("OK".into())
    );
    assert_eq!(c.cmd("CLIENT GETREDIR"), sub_id);
    t.a.default_cache().set("k", "1").unwrap();
    until_value(&t.b, "k", "1").await;
    assert_eq!(c.cmd("GET k"), V::b("1"));
    t.a.default_cache().set("k", "2").unwrap();
    let message = sub.read();
    assert_eq!(
        message,
        V::Array(vec![
            V::b("message"),
            V::b("__redis__:invalidate"),
            V::Array(vec![V::b("k")])
        ])
    );
    for n in [&t.a, &t.b, &t.hub] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcast_optin_noloop_and_the_table_bound() {
    let t = tree(1000, 2).await;
    let b = t.b.default_cache();

    // BCAST with a prefix: every change under the prefix, read or not; nothing else.
    let mut bcast = tracker(&t.b, " BCAST PREFIX user:");
    b.set("user:1", "x").unwrap();
    expect_invalidation(&mut bcast, Some("user:1"));
    b.set("other", "x").unwrap();
    no_push(&mut bcast);

    // OPTIN: only reads after CLIENT CACHING yes are tracked.
    let mut optin = tracker(&t.b, " OPTIN");
    b.set("o1", "x").unwrap();
    b.set("o2", "x").unwrap();
    assert_eq!(optin.cmd("GET o1"), V::b("x"));
    assert_eq!(optin.cmd("CLIENT CACHING yes"), V::Simple("OK".into()));
    assert_eq!(optin.cmd("GET o2"), V::b("x"));
    b.set("o1", "y").unwrap();
    b.set("o2", "y").unwrap();
    expect_invalidation(&mut optin, Some("o2"));
    no_push(&mut optin);

    // NOLOOP: a client's own writes are not sent back to it.
    let mut noloop = tracker(&t.b, " NOLOOP");
    assert_eq!(noloop.cmd("GET n"), V::Null);
    noloop.cmd("SET n mine");
    no_push(&mut noloop);
    // As in Redis, the write ends the tracking of n (the writer knows its value): read again.
    assert_eq!(noloop.cmd("GET n"), V::b("mine"));
    b.set("n", "theirs").unwrap();
    expect_invalidation(&mut noloop, Some("n"));

    // The table holds two keys here: tracking a third invalidates the oldest.
    let mut bounded = tracker(&t.b, "");
    for k in ["t1", "t2"] {
        assert_eq!(bounded.cmd(&format!("GET {k}")), V::Null);
    }
    // n is still tracked for the NOLOOP client; reading t1 and t2 pushed it out, and t1 goes next.
    assert_eq!(bounded.cmd("GET t3"), V::Null);
    expect_invalidation(&mut bounded, Some("t1"));
    let info = bounded.cmd("CLIENT TRACKINGINFO");
    assert!(matches!(info, V::Map(_)));
    for n in [&t.a, &t.b, &t.hub] {
        n.shutdown().await;
    }
}
