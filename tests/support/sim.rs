//! A deterministic simulator of a leafcache tree at the level of the link state machines: nodes
//! are in-process [`Node`]s on manual clocks (one shared clock, or with [`Sim::random`] one per
//! node, offset and drifting), links are pairs of [`Link`] state machines joined by in-memory
//! queues of frames (every frame goes through the real codec), and a seeded scheduler decides what
//! happens next: operations, delivery in any interleaving across links, held links, duplicated
//! batches, cuts, heals, clock jumps and restarts — with or without persistence (a crash image
//! of the root, or a lost disk). The same seed replays the same run.

use std::path::PathBuf;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use leafcache::replication::Link;
use leafcache::replication::Message;
use leafcache::replication::codec::{DEFAULT_MAX_FRAME, FrameCodec, decode};
use leafcache::{
    CacheConfig, Caches, Direction, Expiry, Flush, LinkError, ManualClock, Node, NodeId,
};
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
    /// The last batch frame each way was delivered as (to the hub, to the leaf), to duplicate.
    last_batch: [Option<Bytes>; 2],
}

struct SimLink {
    leaf: usize,
    /// The hub it is linked to now.
    hub: usize,
    /// Its hubs in order of preference (one for a node of one hub); empty on a random tree,
    /// where a failover may move the link to any node not under the leaf.
    hubs: Vec<usize>,
    conn: Option<Connection>,
    /// Held: nothing moves on this link while others go on.
    held: bool,
}

/// A node's clock: the shared one, or its own with an offset and a drift.
struct NodeClock {
    clock: ManualClock,
    offset_ms: i64,
    drift_ppm: i64,
}

/// A node's disk, when the run persists.
struct Disk {
    root: PathBuf,
    flush: Flush,
}

/// The tree of a random run — 2 to `max` nodes, each node's hub one of those before it — and
/// the generator that drew it, for the run's other choices.
fn random_tree(seed: u64, max: usize) -> (StdRng, Vec<Option<usize>>) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let n = rng.random_range(2..=max);
    let parents = (0..n)
        .map(|i| (i > 0).then(|| rng.random_range(0..i)))
        .collect();
    (rng, parents)
}

/// Numbers the simulations of this process.
static NEXT_RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The simulated cluster.
pub struct Sim {
    /// The reference clock; with skew, each node's clock follows it with its offset and drift.
    pub clock: ManualClock,
    start_ms: u64,
    clocks: Vec<NodeClock>,
    pub nodes: Vec<Node>,
    links: Vec<SimLink>,
    seed: u64,
    rng: StdRng,
    codec: FrameCodec,
    /// Every step taken, for the failure report.
    pub trace: Vec<String>,
    pub config: CacheConfig,
    timeout: Duration,
    /// Restarts of each node, so each run of a node draws its own randomness.
    generations: Vec<u64>,
    /// Each node's disk, in a persisting run.
    disks: Vec<Option<Disk>>,
    /// A wide run: held links and duplicated batches join the steps.
    wide: bool,
    /// The most changes a batch carries.
    batch_records: usize,
    /// Unique in the process: simulations of one seed run side by side (each test its own), and
    /// their roots must not meet.
    run: u64,
    /// Whether cuts may be failovers (a leaf moving to another hub), and the generator that
    /// decides, apart from the schedule's own so that runs without failovers replay unchanged.
    failovers: Option<StdRng>,
    /// A runtime the persisting nodes are built in (never driven: their op logs are written by
    /// the writes themselves, with `Flush::Always`, or not at all).
    runtime: tokio::runtime::Runtime,
    options: Options,
}

/// What a simulation's nodes run with beyond the defaults.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Anti-entropy on every link at this interval (off by default: the stories are about what
    /// replication does by itself).
    pub anti_entropy: Option<Duration>,
    /// The test-only fault: per mille of merged deltas' parts and fields left out of batches.
    pub fault_permille: u32,
}

impl Drop for Sim {
    fn drop(&mut self) {
        for disk in self.disks.iter().flatten() {
            let _ = std::fs::remove_dir_all(&disk.root);
        }
    }
}

