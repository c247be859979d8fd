//! The node handle: the named caches one process (or one embedded value) holds, its links and
//! its front doors' settings and counters. [`Node`] is what applications and the doors hold;
//! the builders one layer up (src/build/) make one.

mod doors;
pub(crate) mod remote;
mod shards;

use std::sync::Arc;
use std::time::Duration;

pub use doors::ServerLimits;
pub(crate) use doors::{DoorStats, Doors};
pub use shards::ShardHealth;

use crate::cache::core::Core;
use crate::cache::{Cache, Caches};
use crate::clock::NodeId;
use crate::error::Error;
use crate::net::driver;
use crate::net::links::LinkRegistry;
use crate::persist::{Journal, SnapshotReport};
use crate::replication::codec::DEFAULT_MAX_FRAME;
use crate::replication::{Direction, Link, LinkEvent, LinkStatus, Role};

pub use crate::cache::DEFAULT_CACHE;

/// How long a silent link waits before it is declared down, when not configured.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// The cluster name a node uses when none is configured.
pub const DEFAULT_CLUSTER: &str = "leafcache";

/// Where and how a node links to its peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// A silent link is declared down after this long; also how long an acknowledged write waits.
    pub connection_timeout: Duration,
    /// The hub this node is a leaf of (`host:port`, `unix:/path` or `mem:name`), if any.
    pub remote_address: Option<String>,
    /// The hubs it fails over to, in order, when `remote_address` is unreachable (see
    /// `NodeBuilder::remote_addresses`).
    pub fallback_hubs: Vec<String>,
    /// The address this node accepts leaves on (`host:port`, `unix:/path` or `mem:name`): having
    /// one makes it a hub.
    pub local_address: Option<String>,
    /// Links only form between nodes of the same cluster.
    pub cluster: String,
    /// The largest frame sent or accepted, in bytes; an entry too large for it replicates as an
    /// invalidation.
    pub max_frame: usize,
    /// The most changes one replication batch carries (default
    /// [`BATCH_RECORDS`](crate::replication::BATCH_RECORDS)).
    pub batch_records: usize,
    /// If set, a miss in [`Cache::get_or_load`] asks the hub (waiting at most this long) before
    /// calling the loader.
    pub fetch_on_miss: Option<Duration>,
    /// Whether links compress large frames (LZ4) for peers that read them (default on).
    pub compress: bool,
    /// How many full syncs and syncs by difference are sent at once.
    pub max_syncs: usize,
    /// How often the side that dialed a link runs an anti-entropy round on it (default
    /// [`DEFAULT_ANTI_ENTROPY`]); `None`: never.
    pub anti_entropy: Option<Duration>,
    /// Test-only fault: per mille of merged deltas' parts and fields left out (see
    /// `NodeBuilder::fault_drop_merged_parts`).
    #[doc(hidden)]
    pub fault_drop_permille: u32,
}

/// How often anti-entropy runs on a link by default: a minute.
pub const DEFAULT_ANTI_ENTROPY: Duration = Duration::from_secs(60);

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            remote_address: None,
            fallback_hubs: Vec::new(),
            local_address: None,
            cluster: DEFAULT_CLUSTER.to_string(),
            max_frame: DEFAULT_MAX_FRAME,
            batch_records: crate::replication::BATCH_RECORDS,
            fetch_on_miss: None,
            compress: true,
            max_syncs: crate::replication::SYNC_SLOTS,
            anti_entropy: Some(DEFAULT_ANTI_ENTROPY),
            fault_drop_permille: 0,
        }
    }
}

/// A running node: its caches by name, in declaration order (`default` first), its links and its
/// front doors. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

