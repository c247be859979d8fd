//! Replication figures on loopback TCP, all nodes in this process:
//! 1. latency leaf → hub → leaf at 2,000 writes/s (p50, p99, max);
//! 2. sustained replicated writes/s from one writer at a hub with 2 leaves; the same with `INCR`s
//!    on 100k counters (`-- incr`), each replicated as the part that changed;
//! 3. delta resync after 1,000 keys changed during a partition of a 1M-entry cache, and the full
//!    sync of 1M entries to a new leaf (time and bytes).
//!
//! 4. a leaf of 1M entries failing over to a hub it never met that differs by 1,000 keys: what
//!    the resync by difference sends each way (`-- failover`).
//!
//! 5. 50 new leaves connecting at once to a hub of 100k entries, with 4 syncs at a time (the
//!    default) and with 50 (`-- storm`).
//!
//! `cargo bench --bench replication` (`-- latency|throughput|incr|resync|failover|storm` for one
//! part).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use leafcache::net::{DevCa, TlsFiles};
use leafcache::{CacheConfig, LinkState, Node, SyncKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn main() {
    let which = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let run = |name: &str| which.as_deref().is_none_or(|w| w == name);
    if run("latency") {
        rt.block_on(latency());
    }
    if run("throughput") {
        rt.block_on(throughput(false));
    }
    if run("incr") {
        rt.block_on(throughput(true));
    }
    if run("resync") {
        rt.block_on(resync());
    }
    if run("failover") {
        rt.block_on(failover());
    }
    if run("storm") {
        for slots in [4, 50] {
            rt.block_on(storm(slots));
        }
    }
}

/// With `LEAFCACHE_BENCH_TLS=1`, the TLS files every node of the run uses: a development CA and
/// one certificate for 127.0.0.1, made once in a temporary directory.
fn bench_tls() -> Option<TlsFiles> {
    static FILES: std::sync::OnceLock<Option<TlsFiles>> = std::sync::OnceLock::new();
    FILES
        .get_or_init(|| {
            if std::env::var("LEAFCACHE_BENCH_TLS").map_or(true, |v| v != "1") {
                return None;
            }
            let dir =
                std::env::temp_dir().join(format!("leafcache-bench-tls-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let ca = DevCa::new("leafcache").unwrap();
            let node = ca.issue(&["127.0.0.1".into()]).unwrap();
            let files = TlsFiles::new(
                dir.join("ca.pem"),
                dir.join("node.pem"),
                dir.join("node-key.pem"),
            );
            std::fs::write(&files.ca, ca.cert_pem()).unwrap();
            std::fs::write(&files.cert, node.cert_pem).unwrap();
            std::fs::write(&files.key, node.key_pem).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600)).unwrap();
            Some(files)
        })
        .clone()
}

fn node(name: &str, hub: Option<&str>, listen: bool, entries: u64) -> Node {
    // `LEAFCACHE_BENCH_COMPRESS=0` measures links without frame compression,
    // `LEAFCACHE_BENCH_TLS=1` links with TLS.
    let compress = std::env::var("LEAFCACHE_BENCH_COMPRESS").map_or(true, |v| v != "0");
    let mut b = Node::builder()
        .name(name)
        .secret("bench")
        .compression(compress)
        .default_cache(CacheConfig::new().max_entries(entries));
    if let Some(files) = bench_tls() {
        b = b.tls(files);
    }
    if let Some(h) = hub {
        b = b.remote_address(h);
    }
    if listen {
        b = b.local_address("127.0.0.1:0");
    }
    b.build().unwrap()
}

async fn wait_up(n: &Node) {
    while !n.links().iter().any(|l| l.state == LinkState::Up) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

async fn latency() {
    let hub = node("hub", None, true, 100_000);
    let addr = hub.local_addr().unwrap().to_string();
    let a = node("a", Some(&addr), false, 100_000);
    let b = node("b", Some(&addr), false, 100_000);
    wait_up(&a).await;
    wait_up(&b).await;
    let (ca, cb) = (a.default_cache(), b.default_cache());
    // The writer writes at leaf a every 500 µs and spins until the write is readable at leaf b.
    let samples = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let period = Duration::from_micros(500);
        let start = Instant::now();
        for i in 0..12_000u32 {
            let due = start + period * i;
            while Instant::now() < due {
                std::hint::spin_loop();
            }
            let key = format!("lat{}", i % 1000);
            let value = i.to_be_bytes().to_vec();
            let sent = Instant::now();
            ca.set(key.clone(), value.clone()).unwrap();
            loop {
                if cb.get(&key).is_some_and(|v| v[..] == value[..]) {
                    break;
                }
                if sent.elapsed() > Duration::from_secs(1) {
                    panic!("write {i} not replicated within 1 s");
                }
                std::hint::spin_loop();
            }
            if i >= 2_000 {
                out.push(sent.elapsed());
            }
        }
        out
    })
    .await
    .unwrap();
    let mut s = samples;
    s.sort();
    println!(
        "latency leaf→hub→leaf at 2,000 writes/s, {} samples: p50 {:?} p99 {:?} max {:?}",
        s.len(),
        percentile(&s, 0.50),
        percentile(&s, 0.99),
        s[s.len() - 1]
    );
    for n in [&hub, &a, &b] {
        n.shutdown().await;
    }
}

