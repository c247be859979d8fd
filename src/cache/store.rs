//! The compact store of one shard: every entry and dead record in one slab addressed by `u32`
//! indices, a hash table of indices, intrusive lists (recency or FIFO queues, and dead records in
//! the order they were made), the change log as an array of indices in seq order, and the writers
//! of versions interned per shard.
//!
//! Why not `lru::LruCache` plus side indices: an entry there is a heap node, its key a second
//! allocation (and a third, a shared handle, once the change log holds a clone), its value a
//! `Bytes` handle, its version 32 bytes, and its change-log record a B-tree element. Here an
//! entry is one 64-byte slab slot (a cache line) plus one allocation holding key and value,
//! found through a 4-byte table slot; BENCHMARKS.md ("Engine v2") has the figures side by side.
//!
//! Layout of a slot ([`Entry`]): the key and a string value up to [`INLINE_MAX`] bytes in one
//! boxed slice; larger strings (kept as the caller's `Bytes`, so reads share them) and merged
//! states out of line; the version as its timestamp and an index into the shard's writer table;
//! the seq and source of its log record and its place in the log array; its list links; and
//! flags (live or dead, dead kind, S3-FIFO queue and frequency) in the top bits of the key length.
//!
//! The log array is append-only in seq order: a record that moves (a rewrite) or goes leaves a
//! hole, and the array is compacted once holes outnumber records. Records restored from disk may
//! arrive out of seq order; the array is then sorted once, before its next ordered read.

use bytes::Bytes;
use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use super::block::Block;
use super::merge::Merged;
use crate::clock::{NodeId, Timestamp, Version};

/// The seed of the key hash. The cache picks a shard from bits 40.. of the same hash, and the
/// table takes its positions from the low bits and its tags from the top seven, so one hash of a
/// key serves both.
pub(crate) const KEY_SEED: u64 = 0x1eaf_cac4e;

/// An index into the slab; [`NIL`] is none.
pub(crate) type Idx = u32;

/// No entry.
pub(crate) const NIL: Idx = u32::MAX;

/// Strings up to this long are kept beside their key and copied out on a read; longer ones are
/// kept as the `Bytes` they were written with and shared with readers.
pub(crate) const INLINE_MAX: usize = 256;

const KEY_BITS: u32 = 27;
const KEY_MASK: u32 = (1 << KEY_BITS) - 1;
/// The longest key a shard holds (128 MiB − 1; Redis allows 512 MiB, its doors allow 64 KiB by
/// default).
pub(crate) const MAX_KEY: usize = KEY_MASK as usize;

const F_LIVE: u32 = 1 << 27;
const F_TOMBSTONE: u32 = 1 << 28;
const F_SMALL: u32 = 1 << 29;
const FREQ_SHIFT: u32 = 30;

/// Which intrusive list an entry is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum List {
    /// Live entries: recency order (LRU), the main queue (S3-FIFO), insertion order (LFU).
    Main = 0,
    /// S3-FIFO's small queue.
    Small = 1,
    /// Dead records, oldest first.
    Dead = 2,
}

/// A value kept out of line.
pub(crate) enum Other {
    /// A string longer than [`INLINE_MAX`].
    Big(Bytes),
    /// A counter's or hash's state (live, or a deleted counter's parts).
    Merged(Merged),
}

