//! The live dashboard in a real headless browser (Debian's `chromium`, driven over the Chrome
//! DevTools Protocol): a three-level tree, the page loaded from the leaf, every node drawn, a link
//! cut and seen turning down live on the same page, and a screenshot saved under
//! `target/dashboard/`.
//!
//! `tests/run-all` installs chromium and sets `LEAFCACHE_REQUIRE_BROWSER=1`, which makes a
//! missing browser a failure; a plain `cargo test` without it skips, saying so.

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// A headless chromium and a DevTools connection to its page.
struct Browser {
    child: Child,
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    next_id: u64,
    profile: PathBuf,
}

impl Browser {
    /// Starts chromium, or `None` if there is none on this machine.
    fn start() -> Option<Browser> {
        let exe = ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find(|b| {
                Command::new(b)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })?;
        let profile =
            std::env::temp_dir().join(format!("leafcache-chromium-{}", uuid::Uuid::new_v4()));
        let mut child = Command::new(exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--window-size=1400,900",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                &format!("--user-data-dir={}", profile.display()),
                "about:blank",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        // It says where its DevTools listen on stderr.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let browser_url = rx.recv_timeout(WAIT).expect("chromium's DevTools address");
        let port = browser_url
            .trim_start_matches("ws://")
            .split(['/', ':'])
            .nth(1)
            .unwrap()
            .to_string();
        // The page target made for about:blank.
        let deadline = Instant::now() + WAIT;
        let page = loop {
            let list: Value = ureq::get(&format!("http://127.0.0.1:{port}/json/list"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(Value::Null);
            if let Some(url) = list.as_array().and_then(|l| {
                l.iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_string))
            }) {
                break url;
            }
            assert!(Instant::now() < deadline, "chromium has no page");
            std::thread::sleep(Duration::from_millis(50));
        };
        let (ws, _) = tungstenite::connect(page.as_str()).expect("DevTools connection");
        Some(Browser {
            child,
            ws,
            next_id: 0,
            profile,
        })
    }

    /// Calls a DevTools method and returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params});
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .unwrap();
        loop {
            let reply = self.ws.read().expect("DevTools reply");
            let tungstenite::Message::Text(text) = reply else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page; its value (JSON-able).
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    fn screenshot(&mut self, name: &str) -> PathBuf {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dashboard");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A browser, or `None` (the test skipped, which LEAFCACHE_REQUIRE_BROWSER makes a failure).
fn browser_or_skip() -> Option<Browser> {
    let browser = Browser::start();
    if browser.is_none() {
        assert!(
            std::env::var_os("LEAFCACHE_REQUIRE_BROWSER").is_none(),
            "LEAFCACHE_REQUIRE_BROWSER is set but no chromium was found"
        );
        eprintln!("chromium not available; skipped — tests/run-all installs it");
    }
    browser
}

/// What the page shows: the nodes drawn, each link as (from, to, state), the connection label.
const PAGE_STATE: &str = r##"JSON.stringify({
    nodes: [...document.querySelectorAll("#tree g.node")].map(g => [g.dataset.name, g.dataset.reachable]),
    links: [...document.querySelectorAll("#tree g.link")].map(g => [g.dataset.from, g.dataset.to, g.dataset.state]),
    conn: document.getElementById("conn").textContent,
    unreachable: document.getElementById("unreachable").textContent,
})"##;

fn page(browser: &mut Browser) -> Value {
    let text = browser.eval(PAGE_STATE);
    serde_json::from_str(text.as_str().unwrap_or("{}")).unwrap()
}

fn link_state(page: &Value, from: &str) -> Option<String> {
    page["links"]
        .as_array()?
        .iter()
        .find_map(|l| (l[0] == from).then(|| l[2].as_str().unwrap_or_default().to_string()))
}

/// Polls the page until `done` accepts what it shows.
async fn until(browser: &mut Browser, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let p = page(browser);
        if done(&p) {
            return p;
        }
        assert!(Instant::now() < deadline, "{what}: the page shows {p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_the_tree_and_shows_a_cut_link_turn_down() {
    let Some(mut browser) = browser_or_skip() else {
        return;
    };
    let hub = support::http_node("hub", None, true);
    let proxy = support::proxy::Proxy::start(hub.local_addr().unwrap()).await;
    let relay = support::http_node("relay", Some(proxy.addr()), true);
    let leaf = support::http_node("leaf", relay.local_addr(), false);
    for i in 0..50 {
        leaf.default_cache().set(format!("k{i}"), "v").unwrap();
    }

    let url = format!("http://{}/dashboard", leaf.http_addr().unwrap());
    browser.call("Page.enable", json!({}));
    browser.call("Page.navigate", json!({"url": url}));
    let shown = until(&mut browser, "every node drawn, every link up", |p| {
        let names: Vec<&str> = p["nodes"]
            .as_array()
            .map(|n| n.iter().filter_map(|x| x[0].as_str()).collect())
            .unwrap_or_default();
        ["hub", "relay", "leaf"].iter().all(|n| names.contains(n))
            && link_state(p, "leaf").as_deref() == Some("up")
            && link_state(p, "relay").as_deref() == Some("up")
            && p["conn"] == "live"
    })
    .await;
    assert_eq!(shown["nodes"].as_array().unwrap().len(), 3, "{shown}");
    // The links point up the tree.
    let links = shown["links"].as_array().unwrap();
    assert!(
        links.iter().any(|l| l[0] == "leaf" && l[1] == "relay"),
        "{shown}"
    );
    assert!(
        links.iter().any(|l| l[0] == "relay" && l[1] == "hub"),
        "{shown}"
    );
    let before = browser.screenshot("tree.png");

    // The relay loses its hub: the same page, without a reload, shows that link down and the
    // hub as unreachable (its last known state).
    proxy.cut();
    let cut = until(&mut browser, "the cut link drawn down", |p| {
        matches!(
            link_state(p, "relay").as_deref(),
            Some("down" | "connecting" | "handshaking")
        ) && p["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|x| x[0] == "hub" && x[1] == "false"))
    })
    .await;
    assert_eq!(link_state(&cut, "leaf").as_deref(), Some("up"), "{cut}");
    let after = browser.screenshot("tree-link-down.png");
    eprintln!("screenshots: {} {}", before.display(), after.display());

    proxy.heal();
    until(&mut browser, "the link back up", |p| {
        link_state(p, "relay").as_deref() == Some("up")
            && p["nodes"]
                .as_array()
                .is_some_and(|n| n.iter().all(|x| x[1] == "true"))
    })
    .await;
    for n in [leaf, relay, hub] {
        n.shutdown().await;
    }
}

/// A sharded node's dashboard shows every shard and a stopped one turning down; `/health` says
/// degraded and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_shards_and_one_going_down() {
    let Some(mut browser) = browser_or_skip() else {
        return;
    };
    let topology = leafcache::topology::Topology::parse(
        "[cluster]\nname = \"s\"\nsecret = \"shards-secret\"\n[defaults]\nconnection_timeout = \"1s\"\n\
         [[node]]\nname = \"red\"\nshard = \"red\"\nresp = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
         [[node]]\nname = \"green\"\nshard = \"green\"\nresp = \"127.0.0.1:0\"\n",
        "shards.toml",
    )
    .unwrap();
    let nodes = topology.start_all().await.unwrap();
    let http = nodes[0].http_addr().unwrap().to_string();
    browser.call("Page.enable", json!({}));
    browser.call(
        "Page.navigate",
        json!({ "url": format!("http://{http}/dashboard") }),
    );
    let shards = r##"JSON.stringify([...document.querySelectorAll("#shards .shard")].map(d => [d.dataset.shard, d.className, d.textContent]))"##;
    let shown = |browser: &mut Browser| -> Vec<(String, String, String)> {
        let text = browser.eval(shards);
        serde_json::from_str(text.as_str().unwrap_or("[]")).unwrap_or_default()
    };
    let deadline = Instant::now() + WAIT;
    loop {
        let s = shown(&mut browser);
        if s.len() == 2
            && s.iter()
                .any(|(n, _, t)| n == "green" && t.contains("reachable"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the shards are not shown: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nodes[1].shutdown().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let s = shown(&mut browser);
        if s.iter()
            .any(|(n, c, t)| n == "green" && c.contains("down") && t.contains("down for"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stopped shard is not shown down: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shot = browser.screenshot("shards-down.png");
    eprintln!("screenshot: {}", shot.display());
    let body = ureq::get(&format!("http://{http}/health"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["reasons"][0]
            .as_str()
            .unwrap()
            .contains("shard green"),
        "{health}"
    );
    nodes[0].shutdown().await;
}
