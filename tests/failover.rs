//! A leaf with several hubs over real sockets: at start it links to the first it can reach;
//! when its hub is SIGKILLed under a write load it fails over to the next, and every write a hub
//! acknowledged is then at every live node; when an earlier hub is back it moves back to it.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leafcache::Node;
use leafcache::replication::LinkState;
use leafcache::topology::Topology;
use redis::Commands;
use support::eventually;

const BIN: &str = env!("CARGO_BIN_EXE_leafcache");
const WAIT: Duration = Duration::from_secs(30);

use support::free_port;

/// The leaf's upstream link is up, to `address`.
async fn up_to(leaf: &Node, address: &str) {
    eventually(WAIT, &format!("the leaf up to {address}"), || {
        let st = leaf.links();
        match st.first() {
            Some(s) if s.state == LinkState::Up && s.address == address => Ok(()),
            _ => Err(format!("{st:?}")),
        }
    })
    .await;
}

fn node(name: &str, listen: Option<&str>, hubs: &[&str]) -> Node {
    let mut b = Node::builder()
        .name(name)
        .secret("s3cret")
        .connection_timeout("1s");
    if let Some(l) = listen {
        b = b.local_address(l);
    }
    if !hubs.is_empty() {
        b = b.remote_addresses(hubs.iter().copied());
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_starts_on_the_first_hub_it_reaches_and_moves_back_to_an_earlier_one() {
    let first = format!("127.0.0.1:{}", free_port());
    let second = node("second", Some("127.0.0.1:0"), &[]);
    let second_addr = second.local_addr().unwrap().to_string();
    // The first hub is not running: the leaf links to the second without waiting on the first.
    let leaf = node("leaf", None, &[&first, &second_addr]);
    up_to(&leaf, &second_addr).await;
    leaf.default_cache()
        .set("while-on-the-second", "1")
        .unwrap();
    eventually(WAIT, "the write at the second hub", || {
        second
            .default_cache()
            .get("while-on-the-second")
            .map(|_| ())
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    // The first hub comes up: the leaf moves back to it (it tries every two timeouts), and
    // it gets what the leaf holds, though they never met.
    let first_hub = node("first", Some(&first), &[]);
    up_to(&leaf, &first).await;
    eventually(WAIT, "the first hub has the leaf's write", || {
        first_hub
            .default_cache()
            .get("while-on-the-second")
            .map(|_| ())
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    leaf.default_cache().set("after-moving-back", "2").unwrap();
    eventually(WAIT, "the new write at the first hub", || {
        first_hub
            .default_cache()
            .get("after-moving-back")
            .map(|_| ())
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    for n in [&leaf, &first_hub, &second] {
        n.shutdown().await;
    }
}

struct Proc(Child);

impl Proc {
    fn start(file: &Path, name: &str) -> Proc {
        let mut child = Command::new(BIN)
            .args(["node", "--topology", file.to_str().unwrap(), "--name", name])
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // It prints its addresses, then "running ...": it is bound.
        let out = child.stdout.take().unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(out));
        loop {
            let Some(Ok(line)) = lines.next() else {
                // It ended before running: say why.
                let mut why = String::new();
                let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut why);
                panic!("node {name} stopped before it ran: {why}");
            };
            if line.starts_with("running") {
                break;
            }
        }
        // Its log is not read: drain it so that it never blocks on a full pipe.
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || std::io::copy(&mut { err }, &mut std::io::sink()));
        std::thread::spawn(move || lines.for_each(drop));
        Proc(child)
    }

    fn kill(&mut self) {
        self.0.kill().unwrap(); // SIGKILL
        self.0.wait().unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_acknowledged_write_survives_a_sigkilled_hub_and_the_failover() {
    let dir = support::temp_dir("failover");
    let port = |_| free_port();
    let [core, eu1, eu2, r0, r1, r2]: [u16; 6] = std::array::from_fn(port);
    let file = dir.join("failover.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[cluster]
name = "failover"
secret = "test-secret"

[defaults]
connection_timeout = "1s"

[[node]]
name = "core"
listen = "127.0.0.1:{core}"
resp = "127.0.0.1:{r0}"

[[node]]
name = "eu-1"
hub = "core"
listen = "127.0.0.1:{eu1}"
resp = "127.0.0.1:{r1}"

[[node]]
name = "eu-2"
hub = "core"
listen = "127.0.0.1:{eu2}"
resp = "127.0.0.1:{r2}"

[[node]]
name = "leaf"
hub = ["eu-1", "eu-2"]
"#
        ),
    )
    .unwrap();
    let _core = Proc::start(&file, "core");
    let mut first = Proc::start(&file, "eu-1");
    let _second = Proc::start(&file, "eu-2");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let topology = Topology::load(&file).unwrap();
    let leaf = rt.block_on(async { topology.start("leaf") }).unwrap();
    rt.block_on(up_to(&leaf, &format!("127.0.0.1:{eu1}")));

    // A writer of acknowledged writes, on until told to stop; a write that times out (while the
    // hub is dead) is not acknowledged and not counted.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = rt.spawn({
        let (cache, acked, stop) = (leaf.default_cache(), acked.clone(), stop.clone());
        async move {
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("k{i:06}");
                if cache.set_acked(key.clone(), format!("v{i}")).await.is_ok() {
                    acked.lock().unwrap().push(key);
                }
                i += 1;
            }
            i
        }
    });
    let count = || acked.lock().unwrap().len();
    let deadline = Instant::now() + WAIT;
    while count() < 300 {
        assert!(
            Instant::now() < deadline,
            "the first hub acknowledged {} writes",
            count()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    first.kill();
    let before = count();
    rt.block_on(up_to(&leaf, &format!("127.0.0.1:{eu2}")));
    let deadline = Instant::now() + WAIT;
    while count() < before + 300 {
        assert!(
            Instant::now() < deadline,
            "the second hub acknowledged {} writes",
            count() - before
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = rt.block_on(writer).unwrap();
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "{written} written, {} acknowledged ({before} by the first hub)",
        acked.len()
    );

    // Every acknowledged write at every live node: the leaf, the second hub, the core.
    for key in &acked {
        assert!(leaf.default_cache().get(key).is_some(), "{key} at the leaf");
    }
    for (name, port) in [("eu-2", r2), ("core", r0)] {
        let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            let missing: Vec<&String> = acked
                .iter()
                .filter(|k| conn.get::<_, Option<String>>(k.as_str()).unwrap().is_none())
                .collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} lacks {} acknowledged writes, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    rt.block_on(leaf.shutdown());
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_failing_over_to_a_hub_it_never_met_is_sent_only_the_difference() {
    use support::proxy::Proxy;
    // core ← second (a leaf of the core, and a hub); core ← leaf through a cuttable proxy, with
    // the second as its fallback.
    let core = node("core", Some("127.0.0.1:0"), &[]);
    let core_addr = core.local_addr().unwrap().to_string();
    let second = node("second", Some("127.0.0.1:0"), &[&core_addr]);
    let second_addr = second.local_addr().unwrap().to_string();
    let proxy = Proxy::start(&core_addr).await;
    let leaf = node("leaf", None, &[proxy.addr(), &second_addr]);
    up_to(&leaf, proxy.addr()).await;
    let cache = core.default_cache();
    for i in 0..20_000 {
        cache
            .set(format!("key{i:05}"), format!("value {i}"))
            .unwrap();
    }
    eventually(WAIT, "20,000 entries everywhere", || {
        let n = [&leaf, &second].map(|n| n.default_cache().len());
        if n == [20_000, 20_000] {
            Ok(())
        } else {
            Err(format!("{n:?}"))
        }
    })
    .await;
    // The leaf loses its hub; 100 keys change meanwhile, and reach the second hub.
    proxy.cut();
    for i in (0..20_000).step_by(200) {
        cache.set(format!("key{i:05}"), "changed").unwrap();
    }
    eventually(WAIT, "the changes at the second hub", || {
        let changed = second.default_cache().get("key19800");
        if changed.as_deref() == Some(&b"changed"[..]) {
            Ok(())
        } else {
            Err(format!("{changed:?}"))
        }
    })
    .await;
    up_to(&leaf, &second_addr).await;
    eventually(WAIT, "the changes at the leaf", || {
        let all = (0..20_000).step_by(200).all(|i| {
            leaf.default_cache().get(format!("key{i:05}")).as_deref() == Some(&b"changed"[..])
        });
        if all { Ok(()) } else { Err("not yet".into()) }
    })
    .await;
    // Each way, a resync by difference: the records of the 100 buckets that differ (the 100
    // keys and the few that share their buckets), instead of 20,000 — toward the leaf the new
    // values, toward the hub the leaf's old ones (which the hub, holding newer, ignores).
    let done = |links: Vec<leafcache::LinkStatus>| {
        links
            .into_iter()
            .find(|l| l.state == LinkState::Up && l.peer_name.as_deref() != Some("core"))
            .and_then(|l| l.sync)
            .filter(|s| s.done)
    };
    let mut syncs = None;
    eventually(WAIT, "both resyncs done", || {
        syncs = done(second.links()).zip(done(leaf.links()));
        syncs
            .as_ref()
            .map(|_| ())
            .ok_or_else(|| format!("{:?}", second.links()))
    })
    .await;
    let (toward_leaf, toward_hub) = syncs.unwrap();
    assert_eq!(
        toward_leaf.kind,
        leafcache::SyncKind::Digest,
        "{toward_leaf:?}"
    );
    assert!(
        (100..=200).contains(&toward_leaf.changes),
        "{toward_leaf:?}"
    );
    assert_eq!(
        toward_hub.kind,
        leafcache::SyncKind::Digest,
        "{toward_hub:?}"
    );
    assert!((100..=200).contains(&toward_hub.changes), "{toward_hub:?}");
    eprintln!("toward the leaf: {toward_leaf:?}\ntoward the hub: {toward_hub:?}");
    // The digests went in two rounds: 2^10 coarse sums, then the fine sums (of 2^15) under the
    // ~100 coarse buckets that differ. A few KB each way, where all 2^15 fine sums would be
    // 128 KiB of incompressible bytes.
    for (who, links) in [("leaf", leaf.links()), ("second", second.links())] {
        let link = links
            .iter()
            .find(|l| l.state == LinkState::Up && l.peer_name.as_deref() != Some("core"))
            .unwrap();
        eprintln!(
            "{who} sent {} bytes in {} frames",
            link.bytes_out, link.frames_out
        );
        assert!(link.bytes_out < 48 * 1024, "{who}: {link:?}");
    }
    assert_eq!(leaf.default_cache().len(), 20_000);
    for n in [&leaf, &second, &core] {
        n.shutdown().await;
    }
}
