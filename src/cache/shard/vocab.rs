//! The words a shard's callers use: what a key holds ([`Kind`]), what a change targets ([`Target`]), why it was refused, and what a read or a digest sees.

use bytes::Bytes;

use crate::cache::merge::Merge;
use crate::clock::Version;

/// The type of a live value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Bytes, last writer wins.
    String,
    /// A string with increments on it: a counter that merges (Redis type `string`).
    Counter,
    /// A hash whose fields merge.
    Hash,
}

/// A key holds a value of another type than the command works on (Redis `WRONGTYPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrongKind;

/// Why a local change to a merged value was refused, leaving it as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The key holds another type.
    WrongKind,
    /// The value would outgrow what one shard may hold.
    TooLarge { size: usize, limit: usize },
}

impl From<Refused> for crate::error::Error {
    fn from(r: Refused) -> Self {
        match r {
            Refused::WrongKind => crate::error::Error::WrongType,
            Refused::TooLarge { size, limit } => crate::error::Error::ValueTooLarge { size, limit },
        }
    }
}

impl From<WrongKind> for crate::error::Error {
    fn from(_: WrongKind) -> Self {
        crate::error::Error::WrongType
    }
}

impl From<WrongKind> for Refused {
    fn from(_: WrongKind) -> Self {
        Refused::WrongKind
    }
}

/// The type a local change to a merged value works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A counter (`INCR` and friends).
    Counter,
    /// A hash (`HSET` and friends).
    Hash,
}

/// A key handed to a write: owned already, or borrowed and copied only if the write inserts it
/// (a rewrite of a live key keeps the key it has).
pub(crate) enum KeyArg<'a> {
    Owned(Bytes),
    Borrowed(&'a [u8]),
}

#[cfg(test)]
impl<'a> From<&'a str> for KeyArg<'a> {
    fn from(s: &'a str) -> Self {
        KeyArg::Borrowed(s.as_bytes())
    }
}

#[cfg(test)]
impl From<String> for KeyArg<'_> {
    fn from(s: String) -> Self {
        KeyArg::Owned(Bytes::from(s))
    }
}

impl KeyArg<'_> {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            KeyArg::Owned(b) => b,
            KeyArg::Borrowed(s) => s,
        }
    }
}

/// Why a key has a dead record.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum DeadKind {
    /// Deleted: replicated as [`Change::Delete`].
    Tombstone,
    /// Evicted or expired here: replicated as [`Change::Invalidate`] so a peer drops older copies.
    Gone,
}

/// What [`Shard::restore`] installs for a key.
pub(crate) enum Restored {
    Live { value: Bytes, expires_at: u64 },
    Dead { kind: DeadKind, since_ms: u64 },
}

/// A read of an entry without touching LRU order or counters.
pub(crate) struct Peeked {
    /// What it reads as (a counter's decimal text; empty for a hash).
    pub value: Bytes,
    pub kind: Kind,
    pub version: Version,
    pub expires_at: u64,
    pub seq: u64,
}

/// A record as a digest sees it (see [`Shard::digest_records`]).
#[derive(Debug)]
pub enum DigestItem {
    /// A string, a tombstone or a dropped version: its version, and whether it is a drop (an
    /// entry evicted, expired or too large here).
    Version(Version, bool),
    /// A merged state, whole, and whether it expired here.
    Merged(Box<Merge>, bool),
    /// The cache's purge mark (no key).
    Purge(Version),
}
