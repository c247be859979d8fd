//! A node: the named caches one process (or one embedded value) holds, the identity and clocks they
//! share, and the builders — [`NodeBuilder`] for several caches, [`CacheBuilder`] in the style of the
//! original `LRUCacheDistributed(...)` for one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;

use crate::cache::{Cache, CacheConfig, Change, Loader};
use crate::clock::{Clock, Hlc, NodeId, Version};
use crate::error::{BoxError, Error, parse_duration};
use crate::persist::{
    DEFAULT_FLUSH, DEFAULT_SNAPSHOT_INTERVAL, Flush, Journal, PersistSettings, SnapshotReport,
    Store,
};
use crate::replication::codec::DEFAULT_MAX_FRAME;
use crate::replication::transport::Endpoint;
use crate::replication::{LinkStatus, Role, Secret, Shared, Upstream, driver};
use crate::server::{self, DoorSettings, Doors, ServerLimits};

/// The name of the cache every node has.
pub const DEFAULT_CACHE: &str = "default";

/// How long a silent link waits before it is declared down, when not configured.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// What every cache of a node shares: identity, clocks and the change counter.
pub(crate) struct NodeCore {
    /// This node's id: who it is to its peers.
    pub id: NodeId,
    /// The id its versions carry as their tie-break: the node id, unless that id may have written
    /// before without leaving a trace (see [`writer_id`]).
    pub writer: NodeId,
    /// A human name for logs and status.
    pub name: String,
    /// Changes with every start of the node without persisted state; a peer that sees a new
    /// incarnation knows this node's seqs started over.
    pub incarnation: uuid::Uuid,
    pub hlc: Hlc,
    /// The last seq handed out; seqs are unique across all caches of the node.
    seq: AtomicU64,
    /// Wakes the links waiting for new changes to send.
    changes: tokio::sync::Notify,
    /// How many links are waiting on `changes`: with none, a write skips the notification.
    watchers: AtomicUsize,
    /// The upstream link as caches see it: acknowledgements and fetches.
    pub upstream: Upstream,
    /// The op log and snapshots, on a node with a root; set once its caches are restored.
    journal: OnceLock<Arc<Journal>>,
}

