//! Slot bookkeeping: installing, rewriting and burying records, the expiry index, byte counts, the dead-record bounds and eviction.

use bytes::Bytes;

use super::*;
use crate::cache::merge::Merged;
use crate::cache::policy::Policy;
use crate::cache::store::{Idx, List, Put, Store, Taken};
use crate::clock::Version;

/// A live entry, read or rewritten: moved to the back in LRU order, or its S3-FIFO frequency or
/// LFU count raised (nothing reordered). Over the shard's fields, so that its counters stay
/// usable meanwhile.
#[inline]
pub(super) fn touch(store: &mut Store, policy: &mut dyn Policy, key: &[u8]) -> Option<Idx> {
    let h = store.hash(key);
    touch_hashed(store, policy, h, key)
}

/// [`touch`] with the key's hash already computed.
#[inline]
pub(super) fn touch_hashed(
    store: &mut Store,
    policy: &mut dyn Policy,
    h: u64,
    key: &[u8],
) -> Option<Idx> {
    let i = store.live_hashed(h, key)?;
    policy.hit(store, i);
    Some(i)
}

/// Expired entries and old dead records removed, at most, per write.
pub(super) const SWEEP_PER_WRITE: usize = 4;

impl Shard {
    pub(super) fn index_expiry(&mut self, at: u64, seq: u64) {
        if at != NEVER {
            self.expiry.add(at, seq);
        }
    }

    /// The entry of `(at, _)` leaves the index: its element goes stale, to be dropped when met.
    pub(super) fn unindex_expiry(&mut self, at: u64, _seq: u64) {
        if at != NEVER {
            self.expiry.remove(at);
            if self.expiry.wants_rebuild() {
                let s = &self.store;
                let live = s
                    .iter_live()
                    .map(|i| (s.at(i).at, s.at(i).seq))
                    .filter(|&(at, _)| at != NEVER);
                self.expiry.rebuild(live);
            }
        }
    }

    /// Lists the key of slot `i` among the dropped ones, if drops are reported.
    pub(super) fn report(&mut self, i: Idx) {
        if self.report_drops {
            let key = Bytes::copy_from_slice(self.store.at(i).key());
            self.dropped.push(key);
        }
    }

    /// Removes up to `budget` expired entries (they become `Gone` records) and dead records past
    /// their retention. Returns how many it removed.
    pub fn sweep(&mut self, now: u64, budget: usize) -> usize {
        let mut done = 0;
        while done < budget {
            match self.expiry.first() {
                Some((at, seq)) if at <= now => {
                    // Taken first, so that a broken index can never make this loop spin.
                    self.expiry.pop();
                    let Some(i) = self
                        .store
                        .by_seq(seq)
                        .filter(|&i| self.store.at(i).is_live() && self.store.at(i).at == at)
                    else {
                        // Stale: that entry was rewritten or removed since.
                        continue;
                    };
                    self.expiry.remove(at);
                    self.expire_slot_indexed(i, now);
                    done += 1;
                }
                _ => break,
            }
        }
        while done < budget {
            match self.store.front(List::Dead) {
                Some(i) if self.store.at(i).at.saturating_add(self.limits.dead_ttl_ms) <= now => {
                    self.forget_oldest_dead();
                    done += 1;
                }
                _ => break,
            }
        }
        done
    }

    /// Forgets the record of `key` if it is one this shard dropped by itself (evicted or
    /// expired, not deleted) at `version`, so that the same version's value can come back (a
    /// hub's answer to a fetch on a miss). The floor stays: the key gets a newer record at once.
    pub fn forget_dropped(&mut self, key: &[u8], version: Version) -> bool {
        match self.store.dead(key) {
            Some(i) if !self.store.at(i).is_tombstone() && self.store.version(i) == version => {
                self.clear_slot(i);
                true
            }
            _ => false,
        }
    }

    /// Moves an entry (known to be live) to a `Gone` record because it expired.
    pub(super) fn expire(&mut self, key: &[u8], now: u64) {
        if let Some(i) = self.store.live(key) {
            self.expire_slot(i, now);
        }
    }