/// What a slot holds as its value, borrowed.
pub(crate) enum Val<'a> {
    Str(&'a [u8]),
    Merged(&'a Merged),
    /// A dead record without a state.
    None,
}

/// A value handed to the store.
pub(crate) enum Put {
    Str(Bytes),
    Merged(Merged),
    None,
}

impl Put {
    /// The bytes accounted for the value (nothing for a dead record's).
    #[inline]
    pub fn len(&self) -> usize {
        match self {
            Put::Str(b) => b.len(),
            Put::Merged(m) => m.bytes(),
            Put::None => 0,
        }
    }
}

/// One slot of the slab: a live entry, a dead record, or free. 64 bytes, aligned to a cache line:
/// a lookup touches one line of the slab.
#[repr(align(64))]
pub(crate) struct Entry {
    /// The key, then the string value if it is inline.
    data: Block,
    other: Option<Box<Other>>,
    /// The version's timestamp.
    ts: u64,
    /// The seq of the entry's log record.
    pub seq: u64,
    /// Live: absolute expiry (ms, `NEVER` for none). Dead: when the record was made (ms).
    pub at: u64,
    writer: u32,
    /// The link the change came in on (`LOCAL` for this node's own).
    pub source: u32,
    prev: Idx,
    next: Idx,
    /// Position in the log array.
    logpos: u32,
    /// Key length in the low bits, flags above. Atomic only so that a hit under the shard's
    /// shared lock can raise the S3-FIFO frequency bits; everything else changes it under the
    /// exclusive lock.
    meta: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 64);
// `entry_size` counts the out-of-line box as a 48-byte block.
const _: () = assert!(std::mem::size_of::<Other>() <= 40);

impl Entry {
    #[inline]
    fn meta(&self) -> u32 {
        self.meta.load(Relaxed)
    }

    #[inline]
    fn key_len(&self) -> usize {
        (self.meta() & KEY_MASK) as usize
    }

    #[inline]
    pub fn key(&self) -> &[u8] {
        &self.data.as_slice()[..self.key_len()]
    }

    #[inline]
    pub fn is_live(&self) -> bool {
        self.meta() & F_LIVE != 0
    }

    /// Whether a dead record is a tombstone (else a dropped version).
    #[inline]
    pub fn is_tombstone(&self) -> bool {
        self.meta() & F_TOMBSTONE != 0
    }

    #[inline]
    pub fn in_small(&self) -> bool {
        self.meta() & F_SMALL != 0
    }

    /// S3-FIFO: reads since the entry entered its queue or last went round, at most 3.
    #[inline]
    pub fn freq(&self) -> u8 {
        (self.meta() >> FREQ_SHIFT) as u8
    }

    #[inline]
    pub fn set_freq(&mut self, f: u8) {
        let m = self.meta.get_mut();
        *m = (*m & !(3 << FREQ_SHIFT)) | (u32::from(f.min(3)) << FREQ_SHIFT);
    }

    /// A hit under the shared lock: raises the frequency by one unless it is at 3 already (a hot
    /// entry's line is then only read). A raise lost to another reader's is a hit not counted in
    /// the frequency, which S3-FIFO tolerates.
    #[inline]
    pub fn hit_shared(&self) {
        let m = self.meta();
        if m >> FREQ_SHIFT < 3 {
            let _ = self
                .meta
                .compare_exchange(m, m + (1 << FREQ_SHIFT), Relaxed, Relaxed);
        }
    }

    #[inline]
    pub fn val(&self) -> Val<'_> {
        match self.other.as_deref() {
            Some(Other::Big(b)) => Val::Str(b),
            Some(Other::Merged(m)) => Val::Merged(m),
            None if self.is_live() => Val::Str(&self.data.as_slice()[self.key_len()..]),
            None => Val::None,
        }
    }

    /// The string value as `Bytes`: shared if out of line, copied if inline.
    #[inline]
    pub fn str_bytes(&self) -> Option<Bytes> {
        match self.other.as_deref() {
            Some(Other::Big(b)) => Some(b.clone()),
            Some(Other::Merged(_)) => None,
            None if self.is_live() => Some(Bytes::copy_from_slice(
                &self.data.as_slice()[self.key_len()..],
            )),
            None => None,
        }
    }

    /// The merged state, if the slot holds one.
    #[inline]
    pub fn merged(&self) -> Option<&Merged> {
        match self.other.as_deref() {
            Some(Other::Merged(m)) => Some(m),
            _ => None,
        }
    }

    #[inline]
    pub fn merged_mut(&mut self) -> Option<&mut Merged> {
        match self.other.as_deref_mut() {
            Some(Other::Merged(m)) => Some(m),
            _ => None,
        }
    }

    /// The bytes accounted for the value.
    #[inline]
    pub fn value_len(&self) -> usize {
        match self.other.as_deref() {
            Some(Other::Big(b)) => b.len(),
            Some(Other::Merged(m)) => m.bytes(),
            None if self.is_live() => self.data.len() - self.key_len(),
            None => 0,
        }
    }

    fn list(&self) -> List {
        if !self.is_live() {
            List::Dead
        } else if self.in_small() {
            List::Small
        } else {
            List::Main
        }
    }

    fn free() -> Entry {
        Entry {
            data: Block::EMPTY,
            other: None,
            ts: 0,
            seq: 0,
            at: 0,
            writer: 0,
            source: 0,
            prev: NIL,
            next: NIL,
            logpos: NIL,
            meta: AtomicU32::new(0),
        }
    }
}

