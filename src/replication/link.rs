//! One link's protocol as a state machine without I/O: frames in ([`Link::handle`]), frames out
//! ([`Link::poll_transmit`]), time passing ([`Link::tick`]). The tokio driver and the test
//! simulator both move bytes for it; every replication decision is made here.
//!
//! What a link sends is read from the node's change log rather than queued: the link keeps a
//! cursor (the node seq up to which the peer has everything it needs) and, whenever it may send,
//! reads the next records after it. So a live stream, a delta resync from a watermark and a full
//! sync from zero are the same loop, a slow peer costs a cursor instead of a growing queue, and a
//! key written a thousand times while the peer was away is sent once.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use hmac::Mac;
use tracing::{info, warn};

use std::sync::Arc;

use super::codec::{decode, encode};
use super::message::{
    COMPRESS_LZ4, CacheChanges, Hello, KeySum, MAGIC, MAX_KEY_BUCKETS, MAX_KEY_SUMS, Message,
    PROTOCOL_VERSION, Refusal, Resume, Role,
};
use super::replica::{Marks, Replica};
use super::status::{Direction, LinkState, LinkStatus, SyncKind, SyncReport};
use super::summary::{MAX_SUMMARIES, NodeSummary};
use super::{HmacSha256, LinkError, Secret};
use crate::cache::{Change, DigestItem};
use crate::clock::{NodeId, Version};

/// Batches sent and not yet acknowledged, at most, when a link comes up. With [`BATCH_BYTES`]
/// this bounds what a link has in flight toward a peer that does not acknowledge, whatever its
/// speed.
pub const WINDOW: usize = 8;
/// The most the window grows to. Once a link has filled its window and still has more to send,
/// the round trip holds it back, not the peer or the network: until it catches up, each batch
/// acknowledged widens the window by one (it doubles per round trip) up to this, so a long link
/// carries what its bandwidth allows. A peer that stops acknowledging never opens it. Sent
/// batches are read from the log, not kept, so a wider window costs the sender no memory; what
/// is in flight sits in the sockets and on the wire.
pub const WINDOW_MAX: usize = 64;
/// Records per batch, at most.
pub const BATCH_RECORDS: usize = 1024;
/// Approximate payload bytes per batch, at most (a single larger record still goes alone).
pub const BATCH_BYTES: usize = 256 << 10;

/// What every link of a node is configured with.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// Links only form within one cluster.
    pub cluster: String,
    /// The key of the handshake proof.
    pub secret: Secret,
    /// A peer silent this long is declared gone; heartbeats go out at a quarter of it.
    pub timeout_ms: u64,
    /// The largest frame sent or accepted.
    pub max_frame: usize,
    /// The most changes one batch carries (a group of changes made together may stretch it).
    pub batch_records: usize,
    /// This node's place in the tree, as told to peers.
    pub role: Role,
    /// Whether to compress large frames (LZ4) for a peer that reads them.
    pub compress: bool,
    /// The node's full syncs and syncs by difference in progress, bounded: every link of the
    /// node shares these.
    pub sync_slots: Arc<SyncSlots>,
    /// How often the side that dialed a link runs an anti-entropy round on it (`None`: never).
    pub anti_entropy_ms: Option<u64>,
    /// Test-only fault: per mille of the parts and fields of merged deltas left out of batches,
    /// to prove that anti-entropy heals what deltas lose. 0 in every real node.
    #[doc(hidden)]
    pub fault_drop_permille: u32,
}

/// How many full syncs and syncs by difference a node sends at once. When 50 leaves reconnect
/// to a restarted hub at once, each one that needs more than a delta waits for a slot (its link
/// up, sending nothing yet) instead of 50 scans of the whole cache running side by side: the CPU
/// and the memory in flight stay those of `max` syncs. Deltas take no slot.
#[derive(Debug)]
pub struct SyncSlots {
    max: usize,
    used: std::sync::atomic::AtomicUsize,
    /// The most in use at once so far, for tests and benches.
    peak: std::sync::atomic::AtomicUsize,
}

/// Full syncs and syncs by difference a node sends at once by default.
pub const SYNC_SLOTS: usize = 4;

impl Default for SyncSlots {
    fn default() -> Self {
        SyncSlots::new(SYNC_SLOTS)
    }
}

