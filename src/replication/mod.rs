//! Replication between nodes, without I/O: the wire ([`message`], [`codec`]), the per-link
//! protocol state machine ([`Link`]) over the narrow [`Replica`] trait, the link's status, and the
//! events it reports. Moving bytes — sockets, timers, backoff — is the driver's job, one layer up
//! (`net`).
//!
//! A node with a listen address is a hub; a node with a hub address is a leaf; both is a relay.
//! Every change a node applies is sent on every link except the one it came in on; the apply rule
//! (newer version wins) makes duplicates and echoes no-ops. See [`Link`] for why links read from
//! the change log instead of keeping queues.

pub mod codec;
mod digest;
mod handshake;
mod link;
pub mod message;
mod replica;
mod role;
mod slots;
mod status;
mod summary;
mod window;

use hmac::KeyInit;

pub use crate::cache::{Budget, Scan};
pub use digest::{ANTI_ENTROPY_SPLIT, DIGEST_MAX_LOG2, DIGEST_SPLIT};
pub use link::{BATCH_BYTES, BATCH_RECORDS, Link, LinkConfig, LinkEvent};
pub use message::{Message, Refusal, Resume};
pub use replica::{Marks, Replica};
pub use role::Role;
pub use slots::{SYNC_SLOTS, SyncSlots};
pub use status::{Direction, LinkState, LinkStatus, SyncKind, SyncReport};
pub use summary::{MAX_SUMMARIES, NodeSummary, UplinkSummary};
pub use window::{WINDOW, WINDOW_MAX};

pub(crate) type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Why a link ended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// This node refused the peer's handshake (and told it why).
    #[error("this node refused the peer: {0}")]
    Refused(Refusal),
    /// The peer refused this node's handshake.
    #[error("the peer refused this node: {0}")]
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
    /// The TLS handshake failed, or only one end speaks TLS; the text says why.
    #[error("{0}")]
    Tls(String),
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
        matches!(
            self,
            LinkError::Refused(_) | LinkError::RefusedByPeer(_) | LinkError::Tls(_)
        )
    }
}

impl From<std::io::Error> for LinkError {
    /// A socket error; one of kind `PermissionDenied` saying `TLS: …` is the TLS layer's way of
    /// saying the peer refused this node's certificate after the handshake (TLS 1.3 tells a client
    /// so on its first read).
    fn from(e: std::io::Error) -> Self {
        let text = e.to_string();
        if e.kind() == std::io::ErrorKind::PermissionDenied && text.starts_with("TLS: ") {
            LinkError::Tls(text)
        } else {
            LinkError::Io(text)
        }
    }
}

/// The cluster secret: the key of the handshake HMAC. Never sent, never printed.
///
/// ```
/// let secret = leafcache::replication::Secret::new(b"hunter2");
/// assert_eq!(format!("{secret:?}"), "<redacted>");
/// ```
#[derive(Clone, Default)]
pub struct Secret(std::sync::Arc<[u8]>);

impl Secret {
    /// A secret of these bytes (empty: no secret).
    pub fn new(bytes: &[u8]) -> Self {
        Secret(bytes.into())
    }

    pub(crate) fn mac(&self) -> HmacSha256 {
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
