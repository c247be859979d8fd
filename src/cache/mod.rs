//! The caches of a node: a named [`Cache`] is a thin handle over shards that keep the versions
//! and the change log replication needs.
//!
//! Keys hash to one of a power-of-two number of shards, each a `parking_lot::RwLock` over a
//! compact slab store with its eviction policy (src/cache/shard/, src/cache/policy/), so threads
//! working on different keys rarely meet on one lock; one hash of a key picks its shard and finds
//! it there. A hit or a local write never awaits: only misses that load or fetch
//! ([`Cache::get_or_load`], [`Cache::get_or_fetch`]) and acknowledged writes are `async`.
//!
//! The `impl Cache` blocks are split by who calls them: `api.rs` (applications and the doors),
//! `typed.rs` (counters and hashes), `rmw.rs` (read-modify-writes for the RESP door),
//! `loading.rs` (single-flight misses), `replicate.rs` (links and log readers) and `restore.rs`
//! (persistence). `caches.rs` holds a node's named caches.

mod api;
mod block;
mod caches;
mod change;
pub(crate) mod config;
pub(crate) mod core;
mod expiry;
pub(crate) mod groups;
mod loader;
mod loading;
pub mod merge;
mod origin;
mod policy;
pub(crate) mod ports;
mod replicate;
mod restore;
mod rmw;
mod shard;
mod stats;
mod store;
mod typed;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock, RwLockWriteGuard};
use tokio::sync::OnceCell;

pub use change::{Budget, Change, Scan, Stamped};
pub use config::CacheConfig;
pub use loader::{Loader, Missing};
pub use origin::{DEFAULT_ORIGIN_TIMEOUT, Origin};
pub(crate) use rmw::{Probe, Write};
pub use stats::{CacheStats, LOAD_BUCKETS_MS};

use crate::clock::{NodeId, Version};
use crate::error::Error;
pub use caches::Caches;
pub use caches::DEFAULT_CACHE;
pub(crate) use caches::approx_size;
use core::Core;
pub use policy::Eviction;
use ports::{Recorder, Stored};
pub use shard::{DigestItem, Kind};
pub use shard::{ENTRY_OVERHEAD, entry_size};
use shard::{KeyArg, Limits, Shard, skipped};
pub(crate) use shard::{LOCAL, NEVER, Peeked, Restored};

/// When an entry expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// The cache's `expiration_time`, or never if it has none.
    Default,
    /// Never, whatever the cache's default.
    Never,
    /// This long after the write. Zero is refused with [`Error::ZeroDuration`].
    After(Duration),
    /// At this wall-clock instant, in ms since the Unix epoch (the same instant on every node).
    AtMs(u64),
    /// The expiry the entry has now (Redis `KEEPTTL`); for a key that holds nothing, the cache's
    /// default.
    Keep,
}

/// When [`Cache::set_if`] writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SetCondition {
    /// Always (a plain set).
    #[default]
    Always,
    /// Only if the key holds no unexpired value (Redis `NX`).
    IfAbsent,
    /// Only if the key holds an unexpired value (Redis `XX`).
    IfPresent,
}

/// What [`Cache::set_if`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetOutcome {
    /// The write's version, or `None` if the condition kept it from writing.
    pub version: Option<Version>,
    /// The unexpired value the key held before.
    pub previous: Option<Bytes>,
}

/// A read of one entry with its replication metadata, from [`Cache::peek`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    /// The value (a counter's decimal text; empty for a hash: read it with
    /// [`Cache::hgetall`]).
    pub value: Bytes,
    /// The type of value.
    pub kind: Kind,
    /// The version of the write that produced it.
    pub version: Version,
    /// Absolute expiry in ms since the Unix epoch, if any.
    pub expires_at: Option<u64>,
    /// The local seq of that write on this node.
    pub seq: u64,
}

/// Writes out what the recorder buffered, if [`Cache::record`] asked for it; called once the
/// caller's locks are released.
#[inline]
fn write_out(pending: Option<&dyn Recorder>) {
    if let Some(recorder) = pending {
        recorder.write_out();
    }
}

/// One shard behind its lock, alone on its cache lines so that two locks never share one.
#[repr(align(128))]
struct Padded(RwLock<Shard>);

