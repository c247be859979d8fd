//! The HTTP door: the original `/get` and `/set`, the REST API, stats, topology, health,
//! Prometheus metrics, bearer auth, JSON errors, limits and hostile requests.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use leafcache::{CacheConfig, LinkState, ManualClock, Node, ServerLimits};
use serde_json::{Value, json};
use support::eventually;

struct Http {
    base: String,
    agent: ureq::Agent,
    token: Option<String>,
}

/// A response reduced to what the tests look at.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The `error.code` of a JSON error.
    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.text()))
            .to_string()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Http {
    fn to(node: &Node) -> Http {
        Http {
            base: format!("http://{}", node.http_addr().expect("http door")),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into(),
            token: None,
        }
    }

    fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
        let mut r = r.expect("request sent");
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        Answer {
            status: r.status().as_u16(),
            content_type: r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            body: r.body_mut().read_to_vec().unwrap_or_default(),
            headers,
        }
    }

    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => req.header("authorization", format!("Bearer {t}")),
            None => req,
        }
    }

    fn get(&self, path: &str) -> Answer {
        Http::answer(
            self.auth(self.agent.get(format!("{}{path}", self.base)))
                .call(),
        )
    }

    fn head(&self, path: &str) -> Answer {
        Http::answer(
            self.auth(self.agent.head(format!("{}{path}", self.base)))
                .call(),
        )
    }

    fn delete(&self, path: &str) -> Answer {
        Http::answer(
            self.auth(self.agent.delete(format!("{}{path}", self.base)))
                .call(),
        )
    }

    fn put(&self, path: &str, body: &[u8]) -> Answer {
        Http::answer(
            self.auth(self.agent.put(format!("{}{path}", self.base)))
                .send(body),
        )
    }

    fn post(&self, path: &str, body: &[u8]) -> Answer {
        Http::answer(
            self.auth(self.agent.post(format!("{}{path}", self.base)))
                .send(body),
        )
    }
}

