//! S3-FIFO (Yang et al., SOSP 2023): a small FIFO queue that new keys enter, a main FIFO queue,
//! and a ghost queue of the keys recently evicted from the small one. The queues are the store's
//! lists; this module keeps the ghosts and the queues' target sizes.

use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;

use super::{Policy, first};
use crate::cache::store::{Idx, List, Store};

/// S3-FIFO's ghosts and sizes for one shard (its queues are the store's lists).
#[derive(Debug)]
pub(super) struct S3Fifo {
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

    /// The next victim, never the entry of seq `protect` (the one just written), updating slots
    /// on the way (moved to the main queue, frequency lowered).
    fn pick(&mut self, store: &mut Store, protect: u64) -> Option<Idx> {
        loop {
            let small = first(store, List::Small, protect);
            let main = first(store, List::Main, protect);
            let protected_small = store.len(List::Small) > 0
                && store
                    .front(List::Small)
                    .is_some_and(|f| store.at(f).seq == protect);
            let in_small = store.len(List::Small) - usize::from(protected_small);
            let from_small = small.is_some() && (in_small >= self.small_target || main.is_none());
            let i = if from_small { small } else { main }?;
            let freq = store.at(i).freq();
            if from_small {
                if freq > 0 {
                    store.at_mut(i).set_freq(0);
                    store.set_small(i, false);
                    continue;
                }
                self.remember(store.at(i).key());
                return Some(i);
            }
            if freq > 0 {
                store.at_mut(i).set_freq(freq - 1);
                store.move_to_back(i);
                continue;
            }
            return Some(i);
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

impl Policy for S3Fifo {
    /// The small queue's share and the ghosts follow the new capacity (extra ghosts go, oldest
    /// first).
    fn resize(&mut self, max_entries: usize) {
        let resized = S3Fifo::new(max_entries);
        self.small_target = resized.small_target;
        self.ghost_capacity = resized.ghost_capacity;
        while self.ghost.len() > self.ghost_capacity {
            if let Some(old) = self.ghost.pop_front() {
                self.ghosts.remove(&old);
            }
        }
    }

    /// A hit raises the entry's 2-bit frequency; nothing moves.
    #[inline]
    fn hit(&mut self, store: &mut Store, i: Idx) {
        let e = store.at_mut(i);
        let f = e.freq();
        e.set_freq(f + 1);
    }

    fn shared_hits(&self) -> bool {
        true
    }

    /// A new key enters the small queue, unless its ghost is remembered.
    fn admit(&mut self, key: &[u8]) -> bool {
        !self.ghosts.remove(&ghost_hash(key))
    }

    fn victim(&mut self, store: &mut Store, protect: u64) -> Option<Idx> {
        self.pick(store, protect)
    }

    /// The ghosts: a deque element and a set slot each (an 8-byte hash, at the set's load factor).
    fn bytes(&self) -> usize {
        self.ghost.len() * 24
    }
}