async fn throughput(incr: bool) {
    let hub = node("hub", None, true, 1_100_000);
    let addr = hub.local_addr().unwrap().to_string();
    let a = node("a", Some(&addr), false, 1_100_000);
    let b = node("b", Some(&addr), false, 1_100_000);
    wait_up(&a).await;
    wait_up(&b).await;
    let n = 1_000_000u64;
    let c = hub.default_cache();
    let cpu_before = cpu_time();
    let start = Instant::now();
    let writer = tokio::task::spawn_blocking(move || {
        let value = vec![b'v'; 64];
        for i in 0..n {
            // Updates over 100k keys: after the first pass the caches stop growing, as in a
            // steady state.
            let key = format!("key{:07}", i % 100_000);
            if incr {
                c.incr(key, 1).unwrap();
            } else {
                c.set(key, value.clone()).unwrap();
            }
        }
        Instant::now()
    });
    let written = writer.await.unwrap();
    let target = hub.current_seq();
    // Caught up: the hub's links report everything acknowledged.
    loop {
        let links = hub.links();
        if links.len() == 2 && links.iter().all(|l| l.acked >= target) {
            break;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let done = start.elapsed();
    let cpu = cpu_time() - cpu_before;
    let write_time = written - start;
    if incr {
        let sample = a.default_cache().get("key0000007").unwrap();
        assert_eq!(sample, "10", "every increment reached the leaf");
    }
    println!(
        "{}: {n} writes at the hub in {write_time:?} ({:.0}/s); both leaves caught up after {done:?}: {:.0} updates/s per link",
        if incr {
            "incr throughput"
        } else {
            "throughput"
        },
        n as f64 / write_time.as_secs_f64(),
        n as f64 / done.as_secs_f64()
    );
    println!(
        "  cpu (user + system, every thread of the process): {cpu:?} = {:.2} µs per update per link",
        cpu.as_secs_f64() * 1e6 / (2 * n) as f64
    );
    let st = hub.links();
    println!(
        "  frames out per link: {:?}, changes per frame {:.0}, bytes per change {:.0}",
        st.iter().map(|l| l.frames_out).collect::<Vec<_>>(),
        st[0].changes_out as f64 / st[0].frames_out.max(1) as f64,
        st[0].bytes_out as f64 / st[0].changes_out.max(1) as f64
    );
    for n in [&hub, &a, &b] {
        n.shutdown().await;
    }
}

/// The CPU time this process used so far, user and system, over all its threads.
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// A cuttable TCP forwarder between the leaf and the hub.
struct Cut {
    addr: String,
    open: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
}

async fn cuttable(target: String) -> Cut {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let open = Arc::new(AtomicBool::new(true));
    let generation = Arc::new(AtomicU64::new(0));
    let (o, g) = (open.clone(), generation.clone());
    tokio::spawn(async move {
        loop {
            let (leaf, _) = listener.accept().await.unwrap();
            if !o.load(Ordering::SeqCst) {
                continue;
            }
            let hub = TcpStream::connect(&target).await.unwrap();
            leaf.set_nodelay(true).unwrap();
            hub.set_nodelay(true).unwrap();
            let gen_now = g.load(Ordering::SeqCst);
            let (lr, lw) = leaf.into_split();
            let (hr, hw) = hub.into_split();
            for (mut r, mut w) in [(lr, hw), (hr, lw)] {
                let g = g.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 256 << 10];
                    loop {
                        let n = match r.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if g.load(Ordering::SeqCst) != gen_now
                            || w.write_all(&buf[..n]).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        }
    });
    Cut {
        addr,
        open,
        generation,
    }
}

async fn resync() {
    const N: u64 = 1_000_000;
    let hub = node("hub", None, true, N + 100_000);
    let c = hub.default_cache();
    let value = vec![b'v'; 64];
    for i in 0..N {
        c.set(format!("key{i:06}"), value.clone()).unwrap();
    }
    let proxy = cuttable(hub.local_addr().unwrap().to_string()).await;

    // Full sync of 1M entries to a new leaf.
    let start = Instant::now();
    let leaf = node("leaf", Some(&proxy.addr), false, N + 100_000);
    while leaf.default_cache().len() < N as usize {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let full_time = start.elapsed();
    let full = loop {
        // Statuses are republished every 10 ms: wait for the one saying the sync is done.
        match hub.links()[0].sync.clone() {
            Some(s) if s.done => break s,
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    assert_eq!(full.kind, SyncKind::Full);
    println!(
        "full sync of {N} entries (10-byte keys, 64-byte values): {full_time:?}, {} changes, {:.1} MB",
        full.changes,
        full.bytes as f64 / 1e6
    );

    // Cut, change 1,000 keys at the hub, heal.
    proxy.open.store(false, Ordering::SeqCst);
    proxy.generation.fetch_add(1, Ordering::SeqCst);
    while leaf.links().iter().any(|l| l.state == LinkState::Up) {
        // The leaf notices at its next write or heartbeat; nudge it with a write.
        tokio::time::sleep(Duration::from_millis(5)).await;
        leaf.default_cache().set("nudge", "x").unwrap();
    }
    let changed = vec![b'w'; 64];
    for i in 0..1_000u64 {
        c.set(format!("key{:06}", i * 997 % N), changed.clone())
            .unwrap();
    }
    let payload = 1_000 * (9 + 64);
    proxy.open.store(true, Ordering::SeqCst);
    let mut link_up = None;
    let last = format!("key{:06}", 999 * 997 % N);
    loop {
        if link_up.is_none()
            && hub.links().iter().any(|l| {
                l.state == LinkState::Up
                    && l.sync.as_ref().is_some_and(|s| s.kind == SyncKind::Delta)
            })
        {
            link_up = Some(Instant::now());
        }
        if let Some(t0) = link_up
            && leaf
                .default_cache()
                .get(&last)
                .is_some_and(|v| v[..] == changed[..])
        {
            let took = t0.elapsed();
            let delta = hub
                .links()
                .into_iter()
                .filter(|l| l.state == LinkState::Up)
                .find_map(|l| l.sync)
                .unwrap();
            println!(
                "delta resync of 1,000 changed keys in {N}: {} changes, {} bytes ({:.2}× the {payload}-byte payload), {took:?} from link up",
                delta.changes,
                delta.bytes,
                delta.bytes as f64 / payload as f64
            );
            break;
        }
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
    hub.shutdown().await;
    leaf.shutdown().await;
}

/// A leaf of 1M entries loses its hub (a cut); 1,000 keys change meanwhile and reach a second
/// hub, to which the leaf fails over: they never met, so each way the digests are compared and
/// only the records of the differing buckets sent.
async fn failover() {
    const N: u64 = 1_000_000;
    let core = node("core", None, true, N + 100_000);
    let core_addr = core.local_addr().unwrap().to_string();
    let second = node("second", Some(&core_addr), true, N + 100_000);
    let second_addr = second.local_addr().unwrap().to_string();
    let proxy = cuttable(core_addr.clone()).await;
    let compress = std::env::var("LEAFCACHE_BENCH_COMPRESS").map_or(true, |v| v != "0");
    let leaf = Node::builder()
        .name("leaf")
        .secret("bench")
        .compression(compress)
        .connection_timeout("2s")
        .default_cache(CacheConfig::new().max_entries(N + 100_000))
        .remote_addresses([proxy.addr.clone(), second_addr.clone()])
        .build()
        .unwrap();
    // The leaf must not meet the second hub before the failover: it starts on the core.
    let on = |n: &Node, address: &str| {
        (n.links().first()).is_some_and(|l| l.state == LinkState::Up && l.address == address)
    };
    while !on(&leaf, &proxy.addr) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let c = core.default_cache();
    let value = vec![b'v'; 64];
    for i in 0..N {
        c.set(format!("key{i:06}"), value.clone()).unwrap();
    }
    while leaf.default_cache().len() < N as usize || second.default_cache().len() < N as usize {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.open.store(false, Ordering::SeqCst);
    proxy.generation.fetch_add(1, Ordering::SeqCst);
    let changed = vec![b'w'; 64];
    for i in (0..N).step_by(1000) {
        c.set(format!("key{i:06}"), changed.clone()).unwrap();
    }
    let last = format!("key{:06}", N - 1000);
    while second
        .default_cache()
        .get(&last)
        .is_none_or(|v| v[..] != changed[..])
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        second
            .links()
            .iter()
            .all(|l| l.peer_name.as_deref() != Some("leaf")),
        "the leaf met the second hub before the failover"
    );
    let start = Instant::now();
    let up = loop {
        if on(&leaf, &second_addr) {
            break start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    while leaf
        .default_cache()
        .get(&last)
        .is_none_or(|v| v[..] != changed[..])
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let applied = start.elapsed() - up;
    let done = |links: Vec<leafcache::LinkStatus>| {
        links
            .into_iter()
            .find(|l| l.state == LinkState::Up && l.peer_name.as_deref() != Some("core"))
            .filter(|l| l.sync.as_ref().is_some_and(|s| s.done))
    };
    let (toward_leaf, toward_hub) = loop {
        if let (Some(a), Some(b)) = (done(second.links()), done(leaf.links())) {
            break (a, b);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // 1,000 changed entries: 10-byte key, 64-byte value, their version and framing, as the
    // delta resync above measures them (105 bytes each).
    let payload = 1_000.0 * 105.0;
    for (what, l) in [("hub → leaf", &toward_leaf), ("leaf → hub", &toward_hub)] {
        let s = l.sync.as_ref().unwrap();
        println!(
            "failover {what}: {:?} resync, {} changes in {} bytes ({:.2}x the differing payload); link bytes out {} (digest and control included), in {}",
            s.kind,
            s.changes,
            s.bytes,
            s.bytes as f64 / payload,
            l.bytes_out,
            l.bytes_in
        );
    }
    println!(
        "failover: the leaf was up on the second hub {up:?} after the changes reached it (connection_timeout 2 s), and held the last changed key {applied:?} later"
    );
    for n in [&leaf, &second, &core] {
        n.shutdown().await;
    }
}

#[path = "support/rss.rs"]
mod rss;

/// 50 new leaves connect at once to a hub of 100k entries: each needs a full sync; the hub sends
/// `slots` of them at a time. Time until every leaf holds everything, and the process's resident
/// memory at its highest meanwhile (every node is in this process: the leaves' 50 copies
/// included).
async fn storm(slots: usize) {
    const N: u64 = 100_000;
    let hub = Node::builder()
        .name("hub")
        .secret("bench")
        .local_address("127.0.0.1:0")
        .max_concurrent_syncs(slots)
        .default_cache(CacheConfig::new().max_entries(2 * N))
        .build()
        .unwrap();
    let value = vec![b'v'; 64];
    for i in 0..N {
        hub.default_cache()
            .set(format!("key{i:06}"), value.clone())
            .unwrap();
    }
    let addr = hub.local_addr().unwrap().to_string();
    let before = rss::rss_bytes();
    let start = Instant::now();
    let leaves: Vec<Node> = (0..50)
        .map(|i| node(&format!("l{i}"), Some(&addr), false, 2 * N))
        .collect();
    let mut peak_rss = before;
    let mut first = None;
    loop {
        peak_rss = peak_rss.max(rss::rss_bytes());
        let full = leaves
            .iter()
            .filter(|l| l.default_cache().len() as u64 >= N)
            .count();
        if full > 0 && first.is_none() {
            first = Some(start.elapsed());
        }
        if full == leaves.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "storm, 50 leaves × 100k entries, {slots} syncs at a time: first leaf full after {:?}, all after {:?}; peak syncs {}; resident memory +{} MB at most",
        first.unwrap(),
        start.elapsed(),
        hub.sync_slots().peak(),
        (peak_rss - before) >> 20
    );
    for n in leaves.iter().chain([&hub]) {
        n.shutdown().await;
    }
}
