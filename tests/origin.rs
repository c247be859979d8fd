//! Read-through origins for nodes run from topology files: an HTTP origin (a small axum server
//! that counts what it is asked) and a file origin behind every door, one fetch per key however
//! many ask at once, misses and errors not cached, the fetched value replicated, `fetch_on_miss`
//! asking the hub first, and the origin's figures in `/metrics`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use leafcache::Node;
use leafcache::topology::Topology;
use support::eventually;

/// An origin that answers `value of KEY` after 150 ms, 404 for keys starting `missing`, 500 for
/// `broken`, and nothing for 3 s for `slow`; it counts requests per key.
struct TestOrigin {
    addr: String,
    asked: Arc<parking_lot::Mutex<std::collections::HashMap<String, u64>>>,
    total: Arc<AtomicU64>,
}

impl TestOrigin {
    async fn start() -> TestOrigin {
        type Seen = (
            Arc<parking_lot::Mutex<std::collections::HashMap<String, u64>>>,
            Arc<AtomicU64>,
        );
        async fn item(
            State((asked, total)): State<Seen>,
            Path(key): Path<String>,
        ) -> (StatusCode, String) {
            total.fetch_add(1, Ordering::SeqCst);
            *asked.lock().entry(key.clone()).or_default() += 1;
            match key.as_str() {
                k if k.starts_with("missing") => (StatusCode::NOT_FOUND, "no".into()),
                "broken" => (StatusCode::INTERNAL_SERVER_ERROR, "boom".into()),
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    (StatusCode::OK, "late".into())
                }
                k => {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    (StatusCode::OK, format!("value of {k}"))
                }
            }
        }
        let asked = Arc::new(parking_lot::Mutex::new(std::collections::HashMap::new()));
        let total = Arc::new(AtomicU64::new(0));
        let app = axum::Router::new()
            .route("/items/{*key}", axum::routing::get(item))
            .with_state((asked.clone(), total.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        TestOrigin { addr, asked, total }
    }

    fn asked(&self, key: &str) -> u64 {
        self.asked.lock().get(key).copied().unwrap_or(0)
    }
}

fn redis_at(addr: &str) -> redis::Connection {
    redis::Client::open(format!("redis://{addr}/"))
        .unwrap()
        .get_connection()
        .unwrap()
}

fn get(conn: &mut redis::Connection, key: &str) -> redis::RedisResult<Option<String>> {
    redis::cmd("GET").arg(key).query(conn)
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut r = agent.get(&format!("http://{addr}{path}")).call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

fn topology(dir: &std::path::Path, origin: &str) -> Topology {
    let file = dir.join("origin.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[cluster]
name = "origin-test"
secret = "origin-test-secret"

[defaults]
origin = "{origin}"
origin_timeout = "1s"

[[node]]
name = "hub"
listen = "127.0.0.1:0"
resp = "127.0.0.1:0"
http = "127.0.0.1:0"

[[node]]
name = "leaf"
hub = "hub"
resp = "127.0.0.1:0"
http = "127.0.0.1:0"
"#
        ),
    )
    .unwrap();
    Topology::load(&file).unwrap()
}

use support::temp_dir;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_http_origin_is_read_once_per_key_through_every_door_and_replicated() {
    let origin = TestOrigin::start().await;
    let dir = temp_dir("origin-http");
    let nodes = topology(&dir, &format!("http://{}/items/{{key}}", origin.addr))
        .start_all()
        .await
        .unwrap();
    let (hub, leaf) = (&nodes[0], &nodes[1]);
    let (resp, http) = (
        hub.resp_addr().unwrap().to_string(),
        hub.http_addr().unwrap().to_string(),
    );

    // Twenty RESP connections and five HTTP requests miss on one key at once: one fetch.
    let mut readers = Vec::new();
    for i in 0..25 {
        let (resp, http) = (resp.clone(), http.clone());
        readers.push(std::thread::spawn(move || {
            if i % 5 == 4 {
                http_get(&http, "/v1/caches/default/keys/shoe%2042").1
            } else {
                get(&mut redis_at(&resp), "shoe 42").unwrap().unwrap()
            }
        }));
    }
    for r in readers {
        assert_eq!(
            tokio::task::spawn_blocking(move || r.join().unwrap())
                .await
                .unwrap(),
            "value of shoe 42"
        );
    }
    assert_eq!(
        origin.asked("shoe 42"),
        1,
        "single flight across every door"
    );
    // Cached with the cache's TTL and replicated: the leaf holds it without asking.
    assert_eq!(
        hub.default_cache().get("shoe 42").unwrap(),
        "value of shoe 42"
    );
    eventually(Duration::from_secs(10), "the leaf has it", || {
        leaf.default_cache()
            .peek("shoe 42")
            .map(|_| ())
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    let mut at_leaf = redis_at(leaf.resp_addr().unwrap());
    let at_leaf_value = tokio::task::spawn_blocking(move || get(&mut at_leaf, "shoe 42"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(at_leaf_value.as_deref(), Some("value of shoe 42"));
    assert_eq!(origin.asked("shoe 42"), 1);

    let resp2 = resp.clone();
    let http2 = http.clone();
    let outcomes = tokio::task::spawn_blocking(move || {
        let mut c = redis_at(&resp2);
        // Not at the origin: a miss, not cached (asked again the next time).
        let missing = (
            get(&mut c, "missing-1").unwrap(),
            get(&mut c, "missing-1").unwrap(),
        );
        let missing_http = http_get(&http2, "/get?key=missing-1").0;
        // The origin fails: an error, not cached.
        let broken = get(&mut c, "broken").unwrap_err().to_string();
        let broken_http = http_get(&http2, "/v1/caches/default/keys/broken");
        // The origin is too slow: an error after the timeout.
        let started = Instant::now();
        let slow = get(&mut c, "slow").unwrap_err().to_string();
        let slow_took = started.elapsed();
        // A key that would leave the path is refused before anything is asked.
        let escape = get(&mut c, "a/../../etc/passwd").unwrap_err().to_string();
        // The connection still serves.
        let after = get(&mut c, "shoe 42").unwrap();
        (
            missing,
            missing_http,
            broken,
            broken_http,
            slow,
            slow_took,
            escape,
            after,
        )
    })
    .await
    .unwrap();
    let (missing, missing_http, broken, broken_http, slow, slow_took, escape, after) = outcomes;
    assert_eq!(missing, (None, None));
    assert_eq!(missing_http, 404);
    assert_eq!(origin.asked("missing-1"), 3, "a miss is not cached");
    assert!(broken.contains("answered 500"), "{broken}");
    assert_eq!(broken_http.0, 502, "{broken_http:?}");
    assert!(broken_http.1.contains("origin_error"), "{broken_http:?}");
    assert_eq!(origin.asked("broken"), 2, "an error is not cached");
    assert!(slow.contains("did not answer within"), "{slow}");
    assert!(slow_took < Duration::from_millis(2500), "{slow_took:?}");
    assert!(escape.contains("leave the origin"), "{escape}");
    assert_eq!(origin.asked("a/../../etc/passwd"), 0);
    assert_eq!(after.as_deref(), Some("value of shoe 42"));
    assert!(hub.default_cache().peek("missing-1").is_none());
    assert!(hub.default_cache().peek("broken").is_none());

    // The origin's figures: requests that found a value, misses, errors, and how long they took.
    let metrics = http_get(&http, "/metrics").1;
    for needle in [
        "leafcache_cache_loads_total{cache=\"default\"} 1",
        "leafcache_cache_load_misses_total{cache=\"default\"} 3",
        "leafcache_cache_load_errors_total{cache=\"default\"} 4",
        "leafcache_cache_load_duration_seconds_count{cache=\"default\"} 8",
        "leafcache_cache_load_duration_seconds_bucket{cache=\"default\",le=\"+Inf\"} 8",
    ] {
        assert!(
            metrics.contains(needle),
            "metrics lack {needle:?}:\n{metrics}"
        );
    }
    for n in &nodes {
        n.shutdown().await;
    }
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_origin_serves_files_under_its_directory_only() {
    let dir = temp_dir("origin-file");
    let files = dir.join("products");
    std::fs::create_dir_all(files.join("shoes")).unwrap();
    std::fs::write(files.join("shoes/42.json"), br#"{"size":42}"#).unwrap();
    std::fs::write(files.join("a b.json"), b"escaped").unwrap();
    std::fs::write(dir.join("secret"), b"outside").unwrap();
    let nodes = topology(&dir, &format!("file:{}/{{key}}", files.display()))
        .start_all()
        .await
        .unwrap();
    let resp = nodes[1].resp_addr().unwrap().to_string();
    let http = nodes[1].http_addr().unwrap().to_string();
    let (found, spaced, missing, escape, http_found) = tokio::task::spawn_blocking(move || {
        let mut c = redis_at(&resp);
        (
            get(&mut c, "shoes/42.json").unwrap(),
            get(&mut c, "a%20b.json").unwrap(),
            get(&mut c, "shoes/43.json").unwrap(),
            get(&mut c, "../secret").unwrap_err().to_string(),
            http_get(&http, "/v1/caches/default/keys/shoes/42.json"),
        )
    })
    .await
    .unwrap();
    assert_eq!(found.as_deref(), Some(r#"{"size":42}"#));
    // The key is escaped into the file name: `a b.json` is read by the key "a b.json"... and
    // the key "a%20b.json" names the file "a%2520b.json", which is not there.
    assert_eq!(spaced, None);
    assert_eq!(missing, None);
    assert!(escape.contains("leave the origin"), "{escape}");
    assert_eq!(http_found, (200, r#"{"size":42}"#.to_string()));
    let c = nodes[1].default_cache();
    assert_eq!(
        c.get_or_fetch("a b.json").await.unwrap().as_deref(),
        None,
        "the file is a%20b.json on disk"
    );
    std::fs::write(files.join("a%20b.json"), b"escaped").unwrap();
    assert_eq!(
        c.get_or_fetch("a b.json").await.unwrap().unwrap(),
        "escaped"
    );
    for n in &nodes {
        n.shutdown().await;
    }
    std::fs::remove_dir_all(dir).ok();
}

/// With `fetch_on_miss`, a leaf's miss asks its hub first: the origin is not asked for what the
/// hub holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_on_miss_asks_the_hub_before_the_origin() {
    let origin = TestOrigin::start().await;
    let template = format!("http://{}/items/{{key}}", origin.addr);
    let config = || {
        leafcache::CacheConfig::new().max_entries(2).loader(
            leafcache::Origin::new(&template, Duration::from_secs(1))
                .unwrap()
                .loader(),
        )
    };
    let hub = Node::builder()
        .name("hub")
        .local_address("127.0.0.1:0")
        .default_cache(
            leafcache::CacheConfig::new().loader(
                leafcache::Origin::new(&template, Duration::from_secs(1))
                    .unwrap()
                    .loader(),
            ),
        )
        .build()
        .unwrap();
    for i in 0..10 {
        hub.default_cache()
            .set(format!("k{i}"), format!("from the hub {i}"))
            .unwrap();
    }
    let leaf = Node::builder()
        .name("leaf")
        .remote_address(hub.local_addr().unwrap())
        .fetch_on_miss("1s")
        .default_cache(config())
        .build()
        .unwrap();
    eventually(Duration::from_secs(10), "linked", || {
        if leaf
            .links()
            .iter()
            .any(|l| l.state == leafcache::LinkState::Up)
        {
            Ok(())
        } else {
            Err("no".into())
        }
    })
    .await;
    // The leaf holds two entries; k0 is long evicted there.
    let c = leaf.default_cache();
    assert!(c.peek("k0").is_none());
    assert_eq!(
        c.get_or_fetch("k0").await.unwrap().unwrap(),
        "from the hub 0"
    );
    assert_eq!(origin.total.load(Ordering::SeqCst), 0, "the hub had it");
    // Neither has it: the origin is asked, once.
    assert_eq!(
        c.get_or_fetch("new").await.unwrap().unwrap(),
        "value of new"
    );
    assert_eq!(origin.asked("new"), 1);
    leaf.shutdown().await;
    hub.shutdown().await;
}
