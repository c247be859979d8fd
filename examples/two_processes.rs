//! Several OS processes on one host sharing one node: this program runs a node with a Unix socket
//! (mode 0600) and starts three copies of itself as client processes. Each writes its own keys
//! over the socket with the `redis` crate, as any Redis client would, then reads the keys of the
//! others. The node's own process reads every key locally, with no socket at all.
//!
//! `cargo run --example two_processes`

use std::process::Command;

use leafcache::Node;
use redis::Commands;

const CLIENTS: usize = 3;
const KEYS: usize = 1_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, role, socket, id] = args.as_slice()
        && role == "client"
    {
        return client(socket, id.parse()?);
    }
    tokio::runtime::Runtime::new()?.block_on(serve())
}

/// The node's process: runs the node, starts the clients, checks what they wrote.
async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("leafcache-shared-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("node.sock");
    let node = Node::builder()
        .name("shared")
        .unix_socket(&socket)
        .build()?;
    println!("node {} serving RESP on {}", node.name(), socket.display());

    // Phase 1: every client writes its keys. Phase 2: every client reads everyone's keys.
    for phase in ["write", "read"] {
        let children: Vec<_> = (0..CLIENTS)
            .map(|id| {
                Command::new(std::env::current_exe()?)
                    .args(["client", socket.to_str().unwrap(), &id.to_string()])
                    .env("PHASE", phase)
                    .spawn()
            })
            .collect::<Result<_, _>>()?;
        for mut child in children {
            let status = tokio::task::spawn_blocking(move || child.wait()).await??;
            assert!(status.success(), "a client failed: {status}");
        }
    }

    // The node's own process reads every key from memory.
    let cache = node.default_cache();
    let held = (0..CLIENTS)
        .flat_map(|c| (0..KEYS).map(move |k| format!("client-{c}:{k}")))
        .filter(|key| cache.get(key).is_some())
        .count();
    println!(
        "the node's process reads {held} of {} keys locally",
        CLIENTS * KEYS
    );
    assert_eq!(held, CLIENTS * KEYS);
    node.shutdown().await;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// One client process: writes its keys (pipelined) or reads everyone's.
fn client(socket: &str, id: usize) -> Result<(), Box<dyn std::error::Error>> {
    let mut conn = redis::Client::open(format!("redis+unix://{socket}"))?.get_connection()?;
    if std::env::var("PHASE").as_deref() == Ok("write") {
        let mut pipe = redis::pipe();
        for k in 0..KEYS {
            pipe.set(
                format!("client-{id}:{k}"),
                format!("from process {}", std::process::id()),
            )
            .ignore();
        }
        pipe.query::<()>(&mut conn)?;
        println!("client {id} (pid {}) wrote {KEYS} keys", std::process::id());
    } else {
        let mut seen = 0;
        for other in (0..CLIENTS).filter(|&c| c != id) {
            let keys: Vec<String> = (0..KEYS).map(|k| format!("client-{other}:{k}")).collect();
            let values: Vec<Option<String>> = conn.mget(&keys)?;
            seen += values.iter().flatten().count();
        }
        println!(
            "client {id} (pid {}) read {seen} keys the others wrote",
            std::process::id()
        );
        assert_eq!(seen, (CLIENTS - 1) * KEYS);
    }
    Ok(())
}
