//! One shard of a cache: its live entries and dead records (tombstones and dropped versions) in
//! a compact [`Store`] that also keeps their change log in seq order, the eviction policy, and the
//! expiry index. What a change does to a key — which version wins, how merged values join — is
//! decided here; the store only keeps what it is given. Everything here runs under the shard's lock.
//!
//! Invariants kept by every method (the store checks its own in tests):
//! - a key has at most one slot, live or dead, and every slot is on the log at its seq;
//! - `expiry` holds `(expires_at, seq)` for every live entry that has an expiry (and stale
//!   elements of entries since rewritten or removed), and counts exactly the live ones;
//! - `bytes` is the sum of [`entry_size`] over the live entries.

mod access;
mod apply;
mod log;
mod merged;
mod size;
mod slots;
mod vocab;

pub(crate) use size::dead_size;
pub use size::{ENTRY_OVERHEAD, entry_size};
pub use vocab::{DigestItem, Kind, Target, WrongKind};
pub(crate) use vocab::{KeyArg, Peeked, Refused, Restored};

use std::sync::atomic::AtomicU64;

use bytes::Bytes;

use crate::cache::expiry::Expiry;
use crate::cache::policy::{Eviction, Policy};
use crate::cache::store::{List, Store};
use crate::clock::Version;

/// `expires_at` of an entry that never expires.
pub(crate) const NEVER: u64 = u64::MAX;

/// The source of a change written on this node rather than received from a link.
pub(crate) const LOCAL: u32 = 0;

/// Whether a record from `source` is left out of a scan for link `skip` (it came from there).
#[inline]
pub(crate) fn skipped(source: u32, skip: u32) -> bool {
    source == skip && skip != LOCAL
}

/// What one shard may hold.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub max_entries: usize,
    pub max_bytes: usize,
    /// The largest entry accepted (the cache's limit, at most `max_bytes`).
    pub max_entry: usize,
    /// How a full shard chooses what to evict.
    pub eviction: Eviction,
    /// Dead records kept at most; the oldest are forgotten first.
    pub max_dead: usize,
    /// How long a dead record is kept.
    pub dead_ttl_ms: u64,
}

/// Counters kept under the shard lock: plain integers, no atomics on the hot path.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counters {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub expirations: u64,
}

pub(crate) struct Shard {
    /// Entries and dead records, their lists and their log (see [`Store`]).
    store: Store,
    policy: Box<dyn Policy>,
    /// `(expires_at, seq)` of every live entry with an expiry, in the order they expire (with
    /// stale elements it drops as it meets them).
    expiry: Expiry,
    bytes: usize,
    /// The sum of [`dead_size`] over the dead records: at most a thirty-second of `max_bytes`.
    dead_bytes: usize,
    /// Anything at or below this version was purged.
    purged_before: Option<Version>,
    /// Highest seq of a record this shard forgot: a delta from below it is incomplete.
    floor: u64,
    limits: Limits,
    pub counters: Counters,
    /// Hits and misses counted under the shared lock (see [`get_shared`](Self::get_shared)).
    pub shared_hits: AtomicU64,
    pub shared_misses: AtomicU64,
    /// Whether keys this shard drops by itself (expiry, eviction, purge) are listed in `dropped`,
    /// for the caches' watcher (client-side caching must hear of every change).
    pub report_drops: bool,
    /// The keys dropped since the cache last took them; filled only with `report_drops`.
    pub dropped: Vec<Bytes>,
}

impl Shard {
    pub fn new(limits: Limits) -> Self {
        Shard {
            store: Store::default(),
            policy: limits.eviction.policy(limits.max_entries),
            expiry: Expiry::default(),
            bytes: 0,
            dead_bytes: 0,
            purged_before: None,
            floor: 0,
            limits,
            counters: Counters::default(),
            shared_hits: AtomicU64::new(0),
            shared_misses: AtomicU64::new(0),
            report_drops: false,
            dropped: Vec::new(),
        }
    }

    /// How many live entries have an expiry, and the sum of their expiry instants (ms): with the
    /// count, the mean time to live.
    pub fn expiring(&self) -> (usize, u128) {
        self.expiry.stats()
    }

    pub fn len(&self) -> usize {
        self.store.live_len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn dead_len(&self) -> usize {
        self.store.len(List::Dead)
    }

    pub fn floor(&self) -> u64 {
        self.floor
    }
}

#[cfg(test)]
mod tests;
