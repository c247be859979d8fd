//! Model-based property test: random operation sequences — writes with and without TTLs, reads,
//! deletes, expiry changes, purges, clock moves — run against a one-shard cache and a plain
//! reference model of the documented policy; every answer must match.
//!
//! The policy the model spells out: exact LRU order; a write first removes up to 4 expired
//! entries (earliest expiry first), then evicts least recently used entries while the cache is over
//! its entry or byte limit; an expired entry is never returned; `len` counts unexpired entries.

use std::time::Duration;

use leafcache::{Cache, ENTRY_OVERHEAD, Error, Expiry, ManualClock};
use proptest::prelude::*;

const NEVER: u64 = u64::MAX;
const SWEEP_PER_WRITE: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    Set { key: u8, len: usize, ttl: Ttl },
    Get(u8),
    Contains(u8),
    Delete(u8),
    SetExpiry { key: u8, ttl: Ttl },
    Len,
    Purge,
    Advance(u64),
}

#[derive(Clone, Copy, Debug)]
enum Ttl {
    Default,
    Never,
    Ms(u64),
}

impl Ttl {
    fn expiry(self) -> Expiry {
        match self {
            Ttl::Default => Expiry::Default,
            Ttl::Never => Expiry::Never,
            Ttl::Ms(ms) => Expiry::After(Duration::from_millis(ms)),
        }
    }
}

