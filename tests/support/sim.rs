//! A deterministic simulator of a leafcache tree: nodes are in-process [`Node`]s on one manual
//! clock, links are pairs of [`Link`] state machines joined by in-memory queues of frames (every
//! frame goes through the real codec), and a seeded scheduler decides what happens next. The same
//! seed replays the same run.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use leafcache::replication::Link;
use leafcache::replication::codec::{DEFAULT_MAX_FRAME, FrameCodec};
use leafcache::{CacheConfig, Caches, Direction, Expiry, LinkError, ManualClock, Node, NodeId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::codec::{Decoder, Encoder};

/// One direction of a connection: frames in flight, as bytes on the wire.
#[derive(Default)]
struct Pipe {
    wire: BytesMut,
}

struct Connection {
    /// The leaf's end (upstream) and the hub's end (downstream).
    leaf: Link<Caches>,
    hub: Link<Caches>,
    to_hub: Pipe,
    to_leaf: Pipe,
}

struct SimLink {
    leaf: usize,
    hub: usize,
    conn: Option<Connection>,
}

/// The simulated cluster.
pub struct Sim {
    pub clock: ManualClock,
    pub nodes: Vec<Node>,
    links: Vec<SimLink>,
    rng: StdRng,
    codec: FrameCodec,
    /// Every step taken, for the failure report.
    pub trace: Vec<String>,
    pub config: CacheConfig,
    timeout: Duration,
}

impl Sim {
    /// `parents[i]` is the hub of node `i` (node 0 is the root and has none).
    pub fn new(seed: u64, parents: &[Option<usize>]) -> Sim {
        let clock = ManualClock::new(1_700_000_000_000);
        let config = CacheConfig::new().max_entries(10_000);
        let timeout = Duration::from_secs(5);
        let nodes = (0..parents.len())
            .map(|i| build(i, &clock, &config, timeout))
            .collect();
        let links = parents
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                p.map(|hub| SimLink {
                    leaf: i,
                    hub,
                    conn: None,
                })
            })
            .collect();
        let mut sim = Sim {
            clock,
            nodes,
            links,
            rng: StdRng::seed_from_u64(seed),
            codec: FrameCodec::new(DEFAULT_MAX_FRAME),
            trace: Vec::new(),
            config,
            timeout,
        };
        for l in 0..sim.links.len() {
            sim.heal(l);
        }
        sim
    }

    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    pub fn is_cut(&self, link: usize) -> bool {
        self.links[link].conn.is_none()
    }

    /// Connects link `l` again (a fresh connection: new link state machines both sides).
    pub fn heal(&mut self, l: usize) {
        let link = &mut self.links[l];
        if link.conn.is_some() {
            return;
        }
        let leaf = self.nodes[link.leaf].new_link(Direction::Upstream, "sim");
        let hub = self.nodes[link.hub].new_link(Direction::Downstream, "sim");
        link.conn = Some(Connection {
            leaf,
            hub,
            to_hub: Pipe::default(),
            to_leaf: Pipe::default(),
        });
        self.trace.push(format!("heal {l}"));
    }

    /// Drops link `l`'s connection with whatever was in flight.
    pub fn cut(&mut self, l: usize) {
        if self.links[l].conn.take().is_some() {
            self.trace.push(format!("cut {l}"));
        }
    }

    /// Replaces node `i` by a fresh one with the same id and nothing in it (a restart without
    /// persistence); its links drop.
    pub fn restart(&mut self, i: usize) {
        for l in 0..self.links.len() {
            if self.links[l].leaf == i || self.links[l].hub == i {
                self.cut(l);
            }
        }
        self.nodes[i] = build(i, &self.clock, &self.config, self.timeout);
        self.trace.push(format!("restart {i}"));
    }

    /// Moves every frame each end of link `l` has ready onto the wire.
    fn transmit(&mut self, l: usize) {
        let Some(c) = &mut self.links[l].conn else {
            return;
        };
        while let Some(p) = c.leaf.poll_transmit() {
            self.codec
                .encode(Bytes::from(p), &mut c.to_hub.wire)
                .unwrap();
        }
        while let Some(p) = c.hub.poll_transmit() {
            self.codec
                .encode(Bytes::from(p), &mut c.to_leaf.wire)
                .unwrap();
        }
    }

    /// Delivers up to `n` frames in one direction of link `l`. A link error cuts the link; errors
    /// a healthy peer never causes fail the run.
    fn deliver(&mut self, l: usize, to_hub: bool, n: usize) {
        if let Some(e) = self.pump(l, to_hub, n) {
            self.link_error(l, e);
        }
    }

    /// Hands up to `n` frames of one direction of link `l` to the receiving end; the error that
    /// ended the link, if any.
    fn pump(&mut self, l: usize, to_hub: bool, n: usize) -> Option<LinkError> {
        let (leaf, hub) = (self.links[l].leaf, self.links[l].hub);
        let c = self.links[l].conn.as_mut()?;
        let (pipe, end, node, direction) = if to_hub {
            (
                &mut c.to_hub,
                &mut c.hub,
                &self.nodes[hub],
                Direction::Downstream,
            )
        } else {
            (
                &mut c.to_leaf,
                &mut c.leaf,
                &self.nodes[leaf],
                Direction::Upstream,
            )
        };
        for _ in 0..n {
            let result = match self.codec.decode(&mut pipe.wire) {
                Ok(Some(frame)) => end.handle(&frame),
                Ok(None) => return None,
                Err(e) => Err(e),
            };
            // What the driver does: watermarks and acknowledgements go to the node.
            while let Some(event) = end.poll_event() {
                node.hand_on(direction, event);
            }
            if let Err(e) = result {
                return Some(e);
            }
        }
        None
    }

    fn link_error(&mut self, l: usize, e: LinkError) {
        match e {
            LinkError::Timeout { .. } | LinkError::Closed => {
                self.trace.push(format!("link {l} ended: {e}"));
                self.cut(l);
            }
            other => panic!(
                "link {l} failed with {other} — not a fault the scheduler injects\n{}",
                self.trace_tail()
            ),
        }
    }

    fn tick(&mut self, l: usize) {
        let Some(c) = &mut self.links[l].conn else {
            return;
        };
        let r = c.leaf.tick().and_then(|_| c.hub.tick());
        if let Err(e) = r {
            self.link_error(l, e);
        }
    }

    pub fn trace_tail(&self) -> String {
        let keep = if std::env::var("LEAFCACHE_SIM_SEED").is_ok() {
            usize::MAX
        } else {
            40
        };
        let from = self.trace.len().saturating_sub(keep);
        self.trace[from..].join("\n")
    }

    /// One random client operation at a random node, on a small key space so writes conflict.
    pub fn random_op(&mut self, step: usize) {
        let i = self.rng.random_range(0..self.nodes.len());
        let cache = self.nodes[i].default_cache();
        let key = format!("k{}", self.rng.random_range(0..24));
        let roll = self.rng.random_range(0..100);
        let op = match roll {
            0..50 => {
                cache.set(key.clone(), format!("n{i}s{step}")).unwrap();
                "set"
            }
            50..65 => {
                let ttl = Duration::from_millis(self.rng.random_range(1..400));
                cache
                    .set_with_ttl(key.clone(), format!("n{i}s{step}"), ttl)
                    .unwrap();
                "set+ttl"
            }
            65..85 => {
                cache.delete(&key);
                "delete"
            }
            85..95 => {
                let ttl = Duration::from_millis(self.rng.random_range(1..400));
                cache.set_expiry(&key, Expiry::After(ttl)).unwrap();
                "expire"
            }
            95..97 => {
                cache.purge();
                "purge"
            }
            _ => {
                let _ = cache.get(&key);
                "get"
            }
        };
        self.trace.push(format!("node {i} {op} {key}"));
    }

    /// Runs `steps` random steps with faults (cuts, heals, restarts, clock jumps, reordered
    /// delivery across links).
    pub fn run_random(&mut self, steps: usize, faults: bool) {
        for step in 0..steps {
            let roll = self.rng.random_range(0..1000);
            let l = self.rng.random_range(0..self.links.len());
            match roll {
                0..300 => self.random_op(step),
                300..550 => self.transmit(l),
                550..850 => {
                    let to_hub = self.rng.random_bool(0.5);
                    let n = self.rng.random_range(1..4);
                    self.deliver(l, to_hub, n);
                }
                850..930 => {
                    let ms = self.rng.random_range(0..120);
                    self.clock.advance(Duration::from_millis(ms));
                    self.tick(l);
                }
                930..965 if faults => self.cut(l),
                965..995 if faults => self.heal(l),
                995..1000 if faults => {
                    let i = self.rng.random_range(0..self.nodes.len());
                    self.restart(i);
                }
                _ => self.transmit(l),
            }
        }
    }

    /// Heals every link and delivers until nothing moves. Panics if it does not settle.
    pub fn settle(&mut self) {
        self.settle_except(None);
    }

    /// [`settle`](Self::settle), leaving link `cut` cut.
    pub fn settle_without(&mut self, cut: usize) {
        self.settle_except(Some(cut));
    }

    fn settle_except(&mut self, cut: Option<usize>) {
        for l in 0..self.links.len() {
            if Some(l) != cut {
                self.heal(l);
            }
        }
        for round in 0..10_000 {
            let mut moved = false;
            for l in 0..self.links.len() {
                self.transmit(l);
                let c = self.links[l].conn.as_ref();
                if c.is_some_and(|c| !c.to_hub.wire.is_empty() || !c.to_leaf.wire.is_empty()) {
                    moved = true;
                    self.deliver(l, true, usize::MAX);
                    self.deliver(l, false, usize::MAX);
                }
                if self.links[l].conn.is_none() && Some(l) != cut {
                    // A timeout from the fault phase: reconnect.
                    self.heal(l);
                    moved = true;
                }
            }
            if !moved {
                let all_up = self.links.iter().enumerate().all(|(i, l)| {
                    Some(i) == cut
                        || l.conn
                            .as_ref()
                            .is_some_and(|c| c.leaf.is_up() && c.hub.is_up())
                });
                assert!(all_up, "settled with links not up\n{}", self.trace_tail());
                return;
            }
            assert!(round < 9_999, "did not settle\n{}", self.trace_tail());
        }
    }

    /// The status of link `l`'s ends (leaf, hub), if connected.
    pub fn link_status(&self, l: usize) -> Option<(leafcache::LinkStatus, leafcache::LinkStatus)> {
        self.links[l]
            .conn
            .as_ref()
            .map(|c| (c.leaf.status(), c.hub.status()))
    }

    /// Puts raw bytes on the wire toward the hub of link `l`.
    pub fn inject_to_hub(&mut self, l: usize, bytes: &[u8]) {
        if let Some(c) = &mut self.links[l].conn {
            c.to_hub.wire.extend_from_slice(bytes);
        }
    }

    /// Delivers toward the hub of link `l`, returning the error that ended the link, if any.
    pub fn deliver_to_hub_raw(&mut self, l: usize) -> Option<LinkError> {
        self.pump(l, true, usize::MAX)
    }
}

fn build(i: usize, clock: &ManualClock, config: &CacheConfig, timeout: Duration) -> Node {
    Node::builder()
        .name(format!("n{i}"))
        .node_id(NodeId(i as u128 + 1))
        .clock(clock.clone())
        .default_cache(config.clone())
        .connection_timeout(timeout)
        .build()
        .unwrap()
}
