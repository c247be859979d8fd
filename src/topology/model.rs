//! The checked topology — caches, nodes, secret — and starting it: one node, or all of them.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::diagnostics::{Diagnostic, Source, TopologyError};
use crate::replication::Role;
use crate::{CacheConfig, DEFAULT_CACHE, Flush, Node, NodeBuilder};

/// Cache settings from `[defaults]` or `[caches.NAME]`; unset fields take the defaults', then
/// the library's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheTableConfig {
    /// Entries the cache holds.
    pub capacity: Option<u64>,
    /// Bytes the cache holds (keys + values + per-entry overhead).
    pub max_bytes: Option<u64>,
    /// Default time to live of an entry.
    pub ttl: Option<Duration>,
    /// How long the record of a deleted, evicted or expired key is kept for resyncs.
    pub tombstone_ttl: Option<Duration>,
    /// How the full cache chooses what to evict (`eviction = "lru" | "s3fifo"`).
    pub eviction: Option<crate::cache::Eviction>,
    /// Where a miss is read through (`origin = "http://host/path/{key}"` or
    /// `"file:/dir/{key}"`, see [`Origin`](crate::Origin)).
    pub origin: Option<String>,
    /// How long the origin may take to answer.
    pub origin_timeout: Option<Duration>,
}

impl CacheTableConfig {
    pub(super) fn over(&self, base: &CacheTableConfig) -> CacheTableConfig {
        CacheTableConfig {
            capacity: self.capacity.or(base.capacity),
            max_bytes: self.max_bytes.or(base.max_bytes),
            ttl: self.ttl.or(base.ttl),
            tombstone_ttl: self.tombstone_ttl.or(base.tombstone_ttl),
            eviction: self.eviction.or(base.eviction),
            origin: self.origin.clone().or_else(|| base.origin.clone()),
            origin_timeout: self.origin_timeout.or(base.origin_timeout),
        }
    }

    /// The origin these settings read through, if any.
    pub fn read_through(&self) -> Option<crate::Origin> {
        let timeout = self
            .origin_timeout
            .unwrap_or(crate::cache::DEFAULT_ORIGIN_TIMEOUT);
        // Checked when the file was read.
        crate::Origin::new(self.origin.as_deref()?, timeout).ok()
    }

    /// The cache configuration these settings describe.
    pub fn config(&self) -> CacheConfig {
        let mut c = CacheConfig::new();
        if let Some(n) = self.capacity {
            c = c.max_entries(n);
        }
        if let Some(n) = self.max_bytes {
            c = c.max_bytes(n);
        }
        if let Some(d) = self.ttl {
            c = c.ttl(d);
        }
        if let Some(d) = self.tombstone_ttl {
            c = c.tombstone_ttl(d);
        }
        if let Some(e) = self.eviction {
            c = c.eviction(e);
        }
        if let Some(origin) = self.read_through() {
            c = c.loader(origin.loader());
        }
        c
    }
}

/// Where a node's hub is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubRef {
    /// Another node of the same file, by name.
    Node(String),
    /// A hub outside the file: `host:port` or `unix:/path`.
    Address(String),
}

/// Where the cluster secret comes from. The secret itself is never printed.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Written in the file: for development only (nodes warn at start).
    Inline(String),
    /// Read from this environment variable when a node starts.
    Env(String),
    /// Read from this file when a node starts (surrounding whitespace trimmed).
    File(PathBuf),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline(_) => f.write_str("Inline(..)"),
            SecretSource::Env(v) => write!(f, "Env({v:?})"),
            SecretSource::File(p) => write!(f, "File({p:?})"),
        }
    }
}

