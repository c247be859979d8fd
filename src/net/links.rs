//! The node's link registry: what all its links share — their configuration, the watermarks it
//! holds on its peers, link ids, the published link statuses, randomness, and the shutdown signal
//! and task tracker of everything the node runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use parking_lot::Mutex;
use rand::{Rng, SeedableRng};

use crate::cache::Caches;
use crate::clock::NodeId;
use crate::persist::Journal;
use crate::replication::{
    Direction, LinkConfig, LinkState, LinkStatus, MAX_SUMMARIES, Marks, NodeSummary, Resume, Role,
    UplinkSummary,
};

/// Closed downstream links whose last status a node keeps, so their errors can be read.
pub const CLOSED_KEPT: usize = 16;

/// Where a node's random numbers come from: the operating system, or a seed (the simulator's, so
/// that a run replays).
pub(crate) enum Entropy {
    Os,
    Seeded(Box<Mutex<rand::rngs::StdRng>>),
}

impl Entropy {
    pub fn new(seed: Option<u64>) -> Self {
        match seed {
            None => Entropy::Os,
            Some(s) => Entropy::Seeded(Box::new(Mutex::new(rand::rngs::StdRng::seed_from_u64(s)))),
        }
    }

    /// Fills `out` with random bytes.
    pub fn fill(&self, out: &mut [u8]) {
        match self {
            Entropy::Os => rand::rng().fill(out),
            Entropy::Seeded(rng) => rng.lock().fill(out),
        }
    }

    /// A random factor in `[1 - spread, 1 + spread]`.
    pub fn jitter(&self, spread: f64) -> f64 {
        let r: f64 = match self {
            Entropy::Os => rand::rng().random(),
            Entropy::Seeded(rng) => rng.lock().random(),
        };
        1.0 - spread + 2.0 * spread * r
    }

    /// A random (version 4) UUID: incarnations, node ids drawn at build.
    pub fn uuid(&self) -> uuid::Uuid {
        let mut b = [0u8; 16];
        self.fill(&mut b);
        uuid::Builder::from_random_bytes(b).into_uuid()
    }
}

/// What all links of a node share.
pub(crate) struct LinkRegistry {
    pub config: Arc<LinkConfig>,
    /// Whether the node accepts leaves and has a hub.
    pub accepts: bool,
    pub has_hub: bool,
    next_link: AtomicU32,
    /// The watermarks this node holds on its peers.
    pub marks: Arc<Marks>,
    /// The latest status of every link, by slot (0 is the upstream link).
    statuses: Mutex<BTreeMap<u32, LinkStatus>>,
    /// Where watermarks are persisted, on a node with a root.
    journal: Option<Arc<Journal>>,
    pub entropy: Entropy,
    /// Cancelled when the node shuts down.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Every task the node spawned, for shutdown to wait on.
    pub tasks: tokio_util::task::TaskTracker,
    /// Pub/sub messages for the links to carry: each link sends on those that did not come in
    /// on it.
    pub bus: tokio::sync::broadcast::Sender<Publication>,
    /// Where a message that came in on a link is delivered at this node (the RESP door's
    /// subscribers), once a door is open.
    pub deliver: std::sync::OnceLock<Deliver>,
    /// The node's HTTP door, for its summary.
    pub http: std::sync::OnceLock<String>,
    /// The node's TLS: links are mutual TLS when set.
    pub tls: Option<Arc<super::tls::Tls>>,
    /// What each link's peer last told of the tree beyond it, by slot.
    views: Mutex<BTreeMap<u32, View>>,
    /// This node's own summary and when it was made, reused for a moment by every link.
    own: Mutex<Option<(u64, NodeSummary)>>,
    /// Bumped whenever a link changes state, so that a summary made from the statuses before
    /// is not kept after.
    own_generation: AtomicU64,
    /// The hubs a leaf links to, in order of preference: its dial loop follows a change (see
    /// [`Node::set_hubs`](crate::Node::set_hubs)). Empty on a node without a hub.
    pub hubs: tokio::sync::watch::Sender<Vec<String>>,
}

/// What one link's peer last told this node of the tree beyond it.
#[derive(Clone, Debug)]
struct View {
    nodes: Vec<NodeSummary>,
    /// When it came (this node's clock).
    received_ms: u64,
    /// Whether the link is still up; a view of a lost link is kept to say what is unreachable.
    live: bool,
}

/// The tree as one node sees it: every node it heard of, and the links beyond which it cannot
/// see any more.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClusterView {
    /// The node answering.
    pub node: String,
    /// Every node it knows of: itself first, then those its links told it of.
    pub nodes: Vec<ClusterNode>,
    /// Links of this node that are not up, with the nodes last seen beyond them.
    pub unreachable: Vec<Unreachable>,
}

