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

use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;

use super::store::{Idx, List, Store};
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

/// What a policy's pick found.
pub(crate) enum Pick {
    /// Evict this slot.
    Evict(Idx),
    /// Nothing left to evict.
    Empty,
}

/// The front of `list`, or the slot after it if the front is the protected one.
fn first(store: &Store, list: List, protect: u64) -> Option<Idx> {
    let f = store.front(list)?;
    if store.at(f).seq == protect {
        store.next(f)
    } else {
        Some(f)
    }
}

/// The LRU victim: the least recently used entry but the protected one.
pub(crate) fn lru_pick(store: &Store, protect: u64) -> Pick {
    match first(store, List::Main, protect) {
        Some(i) => Pick::Evict(i),
        None => Pick::Empty,
    }
}

/// S3-FIFO's ghosts and sizes for one shard (its queues are the store's lists).
#[derive(Debug)]
pub(crate) struct S3Fifo {
    ghost: VecDeque<u64>,
    ghosts: HashSet<u64>,
    small_target: usize,
    ghost_capacity: usize,
}

const GHOST_SEED: u64 = 0x5f1f_0ca5;

fn ghost_hash(key: &[u8]) -> u64 {
    foldhash::fast::FixedState::with_seed(GHOST_SEED).hash_one(key)
}

impl S3Fifo {
    pub fn new(max_entries: usize) -> Self {
        S3Fifo {
            ghost: VecDeque::new(),
            ghosts: HashSet::new(),
            small_target: (max_entries / 10).max(1),
            ghost_capacity: max_entries.max(1),
        }
    }

    /// Whether a new key enters the small queue: unless its ghost is remembered.
    pub fn enters_small(&mut self, key: &[u8]) -> bool {
        !self.ghosts.remove(&ghost_hash(key))
    }

    /// Bytes the ghosts take (they count toward the shard's memory).
    pub fn ghost_bytes(&self) -> usize {
        // A deque element and a set slot (8-byte hash, at the set's load factor).
        self.ghost.len() * 24
    }

    /// The next victim, never the entry of seq `protect` (the one just written), updating slots
    /// on the way (moved to the main queue, frequency lowered).
    pub fn pick(&mut self, store: &mut Store, protect: u64) -> Pick {
        loop {
            let small = first(store, List::Small, protect);
            let main = first(store, List::Main, protect);
            let protected_small = store.len(List::Small) > 0
                && store
                    .front(List::Small)
                    .is_some_and(|f| store.at(f).seq == protect);
            let in_small = store.len(List::Small) - usize::from(protected_small);
            let from_small = small.is_some() && (in_small >= self.small_target || main.is_none());
            let Some(i) = (if from_small { small } else { main }) else {
                return Pick::Empty;
            };
            let freq = store.at(i).freq();
            if from_small {
                if freq > 0 {
                    store.at_mut(i).set_freq(0);
                    store.set_small(i, false);
                    continue;
                }
                self.remember(store.at(i).key());
                return Pick::Evict(i);
            }
            if freq > 0 {
                store.at_mut(i).set_freq(freq - 1);
                store.move_to_back(i);
                continue;
            }
            return Pick::Evict(i);
        }
    }

    fn remember(&mut self, key: &[u8]) {
        let h = ghost_hash(key);
        if self.ghosts.insert(h) {
            self.ghost.push_back(h);
        }
        while self.ghost.len() > self.ghost_capacity {
            if let Some(old) = self.ghost.pop_front() {
                self.ghosts.remove(&old);
            }
        }
    }
}

/// What LFU keeps of one slot.
#[derive(Clone, Copy, Debug, Default)]
struct LfuSlot {
    /// Which insertion the slot holds: a heap element of another generation is stale.
    generation: u32,
    /// The entry's current priority (its element of that priority is the live one); saturates.
    priority: u32,
    /// Reads since it was written (the write counts one).
    count: u32,
}

/// The LFU state of one shard: per-slot counts beside the store, and a lazily cleaned min-heap of
/// `Reverse((priority, tick, slot, generation))`.
#[derive(Debug, Default)]
pub(crate) struct Lfu {
    slots: Vec<LfuSlot>,
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(u32, u64, Idx, u32)>>,
    /// The priority of the last entry evicted (the aging term).
    age: u32,
    tick: u64,
    next_generation: u32,
}

impl Lfu {
    /// A new entry in slot `i`, with one read.
    pub fn insert(&mut self, i: Idx) {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        if self.slots.len() <= i as usize {
            self.slots.resize(i as usize + 1, LfuSlot::default());
        }
        self.slots[i as usize] = LfuSlot {
            generation,
            priority: self.age.saturating_add(1),
            count: 1,
        };
        self.push(i);
    }

    /// A hit: the entry's priority becomes the age now plus its reads.
    pub fn hit(&mut self, i: Idx) {
        let Some(s) = self.slots.get_mut(i as usize) else {
            return;
        };
        s.count = s.count.saturating_add(1);
        s.priority = self.age.saturating_add(s.count);
        self.push(i);
    }

    fn push(&mut self, i: Idx) {
        self.tick += 1;
        let s = self.slots[i as usize];
        self.heap
            .push(std::cmp::Reverse((s.priority, self.tick, i, s.generation)));
    }

    /// The live entry of lowest priority, never the entry of seq `protect`.
    pub fn pick(&mut self, store: &Store, protect: u64) -> Pick {
        let mut held = None;
        let picked = loop {
            let Some(std::cmp::Reverse(element)) = self.heap.pop() else {
                break Pick::Empty;
            };
            let (priority, _, i, generation) = element;
            let s = self.slots[i as usize];
            if s.generation != generation || s.priority != priority || !store.at(i).is_live() {
                continue;
            }
            if store.at(i).seq == protect {
                held = Some(element);
                continue;
            }
            self.age = priority;
            // The slot leaves: a later element naming it is stale.
            self.slots[i as usize].generation = self.slots[i as usize].generation.wrapping_add(1);
            break Pick::Evict(i);
        };
        if let Some(element) = held {
            self.heap.push(std::cmp::Reverse(element));
        }
        picked
    }

    /// A slot left some other way than eviction: its elements are stale.
    pub fn removed(&mut self, i: Idx) {
        if let Some(s) = self.slots.get_mut(i as usize) {
            s.generation = s.generation.wrapping_add(1);
        }
    }

    /// Rebuilds the heap from the live entries once stale elements outnumber them two to one.
    pub fn compact(&mut self, store: &Store) {
        if self.heap.len() <= 2 * store.live_len() + 1024 {
            return;
        }
        self.heap.clear();
        let live: Vec<Idx> = store.iter_live().collect();
        for i in live {
            self.push(i);
        }
    }
}

/// A shard's policy.
#[derive(Debug)]
pub(crate) enum Policy {
    Lru,
    S3Fifo(Box<S3Fifo>),
    Lfu(Box<Lfu>),
}

impl Policy {
    pub fn new(eviction: Eviction, max_entries: usize) -> Self {
        match eviction {
            Eviction::Lru => Policy::Lru,
            Eviction::S3Fifo => Policy::S3Fifo(Box::new(S3Fifo::new(max_entries))),
            Eviction::Lfu => Policy::Lfu(Box::default()),
        }
    }
}
