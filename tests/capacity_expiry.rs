//! Capacity (entries and bytes), LRU order, TTLs under a manual clock, the sweep, and version
//! monotonicity when the wall clock jumps backwards.

use std::time::Duration;

use leafcache::{Cache, Error, Expiry, ManualClock, entry_size};

fn keys(cache: &Cache, names: &[&str]) -> Vec<bool> {
    names.iter().map(|k| cache.contains(k)).collect()
}

#[test]
fn least_recently_used_is_evicted_first() {
    let cache = Cache::builder()
        .maximum_capacity(3)
        .shards(1)
        .build()
        .unwrap();
    for k in ["a", "b", "c"] {
        cache.set(k, k).unwrap();
    }
    cache.get("a"); // order, oldest first: b, c, a
    cache.set("d", "d").unwrap(); // evicts b
    assert_eq!(
        keys(&cache, &["a", "b", "c", "d"]),
        [true, false, true, true]
    );
    cache.set("c", "c2").unwrap(); // rewriting refreshes: order a, d, c
    cache.set("e", "e").unwrap(); // evicts a
    assert_eq!(
        keys(&cache, &["a", "c", "d", "e"]),
        [false, true, true, true]
    );
    let stats = cache.stats();
    assert_eq!((stats.evictions, stats.entries), (2, 3));
}

#[test]
fn contains_and_peek_do_not_refresh() {
    let cache = Cache::builder()
        .maximum_capacity(2)
        .shards(1)
        .build()
        .unwrap();
    cache.set("a", "1").unwrap();
    cache.set("b", "2").unwrap();
    assert!(cache.contains("a"));
    assert!(cache.peek("a").is_some());
    cache.set("c", "3").unwrap();
    assert!(!cache.contains("a"), "a stayed least recently used");
}

