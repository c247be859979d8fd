//! Topology files through the library: what a valid file resolves to (paths, cache settings,
//! hubs, doors), the diagnostics' positions and rendering, and starting nodes from a file.

mod support;

use std::path::Path;
use std::time::Duration;

use leafcache::topology::{HubRef, SecretSource, Severity, Topology, TopologyError};
use leafcache::{LinkState, Role};
use support::eventually;

const HEADER: &str = "[cluster]\nname = \"t\"\nsecret = \"test\"\n";

fn parse(body: &str) -> Result<Topology, TopologyError> {
    Topology::parse(&format!("{HEADER}{body}"), "/etc/leafcache/t.toml")
}

/// The errors of an invalid file (its warnings follow them in `diagnostics()`).
fn errors(e: &TopologyError) -> Vec<&leafcache::topology::Diagnostic> {
    (e.diagnostics().iter())
        .filter(|d| d.severity == Severity::Error)
        .collect()
}

fn first_error(body: &str) -> (usize, usize, String) {
    let e = parse(body).expect_err("invalid");
    let d = &e.diagnostics()[0];
    (d.line - 3, d.column, d.message.clone())
}

#[test]
fn a_valid_file_resolves_paths_settings_and_hubs() {
    let t = parse(
        r#"
[defaults]
capacity = 5000
max_bytes = "64MiB"
ttl = "1h"
connection_timeout = "3s"

[caches.default]
ttl = "10m"

[caches.sessions]
capacity = 100
tombstone_ttl = "2h"

[[node]]
name = "hub"
listen = "unix:hub.sock"
http = "8400"

[[node]]
name = "leaf"
hub = "hub"
root = "data/leaf"
unix = "leaf.sock"
loglevel = "leafcache=debug,info"

[[node]]
name = "edge"
hub = "10.1.2.3:7400"
resp = "0.0.0.0:6400"
unix = "/run/edge.sock"
"#,
    )
    .unwrap();
    assert_eq!(t.cluster(), "t");
    assert!(matches!(t.secret_source(), SecretSource::Inline(_)));
    assert_eq!(format!("{:?}", t.secret_source()), "Inline(..)");
    let debug = format!("{t:?}");
    assert!(
        !debug.contains("\"test\""),
        "Debug shows no secret: {debug}"
    );
    assert!(!format!("{:?}", t.clone().with_password("pw")).contains("pw"));

    let caches = t.caches();
    assert_eq!(caches[0].0, "default");
    assert_eq!(caches[0].1.capacity, Some(5000));
    assert_eq!(caches[0].1.max_bytes, Some(64 << 20));
    assert_eq!(caches[0].1.ttl, Some(Duration::from_secs(600)), "override");
    assert_eq!(caches[1].0, "sessions");
    assert_eq!(caches[1].1.capacity, Some(100));
    assert_eq!(caches[1].1.ttl, Some(Duration::from_secs(3600)), "default");
    assert_eq!(caches[1].1.tombstone_ttl, Some(Duration::from_secs(7200)));

    let hub = t.node("hub").unwrap();
    assert_eq!(hub.role(), Role::Hub);
    assert_eq!(hub.listen.as_deref(), Some("unix:/etc/leafcache/hub.sock"));
    assert_eq!(hub.http.as_deref(), Some("127.0.0.1:8400"));
    let leaf = t.node("leaf").unwrap();
    assert_eq!(leaf.role(), Role::Leaf);
    assert_eq!(leaf.hub, Some(HubRef::Node("hub".into())));
    assert_eq!(
        leaf.root.as_deref(),
        Some(Path::new("/etc/leafcache/data/leaf"))
    );
    assert_eq!(
        leaf.unix.as_deref(),
        Some(Path::new("/etc/leafcache/data/leaf/leaf.sock")),
        "a socket path resolves under the node's root"
    );
    assert_eq!(leaf.loglevel.as_deref(), Some("leafcache=debug,info"));
    let edge = t.node("edge").unwrap();
    assert_eq!(edge.hub, Some(HubRef::Address("10.1.2.3:7400".into())));
    assert_eq!(edge.unix.as_deref(), Some(Path::new("/run/edge.sock")));

    let tree = t.render();
    assert!(
        tree.contains("hub (hub) listen=unix:/etc/leafcache/hub.sock"),
        "{tree}"
    );
    assert!(tree.contains("└── leaf (leaf)"), "{tree}");
    assert!(
        tree.contains("\nedge (leaf) resp=0.0.0.0:6400"),
        "an outside hub makes a root: {tree}"
    );
    assert!(tree.contains("hub=10.1.2.3:7400"), "{tree}");
}