/// One node of a [`ClusterView`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClusterNode {
    /// What it said of itself, `age_ms` counted up to now.
    #[serde(flatten)]
    pub summary: NodeSummary,
    /// Whether every link on the way to it is up (else the summary is its last known state).
    pub reachable: bool,
    /// The peer whose link it came over (`null` for the node answering).
    pub via: Option<String>,
}

/// A link that is not up, in a [`ClusterView`]: one of the answering node's, or one a node
/// beyond said it lost.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Unreachable {
    /// The node whose link it is: `null` for the node answering.
    pub from: Option<String>,
    /// Upstream or downstream.
    pub direction: Direction,
    /// The peer's name, if it was ever known.
    pub peer: Option<String>,
    /// Its address.
    pub address: String,
    /// Its state.
    pub state: LinkState,
    /// How long it has been down.
    pub down_ms: u64,
    /// Why.
    pub last_error: Option<String>,
    /// The nodes last seen beyond it.
    pub last_known: Vec<String>,
}

/// How long a node's own summary is reused before it is made again, in ms.
const OWN_SUMMARY_MS: u64 = 250;

/// How long what a lost link told is still shown (as unreachable), in ms.
const LOST_SHOWN_MS: u64 = 10 * 60 * 1000;

impl View {
    /// Whether the view is still worth showing at `now`.
    fn shown(&self, now: u64) -> bool {
        self.live || now.saturating_sub(self.received_ms) < LOST_SHOWN_MS
    }
}

/// Delivers a pub/sub message (channel, message) to this node's subscribers.
pub(crate) type Deliver = Arc<dyn Fn(&[u8], &[u8]) + Send + Sync>;

/// A pub/sub message on its way through the tree.
#[derive(Clone, Debug)]
pub(crate) struct Publication {
    /// The link it came in on, or 0 if it was published at this node.
    pub from_link: u32,
    pub channel: bytes::Bytes,
    pub message: bytes::Bytes,
}

/// Messages a link may fall behind by before it skips some: pub/sub is best effort.
const BUS_CAPACITY: usize = 4096;

impl LinkRegistry {
    pub fn new(
        config: LinkConfig,
        accepts: bool,
        has_hub: bool,
        journal: Option<Arc<Journal>>,
        entropy: Entropy,
        tls: Option<Arc<super::tls::Tls>>,
    ) -> Self {
        LinkRegistry {
            config: Arc::new(config),
            accepts,
            has_hub,
            next_link: AtomicU32::new(1),
            marks: Arc::new(Marks::default()),
            statuses: Mutex::new(BTreeMap::new()),
            journal,
            entropy,
            shutdown: tokio_util::sync::CancellationToken::new(),
            tasks: tokio_util::task::TaskTracker::new(),
            bus: tokio::sync::broadcast::Sender::new(BUS_CAPACITY),
            deliver: std::sync::OnceLock::new(),
            http: std::sync::OnceLock::new(),
            tls,
            views: Mutex::new(BTreeMap::new()),
            own: Mutex::new(None),
            own_generation: AtomicU64::new(0),
            hubs: tokio::sync::watch::Sender::new(Vec::new()),
        }
    }

    /// Every link status, brought up to now (see [`LinkStatus::refresh`]).
    pub fn statuses_now(&self, caches: &Caches) -> Vec<LinkStatus> {
        self.slots_now(caches).into_iter().map(|(_, s)| s).collect()
    }

    /// Every link status by slot, brought up to now.
    fn slots_now(&self, caches: &Caches) -> Vec<(u32, LinkStatus)> {
        let core = caches.core();
        let (now, current) = (core.now_ms(), core.current_seq());
        let mut all: Vec<(u32, LinkStatus)> = self
            .statuses
            .lock()
            .iter()
            .map(|(&s, st)| (s, st.clone()))
            .collect();
        for (_, st) in &mut all {
            st.refresh(now, current, |acked| caches.age_after(acked, now));
        }
        all
    }

