//! The node's link registry: what all its links share — their configuration, the watermarks it
//! holds on its peers, link ids, the published link statuses, randomness, and the shutdown signal
//! and task tracker of everything the node runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;
use rand::{Rng, SeedableRng};

use crate::clock::NodeId;
use crate::persist::Journal;
use crate::replication::{LinkConfig, LinkState, LinkStatus, Marks, Resume, Role};

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

    pub fn statuses(&self) -> Vec<LinkStatus> {
        self.statuses.lock().values().cloned().collect()
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
