//! A cache's configuration: capacity, expiry, tombstone retention, sharding and loader, validated
//! into the limits the shards enforce.

use std::time::Duration;

use super::loader::Loader;
use super::policy::Eviction;
use crate::error::Error;

/// How many entries a cache holds when no capacity is given.
pub const DEFAULT_CAPACITY: u64 = 100_000;

/// How long tombstones are kept when no retention is given: one day.
pub const DEFAULT_TOMBSTONE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Entries per shard below which the automatic shard count stops splitting: small caches keep
/// exact LRU order instead of splitting it many ways.
const MIN_ENTRIES_PER_SHARD: u64 = 512;

/// Bytes per shard below which the automatic shard count stops splitting, so that one entry may
/// still be large.
const MIN_BYTES_PER_SHARD: u64 = 1 << 20;

/// The most shards a cache is split into automatically.
const MAX_AUTO_SHARDS: usize = 64;

/// The settings of one named cache. A consuming builder: every setter returns the config.
///
/// ```
/// use std::time::Duration;
/// use leafcache::{CacheConfig, Node};
/// let node = Node::builder()
///     .cache("sessions", CacheConfig::new().max_entries(10_000).ttl(Duration::from_secs(1800)))
///     .build()?;
/// node.cache("sessions")?.set("s1", "alice")?;
/// # Ok::<(), leafcache::Error>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct CacheConfig {
    max_entries: u64,
    max_bytes: Option<u64>,
    ttl: Option<Duration>,
    tombstone_ttl: Duration,
    shards: Option<usize>,
    loader: Option<Loader>,
    eviction: Eviction,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: DEFAULT_CAPACITY,
            max_bytes: None,
            ttl: None,
            tombstone_ttl: DEFAULT_TOMBSTONE_TTL,
            shards: None,
            loader: None,
            eviction: Eviction::Lru,
        }
    }
}

/// A validated configuration.
pub(crate) struct Resolved {
    pub max_entries: u64,
    pub max_bytes: Option<u64>,
    /// The largest entry (key + value + overhead) the cache accepts, in bytes.
    pub max_entry_bytes: u64,
    pub ttl: Option<Duration>,
    pub tombstone_ttl: Duration,
    pub shards: usize,
    pub loader: Option<Loader>,
    pub eviction: Eviction,
}

impl CacheConfig {
    /// The defaults: 100,000 entries, no byte limit, no expiry, tombstones kept a day.
    pub fn new() -> Self {
        Self::default()
    }

    /// The most entries the cache holds (`maximum_capacity`). Zero is refused at build.
    pub fn max_entries(mut self, n: u64) -> Self {
        self.max_entries = n;
        self
    }

