//! Eviction policies: which live entry a shard over its limits gives up. Chosen per cache
//! ([`Eviction`]); eviction is local, never replicated, and leaves the same dead record whatever
//! the policy.
//!
//! - **LRU** (default): exact least-recently-used order, kept by the shard's `lru::LruCache`
//!   (a hit promotes the entry).
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
//!   `(priority, tick, key, generation)`; a hit pushes the entry's new priority.
//!
//! The queues hold `(key, generation)`; an entry removed some other way (deleted, expired,
//! rewritten as a new key) leaves a stale element that is skipped when reached, and the queues
//! are compacted when stale elements outnumber live ones.

use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;

use bytes::Bytes;
use lru::LruCache;

use super::shard::Live;
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

/// What a policy keeps in each live entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Slot {
    /// Which insertion this entry is: a queue element of another generation is stale.
    pub generation: u32,
    /// Reads since it entered its queue (or last went round the main queue), at most 3.
    pub freq: u8,
    /// In the small queue (else the main one).
    pub small: bool,
    /// LFU: the entry's current priority (its element of that priority is the live one).
    /// 32 bits keep the slot at 16 bytes in every entry; it saturates rather than wraps.
    pub priority: u32,
    /// LFU: reads since it was written (the write counts one).
    pub count: u32,
}

// Every entry carries a slot, whatever its policy: keep it small.
const _: () = assert!(std::mem::size_of::<Slot>() == 16);

/// What [`S3Fifo::pick`] found.
pub(crate) enum Pick {
    /// Evict this key.
    Evict(Bytes),
    /// Nothing left to evict.
    Empty,
}

/// The S3-FIFO queues of one shard.
#[derive(Debug)]
pub(crate) struct S3Fifo {
    small: VecDeque<(Bytes, u32)>,
    main: VecDeque<(Bytes, u32)>,
    ghost: VecDeque<u64>,
    ghosts: HashSet<u64>,
    /// Live entries in the small queue.
    in_small: usize,
    next_generation: u32,
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
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost: VecDeque::new(),
            ghosts: HashSet::new(),
            in_small: 0,
            next_generation: 0,
            small_target: (max_entries / 10).max(1),
            ghost_capacity: max_entries.max(1),
        }
    }

    /// A new key enters: the main queue if its ghost is remembered, else the small one.
    pub fn insert(&mut self, key: &Bytes) -> Slot {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let small = !self.ghosts.remove(&ghost_hash(key));
        if small {
            self.small.push_back((key.clone(), generation));
            self.in_small += 1;
        } else {
            self.main.push_back((key.clone(), generation));
        }
        Slot {
            generation,
            freq: 0,
            small,
            priority: 0,
            count: 0,
        }
    }

    /// An entry left by some other way than eviction.
    pub fn removed(&mut self, slot: Slot) {
        if slot.small {
            self.in_small -= 1;
        }
    }

    /// The next victim among `live`, never the entry of seq `protect` (the one just written), updating slots
    /// on the way (moved to the main queue, frequency lowered). The victim's slot is left as it
    /// is: the shard removes it through [`removed`](Self::removed).
    pub fn pick(&mut self, live: &mut LruCache<Bytes, Live>, protect: u64) -> Pick {
        let mut held: Option<(Bytes, u32, bool)> = None;
        let picked = loop {
            let from_small = !self.small.is_empty()
                && (self.in_small >= self.small_target || self.main.is_empty());
            let queue = if from_small {
                &mut self.small
            } else {
                &mut self.main
            };
            let Some((key, generation)) = queue.pop_front() else {
                break Pick::Empty;
            };
            let Some(e) = live.peek_mut(&key) else {
                continue;
            };
            let slot = &mut e.slot;
            if slot.generation != generation || slot.small != from_small {
                continue;
            }
            if e.seq == protect {
                held = Some((key, generation, from_small));
                continue;
            }
            if from_small {
                if slot.freq > 0 {
                    slot.small = false;
                    slot.freq = 0;
                    self.in_small -= 1;
                    self.main.push_back((key, generation));
                    continue;
                }
                self.remember(&key);
                break Pick::Evict(key);
            }
            if slot.freq > 0 {
                slot.freq -= 1;
                self.main.push_back((key, generation));
                continue;
            }
            break Pick::Evict(key);
        };
        if let Some((key, generation, small)) = held {
            let queue = if small {
                &mut self.small
            } else {
                &mut self.main
            };
            queue.push_front((key, generation));
        }
        picked
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

    /// Drops stale queue elements once they outnumber the live entries two to one.
    pub fn compact(&mut self, live: &LruCache<Bytes, Live>) {
        if self.small.len() + self.main.len() <= 2 * live.len() + 1024 {
            return;
        }
        let valid = |k: &Bytes, g: u32, small: bool| {
            live.peek(k)
                .is_some_and(|e| e.slot.generation == g && e.slot.small == small)
        };
        self.small.retain(|(k, g)| valid(k, *g, true));
        self.main.retain(|(k, g)| valid(k, *g, false));
    }
}

/// The LFU heap of one shard: `Reverse((priority, tick, key, generation))`, lazily cleaned.
#[derive(Debug, Default)]
pub(crate) struct Lfu {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(u32, u64, Bytes, u32)>>,
    /// The priority of the last entry evicted (the aging term).
    age: u32,
    tick: u64,
    next_generation: u32,
}

impl Lfu {
    /// A new key enters with one read.
    pub fn insert(&mut self, key: &Bytes) -> Slot {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let slot = Slot {
            generation,
            priority: self.age.saturating_add(1),
            count: 1,
            ..Slot::default()
        };
        self.push(key, slot);
        slot
    }

    /// A hit: the entry's priority becomes the age now plus its reads. (The key is copied into
    /// the heap: the shard's table hands out the entry, not its key handle.)
    pub fn hit(&mut self, key: &[u8], slot: &mut Slot) {
        slot.count = slot.count.saturating_add(1);
        slot.priority = self.age.saturating_add(slot.count);
        self.push(&Bytes::copy_from_slice(key), *slot);
    }

    fn push(&mut self, key: &Bytes, slot: Slot) {
        self.tick += 1;
        self.heap.push(std::cmp::Reverse((
            slot.priority,
            self.tick,
            key.clone(),
            slot.generation,
        )));
    }

    /// The live entry of lowest priority, never the entry of seq `protect`.
    pub fn pick(&mut self, live: &LruCache<Bytes, Live>, protect: u64) -> Pick {
        let mut held = None;
        let picked = loop {
            let Some(std::cmp::Reverse(element)) = self.heap.pop() else {
                break Pick::Empty;
            };
            let (priority, _, key, generation) = &element;
            let Some(e) = live
                .peek(key)
                .filter(|e| e.slot.generation == *generation && e.slot.priority == *priority)
            else {
                continue;
            };
            if e.seq == protect {
                held = Some(element);
                continue;
            }
            self.age = *priority;
            break Pick::Evict(element.2);
        };
        if let Some(element) = held {
            self.heap.push(std::cmp::Reverse(element));
        }
        picked
    }

    /// Rebuilds the heap from the live entries once stale elements outnumber them two to one.
    pub fn compact(&mut self, live: &LruCache<Bytes, Live>) {
        if self.heap.len() <= 2 * live.len() + 1024 {
            return;
        }
        self.heap.clear();
        for (key, e) in live.iter() {
            self.push(key, e.slot);
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
