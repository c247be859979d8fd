//! A plain loop over the local workload for profilers (`perf record`), without criterion's
//! machinery: `cargo bench --bench profile_local -- leafcache|leafcache-s3fifo|leafcache-lfu|moka|quick_cache
//! [ops]
//! [zipf|scans|loop]` (the trace: Zipf, Zipf polluted by scans, a loop larger than the cache).

mod workload;

use std::time::Instant;

use bytes::Bytes;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let which = args.next().unwrap_or_else(|| "leafcache".into());
    let ops: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let keys = workload::key_space();
    let trace = match args.next().as_deref() {
        Some("scans") => workload::scan_trace(4_000_000, 42),
        Some("loop") => workload::loop_trace(4_000_000),
        _ => workload::trace(4_000_000, 42),
    };
    let value = Bytes::from(vec![7u8; workload::VALUE_LEN]);
    let cache: Box<dyn workload::BenchCache> = match which.as_str() {
        "moka" => Box::new(workload::moka()),
        "quick_cache" => Box::new(workload::quick_cache()),
        "leafcache-s3fifo" => Box::new(workload::leafcache_s3fifo()),
        "leafcache-lfu" => Box::new(workload::leafcache_lfu()),
        _ => Box::new(workload::leafcache()),
    };
    workload::run(cache.as_ref(), &keys, &trace, 0, 1_000_000, &value);
    let start = Instant::now();
    let hits = workload::run(cache.as_ref(), &keys, &trace, 1_000_000, ops, &value);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{which}: {:.2} Mops/s, hit ratio {:.3}",
        ops as f64 / secs / 1e6,
        hits as f64 / ops as f64
    );
}
