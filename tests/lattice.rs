//! The whole-state join of merged values is a lattice: replicas that made any history of
//! counter, hash, expiry and delete operations, and exchanged any of it in any order, whole or as
//! deltas, end identical once each has joined the others' whole states, and joining again changes
//! nothing. Checked on caches (the shard's rules, dead records and tombstones included), so every
//! state a node can hold is covered, not only the `Merged` values in isolation.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use leafcache::{Cache, Change, Expiry, ManualClock, NodeId};
use proptest::prelude::*;

const REPLICAS: usize = 3;

/// One step of a history: an operation at a replica, or a delivery between two.
#[derive(Clone, Debug)]
enum Step {
    Incr(usize, u8, i64),
    SetText(usize, u8, bool),
    Del(usize, u8),
    HSet(usize, u8, u8, u8),
    HDel(usize, u8, u8),
    HIncr(usize, u8, u8, i64),
    Expire(usize, u8, u8),
    Persist(usize, u8),
    /// Replica `from`'s changes after its seq `from_seq` (a delta, or everything) to `to`.
    Deliver {
        from: usize,
        to: usize,
        whole: bool,
    },
    /// Time passes (the HLC of each replica moves on).
    Tick(u8),
    /// Hours pass: keys given an expiry expire (and may be written again afterwards).
    Hours(u8),
}

fn step() -> impl Strategy<Value = Step> {
    let r = 0..REPLICAS;
    let key = 0u8..3;
    prop_oneof![
        3 => (r.clone(), key.clone(), -3i64..4).prop_map(|(r, k, by)| Step::Incr(r, k, by)),
        1 => (r.clone(), key.clone(), any::<bool>()).prop_map(|(r, k, n)| Step::SetText(r, k, n)),
        1 => (r.clone(), key.clone()).prop_map(|(r, k)| Step::Del(r, k)),
        3 => (r.clone(), key.clone(), 0u8..3, any::<u8>()).prop_map(|(r, k, f, v)| Step::HSet(r, k, f, v)),
        2 => (r.clone(), key.clone(), 0u8..3).prop_map(|(r, k, f)| Step::HDel(r, k, f)),
        2 => (r.clone(), key.clone(), 0u8..3, -3i64..4).prop_map(|(r, k, f, by)| Step::HIncr(r, k, f, by)),
        1 => (r.clone(), key.clone(), 1u8..50).prop_map(|(r, k, s)| Step::Expire(r, k, s)),
        1 => (r.clone(), key.clone()).prop_map(|(r, k)| Step::Persist(r, k)),
        4 => (r.clone(), r.clone(), any::<bool>()).prop_map(|(from, to, whole)| Step::Deliver { from, to, whole }),
        1 => (1u8..5).prop_map(Step::Tick),
        1 => (1u8..30).prop_map(Step::Hours),
    ]
}

/// Counters live under `c*`, hashes under `h*`: an operation of the other type on a key is refused
/// as Redis refuses it, and the history goes on.
fn counter(k: u8) -> String {
    format!("c{k}")
}
fn hash(k: u8) -> String {
    format!("h{k}")
}

struct Replicas {
    clock: ManualClock,
    caches: Vec<Cache>,
    /// Per (from, to): the seq of `from` up to which `to` has been sent a delta.
    sent: BTreeMap<(usize, usize), u64>,
}

impl Replicas {
    fn new() -> Self {
        let clock = ManualClock::new(1_700_000_000_000);
        let caches = (0..REPLICAS)
            .map(|i| {
                Cache::builder()
                    .maximum_capacity(1_000)
                    // Dead records kept for the whole history: forgetting one past its
                    // retention is the bounded-memory rule (it raises the floor), not a join.
                    .tombstone_ttl(Duration::from_secs(10_000 * 86_400))
                    .node_id(NodeId(i as u128 + 1))
                    .clock(clock.clone())
                    .build()
                    .unwrap()
            })
            .collect();
        Replicas {
            clock,
            caches,
            sent: BTreeMap::new(),
        }
    }