fn node_with_http(builder: leafcache::NodeBuilder) -> Node {
    builder.http_address("127.0.0.1:0").build().expect("node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_get_and_set_endpoints() {
    let clock = ManualClock::new(1_700_000_000_000);
    let node = node_with_http(
        Node::builder()
            .clock(clock.clone())
            .cache("sessions", CacheConfig::new()),
    );
    let http = Http::to(&node);
    let set = http.get("/set?key=a&value=b");
    assert_eq!((set.status, set.text().as_str()), (200, "OK"));
    let got = http.get("/get?key=a");
    assert_eq!((got.status, got.text().as_str()), (200, "b"));
    assert_eq!(got.content_type, "application/octet-stream");
    let missing = http.get("/get?key=zzz");
    assert_eq!(
        (missing.status, missing.code().as_str()),
        (404, "not_found")
    );

    // POST, with the value in the query or as the body; a TTL; another cache.
    assert_eq!(http.post("/set?key=p&value=q", b"").status, 200);
    assert_eq!(
        http.post("/set?key=body&ttl=120s", b"from the body").status,
        200
    );
    assert_eq!(node.default_cache().get("body").unwrap(), "from the body");
    let info = node.default_cache().peek("body").unwrap();
    assert_eq!(info.expires_at, Some(clock.now_ms() + 120_000));
    assert_eq!(
        http.get("/set?key=s&value=1&ttl=30&cache=sessions").status,
        200
    );
    assert_eq!(
        node.cache("sessions")
            .unwrap()
            .peek("s")
            .unwrap()
            .expires_at,
        Some(clock.now_ms() + 30_000)
    );
    assert_eq!(http.get("/get?key=s&cache=sessions").text(), "1");
    clock.advance(Duration::from_secs(31));
    assert_eq!(http.get("/get?key=s&cache=sessions").status, 404);

    // Bad input: JSON errors with the right codes.
    let no_key = http.get("/get");
    assert_eq!(
        (no_key.status, no_key.code().as_str()),
        (400, "bad_request")
    );
    assert_eq!(http.get("/set?key=k").code(), "bad_request");
    assert_eq!(
        http.get("/set?key=k&value=v&ttl=soon").code(),
        "bad_request"
    );
    assert_eq!(http.get("/set?key=k&value=v&ttl=0s").code(), "bad_request");
    let unknown = http.get("/get?key=a&cache=nope");
    assert_eq!(
        (unknown.status, unknown.code().as_str()),
        (404, "unknown_cache")
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_api_reads_writes_and_purges() {
    let clock = ManualClock::new(1_700_000_000_000);
    let node = node_with_http(
        Node::builder()
            .clock(clock.clone())
            .cache("pages", CacheConfig::new()),
    );
    let http = Http::to(&node);
    let put = http.put("/v1/caches/pages/keys/home", b"<html>");
    assert_eq!(put.status, 204);
    let got = http.get("/v1/caches/pages/keys/home");
    assert_eq!((got.status, got.body.as_slice()), (200, &b"<html>"[..]));
    assert_eq!(got.header("x-expires-at-ms"), None);
    assert_eq!(http.head("/v1/caches/pages/keys/home").status, 200);
    assert_eq!(http.head("/v1/caches/pages/keys/gone").status, 404);

    // Keys with slashes and escapes, a TTL, binary values.
    let value: Vec<u8> = (0..=255u8).collect();
    assert_eq!(
        http.put("/v1/caches/pages/keys/a/b%20c?ttl=1m", &value)
            .status,
        204
    );
    let got = http.get("/v1/caches/pages/keys/a/b%20c");
    assert_eq!(got.body, value);
    let at = (clock.now_ms() + 60_000).to_string();
    assert_eq!(got.header("x-expires-at-ms"), Some(at.as_str()));
    assert_eq!(node.cache("pages").unwrap().get("a/b c").unwrap(), value);

    // Delete says whether there was something.
    let del = http.delete("/v1/caches/pages/keys/home");
    assert_eq!(
        (del.status, del.json()["deleted"].as_bool()),
        (200, Some(true))
    );
    assert_eq!(
        http.delete("/v1/caches/pages/keys/home").json()["deleted"],
        false
    );
    let misses = node.cache("pages").unwrap().stats().misses;
    assert_eq!(http.get("/v1/caches/pages/keys/home").code(), "not_found");
    assert_eq!(
        node.cache("pages").unwrap().stats().misses,
        misses + 1,
        "a REST miss counts as one"
    );

    // The cache list, then a purge.
    let list = http.get("/v1/caches").json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "pages"]);
    assert_eq!(list[1]["entries"], 1);
    let purge = http.delete("/v1/caches/pages");
    assert_eq!(
        (purge.status, purge.json()["purged"].as_str()),
        (200, Some("pages"))
    );
    assert!(node.cache("pages").unwrap().is_empty());

    // Errors: unknown cache, wrong method, unknown route.
    assert_eq!(
        http.put("/v1/caches/nope/keys/k", b"v").code(),
        "unknown_cache"
    );
    assert_eq!(http.delete("/v1/caches/nope").status, 404);
    let wrong = http.post("/v1/caches/pages/keys/k", b"v");
    assert_eq!(
        (wrong.status, wrong.code().as_str()),
        (405, "method_not_allowed")
    );
    // Counters and hashes: POST .../incr adds up; a hash reads as a JSON object.
    assert_eq!(
        http.post("/v1/caches/pages/keys/hits/incr", b"").text(),
        "1"
    );
    assert_eq!(
        http.post("/v1/caches/pages/keys/hits/incr?by=41", b"")
            .text(),
        "42"
    );
    assert_eq!(http.get("/v1/caches/pages/keys/hits").text(), "42");
    assert_eq!(
        http.post("/v1/caches/pages/keys/hits/incr?by=0.5", b"")
            .text(),
        "42.5"
    );
    let bad = http.post("/v1/caches/pages/keys/hits/incr?by=lots", b"");
    assert_eq!((bad.status, bad.code().as_str()), (400, "bad_request"));
    let cache = node.cache("pages").unwrap();
    cache.hset("user", "name", "ada").unwrap();
    cache.hincr("user", "visits", 3).unwrap();
    let user: serde_json::Value =
        serde_json::from_str(&http.get("/v1/caches/pages/keys/user").text()).unwrap();
    assert_eq!(user, serde_json::json!({"name": "ada", "visits": "3"}));
    let wrong_type = http.post("/v1/caches/pages/keys/user/incr", b"");
    assert_eq!(
        (wrong_type.status, wrong_type.code().as_str()),
        (409, "wrong_type")
    );
    let nowhere = http.get("/v2/anything");
    assert_eq!((nowhere.status, nowhere.code().as_str()), (404, "no_route"));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_and_keys_are_bounded() {
    let limits = ServerLimits {
        max_key: 32,
        max_value: 1000,
        max_http_body: 4096,
        ..ServerLimits::default()
    };
    let node = node_with_http(Node::builder().server_limits(limits));
    let http = Http::to(&node);
    let big = vec![b'x'; 5000];
    let too_big = http.put("/v1/caches/default/keys/k", &big);
    assert_eq!(
        (too_big.status, too_big.code().as_str()),
        (413, "body_too_large")
    );
    let over_value = http.put("/v1/caches/default/keys/k", &big[..2000]);
    assert_eq!(
        (over_value.status, over_value.code().as_str()),
        (413, "value_too_large")
    );
    let long_key = format!("/v1/caches/default/keys/{}", "k".repeat(33));
    assert_eq!(http.put(&long_key, b"v").code(), "bad_request");
    assert_eq!(
        http.put("/v1/caches/default/keys/k", &big[..1000]).status,
        204
    );
    assert!(
        node.default_cache().len() == 1,
        "refused writes store nothing"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_makes_every_endpoint_but_health_ask_for_the_token() {
    let node = node_with_http(Node::builder().password("s3cret"));
    let mut http = Http::to(&node);
    let refused = http.get("/get?key=a");
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (401, "unauthorized")
    );
    assert!(refused.header("www-authenticate").is_some());
    assert_eq!(http.get("/metrics").status, 401);
    assert_eq!(http.get("/health").status, 200);
    http.token = Some("wrong".into());
    assert_eq!(http.get("/v1/stats").status, 401);
    http.token = Some("s3cret".into());
    assert_eq!(http.get("/set?key=a&value=1").status, 200);
    assert_eq!(http.get("/get?key=a").text(), "1");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_topology_health_and_metrics_describe_the_node_and_its_links() {
    let hub = Node::builder()
        .name("hub")
        .local_address("127.0.0.1:0")
        .http_address("127.0.0.1:0")
        .build()
        .unwrap();
    let leaf = Node::builder()
        .name("leaf")
        .remote_address(hub.local_addr().unwrap())
        .http_address("127.0.0.1:0")
        .connection_timeout("1s")
        .build()
        .unwrap();
    let (hub_http, leaf_http) = (Http::to(&hub), Http::to(&leaf));
    eventually(Duration::from_secs(10), "leaf healthy", || {
        let h = leaf_http.get("/health").json();
        if h["status"] == "ok" {
            Ok(())
        } else {
            Err(h.to_string())
        }
    })
    .await;
    assert_eq!(leaf_http.get("/set?key=k&value=v").status, 200);
    eventually(Duration::from_secs(10), "write replicated", || {
        match hub.default_cache().get("k") {
            Some(_) => Ok(()),
            None => Err("not yet".into()),
        }
    })
    .await;
    assert_eq!(hub_http.get("/get?key=k").text(), "v");

    let stats = leaf_http.get("/v1/stats").json();
    assert_eq!(stats["node"]["name"], "leaf");
    assert_eq!(stats["node"]["role"], "leaf");
    assert_eq!(stats["caches"][0]["name"], "default");
    assert!(stats["server"]["http_requests"].as_u64().unwrap() >= 2);

    let topo = hub_http.get("/v1/topology").json();
    assert_eq!(topo["node"]["role"], "hub");
    assert_eq!(topo["node"]["listen"], hub.local_addr().unwrap());
    let links = topo["links"].as_array().unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0]["peer_name"], "leaf");
    assert_eq!(links[0]["state"], "up");
    assert_eq!(links[0]["direction"], "downstream");
    assert_eq!(links[0]["peer_id"], leaf.id().to_string());

    let metrics = hub_http.get("/metrics");
    assert!(
        metrics
            .content_type
            .starts_with("text/plain; version=0.0.4")
    );
    let text = metrics.text();
    for needle in [
        "# TYPE leafcache_cache_hits_total counter",
        "leafcache_cache_entries{cache=\"default\"} 1",
        // Labelled by direction and peer name, not by a connection id that changes.
        "leafcache_link_up{direction=\"downstream\",peer=\"leaf\",state=\"up\"} 1",
        "leafcache_link_changes_applied_total{",
        // The resync the hub sent the leaf when it linked: done, every record sent.
        "leafcache_link_syncing{direction=\"downstream\",peer=\"leaf\"} 0",
        "leafcache_link_sync_total_changes{direction=\"downstream\",peer=\"leaf\"}",
        "leafcache_server_http_requests_total ",
    ] {
        assert!(text.contains(needle), "metrics lack {needle:?}:\n{text}");
    }
    // Every sample line is `name{labels} value` with a numeric value.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample {line:?}");
    }

    // The hub goes away: the leaf still serves, and says which link is down.
    hub.shutdown().await;
    eventually(Duration::from_secs(10), "leaf reports its hub down", || {
        let h = leaf_http.get("/health");
        let body = h.json();
        if h.status == 200
            && body["status"] == "degraded"
            && body["links_down"][0]["direction"] == "upstream"
        {
            Ok(())
        } else {
            Err(body.to_string())
        }
    })
    .await;
    assert_eq!(leaf_http.get("/get?key=k").text(), "v");
    leaf.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_errors_and_the_door_stays_open() {
    use rand::{Rng, SeedableRng};
    let node = node_with_http(Node::builder());
    let addr = node.http_addr().unwrap().to_string();
    let http = Http::to(&node);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let fixed: Vec<Vec<u8>> = vec![
        b"GARBAGE\r\n\r\n".to_vec(),
        b"GET /get?key=%ZZ HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"PUT /v1/caches/default/keys/k HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\nabc".to_vec(),
        b"GET /v1/caches/default/keys/%FF%FE HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"POST /set?key=k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        [b"GET /".as_slice(), &vec![b'a'; 100_000], b" HTTP/1.1\r\n\r\n"].concat(),
    ];
    let random = (0..50).map(|_| {
        let n = rng.random_range(1..300);
        (0..n).map(|_| rng.random::<u8>()).collect::<Vec<u8>>()
    });
    for bytes in fixed.into_iter().chain(random) {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        let text = String::from_utf8_lossy(&reply);
        // Either nothing (the parser gave up on the connection) or an error status.
        if let Some(status) = text.split(' ').nth(1) {
            assert!(status.starts_with('4') || status.starts_with('5'), "{text}");
        }
    }
    // A non-UTF-8 key in the path is a 400 in our JSON shape.
    let bad = http.get("/v1/caches/default/keys/%FF%FE");
    assert_eq!((bad.status, bad.code().as_str()), (400, "bad_request"));
    assert_eq!(http.get("/set?key=still&value=up").status, 200);
    assert_eq!(http.get("/get?key=still").text(), "up");
    node.shutdown().await;
}

#[test]
fn the_cli_client_reports_an_unreachable_node_in_one_line() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leafcache"))
        .args(["get", "k", "--node", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "leafcache: cannot reach the node at http://{addr}"
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_client_reads_and_writes_through_a_node() {
    let node = node_with_http(Node::builder().password("pw"));
    let addr = node.http_addr().unwrap().to_string();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_leafcache"))
            .args(args)
            .args(["--node", &addr])
            .env("LEAFCACHE_PASSWORD", "pw")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(
        cli(&["set", "user/1", "ada lovelace", "--ttl", "1h"]).1,
        "OK\n"
    );
    assert_eq!(cli(&["get", "user/1"]).1, "ada lovelace\n");
    assert!(
        node.default_cache()
            .peek("user/1")
            .unwrap()
            .expires_at
            .is_some()
    );
    let (code, _, err) = cli(&["get", "nobody"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("404") && err.contains("no key"), "{err}");
    assert_eq!(cli(&["del", "user/1"]).1, "deleted\n");
    let (code, _, err) = cli(&["del", "user/1"]);
    assert_eq!(code, Some(1), "a key not there: 1, as for get");
    assert!(err.contains("no key \"user/1\""), "{err}");
    let stats: Value = serde_json::from_str(&cli(&["stats"]).1).unwrap();
    assert_eq!(stats["caches"][0]["name"], "default");
    let topo: Value = serde_json::from_str(&cli(&["topology"]).1).unwrap();
    assert_eq!(topo["node"]["role"], "standalone");
    let (code, _, err) = cli(&["get", "k", "--cache", "nope"]);
    assert_eq!(
        code,
        Some(2),
        "a cache the node does not have is an error, not a miss"
    );
    assert!(err.contains("unknown cache"), "{err}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_keeps_one_record_per_leaf_and_stays_healthy_when_leaves_go() {
    let hub = support::http_node("hub", None, true);
    let proxy = support::proxy::Proxy::start(hub.local_addr().unwrap()).await;
    let leaf = support::http_node("leaf", Some(proxy.addr()), false);
    let hub_http = Http::to(&hub);
    let leaf_up = |want: usize| {
        let hub = hub.clone();
        move || {
            let links = hub.links();
            let up = links.iter().filter(|l| l.state == LinkState::Up).count();
            if up == want {
                Ok(())
            } else {
                Err(format!("{links:?}"))
            }
        }
    };
    eventually(Duration::from_secs(10), "leaf linked", leaf_up(1)).await;
    let leaf_http = Http::to(&leaf);
    // Three outages: each reconnection is a new link, but the hub keeps one record of the leaf.
    let wall_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let mut back_at = 0;
    for round in 0..3 {
        proxy.cut();
        eventually(Duration::from_secs(10), "leaf cut", leaf_up(0)).await;
        // A new attempt that hangs in its handshake (the proxy lets the connection in but
        // forwards nothing) still says whom the link is for and why the last one ended.
        proxy.heal();
        proxy.stall();
        // A write made during the outage is lag that grows with time, not `lag_ms: 0`.
        leaf.default_cache()
            .set(format!("during-{round}"), "v")
            .unwrap();
        let mut down_since = None;
        eventually(
            Duration::from_secs(10),
            "leaf's record of the outage",
            || {
                let l = leaf.links().remove(0);
                down_since = l.down_since_ms;
                if l.state == LinkState::Handshaking
                    && l.peer_name.as_deref() == Some("hub")
                    && l.last_error.is_some()
                    && l.lag_changes >= 1
                    && l.lag_ms >= 50
                    && l.down_ms >= 50
                {
                    Ok(())
                } else {
                    Err(format!("{l:?}"))
                }
            },
        )
        .await;
        // Through every attempt of the outage the link is down since the same moment, and its
        // metrics keep their labels.
        let l = leaf.links().remove(0);
        assert_eq!(l.down_since_ms, down_since, "{l:?}");
        // And each outage counts from its own start, not from an earlier one's.
        assert!(
            down_since.is_some_and(|at| at >= back_at),
            "round {round}: down since {down_since:?}, but the link was up again at {back_at}"
        );
        let metrics = leaf_http.get("/metrics").text();
        assert!(
            metrics.contains(
                "leafcache_link_up{direction=\"upstream\",peer=\"hub\",state=\"handshaking\"} 0"
            ),
            "{metrics}"
        );
        let health = leaf_http.get("/health").json();
        assert_eq!(health["status"], "degraded", "{health}");
        assert!(health["links_down"][0]["down_ms"].as_u64().unwrap() >= 50);
        proxy.heal();
        eventually(Duration::from_secs(10), "leaf back", leaf_up(1)).await;
        back_at = wall_ms();
        // Once the hub has the outage's write, nothing is lag any more.
        eventually(Duration::from_secs(10), "leaf caught up", || {
            let l = leaf.links().remove(0);
            if l.state == LinkState::Up && l.lag_changes == 0 && l.lag_ms == 0 && l.down_ms == 0 {
                Ok(())
            } else {
                Err(format!("{l:?}"))
            }
        })
        .await;
    }
    let links = hub.links();
    assert_eq!(links.len(), 1, "one record for the one leaf: {links:?}");
    assert_eq!(hub_http.get("/health").json()["status"], "ok");
    // The leaf stops: the hub has nothing wrong with it.
    leaf.shutdown().await;
    eventually(Duration::from_secs(10), "leaf gone", leaf_up(0)).await;
    let health = hub_http.get("/health").json();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(
        hub.links().len(),
        1,
        "the departed leaf's last record stays, once"
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_snapshot_degrades_health_and_shows_in_metrics_and_info() {
    let root = std::env::temp_dir().join(format!("leafcache-health-{}", uuid::Uuid::new_v4()));
    let node = Node::builder()
        .name("disk")
        .root(&root)
        .http_address("127.0.0.1:0")
        .resp_address("127.0.0.1:0")
        .build()
        .unwrap();
    let http = Http::to(&node);
    node.default_cache().set("k", "v").unwrap();
    let report = node.snapshot().unwrap();
    let health = http.get("/health").json();
    assert_eq!(health["status"], "ok", "{health}");
    let p = &health["persistence"];
    assert!(p["last_snapshot_ms"].as_u64().unwrap() > 0, "{health}");
    assert_eq!(p["last_snapshot_bytes"], report.bytes);
    assert_eq!(p["last_snapshot_entries"], 1);

    // The disk cannot take the snapshot (its temporary file's name is taken by a directory):
    // the node says so, the op log keeps the changes.
    std::fs::create_dir(root.join("snapshot.tmp")).unwrap();
    node.default_cache().set("k2", "v").unwrap();
    assert!(node.snapshot().is_err());
    let health = http.get("/health").json();
    assert_eq!(health["status"], "degraded", "{health}");
    let reason = health["reasons"][0].as_str().unwrap();
    assert!(reason.starts_with("the last snapshot failed"), "{reason}");
    assert_eq!(health["persistence"]["snapshot_failures"], 1);
    let metrics = http.get("/metrics").text();
    for needle in [
        "leafcache_snapshot_failing 1",
        "leafcache_snapshot_failures_total 1",
        &format!("leafcache_snapshot_last_bytes {}", report.bytes),
    ] {
        assert!(
            metrics.contains(needle),
            "metrics lack {needle:?}:\n{metrics}"
        );
    }
    assert!(metrics.contains("leafcache_oplog_bytes "), "{metrics}");
    let mut resp = std::net::TcpStream::connect(node.resp_addr().unwrap()).unwrap();
    resp.write_all(b"INFO persistence\r\n").unwrap();
    let mut info = String::new();
    let mut buf = [0u8; 4096];
    while !info.contains("aof_last_write_status") {
        let n = resp.read(&mut buf).unwrap();
        assert!(n > 0, "INFO ended early: {info}");
        info.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(info.contains("rdb_last_bgsave_status:err"), "{info}");

    // Room again: the next snapshot heals it.
    std::fs::remove_dir(root.join("snapshot.tmp")).unwrap();
    node.snapshot().unwrap();
    let health = http.get("/health").json();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["persistence"]["last_snapshot_entries"], 2);
    assert!(
        http.get("/metrics")
            .text()
            .contains("leafcache_snapshot_failing 0")
    );
    node.shutdown().await;
    std::fs::remove_dir_all(&root).unwrap();
}

/// The Grafana dashboard in `contrib/` asks only for metrics a node exposes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_uses_only_metrics_a_node_exposes() {
    let root = std::env::temp_dir().join(format!("leafcache-grafana-{}", uuid::Uuid::new_v4()));
    let hub = Node::builder()
        .name("hub")
        .root(&root)
        .local_address("127.0.0.1:0")
        .http_address("127.0.0.1:0")
        .build()
        .unwrap();
    let leaf = Node::builder()
        .name("leaf")
        .remote_address(hub.local_addr().unwrap())
        .build()
        .unwrap();
    eventually(Duration::from_secs(10), "leaf linked", || {
        if hub.links().iter().any(|l| l.state == LinkState::Up) {
            Ok(())
        } else {
            Err("no link".into())
        }
    })
    .await;
    let metrics = Http::to(&hub).get("/metrics").text();
    let exposed: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contrib/grafana-dashboard.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut asked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices("leafcache_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(exposed.contains(name.as_str()), "{name} is not exposed");
                asked += 1;
            }
        }
    }
    assert!(asked >= 20, "{asked}");
    leaf.shutdown().await;
    hub.shutdown().await;
    std::fs::remove_dir_all(&root).unwrap();
}

/// `/v1/cluster` on any node lists the whole tree, and says what lies beyond a lost link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_lists_the_whole_tree_and_what_is_unreachable() {
    let hub = support::http_node("hub", None, true);
    let proxy = support::proxy::Proxy::start(hub.local_addr().unwrap()).await;
    let relay = support::http_node("relay", Some(proxy.addr()), true);
    let leaves: Vec<Node> = ["a", "b"]
        .iter()
        .map(|n| support::http_node(n, relay.local_addr(), false))
        .collect();
    leaves[0].default_cache().set("k", "v").unwrap();
    let names = |v: &Value, reachable: bool| -> Vec<String> {
        let mut n: Vec<String> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["reachable"] == reachable)
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    for node in [&hub, &relay, &leaves[0], &leaves[1]] {
        let http = Http::to(node);
        eventually(Duration::from_secs(10), "the whole tree", || {
            let v = http.get("/v1/cluster").json();
            if names(&v, true) == ["a", "b", "hub", "relay"] && v["unreachable"] == json!([]) {
                Ok(())
            } else {
                Err(v.to_string())
            }
        })
        .await;
    }
    let v = Http::to(&hub).get("/v1/cluster").json();
    let a = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "a")
        .unwrap()
        .clone();
    assert_eq!(a["role"], "leaf");
    assert_eq!(a["hub"], relay.id().to_string());
    assert_eq!(a["upstream"]["state"], "up");
    assert_eq!(a["via"], "relay");
    assert_eq!(v["nodes"][0]["name"], "hub", "the answering node first");

    // The relay loses its hub. Leaf b still sees everything, the hub as its last known state;
    // the relay says which link it cannot see beyond, and what was there.
    proxy.cut();
    let b = Http::to(&leaves[1]);
    eventually(
        Duration::from_secs(10),
        "the hub unreachable from b",
        || {
            let v = b.get("/v1/cluster").json();
            if names(&v, true) == ["a", "b", "relay"] && names(&v, false) == ["hub"] {
                Ok(())
            } else {
                Err(v.to_string())
            }
        },
    )
    .await;
    // b's own links are up, but what it shows unreachable has a lost link listed on its way:
    // the relay's, as the relay says.
    let v = b.get("/v1/cluster").json();
    let relays = v["unreachable"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["from"] == "relay")
        .unwrap_or_else(|| panic!("no lost link listed: {v}"));
    assert_eq!(relays["direction"], "upstream", "{v}");
    assert_ne!(relays["state"], "up", "{v}");
    assert_eq!(relays["last_known"], json!(["hub"]), "{v}");
    let v = Http::to(&relay).get("/v1/cluster").json();
    let lost = &v["unreachable"][0];
    assert_eq!(lost["from"], Value::Null, "the relay's own link: {v}");
    assert_eq!(lost["direction"], "upstream", "{v}");
    assert_eq!(lost["peer"], "hub");
    assert_eq!(lost["last_known"], json!(["hub"]));
    assert!(lost["last_error"].is_string(), "{v}");
    // The hub, for its part, lost the relay and what lay beyond it.
    eventually(
        Duration::from_secs(10),
        "the relay's subtree unreachable",
        || {
            let v = Http::to(&hub).get("/v1/cluster").json();
            if names(&v, false) == ["a", "b", "relay"] {
                Ok(())
            } else {
                Err(v.to_string())
            }
        },
    )
    .await;
    proxy.heal();
    eventually(Duration::from_secs(10), "whole again", || {
        let v = b.get("/v1/cluster").json();
        if names(&v, true) == ["a", "b", "hub", "relay"] {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;
    for n in leaves {
        n.shutdown().await;
    }
    relay.shutdown().await;
    hub.shutdown().await;
}
