//! Persistence under the cache root, through the library: restart with the same data, identity
//! and seq; private files; crash images (a copy of a running node's root is what SIGKILL leaves);
//! truncated op logs and corrupt snapshots loading their valid prefix and converging with a peer;
//! a leaf restarted after a short outage resyncing by delta; purge leaving nothing on disk.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use leafcache::{
    Cache, CacheConfig, Direction, Error, Flush, LinkState, ManualClock, Node, NodeBuilder,
    SyncKind,
};
use support::{converged, eventually};

const WAIT: Duration = Duration::from_secs(10);

fn temp_root(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("leafcache-{tag}-{}", uuid::Uuid::new_v4()))
}

/// A copy of a running node's root: what the node would leave if it were killed now (with
/// `Flush::Always`, every change is in the files; nothing is written at exit).
fn crash_image(root: &Path, tag: &str) -> PathBuf {
    let copy = temp_root(tag);
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(root).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            // A file can vanish between the listing and the copy: an op-log segment a finished
            // snapshot covers, or a temp file renamed. Restore ignores both, so the image without
            // it is still one a crash could leave.
            match std::fs::copy(entry.path(), copy.join(entry.file_name())) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("copying {}: {e}", entry.path().display()),
            }
        }
    }
    copy
}

fn segments(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("oplog-")
        })
        .collect();
    out.sort();
    out
}

fn persisted(root: &Path) -> NodeBuilder {
    Node::builder()
        .root(root)
        .snapshot_interval("1h")
        .flush(Flush::Always)
}

async fn hub() -> Node {
    Node::builder()
        .name("hub")
        .local_address("127.0.0.1:0")
        .connection_timeout("2s")
        .build()
        .unwrap()
}

fn leaf_of(hub: &Node, root: &Path) -> NodeBuilder {
    persisted(root)
        .name("leaf")
        .remote_address(hub.local_addr().unwrap())
        .connection_timeout("2s")
}

