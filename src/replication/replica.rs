//! What a [`Link`](super::Link) needs of the node it runs on — the narrow [`Replica`] trait, and
//! [`Marks`], the watermarks the node holds on its peers — so the protocol is built and tested
//! without a node, and the node's caches implement it.

use std::collections::HashMap;

use parking_lot::Mutex;

use super::message::Resume;
use crate::cache::{Budget, Caches, Change, Scan};
use crate::clock::NodeId;

/// What [`Replica::digest_records`] calls for each record: its cache, its key (none for a purge
/// mark), and the record as the digest sees it.
pub type DigestVisit<'a> = dyn FnMut(&str, Option<&[u8]>, crate::cache::DigestItem) + 'a;

/// The node as one link sees it: its change log to read from, its caches to apply to.
pub trait Replica {
    /// The node's id.
    fn node_id(&self) -> NodeId;
    /// The node's name, for the peer's logs and status.
    fn node_name(&self) -> &str;
    /// The node's incarnation: its seqs are meaningful only within it.
    fn incarnation(&self) -> u128;
    /// The wall clock in ms, for timeouts and heartbeats.
    fn now_ms(&self) -> u64;
    /// The last seq the node handed out.
    fn current_seq(&self) -> u64;
    /// The highest seq of a record the node forgot: a resume point below it needs a full sync.
    fn floor(&self) -> u64;
    /// The records `scan` covers, in seq order, as (cache index, change), within `budget`; and
    /// the seq the answer is complete up to; and whether the receiver must apply them together
    /// (they hold changes made together, and the answer never splits those).
    fn changes(&self, scan: Scan, budget: Budget) -> (Vec<(usize, Change)>, u64, bool);
    /// How many records lie in `after < seq <= upto`, and about how many bytes of keys and values
    /// they hold: what a resync from `after` has to send, for its progress. (0, 0) if unknown.
    fn pending(&self, after: u64, upto: u64) -> (u64, u64) {
        let _ = (after, upto);
        (0, 0)
    }
    /// Runs `apply`, which applies one batch, so that no client of the node sees part of it when
    /// `together`, and no transaction of the node has it land between its commands either way.
    fn apply_batch(&self, together: bool, apply: &mut dyn FnMut()) {
        let _ = together;
        apply();
    }
    /// Calls `f(cache, key, item)` for every record with a seq up to `upto`, in no particular
    /// order (the purge mark with no key): what a digest covers, read without copying values.
    fn digest_records(&self, upto: u64, f: &mut DigestVisit<'_>);
    /// The name of the cache at `index` (as [`changes`](Self::changes) numbers them).
    fn cache_name(&self, index: usize) -> &str;
    /// Applies a change that came in on link `source` to cache `cache`: `None` if the node has no
    /// such cache, else whether it applied (it was newer).
    fn apply(&self, cache: &str, change: &Change, source: u32) -> Option<bool>;
    /// Whether the node holds nothing of `key` in `cache` at or above `version`: a part of its
    /// merged state is of no use to it, and it asks for the whole.
    fn wants(&self, cache: &str, key: &[u8], version: crate::clock::Version) -> bool {
        let _ = (cache, key, version);
        false
    }
    /// Sends the whole state of `key` in `cache` again on every link, if it holds one.
    fn resend(&self, cache: &str, key: &[u8]) {
        let _ = (cache, key);
    }
    /// The live entry of `key` in `cache`, as a `Set` (or a whole `Merge`).
    fn peek(&self, cache: &str, key: &[u8]) -> Option<Change>;
    /// Anti-entropy found `key` of `cache` held at `ours` here and differently at the peer
    /// (`theirs`): a difference that replication left behind. Counted and logged by the node.
    fn repaired(
        &self,
        cache: &str,
        key: &[u8],
        ours: crate::clock::Version,
        theirs: crate::clock::Version,
    ) {
        let _ = (cache, key, ours, theirs);
    }
}

impl Replica for Caches {
    fn node_id(&self) -> NodeId {
        self.core().id
    }

