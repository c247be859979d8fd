//! Replication between nodes: the wire ([`message`], [`codec`]), the per-link protocol state
//! machine ([`Link`], no I/O), the node-wide state links share, and the tokio driver that moves
//! bytes for links over TCP and Unix sockets.
//!
//! A node with a listen address is a hub; a node with a hub address is a leaf; both is a relay.
//! Every change a node applies is sent on every link except the one it came in on; the apply rule
//! (newer version wins) makes duplicates and echoes no-ops. See [`Link`] for why links read from
//! the change log instead of keeping queues.

pub mod codec;
pub(crate) mod driver;
mod link;
pub mod message;
mod status;
pub(crate) mod transport;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hmac::KeyInit;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

pub use link::{BATCH_BYTES, BATCH_RECORDS, Link, WINDOW};
pub use message::{Message, Refusal, Role};
pub use status::{Direction, LinkState, LinkStatus, SyncKind, SyncReport};

use crate::cache::Change;
use crate::clock::NodeId;
use crate::error::Error;
use crate::persist::Journal;
use crate::persist::format::Entry;
use message::Resume;

pub(crate) type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Why a link ended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// This node refused the peer's handshake (and told it why).
    #[error("refused the peer: {0}")]
    Refused(Refusal),
    /// The peer refused this node's handshake.
    #[error("refused by the peer: {0}")]
    RefusedByPeer(Refusal),
    /// A frame's payload is not a valid message.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A frame's length is over the limit; nothing was allocated for it.
    #[error("frame longer than the {limit}-byte limit")]
    FrameTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("connection closed in the middle of a frame ({pending} bytes pending)")]
    TornFrame {
        /// Bytes of the incomplete frame received.
        pending: usize,
    },
    /// A message the protocol does not allow at this point.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The peer was silent for the connection timeout, or did not take our frames within it.
    #[error("peer silent or stuck for {ms} ms")]
    Timeout {
        /// The timeout.
        ms: u64,
    },
    /// The peer closed the link cleanly.
    #[error("closed by the peer")]
    Closed,
    /// The connection ended without a goodbye.
    #[error("connection lost")]
    Eof,
    /// A socket error.
    #[error("i/o: {0}")]
    Io(String),
    /// A message could not be encoded (a bug).
    #[error("encoding failed: {0}")]
    Encode(String),
}

impl LinkError {
    /// Whether the handshake was refused (retrying quickly cannot help).
    pub fn is_refusal(&self) -> bool {
        matches!(self, LinkError::Refused(_) | LinkError::RefusedByPeer(_))
    }
}

impl From<std::io::Error> for LinkError {
    fn from(e: std::io::Error) -> Self {
        LinkError::Io(e.to_string())
    }
}

/// The cluster secret: the key of the handshake HMAC. Never sent, never printed.
#[derive(Clone, Default)]
pub(crate) struct Secret(std::sync::Arc<[u8]>);

impl Secret {
    pub fn new(bytes: &[u8]) -> Self {
        Secret(bytes.into())
    }

    pub fn mac(&self) -> HmacSha256 {
        <HmacSha256 as KeyInit>::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "none"
        } else {
            "<redacted>"
        })
    }
}

/// Closed downstream links whose last status a node keeps, so their errors can be read.
pub const CLOSED_KEPT: usize = 16;

/// What all links of a node share: settings, the watermarks it holds for its peers, link ids, and
/// the published link statuses.
pub(crate) struct Shared {
    pub cluster: String,
    pub secret: Secret,
    pub timeout_ms: u64,
    pub max_frame: usize,
    pub accepts: bool,
    pub has_hub: bool,
    next_link: AtomicU32,
    /// Per peer, the seq of its (incarnation) up to which this node applied its changes: what this
    /// node asks to resume from when the link comes back.
    marks: Mutex<HashMap<NodeId, Resume>>,
    /// The latest status of every link, by slot (0 is the upstream link).
    statuses: Mutex<BTreeMap<u32, LinkStatus>>,
    /// Where watermarks are persisted, on a node with a root.
    journal: Option<std::sync::Arc<Journal>>,
    /// Cancelled when the node shuts down.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Every task the node spawned, for shutdown to wait on.
    pub tasks: tokio_util::task::TaskTracker,
}

