//! Reads, and local writes of strings and deletes: what the cache's `get`, `set` and `delete` do under the shard's lock.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;

use super::slots::{SWEEP_PER_WRITE, touch, touch_hashed};
use super::*;
use crate::cache::merge::{Hash, Merged};
use crate::cache::store::{Entry, Idx, MAX_KEY, Put, Taken, Val};
use crate::clock::{Clock, Version};

/// What a live entry reads as with `GET`: a string, a counter's decimal text; `None` for a hash.
#[inline]
pub(super) fn read(e: &Entry) -> Option<Bytes> {
    match e.val() {
        Val::Merged(Merged::Counter(c)) => c.cell.read(),
        Val::Merged(Merged::Hash(_)) | Val::None => None,
        Val::Str(_) => e.str_bytes(),
    }
}

/// The type of a live entry's value.
pub(super) fn kind(e: &Entry) -> Kind {
    match e.val() {
        Val::Merged(Merged::Counter(_)) => Kind::Counter,
        Val::Merged(Merged::Hash(_)) => Kind::Hash,
        Val::Str(_) | Val::None => Kind::String,
    }
}

/// What a removed entry read as.
pub(super) fn read_taken(t: &Taken) -> Option<Bytes> {
    match &t.value {
        Put::Str(b) => Some(b.clone()),
        Put::Merged(Merged::Counter(c)) => c.cell.read(),
        _ => None,
    }
}

impl Shard {
    /// Reads a value (`h` is the key's hash), promoting it in LRU order and counting a hit or a
    /// miss.
    #[inline]
    pub fn get(&mut self, h: u64, key: &[u8], clock: &Clock) -> Option<Bytes> {
        match touch_hashed(&mut self.store, &mut *self.policy, h, key) {
            Some(i) => {
                let e = self.store.at(i);
                // The clock is read only for entries that can expire.
                if e.at == NEVER || e.at > clock.now_ms() {
                    self.counters.hits += 1;
                    return read(e);
                }
            }
            None => {
                self.counters.misses += 1;
                return None;
            }
        }
        self.expire(key, clock.now_ms());
        self.counters.misses += 1;
        None
    }

    /// Whether hits may be served under the shared lock: the policy only raises bits in the
    /// entry's slot on a hit (S3-FIFO), it does not reorder anything.
    #[inline]
    pub fn shared_hits(&self) -> bool {
        self.policy.shared_hits()
    }

    /// [`get`](Self::get) under the shared lock, for a policy that allows it: the value, a miss
    /// (`Some(None)`), or `None` if the read needs the exclusive lock (the entry expired, and
    /// must become a dead record).
    #[inline]
    pub fn get_shared(&self, h: u64, key: &[u8], clock: &Clock) -> Option<Option<Bytes>> {
        debug_assert!(self.shared_hits());
        let Some(i) = self.store.live_hashed(h, key) else {
            self.shared_misses.fetch_add(1, Relaxed);
            return Some(None);
        };
        let e = self.store.at(i);
        if e.at != NEVER && e.at <= clock.now_ms() {
            return None;
        }
        e.hit_shared();
        self.shared_hits.fetch_add(1, Relaxed);
        Some(read(e))
    }

    /// The live, unexpired slot of `key`.
    #[inline]
    pub(super) fn unexpired(&self, key: &[u8], now: u64) -> Option<Idx> {
        self.store.live(key).filter(|&i| self.store.at(i).at > now)
    }

    /// Reads an unexpired entry without promoting it or counting anything.
    pub fn peek(&self, key: &[u8], now: u64) -> Option<Peeked> {
        let i = self.unexpired(key, now)?;
        let e = self.store.at(i);
        Some(Peeked {
            value: read(e).unwrap_or_default(),
            kind: kind(e),
            version: self.store.version(i),
            expires_at: e.at,
            seq: e.seq,
        })
    }

    /// The type of `key`'s unexpired value, without reading it.
    pub fn kind(&self, key: &[u8], now: u64) -> Option<Kind> {
        self.unexpired(key, now).map(|i| kind(self.store.at(i)))
    }

    /// The seq of `key`'s log record (its entry's or dead record's), if it has one.
    pub fn record_seq(&self, key: &[u8]) -> Option<u64> {
        self.store.find(key).map(|i| self.store.at(i).seq)
    }

    /// The version of `key`'s entry or dead record, if this shard has either.
    pub(super) fn held(&self, key: &[u8]) -> Option<Version> {
        self.store.find(key).map(|i| self.store.version(i))
    }

    /// The newest version this shard knows for `key`: its entry, its dead record, or the purge mark.
    pub(super) fn newest(&self, key: &[u8]) -> Option<Version> {
        self.held(key).max(self.purged_before)
    }

