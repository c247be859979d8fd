//! One conformance suite for every transport links run over — TCP, Unix sockets and the in-memory
//! network — then the faults only the in-memory one injects: cut, heal, delay and stall.

use std::sync::Arc;
use std::time::Duration;

use leafcache::net::{MemoryNet, Sockets, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A transport under test: what to bind, and how a second, distinct address is found.
struct Case {
    name: &'static str,
    server: Arc<dyn Transport>,
    client: Arc<dyn Transport>,
    /// An address to bind (port 0 / a fresh path / a fresh name).
    fresh: Box<dyn Fn() -> String>,
}

fn cases() -> Vec<Case> {
    let net = MemoryNet::new();
    let dir = std::env::temp_dir().join(format!("leafcache-transport-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let counter = std::sync::atomic::AtomicU32::new(0);
    let next = Arc::new(counter);
    let (n1, n2) = (next.clone(), next);
    vec![
        Case {
            name: "tcp",
            server: Arc::new(Sockets),
            client: Arc::new(Sockets),
            fresh: Box::new(|| "127.0.0.1:0".to_string()),
        },
        Case {
            name: "unix",
            server: Arc::new(Sockets),
            client: Arc::new(Sockets),
            fresh: Box::new(move || {
                let n = n1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                format!("unix:{}", dir.join(format!("s{n}.sock")).display())
            }),
        },
        Case {
            name: "memory",
            server: net.host("server"),
            client: net.host("client"),
            fresh: Box::new(move || {
                let n = n2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                format!("mem:server{n}")
            }),
        },
    ]
}

#[tokio::test]
async fn bytes_flow_both_ways_and_the_end_is_seen() {
    for case in cases() {
        let listener = case.server.bind(&(case.fresh)()).unwrap();
        let address = listener.local_addr();
        let mut client = case.client.connect(&address).await.unwrap();
        let (mut server, peer) = listener.accept().await.unwrap();
        assert!(!peer.is_empty(), "{}: the peer's address", case.name);
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping", "{}", case.name);
        server.write_all(b"pong").await.unwrap();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong", "{}", case.name);
        client.shutdown().await.unwrap();
        assert_eq!(
            server.read(&mut buf).await.unwrap(),
            0,
            "{}: end of stream",
            case.name
        );
        drop(client);
        drop(server);
    }
}

#[tokio::test]
async fn large_transfers_both_ways_at_once_complete() {
    // More than any pipe or socket buffer holds: both writers must wait for their readers.
    const SIZE: usize = 4 << 20;
    for case in cases() {
        let listener = case.server.bind(&(case.fresh)()).unwrap();
        let address = listener.local_addr();
        let client = case.client.connect(&address).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let pattern = |i: usize| (i % 251) as u8;
        let run = |stream: leafcache::net::Stream| async move {
            let (mut r, mut w) = tokio::io::split(stream);
            let writer = async {
                let data: Vec<u8> = (0..SIZE).map(pattern).collect();
                w.write_all(&data).await.unwrap();
                w.flush().await.unwrap();
            };
            let reader = async {
                let mut got = vec![0u8; SIZE];
                r.read_exact(&mut got).await.unwrap();
                got
            };
            let ((), got) = tokio::join!(writer, reader);
            got
        };
        let (a, b) = tokio::join!(run(client), run(server));
        let want: Vec<u8> = (0..SIZE).map(pattern).collect();
        assert!(a == want && b == want, "{}: bytes differ", case.name);
    }
}

#[tokio::test]
async fn connections_are_accepted_in_order_and_kept_apart() {
    for case in cases() {
        let listener = case.server.bind(&(case.fresh)()).unwrap();
        let address = listener.local_addr();
        let mut clients = Vec::new();
        for i in 0..3u8 {
            let mut c = case.client.connect(&address).await.unwrap();
            c.write_all(&[i]).await.unwrap();
            clients.push(c);
        }
        for i in 0..3u8 {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            assert_eq!(b[0], i, "{}", case.name);
        }
    }
}

#[tokio::test]
async fn nothing_bound_is_refused_and_a_bound_address_is_not_taken_twice() {
    for case in cases() {
        let address = (case.fresh)();
        let bound = case.server.bind(&address).unwrap();
        let actual = bound.local_addr();
        assert!(
            case.server.bind(&actual).is_err(),
            "{}: {actual} bound twice",
            case.name
        );
        drop(bound);
        if case.name != "tcp" {
            // (A freed TCP port may be taken by anyone meanwhile.)
            assert!(
                case.client.connect(&actual).await.is_err(),
                "{}: connected to nothing",
                case.name
            );
        }
    }
}

#[tokio::test]
async fn a_dropped_peer_is_an_end_or_an_error_never_a_hang() {
    for case in cases() {
        let listener = case.server.bind(&(case.fresh)()).unwrap();
        let mut client = case.client.connect(&listener.local_addr()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        drop(server);
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("not a hang");
        assert!(matches!(read, Ok(0) | Err(_)), "{}: {read:?}", case.name);
    }
}

// The in-memory network's faults, under paused time so delays are exact.

#[tokio::test(start_paused = true)]
async fn a_cut_breaks_both_ends_and_refuses_until_healed() {
    let net = MemoryNet::new();
    let listener = net.host("hub").bind("mem:hub").unwrap();
    let mut leaf = net.host("leaf").connect("mem:hub").await.unwrap();
    let (mut hub, _) = listener.accept().await.unwrap();
    // A bystander connection between other hosts is not touched.
    let mut other = net.host("other").connect("mem:hub").await.unwrap();
    let (mut other_end, _) = listener.accept().await.unwrap();
    net.cut("leaf", "hub");
    assert!(net.is_cut("hub", "leaf"));
    let mut buf = [0u8; 1];
    assert!(hub.read(&mut buf).await.is_err());
    assert!(leaf.write_all(b"x").await.is_err());
    assert!(net.host("leaf").connect("mem:hub").await.is_err());
    other.write_all(b"y").await.unwrap();
    other_end.read_exact(&mut buf).await.unwrap();
    net.heal("leaf", "hub");
    let mut again = net.host("leaf").connect("mem:hub").await.unwrap();
    let (mut hub_again, _) = listener.accept().await.unwrap();
    again.write_all(b"z").await.unwrap();
    hub_again.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"z");
}

#[tokio::test(start_paused = true)]
async fn a_delay_holds_bytes_back_exactly_that_long() {
    let net = MemoryNet::new();
    let listener = net.host("hub").bind("mem:hub").unwrap();
    net.delay("leaf", "hub", Duration::from_millis(80));
    let mut leaf = net.host("leaf").connect("mem:hub").await.unwrap();
    let (mut hub, _) = listener.accept().await.unwrap();
    let start = tokio::time::Instant::now();
    leaf.write_all(b"late").await.unwrap();
    let mut buf = [0u8; 4];
    hub.read_exact(&mut buf).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(80));
    assert_eq!(&buf, b"late");
}

#[tokio::test(start_paused = true)]
async fn a_stall_stops_delivery_and_fills_the_pipe_until_released() {
    let net = MemoryNet::new();
    let listener = net.host("hub").bind("mem:hub").unwrap();
    let mut leaf = net.host("leaf").connect("mem:hub").await.unwrap();
    let (mut hub, _) = listener.accept().await.unwrap();
    net.stall("leaf", "hub", true);
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(60), hub.read(&mut buf)).await;
    assert!(read.is_err(), "nothing arrives while stalled");
    // The writer is not given unbounded room: it waits once the pipe is full.
    let big = vec![7u8; 8 << 20];
    let write = tokio::time::timeout(Duration::from_secs(60), leaf.write_all(&big)).await;
    assert!(write.is_err(), "a stalled peer pushes back");
    net.stall("leaf", "hub", false);
    hub.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf[0], 7);
}
