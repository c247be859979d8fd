//! Values that merge instead of winning: counters and hashes. The state a key of those types holds,
//! the rules that join two such states, and the deltas replication carries for them.
//!
//! Every merged value is built from one piece, the [`Cell`]: a **register** (the last `SET` or
//! `DEL` of it, by version, with the sum of the increments that write had seen) plus the
//! **parts**, one per process run that incremented it, each the running sum of that run's
//! increments. A run's part only grows, so two copies of it merge by keeping the one with more
//! operations; registers merge by newer version. Both are joins (commutative, associative,
//! idempotent), so replicas agree whatever the order of delivery, duplicates and echoes.
//!
//! The value is `register content − seen + Σ parts`: a write that saw increments resets them
//! away, increments it did not see stay on top of it (observed-reset). A string key is a register
//! with no parts; the first increment turns it into a counter.
//!
//! A hash maps fields to cells (a field holds a plain value, a field tombstone, or a counter),
//! merged field by field, under a key-level **reset**: the version of the last `DEL` of the whole
//! hash, which hides every field last written at or before it.

mod cell;
mod hash;
mod merged;
mod number;

pub use cell::{Cell, Part, Register};
pub use hash::{COUNTER_OVERHEAD, FIELD_OVERHEAD, Field, FieldValue, Hash};
pub use merged::{Counter, Merged};

/// What a counter and a hash both keep beside their cells: the key's expiry register (its
/// version and the instant it holds) and the seq and source of the last change of the register
/// (a counter's write, a hash's reset) and of the expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The version of the last write of the key's expiry.
    pub ttl: Version,
    /// The expiry the TTL register holds (ms; `u64::MAX` for never): kept with the state, so
    /// that a state held dead here still carries its register whole.
    pub ttl_at: u64,
    /// Seq and source of the last change of the register.
    pub reg_seq: u64,
    pub reg_source: u32,
    /// Seq and source of the last change of the expiry.
    pub ttl_seq: u64,
    pub ttl_source: u32,
}

impl Header {
    /// A header whose register and expiry were last written at `(seq, source)`, with the
    /// expiry register at `ttl` and no expiry.
    pub fn new(ttl: Version, seq: u64, source: u32) -> Header {
        Header {
            ttl,
            ttl_at: u64::MAX,
            reg_seq: seq,
            reg_source: source,
            ttl_seq: seq,
            ttl_source: source,
        }
    }

    /// A write of the register and the expiry register together, at `version`, `(seq, source)`
    /// (the expiry instant is the caller's to set).
    pub fn written(&mut self, version: Version, seq: u64, source: u32) {
        *self = Header {
            ttl_at: self.ttl_at,
            ..Header::new(version, seq, source)
        };
    }
}
pub use number::{format_float, format_num, parse_float, parse_int, parse_num};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::clock::{NodeId, Timestamp, Version};

/// The version below every real one: the register of a counter begun on a key holding nothing,
/// and the reset of a hash never deleted.
pub const ORIGIN: Version = Version {
    ts: Timestamp(0),
    node: NodeId(0),
};

/// An `f64` compared by its bits, so that states holding one can be compared for equality.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Float(pub f64);

impl PartialEq for Float {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Float {}

/// What a run's increments add up to: how many there were, their integer sum (wrapping, so a
/// total that fits in an `i64` is exact whatever the partial sums do) and their float sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sum {
    /// Increments counted.
    pub ops: u64,
    /// Their integer part.
    pub int: i64,
    /// Their float part (`INCRBYFLOAT`).
    pub float: Float,
}

impl Sum {
    fn add(&mut self, other: &Sum) {
        self.ops = self.ops.wrapping_add(other.ops);
        self.int = self.int.wrapping_add(other.int);
        self.float.0 += other.float.0;
    }
}

/// A number a cell reads as.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Num {
    /// An integer.
    Int(i64),
    /// A float (the cell had a float increment, or a float base).
    Float(f64),
}

pub use crate::error::NotCounted;

/// What a key of a merged type holds, as replication carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// A counter: its register, and the parts that changed.
    Counter {
        /// The register.
        register: Register,
        /// Parts (all of them, or those changed since the receiver's watermark).
        parts: Vec<Part>,
    },
    /// A hash: its reset, and the fields that changed.
    Hash {
        /// The version of its last `DEL`.
        reset: Version,
        /// Fields (all, or those changed since the receiver's watermark).
        fields: Vec<(Bytes, Field)>,
    },
}

/// A change to a key of a merged type: what replication sends and the op log records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merge {
    /// The key.
    pub key: Bytes,
    /// The newest version of any change to the key at the sender.
    pub version: Version,
    /// The version of the key's expiry, and the expiry (ms since the epoch; `None`: never).
    pub ttl: Version,
    /// See `ttl`.
    pub expires_at: Option<u64>,
    /// The state, whole or in part.
    pub body: Body,
    /// Whether the body is the sender's whole state of the key, not only what changed.
    pub complete: bool,
    /// Unused, always `false`: kept so that changes recorded on disk by earlier versions still
    /// read (the "began on nothing" mark it carried decided nothing; joins converge without it).
    pub partial: bool,
}

/// What a merged state reads as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reading {
    /// Nothing: a counter deleted with nothing counted since, a hash without fields.
    Nothing,
    /// A counter's value, as `GET` returns it.
    Value(Bytes),
    /// A hash's fields that hold a value, in field order.
    Fields(Vec<(Bytes, Bytes)>),
}

impl Merge {
    /// What the state this change carries reads as, taken alone (whole when
    /// [`complete`](Self::complete)).
    ///
    /// ```
    /// use leafcache::{Cache, Change, merge::Reading};
    /// let cache = Cache::builder().build()?;
    /// cache.incr("n", 5)?;
    /// let Change::Merge(m) = &cache.changes_since(0, 10)[0].change else { unreachable!() };
    /// assert_eq!(m.read(), Reading::Value("5".into()));
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    pub fn read(&self) -> Reading {
        let state = Merged::from_body(&self.body, self.ttl, 0, 0);
        match &state {
            _ if !state.exists() => Reading::Nothing,
            Merged::Counter(c) => c.cell.read().map_or(Reading::Nothing, Reading::Value),
            Merged::Hash(h) => Reading::Fields(h.visible().map(|(k, v)| (k.clone(), v)).collect()),
        }
    }
}

/// The join rule of a key's expiry register `(version, at)`: the newer version wins; between two
/// expiries under one version (one write seen with two expiries: never issued, but every node
/// must keep the same one should it happen) the later expiry wins, [`u64::MAX`] (never) latest.
pub fn ttl_beats(a: (Version, u64), b: (Version, u64)) -> bool {
    a > b
}

#[cfg(test)]
mod tests;