impl Padded {
    /// The shard, exclusively: every write, and reads under a policy that reorders on a hit.
    #[inline]
    fn lock(&self) -> RwLockWriteGuard<'_, Shard> {
        self.0.write()
    }
}

type Flight = Arc<OnceCell<Result<Option<Bytes>, Error>>>;

/// Shard `i`'s share of `total` spread over `n` shards (the first `total % n` take one more).
fn share(total: u64, n: usize, i: usize) -> usize {
    let base = total / n as u64;
    let extra = u64::from((i as u64) < total % n as u64);
    usize::try_from(base + extra).unwrap_or(usize::MAX)
}

/// What shard `i` of `n` may hold under `resolved`: its share of the capacity, the entry limit
/// (from the settings alone, not this machine's shard count: nodes on machines with different
/// core counts accept the same entries), its dead records' bounds.
fn shard_limits(resolved: &config::Resolved, n: usize, i: usize) -> Limits {
    let max_entries = share(resolved.max_entries, n, i).max(1);
    let max_bytes = resolved.max_bytes.map_or(usize::MAX, |b| share(b, n, i));
    let max_entry_bytes = usize::try_from(resolved.max_entry_bytes).unwrap_or(usize::MAX);
    Limits {
        max_entries,
        max_bytes,
        max_entry: max_entry_bytes.min(max_bytes),
        eviction: resolved.eviction,
        max_dead: max_entries.max(64),
        dead_ttl_ms: u64::try_from(resolved.tombstone_ttl.as_millis()).unwrap_or(u64::MAX),
    }
}

/// A default time to live as [`CacheInner::ttl_ns`] keeps it.
fn ttl_ns(ttl: Option<Duration>) -> u64 {
    ttl.map_or(0, |d| {
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
    })
}

struct CacheInner {
    name: Arc<str>,
    /// The cache's place among its node's caches: how the op log names it.
    index: u32,
    shards: Box<[Padded]>,
    /// `shards.len() - 1`; the shard count is a power of two.
    mask: usize,
    /// Whether hits are served under a shard's shared lock (the policy allows it).
    shared_hits: bool,
    /// Picks a key's shard; fixed seed so that a key's shard is stable for the process.
    hasher: foldhash::fast::FixedState,
    /// The node's identity, clocks and seq counter, shared by all its caches.
    core: Arc<Core>,
    /// Default time-to-live of a write, in nanoseconds (0: none). Atomic, like the two limits
    /// below, so that [`Cache::reconfigure`] changes them while writes read them.
    ttl_ns: AtomicU64,
    /// The largest accounted entry one shard can hold.
    max_entry_bytes: AtomicUsize,
    /// The byte capacity it is configured with (0: none).
    max_bytes: AtomicU64,
    /// The entry capacity it is configured with.
    max_entries: AtomicU64,
    eviction: Eviction,
    loader: Option<Loader>,
    /// Loads in progress, one per key: the single-flight table.
    inflight: Mutex<HashMap<Bytes, Flight>>,
    /// The newest purge applied here, with its local seq and the link it came from.
    purge: Mutex<Option<(Version, u64, u32)>>,
    loads: AtomicU64,
    load_errors: AtomicU64,
    load_misses: AtomicU64,
    load_buckets: [AtomicU64; stats::LOAD_BUCKETS_MS.len() + 1],
    load_time_us: AtomicU64,
    antientropy_repairs: AtomicU64,
}

/// A handle to one named cache on a node. Cheap to clone; `Send + Sync`.
///
/// ```
/// use std::time::Duration;
/// use leafcache::Cache;
///
/// let cache = Cache::builder()
///     .maximum_capacity(10_000)
///     .expiration_time("10m")
///     .build()?;
/// cache.set("user:1", "ada")?;
/// assert_eq!(cache.get("user:1").as_deref(), Some(&b"ada"[..]));
/// assert_eq!(cache.delete("user:1").as_deref(), Some(&b"ada"[..]));
/// assert!(!cache.contains("user:1"));
/// # Ok::<(), leafcache::Error>(())
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Arc<CacheInner>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.inner.name)
            .field("shards", &self.inner.shards.len())
            .finish_non_exhaustive()
    }
}

