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
//! | module | owns |
//! |---|---|
//! | [`clock`] | wall clock (system or manual), hybrid logical clock, [`Version`] |
//! | `cache` | [`Cache`]: sharded LRU store, TTL and sweep, tombstones, change log, loaders, stats |
//! | `cache::shard` | one shard under its lock: the invariants between LRU, log and expiry index |
//! | `node` | [`Node`]: named caches sharing one identity and seq counter; the builders; starting links |
//! | [`replication`] | the wire ([`replication::message`], [`replication::codec`]), [`replication::Link`] (one link's protocol, no I/O), link status, the tokio driver and TCP/Unix transports |
//! | `server` | front doors configured on the [`NodeBuilder`]: the RESP door (TCP and Unix socket; its own parser with limits checked on headers), the HTTP door (axum), `INFO` and Prometheus text, [`ServerLimits`] |
//! | `persist` | the cache root: identity and seq lease, the op log ([`Flush`]), snapshots, restore at start, damage handling |
//! | [`topology`] | topology TOML files: parsing, checks with `file:line:column` diagnostics, starting one node or all of them |
//! | `error` | [`Error`], the library's one error type |

mod cache;
pub mod clock;
mod error;
pub mod net;
mod node;
mod persist;
pub mod replication;
mod server;
pub mod topology;

pub use cache::{
    Cache, CacheConfig, CacheStats, Caches, Change, ENTRY_OVERHEAD, EntryInfo, Expiry, Loader,
    SetCondition, SetOutcome, Stamped,
};
pub use clock::{Clock, ManualClock, NodeId, Timestamp, Version};
pub use error::{BoxError, Error, parse_duration};
pub use node::{
    CacheBuilder, DEFAULT_CACHE, DEFAULT_CLUSTER, DEFAULT_CONNECTION_TIMEOUT, IntoDuration, Node,
    NodeBuilder, ReplicationConfig,
};
pub use persist::{DEFAULT_FLUSH, DEFAULT_SNAPSHOT_INTERVAL, Flush, SnapshotReport};
pub use replication::{Direction, LinkError, LinkState, LinkStatus, Role, SyncKind, SyncReport};
pub use server::ServerLimits;

/// The README's code blocks, compiled and run as doc tests so that they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