    pub(super) fn expire_slot(&mut self, i: Idx, now: u64) {
        self.unaccount(i);
        self.expired(i, now);
    }

    /// [`expire_slot`](Self::expire_slot) of an entry whose deadline the sweep took off the index.
    pub(super) fn expire_slot_indexed(&mut self, i: Idx, now: u64) {
        let e = self.store.at(i);
        self.bytes -= entry_size(e.key().len(), e.value_len());
        self.policy.removed(i);
        self.expired(i, now);
    }

    pub(super) fn expired(&mut self, i: Idx, now: u64) {
        self.counters.expirations += 1;
        self.report(i);
        self.bury(i, now, true);
    }

    /// Removes every record of `key` (entry or dead record, with their log and expiry records) and
    /// returns what its live entry held.
    pub(super) fn clear_key(&mut self, key: &[u8]) -> Option<Taken> {
        let i = self.store.find(key)?;
        self.clear_slot(i)
    }

    pub(super) fn clear_slot(&mut self, i: Idx) -> Option<Taken> {
        let live = self.store.at(i).is_live();
        if live {
            self.unaccount(i);
        } else {
            self.dead_bytes -= dead_size(self.store.at(i).key().len());
        }
        let taken = self.store.take(i);
        live.then_some(taken)
    }

    /// Takes a live slot out of the byte count, the expiry index and the policy's state.
    pub(super) fn unaccount(&mut self, i: Idx) {
        let e = self.store.at(i);
        let (size, at, seq) = (entry_size(e.key().len(), e.value_len()), e.at, e.seq);
        self.bytes -= size;
        self.unindex_expiry(at, seq);
        self.policy.removed(i);
    }

    /// Rewrites a live entry in place — promoted, re-indexed, its log record moved to `seq` —
    /// without taking it out of its list and putting it back; returns the seq its record had.
    /// Hands `value` back if `key` is not live here.
    pub(super) fn overwrite_live(
        &mut self,
        key: &[u8],
        value: Put,
        version: Version,
        expires_at: u64,
        (seq, source): (u64, u32),
        now: u64,
    ) -> Result<u64, Put> {
        let Some(i) = touch(&mut self.store, &mut *self.policy, key) else {
            return Err(value);
        };
        let e = self.store.at(i);
        let (old_size, new_size) = (
            entry_size(key.len(), e.value_len()),
            entry_size(key.len(), value.len()),
        );
        let (old_at, old_seq) = (e.at, e.seq);
        self.store.replace(i, value);
        self.store.set_version(i, version);
        self.store.at_mut(i).at = expires_at;
        self.rewritten(
            i,
            (old_at, old_seq, old_size),
            (expires_at, seq, new_size),
            source,
            now,
        );
        Ok(old_seq)
    }

    /// The bookkeeping of a live entry rewritten in place: its expiry re-indexed, its log
    /// record moved to `seq` (from `source`), its bytes re-counted; evicts if it grew.
    pub(super) fn rewritten(
        &mut self,
        i: Idx,
        (old_at, old_seq, old_size): (u64, u64, usize),
        (at, seq, new_size): (u64, u64, usize),
        source: u32,
        now: u64,
    ) {
        self.unindex_expiry(old_at, old_seq);
        self.index_expiry(at, seq);
        self.store.relog(i, seq, source);
        self.bytes = self.bytes - old_size + new_size;
        if new_size > old_size {
            self.evict_over_limits(seq, now);
        }
    }

    pub(super) fn install_live(
        &mut self,
        key: &[u8],
        value: Put,
        version: Version,
        expires_at: u64,
        seq: (u64, u32),
        now: u64,
    ) {
        self.bytes += entry_size(key.len(), value.len());
        self.index_expiry(expires_at, seq.0);
        let small = self.policy.admit(key);
        let i = self
            .store
            .insert(key, value, version, seq, expires_at, true, false, small);
        self.policy.inserted(&self.store, i);
        self.evict_over_limits(seq.0, now);
    }

