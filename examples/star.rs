//! A hub and three leaves in one process, linked over loopback TCP: each leaf writes, every node
//! reads every write locally, then one leaf restarts and gets a full sync while the others carry
//! on. Prints each node's view and the hub's link status.
//!
//! `cargo run --release --example star`

use std::time::{Duration, Instant};

use leafcache::{LinkState, Node};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Node::builder()
        .name("hub")
        .secret("example secret")
        .local_address("127.0.0.1:0")
        .build()?;
    let addr = hub.local_addr().expect("a hub listens").to_string();
    println!("hub listening on {addr}");
    let leaf = |name: &str| {
        Node::builder()
            .name(name)
            .secret("example secret")
            .remote_address(&addr)
            .build()
    };
    let mut leaves = vec![leaf("leaf-a")?, leaf("leaf-b")?, leaf("leaf-c")?];

    for (i, l) in leaves.iter().enumerate() {
        // An acknowledged write returns once the hub applied it.
        l.default_cache()
            .set_acked(format!("greeting-{i}"), format!("hello from {}", l.name()))
            .await?;
    }
    wait_until("every leaf sees every greeting", || {
        leaves
            .iter()
            .all(|l| (0..3).all(|i| l.default_cache().contains(format!("greeting-{i}"))))
    })
    .await;
    for l in &leaves {
        let c = l.default_cache();
        let seen: Vec<String> = (0..3)
            .map(|i| String::from_utf8_lossy(&c.get(format!("greeting-{i}")).unwrap()).into_owned())
            .collect();
        println!("{} reads locally: {seen:?}", l.name());
    }

    // A leaf restarts without persistence: it comes back empty and gets a full sync.
    leaves[2].shutdown().await;
    leaves[2] = leaf("leaf-c")?;
    wait_until("the restarted leaf is back in sync", || {
        leaves[2].default_cache().len() == 3
    })
    .await;
    println!(
        "leaf-c restarted and resynced: {} entries",
        leaves[2].default_cache().len()
    );

    // Link statuses are republished every 10 ms while a link is busy.
    wait_until("the hub's link status is current", || {
        hub.links()
            .iter()
            .filter(|s| s.state == LinkState::Up)
            .map(|s| s.changes_in)
            .sum::<u64>()
            == 2
    })
    .await;
    for st in hub.links().iter().filter(|s| s.state == LinkState::Up) {
        println!(
            "hub link to {:<7} up, {} changes out, {} in, last resync: {:?}",
            st.peer_name.as_deref().unwrap_or("?"),
            st.changes_out,
            st.changes_in,
            st.sync.as_ref().map(|s| (s.kind, s.changes))
        );
    }
    for l in &leaves {
        l.shutdown().await;
    }
    hub.shutdown().await;
    Ok(())
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
