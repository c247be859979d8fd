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

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;

use super::change::{Change, Stamped};
use super::expiry::Expiry;
use super::merge::{Body, Cell, Counter, Hash, Merge, Merged, ORIGIN, Register, Sum};
use super::policy::{Eviction, Pick, Policy, lru_pick};
use super::ports::Stored;
use super::store::{Entry, INLINE_MAX, Idx, List, MAX_KEY, Put, Store, Taken, Val};
use crate::clock::{Clock, Version};

/// `expires_at` of an entry that never expires.
pub(crate) const NEVER: u64 = u64::MAX;

/// The source of a change written on this node rather than received from a link.
pub(crate) const LOCAL: u32 = 0;

/// Whether a record from `source` is left out of a scan for link `skip` (it came from there).
#[inline]
pub(crate) fn skipped(source: u32, skip: u32) -> bool {
    source == skip && skip != LOCAL
}

/// Bytes every entry costs whatever its size: its 64-byte slab slot, and its places in the hash
/// table and the log array at their load factors. [`entry_size`] adds what its key and value take.
///
/// Measured, not estimated (`cargo bench --bench memory`): 1M entries of 10-byte keys and 64-byte
/// values filled into an empty cache add 175 resident bytes each, 79 beside the 96-byte block of
/// key and value; a cache bounded by `max_bytes` and written four times over, evicting all along,
/// holds about 100 beside it (its table between growths, log holes, freed blocks, dead records).
/// 96 keeps both within a few percent of what `max_bytes` promises. Re-measure when the entry
/// layout changes.
pub const ENTRY_OVERHEAD: usize = 96;

/// The block the allocator hands out for `n` bytes: glibc's malloc adds an 8-byte header and rounds
/// to 16, 32 at least.
#[inline]
const fn block(n: usize) -> usize {
    let n = if n + 8 < 32 { 32 } else { n + 8 };
    n.div_ceil(16) * 16
}

/// The bytes an entry of a `key_len`-byte key and a `value_len`-byte value is accounted for in
/// byte capacities (`max_bytes`): what it takes in memory, within a few percent.
///
/// A value up to 256 bytes shares one allocation (and a 4-byte length) with its key; a longer one is kept as the
/// `Bytes` it was written with, behind a small box, and read without a copy.
///
/// ```
/// use leafcache::{ENTRY_OVERHEAD, entry_size};
/// assert_eq!(entry_size(10, 64), ENTRY_OVERHEAD + 96);
/// assert!(entry_size(10, 1 << 20) > 1 << 20);
/// ```
#[inline]
pub const fn entry_size(key_len: usize, value_len: usize) -> usize {
    if value_len <= INLINE_MAX {
        ENTRY_OVERHEAD + block(4 + key_len + value_len)
    } else {
        // The key's block, the box of the out-of-line value, the value's buffer and the header
        // `Bytes` shares it through.
        ENTRY_OVERHEAD + block(4 + key_len) + block(40) + block(value_len) + 32
    }
}

/// Bytes a dead record is accounted for: its slot, table and log places, and its key's block.
#[inline]
pub(crate) const fn dead_size(key_len: usize) -> usize {
    ENTRY_OVERHEAD + block(4 + key_len)
}

/// A value handed to a write: a string (the common case), or the state of a value that merges.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    Str(Bytes),
    Merged(Merged),
}

impl Value {
    /// The bytes accounted for the value.
    #[inline]
    pub fn len(&self) -> usize {
        match self {
            Value::Str(b) => b.len(),
            Value::Merged(m) => m.bytes(),
        }
    }
}

/// The type of a live value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Bytes, last writer wins.
    String,
    /// A string with increments on it: a counter that merges (Redis type `string`).
    Counter,
    /// A hash whose fields merge.
    Hash,
}

/// A key handed to a write: owned already, or borrowed and copied only if the write inserts it
/// (a rewrite of a live key keeps the key it has).
pub(crate) enum KeyArg<'a> {
    Owned(Bytes),
    Borrowed(&'a [u8]),
}

#[cfg(test)]
impl<'a> From<&'a str> for KeyArg<'a> {
    fn from(s: &'a str) -> Self {
        KeyArg::Borrowed(s.as_bytes())
    }
}

#[cfg(test)]
impl From<String> for KeyArg<'_> {
    fn from(s: String) -> Self {
        KeyArg::Owned(Bytes::from(s))
    }
}

impl KeyArg<'_> {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            KeyArg::Owned(b) => b,
            KeyArg::Borrowed(s) => s,
        }
    }
}

/// Why a key has a dead record.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum DeadKind {
    /// Deleted: replicated as [`Change::Delete`].
    Tombstone,
    /// Evicted or expired here: replicated as [`Change::Invalidate`] so a peer drops older copies.
    Gone,
}

/// What a remote change would leave a key holding, for ordering two contents under one version.
enum Content<'a> {
    Value(&'a Bytes, u64),
    Tombstone,
    /// An invalidation: no content, only "the copy of this version is gone".
    Gone,
}

