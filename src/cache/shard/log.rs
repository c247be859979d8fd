//! Reading the change log (deltas, digests, fetches), and restoring and exporting records to and from disk.

use bytes::Bytes;

use super::*;
use crate::cache::change::{Change, Scan, Stamped};
use crate::cache::merge::{Merge, Merged};
use crate::cache::ports::Stored;
use crate::cache::store::{Idx, List, MAX_KEY, Put, Val};
use crate::clock::Version;

impl Shard {
    /// Appends this shard's log records that `scan` covers to `out`, in seq order (its `skip`
    /// [`LOCAL`] leaves none out: no link has that id).
    ///
    /// A key of a merged type is sent as the part of its state changed after `since` (what the
    /// receiver is known to hold all of: see `Link`), leaving out what came from `skip`.
    pub fn changes_in(&self, scan: Scan, out: &mut Vec<Stamped>) {
        let (upto, since, skip) = (scan.upto, scan.since, scan.skip);
        if scan.after >= upto {
            return;
        }
        let s = &self.store;
        for i in s.log_from(scan.after + 1) {
            let e = s.at(i);
            let seq = e.seq;
            if seq > upto {
                break;
            }
            let version = s.version(i);
            let change = match e.val() {
                Val::Merged(m) => match self.listed(i, m, since, skip) {
                    Some(m) => Change::Merge(m),
                    None => continue,
                },
                _ if skipped(e.source, skip) => continue,
                Val::Str(_) => Change::Set {
                    key: Bytes::copy_from_slice(e.key()),
                    value: e.str_bytes().unwrap_or_default(),
                    version,
                    expires_at: (e.at != NEVER).then_some(e.at),
                },
                Val::None if e.is_tombstone() => Change::Delete {
                    key: Bytes::copy_from_slice(e.key()),
                    version,
                },
                Val::None => Change::Invalidate {
                    key: Bytes::copy_from_slice(e.key()),
                    version,
                },
            };
            out.push(Stamped { seq, change });
        }
    }

    /// Calls `f(key, item)` for every record with a seq up to `upto`, in no particular order: what
    /// a digest of this shard covers. A merged state comes whole, as a full sync sends it; any
    /// other record as its version alone (with whether it is a drop), reading no value.
    pub fn digest_records(&self, upto: u64, now: u64, f: &mut dyn FnMut(&[u8], DigestItem)) {
        let s = &self.store;
        for i in s.iter_records() {
            let e = s.at(i);
            if e.seq > upto {
                continue;
            }
            let version = s.version(i);
            let item = match e.val() {
                Val::Merged(m) => match self.listed(i, m, 0, LOCAL) {
                    Some(m) => {
                        let expired = m.expires_at.is_some_and(|at| at <= now);
                        DigestItem::Merged(m, expired)
                    }
                    None => continue,
                },
                _ => {
                    DigestItem::Version(version, !e.is_tombstone() && (!e.is_live() || e.at <= now))
                }
            };
            f(e.key(), item);
        }
    }

    /// The whole state of `key` as a change, if it holds a merged one (for a fetch or an export).
    pub fn merged_change(&self, key: &[u8], now: u64) -> Option<Change> {
        let i = self.unexpired(key, now)?;
        let m = self.store.at(i).merged()?;
        self.listed(i, m, 0, LOCAL).map(Change::Merge)
    }

    /// The local change just made to `key` at `seq`, as the op log records it: the parts of its
    /// merged state stamped with `seq`.
    pub fn merged_at(&self, key: &[u8], seq: u64) -> Option<Merge> {
        let i = self.store.find(key)?;
        let m = self.store.at(i).merged()?;
        self.listed(i, m, seq - 1, LOCAL).map(|m| *m)
    }

    /// The merged state `m` of slot `i` as a scan lists it: the part changed after `since`,
    /// leaving out what came from link `skip` (`None` if nothing of it is left), with the expiry
    /// its entry holds, or a dead record's TTL register.
    pub(super) fn listed(&self, i: Idx, m: &Merged, since: u64, skip: u32) -> Option<Box<Merge>> {
        let e = self.store.at(i);
        let expires_at = if e.is_live() { e.at } else { m.ttl_at() };
        let (body, complete) = m.delta(since, skip)?;
        Some(Box::new(Merge {
            key: Bytes::copy_from_slice(e.key()),
            version: self.store.version(i),
            ttl: m.ttl_version(),
            expires_at: (expires_at != NEVER).then_some(expires_at),
            body,
            complete,
            partial: false,
        }))
    }