#[test]
fn byte_capacity_counts_key_value_and_overhead() {
    let entry = entry_size(2, 100); // "k0".."k9" and 100-byte values
    let cache = Cache::builder()
        .maximum_capacity(1_000)
        .max_bytes((3 * entry + entry / 2) as u64)
        .shards(1)
        .build()
        .unwrap();
    for i in 0..10 {
        cache.set(format!("k{i}"), vec![0u8; 100]).unwrap();
    }
    let stats = cache.stats();
    assert_eq!(stats.entries, 3, "three whole entries fit");
    assert_eq!(stats.bytes, 3 * entry as u64);
    assert_eq!(keys(&cache, &["k7", "k8", "k9"]), [true, true, true]);

    // A value larger than the cache is refused, and nothing is evicted to make room.
    let err = cache.set("huge", vec![0u8; 4 * entry]).unwrap_err();
    assert!(matches!(err, Error::ValueTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("exceeds"));
    assert_eq!(keys(&cache, &["k7", "k8", "k9"]), [true, true, true]);
    assert_eq!(cache.stats().evictions, 7);

    // One big value that fits evicts as many small ones as it needs.
    let big = entry_size(3, 256);
    assert!(
        big > 3 * entry / 2 && big <= 5 * entry / 2,
        "about two entries' worth"
    );
    cache.set("big", vec![0u8; 256]).unwrap();
    assert_eq!(
        keys(&cache, &["big", "k7", "k8", "k9"]),
        [true, false, false, true]
    );
}

#[test]
fn sharded_cache_stays_within_capacity() {
    let cache = Cache::builder().maximum_capacity(20_000).build().unwrap();
    assert!(cache.shard_count() > 1);
    for i in 0..100_000u32 {
        cache.set(i.to_be_bytes().to_vec(), "v").unwrap();
    }
    let len = cache.len();
    assert!(len <= 20_000, "{len}");
    assert!(len >= 19_000, "shards fill evenly enough: {len}");
}

#[test]
fn concurrent_readers_and_writers_keep_counts_consistent() {
    let cache = Cache::builder().maximum_capacity(1_000).build().unwrap();
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let cache = cache.clone();
            std::thread::spawn(move || {
                for i in 0..20_000u32 {
                    let key = ((i * 7 + t) % 3_000).to_be_bytes();
                    if cache.get(key).is_none() {
                        cache.set(key.to_vec(), i.to_be_bytes().to_vec()).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = cache.stats();
    assert_eq!(stats.hits + stats.misses, 80_000);
    assert!(stats.entries <= 1_000);
}

#[test]
fn entries_expire_at_their_absolute_instant() {
    let clock = ManualClock::new(1_000_000);
    let cache = Cache::builder()
        .clock(clock.clone())
        .expiration_time("2s")
        .build()
        .unwrap();
    cache.set("default", "v").unwrap();
    cache
        .set_with_ttl("short", "v", Duration::from_millis(500))
        .unwrap();
    cache
        .set_with_expiry("forever", "v", Expiry::Never)
        .unwrap();
    cache
        .set_with_expiry("at", "v", Expiry::AtMs(1_000_700))
        .unwrap();
    assert_eq!(cache.peek("default").unwrap().expires_at, Some(1_002_000));
    assert_eq!(cache.peek("forever").unwrap().expires_at, None);

    clock.advance(Duration::from_millis(499));
    assert!(cache.get("short").is_some());
    clock.advance(Duration::from_millis(1));
    assert!(
        cache.get("short").is_none(),
        "expired exactly at its instant"
    );
    clock.advance(Duration::from_millis(200));
    assert!(!cache.contains("at"));
    clock.advance(Duration::from_millis(1_300));
    assert!(cache.get("default").is_none());
    assert!(cache.get("forever").is_some());
    assert_eq!(cache.len(), 1);
}

#[test]
fn expired_entries_are_freed_without_being_read() {
    let clock = ManualClock::new(0);
    let cache = Cache::builder()
        .clock(clock.clone())
        .expiration_time("1s")
        .build()
        .unwrap();
    for i in 0..1_000u32 {
        cache.set(i.to_be_bytes().to_vec(), vec![0u8; 64]).unwrap();
    }
    clock.advance(Duration::from_secs(2));
    assert_eq!(cache.stats().entries, 1_000, "nothing swept yet");
    // Every write sweeps a few expired entries: a steady trickle of writes frees them all.
    for i in 0..1_000u32 {
        cache
            .set_with_expiry(format!("new{i}"), "v", Expiry::Never)
            .unwrap();
    }
    let after_writes = cache.stats();
    assert_eq!(after_writes.expirations, 1_000, "{after_writes:?}");
    assert_eq!(after_writes.entries, 1_000);
    // An idle cache is freed by an explicit bounded sweep.
    cache
        .set_with_ttl("idle", "v", Duration::from_secs(1))
        .unwrap();
    clock.advance(Duration::from_secs(2));
    assert!(cache.sweep(10_000) >= 1);
    assert_eq!(cache.stats().entries, 1_000);
}

#[test]
fn expiry_can_be_changed_and_removed() {
    let clock = ManualClock::new(0);
    let cache = Cache::builder().clock(clock.clone()).build().unwrap();
    cache.set("k", "v").unwrap();
    assert!(
        cache
            .set_expiry("k", Expiry::After(Duration::from_secs(1)))
            .unwrap()
    );
    assert_eq!(cache.peek("k").unwrap().expires_at, Some(1_000));
    assert!(cache.set_expiry("k", Expiry::Never).unwrap());
    clock.advance(Duration::from_secs(5));
    assert_eq!(cache.get("k").unwrap(), "v");
    assert!(!cache.set_expiry("missing", Expiry::Never).unwrap());
    assert!(matches!(
        cache.set_expiry("k", Expiry::After(Duration::ZERO)),
        Err(Error::ZeroDuration { .. })
    ));
}

#[test]
fn zero_ttl_and_zero_capacity_are_refused() {
    assert!(matches!(
        Cache::builder().expiration_time(Duration::ZERO).build(),
        Err(Error::ZeroDuration {
            what: "expiration_time"
        })
    ));
    assert!(matches!(
        Cache::builder().max_bytes(0).build(),
        Err(Error::ZeroCapacity { what: "max_bytes" })
    ));
    let cache = Cache::builder().build().unwrap();
    assert!(cache.set_with_ttl("k", "v", Duration::ZERO).is_err());
    assert!(!cache.contains("k"));
}

#[test]
fn versions_increase_when_the_wall_clock_jumps_backwards() {
    let clock = ManualClock::new(50_000);
    let cache = Cache::builder().clock(clock.clone()).build().unwrap();
    let v1 = cache.set("k", "1").unwrap();
    clock.set(10_000); // NTP steps the clock back 40 s
    let v2 = cache.set("k", "2").unwrap();
    let v3 = cache.purge();
    clock.set(60_000);
    let v4 = cache.set("k", "4").unwrap();
    assert!(v1 < v2 && v2 < v3 && v3 < v4);
    assert_eq!(
        cache.get("k").unwrap(),
        "4",
        "the write after the purge survives it"
    );
}

#[test]
fn typed_values_round_trip_and_tolerate_schema_changes() {
    #[derive(serde::Serialize)]
    struct V1 {
        name: String,
    }
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct V2 {
        name: String,
        #[serde(default)]
        visits: u32,
    }
    let cache = Cache::builder().build().unwrap();
    cache.set_as("u", &V1 { name: "ada".into() }).unwrap();
    let v2: V2 = cache.get_as("u").unwrap().unwrap();
    assert_eq!(
        v2,
        V2 {
            name: "ada".into(),
            visits: 0
        }
    );
    cache.set("bad", "not json").unwrap();
    assert!(matches!(cache.get_as::<V2>("bad"), Err(Error::Serde(_))));
    assert_eq!(cache.get_as::<V2>("missing").unwrap(), None);
}

#[test]
fn a_key_longer_than_a_shard_holds_is_refused_not_stored() {
    // 128 MiB: one byte over the longest key a shard keeps.
    let key = vec![b'k'; 128 << 20];
    let cache = Cache::builder().build().unwrap();
    let err = cache.set(key.clone(), "v").unwrap_err();
    assert!(matches!(err, Error::ValueTooLarge { .. }), "{err}");
    assert_eq!(cache.delete(&key[..]), None);
    assert!(cache.incr(&key[..], 1).is_err());
    assert_eq!(cache.len(), 0);
    assert_eq!(cache.stats().entries, 0);
}
