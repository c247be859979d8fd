//! Unit tests of the shard: eviction, the version rule, purges, sweeps and the dead-record bounds, with the module's invariants checked after each.
use super::*;
use crate::cache::change::{Change, Scan};
use crate::cache::store::{Idx, List};
use crate::clock::Clock;
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

fn scan(upto: u64, skip: u32) -> Scan {
    Scan {
        after: 0,
        upto,
        since: 0,
        skip,
    }
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
    s.changes_in(scan(3, LOCAL), &mut out);
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
        s.changes_in(scan(2, skip), &mut out);
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

/// A policy the shard has never heard of: first in, first out, hits ignored. It plugs in through
/// the `Policy` trait alone, which is what a fourth eviction policy needs.
#[derive(Debug)]
struct Fifo {
    inserted: usize,
    removed: usize,
}

impl crate::cache::policy::Policy for Fifo {
    fn hit(&mut self, _: &mut crate::cache::store::Store, _: Idx) {}

    fn inserted(&mut self, _: &crate::cache::store::Store, _: Idx) {
        self.inserted += 1;
    }

    fn removed(&mut self, _: Idx) {
        self.removed += 1;
    }

    fn victim(&mut self, store: &mut crate::cache::store::Store, protect: u64) -> Option<Idx> {
        let first = store.front(List::Main)?;
        if store.at(first).seq == protect {
            store.next(first)
        } else {
            Some(first)
        }
    }
}

#[test]
fn a_policy_the_shard_does_not_know_evicts_through_the_trait() {
    let mut s = shard(2);
    s.policy = Box::new(Fifo {
        inserted: 0,
        removed: 0,
    });
    let clock = Clock::default();
    s.set("a".into(), "1".into(), v(1, 1), NEVER, 1, 0, false);
    s.set("b".into(), "2".into(), v(2, 1), NEVER, 2, 0, false);
    // A hit does not save `a` under FIFO, as it would under LRU.
    assert!(s.get(s.store.hash(b"a"), b"a", &clock).is_some());
    s.set("c".into(), "3".into(), v(3, 1), NEVER, 3, 0, false);
    check(&s);
    assert!(s.get(s.store.hash(b"a"), b"a", &clock).is_none());
    assert!(s.get(s.store.hash(b"b"), b"b", &clock).is_some());
    assert_eq!(s.counters.evictions, 1);
    let fifo = format!("{:?}", s.policy);
    assert!(
        fifo.contains("inserted: 3") && fifo.contains("removed: 1"),
        "{fifo}"
    );
}
