//! The public `Cache` API: reads, writes, conditional writes, expiry, deletes, acknowledged
//! writes, purges, scans, sizes, stats and serde values.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::*;

impl Cache {
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

    pub(super) fn write(
        &self,
        key: KeyArg<'_>,
        value: Bytes,
        expiry: Expiry,
    ) -> Result<Version, Error> {
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
    pub(super) fn commit(
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
        let scan = Scan {
            after: cursor,
            upto,
            since: cursor,
            skip: LOCAL,
        };
        let records = self.changes_between(scan, count);
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

    pub(super) fn check_size(&self, key_len: usize, value_len: usize) -> Result<(), Error> {
        if key_len > store::MAX_KEY {
            return Err(Error::ValueTooLarge {
                size: key_len,
                limit: store::MAX_KEY,
            });
        }
        let size = entry_size(key_len, value_len);
        let limit = self.max_entry_bytes();
        if size > limit {
            return Err(Error::ValueTooLarge { size, limit });
        }
        Ok(())
    }

    pub(super) fn expires_at(&self, expiry: Expiry, now: u64) -> Result<u64, Error> {
        let after =
            |d: Duration| now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Ok(match expiry {
            Expiry::Default => self.default_ttl().map_or(NEVER, after),
            Expiry::Never => NEVER,
            Expiry::After(d) if d.is_zero() => return Err(Error::ZeroDuration { what: "ttl" }),
            Expiry::After(d) => after(d),
            Expiry::AtMs(at) => at.min(NEVER - 1),
            // Callers that hold the entry use its expiry; without one, Keep is the default.
            Expiry::Keep => self.default_ttl().map_or(NEVER, after),
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

    /// Drops `key` from this node only, as an eviction does: nothing is replicated, peers keep
    /// their copies (what a sharded node does with the keys of slots another shard now holds).
    /// `false` if it held no live entry of `key`.
    ///
    /// ```
    /// let cache = leafcache::Cache::builder().build()?;
    /// cache.set("k", "v")?;
    /// assert!(cache.evict("k"));
    /// assert!(cache.get("k").is_none());
    /// assert!(!cache.evict("k"));
    /// assert_eq!(cache.stats().evictions, 1);
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    pub fn evict(&self, key: impl AsRef<[u8]>) -> bool {
        let key = key.as_ref();
        let now = self.now_ms();
        let mut shard = self.shard(key).lock();
        let done = shard.evict_key(key, now);
        if !shard.dropped.is_empty() {
            self.tell(&mut shard, None);
        }
        done
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

    /// Removes every entry; the purge is a versioned change, so it replicates and any write older
    /// than it is refused afterwards. Returns the purge's version.
    pub fn purge(&self) -> Version {
        let version = self.inner.core.new_version();
        self.apply_purge(version, LOCAL);
        self.inner.core.changed();
        version
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
}