#[test]
fn eviction_is_set_per_cache_over_the_defaults() {
    let t = parse(
        "[defaults]\neviction = \"s3fifo\"\n[caches.a]\neviction = \"lru\"\n[caches.b]\ncapacity = 10\n[[node]]\nname = \"n\"\n",
    )
    .unwrap();
    let eviction = |name: &str| {
        t.caches()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.eviction)
            .unwrap()
    };
    assert_eq!(eviction("default"), Some(leafcache::Eviction::S3Fifo));
    assert_eq!(eviction("a"), Some(leafcache::Eviction::Lru));
    assert_eq!(
        eviction("b"),
        Some(leafcache::Eviction::S3Fifo),
        "from [defaults]"
    );
}

#[test]
fn sizes_and_durations_take_numbers_or_human_strings() {
    let t = parse(
        "[defaults]\nmax_bytes = 1048576\nttl = 90\n[caches.a]\nmax_bytes = \"1GB\"\nttl = \"1h 30m\"\n[[node]]\nname = \"n\"\n",
    )
    .unwrap();
    assert_eq!(t.caches()[0].1.max_bytes, Some(1 << 20));
    assert_eq!(t.caches()[0].1.ttl, Some(Duration::from_secs(90)));
    assert_eq!(t.caches()[1].1.max_bytes, Some(1_000_000_000));
    assert_eq!(t.caches()[1].1.ttl, Some(Duration::from_secs(5400)));
    for bad in [
        "ttl = -5",
        "ttl = 0",
        "max_bytes = 0",
        "max_bytes = -1",
        "ttl = true",
    ] {
        let (line, _, message) =
            first_error(&format!("[defaults]\n{bad}\n[[node]]\nname = \"n\"\n"));
        assert_eq!(line, 2, "{bad}: {message}");
    }
}

#[test]
fn diagnostics_name_the_spot_and_the_fix() {
    // Columns count characters, not bytes.
    let (line, column, message) =
        first_error("[[node]]\nname = \"é\"\n[[node]]\nname = \"ü\"\nhub = \"nowhere\"\n");
    assert_eq!((line, column), (5, 7));
    assert_eq!(message, "unknown hub \"nowhere\"");

    let e = parse("[[node]]\nname = \"a\"\nhub = \"b\"\n[[node]]\nname = \"b\"\nhub = \"a\"\nlisten = \"127.0.0.1:1\"\n").unwrap_err();
    assert_eq!(
        errors(&e).len(),
        2,
        "a hub without listen, and the cycle: {e}"
    );
    // The warning of the same run comes after the errors, not in a later one.
    let last = e.diagnostics().last().unwrap();
    assert_eq!(last.severity, Severity::Warning, "{e}");
    assert!(last.message.contains("secret is written"), "{e}");
    let shown = e.to_string();
    assert!(
        shown.starts_with("/etc/leafcache/t.toml:6:7: error: hubs form a cycle: a -> b -> a"),
        "{shown}"
    );
    assert!(
        shown.contains("\n 6 | hub = \"b\"\n   |       ^^^\n"),
        "{shown}"
    );
    assert!(shown.contains("= help: a tree needs a root"), "{shown}");
    assert!(
        shown.contains("hub \"b\" has no listen") || shown.contains("hub \"a\" has no listen"),
        "{shown}"
    );

    // Several independent mistakes are all reported, in file order.
    let e = parse("[[node]]\nname = \"x\"\nhub = \"x\"\nresp = \"6400\"\n[[node]]\nname = \"y\"\nhttp = \"6400\"\n")
        .unwrap_err();
    let lines: Vec<usize> = errors(&e).iter().map(|d| d.line - 3).collect();
    assert_eq!(lines, [3, 7], "{e}");
}

