//! A named cache: the handle applications use — reads, writes, deletes, expiry, loaders, stats —
//! over a sharded store that keeps the versions and change log replication needs.
//!
//! Keys hash to one of a power-of-two number of shards, each a [`parking_lot::Mutex`] over a
//! compact slab store (`store.rs`) with its eviction policy, so threads working on different keys
//! rarely meet on one lock; one hash of a key picks its shard and finds it there. Every operation
//! here is synchronous except [`Cache::get_or_load`]: a hit or a local write never awaits.

mod block;
mod change;
pub(crate) mod config;
pub(crate) mod core;
mod expiry;
pub(crate) mod groups;
mod loader;
pub mod merge;
mod origin;
mod policy;
pub(crate) mod ports;
mod rmw;
mod set;
mod shard;
mod stats;
mod store;
mod typed;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock, RwLockWriteGuard};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

pub use change::{Change, Stamped};
pub use config::CacheConfig;
pub use loader::{Loader, Missing};
pub use origin::{DEFAULT_ORIGIN_TIMEOUT, Origin};
pub(crate) use rmw::{Probe, Write};
pub use stats::{CacheStats, LOAD_BUCKETS_MS};

use crate::clock::{NodeId, Version};
use crate::error::Error;
use core::Core;
pub use policy::Eviction;
use ports::{Recorder, Stored};
pub use set::Caches;
pub use set::DEFAULT_CACHE;
pub(crate) use set::approx_size;
pub(crate) use shard::{DeadKind, LOCAL, NEVER, Peeked, Restored};
pub use shard::{DigestItem, Kind};
pub use shard::{ENTRY_OVERHEAD, entry_size};
use shard::{KeyArg, Limits, Shard, skipped};

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
    /// Default time-to-live of a write.
    ttl: Option<Duration>,
    /// The largest accounted entry one shard can hold.
    max_entry_bytes: usize,
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
        let share = |total: u64, i: usize| -> usize {
            let base = total / n as u64;
            let extra = u64::from((i as u64) < total % n as u64);
            usize::try_from(base + extra).unwrap_or(usize::MAX)
        };
        let dead_ttl_ms = u64::try_from(resolved.tombstone_ttl.as_millis()).unwrap_or(u64::MAX);
        // The entry limit comes from the settings alone, not from this machine's shard count:
        // nodes on machines with different core counts accept the same entries.
        let max_entry_bytes = usize::try_from(resolved.max_entry_bytes).unwrap_or(usize::MAX);
        let shards: Box<[Padded]> = (0..n)
            .map(|i| {
                let max_entries = share(resolved.max_entries, i).max(1);
                let max_bytes = resolved.max_bytes.map_or(usize::MAX, |b| share(b, i));
                Padded(RwLock::new(Shard::new(Limits {
                    max_entries,
                    max_bytes,
                    max_entry: max_entry_bytes.min(max_bytes),
                    eviction: resolved.eviction,
                    max_dead: max_entries.max(64),
                    dead_ttl_ms,
                })))
            })
            .collect();
        Ok(Cache {
            inner: Arc::new(CacheInner {
                name: name.into(),
                index,
                mask: n - 1,
                shared_hits: resolved.eviction == Eviction::S3Fifo,
                shards,
                hasher: foldhash::fast::FixedState::with_seed(store::KEY_SEED),
                core,
                ttl: resolved.ttl,
                max_entry_bytes,
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
        self.inner.ttl
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
        self.inner.max_entry_bytes
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

    /// The value of `key`, if held and unexpired. Marks it most recently used.
    ///
    /// ```
    /// # let cache = leafcache::Cache::builder().build()?;
    /// cache.set(b"k".to_vec(), b"v".to_vec())?;
    /// assert_eq!(cache.get(b"k").unwrap(), "v");
    /// assert_eq!(cache.get("missing"), None);
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    #[inline]
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<Bytes> {
        use std::hash::BuildHasher;
        let key = key.as_ref();
        // One hash picks the shard and finds the key in it.
        let h = self.inner.hasher.hash_one(key);
        let shard = &self.inner.shards[(h >> 40) as usize & self.inner.mask];
        let clock = self.inner.core.hlc.clock();
        if self.inner.shared_hits {
            // S3-FIFO: readers share the shard; only an expired entry needs it exclusively.
            if let Some(value) = shard.0.read().get_shared(h, key, clock) {
                return value;
            }
        }
        let mut shard = shard.lock();
        let value = shard.get(h, key, clock);
        if !shard.dropped.is_empty() {
            self.tell(&mut shard, None);
        }
        value
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

    /// The entry of `key` with its version and expiry, without changing LRU order or counters.
    pub fn peek(&self, key: impl AsRef<[u8]>) -> Option<EntryInfo> {
        let key = key.as_ref();
        let now = self.now_ms();
        self.shard(key).lock().peek(key, now).map(|p| EntryInfo {
            value: p.value,
            kind: p.kind,
            version: p.version,
            expires_at: (p.expires_at != NEVER).then_some(p.expires_at),
            seq: p.seq,
        })
    }

    /// Whether `key` holds an unexpired value. Does not change LRU order.
    pub fn contains(&self, key: impl AsRef<[u8]>) -> bool {
        let key = key.as_ref();
        let now = self.now_ms();
        self.shard(key).lock().peek(key, now).is_some()
    }

    /// Stores `value` under `key` with the cache's default expiry, evicting least recently used
    /// entries if the cache is full. Returns the write's version.
    ///
    /// Fails with [`Error::ValueTooLarge`] — evicting nothing — if the entry exceeds
    /// [`max_entry_bytes`](Self::max_entry_bytes).
    pub fn set(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<Version, Error> {
        self.set_with_expiry(key, value, Expiry::Default)
    }

    /// Stores `value` under `key`, expiring `ttl` after now.
    ///
    /// ```
    /// # let cache = leafcache::Cache::builder().build()?;
    /// use std::time::Duration;
    /// cache.set_with_ttl("session", "abc", Duration::from_secs(30))?;
    /// assert!(cache.set_with_ttl("session", "abc", Duration::ZERO).is_err());
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    pub fn set_with_ttl(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        ttl: Duration,
    ) -> Result<Version, Error> {
        self.set_with_expiry(key, value, Expiry::After(ttl))
    }

    /// Stores `value` under `key` with an explicit [`Expiry`].
    pub fn set_with_expiry(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        expiry: Expiry,
    ) -> Result<Version, Error> {
        self.write(KeyArg::Owned(key.into()), value.into(), expiry)
    }

    /// [`set_with_expiry`](Self::set_with_expiry) with a borrowed key, copied only if the key is
    /// not held already: the front doors' write path.
    pub(crate) fn set_borrowed(
        &self,
        key: &[u8],
        value: Bytes,
        expiry: Expiry,
    ) -> Result<Version, Error> {
        self.write(KeyArg::Borrowed(key), value, expiry)
    }

    fn write(&self, key: KeyArg<'_>, value: Bytes, expiry: Expiry) -> Result<Version, Error> {
        let k = key.as_slice();
        self.check_size(k.len(), value.len())?;
        let now = self.now_ms();
        let mut expires_at = self.expires_at(expiry, now)?;
        let shard = self.shard(k).lock();
        if expiry == Expiry::Keep
            && let Some(current) = shard.peek(k, now)
        {
            expires_at = current.expires_at;
        }
        Ok(self.commit(shard, key, value, expires_at, now))
    }

    /// Stamps a local write with a version and seq, applies it under the shard lock the caller
    /// holds, releases the lock and wakes the links.
    fn commit(
        &self,
        mut shard: RwLockWriteGuard<'_, Shard>,
        key: KeyArg<'_>,
        value: Bytes,
        expires_at: u64,
        now: u64,
    ) -> Version {
        let core = &self.inner.core;
        let version = core.new_version();
        let seq = core.next_seq();
        self.tell(&mut shard, Some(key.as_slice()));
        let grouped = core.groups.any();
        let counter = core.recorder().is_some() && shard.merged(key.as_slice(), now).is_some();
        let pending = if counter {
            None
        } else {
            self.record(
                seq,
                Stored::Live {
                    key: key.as_slice(),
                    value: &value,
                    version,
                    expires_at,
                },
            )
        };
        let k = counter.then(|| Bytes::copy_from_slice(key.as_slice()));
        let old = shard.set(key, value, version, expires_at, seq, now, grouped);
        let pending = match k.and_then(|k| shard.merged_at(&k, seq)) {
            Some(m) => self.record(seq, Stored::Merged { merge: &m }),
            None => pending,
        };
        if grouped && let Some(old) = old {
            core.groups.moved(old, seq);
        }
        if !shard.dropped.is_empty() {
            self.tell(&mut shard, None);
        }
        drop(shard);
        write_out(pending);
        core.changed();
        version
    }

    /// Stores `value` under `key` if `condition` holds, checked and written under one lock, and
    /// returns what the key held before: Redis `SET` with `NX`/`XX`/`GET`/`KEEPTTL`.
    ///
    /// ```
    /// use leafcache::{Expiry, SetCondition};
    /// # let cache = leafcache::Cache::builder().build()?;
    /// let first = cache.set_if("lock", "a", Expiry::Default, SetCondition::IfAbsent)?;
    /// assert!(first.version.is_some());
    /// let second = cache.set_if("lock", "b", Expiry::Default, SetCondition::IfAbsent)?;
    /// assert_eq!((second.version, second.previous.as_deref()), (None, Some(&b"a"[..])));
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`set_with_expiry`](Self::set_with_expiry).
    pub fn set_if(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        expiry: Expiry,
        condition: SetCondition,
    ) -> Result<SetOutcome, Error> {
        let (key, value) = (key.into(), value.into());
        self.check_size(key.len(), value.len())?;
        let now = self.now_ms();
        let shard = self.shard(&key).lock();
        let current = shard.peek(&key, now);
        let previous = current.as_ref().map(|c| c.value.clone());
        let write = match condition {
            SetCondition::Always => true,
            SetCondition::IfAbsent => current.is_none(),
            SetCondition::IfPresent => current.is_some(),
        };
        if !write {
            return Ok(SetOutcome {
                version: None,
                previous,
            });
        }
        let expires_at = match (expiry, &current) {
            (Expiry::Keep, Some(c)) => c.expires_at,
            _ => self.expires_at(expiry, now)?,
        };
        let version = self.commit(shard, KeyArg::Owned(key), value, expires_at, now);
        Ok(SetOutcome {
            version: Some(version),
            previous,
        })
    }

    /// Walks the live keys, in the order they were last written: start with cursor 0 and pass
    /// each returned cursor to the next call until it returns 0 (Redis `SCAN`). Up to `count`
    /// changes are read per call (the answer can hold fewer keys: deleted and expired ones are
    /// left out). A key held throughout the walk is returned at least once; one written during
    /// the walk may be returned again, as it moves to the end of the order.
    ///
    /// ```
    /// # let cache = leafcache::Cache::builder().build()?;
    /// for i in 0..25 {
    ///     cache.set(format!("k{i}"), "v")?;
    /// }
    /// let (mut cursor, mut seen) = (0, 0);
    /// loop {
    ///     let (keys, next) = cache.scan(cursor, 10);
    ///     seen += keys.len();
    ///     if next == 0 { break }
    ///     cursor = next;
    /// }
    /// assert_eq!(seen, 25);
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    pub fn scan(&self, cursor: u64, count: usize) -> (Vec<Bytes>, u64) {
        let count = count.max(1);
        let upto = self.inner.core.current_seq();
        let records = self.changes_between(cursor, upto, cursor, count, LOCAL);
        let next = match records.last() {
            Some(last) if records.len() == count && last.seq < upto => last.seq,
            _ => 0,
        };
        let now = self.now_ms();
        let keys = records
            .into_iter()
            .filter_map(|s| match s.change {
                Change::Set {
                    key, expires_at, ..
                } if expires_at.is_none_or(|at| at > now) => Some(key),
                Change::Merge(m)
                    if m.expires_at.is_none_or(|at| at > now)
                        && m.read() != merge::Reading::Nothing =>
                {
                    Some(m.key)
                }
                _ => None,
            })
            .collect();
        (keys, next)
    }

    fn check_size(&self, key_len: usize, value_len: usize) -> Result<(), Error> {
        if key_len > store::MAX_KEY {
            return Err(Error::ValueTooLarge {
                size: key_len,
                limit: store::MAX_KEY,
            });
        }
        let size = entry_size(key_len, value_len);
        if size > self.inner.max_entry_bytes {
            return Err(Error::ValueTooLarge {
                size,
                limit: self.inner.max_entry_bytes,
            });
        }
        Ok(())
    }

    fn expires_at(&self, expiry: Expiry, now: u64) -> Result<u64, Error> {
        let after =
            |d: Duration| now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Ok(match expiry {
            Expiry::Default => self.inner.ttl.map_or(NEVER, after),
            Expiry::Never => NEVER,
            Expiry::After(d) if d.is_zero() => return Err(Error::ZeroDuration { what: "ttl" }),
            Expiry::After(d) => after(d),
            Expiry::AtMs(at) => at.min(NEVER - 1),
            // Callers that hold the entry use its expiry; without one, Keep is the default.
            Expiry::Keep => self.inner.ttl.map_or(NEVER, after),
        })
    }

    /// Changes the expiry of an existing entry (a new write of the same value, replicated as such).
    /// Returns `false` if the key holds nothing.
    pub fn set_expiry(&self, key: impl AsRef<[u8]>, expiry: Expiry) -> Result<bool, Error> {
        let key = key.as_ref();
        let now = self.now_ms();
        let expires_at = self.expires_at(expiry, now)?;
        let shard = self.shard(key).lock();
        let Some(current) = shard.peek(key, now) else {
            return Ok(false);
        };
        let expires_at = if expiry == Expiry::Keep {
            current.expires_at
        } else {
            expires_at
        };
        if current.kind != Kind::String {
            drop(shard);
            self.expire_merged(key, expires_at)?;
            return Ok(true);
        }
        self.commit(shard, KeyArg::Borrowed(key), current.value, expires_at, now);
        Ok(true)
    }

    /// Deletes `key` everywhere it is replicated, leaving a tombstone so that an older write cannot
    /// bring it back. Returns the value it held, like `pop`.
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Option<Bytes> {
        let key = key.as_ref();
        let now = self.now_ms();
        let core = &self.inner.core;
        let mut shard = self.shard(key).lock();
        let version = core.new_version();
        let seq = core.next_seq();
        self.regroup(&shard, key, seq);
        let counter = matches!(shard.merged(key, now), Some(merge::Merged::Counter(_)));
        let pending = if counter {
            None
        } else {
            self.record(
                seq,
                Stored::Dead {
                    key,
                    version,
                    tombstone: true,
                    since_ms: now,
                },
            )
        };
        let old = shard.delete(Bytes::copy_from_slice(key), version, seq, now);
        let pending = match counter.then(|| shard.merged_at(key, seq)).flatten() {
            Some(m) => self.record(seq, Stored::Merged { merge: &m }),
            None => pending,
        };
        self.tell(&mut shard, Some(key));
        drop(shard);
        write_out(pending);
        core.changed();
        old
    }

    /// [`set`](Self::set), then waits until this node's hub has applied the write (so it is on
    /// two nodes), at most the connection timeout.
    ///
    /// # Errors
    /// [`Error::ValueTooLarge`] as `set`; [`Error::NoUpstream`] on a node without a hub;
    /// [`Error::Timeout`] if the hub does not acknowledge in time — the write stays applied here
    /// and still replicates when the link comes back.
    pub async fn set_acked(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<Version, Error> {
        let version = self.set(key, value)?;
        let seq = self.inner.core.current_seq();
        self.inner.core.uplink.wait_acked(seq).await?;
        Ok(version)
    }

    /// [`delete`](Self::delete), then waits for the hub as [`set_acked`](Self::set_acked) does.
    ///
    /// # Errors
    /// As [`set_acked`](Self::set_acked).
    pub async fn delete_acked(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>, Error> {
        let old = self.delete(key);
        let seq = self.inner.core.current_seq();
        self.inner.core.uplink.wait_acked(seq).await?;
        Ok(old)
    }

    /// Removes every entry; the purge is a versioned change, so it replicates and any write older
    /// than it is refused afterwards. Returns the purge's version.
    pub fn purge(&self) -> Version {
        let version = self.inner.core.new_version();
        self.apply_purge(version, LOCAL);
        self.inner.core.changed();
        version
    }

    fn apply_purge(&self, version: Version, source: u32) -> bool {
        let mut mark = self.inner.purge.lock();
        if mark.is_some_and(|(v, _, _)| v >= version) {
            return false;
        }
        let seq = self.inner.core.next_seq();
        self.install_purge(&mut mark, version, seq, source);
        let pending = self.record(seq, Stored::Purge { version });
        if let Some(watcher) = self.inner.core.watcher() {
            watcher.cleared(self.inner.index);
        }
        drop(mark);
        write_out(pending);
        if let Some(recorder) = self.inner.core.recorder() {
            // The purged entries go off the disk too.
            recorder.purged();
        }
        true
    }

    /// Restores a record read from disk (see [`Shard::restore`]).
    pub(crate) fn restore_record(
        &self,
        key: Bytes,
        version: Version,
        seq: u64,
        what: Restored,
        now: u64,
    ) -> bool {
        self.inner.core.hlc.observe(version.ts);
        self.shard(&key)
            .lock()
            .restore(key, version, seq, what, now)
    }

    /// Joins a merged change read from disk.
    pub(crate) fn restore_merge(&self, merge: &merge::Merge, seq: u64, now: u64) -> bool {
        self.inner.core.hlc.observe(merge.version.ts);
        self.shard(&merge.key).lock().restore_merge(merge, seq, now)
    }

    /// Restores a purge read from disk.
    pub(crate) fn restore_purge(&self, version: Version, seq: u64) {
        self.inner.core.hlc.observe(version.ts);
        let mut mark = self.inner.purge.lock();
        if mark.is_none_or(|(v, _, _)| v < version) {
            self.install_purge(&mut mark, version, seq, LOCAL);
        }
    }

    /// Sets the purge mark (whose lock the caller holds) and purges every shard.
    fn install_purge(
        &self,
        mark: &mut Option<(Version, u64, u32)>,
        version: Version,
        seq: u64,
        source: u32,
    ) {
        *mark = Some((version, seq, source));
        let core = &self.inner.core;
        for shard in self.inner.shards.iter() {
            shard.lock().purge(version, &mut || core.next_seq());
        }
    }

    /// Ends a restore: puts each shard's change log back in seq order (records came back in
    /// the order they were written to disk, not their seqs').
    pub(crate) fn restored(&self) {
        for shard in self.inner.shards.iter() {
            shard.lock().settle();
        }
    }

    /// Restores the floor read from disk.
    pub(crate) fn restore_floor(&self, floor: u64) {
        self.inner.shards[0].lock().restore_floor(floor);
    }

    /// Hands `f` this cache's state with the seqs it was recorded at: purge mark and floor, then
    /// each shard's entries (least recently used first) and dead records, one shard under its lock
    /// at a time.
    pub(crate) fn export<E>(
        &self,
        mut f: impl FnMut(u64, Stored<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let purge = *self.inner.purge.lock();
        if let Some((version, seq, _)) = purge {
            f(seq, Stored::Purge { version })?;
        }
        f(self.floor(), Stored::Floor)?;
        for shard in self.inner.shards.iter() {
            shard.lock().export(&mut f)?;
        }
        Ok(())
    }

    /// The number of unexpired entries. Removes the expired ones it finds on the way.
    pub fn len(&self) -> usize {
        let now = self.now_ms();
        self.inner
            .shards
            .iter()
            .map(|s| {
                let mut s = s.lock();
                s.sweep(now, usize::MAX);
                self.tell(&mut s, None);
                s.len()
            })
            .sum()
    }

    /// Whether the cache holds no unexpired entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes up to `budget` expired entries and tombstones past their retention, spread over the
    /// shards; returns how many it removed. Writes already sweep a few each, so calling this is only
    /// needed to free memory in a cache that is read but no longer written.
    pub fn sweep(&self, budget: usize) -> usize {
        let now = self.now_ms();
        let per_shard = budget.div_ceil(self.inner.shards.len()).max(1);
        let mut done = 0;
        for shard in self.inner.shards.iter() {
            if done >= budget {
                break;
            }
            let mut shard = shard.lock();
            done += shard.sweep(now, per_shard.min(budget - done));
            self.tell(&mut shard, None);
        }
        done
    }

    /// Applies a change made on another node iff it is newer than what this cache knows of its
    /// key (its entry, its tombstone, or the purge mark). Returns whether it applied; duplicates and
    /// echoes of changes already applied return `false`.
    ///
    /// ```
    /// use leafcache::{Cache, Change};
    /// let a = Cache::builder().build()?;
    /// let b = Cache::builder().build()?;
    /// let version = a.set("k", "from a")?;
    /// let change = Change::Set { key: "k".into(), value: "from a".into(), version, expires_at: None };
    /// assert!(b.apply_remote(change.clone()));
    /// assert!(!b.apply_remote(change), "an echo is a no-op");
    /// assert_eq!(b.get("k").unwrap(), "from a");
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    pub fn apply_remote(&self, change: Change) -> bool {
        self.apply_from(&change, LOCAL)
    }

    /// Bench- and test-only: [`apply_remote`](Self::apply_remote) as if `change` had come in on
    /// link `link` of this node, so that replication does not send it back there — a difference
    /// between this node and that peer made on purpose, for anti-entropy to find.
    #[doc(hidden)]
    pub fn apply_as_if_from(&self, change: &Change, link: u32) -> bool {
        self.apply_from(change, link)
    }

    /// [`apply_remote`](Self::apply_remote) for a change that came in on link `source`, so that
    /// replication does not send it back there.
    pub(crate) fn apply_from(&self, change: &Change, source: u32) -> bool {
        let core = &self.inner.core;
        core.hlc.observe(change.version().ts);
        let applied = match change {
            Change::Purge { version } => self.apply_purge(*version, source),
            Change::Set { .. }
            | Change::Delete { .. }
            | Change::Invalidate { .. }
            | Change::Merge(_) => {
                let Some(key) = change.key() else {
                    return false;
                };
                let now = self.now_ms();
                let mut seq = 0;
                let mut shard = self.shard(key).lock();
                let old = core.groups.any().then(|| shard.record_seq(key)).flatten();
                let applied = shard.apply(change, source, now, || {
                    seq = core.next_seq();
                    seq
                });
                if applied && let Some(old) = old {
                    core.groups.moved(old, seq);
                }
                let pending = if applied {
                    self.tell(&mut shard, Some(key));
                    match change {
                        // A string or delete joined into a merged value is recorded as what
                        // it did there.
                        Change::Set { .. } | Change::Delete { .. }
                            if shard.merged(key, now).is_some() =>
                        {
                            let m = shard.merged_at(key, seq);
                            m.and_then(|m| self.record(seq, Stored::Merged { merge: &m }))
                        }
                        _ => self.record(seq, stored(change, now)),
                    }
                } else {
                    self.tell(&mut shard, None);
                    None
                };
                drop(shard);
                write_out(pending);
                applied
            }
        };
        if applied {
            core.changed();
        }
        applied
    }

    /// Hands an applied change to the node's recorder, if it has one: the one place persistence
    /// is entered. Returns the recorder to write out through once the caller's locks are released.
    #[inline]
    fn record(&self, seq: u64, stored: Stored<'_>) -> Option<&dyn Recorder> {
        let recorder = self.inner.core.recorder()?;
        recorder
            .record(self.inner.index, seq, stored)
            .then_some(recorder)
    }

    /// The changes this cache applied after local seq `after`, in seq order, at most `max` of them.
    ///
    /// The log is compacted: a key changed many times appears once, at its latest change, as a
    /// `Set`, a `Delete` (tombstone), or an `Invalidate` (evicted or expired here). Calling again
    /// with the last returned seq continues the scan; an empty answer means the scan has caught up.
    /// A scan from 0 is a consistent snapshot in the usual sense: every record is a real state, and
    /// changes made while it runs appear later in the same scan.
    ///
    /// The answer is complete only when `after >= floor()`; below that, records were forgotten.
    pub fn changes_since(&self, after: u64, max: usize) -> Vec<Stamped> {
        let upto = self.inner.core.current_seq();
        self.changes_between(after, upto, after, max, LOCAL)
    }

    /// The records with `after < seq <= upto`, in seq order, at most `max`, leaving out those
    /// that came in on link `skip`. `upto` must have been read from the node's seq counter before
    /// the call: seqs are handed out under the shard lock that records them, so every seq up to it
    /// is then visible.
    ///
    /// Keys of merged types carry the part of their state changed after `since` (at most
    /// `after`): everything the receiver may lack. A scan cut short by `max` moves a receiver's
    /// watermark past parts of keys whose record lies further on, so `since` stays where the last
    /// scan that reached `upto` left it.
    /// Calls `f(key, item)` for every record of this cache with a seq up to `upto` (the purge
    /// mark with no key), shard by shard: what a digest covers. See [`Shard::digest_records`].
    pub(crate) fn digest_records(&self, upto: u64, f: &mut dyn FnMut(Option<&[u8]>, DigestItem)) {
        let now = self.now_ms();
        for shard in self.inner.shards.iter() {
            shard
                .0
                .read()
                .digest_records(upto, now, &mut |k, item| f(Some(k), item));
        }
        if let Some((version, seq, _)) = *self.inner.purge.lock()
            && seq <= upto
        {
            f(None, DigestItem::Purge(version));
        }
    }

    pub(crate) fn changes_between(
        &self,
        after: u64,
        upto: u64,
        since: u64,
        max: usize,
        skip: u32,
    ) -> Vec<Stamped> {
        let purge = *self.inner.purge.lock();
        let mut out = Vec::new();
        let mut lo = after;
        while out.len() < max && lo < upto {
            // Seqs are unique node-wide, so a window this wide holds at most `max - len` records.
            let hi = lo.saturating_add((max - out.len()) as u64).min(upto);
            let start = out.len();
            for shard in self.inner.shards.iter() {
                shard.lock().changes_in(lo, hi, since, skip, &mut out);
            }
            if let Some((version, seq, source)) = purge
                && !skipped(source, skip)
                && seq > lo
                && seq <= hi
            {
                out.push(Stamped {
                    seq,
                    change: Change::Purge { version },
                });
            }
            out[start..].sort_unstable_by_key(|s| s.seq);
            lo = hi;
            if out.len() == start {
                // An empty window: jump straight to the next record, if any.
                let next = self
                    .inner
                    .shards
                    .iter()
                    .filter_map(|s| s.lock().next_seq_after(lo))
                    .chain(purge.map(|(_, s, _)| s).filter(|&s| s > lo))
                    .min();
                match next {
                    Some(n) if n <= upto => lo = n - 1,
                    _ => break,
                }
            }
        }
        out
    }

    /// The records of this cache with `after < seq <= upto`, and their key and value bytes.
    pub(crate) fn pending(&self, after: u64, upto: u64) -> (u64, u64) {
        self.inner.shards.iter().fold((0, 0), |(n, b), s| {
            let (sn, sb) = s.lock().pending(after, upto);
            (n + sn, b + sb)
        })
    }

    /// When the oldest record above `after` in this cache was written, by its version (ms), if it
    /// has one.
    pub(crate) fn written_after(&self, after: u64) -> Option<u64> {
        self.inner
            .shards
            .iter()
            .filter_map(|s| s.lock().written_after(after))
            .min()
    }

    /// The highest seq of a record this cache forgot (a tombstone past retention or over its
    /// bound). A peer whose watermark is below it needs a full sync rather than a delta.
    pub fn floor(&self) -> u64 {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().floor())
            .max()
            .unwrap_or(0)
    }

    /// Counts a key anti-entropy repaired (see [`CacheStats::antientropy_repairs`]).
    pub(crate) fn note_repair(&self) {
        self.inner
            .antientropy_repairs
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot of the cache's counters and size.
    pub fn stats(&self) -> CacheStats {
        let mut st = CacheStats {
            loads: self.inner.loads.load(Ordering::Relaxed),
            load_errors: self.inner.load_errors.load(Ordering::Relaxed),
            load_misses: self.inner.load_misses.load(Ordering::Relaxed),
            load_buckets: std::array::from_fn(|i| {
                self.inner.load_buckets[i].load(Ordering::Relaxed)
            }),
            load_time_us: self.inner.load_time_us.load(Ordering::Relaxed),
            antientropy_repairs: self.inner.antientropy_repairs.load(Ordering::Relaxed),
            ..CacheStats::default()
        };
        for shard in self.inner.shards.iter() {
            let s = shard.lock();
            st.hits += s.counters.hits + s.shared_hits.load(Ordering::Relaxed);
            st.misses += s.counters.misses + s.shared_misses.load(Ordering::Relaxed);
            st.evictions += s.counters.evictions;
            st.expirations += s.counters.expirations;
            st.entries += s.len() as u64;
            st.bytes += s.bytes() as u64;
            st.dead_records += s.dead_len() as u64;
        }
        st
    }

    /// Stores a structured value, encoded as JSON: self-describing, so readers and writers may add
    /// or drop fields independently (with `#[serde(default)]`), and readable from any front door.
    ///
    /// ```
    /// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    /// struct User { name: String, visits: u32 }
    /// # let cache = leafcache::Cache::builder().build()?;
    /// cache.set_as("user:7", &User { name: "ada".into(), visits: 3 })?;
    /// let user: Option<User> = cache.get_as("user:7")?;
    /// assert_eq!(user.unwrap().visits, 3);
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    pub fn set_as<T: Serialize + ?Sized>(
        &self,
        key: impl Into<Bytes>,
        value: &T,
    ) -> Result<Version, Error> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::Serde(Arc::new(e)))?;
        self.set(key, bytes)
    }

    /// Reads a structured value stored with [`set_as`](Self::set_as) (or any JSON value).
    pub fn get_as<T: DeserializeOwned>(&self, key: impl AsRef<[u8]>) -> Result<Option<T>, Error> {
        self.get(key)
            .map(|b| serde_json::from_slice(&b).map_err(|e| Error::Serde(Arc::new(e))))
            .transpose()
    }

    /// The value of `key`, calling the load callback on a miss and caching what it returns with the
    /// cache's default expiry.
    ///
    /// Concurrent misses on one key share one load: the callback runs once and every caller gets
    /// its result. A loader error goes to every waiting caller and is not cached.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let cache = leafcache::Cache::builder()
    ///     .load_callback(|key: &[u8]| Ok::<_, std::io::Error>(key.to_ascii_uppercase()))
    ///     .build()?;
    /// assert_eq!(cache.get_or_load("abc").await?, "ABC");
    /// assert_eq!(cache.get("abc").unwrap(), "ABC", "now cached");
    /// # Ok::<(), leafcache::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn get_or_load(&self, key: impl Into<Bytes>) -> Result<Bytes, Error> {
        let key = key.into();
        if let Some(v) = self.get(&key) {
            return Ok(v);
        }
        if !self.loads_on_miss() {
            return Err(Error::NoLoader(self.inner.name.to_string()));
        }
        match self.fetch_missed(key).await? {
            Some(v) => Ok(v),
            None if self.inner.loader.is_some() => Err(Error::load(Box::new(loader::Missing))),
            None => Err(Error::NoLoader(self.inner.name.to_string())),
        }
    }

    /// Whether a miss here can still be answered: the cache has a load callback (or origin), or
    /// its node asks its hub on a miss (`fetch_on_miss`). The front doors then read through
    /// [`get_or_fetch`](Self::get_or_fetch).
    pub fn loads_on_miss(&self) -> bool {
        self.inner.loader.is_some() || self.inner.core.uplink.fetch_timeout.is_some()
    }

    /// The value of `key`, or on a miss what the hub holds (with `fetch_on_miss`) or else what
    /// the load callback returns, cached with the cache's default expiry; `None` if none of them
    /// has it (the callback returned [`Missing`]: nothing is cached). What the front doors do on
    /// a miss.
    ///
    /// Concurrent misses on one key share one fetch: the hub is asked and the callback runs
    /// once, and every caller gets the result. An error goes to every waiting caller and is not
    /// cached.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let cache = leafcache::Cache::builder().build()?;
    /// assert_eq!(cache.get_or_fetch("k").await?, None, "nowhere to load from: a miss");
    /// # Ok::<(), leafcache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// The load callback's error ([`Error::Load`]), or [`Error::ValueTooLarge`] if what it
    /// returned cannot be cached.
    pub async fn get_or_fetch(&self, key: impl Into<Bytes>) -> Result<Option<Bytes>, Error> {
        let key = key.into();
        if let Some(v) = self.get(&key) {
            return Ok(Some(v));
        }
        if !self.loads_on_miss() {
            return Ok(None);
        }
        self.fetch_missed(key).await
    }

    /// What [`get_or_fetch`](Self::get_or_fetch) does after its miss, for a door that already
    /// counted one: `None` at once if the cache does not read through.
    pub(crate) async fn after_miss(&self, key: Bytes) -> Result<Option<Bytes>, Error> {
        if !self.loads_on_miss() {
            return Ok(None);
        }
        self.fetch_missed(key).await
    }

    /// The single flight of a miss on `key`: the hub first (with `fetch_on_miss`), then the
    /// load callback.
    async fn fetch_missed(&self, key: Bytes) -> Result<Option<Bytes>, Error> {
        let core = &self.inner.core;
        let loader = self.inner.loader.clone();
        let flight: Flight = self
            .inner
            .inflight
            .lock()
            .entry(key.clone())
            .or_default()
            .clone();
        let result = flight
            .get_or_init(|| async {
                // Another flight may have finished between our miss and our joining this one.
                let now = self.now_ms();
                if let Some(p) = self.shard(&key).lock().peek(&key, now) {
                    return Ok(Some(p.value));
                }
                if let Some(change) = core.uplink.fetch(&self.inner.name, &key).await {
                    // What this node evicted comes back at the version it had.
                    self.shard(&key)
                        .lock()
                        .forget_dropped(&key, change.version());
                    self.apply_remote(change);
                    if let Some(p) = self.shard(&key).lock().peek(&key, self.now_ms()) {
                        return Ok(Some(p.value));
                    }
                }
                let Some(loader) = loader else {
                    return Ok(None);
                };
                let started = std::time::Instant::now();
                let loaded = loader.load(key.clone()).await;
                self.time_load(started.elapsed());
                match loaded {
                    Ok(value) => {
                        self.inner.loads.fetch_add(1, Ordering::Relaxed);
                        self.set(key.clone(), value.clone())?;
                        Ok(Some(value))
                    }
                    Err(e) if e.is::<loader::Missing>() => {
                        self.inner.load_misses.fetch_add(1, Ordering::Relaxed);
                        Ok(None)
                    }
                    Err(e) => {
                        self.inner.load_errors.fetch_add(1, Ordering::Relaxed);
                        Err(Error::load(e))
                    }
                }
            })
            .await
            .clone();
        let mut inflight = self.inner.inflight.lock();
        if inflight.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            inflight.remove(&key);
        }
        result
    }

    fn time_load(&self, took: Duration) {
        let ms = took.as_millis() as u64;
        let bucket = stats::LOAD_BUCKETS_MS
            .iter()
            .position(|&b| ms < b)
            .unwrap_or(stats::LOAD_BUCKETS_MS.len());
        self.inner.load_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.inner
            .load_time_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }
}

/// A change from a peer as the cache stores it once applied.
fn stored(change: &Change, now: u64) -> Stored<'_> {
    match change {
        Change::Set {
            key,
            value,
            version,
            expires_at,
        } => Stored::Live {
            key,
            value,
            version: *version,
            expires_at: expires_at.unwrap_or(NEVER),
        },
        Change::Delete { key, version } | Change::Invalidate { key, version } => Stored::Dead {
            key,
            version: *version,
            tombstone: matches!(change, Change::Delete { .. }),
            since_ms: now,
        },
        Change::Purge { version } => Stored::Purge { version: *version },
        Change::Merge(m) => Stored::Merged { merge: m },
    }
}
