//! Eviction policies through the public API: capacity kept, the entry just written never the one
//! evicted, and what each policy keeps under scans and loops.

use leafcache::{Cache, Eviction};

fn cache(eviction: Eviction, capacity: u64) -> Cache {
    Cache::builder()
        .maximum_capacity(capacity)
        .shards(1)
        .eviction(eviction)
        .build()
        .unwrap()
}

fn key(i: usize) -> String {
    format!("k{i}")
}

#[test]
fn every_policy_keeps_capacity_and_the_entry_just_written() {
    for eviction in [Eviction::Lru, Eviction::S3Fifo, Eviction::Lfu] {
        for capacity in [1, 2, 3, 10, 100] {
            let c = cache(eviction, capacity);
            for i in 0..1_000 {
                c.set(key(i), key(i)).unwrap();
                assert_eq!(
                    c.get(key(i)).unwrap(),
                    key(i),
                    "{eviction} {capacity}: just written"
                );
                if i % 3 == 0 {
                    c.get(key(i / 2));
                }
                if i % 7 == 0 {
                    c.delete(key(i / 3));
                }
                assert!(
                    c.len() as u64 <= capacity,
                    "{eviction} {capacity}: {}",
                    c.len()
                );
            }
            let stats = c.stats();
            assert!(stats.evictions > 0, "{eviction} {capacity}: it evicted");
            // What is held reads back as written.
            for i in 0..1_000 {
                if let Some(v) = c.get(key(i)) {
                    assert_eq!(v, key(i));
                }
            }
        }
    }
}

/// A hot set read more than once, then a one-pass scan of twice the capacity.
fn hot_survivors(eviction: Eviction) -> usize {
    let c = cache(eviction, 1_000);
    for i in 0..500 {
        c.set(key(i), "hot").unwrap();
    }
    for _ in 0..2 {
        for i in 0..500 {
            assert!(c.get(key(i)).is_some());
        }
    }
    for i in 10_000..12_000 {
        c.set(key(i), "scan").unwrap();
    }
    (0..500).filter(|&i| c.contains(key(i))).count()
}

#[test]
fn s3fifo_keeps_a_hot_set_through_a_scan_and_lru_does_not() {
    assert_eq!(
        hot_survivors(Eviction::Lru),
        0,
        "the scan pushes every hot key out"
    );
    let kept = hot_survivors(Eviction::S3Fifo);
    assert_eq!(
        kept, 500,
        "the hot set was promoted to the main queue: {kept}"
    );
}

/// Hits over three passes of a loop 20% larger than the cache (read-through).
fn loop_hits(eviction: Eviction) -> usize {
    let c = cache(eviction, 1_000);
    let mut hits = 0;
    for _ in 0..3 {
        for i in 0..1_200 {
            if c.get(key(i)).is_some() {
                hits += 1;
            } else {
                c.set(key(i), "v").unwrap();
            }
        }
    }
    hits
}

#[test]
fn s3fifo_keeps_part_of_a_loop_larger_than_the_cache() {
    assert_eq!(loop_hits(Eviction::Lru), 0);
    let hits = loop_hits(Eviction::S3Fifo);
    assert!(
        hits > 600,
        "S3-FIFO keeps part of the loop: {hits} hits of 2,400"
    );
}

#[test]
fn eviction_is_read_from_text() {
    assert_eq!("lru".parse::<Eviction>().unwrap(), Eviction::Lru);
    assert_eq!("S3FIFO".parse::<Eviction>().unwrap(), Eviction::S3Fifo);
    assert_eq!("lfu".parse::<Eviction>().unwrap(), Eviction::Lfu);
    let err = "arc".parse::<Eviction>().unwrap_err().to_string();
    assert!(err.contains("eviction") && err.contains("s3fifo"), "{err}");
    assert_eq!(Eviction::S3Fifo.to_string(), "s3fifo");
}

#[test]
fn lfu_keeps_what_is_read_most_and_ages_what_was() {
    let c = cache(Eviction::Lfu, 100);
    for i in 0..100 {
        c.set(key(i), "v").unwrap();
    }
    for _ in 0..20 {
        for i in 0..20 {
            assert!(c.get(key(i)).is_some());
        }
    }
    // A stream of new keys written once each: the twenty read twenty times stay.
    for i in 1_000..1_500 {
        c.set(key(i), "v").unwrap();
    }
    assert_eq!((0..20).filter(|&i| c.contains(key(i))).count(), 20);
    // Aging: new keys read a few times each come to outrank keys popular long ago.
    for round in 0..400 {
        for i in 2_000 + round * 20..2_000 + round * 20 + 20 {
            c.set(key(i), "v").unwrap();
            for _ in 0..3 {
                c.get(key(i));
            }
        }
    }
    assert!(
        (0..20).filter(|&i| c.contains(key(i))).count() < 20,
        "old popularity does not keep keys forever"
    );
}

#[test]
fn s3fifo_hits_under_the_shared_lock_count_and_protect_the_entry() {
    // A hot set read by four threads while a fifth writes new keys through the cache: every read
    // is counted once, hot entries (read under the shared lock) survive the churn, and an entry
    // that expired is not returned (the shared path hands it to the exclusive one).
    let c = cache(Eviction::S3Fifo, 100);
    for i in 0..20 {
        c.set(key(i), key(i)).unwrap();
    }
    let before = c.stats();
    let reads = std::thread::scope(|s| {
        let readers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    for round in 0..2_000 {
                        let i = round % 20;
                        assert_eq!(c.get(key(i)).map(|v| v.to_vec()), Some(key(i).into_bytes()));
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        s.spawn(|| {
            for i in 1_000..3_000 {
                c.set(key(i), "cold").unwrap();
            }
        });
        readers.into_iter().map(|r| r.join().unwrap()).sum::<u64>()
    });
    let after = c.stats();
    assert_eq!(after.hits - before.hits, reads);
    assert_eq!(after.misses, before.misses);
    // The hot set, read all along, is still there after 2,000 cold writes into 100 slots.
    let kept = (0..20).filter(|&i| c.contains(key(i))).count();
    assert!(kept >= 18, "only {kept} of 20 hot keys kept");

    let clock = leafcache::ManualClock::new(1_000);
    let c = Cache::builder()
        .maximum_capacity(10)
        .eviction(Eviction::S3Fifo)
        .clock(clock.clone())
        .build()
        .unwrap();
    c.set_with_ttl("t", "v", std::time::Duration::from_millis(50))
        .unwrap();
    assert!(c.get("t").is_some());
    clock.advance(std::time::Duration::from_millis(50));
    assert!(c.get("t").is_none(), "expired");
    assert_eq!(c.stats().expirations, 1);
    assert_eq!(c.stats().misses, 1);
}