    /// The most bytes the cache holds, counting keys, values and per-entry overhead.
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = Some(n);
        self
    }

    /// The default time-to-live of a write (`expiration_time`). Zero is refused at build.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// How long deletes are remembered as tombstones. A peer away for longer gets a full sync.
    pub fn tombstone_ttl(mut self, ttl: Duration) -> Self {
        self.tombstone_ttl = ttl;
        self
    }

    /// The number of shards, rounded up to a power of two. By default it grows with the cores but
    /// keeps each shard at least 512 entries (and 1 MiB with a byte limit); 1 gives exact LRU order.
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = Some(n);
        self
    }

    /// How a full cache chooses what to evict (default [`Eviction::Lru`]).
    pub fn eviction(mut self, eviction: Eviction) -> Self {
        self.eviction = eviction;
        self
    }

    /// The callback that `get_or_load` calls on a miss.
    pub fn loader(mut self, loader: Loader) -> Self {
        self.loader = Some(loader);
        self
    }

    /// The automatic shard count on a machine of `cores` cores: 16 per core, up to 64, halved
    /// while a shard would hold fewer than 512 entries or 1 MiB.
    fn auto_shards(&self, cores: usize) -> usize {
        let mut n = cores
            .saturating_mul(16)
            .min(MAX_AUTO_SHARDS)
            .next_power_of_two()
            .min(MAX_AUTO_SHARDS);
        while n > 1
            && (self.max_entries / (n as u64) < MIN_ENTRIES_PER_SHARD
                || self
                    .max_bytes
                    .is_some_and(|b| b / (n as u64) < MIN_BYTES_PER_SHARD))
        {
            n /= 2;
        }
        n
    }

    /// The largest entry an automatically sharded cache accepts: `max_bytes` divided by the
    /// shard count it would have on a machine of any number of cores (the most it can have), so
    /// that nodes with the same settings on machines with different core counts accept the same
    /// entries. A shard of a machine with fewer cores has a larger share, which the entry fits.
    fn entry_limit(&self) -> u64 {
        self.max_bytes
            .map_or(u64::MAX, |b| b / self.auto_shards(usize::MAX) as u64)
    }

    pub(crate) fn resolve(&self) -> Result<Resolved, Error> {
        if self.max_entries == 0 {
            return Err(Error::ZeroCapacity {
                what: "maximum_capacity",
            });
        }
        if self.max_bytes == Some(0) {
            return Err(Error::ZeroCapacity { what: "max_bytes" });
        }
        if self.ttl.is_some_and(|t| t.is_zero()) {
            return Err(Error::ZeroDuration {
                what: "expiration_time",
            });
        }
        if self.tombstone_ttl.is_zero() {
            return Err(Error::ZeroDuration {
                what: "tombstone_ttl",
            });
        }
        let (shards, max_entry_bytes) = match self.shards {
            Some(0) => {
                return Err(Error::InvalidConfig {
                    what: "shards",
                    reason: "must be at least 1".into(),
                });
            }
            Some(n) if n > 1 << 16 => {
                return Err(Error::InvalidConfig {
                    what: "shards",
                    reason: format!("{n} is more than the 65536 allowed"),
                });
            }
            Some(n) => {
                let n = n.next_power_of_two();
                (n, self.max_bytes.map_or(u64::MAX, |b| b / n as u64))
            }
            None => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                (self.auto_shards(cores), self.entry_limit())
            }
        };
        Ok(Resolved {
            max_entries: self.max_entries,
            max_bytes: self.max_bytes,
            max_entry_bytes,
            ttl: self.ttl,
            tombstone_ttl: self.tombstone_ttl,
            shards,
            loader: self.loader.clone(),
            eviction: self.eviction,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused_with_their_name() {
        let err = |c: CacheConfig| c.resolve().err().unwrap().to_string();
        assert!(err(CacheConfig::new().max_entries(0)).contains("maximum_capacity"));
        assert!(err(CacheConfig::new().max_bytes(0)).contains("max_bytes"));
        assert!(err(CacheConfig::new().ttl(Duration::ZERO)).contains("expiration_time"));
        assert!(err(CacheConfig::new().tombstone_ttl(Duration::ZERO)).contains("tombstone_ttl"));
        assert!(err(CacheConfig::new().shards(0)).contains("shards"));
    }

    #[test]
    fn automatic_shard_count_keeps_small_caches_whole() {
        let shards = |c: CacheConfig| c.resolve().unwrap().shards;
        assert_eq!(shards(CacheConfig::new().max_entries(100)), 1);
        assert_eq!(shards(CacheConfig::new().max_entries(1024)), 2);
        assert!(shards(CacheConfig::new().max_entries(1_000_000)).is_power_of_two());
        assert_eq!(shards(CacheConfig::new().max_bytes(3 << 20)), 2);
        assert_eq!(shards(CacheConfig::new().shards(5)), 8);
    }

    #[test]
    fn the_entry_limit_does_not_depend_on_the_core_count() {
        for bytes in [3 << 20, 64 << 20, 256 << 20, 10 << 30] {
            for entries in [1_000, 100_000, 10_000_000] {
                let c = CacheConfig::new().max_entries(entries).max_bytes(bytes);
                let limit = c.resolve().unwrap().max_entry_bytes;
                for cores in [1, 2, 3, 8, 64, 512] {
                    let share = bytes / c.auto_shards(cores) as u64;
                    assert!(
                        share >= limit,
                        "{cores} cores: a shard's share fits the limit"
                    );
                }
                assert_eq!(
                    limit,
                    bytes / c.auto_shards(4) as u64,
                    "4 cores reach the most shards"
                );
            }
        }
        let limit = |c: CacheConfig| c.resolve().unwrap().max_entry_bytes;
        assert_eq!(limit(CacheConfig::new().max_bytes(256 << 20)), 4 << 20);
        assert_eq!(limit(CacheConfig::new().max_bytes(3 << 20)), 3 << 19);
        assert_eq!(
            limit(CacheConfig::new().max_bytes(256 << 20).shards(8)),
            32 << 20
        );
        assert_eq!(limit(CacheConfig::new()), u64::MAX);
    }
}