async fn link_up(node: &Node) {
    eventually(WAIT, "the upstream link is up", || {
        match node
            .links()
            .iter()
            .find(|l| l.direction == Direction::Upstream)
        {
            Some(l) if l.state == LinkState::Up => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

fn keys(cache: &Cache, n: usize) -> Vec<bool> {
    (0..n).map(|i| cache.contains(format!("k{i:04}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarts_with_its_entries_identity_and_seq() {
    let root = temp_root("restart");
    let clock = ManualClock::new(1_000_000);
    let build = || {
        persisted(&root)
            .clock(clock.clone())
            .default_cache(CacheConfig::new().max_entries(1_000))
            .cache("sessions", CacheConfig::new().max_entries(3).shards(1))
            .build()
            .unwrap()
    };
    let node = build();
    let (id, incarnation) = (node.id(), node.incarnation());
    let cache = node.default_cache();
    for i in 0..100 {
        cache.set(format!("k{i:04}"), format!("v{i}")).unwrap();
    }
    cache.delete("k0007");
    cache
        .set_with_ttl("short", "gone after restart", Duration::from_secs(10))
        .unwrap();
    cache
        .set_with_ttl("long", "still here", Duration::from_secs(3_600))
        .unwrap();
    let sessions = node.cache("sessions").unwrap();
    for k in ["a", "b", "c"] {
        sessions.set(k, k).unwrap();
    }
    sessions.get("a"); // b is now the least recently used
    // Half of the writes go into a snapshot, the rest only into the op log.
    let report = node.snapshot().unwrap();
    assert_eq!(report.entries, 99 + 2 + 3);
    cache.set("after-snapshot", "in the op log").unwrap();
    let seq = node.current_seq();
    node.shutdown().await;
    drop((node, cache, sessions));

    clock.advance(Duration::from_secs(60));
    let node = build();
    assert_eq!((node.id(), node.incarnation()), (id, incarnation));
    assert_eq!(
        node.current_seq(),
        seq,
        "a graceful stop resumes at the exact seq"
    );
    let cache = node.default_cache();
    assert_eq!(cache.len(), 99 + 2, "k0007 deleted, `short` expired");
    assert_eq!(cache.get("k0042").unwrap(), "v42");
    assert_eq!(cache.get("after-snapshot").unwrap(), "in the op log");
    assert_eq!(cache.get("long").unwrap(), "still here");
    assert!(!cache.contains("short"), "expired while the node was down");
    let stale = leafcache::Change::Set {
        key: "k0007".into(),
        value: "older than the delete".into(),
        version: cache.peek("k0008").unwrap().version,
        expires_at: None,
    };
    assert!(!cache.apply_remote(stale), "the tombstone came back too");
    let sessions = node.cache("sessions").unwrap();
    sessions.set("d", "d").unwrap();
    assert!(
        !sessions.contains("b") && sessions.contains("a"),
        "LRU order survived: b was evicted, not a"
    );
    assert!(cache.set("new", "write").is_ok());
    assert!(node.current_seq() > seq);
    node.shutdown().await;
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn files_are_private_and_a_root_serves_one_node() {
    let root = temp_root("perms");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let node = persisted(&root).build().unwrap();
    node.default_cache().set("k", "v").unwrap();
    node.snapshot().unwrap();
    node.default_cache().set("k2", "v").unwrap();

    let err = persisted(&root).build().unwrap_err();
    assert!(
        err.to_string().contains("in use by another running node"),
        "{err}"
    );
    assert!(matches!(err, leafcache::Error::RootInUse(_)), "{err:?}");
    let other = Node::builder()
        .root(&root)
        .node_id(leafcache::NodeId(42))
        .build()
        .unwrap_err();
    assert!(matches!(other, Error::RootInUse(_)), "{other}");

    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root), 0o700, "an existing root is tightened");
    let names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for name in ["lock", "identity", "snapshot"] {
        assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
    }
    assert!(names.iter().any(|n| n.starts_with("oplog-")), "{names:?}");
    for name in &names {
        assert_eq!(mode(&root.join(name)), 0o600, "{name}");
    }
    node.shutdown().await;
    drop(node);
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shut_down_releases_its_root_while_its_handles_live() {
    let root = temp_root("release");
    let node = persisted(&root).build().unwrap();
    let cache = node.default_cache();
    cache.set("k", "before").unwrap();
    node.shutdown().await;
    // The handles still answer, from memory; the root is free for the next node at once.
    cache.set("late", "not persisted").unwrap();
    assert_eq!(cache.get("k").unwrap(), "before");
    assert!(
        node.snapshot().is_err(),
        "a released root takes no snapshot"
    );
    let next = persisted(&root).build().unwrap();
    assert_eq!(next.default_cache().get("k").unwrap(), "before");
    cache.set("later", "still not persisted").unwrap();
    assert_eq!(next.default_cache().get("late"), None);
    next.shutdown().await;
    drop((node, cache));
    let last = persisted(&root).build().unwrap();
    assert_eq!(last.default_cache().get("later"), None);
    assert_eq!(last.default_cache().get("k").unwrap(), "before");
    last.shutdown().await;
}

#[tokio::test]
async fn settings_without_a_root_are_refused() {
    let err = Node::builder().flush(Flush::Always).build().unwrap_err();
    assert!(err.to_string().contains("needs a root"), "{err}");
    let err = Node::builder()
        .root(temp_root("zero"))
        .snapshot_interval(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(
        matches!(err, Error::ZeroDuration { what: "snapshot" }),
        "{err}"
    );
    assert!(matches!(
        Node::builder().build().unwrap().snapshot(),
        Err(Error::NoRoot)
    ));
    // A root that is a file says so, as does one below a file.
    let file = temp_root("file");
    std::fs::write(&file, "not a directory").unwrap();
    for root in [file.clone(), file.join("below")] {
        let err = Node::builder().root(&root).build().unwrap_err().to_string();
        assert!(
            err.contains("is a file, not a directory") && err.contains(&*file.to_string_lossy()),
            "{err}"
        );
    }
    std::fs::remove_file(file).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_image_with_flush_always_holds_every_write() {
    let root = temp_root("always");
    let node = persisted(&root).build().unwrap();
    let cache = node.default_cache();
    for i in 0..500 {
        cache.set(format!("k{i:04}"), format!("v{i}")).unwrap();
        if i == 200 {
            node.snapshot().unwrap();
        }
    }
    cache.delete("k0300");
    let image = crash_image(&root, "always-image");
    node.shutdown().await;
    drop((node, cache));

    let node = persisted(&image).build().unwrap();
    let cache = node.default_cache();
    assert_eq!(cache.len(), 499);
    assert_eq!(cache.get("k0499").unwrap(), "v499");
    assert!(!cache.contains("k0300"));
    node.shutdown().await;
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(&image).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_never_reissues_a_version_even_after_losing_the_log_tail() {
    // The clock stands still and the op log is never written: after the crash, nothing of the
    // writes is on disk, yet the versions the node hands out next are above all it issued before
    // (a peer may hold them), thanks to the clock lease in the identity file.
    let clock = ManualClock::new(1_700_000_000_000);
    let root = temp_root("clock-lease");
    let build = |root: &Path| {
        Node::builder()
            .root(root)
            .snapshot_interval("1h")
            .flush(Flush::Never)
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let node = build(&root);
    let cache = node.default_cache();
    let mut last = cache.set("x", "0").unwrap();
    for i in 1..1000 {
        last = cache.set("x", i.to_string()).unwrap();
    }
    let image = crash_image(&root, "clock-lease-image");
    node.shutdown().await;
    drop((node, cache));

    let crashed = build(&image);
    assert!(
        !crashed.default_cache().contains("x"),
        "the writes were lost"
    );
    let next = crashed.default_cache().set("x", "after the crash").unwrap();
    assert!(next > last, "{next:?} is not above {last:?}");
    assert_eq!(
        next.node, last.node,
        "a node with a root keeps its writer id"
    );
    crashed.shutdown().await;
    drop(crashed);

    // After a graceful stop the clock resumes exactly where it stopped.
    let again = build(&root);
    let resumed = again
        .default_cache()
        .set("x", "after a clean stop")
        .unwrap();
    assert!(resumed > last);
    assert_eq!(resumed.ts.physical_ms(), last.ts.physical_ms());
    again.shutdown().await;
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(&image).unwrap();
}

/// The op log cut at byte offsets spread over the whole segment: each restart loads exactly a
/// prefix of the writes (they were logged in order), then takes the rest back from the hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_op_log_loads_a_prefix_and_converges() {
    let hub = hub().await;
    let root = temp_root("trunc");
    let leaf = leaf_of(&hub, &root).build().unwrap();
    link_up(&leaf).await;
    let cache = leaf.default_cache();
    for i in 0..200 {
        cache
            .set_acked(format!("k{i:04}"), format!("v{i}"))
            .await
            .unwrap();
    }
    let image = crash_image(&root, "trunc-image");
    leaf.shutdown().await;
    drop((leaf, cache));
    let segment_len = std::fs::metadata(&segments(&image)[0]).unwrap().len();

    for cut in [
        segment_len / 7,
        segment_len / 3,
        segment_len / 2 + 13,
        segment_len - 5,
    ] {
        let copy = crash_image(&image, "trunc-copy");
        let segment = segments(&copy).pop().unwrap();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap();
        f.set_len(cut).unwrap();
        drop(f);

        let leaf = leaf_of(&hub, &copy)
            .remote_address("127.0.0.1:9") // not yet: first look at what was restored
            .build()
            .unwrap();
        let loaded = keys(&leaf.default_cache(), 200);
        let prefix = loaded.iter().take_while(|&&k| k).count();
        assert!(
            loaded[prefix..].iter().all(|&k| !k),
            "cut at {cut}: restored keys are not a prefix: {loaded:?}"
        );
        assert!(
            prefix > 0 && prefix < 200,
            "cut at {cut} of {segment_len}: {prefix}"
        );
        leaf.shutdown().await;
        drop(leaf);

        let leaf = leaf_of(&hub, &copy).build().unwrap();
        link_up(&leaf).await;
        let cache = leaf.default_cache();
        eventually(
            WAIT,
            "the leaf takes the lost tail back from the hub",
            || {
                let have = keys(&cache, 200).iter().filter(|&&k| k).count();
                (have == 200).then_some(()).ok_or(format!("{have} of 200"))
            },
        )
        .await;
        converged(&[&hub, &leaf]).unwrap();
        leaf.shutdown().await;
        drop((leaf, cache));
        std::fs::remove_dir_all(&copy).unwrap();
    }
    hub.shutdown().await;
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(&image).unwrap();
}

/// Bytes flipped in the middle of the snapshot: the entries before them load, the node forgets
/// its watermarks, and the hub sends it a full copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_snapshot_loads_its_valid_prefix_and_a_full_sync_repairs_it() {
    let hub = hub().await;
    let hub_cache = hub.default_cache();
    for i in 0..300 {
        hub_cache.set(format!("k{i:04}"), format!("v{i}")).unwrap();
    }
    let root = temp_root("corrupt");
    let leaf = leaf_of(&hub, &root).build().unwrap();
    link_up(&leaf).await;
    eventually(WAIT, "the leaf has the hub's 300 keys", || {
        converged(&[&hub, &leaf])?;
        let n = leaf.default_cache().len();
        (n == 300).then_some(()).ok_or(format!("{n}"))
    })
    .await;
    leaf.shutdown().await; // writes the snapshot
    drop(leaf);
    let snapshot = root.join("snapshot");
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 4] {
        *b ^= 0xA5;
    }
    std::fs::write(&snapshot, &bytes).unwrap();

    let leaf = leaf_of(&hub, &root)
        .remote_address("127.0.0.1:9")
        .build()
        .unwrap();
    let loaded = leaf.default_cache().len();
    assert!(loaded > 0 && loaded < 300, "{loaded} keys loaded");
    for i in 0..300 {
        if let Some(v) = leaf.default_cache().get(format!("k{i:04}")) {
            assert_eq!(v, format!("v{i}"), "nothing damaged is loaded");
        }
    }
    leaf.shutdown().await;
    drop(leaf);

    let leaf = leaf_of(&hub, &root).build().unwrap();
    link_up(&leaf).await;
    eventually(WAIT, "a full sync brings back every key", || {
        converged(&[&hub, &leaf])?;
        let n = leaf.default_cache().len();
        (n == 300).then_some(()).ok_or(format!("{n}"))
    })
    .await;
    let toward_leaf = hub
        .links()
        .into_iter()
        .filter(|l| l.direction == Direction::Downstream && l.state == LinkState::Up)
        .collect::<Vec<_>>();
    assert_eq!(toward_leaf.len(), 1);
    assert_eq!(toward_leaf[0].sync.clone().unwrap().kind, SyncKind::Full);
    leaf.shutdown().await;
    hub.shutdown().await;
    std::fs::remove_dir_all(&root).unwrap();
}

/// A leaf stops for a moment; the hub changes 50 keys meanwhile. When the leaf is back, the hub
/// sends exactly those 50 changes, and the leaf sends nothing it had already sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_leaf_resyncs_by_delta() {
    let hub = hub().await;
    let hub_cache = hub.default_cache();
    for i in 0..1_000 {
        hub_cache.set(format!("k{i:04}"), "first").unwrap();
    }
    let root = temp_root("delta");
    let leaf = leaf_of(&hub, &root)
        .flush(Flush::Every(Duration::from_millis(20)))
        .build()
        .unwrap();
    leaf.default_cache().set("from-leaf", "x").unwrap();
    eventually(
        WAIT,
        "the leaf has the hub's keys and the hub the leaf's",
        || {
            converged(&[&hub, &leaf])?;
            let (h, l) = (hub_cache.len(), leaf.default_cache().len());
            (h == 1_001 && l == 1_001)
                .then_some(())
                .ok_or(format!("{h} {l}"))
        },
    )
    .await;
    leaf.shutdown().await;
    drop(leaf);

    for i in 0..25 {
        hub_cache.set(format!("k{i:04}"), "second").unwrap();
        hub_cache
            .set(format!("new{i}"), "while the leaf was away")
            .unwrap();
    }
    let leaf = leaf_of(&hub, &root).build().unwrap();
    link_up(&leaf).await;
    eventually(WAIT, "the leaf catches up", || {
        converged(&[&hub, &leaf])?;
        let l = leaf.default_cache().len();
        (l == 1_026).then_some(()).ok_or(format!("{l}"))
    })
    .await;
    let down: Vec<_> = hub
        .links()
        .into_iter()
        .filter(|l| l.direction == Direction::Downstream && l.state == LinkState::Up)
        .collect();
    assert_eq!(down.len(), 1);
    let sync = down[0].sync.clone().unwrap();
    assert_eq!((sync.kind, sync.changes), (SyncKind::Delta, 50), "{sync:?}");
    let up = leaf
        .links()
        .into_iter()
        .find(|l| l.direction == Direction::Upstream)
        .unwrap();
    let sync = up.sync.unwrap();
    assert_eq!((sync.kind, sync.changes), (SyncKind::Delta, 0), "{sync:?}");
    leaf.shutdown().await;
    hub.shutdown().await;
    std::fs::remove_dir_all(&root).unwrap();
}

/// A purge leaves none of the purged bytes on disk once its snapshot is written, and stays in
/// force after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_empties_the_files_of_its_cache() {
    let root = temp_root("purge");
    let node = persisted(&root)
        .cache("keep", CacheConfig::new())
        .build()
        .unwrap();
    let cache = node.default_cache();
    for i in 0..50 {
        cache
            .set(format!("k{i}"), format!("purged-value-{i}"))
            .unwrap();
    }
    node.cache("keep")
        .unwrap()
        .set("kept", "kept-value")
        .unwrap();
    node.snapshot().unwrap();
    let old = cache.peek("k1").unwrap().version;
    cache.purge();
    let on_disk = |needle: &[u8]| {
        std::fs::read_dir(&root).unwrap().any(|e| {
            let bytes = std::fs::read(e.unwrap().path()).unwrap_or_default();
            bytes.windows(needle.len()).any(|w| w == needle)
        })
    };
    eventually(
        WAIT,
        "the purge's snapshot takes the values off the disk",
        || {
            (!on_disk(b"purged-value-"))
                .then_some(())
                .ok_or("still on disk".into())
        },
    )
    .await;
    assert!(on_disk(b"kept-value"), "the other cache keeps its data");
    cache.set("after", "the purge").unwrap();
    // Killed now: the purge is in the snapshot, the write after it in the op log.
    let image = crash_image(&root, "purge-image");
    node.shutdown().await;
    drop((node, cache));

    let node = persisted(&image)
        .cache("keep", CacheConfig::new())
        .build()
        .unwrap();
    assert_eq!(node.default_cache().len(), 1);
    assert_eq!(node.default_cache().get("after").unwrap(), "the purge");
    assert!(!node.default_cache().apply_remote(leafcache::Change::Set {
        key: "k1".into(),
        value: "from before the purge".into(),
        version: old,
        expires_at: None,
    }));
    node.shutdown().await;
    drop(node);
    std::fs::remove_dir_all(&image).unwrap();

    let node = persisted(&root)
        .cache("keep", CacheConfig::new())
        .build()
        .unwrap();
    assert_eq!(node.default_cache().len(), 1);
    assert_eq!(
        node.cache("keep").unwrap().get("kept").unwrap(),
        "kept-value"
    );
    let stale = leafcache::Change::Set {
        key: "k1".into(),
        value: "from before the purge".into(),
        version: old,
        expires_at: None,
    };
    assert!(
        !node.default_cache().apply_remote(stale),
        "the purge mark was restored"
    );
    node.shutdown().await;
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_and_hashes_come_back_from_the_snapshot_and_the_op_log() {
    let root = temp_root("merged");
    let node = persisted(&root).build().unwrap();
    let cache = node.default_cache();
    for _ in 0..10 {
        cache.incr("n", 3).unwrap();
    }
    cache.hset("h", "a", "1").unwrap();
    cache.hincr("h", "visits", 2).unwrap();
    cache.incr("gone", 1).unwrap();
    node.snapshot().unwrap();
    // After the snapshot: in the op log only.
    cache.incr("n", 5).unwrap();
    cache.hset("h", "b", "2").unwrap();
    cache.hdel("h", ["a"]).unwrap();
    cache.hincr("h", "visits", 1).unwrap();
    cache.set("n2", "10").unwrap();
    cache.incr("n2", 1).unwrap();
    cache.delete("gone");
    let image = crash_image(&root, "merged-image");
    node.shutdown().await;
    drop((node, cache));

    for root in [&root, &image] {
        let node = persisted(root).build().unwrap();
        let cache = node.default_cache();
        assert_eq!(cache.get("n").unwrap(), "35");
        assert_eq!(cache.get("n2").unwrap(), "11");
        assert_eq!(cache.get("gone"), None);
        let fields = cache.hgetall("h").unwrap();
        assert_eq!(
            fields,
            vec![("b".into(), "2".into()), ("visits".into(), "3".into())]
        );
        // Counting goes on from there, in a new run's part.
        assert_eq!(cache.incr("n", 1).unwrap(), 36);
        node.shutdown().await;
    }
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(&image).unwrap();
}
