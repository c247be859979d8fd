//! Eviction policies: which live entry a shard over its limits gives up. Chosen per cache
//! ([`Eviction`]); eviction is local, never replicated, and leaves the same dead record whatever
//! the policy.
//!
//! - **LRU** (default): exact least-recently-used order, kept by the store's main list (a hit
//!   moves the entry to its back).
//! - **S3-FIFO** (Yang et al., SOSP 2023): a small FIFO queue (10% of the entries) that new keys
//!   enter, a main FIFO queue, and a ghost queue of the keys recently evicted from the small one.
//!   A hit only raises the entry's 2-bit frequency, without reordering anything. Eviction takes
//!   from the small queue while it holds its share — an entry read again since it came in moves
//!   to the main queue, one never read is evicted (its key hash goes to the ghosts) — else from
//!   the main queue, where a read entry goes round once more with its frequency lowered. A key
//!   that comes back while its ghost is remembered enters the main queue directly. One-pass scans
//!   thus leave the main queue alone, and a loop larger than the cache keeps part of itself.
//!
//! - **LFU** (with dynamic aging, LFUDA): each entry's priority is its read count plus the
//!   priority of the last entry evicted, so that a key popular long ago does not stay forever;
//!   the entry of lowest priority goes first (ties: the older one). A lazy min-heap holds
//!   `(priority, tick, slot, generation)`; a hit pushes the entry's new priority, and an element
//!   whose slot has moved on is skipped when reached (the heap is rebuilt once stale elements
//!   outnumber live entries two to one).
//!
//! S3-FIFO's queues are the store's intrusive lists (an entry's queue and 2-bit frequency are
//! flags in its slot), so they hold nothing stale and cost nothing beside the entry.

mod lfu;
mod lru;
mod s3fifo;

use crate::cache::store::{Idx, List, Store};
use crate::error::Error;

/// How a cache chooses what to evict when it is full.
///
/// ```
/// use leafcache::{CacheConfig, Eviction, Node};
/// assert_eq!("s3fifo".parse::<Eviction>()?, Eviction::S3Fifo);
/// let node = Node::builder()
///     .default_cache(CacheConfig::new().max_entries(1_000).eviction(Eviction::S3Fifo))
///     .build()?;
/// node.default_cache().set("k", "v")?;
/// # Ok::<(), leafcache::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Eviction {
    /// Exact least recently used (the default).
    #[default]
    Lru,
    /// S3-FIFO: scan-resistant, hits without reordering.
    S3Fifo,
    /// Least frequently used, with dynamic aging.
    Lfu,
}

impl std::str::FromStr for Eviction {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "lru" => Ok(Eviction::Lru),
            "s3fifo" | "s3-fifo" => Ok(Eviction::S3Fifo),
            "lfu" => Ok(Eviction::Lfu),
            other => Err(Error::InvalidConfig {
                what: "eviction",
                reason: format!("{other:?} is not \"lru\", \"lfu\" or \"s3fifo\""),
            }),
        }
    }
}

impl std::fmt::Display for Eviction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Eviction::Lru => "lru",
            Eviction::S3Fifo => "s3fifo",
            Eviction::Lfu => "lfu",
        })
    }
}

/// What a shard asks of its eviction policy: told of every hit, insertion and removal of a live
/// entry, it names the victim when the shard is over its limits. A policy keeps whatever it needs
/// beside the store (the store's lists and each slot's 2-bit frequency are there to use); the
/// shard never asks which policy it holds, so a new one is a file here and a variant of
/// [`Eviction`].
pub(crate) trait Policy: std::fmt::Debug + Send + Sync {
    /// A live entry in slot `i` was read or rewritten.
    fn hit(&mut self, store: &mut Store, i: Idx);

    /// Whether hits may be served under the shard's shared lock, recorded by
    /// `Entry::hit_shared` alone (which raises the slot's frequency bits and reorders nothing).
    fn shared_hits(&self) -> bool {
        false
    }

    /// A key not held is about to be inserted: whether it enters the store's small list.
    fn admit(&mut self, _key: &[u8]) -> bool {
        false
    }

    /// A new entry was inserted in slot `i`.
    fn inserted(&mut self, _store: &Store, _i: Idx) {}

    /// The live entry in slot `i` leaves (rewritten whole, deleted, expired or evicted).
    fn removed(&mut self, _i: Idx) {}

    /// The next entry to evict, never the one of seq `protect` (the one just written); `None` if
    /// there is none.
    fn victim(&mut self, store: &mut Store, protect: u64) -> Option<Idx>;

    /// The shard now holds at most `max_entries` entries (a running cache was resized).
    fn resize(&mut self, _max_entries: usize) {}

    /// Bytes the policy's own state takes, counted against the shard's `max_bytes`.
    fn bytes(&self) -> usize {
        0
    }
}

impl Eviction {
    /// A fresh policy of this kind for a shard of at most `max_entries` entries.
    pub(crate) fn policy(self, max_entries: usize) -> Box<dyn Policy> {
        match self {
            Eviction::Lru => Box::new(lru::Lru),
            Eviction::S3Fifo => Box::new(s3fifo::S3Fifo::new(max_entries)),
            Eviction::Lfu => Box::<lfu::Lfu>::default(),
        }
    }
}

/// The front of `list`, or the slot after it if the front is the protected one.
pub(super) fn first(store: &Store, list: List, protect: u64) -> Option<Idx> {
    let f = store.front(list)?;
    if store.at(f).seq == protect {
        store.next(f)
    } else {
        Some(f)
    }
}
