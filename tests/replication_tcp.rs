//! Replication over real sockets (TCP on 127.0.0.1:0 and a Unix socket), with a fault-injecting
//! proxy on the links under test.

mod support;

use std::time::Duration;

use leafcache::replication::codec::{decode, encode};
use leafcache::replication::message::{Hello, MAGIC, Message, Refusal, Role};
use leafcache::{CacheConfig, Error, LinkState, Node, NodeId, SyncKind};
use support::proxy::Proxy;
use support::{converged, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(10);

fn hub(name: &str) -> Node {
    Node::builder()
        .name(name)
        .secret("s3cret")
        .local_address("127.0.0.1:0")
        .connection_timeout("2s")
        .build()
        .unwrap()
}

fn leaf(name: &str, hub_addr: &str) -> Node {
    Node::builder()
        .name(name)
        .secret("s3cret")
        .remote_address(hub_addr)
        .connection_timeout("2s")
        .build()
        .unwrap()
}

fn addr(node: &Node) -> String {
    node.local_addr().unwrap().to_string()
}

async fn wait_converged(nodes: &[&Node]) {
    eventually(WAIT, "convergence", || converged(nodes)).await;
}

/// Waits until `node`'s link to its hub is no longer up (after a cut).
async fn wait_down(node: &Node) {
    eventually(WAIT, "the cut is seen", || {
        (node.links().first().map(|l| l.state) != Some(LinkState::Up))
            .then_some(())
            .ok_or_else(String::new)
    })
    .await;
}

async fn wait_up(node: &Node) {
    eventually(WAIT, "upstream link up", || {
        let links = node.links();
        match links
            .iter()
            .find(|l| l.direction == leafcache::Direction::Upstream)
        {
            Some(l) if l.state == LinkState::Up => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn star_and_three_level_tree_over_tcp_and_unix_sockets() {
    let root = hub("root");
    let a = leaf("a", &addr(&root));
    let b = leaf("b", &addr(&root));
    // A relay: leaf of root, hub of its own leaf over a Unix socket.
    let dir = std::env::temp_dir().join(format!("leafcache-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = format!("unix:{}", dir.join("relay.sock").display());
    let relay = Node::builder()
        .name("relay")
        .secret("s3cret")
        .remote_address(addr(&root))
        .local_address(&sock)
        .build()
        .unwrap();
    let deep = leaf("deep", &sock);
    let nodes = [&root, &a, &b, &relay, &deep];
    for (i, n) in nodes.iter().enumerate() {
        n.default_cache()
            .set(format!("k{i}"), format!("from {}", n.name()))
            .unwrap();
    }
    for n in nodes {
        eventually(WAIT, "every write everywhere", || {
            (0..5)
                .all(|i| n.default_cache().contains(format!("k{i}")))
                .then_some(())
                .ok_or(format!("{} incomplete", n.name()))
        })
        .await;
    }
    wait_converged(&nodes).await;
    let relay_links = relay.links();
    assert_eq!(relay_links.len(), 2, "{relay_links:?}");
    assert!(
        relay_links
            .iter()
            .any(|l| l.peer_name.as_deref() == Some("deep"))
    );
    assert!(relay_links.iter().any(|l| l.peer_role == Some(Role::Hub)));
    for n in nodes {
        n.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_and_heal_through_the_proxy() {
    let root = hub("root");
    let proxy = Proxy::start(&addr(&root)).await;
    let cut_off = leaf("cut-off", proxy.addr());
    let other = leaf("other", &addr(&root));
    let (r, c) = (root.default_cache(), cut_off.default_cache());
    // A slow link first: 5 ms added to every chunk each way.
    proxy.latency(Duration::from_millis(5));
    r.set("shared", "v0").unwrap();
    r.set("doomed", "v0").unwrap();
    c.set("from-slow-leaf", "v0").unwrap();
    wait_converged(&[&root, &cut_off, &other]).await;
    assert_eq!(other.default_cache().get("from-slow-leaf").unwrap(), "v0");

    proxy.cut();
    wait_down(&cut_off).await;
    // Both sides keep working.
    c.set("shared", "leaf, older").unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await; // distinct wall-clock ms for the versions
    r.set("shared", "hub, newer").unwrap();
    r.delete("doomed");
    c.set("leaf-only", "x").unwrap();
    c.set_with_ttl("ttl", "t", Duration::from_secs(60)).unwrap();
    let expires = c.peek("ttl").unwrap().expires_at;
    assert_eq!(other.default_cache().get("leaf-only"), None);

    proxy.heal();
    wait_converged(&[&root, &cut_off, &other]).await;
    for n in [&root, &cut_off, &other] {
        let cache = n.default_cache();
        assert_eq!(cache.get("shared").unwrap(), "hub, newer");
        assert_eq!(cache.get("doomed"), None);
        assert_eq!(cache.get("leaf-only").unwrap(), "x");
        assert_eq!(cache.peek("ttl").unwrap().expires_at, expires);
    }
    for n in [&root, &cut_off, &other] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_and_hashes_merge_across_a_partition_over_tcp() {
    let root = hub("root");
    let proxy = Proxy::start(&addr(&root)).await;
    let cut_off = leaf("cut-off", proxy.addr());
    let other = leaf("other", &addr(&root));
    let (c, o) = (cut_off.default_cache(), other.default_cache());
    c.incr("n", 100).unwrap();
    c.hset("h", "a", "1").unwrap();
    wait_converged(&[&root, &cut_off, &other]).await;
    proxy.latency(Duration::from_millis(2));
    proxy.cut();
    wait_down(&cut_off).await;
    for _ in 0..500 {
        c.incr("n", 1).unwrap();
        o.incr("n", 1).unwrap();
    }
    c.hset("h", "from-cut-off", "x").unwrap();
    o.hset("h", "from-other", "y").unwrap();
    o.hincr("h", "hits", 2).unwrap();
    c.hincr("h", "hits", 3).unwrap();
    assert_eq!(c.get("n").unwrap(), "600");
    proxy.heal();
    eventually(WAIT, "every node adds both sides up", || {
        let all = [&root, &cut_off, &other]
            .iter()
            .all(|n| n.default_cache().get("n").as_deref() == Some(&b"1100"[..]));
        all.then_some(()).ok_or_else(String::new)
    })
    .await;
    wait_converged(&[&root, &cut_off, &other]).await;
    for n in [&root, &cut_off, &other] {
        let fields = n.default_cache().hgetall("h").unwrap();
        let names: Vec<&[u8]> = fields.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(names, [&b"a"[..], b"from-cut-off", b"from-other", b"hits"]);
        assert_eq!(n.default_cache().hget("h", "hits").unwrap().unwrap(), "5");
    }
    for n in [&root, &cut_off, &other] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_partition_sends_the_delta_and_a_restarted_leaf_gets_a_full_sync() {
    let root = hub("root");
    let proxy = Proxy::start(&addr(&root)).await;
    let id = NodeId(77);
    let start_leaf = |name: &str| {
        Node::builder()
            .name(name)
            .node_id(id)
            .secret("s3cret")
            .remote_address(proxy.addr())
            .build()
            .unwrap()
    };
    let l = start_leaf("leaf");
    let r = root.default_cache();
    for i in 0..20_000 {
        r.set(format!("key{i:05}"), vec![b'v'; 64]).unwrap();
    }
    wait_converged(&[&root, &l]).await;

    proxy.cut();
    for i in 0..1_000 {
        r.set(format!("key{i:05}"), vec![b'w'; 64]).unwrap();
    }
    let before = proxy.bytes_to_leaf();
    proxy.heal();
    wait_converged(&[&root, &l]).await;
    let sent = proxy.bytes_to_leaf() - before;
    let payload = 1_000 * (8 + 64);
    assert!(
        sent <= 2 * payload as u64,
        "{sent} bytes on the wire for {payload} changed"
    );
    eventually(WAIT, "delta sync reported", || {
        let link = root
            .links()
            .into_iter()
            .find(|s| s.peer_name.as_deref() == Some("leaf") && s.state == LinkState::Up);
        match link.and_then(|s| s.sync) {
            Some(s) if s.done && s.kind == SyncKind::Delta && s.changes == 1_000 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // A restart without persistence: same id, new incarnation, empty.
    l.shutdown().await;
    let l = start_leaf("leaf-again");
    wait_converged(&[&root, &l]).await;
    assert_eq!(l.default_cache().len(), 20_000);
    eventually(WAIT, "full sync reported", || {
        let link = root
            .links()
            .into_iter()
            .find(|s| s.peer_name.as_deref() == Some("leaf-again"));
        match link.and_then(|s| s.sync) {
            Some(s) if s.done && s.kind == SyncKind::Full && s.changes == 20_000 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    root.shutdown().await;
    l.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_peer_costs_a_bounded_window_and_catches_up() {
    let root = Node::builder()
        .name("root")
        .local_address("127.0.0.1:0")
        .connection_timeout("300ms")
        .build()
        .unwrap();
    let proxy = Proxy::start(&addr(&root)).await;
    let slow = Node::builder()
        .name("slow")
        .remote_address(proxy.addr())
        .connection_timeout("300ms")
        .build()
        .unwrap();
    wait_up(&slow).await;
    proxy.stall();
    let before = proxy.bytes_to_leaf();
    let r = root.default_cache();
    for round in 0..20 {
        for i in 0..5_000 {
            r.set(format!("k{i}"), format!("round {round}").repeat(20))
                .unwrap();
        }
        tokio::task::yield_now().await;
    }
    // Invariant 6: the hub does not buffer 100k changes for the stalled leaf: it sends a bounded
    // window and, the peer silent past the timeout, drops the link and keeps a cursor instead.
    eventually(WAIT, "the stalled link is dropped", || {
        let st = root.links();
        st.iter()
            .any(|l| l.peer_name.as_deref() == Some("slow") && l.state == LinkState::Down)
            .then_some(())
            .ok_or(format!("{st:?}"))
    })
    .await;
    let out: u64 = root.links().iter().map(|l| l.bytes_out).sum();
    let bound = (leafcache::replication::WINDOW * leafcache::replication::BATCH_BYTES) as u64 * 2;
    assert!(
        out < bound,
        "the hub wrote {out} bytes toward a stalled peer (bound {bound})"
    );
    assert_eq!(
        proxy.bytes_to_leaf(),
        before,
        "nothing got through the stall"
    );
    proxy.heal();
    wait_converged(&[&root, &slow]).await;
    assert_eq!(
        slow.default_cache().get("k0").unwrap(),
        "round 19".repeat(20)
    );
    root.shutdown().await;
    slow.shutdown().await;
}

/// The reason the hub recorded for the closed link from `peer` (or from an unnamed peer).
async fn closed_reason(hub: &Node, peer: Option<&str>) -> String {
    let mut reason = String::new();
    eventually(WAIT, "a closed link with a reason", || {
        let st = hub.links();
        match st.iter().find(|l| {
            l.peer_name.as_deref() == peer
                && matches!(l.state, LinkState::Down | LinkState::Refused)
        }) {
            Some(l) => {
                reason = l.last_error.clone().unwrap_or_default();
                Ok(())
            }
            None => Err(format!("{st:?}")),
        }
    })
    .await;
    reason
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_and_wrong_cluster_are_refused_on_both_sides() {
    let root = hub("root");
    let good = leaf("good", &addr(&root));
    let bad_secret = Node::builder()
        .name("bad-secret")
        .secret("guess")
        .remote_address(addr(&root))
        .build()
        .unwrap();
    let bad_cluster = Node::builder()
        .name("bad-cluster")
        .cluster("elsewhere")
        .secret("s3cret")
        .remote_address(addr(&root))
        .build()
        .unwrap();
    for (node, reason) in [
        (&bad_secret, "wrong cluster secret"),
        (&bad_cluster, "cluster mismatch"),
    ] {
        eventually(WAIT, "refused", || {
            let st = node.links();
            match st.first().map(|s| (&s.state, &s.last_error)) {
                Some((LinkState::Refused, Some(e))) if e.contains(reason) => Ok(()),
                _ => Err(format!("{st:?}")),
            }
        })
        .await;
        let seen_by_hub = closed_reason(&root, Some(node.name())).await;
        assert!(seen_by_hub.contains(reason), "{seen_by_hub}");
        // Who refused whom, from each side (with a wrong secret each side refuses the other's
        // proof; with another cluster the hub refuses the leaf).
        assert!(
            seen_by_hub.contains("this node refused the peer"),
            "{seen_by_hub}"
        );
        let seen_by_leaf = node.links()[0].last_error.clone().unwrap_or_default();
        assert!(
            seen_by_leaf.contains("the peer refused this node")
                || seen_by_leaf.contains("this node refused the peer"),
            "{seen_by_leaf}"
        );
    }
    // The hub and its good link go on.
    root.default_cache().set("still", "working").unwrap();
    wait_converged(&[&root, &good]).await;
    assert_eq!(bad_secret.default_cache().get("still"), None);
    for n in [&root, &good, &bad_secret, &bad_cluster] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_close_only_their_own_link() {
    let root = hub("root");
    let good = leaf("good", &addr(&root));
    let proxy = Proxy::start(&addr(&root)).await;
    let victim = leaf("victim", proxy.addr());
    wait_up(&good).await;
    wait_up(&victim).await;

    // Garbage mid-stream.
    proxy.inject_garbage();
    assert!(
        closed_reason(&root, Some("victim"))
            .await
            .contains("malformed frame")
    );

    // A frame cut in the middle, on the victim's next connection. The victim may not have seen
    // the hub close the first one yet (its status still says up): wait for the hub to hold a new
    // link from it, so that the tear cannot land on the dying connection.
    eventually(WAIT, "the victim reconnected", || {
        let st = root.links();
        st.iter()
            .any(|l| l.peer_name.as_deref() == Some("victim") && l.state == LinkState::Up)
            .then_some(())
            .ok_or(format!("{st:?}"))
    })
    .await;
    wait_up(&victim).await;
    proxy.tear_next_frame();
    victim
        .default_cache()
        .set("torn", "x".repeat(1000))
        .unwrap();
    hub_reported(&root, "middle of a frame").await;

    // Raw clients: an oversized length, and a hello of another protocol version.
    let mut raw = tokio::net::TcpStream::connect(addr(&root)).await.unwrap();
    raw.write_all(&[0xff, 0xff, 0xff, 0xff, 0, 0])
        .await
        .unwrap();
    let mut sink = Vec::new();
    // The hub answers with its hello, then closes.
    let _ = tokio::time::timeout(WAIT, raw.read_to_end(&mut sink))
        .await
        .unwrap();
    hub_reported(&root, "longer than").await;

    let mut raw = tokio::net::TcpStream::connect(addr(&root)).await.unwrap();
    let hello = Message::Hello(Hello {
        magic: MAGIC,
        protocol: 99,
        cluster: "leafcache".into(),
        node: NodeId(5),
        name: "future".into(),
        role: Role::Leaf,
        incarnation: 1,
        challenge: [0; 32],
        timeout_ms: 1000,
        compression: 0,
    });
    let payload = encode(&hello).unwrap();
    raw.write_all(&(payload.len() as u32).to_be_bytes())
        .await
        .unwrap();
    raw.write_all(&payload).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, raw.read_to_end(&mut answer))
        .await
        .unwrap();
    let frames = split_frames(&answer);
    assert!(
        frames.iter().any(|f| decode(f).ok()
            == Some(Message::Reject(Refusal::Protocol {
                ours: leafcache::replication::message::PROTOCOL_VERSION,
                theirs: 99
            }))),
        "the hub says why: {frames:?}"
    );

    // Through all of it the node and its other link went on, and the victim reconnects.
    root.default_cache().set("after", "all").unwrap();
    victim.default_cache().set("from-victim", "ok").unwrap();
    wait_converged(&[&root, &good, &victim]).await;
    assert_eq!(good.default_cache().get("from-victim").unwrap(), "ok");
    assert_eq!(good.default_cache().get("torn").unwrap(), "x".repeat(1000));
    for n in [&root, &good, &victim] {
        n.shutdown().await;
    }
}

/// Waits until one of the hub's links failed with an error containing `needle`.
async fn hub_reported(hub: &Node, needle: &str) {
    eventually(WAIT, needle, || {
        let errors: Vec<String> = hub
            .links()
            .into_iter()
            .filter_map(|l| l.last_error)
            .collect();
        errors
            .iter()
            .any(|e| e.contains(needle))
            .then_some(())
            .ok_or(format!("{errors:?}"))
    })
    .await;
}

fn split_frames(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let n = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        if bytes.len() < 4 + n {
            break;
        }
        out.push(bytes[4..4 + n].to_vec());
        bytes = &bytes[4 + n..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_wait_for_the_hub() {
    let root = hub("root");
    let proxy = Proxy::start(&addr(&root)).await;
    let l = Node::builder()
        .name("leaf")
        .secret("s3cret")
        .remote_address(proxy.addr())
        .connection_timeout("500ms")
        .build()
        .unwrap();
    wait_up(&l).await;
    let c = l.default_cache();
    c.set_acked("k", "v").await.unwrap();
    assert_eq!(
        root.default_cache().get("k").unwrap(),
        "v",
        "on the hub when set_acked returns"
    );
    c.delete_acked("k").await.unwrap();
    assert_eq!(root.default_cache().get("k"), None);

    proxy.stall();
    let err = c.set_acked("k2", "v").await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert_eq!(c.get("k2").unwrap(), "v", "the write stays applied locally");
    proxy.heal();
    wait_converged(&[&root, &l]).await;

    let err = root.default_cache().set_acked("x", "y").await.unwrap_err();
    assert!(matches!(err, Error::NoUpstream), "a hub has no hub: {err}");
    root.shutdown().await;
    l.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_miss_asks_the_hub_before_loading() {
    let root = hub("root");
    let loads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = loads.clone();
    let l = Node::builder()
        .name("small-leaf")
        .secret("s3cret")
        .remote_address(addr(&root))
        .fetch_on_miss("1s")
        .default_cache(CacheConfig::new().max_entries(10).shards(1).loader(
            leafcache::Loader::sync(move |_k: &[u8]| {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, std::io::Error>("loaded")
            }),
        ))
        .build()
        .unwrap();
    wait_up(&l).await;
    let r = root.default_cache();
    for i in 0..100 {
        r.set(format!("k{i}"), format!("v{i}")).unwrap();
    }
    eventually(WAIT, "the leaf saw the writes", || {
        l.default_cache()
            .contains("k99")
            .then_some(())
            .ok_or_else(String::new)
    })
    .await;
    let c = l.default_cache();
    assert!(!c.contains("k0"), "evicted on the small leaf");
    assert_eq!(c.get_or_load("k0").await.unwrap(), "v0", "found on the hub");
    assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(c.get("k0").unwrap(), "v0", "and cached here");
    assert_eq!(c.get_or_load("nowhere").await.unwrap(), "loaded");
    assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 1);
    root.shutdown().await;
    l.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_what_was_written() {
    let root = hub("root");
    let l = leaf("leaf", &addr(&root));
    wait_up(&l).await;
    for i in 0..2_000 {
        l.default_cache().set(format!("k{i}"), "v").unwrap();
    }
    l.shutdown().await;
    eventually(WAIT, "the hub has every write", || {
        (root.default_cache().len() == 2_000)
            .then_some(())
            .ok_or(format!("{}", root.default_cache().len()))
    })
    .await;
    assert!(
        closed_reason(&root, Some("leaf"))
            .await
            .contains("closed by the peer")
    );
    root.shutdown().await;
}

/// Frames of changes are compressed when both ends read LZ4 (the default): a full sync of 20,000
/// alike 64-byte values takes well under half the bytes on the wire, as the proxy counts them, and
/// arrives whole; with compression off at either end nothing is compressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_are_compressed_when_both_ends_read_lz4() {
    let mut wire = Vec::new();
    for (hub_compresses, leaf_compresses) in [(true, true), (true, false), (false, true)] {
        let hub = Node::builder()
            .name("hub")
            .local_address("127.0.0.1:0")
            .compression(hub_compresses)
            .build()
            .unwrap();
        for i in 0..20_000 {
            hub.default_cache()
                .set(format!("key{i:06}"), vec![b'v'; 64])
                .unwrap();
        }
        let proxy = Proxy::start(hub.local_addr().unwrap()).await;
        let leaf = Node::builder()
            .name("leaf")
            .remote_address(proxy.addr())
            .compression(leaf_compresses)
            .build()
            .unwrap();
        wait_converged(&[&hub, &leaf]).await;
        assert_eq!(leaf.default_cache().len(), 20_000);
        wire.push(proxy.bytes_to_leaf());
        leaf.shutdown().await;
        hub.shutdown().await;
    }
    let payload = 20_000 * (9 + 64);
    assert!(
        wire[0] * 3 < payload as u64,
        "compressed: {} bytes for {payload} of keys and values",
        wire[0]
    );
    for off in &wire[1..] {
        assert!(
            *off > payload as u64,
            "uncompressed: {off} bytes for {payload}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_leaves_at_once_get_their_full_syncs_a_few_at_a_time() {
    let root = Node::builder()
        .name("root")
        .secret("s3cret")
        .local_address("127.0.0.1:0")
        .max_concurrent_syncs(2)
        .build()
        .unwrap();
    for i in 0..5_000 {
        root.default_cache().set(format!("k{i}"), "v").unwrap();
    }
    let count = 50;
    let leaves: Vec<Node> = (0..count)
        .map(|i| leaf(&format!("leaf-{i}"), &addr(&root)))
        .collect();
    eventually(
        Duration::from_secs(60),
        "every leaf holds the 5,000",
        || {
            let short = leaves
                .iter()
                .filter(|l| l.default_cache().len() < 5_000)
                .count();
            if short == 0 {
                Ok(())
            } else {
                Err(format!("{short} leaves short"))
            }
        },
    )
    .await;
    let slots = root.sync_slots();
    assert!(
        slots.peak() >= 1 && slots.peak() <= 2,
        "peak {}",
        slots.peak()
    );
    eventually(WAIT, "every slot given back", || {
        if slots.in_use() == 0 {
            Ok(())
        } else {
            Err(format!("{} in use", slots.in_use()))
        }
    })
    .await;
    eventually(WAIT, "a full sync counted for every leaf", || {
        let full: u64 = root.links().iter().map(|l| l.full_syncs).sum();
        if full == count as u64 {
            Ok(())
        } else {
            Err(format!("{full}"))
        }
    })
    .await;
    for n in leaves.iter().chain([&root]) {
        n.shutdown().await;
    }
}

/// The fault switch over real sockets: a leaf that leaves 30 % of its merged deltas' fields out
/// of every batch (repairs too: each round mends what the last one lost again) still ends with its hub holding exactly what it holds, once anti-entropy has run;
/// the keys it repaired are counted in the cache's stats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_entropy_heals_a_lossy_link_over_tcp() {
    let hub = Node::builder()
        .name("hub")
        .secret("s3cret")
        .local_address("127.0.0.1:0")
        .connection_timeout("300ms")
        .build()
        .unwrap();
    let leaf = Node::builder()
        .name("leaf")
        .secret("s3cret")
        .remote_address(addr(&hub))
        .connection_timeout("300ms")
        .anti_entropy(Some(Duration::from_secs(1)))
        .fault_drop_merged_parts(300)
        .build()
        .unwrap();
    wait_up(&leaf).await;
    let cache = leaf.default_cache();
    let fields = |n: &Node| -> usize {
        (0..20)
            .map(|h| n.default_cache().hgetall(format!("h{h}")).unwrap().len())
            .sum()
    };
    // Every hash begun at the hub first: a delta for a key the receiver holds nothing of is
    // answered with `Want`, and the whole state comes again until it arrives whole.
    for h in 0..20 {
        cache.hset(format!("h{h}"), "f0", "v").unwrap();
    }
    support::eventually(
        Duration::from_secs(10),
        "the hashes reach the hub",
        || match fields(&hub) {
            20 => Ok(()),
            n => Err(format!("{n} of 20")),
        },
    )
    .await;
    // Then one field at a time: each change is a delta of the fields changed since, some lost.
    for h in 0..20 {
        for f in 1..10 {
            cache.hset(format!("h{h}"), format!("f{f}"), "v").unwrap();
        }
    }
    support::eventually(
        Duration::from_secs(40),
        "anti-entropy heals the hub",
        || {
            support::converged(&[&hub, &leaf])?;
            match fields(&hub) {
                200 => Ok(()),
                n => Err(format!("{n} of 200 fields at the hub")),
            }
        },
    )
    .await;
    let repairs = leaf.default_cache().stats().antientropy_repairs;
    assert!(repairs > 0, "repairs were made but not counted");
    // The link's published status follows within a moment.
    support::eventually(Duration::from_secs(10), "the link counts them too", || {
        let link = &leaf.links()[0];
        match (link.antientropy_rounds, link.antientropy_repairs) {
            (rounds, r) if rounds > 0 && r == repairs => Ok(()),
            other => Err(format!("{other:?} against {repairs}")),
        }
    })
    .await;
}