    /// The smallest seq in this shard's log above `after`.
    pub fn next_seq_after(&self, after: u64) -> Option<u64> {
        self.store
            .log_from(after + 1)
            .next()
            .map(|i| self.store.at(i).seq)
    }

    /// The records with `after < seq <= upto`, and their key and value bytes.
    pub fn pending(&self, after: u64, upto: u64) -> (u64, u64) {
        let (mut n, mut bytes) = (0u64, 0u64);
        for i in self.store.log_from(after + 1) {
            let e = self.store.at(i);
            if e.seq > upto {
                break;
            }
            n += 1;
            bytes += (e.key().len() + e.value_len()) as u64;
        }
        (n, bytes)
    }

    /// When the oldest record above `after` was written: its version's physical time, in ms.
    pub fn written_after(&self, after: u64) -> Option<u64> {
        let i = self.store.log_from(after + 1).next()?;
        Some(self.store.version(i).ts.physical_ms())
    }

    /// Installs a record read back from disk with the seq it had, iff it is newer than what this
    /// shard knows of its key (snapshot and op log may both hold a change; the later one wins).
    /// An entry that expired meanwhile, or no longer fits, is kept as a `Gone` record; a dead record
    /// past its retention is forgotten (raising the floor). Returns whether it applied.
    pub fn restore(
        &mut self,
        key: Bytes,
        version: Version,
        seq: u64,
        what: Restored,
        now: u64,
    ) -> bool {
        if key.len() > MAX_KEY {
            return false;
        }
        if self.merged(&key, now).is_some() {
            // Over a value that merges, a string or a delete joins as it did when it was made.
            let change = match what {
                Restored::Live { value, expires_at } => Change::Set {
                    key,
                    value,
                    version,
                    expires_at: (expires_at != NEVER).then_some(expires_at),
                },
                Restored::Dead {
                    tombstone: true, ..
                } => Change::Delete { key, version },
                Restored::Dead { .. } => Change::Invalidate { key, version },
            };
            return self.apply(&change, LOCAL, now, || seq);
        }
        if self.newest(&key).is_some_and(|n| version <= n) {
            return false;
        }
        self.clear_key(&key);
        match what {
            Restored::Live { value, expires_at }
                if expires_at > now
                    && entry_size(key.len(), value.len()) <= self.limits.max_entry =>
            {
                let value = Put::Str(value);
                self.install_live(&key, value, version, expires_at, (seq, LOCAL), now);
            }
            Restored::Live { .. } => {
                self.install_dead(&key, version, (seq, LOCAL), false, now, None);
            }
            Restored::Dead {
                tombstone,
                since_ms,
            } if since_ms.saturating_add(self.limits.dead_ttl_ms) > now => {
                self.install_dead(&key, version, (seq, LOCAL), tombstone, since_ms, None);
            }
            Restored::Dead { .. } => self.floor = self.floor.max(seq),
        }
        true
    }

    /// Joins a merged change read back from disk at the seq it had.
    pub fn restore_merge(&mut self, m: &Merge, seq: u64, now: u64) -> bool {
        if m.key.len() > MAX_KEY {
            return false;
        }
        self.apply_merge(m, LOCAL, now, || seq, false)
    }

    /// Raises the floor to one read back from disk.
    pub fn restore_floor(&mut self, floor: u64) {
        self.floor = self.floor.max(floor);
    }

    /// Calls `f` on every live entry, least recently used first (S3-FIFO: the main queue, then
    /// the small one), then on every dead record, oldest first, with their seqs: the order that
    /// [`restore`](Self::restore) rebuilds the same order from.
    pub fn export<E>(&self, mut f: impl FnMut(u64, Stored<'_>) -> Result<(), E>) -> Result<(), E> {
        let s = &self.store;
        for i in s.iter_live().chain(s.iter(List::Dead)) {
            let e = s.at(i);
            let version = s.version(i);
            match e.val() {
                Val::Merged(m) => {
                    if let Some(m) = self.listed(i, m, 0, LOCAL) {
                        f(e.seq, Stored::Merged { merge: &m })?;
                    }
                }
                Val::Str(value) => f(
                    e.seq,
                    Stored::Live {
                        key: e.key(),
                        value,
                        version,
                        expires_at: e.at,
                    },
                )?,
                Val::None => f(
                    e.seq,
                    Stored::Dead {
                        key: e.key(),
                        version,
                        tombstone: e.is_tombstone(),
                        since_ms: e.at,
                    },
                )?,
            }
        }
        Ok(())
    }

    /// Puts the change log back in seq order after a restore handed records out of it.
    pub fn settle(&mut self) {
        self.store.settle();
    }
}