impl NodeCore {
    pub fn new(
        id: NodeId,
        writer: NodeId,
        name: String,
        incarnation: uuid::Uuid,
        clock: Clock,
        upstream: Upstream,
    ) -> Self {
        NodeCore {
            id,
            writer,
            name,
            incarnation,
            journal: OnceLock::new(),
            hlc: Hlc::new(clock),
            seq: AtomicU64::new(0),
            changes: tokio::sync::Notify::new(),
            watchers: AtomicUsize::new(0),
            upstream,
        }
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

    #[inline]
    pub fn next_seq(&self) -> u64 {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(j) = self.journal.get() {
            j.check_lease(seq);
        }
        seq
    }

    /// The node's journal, if it persists.
    #[inline]
    pub fn journal(&self) -> Option<&Arc<Journal>> {
        self.journal.get()
    }

    pub fn current_seq(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    #[inline]
    pub fn new_version(&self) -> Version {
        let ts = self.hlc.now();
        if let Some(j) = self.journal.get() {
            j.check_clock(ts.0);
        }
        Version {
            ts,
            node: self.writer,
        }
    }

    #[inline]
    pub fn now_ms(&self) -> u64 {
        self.hlc.clock().now_ms()
    }
}

/// The cluster name a node uses when none is configured.
pub const DEFAULT_CLUSTER: &str = "leafcache";

/// Where and how a node links to its peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkSettings {
    /// A silent link is declared down after this long; also how long an acknowledged write waits.
    pub connection_timeout: Duration,
    /// The hub this node is a leaf of (`host:port` or `unix:/path`), if any.
    pub remote_address: Option<String>,
    /// The address this node accepts leaves on (`host:port` or `unix:/path`): having one makes it a
    /// hub.
    pub local_address: Option<String>,
    /// Links only form between nodes of the same cluster.
    pub cluster: String,
    /// The largest frame sent or accepted, in bytes; an entry too large for it replicates as an
    /// invalidation.
    pub max_frame: usize,
    /// If set, a miss in [`Cache::get_or_load`] asks the hub (waiting at most this long) before
    /// calling the loader.
    pub fetch_on_miss: Option<Duration>,
}

impl Default for LinkSettings {
    fn default() -> Self {
        LinkSettings {
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            remote_address: None,
            local_address: None,
            cluster: DEFAULT_CLUSTER.to_string(),
            max_frame: DEFAULT_MAX_FRAME,
            fetch_on_miss: None,
        }
    }
}

/// A value accepted where a duration is expected: a [`Duration`], a human string (`"120s"`,
/// `"30m"`, `"1d"`), or a whole number of seconds as the original Python API took.
pub trait IntoDuration {
    /// The duration, or a clear error naming the setting `what`.
    fn into_duration(self, what: &'static str) -> Result<Duration, Error>;
}

impl IntoDuration for Duration {
    fn into_duration(self, _: &'static str) -> Result<Duration, Error> {
        Ok(self)
    }
}

impl IntoDuration for &str {
    fn into_duration(self, what: &'static str) -> Result<Duration, Error> {
        parse_duration(what, self)
    }
}

impl IntoDuration for String {
    fn into_duration(self, what: &'static str) -> Result<Duration, Error> {
        parse_duration(what, &self)
    }
}

impl IntoDuration for u64 {
    fn into_duration(self, _: &'static str) -> Result<Duration, Error> {
        Ok(Duration::from_secs(self))
    }
}

/// A running node's local part: its caches by name, in declaration order (`default` first).
/// Cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    core: Arc<NodeCore>,
    caches: Vec<Cache>,
    by_name: HashMap<String, usize>,
    links: LinkSettings,
    shared: Shared,
    /// The address leaves can dial, as bound (the OS's port for `:0`).
    bound: Option<String>,
    /// The front doors' settings, addresses and counters.
    doors: Doors,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.inner.core.name)
            .field("id", &self.inner.core.id)
            .field("caches", &self.inner.caches)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A builder for a node with any number of named caches.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.inner.core.id
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.inner.core.name
    }

    /// The id of this run of the node; seqs are meaningful only within one incarnation.
    pub fn incarnation(&self) -> uuid::Uuid {
        self.inner.core.incarnation
    }

    /// The last seq this node stamped on a change, across all its caches.
    pub fn current_seq(&self) -> u64 {
        self.inner.core.current_seq()
    }

    /// The cache every node has.
    pub fn default_cache(&self) -> Cache {
        self.inner.caches[0].clone()
    }

    /// The cache named `name`, or [`Error::UnknownCache`].
    pub fn cache(&self, name: &str) -> Result<Cache, Error> {
        self.inner
            .by_name
            .get(name)
            .map(|&i| self.inner.caches[i].clone())
            .ok_or_else(|| Error::UnknownCache(name.to_string()))
    }

    /// Every cache, `default` first, then in the order they were declared.
    pub fn caches(&self) -> &[Cache] {
        &self.inner.caches
    }

    /// Where this node links to its peers.
    pub fn link_settings(&self) -> &LinkSettings {
        &self.inner.links
    }

    /// The address this node accepts leaves on, as bound: with port 0 configured, the port the OS
    /// chose. `None` for a node that is not a hub.
    pub fn local_addr(&self) -> Option<&str> {
        self.inner.bound.as_deref()
    }

    /// The node's place in the tree: hub (accepts leaves), leaf (has a hub), relay (both) or
    /// standalone.
    pub fn role(&self) -> Role {
        Role::of(
            self.inner.links.local_address.is_some(),
            self.inner.links.remote_address.is_some(),
        )
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

    /// The status of every link: the upstream one (if this node has a hub) and one per connected
    /// leaf.
    pub fn links(&self) -> Vec<LinkStatus> {
        self.inner.shared.statuses()
    }

    /// Stops the node's links: stops accepting, sends every change applied so far and a goodbye on
    /// each link, closes them, and waits for their tasks to end. The caches stay usable locally.
    ///
    /// A node with a root then writes its final snapshot, so that it restarts where it stopped.
    pub async fn shutdown(&self) {
        let shared = &self.inner.shared;
        shared.shutdown.cancel();
        shared.tasks.close();
        shared.tasks.wait().await;
        if let Some(journal) = self.inner.core.journal().cloned() {
            let node = self.clone();
            let seq = self.current_seq();
            let closing = tokio::task::spawn_blocking(move || {
                journal.close(&node, node.caches(), seq);
            });
            if let Err(e) = closing.await {
                tracing::error!("final snapshot task failed: {e}");
            }
        }
    }

    /// The directory the node keeps its data in, if it persists.
    pub fn root(&self) -> Option<&std::path::Path> {
        self.inner.core.journal().map(|j| j.root())
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
        let journal = self.inner.core.journal().ok_or(Error::NoRoot)?;
        journal
            .snapshot(self, self.caches())
            .map_err(|e| Error::Io {
                what: format!("writing a snapshot under {}", journal.root().display()),
                reason: e.to_string(),
            })
    }

    pub(crate) fn core(&self) -> &Arc<NodeCore> {
        &self.inner.core
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    pub(crate) fn doors(&self) -> &Doors {
        &self.inner.doors
    }

    /// The highest seq any cache forgot a record at: a peer watermark below it needs a full sync.
    pub(crate) fn floor(&self) -> u64 {
        self.inner
            .caches
            .iter()
            .map(Cache::floor)
            .max()
            .unwrap_or(0)
    }

    /// The records of all caches with `after < seq <= upto` not from link `skip`, in seq order, as
    /// (cache index, change), at most `max_records` and about `max_bytes`; and the seq the answer
    /// is complete up to (`upto` unless a limit cut it short).
    pub(crate) fn collect_changes(
        &self,
        after: u64,
        upto: u64,
        max_records: usize,
        max_bytes: usize,
        skip: u32,
    ) -> (Vec<(usize, Change)>, u64) {
        let mut reached = upto;
        let mut all: Vec<(u64, usize, Change)> = Vec::new();
        for (i, cache) in self.inner.caches.iter().enumerate() {
            let records = cache.changes_between(after, upto, max_records, skip);
            if records.len() >= max_records
                && let Some(last) = records.last()
            {
                reached = reached.min(last.seq);
            }
            all.extend(records.into_iter().map(|s| (s.seq, i, s.change)));
        }
        all.retain(|r| r.0 <= reached);
        all.sort_unstable_by_key(|r| r.0);
        let mut bytes = 0;
        for j in 0..all.len() {
            bytes += approx_size(&all[j].2);
            if bytes > max_bytes && j > 0 {
                reached = all[j - 1].0;
                all.truncate(j);
                break;
            }
        }
        (all.into_iter().map(|(_, i, c)| (i, c)).collect(), reached)
    }
}

/// The id a node's versions carry. A version names one write, so a node must never issue one
/// twice, across restarts too. A node with a root keeps a clock lease on disk and starts past
/// everything it issued; a node whose id was drawn at build has never written before. A node given
/// a fixed id without a root may have run under that id already, its clock ahead of this one's
/// (it had seen a peer whose clock runs fast): it writes under an id drawn from its incarnation,
/// so its versions cannot collide with those of an earlier run.
fn writer_id(id: NodeId, may_have_written: bool, incarnation: uuid::Uuid) -> NodeId {
    if may_have_written {
        NodeId(incarnation.as_u128())
    } else {
        id
    }
}

fn needs_root(what: &'static str) -> Error {
    Error::InvalidConfig {
        what,
        reason: "needs a root: call .root(..) first".into(),
    }
}

/// About what a change takes on the wire.
fn approx_size(change: &Change) -> usize {
    match change {
        Change::Set { key, value, .. } => key.len() + value.len() + 48,
        Change::Delete { key, .. } | Change::Invalidate { key, .. } => key.len() + 40,
        Change::Purge { .. } => 40,
    }
}

/// Builds a [`Node`]. Consuming: every setter returns the builder.
///
/// ```
/// use leafcache::{CacheConfig, Node};
/// let node = Node::builder()
///     .name("edge-1")
///     .default_cache(CacheConfig::new().max_entries(50_000))
///     .cache("pages", CacheConfig::new().max_bytes(64 << 20))
///     .build()?;
/// assert_eq!(node.caches().len(), 2);
/// assert!(node.cache("nope").is_err());
/// # Ok::<(), leafcache::Error>(())
/// ```
#[derive(Default)]
#[must_use]
pub struct NodeBuilder {
    name: Option<String>,
    id: Option<NodeId>,
    clock: Clock,
    default: CacheConfig,
    caches: Vec<(String, CacheConfig)>,
    links: LinkSettings,
    secret: Secret,
    doors: DoorSettings,
    persist: Option<PersistSettings>,
    /// The first invalid setting seen; `build` reports it.
    error: Option<Error>,
}

impl NodeBuilder {
    /// Keeps the node's data under `root` (created `0700`, files `0600`): it restarts with its
    /// entries, identity and peer watermarks, and catches up with its peers by delta. See
    /// [`snapshot_interval`](Self::snapshot_interval) and [`flush`](Self::flush).
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.persist = Some(PersistSettings {
            root: root.into(),
            snapshot_every: DEFAULT_SNAPSHOT_INTERVAL,
            flush: DEFAULT_FLUSH,
        });
        self
    }

    /// How often a snapshot is written (default 5 minutes; also at shutdown, after a purge, and
    /// when the op log passes 256 MiB). Needs a [`root`](Self::root).
    pub fn snapshot_interval(mut self, every: impl IntoDuration) -> Self {
        match (every.into_duration("snapshot"), self.persist.as_mut()) {
            (Ok(d), _) if d.is_zero() => self.fail(Error::ZeroDuration { what: "snapshot" }),
            (Ok(d), Some(p)) => p.snapshot_every = d,
            (Ok(_), None) => self.fail(needs_root("snapshot")),
            (Err(e), _) => self.fail(e),
        }
        self
    }

    /// When the op log is written out (default every 100 ms; see [`Flush`]). Needs a
    /// [`root`](Self::root).
    pub fn flush(mut self, flush: Flush) -> Self {
        match (flush, self.persist.as_mut()) {
            (Flush::Every(d), _) if d.is_zero() => self.fail(Error::ZeroDuration { what: "flush" }),
            (f, Some(p)) => p.flush = f,
            (_, None) => self.fail(needs_root("flush")),
        }
        self
    }

    /// The node's name (default: `node-` and the start of its id).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// A fixed node id (default: random).
    pub fn node_id(mut self, id: NodeId) -> Self {
        self.id = Some(id);
        self
    }

    /// The wall clock (default: the system's). Tests pass a [`ManualClock`](crate::ManualClock).
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// The configuration of the `default` cache.
    pub fn default_cache(mut self, config: CacheConfig) -> Self {
        self.default = config;
        self
    }

    /// Adds a named cache. Naming `default` configures the default cache.
    pub fn cache(mut self, name: impl Into<String>, config: CacheConfig) -> Self {
        let name = name.into();
        if name == DEFAULT_CACHE {
            self.default = config;
        } else if name.is_empty() {
            self.fail(Error::InvalidConfig {
                what: "cache name",
                reason: "must not be empty".into(),
            });
        } else if self.caches.iter().any(|(n, _)| *n == name) {
            self.fail(Error::InvalidConfig {
                what: "cache name",
                reason: format!("{name:?} is declared twice"),
            });
        } else {
            self.caches.push((name, config));
        }
        self
    }

    /// How long a silent link waits before it is declared down (default 5 s).
    pub fn connection_timeout(mut self, timeout: impl IntoDuration) -> Self {
        match timeout.into_duration("connection_timeout") {
            Ok(d) if d.is_zero() => self.fail(Error::ZeroDuration {
                what: "connection_timeout",
            }),
            Ok(d) => self.links.connection_timeout = d,
            Err(e) => self.fail(e),
        }
        self
    }

    /// The cluster this node belongs to (default `leafcache`); links only form within one cluster.
    pub fn cluster(mut self, name: impl Into<String>) -> Self {
        self.links.cluster = name.into();
        self
    }

    /// The shared cluster secret. Peers prove they know it (HMAC challenge/response); it is never
    /// sent. Without one, any process that can reach the port can join.
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Secret::new(secret.as_ref());
        self
    }

    /// The largest replication frame sent or accepted (default 16 MiB).
    pub fn max_frame(mut self, bytes: usize) -> Self {
        if bytes < 1024 {
            self.fail(Error::InvalidConfig {
                what: "max_frame",
                reason: format!("{bytes} bytes is too small; at least 1024"),
            });
        } else {
            self.links.max_frame = bytes;
        }
        self
    }

    /// On a miss in [`Cache::get_or_load`], ask the hub first, waiting at most `timeout`; a value
    /// found there is cached here. Off by default.
    pub fn fetch_on_miss(mut self, timeout: impl IntoDuration) -> Self {
        match timeout.into_duration("fetch_on_miss") {
            Ok(d) if d.is_zero() => self.fail(Error::ZeroDuration {
                what: "fetch_on_miss",
            }),
            Ok(d) => self.links.fetch_on_miss = Some(d),
            Err(e) => self.fail(e),
        }
        self
    }

    /// The hub this node is a leaf of, as `host:port` or `unix:/path`.
    pub fn remote_address(mut self, addr: impl Into<String>) -> Self {
        let addr = addr.into();
        match Endpoint::parse("remote_address", &addr) {
            Ok(_) => self.links.remote_address = Some(addr),
            Err(e) => self.fail(e),
        }
        self
    }

    /// The address to accept leaves on, as `host:port` or `unix:/path`; it makes this node a hub.
    pub fn local_address(mut self, addr: impl Into<String>) -> Self {
        let addr = addr.into();
        match Endpoint::parse("local_address", &addr) {
            Ok(_) => self.links.local_address = Some(addr),
            Err(e) => self.fail(e),
        }
        self
    }

    /// Opens a RESP (Redis protocol) door on `host:port` (a bare port means `127.0.0.1:port`;
    /// port 0 lets the OS choose, see [`Node::resp_addr`]).
    pub fn resp_address(mut self, addr: impl Into<String>) -> Self {
        match server::door_address("resp_address", &addr.into()) {
            Ok(a) => self.doors.resp = Some(a),
            Err(e) => self.fail(e),
        }
        self
    }

    /// Opens the HTTP door on `host:port` (a bare port means `127.0.0.1:port`).
    pub fn http_address(mut self, addr: impl Into<String>) -> Self {
        match server::door_address("http_address", &addr.into()) {
            Ok(a) => self.doors.http = Some(a),
            Err(e) => self.fail(e),
        }
        self
    }

    /// Opens a Unix socket speaking RESP at `path`, created `0600`: processes of this user on
    /// this host share the node through it. A stale socket file nobody answers on is replaced.
    pub fn unix_socket(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.doors.unix = Some(path.into());
        self
    }

    /// A password for the front doors: RESP clients send `AUTH <password>`, HTTP clients
    /// `Authorization: Bearer <password>` (`/health` stays open). Without one, a door bound to a
    /// non-loopback address logs a warning at start.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        let password = password.into();
        if password.is_empty() {
            self.fail(Error::InvalidConfig {
                what: "password",
                reason: "must not be empty; leave it unset for no password".into(),
            });
        } else {
            self.doors.password = Some(password);
        }
        self
    }

    /// The bounds of front-door connections (default [`ServerLimits::default`]).
    pub fn server_limits(mut self, limits: ServerLimits) -> Self {
        match limits.check() {
            Ok(()) => self.doors.limits = limits,
            Err(e) => self.fail(e),
        }
        self
    }

    fn fail(&mut self, e: Error) {
        self.error.get_or_insert(e);
    }

    /// Builds the node. With a `local_address` it binds it at once (a taken port is an error
    /// here, not later) and accepts leaves; with a `remote_address` it starts dialing its hub in
    /// the background, retrying with backoff, while the caches already serve locally. Either needs
    /// to run inside a tokio runtime. The link tasks hold the node: it runs until
    /// [`Node::shutdown`], even when every handle is dropped.
    ///
    /// # Errors
    /// The first invalid setting: a zero capacity or duration ([`Error::ZeroCapacity`],
    /// [`Error::ZeroDuration`]), an unreadable duration ([`Error::InvalidDuration`]), a malformed
    /// address, an empty or duplicate cache name ([`Error::InvalidConfig`]); links configured
    /// outside a tokio runtime ([`Error::InvalidConfig`]); a listen address that cannot be bound
    /// ([`Error::Io`]).
    pub fn build(self) -> Result<Node, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let local = (self.links.local_address.as_deref())
            .map(|a| Endpoint::parse("local_address", a))
            .transpose()?;
        let remote = (self.links.remote_address.as_deref())
            .map(|a| Endpoint::parse("remote_address", a))
            .transpose()?;
        if (local.is_some() || remote.is_some() || self.doors.any() || self.persist.is_some())
            && tokio::runtime::Handle::try_current().is_err()
        {
            return Err(Error::InvalidConfig {
                what: "local_address/remote_address/front doors/root",
                reason:
                    "a node with links, front doors or a root must be built inside a tokio runtime"
                        .into(),
            });
        }
        // The root first: a Unix socket may live in it, and a root in use stops the start here.
        let store = self
            .persist
            .clone()
            .map(|p| Store::open(p, self.id))
            .transpose()?;
        let bound_doors = server::bind(&self.doors)?;
        let listener = local
            .as_ref()
            .map(|endpoint| {
                endpoint.bind().map_err(|e| Error::Io {
                    what: format!(
                        "binding {:?}",
                        self.links.local_address.as_deref().unwrap_or("")
                    ),
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        let id = (store.as_ref().map(|s| s.id))
            .or(self.id)
            .unwrap_or_else(NodeId::random);
        let incarnation = store
            .as_ref()
            .map_or_else(uuid::Uuid::new_v4, |s| s.incarnation);
        let name = self
            .name
            .unwrap_or_else(|| format!("node-{}", &id.to_string()[..8]));
        let upstream = Upstream::new(
            remote.is_some(),
            self.links.fetch_on_miss,
            self.links.connection_timeout,
        );
        let writer = writer_id(id, self.id.is_some() && store.is_none(), incarnation);
        let core = Arc::new(NodeCore::new(
            id,
            writer,
            name,
            incarnation,
            self.clock,
            upstream,
        ));
        let mut caches = vec![Cache::new(DEFAULT_CACHE, 0, &self.default, core.clone())?];
        let mut by_name = HashMap::from([(DEFAULT_CACHE.to_string(), 0)]);
        for (name, config) in &self.caches {
            by_name.insert(name.clone(), caches.len());
            let index = u32::try_from(caches.len()).unwrap_or(u32::MAX);
            caches.push(Cache::new(name, index, config, core.clone())?);
        }
        let marks = match store {
            Some(store) => {
                let now = core.now_ms();
                let (journal, marks) = store.restore(&caches, now, &core.hlc, |seq| {
                    core.seq.store(seq, Ordering::SeqCst)
                })?;
                let _ = core.journal.set(journal);
                marks
            }
            None => HashMap::new(),
        };
        let shared = Shared::new(
            self.links.cluster.clone(),
            self.secret,
            self.links.connection_timeout,
            self.links.max_frame,
            local.is_some(),
            remote.is_some(),
            core.journal().cloned(),
        );
        let node = Node {
            inner: Arc::new(NodeInner {
                core,
                caches,
                by_name,
                bound: listener.as_ref().map(|l| l.local_addr()),
                links: self.links,
                shared,
                doors: bound_doors.doors(&self.doors),
            }),
        };
        node.inner.shared.restore_marks(marks);
        if let Some(journal) = node.inner.core.journal().cloned() {
            node.inner
                .shared
                .tasks
                .spawn(crate::persist::run(node.clone(), journal));
        }
        bound_doors.spawn(&node)?;
        if let Some(listener) = listener {
            let tasks = &node.inner.shared.tasks;
            tasks.spawn(driver::accept_loop(node.clone(), listener));
        }
        if let (Some(endpoint), Some(address)) = (remote, node.inner.links.remote_address.clone()) {
            let tasks = &node.inner.shared.tasks;
            let span = tracing::info_span!("link", node = %node.name(), hub = %address);
            tasks.spawn(tracing::Instrument::instrument(
                driver::dial_loop(node.clone(), endpoint, address),
                span,
            ));
        }
        Ok(node)
    }
}

/// Builds a standalone [`Cache`] (the `default` cache of a node of its own), with the parameters
/// of the original Python `LRUCacheDistributed`:
///
/// | `LRUCacheDistributed(...)` | here |
/// |---|---|
/// | `load_callback=f` | [`load_callback`](Self::load_callback) / [`async_load_callback`](Self::async_load_callback) |
/// | `maximum_capacity=n` | [`maximum_capacity`](Self::maximum_capacity) |
/// | `expiration_time=s` | [`expiration_time`](Self::expiration_time) (seconds, `Duration` or `"120s"`) |
/// | `connection_timeout=s` | [`connection_timeout`](Self::connection_timeout) |
/// | `remote_address=a` | [`remote_address`](Self::remote_address) |
/// | `local_address=a` | [`local_address`](Self::local_address) |
///
/// ```
/// use leafcache::Cache;
/// let cache = Cache::builder()
///     .load_callback(|key: &[u8]| Ok::<_, std::io::Error>(format!("loaded {}", key.len())))
///     .maximum_capacity(1_000)
///     .expiration_time("2m")
///     .connection_timeout(5)
///     .build()?;
/// # Ok::<(), leafcache::Error>(())
/// ```
#[derive(Default)]
#[must_use]
pub struct CacheBuilder {
    node: NodeBuilder,
    config: CacheConfig,
    error: Option<Error>,
}

impl CacheBuilder {
    /// The most entries the cache holds (default 100,000).
    pub fn maximum_capacity(mut self, n: u64) -> Self {
        self.config = self.config.max_entries(n);
        self
    }

    /// The most bytes the cache holds, keys, values and per-entry overhead counted.
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.config = self.config.max_bytes(n);
        self
    }

    /// The default time-to-live of a write.
    pub fn expiration_time(mut self, ttl: impl IntoDuration) -> Self {
        match ttl.into_duration("expiration_time") {
            Ok(d) => self.config = self.config.ttl(d),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// How long tombstones are kept (default one day).
    pub fn tombstone_ttl(mut self, ttl: impl IntoDuration) -> Self {
        match ttl.into_duration("tombstone_ttl") {
            Ok(d) => self.config = self.config.tombstone_ttl(d),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// A blocking load callback for [`Cache::get_or_load`].
    pub fn load_callback<F, V, E>(mut self, f: F) -> Self
    where
        F: Fn(&[u8]) -> Result<V, E> + Send + Sync + 'static,
        V: Into<Bytes>,
        E: Into<BoxError>,
    {
        self.config = self.config.loader(Loader::sync(f));
        self
    }

    /// An async load callback for [`Cache::get_or_load`].
    pub fn async_load_callback<F, Fut, V, E>(mut self, f: F) -> Self
    where
        F: Fn(Bytes) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<V, E>> + Send + 'static,
        V: Into<Bytes>,
        E: Into<BoxError>,
    {
        self.config = self.config.loader(Loader::from_async(f));
        self
    }

    /// The number of shards (see [`CacheConfig::shards`]).
    pub fn shards(mut self, n: usize) -> Self {
        self.config = self.config.shards(n);
        self
    }

    /// How long a silent link waits before it is declared down.
    pub fn connection_timeout(mut self, timeout: impl IntoDuration) -> Self {
        self.node = self.node.connection_timeout(timeout);
        self
    }

    /// The hub to replicate with, as `host:port`.
    pub fn remote_address(mut self, addr: impl Into<String>) -> Self {
        self.node = self.node.remote_address(addr);
        self
    }

    /// The address to accept leaves on, as `host:port`.
    pub fn local_address(mut self, addr: impl Into<String>) -> Self {
        self.node = self.node.local_address(addr);
        self
    }

    /// The cluster name (see [`NodeBuilder::cluster`]).
    pub fn cluster(mut self, name: impl Into<String>) -> Self {
        self.node = self.node.cluster(name);
        self
    }

    /// The cluster secret (see [`NodeBuilder::secret`]).
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.node = self.node.secret(secret);
        self
    }

    /// Ask the hub on a miss before loading (see [`NodeBuilder::fetch_on_miss`]).
    pub fn fetch_on_miss(mut self, timeout: impl IntoDuration) -> Self {
        self.node = self.node.fetch_on_miss(timeout);
        self
    }

    /// The node's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.node = self.node.name(name);
        self
    }

    /// The node's id (default: random).
    pub fn node_id(mut self, id: NodeId) -> Self {
        self.node = self.node.node_id(id);
        self
    }

    /// The wall clock (default: the system's).
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.node = self.node.clock(clock);
        self
    }

    /// Builds the cache.
    ///
    /// # Errors
    /// As [`NodeBuilder::build`].
    pub fn build(self) -> Result<Cache, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        Ok(self.build_node()?.default_cache())
    }

    /// Builds the node, for callers that also want its other handles.
    pub fn build_node(self) -> Result<Node, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.node.default_cache(self.config).build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_clone_send_sync() {
        fn check<T: Clone + Send + Sync + 'static>() {}
        check::<Cache>();
        check::<Node>();
    }

    #[test]
    fn addresses_are_checked() {
        let ok = |a| Endpoint::parse("a", a).is_ok();
        assert!(ok("127.0.0.1:7400"));
        assert!(ok("hub.internal:7400"));
        assert!(ok("[::1]:7400"));
        assert!(ok("unix:/run/leafcache.sock"));
        for bad in [
            "",
            "7400",
            ":7400",
            "host:",
            "host:99999",
            "host:port",
            "unix:",
        ] {
            assert!(!ok(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn builder_reports_the_first_bad_setting() {
        let err = Cache::builder()
            .expiration_time("later")
            .build()
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidDuration {
                    what: "expiration_time",
                    ..
                }
            ),
            "{err}"
        );
        let err = Cache::builder().connection_timeout(0).build().unwrap_err();
        assert!(matches!(
            err,
            Error::ZeroDuration {
                what: "connection_timeout"
            }
        ));
        let err = Cache::builder().maximum_capacity(0).build().unwrap_err();
        assert!(matches!(err, Error::ZeroCapacity { .. }));
        let err = Cache::builder()
            .remote_address("nowhere")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("remote_address"), "{err}");
    }

    #[tokio::test]
    async fn builder_accepts_python_style_parameters() {
        let node = Cache::builder()
            .maximum_capacity(10)
            .expiration_time(120)
            .connection_timeout("3s")
            .remote_address("127.0.0.1:9")
            .local_address("127.0.0.1:0")
            .build_node()
            .unwrap();
        let links = node.link_settings();
        assert_eq!(links.connection_timeout, Duration::from_secs(3));
        assert_eq!(links.remote_address.as_deref(), Some("127.0.0.1:9"));
        assert_eq!(links.local_address.as_deref(), Some("127.0.0.1:0"));
        assert_ne!(
            node.local_addr(),
            Some("127.0.0.1:0"),
            "the OS picked a port"
        );
        node.shutdown().await;
    }

    #[test]
    fn links_need_a_runtime() {
        let err = Cache::builder()
            .remote_address("127.0.0.1:9")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("tokio runtime"), "{err}");
    }

    #[test]
    fn named_caches_are_separate() {
        let node = Node::builder()
            .cache("a", CacheConfig::new())
            .cache("b", CacheConfig::new())
            .build()
            .unwrap();
        node.cache("a").unwrap().set("k", "in a").unwrap();
        assert_eq!(node.cache("b").unwrap().get("k"), None);
        assert_eq!(node.default_cache().get("k"), None);
        assert!(matches!(node.cache("c"), Err(Error::UnknownCache(n)) if n == "c"));
        let dup = Node::builder()
            .cache("a", CacheConfig::new())
            .cache("a", CacheConfig::new())
            .build();
        assert!(dup.is_err());
    }
}
