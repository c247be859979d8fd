//! The replication wire: one [`Message`] enum, postcard-encoded, one message per length-delimited
//! frame (see [`codec`](super::codec)).
//!
//! Compatibility rule: [`Message::Hello`] stays variant 0 and [`Hello`] keeps `magic` and
//! `protocol` as its first two fields, so that a node of any version can read who is talking to it
//! and refuse a version it does not speak with a clear [`Refusal::Protocol`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use super::role::Role;
use super::summary::NodeSummary;
use crate::cache::Change;
use crate::clock::NodeId;

/// The first four bytes of every handshake: "this is leafcache".
pub const MAGIC: u32 = 0x1EAF_CA5E;

/// The version of this wire protocol. Peers must speak the same one.
///
/// 2: adds [`Message::Publish`] (pub/sub across the tree). 4: adds [`Message::Status`] (the
/// tree's summaries). 5: adds [`Hello::compression`] and [`Message::Packed`]. 6: adds
/// [`Message::DigestRequest`] and [`Message::Digest`] (resync by difference). 7: the digest in two
/// rounds, coarse then fine where the coarse differs ([`Message::DigestRefine`],
/// [`Message::DigestFine`]). 8: anti-entropy ([`Message::KeysRequest`], [`Message::Keys`]); the
/// digest hashes a string record by its key and version only, and a merged state whole. 9: the
/// digest's record hashes and bucket sums are 64-bit XXH3 (they were CRC-32, whose linearity made
/// sums of structured records collide).
pub const PROTOCOL_VERSION: u16 = 9;

/// [`Hello::compression`]: the sender reads [`Message::Packed`] frames compressed with LZ4.
pub const COMPRESS_LZ4: u8 = 1;

/// Every frame on a link carries one of these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// The first frame each side sends: who it is, and a fresh challenge for the peer to answer.
    Hello(Hello),
    /// The answer to the peer's challenge, and where this side wants the peer's changes from.
    Auth {
        /// HMAC-SHA256 over the peer's challenge and both node ids, keyed by the cluster secret.
        proof: [u8; 32],
        /// The peer's changes this side already applied, if it remembers any.
        resume: Option<Resume>,
    },
    /// The handshake failed on the sending side; the link closes after this frame.
    Reject(Refusal),
    /// Changes the sender applied, and how far they reach.
    Batch {
        /// Every change the sender applied up to this seq of its own has now been sent (changes
        /// that came from the receiver are left out). The receiver remembers it as its watermark.
        upto: u64,
        /// The changes, grouped by cache.
        caches: Vec<CacheChanges>,
        /// The batch holds changes made together (a transaction): the receiver applies it so that
        /// none of its clients sees part of it.
        together: bool,
    },
    /// The receiver applied the sender's changes up to this seq.
    Ack {
        /// The sender's seq.
        upto: u64,
    },
    /// Heartbeat, sent when a link is otherwise idle. Like a batch without changes, it carries the
    /// sender's position so the receiver's watermark moves past changes it did not need.
    Ping {
        /// As in [`Message::Batch`].
        upto: u64,
    },
    /// A leaf's question to its hub on a local miss: do you hold this key?
    Fetch {
        /// Matches the answer to the question.
        id: u64,
        /// The cache's name.
        cache: String,
        /// The key.
        key: Bytes,
    },
    /// The hub's answer to [`Message::Fetch`].
    Fetched {
        /// The question's id.
        id: u64,
        /// The entry as a `Set` change, or `None` if the hub does not hold it.
        change: Option<Change>,
    },
    /// The sender is shutting down cleanly: everything it had to send was sent.
    Bye,
    /// A pub/sub message published at the sender or passed on by it: the receiver delivers it
    /// to its subscribers and passes it on to its other links. Best effort: not acknowledged,
    /// not resent after a reconnect.
    Publish {
        /// The channel.
        channel: Bytes,
        /// The message.
        message: Bytes,
    },
    /// The receiver of a part of a merged value's state it holds nothing of (it dropped the
    /// key) asks for the whole: the sender sends the keys whole again, on every link.
    Want {
        /// The cache's name.
        cache: String,
        /// The keys.
        keys: Vec<Bytes>,
    },
    /// What the sender knows of the tree beyond the receiver: its own summary first, then those
    /// that reached it on its other links. Sent about once a second; at most
    /// [`MAX_SUMMARIES`](super::summary::MAX_SUMMARIES) are kept.
    Status {
        /// The summaries.
        nodes: Vec<NodeSummary>,
    },
    /// Another message, postcard-encoded then compressed with LZ4 (a block, without its size):
    /// sent only to a peer whose hello offered [`COMPRESS_LZ4`], for messages that shrink.
    Packed {
        /// The encoded message's length; at most the frame limit, checked before decompressing.
        raw_len: u32,
        /// The compressed bytes.
        data: Bytes,
    },
    /// The sender has no usable watermark of the receiver and would send it every record: it
    /// asks what the receiver holds first, to send only where they differ.
    DigestRequest {
        /// How many records the sender holds, for the receiver to size the digest.
        records: u64,
        /// How many fine buckets each coarse bucket of the answer holds, as a power of two:
        /// 5 for a resync, 7 for anti-entropy (whose coarse round must be small, and where few
        /// buckets differ).
        split: u8,
    },
    /// The answer to [`Message::DigestRequest`], its first round: for each of `2^log2` coarse
    /// buckets of key hashes, the sum of the hashes of the records the receiver holds there
    /// (little-endian `u32`s). Empty when it holds nothing (the sender then sends everything).
    Digest {
        /// The number of coarse buckets, as a power of two.
        log2: u8,
        /// The number of fine buckets the second round compares, as a power of two (at least
        /// `log2`; each coarse bucket is the `2^(fine - log2)` fine ones that share its prefix).
        fine: u8,
        /// One `u32` per coarse bucket.
        sums: Bytes,
    },
    /// The second round: the coarse buckets whose sums differ, for the receiver to send the fine
    /// sums under them.
    DigestRefine {
        /// The coarse buckets, as a power of two (as in the [`Message::Digest`] answered).
        log2: u8,
        /// The fine buckets, as a power of two.
        fine: u8,
        /// A bitmap of the `2^log2` coarse buckets: bucket `b` is bit `b % 8` of byte `b / 8`.
        buckets: Bytes,
    },
    /// The answer to [`Message::DigestRefine`]: for each coarse bucket set in it, in ascending
    /// order, the `2^(fine - log2)` sums of its fine buckets (little-endian `u32`s).
    DigestFine {
        /// The sums, coarse bucket after coarse bucket.
        sums: Bytes,
    },
    /// Anti-entropy's third round: the fine buckets whose sums still differ, for the receiver to
    /// list what it holds there, key by key.
    KeysRequest {
        /// The fine buckets, as a power of two (as in the digest compared).
        fine: u8,
        /// The buckets, ascending; at most [`MAX_KEY_BUCKETS`].
        buckets: Vec<u32>,
    },
    /// The answer to [`Message::KeysRequest`]: every record the sender holds in those buckets,
    /// as the key's version and the hash of its whole content; at most [`MAX_KEY_SUMS`].
    Keys {
        /// Per cache, its records.
        caches: Vec<(String, Vec<KeySum>)>,
    },
}

