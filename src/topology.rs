//! Topology files: one TOML file describing a deployment (its cluster, cache settings and
//! nodes), parsed and checked with `file:line:column` diagnostics, then started as [`Node`]s.
//!
//! ```toml
//! [cluster]
//! name = "demo"
//! secret_env = "LEAFCACHE_SECRET"     # or secret = "...", or secret_file = "path"
//!
//! [defaults]                          # every cache, unless the cache overrides
//! capacity = 100000
//! max_bytes = "256MiB"
//! ttl = "1h"
//! connection_timeout = "5s"
//!
//! [caches.sessions]
//! capacity = 10000
//! ttl = "30m"
//!
//! [[node]]
//! name = "hub"
//! listen = "127.0.0.1:7400"           # accepts leaves: a hub
//! # advertise = "hub.internal:7400"   # what leaves dial, when not `listen` (0.0.0.0:...)
//! resp = "127.0.0.1:6400"
//!
//! [[node]]
//! name = "leaf-a"
//! hub = "hub"                         # a node of this file, or "host:port" elsewhere
//! http = "127.0.0.1:8401"
//! root = "data/leaf-a"                # keeps its data on disk: restarts with it
//! snapshot = "5m"                     # how often a snapshot is written (default 5m)
//! flush = "100ms"                     # op log: "always", "never" or a period (default 100ms)
//! ```
//!
//! Relative paths resolve against the file's folder; a node's `unix` socket path resolves under
//! its `root` when it has one.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;

use crate::net::Endpoint;
use crate::replication::Role;
use crate::{CacheConfig, DEFAULT_CACHE, Error, Flush, Node, NodeBuilder};

// ----------------------------------------------------------------------------------------------
// The file as written. Every table refuses unknown keys, so a typo is an error at its position.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    cluster: Option<Spanned<RawCluster>>,
    defaults: Option<RawCache>,
    #[serde(default)]
    caches: BTreeMap<Spanned<String>, RawCache>,
    #[serde(default)]
    node: Vec<Spanned<RawNode>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: Option<Spanned<String>>,
    secret: Option<Spanned<String>>,
    secret_env: Option<Spanned<String>>,
    secret_file: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCache {
    capacity: Option<Spanned<u64>>,
    max_bytes: Option<Size>,
    ttl: Option<Human>,
    tombstone_ttl: Option<Human>,
    connection_timeout: Option<Spanned<Human>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Spanned<String>,
    listen: Option<Spanned<String>>,
    hub: Option<Spanned<String>>,
    resp: Option<Spanned<String>>,
    http: Option<Spanned<String>>,
    unix: Option<Spanned<String>>,
    root: Option<Spanned<String>>,
    snapshot: Option<Spanned<Human>>,
    flush: Option<Spanned<String>>,
    loglevel: Option<Spanned<String>>,
    advertise: Option<Spanned<String>>,
}

/// A human duration (`"120s"`, `"30m"`, `"1d"`) or whole seconds; never zero.
struct Human(Duration);

/// A byte size: a number of bytes or a string such as `"256MiB"`, `"1GB"`; never zero.
struct Size(u64);

/// A quantity written as a whole number or as text, never zero: what durations and sizes share.
trait Quantity: Sized {
    /// "duration", "size".
    const WHAT: &'static str;
    /// Valid spellings, for the error message.
    const EXAMPLES: &'static str;
    fn from_number(n: u64) -> Self;
    fn from_text(s: &str) -> Result<Self, String>;
    fn is_zero(&self) -> bool;
}

impl Quantity for Human {
    const WHAT: &'static str = "duration";
    const EXAMPLES: &'static str = "\"120s\", \"30m\", \"1h 30m\", \"1d\" or 120 (seconds)";
    fn from_number(n: u64) -> Self {
        Human(Duration::from_secs(n))
    }
    fn from_text(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s.trim())
            .map(Human)
            .map_err(|e| e.to_string())
    }
    fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

