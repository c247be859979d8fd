//! What every cache of one node shares: identity, the hybrid logical clock, the seq counter, the
//! notification that wakes links when a change is applied, and the ports to the layers above.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use super::groups::Groups;
use super::ports::{Recorder, Uplink, Watcher};
use crate::clock::{Clock, Hlc, NodeId, Version};

/// The node-wide state behind every [`Cache`](super::Cache) of a node.
pub(crate) struct Core {
    /// This node's id: who it is to its peers.
    pub id: NodeId,
    /// The id its versions carry as their tie-break: the node id, unless that id may have written
    /// before without leaving a trace (the node decides; see `Cache::writer_id`).
    pub writer: NodeId,
    /// A human name for logs and status.
    pub name: String,
    /// Changes with every start of the node without persisted state; a peer that sees a new
    /// incarnation knows this node's seqs started over.
    pub incarnation: uuid::Uuid,
    /// Drawn at every start, persisted or not: the id of this run's parts in counters (a run
    /// that lost its own part, in a crash, must not count on from where it stood).
    pub run: u128,
    pub hlc: Hlc,
    /// The last seq handed out; seqs are unique across all caches of the node.
    seq: AtomicU64,
    /// Wakes the links waiting for new changes to send.
    changes: tokio::sync::Notify,
    /// How many links are waiting on `changes`: with none, a write skips the notification.
    watchers: AtomicUsize,
    /// The link to a hub as caches see it: acknowledgements and fetches.
    pub uplink: Uplink,
    /// Where applied changes are recorded, on a node that persists; set once its caches are
    /// restored.
    recorder: OnceLock<Arc<dyn Recorder>>,
    /// Who is told of every changed key, on a node with front doors; set once at start.
    watcher: OnceLock<Arc<dyn Watcher>>,
    /// The other shards, on a node of a sharded cluster; set once at start.
    owners: OnceLock<Arc<dyn super::ports::Owners>>,
    /// Shared by every front-door command and every batch a link applies, taken alone by a
    /// transaction (`EXEC`) and the multi-key writes (`RENAME`, `MSET`...): what makes those
    /// atomic on the node. Single calls of the embedded API do not take it.
    pub gate: parking_lot::RwLock<()>,
    /// The seq ranges of changes made together, which replication keeps together.
    pub groups: Groups,
}

impl Core {
    pub fn new(
        id: NodeId,
        writer: NodeId,
        name: String,
        incarnation: uuid::Uuid,
        run: u128,
        clock: Clock,
        uplink: Uplink,
    ) -> Self {
        Core {
            id,
            writer,
            name,
            incarnation,
            run,
            hlc: Hlc::new(clock),
            seq: AtomicU64::new(0),
            changes: tokio::sync::Notify::new(),
            watchers: AtomicUsize::new(0),
            uplink,
            recorder: OnceLock::new(),
            watcher: OnceLock::new(),
            owners: OnceLock::new(),
            gate: parking_lot::RwLock::new(()),
            groups: Groups::default(),
        }
    }

    /// Installs the recorder (once, after a restore, before anything else is applied).
    pub fn set_recorder(&self, recorder: Arc<dyn Recorder>) {
        let _ = self.recorder.set(recorder);
    }

    /// The recorder, on a node that persists.
    #[inline]
    pub fn recorder(&self) -> Option<&dyn Recorder> {
        self.recorder.get().map(|r| &**r)
    }

    /// Installs the watcher (once); see `Caches::set_watcher`.
    pub fn set_watcher(&self, watcher: Arc<dyn Watcher>) -> bool {
        self.watcher.set(watcher).is_ok()
    }

    /// The watcher, on a node that has one.
    #[inline]
    pub fn watcher(&self) -> Option<&dyn Watcher> {
        self.watcher.get().map(|w| &**w)
    }

    /// Installs the other shards (once).
    pub fn set_owners(&self, owners: Arc<dyn super::ports::Owners>) {
        let _ = self.owners.set(owners);
    }

    /// The other shards, on a node of a sharded cluster.
    #[inline]
    pub fn owners(&self) -> Option<&dyn super::ports::Owners> {
        self.owners.get().map(|o| &**o)
    }

    /// Runs `f` with the gate held alone, and remembers the changes it made as one group. Must
    /// not be called with the gate held.
    pub fn atomically<T>(&self, f: impl FnOnce() -> T) -> T {
        let _alone = self.gate.write();
        let before = self.current_seq();
        let result = f();
        let after = self.current_seq();
        if after > before + 1 {
            self.groups.add(before + 1, after);
        }
        result
    }

    /// Tells waiting links that a change was applied (after its shard lock is released).
    #[inline]
    pub fn changed(&self) {
        if self.watchers.load(Ordering::SeqCst) > 0 {
            self.changes.notify_waiters();
        }
    }

    /// Registers a link that waits for changes; every write notifies from then on.
    pub fn watch(&self) {
        self.watchers.fetch_add(1, Ordering::SeqCst);
    }

    /// Undoes [`watch`](Self::watch).
    pub fn unwatch(&self) {
        self.watchers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Resolves after the next [`changed`](Self::changed); create it, enable it, then check the
    /// seq, so that no change falls between the check and the wait.
    pub fn changes(&self) -> tokio::sync::futures::Notified<'_> {
        self.changes.notified()
    }

    /// Hands out the next seq.
    #[inline]
    pub fn next_seq(&self) -> u64 {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(r) = self.recorder() {
            r.seq_issued(seq);
        }
        seq
    }

    /// Sets the counter to a seq read back from disk (before anything is handed out).
    pub fn resume_seq(&self, seq: u64) {
        self.seq.store(seq, Ordering::SeqCst);
    }

    /// The last seq handed out.
    pub fn current_seq(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    /// A version for a local write: a fresh HLC timestamp and the writer id.
    #[inline]
    pub fn new_version(&self) -> Version {
        let ts = self.hlc.now();
        if let Some(r) = self.recorder() {
            r.version_issued(ts);
        }
        Version {
            ts,
            node: self.writer,
        }
    }

    /// The wall clock, in ms since the Unix epoch.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        self.hlc.clock().now_ms()
    }
}