/// What a [`Node`] handle holds, as `NodeBuilder::build` wires it together.
pub(crate) struct NodeInner {
    pub caches: Caches,
    pub config: ReplicationConfig,
    pub registry: Arc<LinkRegistry>,
    /// The address leaves can dial, as bound (the OS's port for `:0`).
    pub bound: Option<String>,
    /// The front doors' settings, addresses and counters.
    pub doors: Doors,
    /// The op log and snapshots, on a node with a root.
    pub journal: Option<Arc<Journal>>,
    /// Whether it was built into a sharded cluster (which `set_shards` never changes).
    pub sharded: bool,
    /// The sharded cluster it is part of, if any.
    pub shards: parking_lot::RwLock<Option<Arc<crate::partition::Shards>>>,
    /// What the prober found of the other shards.
    pub probed: parking_lot::Mutex<shards::Probed>,
    /// Connections to other shards' doors.
    pub remote: remote::Forwarder,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name())
            .field("id", &self.id())
            .field("caches", &self.caches())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// The handle over what `NodeBuilder::build` wired together.
    pub(crate) fn assemble(inner: NodeInner) -> Node {
        Node {
            inner: Arc::new(inner),
        }
    }

    /// What the node's caches share: clock, seq, gate, uplink, ports.
    pub(crate) fn core(&self) -> &Arc<Core> {
        self.inner.caches.core()
    }

    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.core().id
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.core().name
    }

    /// The id of this run of the node; seqs are meaningful only within one incarnation.
    pub fn incarnation(&self) -> uuid::Uuid {
        self.core().incarnation
    }

    /// The last seq this node stamped on a change, across all its caches.
    pub fn current_seq(&self) -> u64 {
        self.core().current_seq()
    }

    /// The wall clock the node reads, in ms since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.core().now_ms()
    }

    /// The cache every node has.
    pub fn default_cache(&self) -> Cache {
        self.inner.caches.all()[0].clone()
    }

    /// The cache named `name`, or [`Error::UnknownCache`].
    pub fn cache(&self, name: &str) -> Result<Cache, Error> {
        self.inner
            .caches
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownCache(name.to_string()))
    }

    /// Every cache, `default` first, then in the order they were declared.
    pub fn caches(&self) -> &[Cache] {
        self.inner.caches.all()
    }

    /// Where this node links to its peers.
    pub fn replication_config(&self) -> &ReplicationConfig {
        &self.inner.config
    }

    /// The address this node accepts leaves on, as bound: with port 0 configured, the port the OS
    /// chose. `None` for a node that is not a hub.
    pub fn local_addr(&self) -> Option<&str> {
        self.inner.bound.as_deref()
    }

    /// The node's place in the tree: hub (accepts leaves), leaf (has a hub), relay (both) or
    /// standalone.
    pub fn role(&self) -> Role {
        self.inner.registry.role()
    }

    /// The RESP door's address as bound (the OS's port for `:0`), if it has one.
    pub fn resp_addr(&self) -> Option<&str> {
        self.inner.doors.resp_addr.as_deref()
    }

    /// The HTTP door's address as bound, if it has one.
    pub fn http_addr(&self) -> Option<&str> {
        self.inner.doors.http_addr.as_deref()
    }

    /// The Unix socket speaking RESP, if the node has one.
    pub fn unix_socket(&self) -> Option<&std::path::Path> {
        self.inner.doors.unix_path.as_deref()
    }

    /// The node's slots for full syncs and syncs by difference: how many are in use, and the
    /// most that ever were at once (see `NodeBuilder::max_concurrent_syncs`).
    ///
    /// ```
    /// let node = leafcache::Node::builder().max_concurrent_syncs(2).build()?;
    /// assert_eq!((node.sync_slots().in_use(), node.sync_slots().peak()), (0, 0));
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    pub fn sync_slots(&self) -> &crate::replication::SyncSlots {
        &self.inner.registry.config.sync_slots
    }

    /// Whether the RESP and HTTP doors speak TLS.
    pub fn door_tls(&self) -> bool {
        self.door_tls_config().is_some()
    }

    /// The TLS the RESP and HTTP doors speak, if they do.
    pub(crate) fn door_tls_config(&self) -> Option<Arc<crate::net::Tls>> {
        (self.inner.registry.tls.clone()).filter(|_| self.inner.doors.tls)
    }

    /// Reads the node's TLS files again (what SIGHUP does to `leafcache node`; a change of the
    /// files is also picked up by itself within a second): handshakes from now on use them,
    /// links already up keep theirs. `Ok(false)` for a node without TLS.
    ///
    /// ```
    /// let node = leafcache::Node::builder().build()?;
    /// assert!(!node.reload_tls()?);
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    ///
    /// # Errors
    /// A file that does not load ([`Error::InvalidConfig`]); the certificates in use are kept.
    pub fn reload_tls(&self) -> Result<bool, Error> {
        match &self.inner.registry.tls {
            None => Ok(false),
            Some(tls) => tls
                .reload()
                .map(|()| true)
                .map_err(|e| Error::InvalidConfig {
                    what: "tls",
                    reason: e.to_string(),
                }),
        }
    }

    /// Moves this leaf to another list of hubs, in order of preference, without a restart (what
    /// a topology reload does when a node's `hub` changes). Unless its hub now is the new list's
    /// first, its link closes cleanly — frames in flight delivered, writes not yet acknowledged
    /// resent to the new hub by its resync — and it dials the new first hub, failing over down the
    /// list as at start. `Ok(false)` if the list is the one in use.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use leafcache::Node;
    /// let leaf = Node::builder().remote_address("127.0.0.1:7400").build()?;
    /// assert!(leaf.set_hubs(["127.0.0.1:7401", "127.0.0.1:7400"])?);
    /// assert!(!leaf.set_hubs(["127.0.0.1:7401", "127.0.0.1:7400"])?);
    /// // A node built without a hub has no link to move.
    /// assert!(Node::builder().build()?.set_hubs(["127.0.0.1:7400"]).is_err());
    /// leaf.shutdown().await;
    /// # Ok::<(), leafcache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an empty list, an address that does not parse, a hub listed
    /// twice, or a node built without a hub (its role is told to every peer: it takes a restart).
    pub fn set_hubs<S: Into<String>>(
        &self,
        hubs: impl IntoIterator<Item = S>,
    ) -> Result<bool, Error> {
        let hubs: Vec<String> = hubs.into_iter().map(Into::into).collect();
        crate::net::Endpoint::check_hubs("hubs", &hubs)?;
        let registry = &self.inner.registry;
        if !registry.has_hub {
            return Err(Error::InvalidConfig {
                what: "hubs",
                reason: format!(
                    "{} was started without a hub; a hub is added by a restart",
                    self.name()
                ),
            });
        }
        Ok(registry.hubs.send_if_modified(|now| {
            let changed = *now != hubs;
            if changed {
                *now = hubs;
            }
            changed
        }))
    }

    /// The sharded cluster this node is part of, if it is (see
    /// [`NodeBuilder::shards`](crate::NodeBuilder::shards)).
    pub fn shards(&self) -> Option<Arc<crate::partition::Shards>> {
        // Every keyed command of the RESP door asks: a node of one tree answers without touching
        // the lock every connection would share.
        if !self.inner.sharded {
            return None;
        }
        self.inner.shards.read().clone()
    }

    /// Replaces what this node knows of its sharded cluster: the nodes' doors as they bound them
    /// (`leafcache up` learns them once every node runs).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the node was not built into a sharded cluster, or `shards`
    /// moves it to another shard.
    pub fn set_shards(&self, shards: crate::partition::Shards) -> Result<(), Error> {
        let mut held = self.inner.shards.write();
        match &*held {
            Some(old) if old.map.shards()[old.mine] == shards.map.shards()[shards.mine] => {
                *held = Some(Arc::new(shards));
                Ok(())
            }
            _ => Err(Error::InvalidConfig {
                what: "shards",
                reason: "a node's shard is set when it is built".into(),
            }),
        }
    }

    /// Ends the move of slots that [`set_shards`](Self::set_shards) started (shards given with
    /// [`Shards::moving_from`](crate::partition::Shards::moving_from)): `after` from now, unless
    /// another move began meanwhile, the node drops the keys of slots its shard no longer holds
    /// (locally, as evictions: [`Cache::evict`]) and forgets the map before. Until then a slot's
    /// new owner reads a key it misses through from the previous one.
    pub fn finish_move_after(&self, after: Duration) {
        let Some(moving) = self.shards().filter(|s| s.previous.is_some()) else {
            return;
        };
        let node = self.clone();
        let registry = self.inner.registry.clone();
        registry.clone().tasks.spawn(async move {
            tokio::select! {
                _ = registry.shutdown.cancelled() => return,
                _ = tokio::time::sleep(after) => {}
            }
            let current = node.shards();
            if !current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &moving)) {
                return;
            }
            let dropped = node.drop_unowned();
            let mut settled = (*moving).clone();
            settled.previous = None;
            *node.inner.shards.write() = Some(Arc::new(settled));
            tracing::info!(
                node = node.name(),
                dropped,
                "slots moved: the keys of slots another shard holds now are dropped here"
            );
        });
    }

    /// Drops (as evictions) the keys of every cache whose slot this node's shard does not hold;
    /// how many. Nothing on a node of one tree.
    pub fn drop_unowned(&self) -> u64 {
        let Some(shards) = self.shards() else {
            return 0;
        };
        let mut dropped = 0;
        for cache in self.caches() {
            let mut cursor = 0;
            loop {
                let (keys, next) = cache.scan(cursor, 1024);
                for key in keys {
                    if !shards.owns(crate::partition::key_slot(&key)) && cache.evict(&key) {
                        dropped += 1;
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        dropped
    }

    /// The node's connections to other shards' doors.
    pub(crate) fn remote(&self) -> &remote::Forwarder {
        &self.inner.remote
    }

    /// The caches' port to the other shards (held weakly: the caches do not keep the node).
    pub(crate) fn owners_port(&self) -> Arc<shards::Owners> {
        Arc::new(shards::Owners {
            node: Arc::downgrade(&self.inner),
        })
    }

    /// The hubs this leaf links to, in order of preference (empty for a node without a hub).
    pub fn hubs(&self) -> Vec<String> {
        self.inner.registry.hubs.borrow().clone()
    }

    /// The status of every link: the upstream one (if this node has a hub) and one per connected
    /// leaf.
    ///
    /// Read at the call: how long a link has been down and how far behind its peer is are
    /// brought up to now, also for a link that is down or stalled.
    pub fn links(&self) -> Vec<LinkStatus> {
        self.inner.registry.statuses_now(&self.inner.caches)
    }

    /// The tree as this node sees it: itself and every node its links told it of (each node
    /// passes a summary of what lies beyond it along its links, about once a second), and the
    /// links beyond which it cannot see, with the nodes last seen there. Served at
    /// `/v1/cluster`.
    ///
    /// ```
    /// let node = leafcache::Node::builder().name("alone").build()?;
    /// let tree = node.cluster();
    /// assert_eq!(tree.nodes.len(), 1);
    /// assert_eq!(tree.nodes[0].summary.name, "alone");
    /// assert!(tree.unreachable.is_empty());
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    pub fn cluster(&self) -> crate::net::ClusterView {
        self.inner.registry.cluster(&self.inner.caches)
    }

    /// A link state machine over this node's caches, for a driver of one's own (the tokio driver
    /// makes them itself): it shares the node's settings, secret and watermarks. Its
    /// [`LinkEvent`](crate::replication::LinkEvent)s are the caller's to hand on.
    pub fn new_link(&self, direction: Direction, address: &str) -> Link<Caches> {
        driver::new_link(&self.inner.caches, &self.inner.registry, direction, address)
    }

    /// Does what the tokio driver does with an event of a link made by
    /// [`new_link`](Self::new_link) pointing `direction`: a watermark is remembered (and
    /// persisted), an upstream acknowledgement releases acknowledged writes, a pub/sub message is
    /// delivered to this node's subscribers and passed on to the tokio driver's links. Fetch
    /// answers are the caller's own.
    pub fn hand_on(&self, direction: Direction, event: LinkEvent) {
        driver::hand_on_event(
            &self.inner.registry,
            &self.core().uplink,
            0,
            direction,
            event,
            self.now_ms(),
        );
    }

    /// Stops the node's links: stops accepting, sends every change applied so far and a goodbye on
    /// each link, closes them, and waits for their tasks to end. The caches stay usable locally.
    ///
    /// A node with a root then writes its final snapshot, so that it restarts where it stopped,
    /// and releases the root: another node (or process) can open it at once, even while handles
    /// to this node's caches live on. What they write afterwards stays in memory.
    pub async fn shutdown(&self) {
        let registry = &self.inner.registry;
        registry.shutdown.cancel();
        registry.tasks.close();
        registry.tasks.wait().await;
        if let Some(journal) = self.inner.journal.clone() {
            let (caches, marks) = (self.inner.caches.clone(), registry.marks.all());
            let closing = tokio::task::spawn_blocking(move || journal.close(&caches, &marks));
            if let Err(e) = closing.await {
                tracing::error!("final snapshot task failed: {e}");
            }
        }
    }

    /// How the node's persistence stands (its last snapshot, op-log size, failures), if it has a
    /// root.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("leafcache-doc-p-{}", std::process::id()));
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let node = leafcache::Node::builder().root(&dir).build()?;
    /// node.snapshot()?;
    /// let status = node.persistence().unwrap();
    /// assert!(status.last_snapshot_ms.is_some() && status.problems().is_empty());
    /// # node.shutdown().await;
    /// # Ok::<(), leafcache::Error>(())
    /// # }).unwrap();
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn persistence(&self) -> Option<crate::persist::PersistStatus> {
        self.inner.journal.as_ref().map(|j| j.status())
    }

    /// The directory the node keeps its data in, if it persists.
    pub fn root(&self) -> Option<&std::path::Path> {
        self.inner.journal.as_ref().map(|j| j.root())
    }

    /// Writes a snapshot now (a node with a root also writes one every snapshot interval and at
    /// shutdown) and truncates the op log it covers. Blocks while it writes: from async code, call
    /// it through `spawn_blocking`.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("leafcache-doc-{}", std::process::id()));
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let node = leafcache::Node::builder().root(&dir).build()?;
    /// node.default_cache().set("k", "v")?;
    /// let report = node.snapshot()?;
    /// assert_eq!(report.entries, 1);
    /// # node.shutdown().await;
    /// # Ok::<(), leafcache::Error>(())
    /// # }).unwrap();
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::NoRoot`] on a node without a root; [`Error::Io`] if the files cannot be written
    /// (the op log still holds every change).
    pub fn snapshot(&self) -> Result<SnapshotReport, Error> {
        let journal = self.inner.journal.as_ref().ok_or(Error::NoRoot)?;
        let marks = self.inner.registry.marks.all();
        journal
            .snapshot(&self.inner.caches, &marks)
            .map_err(|e| Error::Io {
                what: format!("writing a snapshot under {}", journal.root().display()),
                reason: e.to_string(),
            })
    }

    pub(crate) fn registry(&self) -> &LinkRegistry {
        &self.inner.registry
    }

    /// Runs `f` as one transaction: no front-door command and no replicated batch runs on this
    /// node meanwhile, and the changes `f` makes replicate as a group that every peer applies
    /// together, so no client anywhere sees part of them. (Other threads' calls of the embedded
    /// API are not held back.) Against concurrent writes elsewhere each key still resolves by its
    /// newest version. `f` must not call `atomically` itself.
    ///
    /// ```
    /// let node = leafcache::Node::builder().build()?;
    /// let cache = node.default_cache();
    /// node.atomically(|| -> Result<(), leafcache::Error> {
    ///     cache.set("from", "")?;
    ///     cache.set("to", "moved")?;
    ///     Ok(())
    /// })?;
    /// assert_eq!(cache.get("to").unwrap(), "moved");
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    pub fn atomically<T>(&self, f: impl FnOnce() -> T) -> T {
        self.core().atomically(f)
    }

    /// Sends a pub/sub message published at this node to every other node of the tree (best
    /// effort: a link that is down, or far behind, misses it). This node's own subscribers are
    /// the RESP door's to deliver to.
    pub(crate) fn publish(&self, channel: bytes::Bytes, message: bytes::Bytes) {
        let _ = self.registry().bus.send(crate::net::links::Publication {
            from_link: 0,
            channel,
            message,
        });
    }

    /// The node's caches as one set.
    pub(crate) fn cache_set(&self) -> &Caches {
        &self.inner.caches
    }

    pub(crate) fn doors(&self) -> &Doors {
        &self.inner.doors
    }
}
