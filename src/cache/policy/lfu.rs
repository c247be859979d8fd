//! LFU with dynamic aging (LFUDA): each entry's priority is its read count plus the priority of
//! the last entry evicted; the lowest goes first. A lazy min-heap beside the store holds the
//! priorities.

use super::Policy;
use crate::cache::store::{Idx, Store};

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
pub(super) struct Lfu {
    slots: Vec<LfuSlot>,
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(u32, u64, Idx, u32)>>,
    /// The priority of the last entry evicted (the aging term).
    age: u32,
    tick: u64,
    next_generation: u32,
}

impl Lfu {
    /// A new entry in slot `i`, with one read.
    fn insert(&mut self, i: Idx) {
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
    fn hit_slot(&mut self, i: Idx) {
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
    fn pick(&mut self, store: &Store, protect: u64) -> Option<Idx> {
        let mut held = None;
        let picked = loop {
            let Some(std::cmp::Reverse(element)) = self.heap.pop() else {
                break None;
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
            break Some(i);
        };
        if let Some(element) = held {
            self.heap.push(std::cmp::Reverse(element));
        }
        picked
    }

    /// A slot left some other way than eviction: its elements are stale.
    fn forget(&mut self, i: Idx) {
        if let Some(s) = self.slots.get_mut(i as usize) {
            s.generation = s.generation.wrapping_add(1);
        }
    }

    /// Rebuilds the heap from the live entries once stale elements outnumber them two to one.
    fn compact(&mut self, store: &Store) {
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

impl Policy for Lfu {
    #[inline]
    fn hit(&mut self, _store: &mut Store, i: Idx) {
        self.hit_slot(i);
    }

    /// The new entry gets one read; the heap is rebuilt if stale elements have piled up.
    fn inserted(&mut self, store: &Store, i: Idx) {
        self.insert(i);
        self.compact(store);
    }

    fn removed(&mut self, i: Idx) {
        self.forget(i);
    }

    fn victim(&mut self, store: &mut Store, protect: u64) -> Option<Idx> {
        self.pick(store, protect)
    }
}