    /// This node's summary, made at most every [`OWN_SUMMARY_MS`].
    pub fn own_summary(&self, caches: &Caches) -> NodeSummary {
        let now = caches.core().now_ms();
        if let Some((at, s)) = self.own.lock().as_ref()
            && now < at + OWN_SUMMARY_MS
        {
            return s.clone();
        }
        // Made holding no lock: `publish` takes `statuses` then `own`, and this reads
        // `statuses` (holding `own` here deadlocked two links). A link that changes state
        // meanwhile bumps the generation, and the summary made before is not kept.
        let generation = self.own_generation.load(Ordering::Acquire);
        let links = self.statuses_now(caches);
        let up = links.iter().find(|l| l.direction == Direction::Upstream);
        let (mut entries, mut bytes) = (0, 0);
        for c in caches.all() {
            let st = c.stats();
            entries += st.entries;
            bytes += st.bytes;
        }
        let core = caches.core();
        let summary = NodeSummary {
            id: core.id,
            name: core.name.clone(),
            role: self.role(),
            hub: up.and_then(|l| l.peer_id),
            http: self.http.get().cloned(),
            entries,
            bytes,
            seq: core.current_seq(),
            links_up: links.iter().filter(|l| l.state == LinkState::Up).count() as u32,
            upstream: up.map(|l| UplinkSummary {
                state: l.state,
                address: l.address.clone(),
                lag_changes: l.lag_changes,
                lag_ms: l.lag_ms,
                down_ms: l.down_ms,
                changes_in: l.changes_in,
                changes_out: l.changes_out,
                last_error: l.last_error.clone(),
                sync: l.sync.clone(),
            }),
            problems: self
                .journal
                .as_ref()
                .map(|j| j.status().problems())
                .unwrap_or_default(),
            age_ms: 0,
            stale: false,
        }
        .bounded();
        let mut own = self.own.lock();
        if self.own_generation.load(Ordering::Acquire) == generation {
            *own = Some((now, summary.clone()));
        }
        summary
    }

    /// What link `slot`'s peer is told of the tree: this node, then what its other links told
    /// it (ages counted up to `now`; what came over a link that is lost marked stale), each node
    /// once, live views first, at most [`MAX_SUMMARIES`].
    pub fn summaries_for(&self, slot: u32, own: NodeSummary, now: u64) -> Vec<NodeSummary> {
        let mut out = vec![own];
        let mut seen: std::collections::HashSet<NodeId> = out.iter().map(|s| s.id).collect();
        let views = self.views.lock();
        let mut others: Vec<&View> = views
            .iter()
            .filter(|(s, v)| **s != slot && v.shown(now))
            .map(|(_, v)| v)
            .collect();
        others.sort_by_key(|v| !v.live);
        for view in others {
            let held = now.saturating_sub(view.received_ms);
            for n in &view.nodes {
                if out.len() >= MAX_SUMMARIES {
                    return out;
                }
                if seen.insert(n.id) {
                    let mut n = n.clone();
                    n.age_ms = n.age_ms.saturating_add(held);
                    n.stale |= !view.live;
                    out.push(n);
                }
            }
        }
        out
    }

    /// Keeps what link `slot`'s peer told of the tree beyond it; a peer that came back on a new
    /// link replaces its view from the old one.
    pub fn heard(&self, slot: u32, nodes: Vec<NodeSummary>, now: u64) {
        let mut views = self.views.lock();
        if let Some(peer) = nodes.first().map(|n| n.id) {
            views
                .retain(|&s, v| s == slot || v.live || v.nodes.first().map(|n| n.id) != Some(peer));
        }
        views.insert(
            slot,
            View {
                nodes,
                received_ms: now,
                live: true,
            },
        );
    }

    /// Link `slot` ended: what it told is kept, marked unreachable (the latest [`CLOSED_KEPT`]
    /// such views).
    pub fn lost_view(&self, slot: u32) {
        let mut views = self.views.lock();
        if let Some(v) = views.get_mut(&slot) {
            v.live = false;
        }
        let stale: Vec<u32> = views
            .iter()
            .filter(|(_, v)| !v.live)
            .map(|(&s, _)| s)
            .collect();
        for s in stale.iter().take(stale.len().saturating_sub(CLOSED_KEPT)) {
            views.remove(s);
        }
    }

