//! The builders, a layer above the node handle and its doors, which they wire together:
//! [`NodeBuilder`] (every setting of a node, checked as it is given and reported by `build()`,
//! and the wiring `build()` does — root, caches, ports, links, doors, tasks) and, in `cache.rs`,
//! [`CacheBuilder`].

mod cache;

pub use cache::CacheBuilder;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::core::Core;
use crate::cache::ports::Uplink;
use crate::cache::{CacheConfig, Caches, DEFAULT_CACHE};
use crate::clock::{Clock, NodeId};
use crate::error::{Error, parse_duration};
use crate::net::driver;
use crate::net::links::{Entropy, LinkRegistry};
use crate::net::{Endpoint, Sockets, Tls, TlsFiles, Transport};
use crate::node::{Node, NodeInner, ReplicationConfig, ServerLimits};
use crate::persist::{DEFAULT_FLUSH, DEFAULT_SNAPSHOT_INTERVAL, Flush, PersistConfig, Store};
use crate::replication::{LinkConfig, Role, Secret};
use crate::server::{self, DoorConfig};

impl Node {
    /// A builder for a node with any number of named caches.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
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

/// The id the versions of a node without a root carry. A version names one write, so a node must
/// never issue one twice, across restarts too. A node with a root keeps its writer id and a clock
/// lease on disk and starts past everything it issued; a node whose id was drawn at build has
/// never written before. A node given a fixed id without a root may have run under that id
/// already, its clock ahead of this one's (it had seen a peer whose clock runs fast): it writes
/// under an id drawn from its incarnation, so its versions cannot collide with those of an
/// earlier run.
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
    links: ReplicationConfig,
    secret: Secret,
    doors: DoorConfig,
    persist: Option<PersistConfig>,
    /// Where links run (default: the OS's sockets).
    transport: Option<Arc<dyn Transport>>,
    /// Draws the node's random numbers from this seed instead of the OS.
    seed: Option<u64>,
    /// The node's TLS files: links are mutual TLS.
    tls: Option<TlsFiles>,
    /// The sharded cluster this node is part of, if any.
    shards: Option<crate::partition::Shards>,
    /// The first invalid setting seen; `build` reports it.
    error: Option<Error>,
}