impl Sim {
    /// `parents[i]` is the hub of node `i` (node 0 is the root and has none); one shared clock,
    /// no persistence.
    pub fn new(seed: u64, parents: &[Option<usize>]) -> Sim {
        Sim::with(
            seed,
            parents,
            false,
            false,
            leafcache::replication::BATCH_RECORDS,
        )
    }

    /// A random tree of 2 to `max` nodes (relays included), each node with a clock of its own —
    /// offset up to ±400 ms, drifting up to ±2,000 ppm — and, in a quarter of the runs, a root.
    pub fn random(seed: u64, max: usize) -> Sim {
        Sim::random_with(seed, max, Options::default())
    }

    /// [`random`](Self::random), its nodes run with `options`.
    pub fn random_with(seed: u64, max: usize, options: Options) -> Sim {
        let (mut rng, parents) = random_tree(seed, max);
        let persist = rng.random_bool(0.25);
        Sim::with_options(
            seed,
            &parents,
            (true, persist),
            leafcache::replication::BATCH_RECORDS,
            options,
        )
    }

    /// Leaves of several hubs: a core (n0), two hubs under it (n1, n2), and three leaves whose
    /// hub lists are `[n1, n2]`, `[n2, n1]` and `[n1, n2]`, with one clock each (offset and
    /// drift) and, in a quarter of the runs, roots. A third of the cuts are failovers: the leaf's
    /// link moves to the next hub of its list, a peer it may never have met.
    pub fn multi_hub(seed: u64) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x2_4b5);
        let persist = rng.random_bool(0.25);
        let parents = [None, Some(0), Some(0), Some(1), Some(2), Some(1)];
        let mut sim = Sim::with(
            seed,
            &parents,
            true,
            persist,
            leafcache::replication::BATCH_RECORDS,
        );
        for link in &mut sim.links {
            link.hubs = match link.leaf {
                3 | 5 => vec![1, 2],
                4 => vec![2, 1],
                _ => vec![link.hub],
            };
        }
        sim.trace
            .push("hub lists: n3 [n1, n2], n4 [n2, n1], n5 [n1, n2]".into());
        sim
    }

    /// The nodes under `node` now: those whose chain of hubs reaches it, and itself.
    fn subtree(&self, node: usize) -> Vec<bool> {
        let hub_of = |i: usize| self.links.iter().find(|l| l.leaf == i).map(|l| l.hub);
        (0..self.nodes.len())
            .map(|i| {
                let mut at = Some(i);
                for _ in 0..=self.nodes.len() {
                    match at {
                        Some(a) if a == node => return true,
                        Some(a) => at = hub_of(a),
                        None => return false,
                    }
                }
                false
            })
            .collect()
    }

    /// Moves link `l` to another hub, as a leaf failing over does: the connection drops, and
    /// the next heal links the leaf to the next hub of its list — or, on a random tree, to any
    /// node not under the leaf (the tree stays a tree).
    pub fn failover(&mut self, l: usize) {
        self.cut(l);
        let link = &self.links[l];
        let under = self.subtree(link.leaf);
        let next = if !link.hubs.is_empty() {
            // The next of its list that is not under it now (another leaf's failover may have
            // put it there): a leaf never links below itself.
            let at = link.hubs.iter().position(|&h| h == link.hub).unwrap_or(0);
            (1..link.hubs.len())
                .map(|k| link.hubs[(at + k) % link.hubs.len()])
                .find(|&h| !under[h])
        } else {
            let candidates: Vec<usize> = (0..self.nodes.len())
                .filter(|&n| !under[n] && n != link.hub)
                .collect();
            let rng = self.failovers.as_mut().expect("failovers on");
            (!candidates.is_empty()).then(|| candidates[rng.random_range(0..candidates.len())])
        };
        if let Some(hub) = next {
            let leaf = self.links[l].leaf;
            self.trace.push(format!(
                "failover {l}: n{leaf} from n{} to n{hub}",
                self.links[l].hub
            ));
            self.links[l].hub = hub;
        }
    }

    /// [`random`](Self::random) without persistence, and with batches of 1 to 6 changes, so
    /// that a resync takes many batches and their cuts fall everywhere.
    pub fn random_small_batches(seed: u64, max: usize) -> Sim {
        let (mut rng, parents) = random_tree(seed, max);
        let batch = rng.random_range(1..=6);
        Sim::with(seed, &parents, true, false, batch)
    }

    /// [`new`](Self::new) with at most `batch_records` changes per batch.
    pub fn with_batches(seed: u64, parents: &[Option<usize>], batch_records: usize) -> Sim {
        Sim::with(seed, parents, false, false, batch_records)
    }

    fn with(
        seed: u64,
        parents: &[Option<usize>],
        skew: bool,
        persist: bool,
        batch_records: usize,
    ) -> Sim {
        Sim::with_options(
            seed,
            parents,
            (skew, persist),
            batch_records,
            Options::default(),
        )
    }

    fn with_options(
        seed: u64,
        parents: &[Option<usize>],
        (skew, persist): (bool, bool),
        batch_records: usize,
        options: Options,
    ) -> Sim {
        let start_ms = 1_700_000_000_000;
        let clock = ManualClock::new(start_ms);
        let mut rng = StdRng::seed_from_u64(seed);
        let clocks = (0..parents.len())
            .map(|_| {
                if skew {
                    let offset_ms = rng.random_range(-400..=400);
                    NodeClock {
                        clock: ManualClock::new(start_ms.saturating_add_signed(offset_ms)),
                        offset_ms,
                        drift_ppm: rng.random_range(-2_000..=2_000),
                    }
                } else {
                    NodeClock {
                        clock: clock.clone(),
                        offset_ms: 0,
                        drift_ppm: 0,
                    }
                }
            })
            .collect();
        let links = parents
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                p.map(|hub| SimLink {
                    leaf: i,
                    hub,
                    hubs: Vec::new(),
                    conn: None,
                    held: false,
                })
            })
            .collect();
        let mut sim = Sim {
            clock,
            start_ms,
            clocks,
            nodes: Vec::new(),
            links,
            seed,
            rng,
            codec: FrameCodec::new(DEFAULT_MAX_FRAME),
            trace: vec![format!(
                "seed {seed}, parents {parents:?}, persist {persist}, batches of {batch_records}"
            )],
            config: CacheConfig::new().max_entries(10_000),
            timeout: Duration::from_secs(5),
            generations: vec![0; parents.len()],
            disks: (0..parents.len()).map(|_| None).collect(),
            wide: skew,
            batch_records,
            run: NEXT_RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            failovers: skew.then(|| StdRng::seed_from_u64(seed ^ 0xfa11_0e55)),
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
            options,
        };
        for i in 0..parents.len() {
            if persist {
                sim.disks[i] = Some(sim.new_disk(i));
            }
            let node = sim.build(i);
            sim.nodes.push(node);
        }
        for l in 0..sim.links.len() {
            sim.heal(l);
        }
        sim
    }

    /// An empty root for node `i`, written with `Flush::Always` or never written at all.
    fn new_disk(&mut self, i: usize) -> Disk {
        let root = std::env::temp_dir().join(format!(
            "leafcache-sim-{}-{}-{}-n{i}-g{}",
            std::process::id(),
            self.run,
            self.seed,
            self.generations[i]
        ));
        let _ = std::fs::remove_dir_all(&root);
        let flush = if self.rng.random_bool(0.5) {
            Flush::Always
        } else {
            Flush::Never
        };
        Disk { root, flush }
    }

    fn build(&self, i: usize) -> Node {
        let mut b = Node::builder()
            .name(format!("n{i}"))
            .node_id(NodeId(i as u128 + 1))
            .seed(self.seed.wrapping_mul(31) ^ ((i as u64) << 40) ^ self.generations[i])
            .clock(self.clocks[i].clock.clone())
            .default_cache(self.config.clone())
            .batch_records(self.batch_records)
            .connection_timeout(self.timeout)
            .anti_entropy(self.options.anti_entropy)
            .fault_drop_merged_parts(self.options.fault_permille);
        let _runtime = self.runtime.enter();
        if let Some(disk) = &self.disks[i] {
            b = b.root(&disk.root).snapshot_interval("1h").flush(disk.flush);
        }
        b.build().unwrap()
    }

    /// Moves the reference clock, and every node's own clock with its drift.
    pub fn advance(&mut self, by: Duration) {
        self.clock.advance(by);
        let elapsed = (self.clock.now_ms() - self.start_ms) as i128;
        for c in &self.clocks {
            if c.offset_ms != 0 || c.drift_ppm != 0 {
                let drifted = elapsed * (1_000_000 + c.drift_ppm as i128) / 1_000_000;
                let now = self.start_ms as i128 + c.offset_ms as i128 + drifted;
                c.clock.set(now as u64);
            }
        }
    }

    /// The latest reading of any node's clock: what the convergence check counts as now.
    pub fn now_ms(&self) -> u64 {
        self.clocks
            .iter()
            .map(|c| c.clock.now_ms())
            .max()
            .unwrap_or(0)
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
            last_batch: [None, None],
        });
        link.held = false;
        self.trace.push(format!("heal {l}"));
    }

    /// Drops link `l`'s connection with whatever was in flight.
    pub fn cut(&mut self, l: usize) {
        if self.links[l].conn.take().is_some() {
            self.trace.push(format!("cut {l}"));
        }
    }

    /// Restarts node `i` as a crash would; its links drop. Without persistence it comes back
    /// empty under the same id. With a root it comes back from what the crash left on disk (a
    /// copy of the root taken now: with `Flush::Never`, the op log never written), or, one time in
    /// four, from a lost disk (an empty root).
    pub fn restart(&mut self, i: usize) {
        for l in 0..self.links.len() {
            if self.links[l].leaf == i || self.links[l].hub == i {
                self.cut(l);
            }
        }
        self.generations[i] += 1;
        let how = match self.disks[i].take() {
            None => "without a root",
            Some(old) => {
                let lose = self.rng.random_bool(0.25);
                let mut disk = self.new_disk(i);
                if !lose {
                    copy_dir(&old.root, &disk.root);
                    disk.flush = old.flush;
                }
                let _ = std::fs::remove_dir_all(&old.root);
                self.disks[i] = Some(disk);
                if lose {
                    "from a lost disk"
                } else {
                    "from its crash image"
                }
            }
        };
        self.nodes[i] = self.build(i);
        self.trace.push(format!("restart {i} {how}"));
    }

    /// Moves every frame each end of link `l` has ready onto the wire.
    pub fn transmit(&mut self, l: usize) {
        if self.links[l].held {
            return;
        }
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

    /// One round trip on link `l`: each end puts on the wire what it has ready, the hub's frames
    /// reach the leaf, then the leaf's answers reach the hub. The number of batches that were
    /// on the wire toward the leaf.
    pub fn round_trip(&mut self, l: usize) -> usize {
        self.transmit(l);
        let batches = self.links[l].conn.as_ref().map_or(0, |c| {
            let mut wire = c.to_leaf.wire.clone();
            let mut codec = FrameCodec::new(DEFAULT_MAX_FRAME);
            let mut n = 0;
            while let Ok(Some(frame)) = codec.decode(&mut wire) {
                n += usize::from(matches!(decode(&frame), Ok(Message::Batch { .. })));
            }
            n
        });
        self.deliver(l, false, usize::MAX);
        self.transmit(l);
        self.deliver(l, true, usize::MAX);
        batches
    }

    /// Delivers up to `n` frames in one direction of link `l`. A link error cuts the link; errors
    /// a healthy peer never causes fail the run.
    pub fn deliver(&mut self, l: usize, to_hub: bool, n: usize) {
        if let Some(e) = self.pump(l, to_hub, n) {
            self.link_error(l, e);
        }
    }

    /// Hands up to `n` frames of one direction of link `l` to the receiving end; the error that
    /// ended the link, if any.
    fn pump(&mut self, l: usize, to_hub: bool, n: usize) -> Option<LinkError> {
        let (leaf, hub) = (self.links[l].leaf, self.links[l].hub);
        let c = self.links[l].conn.as_mut()?;
        let (pipe, end, node, direction, last) = if to_hub {
            let node = &self.nodes[hub];
            let last = &mut c.last_batch[0];
            (&mut c.to_hub, &mut c.hub, node, Direction::Downstream, last)
        } else {
            let node = &self.nodes[leaf];
            let last = &mut c.last_batch[1];
            (&mut c.to_leaf, &mut c.leaf, node, Direction::Upstream, last)
        };
        for _ in 0..n {
            let result = match self.codec.decode(&mut pipe.wire) {
                Ok(Some(frame)) => {
                    if matches!(decode(&frame), Ok(Message::Batch { .. })) {
                        *last = Some(frame.clone().freeze());
                    }
                    end.handle(&frame)
                }
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

    /// Hands the last batch delivered on link `l` to its receiver again, as a duplicated frame
    /// would: every change in it must be a no-op the second time.
    pub fn duplicate(&mut self, l: usize, to_hub: bool) {
        let (leaf, hub) = (self.links[l].leaf, self.links[l].hub);
        let Some(c) = self.links[l].conn.as_mut() else {
            return;
        };
        let (end, node, direction, last) = if to_hub {
            let node = &self.nodes[hub];
            (&mut c.hub, node, Direction::Downstream, &c.last_batch[0])
        } else {
            let node = &self.nodes[leaf];
            (&mut c.leaf, node, Direction::Upstream, &c.last_batch[1])
        };
        let Some(frame) = last.clone() else {
            return;
        };
        let applied_before = end.status().changes_applied;
        let result = end.handle(&frame);
        while let Some(event) = end.poll_event() {
            node.hand_on(direction, event);
        }
        let applied = end.status().changes_applied - applied_before;
        self.trace
            .push(format!("duplicate batch on {l} (to hub: {to_hub})"));
        match result {
            Ok(()) => assert_eq!(
                applied,
                0,
                "a duplicated batch applied {applied} changes\n{}",
                self.trace_tail()
            ),
            Err(e) => self.link_error(l, e),
        }
    }

    /// Moves time on by `by` and lets every link's timers run (anti-entropy rounds among them).
    pub fn tick_all(&mut self, by: Duration) {
        self.advance(by);
        for l in 0..self.links.len() {
            self.tick(l);
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
        super::trace_tail(&self.trace)
    }

    /// One random client operation at a random node, on a small key space so writes conflict:
    /// strings most of the time, counters (`c*`) and hashes (`h*`) one time in four.
    pub fn random_op(&mut self, step: usize) {
        let i = self.rng.random_range(0..self.nodes.len());
        let cache = self.nodes[i].default_cache();
        if self.rng.random_bool(0.25) {
            return self.random_merged_op(i, step);
        }
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

    /// One operation on a counter or a hash at node `i`: increments (integer and float), writes
    /// and deletes of the whole key, field writes, deletes and increments, expiries.
    fn random_merged_op(&mut self, i: usize, step: usize) {
        let cache = self.nodes[i].default_cache();
        let ttl = Duration::from_millis(self.rng.random_range(1..400));
        let (op, key) = if self.rng.random_bool(0.5) {
            let key = format!("c{}", self.rng.random_range(0..6));
            let op = match self.rng.random_range(0..100) {
                0..55 => {
                    let by = self.rng.random_range(-3..10);
                    let _ = cache.incr(&key, by);
                    "incr"
                }
                55..62 => {
                    let _ = cache.incr_float(&key, 0.25);
                    "incr-float"
                }
                62..75 => {
                    cache.set(key.clone(), format!("{step}")).unwrap();
                    "set-number"
                }
                75..87 => {
                    cache.delete(&key);
                    "delete"
                }
                87..95 => {
                    cache.set_expiry(&key, Expiry::After(ttl)).unwrap();
                    "expire"
                }
                _ => {
                    cache.set(key.clone(), format!("n{i}s{step}")).unwrap();
                    "set-text"
                }
            };
            (op, key)
        } else {
            let key = format!("h{}", self.rng.random_range(0..4));
            let field = format!("f{}", self.rng.random_range(0..5));
            let op = match self.rng.random_range(0..100) {
                0..45 => {
                    cache
                        .hset(&key, field.clone(), format!("n{i}s{step}"))
                        .unwrap();
                    "hset"
                }
                45..65 => {
                    cache.hdel(&key, [&field]).unwrap();
                    "hdel"
                }
                65..85 => {
                    let _ = cache.hincr(&key, field.clone(), self.rng.random_range(1..5));
                    "hincr"
                }
                85..93 => {
                    cache.delete(&key);
                    "delete"
                }
                _ => {
                    cache.set_expiry(&key, Expiry::After(ttl)).unwrap();
                    "expire"
                }
            };
            (op, format!("{key}.{field}"))
        };
        self.trace.push(format!("node {i} {op} {key}"));
    }

    /// A transaction at a random node, on the pair `x`, `y` that only transactions touch: both
    /// set to one value, both deleted, or both set from a staging key that is deleted in the same
    /// transaction (a rename). Every node must hold the same in `x` as in `y` at every moment.
    pub fn transaction(&mut self, step: usize) {
        let i = self.rng.random_range(0..self.nodes.len());
        let node = self.nodes[i].clone();
        let cache = node.default_cache();
        let value = format!("n{i}s{step}");
        let what = match self.rng.random_range(0..10) {
            0..6 => {
                node.atomically(|| {
                    cache.set("x", value.clone()).unwrap();
                    cache.set("y", value.clone()).unwrap();
                });
                "set"
            }
            6..8 => {
                node.atomically(|| {
                    cache.delete("x");
                    cache.delete("y");
                });
                "delete"
            }
            _ => {
                cache.set("stage", value).unwrap();
                node.atomically(|| {
                    let staged = cache.get("stage").unwrap();
                    cache.set("x", staged.clone()).unwrap();
                    cache.set("y", staged).unwrap();
                    cache.delete("stage");
                });
                "rename"
            }
        };
        self.trace.push(format!("node {i} transaction {what} x y"));
    }

    /// Whether every node holds the same in `x` as in `y` (see [`transaction`](Self::transaction)).
    pub fn check_pairs(&self) -> Result<(), String> {
        for (i, node) in self.nodes.iter().enumerate() {
            let cache = node.default_cache();
            let (x, y) = (cache.peek("x"), cache.peek("y"));
            let (x, y) = (x.map(|e| e.value), y.map(|e| e.value));
            if x != y {
                return Err(format!(
                    "node {i} shows half a transaction: x={x:?} y={y:?}"
                ));
            }
        }
        Ok(())
    }

    /// Runs `steps` steps of transactions, single-key writes of other keys, and every fault but
    /// restarts (a node keeps its groups in memory only), checking after each step that no node
    /// shows half of a transaction.
    pub fn run_transactions(&mut self, steps: usize) {
        for step in 0..steps {
            let roll = self.rng.random_range(0..1000);
            let l = self.rng.random_range(0..self.links.len());
            match roll {
                0..150 => self.transaction(step),
                150..300 => {
                    let i = self.rng.random_range(0..self.nodes.len());
                    let key = format!("k{}", self.rng.random_range(0..8));
                    self.nodes[i].default_cache().set(key.clone(), "v").unwrap();
                    self.trace.push(format!("node {i} set {key}"));
                }
                300..550 => self.transmit(l),
                550..850 => {
                    let to_hub = self.rng.random_bool(0.5);
                    let n = self.rng.random_range(1..4);
                    self.deliver(l, to_hub, n);
                }
                850..920 => {
                    let ms = self.rng.random_range(0..120);
                    self.advance(Duration::from_millis(ms));
                    self.tick(l);
                }
                920..930 => {
                    let to_hub = self.rng.random_bool(0.5);
                    self.duplicate(l, to_hub);
                }
                930..965 => self.cut(l),
                _ => self.heal(l),
            }
            if let Err(why) = self.check_pairs() {
                panic!("step {step}: {why}\n{}", self.trace_tail());
            }
        }
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
                // The fixed-tree schedules keep the steps they had when seeds 8042 and 191016
                // failed, so those seeds still replay the same schedule.
                850..930 if !self.wide || roll < 920 => {
                    let ms = self.rng.random_range(0..120);
                    self.advance(Duration::from_millis(ms));
                    self.tick(l);
                }
                920..925 => {
                    let to_hub = self.rng.random_bool(0.5);
                    self.duplicate(l, to_hub);
                }
                925..930 => {
                    self.links[l].held = !self.links[l].held;
                    self.trace.push(format!("hold {l}: {}", self.links[l].held));
                }
                930..965 if faults => {
                    let fail_over = (self.failovers.as_mut()).is_some_and(|r| r.random_bool(0.3));
                    if fail_over {
                        self.failover(l);
                    } else {
                        self.cut(l);
                    }
                }
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
            self.links[l].held = false;
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

/// Copies the files of a root, as a crash leaves them (a file vanishing meanwhile is skipped).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() && entry.file_name() != "lock" {
            let _ = std::fs::copy(entry.path(), to.join(entry.file_name()));
        }
    }
}