/// One `[[node]]` of a topology, paths resolved and door addresses normalized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// Unique within the file.
    pub name: String,
    /// The shard it belongs to, in a sharded file (every node names one, or none does).
    pub shard: Option<String>,
    /// The peer address it accepts leaves on (makes it a hub).
    pub listen: Option<String>,
    /// Its hub (makes it a leaf): the first of `hub = [...]`.
    pub hub: Option<HubRef>,
    /// The hubs it fails over to, in order: the rest of `hub = [...]`.
    pub fallback_hubs: Vec<HubRef>,
    /// RESP door (`host:port`).
    pub resp: Option<String>,
    /// HTTP door (`host:port`).
    pub http: Option<String>,
    /// Unix socket speaking RESP.
    pub unix: Option<PathBuf>,
    /// Its data directory.
    pub root: Option<PathBuf>,
    /// How often it writes a snapshot under its root.
    pub snapshot: Option<Duration>,
    /// When its op log is written out.
    pub flush: Option<Flush>,
    /// Its log filter (`"info"`, `"leafcache=debug"`).
    pub loglevel: Option<String>,
    /// The address its leaves dial when it differs from `listen` (a hub bound to `0.0.0.0:7400`
    /// that other machines reach as `hub.internal:7400`). Defaults to `listen`.
    pub advertise: Option<String>,
    /// Its own TLS certificate and key, instead of `[cluster.tls]`'s.
    pub tls_cert: Option<PathBuf>,
    /// The key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

/// `[cluster.tls]`, paths resolved against the topology file's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterTls {
    /// The cluster CA's certificate.
    pub ca: PathBuf,
    /// The certificate of every node that names none of its own.
    pub cert: Option<PathBuf>,
    /// Its key.
    pub key: Option<PathBuf>,
    /// Whether the RESP and HTTP doors speak TLS too.
    pub doors: bool,
}

impl NodeSpec {
    /// Its hubs in order of preference: `hub`, then `fallback_hubs`.
    pub fn hubs(&self) -> impl Iterator<Item = &HubRef> {
        self.hub.iter().chain(&self.fallback_hubs)
    }

    /// Hub, leaf, relay (both) or standalone (neither).
    pub fn role(&self) -> Role {
        Role::of(self.listen.is_some(), self.hub.is_some())
    }
}

/// A checked topology file.
///
/// ```
/// use leafcache::topology::{HubRef, Topology};
/// let topology = Topology::parse(
///     r#"
///     [cluster]
///     name = "demo"
///     secret_env = "DEMO_SECRET"
///     [defaults]
///     ttl = "1h"
///     [[node]]
///     name = "hub"
///     listen = "127.0.0.1:7400"
///     [[node]]
///     name = "leaf"
///     hub = "hub"
///     resp = "6401"
///     "#,
///     "demo.toml",
/// )?;
/// let leaf = topology.node("leaf").unwrap();
/// assert_eq!(leaf.hub, Some(HubRef::Node("hub".into())));
/// assert_eq!(leaf.resp.as_deref(), Some("127.0.0.1:6401"));
///
/// // Every problem at once, in file order: the missing secret, and the misspelt key.
/// let broken = Topology::parse("[[node]]\nname = \"a\"\nhbu = \"b\"\n", "broken.toml");
/// let error = broken.unwrap_err();
/// let hbu = error.diagnostics().iter().find(|d| d.message.contains("hbu")).unwrap();
/// assert_eq!((hbu.line, hbu.column), (3, 1));
/// assert!(error.to_string().contains("broken.toml:3:1: error: unknown field `hbu`"));
/// assert!(error.diagnostics().iter().any(|d| d.message.contains("secret")));
/// # Ok::<(), leafcache::topology::TopologyError>(())
/// ```
#[derive(Clone)]
pub struct Topology {
    pub(super) path: PathBuf,
    pub(super) source: String,
    pub(super) cluster: String,
    pub(super) secret: SecretSource,
    pub(super) secret_span: Range<usize>,
    pub(super) connection_timeout: Option<Duration>,
    /// `[defaults] anti_entropy`: a period, or `Some(None)` for "off"; `None` if unset.
    pub(super) anti_entropy: Option<Option<Duration>>,
    pub(super) tls: Option<ClusterTls>,
    pub(super) caches: Vec<(String, CacheTableConfig)>,
    pub(super) nodes: Vec<NodeSpec>,
    /// Where each node's `name` value is, for errors found when starting it.
    pub(super) name_spans: Vec<Range<usize>>,
    /// Where `[cluster.tls]` names its CA.
    pub(super) ca_span: Range<usize>,
    pub(super) warnings: Vec<Diagnostic>,
    pub(super) password: Option<Hidden>,
}

