//! The words a shard's callers use: what a live key holds ([`Kind`]: the public answer to
//! `TYPE`), which merged type a local change works on ([`Target`]: a `Kind` that merges), why a
//! change was refused, a key handed to a write, what a restore installs ([`Restored`], owning
//! what it read from disk), what a read or a digest sees ([`Peeked`], [`DigestItem`]).
//!
//! The other types that say what a key holds differ by who holds them: the store's `Put` (a
//! value given to it) and `Val` (one borrowed from it), the ports' `Stored` (a record borrowed
//! for the journal and snapshots), `Change` (one on the wire) and the disk's `Record`.

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

/// What [`Shard::restore`] installs for a key.
pub(crate) enum Restored {
    Live {
        value: Bytes,
        expires_at: u64,
    },
    /// A dead record: a tombstone (replicated as a delete), or a version dropped here (evicted,
    /// expired, too large: replicated as an invalidation), made at `since_ms`.
    Dead {
        tombstone: bool,
        since_ms: u64,
    },
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
