//! Replication through the real tokio driver — handshake, heartbeats, `connection_timeout`,
//! reconnect backoff, the close handshake, fetch on miss, acknowledged writes — over the in-memory
//! network under paused time: scenario stories, then seeded random schedules of writes, cuts,
//! stalls, delays, restarts and skewed, drifting clocks.
//!
//! `LEAFCACHE_SIM_DRIVER_SCHEDULES=N` runs N random schedules (default 300);
//! `LEAFCACHE_SIM_FIRST=F` starts at seed F (to split a long run);
//! `LEAFCACHE_SIM_SEED=S` replays one with its whole trace.

mod support;

use std::time::Duration;

use leafcache::{Direction, Error, LinkState};
use rand::SeedableRng;
use support::cluster::{Cluster, simulate};

/// hub 0; leaves 1 and 2; 3 and 4 are leaves of relay 1.
const TREE: [Option<usize>; 5] = [None, Some(0), Some(0), Some(1), Some(1)];

fn upstream_state(c: &Cluster, i: usize) -> LinkState {
    c.nodes[i]
        .links()
        .into_iter()
        .find(|l| l.direction == Direction::Upstream)
        .map(|l| l.state)
        .unwrap()
}

async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what}: not true after {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn a_write_anywhere_reaches_every_node_through_the_driver() {
    simulate(async {
        let mut c = Cluster::new(1, &TREE, false);
        for (i, node) in c.nodes.iter().enumerate() {
            node.default_cache().set(format!("from{i}"), "v").unwrap();
        }
        c.settle(Duration::from_secs(10)).await.unwrap();
        for node in &c.nodes {
            assert_eq!(node.default_cache().len(), 5, "on {}", node.name());
        }
        c.shutdown().await;
    });
}

#[test]
fn a_silent_peer_is_declared_down_after_the_timeout_and_the_link_comes_back() {
    simulate(async {
        let mut c = Cluster::new(2, &[None, Some(0)], false);
        c.settle(Duration::from_secs(10)).await.unwrap();
        // The peer stops answering without closing anything: only heartbeats can tell.
        c.net.stall("n1", "n0", true);
        let start = tokio::time::Instant::now();
        wait_until(
            "the leaf gives up on its hub",
            Duration::from_secs(10),
            || upstream_state(&c, 1) != LinkState::Up,
        )
        .await;
        let after = start.elapsed();
        // Silence is counted from the last frame, which came up to a heartbeat (a quarter of the
        // timeout) before the stall.
        assert!(
            after >= c.timeout * 3 / 4 && after <= c.timeout * 5 / 4,
            "declared down after {after:?}, timeout {:?}",
            c.timeout
        );
        // While the hub stays unreachable the leaf keeps retrying with backoff, writes stay local.
        c.net.cut("n1", "n0");
        c.net.stall("n1", "n0", false);
        c.nodes[1].default_cache().set("while-apart", "x").unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_ne!(upstream_state(&c, 1), LinkState::Up);
        assert!(c.nodes[0].default_cache().get("while-apart").is_none());
        c.net.heal("n1", "n0");
        wait_until("the link is back", Duration::from_secs(10), || {
            upstream_state(&c, 1) == LinkState::Up
        })
        .await;
        c.settle(Duration::from_secs(10)).await.unwrap();
        assert_eq!(c.nodes[0].default_cache().get("while-apart").unwrap(), "x");
        c.shutdown().await;
    });
}

#[test]
fn a_graceful_shutdown_delivers_everything_and_says_goodbye() {
    simulate(async {
        let mut c = Cluster::new(3, &[None, Some(0)], false);
        c.settle(Duration::from_secs(10)).await.unwrap();
        // A slow link: the writes are still in flight when the leaf is told to stop.
        c.net.delay("n1", "n0", Duration::from_millis(300));
        for i in 0..500 {
            c.nodes[1]
                .default_cache()
                .set(format!("k{i}"), "v")
                .unwrap();
        }
        c.nodes[1].shutdown().await;
        assert_eq!(c.nodes[0].default_cache().len(), 500, "nothing lost");
        let hub_side = c.nodes[0]
            .links()
            .into_iter()
            .find(|l| l.direction == Direction::Downstream)
            .unwrap();
        assert_eq!(
            hub_side.last_error.as_deref(),
            Some("closed by the peer"),
            "a clean close, not a timeout"
        );
        c.nodes[0].shutdown().await;
    });
}

#[test]
fn a_miss_asks_the_hub_before_the_loader() {
    simulate(async {
        let mut c = Cluster::new(4, &[None, Some(0), Some(0)], false);
        c.settle(Duration::from_secs(10)).await.unwrap();
        c.cut(1);
        c.nodes[0]
            .default_cache()
            .set("shared", "at the hub")
            .unwrap();
        let leaf = c.nodes[2].default_cache();
        wait_until(
            "the hub's write reached leaf 2",
            Duration::from_secs(5),
            || leaf.contains("shared"),
        )
        .await;
        leaf.delete("shared");
        // Leaf 2 deleted it; the hub has the delete too once it arrives. A new key at the hub,
        // fetched by a leaf whose link is up: the hub answers, the loader is not called.
        c.nodes[0]
            .default_cache()
            .set("only-hub", "hub value")
            .unwrap();
        c.nodes[0].default_cache().set("other", "y").unwrap();
        let fetched = c.nodes[2]
            .default_cache()
            .get_or_load("only-hub")
            .await
            .unwrap();
        assert_eq!(fetched, "hub value");
        assert_eq!(c.nodes[2].default_cache().stats().loads, 0);
        // Leaf 1 is cut off: its miss times out on the hub and falls back to the loader.
        let loaded = c.nodes[1]
            .default_cache()
            .get_or_load("nowhere")
            .await
            .unwrap();
        assert_eq!(loaded, "loaded nowhere");
        assert_eq!(c.nodes[1].default_cache().stats().loads, 1);
        c.settle(Duration::from_secs(10)).await.unwrap();
        c.shutdown().await;
    });
}

#[test]
fn an_acknowledged_write_waits_for_the_hub_and_times_out_while_cut() {
    simulate(async {
        let mut c = Cluster::new(5, &[None, Some(0)], false);
        c.settle(Duration::from_secs(10)).await.unwrap();
        let leaf = c.nodes[1].default_cache();
        let v = leaf.set_acked("acked", "1").await.unwrap();
        assert_eq!(c.nodes[0].default_cache().peek("acked").unwrap().version, v);
        c.cut(1);
        let start = tokio::time::Instant::now();
        let err = leaf.set_acked("unacked", "2").await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert_eq!(
            start.elapsed(),
            c.timeout,
            "waits exactly connection_timeout"
        );
        assert_eq!(
            leaf.get("unacked").unwrap(),
            "2",
            "applied locally all the same"
        );
        c.heal(1);
        c.settle(Duration::from_secs(10)).await.unwrap();
        assert_eq!(c.nodes[0].default_cache().get("unacked").unwrap(), "2");
        c.shutdown().await;
    });
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let run = |seed: u64| {
        simulate(async move {
            let start = tokio::time::Instant::now();
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let tree = Cluster::random_tree(&mut rng, 8);
            let mut c = Cluster::new(seed, &tree, true);
            c.run_random(150).await;
            c.settle(Duration::from_secs(60)).await.unwrap();
            let digest: Vec<String> = c
                .nodes
                .iter()
                .map(|n| format!("{:?}", support::contents_at(n, n.now_ms())))
                .collect();
            c.shutdown().await;
            (c.trace.clone(), digest, start.elapsed())
        })
    };
    let (a, b) = (run(77), run(77));
    assert_eq!(a.0, b.0, "same steps");
    assert_eq!(a.1, b.1, "same contents, versions and seqs");
    assert_eq!(a.2, b.2, "in the same simulated time");
}

fn run_schedule(seed: u64) {
    simulate(async move {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let tree = Cluster::random_tree(&mut rng, 12);
        let mut c = Cluster::new(seed, &tree, true);
        c.run_random(200).await;
        if let Err(why) = c.settle(Duration::from_secs(120)).await {
            panic!("seed {seed}: {why}\n{}", c.trace_tail());
        }
        c.shutdown().await;
    });
}

#[test]
fn random_schedules_through_the_driver_converge() {
    support::run_seeds(
        support::seeds("LEAFCACHE_SIM_DRIVER_SCHEDULES", 300),
        run_schedule,
    );
}
