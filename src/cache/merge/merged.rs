//! What a merged key holds in a shard ([`Merged`]: a counter or a hash with the key's expiry
//! register), the deltas it lists for replication and how it joins what comes in.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::*;
use crate::clock::Version;

/// A key holding a counter: its cell, with the key-level expiry register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counter {
    /// The register and parts.
    pub cell: Cell,
    /// The key's expiry register, and where its last changes came from.
    pub head: Header,
}

/// Bytes accounted per counter on top of its parts and the entry: the counter's box, its parts'
/// vector and their allocations (measured as [`FIELD_OVERHEAD`] is: 1,076 B resident per
/// counter with one part and a 10-byte key, against 419 B for a string entry).
pub const COUNTER_OVERHEAD: usize = 400;

impl Counter {
    pub(super) fn restamp(&mut self, seq: u64) {
        self.head.reg_seq = seq;
        self.head.reg_source = 0;
        self.head.ttl_seq = seq;
        self.head.ttl_source = 0;
        self.cell.restamp(seq);
    }

    /// Accounted bytes on top of the entry.
    pub fn bytes(&self) -> usize {
        COUNTER_OVERHEAD + self.cell.bytes()
    }
}

/// What a merged key holds, in a shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Merged {
    /// A counter (or a string with increments on it).
    Counter(Box<Counter>),
    /// A hash.
    Hash(Box<Hash>),
}

impl Merged {
    /// Whether it holds a value at all (a counter deleted with nothing counted since does not; a
    /// hash without fields does not).
    pub fn exists(&self) -> bool {
        match self {
            Merged::Counter(c) => c.cell.exists(),
            Merged::Hash(h) => h.fields.values().any(|f| f.read().is_some()),
        }
    }

    /// The newest version a change to it carried.
    pub fn ttl_version(&self) -> Version {
        match self {
            Merged::Counter(c) => c.head.ttl,
            Merged::Hash(h) => h.head.ttl,
        }
    }

    pub(crate) fn set_ttl(&mut self, version: Version, seq: u64, source: u32) {
        let (ttl, s, src) = match self {
            Merged::Counter(c) => (&mut c.head.ttl, &mut c.head.ttl_seq, &mut c.head.ttl_source),
            Merged::Hash(h) => (&mut h.head.ttl, &mut h.head.ttl_seq, &mut h.head.ttl_source),
        };
        *ttl = version;
        *s = seq;
        *src = source;
    }

    /// The newest version of any change the state holds: the version of the key, the same on
    /// every node holding the same state.
    pub fn newest(&self) -> Version {
        match self {
            Merged::Counter(c) => c.cell.newest().max(c.head.ttl),
            Merged::Hash(h) => h.newest().max(h.head.ttl),
        }
    }

    /// The expiry the TTL register holds: the key's expiry, live or dead.
    pub fn ttl_at(&self) -> u64 {
        match self {
            Merged::Counter(c) => c.head.ttl_at,
            Merged::Hash(h) => h.head.ttl_at,
        }
    }

    /// Keeps the state's copy of the key's expiry.
    pub fn set_ttl_at(&mut self, at: u64) {
        match self {
            Merged::Counter(c) => c.head.ttl_at = at,
            Merged::Hash(h) => h.head.ttl_at = at,
        }
    }

    /// A local delete at `version` that saw everything the state holds: every register and
    /// field written empty, the expiry register written to never. What a write to a key that
    /// expired does first, so that the key counts from nothing, as in Redis.
    pub fn forget_all(&mut self, version: Version, seq: u64) {
        match self {
            Merged::Counter(c) => {
                c.cell.write(version, None);
                c.head.reg_seq = seq;
                c.head.reg_source = 0;
            }
            Merged::Hash(h) => {
                let names: Vec<Bytes> = h.fields.keys().cloned().collect();
                for name in names {
                    h.set(name, None, version, seq);
                }
            }
        }
        self.set_ttl(version, seq, 0);
        self.set_ttl_at(u64::MAX);
    }

    /// Moves every part of the state to `seq`: the next scan of any link sends it whole.
    pub fn restamp(&mut self, seq: u64) {
        match self {
            Merged::Counter(c) => c.restamp(seq),
            Merged::Hash(h) => h.restamp(seq),
        }
    }

    /// Accounted bytes on top of the key and the entry overhead.
    pub fn bytes(&self) -> usize {
        match self {
            Merged::Counter(c) => c.bytes(),
            Merged::Hash(h) => std::mem::size_of::<Hash>() + h.bytes(),
        }
    }