fn ttl() -> impl Strategy<Value = Ttl> {
    prop_oneof![
        Just(Ttl::Default),
        Just(Ttl::Never),
        (1u64..3_000).prop_map(Ttl::Ms),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u8..12;
    prop_oneof![
        6 => (key.clone(), 0usize..48, ttl()).prop_map(|(key, len, ttl)| Op::Set { key, len, ttl }),
        5 => key.clone().prop_map(Op::Get),
        2 => key.clone().prop_map(Op::Contains),
        2 => key.clone().prop_map(Op::Delete),
        1 => (key, ttl()).prop_map(|(key, ttl)| Op::SetExpiry { key, ttl }),
        1 => Just(Op::Len),
        1 => Just(Op::Purge),
        3 => (0u64..2_500).prop_map(Op::Advance),
    ]
}

fn key_name(k: u8) -> String {
    format!("key-{k}")
}

struct Item {
    key: u8,
    value: Vec<u8>,
    expires_at: u64,
    seq: u64,
}

/// The reference: a vector in LRU order (front = least recently used).
struct Model {
    max_entries: usize,
    max_bytes: usize,
    default_ttl: Option<u64>,
    items: Vec<Item>,
    seq: u64,
    hits: u64,
    misses: u64,
}

impl Model {
    fn size(item: &Item) -> usize {
        key_name(item.key).len() + item.value.len() + ENTRY_OVERHEAD
    }

    fn bytes(&self) -> usize {
        self.items.iter().map(Self::size).sum()
    }

    fn pos(&self, key: u8) -> Option<usize> {
        self.items.iter().position(|i| i.key == key)
    }

    fn sweep(&mut self, now: u64, budget: usize) {
        for _ in 0..budget {
            let next = (0..self.items.len())
                .filter(|&i| self.items[i].expires_at <= now)
                .min_by_key(|&i| (self.items[i].expires_at, self.items[i].seq));
            match next {
                Some(i) => {
                    self.items.remove(i);
                }
                None => break,
            }
        }
    }

    fn expires_at(&self, ttl: Ttl, now: u64) -> u64 {
        match ttl {
            Ttl::Default => self.default_ttl.map_or(NEVER, |t| now + t),
            Ttl::Never => NEVER,
            Ttl::Ms(ms) => now + ms,
        }
    }

    fn write(&mut self, key: u8, value: Vec<u8>, expires_at: u64, now: u64) {
        self.sweep(now, SWEEP_PER_WRITE);
        if let Some(i) = self.pos(key) {
            self.items.remove(i);
        }
        self.seq += 1;
        self.items.push(Item {
            key,
            value,
            expires_at,
            seq: self.seq,
        });
        while (self.items.len() > self.max_entries || self.bytes() > self.max_bytes)
            && self.items.len() > 1
        {
            self.items.remove(0);
        }
    }

    fn set(&mut self, key: u8, len: usize, ttl: Ttl, now: u64) -> Result<(), ()> {
        let value = vec![key; len];
        if key_name(key).len() + len + ENTRY_OVERHEAD > self.max_bytes {
            return Err(());
        }
        let at = self.expires_at(ttl, now);
        self.write(key, value, at, now);
        Ok(())
    }

    fn get(&mut self, key: u8, now: u64) -> Option<Vec<u8>> {
        match self.pos(key) {
            Some(i) if self.items[i].expires_at > now => {
                let item = self.items.remove(i);
                let v = item.value.clone();
                self.items.push(item);
                self.hits += 1;
                Some(v)
            }
            Some(i) => {
                self.items.remove(i);
                self.misses += 1;
                None
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    fn peek(&self, key: u8, now: u64) -> Option<&Vec<u8>> {
        self.pos(key)
            .map(|i| &self.items[i])
            .filter(|i| i.expires_at > now)
            .map(|i| &i.value)
    }

    fn delete(&mut self, key: u8, now: u64) -> Option<Vec<u8>> {
        self.sweep(now, SWEEP_PER_WRITE);
        self.seq += 1;
        let i = self.pos(key)?;
        let item = self.items.remove(i);
        (item.expires_at > now).then_some(item.value)
    }

    fn set_expiry(&mut self, key: u8, ttl: Ttl, now: u64) -> bool {
        let Some(value) = self.peek(key, now).cloned() else {
            return false;
        };
        let at = self.expires_at(ttl, now);
        self.write(key, value, at, now);
        true
    }

    fn len(&mut self, now: u64) -> usize {
        self.items.retain(|i| i.expires_at > now);
        self.items.len()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn cache_matches_the_reference_model(
        max_entries in 1usize..10,
        byte_slots in prop::option::of(1usize..5),
        default_ttl in prop::option::of(1u64..2_000),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        // A byte limit of a few average entries, so both limits get exercised.
        let max_bytes = byte_slots.map_or(usize::MAX, |n| n * (ENTRY_OVERHEAD + 5 + 24));
        let clock = ManualClock::new(1_000_000);
        let mut builder = Cache::builder()
            .maximum_capacity(max_entries as u64)
            .shards(1)
            .clock(clock.clone());
        if byte_slots.is_some() {
            builder = builder.max_bytes(max_bytes as u64);
        }
        if let Some(ms) = default_ttl {
            builder = builder.expiration_time(Duration::from_millis(ms));
        }
        let cache = builder.build().unwrap();
        let mut model = Model {
            max_entries,
            max_bytes,
            default_ttl,
            items: Vec::new(),
            seq: 0,
            hits: 0,
            misses: 0,
        };

        for op in ops {
            let now = clock.now_ms();
            match op {
                Op::Set { key, len, ttl } => {
                    let got = cache.set_with_expiry(key_name(key), vec![key; len], ttl.expiry());
                    let want = model.set(key, len, ttl, now);
                    match (&got, want) {
                        (Ok(_), Ok(())) => {}
                        (Err(Error::ValueTooLarge { .. }), Err(())) => {}
                        _ => prop_assert!(false, "set {key}: cache {got:?}, model {want:?}"),
                    }
                }
                Op::Get(key) => {
                    let got = cache.get(key_name(key)).map(|b| b.to_vec());
                    prop_assert_eq!(got, model.get(key, now), "get {}", key);
                }
                Op::Contains(key) => {
                    prop_assert_eq!(cache.contains(key_name(key)), model.peek(key, now).is_some());
                }
                Op::Delete(key) => {
                    let got = cache.delete(key_name(key)).map(|b| b.to_vec());
                    prop_assert_eq!(got, model.delete(key, now), "delete {}", key);
                }
                Op::SetExpiry { key, ttl } => {
                    let got = cache.set_expiry(key_name(key), ttl.expiry()).unwrap();
                    prop_assert_eq!(got, model.set_expiry(key, ttl, now));
                }
                Op::Len => prop_assert_eq!(cache.len(), model.len(now)),
                Op::Purge => {
                    cache.purge();
                    model.items.clear();
                    model.seq += 1;
                }
                Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
            }
        }

        let now = clock.now_ms();
        for key in 0..12 {
            let got = cache.peek(key_name(key)).map(|e| e.value.to_vec());
            prop_assert_eq!(got.as_ref(), model.peek(key, now), "final contents of {}", key);
        }
        let stats = cache.stats();
        prop_assert_eq!((stats.hits, stats.misses), (model.hits, model.misses));
        prop_assert!(stats.bytes as usize <= max_bytes);
        prop_assert!(stats.entries as usize <= max_entries);
    }
}
