//! Groups of changes made together — an `EXEC`, a multi-key write, `Node::atomically`, a batch
//! that arrived as one — as ranges of the node's seqs, so that
//! replication never splits one: a batch never ends inside a group, and a receiver applies a
//! batch that holds one with its gate alone, so the peer's clients see all of it or none.
//!
//! A group's key may be written again later: its record then moves past the group's end, and the
//! group grows to reach it (else a resync could send the group's other keys without this one's
//! newer record, and a peer would show the group half applied). A group that would grow past
//! [`MAX_SPAN`] seqs is forgotten instead, and at most [`MAX_GROUPS`] are kept, oldest forgotten
//! first: a group is protected while it is recent, which is when peers are catching up on it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

/// The most groups a node remembers.
pub const MAX_GROUPS: usize = 65_536;

/// The widest a group may grow, in seqs.
pub const MAX_SPAN: u64 = 65_536;

/// Where a batch that would end at `reached` must end instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cut {
    /// At `reached`: no group straddles it.
    Keep,
    /// Before a group that starts within the batch: at the seq before it.
    Before(u64),
    /// The batch starts with a group that reaches past it: at the group's end.
    Extend(u64),
}

/// The groups of one node.
#[derive(Default)]
pub(crate) struct Groups {
    /// start seq -> end seq, inclusive; ranges do not overlap.
    ranges: Mutex<BTreeMap<u64, u64>>,
    /// `ranges.len()`, read without the lock on every write.
    count: AtomicUsize,
}

impl Groups {
    /// Whether any group is remembered: with none, writes skip the bookkeeping.
    #[inline]
    pub fn any(&self) -> bool {
        self.count.load(Ordering::Acquire) > 0
    }

    /// Remembers that seqs `start..=end` were made together (merged with any group they overlap).
    pub fn add(&self, start: u64, end: u64) {
        if end <= start {
            return;
        }
        let mut ranges = self.ranges.lock();
        let (mut start, mut end) = (start, end);
        let overlapping: Vec<u64> = ranges
            .range(..=end)
            .rev()
            .take_while(|&(_, &e)| e >= start)
            .map(|(&s, _)| s)
            .collect();
        for s in overlapping {
            let e = ranges.remove(&s).unwrap_or(s);
            start = start.min(s);
            end = end.max(e);
        }
        ranges.insert(start, end);
        while ranges.len() > MAX_GROUPS {
            ranges.pop_first();
        }
        self.count.store(ranges.len(), Ordering::Release);
    }

    /// A key whose record was at `old` was written again at `new`: the group holding `old`, if
    /// any, grows to `new` (or is forgotten if it would grow too wide).
    pub fn moved(&self, old: u64, new: u64) {
        let mut ranges = self.ranges.lock();
        let Some((&s, &e)) = ranges.range(..=old).next_back() else {
            return;
        };
        if old > e || new <= e {
            return;
        }
        if new - s > MAX_SPAN {
            ranges.remove(&s);
        } else if ranges.range(s + 1..=new).next().is_none() {
            if let Some(end) = ranges.get_mut(&s) {
                *end = new;
            }
        } else {
            // Swallow the groups between, which now lie inside this one.
            let inside: Vec<u64> = ranges.range(s + 1..=new).map(|(&k, _)| k).collect();
            let mut end = new;
            for k in inside {
                end = end.max(ranges.remove(&k).unwrap_or(k));
            }
            ranges.insert(s, end);
        }
        self.count.store(ranges.len(), Ordering::Release);
    }

    /// Where a batch of the seqs after `after` that would end at `reached` must end.
    pub fn cut(&self, after: u64, reached: u64) -> Cut {
        let ranges = self.ranges.lock();
        match ranges.range(..=reached).next_back() {
            Some((&s, &e)) if e > reached && s > after + 1 => Cut::Before(s - 1),
            Some((&_, &e)) if e > reached => Cut::Extend(e),
            _ => Cut::Keep,
        }
    }

    /// Whether a group lies within `after < seq <= upto`, so that the batch must be applied
    /// together.
    pub fn within(&self, after: u64, upto: u64) -> bool {
        let ranges = self.ranges.lock();
        ranges
            .range(..=upto)
            .next_back()
            .is_some_and(|(_, &e)| e > after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_never_end_inside_a_group() {
        let g = Groups::default();
        g.add(5, 8);
        assert_eq!(g.cut(0, 6), Cut::Before(4));
        assert_eq!(g.cut(4, 6), Cut::Extend(8));
        assert_eq!(g.cut(0, 8), Cut::Keep);
        assert_eq!(g.cut(0, 4), Cut::Keep);
        assert_eq!(g.cut(8, 20), Cut::Keep);
        assert!(g.within(0, 5) && g.within(7, 9) && !g.within(8, 20) && !g.within(0, 4));
    }

    #[test]
    fn a_group_grows_to_reach_a_rewritten_member_and_swallows_what_it_covers() {
        let g = Groups::default();
        g.add(5, 6);
        g.add(9, 10);
        g.moved(5, 12);
        assert_eq!(g.cut(4, 7), Cut::Extend(12));
        assert_eq!(g.ranges.lock().len(), 1);
        g.moved(3, 20); // not in a group
        g.moved(12, 13);
        assert_eq!(g.cut(4, 12), Cut::Extend(13));
        g.moved(13, 13 + MAX_SPAN);
        assert!(!g.any(), "too wide: forgotten");
    }

    #[test]
    fn overlapping_groups_merge_and_the_oldest_are_forgotten() {
        let g = Groups::default();
        g.add(5, 8);
        g.add(7, 10);
        assert_eq!(g.cut(4, 6), Cut::Extend(10));
        for i in 0..MAX_GROUPS as u64 {
            g.add(100 + 3 * i, 101 + 3 * i);
        }
        assert_eq!(g.ranges.lock().len(), MAX_GROUPS);
        assert_eq!(g.cut(4, 6), Cut::Keep, "the oldest group was forgotten");
    }
}
