//! Exact least-recently-used order, kept by the store's main list: a hit moves the entry to its
//! back, the victim is its front.

use super::{Policy, first};
use crate::cache::store::{Idx, List, Store};

/// LRU needs nothing beside the store's main list.
#[derive(Debug)]
pub(super) struct Lru;

impl Policy for Lru {
    #[inline]
    fn hit(&mut self, store: &mut Store, i: Idx) {
        store.move_to_back(i);
    }

    fn victim(&mut self, store: &mut Store, protect: u64) -> Option<Idx> {
        first(store, List::Main, protect)
    }
}
