//! A load callback that reads records from files: 100,000 small product files are written to a
//! temporary folder, then 300,000 skewed lookups (a few products are popular, most are not) are
//! served once by reading the file every time and once through a cache of 20,000 entries.
//! Prints both times, the hits and misses, and removes the folder.
//!
//! `cargo run --release --example load_callback`

use std::path::{Path, PathBuf};
use std::time::Instant;

use leafcache::Cache;
use rand::SeedableRng;
use rand_distr::{Distribution, Zipf};

const PRODUCTS: u64 = 100_000;
const LOOKUPS: usize = 300_000;

#[derive(serde::Serialize, serde::Deserialize)]
struct Product {
    id: u64,
    name: String,
    price_cents: u64,
    stock: u32,
}

fn file_of(dir: &Path, id: &[u8]) -> PathBuf {
    dir.join(format!("{}.json", String::from_utf8_lossy(id)))
}

/// Reads and parses one product: what a lookup costs without a cache.
fn read_product(dir: &Path, id: &[u8]) -> std::io::Result<Product> {
    let bytes = std::fs::read(file_of(dir, id))?;
    serde_json::from_slice(&bytes).map_err(std::io::Error::other)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("leafcache-products-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let start = Instant::now();
    for id in 0..PRODUCTS {
        let p = Product {
            id,
            name: format!("product {id}"),
            price_cents: 100 + id % 9_900,
            stock: (id % 50) as u32,
        };
        std::fs::write(
            file_of(&dir, id.to_string().as_bytes()),
            serde_json::to_vec(&p)?,
        )?;
    }
    println!("wrote {PRODUCTS} product files in {:.2?}", start.elapsed());

    // The same skewed sequence of product ids for both runs.
    let zipf = Zipf::new(PRODUCTS as f64, 1.0)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let ids: Vec<String> = (0..LOOKUPS)
        .map(|_| (zipf.sample(&mut rng) as u64 - 1).to_string())
        .collect();

    let start = Instant::now();
    let mut cents = 0u64;
    for id in &ids {
        cents += read_product(&dir, id.as_bytes())?.price_cents;
    }
    let direct = start.elapsed();
    println!("{LOOKUPS} lookups reading the files:   {direct:>10.2?}");

    // The cache stores the file's bytes; the callback runs only on a miss.
    let files = dir.clone();
    let cache = Cache::builder()
        .maximum_capacity(20_000)
        .expiration_time("10m")
        .load_callback(move |id: &[u8]| std::fs::read(file_of(&files, id)))
        .build()?;
    let start = Instant::now();
    let mut cached_cents = 0u64;
    for id in &ids {
        let bytes = cache.get_or_load(id.clone()).await?;
        cached_cents += serde_json::from_slice::<Product>(&bytes)?.price_cents;
    }
    let through = start.elapsed();
    assert_eq!(cents, cached_cents, "the cache served the same records");
    let s = cache.stats();
    println!("{LOOKUPS} lookups through the cache: {through:>10.2?}");
    println!(
        "hits {}, misses {} (loads {}), hit ratio {:.3}, {:.1}x faster",
        s.hits,
        s.misses,
        s.loads,
        s.hit_ratio(),
        direct.as_secs_f64() / through.as_secs_f64()
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
