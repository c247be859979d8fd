//! The RESP door driven by a real Redis client (the `redis` crate) and by raw bytes: every
//! command, pipelining, SELECT over named caches, AUTH and HELLO, limits, hostile input.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use leafcache::{CacheConfig, ManualClock, Node, ServerLimits};
use redis::{Commands, Connection, RedisResult, Value};
use support::eventually;

fn door(builder: leafcache::NodeBuilder) -> Node {
    builder
        .resp_address("127.0.0.1:0")
        .build()
        .expect("node with a RESP door")
}

fn connect(node: &Node) -> Connection {
    connect_as(node, None)
}

fn connect_as(node: &Node, password: Option<&str>) -> Connection {
    let addr = node.resp_addr().expect("resp door");
    let url = match password {
        Some(p) => format!("redis://:{p}@{addr}/"),
        None => format!("redis://{addr}/"),
    };
    let client = redis::Client::open(url).expect("redis url");
    let con = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .expect("connect");
    con.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    con
}

fn error_text(r: RedisResult<Value>) -> String {
    match r {
        Err(e) => e.to_string(),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strings_keys_and_expiry_commands_behave_as_in_redis() {
    let clock = ManualClock::new(1_700_000_000_000);
    let node = door(Node::builder().clock(clock.clone()));
    let mut con = connect(&node);

    assert_eq!(
        redis::cmd("PING").query::<String>(&mut con).unwrap(),
        "PONG"
    );
    assert_eq!(
        redis::cmd("PING")
            .arg("hi")
            .query::<String>(&mut con)
            .unwrap(),
        "hi"
    );
    assert_eq!(
        redis::cmd("ECHO")
            .arg("x y")
            .query::<String>(&mut con)
            .unwrap(),
        "x y"
    );

    // SET and its options.
    let _: () = con.set("a", "1").unwrap();
    assert_eq!(
        con.get::<_, Option<String>>("a").unwrap().as_deref(),
        Some("1")
    );
    assert_eq!(con.get::<_, Option<String>>("missing").unwrap(), None);
    let nx: Option<String> = redis::cmd("SET")
        .arg("a")
        .arg("2")
        .arg("NX")
        .query(&mut con)
        .unwrap();
    assert_eq!(nx, None, "NX on a held key writes nothing");
    let xx: Option<String> = redis::cmd("SET")
        .arg("b")
        .arg("2")
        .arg("XX")
        .query(&mut con)
        .unwrap();
    assert_eq!(xx, None, "XX on a missing key writes nothing");
    assert!(!con.exists::<_, bool>("b").unwrap());
    let old: Option<String> = redis::cmd("SET")
        .arg("a")
        .arg("3")
        .arg("GET")
        .query(&mut con)
        .unwrap();
    assert_eq!(old.as_deref(), Some("1"));
    let ok: String = redis::cmd("SET")
        .arg("t")
        .arg("v")
        .arg("EX")
        .arg(10)
        .query(&mut con)
        .unwrap();
    assert_eq!(ok, "OK");
    assert_eq!(con.ttl::<_, i64>("t").unwrap(), 10);
    assert_eq!(con.pttl::<_, i64>("t").unwrap(), 10_000);
    let _: () = redis::cmd("SET")
        .arg("t")
        .arg("w")
        .arg("KEEPTTL")
        .query(&mut con)
        .unwrap();
    assert_eq!(
        con.pttl::<_, i64>("t").unwrap(),
        10_000,
        "KEEPTTL keeps the expiry"
    );
    let _: () = redis::cmd("SET")
        .arg("p")
        .arg("v")
        .arg("PX")
        .arg(1500)
        .query(&mut con)
        .unwrap();
    assert_eq!(con.pttl::<_, i64>("p").unwrap(), 1500);
    let at = clock.now_ms() / 1000 + 100;
    let _: () = redis::cmd("SET")
        .arg("q")
        .arg("v")
        .arg("EXAT")
        .arg(at)
        .query(&mut con)
        .unwrap();
    assert_eq!(con.ttl::<_, i64>("q").unwrap(), 100);
    for bad in [
        &["SET", "k", "v", "EX", "0"][..],
        &["SET", "k", "v", "EX", "ten"],
        &["SET", "k", "v", "NX", "XX"],
        &["SET", "k", "v", "EX", "1", "PX", "5"],
        &["SET", "k", "v", "BOGUS"],
        &["SET", "k", "v", "EX"],
    ] {
        let msg = error_text(redis::cmd(bad[0]).arg(&bad[1..]).query(&mut con));
        assert!(
            msg.contains("syntax") || msg.contains("invalid") || msg.contains("integer"),
            "{bad:?}: {msg}"
        );
    }
    assert!(
        !con.exists::<_, bool>("k").unwrap(),
        "refused SETs write nothing"
    );

    // Expiry follows the node's clock.
    clock.advance(Duration::from_millis(1500));
    assert_eq!(con.get::<_, Option<String>>("p").unwrap(), None);
    assert_eq!(con.ttl::<_, i64>("p").unwrap(), -2);
    assert_eq!(con.ttl::<_, i64>("a").unwrap(), -1);

    // EXPIRE, PEXPIRE, PERSIST.
    assert!(con.expire::<_, bool>("a", 30).unwrap());
    assert_eq!(con.ttl::<_, i64>("a").unwrap(), 30);
    assert!(con.pexpire::<_, bool>("a", 2500).unwrap());
    assert_eq!(con.pttl::<_, i64>("a").unwrap(), 2500);
    assert!(con.persist::<_, bool>("a").unwrap());
    assert!(
        !con.persist::<_, bool>("a").unwrap(),
        "nothing to persist twice"
    );
    assert_eq!(con.ttl::<_, i64>("a").unwrap(), -1);
    assert!(!con.expire::<_, bool>("missing", 5).unwrap());
    assert!(con.expire::<_, bool>("a", 0).unwrap(), "EXPIRE 0 deletes");
    assert!(!con.exists::<_, bool>("a").unwrap());

    // GETDEL, DEL, EXISTS, TYPE.
    let _: () = con.set("g", "gv").unwrap();
    assert_eq!(
        con.get_del::<_, Option<String>>("g").unwrap().as_deref(),
        Some("gv")
    );
    assert_eq!(con.get_del::<_, Option<String>>("g").unwrap(), None);
    let _: () = con.mset(&[("m1", "1"), ("m2", "2"), ("m3", "3")]).unwrap();
    let got: Vec<Option<String>> = con.mget(&["m1", "nope", "m3"]).unwrap();
    assert_eq!(got, vec![Some("1".into()), None, Some("3".into())]);
    assert_eq!(
        con.exists::<_, i64>(&["m1", "m2", "nope", "m1"]).unwrap(),
        3
    );
    assert_eq!(
        redis::cmd("TYPE")
            .arg("m1")
            .query::<String>(&mut con)
            .unwrap(),
        "string"
    );
    assert_eq!(
        redis::cmd("TYPE")
            .arg("nope")
            .query::<String>(&mut con)
            .unwrap(),
        "none"
    );
    assert_eq!(con.del::<_, i64>(&["m1", "m2", "nope"]).unwrap(), 2);
    let msg = error_text(
        redis::cmd("MSET")
            .arg("k1")
            .arg("v1")
            .arg("k2")
            .query(&mut con),
    );
    assert!(msg.contains("wrong number of arguments"), "{msg}");

    // DBSIZE and FLUSHDB.
    let before: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(before as usize, node.default_cache().len());
    assert!(before > 0);
    let _: () = redis::cmd("FLUSHDB").query(&mut con).unwrap();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 0);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_and_keys_walk_every_key_once() {
    let node = door(Node::builder());
    let mut con = connect(&node);
    for i in 0..500 {
        let _: () = con.set(format!("user:{i}"), i).unwrap();
        let _: () = con.set(format!("page:{i}"), i).unwrap();
    }
    let _: () = con.del("user:7").unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("user:*").query(&mut con).unwrap();
    keys.sort();
    assert_eq!(keys.len(), 499);
    assert!(!keys.contains(&"user:7".to_string()));
    let one: Vec<String> = redis::cmd("KEYS").arg("user:4?").query(&mut con).unwrap();
    assert_eq!(one.len(), 10);

    // SCAN with MATCH and COUNT; writes during the walk do not lose held keys.
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor: u64 = 0;
    let mut calls = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("page:*")
            .arg("COUNT")
            .arg(50)
            .query(&mut con)
            .unwrap();
        assert!(batch.iter().all(|k| k.starts_with("page:")));
        seen.extend(batch);
        calls += 1;
        if calls == 3 {
            // Rewrite keys the walk has already passed and some it has not.
            for i in 0..20 {
                let _: () = con.set(format!("page:{i}"), "again").unwrap();
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
        assert!(calls < 1000, "scan does not end");
    }
    assert_eq!(seen.len(), 500);
    // The client library's iterator speaks the same cursor protocol.
    let all: Vec<String> = con
        .scan_match("user:1*")
        .unwrap()
        .collect::<RedisResult<_>>()
        .unwrap();
    assert_eq!(
        all.iter().collect::<std::collections::BTreeSet<_>>().len(),
        111
    );
    let msg = error_text(redis::cmd("SCAN").arg("abc").query(&mut con));
    assert!(msg.contains("invalid cursor"), "{msg}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_are_answered_in_order() {
    let node = door(Node::builder());
    let mut con = connect(&node);
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for i in 0..2_000 {
        pipe.set(format!("k{i}"), i).ignore();
        pipe.get(format!("k{i}"));
        pipe.incr_unknown_probe();
    }
    let replies: Vec<Value> = pipe.query(&mut con).expect("pipeline answered");
    // Each GET answers its own SET; each unknown command answers an error in its slot.
    assert_eq!(replies.len(), 4_000);
    for (i, pair) in replies.chunks(2).enumerate() {
        assert_eq!(pair[0], Value::BulkString(i.to_string().into_bytes()));
        assert!(matches!(pair[1], Value::ServerError(_)), "{:?}", pair[1]);
    }
    assert_eq!(node.default_cache().len(), 2_000);
    node.shutdown().await;
}

/// A command this door does not know, to check that its error takes its place in a pipeline.
trait Probe {
    fn incr_unknown_probe(&mut self) -> &mut Self;
}

impl Probe for redis::Pipeline {
    fn incr_unknown_probe(&mut self) -> &mut Self {
        self.cmd("NOSUCHCOMMAND").arg("x")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_reaches_the_named_caches() {
    let node = door(
        Node::builder()
            .cache("sessions", CacheConfig::new().max_entries(10))
            .cache("pages", CacheConfig::new()),
    );
    let mut con = connect(&node);
    let _: () = con.set("k", "default").unwrap();
    let _: () = redis::cmd("SELECT").arg(1).query(&mut con).unwrap();
    assert_eq!(con.get::<_, Option<String>>("k").unwrap(), None);
    let _: () = con.set("k", "sessions").unwrap();
    let _: () = redis::cmd("SELECT").arg(2).query(&mut con).unwrap();
    let _: () = con.set("k", "pages").unwrap();
    assert_eq!(
        node.cache("sessions").unwrap().get("k").unwrap(),
        "sessions"
    );
    assert_eq!(node.cache("pages").unwrap().get("k").unwrap(), "pages");
    assert_eq!(node.default_cache().get("k").unwrap(), "default");
    let msg = error_text(redis::cmd("SELECT").arg(3).query(&mut con));
    assert!(msg.contains("out of range"), "{msg}");
    // FLUSHDB purges the selected cache only.
    let _: () = redis::cmd("FLUSHDB").query(&mut con).unwrap();
    assert!(node.cache("pages").unwrap().is_empty());
    assert!(!node.cache("sessions").unwrap().is_empty());
    let info: String = redis::cmd("INFO").arg("keyspace").query(&mut con).unwrap();
    assert!(
        info.contains("db1:keys=1,") && info.contains("name=sessions"),
        "{info}"
    );
    // A URL naming a database selects it on connect.
    let addr = node.resp_addr().unwrap();
    let mut con1 = redis::Client::open(format!("redis://{addr}/1"))
        .unwrap()
        .get_connection()
        .unwrap();
    assert_eq!(con1.get::<_, String>("k").unwrap(), "sessions");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_guards_every_command_when_a_password_is_set() {
    let node = door(Node::builder().password("s3cret"));
    // Without AUTH: refused, connection kept.
    let mut raw = Raw::connect(&node);
    assert!(raw.call(&["GET", "k"]).starts_with("-NOAUTH"));
    assert!(raw.call(&["AUTH", "wrong"]).starts_with("-WRONGPASS"));
    assert!(
        raw.call(&["AUTH", "someone", "s3cret"])
            .starts_with("-WRONGPASS")
    );
    assert_eq!(raw.call(&["AUTH", "default", "s3cret"]), "+OK\r\n");
    assert_eq!(raw.call(&["SET", "k", "v"]), "+OK\r\n");
    // A client library authenticating from its URL.
    let mut con = connect_as(&node, Some("s3cret"));
    assert_eq!(con.get::<_, String>("k").unwrap(), "v");
    // HELLO 2 with AUTH authenticates too.
    let mut raw = Raw::connect(&node);
    let hello = raw.call(&["HELLO", "2", "AUTH", "default", "s3cret", "SETNAME", "me"]);
    assert!(
        hello.starts_with("*14\r\n") && hello.contains("$5\r\nredis\r\n"),
        "{hello}"
    );
    assert_eq!(raw.call(&["CLIENT", "GETNAME"]), "$2\r\nme\r\n");
    node.shutdown().await;

    // Without a password configured, AUTH is an error and nothing is guarded.
    let open = door(Node::builder());
    let mut raw = Raw::connect(&open);
    assert!(
        raw.call(&["AUTH", "x"])
            .contains("without any password configured")
    );
    assert_eq!(raw.call(&["PING"]), "+PONG\r\n");
    open.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_and_introspection_commands_let_clients_start() {
    let node = door(Node::builder().name("front"));
    let mut raw = Raw::connect(&node);
    let hello = raw.call(&["HELLO"]);
    assert!(
        hello.starts_with("*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.4.0\r\n"),
        "{hello}"
    );
    assert!(raw.call(&["HELLO", "4"]).starts_with("-NOPROTO"));
    assert!(raw.call(&["HELLO", "x"]).starts_with("-ERR"));
    assert!(raw.call(&["COMMAND", "COUNT"]).starts_with(':'));
    assert_eq!(
        raw.call(&["CONFIG", "GET", "save"]),
        "*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
    );
    assert_eq!(raw.call(&["CLIENT", "SETNAME", "worker-1"]), "+OK\r\n");
    assert_eq!(raw.call(&["CLIENT", "GETNAME"]), "$8\r\nworker-1\r\n");
    assert!(
        raw.call(&["CLIENT", "SETNAME", "has space"])
            .starts_with("-ERR")
    );
    assert_eq!(raw.call(&["CLIENT", "SETINFO", "LIB-NAME", "x"]), "+OK\r\n");
    let unknown = raw.call(&["FROBNICATE", "a", "b"]);
    assert_eq!(
        unknown,
        "-ERR unknown command 'FROBNICATE', with args beginning with: 'a' 'b' \r\n"
    );
    assert!(
        raw.call(&["GET"])
            .contains("wrong number of arguments for 'get'")
    );
    let info = raw.call(&["INFO"]);
    for section in [
        "# Server",
        "# Clients",
        "# Stats",
        "# Replication",
        "# Keyspace",
    ] {
        assert!(info.contains(section), "INFO lacks {section}: {info}");
    }
    assert!(info.contains("node_name:front"));
    let only = raw.call(&["INFO", "replication"]);
    assert!(
        only.contains("role:master")
            && only.contains("leafcache_role:standalone")
            && !only.contains("# Server"),
        "{only}"
    );
    // Inline commands, as typed into a terminal.
    raw.send(b"PING\r\nSET inline value\r\nGET inline\r\n");
    assert_eq!(raw.read_n(3), "+PONG\r\n+OK\r\n$5\r\nvalue\r\n");
    assert_eq!(raw.call(&["QUIT"]), "+OK\r\n");
    assert!(raw.closed(), "QUIT closes the connection");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_values_are_binary_safe() {
    let node = door(Node::builder());
    let mut con = connect(&node);
    let key: Vec<u8> = vec![0xff, 0x00, b'\r', b'\n', 0xfe];
    let value: Vec<u8> = (0..=255u8).collect();
    let _: () = con.set(&key, &value).unwrap();
    assert_eq!(con.get::<_, Vec<u8>>(&key).unwrap(), value);
    assert_eq!(node.default_cache().get(&key).unwrap(), value);
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    assert_eq!(keys, vec![key]);
    // A value of several MiB arrives over many reads and comes back whole.
    let large: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    let _: () = con.set("large", &large).unwrap();
    assert_eq!(con.get::<_, Vec<u8>>("large").unwrap(), large);
    node.shutdown().await;
}

/// Waits until the node's only connection is `bystander`'s: a refused connection closes on the
/// server's side a moment after the client's (it drains what the client still sends), and until
/// then it counts against `max_connections`.
fn only_the_bystander_left(bystander: &mut Connection) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let open = connected_clients(bystander);
        if open == 1 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{open} connections open"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_before_allocating_and_close_only_that_connection() {
    let limits = ServerLimits {
        max_key: 16,
        max_value: 1024,
        max_args: 8,
        max_request: 4096,
        max_connections: 4,
        ..ServerLimits::default()
    };
    let node = door(Node::builder().server_limits(limits));
    let mut bystander = connect(&node);
    let _: () = bystander.set("before", "1").unwrap();

    // A 4 GiB bulk string announced: refused on its header, connection closed.
    let mut raw = Raw::connect(&node);
    raw.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4294967296\r\n");
    let reply = raw.read_line();
    assert!(
        reply.starts_with("-ERR") || reply.starts_with("-Protocol"),
        "{reply}"
    );
    assert!(reply.contains("4294967296"), "{reply}");
    assert!(raw.closed());

    // Too many arguments, a huge array count, nested arrays, a bad length: each closes its own
    // connection with an error.
    for hostile in [
        &b"*9\r\n"[..],
        b"*1000000000000\r\n",
        b"*2\r\n*1\r\n$1\r\na\r\n",
        b"*1\r\n$x\r\n",
        b"*1\r\n$3\r\nabcXY",
        b"*1\r\n:5\r\n",
    ] {
        only_the_bystander_left(&mut bystander);
        let mut raw = Raw::connect(&node);
        raw.send(hostile);
        let reply = raw.read_line();
        assert!(
            reply.starts_with("-ERR Protocol error"),
            "{hostile:?}: {reply}"
        );
        assert!(raw.closed(), "{hostile:?} leaves the connection open");
    }

    only_the_bystander_left(&mut bystander);
    // Over the key or value limit: an error, the connection goes on.
    let mut raw = Raw::connect(&node);
    assert!(
        raw.call(&["SET", &"k".repeat(17), "v"])
            .contains("over the 16-byte limit")
    );
    assert!(raw.call(&["SET", "k", &"v".repeat(1000)]) == "+OK\r\n");
    let big = "v".repeat(1024);
    assert!(
        raw.call(&["MSET", "a", "1", "b", &big, "c"])
            .contains("wrong number")
    );
    assert_eq!(raw.call(&["PING"]), "+PONG\r\n");
    drop(raw);

    // Over max_connections: an error and a close; the others are served.
    let mut open_is = async |n: u64| {
        eventually(Duration::from_secs(5), "connections counted", || {
            let open = connected_clients(&mut bystander);
            if open == n {
                Ok(())
            } else {
                Err(format!("{open} open"))
            }
        })
        .await
    };
    open_is(1).await;
    let held: Vec<Raw> = (0..3).map(|_| Raw::connect(&node)).collect();
    open_is(4).await;
    let mut extra = Raw::connect(&node);
    assert!(extra.read_line().contains("max number of clients"));
    assert!(extra.closed());
    drop(held);
    assert_eq!(bystander.get::<_, String>("before").unwrap(), "1");
    node.shutdown().await;
}

fn connected_clients(con: &mut Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("clients").query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_never_take_the_node_down() {
    use rand::{Rng, SeedableRng};
    let node = door(Node::builder());
    let mut bystander = connect(&node);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for round in 0..200 {
        let len = rng.random_range(1..512);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if round % 2 == 0 {
            bytes[0] = b'*';
        }
        let mut raw = Raw::connect(&node);
        raw.send(&bytes);
        // Whatever it answers, the node goes on; the connection is dropped half-way.
        drop(raw);
    }
    let _: () = bystander.set("still", "here").unwrap();
    assert_eq!(bystander.get::<_, String>("still").unwrap(), "here");
    let mut con = connect(&node);
    assert_eq!(
        redis::cmd("PING").query::<String>(&mut con).unwrap(),
        "PONG"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_at_one_leaf_is_read_over_http_at_another() {
    let hub = Node::builder()
        .name("hub")
        .local_address("127.0.0.1:0")
        .build()
        .unwrap();
    let hub_addr = hub.local_addr().unwrap().to_string();
    let leaf_a = Node::builder()
        .name("a")
        .remote_address(&hub_addr)
        .resp_address("127.0.0.1:0")
        .build()
        .unwrap();
    let leaf_b = Node::builder()
        .name("b")
        .remote_address(&hub_addr)
        .http_address("127.0.0.1:0")
        .build()
        .unwrap();
    let mut con = connect(&leaf_a);
    let _: () = con.set("greeting", "hello from a").unwrap();
    let url = format!("http://{}/get?key=greeting", leaf_b.http_addr().unwrap());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut last = String::new();
    eventually(Duration::from_secs(10), "the write reaches leaf b", || {
        let mut r = agent.get(&url).call().map_err(|e| e.to_string())?;
        last = r.body_mut().read_to_string().map_err(|e| e.to_string())?;
        if last == "hello from a" {
            Ok(())
        } else {
            Err(last.clone())
        }
    })
    .await;
    // And INFO at leaf a shows its link to the hub.
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut con)
        .unwrap();
    assert!(
        info.contains("role:leaf") && info.contains("state=up,peer=hub"),
        "{info}"
    );
    for n in [&leaf_a, &leaf_b, &hub] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unix_socket_is_private_and_speaks_resp() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("leafcache-resp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("node.sock");
    // A stale socket file from a crashed run is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let node = Node::builder().unix_socket(&path).build().unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let client = redis::Client::open(format!("redis+unix://{}", path.display())).unwrap();
    let mut con = client.get_connection().unwrap();
    let _: () = con.set("over", "unix").unwrap();
    assert_eq!(node.default_cache().get("over").unwrap(), "unix");
    node.shutdown().await;
    assert!(!path.exists(), "the socket file is removed at shutdown");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A raw RESP connection for byte-level tests.
struct Raw {
    stream: TcpStream,
    pending: Vec<u8>,
}

impl Raw {
    fn connect(node: &Node) -> Raw {
        let stream = TcpStream::connect(node.resp_addr().unwrap()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Raw {
            stream,
            pending: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        // The peer may already have closed on a hostile prefix; that is what is being tested.
        let _ = self.stream.write_all(bytes);
    }

    /// Sends one command and reads one whole reply.
    fn call(&mut self, args: &[&str]) -> String {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.send(out.as_bytes());
        self.read_n(1)
    }

    fn fill(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        match self.stream.read(&mut buf) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                true
            }
        }
    }

    fn read_line(&mut self) -> String {
        loop {
            if let Some(i) = self.pending.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.pending.drain(..i + 2).collect();
                return String::from_utf8_lossy(&line).into_owned();
            }
            if !self.fill() {
                return String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned();
            }
        }
    }

    /// Reads `n` whole replies (nested arrays included) as text.
    fn read_n(&mut self, n: usize) -> String {
        let mut out = String::new();
        let mut left = n;
        while left > 0 {
            let line = self.read_line();
            if line.is_empty() {
                break;
            }
            left -= 1;
            match line.as_bytes()[0] {
                b'$' => {
                    let len: i64 = line[1..line.len() - 2].parse().unwrap();
                    out.push_str(&line);
                    if len >= 0 {
                        while self.pending.len() < len as usize + 2 && self.fill() {}
                        let body: Vec<u8> = self.pending.drain(..len as usize + 2).collect();
                        out.push_str(&String::from_utf8_lossy(&body));
                    }
                    continue;
                }
                b'*' => {
                    let len: i64 = line[1..line.len() - 2].parse().unwrap();
                    left += len.max(0) as usize;
                }
                _ => {}
            }
            out.push_str(&line);
        }
        out
    }

    /// Whether the server closed the connection (nothing more to read).
    fn closed(&mut self) -> bool {
        self.pending.is_empty() && !self.fill()
    }
}