    /// The part of the state changed after seq `after`, leaving out what came from link `skip`
    /// (pass 0 for nothing): the body, and whether it is the whole state. `None` if nothing is left.
    pub fn delta(&self, after: u64, skip: u32) -> Option<(Body, bool)> {
        let sent = |seq: u64, source: u32| seq > after && !(source == skip && skip != 0);
        match self {
            Merged::Counter(c) => {
                let parts: Vec<Part> = c
                    .cell
                    .parts
                    .iter()
                    .filter(|p| sent(p.seq, p.source))
                    .cloned()
                    .collect();
                if parts.is_empty()
                    && !sent(c.head.reg_seq, c.head.reg_source)
                    && !sent(c.head.ttl_seq, c.head.ttl_source)
                {
                    return None;
                }
                let complete = parts.len() == c.cell.parts.len();
                Some((
                    Body::Counter {
                        register: c.cell.register.clone(),
                        parts,
                    },
                    complete,
                ))
            }
            Merged::Hash(h) => {
                let fields: Vec<(Bytes, Field)> = h
                    .fields
                    .iter()
                    .filter(|(_, f)| sent(f.seq, f.source))
                    .map(|(k, f)| (k.clone(), f.clone()))
                    .collect();
                if fields.is_empty()
                    && !sent(h.head.reg_seq, h.head.reg_source)
                    && !sent(h.head.ttl_seq, h.head.ttl_source)
                {
                    return None;
                }
                let complete = fields.len() == h.fields.len();
                Some((
                    Body::Hash {
                        reset: h.reset,
                        fields,
                    },
                    complete,
                ))
            }
        }
    }

    /// A state begun from a received body alone.
    pub fn from_body(body: &Body, ttl: Version, seq: u64, source: u32) -> Merged {
        match body {
            Body::Counter { register, parts } => {
                let mut cell = Cell::written(ORIGIN, None);
                cell.join(register, parts, seq, source);
                cell.register = register.clone();
                Merged::Counter(Box::new(Counter {
                    cell,
                    head: Header::new(ttl, seq, source),
                }))
            }
            Body::Hash { reset, fields } => {
                let mut h = Hash {
                    reset: ORIGIN,
                    fields: BTreeMap::new(),
                    size: 0,
                    top: ORIGIN,
                    head: Header::new(ttl, seq, source),
                };
                h.join(*reset, fields, seq, source);
                h.head.reg_seq = seq;
                h.head.reg_source = source;
                Merged::Hash(Box::new(h))
            }
        }
    }

    /// Joins a received body of the same type; `None` if the types differ. Returns whether the
    /// state changed.
    pub fn join(&mut self, body: &Body, seq: u64, source: u32) -> Option<bool> {
        match (self, body) {
            (Merged::Counter(c), Body::Counter { register, parts }) => {
                let changed = c.cell.join(register, parts, seq, source);
                if changed && c.cell.register == *register {
                    c.head.reg_seq = seq;
                    c.head.reg_source = source;
                }
                Some(changed)
            }
            (Merged::Hash(h), Body::Hash { reset, fields }) => {
                Some(h.join(*reset, fields, seq, source))
            }
            _ => None,
        }
    }

    /// Joins a received expiry register `(version, at)`; returns whether it won. The register is
    /// joined as a whole: see [`ttl_beats`].
    pub fn join_ttl(&mut self, version: Version, at: u64, seq: u64, source: u32) -> bool {
        if ttl_beats((version, at), (self.ttl_version(), self.ttl_at())) {
            self.set_ttl(version, seq, source);
            self.set_ttl_at(at);
            true
        } else {
            false
        }
    }

    /// The whole state as a body.
    pub fn body(&self) -> Body {
        self.delta(0, 0).map(|(b, _)| b).unwrap_or(match self {
            Merged::Counter(c) => Body::Counter {
                register: c.cell.register.clone(),
                parts: Vec::new(),
            },
            Merged::Hash(h) => Body::Hash {
                reset: h.reset,
                fields: Vec::new(),
            },
        })
    }

    /// A fingerprint of the state, to tell whether a peer's state equals this one: the register
    /// and every part, or the reset and every field with its version and parts.
    pub fn fingerprint(&self) -> Vec<u8> {
        postcard::to_allocvec(&self.body()).unwrap_or_default()
    }
}
