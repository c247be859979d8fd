//! Real Redis clients with their default settings against a tree of real nodes (hub, leaf-a,
//! leaf-b over TCP): the Rust `redis` crate in RESP2 and RESP3 (with push invalidations),
//! `redis-cli -3`, and — run as processes — redis-py 8 with its client-side cache, node-redis 6,
//! ioredis 6 and 5 (`tests/clients/*`).
//!
//! `tests/run-all` installs the Python and Node clients and sets `LEAFCACHE_REQUIRE_CLIENTS=1`,
//! which makes a missing client a failure; under a plain `cargo test` a missing one is reported
//! and skipped.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use leafcache::Node;
use redis::{Commands, PushInfo, PushKind, Value};

struct Tree {
    hub: Node,
    a: Node,
    b: Node,
}

fn tree() -> Tree {
    let (hub, a, b) = support::resp::two_leaves(leafcache::replication::BATCH_RECORDS);
    Tree { hub, a, b }
}

impl Tree {
    async fn shutdown(self) {
        for n in [self.a, self.b, self.hub] {
            n.shutdown().await;
        }
    }
}

fn require() -> bool {
    std::env::var_os("LEAFCACHE_REQUIRE_CLIENTS").is_some()
}

fn skip(what: &str, why: &str) {
    assert!(
        !require(),
        "LEAFCACHE_REQUIRE_CLIENTS is set but {what} is missing: {why}"
    );
    eprintln!("{what} not available ({why}); skipped — tests/run-all installs it");
}

