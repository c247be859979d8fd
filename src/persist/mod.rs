//! Persistence under a node's cache root: the node's identity, snapshots, the op log between them,
//! and the restore that rebuilds the caches at start.
//!
//! Files under the root (directory `0700`, files `0600`):
//!
//! | file | holds |
//! |---|---|
//! | `lock` | locked while a node runs on this root: a second node on it is refused |
//! | `identity` | node id, incarnation, and the leases: no seq and no version timestamp above them was handed out |
//! | `snapshot` | every entry, dead record, purge mark, floor and peer watermark at one point |
//! | `oplog-N` | every change applied after snapshot `N` began, in order; `Close` ends a rotated one |
//! | `leafcache.log.*` | the node's log, written by the `leafcache node` command, rolled daily |
//!
//! **Why restored seqs keep peers on deltas.** Records come back with the seqs they had, the
//! incarnation is the stored one, and the seq counter resumes at the stored lease. A peer's
//! watermark on this node is at most the last seq handed out, so a delta from it misses nothing:
//! seqs this node lost in a crash are never handed out again. Watermarks this node keeps on its peers
//! are op-log entries written after the changes they cover, so a torn tail loses both together and
//! the peer resends what was lost. Damage (a checksum failure in the middle of a file, a segment that
//! lost its tail) breaks that order: the node then forgets every watermark, and its peers send full
//! copies.

pub(crate) mod format;
mod oplog;
mod restore;
mod root;
mod snapshot;
mod task;

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;

pub(crate) use oplog::Journal;
pub(crate) use root::Store;
pub(crate) use task::run;

/// How often a node with a root writes a snapshot when not configured.
pub const DEFAULT_SNAPSHOT_INTERVAL: Duration = Duration::from_secs(300);

/// How often the op log is written out when not configured.
pub const DEFAULT_FLUSH: Flush = Flush::Every(Duration::from_millis(100));

/// Seqs reserved per write of the identity file.
pub(super) const LEASE_BLOCK: u64 = 1 << 20;

/// How far ahead of the clock's reading the clock lease is moved, in raw [`Timestamp`] units
/// (five seconds of physical time): after a crash, the node's first versions are at most this far
/// ahead of the last one it issued.
pub(super) const CLOCK_BLOCK: u64 = 5_000 << 16;

/// Buffered op-log bytes that make the writer flush at once whatever the setting.
pub(super) const PENDING_LIMIT: usize = 256 << 10;

/// An op-log segment this long asks for a snapshot before the interval is over.
pub(super) const SEGMENT_LIMIT: u64 = 256 << 20;

pub(super) const IDENTITY: &str = "identity";
pub(super) const SNAPSHOT: &str = "snapshot";
pub(super) const SNAPSHOT_TMP: &str = "snapshot.tmp";
pub(super) const LOCK: &str = "lock";
pub(super) const SEGMENT_PREFIX: &str = "oplog-";

/// When the op log is written to its file.
///
/// ```
/// use std::time::Duration;
/// use leafcache::Flush;
/// assert_eq!("always".parse::<Flush>()?, Flush::Always);
/// assert_eq!("50ms".parse::<Flush>()?, Flush::Every(Duration::from_millis(50)));
/// assert_eq!("never".parse::<Flush>()?, Flush::Never);
/// assert!("sometimes".parse::<Flush>().is_err());
/// # Ok::<(), leafcache::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// Every change is in the file before the call that made it returns (a local write) or before
    /// its batch is acknowledged (a change from a peer). A crash of the process loses nothing.
    Always,
    /// Changes are written out every this long: a crash loses at most the last interval, which
    /// peers that had it send back.
    Every(Duration),
    /// Changes are written out only when 256 KiB of them are waiting, at a snapshot, and at
    /// shutdown.
    Never,
}

impl std::str::FromStr for Flush {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim() {
            "always" => Ok(Flush::Always),
            "never" => Ok(Flush::Never),
            other => match crate::error::parse_duration("flush", other) {
                Ok(d) if d.is_zero() => Err(Error::ZeroDuration { what: "flush" }),
                Ok(d) => Ok(Flush::Every(d)),
                Err(_) => Err(Error::InvalidConfig {
                    what: "flush",
                    reason: format!(
                        "{other:?} is not \"always\", \"never\" or a duration such as \"100ms\""
                    ),
                }),
            },
        }
    }
}

impl std::fmt::Display for Flush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Flush::Always => f.write_str("always"),
            Flush::Never => f.write_str("never"),
            Flush::Every(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

/// Where and how a node keeps its data on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PersistConfig {
    pub root: PathBuf,
    pub snapshot_every: Duration,
    pub flush: Flush,
}

/// How a node's persistence stands: read with `Node::persistence`, shown in `/health`, INFO and
/// `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PersistStatus {
    /// The root directory.
    pub root: String,
    /// When the op log is written out (`always`, `never` or a period).
    pub flush: String,
    /// When the last snapshot was written (wall ms since the epoch), if one was this run.
    pub last_snapshot_ms: Option<u64>,
    /// That snapshot's file size.
    pub last_snapshot_bytes: u64,
    /// The live entries it held.
    pub last_snapshot_entries: u64,
    /// How long it took to write, in ms.
    pub last_snapshot_duration_ms: u64,
    /// Why the last snapshot attempt failed, if it did (cleared by one that succeeds).
    pub snapshot_error: Option<String>,
    /// Snapshot attempts that failed this run.
    pub snapshot_failures: u64,
    /// Bytes in the op log since the last snapshot (segment headers included).
    pub oplog_bytes: u64,
    /// Op-log bytes appended and not yet written out.
    pub oplog_pending_bytes: u64,
    /// Writes to the op log or the identity file that failed this run.
    pub write_errors: u64,
    /// Why the last such write failed, while they still fail (cleared by one that succeeds).
    pub write_error: Option<String>,
}

impl PersistStatus {
    /// Why persistence is not healthy, if it is not: the last snapshot failed, or writes to the
    /// op log or the identity file do.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(e) = &self.snapshot_error {
            out.push(format!("the last snapshot failed: {e}"));
        }
        if let Some(e) = &self.write_error {
            out.push(format!("writes under the root fail: {e}"));
        }
        out
    }
}

/// What one snapshot wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotReport {
    /// Live entries written.
    pub entries: u64,
    /// Dead records (tombstones and dropped versions) written.
    pub dead: u64,
    /// The snapshot file's size.
    pub bytes: u64,
    /// How long it took.
    pub elapsed: Duration,
}
