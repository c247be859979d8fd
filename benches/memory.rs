//! Memory per entry: resident memory added by 1M entries (10-byte keys, 64-byte values), against
//! leafcache's own byte accounting; then whether `max_bytes` bounds resident memory: caches of a
//! 64 MiB budget filled with four times that in distinct entries of several sizes (evicting all
//! along, so their dead records are there too). Linux only (reads /proc/self/statm).
//!
//! `cargo bench --bench memory`

use bytes::Bytes;

const N: u64 = 1_000_000;

#[path = "support/rss.rs"]
mod rss;
use rss::rss_bytes;

fn main() {
    // Each measurement in a process of its own: memory freed by one would be reused by the next.
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    match args.next().as_deref() {
        Some("per-entry") => per_entry(),
        Some("budget") => budget(
            args.next()
                .and_then(|s| s.parse().ok())
                .expect("value length"),
        ),
        _ => {
            let me = std::env::current_exe().expect("own path");
            let run = |args: &[&str]| {
                let status = std::process::Command::new(&me).args(args).status();
                assert!(status.expect("runs").success());
            };
            run(&["per-entry"]);
            for value_len in ["16", "64", "200", "1000", "16000"] {
                run(&["budget", value_len]);
            }
        }
    }
}

fn per_entry() {
    let cache = leafcache::Cache::builder()
        .maximum_capacity(2 * N) // room to spare: shards fill unevenly
        .build()
        .expect("valid config");
    let before = rss_bytes();
    for i in 0..N {
        // A distinct value buffer per entry, as real values are.
        cache
            .set(
                Bytes::from(format!("k{i:09}")),
                Bytes::from(vec![(i % 251) as u8; 64]),
            )
            .expect("fits");
    }
    let after = rss_bytes();
    let stats = cache.stats();
    assert_eq!(stats.entries, N);
    println!(
        "resident bytes per entry: {:.0} (payload 74 B; accounted per entry: {} B, ENTRY_OVERHEAD = {} B)",
        (after - before) as f64 / N as f64,
        stats.bytes / N,
        leafcache::ENTRY_OVERHEAD
    );
}

/// A cache bounded by 64 MiB only, written four times over with `value_len`-byte values.
fn budget(value_len: usize) {
    const BUDGET: u64 = 64 << 20;
    let cache = leafcache::Cache::builder()
        .maximum_capacity(u64::MAX >> 1)
        .max_bytes(BUDGET)
        .build()
        .expect("valid config");
    let n = 4 * BUDGET / leafcache::entry_size(10, value_len) as u64;
    let before = rss_bytes();
    for i in 0..n {
        cache
            .set(
                Bytes::from(format!("k{i:09}")),
                Bytes::from(vec![(i % 251) as u8; value_len]),
            )
            .expect("fits");
    }
    let after = rss_bytes();
    let stats = cache.stats();
    println!(
        "max_bytes 64 MiB, {value_len:>6}-byte values: resident +{:.1} MiB ({:.2}x the budget), accounted {:.1} MiB in {} entries",
        (after - before) as f64 / (1 << 20) as f64,
        (after - before) as f64 / BUDGET as f64,
        stats.bytes as f64 / (1 << 20) as f64,
        stats.entries,
    );
}