impl Shared {
    pub fn new(
        cluster: String,
        secret: Secret,
        timeout: Duration,
        max_frame: usize,
        accepts: bool,
        has_hub: bool,
        journal: Option<std::sync::Arc<Journal>>,
    ) -> Self {
        Shared {
            cluster,
            secret,
            timeout_ms: u64::try_from(timeout.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            max_frame,
            accepts,
            has_hub,
            next_link: AtomicU32::new(1),
            marks: Mutex::new(HashMap::new()),
            statuses: Mutex::new(BTreeMap::new()),
            journal,
            shutdown: tokio_util::sync::CancellationToken::new(),
            tasks: tokio_util::task::TaskTracker::new(),
        }
    }

    pub fn role(&self) -> Role {
        Role::of(self.accepts, self.has_hub)
    }

    pub fn next_link_id(&self) -> u32 {
        self.next_link.fetch_add(1, Ordering::Relaxed)
    }

    pub fn mark(&self, peer: NodeId) -> Option<Resume> {
        self.marks.lock().get(&peer).copied()
    }

    /// Records a watermark; on a node with a root, also in the op log, after the changes it covers
    /// (the link applied them first).
    pub fn remember(&self, peer: NodeId, mark: Resume) {
        self.marks.lock().insert(peer, mark);
        if let Some(j) = &self.journal {
            let entry = Entry::Mark {
                peer,
                incarnation: mark.incarnation,
                seq: mark.seq,
            };
            if j.append(&entry) {
                j.flush();
            }
        }
    }

    /// Every watermark, for a snapshot.
    pub fn marks(&self) -> Vec<(NodeId, Resume)> {
        self.marks.lock().iter().map(|(&p, &m)| (p, m)).collect()
    }

    /// Watermarks read back from disk at start.
    pub fn restore_marks(&self, marks: HashMap<NodeId, Resume>) {
        self.marks.lock().extend(marks);
    }

    pub fn publish(&self, slot: u32, status: LinkStatus) {
        self.statuses.lock().insert(slot, status);
    }

    /// Keeps a closed downstream link's last status (for its error) among the latest
    /// [`CLOSED_KEPT`] closed ones.
    pub fn retire(&self, slot: u32, status: LinkStatus) {
        let mut statuses = self.statuses.lock();
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

/// A question for the hub on a local miss.
pub(crate) struct FetchRequest {
    pub cache: String,
    pub key: bytes::Bytes,
    pub reply: oneshot::Sender<Option<Change>>,
}

/// The node's side of its upstream link that caches use: write acknowledgements and fetches.
pub(crate) struct Upstream {
    /// Whether the node has a hub at all.
    configured: bool,
    /// Our seq the hub acknowledged applying up to.
    acked: watch::Sender<u64>,
    /// Open while the upstream link is up.
    fetch: Mutex<Option<mpsc::Sender<FetchRequest>>>,
    /// How long a miss waits for the hub; `None`: misses do not ask.
    pub fetch_timeout: Option<Duration>,
    /// How long an acknowledged write waits.
    pub ack_timeout: Duration,
}

impl Upstream {
    pub fn new(configured: bool, fetch_timeout: Option<Duration>, ack_timeout: Duration) -> Self {
        Upstream {
            configured,
            acked: watch::Sender::new(0),
            fetch: Mutex::new(None),
            fetch_timeout,
            ack_timeout,
        }
    }

    pub fn acked(&self, upto: u64) {
        self.acked.send_if_modified(|a| {
            let moved = upto > *a;
            *a = (*a).max(upto);
            moved
        });
    }

    /// Waits until the hub has applied this node's changes up to `seq`.
    pub async fn wait_acked(&self, seq: u64) -> Result<(), Error> {
        if !self.configured {
            return Err(Error::NoUpstream);
        }
        let mut rx = self.acked.subscribe();
        match tokio::time::timeout(self.ack_timeout, rx.wait_for(|&a| a >= seq)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Error::NoUpstream),
            Err(_) => Err(Error::Timeout {
                what: "acknowledgement from the hub",
                after: self.ack_timeout,
            }),
        }
    }

    pub fn set_fetcher(&self, tx: Option<mpsc::Sender<FetchRequest>>) {
        *self.fetch.lock() = tx;
    }

    /// Asks the hub for `key` of `cache`; `None` when fetching is off, the link is down, the hub
    /// does not hold the key, or it does not answer in time.
    pub async fn fetch(&self, cache: &str, key: &bytes::Bytes) -> Option<Change> {
        let timeout = self.fetch_timeout?;
        let tx = self.fetch.lock().clone()?;
        let (reply, rx) = oneshot::channel();
        let request = FetchRequest {
            cache: cache.to_string(),
            key: key.clone(),
            reply,
        };
        tokio::time::timeout(timeout, async {
            tx.send(request).await.ok()?;
            rx.await.ok().flatten()
        })
        .await
        .ok()
        .flatten()
    }
}
