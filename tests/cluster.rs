//! A sharded topology (3 shards, each a hub and two leaves) started in this process, spoken to as
//! Redis Cluster: the door's own answers through the `redis` crate (`CLUSTER ...`, `-MOVED`,
//! `-CROSSSLOT`), then real cluster clients run as processes with their default settings —
//! `redis-cli -c`, redis-py's `RedisCluster`, node-redis `createCluster`, ioredis `Cluster`.
//! `tests/run-all` sets `LEAFCACHE_REQUIRE_CLIENTS=1`, so a missing client fails there.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use leafcache::Node;
use leafcache::partition::key_slot;
use leafcache::topology::Topology;

fn sharded() -> String {
    let mut text = String::from(
        "[cluster]\nname = \"sharded\"\nsecret = \"cluster-test-secret\"\n\
         [defaults]\nconnection_timeout = \"1s\"\n[caches.sessions]\ncapacity = 1000\n",
    );
    for shard in ["red", "green", "blue"] {
        text.push_str(&format!(
            "\n[[node]]\nname = \"{shard}-hub\"\nshard = \"{shard}\"\nlisten = \"127.0.0.1:0\"\nresp = \"127.0.0.1:0\"\n"
        ));
        for leaf in ["a", "b"] {
            text.push_str(&format!(
                "\n[[node]]\nname = \"{shard}-{leaf}\"\nshard = \"{shard}\"\nhub = \"{shard}-hub\"\nresp = \"127.0.0.1:0\"\n"
            ));
        }
    }
    text
}

async fn start() -> Vec<Node> {
    let topology = Topology::parse(&sharded(), "sharded.toml").unwrap();
    topology.start_all().await.unwrap()
}

fn conn(node: &Node) -> redis::Connection {
    let addr = node.resp_addr().unwrap();
    redis::Client::open(format!("redis://{addr}"))
        .unwrap()
        .get_connection()
        .unwrap()
}

fn error_of(r: redis::RedisResult<redis::Value>) -> String {
    match r {
        Err(e) => format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or("")),
        Ok(v) => panic!("answered {v:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_shard_serves_its_slots_and_sends_clients_to_the_others() {
    let nodes = start().await;
    let shards = nodes[0].shards().unwrap();
    // A key of each shard: its nodes serve it, the others answer MOVED to its hub.
    for node in &nodes {
        let mut c = conn(node);
        let mine = node.shards().unwrap();
        assert_eq!(
            mine.map.shards()[mine.mine],
            node.name().split('-').next().unwrap()
        );
        let key = (0..)
            .map(|k| format!("key-{k}"))
            .find(|k| mine.owns(key_slot(k.as_bytes())))
            .unwrap();
        let _: () = redis::cmd("SET").arg(&key).arg("v").query(&mut c).unwrap();
        let other = (0..)
            .map(|k| format!("other-{k}"))
            .find(|k| !node.shards().unwrap().owns(key_slot(k.as_bytes())))
            .unwrap();
        let slot = key_slot(other.as_bytes());
        let owner = &shards.map.shards()[shards.map.owner(slot)];
        let hub = nodes
            .iter()
            .find(|n| n.name() == format!("{owner}-hub"))
            .unwrap();
        // A plain client's command on it is forwarded to its shard; a cluster client (one that
        // said READWRITE, or asked for the slot map) is sent there.
        let _: () = redis::cmd("SET")
            .arg(&other)
            .arg("far")
            .query(&mut c)
            .unwrap();
        let far: String = redis::cmd("GET").arg(&other).query(&mut c).unwrap();
        assert_eq!(far, "far");
        let ok: String = redis::cmd("READWRITE").query(&mut c).unwrap();
        assert_eq!(ok, "OK");
        let moved = error_of(redis::cmd("GET").arg(&other).query(&mut c));
        assert_eq!(
            moved,
            format!("MOVED {slot} {}", hub.resp_addr().unwrap()),
            "at {}",
            node.name()
        );
        let cross = error_of(
            redis::cmd("MSET")
                .arg("{a}x")
                .arg(1)
                .arg("{b}y")
                .arg(2)
                .query(&mut c),
        );
        assert!(cross.starts_with("CROSSSLOT"), "{cross}");
    }
    // A write at a leaf reaches its shard's other nodes, and only them.
    let mut red_a = conn(&nodes[1]);
    let key = (0..)
        .map(|k| format!("tree-{k}"))
        .find(|k| nodes[1].shards().unwrap().owns(key_slot(k.as_bytes())))
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("here")
        .query(&mut red_a)
        .unwrap();
    support::eventually(
        std::time::Duration::from_secs(10),
        "the shard's other leaf reads it",
        || match nodes[2].default_cache().get(key.as_bytes()) {
            Some(_) => Ok(()),
            None => Err("not yet".into()),
        },
    )
    .await;
    assert!(
        nodes[3].default_cache().get(key.as_bytes()).is_none(),
        "another shard holds none of it"
    );

    // The cluster's commands, as Redis answers them.
    let mut c = conn(&nodes[0]);
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg("foo")
        .query(&mut c)
        .unwrap();
    assert_eq!(slot, 12182);
    let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c).unwrap();
    assert!(
        info.contains("cluster_state:ok") && info.contains("cluster_size:3"),
        "{info}"
    );
    let id: String = redis::cmd("CLUSTER").arg("MYID").query(&mut c).unwrap();
    assert_eq!(id.len(), 40);
    let text: String = redis::cmd("CLUSTER").arg("NODES").query(&mut c).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9, "{text}");
    assert_eq!(lines.iter().filter(|l| l.contains("master")).count(), 3);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&id) && l.contains("myself,master"))
    );
    // Every slot on exactly one master line.
    let mut covered = vec![0u8; 16384];
    for line in lines.iter().filter(|l| l.contains("master")) {
        for range in line.split_whitespace().skip(8) {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            let (a, b) = (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap());
            covered[a..=b].iter_mut().for_each(|n| *n += 1);
        }
    }
    assert!(covered.iter().all(|&n| n == 1));
    let slots: redis::Value = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c).unwrap();
    let redis::Value::Array(ranges) = slots else {
        panic!("{slots:?}")
    };
    assert_eq!(ranges.len(), shards.map.ranges().len());
    let count: i64 = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(16384)
        .query(&mut c)
        .map_or(-1, |v| v);
    assert_eq!(count, -1, "slot 16384 is out of range");
    let ok: String = redis::cmd("READONLY").query(&mut c).unwrap();
    assert_eq!(ok, "OK");
    for n in nodes {
        n.shutdown().await;
    }
}