    /// The tree as this node sees it now.
    pub fn cluster(&self, caches: &Caches) -> ClusterView {
        let own = self.own_summary(caches);
        let now = caches.core().now_ms();
        let links = self.slots_now(caches);
        let views = self.views.lock().clone();
        let mut seen: std::collections::HashSet<NodeId> = [own.id].into();
        let mut nodes = vec![ClusterNode {
            summary: own.clone(),
            reachable: true,
            via: None,
        }];
        // Live views first, so that a node seen both ways shows as reachable.
        let mut ordered: Vec<(&u32, &View)> = views.iter().filter(|(_, v)| v.shown(now)).collect();
        ordered.sort_by_key(|(_, v)| !v.live);
        for (slot, view) in ordered {
            let via = links
                .iter()
                .find(|(s, _)| s == slot)
                .and_then(|(_, l)| l.peer_name.clone());
            let held = now.saturating_sub(view.received_ms);
            for n in &view.nodes {
                if seen.insert(n.id) {
                    let mut summary = n.clone();
                    summary.age_ms = summary.age_ms.saturating_add(held);
                    let reachable = view.live && !summary.stale;
                    nodes.push(ClusterNode {
                        summary,
                        reachable,
                        via: via.clone(),
                    });
                }
            }
        }
        // A hub that cannot be reached, and a leaf gone with its part of the tree.
        let mut unreachable: Vec<Unreachable> = links
            .iter()
            .filter(|(_, l)| l.state != LinkState::Up)
            .filter_map(|(slot, l)| {
                let stale = views.get(slot).filter(|v| !v.live);
                if l.direction == Direction::Downstream && stale.is_none() {
                    return None;
                }
                Some(Unreachable {
                    from: None,
                    direction: l.direction,
                    peer: l.peer_name.clone(),
                    address: l.address.clone(),
                    state: l.state,
                    down_ms: l.down_ms,
                    last_error: l.last_error.clone(),
                    last_known: stale
                        .map(|v| v.nodes.iter().map(|n| n.name.clone()).collect())
                        .unwrap_or_default(),
                })
            })
            .collect();
        // And the upstream links nodes beyond say they lost (as last heard: one beyond a lost
        // link of ours is only as it was), so that every node shown unreachable has a lost link
        // listed on its way.
        let lost_beyond: Vec<String> = (nodes.iter())
            .filter(|n| !n.reachable)
            .map(|n| n.summary.name.clone())
            .collect();
        for n in nodes.iter().skip(1) {
            let Some(up) = n
                .summary
                .upstream
                .as_ref()
                .filter(|u| u.state != LinkState::Up)
            else {
                continue;
            };
            let hub = n.summary.hub.and_then(|id| {
                nodes
                    .iter()
                    .find(|m| m.summary.id == id)
                    .map(|m| m.summary.name.clone())
            });
            unreachable.push(Unreachable {
                from: Some(n.summary.name.clone()),
                direction: Direction::Upstream,
                peer: hub,
                address: up.address.clone(),
                state: up.state,
                down_ms: up.down_ms,
                last_error: up.last_error.clone(),
                last_known: lost_beyond.clone(),
            });
        }
        ClusterView {
            node: own.name,
            nodes,
            unreachable,
        }
    }

    /// Delivers a message that came in on link `from_link` here and hands it to the other links.
    pub fn arrived(&self, from_link: u32, channel: bytes::Bytes, message: bytes::Bytes) {
        if let Some(deliver) = self.deliver.get() {
            deliver(&channel, &message);
        }
        let _ = self.bus.send(Publication {
            from_link,
            channel,
            message,
        });
    }

    pub fn role(&self) -> Role {
        Role::of(self.accepts, self.has_hub)
    }

    pub fn next_link_id(&self) -> u32 {
        self.next_link.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh challenge for a link's handshake.
    pub fn challenge(&self) -> [u8; 32] {
        let mut challenge = [0u8; 32];
        self.entropy.fill(&mut challenge);
        challenge
    }

    /// Records a watermark a link reported; on a node with a root, also in the op log, after the
    /// changes it covers (the link applied them before it reported the watermark).
    pub fn remember(&self, peer: NodeId, mark: Resume) {
        self.marks.set(peer, mark);
        if let Some(j) = &self.journal {
            j.record_mark(peer, mark);
        }
    }

    /// Watermarks read back from disk at start.
    pub fn restore_marks(&self, marks: HashMap<NodeId, Resume>) {
        self.marks.extend(marks);
    }

    pub fn publish(&self, slot: u32, status: LinkStatus) {
        let mut statuses = self.statuses.lock();
        if statuses.get(&slot).map(|s| s.state) != Some(status.state) {
            // A link changed state: this node's summary is out of date.
            self.own_generation.fetch_add(1, Ordering::AcqRel);
            *self.own.lock() = None;
        }
        if status.state == LinkState::Up {
            // The peer is back: its closed records are history.
            forget_closed_of(&mut statuses, slot, &status);
        }
        statuses.insert(slot, status);
    }

    /// Keeps a closed downstream link's last status (for its error) among the latest
    /// [`CLOSED_KEPT`] closed ones, one per peer: a peer that reconnected or closed again leaves
    /// one record, not one per attempt.
    pub fn retire(&self, slot: u32, status: LinkStatus) {
        let mut statuses = self.statuses.lock();
        forget_closed_of(&mut statuses, slot, &status);
        statuses.insert(slot, status);
        let closed: Vec<u32> = statuses
            .iter()
            .filter(|(s, st)| **s != 0 && matches!(st.state, LinkState::Down | LinkState::Refused))
            .map(|(&s, _)| s)
            .collect();
        for s in closed.iter().take(closed.len().saturating_sub(CLOSED_KEPT)) {
            statuses.remove(s);
        }
    }
}

/// Removes the closed downstream records of `status`'s peer other than slot `slot`'s.
fn forget_closed_of(
    statuses: &mut std::collections::BTreeMap<u32, LinkStatus>,
    slot: u32,
    status: &LinkStatus,
) {
    let Some(peer) = status.peer_id else {
        return;
    };
    statuses.retain(|&s, st| {
        s == slot
            || s == 0
            || st.peer_id != Some(peer)
            || !matches!(st.state, LinkState::Down | LinkState::Refused)
    });
}
