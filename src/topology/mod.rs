//! Topology files: one TOML file describing a deployment (its cluster, cache settings and
//! nodes), parsed and checked with `file:line:column` diagnostics, then started as [`Node`](crate::Node)s.
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
//! anti_entropy = "60s"                # or "off": how often each link compares digests
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

mod check;
mod diagnostics;
mod model;
mod raw;
mod reload;
mod sharding;

pub use diagnostics::{Diagnostic, Severity, TopologyError};
pub use model::{CacheTableConfig, ClusterTls, HubRef, NodeSpec, SecretSource, Topology};
pub use reload::{Applied, ReloadPlan};