/// What [`Shard::restore`] installs for a key.
pub(crate) enum Restored {
    Live { value: Bytes, expires_at: u64 },
    Dead { kind: DeadKind, since_ms: u64 },
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

/// A read of an entry without touching LRU order or counters.
pub(crate) struct Peeked {
    /// What it reads as (a counter's decimal text; empty for a hash).
    pub value: Bytes,
    pub kind: Kind,
    pub version: Version,
    pub expires_at: u64,
    pub seq: u64,
}

pub(crate) struct Shard {
    /// Entries and dead records, their lists and their log (see [`Store`]).
    store: Store,
    policy: Policy,
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

/// A live entry, read or rewritten: moved to the back in LRU order, or its S3-FIFO frequency or
/// LFU count raised (nothing reordered). Over the shard's fields, so that its counters stay
/// usable meanwhile.
#[inline]
fn touch(store: &mut Store, policy: &mut Policy, key: &[u8]) -> Option<Idx> {
    let h = store.hash(key);
    touch_hashed(store, policy, h, key)
}

/// [`touch`] with the key's hash already computed.
#[inline]
fn touch_hashed(store: &mut Store, policy: &mut Policy, h: u64, key: &[u8]) -> Option<Idx> {
    let i = store.live_hashed(h, key)?;
    match policy {
        Policy::Lru => store.move_to_back(i),
        Policy::S3Fifo(_) => {
            let e = store.at_mut(i);
            let f = e.freq();
            e.set_freq(f + 1);
        }
        Policy::Lfu(p) => p.hit(i),
    }
    Some(i)
}

/// What a live entry reads as with `GET`: a string, a counter's decimal text; `None` for a hash.
#[inline]
fn read(e: &Entry) -> Option<Bytes> {
    match e.val() {
        Val::Merged(Merged::Counter(c)) => c.cell.read(),
        Val::Merged(Merged::Hash(_)) | Val::None => None,
        Val::Str(_) => e.str_bytes(),
    }
}

/// The type of a live entry's value.
fn kind(e: &Entry) -> Kind {
    match e.val() {
        Val::Merged(Merged::Counter(_)) => Kind::Counter,
        Val::Merged(Merged::Hash(_)) => Kind::Hash,
        Val::Str(_) | Val::None => Kind::String,
    }
}

/// What a removed entry read as.
fn read_taken(t: &Taken) -> Option<Bytes> {
    match &t.value {
        Put::Str(b) => Some(b.clone()),
        Put::Merged(Merged::Counter(c)) => c.cell.read(),
        _ => None,
    }
}

impl From<Value> for Put {
    fn from(v: Value) -> Put {
        match v {
            Value::Str(b) => Put::Str(b),
            Value::Merged(m) => Put::Merged(m),
        }
    }
}

/// A key holds a value of another type than the command works on (Redis `WRONGTYPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrongKind;

/// Why a local change to a merged value was refused, leaving it as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The key holds another type.
    WrongKind,
    /// The value would outgrow what one shard may hold.
    TooLarge { size: usize, limit: usize },
}

impl From<Refused> for crate::error::Error {
    fn from(r: Refused) -> Self {
        match r {
            Refused::WrongKind => crate::error::Error::WrongType,
            Refused::TooLarge { size, limit } => crate::error::Error::ValueTooLarge { size, limit },
        }
    }
}

impl From<WrongKind> for crate::error::Error {
    fn from(_: WrongKind) -> Self {
        crate::error::Error::WrongType
    }
}

impl From<WrongKind> for Refused {
    fn from(_: WrongKind) -> Self {
        Refused::WrongKind
    }
}

/// A record as a digest sees it (see [`Shard::digest_records`]).
#[derive(Debug)]
pub enum DigestItem {
    /// A string, a tombstone or a dropped version: its version, and whether it is a drop (an
    /// entry evicted, expired or too large here).
    Version(Version, bool),
    /// A merged state, whole, and whether it expired here.
    Merged(Box<Merge>, bool),
    /// The cache's purge mark (no key).
    Purge(Version),
}

/// The type a local change to a merged value works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A counter (`INCR` and friends).
    Counter,
    /// A hash (`HSET` and friends).
    Hash,
}

/// A state of `target`'s type holding nothing: on a key whose last change was a delete at
/// `reset`, or ([`ORIGIN`]) on a key this node knows nothing of.
/// The tombstone's seq and source become the state's register's: a tombstone not yet sent goes
/// out as the register of what replaces it.
fn begun(target: Target, reset: Version, (reg_seq, reg_source): (u64, u32)) -> Merged {
    match target {
        Target::Counter => Merged::Counter(Box::new(Counter {
            cell: Cell::written(reset, None),
            ttl: ORIGIN,
            reg_seq,
            reg_source,
            ttl_seq: 0,
            ttl_source: LOCAL,
            ttl_at: NEVER,
        })),
        Target::Hash => Merged::Hash(Box::new(Hash {
            reset,
            fields: std::collections::BTreeMap::new(),
            ttl: ORIGIN,
            reg_seq,
            reg_source,
            ttl_seq: 0,
            ttl_source: LOCAL,
            size: 0,
            top: ORIGIN,
            ttl_at: NEVER,
        })),
    }
}

/// Expired entries and old dead records removed, at most, per write.
const SWEEP_PER_WRITE: usize = 4;

