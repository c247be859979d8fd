//! The `geo` scenario on the user-space WAN of the test support (`tests/support/wan.rs`): a core
//! and three regions (a hub and two leaves each) whose hubs reach the core over shaped links —
//! eu 40 ms / 100 Mbit/s, us 80 ms / 50 Mbit/s, ap 150 ms / 10 Mbit/s one way, jitter a tenth of
//! the latency. Measures:
//! 1. replication lag leaf → leaf across regions (p50, p99) against the configured latency;
//! 2. the resync of a region cut off while 100k changes were made elsewhere;
//! 3. a full sync of 250k entries over a 100 Mbit/s, 40 ms link, with and without compression
//!    and TLS.
//!
//! `cargo bench --bench geo`

#[path = "../tests/support/wan.rs"]
#[allow(dead_code)]
mod wan;

use std::time::{Duration, Instant};

use leafcache::net::{DevCa, TlsFiles};
use leafcache::{CacheConfig, LinkState, Node};
use wan::{Shape, Wan};

fn builder(name: &str) -> leafcache::NodeBuilder {
    Node::builder()
        .name(name)
        .secret("geo")
        .connection_timeout("5s")
        .default_cache(CacheConfig::new().max_entries(2_000_000))
}

fn node(name: &str, listen: bool, hub: Option<&str>) -> Node {
    let mut b = builder(name);
    if listen {
        b = b.local_address("127.0.0.1:0");
    }
    if let Some(h) = hub {
        b = b.remote_address(h);
    }
    b.build().unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(regions());
    rt.block_on(full_syncs());
}

async fn regions() {
    let (core, regions) = wan::geo(node).await;
    // 1. Lag: a write at an eu leaf every 20 ms, timed until a leaf in each other region reads it.
    let writer = regions[0].leaves[0].default_cache();
    for (to, physical) in [(1usize, 40 + 80), (2, 40 + 150)] {
        let reader = regions[to].leaves[1].default_cache();
        let mut lags = Vec::new();
        for i in 0..300u32 {
            let key = format!("lag{to}-{i}");
            let sent = Instant::now();
            writer.set(key.clone(), "v").unwrap();
            while reader.get(&key).is_none() {
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            lags.push(sent.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        lags.sort();
        println!(
            "lag eu leaf → {} leaf, 300 writes: p50 {:?} p99 {:?} (one-way latencies {physical} ms, jitter up to {} ms)",
            regions[to].name,
            percentile(&lags, 0.5),
            percentile(&lags, 0.99),
            physical / 10
        );
    }
    // 2. ap is cut off while 100k keys are written at an eu leaf, then healed.
    let ap = &regions[2];
    ap.wan.cut();
    while ap
        .hub
        .links()
        .first()
        .is_some_and(|l| l.state == LinkState::Up)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let value = vec![b'v'; 64];
    for i in 0..100_000u32 {
        writer.set(format!("part{i:06}"), value.clone()).unwrap();
    }
    let reader = ap.leaves[1].default_cache();
    while regions[0].hub.default_cache().get("part099999").is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = ap.wan.bytes_down.load(std::sync::atomic::Ordering::Relaxed);
    let start = Instant::now();
    ap.wan.heal();
    while reader.get("part099999").is_none() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = start.elapsed();
    let bytes = ap.wan.bytes_down.load(std::sync::atomic::Ordering::Relaxed) - before;
    let sync = ap.hub.links()[0].clone();
    println!(
        "resync of ap (10 Mbit/s, 150 ms) after 100k changes elsewhere: {took:?} until its leaf holds the last, {:.1} MB toward it; the core's sync to it: {:?}",
        bytes as f64 / 1e6,
        core.links()
            .into_iter()
            .find(|l| l.peer_name.as_deref() == Some("ap"))
            .and_then(|l| l.sync)
            .map(|s| (s.kind, s.changes))
    );
    drop(sync);
    for r in &regions {
        for n in [&r.hub, &r.leaves[0], &r.leaves[1]] {
            n.shutdown().await;
        }
    }
    core.shutdown().await;
}

fn tls_files() -> TlsFiles {
    let dir = std::env::temp_dir().join(format!("leafcache-geo-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = DevCa::new("leafcache").unwrap();
    let cert = ca.issue(&["127.0.0.1".into()]).unwrap();
    let files = TlsFiles::new(dir.join("ca.pem"), dir.join("n.pem"), dir.join("n-key.pem"));
    std::fs::write(&files.ca, ca.cert_pem()).unwrap();
    std::fs::write(&files.cert, cert.cert_pem).unwrap();
    std::fs::write(&files.key, cert.key_pem).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    files
}

/// 3. 250k entries at a core; a new hub joins over a 100 Mbit/s, 40 ms link.
async fn full_syncs() {
    const N: u32 = 250_000;
    let files = tls_files();
    for (compress, tls) in [(true, false), (false, false), (true, true), (false, true)] {
        let with = |b: leafcache::NodeBuilder| {
            let b = b.compression(compress);
            if tls { b.tls(files.clone()) } else { b }
        };
        let core = with(builder("core").local_address("127.0.0.1:0"))
            .build()
            .unwrap();
        let c = core.default_cache();
        let value = vec![b'v'; 64];
        for i in 0..N {
            c.set(format!("key{i:06}"), value.clone()).unwrap();
        }
        let shape = Shape::new(40, 4, 100);
        let wan = Wan::start(core.local_addr().unwrap(), shape, shape, 7).await;
        let start = Instant::now();
        let joiner = with(builder("joiner").remote_address(wan.addr()))
            .build()
            .unwrap();
        while joiner.default_cache().len() < N as usize {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let took = start.elapsed();
        let bytes = wan.bytes_down.load(std::sync::atomic::Ordering::Relaxed);
        println!(
            "full sync of {N} entries over 100 Mbit/s, 40 ms: compression {}, TLS {}: {took:?}, {:.1} MB",
            if compress { "on" } else { "off" },
            if tls { "on" } else { "off" },
            bytes as f64 / 1e6
        );
        joiner.shutdown().await;
        core.shutdown().await;
    }
}
