//! Model-based property test: random operation sequences — writes with and without TTLs, reads,
//! deletes, expiry changes, purges, clock moves — run against a one-shard cache and a plain
//! reference model of the documented policy; every answer must match.
//!
//! The policy the model spells out: exact LRU order; a write first removes up to 4 expired
//! entries (earliest expiry first), then evicts least recently used entries while the cache is over
//! its entry or byte limit; an expired entry is never returned; `len` counts unexpired entries.

use std::time::Duration;

use leafcache::{Cache, Error, Expiry, ManualClock, entry_size};
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
        entry_size(key_name(item.key).len(), item.value.len())
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
        if entry_size(key_name(key).len(), len) > self.max_bytes {
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
        let max_bytes = byte_slots.map_or(usize::MAX, |n| n * entry_size(5, 24));
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

/// An operation on the values that merge, for [`merged_values_match_a_reference_model`].
#[derive(Clone, Debug)]
enum MOp {
    Incr(u8, i64),
    SetNumber(u8, i64),
    SetText(u8),
    Delete(u8),
    HSet(u8, u8, u8),
    HDel(u8, u8),
    HIncr(u8, u8, i64),
    Expire(u8, u64),
    Advance(u64),
}

fn mop() -> impl Strategy<Value = MOp> {
    let key = 0u8..6;
    let field = 0u8..4;
    let by = prop_oneof![-5i64..6, Just(i64::MAX), Just(i64::MIN)];
    prop_oneof![
        4 => (key.clone(), by.clone()).prop_map(|(k, b)| MOp::Incr(k, b)),
        1 => (key.clone(), -100i64..100).prop_map(|(k, n)| MOp::SetNumber(k, n)),
        1 => key.clone().prop_map(MOp::SetText),
        1 => key.clone().prop_map(MOp::Delete),
        3 => (key.clone(), field.clone(), 0u8..3).prop_map(|(k, f, v)| MOp::HSet(k, f, v)),
        2 => (key.clone(), field.clone()).prop_map(|(k, f)| MOp::HDel(k, f)),
        3 => (key.clone(), field, by).prop_map(|(k, f, b)| MOp::HIncr(k, f, b)),
        1 => (key, 1u64..500).prop_map(|(k, ms)| MOp::Expire(k, ms)),
        1 => (0u64..400).prop_map(MOp::Advance),
    ]
}

/// What the reference holds for a key.
#[derive(Clone, Debug, PartialEq)]
enum MValue {
    Text(String),
    Hash(std::collections::BTreeMap<String, String>),
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Counters and hashes on one node behave as Redis's strings and hashes: `INCR` on a number,
    /// its errors (not an integer, overflow, wrong type), `HSET`/`HDEL`/`HINCRBY`, a hash without
    /// fields gone, expiry of either.
    #[test]
    fn merged_values_match_a_reference_model(ops in prop::collection::vec(mop(), 1..150)) {
        use std::collections::{BTreeMap, HashMap};
        let clock = ManualClock::new(1_000_000);
        let cache = Cache::builder().clock(clock.clone()).build().unwrap();
        let mut model: HashMap<u8, (MValue, u64)> = HashMap::new();
        let name = |k: u8| format!("k{k}");
        for op in ops {
            let now = clock.now_ms();
            model.retain(|_, (_, at)| *at > now);
            match op {
                MOp::Incr(k, by) => {
                    let got = cache.incr(name(k), by);
                    let current = model.get(&k).cloned();
                    let want: Result<i64, ()> = match &current {
                        None => Ok(by),
                        Some((MValue::Text(t), _)) => match t.parse::<i64>() {
                            Ok(n) if t == &n.to_string() => n.checked_add(by).ok_or(()),
                            _ => Err(()),
                        },
                        Some((MValue::Hash(_), _)) => Err(()),
                    };
                    match (&got, want) {
                        (Ok(n), Ok(m)) => {
                            prop_assert_eq!(*n, m);
                            let at = current.map_or(NEVER, |(_, at)| at);
                            model.insert(k, (MValue::Text(m.to_string()), at));
                        }
                        (Err(_), Err(())) => {}
                        _ => prop_assert!(false, "incr {k} {by}: cache {got:?}, model {want:?}"),
                    }
                }
                MOp::SetNumber(k, n) => {
                    cache.set(name(k), n.to_string()).unwrap();
                    model.insert(k, (MValue::Text(n.to_string()), NEVER));
                }
                MOp::SetText(k) => {
                    cache.set(name(k), "text").unwrap();
                    model.insert(k, (MValue::Text("text".into()), NEVER));
                }
                MOp::Delete(k) => {
                    cache.delete(name(k));
                    model.remove(&k);
                }
                MOp::HSet(k, f, v) => {
                    let got = cache.hset(name(k), format!("f{f}"), format!("v{v}"));
                    match model.get_mut(&k) {
                        Some((MValue::Text(_), _)) => prop_assert!(matches!(got, Err(Error::WrongType))),
                        Some((MValue::Hash(h), _)) => {
                            let new = h.insert(format!("f{f}"), format!("v{v}")).is_none();
                            prop_assert_eq!(got.unwrap(), new);
                        }
                        None => {
                            prop_assert!(got.unwrap());
                            let h = BTreeMap::from([(format!("f{f}"), format!("v{v}"))]);
                            model.insert(k, (MValue::Hash(h), NEVER));
                        }
                    }
                }
                MOp::HDel(k, f) => {
                    let got = cache.hdel(name(k), [format!("f{f}")]);
                    match model.get_mut(&k) {
                        Some((MValue::Text(_), _)) => prop_assert!(matches!(got, Err(Error::WrongType))),
                        Some((MValue::Hash(h), _)) => {
                            let removed = usize::from(h.remove(&format!("f{f}")).is_some());
                            prop_assert_eq!(got.unwrap(), removed);
                            if h.is_empty() {
                                model.remove(&k);
                            }
                        }
                        None => prop_assert_eq!(got.unwrap(), 0),
                    }
                }
                MOp::HIncr(k, f, by) => {
                    let got = cache.hincr(name(k), format!("f{f}"), by);
                    let field = format!("f{f}");
                    match model.get_mut(&k) {
                        Some((MValue::Text(_), _)) => prop_assert!(matches!(got, Err(Error::WrongType))),
                        Some((MValue::Hash(h), _)) => {
                            let want = match h.get(&field) {
                                None => Some(by),
                                Some(t) => t.parse::<i64>().ok().filter(|n| t == &n.to_string()).and_then(|n| n.checked_add(by)),
                            };
                            match (got, want) {
                                (Ok(n), Some(m)) => {
                                    prop_assert_eq!(n, m);
                                    h.insert(field, m.to_string());
                                }
                                (Err(_), None) => {}
                                (got, want) => prop_assert!(false, "hincr: cache {got:?}, model {want:?}"),
                            }
                        }
                        None => {
                            prop_assert_eq!(got.unwrap(), by);
                            let h = BTreeMap::from([(field, by.to_string())]);
                            model.insert(k, (MValue::Hash(h), NEVER));
                        }
                    }
                }
                MOp::Expire(k, ms) => {
                    let got = cache.set_expiry(name(k), Expiry::After(Duration::from_millis(ms))).unwrap();
                    prop_assert_eq!(got, model.contains_key(&k));
                    if let Some((_, at)) = model.get_mut(&k) {
                        *at = now + ms;
                    }
                }
                MOp::Advance(ms) => clock.advance(Duration::from_millis(ms)),
            }
            let now = clock.now_ms();
            for k in 0..6u8 {
                let want = model.get(&k).filter(|(_, at)| *at > now).map(|(v, _)| v.clone());
                let got = match cache.kind(name(k)) {
                    None => None,
                    Some(leafcache::Kind::Hash) => {
                        let fields = cache.hgetall(name(k)).unwrap();
                        Some(MValue::Hash(fields.iter().map(|(f, v)| {
                            (String::from_utf8_lossy(f).into_owned(), String::from_utf8_lossy(v).into_owned())
                        }).collect()))
                    }
                    Some(_) => cache.get(name(k)).map(|v| MValue::Text(String::from_utf8_lossy(&v).into_owned())),
                };
                prop_assert_eq!(got, want, "key {}", k);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// S3-FIFO and LFU evict in their own order, so they are checked against invariants rather
    /// than an exact model: whatever it holds reads as last written (never a deleted, expired or older value),
    /// the entry just written is held (it fits and does not expire at once), and both limits hold.
    #[test]
    fn s3fifo_and_lfu_keep_the_invariants(
        lfu in any::<bool>(),
        max_entries in 1usize..10,
        byte_slots in prop::option::of(1usize..5),
        ops in prop::collection::vec(op(), 1..150),
    ) {
        let max_bytes = byte_slots.map_or(usize::MAX, |n| n * entry_size(5, 24));
        let clock = ManualClock::new(1_000_000);
        let mut builder = Cache::builder()
            .maximum_capacity(max_entries as u64)
            .shards(1)
            .eviction(if lfu { leafcache::Eviction::Lfu } else { leafcache::Eviction::S3Fifo })
            .clock(clock.clone());
        if byte_slots.is_some() {
            builder = builder.max_bytes(max_bytes as u64);
        }
        let cache = builder.build().unwrap();
        // key → (value, expires_at) as last written; absent once deleted.
        let mut written: std::collections::HashMap<u8, (Vec<u8>, u64)> = Default::default();
        let at = |ttl: Ttl, now: u64| match ttl {
            Ttl::Default | Ttl::Never => NEVER,
            Ttl::Ms(ms) => now + ms,
        };
        for op in ops {
            let now = clock.now_ms();
            match op {
                Op::Set { key, len, ttl } => {
                    let value = vec![key; len];
                    if cache.set_with_expiry(key_name(key), value.clone(), ttl.expiry()).is_ok() {
                        written.insert(key, (value.clone(), at(ttl, now)));
                        prop_assert_eq!(
                            cache.peek(key_name(key)).map(|e| e.value.to_vec()),
                            Some(value),
                            "the entry just written is held"
                        );
                    }
                }
                Op::Get(key) | Op::Contains(key) => {
                    if let Some(got) = cache.get(key_name(key)) {
                        let want = written.get(&key).filter(|(_, exp)| *exp > now);
                        prop_assert_eq!(Some(&got.to_vec()), want.map(|(v, _)| v), "get {}", key);
                    }
                }
                Op::Delete(key) => {
                    cache.delete(key_name(key));
                    written.remove(&key);
                }
                Op::SetExpiry { key, ttl } => {
                    if cache.set_expiry(key_name(key), ttl.expiry()).unwrap()
                        && let Some(w) = written.get_mut(&key)
                    {
                        w.1 = at(ttl, now);
                    }
                }
                Op::Len => prop_assert!(cache.len() <= max_entries),
                Op::Purge => {
                    cache.purge();
                    written.clear();
                }
                Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
            }
            let stats = cache.stats();
            prop_assert!(stats.entries as usize <= max_entries);
            prop_assert!(stats.bytes as usize <= max_bytes);
        }
    }
}
