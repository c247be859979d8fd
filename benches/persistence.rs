//! Persistence figures, one node in this process with its root in the system temp dir:
//! 1. snapshot write and restore of 1M entries (10-byte keys, 64-byte values), medians of 3;
//! 2. the set-throughput cost of the op log at each flush setting, against no root at all.
//!
//! `cargo bench --bench persistence` (`-- snapshot|flush` for one part).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use leafcache::{CacheConfig, Flush, Node, NodeBuilder};

const N: u64 = 1_000_000;

fn main() {
    let which = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let run = |name: &str| which.as_deref().is_none_or(|w| w == name);
    if run("snapshot") {
        snapshot(&rt);
    }
    if run("flush") {
        flush(&rt);
    }
}

fn temp_root(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("leafcache-bench-{tag}-{}", std::process::id()))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn node(root: Option<&Path>, flush: Flush) -> Node {
    let mut b: NodeBuilder = Node::builder().default_cache(CacheConfig::new().max_entries(2 * N));
    if let Some(root) = root {
        b = b.root(root).snapshot_interval("1h").flush(flush);
    }
    b.build().unwrap()
}

fn snapshot(rt: &tokio::runtime::Runtime) {
    let root = temp_root("snapshot");
    let _ = std::fs::remove_dir_all(&root);
    let n = node(Some(&root), Flush::Never);
    let cache = n.default_cache();
    for i in 0..N {
        cache
            .set(
                Bytes::from(format!("k{i:09}")),
                Bytes::from(vec![(i % 251) as u8; 64]),
            )
            .unwrap();
    }
    let mut writes = Vec::new();
    let mut bytes = 0;
    for _ in 0..3 {
        let report = n.snapshot().unwrap();
        assert_eq!(report.entries, N);
        bytes = report.bytes;
        writes.push(report.elapsed);
    }
    rt.block_on(n.shutdown());
    drop((n, cache));
    let mut restores = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let n = node(Some(&root), Flush::Never);
        restores.push(started.elapsed());
        assert_eq!(n.default_cache().len() as u64, N);
        rt.block_on(n.shutdown());
        drop(n);
    }
    println!(
        "snapshot of {N} entries ({:.1} MB): write {:.0} ms, restore {:.0} ms (medians of 3; writes {:?}, restores {:?})",
        bytes as f64 / 1e6,
        median(writes.clone()).as_secs_f64() * 1e3,
        median(restores.clone()).as_secs_f64() * 1e3,
        writes.iter().map(|d| d.as_millis()).collect::<Vec<_>>(),
        restores.iter().map(|d| d.as_millis()).collect::<Vec<_>>(),
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// 1M sets over 100k keys (64-byte values) from one thread; the rate at each setting.
fn flush(rt: &tokio::runtime::Runtime) {
    const SETS: u64 = 1_000_000;
    let keys: Vec<Bytes> = (0..100_000)
        .map(|i| Bytes::from(format!("k{i:09}")))
        .collect();
    let value = Bytes::from(vec![7u8; 64]);
    let settings: [(&str, Option<Flush>); 5] = [
        ("no root", None),
        ("never", Some(Flush::Never)),
        (
            "every 100ms",
            Some(Flush::Every(Duration::from_millis(100))),
        ),
        ("every 10ms", Some(Flush::Every(Duration::from_millis(10)))),
        ("always", Some(Flush::Always)),
    ];
    let mut results: Vec<(&str, Vec<f64>)> =
        settings.iter().map(|(n, _)| (*n, Vec::new())).collect();
    // Rounds interleave the settings, so that machine noise spreads over all of them.
    for _ in 0..3 {
        for (i, (_, flush)) in settings.iter().enumerate() {
            let root = temp_root("flush");
            let _ = std::fs::remove_dir_all(&root);
            let n = node(flush.map(|_| root.as_path()), flush.unwrap_or(Flush::Never));
            let cache = n.default_cache();
            let sets = if *flush == Some(Flush::Always) {
                SETS / 10
            } else {
                SETS
            };
            let started = Instant::now();
            for j in 0..sets {
                cache
                    .set(keys[(j % 100_000) as usize].clone(), value.clone())
                    .unwrap();
            }
            let rate = sets as f64 / started.elapsed().as_secs_f64();
            results[i].1.push(rate);
            drop(cache);
            rt.block_on(n.shutdown());
            drop(n);
            let _ = std::fs::remove_dir_all(&root);
        }
    }
    let med = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let base = med(&results[0].1);
    for (name, rates) in &results {
        let m = med(rates);
        println!(
            "set, op log {name:>12}: {:>5.2} M sets/s  ({:+.0}% vs no root)",
            m / 1e6,
            (m / base - 1.0) * 100.0
        );
    }
}