    fn run(&mut self, step: &Step) {
        let at = |c: &Vec<Cache>, r: usize| c[r].clone();
        match *step {
            Step::Incr(r, k, by) => {
                let _ = at(&self.caches, r).incr(counter(k), by);
            }
            Step::SetText(r, k, number) => {
                let v = if number { "7" } else { "text" };
                let _ = at(&self.caches, r).set(counter(k), v);
            }
            Step::Del(r, k) => {
                let c = at(&self.caches, r);
                c.delete(counter(k));
                c.delete(hash(k));
            }
            Step::HSet(r, k, f, v) => {
                let _ = at(&self.caches, r).hset(hash(k), format!("f{f}"), format!("v{v}"));
            }
            Step::HDel(r, k, f) => {
                let _ = at(&self.caches, r).hdel(hash(k), [format!("f{f}")]);
            }
            Step::HIncr(r, k, f, by) => {
                let _ = at(&self.caches, r).hincr(hash(k), format!("n{f}"), by);
            }
            Step::Expire(r, k, secs) => {
                let c = at(&self.caches, r);
                let after = Expiry::After(Duration::from_secs(u64::from(secs) * 3_600));
                let _ = c.set_expiry(counter(k), after);
                let _ = c.set_expiry(hash(k), after);
            }
            Step::Persist(r, k) => {
                let c = at(&self.caches, r);
                let _ = c.set_expiry(counter(k), Expiry::Never);
                let _ = c.set_expiry(hash(k), Expiry::Never);
            }
            Step::Deliver { from, to, whole } if from != to => {
                let after = if whole {
                    0
                } else {
                    self.sent.get(&(from, to)).copied().unwrap_or(0)
                };
                let changes = self.caches[from].changes_since(after, usize::MAX);
                if let Some(last) = changes.last() {
                    self.sent.insert((from, to), last.seq);
                }
                for s in changes {
                    self.caches[to].apply_remote(s.change);
                }
            }
            Step::Deliver { .. } => {}
            Step::Tick(ms) => self.clock.advance(Duration::from_millis(u64::from(ms))),
            Step::Hours(h) => self
                .clock
                .advance(Duration::from_secs(u64::from(h) * 3_600)),
        }
    }

    /// Every replica joins every other's whole state, until nothing changes (bounded).
    fn join_all(&mut self) -> usize {
        for round in 0..6 {
            let mut changed = false;
            for from in 0..REPLICAS {
                for to in 0..REPLICAS {
                    if from == to {
                        continue;
                    }
                    for s in self.caches[from].changes_since(0, usize::MAX) {
                        changed |= self.caches[to].apply_remote(s.change);
                    }
                }
            }
            if !changed {
                return round;
            }
        }
        panic!("whole states still change after 6 rounds of joining");
    }
}

/// A replica's whole contents at `now_ms`: key → its record, as a full sync would send it
/// (node-local marks left out; a string expired but not yet swept as the drop it is).
fn contents(c: &Cache, now_ms: u64) -> BTreeMap<Bytes, Change> {
    c.changes_since(0, usize::MAX)
        .into_iter()
        .filter_map(|s| {
            let change = match s.change {
                Change::Set {
                    key,
                    version,
                    expires_at: Some(at),
                    ..
                } if at <= now_ms => Change::Invalidate { key, version },
                Change::Merge(mut m) => {
                    m.complete = true;
                    Change::Merge(m)
                }
                other => other,
            };
            Some((change.key()?.clone(), change))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, .. ProptestConfig::default() })]

    /// Commutative and associative: any history, any order and grouping of deliveries (whole or
    /// delta, duplicated, echoed), then a join of whole states, and the replicas hold exactly the
    /// same state, key by key (registers, parts, fields, field tombstones, expiries, versions).
    /// Idempotent: joining the whole states once more changes nothing anywhere.
    #[test]
    fn replicas_that_join_whole_states_hold_exactly_the_same(steps in prop::collection::vec(step(), 1..60)) {
        let mut r = Replicas::new();
        for s in &steps {
            r.run(s);
        }
        r.join_all();
        let first = contents(&r.caches[0], r.clock.now_ms());
        for (i, c) in r.caches.iter().enumerate().skip(1) {
            let other = contents(c, r.clock.now_ms());
            for (key, a) in &first {
                prop_assert_eq!(Some(a), other.get(key), "key {:?}: replica 0 vs {}", key, i);
            }
            prop_assert_eq!(first.len(), other.len(), "replica {} holds other keys", i);
        }
        for from in 0..REPLICAS {
            for to in 0..REPLICAS {
                for s in r.caches[from].changes_since(0, usize::MAX) {
                    prop_assert!(!r.caches[to].apply_remote(s.change.clone()), "joining {:?} again changed replica {}", s.change, to);
                }
            }
        }
    }

    /// A replica joined with its own whole state reads the same and changes nothing.
    #[test]
    fn a_state_joined_with_itself_is_unchanged(steps in prop::collection::vec(step(), 1..40)) {
        let mut r = Replicas::new();
        for s in &steps {
            r.run(s);
        }
        let before = contents(&r.caches[0], r.clock.now_ms());
        for s in r.caches[0].changes_since(0, usize::MAX) {
            prop_assert!(!r.caches[0].apply_remote(s.change));
        }
        prop_assert_eq!(before, contents(&r.caches[0], r.clock.now_ms()));
    }
}
