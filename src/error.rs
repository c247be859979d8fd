//! The library's error type: every way a cache operation or a configuration can fail.

use std::sync::Arc;
use std::time::Duration;

/// The boxed error a load callback returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in leafcache's library API.
///
/// `Error` is `Clone` so that one loader failure can be handed to every caller that waited on it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A capacity (entries or bytes) was configured as zero; a cache must be able to hold something.
    #[error("{what} must be at least 1 (got 0)")]
    ZeroCapacity {
        /// Which setting was zero, e.g. `maximum_capacity`.
        what: &'static str,
    },

    /// A time-to-live of zero was given: an entry that expires as it is written is a mistake.
    #[error("{what} must be longer than zero")]
    ZeroDuration {
        /// Which setting was zero, e.g. `expiration_time`.
        what: &'static str,
    },

    /// A duration string could not be read (`"120s"`, `"30m"`, `"1d"` are valid).
    #[error(
        "invalid duration {input:?} for {what}: {reason} (examples: \"120s\", \"30m\", \"1d\")"
    )]
    InvalidDuration {
        /// Which setting held the string.
        what: &'static str,
        /// The string as given.
        input: String,
        /// Why it could not be read.
        reason: String,
    },

    /// Any other invalid setting, with the setting's name and what is expected.
    #[error("invalid {what}: {reason}")]
    InvalidConfig {
        /// The setting's name.
        what: &'static str,
        /// What is wrong and what is expected instead.
        reason: String,
    },

    /// An entry is larger than one shard of the cache may hold. Nothing was evicted to make room.
    #[error(
        "entry of {size} bytes (key + value + overhead) exceeds the cache's per-entry limit of {limit} bytes"
    )]
    ValueTooLarge {
        /// The entry's accounted size in bytes.
        size: usize,
        /// The largest entry this cache accepts, in bytes.
        limit: usize,
    },

    /// The key holds a value of another type than the call works on (a hash read as a string, a
    /// counter read as a hash).
    #[error("the key holds a value of another type")]
    WrongType,

    /// An increment was refused, changing nothing: the value is no number, or the result would
    /// overflow or be NaN or infinite.
    #[error("increment refused: {0}")]
    NotCounted(NotCounted),

    /// The named cache does not exist on this node.
    #[error("unknown cache {0:?}")]
    UnknownCache(String),

    /// `get_or_load` was called on a cache that has no load callback.
    #[error("cache {0:?} has no load callback")]
    NoLoader(String),

    /// The load callback failed; the error is shared by every caller that waited on that load, and
    /// nothing was cached.
    #[error("load callback failed: {0}")]
    Load(Arc<dyn std::error::Error + Send + Sync + 'static>),

    /// A typed value could not be encoded or decoded (`set_as` / `get_as`).
    #[error("value (de)serialization failed: {0}")]
    Serde(Arc<serde_json::Error>),
    /// An acknowledged write was asked of a node that has no hub.
    #[error("this node has no hub to acknowledge the write")]
    NoUpstream,
    /// Something awaited did not happen in time.
    #[error("no {what} within {after:?}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long it was awaited.
        after: std::time::Duration,
    },
    /// The root is locked by another running node (another process, or another node in this
    /// one). Processes that share a root tell this apart from a bad root: whoever holds it serves.
    #[error("invalid root: {0} is in use by another running node")]
    RootInUse(String),
    /// A snapshot was asked of a node that keeps no data on disk.
    #[error("this node has no root: it keeps its data in memory only")]
    NoRoot,
    /// A socket could not be opened: binding the listen address, for instance.
    #[error("{what}: {reason}")]
    Io {
        /// What was being done, with the address.
        what: String,
        /// The system's error.
        reason: String,
    },
}

impl Error {
    pub(crate) fn load(e: BoxError) -> Self {
        Error::Load(Arc::from(e))
    }
}

/// Parses a human duration such as `"120s"`, `"30m"`, `"1h 30m"` or `"1d"`.
///
/// `what` names the setting, so the error can say which one was wrong.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(leafcache::parse_duration("ttl", "2m").unwrap(), Duration::from_secs(120));
/// assert!(leafcache::parse_duration("ttl", "soon").is_err());
/// ```
pub fn parse_duration(what: &'static str, input: &str) -> Result<Duration, Error> {
    humantime::parse_duration(input.trim()).map_err(|e| Error::InvalidDuration {
        what,
        input: input.to_string(),
        reason: e.to_string(),
    })
}

/// Why an increment was refused; each maps to one Redis error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotCounted {
    /// The value is not an integer (or, for a float increment, not a number).
    NotANumber,
    /// The result would leave the `i64` range.
    Overflow,
    /// The result would be NaN or infinite.
    NotFinite,
}

impl std::fmt::Display for NotCounted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotCounted::NotANumber => "the value is not a number of the increment's kind",
            NotCounted::Overflow => "the result would overflow a 64-bit integer",
            NotCounted::NotFinite => "the result would be NaN or infinite",
        })
    }
}

impl From<NotCounted> for Error {
    fn from(n: NotCounted) -> Self {
        Error::NotCounted(n)
    }
}
