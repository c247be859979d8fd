//! The `LRUCacheDistributed` style in Rust: a hub and a leaf in one program, each built with the
//! parameters of the original Python class (`load_callback`, `maximum_capacity`,
//! `expiration_time`, `connection_timeout`, `remote_address`, `local_address`). A write on one is
//! read on the other; then the hub goes away, the leaf carries on alone, the hub comes back on the
//! same address and the two converge.
//!
//! `cargo run --example embedded`

use std::time::{Duration, Instant};

use leafcache::{Cache, LinkState, Node};

/// What the cache fronts: here a function computing a product's description.
fn load_product(key: &[u8]) -> Result<String, std::io::Error> {
    Ok(format!("description of {}", String::from_utf8_lossy(key)))
}

fn hub_on(address: &str) -> Result<Node, leafcache::Error> {
    Cache::builder()
        .name("hub")
        .load_callback(load_product)
        .maximum_capacity(10_000)
        .expiration_time("10m")
        .connection_timeout(2)
        .local_address(address)
        .secret("embedded example")
        .build_node()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = hub_on("127.0.0.1:0")?;
    let address = hub.local_addr().expect("a hub listens").to_string();
    let leaf = Cache::builder()
        .name("leaf")
        .load_callback(load_product)
        .maximum_capacity(10_000)
        .expiration_time(600) // seconds, as the Python API took them
        .connection_timeout("2s")
        .remote_address(&address)
        .secret("embedded example")
        .build_node()?;
    println!("hub on {address}, leaf linked to it");
    wait_for(&leaf, LinkState::Up).await;

    // A miss at the leaf runs its load callback; the loaded value replicates to the hub.
    let value = leaf.default_cache().get_or_load("product:1").await?;
    println!(
        "leaf loaded product:1 = {:?}",
        String::from_utf8_lossy(&value)
    );
    eventually(|| hub.default_cache().contains("product:1")).await;
    println!("hub reads product:1 locally, no load of its own");

    // A write at the hub is read at the leaf.
    hub.default_cache().set("banner", "spring sale")?;
    eventually(|| leaf.default_cache().contains("banner")).await;
    println!(
        "leaf reads banner = {:?}",
        String::from_utf8_lossy(&leaf.default_cache().get("banner").unwrap())
    );

    // The hub goes away: the leaf keeps reading and writing on its own.
    hub.shutdown().await;
    drop(hub);
    wait_for(&leaf, LinkState::Down).await;
    leaf.default_cache()
        .set("written-offline", "while the hub was away")?;
    println!(
        "link down; leaf still serves: banner = {:?}, {} entries",
        String::from_utf8_lossy(&leaf.default_cache().get("banner").unwrap()),
        leaf.default_cache().len()
    );

    // A new hub on the same address (empty: it has no persistence). The leaf reconnects with
    // backoff and the resync brings the hub everything the leaf holds.
    let hub = hub_on(&address)?;
    wait_for(&leaf, LinkState::Up).await;
    eventually(|| hub.default_cache().len() == leaf.default_cache().len()).await;
    println!(
        "link healed: hub holds {} entries again, written-offline = {:?}",
        hub.default_cache().len(),
        String::from_utf8_lossy(&hub.default_cache().get("written-offline").unwrap())
    );
    leaf.shutdown().await;
    hub.shutdown().await;
    Ok(())
}

/// Waits until the leaf's link to its hub is in `state`.
async fn wait_for(leaf: &Node, state: LinkState) {
    eventually(|| leaf.links().iter().any(|s| s.state == state)).await;
}

/// Polls `check` every 10 ms, giving up after 30 s.
async fn eventually(mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "gave up waiting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