impl Cache {
    pub(crate) fn new(
        name: &str,
        index: u32,
        config: &CacheConfig,
        core: Arc<Core>,
    ) -> Result<Self, Error> {
        let resolved = config.resolve()?;
        let n = resolved.shards;
        // The entry limit comes from the settings alone, not from this machine's shard count:
        // nodes on machines with different core counts accept the same entries.
        let max_entry_bytes = usize::try_from(resolved.max_entry_bytes).unwrap_or(usize::MAX);
        let shards: Box<[Padded]> = (0..n)
            .map(|i| Padded(RwLock::new(Shard::new(shard_limits(&resolved, n, i)))))
            .collect();
        // Whether hits may share a shard's lock is the policy's to say, not a variant to match.
        let shared_hits = shards[0].0.read().shared_hits();
        Ok(Cache {
            inner: Arc::new(CacheInner {
                name: name.into(),
                index,
                mask: n - 1,
                shared_hits,
                shards,
                hasher: foldhash::fast::FixedState::with_seed(store::KEY_SEED),
                core,
                ttl_ns: AtomicU64::new(ttl_ns(resolved.ttl)),
                max_entry_bytes: AtomicUsize::new(max_entry_bytes),
                max_bytes: AtomicU64::new(resolved.max_bytes.unwrap_or(0)),
                max_entries: AtomicU64::new(resolved.max_entries),
                eviction: resolved.eviction,
                loader: resolved.loader,
                inflight: Mutex::new(HashMap::new()),
                purge: Mutex::new(None),
                loads: AtomicU64::new(0),
                load_errors: AtomicU64::new(0),
                load_misses: AtomicU64::new(0),
                load_buckets: Default::default(),
                load_time_us: AtomicU64::new(0),
                antientropy_repairs: AtomicU64::new(0),
            }),
        })
    }

    /// The cache's name on its node.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The id of the node this cache lives on.
    pub fn node_id(&self) -> NodeId {
        self.inner.core.id
    }

    /// The id this cache's writes carry in their [`Version`]s, the tie-break between writes of
    /// one instant: the node id, except on a node given a fixed id without a root, which may have
    /// written under that id in an earlier run and so writes under an id of this run.
    pub fn writer_id(&self) -> NodeId {
        self.inner.core.writer
    }

    /// The cache's place among its node's caches: how records name it.
    pub(crate) fn index(&self) -> u32 {
        self.inner.index
    }