    fn node_name(&self) -> &str {
        &self.core().name
    }

    fn incarnation(&self) -> u128 {
        self.core().incarnation.as_u128()
    }

    fn now_ms(&self) -> u64 {
        self.core().now_ms()
    }

    fn current_seq(&self) -> u64 {
        self.core().current_seq()
    }

    fn floor(&self) -> u64 {
        Caches::floor(self)
    }

    fn changes(&self, scan: Scan, budget: Budget) -> (Vec<(usize, Change)>, u64, bool) {
        self.collect_changes(scan, budget)
    }

    fn pending(&self, after: u64, upto: u64) -> (u64, u64) {
        self.all().iter().fold((0, 0), |(n, b), c| {
            let (cn, cb) = c.pending(after, upto);
            (n + cn, b + cb)
        })
    }

    fn apply_batch(&self, together: bool, apply: &mut dyn FnMut()) {
        let core = self.core();
        if together {
            // Held alone, and remembered as a group, so that this node keeps the changes
            // together when it passes them on.
            core.atomically(apply);
        } else {
            let _shared = core.gate.read();
            apply();
        }
    }

    fn cache_name(&self, index: usize) -> &str {
        self.all()[index].name()
    }

    fn digest_records(&self, upto: u64, f: &mut DigestVisit<'_>) {
        for cache in self.all() {
            let name = cache.name();
            cache.digest_records(upto, &mut |key, item| f(name, key, item));
        }
    }

    fn apply(&self, cache: &str, change: &Change, source: u32) -> Option<bool> {
        Some(self.get(cache)?.apply_from(change, source))
    }

    fn wants(&self, cache: &str, key: &[u8], version: crate::clock::Version) -> bool {
        self.get(cache).is_some_and(|c| c.wants(key, version))
    }

    fn resend(&self, cache: &str, key: &[u8]) {
        if let Some(c) = self.get(cache) {
            c.resend(key);
        }
    }

    fn repaired(
        &self,
        cache: &str,
        key: &[u8],
        ours: crate::clock::Version,
        theirs: crate::clock::Version,
    ) {
        tracing::warn!(
            cache,
            key = %String::from_utf8_lossy(key),
            ours = %ours,
            theirs = %theirs,
            "anti-entropy repairs a key that replication left different"
        );
        if let Some(c) = self.get(cache) {
            c.note_repair();
        }
    }

    fn peek(&self, cache: &str, key: &[u8]) -> Option<Change> {
        let cache = self.get(cache)?;
        if let Some(whole) = cache.merged_change(key) {
            return Some(whole);
        }
        let entry = cache.peek(key)?;
        Some(Change::Set {
            key: bytes::Bytes::copy_from_slice(key),
            value: entry.value,
            version: entry.version,
            expires_at: entry.expires_at,
        })
    }
}

/// The watermarks a node holds on its peers: per peer, the seq of its incarnation up to which this
/// node applied its changes — what it asks to resume from when a link comes back. Links read it;
/// their drivers write it from [`LinkEvent::Watermark`](super::LinkEvent::Watermark)s.
#[derive(Debug, Default)]
pub struct Marks(Mutex<HashMap<NodeId, Resume>>);

impl Marks {
    /// The watermark on `peer`, if any.
    pub fn get(&self, peer: NodeId) -> Option<Resume> {
        self.0.lock().get(&peer).copied()
    }

    /// Sets the watermark on `peer`.
    pub fn set(&self, peer: NodeId, mark: Resume) {
        self.0.lock().insert(peer, mark);
    }

    /// Every watermark, ordered by peer.
    pub fn all(&self) -> Vec<(NodeId, Resume)> {
        let mut all: Vec<_> = self.0.lock().iter().map(|(&p, &m)| (p, m)).collect();
        all.sort_unstable_by_key(|(p, _)| *p);
        all
    }

    /// Adds watermarks read back from disk.
    pub fn extend(&self, marks: HashMap<NodeId, Resume>) {
        self.0.lock().extend(marks);
    }
}
