//! What anti-entropy costs on loopback TCP, both nodes in this process:
//! 1. an idle round on a link whose two ends hold the same 1M entries: the bytes it moves each
//!    way and the CPU it takes (the process's CPU time over the round, both ends together);
//! 2. 1,000 of those keys made different at the leaf behind replication's back: the time from
//!    the difference to the hub holding the leaf's versions, and the repairs counted.
//!
//! `cargo bench --bench antientropy` (`-- N` for N entries instead of 1,000,000).

use std::time::{Duration, Instant};

use bytes::Bytes;
use leafcache::{CacheConfig, Change, LinkState, Node, Timestamp, Version};

const EVERY: Duration = Duration::from_secs(4);

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .filter(|a| !a.starts_with('-'))
        .map_or(1_000_000, |a| a.parse().expect("entries"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(n));
}

/// User plus system CPU time of this process, in ms (`/proc/self/stat`, clock ticks of 10 ms).
fn cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks * 10
}

async fn wait(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn run(n: usize) {
    let config = CacheConfig::new().max_entries(n as u64 * 2);
    let hub = Node::builder()
        .name("hub")
        .local_address("127.0.0.1:0")
        .default_cache(config.clone())
        .anti_entropy(None)
        .connection_timeout("2s")
        .build()
        .unwrap();
    let hub_addr = hub.local_addr().unwrap().to_string();
    let cache = hub.default_cache();
    let value = Bytes::from(vec![b'v'; 64]);
    for i in 0..n {
        cache.set(format!("key{i:08}"), value.clone()).unwrap();
    }
    let leaf = Node::builder()
        .name("leaf")
        .remote_address(hub_addr)
        .default_cache(config)
        .anti_entropy(Some(EVERY))
        .connection_timeout("2s")
        .build()
        .unwrap();
    wait("the full sync", Duration::from_secs(120), || {
        leaf.default_cache().len() == n
    })
    .await;
    let link = || {
        leaf.links()
            .into_iter()
            .find(|l| l.state == LinkState::Up)
            .unwrap()
    };
    let rounds = || link().antientropy_rounds;

    // Idle rounds: from the end of one to the end of the next, three times.
    let r = rounds();
    wait("a first round", EVERY * 4, || rounds() > r).await;
    println!("idle link, {n} entries, a round every {EVERY:?}:");
    for _ in 0..3 {
        let (l0, c0, r0) = (link(), cpu_ms(), rounds());
        wait("a round", EVERY * 4, || rounds() > r0).await;
        let (l1, c1) = (link(), cpu_ms());
        println!(
            "  leaf -> hub {:>8} B, hub -> leaf {:>8} B, CPU {:>5} ms for both ends (one interval)",
            l1.bytes_out - l0.bytes_out,
            l1.bytes_in - l0.bytes_in,
            c1 - c0,
        );
    }

    // 1,000 keys newer at the leaf, made there as if they had come from the hub: replication
    // never sends them up; the next round finds them.
    let up = link().id;
    let leaf_cache = leaf.default_cache();
    let step = (n / 1_000).max(1);
    let keys: Vec<String> = (0..n)
        .step_by(step)
        .take(1_000)
        .map(|i| format!("key{i:08}"))
        .collect();
    for k in &keys {
        let held = leaf_cache.peek(k).unwrap().version;
        let version = Version {
            ts: Timestamp(held.ts.0 + 1),
            node: held.node,
        };
        let change = Change::Set {
            key: Bytes::from(k.clone()),
            value: Bytes::from_static(b"different"),
            version,
            expires_at: None,
        };
        assert!(leaf_cache.apply_as_if_from(&change, up));
    }
    let start = Instant::now();
    let repairs0 = leaf_cache.stats().antientropy_repairs;
    wait("the repair", EVERY * 6, || {
        keys.iter()
            .all(|k| cache.get(k).is_some_and(|v| v == "different"))
    })
    .await;
    println!(
        "{} keys of {n} different at the leaf: at the hub after {:.2} s (rounds every {EVERY:?}), {} repairs counted",
        keys.len(),
        start.elapsed().as_secs_f64(),
        leaf_cache.stats().antientropy_repairs - repairs0,
    );
    leaf.shutdown().await;
    hub.shutdown().await;
}
