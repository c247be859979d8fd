//! Misses that load: the cache's loader or a fetch from its hub, run once per key at a time
//! (single flight) however many callers miss it together; errors are not cached.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::*;

impl Cache {
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
        if !self.loads_on_miss() && !self.held_elsewhere(&key) {
            return Err(Error::NoLoader(self.inner.name.to_string()));
        }
        match self.fetch_missed(key).await? {
            Some(v) => Ok(v),
            None if self.inner.loader.is_some() => Err(Error::load(Box::new(loader::Missing))),
            None => Err(Error::NoLoader(self.inner.name.to_string())),
        }
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
        if !self.loads_on_miss() && !self.held_elsewhere(&key) {
            return Ok(None);
        }
        self.fetch_missed(key).await
    }

    /// Whether another shard of a sharded cluster holds `key`.
    fn held_elsewhere(&self, key: &[u8]) -> bool {
        (self.inner.core.owners()).is_some_and(|o| o.elsewhere(key))
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
    pub(super) async fn fetch_missed(&self, key: Bytes) -> Result<Option<Bytes>, Error> {
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
                if let Some(owners) = core.owners()
                    && owners.elsewhere(&key)
                {
                    // Another shard's key: its answer, or on its miss (or if it cannot be asked)
                    // the loader's, kept here.
                    if let Ok(Some(value)) = owners.read(self.inner.index, key.clone()).await {
                        return Ok(Some(value));
                    }
                } else if let Some(change) = core.uplink.fetch(&self.inner.name, &key).await {
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

    /// Whether a miss here can still be answered: the cache has a load callback (or origin), or
    /// its node asks its hub on a miss (`fetch_on_miss`). The front doors then read through
    /// [`get_or_fetch`](Self::get_or_fetch).
    pub fn loads_on_miss(&self) -> bool {
        self.inner.loader.is_some() || self.inner.core.uplink.fetch_timeout.is_some()
    }

    pub(super) fn time_load(&self, took: Duration) {
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
