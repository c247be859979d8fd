//! Changes: what a cache applies and what replication carries between nodes.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::merge::Merge;
use crate::clock::Version;

/// One change to a cache, as a peer sends it and [`Cache::apply_remote`](super::Cache::apply_remote)
/// takes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// The key holds `value` from `version` on, until `expires_at` (wall-clock ms since the epoch).
    Set {
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
        /// The write's version.
        version: Version,
        /// Absolute expiry instant in ms since the Unix epoch; `None` never expires.
        expires_at: Option<u64>,
    },
    /// The key was deleted at `version`; the receiver keeps a tombstone so an older write cannot
    /// bring it back.
    Delete {
        /// The key.
        key: Bytes,
        /// The delete's version.
        version: Version,
    },
    /// The sender held `version` of the key but dropped it (eviction or expiry), so it cannot send
    /// the value: the receiver drops any older copy rather than keep serving it.
    Invalidate {
        /// The key.
        key: Bytes,
        /// The version the sender dropped.
        version: Version,
    },
    /// Everything in the cache older than `version` is gone.
    Purge {
        /// The purge's version: entries with an older version are removed.
        version: Version,
    },
    /// A key holding a value that merges (a counter, a hash): what changed of its state, joined
    /// into what the receiver holds rather than replacing it.
    Merge(Box<Merge>),
}

impl Change {
    /// The change's version.
    pub fn version(&self) -> Version {
        match self {
            Change::Set { version, .. }
            | Change::Delete { version, .. }
            | Change::Invalidate { version, .. }
            | Change::Purge { version } => *version,
            Change::Merge(m) => m.version,
        }
    }

    /// The key the change is about; `None` for a purge.
    pub fn key(&self) -> Option<&Bytes> {
        match self {
            Change::Set { key, .. }
            | Change::Delete { key, .. }
            | Change::Invalidate { key, .. } => Some(key),
            Change::Merge(m) => Some(&m.key),
            Change::Purge { .. } => None,
        }
    }
}

/// A change with the local sequence number this node stamped on it when it applied it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamped {
    /// The node-local, strictly increasing sequence number of the change.
    pub seq: u64,
    /// The change, as it stands now (compacted: only the latest change per key is kept).
    pub change: Change,
}

/// What one read of a cache's change log covers: the records with `after < seq <= upto`, except
/// those that came in on link `skip` (`LOCAL`, 0: none), with values that merge carried as what
/// changed of them after `since` (what the reader is known to hold all of).
///
/// ```
/// use leafcache::replication::Scan;
/// let scan = Scan { after: 10, upto: 20, since: 10, skip: 0 };
/// assert!(scan.after < scan.upto);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scan {
    /// Records above this seq.
    pub after: u64,
    /// Up to this seq (read from the node's counter before the scan).
    pub upto: u64,
    /// Merged values: the parts changed after this seq.
    pub since: u64,
    /// The link whose changes are left out.
    pub skip: u32,
}

/// How much one read of the change log returns at most: records, and about bytes (a group of
/// changes made together may stretch it; a single larger record still goes alone).
///
/// ```
/// use leafcache::replication::Budget;
/// let budget = Budget { records: 1024, bytes: 256 << 10 };
/// assert!(budget.records > 0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Records, at most.
    pub records: usize,
    /// About this many bytes, at most.
    pub bytes: usize,
}
