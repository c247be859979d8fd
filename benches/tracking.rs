//! Invalidation latency of client-side caching: from a write sent at leaf-a to the invalidation
//! push read by a tracking RESP3 client of leaf-b (through the hub: two link hops), p50 and p99;
//! and, in the same run, redis-server's latency from a write to the push on one server (no hop),
//! when it is installed.
//!
//! ```sh
//! cargo bench --bench tracking               # ROUNDS=5000 for more samples
//! ```

#[path = "../tests/support/resp.rs"]
mod resp;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use resp::{Client, V};

fn rounds() -> usize {
    std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2000)
}

/// Times `rounds` write→push trips: the tracker reads the key (tracking it), the writer writes it,
/// the tracker waits for the push.
fn measure(writer_addr: &str, tracker_addr: &str, rounds: usize) -> Vec<Duration> {
    let mut tracker = Client::connect(tracker_addr);
    assert!(matches!(tracker.cmd("HELLO 3"), V::Map(_)));
    assert_eq!(tracker.cmd("CLIENT TRACKING on"), V::Simple("OK".into()));
    let mut writer = Client::connect(writer_addr);
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds + 100 {
        let _ = tracker.cmd("GET bench:tracked");
        let start = Instant::now();
        writer.send(&[b"SET", b"bench:tracked", i.to_string().as_bytes()]);
        match tracker.read() {
            V::Push(p) if p[0] == V::b("invalidate") => {}
            other => panic!("unexpected {other:?}"),
        }
        let took = start.elapsed();
        assert_eq!(writer.read(), V::Simple("OK".into()));
        if i >= 100 {
            samples.push(took);
        }
    }
    samples.sort_unstable();
    samples
}

fn report(what: &str, samples: &[Duration]) {
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "{what:<48} p50 {:>7.1} µs   p99 {:>7.1} µs   max {:>8.1} µs   ({} writes)",
        at(0.50).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        samples[samples.len() - 1].as_secs_f64() * 1e6,
        samples.len()
    );
}

fn main() {
    let rounds = rounds();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let (_hub, a, b) = resp::two_leaves(leafcache::replication::BATCH_RECORDS);
    let (a_addr, b_addr) = (a.resp_addr().unwrap(), b.resp_addr().unwrap());
    // Let the links come up.
    let mut probe = Client::connect(a_addr);
    probe.cmd("SET bench:up 1");
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.default_cache().get("bench:up").is_none() {
        assert!(Instant::now() < deadline, "the tree did not form");
        std::thread::sleep(Duration::from_millis(10));
    }
    let tree = measure(a_addr, b_addr, rounds);
    let local = measure(b_addr, b_addr, rounds);

    let redis = TcpListener::bind("127.0.0.1:0")
        .ok()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port())
        .and_then(|port| {
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                // An empty directory: a dump.rdb where the bench runs would be loaded.
                .current_dir(tempdir_for_redis())
                .stdout(Stdio::null())
                .spawn()
                .ok()?;
            let addr = format!("127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(&addr).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            Some((child, addr))
        });
    report("leafcache: write at leaf-a -> push at leaf-b", &tree);
    report("leafcache: write and push at one leaf", &local);
    if let Some((mut child, addr)) = redis {
        let samples = measure(&addr, &addr, rounds);
        report("redis-server: write and push at one server", &samples);
        let _ = child.kill();
        let _ = child.wait();
    } else {
        println!("redis-server not installed: no side-by-side figure");
    }
}

/// A fresh directory for a redis-server to run in.
fn tempdir_for_redis() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("leafcache-bench-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
