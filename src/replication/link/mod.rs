//! One link's protocol as a state machine without I/O: frames in ([`Link::handle`]), frames out
//! ([`Link::poll_transmit`]), time passing ([`Link::tick`]). The tokio driver and the test
//! simulator both move bytes for it; every replication decision is made here.
//!
//! What a link sends is read from the node's change log rather than queued: the link keeps a
//! cursor (the node seq up to which the peer has everything it needs) and, whenever it may send,
//! reads the next records after it. So a live stream, a delta resync from a watermark and a full
//! sync from zero are the same loop, a slow peer costs a cursor instead of a growing queue, and a
//! key written a thousand times while the peer was away is sent once.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use tracing::{info, warn};

mod fault;
mod resync;
mod stream;

use self::resync::{AntiEntropy, DigestSync, SLOT_RETRY_MS};
use self::stream::MAX_WANTED;
use crate::cache::Change;
use crate::clock::{NodeId, Version};
use crate::replication::codec::{decode, encode, pack, unpack};
use crate::replication::digest::{
    self, ANTI_ENTROPY_SPLIT, Compared, DIGEST_SPLIT, Held, bitmap_bytes, bucket_of, coarse_differ,
    fine_differ, holds_records, set_bits,
};
use crate::replication::handshake::{self, Peer, Phase};
use crate::replication::message::{
    COMPRESS_LZ4, CacheChanges, Hello, KeySum, MAGIC, MAX_KEY_BUCKETS, MAX_KEY_SUMS, Message,
    PROTOCOL_VERSION, Refusal, Resume, Role,
};
use crate::replication::replica::{DigestVisit, Marks, Replica};
use crate::replication::slots::SyncSlots;
use crate::replication::status::{Direction, LinkState, LinkStatus, SyncKind, SyncReport};
use crate::replication::summary::{MAX_SUMMARIES, NodeSummary};
use crate::replication::window::Window;
use crate::replication::{LinkError, Secret};

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
    /// Batches sent and not acknowledged.
    window: Window,
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

impl<R: Replica> Drop for Link<R> {
    /// A link that ends in the middle of a sync gives its slot back.
    fn drop(&mut self) {
        self.release_slot();
    }
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
            window: Window::default(),
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
            .window
            .oldest_sent_ms()
            .map_or(0, |at| now.saturating_sub(at));
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

    /// Every record this node holds now, as the digest functions read them.
    fn scan(&self) -> impl FnOnce(&mut DigestVisit<'_>) + '_ {
        let upto = self.replica.current_seq();
        move |f| self.replica.digest_records(upto, f)
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
                other.name()
            ))),
            (Phase::AwaitAuth, Message::Auth { proof, resume }) => self.on_auth(proof, resume, now),
            (Phase::AwaitAuth, other) => {
                self.refuse(Refusal::Unexpected(format!("{} before auth", other.name())))
            }
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
                let message = unpack(raw_len, &data, self.config.max_frame)?;
                self.handle_message(message, now)
            }
            (Phase::Up, Message::Status { mut nodes }) => {
                nodes.truncate(MAX_SUMMARIES);
                let nodes = nodes.into_iter().map(NodeSummary::bounded).collect();
                self.summaries = Some(nodes);
                Ok(())
            }
            (Phase::Up, Message::DigestRequest { records, split }) => {
                let upto = self.replica.current_seq();
                let (own, _) = self.replica.pending(0, upto);
                let scan = |f: &mut DigestVisit<'_>| self.replica.digest_records(upto, f);
                let (log2, fine, sums) =
                    digest::answer(records, split, own, self.config.max_frame, scan)?;
                self.outbox.push_back(Message::Digest { log2, fine, sums });
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
                let answer = digest::fine_sums(log2, fine, &buckets, self.scan())?;
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
                let answer = digest::key_sums(fine, &buckets, self.scan())?;
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
                LinkError::Protocol(format!("{} after the handshake", other.name())),
            ),
        }
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
        if let Some(refusal) =
            handshake::check_hello(&hello, &self.config.cluster, self.replica.node_id())
        {
            return self.refuse(refusal);
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
        let (secret, cluster) = (&self.config.secret, &self.config.cluster);
        let proof = handshake::proof(
            secret,
            cluster,
            &peer.challenge,
            self.replica.node_id(),
            peer.id,
        );
        let resume = self.marks.get(peer.id);
        self.outbox.push_back(Message::Auth { proof, resume });
        self.peer = Some(peer);
        self.phase = Phase::AwaitAuth;
        Ok(())
    }

    fn on_auth(
        &mut self,
        proof: [u8; 32],
        resume: Option<Resume>,
        now: u64,
    ) -> Result<(), LinkError> {
        let peer_id = self.peer.as_ref().map_or(NodeId(0), |p| p.id);
        let (secret, cluster) = (&self.config.secret, &self.config.cluster);
        let us = self.replica.node_id();
        if !handshake::verify(secret, cluster, &self.challenge, peer_id, us, &proof) {
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
        self.status.came_up = true;
        self.last_sent_ms = now;
        let peer = self.peer.as_ref().expect("hello came first");
        info!(link = self.id, peer = %peer.name, sync = %kind, from = self.cursor, "link up");
        self.start_sync_if_free();
        self.finish_sync_if_done();
        Ok(())
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
            && self.window.is_open()
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
            self.window.clear();
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