/// Without the file's text, which may hold a development secret.
impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topology")
            .field("path", &self.path)
            .field("cluster", &self.cluster)
            .field("secret", &self.secret)
            .field("connection_timeout", &self.connection_timeout)
            .field("anti_entropy", &self.anti_entropy)
            .field("caches", &self.caches)
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

/// A string `Debug` does not print.
#[derive(Clone)]
pub(super) struct Hidden(pub(super) String);

impl fmt::Debug for Hidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(hidden)")
    }
}

impl Topology {
    /// Sets the front-door password (RESP `AUTH`, HTTP bearer token) of every node started from
    /// this topology. It is kept out of the file on purpose: pass it from the environment.
    #[must_use]
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Hidden(password.into()));
        self
    }

    /// `[cluster.tls]`, if the cluster speaks TLS.
    pub fn tls(&self) -> Option<&ClusterTls> {
        self.tls.as_ref()
    }

    /// The TLS files node `spec` uses: its own certificate and key, else the cluster's; `None`
    /// without `[cluster.tls]`.
    pub fn tls_files(&self, spec: &NodeSpec) -> Option<crate::net::TlsFiles> {
        let tls = self.tls.as_ref()?;
        let cert = spec.tls_cert.clone().or_else(|| tls.cert.clone())?;
        let key = spec.tls_key.clone().or_else(|| tls.key.clone())?;
        Some(crate::net::TlsFiles::new(&tls.ca, cert, key))
    }

    /// What is wrong with the files the nodes will read, which [`parse`](Self::parse) does not
    /// open: for each node of a TLS cluster, its certificate, key and CA (they exist and parse,
    /// the key matches and only its owner can read it, the CA signed the certificate, it has not
    /// expired), and that a hub's certificate is for the host its leaves dial. What
    /// `leafcache check` reports after the file's own errors.
    pub fn file_problems(&self) -> Vec<Diagnostic> {
        let source = Source {
            path: &self.path,
            text: &self.source,
        };
        let mut found = Vec::new();
        if let Some(tls) = &self.tls
            && let Some(problem) = crate::net::ca_problem(&tls.ca)
        {
            // Every node would fail on it alike: said once, where the file names it.
            found.push(Diagnostic::at(
                &source,
                self.ca_span.clone(),
                format!("the cluster CA: {problem}"),
                Some(
                    "`leafcache certs FILE` makes a development CA and every node's certificate"
                        .into(),
                ),
            ));
            return found;
        }
        for (i, spec) in self.nodes.iter().enumerate() {
            let Some(files) = self.tls_files(spec) else {
                continue;
            };
            let at = |message: String, help: &str| {
                Diagnostic::at(
                    &source,
                    self.name_spans[i].clone(),
                    message,
                    Some(help.into()),
                )
            };
            let problems = crate::net::tls_problems(&files);
            let readable = problems.is_empty();
            for p in problems {
                found.push(at(
                    format!("node {:?}: {p}", spec.name),
                    "`leafcache certs FILE` makes development certificates for every node",
                ));
            }
            let dialed = spec.advertise.as_ref().or(spec.listen.as_ref());
            if let Some(address) = dialed.filter(|_| readable)
                && let Err(e) = crate::net::tls_covers(&files, address)
            {
                found.push(at(
                    format!("node {:?}: {e}", spec.name),
                    "its leaves check the hub's certificate against the host they dial:                      add that name to the certificate (or set advertise)",
                ));
            }
        }
        found
    }

    /// The file this topology was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cluster's name: links only form between nodes of the same cluster.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Where the cluster secret comes from.
    pub fn secret_source(&self) -> &SecretSource {
        &self.secret
    }

    /// The caches every node has, `default` first, each with its effective settings.
    pub fn caches(&self) -> &[(String, CacheTableConfig)] {
        &self.caches
    }

    /// The nodes, in file order.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    /// The node called `name`.
    ///
    /// # Errors
    /// [`TopologyError::UnknownNode`], listing the file's nodes.
    pub fn node(&self, name: &str) -> Result<&NodeSpec, TopologyError> {
        self.find(name).ok_or_else(|| TopologyError::UnknownNode {
            name: name.to_string(),
            path: self.path.clone(),
            known: self
                .nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    pub(super) fn find(&self, name: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Things that are valid but worth a word: a secret written in the file, persistence
    /// settings this version does not act on yet.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// The [`warnings`](Self::warnings) worth logging when nodes start: all but the one about
    /// an unset secret variable, which starting a node reports as its error (one message per
    /// problem).
    pub fn start_warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        let unset = match &self.secret {
            SecretSource::Env(var) if std::env::var_os(var).is_none() => {
                Some(format!("{var} is not set here"))
            }
            _ => None,
        };
        self.warnings
            .iter()
            .filter(move |w| unset.as_deref() != Some(w.message.as_str()))
    }

    /// The tree as text: the cluster, its caches, then each node under its hub with its role and
    /// addresses.
    pub fn render(&self) -> String {
        let mut out = format!(
            "cluster {:?}, secret from {}, {} node(s)\n",
            self.cluster,
            match &self.secret {
                SecretSource::Inline(_) => "the file (development only)".to_string(),
                SecretSource::Env(v) => format!("${v}"),
                SecretSource::File(p) => p.display().to_string(),
            },
            self.nodes.len()
        );
        if let Some(tls) = &self.tls {
            out.push_str(&format!(
                "tls: mutual on links, CA {}{}\n",
                tls.ca.display(),
                if tls.doors { "; doors too" } else { "" }
            ));
        }
        for (name, s) in &self.caches {
            out.push_str(&format!(
                "cache {name:?}: capacity {}, max_bytes {}, ttl {}\n",
                s.capacity.unwrap_or(crate::cache::config::DEFAULT_CAPACITY),
                s.max_bytes
                    .map_or("-".into(), |b| bytesize::ByteSize(b).to_string()),
                s.ttl
                    .map_or("none".into(), |d| humantime::format_duration(d).to_string()),
            ));
        }
        if let Some(map) = self.slot_map() {
            for (i, shard) in map.shards().iter().enumerate() {
                let ranges = map.ranges().into_iter().filter(|r| r.2 == i).count();
                let nodes: Vec<&str> = (self.nodes.iter())
                    .filter(|n| n.shard.as_deref() == Some(shard))
                    .map(|n| n.name.as_str())
                    .collect();
                out.push_str(&format!(
                    "shard {shard:?}: {} slots in {ranges} ranges; nodes {}\n",
                    map.slots_of(i),
                    nodes.join(", ")
                ));
            }
        }
        let children = |parent: Option<&str>| -> Vec<&NodeSpec> {
            self.nodes
                .iter()
                .filter(|n| match (&n.hub, parent) {
                    (Some(HubRef::Node(h)), Some(p)) => h == p,
                    (None | Some(HubRef::Address(_)), None) => true,
                    _ => false,
                })
                .collect()
        };
        fn walk<'a>(
            out: &mut String,
            node: &'a NodeSpec,
            prefix: &str,
            last: Option<bool>,
            children: &dyn Fn(Option<&str>) -> Vec<&'a NodeSpec>,
        ) {
            let (branch, next) = match last {
                None => ("", prefix.to_string()),
                Some(false) => ("├── ", format!("{prefix}│   ")),
                Some(true) => ("└── ", format!("{prefix}    ")),
            };
            out.push_str(&format!("{prefix}{branch}{}", describe(node)));
            out.push('\n');
            let kids = children(Some(&node.name));
            for (i, kid) in kids.iter().enumerate() {
                walk(out, kid, &next, Some(i + 1 == kids.len()), children);
            }
        }
        for root in children(None) {
            walk(&mut out, root, "", None, &children);
        }
        out
    }

    /// The shards of a sharded file, by name (sorted); empty for a file of one tree.
    pub fn shards(&self) -> Vec<String> {
        let mut names: Vec<String> = self.nodes.iter().filter_map(|n| n.shard.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    /// The slot map of a sharded file: which shard holds each of the 16,384 slots.
    pub fn slot_map(&self) -> Option<crate::partition::SlotMap> {
        let shards = self.shards();
        // Checked when the file was read: names are words, at most MAX_SHARDS of them.
        (!shards.is_empty())
            .then(|| crate::partition::SlotMap::new(shards).ok())
            .flatten()
    }

    /// The sharded cluster as node `me` sees it, each node's RESP door as `doors` says it
    /// (the file's address when `doors` has none); `None` for a file of one tree.
    pub(super) fn cluster_of(
        &self,
        me: &str,
        doors: &dyn Fn(&NodeSpec) -> Option<String>,
    ) -> Option<crate::partition::Shards> {
        let members = self.members(doors);
        if members.is_empty() {
            return None;
        }
        crate::partition::Shards::new(members, me).ok()
    }

    /// Each shard's name and nodes, with their doors as [`cluster_of`](Self::cluster_of) takes
    /// them; empty for a file of one tree.
    pub(super) fn members(
        &self,
        doors: &dyn Fn(&NodeSpec) -> Option<String>,
    ) -> Vec<(String, Vec<crate::partition::ShardNode>)> {
        self.shards()
            .into_iter()
            .map(|shard| {
                let nodes = (self.nodes.iter())
                    .filter(|n| n.shard.as_deref() == Some(&shard))
                    .map(|n| crate::partition::ShardNode {
                        name: n.name.clone(),
                        resp: doors(n).or_else(|| n.resp.clone()),
                        // The root of the shard's tree in the file.
                        primary: n.hub.is_none(),
                    })
                    .collect();
                (shard, nodes)
            })
            .collect()
    }

    /// A builder for node `name`, configured from the file: cluster, secret, caches, links,
    /// doors. A hub named in the file is dialed at its `listen` address. Creates the node's root
    /// directory (mode 0700) if it has one.
    ///
    /// # Errors
    /// [`TopologyError::UnknownNode`]; [`TopologyError::Invalid`] pointing at the secret if it
    /// cannot be read now (variable unset, file unreadable or empty), or at the hub if it listens
    /// on port 0 (only `leafcache up`, which starts it in the same process, can find it);
    /// [`TopologyError::Start`] if the root cannot be created.
    pub fn node_builder(&self, name: &str) -> Result<NodeBuilder, TopologyError> {
        let spec = self.node(name)?;
        let mut hubs = Vec::new();
        for hub in spec.hubs() {
            hubs.push(match hub {
                HubRef::Address(a) => a.clone(),
                HubRef::Node(h) => {
                    let hub = self.find(h);
                    let listen =
                        hub.and_then(|n| n.advertise.clone().or_else(|| n.listen.clone()));
                    let listen = listen.unwrap_or_default();
                    if listen.ends_with(":0") {
                        let at = self.nodes.iter().position(|n| n.name == name);
                        return Err(self.invalid_at(
                            at.map_or(0..0, |i| self.name_spans[i].clone()),
                            format!(
                                "hub {h:?} listens on port 0, so {name:?} cannot find it from another process"
                            ),
                            "give the hub a fixed port, or run every node with `leafcache up`",
                        ));
                    }
                    listen
                }
            });
        }
        self.builder_with_hub(spec, hubs)
    }

    /// Starts node `name` (see [`node_builder`](Self::node_builder)). Must run inside a tokio
    /// runtime.
    ///
    /// # Errors
    /// As [`node_builder`](Self::node_builder), and [`TopologyError::Start`] if the node does not
    /// build (a port taken...).
    pub fn start(&self, name: &str) -> Result<Node, TopologyError> {
        build(name, self.node_builder(name)?)
    }

    /// Starts every node of the file in this process, hubs before their leaves; a leaf dials its
    /// hub at the address the hub actually bound, so `listen = "127.0.0.1:0"` works here. Returns
    /// the nodes in file order. Must run inside a tokio runtime.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), leafcache::topology::TopologyError> {
    /// let topology = leafcache::topology::Topology::load("topologies/star.toml")?;
    /// let nodes = topology.start_all().await?;
    /// nodes[1].default_cache().set("greeting", "hello").unwrap(); // at leaf-a
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The first node that cannot start; the nodes started before it are shut down.
    pub async fn start_all(&self) -> Result<Vec<Node>, TopologyError> {
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        order.sort_by_key(|&i| self.depth(i));
        let mut started: HashMap<&str, Node> = HashMap::new();
        for i in order {
            let spec = &self.nodes[i];
            let hubs = (spec.hubs())
                .filter_map(|hub| match hub {
                    HubRef::Address(a) => Some(a.clone()),
                    HubRef::Node(h) => started
                        .get(h.as_str())
                        .and_then(|n| n.local_addr().map(str::to_string)),
                })
                .collect();
            let node = (self.builder_with_hub(spec, hubs)).and_then(|b| build(&spec.name, b));
            match node {
                Ok(node) => {
                    started.insert(&spec.name, node);
                }
                Err(e) => {
                    for node in started.values() {
                        node.shutdown().await;
                    }
                    return Err(e);
                }
            }
        }
        // A sharded file's doors may be on port 0: tell every node where the others bound theirs.
        let doors = |spec: &NodeSpec| {
            (started.get(spec.name.as_str())).and_then(|n| n.resp_addr().map(str::to_string))
        };
        for (name, node) in &started {
            if let Some(shards) = self.cluster_of(name, &doors) {
                node.set_shards(shards)
                    .map_err(|source| TopologyError::Start {
                        name: name.to_string(),
                        source,
                    })?;
            }
        }
        Ok(self
            .nodes
            .iter()
            .filter_map(|s| started.remove(s.name.as_str()))
            .collect())
    }

    /// Hops from the node to the top of its tree within the file, by its longest chain of hubs
    /// (fallback hubs included, so that `start_all` starts every hub of a node before it).
    pub(super) fn depth(&self, i: usize) -> usize {
        fn walk(t: &Topology, i: usize, budget: usize) -> usize {
            if budget == 0 {
                return 0; // a cycle, refused by the checks; bounded here all the same
            }
            (t.nodes[i].hubs())
                .filter_map(|h| match h {
                    HubRef::Node(h) => t.nodes.iter().position(|n| n.name == *h),
                    HubRef::Address(_) => None,
                })
                .map(|h| 1 + walk(t, h, budget - 1))
                .max()
                .unwrap_or(0)
        }
        walk(self, i, self.nodes.len())
    }

    /// An error found after checking (when starting a node), at `span` of the file.
    pub(super) fn invalid_at(
        &self,
        span: Range<usize>,
        message: String,
        help: &str,
    ) -> TopologyError {
        let source = Source {
            path: &self.path,
            text: &self.source,
        };
        TopologyError::Invalid(vec![Diagnostic::at(
            &source,
            span,
            message,
            Some(help.to_string()),
        )])
    }

    pub(super) fn secret(&self) -> Result<String, TopologyError> {
        let fail =
            |message: String, help: &str| self.invalid_at(self.secret_span.clone(), message, help);
        let secret = match &self.secret {
            SecretSource::Inline(s) => s.clone(),
            SecretSource::Env(var) => std::env::var(var).map_err(|_| {
                fail(
                    format!("the cluster secret's variable {var} is not set"),
                    &format!("export {var}=... before starting the node"),
                )
            })?,
            SecretSource::File(p) => std::fs::read_to_string(p)
                .map_err(|e| {
                    fail(
                        format!("cannot read the cluster secret from {}: {e}", p.display()),
                        "create the file (mode 0600) with the secret in it",
                    )
                })?
                .trim()
                .to_string(),
        };
        if secret.is_empty() {
            return Err(fail(
                "the cluster secret is empty".into(),
                "every node of the cluster needs the same non-empty secret",
            ));
        }
        Ok(secret)
    }

    pub(super) fn builder_with_hub(
        &self,
        spec: &NodeSpec,
        hubs: Vec<String>,
    ) -> Result<NodeBuilder, TopologyError> {
        let mut b = Node::builder()
            .name(&spec.name)
            .cluster(&self.cluster)
            .secret(self.secret()?);
        if let Some(t) = self.connection_timeout {
            b = b.connection_timeout(t);
        }
        if let Some(every) = self.anti_entropy {
            b = b.anti_entropy(every);
        }
        for (name, settings) in &self.caches {
            b = if name == DEFAULT_CACHE {
                b.default_cache(settings.config())
            } else {
                b.cache(name, settings.config())
            };
        }
        if let Some(root) = &spec.root {
            b = b.root(root);
            if let Some(every) = spec.snapshot {
                b = b.snapshot_interval(every);
            }
            if let Some(flush) = spec.flush {
                b = b.flush(flush);
            }
        }
        if let Some(a) = &spec.listen {
            b = b.local_address(a);
        }
        if !hubs.is_empty() {
            b = b.remote_addresses(hubs);
        }
        if let Some(a) = &spec.resp {
            b = b.resp_address(a);
        }
        if let Some(a) = &spec.http {
            b = b.http_address(a);
        }
        if let Some(p) = &spec.unix {
            b = b.unix_socket(p);
        }
        if let Some(Hidden(p)) = &self.password {
            b = b.password(p);
        }
        if let Some(files) = self.tls_files(spec) {
            b = b.tls(files);
            b = b.door_tls(self.tls.as_ref().is_some_and(|t| t.doors));
        }
        if let Some(shards) = self.cluster_of(&spec.name, &|_| None) {
            b = b.shards(shards);
        }
        Ok(b)
    }
}

/// Builds node `name`, naming it in the error.
pub(super) fn build(name: &str, builder: NodeBuilder) -> Result<Node, TopologyError> {
    builder.build().map_err(|source| TopologyError::Start {
        name: name.to_string(),
        source,
    })
}

/// One line about a node: name, role, addresses.
pub(super) fn describe(node: &NodeSpec) -> String {
    let mut s = format!("{} ({})", node.name, node.role());
    for (label, value) in [
        ("listen", node.listen.clone()),
        ("advertise", node.advertise.clone()),
        ("resp", node.resp.clone()),
        ("http", node.http.clone()),
        ("unix", node.unix.as_ref().map(|p| p.display().to_string())),
        ("root", node.root.as_ref().map(|p| p.display().to_string())),
    ] {
        if let Some(v) = value {
            s.push_str(&format!(" {label}={v}"));
        }
    }
    if let Some(HubRef::Address(a)) = &node.hub {
        s.push_str(&format!(" hub={a}"));
    }
    if !node.fallback_hubs.is_empty() {
        let names: Vec<&str> = (node.fallback_hubs.iter())
            .map(|h| match h {
                HubRef::Node(n) | HubRef::Address(n) => n.as_str(),
            })
            .collect();
        s.push_str(&format!(" fails over to {}", names.join(", ")));
    }
    s
}