impl Shard {
    pub fn new(limits: Limits) -> Self {
        Shard {
            store: Store::default(),
            policy: Policy::new(limits.eviction, limits.max_entries),
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

    /// The newest version this shard knows for `key` (entry, dead record or purge mark) and
    /// whether the key is live: what `WATCH` compares to see whether a key changed.
    pub fn probe(&self, key: &[u8], now: u64) -> (Option<Version>, bool) {
        (self.newest(key), self.peek(key, now).is_some())
    }

    fn index_expiry(&mut self, at: u64, seq: u64) {
        if at != NEVER {
            self.expiry.add(at, seq);
        }
    }

    /// The entry of `(at, _)` leaves the index: its element goes stale, to be dropped when met.
    fn unindex_expiry(&mut self, at: u64, _seq: u64) {
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
    fn report(&mut self, i: Idx) {
        if self.report_drops {
            let key = Bytes::copy_from_slice(self.store.at(i).key());
            self.dropped.push(key);
        }
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

    /// Puts the change log back in seq order after a restore handed records out of it.
    pub fn settle(&mut self) {
        self.store.settle();
    }

    /// Reads a value (`h` is the key's hash), promoting it in LRU order and counting a hit or a
    /// miss.
    #[inline]
    pub fn get(&mut self, h: u64, key: &[u8], clock: &Clock) -> Option<Bytes> {
        match touch_hashed(&mut self.store, &mut self.policy, h, key) {
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
        matches!(self.policy, Policy::S3Fifo(_))
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
    fn unexpired(&self, key: &[u8], now: u64) -> Option<Idx> {
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
    fn held(&self, key: &[u8]) -> Option<Version> {
        self.store.find(key).map(|i| self.store.version(i))
    }

    /// The newest version this shard knows for `key`: its entry, its dead record, or the purge mark.
    fn newest(&self, key: &[u8]) -> Option<Version> {
        self.held(key).max(self.purged_before)
    }

    /// Whether a change of `key` at `version` carrying `content` wins over what this shard knows
    /// of the key: the newer version wins. Nodes never issue a version twice, but should two
    /// different contents ever meet under one version, every node keeps the same one: a tombstone
    /// over a value, and between values the greater `(expires_at, value)`. A dropped-version record
    /// or a purge mark at that version keeps what it has (it has no content to compare).
    fn newer(&self, key: &[u8], version: Version, content: Content<'_>) -> bool {
        let Some(newest) = self.newest(key) else {
            return true;
        };
        if version != newest {
            return version > newest;
        }
        let Some(i) = self
            .store
            .live(key)
            .filter(|&i| self.store.version(i) == version)
        else {
            return false;
        };
        let held = self.store.at(i);
        match content {
            Content::Tombstone => true,
            Content::Value(value, expires_at) => match held.val() {
                Val::Str(b) => (expires_at, &value[..]) > (held.at, b),
                _ => false,
            },
            Content::Gone => false,
        }
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
            let written: Result<(), Refused> = self.change_merged(
                key,
                Target::Counter,
                version,
                seq,
                now,
                (NEVER, 0),
                |m, at| {
                    if let Merged::Counter(c) = m {
                        c.cell.write(version, Some(value));
                        c.ttl = version;
                        c.reg_seq = seq;
                        c.reg_source = LOCAL;
                        c.ttl_seq = seq;
                        c.ttl_source = LOCAL;
                    }
                    *at = expires_at;
                    Ok(())
                },
            );
            debug_assert!(written.is_ok());
            return old;
        }
        let key = key.as_slice();
        let overwritten = self.overwrite_live(
            key,
            Value::Str(value),
            version,
            expires_at,
            (seq, LOCAL),
            now,
        );
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
            let _: Result<(), Refused> = self.change_merged(
                KeyArg::Owned(key),
                Target::Counter,
                version,
                seq,
                now,
                (NEVER, 0),
                |m, at| {
                    if let Merged::Counter(c) = m {
                        c.cell.write(version, None);
                        c.ttl = version;
                        c.reg_seq = seq;
                        c.reg_source = LOCAL;
                        c.ttl_seq = seq;
                        c.ttl_source = LOCAL;
                    }
                    // A counter counted again after its delete has no expiry, as in Redis.
                    *at = NEVER;
                    Ok(())
                },
            );
            return old;
        }
        let old = self.clear_key(&key);
        self.install_dead(&key, version, (seq, LOCAL), true, now, None);
        old.filter(|t| t.at > now).and_then(|t| read_taken(&t))
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
        match touch(&mut self.store, &mut self.policy, key) {
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

    /// Whether `key` holds a counter: live, or deleted with its parts kept.
    fn holds_counter(&self, key: &[u8], now: u64) -> bool {
        let Some(i) = self.store.find(key) else {
            return false;
        };
        let _ = now;
        matches!(self.store.at(i).merged(), Some(Merged::Counter(_)))
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

    /// A string entry's contents as a counter whose register holds it.
    fn counter_of(&self, i: Idx, b: &[u8]) -> Merged {
        let e = self.store.at(i);
        let version = self.store.version(i);
        Merged::Counter(Box::new(Counter {
            cell: Cell::written(version, Some(Bytes::copy_from_slice(b))),
            ttl: version,
            reg_seq: e.seq,
            reg_source: e.source,
            ttl_seq: e.seq,
            ttl_source: e.source,
            ttl_at: e.at,
        }))
    }

    /// A local change to `key` as a value of `target`'s type, made by `f` under this lock: `f`
    /// gets the state the key holds — begun from its string for a counter, from its tombstone, or
    /// from nothing — and the key's expiry to change. On `f`'s error nothing changes; a key of
    /// another type is refused with [`WrongKind`]. The change takes `version` and `seq`; the key
    /// ends live if its state holds a value, as a tombstone otherwise.
    #[allow(clippy::too_many_arguments)]
    pub fn change_merged<T, E: From<Refused>>(
        &mut self,
        key: KeyArg<'_>,
        target: Target,
        version: Version,
        seq: u64,
        now: u64,
        (fresh_expires, grow): (u64, usize),
        f: impl FnOnce(&mut Merged, &mut u64) -> Result<T, E>,
    ) -> Result<T, E> {
        let k = key.as_slice();
        if k.len() > MAX_KEY {
            let (size, limit) = (k.len(), MAX_KEY);
            return Err(Refused::TooLarge { size, limit }.into());
        }
        if self
            .store
            .live(k)
            .is_some_and(|i| self.store.at(i).at <= now)
        {
            self.expire(k, now);
        }
        if let Some(i) = self.store.live(k)
            && matches!(
                (self.store.at(i).merged(), target),
                (Some(Merged::Counter(_)), Target::Counter) | (Some(Merged::Hash(_)), Target::Hash)
            )
        {
            return self.change_in_place(k, grow, (version, seq), now, f);
        }
        let (mut state, mut expires_at) = match self.store.live(k) {
            Some(i) => {
                let e = self.store.at(i);
                match (e.val(), target) {
                    (Val::Str(b), Target::Counter) => (self.counter_of(i, b), e.at),
                    _ => return Err(Refused::WrongKind.into()),
                }
            }
            None => {
                let dead = self.store.dead(k);
                let tombstone = dead.filter(|&d| self.store.at(d).is_tombstone()).map(|d| {
                    let e = self.store.at(d);
                    (self.store.version(d), (e.seq, e.source))
                });
                match (
                    dead.and_then(|d| self.store.at(d).merged().cloned()),
                    target,
                ) {
                    (Some(mut m @ Merged::Counter(_)), Target::Counter)
                    | (Some(mut m @ Merged::Hash(_)), Target::Hash) => {
                        if tombstone.is_none() {
                            // Expired: the key is gone, as in Redis. This write first deletes
                            // everything the state held, as a delete that saw it all.
                            m.forget_all(version, seq);
                            (m, NEVER)
                        } else {
                            let at = m.ttl_at();
                            (m, at)
                        }
                    }
                    (_, target) => {
                        let mut m = match tombstone {
                            Some((version, seq)) => begun(target, version, seq),
                            None => begun(target, ORIGIN, (0, LOCAL)),
                        };
                        // The key's expiry is this write's: its default TTL.
                        m.set_ttl(version, seq, LOCAL);
                        (m, fresh_expires)
                    }
                }
            }
        };
        let out = f(&mut state, &mut expires_at)?;
        if !state.exists() {
            // Gone (a counter deleted, a hash's last field removed): a key written again later
            // has no expiry, as in Redis. A write of the expiry register, at this change.
            state.set_ttl(version, seq, LOCAL);
            expires_at = NEVER;
        }
        let size = entry_size(k.len(), state.bytes());
        if size > self.limits.max_entry {
            let limit = self.limits.max_entry;
            return Err(Refused::TooLarge { size, limit }.into());
        }
        self.put_merged(k, state, expires_at, (seq, LOCAL), now);
        Ok(out)
    }

    /// [`change_merged`](Self::change_merged) of a live merged state, in place: a big hash costs
    /// no copy per change. `grow` bounds the bytes the change may add, checked first, so that a
    /// refused change leaves the state as it was; `f` must leave it untouched when it fails.
    fn change_in_place<T, E: From<Refused>>(
        &mut self,
        k: &[u8],
        grow: usize,
        (version, seq): (Version, u64),
        now: u64,
        f: impl FnOnce(&mut Merged, &mut u64) -> Result<T, E>,
    ) -> Result<T, E> {
        let limit = self.limits.max_entry;
        let Some(i) = touch(&mut self.store, &mut self.policy, k) else {
            unreachable!("checked live by the caller");
        };
        let e = self.store.at_mut(i);
        let old_size = entry_size(k.len(), e.value_len());
        if old_size.saturating_add(grow) > limit {
            let size = old_size.saturating_add(grow);
            return Err(Refused::TooLarge { size, limit }.into());
        }
        let (old_at, old_seq) = (e.at, e.seq);
        let Some(m) = e.merged_mut() else {
            unreachable!("checked merged by the caller");
        };
        let mut at = old_at;
        let out = f(m, &mut at)?;
        if !m.exists() {
            // As in `change_merged`: a key gone has no expiry left for a later write.
            m.set_ttl(version, seq, LOCAL);
            at = NEVER;
        }
        m.set_ttl_at(at);
        if !m.exists() || at <= now {
            // Deleted (a counter's parts kept), or expired by the change: out of the live lists.
            self.unaccount(i);
            let taken = self.store.take(i);
            let Put::Merged(state) = taken.value else {
                unreachable!()
            };
            self.put_merged(&taken.key, state, at, (seq, LOCAL), now);
            return Ok(out);
        }
        let newest = m.newest();
        e.at = at;
        let new_size = entry_size(k.len(), e.value_len());
        self.store.set_version(i, newest);
        self.rewritten(
            i,
            (old_at, old_seq, old_size),
            (at, seq, new_size),
            LOCAL,
            now,
        );
        Ok(out)
    }

    /// Stores a merged state after a change: live if it holds a value, dead otherwise (a counter
    /// with its parts; a hash as a tombstone at its newest version).
    fn put_merged(
        &mut self,
        key: &[u8],
        mut state: Merged,
        expires_at: u64,
        seq: (u64, u32),
        now: u64,
    ) {
        state.set_ttl_at(expires_at);
        // The key's version is its state's newest: nodes holding one state agree on it.
        let version = state.newest();
        let fits = entry_size(key.len(), state.bytes()) <= self.limits.max_entry;
        if state.exists() && expires_at > now && fits {
            let state = Value::Merged(state);
            if let Err(state) = self.overwrite_live(key, state, version, expires_at, seq, now) {
                self.clear_key(key);
                self.install_live(key, state, version, expires_at, seq, now);
            }
            return;
        }
        self.clear_key(key);
        if !state.exists() {
            // Deleted: the dead record keeps the state (its registers, parts, field tombstones and
            // expiry register), so that whatever arrives later joins the same state here as
            // anywhere. A hash holding nothing above its reset is that reset's tombstone exactly.
            let (state, seq) = match state {
                Merged::Hash(h) if h.fields.is_empty() && h.ttl <= h.reset => {
                    (None, (seq.0, LOCAL))
                }
                state => (Some(state), seq),
            };
            self.install_dead(key, version, seq, true, now, state);
        } else if fits {
            // Expired: dropped, keeping the state, as a live one that expires here does (see
            // `Shard::merged`).
            self.install_dead(key, version, seq, false, now, Some(state));
        } else {
            // Too large to hold here.
            self.install_dead(key, version, seq, false, now, None);
        }
    }

    /// Applies a change from a peer iff it is newer than what this shard knows of its key; `stamp`
    /// hands out the local seq only when it applies. Returns whether it applied.
    ///
    /// A purge is not a per-key change: the cache applies it to every shard with [`Shard::purge`].
    /// `source` is the link it came in on, remembered in the log.
    pub fn apply(
        &mut self,
        change: &Change,
        source: u32,
        now: u64,
        stamp: impl FnOnce() -> u64,
    ) -> bool {
        if change.key().is_some_and(|k| k.len() > MAX_KEY) {
            // Longer than any key a shard holds (and than any door or link accepts by default).
            return false;
        }
        self.sweep(now, SWEEP_PER_WRITE);
        match change {
            Change::Merge(m) => self.apply_merge(m, source, now, stamp, false),
            Change::Set {
                key,
                value,
                version,
                expires_at,
            } if self.holds_counter(key, now) => {
                // A string written where this node holds a counter: its register, which saw none
                // of the parts here.
                let m = Merge {
                    key: key.clone(),
                    version: *version,
                    ttl: *version,
                    expires_at: *expires_at,
                    body: Body::Counter {
                        register: Register {
                            version: *version,
                            content: Some(value.clone()),
                            seen: Sum::default(),
                        },
                        parts: Vec::new(),
                    },
                    complete: false,
                    partial: false,
                };
                self.apply_merge(&m, source, now, stamp, true)
            }
            Change::Delete { key, version } if self.merged(key, now).is_some() => {
                let counter = self.holds_counter(key, now);
                let body = if counter {
                    Body::Counter {
                        register: Register {
                            version: *version,
                            content: None,
                            seen: Sum::default(),
                        },
                        parts: Vec::new(),
                    }
                } else {
                    Body::Hash {
                        reset: *version,
                        fields: Vec::new(),
                    }
                };
                let m = Merge {
                    key: key.clone(),
                    version: *version,
                    ttl: ORIGIN,
                    expires_at: None,
                    body,
                    complete: false,
                    partial: false,
                };
                self.apply_merge(&m, source, now, stamp, counter)
            }
            Change::Set {
                key,
                value,
                version,
                expires_at,
            } => {
                let expires_at = expires_at.unwrap_or(NEVER);
                if !self.newer(key, *version, Content::Value(value, expires_at)) {
                    return false;
                }
                let seq = (stamp(), source);
                let fits = entry_size(key.len(), value.len()) <= self.limits.max_entry;
                let value = Value::Str(value.clone());
                if expires_at > now && fits {
                    if let Err(value) =
                        self.overwrite_live(key, value, *version, expires_at, seq, now)
                    {
                        self.clear_key(key);
                        self.install_live(key, value, *version, expires_at, seq, now);
                    }
                    return true;
                }
                // Already expired, or too large to hold here: remember the version only.
                self.clear_key(key);
                self.install_dead(key, *version, seq, false, now, None);
                true
            }
            Change::Delete { key, version } => {
                if !self.newer(key, *version, Content::Tombstone) {
                    return false;
                }
                let seq = (stamp(), source);
                self.clear_key(key);
                self.install_dead(key, *version, seq, true, now, None);
                true
            }
            Change::Invalidate { key, version } => {
                // Recorded even when nothing is held here: an older write of the key may still be
                // on its way through another link, and this record is what refuses it.
                if !self.newer(key, *version, Content::Gone) {
                    return false;
                }
                let seq = (stamp(), source);
                self.clear_key(key);
                self.install_dead(key, *version, seq, false, now, None);
                true
            }
            Change::Purge { .. } => false,
        }
    }

    /// Whether a part of `key`'s merged state at `version` is not enough here: this shard holds
    /// no merged state of the key, but a string (that the parts would join), or nothing newer.
    pub fn wants(&self, key: &[u8], version: Version, now: u64) -> bool {
        self.merged(key, now).is_none()
            && (self.peek(key, now).is_some() || self.newest(key).is_none_or(|n| n <= version))
    }

    /// Restamps every merged state this shard holds, live or dead.
    pub fn restamp_merged(&mut self, stamp: &mut dyn FnMut() -> u64) {
        let s = &self.store;
        let slots: Vec<Idx> = s
            .iter_live()
            .chain(s.iter(List::Dead))
            .filter(|&i| s.at(i).merged().is_some())
            .collect();
        for i in slots {
            self.restamp_at(i, stamp());
        }
    }

    /// [`restamp`](Self::restamp) for the cache (a peer asked for the whole state).
    pub fn restamp_key(&mut self, key: &[u8], seq: u64) -> bool {
        self.restamp(key, seq)
    }

    /// Moves `key`'s record and every part of its merged state to `seq`, as a local change: every
    /// link sends the whole state next. Returns whether the key had a record to move.
    fn restamp(&mut self, key: &[u8], seq: u64) -> bool {
        match self.store.find(key) {
            Some(i) => {
                self.restamp_at(i, seq);
                true
            }
            None => false,
        }
    }

    fn restamp_at(&mut self, i: Idx, seq: u64) {
        let e = self.store.at_mut(i);
        if let Some(m) = e.merged_mut() {
            m.restamp(seq);
        }
        let (old, at, live) = (e.seq, e.at, e.is_live());
        self.store.relog(i, seq, LOCAL);
        if live {
            self.unindex_expiry(at, old);
            self.index_expiry(at, seq);
        }
    }

    /// Joins a merged change from a peer (or from disk, with `source` [`LOCAL`]) into what this
    /// shard holds of its key. With `restamp_live`, a key still holding a value afterwards is sent
    /// whole again (the change came from a node that held none of its parts).
    fn apply_merge(
        &mut self,
        m: &Merge,
        source: u32,
        now: u64,
        stamp: impl FnOnce() -> u64,
        restamp_live: bool,
    ) -> bool {
        let key = &m.key;
        if self.purged_before.is_some_and(|p| m.version <= p) {
            return false;
        }
        if self
            .store
            .live(key)
            .is_some_and(|i| self.store.at(i).at <= now)
        {
            self.expire(key, now);
        }
        let expires = m.expires_at.unwrap_or(NEVER);
        let dead = self.store.dead(key);
        // What the key holds, as a merged state to join into (or `None`: take the change whole).
        let held: Option<Merged> = match self.store.live(key) {
            Some(i) => {
                let e = self.store.at(i);
                match (e.val(), &m.body) {
                    (Val::Merged(s @ Merged::Counter(_)), Body::Counter { .. })
                    | (Val::Merged(s @ Merged::Hash(_)), Body::Hash { .. }) => Some(s.clone()),
                    (Val::Str(b), Body::Counter { .. }) => Some(self.counter_of(i, b)),
                    // Another type: the newer key wins whole.
                    _ if m.version > self.store.version(i) && m.complete => None,
                    _ => return false,
                }
            }
            None => match dead {
                Some(d) => {
                    let e = self.store.at(d);
                    match (e.merged(), &m.body) {
                        (Some(s @ Merged::Counter(_)), Body::Counter { .. })
                        | (Some(s @ Merged::Hash(_)), Body::Hash { .. }) => Some(s.clone()),
                        _ if e.is_tombstone() => {
                            let target = match m.body {
                                Body::Counter { .. } => Target::Counter,
                                Body::Hash { .. } => Target::Hash,
                            };
                            let version = self.store.version(d);
                            Some(begun(target, version, (e.seq, e.source)))
                        }
                        // A merged value dropped here comes back whole (one version may name
                        // states that differ in older parts); a dropped string only to a newer one.
                        _ if m.version >= self.store.version(d) && m.complete => None,
                        _ => return false,
                    }
                }
                None if m.complete => None,
                // A part of a state this node does not hold: nothing to join it to.
                None => return false,
            },
        };
        let seq = stamp();
        let (state, expires_at, changed) = match held {
            Some(mut state) => {
                let changed = state.join(&m.body, seq, source).unwrap_or(false);
                let ttl = state.join_ttl(m.ttl, expires, seq, source);
                let at = state.ttl_at();
                (state, at, changed || ttl)
            }
            None => {
                let state = Merged::from_body(&m.body, m.ttl, seq, source);
                (state, expires, true)
            }
        };
        if !changed {
            return false;
        }
        let newest = state.newest();
        let fits = entry_size(key.len(), state.bytes()) <= self.limits.max_entry;
        let dead = self.store.dead(key).map(|d| {
            let e = self.store.at(d);
            (
                e.is_tombstone(),
                self.store.version(d),
                e.merged().is_none(),
            )
        });
        if state.exists()
            && !fits
            && dead.is_some_and(|(tomb, version, _)| !tomb && version == newest)
        {
            // Dropped here already (too large), as it would be again.
            return false;
        }
        if let Merged::Hash(h) = &state
            && h.fields.is_empty()
            && h.ttl <= h.reset
            && dead.is_some_and(|(tomb, version, stateless)| {
                tomb && stateless && version >= h.newest()
            })
        {
            // A hash holding nothing above its reset is that reset's tombstone: here already.
            return false;
        }
        // A whole state from a peer that this node holds more than: the peer lacks something,
        // so the whole joined state goes back (and on).
        let repair = (m.complete
            && state.fingerprint() != Merged::from_body(&m.body, m.ttl, 0, 0).fingerprint())
            || (restamp_live && state.exists());
        self.put_merged(key, state, expires_at, (seq, source), now);
        if repair {
            self.restamp(key, seq);
        }
        true
    }

    /// Removes every entry and dead record at or below `before`, and remembers the mark.
    ///
    /// A counter or hash changed after the purge survives it whole, here and everywhere: it may
    /// hold parts older than the purge that other nodes removed with their older copy, so its
    /// whole state goes out again (with seqs from `stamp`).
    pub fn purge(&mut self, before: Version, stamp: &mut dyn FnMut() -> u64) {
        let s = &self.store;
        let all: Vec<Idx> = s.iter_live().chain(s.iter(List::Dead)).collect();
        let survivors: Vec<Idx> = all
            .iter()
            .copied()
            .filter(|&i| s.version(i) > before && s.at(i).merged().is_some())
            .collect();
        let doomed: Vec<Idx> = all
            .iter()
            .copied()
            .filter(|&i| s.version(i) <= before)
            .collect();
        for i in survivors {
            self.restamp_at(i, stamp());
        }
        self.purged_before = self.purged_before.max(Some(before));
        for i in doomed {
            self.clear_slot(i);
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

    /// Appends this shard's log records with `after < seq <= upto` to `out`, in seq order, except
    /// those that came from link `skip` (pass [`LOCAL`] to skip none: no link has that id).
    ///
    /// A key of a merged type is sent as the part of its state changed after `since` (what the
    /// receiver is known to hold all of: see `Link`), leaving out what came from `skip`.
    pub fn changes_in(&self, after: u64, upto: u64, since: u64, skip: u32, out: &mut Vec<Stamped>) {
        if after >= upto {
            return;
        }
        let s = &self.store;
        for i in s.log_from(after + 1) {
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
    fn listed(&self, i: Idx, m: &Merged, since: u64, skip: u32) -> Option<Box<Merge>> {
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
                    kind: DeadKind::Tombstone,
                    ..
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
                let value = Value::Str(value);
                self.install_live(&key, value, version, expires_at, (seq, LOCAL), now);
            }
            Restored::Live { .. } => {
                self.install_dead(&key, version, (seq, LOCAL), false, now, None);
            }
            Restored::Dead { kind, since_ms }
                if since_ms.saturating_add(self.limits.dead_ttl_ms) > now =>
            {
                let tombstone = kind == DeadKind::Tombstone;
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

    /// Moves an entry (known to be live) to a `Gone` record because it expired.
    fn expire(&mut self, key: &[u8], now: u64) {
        if let Some(i) = self.store.live(key) {
            self.expire_slot(i, now);
        }
    }

    fn expire_slot(&mut self, i: Idx, now: u64) {
        self.unaccount(i);
        self.expired(i, now);
    }

    /// [`expire_slot`](Self::expire_slot) of an entry whose deadline the sweep took off the index.
    fn expire_slot_indexed(&mut self, i: Idx, now: u64) {
        let e = self.store.at(i);
        self.bytes -= entry_size(e.key().len(), e.value_len());
        if let Policy::Lfu(p) = &mut self.policy {
            p.removed(i);
        }
        self.expired(i, now);
    }

    fn expired(&mut self, i: Idx, now: u64) {
        self.counters.expirations += 1;
        self.report(i);
        self.bury(i, now, true);
    }

    /// Removes every record of `key` (entry or dead record, with their log and expiry records) and
    /// returns what its live entry held.
    fn clear_key(&mut self, key: &[u8]) -> Option<Taken> {
        let i = self.store.find(key)?;
        self.clear_slot(i)
    }

    fn clear_slot(&mut self, i: Idx) -> Option<Taken> {
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
    fn unaccount(&mut self, i: Idx) {
        let e = self.store.at(i);
        let (size, at, seq) = (entry_size(e.key().len(), e.value_len()), e.at, e.seq);
        self.bytes -= size;
        self.unindex_expiry(at, seq);
        if let Policy::Lfu(p) = &mut self.policy {
            p.removed(i);
        }
    }

    /// Rewrites a live entry in place — promoted, re-indexed, its log record moved to `seq` —
    /// without taking it out of its list and putting it back; returns the seq its record had.
    /// Hands `value` back if `key` is not live here.
    fn overwrite_live(
        &mut self,
        key: &[u8],
        value: Value,
        version: Version,
        expires_at: u64,
        (seq, source): (u64, u32),
        now: u64,
    ) -> Result<u64, Value> {
        let Some(i) = touch(&mut self.store, &mut self.policy, key) else {
            return Err(value);
        };
        let e = self.store.at(i);
        let (old_size, new_size) = (
            entry_size(key.len(), e.value_len()),
            entry_size(key.len(), value.len()),
        );
        let (old_at, old_seq) = (e.at, e.seq);
        self.store.replace(i, value.into());
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
    fn rewritten(
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

    fn install_live(
        &mut self,
        key: &[u8],
        value: Value,
        version: Version,
        expires_at: u64,
        seq: (u64, u32),
        now: u64,
    ) {
        self.bytes += entry_size(key.len(), value.len());
        self.index_expiry(expires_at, seq.0);
        let small = match &mut self.policy {
            Policy::S3Fifo(p) => p.enters_small(key),
            _ => false,
        };
        let i = self.store.insert(
            key,
            value.into(),
            version,
            seq,
            expires_at,
            true,
            false,
            small,
        );
        if let Policy::Lfu(p) = &mut self.policy {
            p.insert(i);
        }
        self.evict_over_limits(seq.0, now);
        if let Policy::Lfu(p) = &mut self.policy {
            p.compact(&self.store);
        }
    }

    /// Adds a dead record (a tombstone, else a dropped version) made at `since`, then enforces
    /// the dead-record bound.
    fn install_dead(
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
    fn bury(&mut self, i: Idx, now: u64, expired: bool) {
        self.store.kill(i, false, now, expired);
        self.dead_bytes += dead_size(self.store.at(i).key().len());
        self.bound_dead();
    }

    /// Forgets the oldest dead records beyond their count bound, or beyond a thirty-second of a
    /// byte bound: `max_bytes` bounds the entries, and their dead records within that share.
    fn bound_dead(&mut self) {
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

    fn forget_oldest_dead(&mut self) {
        if let Some(i) = self.store.front(List::Dead) {
            self.dead_bytes -= dead_size(self.store.at(i).key().len());
            let taken = self.store.take(i);
            self.floor = self.floor.max(taken.seq);
        }
    }

    /// Bytes that count against `max_bytes`: the entries, and S3-FIFO's ghosts.
    fn used_bytes(&self) -> usize {
        match &self.policy {
            Policy::S3Fifo(p) => self.bytes + p.ghost_bytes(),
            _ => self.bytes,
        }
    }

    /// Evicts entries, as the policy chooses, until the shard is within its limits. The entry
    /// just written (its seq `written`) is never the one evicted (for LRU it is the most recent),
    /// and alone it always fits (sizes are checked before writing).
    fn evict_over_limits(&mut self, written: u64, now: u64) {
        while (self.store.live_len() > self.limits.max_entries
            || self.used_bytes() > self.limits.max_bytes)
            && self.store.live_len() > 1
        {
            let picked = match &mut self.policy {
                Policy::Lru => lru_pick(&self.store, written),
                Policy::S3Fifo(p) => p.pick(&mut self.store, written),
                Policy::Lfu(p) => p.pick(&self.store, written),
            };
            let Pick::Evict(i) = picked else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{NodeId, Timestamp};

    fn v(ts: u64, node: u128) -> Version {
        Version {
            ts: Timestamp(ts),
            node: NodeId(node),
        }
    }

    fn shard(max_entries: usize) -> Shard {
        Shard::new(Limits {
            max_entries,
            max_bytes: usize::MAX,
            max_entry: usize::MAX,
            eviction: Eviction::Lru,
            max_dead: 4,
            dead_ttl_ms: 1_000,
        })
    }

    fn set(key: &str, value: &str, version: Version) -> Change {
        Change::Set {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            version,
            expires_at: None,
        }
    }

    #[test]
    fn rewrites_of_expiring_keys_leave_a_bounded_index_and_expire_once() {
        let mut s = shard(100);
        for n in 1..=5_000u64 {
            let key = format!("k{}", n % 3);
            s.set(key.into(), "v".into(), v(n, 1), 10_000 + n, n, 0, false);
            assert!(s.expiry.held() <= 2 * 3 + 1024 + 1, "{}", s.expiry.held());
        }
        check(&s);
        assert_eq!(s.expiring().0, 3);
        // Nothing is due before the earliest deadline; then each live entry expires once.
        assert_eq!(s.sweep(10_000 + 4_997, usize::MAX), 0);
        assert_eq!(s.sweep(20_000, usize::MAX), 3);
        assert_eq!(s.len(), 0);
        assert_eq!(s.counters.expirations, 3);
        assert_eq!(s.expiring(), (0, 0));
        check(&s);
    }

    /// Checks the invariants listed at the top of this module.
    fn check(s: &Shard) {
        s.store.check();
        let live: Vec<Idx> = s.store.iter_live().collect();
        let deadlines = live
            .iter()
            .map(|&i| s.store.at(i).at)
            .filter(|&at| at != NEVER);
        let sum: u128 = deadlines.clone().map(u128::from).sum();
        assert_eq!(s.expiry.stats(), (deadlines.count(), sum));
        let bytes: usize = live
            .iter()
            .map(|&i| entry_size(s.store.at(i).key().len(), s.store.at(i).value_len()))
            .sum();
        assert_eq!(s.bytes, bytes);
        let dead: usize = s
            .store
            .iter(List::Dead)
            .map(|i| dead_size(s.store.at(i).key().len()))
            .sum();
        assert_eq!(s.dead_bytes, dead);
    }

    #[test]
    fn evicts_least_recently_used_and_remembers_the_version() {
        let mut s = shard(2);
        let clock = Clock::default();
        s.set("a".into(), "1".into(), v(1, 1), NEVER, 1, 0, false);
        s.set("b".into(), "2".into(), v(2, 1), NEVER, 2, 0, false);
        assert!(s.get(s.store.hash(b"a"), b"a", &clock).is_some()); // b is now least recently used
        s.set("c".into(), "3".into(), v(3, 1), NEVER, 3, 0, false);
        check(&s);
        assert!(s.get(s.store.hash(b"b"), b"b", &clock).is_none());
        assert_eq!(s.counters.evictions, 1);
        let mut out = Vec::new();
        s.changes_in(0, 3, 0, LOCAL, &mut out);
        assert_eq!(out[1].seq, 2, "an evicted entry keeps its place in the log");
        assert!(matches!(out[1].change, Change::Invalidate { version, .. } if version == v(2, 1)));
    }

    #[test]
    fn changes_from_a_link_are_not_listed_for_it() {
        let mut s = shard(1);
        assert!(s.apply(&set("a", "1", v(1, 1)), 7, 0, || 1));
        s.set("b".into(), "2".into(), v(2, 1), NEVER, 2, 0, false); // evicts a: Gone, still from 7
        check(&s);
        let seqs = |skip| {
            let mut out = Vec::new();
            s.changes_in(0, 2, 0, skip, &mut out);
            out.iter().map(|c| c.seq).collect::<Vec<_>>()
        };
        assert_eq!(seqs(7), [2], "link 7 already has a, evicted here or not");
        assert_eq!(seqs(8), [1, 2]);
        assert_eq!(seqs(LOCAL), [1, 2]);
    }

    #[test]
    fn remote_apply_orders_by_version_and_node() {
        let mut s = shard(10);
        let mut seq = 0;
        let mut stamp = || {
            seq += 1;
            seq
        };
        assert!(s.apply(&set("k", "new", v(10, 1)), 1, 0, &mut stamp));
        assert!(
            !s.apply(&set("k", "old", v(9, 9)), 1, 0, &mut stamp),
            "older loses"
        );
        assert!(
            !s.apply(&set("k", "new", v(10, 1)), 1, 0, &mut stamp),
            "echo is a no-op"
        );
        assert!(
            s.apply(&set("k", "tie", v(10, 2)), 1, 0, &mut stamp),
            "tie: larger node wins"
        );
        assert_eq!(s.peek(b"k", 0).unwrap().value, "tie");
        let del = Change::Delete {
            key: "k".into(),
            version: v(11, 0),
        };
        assert!(s.apply(&del, 1, 0, &mut stamp));
        assert!(
            !s.apply(&set("k", "zombie", v(10, 9)), 1, 0, &mut stamp),
            "tombstone wins"
        );
        assert!(s.peek(b"k", 0).is_none());
        check(&s);
    }

    #[test]
    fn two_contents_under_one_version_meet_in_one_winner() {
        // Whatever order two nodes receive them in, both end with the same content.
        let contents = [
            set("k", "apple", v(10, 1)),
            set("k", "pear", v(10, 1)),
            Change::Delete {
                key: "k".into(),
                version: v(10, 1),
            },
        ];
        let applied_in = |order: &[usize]| {
            let mut s = shard(10);
            let mut seq = 0;
            for &i in order {
                s.apply(&contents[i], 1, 0, || {
                    seq += 1;
                    seq
                });
            }
            check(&s);
            s
        };
        let ends: Vec<_> = [[0, 1, 2], [2, 1, 0], [1, 0, 2], [1, 2, 0]]
            .iter()
            .map(|order| {
                let s = applied_in(order);
                (s.peek(b"k", 0).map(|p| p.value), s.held(b"k"))
            })
            .collect();
        assert!(
            ends.iter().all(|e| *e == (None, Some(v(10, 1)))),
            "{ends:?}"
        );
        let ends: Vec<_> = [[0, 1], [1, 0]]
            .iter()
            .map(|order| applied_in(order).peek(b"k", 0).unwrap().value)
            .collect();
        assert_eq!(ends, ["pear", "pear"], "the greater value, in either order");
    }

    #[test]
    fn purge_removes_older_and_refuses_older_writes() {
        let mut s = shard(10);
        s.set("a".into(), "1".into(), v(1, 1), NEVER, 1, 0, false);
        s.set("b".into(), "2".into(), v(5, 1), NEVER, 2, 0, false);
        s.purge(v(3, 0), &mut || 99);
        check(&s);
        assert!(s.peek(b"a", 0).is_none());
        assert!(s.peek(b"b", 0).is_some(), "newer than the purge survives");
        assert!(!s.apply(&set("c", "late", v(2, 0)), 1, 0, || 3));
        assert!(s.apply(&set("c", "new", v(4, 0)), 1, 0, || 3));
    }

    #[test]
    fn invalidate_drops_only_an_older_copy() {
        let mut s = shard(10);
        s.set("k".into(), "v".into(), v(5, 1), NEVER, 1, 0, false);
        let inv = |ts| Change::Invalidate {
            key: "k".into(),
            version: v(ts, 1),
        };
        assert!(!s.apply(&inv(5), 1, 0, || 2), "same version stays");
        assert!(!s.apply(&inv(4), 1, 0, || 2));
        assert!(s.apply(&inv(6), 1, 0, || 2));
        assert!(s.peek(b"k", 0).is_none());
        assert!(
            !s.apply(&set("k", "older", v(6, 0)), 1, 0, || 3),
            "nothing older comes back"
        );
        assert!(
            s.apply(&inv(9), 1, 0, || 4),
            "a newer invalidate replaces an older record"
        );
        let mut fresh = shard(10);
        assert!(
            fresh.apply(&inv(3), 1, 0, || 1),
            "nothing held: the version is still remembered"
        );
        assert!(
            !fresh.apply(&set("k", "late older write", v(2, 1)), 1, 0, || 2),
            "so an older write arriving later through another link is refused"
        );
        check(&s);
        check(&fresh);
    }

    #[test]
    fn expired_entries_are_swept_in_bounded_steps() {
        let mut s = shard(100);
        for i in 0..10u64 {
            s.set(
                format!("k{i}").into(),
                "v".into(),
                v(i + 1, 1),
                1_000 + i,
                i + 1,
                0,
                false,
            );
        }
        s.set("forever".into(), "v".into(), v(99, 1), NEVER, 11, 0, false);
        assert_eq!(s.sweep(2_000, 3), 3);
        assert_eq!(s.len(), 8);
        assert_eq!(s.sweep(2_000, 100), 7);
        assert_eq!(s.len(), 1);
        assert_eq!(
            s.dead_len(),
            4,
            "expired entries became Gone records, bounded to 4"
        );
        assert!(s.floor() > 0, "forgetting records raises the floor");
        assert_eq!(s.sweep(2_999, 100), 0, "retention not over yet");
        assert_eq!(s.sweep(3_000, 100), 4, "dead records past retention");
        assert_eq!(s.dead_len(), 0);
        check(&s);
    }

    #[test]
    fn dead_records_are_bounded_and_raise_the_floor() {
        let mut s = shard(100);
        for i in 0..10u64 {
            s.delete(format!("k{i}").into(), v(i + 1, 1), i + 1, 0);
        }
        assert_eq!(s.dead_len(), 4);
        assert_eq!(s.floor(), 6, "the six oldest tombstones were forgotten");
        check(&s);
    }

    #[test]
    fn expired_remote_write_is_remembered_not_served() {
        let mut s = shard(10);
        let change = Change::Set {
            key: "k".into(),
            value: "v".into(),
            version: v(1, 1),
            expires_at: Some(50),
        };
        assert!(s.apply(&change, 1, 100, || 1));
        assert!(s.peek(b"k", 100).is_none());
        assert_eq!(s.dead_len(), 1);
        check(&s);
    }
}