/// Builds a slot's `data` and `other` from a key and a value.
fn layout(key: &[u8], put: Put) -> (Block, Option<Box<Other>>) {
    match put {
        Put::Str(v) if v.len() <= INLINE_MAX => (Block::concat(key, &v), None),
        Put::Str(v) => (Block::concat(key, b""), Some(Box::new(Other::Big(v)))),
        Put::Merged(m) => (Block::concat(key, b""), Some(Box::new(Other::Merged(m)))),
        Put::None => (Block::concat(key, b""), None),
    }
}

#[derive(Clone, Copy, Debug)]
struct Ends {
    head: Idx,
    tail: Idx,
    len: usize,
}

const EMPTY: Ends = Ends {
    head: NIL,
    tail: NIL,
    len: 0,
};

/// Writers of versions, each node id kept once.
#[derive(Default)]
struct Writers {
    ids: Vec<NodeId>,
    index: std::collections::HashMap<u128, u32, foldhash::fast::FixedState>,
}

impl Writers {
    fn intern(&mut self, node: NodeId) -> u32 {
        let next = self.ids.len() as u32;
        let w = *self.index.entry(node.0).or_insert(next);
        if w == next {
            self.ids.push(node);
        }
        w
    }
}

/// What [`Store::take`] hands back of a removed slot.
pub(crate) struct Taken {
    pub key: Box<[u8]>,
    pub value: Put,
    pub seq: u64,
    /// Expiry (live) or when the record was made (dead).
    pub at: u64,
}

/// The store of one shard. It keeps its structures consistent; what goes in is the shard's call.
pub(crate) struct Store {
    table: HashTable<Idx>,
    slots: Vec<Entry>,
    free: Vec<Idx>,
    lists: [Ends; 3],
    /// Slot indices in seq order; `NIL` marks a hole.
    log: Vec<Idx>,
    holes: usize,
    /// Whether `log` is in seq order (false after an out-of-order push, until [`settle`](Self::settle)).
    sorted: bool,
    /// The highest seq pushed to the log.
    last_seq: u64,
    writers: Writers,
    hasher: foldhash::fast::FixedState,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            table: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            lists: [EMPTY; 3],
            log: Vec::new(),
            holes: 0,
            sorted: true,
            last_seq: 0,
            writers: Writers::default(),
            hasher: foldhash::fast::FixedState::with_seed(KEY_SEED),
        }
    }
}

impl Store {
    #[inline]
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The slot of `key` (live or dead).
    #[inline]
    pub fn find(&self, key: &[u8]) -> Option<Idx> {
        self.find_hashed(self.hash(key), key)
    }

    /// [`find`](Self::find) with the key's hash already computed.
    #[inline]
    pub fn find_hashed(&self, h: u64, key: &[u8]) -> Option<Idx> {
        let slots = &self.slots;
        self.table
            .find(h, |&i| slots[i as usize].key() == key)
            .copied()
    }

    /// The slot of `key` if it is live.
    #[inline]
    pub fn live(&self, key: &[u8]) -> Option<Idx> {
        self.live_hashed(self.hash(key), key)
    }

    /// [`live`](Self::live) with the key's hash already computed.
    #[inline]
    pub fn live_hashed(&self, h: u64, key: &[u8]) -> Option<Idx> {
        self.find_hashed(h, key)
            .filter(|&i| self.slots[i as usize].is_live())
    }

    /// The slot of `key` if it is a dead record.
    #[inline]
    pub fn dead(&self, key: &[u8]) -> Option<Idx> {
        self.find(key)
            .filter(|&i| !self.slots[i as usize].is_live())
    }

