//! A deterministic simulator that runs the real tokio driver: every node is a full [`Node`] —
//! handshake, heartbeats, `connection_timeout`, reconnect backoff, the close handshake, fetch on
//! miss, acknowledged writes — on a [`MemoryNet`], in one current-thread runtime with paused time.
//! Each node has a clock of its own (offset and drift), and its randomness comes from the seed, so
//! the same seed replays the same run.

use std::time::Duration;

use bytes::Bytes;
use leafcache::clock::RuntimeClock;
use leafcache::net::MemoryNet;
use leafcache::{CacheConfig, Direction, Expiry, LinkState, Loader, Node, NodeId, Version};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;

use super::{contents_at, converged_at};

/// The wall clock every simulated node starts near.
pub const EPOCH_MS: u64 = 1_700_000_000_000;

/// An acknowledged write whose fate is checked once the cluster has settled.
struct Acked {
    node: usize,
    key: Bytes,
    /// Restarts of the writer and of its hub when the write was made.
    generations: (u64, u64),
    result: JoinHandle<Result<Version, leafcache::Error>>,
}

/// The simulated cluster.
pub struct Cluster {
    pub net: MemoryNet,
    pub nodes: Vec<Node>,
    /// `parents[i]`: the hub of node `i` (node 0 is the root).
    pub parents: Vec<Option<usize>>,
    clocks: Vec<RuntimeClock>,
    /// How many times each node was restarted.
    generations: Vec<u64>,
    seed: u64,
    rng: StdRng,
    /// Every step taken, for the failure report.
    pub trace: Vec<String>,
    acked: Vec<Acked>,
    pub timeout: Duration,
}

fn name(i: usize) -> String {
    format!("n{i}")
}

fn address(i: usize) -> String {
    format!("mem:n{i}")
}

impl Cluster {
    /// A cluster of `parents.len()` nodes; with `skew`, each node's clock gets a random offset
    /// (±400 ms) and drift (±2,000 ppm). Must run inside a paused current-thread runtime.
    pub fn new(seed: u64, parents: &[Option<usize>], skew: bool) -> Cluster {
        let mut rng = StdRng::seed_from_u64(seed);
        let clocks = (0..parents.len())
            .map(|_| {
                let clock = RuntimeClock::new(EPOCH_MS);
                if skew {
                    clock
                        .offset_ms(rng.random_range(-400..=400))
                        .drift_ppm(rng.random_range(-2_000..=2_000))
                } else {
                    clock
                }
            })
            .collect();
        let mut cluster = Cluster {
            net: MemoryNet::new(),
            nodes: Vec::new(),
            parents: parents.to_vec(),
            clocks,
            generations: vec![0; parents.len()],
            seed,
            rng,
            trace: vec![format!("seed {seed}, parents {parents:?}")],
            acked: Vec::new(),
            timeout: Duration::from_secs(1),
        };
        cluster.nodes = (0..parents.len()).map(|i| cluster.build(i)).collect();
        cluster
    }

    /// A random tree of 2 to `max` nodes: each node's hub is an earlier node.
    pub fn random_tree(rng: &mut StdRng, max: usize) -> Vec<Option<usize>> {
        let n = rng.random_range(2..=max);
        (0..n)
            .map(|i| (i > 0).then(|| rng.random_range(0..i)))
            .collect()
    }

    fn build(&self, i: usize) -> Node {
        let loader = Loader::from_async(|key: Bytes| async move {
            Ok::<_, std::io::Error>(format!("loaded {}", String::from_utf8_lossy(&key)))
        });
        let mut b = Node::builder()
            .name(name(i))
            .node_id(NodeId(i as u128 + 1))
            .seed(self.seed.wrapping_mul(1_000_003) ^ (i as u64) << 32 ^ self.generations[i])
            .clock(self.clocks[i].clone())
            .transport(self.net.host(&name(i)))
            .default_cache(CacheConfig::new().max_entries(10_000).loader(loader))
            .connection_timeout(self.timeout)
            .fetch_on_miss(Duration::from_millis(200));
        if self.parents.contains(&Some(i)) {
            b = b.local_address(address(i));
        }
        if let Some(hub) = self.parents[i] {
            b = b.remote_address(address(hub));
        }
        b.build().unwrap()
    }

