//! A fault-injecting TCP proxy for one link: the leaf dials the proxy, the proxy dials the hub.
//! Faults: cut (drop connections and refuse new ones), heal, latency per chunk, stall (stop
//! forwarding without closing), inject garbage toward the hub, cut in the middle of a frame.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Debug, Default, PartialEq)]
struct Faults {
    /// Connections are dropped and new ones refused.
    cut: bool,
    /// Nothing is forwarded, connections stay open.
    stalled: bool,
    /// Added before forwarding each chunk.
    latency: Duration,
    /// Bumped to make every connection send garbage toward the hub once.
    garbage: u64,
    /// Bumped to make every connection forward half of its next chunk toward the hub and close.
    tear: u64,
}

/// A running proxy. Dropping it stops accepting; live connections end at the next fault change.
pub struct Proxy {
    addr: String,
    faults: watch::Sender<Faults>,
    /// Bytes forwarded toward the hub and toward the leaf.
    pub up_bytes: Arc<AtomicU64>,
    pub down_bytes: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// The first bytes forwarded either way, for tests that look at what a wire carries.
    seen: Arc<Mutex<Vec<u8>>>,
}

/// How many forwarded bytes [`Proxy::seen`] keeps.
const SEEN_KEPT: usize = 16 << 20;

impl Proxy {
    /// A proxy on `127.0.0.1:0` forwarding to `target`.
    pub async fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (faults, _) = watch::channel(Faults::default());
        let up_bytes = Arc::new(AtomicU64::new(0));
        let down_bytes = Arc::new(AtomicU64::new(0));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let target = target.to_string();
        let task = tokio::spawn({
            let faults = faults.clone();
            let (up, down, conns) = (up_bytes.clone(), down_bytes.clone(), conns.clone());
            let seen = seen.clone();
            async move {
                loop {
                    let Ok((leaf, _)) = listener.accept().await else {
                        return;
                    };
                    if faults.borrow().cut {
                        drop(leaf);
                        continue;
                    }
                    let Ok(hub) = TcpStream::connect(&target).await else {
                        continue;
                    };
                    let _ = leaf.set_nodelay(true);
                    let _ = hub.set_nodelay(true);
                    let (lr, lw) = leaf.into_split();
                    let (hr, hw) = hub.into_split();
                    let a = tokio::spawn(pump(
                        lr,
                        hw,
                        faults.subscribe(),
                        up.clone(),
                        seen.clone(),
                        true,
                    ));
                    let b = tokio::spawn(pump(
                        hr,
                        lw,
                        faults.subscribe(),
                        down.clone(),
                        seen.clone(),
                        false,
                    ));
                    conns.lock().extend([a, b]);
                }
            }
        });
        Proxy {
            addr,
            faults,
            up_bytes,
            down_bytes,
            task,
            conns,
            seen,
        }
    }

    /// The bytes forwarded so far, both ways interleaved (the first 16 MiB).
    pub fn seen(&self) -> Vec<u8> {
        self.seen.lock().clone()
    }

    /// The address the leaf should dial.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Drops every connection and refuses new ones until [`heal`](Self::heal).
    pub fn cut(&self) {
        self.faults.send_modify(|f| f.cut = true);
        for c in self.conns.lock().drain(..) {
            c.abort();
        }
    }

    /// Lets connections through again (and ends a stall, and removes latency).
    pub fn heal(&self) {
        self.faults.send_modify(|f| {
            f.cut = false;
            f.stalled = false;
            f.latency = Duration::ZERO;
        });
    }

    /// Stops forwarding in both directions without closing anything.
    pub fn stall(&self) {
        self.faults.send_modify(|f| f.stalled = true);
    }

    /// Adds `latency` before every forwarded chunk.
    pub fn latency(&self, latency: Duration) {
        self.faults.send_modify(|f| f.latency = latency);
    }

    /// Sends random-looking bytes toward the hub on every open connection.
    pub fn inject_garbage(&self) {
        self.faults.send_modify(|f| f.garbage += 1);
    }

    /// Forwards only half of the next chunk toward the hub, then closes the connection.
    pub fn tear_next_frame(&self) {
        self.faults.send_modify(|f| f.tear += 1);
    }

    pub fn bytes_to_hub(&self) -> u64 {
        self.up_bytes.load(Ordering::Relaxed)
    }

    pub fn bytes_to_leaf(&self) -> u64 {
        self.down_bytes.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        for c in self.conns.lock().drain(..) {
            c.abort();
        }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut faults: watch::Receiver<Faults>,
    counter: Arc<AtomicU64>,
    seen: Arc<Mutex<Vec<u8>>>,
    toward_hub: bool,
) {
    let mut buf = vec![0u8; 64 << 10];
    let start = faults.borrow().clone();
    let (mut garbage_seen, tear_seen) = (start.garbage, start.tear);
    loop {
        // Wait while stalled; stop on a cut.
        loop {
            let f = faults.borrow_and_update().clone();
            if f.cut {
                return;
            }
            if toward_hub && f.garbage > garbage_seen {
                garbage_seen = f.garbage;
                // A length prefix that fits, then bytes that are no message.
                let junk = [0, 0, 0, 8, 0xfe, 0xff, 0x13, 0x37, 0xde, 0xad, 0xbe, 0xef];
                if to.write_all(&junk).await.is_err() {
                    return;
                }
            }
            if !f.stalled {
                break;
            }
            if faults.changed().await.is_err() {
                return;
            }
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
            _ = faults.changed() => continue,
        };
        let f = faults.borrow().clone();
        if !f.latency.is_zero() {
            tokio::time::sleep(f.latency).await;
        }
        if f.stalled {
            // Hold the chunk until the stall ends.
            while faults.borrow().stalled {
                if faults.changed().await.is_err() {
                    return;
                }
            }
        }
        if faults.borrow().cut {
            return;
        }
        if toward_hub && f.tear > tear_seen {
            let _ = to
                .write_all(&buf[..n.div_ceil(2).min(n.saturating_sub(1)).max(1)])
                .await;
            return;
        }
        {
            let mut seen = seen.lock();
            let room = SEEN_KEPT.saturating_sub(seen.len()).min(n);
            seen.extend_from_slice(&buf[..room]);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}
