//! Memory of the values that merge: resident memory added by 1M counters (one `INCR` each, keys
//! `c000000000`...) and by 100k hashes of 10 fields (`f0`..`f9`, 8-byte values), against the
//! byte accounting. Linux only (reads /proc/self/statm). `benches/merged_vs_redis.sh` loads the
//! same into redis-server for its figures.
//!
//! `cargo bench --bench merged_memory` (`-- counters|hashes` for one part)

#[path = "support/rss.rs"]
mod rss;
use rss::rss_bytes;

fn main() {
    let which = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let run = |name: &str| which.as_deref().is_none_or(|w| w == name);
    if run("counters") {
        let n = 1_000_000u64;
        let cache = leafcache::Cache::builder()
            .maximum_capacity(2 * n)
            .build()
            .expect("valid config");
        let before = rss_bytes();
        for i in 0..n {
            cache.incr(format!("c{i:09}"), 1).expect("counts");
        }
        let after = rss_bytes();
        let stats = cache.stats();
        assert_eq!(stats.entries, n);
        println!(
            "resident bytes per counter: {:.0} (key 10 B; accounted per counter: {} B)",
            (after - before) as f64 / n as f64,
            stats.bytes / n
        );
    }
    if run("hashes") {
        let (n, fields) = (100_000u64, 10u64);
        let cache = leafcache::Cache::builder()
            .maximum_capacity(2 * n)
            .build()
            .expect("valid config");
        let before = rss_bytes();
        for i in 0..n {
            for f in 0..fields {
                cache
                    .hset(
                        format!("h{i:09}"),
                        format!("f{f}"),
                        format!("v{:07}", i + f),
                    )
                    .expect("fits");
            }
        }
        let after = rss_bytes();
        let stats = cache.stats();
        assert_eq!(stats.entries, n);
        println!(
            "resident bytes per hash field: {:.0} (field 2 B + value 8 B; {:.0} per hash of 10; accounted per hash: {} B)",
            (after - before) as f64 / (n * fields) as f64,
            (after - before) as f64 / n as f64,
            stats.bytes / n
        );
    }
}