    #[inline]
    pub fn at(&self, i: Idx) -> &Entry {
        &self.slots[i as usize]
    }

    #[inline]
    pub fn at_mut(&mut self, i: Idx) -> &mut Entry {
        &mut self.slots[i as usize]
    }

    #[inline]
    pub fn version(&self, i: Idx) -> Version {
        let e = &self.slots[i as usize];
        Version {
            ts: Timestamp(e.ts),
            node: self.writers.ids[e.writer as usize],
        }
    }

    pub fn set_version(&mut self, i: Idx, v: Version) {
        let w = self.writers.intern(v.node);
        let e = &mut self.slots[i as usize];
        e.ts = v.ts.0;
        e.writer = w;
    }

    /// Live entries and dead records held.
    pub fn len(&self, list: List) -> usize {
        self.lists[list as usize].len
    }

    pub fn live_len(&self) -> usize {
        self.len(List::Main) + self.len(List::Small)
    }

    pub fn front(&self, list: List) -> Option<Idx> {
        Some(self.lists[list as usize].head).filter(|&i| i != NIL)
    }

    pub fn next(&self, i: Idx) -> Option<Idx> {
        Some(self.slots[i as usize].next).filter(|&n| n != NIL)
    }

    /// The slots of `list`, front to back.
    pub fn iter(&self, list: List) -> impl Iterator<Item = Idx> + '_ {
        std::iter::successors(self.front(list), |&i| self.next(i))
    }

    /// Every live slot (main list, then small).
    /// Every entry and dead record, in slab order (a sequential walk of the slots, for scans
    /// whose order does not matter). A used slot is always in the log; a free one never.
    pub fn iter_records(&self) -> impl Iterator<Item = Idx> + '_ {
        (self.slots.iter().enumerate())
            .filter(|(_, e)| e.logpos != NIL)
            .map(|(i, _)| i as Idx)
    }

    pub fn iter_live(&self) -> impl Iterator<Item = Idx> + '_ {
        self.iter(List::Main).chain(self.iter(List::Small))
    }

    fn unlink(&mut self, i: Idx) {
        let (list, prev, next) = {
            let e = &self.slots[i as usize];
            (e.list(), e.prev, e.next)
        };
        let ends = &mut self.lists[list as usize];
        if prev == NIL {
            ends.head = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            ends.tail = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
        ends.len -= 1;
        let e = &mut self.slots[i as usize];
        e.prev = NIL;
        e.next = NIL;
    }

    /// Links `i` at the back of the list its flags name.
    fn link_back(&mut self, i: Idx) {
        let list = self.slots[i as usize].list();
        let ends = &mut self.lists[list as usize];
        let tail = ends.tail;
        ends.tail = i;
        if tail == NIL {
            ends.head = i;
        } else {
            self.slots[tail as usize].next = i;
        }
        ends.len += 1;
        let e = &mut self.slots[i as usize];
        e.prev = tail;
        e.next = NIL;
    }

    /// Moves a slot to the back of its list (a hit in LRU order).
    #[inline]
    pub fn move_to_back(&mut self, i: Idx) {
        if self.slots[i as usize].next != NIL {
            self.unlink(i);
            self.link_back(i);
        }
    }

    /// Moves a live slot between S3-FIFO's queues, to the back of the other one.
    pub fn set_small(&mut self, i: Idx, small: bool) {
        self.unlink(i);
        let m = self.slots[i as usize].meta.get_mut();
        *m = if small { *m | F_SMALL } else { *m & !F_SMALL };
        self.link_back(i);
    }

    /// Adds a slot for `key` (which the store must not hold), at the back of its list, with its
    /// log record at `seq`. A live slot goes to the small queue with `small`.
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        key: &[u8],
        put: Put,
        version: Version,
        seq: (u64, u32),
        at: u64,
        live: bool,
        tombstone: bool,
        small: bool,
    ) -> Idx {
        let h = self.hash(key);
        self.insert_hashed(h, key, put, version, seq, at, live, tombstone, small)
    }

    /// [`insert`](Self::insert) with the key's hash already computed.
    #[allow(clippy::too_many_arguments)]
    pub fn insert_hashed(
        &mut self,
        h: u64,
        key: &[u8],
        put: Put,
        version: Version,
        (seq, source): (u64, u32),
        at: u64,
        live: bool,
        tombstone: bool,
        small: bool,
    ) -> Idx {
        debug_assert!(key.len() <= MAX_KEY);
        debug_assert!(self.find(key).is_none());
        let (data, other) = layout(key, put);
        let writer = self.writers.intern(version.node);
        let mut meta = key.len() as u32 & KEY_MASK;
        if live {
            meta |= F_LIVE;
            if small {
                meta |= F_SMALL;
            }
        } else if tombstone {
            meta |= F_TOMBSTONE;
        }
        let entry = Entry {
            data,
            other,
            ts: version.ts.0,
            seq,
            at,
            writer,
            source,
            prev: NIL,
            next: NIL,
            logpos: NIL,
            meta: AtomicU32::new(meta),
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = entry;
                i
            }
            None => {
                self.slots.push(entry);
                (self.slots.len() - 1) as Idx
            }
        };
        let slots = &self.slots;
        let hasher = &self.hasher;
        self.table
            .insert_unique(h, i, |&j| hasher.hash_one(slots[j as usize].key()));
        self.link_back(i);
        self.log_push(i);
        i
    }

    /// Removes a slot and hands back what it held.
    pub fn take(&mut self, i: Idx) -> Taken {
        self.unlink(i);
        self.log_hole(i);
        let h = self.hash(self.slots[i as usize].key());
        if let Ok(found) = self.table.find_entry(h, |&j| j == i) {
            found.remove();
        }
        let e = std::mem::replace(&mut self.slots[i as usize], Entry::free());
        self.free.push(i);
        let live = e.is_live();
        let key_len = e.key_len();
        let value = match e.other.map(|o| *o) {
            Some(Other::Big(b)) => Put::Str(b),
            Some(Other::Merged(m)) => Put::Merged(m),
            None if live => Put::Str(Bytes::copy_from_slice(&e.data.as_slice()[key_len..])),
            None => Put::None,
        };
        Taken {
            key: e.data.as_slice()[..key_len].into(),
            value,
            seq: e.seq,
            at: e.at,
        }
    }

    /// Replaces a live slot's value (its key and place in its list kept).
    pub fn replace(&mut self, i: Idx, put: Put) {
        let e = &mut self.slots[i as usize];
        let inline_now = e.other.is_none();
        match put {
            // Same inline length: overwrite in place, no allocation.
            Put::Str(v) if inline_now && v.len() <= INLINE_MAX && e.value_len() == v.len() => {
                let k = e.key_len();
                e.data.as_mut_slice()[k..].copy_from_slice(&v);
            }
            put => {
                let (data, other) = layout(e.key(), put);
                e.data = data;
                e.other = other;
            }
        }
    }

    /// Turns a live slot into a dead record in place (same key, version, seq and log place), at
    /// the back of the dead list, holding nothing but its key — and its merged state, if it has
    /// one and `keep_merged`.
    pub fn kill(&mut self, i: Idx, tombstone: bool, since: u64, keep_merged: bool) {
        self.unlink(i);
        let e = &mut self.slots[i as usize];
        let k = e.key_len();
        if e.other.is_none() && e.data.len() > k {
            e.data = Block::concat(e.key(), b"");
        }
        if !(keep_merged && e.merged().is_some()) {
            e.other = None;
        }
        let m = e.meta.get_mut();
        *m = (*m & KEY_MASK) | if tombstone { F_TOMBSTONE } else { 0 };
        e.at = since;
        self.link_back(i);
    }

    // ---- the log ----

    fn log_push(&mut self, i: Idx) {
        let seq = self.slots[i as usize].seq;
        if seq < self.last_seq {
            self.sorted = false;
        }
        self.last_seq = self.last_seq.max(seq);
        self.slots[i as usize].logpos = self.log.len() as u32;
        self.log.push(i);
    }

    fn log_hole(&mut self, i: Idx) {
        let pos = self.slots[i as usize].logpos as usize;
        debug_assert_eq!(self.log.get(pos), Some(&i));
        self.log[pos] = NIL;
        self.holes += 1;
        if self.holes > 64 && self.holes * 2 > self.log.len() {
            self.compact_log();
        }
    }

    fn compact_log(&mut self) {
        self.log.retain(|&j| j != NIL);
        self.holes = 0;
        for (pos, &j) in self.log.iter().enumerate() {
            self.slots[j as usize].logpos = pos as u32;
        }
    }

    /// Moves a slot's log record to `seq` (from `source`): the slot changed.
    pub fn relog(&mut self, i: Idx, seq: u64, source: u32) {
        self.log_hole(i);
        let e = &mut self.slots[i as usize];
        e.seq = seq;
        e.source = source;
        self.log_push(i);
    }

    /// Puts the log back in seq order after records arrived out of it (a restore).
    pub fn settle(&mut self) {
        if self.sorted {
            return;
        }
        let slots = &self.slots;
        self.log.retain(|&j| j != NIL);
        self.log.sort_unstable_by_key(|&j| slots[j as usize].seq);
        self.holes = 0;
        for (pos, &j) in self.log.iter().enumerate() {
            self.slots[j as usize].logpos = pos as u32;
        }
        self.sorted = true;
    }

    /// The first log position whose record's seq is at least `first`.
    fn lower_bound(&self, first: u64) -> usize {
        let (mut lo, mut hi) = (0, self.log.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match (mid..hi).find(|&p| self.log[p] != NIL) {
                None => hi = mid,
                Some(p) if self.slots[self.log[p] as usize].seq >= first => hi = mid,
                Some(p) => lo = p + 1,
            }
        }
        lo
    }

    /// The slots whose log record has a seq of at least `first`, in seq order.
    pub fn log_from(&self, first: u64) -> Box<dyn Iterator<Item = Idx> + '_> {
        if !self.sorted {
            // Only between an out-of-order restore and `settle`: correct, if slow.
            let mut all: Vec<Idx> = self
                .log
                .iter()
                .copied()
                .filter(|&j| j != NIL && self.slots[j as usize].seq >= first)
                .collect();
            all.sort_unstable_by_key(|&j| self.slots[j as usize].seq);
            return Box::new(all.into_iter());
        }
        let from = self.lower_bound(first);
        Box::new(self.log[from..].iter().copied().filter(|&j| j != NIL))
    }

    /// Every slot in seq order.
    pub fn log_all(&self) -> Box<dyn Iterator<Item = Idx> + '_> {
        self.log_from(0)
    }

    /// The slot of the log record at `seq`, if there is one.
    pub fn by_seq(&self, seq: u64) -> Option<Idx> {
        self.log_from(seq)
            .next()
            .filter(|&j| self.slots[j as usize].seq == seq)
    }

    /// Checks every structure against the slots (tests only).
    #[cfg(test)]
    pub fn check(&self) {
        let mut held = 0;
        for (i, e) in self.slots.iter().enumerate() {
            if e.meta() == 0 && e.logpos == NIL {
                assert!(
                    self.free.contains(&(i as Idx)),
                    "slot {i} neither used nor free"
                );
                continue;
            }
            held += 1;
            assert_eq!(self.find(e.key()), Some(i as Idx), "table misses slot {i}");
            assert_eq!(
                self.log[e.logpos as usize], i as Idx,
                "log misplaces slot {i}"
            );
        }
        assert_eq!(self.table.len(), held);
        let mut listed = 0;
        for list in [List::Main, List::Small, List::Dead] {
            let mut n = 0;
            let mut prev = NIL;
            for i in self.iter(list) {
                let e = self.at(i);
                assert_eq!(e.list(), list);
                assert_eq!(e.prev, prev);
                prev = i;
                n += 1;
            }
            assert_eq!(n, self.len(list));
            listed += n;
        }
        assert_eq!(listed, held);
        assert_eq!(self.log.len() - self.holes, held);
        assert!(self.sorted, "log left unsorted");
        let seqs: Vec<u64> = self.log_all().map(|i| self.at(i).seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "log out of seq order");
    }
}