    /// The newest version this shard knows for `key` (entry, dead record or purge mark) and
    /// whether the key is live: what `WATCH` compares to see whether a key changed.
    pub fn probe(&self, key: &[u8], now: u64) -> (Option<Version>, bool) {
        (self.newest(key), self.peek(key, now).is_some())
    }

    /// The key of the first live entry in log order at or after `seq`, wrapping to the start: a
    /// key picked without bias towards any shard's LRU order, for `RANDOMKEY`.
    pub fn live_key_from(&self, seq: u64) -> Option<Bytes> {
        let s = &self.store;
        let before = s.log_all().take_while(|&j| s.at(j).seq < seq);
        s.log_from(seq)
            .chain(before)
            .find(|&j| s.at(j).is_live())
            .map(|j| Bytes::copy_from_slice(s.at(j).key()))
    }

    /// The hash `key` holds, promoting it and counting a hit or a miss; [`WrongKind`] if it holds
    /// another type.
    pub fn hash(&mut self, key: &[u8], now: u64) -> Result<Option<&Hash>, WrongKind> {
        if self
            .store
            .live(key)
            .is_some_and(|i| self.store.at(i).at <= now)
        {
            self.expire(key, now);
        }
        match touch(&mut self.store, &mut *self.policy, key) {
            Some(i) => match self.store.at(i).merged() {
                Some(Merged::Hash(h)) => {
                    self.counters.hits += 1;
                    Ok(Some(h))
                }
                _ => Err(WrongKind),
            },
            None => {
                self.counters.misses += 1;
                Ok(None)
            }
        }
    }

    /// The bytes `key`'s live entry is accounted for.
    pub fn entry_bytes(&self, key: &[u8], now: u64) -> Option<usize> {
        let i = self.unexpired(key, now)?;
        Some(entry_size(key.len(), self.store.at(i).value_len()))
    }

    /// The merged state `key` holds — live, or dead: a deleted counter's or hash's, or one that
    /// expired — if it holds one.
    ///
    /// Dead states are kept so that what arrives later joins the same state here as anywhere,
    /// and goes on to the other links: a node that dropped a key stands between its neighbours, and
    /// a stateless record there would stop the state's later changes (its TTL register among
    /// them) from reaching the nodes beyond it.
    pub fn merged(&self, key: &[u8], now: u64) -> Option<&Merged> {
        let _ = now;
        self.store.at(self.store.find(key)?).merged()
    }

    /// Writes an entry unconditionally (the caller's version is the newest: a local write).
    /// With `old_seq`, returns the seq of the log record the write replaced, if any.
    ///
    /// A write over a counter is a write of its register: the increments it saw are replaced, and
    /// increments made elsewhere that it did not see stay on top of it.
    #[allow(clippy::too_many_arguments)]
    pub fn set(
        &mut self,
        key: KeyArg<'_>,
        value: Bytes,
        version: Version,
        expires_at: u64,
        seq: u64,
        now: u64,
        old_seq: bool,
    ) -> Option<u64> {
        self.sweep(now, SWEEP_PER_WRITE);
        if self.holds_counter(key.as_slice(), now) {
            let old = self.record_seq(key.as_slice());
            let written = self.write_counter(key, Some(value), (version, seq), expires_at, now);
            debug_assert!(written.is_ok());
            return old;
        }
        let key = key.as_slice();
        let overwritten =
            self.overwrite_live(key, Put::Str(value), version, expires_at, (seq, LOCAL), now);
        match overwritten {
            Ok(old) => Some(old),
            Err(value) => {
                let old = if old_seq {
                    self.store.dead(key).map(|d| self.store.at(d).seq)
                } else {
                    None
                };
                self.clear_key(key);
                self.install_live(key, value, version, expires_at, (seq, LOCAL), now);
                old
            }
        }
    }

    /// Deletes unconditionally, leaving a tombstone; returns the unexpired value it held. A
    /// deleted counter keeps the parts its delete saw (the dead record's state).
    pub fn delete(&mut self, key: Bytes, version: Version, seq: u64, now: u64) -> Option<Bytes> {
        if key.len() > MAX_KEY {
            // No shard holds such a key: there is nothing to delete or to remember.
            return None;
        }
        self.sweep(now, SWEEP_PER_WRITE);
        if self.holds_counter(&key, now) {
            let old = self.peek(&key, now).map(|p| p.value);
            // A counter counted again after its delete has no expiry, as in Redis.
            let _ = self.write_counter(KeyArg::Owned(key), None, (version, seq), NEVER, now);
            return old;
        }
        let old = self.clear_key(&key);
        self.install_dead(&key, version, (seq, LOCAL), true, now, None);
        old.filter(|t| t.at > now).and_then(|t| read_taken(&t))
    }
}