impl Message {
    /// The message's name, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Auth { .. } => "auth",
            Message::Reject(_) => "reject",
            Message::Batch { .. } => "batch",
            Message::Ack { .. } => "ack",
            Message::Ping { .. } => "ping",
            Message::Fetch { .. } => "fetch",
            Message::Fetched { .. } => "fetched",
            Message::Bye => "bye",
            Message::Publish { .. } => "publish",
            Message::Status { .. } => "status",
            Message::Packed { .. } => "packed",
            Message::Want { .. } => "want",
            Message::DigestRequest { .. } => "digest request",
            Message::Digest { .. } => "digest",
            Message::DigestRefine { .. } => "digest refinement",
            Message::DigestFine { .. } => "fine digest",
            Message::KeysRequest { .. } => "keys request",
            Message::Keys { .. } => "keys",
        }
    }
}

/// The most buckets one [`Message::KeysRequest`] asks for.
pub const MAX_KEY_BUCKETS: usize = 4_096;

/// The most records one [`Message::Keys`] lists; a round that finds more differing keys
/// repairs these and leaves the rest to the next round.
pub const MAX_KEY_SUMS: usize = 16_384;

/// One record, as anti-entropy compares it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySum {
    /// The key.
    pub key: Bytes,
    /// Its version (a merged state's newest).
    pub version: crate::clock::Version,
    /// The hash the digest gave the record (its whole content for a merged state).
    pub hash: u64,
    /// Whether the sender dropped the key by itself (evicted, expired, too large): a copy of it at
    /// this version elsewhere is no difference.
    pub dropped: bool,
}

/// Who a node is, as it introduces itself on a new link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always [`MAGIC`].
    pub magic: u32,
    /// The sender's [`PROTOCOL_VERSION`].
    pub protocol: u16,
    /// The cluster the sender belongs to; links only form within one cluster.
    pub cluster: String,
    /// The sender's node id.
    pub node: NodeId,
    /// The sender's node name, for logs and status.
    pub name: String,
    /// The sender's role in the tree.
    pub role: Role,
    /// The sender's incarnation: its seqs are only meaningful within it.
    pub incarnation: u128,
    /// Random bytes the peer must prove the secret over.
    pub challenge: [u8; 32],
    /// The sender's connection timeout in ms: each side sends heartbeats often enough for the
    /// shorter of the two.
    pub timeout_ms: u64,
    /// The compressions the sender reads (a bit set: [`COMPRESS_LZ4`]); each side compresses
    /// only what the other reads.
    pub compression: u8,
}

/// Where a resync starts: "send me what you applied after `seq` of your `incarnation`".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The peer incarnation the watermark belongs to.
    pub incarnation: u128,
    /// The peer seq up to which this side applied everything.
    pub seq: u64,
}

/// The changes of one cache in a [`Message::Batch`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheChanges {
    /// The cache's name; a receiver without that cache skips the group.
    pub cache: String,
    /// The changes, in the sender's seq order.
    pub changes: Vec<Change>,
}

/// Why a handshake was refused. Sent in [`Message::Reject`] and reported on both sides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// The first frame was not a leafcache hello.
    #[error("not a leafcache peer (bad magic number or first frame)")]
    NotLeafcache,
    /// The peers speak different protocol versions.
    #[error("protocol version mismatch: ours is {ours}, the peer's is {theirs}")]
    Protocol {
        /// The refusing side's version.
        ours: u16,
        /// The version it was offered.
        theirs: u16,
    },
    /// The peers belong to different clusters.
    #[error("cluster mismatch: the refusing node is in {ours:?}, the other in {theirs:?}")]
    Cluster {
        /// The refusing side's cluster.
        ours: String,
        /// The cluster it was offered.
        theirs: String,
    },
    /// The peer's proof does not match the cluster secret.
    #[error("wrong cluster secret (the two nodes were given different secrets)")]
    Secret,
    /// The node connected to itself.
    #[error("a node cannot link to itself")]
    SelfLink,
    /// A message arrived that the handshake does not allow.
    #[error("protocol violation during the handshake: {0}")]
    Unexpected(String),
}