    /// Adds a dead record (a tombstone, else a dropped version) made at `since`, then enforces
    /// the dead-record bound.
    pub(super) fn install_dead(
        &mut self,
        key: &[u8],
        version: Version,
        seq: (u64, u32),
        tombstone: bool,
        since: u64,
        state: Option<Merged>,
    ) {
        let put = state.map_or(Put::None, Put::Merged);
        self.store
            .insert(key, put, version, seq, since, false, tombstone, false);
        self.dead_bytes += dead_size(key.len());
        self.bound_dead();
    }

    /// Turns a live slot (already unaccounted) into a `Gone` record, keeping its version and seq;
    /// one that `expired` keeps its merged state (see [`Shard::merged`]).
    pub(super) fn bury(&mut self, i: Idx, now: u64, expired: bool) {
        self.store.kill(i, false, now, expired);
        self.dead_bytes += dead_size(self.store.at(i).key().len());
        self.bound_dead();
    }

    /// Forgets the oldest dead records beyond their count bound, or beyond a thirty-second of a
    /// byte bound: `max_bytes` bounds the entries, and their dead records within that share.
    pub(super) fn bound_dead(&mut self) {
        let max_dead_bytes = if self.limits.max_bytes == usize::MAX {
            usize::MAX
        } else {
            self.limits.max_bytes / 32
        };
        while self.store.len(List::Dead) > self.limits.max_dead
            || (self.dead_bytes > max_dead_bytes && self.store.len(List::Dead) > 0)
        {
            self.forget_oldest_dead();
        }
    }

    pub(super) fn forget_oldest_dead(&mut self) {
        if let Some(i) = self.store.front(List::Dead) {
            self.dead_bytes -= dead_size(self.store.at(i).key().len());
            let taken = self.store.take(i);
            self.floor = self.floor.max(taken.seq);
        }
    }

    /// Drops the live entry of `key` as an eviction does: its record stays, dropped at its
    /// version and seq, so nothing of it is sent as a delete. `false` if `key` is not live here.
    pub fn evict_key(&mut self, key: &[u8], now: u64) -> bool {
        let Some(i) = self.store.find(key) else {
            return false;
        };
        if !self.store.at(i).is_live() {
            return false;
        }
        self.unaccount(i);
        if self.report_drops {
            self.dropped.push(Bytes::copy_from_slice(key));
        }
        self.counters.evictions += 1;
        self.bury(i, now, false);
        true
    }

    /// New limits for a running shard: it evicts (by its policy) and forgets dead records down
    /// to them at once.
    pub fn set_limits(&mut self, limits: Limits, now: u64) {
        self.limits = limits;
        self.policy.resize(limits.max_entries);
        // No write to protect: seqs start at 1.
        self.evict_over_limits(0, now);
        self.bound_dead();
    }

    /// Bytes that count against `max_bytes`: the entries, and S3-FIFO's ghosts.
    pub(super) fn used_bytes(&self) -> usize {
        self.bytes + self.policy.bytes()
    }

    /// Evicts entries, as the policy chooses, until the shard is within its limits. The entry
    /// just written (its seq `written`) is never the one evicted (for LRU it is the most recent),
    /// and alone it always fits (sizes are checked before writing).
    pub(super) fn evict_over_limits(&mut self, written: u64, now: u64) {
        while (self.store.live_len() > self.limits.max_entries
            || self.used_bytes() > self.limits.max_bytes)
            && self.store.live_len() > 1
        {
            let Some(i) = self.policy.victim(&mut self.store, written) else {
                break;
            };
            let expired = self.store.at(i).at <= now;
            self.unaccount(i);
            if self.report_drops {
                self.dropped
                    .push(Bytes::copy_from_slice(self.store.at(i).key()));
            }
            if expired {
                self.counters.expirations += 1;
            } else {
                self.counters.evictions += 1;
            }
            self.bury(i, now, expired);
        }
    }
}
