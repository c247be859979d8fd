//! The `geo` scenario on the WAN test bed: a core, three regions of a hub and two leaves, each
//! region's hub reaching the core over a shaped link (40, 80 and 150 ms one way, 100, 50 and
//! 10 Mbit/s, with jitter). A write crosses regions no faster than the links allow and no slower
//! than a few round trips; a region cut off keeps working, and the tree converges when it is back.
//! The long version, with figures, is `cargo bench --bench geo`.

mod support;

use std::time::{Duration, Instant};

use leafcache::{LinkState, Node};
use support::wan::geo;
use support::{converged, eventually};

const WAIT: Duration = Duration::from_secs(30);

fn node(name: &str, listen: bool, hub: Option<&str>) -> Node {
    let mut b = Node::builder()
        .name(name)
        .secret("geo")
        .connection_timeout("3s");
    if listen {
        b = b.local_address("127.0.0.1:0");
    }
    if let Some(h) = hub {
        b = b.remote_address(h);
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_cross_regions_within_the_links_limits_and_a_cut_off_region_catches_up() {
    let (core, regions) = geo(node).await;
    let (eu, ap) = (&regions[0], &regions[2]);
    // Europe → Asia: leaf → eu hub → (40 ms) core → (150 ms) ap hub → leaf.
    let start = Instant::now();
    eu.leaves[0]
        .default_cache()
        .set("hello", "from paris")
        .unwrap();
    eventually(WAIT, "the write in Asia", || {
        ap.leaves[1]
            .default_cache()
            .get("hello")
            .map(|_| ())
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(190),
        "faster than the links allow: {took:?}"
    );
    eprintln!("paris → sydney: {took:?} (one-way latencies 40 + 150 ms)");

    // Asia is cut off; both sides keep writing.
    ap.wan.cut();
    eventually(WAIT, "the cut seen", || match ap.hub.links().first() {
        Some(l) if l.state != LinkState::Up => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .await;
    for i in 0..500 {
        eu.leaves[1]
            .default_cache()
            .set(format!("eu{i}"), "x")
            .unwrap();
        ap.leaves[0]
            .default_cache()
            .set(format!("ap{i}"), "y")
            .unwrap();
    }
    // Within the region, replication goes on.
    eventually(WAIT, "the region's own writes at its other leaf", || {
        ap.leaves[1]
            .default_cache()
            .get("ap499")
            .map(|_| ())
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    assert_eq!(ap.leaves[1].default_cache().get("eu499"), None, "cut off");
    ap.wan.heal();
    let mut all: Vec<&Node> = vec![&core];
    for r in &regions {
        all.extend([&r.hub, &r.leaves[0], &r.leaves[1]]);
    }
    eventually(WAIT, "all ten nodes converge", || converged(&all)).await;
    assert_eq!(regions[1].leaves[0].default_cache().len(), 1_001);
    // What went over the 10 Mbit/s link after the heal: the region's 500 writes (by delta or
    // by difference), not a copy of everything.
    let sync = ap.hub.links()[0].sync.clone().unwrap();
    assert!(
        sync.kind != leafcache::SyncKind::Full && sync.changes <= 501,
        "{sync:?}"
    );
    for n in all {
        n.shutdown().await;
    }
}
