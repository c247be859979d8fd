//! Cache statistics: one snapshot struct read from per-shard counters and a few atomics.

use serde::Serialize;

/// A snapshot of one cache's counters and size.
///
/// Hits, misses, evictions and expirations are counted under each shard's lock (no shared atomic
/// on the hot path); loads are counted with atomics. The snapshot sums the shards one at a time, so
/// under concurrent load it is approximate by a few operations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Reads that found an unexpired entry.
    pub hits: u64,
    /// Reads that found nothing (or only an expired entry).
    pub misses: u64,
    /// Load callback runs that succeeded.
    pub loads: u64,
    /// Load callback runs that failed.
    pub load_errors: u64,
    /// Load callback runs that found nothing (an origin's 404 or missing file): misses, not
    /// cached, not errors.
    pub load_misses: u64,
    /// How long load callback runs took: counts per [`LOAD_BUCKETS_MS`] bound (a run is counted
    /// in the first bucket it fits, the last counts those over every bound).
    pub load_buckets: [u64; LOAD_BUCKETS_MS.len() + 1],
    /// Their total time, in µs.
    pub load_time_us: u64,
    /// Entries removed to make room.
    pub evictions: u64,
    /// Entries removed because they expired.
    pub expirations: u64,
    /// Entries held now.
    pub entries: u64,
    /// Accounted bytes held now (keys + values + per-entry overhead).
    pub bytes: u64,
    /// Tombstones and dropped-version records held for replication (outside the LRU).
    pub dead_records: u64,
    /// Keys anti-entropy found held differently here and at a peer, and had sent whole again: a
    /// difference replication left behind. Zero on a healthy tree; anything else is a bug to
    /// report.
    pub antientropy_repairs: u64,
}

/// The upper bounds (ms) of the load-time buckets of [`CacheStats::load_buckets`].
pub const LOAD_BUCKETS_MS: [u64; 10] = [1, 2, 5, 10, 25, 50, 100, 250, 1000, 5000];

impl CacheStats {
    /// `hits / (hits + misses)`, or 0 before any read.
    pub fn hit_ratio(&self) -> f64 {
        let reads = self.hits + self.misses;
        if reads == 0 {
            0.0
        } else {
            self.hits as f64 / reads as f64
        }
    }
}
