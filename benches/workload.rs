//! The shared embedded-cache workload: a 1M-key Zipf(1.0) trace, 64-byte values, capacity 100k,
//! read-through (every operation is a get; a miss sets the key).

use bytes::Bytes;
use rand::SeedableRng;
use rand_distr::{Distribution, Zipf};

pub const KEYS: u64 = 1_000_000;
pub const CAPACITY: u64 = 100_000;
pub const VALUE_LEN: usize = 64;

/// What the benchmark drives: the three caches behind one interface.
pub trait BenchCache: Send + Sync {
    fn get(&self, key: &Bytes) -> Option<Bytes>;
    fn set(&self, key: Bytes, value: Bytes);
}

impl BenchCache for leafcache::Cache {
    #[inline]
    fn get(&self, key: &Bytes) -> Option<Bytes> {
        leafcache::Cache::get(self, key)
    }
    #[inline]
    fn set(&self, key: Bytes, value: Bytes) {
        let _ = leafcache::Cache::set(self, key, value);
    }
}

impl BenchCache for moka::sync::Cache<Bytes, Bytes> {
    #[inline]
    fn get(&self, key: &Bytes) -> Option<Bytes> {
        moka::sync::Cache::get(self, key)
    }
    #[inline]
    fn set(&self, key: Bytes, value: Bytes) {
        self.insert(key, value);
    }
}

impl BenchCache for quick_cache::sync::Cache<Bytes, Bytes> {
    #[inline]
    fn get(&self, key: &Bytes) -> Option<Bytes> {
        quick_cache::sync::Cache::get(self, key)
    }
    #[inline]
    fn set(&self, key: Bytes, value: Bytes) {
        self.insert(key, value);
    }
}

pub fn leafcache() -> leafcache::Cache {
    leafcache::Cache::builder()
        .maximum_capacity(CAPACITY)
        .build()
        .expect("valid config")
}

pub fn leafcache_s3fifo() -> leafcache::Cache {
    leafcache_with(leafcache::Eviction::S3Fifo)
}

pub fn leafcache_lfu() -> leafcache::Cache {
    leafcache_with(leafcache::Eviction::Lfu)
}

fn leafcache_with(eviction: leafcache::Eviction) -> leafcache::Cache {
    leafcache::Node::builder()
        .default_cache(
            leafcache::CacheConfig::new()
                .max_entries(CAPACITY)
                .eviction(eviction),
        )
        .build()
        .expect("valid config")
        .default_cache()
}

pub fn moka() -> moka::sync::Cache<Bytes, Bytes> {
    moka::sync::Cache::new(CAPACITY)
}

pub fn quick_cache() -> quick_cache::sync::Cache<Bytes, Bytes> {
    quick_cache::sync::Cache::new(CAPACITY as usize)
}

/// Every key of the key space, made once (≈10-byte keys like `k000123456`).
pub fn key_space() -> Vec<Bytes> {
    (0..KEYS).map(|i| Bytes::from(format!("k{i:09}"))).collect()
}

/// A seeded Zipf(1.0) trace of key indexes.
pub fn trace(len: usize, seed: u64) -> Vec<u32> {
    let zipf = Zipf::new(KEYS as f64, 1.0).expect("valid Zipf parameters");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..len).map(|_| zipf.sample(&mut rng) as u32 - 1).collect()
}

/// [`trace`] polluted by scans: after every 100,000 Zipf reads, one pass over 50,000 keys in
/// order from the cold end of the key space (each read once). An LRU lets every scan push half
/// its capacity of hot keys out; a scan-resistant policy keeps them.
pub fn scan_trace(len: usize, seed: u64) -> Vec<u32> {
    let zipf = trace(len, seed);
    let mut out = Vec::with_capacity(len);
    let mut next_cold = KEYS as u32 / 2;
    for chunk in zipf.chunks(100_000) {
        out.extend_from_slice(chunk);
        for _ in 0..50_000 {
            out.push(next_cold);
            next_cold = if next_cold + 1 == KEYS as u32 {
                KEYS as u32 / 2
            } else {
                next_cold + 1
            };
        }
        if out.len() >= len {
            break;
        }
    }
    out.truncate(len);
    out
}

/// A loop over 120,000 keys in order, larger than the capacity: an LRU never hits (each key is
/// evicted just before it comes round again); a policy that keeps some of the loop does.
pub fn loop_trace(len: usize) -> Vec<u32> {
    (0..len).map(|i| (i % 120_000) as u32).collect()
}

/// Runs `ops` read-through operations from `trace` starting at `offset`; returns the hits.
#[inline]
pub fn run<C: BenchCache + ?Sized>(
    cache: &C,
    keys: &[Bytes],
    trace: &[u32],
    offset: usize,
    ops: u64,
    value: &Bytes,
) -> u64 {
    let mut hits = 0;
    let mut i = offset % trace.len();
    for _ in 0..ops {
        let key = &keys[trace[i] as usize];
        if cache.get(key).is_some() {
            hits += 1;
        } else {
            cache.set(key.clone(), value.clone());
        }
        i += 1;
        if i == trace.len() {
            i = 0;
        }
    }
    hits
}