/// Runs a client script and fails with its output if it fails.
fn run_script(mut cmd: Command, what: &str) {
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => return skip(what, &e.to_string()),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    assert!(text.contains("ok - "), "{what} checked nothing:\n{text}");
    eprintln!("{what}:\n{text}");
}

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_8_with_its_client_side_cache() {
    let python = std::env::var("LEAFCACHE_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_redis = Command::new(&python)
        .args(["-c", "import redis, redis.cache"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_redis {
        return skip("redis-py", &format!("{python} cannot import redis"));
    }
    let t = tree();
    let mut cmd = Command::new(&python);
    cmd.arg(clients_dir().join("python_clients.py"))
        .arg(t.a.resp_addr().unwrap())
        .arg(t.b.resp_addr().unwrap());
    let script = tokio::task::spawn_blocking(move || run_script(cmd, "redis-py"));
    script.await.unwrap();
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_redis_6_and_ioredis_6_and_5() {
    if !clients_dir().join("node_modules/redis").exists() {
        return skip(
            "node-redis and ioredis",
            "tests/clients/node_modules is not installed",
        );
    }
    let t = tree();
    let mut cmd = Command::new("node");
    cmd.arg(clients_dir().join("node_clients.mjs"))
        .arg(t.a.resp_addr().unwrap())
        .arg(t.b.resp_addr().unwrap());
    let script = tokio::task::spawn_blocking(move || run_script(cmd, "node-redis / ioredis"));
    script.await.unwrap();
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_in_resp3() {
    let t = tree();
    let addr = t.a.resp_addr().unwrap().to_string();
    let (host, port) = addr.rsplit_once(':').unwrap();
    let cli = |args: &[&str]| {
        Command::new("redis-cli")
            .args(["-3", "-h", host, "-p", port])
            .args(args)
            .output()
    };
    match cli(&["PING"]) {
        Err(e) => skip("redis-cli", &e.to_string()),
        Ok(out) => {
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "PONG");
            let text =
                |args: &[&str]| String::from_utf8_lossy(&cli(args).unwrap().stdout).into_owned();
            assert_eq!(text(&["SET", "cli", "v", "EX", "60"]).trim(), "OK");
            assert_eq!(text(&["GET", "cli"]).trim(), "v");
            assert_eq!(text(&["TTL", "cli"]).trim(), "60");
            let hello = text(&["HELLO", "3"]);
            assert!(hello.contains("proto") && hello.contains('3'), "{hello}");
            let config = text(&["CONFIG", "GET", "maxclients"]);
            assert!(config.contains("maxclients"), "{config}");
            assert_eq!(text(&["EXISTS", "missing"]).trim(), "0");
        }
    }
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_crate_in_resp2_and_resp3() {
    let t = tree();
    let addr_a = t.a.resp_addr().unwrap().to_string();
    let addr_b = t.b.resp_addr().unwrap().to_string();
    tokio::task::spawn_blocking(move || {
        for proto in ["resp2", "resp3"] {
            let client =
                redis::Client::open(format!("redis://{addr_a}/?protocol={proto}")).unwrap();
            let mut con = client.get_connection().unwrap();
            let _: () = con.set("rs:k", proto).unwrap();
            assert_eq!(con.get::<_, String>("rs:k").unwrap(), proto);
            let _: () = con.set_ex("rs:e", "v", 30).unwrap();
            assert_eq!(con.ttl::<_, i64>("rs:e").unwrap(), 30);
            let (a, b): (String, Option<String>) = redis::pipe()
                .atomic()
                .set("rs:t", "1")
                .ignore()
                .get("rs:t")
                .get("rs:none")
                .query(&mut con)
                .unwrap();
            assert_eq!((a.as_str(), b), ("1", None));
            let appended: i64 = con.append("rs:k", "!").unwrap();
            assert_eq!(appended as usize, proto.len() + 1);
            let _: () = con.del("rs:n").unwrap();
            assert_eq!(con.incr::<_, _, i64>("rs:n", 41).unwrap(), 41);
            assert_eq!(con.incr::<_, _, i64>("rs:n", 1).unwrap(), 42);
            let _: () = con.hset("rs:h", "f", "v").unwrap();
            let all: std::collections::HashMap<String, String> = con.hgetall("rs:h").unwrap();
            assert_eq!(all["f"], "v");
            let err = con.get::<_, String>("rs:h").unwrap_err();
            assert!(err.to_string().contains("WRONGTYPE"), "{err}");
            let hello: Value = redis::cmd("HELLO").query(&mut con).unwrap();
            match (proto, &hello) {
                ("resp3", Value::Map(_)) | ("resp2", Value::Array(_)) => {}
                other => panic!("HELLO in {proto}: {other:?}"),
            }
        }

        // RESP3 tracking: the crate receives the invalidation push for a write at leaf-a.
        let client = redis::Client::open(format!("redis://{addr_b}/?protocol=resp3")).unwrap();
        let mut con = client.get_connection().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<PushInfo>();
        con.set_push_sender(tx);
        let _: () = redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("on")
            .query(&mut con)
            .unwrap();
        let writer = redis::Client::open(format!("redis://{addr_a}/")).unwrap();
        let mut writer = writer.get_connection().unwrap();
        let _: () = writer.set("rs:tracked", "v1").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while con
            .get::<_, Option<String>>("rs:tracked")
            .unwrap()
            .as_deref()
            != Some("v1")
        {
            assert!(Instant::now() < deadline, "v1 never reached leaf-b");
            std::thread::sleep(Duration::from_millis(10));
        }
        while rx.try_recv().is_ok() {}
        let _: () = writer.set("rs:tracked", "v2").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Pushes are read along with replies: PING until the invalidation comes in.
            let _: String = redis::cmd("PING").query(&mut con).unwrap();
            if let Ok(push) = rx.try_recv() {
                assert_eq!(push.kind, PushKind::Invalidate, "{push:?}");
                assert_eq!(
                    push.data,
                    vec![Value::Array(vec![Value::BulkString(
                        b"rs:tracked".to_vec()
                    )])]
                );
                break;
            }
            assert!(Instant::now() < deadline, "no invalidation push arrived");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(con.get::<_, String>("rs:tracked").unwrap(), "v2");
    })
    .await
    .unwrap();
    t.shutdown().await;
}