impl SyncSlots {
    /// At most `max` at once (at least one).
    pub fn new(max: usize) -> Self {
        SyncSlots {
            max: max.max(1),
            used: std::sync::atomic::AtomicUsize::new(0),
            peak: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn try_take(&self) -> bool {
        use std::sync::atomic::Ordering::AcqRel;
        let taken = self
            .used
            .fetch_update(AcqRel, std::sync::atomic::Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            });
        if let Ok(before) = taken {
            self.peak.fetch_max(before + 1, AcqRel);
        }
        taken.is_ok()
    }

    fn give_back(&self) {
        self.used.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Slots in use now.
    pub fn in_use(&self) -> usize {
        self.used.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The most slots in use at once since the node started.
    pub fn peak(&self) -> usize {
        self.peak.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Messages shorter than this are sent as they are: compressing them saves too little.
const PACK_FROM: usize = 256;

/// What a link reports to its driver, which hands it on: watermarks to persistence and the node's
/// [`Marks`], acknowledgements to the waiting writers, fetch answers to the waiting readers.
/// Watermarks and acknowledgements are coalesced (only the latest is kept), so a driver that
/// drains them after each frame sees every one in order and an undrained link holds no queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// The peer's changes up to `resume.seq` of its incarnation are applied here; reported after
    /// the changes it covers were applied (and recorded).
    Watermark {
        /// The peer.
        peer: NodeId,
        /// Where to resume from.
        resume: Resume,
    },
    /// The peer applied this node's changes up to this seq.
    Acked {
        /// This node's seq.
        upto: u64,
    },
    /// The answer to [`Link::fetch`] `id`.
    Fetched {
        /// The question's id.
        id: u64,
        /// The entry as a `Set`, or `None`.
        change: Option<Change>,
    },
    /// The peer passed on a pub/sub message: deliver it here and pass it on to the other links.
    Published {
        /// The channel.
        channel: Bytes,
        /// The message.
        message: Bytes,
    },
    /// The peer's latest view of the tree beyond this link (its own summary first), bounded.
    Summaries {
        /// The summaries.
        nodes: Vec<NodeSummary>,
    },
}

/// Where the handshake stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Our hello is out; waiting for the peer's.
    AwaitHello,
    /// Our proof is out; waiting for the peer's.
    AwaitAuth,
    /// Authenticated: changes flow both ways.
    Up,
    /// We sent everything and a `Bye`; still taking frames until the peer's `Bye`.
    Closing,
    /// Closed (by a refusal, an error or a `Bye`); nothing more is accepted.
    Closed,
}

/// Who the peer is, from its hello.
#[derive(Clone, Debug)]
struct Peer {
    id: NodeId,
    name: String,
    incarnation: u128,
    challenge: [u8; 32],
}

/// The protocol state of one connection to one peer, over any [`Replica`]. Feed it the peer's
/// frames with [`handle`](Self::handle), send what [`poll_transmit`](Self::poll_transmit) yields,
/// call [`tick`](Self::tick) as time passes, and hand what [`poll_event`](Self::poll_event) reports
/// to whoever needs it. Two links joined by hand:
///
/// ```
/// use leafcache::{Direction, Node};
///
/// let (hub, leaf) = (Node::builder().build()?, Node::builder().build()?);
/// let mut down = hub.new_link(Direction::Downstream, "in-memory");
/// let mut up = leaf.new_link(Direction::Upstream, "in-memory");
/// leaf.default_cache().set("k", "v")?;
/// // Shuttle frames until neither side has anything to say.
/// loop {
///     let mut moved = false;
///     while let Some(frame) = up.poll_transmit() {
///         down.handle(&frame).unwrap();
///         moved = true;
///     }
///     while let Some(frame) = down.poll_transmit() {
///         up.handle(&frame).unwrap();
///         moved = true;
///     }
///     if !moved { break }
/// }
/// assert!(up.is_up() && down.is_up());
/// assert_eq!(hub.default_cache().get("k").unwrap(), "v");
/// # Ok::<(), leafcache::Error>(())
/// ```
pub struct Link<R: Replica> {
    replica: R,
    config: Arc<LinkConfig>,
    /// Where the resume point for the peer is read, once the peer is known.
    marks: Arc<Marks>,
    /// Unique per connection on this node; changes that came in here are tagged with it so they
    /// are never sent back.
    id: u32,
    direction: Direction,
    phase: Phase,
    /// What the peer must prove the secret over.
    challenge: [u8; 32],
    peer: Option<Peer>,
    /// Every change of ours up to this seq that the peer needs has been sent.
    cursor: u64,
    /// The seq up to which the peer gets every part of every merged value (a counter's parts, a
    /// hash's fields): where the last scan that reached the end of the log stopped. Parts changed
    /// after it go with their key's next record; it starts at zero on every link up.
    since: u64,
    /// Every change of the peer's up to this seq of its own has been applied here.
    recv_upto: u64,
    /// Batches sent and not acknowledged: (their `upto`, when sent).
    inflight: VecDeque<(u64, u64)>,
    /// How many batches may be in flight: from [`WINDOW`] up to [`WINDOW_MAX`].
    window: usize,
    /// The window filled since the link last caught up: it, not the peer, holds the link back,
    /// and each acknowledged batch widens it.
    window_filled: bool,
    /// The resync in progress, until the cursor reaches `target`.
    sync: Option<(SyncReport, u64)>,
    /// Control messages waiting to go out ahead of batches.
    outbox: VecDeque<Message>,
    /// Answers to our fetches, for the driver to hand to the waiting callers.
    fetched: VecDeque<(u64, Option<Change>)>,
    /// Pub/sub messages from the peer, for the driver to hand on.
    published: VecDeque<(Bytes, Bytes)>,
    /// The newest watermark not yet reported.
    watermark: Option<(NodeId, Resume)>,
    /// The newest acknowledgement not yet reported.
    acked_event: Option<u64>,
    /// The peer's newest view of the tree, not yet reported.
    summaries: Option<Vec<NodeSummary>>,
    last_recv_ms: u64,
    last_sent_ms: u64,
    /// Heartbeat period: a quarter of the shorter of both sides' connection timeouts.
    ping_every_ms: u64,
    /// Whether large frames to the peer are compressed (we compress, and it reads LZ4).
    packing: bool,
    /// A resync by difference: waiting for the peer's digest, then sending only the records of
    /// the buckets where it differs.
    digest: DigestSync,
    /// Whether this link holds one of the node's sync slots.
    slot: bool,
    /// Where this link's anti-entropy round stands.
    ae: AntiEntropy,
    status: LinkStatus,
}

/// Anti-entropy on one link: the side that dialed compares the two ends' digests (coarse, then
/// fine where the coarse differ, then key by key in the fine buckets that still differ) and has
/// both ends send the whole state of every key that differs; joins do the rest. A safety net:
/// on a healthy tree it finds nothing, and each key it repairs is counted and logged.
#[derive(Debug)]
enum AntiEntropy {
    /// Between rounds (or off: `next_ms` is `u64::MAX`): the next starts at `next_ms`.
    Idle { next_ms: u64 },
    /// The peer was asked for its coarse digest.
    Waiting { started_ms: u64 },
    /// The peer was asked for the fine sums under the coarse buckets set in `differ`.
    Refining {
        started_ms: u64,
        log2: u8,
        fine: u8,
        differ: Vec<u64>,
        ours: Vec<u32>,
    },
    /// The peer was asked for its records in `buckets` (of `2^fine`).
    Keys {
        started_ms: u64,
        fine: u8,
        buckets: Vec<u32>,
    },
}

/// What anti-entropy compares of one record: its version, its digest hash, whether it was
/// dropped by its holder.
type Held = (Version, u32, bool);

/// Where a resync without a usable watermark stands.
#[derive(Debug)]
enum DigestSync {
    /// None asked for, or done.
    Off,
    /// Waiting for one of the node's [`SyncSlots`]; nothing is sent until one is free.
    Queued {
        /// The records this node holds, for the digest request.
        records: u64,
    },
    /// The peer was asked for its digest; nothing is sent until it comes.
    Waiting,
    /// The coarse sums were compared; the peer was asked for the fine sums under the coarse
    /// buckets set in `differ`, to compare with `ours` (this node's fine sums up to `target`).
    Refining {
        log2: u8,
        fine: u8,
        differ: Vec<u64>,
        ours: Vec<u32>,
        target: u64,
    },
    /// Up to `target`, only records in the buckets set in `differ` are sent.
    Filter {
        log2: u8,
        differ: Vec<u64>,
        target: u64,
    },
}

/// How often a sync waiting for a slot looks for one.
const SLOT_RETRY_MS: u64 = 10;

impl<R: Replica> Drop for Link<R> {
    /// A link that ends in the middle of a sync gives its slot back.
    fn drop(&mut self) {
        self.release_slot();
    }
}

/// The most buckets a digest has: 2^20 sums of 4 bytes, 4 MiB.
pub const DIGEST_MAX_LOG2: u8 = 20;
/// The fewest: 2^8.
const DIGEST_MIN_LOG2: u8 = 8;

/// The bucket of a record: a hash of its cache and key (keyless records, purges, share their
/// cache's bucket). CRC-32 because both ends must compute the same value, whatever their build;
/// it is also what the disk format uses.
fn bucket_of(cache: &str, key: Option<&[u8]>, log2: u8) -> usize {
    bucket_in(&key_hasher(cache, key), log2)
}

/// A CRC-32 of a record's cache and key: the start of both its bucket and its hash.
fn key_hasher(cache: &str, key: Option<&[u8]>) -> crc32fast::Hasher {
    let mut h = crc32fast::Hasher::new();
    h.update(cache.as_bytes());
    h.update(&[0xff]);
    if let Some(key) = key {
        h.update(key);
    }
    h
}

/// [`bucket_of`] from the record's [`key_hasher`].
fn bucket_in(h: &crc32fast::Hasher, log2: u8) -> usize {
    let h = h.clone();
    // CRC-32 is linear: keys that differ in a pattern (`key00000`, `key00200`...) get CRCs that
    // differ in a pattern, and their low bits crowd into a few buckets. A multiplication by an
    // odd 64-bit constant (Fibonacci hashing) spreads every bit of it into the high bits taken.
    let mixed = u64::from(h.finalize()).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (mixed >> (64 - u32::from(log2))) as usize
}

/// A record's contribution to its bucket's sum. Two nodes hold the same records in a bucket when
/// the sums agree (but for a 2^-32 chance).
///
/// A string's record (a value, a tombstone, a dropped version) is hashed by its cache, key and
/// version: a version names one write, so a copy evicted or expired at one node and held at
/// another is no difference. A merged state is hashed whole (registers, parts, fields, the TTL
/// register and the expiry), leaving out whether the sender sent it whole: two states under
/// one version may differ, and that is what the digest must see.
fn record_hash(
    cache: &str,
    keyed: &crc32fast::Hasher,
    item: &mut DigestItem,
    scratch: &mut Vec<u8>,
) -> u32 {
    match item {
        DigestItem::Merged(m, _) => {
            m.complete = true;
            let mut h = crc32fast::Hasher::new();
            h.update(cache.as_bytes());
            h.update(&[0xff]);
            scratch.clear();
            if postcard::to_io(&**m, &mut *scratch).is_ok() {
                h.update(scratch);
            }
            h.finalize()
        }
        DigestItem::Version(version, _) | DigestItem::Purge(version) => {
            let mut h = keyed.clone();
            h.update(&version.ts.0.to_le_bytes());
            h.update(&version.node.0.to_le_bytes());
            h.finalize()
        }
    }
}

/// Whether a peer's coarse [`Message::Digest`] says it holds records (`false`: the empty digest
/// of a peer holding nothing).
///
/// # Errors
/// [`LinkError::Protocol`] for a digest this node could not have asked for: a shape it never
/// uses, or not one sum per coarse bucket.
fn holds_records(log2: u8, fine: u8, split: u8, sums: &[u8]) -> Result<bool, LinkError> {
    if log2 == 0 && fine == 0 && sums.is_empty() {
        return Ok(false);
    }
    if !digest_shape_ok(log2, fine, split) || sums.len() != 4 << log2 {
        return Err(LinkError::Protocol(format!(
            "a digest of {} bytes for 2^{log2} buckets (2^{fine} fine)",
            sums.len()
        )));
    }
    Ok(true)
}

/// Which coarse buckets of `2^log2` differ: this node's fine sums `ours`, summed by prefix,
/// against the peer's coarse `sums` (whose length the caller checked). A bitmap, and how many.
fn coarse_differ(ours: &[u32], log2: u8, fine: u8, sums: &[u8]) -> (Vec<u64>, u64) {
    let split = fine - log2;
    let mut differ = vec![0u64; (1usize << log2).div_ceil(64)];
    let mut differing = 0u64;
    for (b, (group, theirs)) in ours.chunks(1 << split).zip(sums_of(sums)).enumerate() {
        let mine = group.iter().fold(0u32, |a, s| a.wrapping_add(*s));
        if mine != theirs {
            differ[b / 64] |= 1 << (b % 64);
            differing += 1;
        }
    }
    (differ, differing)
}

/// A bitmap of `2^log2` buckets as [`Message::DigestRefine`] carries it.
fn bitmap_bytes(differ: &[u64], log2: u8) -> Bytes {
    let mut buckets = vec![0u8; (1usize << log2) / 8];
    for (b, byte) in buckets.iter_mut().enumerate() {
        *byte = (differ[b / 8] >> ((b % 8) * 8)) as u8;
    }
    buckets.into()
}

/// Which fine buckets of `2^fine` differ: under each coarse bucket set in `coarse`, this node's
/// fine sums `ours` against the peer's answer `sums`.
///
/// # Errors
/// [`LinkError::Protocol`] if `sums` is not one sum per fine bucket asked for.
fn fine_differ(
    ours: &[u32],
    log2: u8,
    fine: u8,
    coarse: &[u64],
    sums: &[u8],
) -> Result<Vec<u64>, LinkError> {
    let split = fine - log2;
    let asked: u32 = coarse.iter().map(|w| w.count_ones()).sum();
    if sums.len() != (asked as usize) << split << 2 {
        return Err(LinkError::Protocol(format!(
            "{} bytes of fine sums for {asked} buckets of 2^{split}",
            sums.len()
        )));
    }
    let mut differ = vec![0u64; (1usize << fine).div_ceil(64)];
    let mut theirs = sums_of(sums);
    for c in set_bits(coarse, 1 << log2) {
        for f in c << split..(c + 1) << split {
            if theirs.next() != Some(ours[f]) {
                differ[f / 64] |= 1 << (f % 64);
            }
        }
    }
    Ok(differ)
}

/// The buckets set in a bitmap of `n` bits.
fn set_bits(bits: &[u64], n: usize) -> impl Iterator<Item = usize> + '_ {
    (0..n).filter(move |b| bits[b / 64] & (1 << (b % 64)) != 0)
}

/// How many fine buckets a coarse bucket of a digest holds, as a power of two. The first round
/// sends `2^(fine - 5)` sums, the second 32 for each coarse bucket that differs: for 1M records
/// (2^20 fine buckets) and 1,000 keys changed, 128 KiB and about 125 KiB instead of 4 MiB.
pub const DIGEST_SPLIT: u8 = 5;

/// The split of anti-entropy's digest: its first round, every round on an idle link, sends
/// `2^(fine - 7)` sums (32 KiB for 1M records); the second 128 for each coarse bucket that
/// differs, which on a healthy tree is none.
pub const ANTI_ENTROPY_SPLIT: u8 = 7;

/// The coarse buckets of a digest with `2^fine` fine ones split `2^split` ways: at least 8, a
/// byte of the refinement's bitmap.
fn coarse_log2(fine: u8, split: u8) -> u8 {
    fine.saturating_sub(split).max(3)
}

/// Whether a peer's `(coarse, fine)` pair is one this node could have asked for with `split`.
fn digest_shape_ok(log2: u8, fine: u8, split: u8) -> bool {
    (DIGEST_MIN_LOG2..=DIGEST_MAX_LOG2).contains(&fine) && coarse_log2(fine, split) == log2
}

/// `sums` as little-endian bytes, the wire form of a digest.
fn sums_to_bytes(sums: &[u32]) -> Bytes {
    let mut bytes = Vec::with_capacity(sums.len() * 4);
    for s in sums {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    bytes.into()
}

/// The `u32`s of a digest's wire form (whose length the caller checked is a multiple of 4).
fn sums_of(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    (bytes.chunks_exact(4)).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

/// How many buckets a digest of `records` gets: about one record per fine bucket, within bounds,
/// and small enough to go in half a frame.
fn digest_log2(records: u64, max_frame: usize) -> u8 {
    let wanted = (64 - records.max(1).saturating_sub(1).leading_zeros()) as u8;
    let fits = ((max_frame / 8).max(1).ilog2() as u8).max(DIGEST_MIN_LOG2);
    wanted.clamp(DIGEST_MIN_LOG2, DIGEST_MAX_LOG2.min(fits))
}

impl<R: Replica> Link<R> {
    /// A new link `id` over `replica`, with its hello queued; `challenge` is the random bytes the
    /// peer must prove the secret over, `address` is for status and logs.
    pub fn new(
        replica: R,
        config: Arc<LinkConfig>,
        marks: Arc<Marks>,
        id: u32,
        challenge: [u8; 32],
        direction: Direction,
        address: &str,
    ) -> Self {
        let now = replica.now_ms();
        let hello = Message::Hello(Hello {
            magic: MAGIC,
            protocol: PROTOCOL_VERSION,
            cluster: config.cluster.clone(),
            node: replica.node_id(),
            name: replica.node_name().to_string(),
            role: config.role,
            incarnation: replica.incarnation(),
            challenge,
            timeout_ms: config.timeout_ms,
            compression: if config.compress { COMPRESS_LZ4 } else { 0 },
        });
        let status = LinkStatus::new(id, direction, address);
        let anti_entropy_ms = config.anti_entropy_ms;
        let ping_every_ms = (config.timeout_ms / 4).max(1);
        Link {
            replica,
            config,
            marks,
            id,
            direction,
            phase: Phase::AwaitHello,
            challenge,
            peer: None,
            cursor: 0,
            since: 0,
            recv_upto: 0,
            inflight: VecDeque::new(),
            window: WINDOW,
            window_filled: false,
            sync: None,
            outbox: VecDeque::from([hello]),
            fetched: VecDeque::new(),
            published: VecDeque::new(),
            watermark: None,
            acked_event: None,
            summaries: None,
            last_recv_ms: now,
            last_sent_ms: now,
            ping_every_ms,
            packing: false,
            digest: DigestSync::Off,
            slot: false,
            ae: AntiEntropy::Idle {
                next_ms: match (direction, anti_entropy_ms) {
                    (Direction::Upstream, Some(every)) => now.saturating_add(every),
                    _ => u64::MAX,
                },
            },
            status: LinkStatus {
                state: LinkState::Handshaking,
                ..status
            },
        }
    }

    /// This connection's id on the node.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// What the link runs over.
    pub fn replica(&self) -> &R {
        &self.replica
    }

    /// Which way the link points: toward the hub (upstream) or a leaf (downstream).
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Whether the handshake is done and the link is not closed.
    pub fn is_up(&self) -> bool {
        self.phase == Phase::Up
    }

    /// The link's status, with lag computed at `now`.
    pub fn status(&self) -> LinkStatus {
        let mut st = self.status.clone();
        let now = self.replica.now_ms();
        st.lag_changes = self.replica.current_seq().saturating_sub(self.acked());
        st.lag_ms = self
            .inflight
            .front()
            .map_or(0, |&(_, at)| now.saturating_sub(at));
        st.sync = self.sync.as_ref().map(|(r, _)| r.clone()).or(st.sync);
        st
    }

    /// Where the link stands (cheaper than [`status`](Self::status)).
    pub fn state(&self) -> LinkState {
        self.status.state
    }

    /// Frames received and sent so far: a cheap way to tell that the status changed.
    pub fn frames(&self) -> u64 {
        self.status.frames_in + self.status.frames_out
    }

    /// Grows whenever the link's status does (a frame, or the peer covered further): a cheap way
    /// for a driver to tell that the status is worth publishing again.
    pub fn progress(&self) -> u64 {
        self.frames() + self.acked()
    }

    /// The highest seq of ours the peer acknowledged.
    fn acked(&self) -> u64 {
        self.status.acked
    }

    /// Handles one frame's payload from the peer.
    ///
    /// # Errors
    /// Anything that ends the link: a malformed frame, a refusal (ours — the `Reject` is then
    /// queued — or the peer's), a protocol violation, or the peer's `Bye` ([`LinkError::Closed`]).
    pub fn handle(&mut self, payload: &[u8]) -> Result<(), LinkError> {
        let now = self.replica.now_ms();
        self.last_recv_ms = now;
        self.status.frames_in += 1;
        self.status.bytes_in += payload.len() as u64 + 4;
        let result = match decode(payload) {
            Ok(m) => self.handle_message(m, now),
            Err(e) if self.phase == Phase::AwaitHello => {
                // Not a leafcache hello of a version we can read: say so before closing.
                self.outbox
                    .push_back(Message::Reject(Refusal::NotLeafcache));
                Err(e)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            self.fail(e);
        }
        result
    }

    fn handle_message(&mut self, message: Message, now: u64) -> Result<(), LinkError> {
        let phase = match self.phase {
            Phase::Closing => Phase::Up,
            p => p,
        };
        match (phase, message) {
            (Phase::Closed, _) => Err(LinkError::Closed),
            (Phase::Up, Message::Bye) => {
                if self.phase == Phase::Up {
                    // Answer a clean close with our own, so the peer knows everything it sent
                    // was read; the ping before it moves the peer's watermark past changes
                    // that came from it, so a restarted peer is not sent them back.
                    self.outbox.push_back(Message::Ping { upto: self.cursor });
                    self.outbox.push_back(Message::Bye);
                }
                Err(LinkError::Closed)
            }
            (_, Message::Reject(refusal)) => Err(LinkError::RefusedByPeer(refusal)),
            (Phase::AwaitHello, Message::Hello(hello)) => self.on_hello(hello),
            (Phase::AwaitHello, other) => self.refuse(Refusal::Unexpected(format!(
                "{} before hello",
                name_of(&other)
            ))),
            (Phase::AwaitAuth, Message::Auth { proof, resume }) => self.on_auth(proof, resume, now),
            (Phase::AwaitAuth, other) => self.refuse(Refusal::Unexpected(format!(
                "{} before auth",
                name_of(&other)
            ))),
            (
                Phase::Up,
                Message::Batch {
                    upto,
                    caches,
                    together,
                },
            ) => {
                self.on_batch(upto, caches, together);
                Ok(())
            }
            (Phase::Up, Message::Ack { upto }) => {
                self.on_ack(upto);
                Ok(())
            }
            (Phase::Up, Message::Ping { upto }) => {
                self.advance_recv(upto);
                Ok(())
            }
            (Phase::Up, Message::Fetch { id, cache, key }) => {
                let change = self.replica.peek(&cache, &key);
                self.outbox.push_back(Message::Fetched { id, change });
                Ok(())
            }
            (Phase::Up, Message::Fetched { id, change }) => {
                if let Some(c) = &change
                    && !matches!(c, Change::Set { .. } | Change::Merge(_))
                {
                    return Err(LinkError::Protocol(
                        "a fetch answered with a non-set".into(),
                    ));
                }
                self.fetched.push_back((id, change));
                Ok(())
            }
            (Phase::Up, Message::Publish { channel, message }) => {
                self.published.push_back((channel, message));
                Ok(())
            }
            (Phase::Up, Message::Packed { raw_len, data }) => {
                let message = self.unpack(raw_len, &data)?;
                self.handle_message(message, now)
            }
            (Phase::Up, Message::Status { mut nodes }) => {
                nodes.truncate(MAX_SUMMARIES);
                let nodes = nodes.into_iter().map(NodeSummary::bounded).collect();
                self.summaries = Some(nodes);
                Ok(())
            }
            (Phase::Up, Message::DigestRequest { records, split }) => {
                if !(DIGEST_SPLIT..=ANTI_ENTROPY_SPLIT).contains(&split) {
                    return Err(LinkError::Protocol(format!(
                        "a digest request split {split} ways"
                    )));
                }
                let (own, _) = self.replica.pending(0, self.replica.current_seq());
                let answer = if own == 0 {
                    Message::Digest {
                        log2: 0,
                        fine: 0,
                        sums: Bytes::new(),
                    }
                } else {
                    let fine = digest_log2(records.max(own), self.config.max_frame);
                    let log2 = coarse_log2(fine, split);
                    // A coarse bucket is a prefix of fine ones: the scan at `log2` sums them.
                    let sums = self.digest_sums(log2, self.replica.current_seq());
                    Message::Digest {
                        log2,
                        fine,
                        sums: sums_to_bytes(&sums),
                    }
                };
                self.outbox.push_back(answer);
                Ok(())
            }
            (
                Phase::Up,
                Message::DigestRefine {
                    log2,
                    fine,
                    buckets,
                },
            ) => {
                let answer = self.fine_sums(log2, fine, &buckets)?;
                self.outbox.push_back(Message::DigestFine { sums: answer });
                Ok(())
            }
            (Phase::Up, Message::Digest { log2, fine, sums })
                if !matches!(self.ae, AntiEntropy::Idle { .. }) =>
            {
                self.on_ae_digest(log2, fine, &sums)
            }
            (Phase::Up, Message::Digest { log2, fine, sums }) => self.on_digest(log2, fine, &sums),
            (Phase::Up, Message::DigestFine { sums })
                if matches!(self.ae, AntiEntropy::Refining { .. }) =>
            {
                self.on_ae_fine(&sums)
            }
            (Phase::Up, Message::DigestFine { sums }) => self.on_fine_digest(&sums),
            (Phase::Up, Message::KeysRequest { fine, buckets }) => {
                let answer = self.key_sums(fine, &buckets)?;
                self.outbox.push_back(Message::Keys { caches: answer });
                Ok(())
            }
            (Phase::Up, Message::Keys { caches }) => self.on_keys(caches),
            (Phase::Up, Message::Want { cache, keys }) => {
                for key in keys.iter().take(MAX_WANTED) {
                    self.replica.resend(&cache, key);
                }
                Ok(())
            }
            (_, Message::Bye) => Err(LinkError::Closed),
            (Phase::Closing, _) => unreachable!("closing is handled as up"),
            (Phase::Up, other @ (Message::Hello(_) | Message::Auth { .. })) => Err(
                LinkError::Protocol(format!("{} after the handshake", name_of(&other))),
            ),
        }
    }

    /// A sync waiting for a slot starts if one is free: its digest request goes out.
    fn start_sync_if_free(&mut self) {
        if let DigestSync::Queued { records } = self.digest
            && self.config.sync_slots.try_take()
        {
            self.slot = true;
            self.outbox.push_back(Message::DigestRequest {
                records,
                split: DIGEST_SPLIT,
            });
            self.digest = DigestSync::Waiting;
        }
    }

    /// Gives the sync slot back, if this link holds one.
    fn release_slot(&mut self) {
        if std::mem::take(&mut self.slot) {
            self.config.sync_slots.give_back();
        }
    }

    /// Per bucket of `2^log2`, the sum of the hashes of this node's records up to `upto` (every
    /// record a full sync would send, read the same way).
    fn digest_sums(&self, log2: u8, upto: u64) -> Vec<u32> {
        let mut sums = vec![0u32; 1 << log2];
        self.digest_scan(log2, upto, |b, h| sums[b] = sums[b].wrapping_add(h));
        sums
    }

    /// The answer to a [`Message::DigestRefine`]: the fine sums under the coarse buckets set in
    /// `buckets`, coarse bucket after coarse bucket.
    fn fine_sums(&self, log2: u8, fine: u8, buckets: &[u8]) -> Result<Bytes, LinkError> {
        let asked_for = |split| digest_shape_ok(log2, fine, split);
        if !(DIGEST_SPLIT..=ANTI_ENTROPY_SPLIT).any(asked_for)
            || buckets.len() != (1usize << log2) / 8
        {
            return Err(LinkError::Protocol(format!(
                "a digest refinement of 2^{log2} into 2^{fine} buckets in {} bytes",
                buckets.len()
            )));
        }
        let split = fine - log2;
        // Where each coarse bucket's fine sums start in the answer, or none if it is not asked.
        let mut start = vec![u32::MAX; 1 << log2];
        let mut asked = 0u32;
        for (b, slot) in start.iter_mut().enumerate() {
            if buckets[b / 8] & (1 << (b % 8)) != 0 {
                *slot = asked << split;
                asked += 1;
            }
        }
        let mut sums = vec![0u32; (asked as usize) << split];
        let low = (1usize << split) - 1;
        self.digest_scan(fine, self.replica.current_seq(), |f, h| {
            let at = start[f >> split];
            if at != u32::MAX {
                let i = at as usize | (f & low);
                sums[i] = sums[i].wrapping_add(h);
            }
        });
        Ok(sums_to_bytes(&sums))
    }

    /// Calls `add(bucket, hash)` for each of this node's records up to `upto`, with its bucket of
    /// `2^log2`.
    fn digest_scan(&self, log2: u8, upto: u64, mut add: impl FnMut(usize, u32)) {
        let mut scratch = Vec::new();
        self.replica
            .digest_records(upto, &mut |cache, key, mut item| {
                let keyed = key_hasher(cache, key);
                add(
                    bucket_in(&keyed, log2),
                    record_hash(cache, &keyed, &mut item, &mut scratch),
                );
            });
    }

    /// This node's records in the fine buckets `buckets` (ascending) of `2^fine`, with what
    /// anti-entropy compares of each, at most [`MAX_KEY_SUMS`].
    fn records_in(&self, fine: u8, buckets: &[u32]) -> Vec<(String, Bytes, Held)> {
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        let upto = self.replica.current_seq();
        self.replica
            .digest_records(upto, &mut |cache, key, mut item| {
                let Some(key) = key else {
                    return;
                };
                let keyed = key_hasher(cache, Some(key));
                let b = bucket_in(&keyed, fine) as u32;
                if out.len() >= MAX_KEY_SUMS || buckets.binary_search(&b).is_err() {
                    return;
                }
                let (version, dropped) = match &item {
                    DigestItem::Version(v, dropped) => (*v, *dropped),
                    DigestItem::Merged(m, expired) => (m.version, *expired),
                    DigestItem::Purge(v) => (*v, false),
                };
                let hash = record_hash(cache, &keyed, &mut item, &mut scratch);
                out.push((
                    cache.to_string(),
                    Bytes::copy_from_slice(key),
                    (version, hash, dropped),
                ));
            });
        out
    }

    /// Starts an anti-entropy round if one is due, this link is caught up and a sync slot is free.
    fn start_anti_entropy(&mut self, now: u64) {
        let AntiEntropy::Idle { next_ms } = self.ae else {
            return;
        };
        if now < next_ms
            || self.phase != Phase::Up
            || self.sync.is_some()
            || !matches!(self.digest, DigestSync::Off)
            || !self.inflight.is_empty()
            || self.cursor < self.replica.current_seq()
        {
            return;
        }
        if !self.config.sync_slots.try_take() {
            self.ae = AntiEntropy::Idle {
                next_ms: now + SLOT_RETRY_MS,
            };
            return;
        }
        self.slot = true;
        let (records, _) = self.replica.pending(0, self.replica.current_seq());
        self.outbox.push_back(Message::DigestRequest {
            records,
            split: ANTI_ENTROPY_SPLIT,
        });
        self.ae = AntiEntropy::Waiting { started_ms: now };
    }

    /// Ends the round: the slot goes back, the next round is due an interval from now.
    fn end_anti_entropy(&mut self) {
        self.release_slot();
        self.status.antientropy_rounds += 1;
        let every = self.config.anti_entropy_ms.unwrap_or(u64::MAX);
        self.ae = AntiEntropy::Idle {
            next_ms: self.replica.now_ms().saturating_add(every),
        };
    }

    /// Anti-entropy's coarse round answered: compare, and ask for the fine sums where it differs.
    fn on_ae_digest(&mut self, log2: u8, fine: u8, sums: &[u8]) -> Result<(), LinkError> {
        let AntiEntropy::Waiting { started_ms } = self.ae else {
            return Err(LinkError::Protocol("a digest nobody asked for".into()));
        };
        if !holds_records(log2, fine, ANTI_ENTROPY_SPLIT, sums)? {
            // The peer holds nothing: nothing it holds differs (what it lacks is not ours to know).
            self.end_anti_entropy();
            return Ok(());
        }
        let ours = self.digest_sums(fine, self.replica.current_seq());
        let (differ, differing) = coarse_differ(&ours, log2, fine, sums);
        if differing == 0 {
            self.end_anti_entropy();
            return Ok(());
        }
        self.outbox.push_back(Message::DigestRefine {
            log2,
            fine,
            buckets: bitmap_bytes(&differ, log2),
        });
        self.ae = AntiEntropy::Refining {
            started_ms,
            log2,
            fine,
            differ,
            ours,
        };
        Ok(())
    }

    /// Anti-entropy's fine round answered: ask for the records of the fine buckets that differ.
    fn on_ae_fine(&mut self, sums: &[u8]) -> Result<(), LinkError> {
        let AntiEntropy::Refining {
            started_ms,
            log2,
            fine,
            differ,
            ours,
        } = std::mem::replace(&mut self.ae, AntiEntropy::Idle { next_ms: u64::MAX })
        else {
            return Err(LinkError::Protocol("fine sums nobody asked for".into()));
        };
        let bits = fine_differ(&ours, log2, fine, &differ, sums)?;
        let mut buckets: Vec<u32> = set_bits(&bits, 1 << fine).map(|b| b as u32).collect();
        buckets.truncate(MAX_KEY_BUCKETS);
        if buckets.is_empty() {
            self.end_anti_entropy();
            return Ok(());
        }
        self.outbox.push_back(Message::KeysRequest {
            fine,
            buckets: buckets.clone(),
        });
        self.ae = AntiEntropy::Keys {
            started_ms,
            fine,
            buckets,
        };
        Ok(())
    }

    /// The answer to a [`Message::KeysRequest`].
    fn key_sums(&self, fine: u8, buckets: &[u32]) -> Result<Vec<(String, Vec<KeySum>)>, LinkError> {
        if !(DIGEST_MIN_LOG2..=DIGEST_MAX_LOG2).contains(&fine)
            || buckets.len() > MAX_KEY_BUCKETS
            || buckets.windows(2).any(|w| w[0] >= w[1])
            || buckets.last().is_some_and(|&b| b >> fine != 0)
        {
            return Err(LinkError::Protocol(format!(
                "a request for the keys of {} buckets of 2^{fine}",
                buckets.len()
            )));
        }
        let mut caches: Vec<(String, Vec<KeySum>)> = Vec::new();
        for (cache, key, (version, hash, dropped)) in self.records_in(fine, buckets) {
            let sum = KeySum {
                key,
                version,
                hash,
                dropped,
            };
            match caches.iter_mut().find(|(c, _)| *c == cache) {
                Some((_, sums)) => sums.push(sum),
                None => caches.push((cache, vec![sum])),
            }
        }
        Ok(caches)
    }

    /// Anti-entropy's last round: the peer's records where the digests differ, key by key. Each
    /// key both ends hold differently — another version, or the same version with another
    /// content (a string dropped at one end hashes as its live copy does, a merged state does
    /// not) — is sent whole by both ends (ours on every link, the peer's asked for with `Want`),
    /// and joins settle it. A key only one end holds is no difference: the other dropped and
    /// forgot it, or never needed it. Counted as repairs: the keys not merely dropped at one end
    /// at the version the other holds, whose versions are older than a connection timeout before
    /// the round (a newer one may still be on its way).
    fn on_keys(&mut self, theirs: Vec<(String, Vec<KeySum>)>) -> Result<(), LinkError> {
        let AntiEntropy::Keys {
            started_ms,
            fine,
            buckets,
        } = std::mem::replace(&mut self.ae, AntiEntropy::Idle { next_ms: u64::MAX })
        else {
            return Err(LinkError::Protocol("keys nobody asked for".into()));
        };
        if theirs.iter().map(|(_, k)| k.len()).sum::<usize>() > MAX_KEY_SUMS {
            return Err(LinkError::Protocol("more keys than a round lists".into()));
        }
        let ours: HashMap<(String, Bytes), Held> = self
            .records_in(fine, &buckets)
            .into_iter()
            .map(|(c, k, held)| ((c, k), held))
            .collect();
        // A change made within a connection timeout of the round may still be on its way: it is
        // sent again, but not counted as a repair.
        let settled =
            |v: Version| v.ts.physical_ms().saturating_add(self.config.timeout_ms) < started_ms;
        for (cache, sums) in theirs {
            let mut wanted = Vec::new();
            for sum in sums {
                let Some(&(version, hash, dropped)) = ours.get(&(cache.clone(), sum.key.clone()))
                else {
                    continue;
                };
                if version == sum.version && hash == sum.hash {
                    continue;
                }
                // A merged state one end dropped by itself (evicted, expired) at the version the
                // other holds live is sent back whole: states under one version may differ, and
                // the dropped copy must not stand between two that do. Not counted: eviction is
                // no fault. Any other difference is one replication left behind.
                let evicted = version == sum.version && (dropped || sum.dropped);
                if !evicted && settled(version) && settled(sum.version) {
                    self.status.antientropy_repairs += 1;
                    self.replica
                        .repaired(&cache, &sum.key, version, sum.version);
                }
                self.replica.resend(&cache, &sum.key);
                wanted.push(sum.key);
            }
            for keys in wanted.chunks(MAX_WANTED) {
                self.outbox.push_back(Message::Want {
                    cache: cache.clone(),
                    keys: keys.to_vec(),
                });
            }
        }
        self.end_anti_entropy();
        Ok(())
    }

    /// The peer's coarse digest: compare it with this node's. Where no coarse bucket differs,
    /// nothing up to the target is sent; else the peer is asked for the fine sums under those
    /// that differ. A peer that holds nothing gets everything.
    fn on_digest(&mut self, log2: u8, fine: u8, sums: &[u8]) -> Result<(), LinkError> {
        if !matches!(self.digest, DigestSync::Waiting) {
            return Err(LinkError::Protocol("a digest nobody asked for".into()));
        }
        let target = self.sync.as_ref().map_or(0, |(_, t)| *t);
        if !holds_records(log2, fine, DIGEST_SPLIT, sums)? {
            self.digest = DigestSync::Off;
            self.status.full_syncs += 1;
            return Ok(());
        }
        self.status.digest_syncs += 1;
        if let Some((report, _)) = &mut self.sync {
            report.kind = SyncKind::Digest;
        }
        // This node's fine sums, read once: the coarse ones are their sums by prefix.
        let ours = self.digest_sums(fine, target);
        let (differ, differing) = coarse_differ(&ours, log2, fine, sums);
        info!(
            link = self.id,
            buckets = 1u64 << log2,
            differing,
            "coarse digests compared"
        );
        if differing == 0 {
            self.digest = DigestSync::Filter {
                log2,
                differ,
                target,
            };
            return Ok(());
        }
        self.outbox.push_back(Message::DigestRefine {
            log2,
            fine,
            buckets: bitmap_bytes(&differ, log2),
        });
        self.digest = DigestSync::Refining {
            log2,
            fine,
            differ,
            ours,
            target,
        };
        Ok(())
    }

    /// The peer's fine sums under the coarse buckets that differ: only the records of the fine
    /// buckets that differ are sent.
    fn on_fine_digest(&mut self, sums: &[u8]) -> Result<(), LinkError> {
        let DigestSync::Refining {
            log2,
            fine,
            differ: coarse,
            ours,
            target,
        } = std::mem::replace(&mut self.digest, DigestSync::Off)
        else {
            return Err(LinkError::Protocol("fine sums nobody asked for".into()));
        };
        let differ = fine_differ(&ours, log2, fine, &coarse, sums)?;
        let differing: u64 = differ.iter().map(|w| u64::from(w.count_ones())).sum();
        let (split, asked) = (
            fine - log2,
            coarse.iter().map(|w| w.count_ones()).sum::<u32>(),
        );
        info!(
            link = self.id,
            buckets = u64::from(asked) << split,
            differing,
            "fine digests compared"
        );
        self.digest = DigestSync::Filter {
            log2: fine,
            differ,
            target,
        };
        Ok(())
    }

    /// The test-only fault of [`LinkConfig::fault_drop_permille`]: a merged change of the live
    /// stream (not of a resync) loses that share of its parts or fields, picked by a hash of the
    /// link, the cursor, the key and the part, so that a seeded run replays.
    fn fault(&self, change: Change) -> Change {
        let permille = self.config.fault_drop_permille;
        let Change::Merge(mut m) = change else {
            return change;
        };
        if permille == 0 || self.since == 0 {
            return Change::Merge(m);
        }
        let (id, cursor) = (self.id, self.cursor);
        let dropped = |what: &[u8]| {
            let mut h = crc32fast::Hasher::new();
            h.update(&id.to_le_bytes());
            h.update(&cursor.to_le_bytes());
            h.update(&m.key);
            h.update(what);
            h.finalize() % 1000 < permille
        };
        let body = match &m.body {
            crate::cache::merge::Body::Counter { register, parts } => {
                crate::cache::merge::Body::Counter {
                    register: register.clone(),
                    parts: parts
                        .iter()
                        .filter(|p| !dropped(&p.run.to_le_bytes()))
                        .cloned()
                        .collect(),
                }
            }
            crate::cache::merge::Body::Hash { reset, fields } => crate::cache::merge::Body::Hash {
                reset: *reset,
                fields: fields
                    .iter()
                    .filter(|(name, _)| !dropped(name))
                    .cloned()
                    .collect(),
            },
        };
        if body != m.body {
            m.body = body;
            m.complete = false;
        }
        Change::Merge(m)
    }

    /// The message inside a [`Message::Packed`]: its announced length checked against the frame
    /// limit before anything is allocated, and never another packed one.
    fn unpack(&self, raw_len: u32, data: &[u8]) -> Result<Message, LinkError> {
        let raw_len = raw_len as usize;
        if raw_len > self.config.max_frame {
            return Err(LinkError::FrameTooLarge {
                limit: self.config.max_frame,
            });
        }
        let raw = lz4_flex::block::decompress(data, raw_len)
            .map_err(|e| LinkError::Malformed(format!("packed frame: {e}")))?;
        match decode(&raw)? {
            Message::Packed { .. } => {
                Err(LinkError::Protocol("a packed frame inside another".into()))
            }
            m => Ok(m),
        }
    }

    /// `payload`, compressed into a [`Message::Packed`] if the peer reads it and it shrinks.
    fn pack(&self, payload: Vec<u8>) -> Vec<u8> {
        if !self.packing || payload.len() < PACK_FROM {
            return payload;
        }
        let data = lz4_flex::block::compress(&payload);
        if data.len() + 8 >= payload.len() {
            return payload;
        }
        let packed = Message::Packed {
            raw_len: payload.len() as u32,
            data: Bytes::from(data),
        };
        encode(&packed).unwrap_or(payload)
    }

    /// Queues a refusal for the peer and fails with it.
    fn refuse(&mut self, refusal: Refusal) -> Result<(), LinkError> {
        self.outbox.push_back(Message::Reject(refusal.clone()));
        Err(LinkError::Refused(refusal))
    }

    fn on_hello(&mut self, hello: Hello) -> Result<(), LinkError> {
        self.status.peer_name = Some(hello.name.clone());
        self.status.peer_id = Some(hello.node);
        self.status.peer_role = Some(hello.role);
        if hello.magic != MAGIC {
            return self.refuse(Refusal::NotLeafcache);
        }
        if hello.protocol != PROTOCOL_VERSION {
            return self.refuse(Refusal::Protocol {
                ours: PROTOCOL_VERSION,
                theirs: hello.protocol,
            });
        }
        if hello.cluster != self.config.cluster {
            return self.refuse(Refusal::Cluster {
                ours: self.config.cluster.clone(),
                theirs: hello.cluster,
            });
        }
        if hello.node == self.replica.node_id() {
            return self.refuse(Refusal::SelfLink);
        }
        let peer = Peer {
            id: hello.node,
            name: hello.name,
            incarnation: hello.incarnation,
            challenge: hello.challenge,
        };
        let ours = self.config.timeout_ms;
        self.ping_every_ms = (ours.min(hello.timeout_ms) / 4).max(1);
        self.packing = self.config.compress && hello.compression & COMPRESS_LZ4 != 0;
        let proof = self.proof(&peer.challenge, self.replica.node_id(), peer.id);
        let resume = self.marks.get(peer.id);
        self.outbox.push_back(Message::Auth { proof, resume });
        self.peer = Some(peer);
        self.phase = Phase::AwaitAuth;
        Ok(())
    }

    /// HMAC-SHA256 over the challenge, the prover's and the verifier's ids and the cluster, keyed
    /// by the cluster secret: binding the ids stops a proof being reflected back or replayed to
    /// another node.
    fn proof_mac(&self, challenge: &[u8; 32], prover: NodeId, verifier: NodeId) -> HmacSha256 {
        let mut mac = self.config.secret.mac();
        mac.update(b"leafcache-auth-v1");
        mac.update(challenge);
        mac.update(&prover.0.to_be_bytes());
        mac.update(&verifier.0.to_be_bytes());
        mac.update(self.config.cluster.as_bytes());
        mac
    }

    fn proof(&self, challenge: &[u8; 32], prover: NodeId, verifier: NodeId) -> [u8; 32] {
        self.proof_mac(challenge, prover, verifier)
            .finalize()
            .into_bytes()
            .into()
    }

    fn on_auth(
        &mut self,
        proof: [u8; 32],
        resume: Option<Resume>,
        now: u64,
    ) -> Result<(), LinkError> {
        let peer_id = self.peer.as_ref().map_or(NodeId(0), |p| p.id);
        // `verify_slice` compares in constant time.
        let expected = self.proof_mac(&self.challenge, peer_id, self.replica.node_id());
        if expected.verify_slice(&proof).is_err() {
            return self.refuse(Refusal::Secret);
        }
        let current = self.replica.current_seq();
        let floor = self.replica.floor();
        let kind = match resume {
            Some(r)
                if r.incarnation == self.replica.incarnation()
                    && r.seq >= floor
                    && r.seq <= current =>
            {
                self.cursor = r.seq;
                self.since = 0;
                SyncKind::Delta
            }
            _ => {
                self.cursor = 0;
                self.since = 0;
                // Ask what the peer holds before sending it everything: its answer decides
                // between a full sync (it holds nothing) and one by difference.
                let (records, _) = self.replica.pending(0, current);
                if records > 0 {
                    self.digest = DigestSync::Queued { records };
                } else {
                    self.status.full_syncs += 1;
                }
                SyncKind::Full
            }
        };
        match kind {
            SyncKind::Delta => self.status.delta_syncs += 1,
            SyncKind::Full | SyncKind::Digest => {}
        }
        self.status.acked = self.cursor;
        let (total_changes, total_bytes) = self.replica.pending(self.cursor, current);
        self.sync = Some((
            SyncReport {
                kind,
                from: self.cursor,
                changes: 0,
                bytes: 0,
                total_changes,
                total_bytes,
                done: false,
            },
            current,
        ));
        self.phase = Phase::Up;
        self.status.state = LinkState::Up;
        self.status.last_error = None;
        self.status.down_since_ms = None;
        self.last_sent_ms = now;
        let peer = self.peer.as_ref().expect("hello came first");
        info!(link = self.id, peer = %peer.name, sync = ?kind, from = self.cursor, "link up");
        self.start_sync_if_free();
        self.finish_sync_if_done();
        Ok(())
    }

    fn on_batch(&mut self, upto: u64, caches: Vec<CacheChanges>, together: bool) {
        let (replica, status, id) = (&self.replica, &mut self.status, self.id);
        let mut wanted: Vec<(String, Vec<Bytes>)> = Vec::new();
        replica.apply_batch(together, &mut || {
            for group in &caches {
                for change in &group.changes {
                    // A part of a merged state, for a key this node holds no merged state of:
                    // it asks for the whole (it may have dropped parts it once sent).
                    let want = match change {
                        Change::Merge(m) if !m.complete => {
                            replica.wants(&group.cache, &m.key, m.version)
                        }
                        _ => false,
                    };
                    match replica.apply(&group.cache, change, id) {
                        None => {
                            status.unknown_cache_changes += group.changes.len() as u64;
                            warn!(link = id, cache = %group.cache, "changes for a cache this node lacks skipped");
                            break;
                        }
                        Some(applied) => {
                            status.changes_in += 1;
                            status.changes_applied += u64::from(applied);
                            if let Change::Merge(m) = change
                                && want
                            {
                                match wanted.last_mut() {
                                    Some((c, keys)) if *c == group.cache => keys.push(m.key.clone()),
                                    _ => wanted.push((group.cache.clone(), vec![m.key.clone()])),
                                }
                            }
                        }
                    }
                }
            }
        });
        self.advance_recv(upto);
        self.outbox.push_back(Message::Ack { upto });
        for (cache, keys) in wanted {
            for keys in keys.chunks(MAX_WANTED) {
                self.outbox.push_back(Message::Want {
                    cache: cache.clone(),
                    keys: keys.to_vec(),
                });
            }
        }
    }

    fn advance_recv(&mut self, upto: u64) {
        if upto > self.recv_upto {
            self.recv_upto = upto;
            if let Some(peer) = &self.peer {
                let resume = Resume {
                    incarnation: peer.incarnation,
                    seq: upto,
                };
                self.watermark = Some((peer.id, resume));
            }
        }
    }

    fn on_ack(&mut self, upto: u64) {
        while self.inflight.front().is_some_and(|&(u, _)| u <= upto) {
            self.inflight.pop_front();
            if self.window_filled {
                self.window = (self.window + 1).min(WINDOW_MAX);
            }
        }
        if self.cursor >= self.replica.current_seq() {
            // Caught up: the window is no longer what holds the link back.
            self.window_filled = false;
        }
        // With nothing left in flight, the peer has everything up to the cursor: what lies
        // between the last batch and the cursor came from the peer itself.
        let covered = if self.inflight.is_empty() {
            upto.max(self.cursor)
        } else {
            upto
        };
        self.covered(covered);
    }

    /// The peer holds every change of ours up to `upto`.
    fn covered(&mut self, upto: u64) {
        if upto > self.status.acked {
            self.status.acked = upto;
            self.acked_event = Some(upto);
        }
    }

    /// Queues a question to the peer for `key` of `cache`; the answer comes back as a
    /// [`LinkEvent::Fetched`] with `id`.
    pub fn fetch(&mut self, id: u64, cache: String, key: Bytes) {
        self.outbox.push_back(Message::Fetch { id, cache, key });
    }

    /// Queues this node's view of the tree beyond the peer for it, if the link is up (the driver
    /// sends one about once a second).
    pub fn send_summaries(&mut self, mut nodes: Vec<NodeSummary>) {
        if self.phase == Phase::Up {
            nodes.truncate(MAX_SUMMARIES);
            self.outbox.push_back(Message::Status { nodes });
        }
    }

    /// Queues a pub/sub message for the peer, if the link is up (best effort: a link that is
    /// down or closing drops it).
    pub fn publish(&mut self, channel: Bytes, message: Bytes) {
        if self.phase == Phase::Up {
            self.outbox.push_back(Message::Publish { channel, message });
        }
    }

    /// The next thing the driver must hand on, if any: the watermark first (the changes it covers
    /// are applied already), then the acknowledgement, then fetch answers.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        if let Some((peer, resume)) = self.watermark.take() {
            return Some(LinkEvent::Watermark { peer, resume });
        }
        if let Some(upto) = self.acked_event.take() {
            return Some(LinkEvent::Acked { upto });
        }
        if let Some((id, change)) = self.fetched.pop_front() {
            return Some(LinkEvent::Fetched { id, change });
        }
        if let Some(nodes) = self.summaries.take() {
            return Some(LinkEvent::Summaries { nodes });
        }
        let (channel, message) = self.published.pop_front()?;
        Some(LinkEvent::Published { channel, message })
    }

    /// Whether the link would send changes now if there were any: up, and its window not full.
    pub fn wants_changes(&self) -> bool {
        self.phase == Phase::Up
            && self.inflight.len() < self.window
            && !matches!(
                self.digest,
                DigestSync::Waiting | DigestSync::Queued { .. } | DigestSync::Refining { .. }
            )
    }

    /// Whether anything is ready to go out: a queued message or unsent changes within the window.
    pub fn has_output(&self) -> bool {
        !self.outbox.is_empty()
            || (self.wants_changes() && self.cursor < self.replica.current_seq())
    }

    /// The next frame payload to send, if any: queued control messages first, then a batch of
    /// changes read from the log after the cursor.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.start_sync_if_free();
        let message = match self.outbox.pop_front() {
            Some(m) => m,
            None => self.next_batch()?,
        };
        match encode(&message).map(|p| self.pack(p)) {
            Ok(payload) => {
                let now = self.replica.now_ms();
                self.last_sent_ms = now;
                self.status.frames_out += 1;
                self.status.bytes_out += payload.len() as u64 + 4;
                if let Message::Batch { upto, caches, .. } = &message {
                    let n: usize = caches.iter().map(|c| c.changes.len()).sum();
                    self.status.changes_out += n as u64;
                    self.inflight.push_back((*upto, now));
                    if self.inflight.len() >= self.window {
                        self.window_filled = true;
                    }
                    if let Some((report, _)) = &mut self.sync {
                        report.changes += n as u64;
                        report.bytes += payload.len() as u64 + 4;
                    }
                    self.finish_sync_if_done();
                }
                Some(payload)
            }
            Err(e) => {
                // Only a bug can make encoding fail; drop the message rather than the node.
                warn!(link = self.id, error = %e, "message not encodable, dropped");
                None
            }
        }
    }

    fn finish_sync_if_done(&mut self) {
        if let Some((report, target)) = &mut self.sync
            && self.cursor >= *target
        {
            report.done = true;
            info!(
                link = self.id,
                sync = ?report.kind,
                changes = report.changes,
                bytes = report.bytes,
                "resync sent"
            );
            self.status.sync = Some(report.clone());
            self.sync = None;
            self.release_slot();
        }
    }

    /// Reads the next records after the cursor into a batch, skipping what came from this link.
    fn next_batch(&mut self) -> Option<Message> {
        if !self.wants_changes() {
            return None;
        }
        let max_frame = self.config.max_frame;
        loop {
            let end = self.replica.current_seq();
            let mut upto = end;
            // A resync by difference stops at its target, so that its filter applies to the
            // records it compared and to nothing newer.
            if let DigestSync::Filter { target, .. } = &self.digest {
                if self.cursor >= *target {
                    self.digest = DigestSync::Off;
                } else {
                    upto = upto.min(*target);
                }
            }
            if self.cursor >= upto {
                return None;
            }
            let (mut records, reached, together) = self.replica.changes(
                self.cursor,
                upto,
                self.since,
                self.config.batch_records,
                BATCH_BYTES,
                self.id,
            );
            // Only records up to the target were compared: a batch reaching past it (a group of
            // changes made together is never split) goes whole.
            if let DigestSync::Filter {
                log2,
                differ,
                target,
            } = &self.digest
                && reached <= *target
            {
                let replica = &self.replica;
                records.retain(|(index, change)| {
                    let key = change.key().map(|k| &k[..]);
                    let b = bucket_of(replica.cache_name(*index), key, *log2);
                    differ[b / 64] & (1 << (b % 64)) != 0
                });
            }
            self.cursor = reached;
            if reached >= end {
                // Every record of the log is now on its way, with every part of its state (a
                // scan stopped at a digest's target has not seen the keys written after it).
                self.since = reached;
            }
            if records.is_empty() {
                // Everything in the window came from the peer: nothing to send, but the next
                // ping tells the peer how far it is covered. With nothing in flight, the peer has
                // everything up to the cursor, so it no longer counts as lag.
                if self.inflight.is_empty() {
                    self.covered(self.cursor);
                }
                self.finish_sync_if_done();
                continue;
            }
            let mut caches: Vec<CacheChanges> = Vec::new();
            let mut last = usize::MAX;
            for (index, change) in records {
                if index != last {
                    last = index;
                    caches.push(CacheChanges {
                        cache: self.replica.cache_name(index).to_string(),
                        changes: Vec::new(),
                    });
                }
                let change = self.fault(change);
                if let Some(group) = caches.last_mut() {
                    group.changes.push(fit_in_frame(change, max_frame));
                }
            }
            return Some(Message::Batch {
                upto: reached,
                caches,
                together,
            });
        }
    }

    /// Advances time: fails the link if the peer has been silent for the connection timeout,
    /// queues a heartbeat if we have been.
    ///
    /// # Errors
    /// [`LinkError::Timeout`] once the peer is silent for `connection_timeout`.
    pub fn tick(&mut self) -> Result<(), LinkError> {
        self.start_sync_if_free();
        let now = self.replica.now_ms();
        self.start_anti_entropy(now);
        let timeout = self.config.timeout_ms;
        if now.saturating_sub(self.last_recv_ms) >= timeout {
            let e = LinkError::Timeout { ms: timeout };
            self.fail(&e);
            return Err(e);
        }
        if self.phase == Phase::Up
            && self.outbox.is_empty()
            && now.saturating_sub(self.last_sent_ms) >= self.ping_every_ms
        {
            self.outbox.push_back(Message::Ping { upto: self.cursor });
        }
        Ok(())
    }

    /// When [`tick`](Self::tick) next has something to do, in the node clock's ms.
    pub fn next_tick_ms(&self) -> u64 {
        let timeout = self.config.timeout_ms;
        let next = (self.last_recv_ms + timeout).min(self.last_sent_ms + self.ping_every_ms);
        if matches!(self.digest, DigestSync::Queued { .. }) {
            // Look for a free sync slot again soon.
            return next.min(self.replica.now_ms() + SLOT_RETRY_MS);
        }
        match self.ae {
            AntiEntropy::Idle { next_ms } => next.min(next_ms),
            _ => next,
        }
    }

    /// Starts a clean close: every change applied here so far is queued for the peer, then a
    /// `Bye`. The link keeps taking frames until the peer answers with its own `Bye`
    /// ([`LinkError::Closed`] from [`handle`](Self::handle)), so nothing in flight is lost.
    pub fn close(&mut self) {
        if self.phase == Phase::Up {
            // Batches queued here bypass the window: acks no longer matter once we are leaving.
            self.inflight.clear();
            while let Some(batch) = self.next_batch() {
                self.outbox.push_back(batch);
            }
            self.outbox.push_back(Message::Ping { upto: self.cursor });
            self.outbox.push_back(Message::Bye);
            self.phase = Phase::Closing;
        } else {
            self.phase = Phase::Closed;
        }
        self.status.state = LinkState::Down;
        self.status.went_down(self.replica.now_ms());
    }

    /// Whether [`close`](Self::close) was called and the peer's `Bye` is awaited.
    pub fn is_closing(&self) -> bool {
        self.phase == Phase::Closing
    }

    /// Records why the link ended, in its status.
    pub fn fail(&mut self, error: &LinkError) {
        self.release_slot();
        if self.phase == Phase::Closing && *error == LinkError::Closed {
            self.phase = Phase::Closed;
            return;
        }
        self.phase = Phase::Closed;
        self.status.state = if error.is_refusal() {
            LinkState::Refused
        } else {
            LinkState::Down
        };
        self.status.last_error = Some(error.to_string());
        self.status.went_down(self.replica.now_ms());
    }

    /// The peer's name, once known.
    pub fn peer_name(&self) -> Option<&str> {
        self.peer.as_ref().map(|p| p.name.as_str())
    }
}

impl<R: Replica> std::fmt::Debug for Link<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("id", &self.id)
            .field("phase", &self.phase)
            .field("peer", &self.peer_name())
            .field("cursor", &self.cursor)
            .field("recv_upto", &self.recv_upto)
            .finish_non_exhaustive()
    }
}

/// A `Set` too large for one frame travels as an invalidation: the peer drops its older copy and
/// loads the value itself if it needs it.
/// The most keys one [`Message::Want`] asks for (a longer list is cut: the rest are asked for
/// again with their next change).
const MAX_WANTED: usize = 1024;

fn fit_in_frame(change: Change, max_frame: usize) -> Change {
    match change {
        Change::Set {
            key,
            value,
            version,
            ..
        } if key.len() + value.len() + 256 > max_frame => Change::Invalidate { key, version },
        Change::Merge(m) if crate::cache::approx_size(&Change::Merge(m.clone())) > max_frame => {
            Change::Invalidate {
                key: m.key,
                version: m.version,
            }
        }
        other => other,
    }
}

fn name_of(m: &Message) -> &'static str {
    match m {
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