#[test]
fn warnings_flag_a_dev_secret() {
    let t = parse("[[node]]\nname = \"n\"\nroot = \"d\"\nsnapshot = \"2m\"\nflush = \"always\"\n")
        .unwrap();
    let w: Vec<String> = t.warnings().iter().map(|d| d.message.clone()).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("secret is written in the topology file"));
    let n = t.node("n").unwrap();
    assert_eq!(n.snapshot, Some(Duration::from_secs(120)));
    assert_eq!(n.flush, Some(leafcache::Flush::Always));
    assert!(t.warnings().iter().all(|d| d.severity == Severity::Warning));
    // PATH is set wherever tests run: a variable that is set is no warning.
    let quiet = Topology::parse(
        "[cluster]\nsecret_env = \"PATH\"\n[[node]]\nname = \"n\"\n",
        "q.toml",
    )
    .unwrap();
    assert!(quiet.warnings().is_empty(), "{:?}", quiet.warnings());
    let unset = Topology::parse(
        "[cluster]\nsecret_env = \"LEAFCACHE_TEST_NEVER_SET\"\n[[node]]\nname = \"n\"\n",
        "q.toml",
    )
    .unwrap();
    assert_eq!(
        unset.warnings()[0].message,
        "LEAFCACHE_TEST_NEVER_SET is not set here"
    );

    // A secret file: missing, then readable by others, then private.
    let dir = temp_dir("secret-file");
    let file = dir.join("t.toml");
    let text = "[cluster]\nsecret_file = \"secret\"\n[[node]]\nname = \"n\"\n";
    let warnings = || -> Vec<String> {
        let t = Topology::parse(text, &file).unwrap();
        t.warnings().iter().map(|d| d.message.clone()).collect()
    };
    assert!(warnings()[0].starts_with(&format!("cannot read {}", dir.join("secret").display())));
    let secret = dir.join("secret");
    std::fs::write(&secret, "s").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            warnings(),
            [format!(
                "{} is readable by other users (mode 644)",
                secret.display()
            )]
        );
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    assert!(warnings().is_empty());
    std::fs::remove_dir_all(dir).ok();
}

