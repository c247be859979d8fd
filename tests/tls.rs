//! TLS on links and doors over real sockets: the handshake matrix (good, no TLS on either end, a
//! certificate of another CA on either end, expired, for another name, key and certificate that
//! do not match, a key others can read), no key or value in the clear on a TLS link, certificates
//! reloaded without a restart, and the RESP and HTTP doors spoken to by `redis-cli --tls`,
//! `curl --cacert` and redis-py with `ssl=True`.
//!
//! The doors' clients are looked for on the PATH (`LEAFCACHE_PYTHON` for redis-py); when one is
//! missing its part is skipped, unless `LEAFCACHE_REQUIRE_CLIENTS` is set (as `tests/run-all`
//! does), which makes that a failure.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use leafcache::net::{Day, DevCa, TlsFiles};
use leafcache::replication::LinkState;
use leafcache::{Error, Node};
use support::eventually;
use support::proxy::Proxy;

const WAIT: Duration = Duration::from_secs(20);

/// A directory of certificates: the cluster CA, and node certificates written on demand.
struct Pki {
    dir: PathBuf,
    ca: DevCa,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = support::temp_dir(tag);
        let ca = DevCa::new(tag).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
        Pki { dir, ca }
    }

    /// Files for a node called `file`, its certificate for `names`, valid between the dates of
    /// `valid` if given.
    fn node(&self, file: &str, names: &[&str], valid: Option<(Day, Day)>) -> TlsFiles {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let issued = self.ca.issue_valid(&names, valid).unwrap();
        let (cert, key) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}-key.pem")),
        );
        write_key(&key, &issued.key_pem);
        std::fs::write(&cert, issued.cert_pem).unwrap();
        TlsFiles::new(self.dir.join("ca.pem"), cert, key)
    }

    /// A node certificate for 127.0.0.1 and localhost.
    fn local(&self, file: &str) -> TlsFiles {
        self.node(file, &[file, "127.0.0.1", "localhost"], None)
    }
}

