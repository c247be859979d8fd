//! A local leafcache in a service: capacity, expiration, a load callback with single-flight, typed
//! values, and the stats. Runs on its own and finishes: `cargo run --example local_cache`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use leafcache::Cache;

#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct Product {
    id: u32,
    name: String,
    price_cents: u64,
}

#[tokio::main]
async fn main() -> Result<(), leafcache::Error> {
    // The backend the cache fronts: here, a slow lookup that counts its calls.
    let backend_calls = Arc::new(AtomicUsize::new(0));
    let calls = backend_calls.clone();
    let cache = Cache::builder()
        .maximum_capacity(10_000)
        .expiration_time("5m")
        .async_load_callback(move |key: bytes::Bytes| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, std::io::Error>(format!("profile of {}", String::from_utf8_lossy(&key)))
            }
        })
        .build()?;

    // 100 concurrent requests for the same missing key: one backend call.
    let requests: Vec<_> = (0..100)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.get_or_load("user:42").await })
        })
        .collect();
    for r in requests {
        r.await.expect("task")?;
    }
    println!(
        "100 concurrent misses -> {} backend call(s)",
        backend_calls.load(Ordering::SeqCst)
    );

    // Typed values are stored as JSON.
    let p = Product {
        id: 7,
        name: "kettle".into(),
        price_cents: 2_999,
    };
    cache.set_as("product:7", &p)?;
    let back: Option<Product> = cache.get_as("product:7")?;
    println!("typed value: {back:?}");

    // Per-entry expiry overrides the default.
    cache.set_with_ttl("flash-sale", "on", Duration::from_secs(30))?;
    let info = cache.peek("flash-sale").expect("just written");
    println!(
        "flash-sale expires at {} ms since the epoch",
        info.expires_at.unwrap_or(0)
    );

    println!("{:#?}", cache.stats());
    Ok(())
}