impl Quantity for Size {
    const WHAT: &'static str = "size";
    const EXAMPLES: &'static str = "\"64MiB\", \"1GB\" or 1048576 (bytes)";
    fn from_number(n: u64) -> Self {
        Size(n)
    }
    fn from_text(s: &str) -> Result<Self, String> {
        s.trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| Size(b.as_u64()))
    }
    fn is_zero(&self) -> bool {
        self.0 == 0
    }
}

struct QuantityVisitor<T>(std::marker::PhantomData<T>);

impl<T: Quantity> Visitor<'_> for QuantityVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} such as {}", T::WHAT, T::EXAMPLES)
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<T, E> {
        let q = u64::try_from(n).map_or_else(|_| T::from_number(0), T::from_number);
        if q.is_zero() {
            return Err(E::custom(format!(
                "invalid {} {n}: must be more than zero",
                T::WHAT
            )));
        }
        Ok(q)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        match T::from_text(s) {
            Ok(q) if q.is_zero() => Err(E::custom(format!(
                "invalid {} {s:?}: must be more than zero",
                T::WHAT
            ))),
            Ok(q) => Ok(q),
            Err(e) => Err(E::custom(format!(
                "invalid {} {s:?}: {e} (examples: {})",
                T::WHAT,
                T::EXAMPLES
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for Human {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(QuantityVisitor(std::marker::PhantomData))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(QuantityVisitor(std::marker::PhantomData))
    }
}

// ----------------------------------------------------------------------------------------------
// Diagnostics.

/// One problem in a topology file, with where it is and how to fix it.
///
/// Its `Display` is `file:line:column: error: message`, then the line with the spot marked, then the
/// help: the first line alone is a complete, greppable error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// An error (the file is invalid) or a warning.
    pub severity: Severity,
    /// The file, as it was given.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when there is more to say than the message.
    pub help: Option<String>,
    text: String,
    width: usize,
}

impl Diagnostic {
    fn at(source: &Source<'_>, span: Range<usize>, message: String, help: Option<String>) -> Self {
        let start = span.start.min(source.text.len());
        let line_start = source.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source.text[start..]
            .find('\n')
            .map_or(source.text.len(), |i| start + i);
        let text = source.text[line_start..line_end].trim_end_matches('\r');
        let line = source.text[..start].matches('\n').count() + 1;
        let column = source.text[line_start..start].chars().count() + 1;
        let end = span.end.clamp(start, line_end);
        Diagnostic {
            severity: Severity::Error,
            path: source.path.to_path_buf(),
            line,
            column,
            message,
            help,
            text: text.to_string(),
            width: source.text[start..end].chars().count().max(1),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.severity,
            self.message
        )?;
        let gutter = self.line.to_string().len();
        write!(f, "\n {:>gutter$} | {}", self.line, self.text)?;
        let pad: String = self
            .text
            .chars()
            .take(self.column - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(f, "\n {:>gutter$} | {pad}{}", "", "^".repeat(self.width))?;
        if let Some(help) = &self.help {
            write!(f, "\n {:>gutter$} = help: {help}", "")?;
        }
        Ok(())
    }
}

/// How bad a [`Diagnostic`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The file is invalid.
    Error,
    /// Valid, but worth a word.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// Why a topology could not be read, checked or started.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TopologyError {
    /// The file could not be read.
    #[error("cannot read topology {}: {reason}", path.display())]
    Read {
        /// The file, as given.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The file is not a valid topology: every problem found, in file order.
    #[error("{}", display_all(.0))]
    Invalid(Vec<Diagnostic>),
    /// No node of that name in the file.
    #[error("no node named {name:?} in {}; its nodes are: {known}", path.display())]
    UnknownNode {
        /// The name asked for.
        name: String,
        /// The file.
        path: PathBuf,
        /// The names it has, comma-separated.
        known: String,
    },
    /// A node of a valid file failed to start (a port taken, a socket path not writable...).
    #[error("node {name:?}: {source}")]
    Start {
        /// The node's name.
        name: String,
        /// Why.
        source: Error,
    },
}

impl TopologyError {
    /// The diagnostics of an [`Invalid`](Self::Invalid) file; empty for other errors.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            TopologyError::Invalid(d) => d,
            _ => &[],
        }
    }
}

fn display_all(diagnostics: &[Diagnostic]) -> String {
    let all: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    all.join("\n")
}

struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

// ----------------------------------------------------------------------------------------------
// The checked topology.

/// Cache settings from `[defaults]` or `[caches.NAME]`; unset fields take the defaults', then
/// the library's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheSettings {
    /// Entries the cache holds.
    pub capacity: Option<u64>,
    /// Bytes the cache holds (keys + values + per-entry overhead).
    pub max_bytes: Option<u64>,
    /// Default time to live of an entry.
    pub ttl: Option<Duration>,
    /// How long the record of a deleted, evicted or expired key is kept for resyncs.
    pub tombstone_ttl: Option<Duration>,
}

impl CacheSettings {
    fn over(&self, base: &CacheSettings) -> CacheSettings {
        CacheSettings {
            capacity: self.capacity.or(base.capacity),
            max_bytes: self.max_bytes.or(base.max_bytes),
            ttl: self.ttl.or(base.ttl),
            tombstone_ttl: self.tombstone_ttl.or(base.tombstone_ttl),
        }
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
    /// The peer address it accepts leaves on (makes it a hub).
    pub listen: Option<String>,
    /// Its hub (makes it a leaf).
    pub hub: Option<HubRef>,
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
}

impl NodeSpec {
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
/// let broken = Topology::parse("[[node]]\nname = \"a\"\nhbu = \"b\"\n", "broken.toml");
/// let error = broken.unwrap_err();
/// let first = &error.diagnostics()[0];
/// assert_eq!((first.line, first.column), (3, 1));
/// assert!(error.to_string().starts_with("broken.toml:3:1: error: unknown field `hbu`"));
/// # Ok::<(), leafcache::topology::TopologyError>(())
/// ```
#[derive(Clone)]
pub struct Topology {
    path: PathBuf,
    source: String,
    cluster: String,
    secret: SecretSource,
    secret_span: Range<usize>,
    connection_timeout: Option<Duration>,
    caches: Vec<(String, CacheSettings)>,
    nodes: Vec<NodeSpec>,
    /// Where each node's `name` value is, for errors found when starting it.
    name_spans: Vec<Range<usize>>,
    warnings: Vec<Diagnostic>,
    password: Option<Hidden>,
}

/// Without the file's text, which may hold a development secret.
impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topology")
            .field("path", &self.path)
            .field("cluster", &self.cluster)
            .field("secret", &self.secret)
            .field("connection_timeout", &self.connection_timeout)
            .field("caches", &self.caches)
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

/// A string `Debug` does not print.
#[derive(Clone)]
struct Hidden(String);

impl fmt::Debug for Hidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(hidden)")
    }
}

impl Topology {
    /// Reads and checks the file at `path`.
    ///
    /// # Errors
    /// [`TopologyError::Read`] if it cannot be read, [`TopologyError::Invalid`] with every
    /// problem found otherwise.
    pub fn load(path: impl AsRef<Path>) -> Result<Topology, TopologyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| TopologyError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Topology::parse(&text, path)
    }

    /// Checks `text` as the file at `path` (which names it in diagnostics and anchors its
    /// relative paths; it is not read).
    ///
    /// # Errors
    /// [`TopologyError::Invalid`] with every problem found: a TOML syntax error or a value of the
    /// wrong type stops at the first; the rest (unknown hub, a cycle, a node that is its own hub,
    /// duplicate names or addresses, no secret) are all reported.
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Topology, TopologyError> {
        let source = Source {
            path: path.as_ref(),
            text,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            TopologyError::Invalid(vec![Diagnostic::at(
                &source,
                span,
                e.message().to_string(),
                None,
            )])
        })?;
        Checker::new(&source).check(raw)
    }

    /// Sets the front-door password (RESP `AUTH`, HTTP bearer token) of every node started from
    /// this topology. It is kept out of the file on purpose: pass it from the environment.
    #[must_use]
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Hidden(password.into()));
        self
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
    pub fn caches(&self) -> &[(String, CacheSettings)] {
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

    fn find(&self, name: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Things that are valid but worth a word: a secret written in the file, persistence
    /// settings this version does not act on yet.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
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
        let hub = match &spec.hub {
            None => None,
            Some(HubRef::Address(a)) => Some(a.clone()),
            Some(HubRef::Node(h)) => {
                let hub = self.find(h);
                let listen = hub.and_then(|n| n.advertise.clone().or_else(|| n.listen.clone()));
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
                Some(listen)
            }
        };
        self.builder_with_hub(spec, hub)
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
            let hub = match &spec.hub {
                None => None,
                Some(HubRef::Address(a)) => Some(a.clone()),
                Some(HubRef::Node(h)) => started
                    .get(h.as_str())
                    .and_then(|n| n.local_addr().map(str::to_string)),
            };
            let node = (self.builder_with_hub(spec, hub)).and_then(|b| build(&spec.name, b));
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
        Ok(self
            .nodes
            .iter()
            .filter_map(|s| started.remove(s.name.as_str()))
            .collect())
    }

    /// Hops from the node to the top of its tree within the file.
    fn depth(&self, i: usize) -> usize {
        let mut depth = 0;
        let mut at = &self.nodes[i];
        while let Some(HubRef::Node(h)) = &at.hub {
            match self.find(h) {
                Some(n) if depth < self.nodes.len() => {
                    at = n;
                    depth += 1;
                }
                _ => break,
            }
        }
        depth
    }

    /// An error found after checking (when starting a node), at `span` of the file.
    fn invalid_at(&self, span: Range<usize>, message: String, help: &str) -> TopologyError {
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

    fn secret(&self) -> Result<String, TopologyError> {
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

    fn builder_with_hub(
        &self,
        spec: &NodeSpec,
        hub: Option<String>,
    ) -> Result<NodeBuilder, TopologyError> {
        let mut b = Node::builder()
            .name(&spec.name)
            .cluster(&self.cluster)
            .secret(self.secret()?);
        if let Some(t) = self.connection_timeout {
            b = b.connection_timeout(t);
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
        if let Some(a) = hub {
            b = b.remote_address(a);
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
        Ok(b)
    }
}

/// Builds node `name`, naming it in the error.
fn build(name: &str, builder: NodeBuilder) -> Result<Node, TopologyError> {
    builder.build().map_err(|source| TopologyError::Start {
        name: name.to_string(),
        source,
    })
}

/// One line about a node: name, role, addresses.
fn describe(node: &NodeSpec) -> String {
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
    s
}

// ----------------------------------------------------------------------------------------------
// Checking.

struct Checker<'a> {
    source: &'a Source<'a>,
    dir: PathBuf,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

/// A node as read, with the spans the cross-node checks point at.
struct Placed {
    spec: NodeSpec,
    name: Range<usize>,
    hub: Option<Range<usize>>,
    listen: Option<Range<usize>>,
    resp: Option<Range<usize>>,
    http: Option<Range<usize>>,
    unix: Option<Range<usize>>,
}

impl<'a> Checker<'a> {
    fn new(source: &'a Source<'a>) -> Self {
        let dir = source
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Checker {
            source,
            dir,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn error(&mut self, span: Range<usize>, message: String, help: impl Into<Option<String>>) {
        let d = Diagnostic::at(self.source, span, message, help.into());
        self.errors.push(d);
    }

    fn warn(&mut self, span: Range<usize>, message: String, help: impl Into<Option<String>>) {
        let mut d = Diagnostic::at(self.source, span, message, help.into());
        d.severity = Severity::Warning;
        self.warnings.push(d);
    }

    fn check(mut self, raw: RawFile) -> Result<Topology, TopologyError> {
        let (cluster, secret, secret_span) = self.cluster(raw.cluster);
        let defaults = raw.defaults.unwrap_or_default();
        let connection_timeout = defaults.connection_timeout.as_ref().map(|t| t.get_ref().0);
        let defaults = self.cache_settings(&defaults);
        let mut caches = vec![(DEFAULT_CACHE.to_string(), defaults.clone())];
        for (name, raw_cache) in &raw.caches {
            if let Some(t) = &raw_cache.connection_timeout {
                self.error(
                    t.span(),
                    "connection_timeout is a node setting, not a cache's".into(),
                    "set it under [defaults]".to_string(),
                );
            }
            let settings = self.cache_settings(raw_cache).over(&defaults);
            if name.get_ref().trim().is_empty() {
                self.error(
                    name.span(),
                    "a cache name cannot be empty".into(),
                    "name it: [caches.sessions]".to_string(),
                );
            } else if name.get_ref() == DEFAULT_CACHE {
                caches[0].1 = settings;
            } else {
                caches.push((name.get_ref().clone(), settings));
            }
        }
        if raw.node.is_empty() {
            self.error(
                self.source.text.len()..self.source.text.len(),
                "the topology has no nodes".into(),
                "add at least one [[node]] table with a name".to_string(),
            );
        }
        let placed: Vec<Placed> = raw.node.into_iter().map(|n| self.node(n)).collect();
        self.cross_check(&placed);
        if !self.errors.is_empty() {
            self.errors.sort_by_key(|d| (d.line, d.column));
            return Err(TopologyError::Invalid(self.errors));
        }
        Ok(Topology {
            path: self.source.path.to_path_buf(),
            source: self.source.text.to_string(),
            cluster,
            secret,
            secret_span,
            connection_timeout,
            caches,
            name_spans: placed.iter().map(|p| p.name.clone()).collect(),
            nodes: placed.into_iter().map(|p| p.spec).collect(),
            warnings: self.warnings,
            password: None,
        })
    }

    fn cluster(
        &mut self,
        raw: Option<Spanned<RawCluster>>,
    ) -> (String, SecretSource, Range<usize>) {
        let missing_help = "add to [cluster] one of: secret_env = \"LEAFCACHE_SECRET\", \
                            secret_file = \"secret.txt\", or (development only) secret = \"...\"";
        let Some(raw) = raw else {
            self.error(
                0..0,
                "the topology has no [cluster] table, so no cluster secret".into(),
                missing_help.to_string(),
            );
            return (
                crate::DEFAULT_CLUSTER.into(),
                SecretSource::Env(String::new()),
                0..0,
            );
        };
        let span = raw.span();
        let raw = raw.into_inner();
        let name = match raw.name {
            Some(n) if n.get_ref().trim().is_empty() => {
                self.error(n.span(), "the cluster name cannot be empty".into(), None);
                String::new()
            }
            Some(n) => n.into_inner(),
            None => crate::DEFAULT_CLUSTER.into(),
        };
        let mut given: Vec<(SecretSource, Range<usize>)> = Vec::new();
        if let Some(s) = raw.secret {
            if s.get_ref().is_empty() {
                self.error(s.span(), "the cluster secret is empty".into(), None);
            }
            self.warn(
                s.span(),
                "the cluster secret is written in the topology file: fine for development only"
                    .into(),
                "in production use secret_env or secret_file".to_string(),
            );
            given.push((SecretSource::Inline(s.get_ref().clone()), s.span()));
        }
        if let Some(v) = raw.secret_env {
            if v.get_ref().is_empty() || v.get_ref().contains('=') {
                self.error(
                    v.span(),
                    format!("{:?} is not an environment variable name", v.get_ref()),
                    None,
                );
            }
            if std::env::var_os(v.get_ref()).is_none() {
                self.warn(
                    v.span(),
                    format!("{} is not set here", v.get_ref()),
                    "a node started from this environment would refuse to start".to_string(),
                );
            }
            given.push((SecretSource::Env(v.get_ref().clone()), v.span()));
        }
        if let Some(f) = raw.secret_file {
            let path = self.dir.join(f.get_ref());
            self.check_secret_file(&path, f.span());
            given.push((SecretSource::File(path), f.span()));
        }
        match given.len() {
            0 => {
                self.error(
                    span.clone(),
                    "the cluster has no secret".into(),
                    missing_help.to_string(),
                );
                (name, SecretSource::Env(String::new()), span)
            }
            1 => {
                let (s, span) = given.pop().expect("one");
                (name, s, span)
            }
            _ => {
                self.error(
                    given[1].1.clone(),
                    "the cluster secret is given more than once".into(),
                    "keep one of secret, secret_env, secret_file".to_string(),
                );
                let (s, span) = given.swap_remove(0);
                (name, s, span)
            }
        }
    }

    /// Warns about a secret file that is missing or that other users can read.
    fn check_secret_file(&mut self, path: &Path, span: Range<usize>) {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(path) {
            Err(e) => self.warn(
                span,
                format!("cannot read {} here: {e}", path.display()),
                "a node started on this machine would refuse to start".to_string(),
            ),
            Ok(m) if m.permissions().mode() & 0o077 != 0 => self.warn(
                span,
                format!(
                    "{} is readable by other users (mode {:o})",
                    path.display(),
                    m.permissions().mode() & 0o777
                ),
                format!("chmod 600 {}", path.display()),
            ),
            Ok(_) => {}
        }
    }

    fn cache_settings(&mut self, raw: &RawCache) -> CacheSettings {
        if let Some(c) = &raw.capacity
            && *c.get_ref() == 0
        {
            self.error(c.span(), "capacity must be at least 1 entry".into(), None);
        }
        CacheSettings {
            capacity: raw.capacity.as_ref().map(|c| *c.get_ref()),
            max_bytes: raw.max_bytes.as_ref().map(|s| s.0),
            ttl: raw.ttl.as_ref().map(|t| t.0),
            tombstone_ttl: raw.tombstone_ttl.as_ref().map(|t| t.0),
        }
    }

    fn node(&mut self, raw: Spanned<RawNode>) -> Placed {
        let raw = raw.into_inner();
        let name = raw.name.get_ref().trim().to_string();
        if name.is_empty() || name.contains(char::is_whitespace) {
            self.error(
                raw.name.span(),
                format!("{:?} is not a node name", raw.name.get_ref()),
                "a node name is a non-empty word, e.g. \"leaf-a\"".to_string(),
            );
        }
        // `join` keeps an absolute path as it is and puts a relative one under the base.
        let root = raw.root.as_ref().map(|r| self.dir.join(r.get_ref()));
        let socket_base = root.clone().unwrap_or_else(|| self.dir.clone());
        let listen = raw.listen.as_ref().and_then(|l| {
            let value = l.get_ref().trim();
            let value = match value.strip_prefix("unix:") {
                Some(p) if !p.is_empty() => {
                    format!("unix:{}", socket_base.join(p).display())
                }
                _ => value.to_string(),
            };
            match Endpoint::parse("listen", &value) {
                Ok(_) => Some(value),
                Err(e) => {
                    self.error(l.span(), reason(&e), None);
                    None
                }
            }
        });
        let advertise = raw.advertise.as_ref().and_then(|a| {
            let value = a.get_ref().trim();
            if raw.listen.is_none() {
                self.error(
                    a.span(),
                    "advertise without listen: only a hub has an address to advertise".into(),
                    "add listen = \"0.0.0.0:PORT\", or remove advertise".to_string(),
                );
            }
            match Endpoint::parse("advertise", value) {
                Ok(_) => Some(value.to_string()),
                Err(e) => {
                    self.error(a.span(), reason(&e), None);
                    None
                }
            }
        });
        let hub = raw.hub.as_ref().and_then(|h| {
            let value = h.get_ref().trim();
            if value.contains(':') {
                match Endpoint::parse("hub", value) {
                    Ok(_) => Some(HubRef::Address(value.to_string())),
                    Err(e) => {
                        self.error(h.span(), reason(&e), None);
                        None
                    }
                }
            } else {
                Some(HubRef::Node(value.to_string()))
            }
        });
        let door = |checker: &mut Self, what: &'static str, d: &Option<Spanned<String>>| {
            d.as_ref().and_then(
                |d| match crate::server::door_address(what, d.get_ref().trim()) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        checker.error(
                            d.span(),
                            reason(&e),
                            "a door is host:port, or a bare port for 127.0.0.1".to_string(),
                        );
                        None
                    }
                },
            )
        };
        let resp = door(self, "resp", &raw.resp);
        let http = door(self, "http", &raw.http);
        let unix = raw.unix.as_ref().map(|u| socket_base.join(u.get_ref()));
        if let Some(l) = &raw.loglevel
            && let Err(e) = check_loglevel(l.get_ref())
        {
            self.error(
                l.span(),
                format!("invalid loglevel {:?}: {e}", l.get_ref()),
                "use error, warn, info, debug or trace, or a filter like \"leafcache=debug\""
                    .to_string(),
            );
        }
        let flush = raw
            .flush
            .as_ref()
            .and_then(|f| match f.get_ref().parse::<Flush>() {
                Ok(flush) => Some(flush),
                Err(e) => {
                    self.error(
                        f.span(),
                        e.to_string(),
                        "use \"always\", \"never\", or a period such as \"100ms\"".to_string(),
                    );
                    None
                }
            });
        if raw.root.is_none() {
            for (key, span) in [
                ("snapshot", raw.snapshot.as_ref().map(Spanned::span)),
                ("flush", raw.flush.as_ref().map(Spanned::span)),
            ] {
                if let Some(span) = span {
                    self.error(
                        span,
                        format!("{key} without root: this node keeps no data on disk"),
                        "add root = \"data/NODE\", or remove it".to_string(),
                    );
                }
            }
        }
        Placed {
            spec: NodeSpec {
                name,
                listen,
                hub,
                resp,
                http,
                unix,
                root,
                snapshot: raw.snapshot.as_ref().map(|s| s.get_ref().0),
                flush,
                loglevel: raw.loglevel.map(Spanned::into_inner),
                advertise,
            },
            name: raw.name.span(),
            hub: raw.hub.as_ref().map(Spanned::span),
            listen: raw.listen.as_ref().map(Spanned::span),
            resp: raw.resp.as_ref().map(Spanned::span),
            http: raw.http.as_ref().map(Spanned::span),
            unix: raw.unix.as_ref().map(Spanned::span),
        }
    }

    fn cross_check(&mut self, nodes: &[Placed]) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            if let Some(&first) = names.get(n.spec.name.as_str()) {
                let line =
                    Diagnostic::at(self.source, nodes[first].name.clone(), String::new(), None)
                        .line;
                self.error(
                    n.name.clone(),
                    format!(
                        "a second node is named {:?} (the first is on line {line})",
                        n.spec.name
                    ),
                    "node names must be unique".to_string(),
                );
            } else {
                names.insert(&n.spec.name, i);
            }
        }
        let known = nodes
            .iter()
            .map(|n| n.spec.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let mut warned = std::collections::HashSet::new();
        for n in nodes {
            let (Some(HubRef::Node(hub)), Some(span)) = (&n.spec.hub, &n.hub) else {
                continue;
            };
            if *hub == n.spec.name {
                self.error(
                    span.clone(),
                    format!("node {:?} is its own hub", n.spec.name),
                    "name another node, or remove `hub` to make this node a root".to_string(),
                );
                continue;
            }
            match names.get(hub.as_str()) {
                None => self.error(
                    span.clone(),
                    format!("unknown hub {hub:?}"),
                    format!(
                        "hub is the name of a node in this file ({known}) or the host:port of a hub elsewhere"
                    ),
                ),
                Some(&h) if nodes[h].spec.listen.is_none() && nodes[h].listen.is_none() => self
                    .error(
                        span.clone(),
                        format!("hub {hub:?} has no listen address, so {:?} cannot link to it", n.spec.name),
                        format!("add listen = \"127.0.0.1:PORT\" to the node {hub:?}"),
                    ),
                Some(&h) => {
                    let target = &nodes[h];
                    if target.spec.advertise.is_none()
                        && let (Some(listen), Some(at)) = (&target.spec.listen, &target.listen)
                        && is_unspecified(listen)
                        && warned.insert(h)
                    {
                        self.warn(
                            at.clone(),
                            format!(
                                "{listen} accepts on every interface, but leaves dial it as written, which reaches only this host"
                            ),
                            "add advertise = \"HOST:PORT\": the address the leaves should dial".to_string(),
                        );
                    }
                }
            }
        }
        // Cycles: follow each chain of hubs; a chain that comes back to a node already on it is
        // a cycle, reported once, at the first of its nodes in the file.
        let mut reported = vec![false; nodes.len()];
        for start in 0..nodes.len() {
            let mut path = vec![start];
            let mut at = start;
            while let Some(HubRef::Node(h)) = &nodes[at].spec.hub {
                let Some(&next) = names.get(h.as_str()) else {
                    break;
                };
                if next == at {
                    break; // its own hub: reported above
                }
                if let Some(pos) = path.iter().position(|&p| p == next) {
                    let cycle = &path[pos..];
                    if cycle.iter().all(|&c| !reported[c]) {
                        let first = *cycle.iter().min().expect("non-empty");
                        let mut names_in: Vec<&str> =
                            cycle.iter().map(|&c| nodes[c].spec.name.as_str()).collect();
                        names_in.push(names_in[0]);
                        self.error(
                            nodes[first].hub.clone().unwrap_or(0..0),
                            format!("hubs form a cycle: {}", names_in.join(" -> ")),
                            "a tree needs a root: remove `hub` from one of these nodes".to_string(),
                        );
                        for &c in cycle {
                            reported[c] = true;
                        }
                    }
                    break;
                }
                path.push(next);
                at = next;
            }
        }
        // Addresses: every bound address once across the file (port 0 is the OS's choice).
        let mut seen: HashMap<String, (String, &'static str)> = HashMap::new();
        for n in nodes {
            let spans = [
                ("listen", n.spec.listen.clone(), n.listen.clone()),
                ("resp", n.spec.resp.clone(), n.resp.clone()),
                ("http", n.spec.http.clone(), n.http.clone()),
                (
                    "unix",
                    n.spec
                        .unix
                        .as_ref()
                        .map(|p| format!("unix:{}", p.display())),
                    n.unix.clone(),
                ),
            ];
            for (what, addr, span) in spans {
                let Some(addr) = addr else { continue };
                if addr.ends_with(":0") {
                    continue;
                }
                if let Some((other, other_what)) = seen.get(&addr) {
                    self.error(
                        span.unwrap_or_else(|| n.name.clone()),
                        format!("{addr} is already used by node {other:?} ({other_what})"),
                        "every listen, resp, http and unix address must be unique".to_string(),
                    );
                } else {
                    seen.insert(addr, (n.spec.name.clone(), what));
                }
            }
        }
    }
}

/// A log filter: a level, or `target=level` directives. A bare word that is not a level would be
/// read by `EnvFilter` as a target name (so `"verbose"` would silence everything): refused.
fn check_loglevel(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    for directive in filter.split(',').map(str::trim) {
        if !directive.contains('=') && !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            return Err(format!("{directive:?} is not a level"));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// `0.0.0.0:port` or `[::]:port`: bound on every interface, reachable by that name from nowhere
/// but this host.
fn is_unspecified(addr: &str) -> bool {
    addr.trim()
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_unspecified())
}

/// The reason of a config error, without the `invalid <what>:` its Display puts first.
fn reason(e: &Error) -> String {
    match e {
        Error::InvalidConfig { what, reason } => format!("invalid {what}: {reason}"),
        other => other.to_string(),
    }
}