fn write_key(path: &Path, pem: &str) {
    std::fs::write(path, pem).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn hub(name: &str, tls: Option<TlsFiles>) -> Node {
    let mut b = Node::builder()
        .name(name)
        .secret("s3cret")
        .connection_timeout("2s")
        .compression(false)
        .local_address("127.0.0.1:0");
    if let Some(files) = tls {
        b = b.tls(files);
    }
    b.build().unwrap()
}

fn leaf(name: &str, hub: &str, tls: Option<TlsFiles>) -> Node {
    let mut b = Node::builder()
        .name(name)
        .secret("s3cret")
        .connection_timeout("2s")
        .compression(false)
        .remote_address(hub);
    if let Some(files) = tls {
        b = b.tls(files);
    }
    b.build().unwrap()
}

fn addr(node: &Node) -> String {
    node.local_addr().unwrap().to_string()
}

async fn wait_up(node: &Node) {
    eventually(WAIT, "the upstream link up", || {
        let st = node.links();
        match st.first() {
            Some(s) if s.state == LinkState::Up => Ok(()),
            _ => Err(format!("{st:?}")),
        }
    })
    .await;
}

/// What the leaf's upstream link last failed with, once it contains `needle`.
async fn leaf_says(leaf: &Node, needle: &str) -> String {
    let mut said = String::new();
    eventually(WAIT, &format!("the leaf to say {needle:?}"), || {
        let st = leaf.links();
        said = st
            .first()
            .and_then(|s| s.last_error.clone())
            .unwrap_or_default();
        match st.first() {
            Some(s) if s.state != LinkState::Up && said.contains(needle) => Ok(()),
            _ => Err(format!("{st:?}")),
        }
    })
    .await;
    said
}

/// What a closed link of the hub says, once one contains `needle`.
async fn hub_says(hub: &Node, needle: &str) -> String {
    let mut said = String::new();
    eventually(WAIT, &format!("the hub to say {needle:?}"), || {
        let st = hub.links();
        match st.iter().find(|l| {
            l.state != LinkState::Up && l.last_error.as_deref().is_some_and(|e| e.contains(needle))
        }) {
            Some(l) => {
                said = l.last_error.clone().unwrap_or_default();
                Ok(())
            }
            None => Err(format!("{st:?}")),
        }
    })
    .await;
    said
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_link_replicates_and_the_wire_shows_no_key_or_value() {
    for tls in [false, true] {
        let pki = Pki::new("tls-wire");
        let root = hub("root", tls.then(|| pki.local("root")));
        let proxy = Proxy::start(&addr(&root)).await;
        let edge = leaf("edge", proxy.addr(), tls.then(|| pki.local("edge")));
        wait_up(&edge).await;
        edge.default_cache()
            .set("key-from-the-leaf", "value-from-the-leaf")
            .unwrap();
        root.default_cache()
            .set("key-from-the-hub", "value-from-the-hub")
            .unwrap();
        eventually(WAIT, "both writes on both nodes", || {
            let both = [&root, &edge].iter().all(|n| {
                n.default_cache().get("key-from-the-leaf").is_some()
                    && n.default_cache().get("key-from-the-hub").is_some()
            });
            if both { Ok(()) } else { Err("not yet".into()) }
        })
        .await;
        let wire = proxy.seen();
        assert!(wire.len() > 100, "{} bytes", wire.len());
        let shows = |needle: &[u8]| wire.windows(needle.len()).any(|w| w == needle);
        for secret in [
            &b"key-from-the-leaf"[..],
            b"value-from-the-leaf",
            b"key-from-the-hub",
            b"value-from-the-hub",
        ] {
            // The plaintext run proves the check can see them; the TLS run must not.
            assert_eq!(
                shows(secret),
                !tls,
                "tls: {tls}, {}",
                String::from_utf8_lossy(secret)
            );
        }
        if tls {
            // Records of TLS 1.3 (application data, version 3.3) are what the proxy carried.
            assert!(shows(&[0x17, 0x03, 0x03]));
        }
        edge.shutdown().await;
        root.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_without_tls_or_with_foreign_expired_or_misnamed_certificates_are_refused_on_both_sides()
 {
    let pki = Pki::new("tls-matrix");
    let other = Pki::new("tls-matrix-other");
    let both_cas = other.dir.join("both-cas.pem");
    std::fs::write(
        &both_cas,
        format!("{}{}", pki.ca.cert_pem(), other.ca.cert_pem()),
    )
    .unwrap();
    // (what, the hub's files, the leaf's files, the leaf says, the hub says)
    type Case = (
        &'static str,
        Option<TlsFiles>,
        Option<TlsFiles>,
        &'static str,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "a leaf without TLS",
            Some(pki.local("h1")),
            None,
            "the peer speaks TLS and this node does not",
            "the peer does not speak TLS",
        ),
        (
            "a hub without TLS",
            None,
            Some(pki.local("l2")),
            "the peer does not speak TLS",
            "the peer speaks TLS and this node does not",
        ),
        (
            "a leaf of another cluster",
            Some(pki.local("h3")),
            Some(other.local("l3")),
            "the hub's certificate (dialed as 127.0.0.1) is not signed by the cluster CA",
            "refused this node's certificate",
        ),
        (
            "a leaf that trusts the hub but has a certificate of another CA",
            Some(pki.local("h3b")),
            Some(TlsFiles {
                ca: both_cas.clone(),
                ..other.local("l3b")
            }),
            "refused this node's certificate",
            "the peer's certificate is not signed by the cluster CA",
        ),
        (
            "a hub of another CA",
            Some(other.local("h4")),
            Some(pki.local("l4")),
            "the hub's certificate (dialed as 127.0.0.1) is not signed by the cluster CA",
            "refused this node's certificate",
        ),
        (
            "a leaf with an expired certificate",
            Some(pki.local("h5")),
            Some(pki.node(
                "l5",
                &["l5", "127.0.0.1"],
                Some(((2001, 1, 1), (2002, 1, 1))),
            )),
            "refused this node's certificate",
            "the peer's certificate has expired",
        ),
        (
            "a hub with an expired certificate",
            Some(pki.node(
                "h6",
                &["h6", "127.0.0.1"],
                Some(((2001, 1, 1), (2002, 1, 1))),
            )),
            Some(pki.local("l6")),
            "the hub's certificate (dialed as 127.0.0.1) has expired",
            "refused this node's certificate",
        ),
        (
            "a hub whose certificate is for another name",
            Some(pki.node("h7", &["h7.elsewhere.example"], None)),
            Some(pki.local("l7")),
            "the hub's certificate (dialed as 127.0.0.1) is for another name",
            "refused this node's certificate",
        ),
    ];
    for (what, hub_tls, leaf_tls, leaf_needle, hub_needle) in cases {
        let root = hub("root", hub_tls);
        let edge = leaf("edge", &addr(&root), leaf_tls);
        let by_leaf = leaf_says(&edge, leaf_needle).await;
        let by_hub = hub_says(&root, hub_needle).await;
        assert!(by_leaf.contains("TLS"), "{what}: {by_leaf}");
        assert!(by_hub.contains("TLS"), "{what}: {by_hub}");
        // A refusal: dialed again at the slow pace, not at once.
        assert_eq!(
            edge.links()[0].state,
            LinkState::Refused,
            "{what}: {:?}",
            edge.links()
        );
        // Nothing crossed.
        edge.default_cache().set("k", "v").unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(root.default_cache().get("k"), None, "{what}");
        edge.shutdown().await;
        root.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_stop_the_build_with_the_file_named() {
    let pki = Pki::new("tls-files");
    let a = pki.local("a");
    let b = pki.local("b");
    let build = |files: TlsFiles| {
        Node::builder()
            .tls(files)
            .local_address("127.0.0.1:0")
            .build()
    };
    let reason = |r: Result<Node, Error>| match r {
        Err(Error::InvalidConfig {
            what: "tls",
            reason,
        }) => reason,
        other => panic!("{:?}", other.map(|n| n.name().to_string())),
    };
    let mismatched = TlsFiles::new(&a.ca, &a.cert, &b.key);
    let said = reason(build(mismatched));
    assert!(
        said.contains("a.pem") && said.contains("does not match the key in"),
        "{said}"
    );

    std::fs::set_permissions(&a.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let said = reason(build(a.clone()));
    assert!(
        said.contains("a-key.pem") && said.contains("readable by others"),
        "{said}"
    );
    std::fs::set_permissions(&a.key, std::fs::Permissions::from_mode(0o600)).unwrap();

    let missing = TlsFiles::new(pki.dir.join("nope.pem"), &a.cert, &a.key);
    let said = reason(build(missing));
    assert!(said.contains("nope.pem"), "{said}");

    std::fs::write(pki.dir.join("junk.pem"), "not a certificate").unwrap();
    let junk = TlsFiles::new(&a.ca, pki.dir.join("junk.pem"), &a.key);
    let said = reason(build(junk));
    assert!(
        said.contains("junk.pem") && said.contains("no PEM certificate"),
        "{said}"
    );

    let other = Pki::new("tls-files-other");
    let foreign = TlsFiles::new(&a.ca, other.local("c").cert, other.local("c").key);
    let said = reason(build(foreign));
    assert!(said.contains("not signed by the cluster CA"), "{said}");

    let door = Node::builder()
        .resp_address("127.0.0.1:0")
        .door_tls(true)
        .build();
    assert!(matches!(
        door,
        Err(Error::InvalidConfig {
            what: "door_tls",
            ..
        })
    ));

    // Good files build, and check finds nothing to say of them.
    assert!(leafcache::net::tls_problems(&a).is_empty());
    build(a).unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_used_without_a_restart() {
    let pki = Pki::new("tls-reload");
    let root = hub("root", Some(pki.local("root")));
    let expired = pki.node("edge", &["edge"], Some(((2001, 1, 1), (2002, 1, 1))));
    let edge = leaf("edge", &addr(&root), Some(expired));
    hub_says(&root, "has expired").await;
    // Renewed in place, as a certificate manager does: the leaf picks it up by itself.
    pki.local("edge");
    wait_up(&edge).await;
    edge.default_cache().set("after", "renewal").unwrap();
    eventually(WAIT, "the write at the hub", || {
        root.default_cache()
            .get("after")
            .map(|_| ())
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    // A reload of files that do not load keeps the certificates in use.
    std::fs::write(pki.dir.join("edge.pem"), "half-written").unwrap();
    assert!(edge.reload_tls().is_err());
    assert!(root.reload_tls().unwrap());
    edge.shutdown().await;
    root.shutdown().await;
}

/// Whether a client program is there; a missing one fails the test when clients are required.
fn have(program: &str) -> bool {
    let found = std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found || std::env::var_os("LEAFCACHE_REQUIRE_CLIENTS").is_none(),
        "LEAFCACHE_REQUIRE_CLIENTS is set but {program} is missing"
    );
    found
}

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doors_speak_tls_to_redis_cli_curl_and_redis_py() {
    let pki = Pki::new("tls-doors");
    let files = pki.local("door");
    let node = Node::builder()
        .tls(files.clone())
        .door_tls(true)
        .resp_address("127.0.0.1:0")
        .http_address("127.0.0.1:0")
        .build()
        .unwrap();
    node.default_cache()
        .set("greeting", "hello over tls")
        .unwrap();
    let (resp, http) = (
        node.resp_addr().unwrap().to_string(),
        node.http_addr().unwrap().to_string(),
    );
    let (host, port) = resp.rsplit_once(':').unwrap();
    let ca = files.ca.to_str().unwrap();
    let blocking = tokio::task::spawn_blocking({
        let (host, port, ca, http) = (
            host.to_string(),
            port.to_string(),
            ca.to_string(),
            http.clone(),
        );
        move || {
            if have("redis-cli") {
                let args = ["--tls", "--cacert", &ca, "-h", &host, "-p", &port];
                let (ok, out) = run(
                    "redis-cli",
                    &[&args[..], &["SET", "from-cli", "yes"]].concat(),
                );
                assert!(ok && out.contains("OK"), "{out}");
                let (ok, out) = run("redis-cli", &[&args[..], &["GET", "greeting"]].concat());
                assert!(ok && out.contains("hello over tls"), "{out}");
                // Without TLS the door does not answer in the clear.
                let (_, out) = run("redis-cli", &["-h", &host, "-p", &port, "GET", "greeting"]);
                assert!(!out.contains("hello over tls"), "{out}");
            }
            if have("curl") {
                let url = format!("https://{http}/v1/caches/default/keys/greeting");
                let (ok, out) = run("curl", &["-sS", "--fail", "--cacert", &ca, &url]);
                assert!(ok && out.contains("hello over tls"), "{out}");
                // Refused without the CA: the certificate is checked.
                let (ok, _) = run("curl", &["-sS", "--fail", &url]);
                assert!(!ok);
            }
            let python = std::env::var("LEAFCACHE_PYTHON").unwrap_or_else(|_| "python3".into());
            let script = format!(
                "import redis\n\
                 r = redis.Redis(host='{host}', port={port}, ssl=True, ssl_ca_certs='{ca}')\n\
                 r.set('from-py', 'yes')\n\
                 print(r.get('greeting').decode())\n"
            );
            let has_redis_py = std::process::Command::new(&python)
                .args(["-c", "import redis"])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                has_redis_py || std::env::var_os("LEAFCACHE_REQUIRE_CLIENTS").is_none(),
                "LEAFCACHE_REQUIRE_CLIENTS is set but redis-py is missing"
            );
            if has_redis_py {
                let (ok, out) = run(&python, &["-c", &script]);
                assert!(ok && out.contains("hello over tls"), "{out}");
            }
        }
    });
    blocking.await.unwrap();
    node.shutdown().await;
}
