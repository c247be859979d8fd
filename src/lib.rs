//! leafcache: a peer-to-peer, hub/leaf replicated LRU cache with time expiration.
//!
//! Every node keeps local LRU caches — capacity in entries and bytes, absolute-time expiry, a load
//! callback — and keeps them converged with its hub and leaves over TCP or Unix-socket links. Reads
//! are always served locally; a hit or a local write never waits on the network.
//!
//! ```
//! use leafcache::Cache;
//! let cache = Cache::builder()
//!     .maximum_capacity(100_000)
//!     .expiration_time("1h")
//!     .build()?;
//! cache.set("greeting", "hello")?;
//! assert_eq!(cache.get("greeting").unwrap(), "hello");
//! # Ok::<(), leafcache::Error>(())
//! ```
//!
//! # Layout
//! Layers, bottom to top; each names only the layers below it, and no modules import each other
//! in a circle (`tests/layers.rs` checks both). What a
//! lower layer needs from above reaches it as a port it defines itself, implemented above.
//!
//! | layer | owns |
//! |---|---|
//! | [`clock`], `error` | wall clocks (system, manual, [`clock::RuntimeClock`]), the hybrid logical clock, [`Version`]; [`Error`] |
//! | `cache` | [`Cache`]: sharded LRU store, TTL and sweep, tombstones, change log, loaders, stats; the caches' shared core and its ports — a recorder of applied changes (persistence implements it) and the uplink toward a hub (the driver feeds it) |
//! | [`replication`] | the wire ([`replication::message`], [`replication::codec`]) and [`replication::Link`]: one link's protocol as a state machine without I/O over the [`replication::Replica`] trait, reporting [`replication::LinkEvent`]s |
//! | `persist` | the cache root: identity, writer id and leases, the op log ([`Flush`]), snapshots, restore, damage handling |
//! | [`net`] | the [`net::Transport`] trait ([`net::Sockets`] for TCP and Unix sockets, [`net::MemoryNet`] in memory with faults), the link registry, and the tokio driver: accept, dial with backoff, frames between a connection and a link |
//! | `node` (handle) | the [`Node`] handle, and what its front doors share ([`ServerLimits`], addresses, counters) |
//! | `server` | front doors over the node handle: RESP (TCP and Unix socket; its own parser with limits checked on headers), HTTP (axum), `INFO` and Prometheus text |
//! | `build` | [`NodeBuilder`] and [`CacheBuilder`] (`LRUCacheDistributed`-style), above the node handle and the doors: they bind the doors and wire everything up |
//! | [`topology`] | topology TOML files: the raw file, diagnostics at `file:line:column`, the checked model, starting one node or all of them |

mod build;
mod cache;
pub mod clock;
mod error;
pub mod net;
mod node;
pub mod partition;
mod persist;
pub mod replication;
mod server;
pub mod topology;

pub use build::{CacheBuilder, IntoDuration, NodeBuilder};
pub use cache::merge;
pub use cache::{
    Cache, CacheConfig, CacheStats, Caches, Change, DEFAULT_ORIGIN_TIMEOUT, ENTRY_OVERHEAD,
    EntryInfo, Eviction, Expiry, Kind, LOAD_BUCKETS_MS, Loader, Missing, Origin, SetCondition,
    SetOutcome, Stamped, entry_size,
};
pub use clock::{Clock, ManualClock, NodeId, Timestamp, Version};
pub use error::{BoxError, Error, parse_duration};
pub use node::{
    DEFAULT_ANTI_ENTROPY, DEFAULT_CACHE, DEFAULT_CLUSTER, DEFAULT_CONNECTION_TIMEOUT, Node,
    ReplicationConfig, ServerLimits, ShardHealth,
};
pub use persist::{DEFAULT_FLUSH, DEFAULT_SNAPSHOT_INTERVAL, Flush, PersistStatus, SnapshotReport};
pub use replication::{Direction, LinkError, LinkState, LinkStatus, Role, SyncKind, SyncReport};

/// The README's code blocks, compiled and run as doc tests so that they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