    /// The number of shards (a power of two).
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// The time to live a write gets with [`Expiry::Default`], if the cache has one.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let cache = leafcache::Cache::builder().expiration_time("10m").build()?;
    /// assert_eq!(cache.default_ttl(), Some(Duration::from_secs(600)));
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    pub fn default_ttl(&self) -> Option<Duration> {
        match self.inner.ttl_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// The byte capacity (`max_bytes`) the cache was configured with; `None` if it is bounded
    /// by its entry count alone.
    ///
    /// ```
    /// use leafcache::{CacheConfig, Eviction, Node};
    /// let node = Node::builder()
    ///     .default_cache(CacheConfig::new().max_bytes(64 << 20).eviction(Eviction::Lfu))
    ///     .build()?;
    /// assert_eq!(node.default_cache().max_bytes(), Some(64 << 20));
    /// assert_eq!(node.default_cache().eviction(), Eviction::Lfu);
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    pub fn max_bytes(&self) -> Option<u64> {
        Some(self.inner.max_bytes.load(Ordering::Relaxed)).filter(|&b| b > 0)
    }

    /// How the cache chooses what to evict (see [`Cache::max_bytes`] for an example).
    pub fn eviction(&self) -> Eviction {
        self.inner.eviction
    }

    /// The largest entry (key + value + per-entry overhead) a write may carry: with `max_bytes`
    /// and automatic sharding, `max_bytes` divided by the most shards those settings can have on
    /// any machine (64 for 64 MiB and more), so that it does not depend on the core count; with
    /// `shards(n)`, `max_bytes / n`; without `max_bytes`, unlimited.
    ///
    /// ```
    /// use leafcache::{CacheConfig, Node};
    /// let node = Node::builder()
    ///     .default_cache(CacheConfig::new().max_bytes(256 << 20))
    ///     .build()?;
    /// assert_eq!(node.default_cache().max_entry_bytes(), 4 << 20);
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    pub fn max_entry_bytes(&self) -> usize {
        self.inner.max_entry_bytes.load(Ordering::Relaxed)
    }

    /// The entries the cache holds at most.
    pub fn max_entries(&self) -> u64 {
        self.inner.max_entries.load(Ordering::Relaxed)
    }

    /// Applies `config`'s capacity (`max_entries`, `max_bytes`), default time to live and
    /// tombstone time to live to this running cache (what a topology reload does). A smaller
    /// capacity evicts at once, by the cache's policy, as a write over the limit would; the new
    /// default time to live applies to writes from now on. The shard count stays what it is.
    ///
    /// ```
    /// use leafcache::{Cache, CacheConfig};
    /// let cache = Cache::builder().maximum_capacity(1_000).build()?;
    /// for i in 0..1_000 {
    ///     cache.set(format!("k{i}"), "v")?;
    /// }
    /// cache.reconfigure(&CacheConfig::new().max_entries(100).ttl(std::time::Duration::from_secs(60)))?;
    /// assert!(cache.len() <= 100);
    /// assert_eq!(cache.default_ttl(), Some(std::time::Duration::from_secs(60)));
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    ///
    /// # Errors
    /// A setting [`CacheConfig`] refuses (a zero capacity or duration), or one that cannot change
    /// while the cache runs: another eviction policy ([`Error::InvalidConfig`]). The loader is
    /// the cache's own and `config`'s is not looked at.
    pub fn reconfigure(&self, config: &CacheConfig) -> Result<(), Error> {
        let resolved = config.resolve()?;
        if resolved.eviction != self.inner.eviction {
            return Err(Error::InvalidConfig {
                what: "eviction",
                reason: format!(
                    "cache {:?} evicts by {}; another policy takes a restart",
                    self.name(),
                    self.inner.eviction
                ),
            });
        }
        let max_entry_bytes = usize::try_from(resolved.max_entry_bytes).unwrap_or(usize::MAX);
        let inner = &self.inner;
        inner.ttl_ns.store(ttl_ns(resolved.ttl), Ordering::Relaxed);
        inner
            .max_entry_bytes
            .store(max_entry_bytes, Ordering::Relaxed);
        inner
            .max_bytes
            .store(resolved.max_bytes.unwrap_or(0), Ordering::Relaxed);
        inner
            .max_entries
            .store(resolved.max_entries, Ordering::Relaxed);
        let n = inner.shards.len();
        let now = self.now_ms();
        for (i, shard) in inner.shards.iter().enumerate() {
            let mut shard = shard.lock();
            shard.set_limits(shard_limits(&resolved, n, i), now);
            if !shard.dropped.is_empty() {
                self.tell(&mut shard, None);
            }
        }
        Ok(())
    }

    #[inline]
    fn shard(&self, key: &[u8]) -> &Padded {
        &self.inner.shards[self.shard_index(key)]
    }

    #[inline]
    fn shard_index(&self, key: &[u8]) -> usize {
        use std::hash::BuildHasher;
        let h = self.inner.hasher.hash_one(key);
        (h >> 40) as usize & self.inner.mask
    }

    #[inline]
    fn now_ms(&self) -> u64 {
        self.inner.core.now_ms()
    }

    /// Tells the watcher, if the node has one, that `key` changed, and of the keys the shard
    /// dropped by itself (expired, evicted); called under the shard's lock, so that a reader who
    /// registered interest before reading is told of every change after its read.
    #[inline]
    fn tell(&self, shard: &mut Shard, key: Option<&[u8]>) {
        let Some(watcher) = self.inner.core.watcher() else {
            return;
        };
        if let Some(key) = key {
            watcher.changed(self.inner.index, key);
        }
        for key in shard.dropped.drain(..) {
            watcher.changed(self.inner.index, &key);
        }
    }

    /// A write of `key` at `seq` moves its log record: a group holding the old record grows to
    /// reach it. Called under the shard lock, before the write.
    #[inline]
    fn regroup(&self, shard: &Shard, key: &[u8], seq: u64) {
        let groups = &self.inner.core.groups;
        if groups.any()
            && let Some(old) = shard.record_seq(key)
        {
            groups.moved(old, seq);
        }
    }

    /// Makes the shards list the keys they drop by themselves, for the watcher.
    pub(crate) fn report_drops(&self) {
        for shard in self.inner.shards.iter() {
            shard.lock().report_drops = true;
        }
    }
}
