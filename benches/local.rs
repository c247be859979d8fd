//! Embedded get/set throughput and hit ratio: leafcache against moka and quick_cache on the same
//! read-through Zipf workload, on 1 and 2 threads.
//!
//! `cargo bench --bench local`. Hit ratios are printed before the timings.

mod workload;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use workload::{BenchCache, run};

const TRACE_LEN: usize = 4_000_000;

fn caches() -> Vec<(&'static str, Arc<dyn BenchCache>)> {
    vec![
        ("leafcache", Arc::new(workload::leafcache())),
        ("leafcache-s3fifo", Arc::new(workload::leafcache_s3fifo())),
        ("leafcache-lfu", Arc::new(workload::leafcache_lfu())),
        ("moka", Arc::new(workload::moka())),
        ("quick_cache", Arc::new(workload::quick_cache())),
    ]
}

/// Hit ratio after a warm-up of 1M operations, over the next 2M, single thread: on the Zipf
/// trace, the Zipf trace polluted by scans, and a loop larger than the capacity.
fn hit_ratios(keys: &[Bytes], trace: &[u32], value: &Bytes) {
    let scans = workload::scan_trace(TRACE_LEN, 42);
    let looping = workload::loop_trace(TRACE_LEN);
    for (label, trace) in [
        ("zipf", trace),
        ("zipf+scans", &scans[..]),
        ("loop", &looping[..]),
    ] {
        for (name, cache) in caches() {
            run(cache.as_ref(), keys, trace, 0, 1_000_000, value);
            let hits = run(cache.as_ref(), keys, trace, 1_000_000, 2_000_000, value);
            eprintln!(
                "hit ratio {label:10} {name:16} {:.3}",
                hits as f64 / 2_000_000.0
            );
        }
    }
}

fn bench(c: &mut Criterion) {
    let keys = workload::key_space();
    let trace = workload::trace(TRACE_LEN, 42);
    let value = Bytes::from(vec![7u8; workload::VALUE_LEN]);
    hit_ratios(&keys, &trace, &value);

    for threads in [1usize, 2] {
        let mut group = c.benchmark_group(format!("zipf_read_through/{threads}_threads"));
        group.throughput(Throughput::Elements(1));
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(3));
        for (name, cache) in caches() {
            // Fill before timing, so every cache is measured in its steady state.
            run(cache.as_ref(), &keys, &trace, 0, 1_000_000, &value);
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let per_thread = iters.div_ceil(threads as u64);
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for t in 0..threads {
                            let (cache, keys, trace, value) = (&cache, &keys, &trace, &value);
                            s.spawn(move || {
                                let offset = t * TRACE_LEN / threads;
                                run(cache.as_ref(), keys, trace, offset, per_thread, value)
                            });
                        }
                    });
                    start.elapsed()
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
