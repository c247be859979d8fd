//! The rules replication relies on: `apply_remote` applies a change iff it is newer (ties broken
//! by node id; tombstones and purges win over older writes), duplicates and echoes are no-ops, any
//! order of the same changes converges, and `changes_since` answers with exactly the delta.

use std::collections::BTreeMap;

use bytes::Bytes;
use leafcache::{
    Cache, CacheConfig, Change, ManualClock, Node, NodeId, Stamped, Timestamp, Version,
};
use proptest::prelude::*;

fn v(ms: u64, node: u128) -> Version {
    Version {
        ts: Timestamp::new(ms, 0),
        node: NodeId(node),
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

fn del(key: &str, version: Version) -> Change {
    Change::Delete {
        key: Bytes::copy_from_slice(key.as_bytes()),
        version,
    }
}

fn cache() -> Cache {
    Cache::builder().maximum_capacity(10_000).build().unwrap()
}

#[test]
fn newer_wins_and_ties_go_to_the_larger_node_id() {
    let c = cache();
    assert!(c.apply_remote(set("k", "t10-n1", v(10, 1))));
    assert!(!c.apply_remote(set("k", "t9-n9", v(9, 9))), "older loses");
    assert!(
        c.apply_remote(set("k", "t10-n2", v(10, 2))),
        "same time: node 2 beats node 1"
    );
    assert!(!c.apply_remote(set("k", "t10-n1", v(10, 1))));
    assert!(c.apply_remote(set("k", "t11-n0", v(11, 0))));
    assert_eq!(c.get("k").unwrap(), "t11-n0");
    assert_eq!(c.peek("k").unwrap().version, v(11, 0));
}

#[test]
fn tombstones_and_purges_win_over_older_writes() {
    let c = cache();
    assert!(c.apply_remote(del("gone", v(20, 1))));
    assert!(
        !c.apply_remote(set("gone", "resurrected?", v(19, 5))),
        "a delete stays deleted"
    );
    assert!(c.get("gone").is_none());
    assert!(
        c.apply_remote(set("gone", "rewritten", v(21, 1))),
        "a newer write does come back"
    );

    c.apply_remote(set("old", "x", v(5, 1)));
    c.apply_remote(set("new", "y", v(50, 1)));
    assert!(c.apply_remote(Change::Purge { version: v(30, 2) }));
    assert!(c.get("old").is_none());
    assert_eq!(c.get("new").unwrap(), "y", "written after the purge");
    assert!(
        !c.apply_remote(set("late", "z", v(29, 9))),
        "older than the purge"
    );
    assert!(
        !c.apply_remote(Change::Purge { version: v(25, 0) }),
        "an older purge is a no-op"
    );
}

#[test]
fn local_writes_order_after_everything_observed() {
    // A peer whose clock runs an hour ahead: our next write must still win over its last one.
    let clock = ManualClock::new(1_000_000);
    let c = Cache::builder().clock(clock).build().unwrap();
    let ahead = v(1_000_000 + 3_600_000, u128::MAX);
    assert!(c.apply_remote(set("k", "remote", ahead)));
    let mine = c.set("k", "local").unwrap();
    assert!(mine > ahead);
    assert_eq!(c.get("k").unwrap(), "local");
}

#[test]
fn echoes_between_two_nodes_are_no_ops() {
    let (a, b) = (cache(), cache());
    a.set("x", "1").unwrap();
    a.delete("y");
    a.purge();
    a.set("z", "3").unwrap();
    let from_a = a.changes_since(0, 100);
    assert!(from_a.iter().all(|s| b.apply_remote(s.change.clone())));
    let back = b.changes_since(0, 100);
    assert_eq!(back.len(), from_a.len());
    assert!(
        back.iter().all(|s| !a.apply_remote(s.change.clone())),
        "echo applied"
    );
    assert!(
        from_a.iter().all(|s| !b.apply_remote(s.change.clone())),
        "duplicate applied"
    );
}

#[test]
fn changes_since_is_compacted_ordered_and_resumable() {
    let c = Cache::builder().maximum_capacity(100_000).build().unwrap();
    for i in 0..1_000u32 {
        c.set(format!("k{i}"), "v1").unwrap();
    }
    for i in 0..1_000u32 {
        c.set(format!("k{i}"), "v2").unwrap();
    }
    // Read the whole log in chunks of 64, as a full sync would.
    let mut all: Vec<Stamped> = Vec::new();
    let mut after = 0;
    loop {
        let chunk = c.changes_since(after, 64);
        if chunk.is_empty() {
            break;
        }
        assert!(chunk.len() <= 64);
        after = chunk.last().unwrap().seq;
        all.extend(chunk);
    }
    assert_eq!(all.len(), 1_000, "one record per key: the latest");
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(
        all.iter()
            .all(|s| matches!(&s.change, Change::Set { value, .. } if value == "v2"))
    );

    // The delta after a watermark is exactly what changed after it.
    let watermark = all.last().unwrap().seq;
    c.set("k1", "v3").unwrap();
    c.delete("k2");
    c.set("fresh", "v").unwrap();
    let delta = c.changes_since(watermark, 1_000);
    let summary: Vec<_> = delta
        .iter()
        .map(|s| match &s.change {
            Change::Set { key, .. } => format!("set {}", String::from_utf8_lossy(key)),
            Change::Delete { key, .. } => format!("del {}", String::from_utf8_lossy(key)),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(summary, ["set k1", "del k2", "set fresh"]);
    assert_eq!(
        c.floor(),
        0,
        "nothing forgotten: a delta from any watermark is complete"
    );
}

#[test]
fn entries_evicted_after_a_watermark_travel_as_invalidations() {
    let c = Cache::builder()
        .maximum_capacity(2)
        .shards(1)
        .build()
        .unwrap();
    c.set("a", "1").unwrap();
    let watermark = c.changes_since(0, 10).last().unwrap().seq;
    let va = c.set("a", "2").unwrap(); // changed after the watermark ...
    c.set("b", "x").unwrap();
    c.set("c", "y").unwrap(); // ... then evicted
    let delta = c.changes_since(watermark, 10);
    assert_eq!(delta.len(), 3);
    assert_eq!(
        delta[0].change,
        Change::Invalidate {
            key: "a".into(),
            version: va
        }
    );

    // A peer still holding the older "a" drops it; one holding the same version keeps it.
    let peer = cache();
    peer.apply_remote(set("a", "1", v(1, 0)));
    assert!(peer.apply_remote(delta[0].change.clone()));
    assert!(peer.get("a").is_none());
    let same = cache();
    same.apply_remote(Change::Set {
        key: "a".into(),
        value: "2".into(),
        version: va,
        expires_at: None,
    });
    assert!(!same.apply_remote(delta[0].change.clone()));
    assert_eq!(same.get("a").unwrap(), "2");
}

#[test]
fn forgotten_tombstones_raise_the_floor() {
    let clock = ManualClock::new(0);
    let node = Node::builder()
        .clock(clock.clone())
        .default_cache(
            CacheConfig::new()
                .shards(1)
                .tombstone_ttl(std::time::Duration::from_secs(60)),
        )
        .build()
        .unwrap();
    let c = node.default_cache();
    c.delete("k");
    let seq = node.current_seq();
    assert_eq!(c.floor(), 0);
    clock.advance(std::time::Duration::from_secs(61));
    c.sweep(100);
    assert_eq!(c.floor(), seq, "a peer behind this seq needs a full sync");
    assert!(c.changes_since(0, 10).is_empty());
}

#[test]
fn seqs_are_unique_across_the_caches_of_a_node() {
    let node = Node::builder()
        .cache("a", CacheConfig::new())
        .cache("b", CacheConfig::new())
        .build()
        .unwrap();
    node.cache("a").unwrap().set("k", "1").unwrap();
    node.cache("b").unwrap().set("k", "2").unwrap();
    node.cache("a").unwrap().set("j", "3").unwrap();
    let a: Vec<u64> = node
        .cache("a")
        .unwrap()
        .changes_since(0, 10)
        .iter()
        .map(|s| s.seq)
        .collect();
    let b: Vec<u64> = node
        .cache("b")
        .unwrap()
        .changes_since(0, 10)
        .iter()
        .map(|s| s.seq)
        .collect();
    assert_eq!((a, b), (vec![1, 3], vec![2]));
    assert_eq!(node.current_seq(), 3);
}

/// A change of the generated history: (kind, key, time, node).
#[derive(Clone, Debug)]
enum Gen {
    Set(u8, u64, u8, u8),
    Delete(u8, u64, u8),
    Purge(u64, u8),
}

fn history() -> impl Strategy<Value = Vec<Change>> {
    let g = prop_oneof![
        6 => (0u8..5, 1u64..40, 0u8..4, any::<u8>()).prop_map(|(k, t, n, val)| Gen::Set(k, t, n, val)),
        3 => (0u8..5, 1u64..40, 0u8..4).prop_map(|(k, t, n)| Gen::Delete(k, t, n)),
        1 => (1u64..40, 0u8..4).prop_map(|(t, n)| Gen::Purge(t, n)),
    ];
    prop::collection::vec(g, 0..60).prop_map(|gens| {
        // A version is written once, by one node: drop later duplicates of a (time, node) pair.
        let mut seen = std::collections::HashSet::new();
        gens.into_iter()
            .filter_map(|g| {
                let (t, n) = match g {
                    Gen::Set(_, t, n, _) | Gen::Delete(_, t, n) | Gen::Purge(t, n) => (t, n),
                };
                seen.insert((t, n)).then(|| {
                    let version = v(t, n as u128);
                    match g {
                        Gen::Set(k, _, _, val) => set(&format!("k{k}"), &format!("{val}"), version),
                        Gen::Delete(k, ..) => del(&format!("k{k}"), version),
                        Gen::Purge(..) => Change::Purge { version },
                    }
                })
            })
            .collect()
    })
}

/// The reference answer: per key the newest change wins, unless a newer purge removed it.
fn expected(changes: &[Change]) -> BTreeMap<Bytes, (Bytes, Version)> {
    let purge = changes
        .iter()
        .filter(|c| matches!(c, Change::Purge { .. }))
        .map(Change::version)
        .max();
    let mut newest: BTreeMap<Bytes, &Change> = BTreeMap::new();
    for c in changes {
        if let Some(k) = c.key() {
            let slot = newest.entry(k.clone()).or_insert(c);
            if c.version() > slot.version() {
                *slot = c;
            }
        }
    }
    newest
        .into_iter()
        .filter(|(_, c)| purge.is_none_or(|p| c.version() > p))
        .filter_map(|(k, c)| match c {
            Change::Set { value, version, .. } => Some((k, (value.clone(), *version))),
            _ => None,
        })
        .collect()
}

fn contents(c: &Cache) -> BTreeMap<Bytes, (Bytes, Version)> {
    (0..5)
        .filter_map(|k| {
            let key = Bytes::from(format!("k{k}"));
            c.peek(&key).map(|e| (key, (e.value, e.version)))
        })
        .collect()
}

proptest! {
    /// Any two orders of the same changes, with duplicates, give the same contents: the newest
    /// version of each key, nothing deleted comes back, nothing older than a purge survives.
    #[test]
    fn any_delivery_order_converges(
        (changes, shuffled) in history().prop_flat_map(|h| (Just(h.clone()), Just(h).prop_shuffle())),
        dup_every in 1usize..5,
    ) {
        let (a, b) = (cache(), cache());
        for c in &changes {
            a.apply_remote(c.clone());
        }
        for (i, c) in shuffled.iter().enumerate() {
            b.apply_remote(c.clone());
            if i % dup_every == 0 {
                prop_assert!(!b.apply_remote(c.clone()), "a duplicate applied");
            }
        }
        let want = expected(&changes);
        prop_assert_eq!(contents(&a), want.clone());
        prop_assert_eq!(contents(&b), want);
    }
}