impl NodeBuilder {
    /// Keeps the node's data under `root` (created `0700`, files `0600`): it restarts with its
    /// entries, identity and peer watermarks, and catches up with its peers by delta. See
    /// [`snapshot_interval`](Self::snapshot_interval) and [`flush`](Self::flush).
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.persist = Some(PersistConfig {
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

    /// The most changes one replication batch carries (default 1,024). Smaller batches start a
    /// long resync sooner on the receiving side; larger ones cost fewer frames.
    pub fn batch_records(mut self, n: usize) -> Self {
        if n == 0 {
            self.fail(Error::ZeroCapacity {
                what: "batch_records",
            });
        } else {
            self.links.batch_records = n;
        }
        self
    }

    /// Whether this node's links compress frames of changes (LZ4, for a peer that reads it; on
    /// by default): a full sync of 64-byte values takes about a third of the bytes.
    ///
    /// ```
    /// let node = leafcache::Node::builder().compression(false).build()?;
    /// assert!(!node.replication_config().compress);
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    pub fn compression(mut self, on: bool) -> Self {
        self.links.compress = on;
        self
    }

    /// How often anti-entropy runs on each link this node dials (default a minute; `None` turns
    /// it off). A round compares the two ends' digests of every key's whole content (two rounds of
    /// bucket sums, a few KB when nothing differs), then key by key where they differ, and has
    /// both ends send the whole state of each key held differently; every such key is counted
    /// (`leafcache_antientropy_repairs_total`) and logged at `warn`. A safety net: on a healthy
    /// tree it repairs nothing. Rounds share the node's sync slots with resyncs.
    ///
    /// ```
    /// use std::time::Duration;
    /// let node = leafcache::Node::builder().anti_entropy(Some(Duration::from_secs(10))).build()?;
    /// assert_eq!(node.replication_config().anti_entropy, Some(Duration::from_secs(10)));
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    pub fn anti_entropy(mut self, every: Option<Duration>) -> Self {
        match every {
            Some(d) if d.is_zero() => self.fail(Error::ZeroDuration {
                what: "anti_entropy",
            }),
            every => self.links.anti_entropy = every,
        }
        self
    }

    /// Test-only fault: leaves `permille` per mille of the parts and fields of merged deltas out of
    /// the batches this node sends, to prove that anti-entropy heals what deltas lose.
    #[doc(hidden)]
    pub fn fault_drop_merged_parts(mut self, permille: u32) -> Self {
        self.links.fault_drop_permille = permille.min(1000);
        self
    }

    /// Mutual TLS on this node's links: it presents `files.cert` to every peer and accepts only
    /// peers whose certificate the CA in `files.ca` signed; a hub's certificate must also be for
    /// the host it is dialed at. The cluster secret's handshake still runs inside. `build()`
    /// reads and checks the files; the node reloads them when they change (and on
    /// [`Node::reload_tls`](crate::Node::reload_tls)).
    ///
    /// ```no_run
    /// use leafcache::{Node, net::TlsFiles};
    /// # async fn demo() -> Result<(), leafcache::Error> {
    /// let hub = Node::builder()
    ///     .tls(TlsFiles::new("certs/ca.pem", "certs/hub.pem", "certs/hub-key.pem"))
    ///     .local_address("10.0.0.1:7400")
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn tls(mut self, files: TlsFiles) -> Self {
        self.tls = Some(files);
        self
    }

    /// TLS on the RESP and HTTP doors too (`redis-cli --tls --cacert ca.pem`, `curl --cacert
    /// ca.pem https://…`), with the certificate given to [`tls`](Self::tls); clients need no
    /// certificate of their own. The Unix socket stays plain: it never leaves the host.
    pub fn door_tls(mut self, on: bool) -> Self {
        self.doors.tls = on;
        self
    }

    /// How many full syncs and syncs by difference this node sends at once (default
    /// [`SYNC_SLOTS`](crate::replication::SYNC_SLOTS), 4). When many leaves reconnect at once —
    /// to a hub that restarted — the others wait, linked and sending nothing, for a slot: the
    /// hub scans its cache for a few peers at a time instead of for all of them at once.
    pub fn max_concurrent_syncs(mut self, n: usize) -> Self {
        if n == 0 {
            self.fail(Error::ZeroCapacity {
                what: "max_concurrent_syncs",
            });
        } else {
            self.links.max_syncs = n;
        }
        self
    }

    /// On a miss in [`Cache::get_or_load`](crate::Cache::get_or_load), ask the hub first, waiting at most `timeout`; a value
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

    /// The hub this node is a leaf of, as `host:port`, `unix:/path`, or `mem:name` with a
    /// [`MemoryNet`](crate::net::MemoryNet) [`transport`](Self::transport).
    pub fn remote_address(mut self, addr: impl Into<String>) -> Self {
        let addr = addr.into();
        match Endpoint::parse("remote_address", &addr) {
            Ok(_) => {
                self.links.remote_address = Some(addr);
                self.links.fallback_hubs.clear();
            }
            Err(e) => self.fail(e),
        }
        self
    }

    /// Several hubs, in order of preference: the node links to one at a time. At start, the
    /// first that can be reached; when its hub has been unreachable for the connection timeout,
    /// the next of the list (after the last, the first); while on a later hub it tries the earlier
    /// ones every two connection timeouts and moves back to the first that answers, closing the
    /// current link cleanly. A hub it meets for the first time resyncs with it like any peer, so
    /// a write the old hub acknowledged but had not passed on reaches the new one.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let leaf = leafcache::Node::builder()
    ///     .remote_addresses(["10.0.0.1:7400", "10.0.0.2:7400"])
    ///     .build()?;
    /// let links = leaf.replication_config();
    /// assert_eq!(links.remote_address.as_deref(), Some("10.0.0.1:7400"));
    /// assert_eq!(links.fallback_hubs, ["10.0.0.2:7400"]);
    /// # leaf.shutdown().await;
    /// # Ok::<(), leafcache::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn remote_addresses<S: Into<String>>(mut self, hubs: impl IntoIterator<Item = S>) -> Self {
        let hubs: Vec<String> = hubs.into_iter().map(Into::into).collect();
        if let Err(e) = Endpoint::check_hubs("remote_addresses", &hubs) {
            self.fail(e);
            return self;
        }
        let mut hubs = hubs.into_iter();
        self.links.remote_address = hubs.next();
        self.links.fallback_hubs = hubs.collect();
        self
    }

    /// Makes the node one of a sharded cluster: its RESP door serves the keys of the slots its
    /// shard holds and sends cluster clients elsewhere for the others (`-MOVED`), and answers
    /// `CLUSTER SLOTS`, `SHARDS`, `NODES`... A topology file with `shard = "..."` on its nodes
    /// sets this for every node it starts.
    ///
    /// ```
    /// use leafcache::Node;
    /// use leafcache::partition::{ShardNode, Shards};
    /// let me = ShardNode { name: "a".into(), resp: Some("127.0.0.1:7000".into()), primary: true };
    /// let other = ShardNode { name: "b".into(), resp: Some("127.0.0.1:7001".into()), primary: true };
    /// let shards = Shards::new(vec![("s1".into(), vec![me]), ("s2".into(), vec![other])], "a")?;
    /// let node = Node::builder().name("a").shards(shards).build()?;
    /// assert_eq!(node.shards().unwrap().members.len(), 2);
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    pub fn shards(mut self, shards: crate::partition::Shards) -> Self {
        self.shards = Some(shards);
        self
    }

    /// The hubs set so far, in order of preference.
    pub(crate) fn hub_addresses(&self) -> Vec<String> {
        (self.links.remote_address.iter())
            .chain(&self.links.fallback_hubs)
            .cloned()
            .collect()
    }

    /// The address to accept leaves on, as `host:port`, `unix:/path` or `mem:name`; it makes this
    /// node a hub.
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

    /// Where the node's links run: by default the OS's sockets ([`Sockets`]); a
    /// [`MemoryNet`](crate::net::MemoryNet) host runs them in memory, with faults a test can
    /// inject, for `mem:` addresses.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use leafcache::net::MemoryNet;
    /// use leafcache::Node;
    /// let net = MemoryNet::new();
    /// let hub = Node::builder().transport(net.host("hub")).local_address("mem:hub").build()?;
    /// let leaf = Node::builder().transport(net.host("leaf")).remote_address("mem:hub").build()?;
    /// leaf.default_cache().set("k", "v")?;
    /// # while hub.default_cache().get("k").is_none() {
    /// #     tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    /// # }
    /// assert_eq!(hub.default_cache().get("k").unwrap(), "v");
    /// # leaf.shutdown().await;
    /// # hub.shutdown().await;
    /// # Ok::<(), leafcache::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Draws the node's random numbers — incarnation, a random node id, handshake challenges,
    /// reconnect jitter — from `seed` instead of the operating system, so that a simulated run
    /// replays exactly. For simulations and tests only: a seeded node's challenges are
    /// predictable.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
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
        let (local, remote) = (
            self.links.local_address.clone(),
            self.links.remote_address.clone(),
        );
        let fallbacks = self.links.fallback_hubs.clone();
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
        let transport = self.transport.unwrap_or_else(|| Arc::new(Sockets));
        let entropy = Entropy::new(self.seed);
        // The root first: a Unix socket may live in it, and a root in use stops the start here.
        let store = self
            .persist
            .clone()
            .map(|p| Store::open(p, self.id, || entropy.uuid()))
            .transpose()?;
        if self.doors.tls && self.tls.is_none() {
            return Err(Error::InvalidConfig {
                what: "door_tls",
                reason: "TLS on the doors needs the node's certificate: call .tls(files) too"
                    .into(),
            });
        }
        let tls = (self.tls.clone())
            .map(|files| Tls::load(files).map(Arc::new))
            .transpose()
            .map_err(|e| Error::InvalidConfig {
                what: "tls",
                reason: e.to_string(),
            })?;
        let bound_doors = server::bind(&self.doors)?;
        let listener = local
            .as_deref()
            .map(|address| {
                transport.bind(address).map_err(|e| Error::Io {
                    what: format!("binding {address:?}"),
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        let id = (store.as_ref().map(|s| s.id))
            .or(self.id)
            .unwrap_or_else(|| NodeId(entropy.uuid().as_u128()));
        let incarnation = store
            .as_ref()
            .map_or_else(|| entropy.uuid(), |s| s.incarnation);
        let name = self
            .name
            .unwrap_or_else(|| format!("node-{}", &id.to_string()[..8]));
        let uplink = Uplink::new(
            remote.is_some(),
            self.links.fetch_on_miss,
            self.links.connection_timeout,
        );
        let writer = (store.as_ref().map(|s| s.writer))
            .unwrap_or_else(|| writer_id(id, self.id.is_some(), incarnation));
        let run = entropy.uuid().as_u128();
        let core = Arc::new(Core::new(
            id,
            writer,
            name,
            incarnation,
            run,
            self.clock,
            uplink,
        ));
        let caches = Caches::new(core.clone(), &self.default, &self.caches)?;
        let (journal, marks) = match store {
            Some(store) => {
                let now = core.now_ms();
                let (journal, marks) =
                    store.restore(caches.all(), now, &core.hlc, |seq| core.resume_seq(seq))?;
                // A crash may have lost re-sends of merged states (after a purge, or asked for
                // by a peer) that peers counted on: every merged state goes out whole again.
                for cache in caches.all() {
                    cache.restamp_merged();
                }
                core.set_recorder(journal.clone());
                (Some(journal), marks)
            }
            None => (None, HashMap::new()),
        };
        let config = LinkConfig {
            cluster: self.links.cluster.clone(),
            secret: self.secret,
            timeout_ms: u64::try_from(self.links.connection_timeout.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            max_frame: self.links.max_frame,
            batch_records: self.links.batch_records,
            role: Role::of(local.is_some(), remote.is_some()),
            compress: self.links.compress,
            sync_slots: Arc::new(crate::replication::SyncSlots::new(self.links.max_syncs)),
            anti_entropy_ms: self
                .links
                .anti_entropy
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)),
            fault_drop_permille: self.links.fault_drop_permille,
        };
        let registry = Arc::new(LinkRegistry::new(
            config,
            local.is_some(),
            remote.is_some(),
            journal.clone(),
            entropy,
            tls.clone(),
        ));
        registry.restore_marks(marks);
        let node = Node::assemble(NodeInner {
            caches: caches.clone(),
            bound: listener.as_ref().map(|l| l.local_addr()),
            config: self.links,
            registry: registry.clone(),
            doors: bound_doors.doors(&self.doors),
            journal: journal.clone(),
            sharded: self.shards.is_some(),
            shards: parking_lot::RwLock::new(self.shards.map(Arc::new)),
            probed: Default::default(),
            remote: Default::default(),
        });
        let tasks = &registry.tasks;
        if let Some(journal) = journal {
            let reg = registry.clone();
            tasks.spawn(crate::persist::run(
                caches.clone(),
                move || reg.marks.all(),
                journal,
                registry.shutdown.clone(),
            ));
        }
        if let Some(http) = node.http_addr() {
            let _ = registry.http.set(http.to_string());
        }
        bound_doors.spawn(&node)?;
        node.probe_shards();
        if node.shards().is_some() {
            node.core().set_owners(node.owners_port());
        }
        if let Some(tls) = tls {
            tasks.spawn(driver::watch_tls(tls, registry.shutdown.clone()));
        }
        if let Some(listener) = listener {
            tasks.spawn(driver::accept_loop(
                caches.clone(),
                registry.clone(),
                listener,
            ));
        }
        if let Some(address) = remote {
            let span = tracing::info_span!("link", node = %node.name(), hub = %address);
            registry
                .hubs
                .send_replace(std::iter::once(address).chain(fallbacks).collect());
            tasks.spawn(tracing::Instrument::instrument(
                driver::dial_loop(caches, registry.clone(), transport),
                span,
            ));
        }
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use crate::Node;
    use crate::replication::{Direction, LinkState, LinkStatus};

    /// Links publish their state while others read the node's summary, as on a hub with many
    /// leaves; neither waits on the other for good. (Each once held one lock and waited for the
    /// other's: two of the fifty leaves of a test blocked the hub for ever.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publishing_link_states_while_reading_the_summary_never_deadlocks() {
        let node = Arc::new(Node::builder().name("hub").build().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let (done, finished) = std::sync::mpsc::channel();
        let publisher = {
            let (node, stop, done) = (node.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut status = LinkStatus::new(7, Direction::Downstream, "leaf");
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Every publication changes the state, so each clears the summary.
                    status.state = if n.is_multiple_of(2) {
                        LinkState::Up
                    } else {
                        LinkState::Down
                    };
                    node.registry().publish(7, status.clone());
                    n += 1;
                }
                done.send(n).unwrap();
            })
        };
        let reader = {
            let (node, stop) = (node.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    node.registry().own_summary(node.cache_set());
                    n += 1;
                }
                done.send(n).unwrap();
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        for _ in 0..2 {
            let rounds = finished
                .recv_timeout(Duration::from_secs(20))
                .expect("a thread stuck: the two locks deadlocked");
            assert!(rounds > 0);
        }
        publisher.join().unwrap();
        reader.join().unwrap();
    }
}