use support::temp_dir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_all_runs_a_tree_in_process_and_writes_reach_every_node() {
    let dir = temp_dir("tree");
    let file = dir.join("tree.toml");
    std::fs::write(
        &file,
        r#"
[cluster]
name = "tree"
secret_file = "secret"

[caches.sessions]
capacity = 10

[[node]]
name = "leaf-2"
hub = "relay"

[[node]]
name = "relay"
hub = "top"
listen = "127.0.0.1:0"

[[node]]
name = "leaf-1"
hub = "relay"
root = "leaf-1"
unix = "leaf-1.sock"

[[node]]
name = "top"
listen = "127.0.0.1:0"
"#,
    )
    .unwrap();
    std::fs::write(dir.join("secret"), "s3cret\n").unwrap();
    let t = Topology::load(&file).unwrap();
    let nodes = t.start_all().await.unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n.name()).collect();
    assert_eq!(names, ["leaf-2", "relay", "leaf-1", "top"], "file order");
    let [leaf2, relay, leaf1, top] = [&nodes[0], &nodes[1], &nodes[2], &nodes[3]];
    assert_eq!(relay.role(), Role::Relay);
    assert_eq!(
        relay.replication_config().remote_address.as_deref(),
        top.local_addr(),
        "the relay dials the port its hub bound"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("leaf-1"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "the root is private");
    }
    assert_eq!(
        leaf1.unix_socket(),
        Some(dir.join("leaf-1/leaf-1.sock").as_path())
    );

    leaf1.cache("sessions").unwrap().set("s", "1").unwrap();
    leaf2.default_cache().set("d", "2").unwrap();
    eventually(Duration::from_secs(10), "writes reach every node", || {
        for n in &nodes {
            if !n.cache("sessions").unwrap().contains("s") || !n.default_cache().contains("d") {
                return Err(format!("{} lacks a write", n.name()));
            }
        }
        Ok(())
    })
    .await;
    eventually(Duration::from_secs(10), "the links report up", || {
        let up = |n: &leafcache::Node| {
            n.links()
                .iter()
                .filter(|s| s.state == LinkState::Up)
                .count()
        };
        match (up(top), up(relay), up(leaf1), up(leaf2)) {
            (1, 3, 1, 1) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    for n in &nodes {
        n.shutdown().await;
    }
    let sessions = top.cache("sessions").unwrap();
    for i in 0..50 {
        sessions.set(format!("k{i}"), "v").unwrap();
    }
    assert_eq!(sessions.len(), 10, "the file's capacity for the cache");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn starting_fails_clearly_and_leaves_nothing_running() {
    // A port already taken: the nodes started before the failing one are shut down again.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hub_http = free.local_addr().unwrap().to_string();
    drop(free);
    let t = parse(&format!(
        "[[node]]\nname = \"hub\"\nlisten = \"127.0.0.1:0\"\nhttp = \"{hub_http}\"\n[[node]]\nname = \"leaf\"\nhub = \"hub\"\nresp = \"{taken_addr}\"\n"
    ))
    .unwrap();
    match t.start_all().await {
        Err(TopologyError::Start { name, source }) => {
            assert_eq!(name, "leaf");
            assert!(source.to_string().contains(&taken_addr), "{source}");
        }
        other => panic!("{:?}", other.map(|n| n.len())),
    }
    eventually(
        Duration::from_secs(10),
        "the hub started first is stopped",
        || match std::net::TcpStream::connect(&hub_http) {
            Err(_) => Ok(()),
            Ok(_) => Err(format!("{hub_http} still accepts")),
        },
    )
    .await;

    // A hub on port 0 cannot be found by a leaf run on its own.
    let e = t.node_builder("leaf").err().expect("port 0 hub");
    let d = &e.diagnostics()[0];
    assert!(d.message.contains("listens on port 0"), "{e}");
    assert_eq!((d.line - 3, d.column), (6, 8), "points at the leaf's name");

    assert!(matches!(
        t.node_builder("nobody"),
        Err(TopologyError::UnknownNode { ref known, .. }) if known == "hub, leaf"
    ));

    let missing = Topology::parse(
        "[cluster]\nsecret_file = \"no-such-secret\"\n[[node]]\nname = \"n\"\n",
        "/nonexistent/t.toml",
    )
    .unwrap();
    let e = missing.node_builder("n").err().expect("unreadable secret");
    assert!(
        e.to_string().starts_with(
            "/nonexistent/t.toml:2:15: error: cannot read the cluster secret from /nonexistent/no-such-secret"
        ),
        "{e}"
    );
    assert!(matches!(
        Topology::load("/nonexistent/t.toml"),
        Err(TopologyError::Read { .. })
    ));
}

#[tokio::test]
async fn a_leaf_dials_its_hubs_advertised_address() {
    let t = parse(
        "[[node]]\nname = \"hub\"\nlisten = \"0.0.0.0:7400\"\nadvertise = \"hub.internal:7400\"\n[[node]]\nname = \"leaf\"\nhub = \"hub\"\n",
    )
    .unwrap();
    assert!(
        t.warnings()
            .iter()
            .all(|w| !w.message.contains("every interface"))
    );
    let leaf = t.start("leaf").unwrap();
    assert_eq!(
        leaf.replication_config().remote_address.as_deref(),
        Some("hub.internal:7400")
    );
    leaf.shutdown().await;

    let bare = parse(
        "[[node]]\nname = \"hub\"\nlisten = \"[::]:7400\"\n[[node]]\nname = \"a\"\nhub = \"hub\"\n[[node]]\nname = \"b\"\nhub = \"hub\"\n",
    )
    .unwrap();
    let w: Vec<_> = bare
        .warnings()
        .iter()
        .filter(|w| w.message.contains("every interface"))
        .collect();
    assert_eq!(w.len(), 1, "one warning per hub, at its listen: {w:?}");
    assert_eq!((w[0].line - 3, w[0].column), (3, 10));
}

#[test]
fn every_schema_error_is_reported_at_once_at_its_own_line() {
    let e = parse(
        r#"
[defaults]
capacty = 5000
ttl = true

[[node]]
name = "hub"
listen = "127.0.0.1:7000"
lissen = "127.0.0.1:7001"
"#,
    )
    .expect_err("invalid");
    let found: Vec<(usize, String)> = errors(&e)
        .iter()
        .map(|d| (d.line - 3, d.message.clone()))
        .collect();
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!(found[0].0, 3);
    assert!(found[0].1.contains("capacty"), "{found:?}");
    assert_eq!(found[1].0, 4);
    assert_eq!(found[2].0, 9);
    assert!(found[2].1.contains("lissen"), "{found:?}");
    // A syntax error still stops at the first: nothing after it can be read.
    let e = parse("[defaults\ncapacty = 1\n").expect_err("invalid");
    assert_eq!(e.diagnostics().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_list_resolves_in_order_and_start_all_starts_every_hub_first() {
    let t = parse(
        r#"
[[node]]
name = "leaf"
hub = ["eu-1", "eu-2", "10.0.0.9:7400"]

[[node]]
name = "eu-2"
listen = "127.0.0.1:0"
hub = "core"

[[node]]
name = "eu-1"
listen = "127.0.0.1:0"
hub = "core"

[[node]]
name = "core"
listen = "127.0.0.1:0"
"#,
    )
    .unwrap();
    let leaf = t.node("leaf").unwrap();
    assert_eq!(leaf.hub, Some(HubRef::Node("eu-1".into())));
    assert_eq!(
        leaf.fallback_hubs,
        [
            HubRef::Node("eu-2".into()),
            HubRef::Address("10.0.0.9:7400".into())
        ]
    );
    assert_eq!(leaf.role(), Role::Leaf);
    assert!(
        t.render()
            .contains("leaf (leaf) fails over to eu-2, 10.0.0.9:7400"),
        "{}",
        t.render()
    );
    let nodes = t.start_all().await.unwrap();
    let by = |name: &str| nodes.iter().find(|n| n.name() == name).unwrap();
    let links = by("leaf").replication_config().clone();
    assert_eq!(links.remote_address.as_deref(), by("eu-1").local_addr());
    assert_eq!(
        links.fallback_hubs,
        [by("eu-2").local_addr().unwrap(), "10.0.0.9:7400"]
    );
    by("leaf").default_cache().set("k", "v").unwrap();
    eventually(Duration::from_secs(20), "the write at the core", || {
        by("core")
            .default_cache()
            .get("k")
            .map(|_| ())
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    for n in &nodes {
        n.shutdown().await;
    }
    // Edges of every list count: a fallback below the node makes a cycle.
    let (line, column, message) = first_error(
        "[[node]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\nhub = [\"b\", \"c\"]\n[[node]]\nname = \"b\"\nlisten = \"127.0.0.1:2\"\n[[node]]\nname = \"c\"\nlisten = \"127.0.0.1:3\"\nhub = \"a\"\n",
    );
    assert_eq!((line, column), (4, 7));
    assert_eq!(message, "hubs could form a cycle: a -> c -> a");
    let (_, _, message) = first_error("[[node]]\nname = \"a\"\nhub = []\n");
    assert!(message.contains("an empty hub list"), "{message}");
    let (_, _, message) = first_error("[[node]]\nname = \"a\"\nhub = 7\n");
    assert!(
        message.contains("a hub (a node's name or host:port) or a list of them"),
        "{message}"
    );
}

/// `anti_entropy` under `[defaults]`: a period, or "off"; a cache table may not set it.
#[test]
fn anti_entropy_is_a_period_or_off_set_under_defaults() {
    let every = |value: &str| {
        let t = parse(&format!(
            "[defaults]\nanti_entropy = {value}\n[[node]]\nname = \"solo\"\n"
        ))
        .unwrap();
        let node = t.node_builder("solo").unwrap().build().unwrap();
        node.replication_config().anti_entropy
    };
    assert_eq!(every("\"10s\""), Some(Duration::from_secs(10)));
    assert_eq!(every("30"), Some(Duration::from_secs(30)));
    assert_eq!(every("\"off\""), None);
    let unset = parse("[[node]]\nname = \"solo\"\n").unwrap();
    let node = unset.node_builder("solo").unwrap().build().unwrap();
    assert_eq!(
        node.replication_config().anti_entropy,
        Some(leafcache::DEFAULT_ANTI_ENTROPY)
    );
    let (_, _, message) = first_error("[defaults]\nanti_entropy = \"sometimes\"\n");
    assert!(
        message.contains("\"off\"") || message.contains("sometimes"),
        "{message}"
    );
    let (_, _, message) =
        first_error("[caches.s]\nanti_entropy = \"10s\"\n[[node]]\nname = \"solo\"\n");
    assert!(message.contains("node setting"), "{message}");
}

/// What a reload may change live and what it refuses, each refusal at the line asking for it
/// (lines counted after the three-line header).
#[test]
fn a_reload_plan_applies_capacities_hubs_and_nodes_and_refuses_the_rest_at_their_lines() {
    let old = parse(
        "[defaults]\ncapacity = 100\n[caches.s]\nttl = \"1m\"\n\
         [[node]]\nname = \"hub\"\nlisten = \"127.0.0.1:7400\"\n\
         [[node]]\nname = \"hub2\"\nlisten = \"127.0.0.1:7401\"\n\
         [[node]]\nname = \"leaf\"\nhub = \"hub\"\n\
         [[node]]\nname = \"solo\"\n",
    )
    .unwrap();
    // Live: a capacity, a ttl, a leaf's hub; a node added, one removed.
    let new = parse(
        "[defaults]\ncapacity = 200\n[caches.s]\nttl = \"2m\"\n\
         [[node]]\nname = \"hub\"\nlisten = \"127.0.0.1:7400\"\n\
         [[node]]\nname = \"hub2\"\nlisten = \"127.0.0.1:7401\"\n\
         [[node]]\nname = \"leaf\"\nhub = [\"hub2\", \"hub\"]\n\
         [[node]]\nname = \"extra\"\nhub = \"hub\"\n",
    )
    .unwrap();
    let plan = old.reload_plan(&new, None);
    assert!(plan.refused.is_empty(), "{:?}", plan.refused);
    assert_eq!(plan.added, ["extra"]);
    assert_eq!(plan.removed, ["solo"]);
    assert_eq!(plan.hubs, ["leaf"]);
    let caches: Vec<&str> = plan.caches.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(caches, ["default", "s"]);
    // One node's process: others' changes are not its business; its own removal is refused.
    let mine = old.reload_plan(&new, Some("leaf"));
    assert!(mine.added.is_empty() && mine.removed.is_empty() && mine.refused.is_empty());
    assert_eq!(mine.hubs, ["leaf"]);
    let gone = old.reload_plan(&new, Some("solo"));
    assert!(
        gone.refused[0].message.contains("\"solo\" is gone"),
        "{:?}",
        gone.refused
    );

    // Refused: a policy, a new cache, a hub given to a node that had none, a listen address.
    let new = parse(
        "[defaults]\ncapacity = 100\neviction = \"lfu\"\n[caches.s]\nttl = \"1m\"\n\
         [caches.t]\ncapacity = 5\n\
         [[node]]\nname = \"hub\"\nlisten = \"127.0.0.1:7499\"\n\
         [[node]]\nname = \"hub2\"\nlisten = \"127.0.0.1:7401\"\n\
         [[node]]\nname = \"leaf\"\nhub = \"hub\"\n\
         [[node]]\nname = \"solo\"\nhub = \"hub\"\n",
    )
    .unwrap();
    let plan = old.reload_plan(&new, None);
    let refused: Vec<(usize, &str)> = plan
        .refused
        .iter()
        .map(|d| (d.line - 3, d.message.as_str()))
        .collect();
    assert_eq!(refused.len(), 5, "{refused:?}");
    let at = |line: usize, needle: &str| {
        assert!(
            refused
                .iter()
                .any(|(l, m)| *l == line && m.contains(needle)),
            "{needle} at line {line}: {refused:?}"
        );
    };
    at(3, "eviction of cache \"default\"");
    at(3, "eviction of cache \"s\"");
    at(6, "cache \"t\" is new");
    at(10, "listen of node \"hub\"");
    at(19, "node \"solo\" gains a hub");
}

/// A sharded file: every node names its shard or none does, and no hub is in another shard;
/// `check`'s tree names each shard's share of the slots.
#[test]
fn shards_are_checked_and_their_slots_shown() {
    let e = parse(
        "[[node]]\nname = \"a\"\nshard = \"red\"\nlisten = \"127.0.0.1:7400\"\n\
         [[node]]\nname = \"b\"\nshard = \"blue\"\nhub = \"a\"\n\
         [[node]]\nname = \"c\"\nhub = \"a\"\n",
    )
    .expect_err("invalid");
    let found: Vec<(usize, String)> = errors(&e)
        .iter()
        .map(|d| (d.line - 3, d.message.clone()))
        .collect();
    assert!(
        found.iter().any(
            |(l, m)| *l == 8 && m.contains("in shard \"red\" and node \"b\" in shard \"blue\"")
        ),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(l, m)| *l == 10 && m.contains("node \"c\" names no shard")),
        "{found:?}"
    );
    let ok = parse(
        "[[node]]\nname = \"a\"\nshard = \"red\"\n[[node]]\nname = \"b\"\nshard = \"blue\"\n",
    )
    .unwrap();
    assert_eq!(ok.shards(), ["blue", "red"]);
    let tree = ok.render();
    assert!(tree.contains("shard \"blue\": 8192 slots"), "{tree}");
    assert!(tree.contains("shard \"red\": 8192 slots"), "{tree}");
}