/// One URL for the whole cluster: a plain client's pipeline over every shard comes back in
/// order; a stopped shard's keys read as misses and its writes fail, naming it, in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_client_reaches_every_shard_through_one_door_and_a_lost_shard_is_a_miss() {
    let nodes = start().await;
    let mut c = conn(&nodes[1]);
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.cmd("SET").arg(format!("p:{i}")).arg(i).ignore();
    }
    for i in 0..200 {
        pipe.cmd("GET").arg(format!("p:{i}"));
    }
    let values: Vec<i64> = pipe.query(&mut c).unwrap();
    assert_eq!(values, (0..200).collect::<Vec<i64>>());
    // WATCH shapes this connection's transaction: never forwarded, the client is sent there.
    let far_watch = (0..)
        .map(|k| format!("w:{k}"))
        .find(|k| !nodes[1].shards().unwrap().owns(key_slot(k.as_bytes())))
        .unwrap();
    let watch = error_of(redis::cmd("WATCH").arg(&far_watch).query(&mut c));
    assert!(watch.starts_with("MOVED"), "{watch}");
    let owners: std::collections::BTreeSet<String> = (0..200)
        .map(|i| {
            nodes[0]
                .shards()
                .unwrap()
                .map
                .shard_of(format!("p:{i}").as_bytes())
                .to_string()
        })
        .collect();
    assert_eq!(owners.len(), 3, "the keys span every shard");
    // SELECT carries over: a key of another shard, set in cache 1, lands in that cache there.
    let shards = nodes[1].shards().unwrap();
    let far = (0..)
        .map(|k| format!("s:{k}"))
        .find(|k| !shards.owns(key_slot(k.as_bytes())))
        .unwrap();
    let _: () = redis::cmd("SELECT").arg(1).query(&mut c).unwrap();
    let _: () = redis::cmd("SET")
        .arg(&far)
        .arg("session")
        .query(&mut c)
        .unwrap();
    let owner = shards.map.shard_of(far.as_bytes());
    let hub = nodes
        .iter()
        .find(|n| n.name() == format!("{owner}-hub"))
        .unwrap();
    let held = hub.cache("sessions").unwrap().get(far.as_bytes());
    assert_eq!(held.as_deref(), Some(&b"session"[..]));
    assert!(hub.default_cache().get(far.as_bytes()).is_none());
    let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();

    // The blue shard stops: its keys are misses through any other door, its writes fail.
    let blue = nodes[0].shards().unwrap();
    let blue_key = (0..)
        .map(|k| format!("b:{k}"))
        .find(|k| blue.map.shard_of(k.as_bytes()) == "blue")
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&blue_key)
        .arg("1")
        .query(&mut c)
        .unwrap();
    for n in nodes.iter().filter(|n| n.name().starts_with("blue")) {
        n.shutdown().await;
    }
    let started = std::time::Instant::now();
    let miss: Option<String> = redis::cmd("GET").arg(&blue_key).query(&mut c).unwrap();
    assert_eq!(miss, None);
    let down = error_of(redis::cmd("SET").arg(&blue_key).arg("2").query(&mut c));
    assert!(
        down.starts_with("CLUSTERDOWN") && down.contains("\"blue\""),
        "{down}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The other shards go on.
    let red_key = (0..)
        .map(|k| format!("r:{k}"))
        .find(|k| blue.map.shard_of(k.as_bytes()) == "red")
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&red_key)
        .arg("ok")
        .query(&mut c)
        .unwrap();
    for n in nodes.iter().filter(|n| !n.name().starts_with("blue")) {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_one_tree_says_cluster_support_is_disabled() {
    let node = Node::builder().resp_address("127.0.0.1:0").build().unwrap();
    let mut c = conn(&node);
    let e = error_of(redis::cmd("CLUSTER").arg("INFO").query(&mut c));
    assert!(e.contains("cluster support disabled"), "{e}");
    node.shutdown().await;
}

fn require() -> bool {
    std::env::var_os("LEAFCACHE_REQUIRE_CLIENTS").is_some()
}

/// Runs a client, or skips it (failing under LEAFCACHE_REQUIRE_CLIENTS) if it is not installed.
fn run_client(mut cmd: Command, what: &str) {
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => {
            assert!(!require(), "{what} is required: {e}");
            eprintln!("{what} not available ({e}); skipped — tests/run-all installs it");
            return;
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    eprintln!("{text}");
}

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_clients_with_their_defaults_work_against_the_shards() {
    let nodes = start().await;
    // A leaf's door: clients learn the rest from it.
    let door = nodes[1].resp_addr().unwrap().to_string();
    let (host, port) = door.rsplit_once(':').unwrap();

    // redis-cli -c follows MOVED from any node.
    let mut set = Command::new("redis-cli");
    set.args(["-c", "-h", host, "-p", port, "SET", "cli-key", "cli-value"]);
    run_client(set, "redis-cli");
    let mut get = Command::new("redis-cli");
    get.args(["-c", "-h", host, "-p", port, "GET", "cli-key"]);
    if let Ok(out) = get.output() {
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "cli-value");
    }

    let python = std::env::var("LEAFCACHE_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_redis = Command::new(&python)
        .args(["-c", "import redis.cluster"])
        .status()
        .is_ok_and(|s| s.success());
    if has_redis {
        let mut py = Command::new(&python);
        py.arg(clients_dir().join("python_cluster.py")).arg(&door);
        run_client(py, "redis-py RedisCluster");
    } else {
        assert!(
            !require(),
            "redis-py is required ({python} cannot import redis)"
        );
        eprintln!("redis-py not available; skipped");
    }

    if clients_dir().join("node_modules/redis").exists() {
        let mut node = Command::new("node");
        node.arg(clients_dir().join("node_cluster.mjs")).arg(&door);
        run_client(node, "node-redis and ioredis clusters");
    } else {
        assert!(
            !require(),
            "the Node clients are required (npm ci in tests/clients)"
        );
        eprintln!("Node clients not installed; skipped");
    }
    for n in nodes {
        n.shutdown().await;
    }
}

fn two_shards_then_three(three: bool) -> String {
    let mut text = String::from(
        "[cluster]\nname = \"moving\"\nsecret = \"move-test-secret\"\n\
         [defaults]\nconnection_timeout = \"1s\"\n",
    );
    let shards: &[&str] = if three {
        &["red", "green", "blue"]
    } else {
        &["red", "green"]
    };
    for shard in shards {
        text.push_str(&format!(
            "\n[[node]]\nname = \"{shard}-hub\"\nshard = \"{shard}\"\nlisten = \"127.0.0.1:0\"\nresp = \"127.0.0.1:0\"\n\
             \n[[node]]\nname = \"{shard}-a\"\nshard = \"{shard}\"\nhub = \"{shard}-hub\"\nresp = \"127.0.0.1:0\"\n"
        ));
    }
    text
}

/// A shard added by a reload while serving: about a third of the slots move to it; every key
/// written before stays readable through any door (the new owner reads a key it misses through
/// from its previous shard, and keeps it); once the move ends, the previous owners have dropped
/// the keys of the slots they gave up, as evictions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_added_while_serving_takes_its_slots_and_reads_their_keys_through() {
    let old = Topology::parse(&two_shards_then_three(false), "moving.toml").unwrap();
    let mut nodes = old.start_all().await.unwrap();
    let mut c = conn(&nodes[0]);
    for i in 0..300 {
        let _: () = redis::cmd("SET")
            .arg(format!("m:{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    let new = Topology::parse(&two_shards_then_three(true), "moving.toml").unwrap();
    let plan = old.reload_plan(&new, None);
    assert!(plan.refused.is_empty(), "{:?}", plan.refused);
    let applied = old.reload_all(&new, &mut nodes).await.unwrap();
    assert!(
        applied.iter().any(|l| l.contains("slots move")),
        "{applied:?}"
    );
    let shards = nodes[0].shards().unwrap();
    let (before, _) = shards.previous.as_ref().unwrap();
    let moved = before.moved_to(&shards.map);
    assert!(
        (5000..6000).contains(&moved),
        "{moved} slots moved to the third shard"
    );
    let to_blue: Vec<String> = (0..300)
        .map(|i| format!("m:{i}"))
        .filter(|k| shards.map.shard_of(k.as_bytes()) == "blue")
        .collect();
    assert!((70..130).contains(&to_blue.len()), "{}", to_blue.len());

    // A cluster client at the new shard's hub: its keys, read through from where they were.
    let blue_hub = nodes.iter().find(|n| n.name() == "blue-hub").unwrap();
    let mut blue = conn(blue_hub);
    let _: String = redis::cmd("READWRITE").query(&mut blue).unwrap();
    for key in &to_blue {
        let value: Option<String> = redis::cmd("GET").arg(key).query(&mut blue).unwrap();
        assert_eq!(value.as_deref(), Some(&key[2..]), "{key}");
    }
    assert!(
        blue_hub
            .default_cache()
            .get(to_blue[0].as_bytes())
            .is_some(),
        "kept there"
    );
    // A plain client at any door still reads every key.
    let mut plain = conn(&nodes[3]);
    for i in 0..300 {
        let value: Option<i64> = redis::cmd("GET")
            .arg(format!("m:{i}"))
            .query(&mut plain)
            .unwrap();
        assert_eq!(value, Some(i), "m:{i}");
    }
    // The move ends (3 connection timeouts): the old owners have dropped what they gave up.
    let red_hub = nodes.iter().find(|n| n.name() == "red-hub").unwrap();
    let gave_up = to_blue
        .iter()
        .find(|k| before.shard_of(k.as_bytes()) == "red")
        .unwrap();
    support::eventually(
        std::time::Duration::from_secs(10),
        "the previous owner drops the keys of the slots it gave up",
        || match red_hub.default_cache().peek(gave_up.as_bytes()) {
            None => Ok(()),
            Some(_) => Err("still held".into()),
        },
    )
    .await;
    assert!(
        nodes[0].shards().unwrap().previous.is_none(),
        "the move is over"
    );
    let value: Option<String> = redis::cmd("GET").arg(gave_up).query(&mut plain).unwrap();
    assert!(
        value.is_some(),
        "read through during the move, it stays at its new owner"
    );
    for n in nodes {
        n.shutdown().await;
    }
}

/// Embedded: a miss in `get_or_fetch`/`get_or_load` on a key another shard holds asks that
/// shard, as `fetch_on_miss` asks a hub; the shard's miss is a miss (or the loader's value).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_or_load_on_another_shards_key_asks_that_shard() {
    let nodes = start().await;
    let red = &nodes[0];
    let shards = red.shards().unwrap();
    let far = (0..)
        .map(|k| format!("e:{k}"))
        .find(|k| !shards.owns(key_slot(k.as_bytes())))
        .unwrap();
    let owner = shards.map.shard_of(far.as_bytes()).to_string();
    let hub = nodes
        .iter()
        .find(|n| n.name() == format!("{owner}-hub"))
        .unwrap();
    hub.default_cache().set(far.clone(), "there").unwrap();
    let got = red.default_cache().get_or_fetch(far.clone()).await.unwrap();
    assert_eq!(got.as_deref(), Some(&b"there"[..]));
    assert_eq!(
        red.default_cache().get_or_load(far.clone()).await.unwrap(),
        &b"there"[..]
    );
    // Another cache: the owner's copy of that cache.
    hub.cache("sessions")
        .unwrap()
        .set(far.clone(), "session")
        .unwrap();
    let got = red
        .cache("sessions")
        .unwrap()
        .get_or_fetch(far.clone())
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some(&b"session"[..]));
    // Missing there: a miss here (no loader).
    let missing = format!("{far}-none");
    let elsewhere = !shards.owns(key_slot(missing.as_bytes()));
    if elsewhere {
        assert_eq!(
            red.default_cache().get_or_fetch(missing).await.unwrap(),
            None
        );
    }
    for n in nodes {
        n.shutdown().await;
    }
}
