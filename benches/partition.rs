//! The slot map's balance and movement: `cargo bench --bench partition`.
//!
//! For 3 to 64 shards: 1M random keys through `key_slot` and the map, the most keys on one shard
//! over the mean (target ≤ 1.02); the slots that move when one shard joins N (target ≈ 1/(N+1))
//! and when one leaves; and how long the map takes to build.

use std::time::Instant;

use leafcache::partition::{SLOTS, SlotMap, key_slot};
use rand::{Rng, SeedableRng};

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("shard-{i}")).collect()
}

fn main() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5107);
    let keys: Vec<u16> = (0..1_000_000)
        .map(|_| key_slot(format!("key:{:016x}", rng.random::<u64>()).as_bytes()))
        .collect();
    println!(
        "{:>6} {:>12} {:>10} {:>12} {:>10} {:>12} {:>10}",
        "shards", "max/mean", "build", "join moved", "1/(N+1)", "leave moved", "1/N"
    );
    for n in [3, 4, 5, 8, 16, 32, 64] {
        let start = Instant::now();
        let map = SlotMap::new(names(n)).unwrap();
        let build = start.elapsed();
        let mut per_shard = vec![0u64; n];
        for &slot in &keys {
            per_shard[map.owner(slot)] += 1;
        }
        let mean = keys.len() as f64 / n as f64;
        let max = *per_shard.iter().max().unwrap() as f64;
        let joined = SlotMap::new(names(n + 1)).unwrap();
        let join = map.moved_to(&joined) as f64 / SLOTS as f64;
        let left = SlotMap::new(names(n - 1)).unwrap();
        let leave = map.moved_to(&left) as f64 / SLOTS as f64;
        println!(
            "{n:>6} {:>12.4} {:>8.1}ms {:>11.2}% {:>9.2}% {:>11.2}% {:>9.2}%",
            max / mean,
            build.as_secs_f64() * 1e3,
            join * 100.0,
            100.0 / (n + 1) as f64,
            leave * 100.0,
            100.0 / n as f64,
        );
    }
}
