//! A WAN in user space (this machine has no netem): a TCP forwarder whose two directions each
//! have a one-way latency, a jitter and a bandwidth cap, and which can be cut and healed.
//!
//! Each direction is a delay line: a reader stamps every chunk with the instant it may leave
//! (now + latency + a jitter drawn uniformly in `0..jitter`, never before the chunk ahead of it,
//! so bytes stay in order as on TCP), a writer sends it then; the cap holds the writer to
//! `bits_per_sec`, so a burst queues as it does behind a slow link.
//! Shared by the tests (`mod support`) and the geo bench (`#[path]`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// One direction of a WAN link.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// One-way delay.
    pub latency: Duration,
    /// Added to the delay of each chunk: uniform in `0..jitter`.
    pub jitter: Duration,
    /// The cap, in bits per second; 0 for none.
    pub bits_per_sec: u64,
}

impl Shape {
    /// `latency_ms` one way, `jitter_ms` of jitter, `mbit` Mbit/s.
    pub fn new(latency_ms: u64, jitter_ms: u64, mbit: u64) -> Shape {
        Shape {
            latency: Duration::from_millis(latency_ms),
            jitter: Duration::from_millis(jitter_ms),
            bits_per_sec: mbit * 1_000_000,
        }
    }
}

/// A running WAN link: dial [`addr`](Self::addr) to reach `target` through it.
pub struct Wan {
    addr: String,
    open: Arc<AtomicBool>,
    /// Bumped by a cut: connections of an older generation stop.
    generation: Arc<AtomicU64>,
    /// Bytes forwarded toward the target and back.
    pub bytes_up: Arc<AtomicU64>,
    pub bytes_down: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Wan {
    /// A link on `127.0.0.1:0` to `target`, shaped `up` toward it and `down` back.
    pub async fn start(target: &str, up: Shape, down: Shape, seed: u64) -> Wan {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let open = Arc::new(AtomicBool::new(true));
        let generation = Arc::new(AtomicU64::new(0));
        let bytes_up = Arc::new(AtomicU64::new(0));
        let bytes_down = Arc::new(AtomicU64::new(0));
        let target = target.to_string();
        let task = tokio::spawn({
            let (open, generation) = (open.clone(), generation.clone());
            let (bu, bd) = (bytes_up.clone(), bytes_down.clone());
            async move {
                let mut n = 0u64;
                loop {
                    let Ok((near, _)) = listener.accept().await else {
                        return;
                    };
                    if !open.load(Ordering::SeqCst) {
                        continue;
                    }
                    let Ok(far) = TcpStream::connect(&target).await else {
                        continue;
                    };
                    let _ = near.set_nodelay(true);
                    let _ = far.set_nodelay(true);
                    let now = generation.load(Ordering::SeqCst);
                    let (nr, nw) = near.into_split();
                    let (fr, fw) = far.into_split();
                    n += 1;
                    let seed = seed.wrapping_mul(1_000_003).wrapping_add(n);
                    for (r, w, shape, count, s) in [
                        (nr, fw, up, bu.clone(), seed),
                        (fr, nw, down, bd.clone(), !seed),
                    ] {
                        tokio::spawn(delay_line(r, w, shape, count, generation.clone(), now, s));
                    }
                }
            }
        });
        Wan {
            addr,
            open,
            generation,
            bytes_up,
            bytes_down,
            task,
        }
    }

    /// The address to dial.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Drops every connection and refuses new ones until [`heal`](Self::heal).
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// A small deterministic generator for the jitter (xorshift64*), so a seeded run replays.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

async fn delay_line(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shape: Shape,
    count: Arc<AtomicU64>,
    generation: Arc<AtomicU64>,
    born: u64,
    seed: u64,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let live = {
        let generation = generation.clone();
        move || generation.load(Ordering::SeqCst) == born
    };
    let reader = tokio::spawn({
        let live = live.clone();
        async move {
            let mut rng = seed | 1;
            let mut last = Instant::now();
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = match from.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if !live() {
                    return;
                }
                let jitter = if shape.jitter.is_zero() {
                    Duration::ZERO
                } else {
                    Duration::from_nanos(next(&mut rng) % shape.jitter.as_nanos() as u64)
                };
                let at = (Instant::now() + shape.latency + jitter).max(last);
                last = at;
                if tx.send((at, buf[..n].to_vec())).is_err() {
                    return;
                }
            }
        }
    });
    // The writer: at each chunk's instant, and no faster than the cap.
    let mut free_at = Instant::now();
    while let Some((at, chunk)) = rx.recv().await {
        let start = at.max(free_at);
        tokio::time::sleep_until(start).await;
        if !live() || to.write_all(&chunk).await.is_err() {
            break;
        }
        count.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if let Some(nanos) =
            (chunk.len() as u64 * 8 * 1_000_000_000).checked_div(shape.bits_per_sec)
        {
            free_at = start + Duration::from_nanos(nanos);
        }
        // A cut ends the connection at once, queued bytes with it.
        if !live() {
            break;
        }
    }
    reader.abort();
}

/// The regions of the `geo` scenario: name, one-way latency to the core in ms, Mbit/s.
pub const REGIONS: [(&str, u64, u64); 3] = [("eu", 40, 100), ("us", 80, 50), ("ap", 150, 10)];

/// One region of the `geo` scenario: its hub reaches the core through `wan`.
pub struct Region {
    pub name: &'static str,
    /// One-way latency to the core, in ms.
    pub latency_ms: u64,
    pub wan: Wan,
    pub hub: leafcache::Node,
    pub leaves: [leafcache::Node; 2],
}

/// The `geo` scenario: a core and the [`REGIONS`], each a hub and two leaves, jitter a tenth of
/// the latency, every link up when it returns. `node(name, listens, hub)` builds each node.
pub async fn geo(
    node: impl Fn(&str, bool, Option<&str>) -> leafcache::Node,
) -> (leafcache::Node, Vec<Region>) {
    let core = node("core", true, None);
    let core_addr = core.local_addr().unwrap().to_string();
    let mut regions = Vec::new();
    for (i, (name, ms, mbit)) in REGIONS.into_iter().enumerate() {
        let shape = Shape::new(ms, ms / 10, mbit);
        let wan = Wan::start(&core_addr, shape, shape, i as u64).await;
        let hub = node(name, true, Some(wan.addr()));
        let at = hub.local_addr().unwrap().to_string();
        let leaves = [
            node(&format!("{name}-1"), false, Some(&at)),
            node(&format!("{name}-2"), false, Some(&at)),
        ];
        regions.push(Region {
            name,
            latency_ms: ms,
            wan,
            hub,
            leaves,
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for r in &regions {
        for n in [&r.hub, &r.leaves[0], &r.leaves[1]] {
            while !n
                .links()
                .first()
                .is_some_and(|l| l.state == leafcache::LinkState::Up)
            {
                assert!(Instant::now() < deadline, "{:?}", n.links());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
    (core, regions)
}
