//! Memory per entry: resident memory added by 1M entries (10-byte keys, 64-byte values), against
//! leafcache's own byte accounting. Linux only (reads /proc/self/statm).
//!
//! `cargo bench --bench memory`

use bytes::Bytes;

const N: u64 = 1_000_000;

#[path = "support/rss.rs"]
mod rss;
use rss::rss_bytes;

fn main() {
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