    /// The links, one per non-root node: link `i` joins node `i` to its hub.
    fn links(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.parents
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.map(|hub| (i, hub)))
    }

    pub fn cut(&mut self, i: usize) {
        if let Some(hub) = self.parents[i] {
            self.net.cut(&name(i), &name(hub));
            self.trace.push(format!("cut {i}-{hub}"));
        }
    }

    pub fn heal(&mut self, i: usize) {
        if let Some(hub) = self.parents[i] {
            self.net.heal(&name(i), &name(hub));
            self.trace.push(format!("heal {i}-{hub}"));
        }
    }

    /// Crashes node `i` (its links break, no goodbye) and starts it again without persistence.
    pub async fn restart(&mut self, i: usize) {
        let peers: Vec<usize> = self
            .links()
            .filter(|&(a, b)| a == i || b == i)
            .map(|(a, b)| if a == i { b } else { a })
            .collect();
        for &p in &peers {
            self.net.cut(&name(i), &name(p));
        }
        self.nodes[i].shutdown().await;
        for &p in &peers {
            self.net.heal(&name(i), &name(p));
        }
        self.generations[i] += 1;
        self.nodes[i] = self.build(i);
        self.trace.push(format!("restart {i}"));
    }

    /// One random client operation at a random node, on a small key space so writes conflict.
    pub async fn random_op(&mut self, step: usize) {
        let i = self.rng.random_range(0..self.nodes.len());
        let cache = self.nodes[i].default_cache();
        let key = format!("k{}", self.rng.random_range(0..24));
        let value = format!("n{i}s{step}");
        let op = match self.rng.random_range(0..100) {
            0..45 => {
                cache.set(key.clone(), value).unwrap();
                "set"
            }
            45..55 => {
                let ttl = Duration::from_millis(self.rng.random_range(1..2_000));
                cache.set_with_ttl(key.clone(), value, ttl).unwrap();
                "set+ttl"
            }
            55..70 => {
                cache.delete(&key);
                "delete"
            }
            70..78 => {
                let ttl = Duration::from_millis(self.rng.random_range(1..2_000));
                cache.set_expiry(&key, Expiry::After(ttl)).unwrap();
                "expire"
            }
            78..80 => {
                cache.purge();
                "purge"
            }
            80..90 if self.parents[i].is_some() => {
                let hub = self.parents[i].unwrap();
                let generations = (self.generations[i], self.generations[hub]);
                let (k, c) = (Bytes::from(key.clone()), cache.clone());
                let result = tokio::spawn(async move { c.set_acked(k, value).await });
                self.acked.push(Acked {
                    node: i,
                    key: Bytes::from(key.clone()),
                    generations,
                    result,
                });
                "set_acked"
            }
            90..95 => {
                // A miss asks the hub, then the loader; either way an answer, never an error.
                let got = cache.get_or_load(key.clone()).await;
                assert!(got.is_ok(), "get_or_load {key} at {i}: {got:?}");
                "get_or_load"
            }
            _ => {
                let _ = cache.get(&key);
                "get"
            }
        };
        self.trace.push(format!("node {i} {op} {key}"));
    }

    /// `steps` random steps: operations, time passing, cuts, heals, stalls, delays, restarts.
    pub async fn run_random(&mut self, steps: usize) {
        for step in 0..steps {
            let roll = self.rng.random_range(0..1000);
            let i = self.rng.random_range(1..self.nodes.len());
            match roll {
                0..450 => self.random_op(step).await,
                450..800 => {
                    let ms = self.rng.random_range(0..300);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    self.trace.push(format!("sleep {ms} ms"));
                }
                800..860 => self.cut(i),
                860..930 => self.heal(i),
                930..950 => {
                    let hub = self.parents[i].unwrap();
                    let on = self.rng.random_bool(0.5);
                    self.net.stall(&name(i), &name(hub), on);
                    self.trace.push(format!("stall {i}-{hub} {on}"));
                }
                950..980 => {
                    let hub = self.parents[i].unwrap();
                    let ms = self.rng.random_range(0..400);
                    self.net
                        .delay(&name(i), &name(hub), Duration::from_millis(ms));
                    self.trace.push(format!("delay {i}-{hub} {ms} ms"));
                }
                _ => {
                    let n = self.rng.random_range(0..self.nodes.len());
                    self.restart(n).await;
                }
            }
        }
    }

    /// Heals every link, lets the cluster run until every link is up and all nodes hold the same
    /// contents (or `deadline` of simulated time passes), then checks the acknowledged writes.
    pub async fn settle(&mut self, deadline: Duration) -> Result<(), String> {
        let links: Vec<(usize, usize)> = self.links().collect();
        for &(i, hub) in &links {
            self.net.heal(&name(i), &name(hub));
            self.net.stall(&name(i), &name(hub), false);
            self.net.delay(&name(i), &name(hub), Duration::ZERO);
        }
        self.trace.push("settle".into());
        let start = tokio::time::Instant::now();
        let mut last = String::new();
        while start.elapsed() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            match self.check() {
                Ok(()) => return self.check_acked().await,
                Err(why) => last = why,
            }
        }
        Err(format!("not settled after {deadline:?}: {last}"))
    }

    fn check(&self) -> Result<(), String> {
        for node in &self.nodes {
            for link in node.links() {
                if link.state != LinkState::Up && link.direction == Direction::Upstream {
                    return Err(format!("{}: upstream link {:?}", node.name(), link.state));
                }
                if link.lag_changes > 0 && link.state == LinkState::Up {
                    return Err(format!("{}: lag {}", node.name(), link.lag_changes));
                }
            }
        }
        let nodes: Vec<&Node> = self.nodes.iter().collect();
        // One reading for all: a node whose clock runs ahead may have dropped an entry another
        // still holds, which the checker accepts (same version, dropped).
        let now = self.nodes.iter().map(|n| n.now_ms()).max().unwrap_or(0);
        converged_at(&nodes, now)
    }

    /// Every acknowledged write whose writer and hub kept running is held at the hub, at its
    /// version or a newer one.
    async fn check_acked(&mut self) -> Result<(), String> {
        let now = self.nodes.iter().map(|n| n.now_ms()).max().unwrap_or(0);
        for a in std::mem::take(&mut self.acked) {
            let hub = self.parents[a.node].unwrap();
            let version = match a.result.await.expect("set_acked task") {
                Ok(v) => v,
                Err(_) => continue, // not acknowledged in time: no promise made
            };
            if (self.generations[a.node], self.generations[hub]) != a.generations {
                continue;
            }
            let held = &contents_at(&self.nodes[hub], now)["default"];
            let newer = held.0.get(&a.key).is_some_and(|r| r.version() >= version)
                || held.1.is_some_and(|p| p >= version);
            if !newer {
                return Err(format!(
                    "acknowledged write {:?} at {version:?} from n{} is not at its hub n{hub}: {:?}",
                    a.key,
                    a.node,
                    held.0.get(&a.key)
                ));
            }
        }
        Ok(())
    }

    /// Shuts every node down (gracefully).
    pub async fn shutdown(&self) {
        for node in &self.nodes {
            node.shutdown().await;
        }
    }

    pub fn trace_tail(&self) -> String {
        super::trace_tail(&self.trace)
    }
}

/// Runs `f` in a fresh current-thread runtime with paused time: simulated time passes only when
/// every task waits, and as far as the next timer.
pub fn simulate<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(f)
}
