//! The string and key commands, transactions, `WAIT` and the RESP3 shapes, command by command:
//! against a node on a manual clock, and the same script against `redis-server` (when it is
//! installed; `LEAFCACHE_REQUIRE_REDIS=1`, which the full test script sets, makes its absence a
//! failure) to check that both answer alike where Redis's answer is deterministic.

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use leafcache::{ManualClock, Node};
use support::resp::{Client, V};

const T0: u64 = 1_700_000_000_000;

fn node_with(clock: &ManualClock) -> Node {
    Node::builder()
        .clock(clock.clone())
        .resp_address("127.0.0.1:0")
        .build()
        .expect("node")
}

fn client(node: &Node) -> Client {
    Client::connect(node.resp_addr().unwrap())
}

fn ok() -> V {
    V::Simple("OK".into())
}

fn int(n: i64) -> V {
    V::Int(n)
}

fn err_starts(v: &V, prefix: &str) {
    match v {
        V::Error(e) => assert!(
            e.starts_with(prefix),
            "{e:?} does not start with {prefix:?}"
        ),
        other => panic!("expected an error {prefix:?}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_commands_follow_redis() {
    let clock = ManualClock::new(T0);
    let node = node_with(&clock);
    let mut c = client(&node);

    // APPEND creates, then extends; STRLEN; GETRANGE and its alias SUBSTR.
    assert_eq!(c.cmd("APPEND s Hello"), int(5));
    assert_eq!(c.cmd("APPEND s World"), int(10));
    assert_eq!(c.cmd("STRLEN s"), int(10));
    assert_eq!(c.cmd("STRLEN missing"), int(0));
    assert_eq!(c.cmd("GETRANGE s 0 4"), V::b("Hello"));
    assert_eq!(c.cmd("GETRANGE s -5 -1"), V::b("World"));
    assert_eq!(c.cmd("SUBSTR s 5 100"), V::b("World"));
    assert_eq!(c.cmd("GETRANGE missing 0 -1"), V::b(""));
    err_starts(&c.cmd("GETRANGE s a 1"), "ERR value is not an integer");

    // SETRANGE pads with zero bytes, keeps the TTL, and does not create on an empty value.
    assert_eq!(c.cmd("SETRANGE s 6 Redis"), int(11));
    assert_eq!(c.cmd("GET s"), V::b("HelloWRedis"));
    assert_eq!(c.cmd("SETRANGE pad 3 x"), int(4));
    assert_eq!(c.cmd("GET pad"), V::Bulk(b"\0\0\0x".to_vec()));
    assert_eq!(c.call(&[b"SETRANGE", b"none", b"5", b""]), int(0));
    assert_eq!(c.cmd("EXISTS none"), int(0));
    err_starts(&c.cmd("SETRANGE s -1 x"), "ERR offset is out of range");

    // GETSET, SETNX, SETEX, PSETEX.
    assert_eq!(c.cmd("GETSET g 1"), V::Null);
    assert_eq!(c.cmd("GETSET g 2"), V::b("1"));
    assert_eq!(c.cmd("SETNX g 3"), int(0));
    assert_eq!(c.cmd("SETNX n 3"), int(1));
    assert_eq!(c.cmd("SETEX e 10 v"), ok());
    assert_eq!(c.cmd("TTL e"), int(10));
    assert_eq!(c.cmd("PSETEX pe 1500 v"), ok());
    assert_eq!(c.cmd("PTTL pe"), int(1500));
    err_starts(
        &c.cmd("SETEX e 0 v"),
        "ERR invalid expire time in 'setex' command",
    );
    err_starts(
        &c.cmd("PSETEX e -5 v"),
        "ERR invalid expire time in 'psetex' command",
    );

    // GETEX: read, set an expiry of each kind, PERSIST.
    assert_eq!(c.cmd("GETEX g"), V::b("2"));
    assert_eq!(c.cmd("TTL g"), int(-1));
    assert_eq!(c.cmd("GETEX g EX 100"), V::b("2"));
    assert_eq!(c.cmd("TTL g"), int(100));
    assert_eq!(c.cmd("GETEX g PX 5000"), V::b("2"));
    assert_eq!(c.cmd("PTTL g"), int(5000));
    assert_eq!(
        c.cmd(&format!("GETEX g EXAT {}", T0 / 1000 + 50)),
        V::b("2")
    );
    assert_eq!(c.cmd("TTL g"), int(50));
    assert_eq!(c.cmd(&format!("GETEX g PXAT {}", T0 + 7000)), V::b("2"));
    assert_eq!(c.cmd("PTTL g"), int(7000));
    assert_eq!(c.cmd("GETEX g PERSIST"), V::b("2"));
    assert_eq!(c.cmd("TTL g"), int(-1));
    assert_eq!(c.cmd("GETEX missing EX 10"), V::Null);
    err_starts(
        &c.cmd("GETEX g EX 0"),
        "ERR invalid expire time in 'getex' command",
    );
    err_starts(&c.cmd("GETEX g EX 1 PX 1"), "ERR syntax error");

    // MSETNX: all or nothing.
    assert_eq!(c.cmd("MSETNX m1 a m2 b"), int(1));
    assert_eq!(c.cmd("MSETNX m2 x m3 y"), int(0));
    assert_eq!(c.cmd("EXISTS m3"), int(0));
    assert_eq!(
        c.cmd("MGET m1 m2 m3"),
        V::Array(vec![V::b("a"), V::b("b"), V::Null])
    );
    err_starts(
        &c.cmd("MSETNX a"),
        "ERR wrong number of arguments for 'msetnx'",
    );

    // LCS in its four shapes, the example from Redis's documentation.
    c.cmd("MSET key1 ohmytext key2 mynewtext");
    assert_eq!(c.cmd("LCS key1 key2"), V::b("mytext"));
    assert_eq!(c.cmd("LCS key1 key2 LEN"), int(6));
    let idx = c.cmd("LCS key1 key2 IDX MINMATCHLEN 4 WITHMATCHLEN");
    assert_eq!(
        idx,
        V::Array(vec![
            V::b("matches"),
            V::Array(vec![V::Array(vec![
                V::Array(vec![int(4), int(7)]),
                V::Array(vec![int(5), int(8)]),
                int(4)
            ])]),
            V::b("len"),
            int(6)
        ])
    );
    err_starts(&c.cmd("LCS key1 key2 LEN IDX"), "ERR If you want both");

    // Counters: the INCR family, with Redis's errors; a counter reads as its decimal text.
    assert_eq!(c.cmd("INCR c"), int(1));
    assert_eq!(c.cmd("INCRBY c 41"), int(42));
    assert_eq!(c.cmd("DECR c"), int(41));
    assert_eq!(c.cmd("DECRBY c 1"), int(40));
    assert_eq!(c.cmd("GET c"), V::b("40"));
    assert_eq!(c.cmd("INCRBYFLOAT c 1.5"), V::b("41.5"));
    err_starts(&c.cmd("INCR c"), "ERR value is not an integer");
    assert_eq!(c.cmd("INCRBYFLOAT c 0.5"), V::b("42"));
    assert_eq!(c.cmd("INCR c"), int(43));
    assert_eq!(c.cmd("SET c 9223372036854775807"), ok());
    err_starts(
        &c.cmd("INCR c"),
        "ERR increment or decrement would overflow",
    );
    assert_eq!(
        c.cmd("GET c"),
        V::b("9223372036854775807"),
        "nothing changed"
    );
    err_starts(
        &c.cmd("DECRBY c -9223372036854775808"),
        "ERR decrement would overflow",
    );
    err_starts(&c.cmd("INCRBYFLOAT c x"), "ERR value is not a valid float");
    assert_eq!(c.cmd("SET c 5 EX 100"), ok());
    assert_eq!(c.cmd("INCR c"), int(6));
    assert_eq!(
        c.cmd("TTL c"),
        int(100),
        "an increment keeps the expiry, as in Redis"
    );
    assert_eq!(c.cmd("TYPE c"), V::Simple("string".into()));
    assert_eq!(c.cmd("OBJECT ENCODING c"), V::b("int"));

    // Hashes, and WRONGTYPE across the two types.
    assert_eq!(c.cmd("HSET h a 1 b 2"), int(2));
    assert_eq!(c.cmd("HINCRBY h b 5"), int(7));
    assert_eq!(c.cmd("HGET h b"), V::b("7"));
    assert_eq!(c.cmd("HLEN h"), int(2));
    assert_eq!(c.cmd("TYPE h"), V::Simple("hash".into()));
    for cmd in [
        "GET h",
        "INCR h",
        "APPEND h x",
        "STRLEN h",
        "GETRANGE h 0 1",
    ] {
        err_starts(
            &c.cmd(cmd),
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        );
    }
    err_starts(&c.cmd("HGET c a"), "WRONGTYPE");
    assert_eq!(c.cmd("HDEL h a b"), int(2));
    assert_eq!(c.cmd("EXISTS h"), int(0), "a hash without fields is gone");

    // SET's options, expiry arithmetic on the manual clock.
    assert_eq!(c.cmd("SET t v EX 10"), ok());
    clock.advance(Duration::from_secs(4));
    assert_eq!(c.cmd("TTL t"), int(6));
    assert_eq!(c.cmd("SET t w KEEPTTL"), ok());
    assert_eq!(c.cmd("TTL t"), int(6));
    clock.advance(Duration::from_secs(7));
    assert_eq!(c.cmd("GET t"), V::Null);
    err_starts(&c.cmd("SET t v EX 1 PX 1"), "ERR syntax error");
    err_starts(&c.cmd("SET t v EX x"), "ERR value is not an integer");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_commands_follow_redis() {
    let clock = ManualClock::new(T0);
    let node = Node::builder()
        .clock(clock.clone())
        .cache("other", leafcache::CacheConfig::default())
        .resp_address("127.0.0.1:0")
        .build()
        .unwrap();
    let mut c = client(&node);
    c.cmd("MSET a 1 b 2 c 3");

    // UNLINK, TOUCH, EXISTS counting repeats.
    assert_eq!(c.cmd("UNLINK a missing"), int(1));
    assert_eq!(c.cmd("TOUCH b c missing"), int(2));
    assert_eq!(c.cmd("EXISTS b b missing"), int(2));

    // The EXPIRE family with NX/XX/GT/LT.
    assert_eq!(c.cmd("EXPIRE b 100 XX"), int(0), "XX: b has no TTL");
    assert_eq!(c.cmd("EXPIRE b 100 GT"), int(0), "GT: no TTL is infinite");
    assert_eq!(c.cmd("EXPIRE b 100 NX"), int(1));
    assert_eq!(c.cmd("EXPIRE b 50 NX"), int(0));
    assert_eq!(c.cmd("EXPIRE b 50 GT"), int(0));
    assert_eq!(c.cmd("EXPIRE b 200 GT"), int(1));
    assert_eq!(c.cmd("EXPIRE b 300 LT"), int(0));
    assert_eq!(c.cmd("PEXPIRE b 150000 LT"), int(1));
    assert_eq!(c.cmd("TTL b"), int(150));
    assert_eq!(c.cmd("EXPIRE c 100 LT"), int(1), "LT: no TTL is infinite");
    assert_eq!(c.cmd("EXPIRE missing 10"), int(0));
    err_starts(
        &c.cmd("EXPIRE b 10 NX XX"),
        "ERR NX and XX, GT or LT options at the same time are not compatible",
    );
    err_starts(
        &c.cmd("EXPIRE b 10 GT LT"),
        "ERR GT and LT options at the same time are not compatible",
    );
    err_starts(&c.cmd("EXPIRE b 10 FOO"), "ERR Unsupported option FOO");
    err_starts(
        &c.cmd("EXPIRE b 9223372036854775807"),
        "ERR invalid expire time in 'expire' command",
    );

    // EXPIREAT / PEXPIREAT, EXPIRETIME / PEXPIRETIME.
    let at = T0 / 1000 + 1000;
    assert_eq!(c.cmd(&format!("EXPIREAT b {at}")), int(1));
    assert_eq!(c.cmd("EXPIRETIME b"), int(at as i64));
    assert_eq!(c.cmd("PEXPIRETIME b"), int((at * 1000) as i64));
    assert_eq!(c.cmd(&format!("PEXPIREAT b {}", T0 + 2500)), int(1));
    assert_eq!(c.cmd("PTTL b"), int(2500));
    c.cmd("SET forever v");
    assert_eq!(c.cmd("EXPIRETIME forever"), int(-1));
    assert_eq!(c.cmd("EXPIRETIME missing"), int(-2));
    // An instant in the past deletes, as Redis.
    assert_eq!(
        c.cmd(&format!("EXPIREAT forever {}", T0 / 1000 - 1)),
        int(1)
    );
    assert_eq!(c.cmd("EXISTS forever"), int(0));
    assert_eq!(c.cmd("PERSIST b"), int(1));
    assert_eq!(c.cmd("PERSIST b"), int(0));

    // RENAME keeps the TTL; RENAMENX refuses an existing target.
    c.cmd("SET r1 v EX 30");
    assert_eq!(c.cmd("RENAME r1 r2"), ok());
    assert_eq!(c.cmd("EXISTS r1"), int(0));
    assert_eq!(c.cmd("TTL r2"), int(30));
    err_starts(&c.cmd("RENAME nothing x"), "ERR no such key");
    c.cmd("SET r3 w");
    assert_eq!(c.cmd("RENAMENX r2 r3"), int(0));
    assert_eq!(c.cmd("RENAMENX r2 r4"), int(1));
    assert_eq!(c.cmd("RENAME r4 r4"), ok());

    // COPY, within a cache and to another, with REPLACE.
    assert_eq!(c.cmd("COPY r3 r5"), int(1));
    assert_eq!(c.cmd("COPY r3 r5"), int(0));
    assert_eq!(c.cmd("COPY r4 r5 REPLACE"), int(1));
    assert_eq!(c.cmd("GET r5"), V::b("v"));
    assert_eq!(c.cmd("COPY r5 r5 DB 1"), int(1));
    err_starts(
        &c.cmd("COPY r5 r5"),
        "ERR source and destination objects are the same",
    );
    err_starts(&c.cmd("COPY r5 x DB 9"), "ERR DB index is out of range");
    assert_eq!(c.cmd("COPY missing x"), int(0));
    assert_eq!(c.cmd("SELECT 1"), ok());
    assert_eq!(c.cmd("GET r5"), V::b("v"));
    assert_eq!(c.cmd("RANDOMKEY"), V::b("r5"));
    c.cmd("FLUSHDB");
    assert_eq!(c.cmd("RANDOMKEY"), V::Null);
    c.cmd("SELECT 0");

    // OBJECT, MEMORY USAGE, TYPE.
    c.cmd("SET num 12345");
    c.cmd(&format!("SET long {}", "x".repeat(50)));
    assert_eq!(c.cmd("OBJECT ENCODING num"), V::b("int"));
    assert_eq!(c.cmd("OBJECT ENCODING r3"), V::b("embstr"));
    assert_eq!(c.cmd("OBJECT ENCODING long"), V::b("raw"));
    assert_eq!(c.cmd("OBJECT ENCODING missing"), V::Null);
    assert_eq!(c.cmd("OBJECT REFCOUNT num"), int(1));
    clock.advance(Duration::from_secs(42));
    assert_eq!(c.cmd("OBJECT IDLETIME num"), int(42));
    err_starts(
        &c.cmd("OBJECT FREQ num"),
        "ERR An LFU maxmemory policy is not selected",
    );
    let usage = c.cmd("MEMORY USAGE num");
    assert_eq!(usage, int(leafcache::entry_size(3, 5) as i64));
    assert_eq!(c.cmd("MEMORY USAGE missing"), V::Null);
    assert_eq!(c.cmd("TYPE num"), V::Simple("string".into()));
    assert_eq!(c.cmd("TYPE missing"), V::Simple("none".into()));

    // DUMP / RESTORE with a checksum, TTL, REPLACE and ABSTTL.
    let payload = match c.cmd("DUMP num") {
        V::Bulk(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(c.call(&[b"RESTORE", b"copy", b"0", &payload]), ok());
    assert_eq!(c.cmd("GET copy"), V::b("12345"));
    err_starts(
        &c.call(&[b"RESTORE", b"copy", b"0", &payload]),
        "BUSYKEY Target key name already exists.",
    );
    assert_eq!(
        c.call(&[b"RESTORE", b"copy", b"5000", &payload, b"REPLACE"]),
        ok()
    );
    assert_eq!(c.cmd("PTTL copy"), int(5000));
    let at = (T0 + 42_000 + 9000).to_string();
    assert_eq!(
        c.call(&[b"RESTORE", b"abs", at.as_bytes(), &payload, b"ABSTTL"]),
        ok()
    );
    assert_eq!(c.cmd("PTTL abs"), int(9000));
    let mut damaged = payload.clone();
    damaged[0] ^= 0x20;
    err_starts(
        &c.call(&[b"RESTORE", b"bad", b"0", &damaged]),
        "ERR DUMP payload version or checksum are wrong",
    );
    err_starts(
        &c.call(&[b"RESTORE", b"bad", b"-1", &payload]),
        "ERR Invalid TTL value, must be >= 0",
    );
    assert_eq!(c.cmd("DUMP missing"), V::Null);

    // SCAN's TYPE filter: every key is a string.
    let all = c.cmd("SCAN 0 COUNT 1000 TYPE string");
    assert!(all.items()[1].items().len() >= 5, "{all:?}");
    let none = c.cmd("SCAN 0 COUNT 1000 TYPE hash");
    assert_eq!(none.items()[1], V::Array(vec![]));

    // TIME reads the node's clock.
    let time = c.cmd("TIME");
    assert_eq!(time.items()[0], V::b(&((T0 + 42_000) / 1000).to_string()));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_keyspace_reports_true_expires_and_average_ttl() {
    let clock = ManualClock::new(T0);
    let node = node_with(&clock);
    let mut c = client(&node);
    c.cmd("SET a v EX 100");
    c.cmd("SET b v EX 300");
    c.cmd("SET c v");
    let info = c.cmd("INFO keyspace").text();
    assert!(
        info.contains("db0:keys=3,expires=2,avg_ttl=200000"),
        "{info}"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_answers_in_redis_s_shapes_and_hello_2_goes_back() {
    let clock = ManualClock::new(T0);
    let node = Node::builder()
        .clock(clock.clone())
        .password("pw")
        .resp_address("127.0.0.1:0")
        .build()
        .unwrap();
    let mut c = client(&node);
    // HELLO 3 with AUTH and SETNAME: a map.
    let hello = c.cmd("HELLO 3 AUTH default pw SETNAME app");
    let V::Map(fields) = &hello else {
        panic!("HELLO 3 answers a map: {hello:?}")
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k.text() == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(field("proto"), int(3));
    assert_eq!(field("server"), V::b("redis"));
    assert_eq!(field("role"), V::b("master"));
    assert_eq!(c.cmd("CLIENT GETNAME"), V::b("app"));
    // Nulls are `_`, CONFIG GET a map, INFO and CLIENT INFO verbatim text, TTL an integer.
    assert_eq!(c.cmd("GET missing"), V::Null);
    assert_eq!(c.cmd("TTL missing"), int(-2));
    assert!(matches!(c.cmd("CONFIG GET maxclients"), V::Map(m) if m.len() == 1));
    assert!(
        matches!(c.cmd("INFO server"), V::Verbatim(f, t) if f == "txt" && String::from_utf8_lossy(&t).contains("redis_version"))
    );
    assert!(
        matches!(c.cmd("CLIENT INFO"), V::Verbatim(_, t) if String::from_utf8_lossy(&t).contains("name=app") && String::from_utf8_lossy(&t).contains("resp=3"))
    );
    assert!(matches!(c.cmd("CLIENT TRACKINGINFO"), V::Map(_)));
    c.cmd("MSET key1 ohmytext key2 mynewtext");
    assert!(matches!(c.cmd("LCS key1 key2 IDX"), V::Map(_)));
    assert!(matches!(c.cmd("COMMAND DOCS get"), V::Map(_)));
    let info = c.cmd("COMMAND INFO get");
    assert!(matches!(&info.items()[0].items()[2], V::Set(_)), "{info:?}");
    // SUBSCRIBE confirms with a push, and the connection keeps running commands.
    assert!(matches!(c.cmd("SUBSCRIBE ch"), V::Push(p) if p[0] == V::b("subscribe")));
    assert_eq!(c.cmd("PING"), V::Simple("PONG".into()));
    assert!(matches!(c.cmd("UNSUBSCRIBE"), V::Push(_)));
    // An aborted EXEC is a null.
    c.cmd("WATCH w");
    c.cmd("MULTI");
    let mut other = client(&node);
    assert_eq!(other.cmd("AUTH pw"), ok());
    other.cmd("SET w changed");
    c.cmd("SET w mine");
    assert_eq!(c.cmd("EXEC"), V::Null);
    // HELLO 2 goes back to RESP2's shapes.
    let hello2 = c.cmd("HELLO 2");
    assert!(
        matches!(&hello2, V::Array(a) if a.len() == 14),
        "{hello2:?}"
    );
    assert!(matches!(c.cmd("CONFIG GET maxclients"), V::Array(a) if a.len() == 2));
    assert!(matches!(c.cmd("INFO server"), V::Bulk(_)));
    err_starts(&c.cmd("HELLO 4"), "NOPROTO");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_lists_kills_and_counts_clients() {
    let clock = ManualClock::new(T0);
    let node = node_with(&clock);
    let mut a = client(&node);
    let mut b = client(&node);
    a.cmd("CLIENT SETNAME alpha");
    a.cmd("CLIENT SETINFO LIB-NAME mylib");
    a.cmd("CLIENT SETINFO LIB-VER 1.2");
    b.cmd("CLIENT SETNAME beta");
    let list = a.cmd("CLIENT LIST").text();
    assert!(
        list.contains("name=alpha") && list.contains("lib-name=mylib lib-ver=1.2"),
        "{list}"
    );
    assert!(list.contains("name=beta"));
    let b_id = b.cmd("CLIENT ID");
    let only = a.cmd(&format!("CLIENT LIST ID {}", b_id.text())).text();
    assert_eq!(only.lines().count(), 1);
    assert!(
        only.contains("name=beta") && only.contains("cmd=client"),
        "{only}"
    );
    assert_eq!(a.cmd("CLIENT NO-EVICT on"), ok());
    assert_eq!(a.cmd("CLIENT NO-TOUCH on"), ok());
    assert!(a.cmd("CLIENT INFO").text().contains("flags=eT"));
    err_starts(&a.cmd("CLIENT NO-TOUCH maybe"), "ERR syntax error");
    // KILL by id answers a count; by address OK; SKIPME keeps the caller.
    assert_eq!(a.cmd(&format!("CLIENT KILL ID {}", b_id.text())), int(1));
    assert!(b.closed(), "the killed client is disconnected");
    err_starts(&a.cmd("CLIENT KILL 1.2.3.4:5"), "ERR No such client");
    assert_eq!(
        a.cmd("CLIENT KILL TYPE normal"),
        int(0),
        "SKIPME yes by default"
    );
    // COMMAND's views agree with each other.
    let count = a.cmd("COMMAND COUNT");
    let list = a.cmd("COMMAND LIST");
    assert_eq!(count, int(list.items().len() as i64));
    assert_eq!(
        a.cmd("COMMAND GETKEYS MSET k1 v1 k2 v2"),
        V::Array(vec![V::b("k1"), V::b("k2")])
    );
    // A key position the line lacks is not read past its end.
    assert_eq!(a.cmd("COMMAND GETKEYS OBJECT HELP"), V::Array(vec![]));
    let strings = a.cmd("COMMAND LIST FILTERBY ACLCAT string");
    assert!(strings.items().contains(&V::b("append")));
    assert!(a.cmd("INFO clients").text().contains("connected_clients:1"));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_queue_watch_and_abort_as_redis() {
    let clock = ManualClock::new(T0);
    let node = node_with(&clock);
    let mut c = client(&node);
    assert_eq!(c.cmd("MULTI"), ok());
    assert_eq!(c.cmd("SET a 1"), V::Simple("QUEUED".into()));
    assert_eq!(c.cmd("GET a"), V::Simple("QUEUED".into()));
    err_starts(&c.cmd("MULTI"), "ERR MULTI calls can not be nested");
    err_starts(&c.cmd("WATCH a"), "ERR WATCH inside MULTI is not allowed");
    assert_eq!(c.cmd("EXEC"), V::Array(vec![ok(), V::b("1")]));
    err_starts(&c.cmd("EXEC"), "ERR EXEC without MULTI");
    err_starts(&c.cmd("DISCARD"), "ERR DISCARD without MULTI");
    // A refused command while queueing aborts the EXEC.
    c.cmd("MULTI");
    err_starts(&c.cmd("NOSUCH x"), "ERR unknown command");
    err_starts(&c.cmd("GET"), "ERR wrong number of arguments");
    err_starts(
        &c.cmd("EXEC"),
        "EXECABORT Transaction discarded because of previous errors.",
    );
    // DISCARD drops the queue.
    c.cmd("MULTI");
    c.cmd("SET a 2");
    assert_eq!(c.cmd("DISCARD"), ok());
    assert_eq!(c.cmd("GET a"), V::b("1"));
    // WATCH: a change by another client, an expiry, or a purge aborts; UNWATCH forgets.
    let mut other = client(&node);
    for (setup, change) in [
        ("SET w 1", "SET w 2"),
        ("SET w 1 PX 100", "__expire"),
        ("SET w 1", "FLUSHALL"),
    ] {
        c.cmd(setup);
        c.cmd("WATCH w");
        if change == "__expire" {
            clock.advance(Duration::from_millis(200));
        } else {
            other.cmd(change);
        }
        c.cmd("MULTI");
        c.cmd("SET w mine");
        assert_eq!(c.cmd("EXEC"), V::Null, "{change} aborts the transaction");
    }
    c.cmd("WATCH w");
    other.cmd("SET w 3");
    c.cmd("UNWATCH");
    c.cmd("MULTI");
    c.cmd("SET w mine");
    assert_eq!(c.cmd("EXEC"), V::Array(vec![ok()]));
    // An EXEC left alone runs.
    c.cmd("WATCH w");
    c.cmd("MULTI");
    c.cmd("GET w");
    assert_eq!(c.cmd("EXEC"), V::Array(vec![V::b("mine")]));
    node.shutdown().await;
}

/// Writers set two keys to the same value in one transaction, over and over; readers read both
/// with MGET and in a transaction of their own. A reader that ever sees them differ has seen half
/// of an EXEC. Run on one node, and with the writers at one leaf and the readers at another, so
/// that the transactions reach the readers through the hub, batch by batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_client_ever_sees_half_of_an_exec() {
    let node = Node::builder().resp_address("127.0.0.1:0").build().unwrap();
    let addr = node.resp_addr().unwrap().to_string();
    half_exec_checker(&addr, &addr);
    node.shutdown().await;

    let (hub, writer, reader) = support::resp::two_leaves(3);
    let (w, r) = (writer.resp_addr().unwrap(), reader.resp_addr().unwrap());
    half_exec_checker(w, r);
    for n in [&writer, &reader, &hub] {
        n.shutdown().await;
    }
}

fn half_exec_checker(addr: &str, read_addr: &str) {
    let mut setup = Client::connect(addr);
    setup.cmd("MSET x 0 y 0");
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2 {
        let addr = addr.to_string();
        let stop = stop.clone();
        writers.push(std::thread::spawn(move || {
            let mut c = Client::connect(&addr);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let v = format!("{w}-{i}");
                c.cmd("MULTI");
                c.cmd(&format!("SET x {v}"));
                c.cmd(&format!("SET y {v}"));
                let r = c.cmd("EXEC");
                assert_eq!(r.items().len(), 2);
            }
            i
        }));
    }
    let mut readers = Vec::new();
    for r in 0..2 {
        let addr = read_addr.to_string();
        readers.push(std::thread::spawn(move || {
            let mut c = Client::connect(&addr);
            let deadline = Instant::now() + Duration::from_millis(1500);
            let mut reads = 0;
            while Instant::now() < deadline {
                let pair = if r == 0 {
                    c.cmd("MGET x y")
                } else {
                    c.cmd("MULTI");
                    c.cmd("GET x");
                    c.cmd("GET y");
                    c.cmd("EXEC")
                };
                let items = pair.items();
                assert_eq!(items[0], items[1], "half of an EXEC seen: {pair:?}");
                reads += 1;
            }
            reads
        }));
    }
    let reads: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
    stop.store(true, Ordering::Relaxed);
    let writes: u64 = writers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(
        reads > 100 && writes > 100,
        "reads {reads}, transactions {writes}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_counts_the_hub_s_acknowledgement() {
    let hub = Node::builder()
        .name("hub")
        .local_address("127.0.0.1:0")
        .build()
        .unwrap();
    let leaf = Node::builder()
        .name("leaf")
        .remote_address(hub.local_addr().unwrap())
        .resp_address("127.0.0.1:0")
        .build()
        .unwrap();
    let mut c = client(&leaf);
    assert_eq!(c.cmd("SET k v"), ok());
    assert_eq!(c.cmd("WAIT 1 5000"), int(1));
    assert_eq!(hub.default_cache().get("k").unwrap(), "v");
    err_starts(&c.cmd("WAIT 1 -1"), "ERR timeout is negative");
    // A node without a hub has no one to acknowledge.
    let alone = node_with(&ManualClock::new(T0));
    let mut c = client(&alone);
    c.cmd("SET k v");
    assert_eq!(c.cmd("WAIT 1 100"), int(0));
    leaf.shutdown().await;
    hub.shutdown().await;
    alone.shutdown().await;
}

/// A `redis-server` on a free port, stopped when dropped.
struct RedisServer {
    child: Child,
    addr: String,
}

impl RedisServer {
    fn start() -> Option<RedisServer> {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Started in an empty directory: a dump.rdb where the tests run would be loaded.
        let dir = std::env::temp_dir().join(format!("leafcache-redis-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    std::env::var_os("LEAFCACHE_REQUIRE_REDIS").is_none(),
                    "LEAFCACHE_REQUIRE_REDIS is set but redis-server cannot start: {e}"
                );
                eprintln!(
                    "redis-server not installed ({e}); the side-by-side comparison is skipped"
                );
                return None;
            }
        };
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(RedisServer { child, addr })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Commands whose answers do not depend on time or randomness, run on both servers from empty.
const SCRIPT: &[&str] = &[
    "SET a hello",
    "GET a",
    "APPEND a world",
    "STRLEN a",
    "GETRANGE a 0 4",
    "GETRANGE a -3 -1",
    "GETRANGE a 5 2",
    "SUBSTR a 0 -1",
    "SETRANGE a 5 XY",
    "GET a",
    "SETRANGE z 2 q",
    "GET z",
    "SETRANGE a -1 x",
    "GETSET a new",
    "GETSET none v",
    "SETNX a x",
    "SETNX fresh x",
    "SET n 10 NX",
    "SET n 11 XX",
    "SET q 1 XX",
    "SET n 12 GET",
    "SET x",
    "SET x y z",
    "MSET m1 a m2 b",
    "MGET m1 m2 nope",
    "MSETNX m1 a m3 c",
    "MSETNX m4 a m5 c",
    "MSETNX m1",
    "GETEX a",
    "GETEX a PERSIST",
    "GETEX nope EX 10",
    "GETEX a EX 0",
    "GETEX a FOO",
    "GETDEL m5",
    "GETDEL m5",
    "SETEX s 0 v",
    "PSETEX s -1 v",
    "SETEX s x v",
    "MSET key1 ohmytext key2 mynewtext",
    "LCS key1 key2",
    "LCS key1 key2 LEN",
    "LCS key1 key2 IDX",
    "LCS key1 key2 IDX MINMATCHLEN 4 WITHMATCHLEN",
    "LCS key1 nope",
    "LCS key1 key2 LEN IDX",
    "LCS key1 key2 FOO",
    "DEL m1 m2 nope",
    "UNLINK m3 m4",
    "EXISTS a a nope",
    "TOUCH a nope",
    "TYPE a",
    "TYPE nope",
    "TTL a",
    "PTTL nope",
    "EXPIRETIME a",
    "PEXPIRETIME nope",
    "PERSIST a",
    "EXPIRE a 100 XX",
    "EXPIRE a 100 GT",
    "EXPIRE a 100 NX",
    "EXPIRE a 50 NX",
    "EXPIRE a 50 GT",
    "EXPIRE a 200 GT",
    "EXPIRE a 300 LT",
    "EXPIRE a 150 LT",
    "TTL a",
    "EXPIRE nope 10",
    "EXPIRE a 10 NX XX",
    "EXPIRE a 10 GT LT",
    "EXPIRE a 10 FOO",
    "EXPIRE a x",
    "PERSIST a",
    "PERSIST a",
    "EXPIRE a -1",
    "EXISTS a",
    "SET r1 v",
    "RENAME r1 r2",
    "EXISTS r1",
    "GET r2",
    "RENAME nope x",
    "SET r3 w",
    "RENAMENX r2 r3",
    "RENAMENX r2 r4",
    "RENAME r4 r4",
    "RENAMENX r4 r4",
    "COPY r3 r5",
    "COPY r3 r5",
    "COPY r4 r5 REPLACE",
    "GET r5",
    "COPY r5 r5",
    "COPY nope x",
    "COPY r5 x DB 99",
    "COPY r5 x BAD",
    "SET num 12345",
    "OBJECT ENCODING num",
    "OBJECT ENCODING r3",
    "OBJECT ENCODING nope",
    "OBJECT REFCOUNT num",
    "OBJECT FOO num",
    "MEMORY USAGE nope",
    "DUMP nope",
    "RESTORE x 0 garbage",
    "RESTORE x -1 garbage",
    "MULTI",
    "SET t 1",
    "GET t",
    "EXEC",
    "EXEC",
    "DISCARD",
    "MULTI",
    "MULTI",
    "DISCARD",
    "MULTI",
    "NOSUCH",
    "EXEC",
    "WATCH t",
    "MULTI",
    "WATCH t",
    "DISCARD",
    "UNWATCH",
    "INCR c",
    "SELECT 99",
    "SELECT x",
    "ECHO hi",
    "PING",
    "PING a",
    "PING a b",
    "CLIENT SETNAME has\tspace",
    "CLIENT GETNAME",
    "CLIENT SETNAME ok",
    "CLIENT GETNAME",
    "CLIENT NOSUCH",
    "CLIENT TRACKING on PREFIX a",
    "CLIENT TRACKING on OPTIN OPTOUT",
    "CLIENT TRACKING on BCAST OPTIN",
    "CLIENT GETREDIR",
    "CLIENT CACHING yes",
    "CLIENT TRACKING on BCAST PREFIX a PREFIX ab",
    "CLIENT TRACKING on REDIRECT 999999",
    "CLIENT TRACKING on",
    "CLIENT GETREDIR",
    "CLIENT TRACKING off",
    "CLIENT GETREDIR",
    "WAIT 0 0",
    "WAIT 1 -1",
    "SUBSCRIBE c1 c2",
    "GET a",
    "PING",
    "UNSUBSCRIBE c1",
    "PSUBSCRIBE p*",
    "PUNSUBSCRIBE",
    "UNSUBSCRIBE",
    "UNSUBSCRIBE",
    "PUBLISH c1 hi",
    "PUBSUB NUMSUB c1",
    "PUBSUB NUMPAT",
    "PUBSUB CHANNELS",
    "FLUSHDB",
    "DBSIZE",
    "FLUSHALL FOO",
    "NOSUCHCOMMAND a b",
    "HELLO 4",
    "HELLO x",
    "GET",
    // Counters.
    "SET n 10",
    "INCR n",
    "INCRBY n 5",
    "DECR n",
    "DECRBY n 3",
    "GET n",
    "OBJECT ENCODING n",
    "INCRBYFLOAT n 1.5",
    "GET n",
    "INCR n",
    "INCRBYFLOAT n 0.5",
    "INCR n",
    "APPEND n 7",
    "GET n",
    "INCR n",
    "SET big 9223372036854775807",
    "INCR big",
    "GET big",
    "DECRBY n -9223372036854775808",
    "INCR nosuchnum",
    "INCRBY x notanumber",
    "INCRBYFLOAT x abc",
    "INCRBYFLOAT fl 0.1",
    "INCRBYFLOAT fl 0.2",
    "SET s hello",
    "INCR s",
    "INCRBYFLOAT s 1",
    "TYPE n",
    // Hashes.
    "HSET h a 1 b 2",
    "HSET h a 3",
    "HGET h a",
    "HMGET h a b z",
    "HGETALL h",
    "HKEYS h",
    "HVALS h",
    "HSCAN h 0",
    "HSCAN h 0 MATCH a",
    "HLEN h",
    "HEXISTS h a",
    "HEXISTS h z",
    "HSTRLEN h a",
    "HSTRLEN h z",
    "HINCRBY h b 5",
    "HINCRBY h a x",
    "HSET h s hello",
    "HINCRBY h s 1",
    "HINCRBYFLOAT h b 0.5",
    "HINCRBYFLOAT h s 1",
    "HINCRBY h b 9223372036854775807",
    "HSETNX h a 9",
    "HSETNX h c 9",
    "HDEL h a z",
    "HMSET h d 4",
    "OBJECT ENCODING h",
    "TYPE h",
    "GET h",
    "INCR h",
    "HGET n a",
    "APPEND h x",
    "STRLEN h",
    "SET h v",
    "TYPE h",
    "HDEL h2 a",
    "HSET h2 x 1",
    "HDEL h2 x",
    "EXISTS h2",
    "HGETALL nosuch",
    "HSET h3 a",
    "HRANDFIELD nosuch",
    "HRANDFIELD nosuch 2",
    "SCAN 0 TYPE hash",
    // One integer rule for arguments and values, Redis's: no leading zeros, no `-0`, no `+`.
    "SET z 007",
    "INCR z",
    "SET z2 -0",
    "INCRBY z2 1",
    "SET z3 10",
    "EXPIRE z3 007",
    "EXPIRE z3 -0",
    "EXPIRE z3 +5",
    "GETRANGE z3 0 01",
    "INCRBY z3 010",
    "INCRBY z3 -010",
    "TTL z3",
];

/// Answers where the two servers are allowed to differ: `MEMORY USAGE` (each server counts its
/// own bytes), and `OBJECT`'s unknown-subcommand error, whose wording differs between Redis
/// versions.
fn comparable(cmd: &str) -> bool {
    !cmd.starts_with("MEMORY USAGE") && !cmd.starts_with("OBJECT FOO")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_script_answers_as_redis_server() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let node = Node::builder()
        .cache("one", leafcache::CacheConfig::default())
        .resp_address("127.0.0.1:0")
        .build()
        .unwrap();
    let mut differences = Vec::new();
    for proto in ["2", "3"] {
        let mut ours = client(&node);
        let mut theirs = Client::connect(&redis.addr);
        for c in [&mut ours, &mut theirs] {
            assert!(!c.call(&[b"HELLO", proto.as_bytes()]).is_error());
            c.cmd("FLUSHALL");
        }
        for cmd in SCRIPT {
            let words: Vec<&[u8]> = cmd.split(' ').map(str::as_bytes).collect();
            let (a, b) = (ours.call(&words), theirs.call(&words));
            if comparable(cmd) && a != b {
                differences.push(format!(
                    "RESP{proto} {cmd}\n  leafcache: {a:?}\n  redis:     {b:?}"
                ));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} answers differ:\n{}",
        differences.len(),
        2 * SCRIPT.len(),
        differences.join("\n")
    );
    node.shutdown().await;
}

/// A value over the limit, sent in full by a client that does not wait for answers, gets a
/// readable error before the connection closes — not a reset that loses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_value_is_answered_before_the_close() {
    use std::io::{Read, Write};
    let node = Node::builder()
        .resp_address("127.0.0.1:0")
        .server_limits(leafcache::ServerLimits {
            max_value: 1 << 20,
            ..leafcache::ServerLimits::default()
        })
        .build()
        .unwrap();
    let addr = node.resp_addr().unwrap().to_string();
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let value = vec![b'x'; 4 << 20];
        let mut request =
            format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", value.len()).into_bytes();
        request.extend_from_slice(&value);
        request.extend_from_slice(b"\r\n");
        // The whole request goes out (or as much as the server takes before it closes).
        let _ = s.write_all(&request);
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .unwrap();
    assert!(
        answer.starts_with(
            "-ERR Protocol error: a 4194304-byte argument, the limit is 1048576 bytes"
        ),
        "{answer:?}"
    );
    node.shutdown().await;
}

/// Every command of `COMMAND LIST`, over and over, with random arguments drawn from the options
/// the commands take, numbers of every size and plain words: each gets an answer, the connection
/// goes on (but for the commands that close it), and the node never falls over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_with_random_arguments_answers() {
    use rand::{Rng, SeedableRng};
    let node = Node::builder()
        .cache("one", leafcache::CacheConfig::default())
        .resp_address("127.0.0.1:0")
        .build()
        .unwrap();
    let addr = node.resp_addr().unwrap().to_string();
    tokio::task::spawn_blocking(move || {
        let mut c = Client::connect(&addr);
        let names: Vec<String> = c.cmd("COMMAND LIST").items().iter().map(V::text).collect();
        let words = [
            "",
            "0",
            "1",
            "-1",
            "2",
            "3",
            "5",
            "100",
            "-100",
            "99999999999999999999",
            "9223372036854775807",
            "-9223372036854775808",
            "k",
            "key1",
            "key2",
            "*",
            "k*",
            "EX",
            "PX",
            "EXAT",
            "PXAT",
            "NX",
            "XX",
            "GT",
            "LT",
            "KEEPTTL",
            "GET",
            "PERSIST",
            "IDX",
            "LEN",
            "MINMATCHLEN",
            "WITHMATCHLEN",
            "MATCH",
            "COUNT",
            "TYPE",
            "string",
            "DB",
            "REPLACE",
            "ABSTTL",
            "IDLETIME",
            "FREQ",
            "ON",
            "OFF",
            "BCAST",
            "PREFIX",
            "REDIRECT",
            "OPTIN",
            "OPTOUT",
            "NOLOOP",
            "YES",
            "NO",
            "ID",
            "ADDR",
            "LADDR",
            "SKIPME",
            "MAXAGE",
            "USER",
            "LIST",
            "INFO",
            "KILL",
            "TRACKING",
            "CACHING",
            "GETREDIR",
            "TRACKINGINFO",
            "SETNAME",
            "SETINFO",
            "LIB-NAME",
            "LIB-VER",
            "NO-EVICT",
            "NO-TOUCH",
            "GETKEYS",
            "DOCS",
            "USAGE",
            "SAMPLES",
            "ENCODING",
            "REFCOUNT",
            "HELP",
            "AUTH",
            "default",
            "CHANNELS",
            "NUMSUB",
            "NUMPAT",
            "FILTERBY",
            "PATTERN",
            "ACLCAT",
            "ASYNC",
            "normal",
            "pubsub",
            "v a l",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(14);
        let mut previous: Vec<String> = Vec::new();
        for round in 0..20_000 {
            let name = &names[rng.random_range(0..names.len())];
            let mut args: Vec<String> = vec![name.clone()];
            if rng.random_bool(0.3)
                && matches!(
                    name.as_str(),
                    "client" | "command" | "object" | "memory" | "config" | "pubsub"
                )
            {
                args.push(
                    [
                        "LIST", "INFO", "TRACKING", "GETKEYS", "USAGE", "ENCODING", "GET", "NUMSUB",
                    ][rng.random_range(0..8)]
                    .into(),
                );
            }
            for _ in 0..rng.random_range(0..6) {
                // Now and then a command name, for COMMAND GETKEYS / INFO / DOCS.
                let word = if rng.random_bool(0.1) {
                    names[rng.random_range(0..names.len())].clone()
                } else {
                    words[rng.random_range(0..words.len())].to_string()
                };
                args.push(word);
            }
            let argv: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            if let Err(e) = c.try_send(&argv) {
                panic!("the connection closed after {previous:?}: {e}");
            }
            // Leave any transaction and subscription, then PING with a marker: everything up to
            // the marker is the command's answer (one reply or several).
            let marker = format!("marker-{round}");
            let closes = name == "quit"
                || (name == "client" && args.iter().any(|a| a.eq_ignore_ascii_case("kill")));
            for tail in [
                &[&b"DISCARD"[..]][..],
                &[b"RESET"],
                &[b"PING", marker.as_bytes()],
            ] {
                if let Err(e) = c.try_send(tail)
                    && !closes
                {
                    panic!("the connection closed after {args:?}: {e}");
                }
            }
            loop {
                if closes && c.closed() {
                    c = Client::connect(&addr);
                    break;
                }
                if c.closed() {
                    panic!("the connection closed after {args:?}");
                }
                let reply = c.read();
                if reply.text().contains(&marker) || reply == V::b(&marker) {
                    break;
                }
            }
            previous = args;
        }
    })
    .await
    .unwrap();
    let mut c = client(&node);
    assert_eq!(
        c.cmd("PING"),
        V::Simple("PONG".into()),
        "the node still serves"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_get_maxmemory_answers_the_selected_cache_s_capacity_and_policy() {
    let node = Node::builder()
        .cache(
            "bounded",
            leafcache::CacheConfig::new()
                .max_bytes(1 << 20)
                .eviction(leafcache::Eviction::Lfu),
        )
        .resp_address("127.0.0.1:0")
        .build()
        .unwrap();
    let mut c = client(&node);
    let pair = |name: &str, value: &str| V::Array(vec![V::b(name), V::b(value)]);
    assert_eq!(c.cmd("CONFIG GET maxmemory"), pair("maxmemory", "0"));
    assert_eq!(
        c.cmd("CONFIG GET maxmemory-policy"),
        pair("maxmemory-policy", "allkeys-lru")
    );
    assert_eq!(c.cmd("SELECT 1"), ok());
    assert_eq!(c.cmd("CONFIG GET maxmemory"), pair("maxmemory", "1048576"));
    assert_eq!(
        c.cmd("CONFIG GET maxmemory-policy"),
        pair("maxmemory-policy", "allkeys-lfu")
    );
    node.shutdown().await;
}
