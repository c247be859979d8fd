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

use std::collections::BTreeMap;

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

/// One process run's contribution to a cell: the sum of every increment it made there.
/// Compared by content (its local seq and source left out).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Part {
    /// The run that made it: drawn anew at every start of a node, so a node that lost its own
    /// part in a crash never counts on from where it stood before.
    pub run: u128,
    /// The version of the part's first increment. A run that dropped the key (evicted, expired,
    /// purged) and counts on it again begins a new part: the old one, still held elsewhere, stays
    /// as it was. `(run, origin)` names a part.
    pub origin: Version,
    /// Its increments so far.
    pub sum: Sum,
    /// The version of its last increment.
    pub version: Version,
    /// The local seq of the last change to this part (not sent: the receiver stamps its own).
    #[serde(skip)]
    pub seq: u64,
    /// The link it last came in on (not sent).
    #[serde(skip)]
    pub source: u32,
}

/// Whether copy `a` of a part replaces copy `b` of the same part: the one with more operations.
/// A run's part only grows, so that is the newer copy; should two copies ever hold as many
/// operations but differ (a node forgot a deleted key's state past its retention, learned an
/// older copy of its own part and counted on it), the one with the newer last increment wins,
/// the same on every node.
fn part_beats(a: &Part, b: &Part) -> bool {
    (a.sum.ops, a.version) > (b.sum.ops, b.version)
}

/// The last write (or delete) of a cell, with the increments it had seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    /// The write's version.
    pub version: Version,
    /// What it wrote; `None` for a delete (or for a counter begun on nothing).
    pub content: Option<Bytes>,
    /// The sum of the parts the writer held when it wrote: they are replaced by the write.
    pub seen: Sum,
}

impl Register {
    /// Whether `self` wins over `other`: the newer version, and between two contents under one
    /// version (never issued, but deterministic should it happen) a delete, then the greater.
    fn beats(&self, other: &Register) -> bool {
        (self.version, self.content.is_none(), &self.content)
            > (other.version, other.content.is_none(), &other.content)
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

/// A register and the parts made since (or concurrently with) it: a string, a counter, a field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// The last write.
    pub register: Register,
    /// One per run that incremented it, sorted by run.
    pub parts: Vec<Part>,
}

impl Cell {
    /// A cell holding `content` written at `version`, with no increments.
    pub fn written(version: Version, content: Option<Bytes>) -> Self {
        Cell {
            register: Register {
                version,
                content,
                seen: Sum::default(),
            },
            parts: Vec::new(),
        }
    }

    /// The sum of every part, added in run order (float sums are then the same on every node).
    pub fn total(&self) -> Sum {
        let mut t = Sum::default();
        for p in &self.parts {
            t.add(&p.sum);
        }
        t
    }

    /// Increments the register has not seen: the cell counts beyond its last write.
    fn unseen(&self) -> bool {
        self.total().ops != self.register.seen.ops
    }

    /// Whether the cell holds a value: a written one, or increments made since a delete.
    pub fn exists(&self) -> bool {
        self.register.content.is_some() || self.unseen()
    }

    /// The number it reads as, if its written content is one (nothing written counts as 0).
    pub fn number(&self) -> Result<Num, NotCounted> {
        let base = match &self.register.content {
            None => Num::Int(0),
            Some(b) => parse_num(b).ok_or(NotCounted::NotANumber)?,
        };
        let (total, seen) = (self.total(), &self.register.seen);
        let int = total.int.wrapping_sub(seen.int);
        let float = total.float.0 - seen.float.0;
        let n = match base {
            Num::Int(b) if float == 0.0 => Num::Int(b.wrapping_add(int)),
            Num::Int(b) => Num::Float(b as f64 + int as f64 + float),
            Num::Float(b) => Num::Float(b + int as f64 + float),
        };
        Ok(match n {
            // A sum that lands on an integer reads as one, as Redis's text "11" does after
            // `INCRBYFLOAT` (a written "11.0" stays a float: nothing was counted on it).
            Num::Float(f) if !self.parts.is_empty() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                Num::Int(f as i64)
            }
            n => n,
        })
    }

    /// What the cell reads as: its content as written when nothing was counted on top, its
    /// number as decimal text otherwise. `None` if it holds nothing.
    pub fn read(&self) -> Option<Bytes> {
        if !self.exists() {
            return None;
        }
        if (self.parts.is_empty() || !self.unseen())
            && let Some(b) = &self.register.content
        {
            return Some(b.clone());
        }
        match self.number() {
            Ok(n) => Some(format_num(n).into()),
            // Increments under a value that is no number (a concurrent `SET` of text won): the
            // text is what the key holds.
            Err(_) => self.register.content.clone(),
        }
    }

    /// Adds `by` (an integer, or a float with `float`) to this run's part, checking the result as
    /// Redis does. Returns the new number; on an error nothing changes.
    pub fn increment(
        &mut self,
        run: u128,
        by: Num,
        version: Version,
        seq: u64,
    ) -> Result<Num, NotCounted> {
        let now = self.number()?;
        let (next, delta) = match (now, by) {
            (Num::Int(n), Num::Int(b)) => (
                Num::Int(n.checked_add(b).ok_or(NotCounted::Overflow)?),
                Sum {
                    ops: 1,
                    int: b,
                    float: Float(0.0),
                },
            ),
            (Num::Float(_), Num::Int(_)) => return Err(NotCounted::NotANumber),
            (n, Num::Float(b)) => {
                let current = match n {
                    Num::Int(i) => i as f64,
                    Num::Float(f) => f,
                };
                let r = current + b;
                if !r.is_finite() {
                    return Err(NotCounted::NotFinite);
                }
                (
                    Num::Float(r),
                    Sum {
                        ops: 1,
                        int: 0,
                        float: Float(b),
                    },
                )
            }
        };
        // This run's newest part: parts sort by (run, origin).
        let end = self.parts.partition_point(|p| p.run <= run);
        let at = match end.checked_sub(1) {
            Some(i) if self.parts[i].run == run => i,
            _ => {
                let i = self
                    .parts
                    .partition_point(|p| (p.run, p.origin) < (run, version));
                self.parts.insert(
                    i,
                    Part {
                        run,
                        origin: version,
                        sum: Sum::default(),
                        version,
                        seq,
                        source: 0,
                    },
                );
                i
            }
        };
        let part = &mut self.parts[at];
        part.sum.add(&delta);
        part.version = version;
        part.seq = seq;
        part.source = 0;
        Ok(match next {
            Num::Float(_) => self.number().unwrap_or(next),
            n => n,
        })
    }

    /// Replaces the register by a write at `version` that saw every part held here.
    pub fn write(&mut self, version: Version, content: Option<Bytes>) {
        self.register = Register {
            version,
            content,
            seen: self.total(),
        };
    }

    /// Joins `register` and `parts` from another copy into this one, stamping what changed with
    /// `seq` and `source`. Returns whether anything changed.
    pub fn join(&mut self, register: &Register, parts: &[Part], seq: u64, source: u32) -> bool {
        let mut changed = false;
        if register.beats(&self.register) {
            self.register = register.clone();
            changed = true;
        }
        for p in parts {
            match self
                .parts
                .binary_search_by_key(&(p.run, p.origin), |q| (q.run, q.origin))
            {
                Ok(i) if part_beats(p, &self.parts[i]) => {
                    self.parts[i].sum = p.sum;
                    self.parts[i].version = p.version;
                    self.parts[i].seq = seq;
                    self.parts[i].source = source;
                    changed = true;
                }
                Ok(_) => {}
                Err(i) => {
                    self.parts.insert(
                        i,
                        Part {
                            run: p.run,
                            origin: p.origin,
                            sum: p.sum,
                            version: p.version,
                            seq,
                            source,
                        },
                    );
                    changed = true;
                }
            }
        }
        changed
    }

    /// The newest version in the cell: its register's or its last increment's.
    pub fn newest(&self) -> Version {
        self.parts
            .iter()
            .map(|p| p.version)
            .fold(self.register.version, Version::max)
    }

    /// Moves every part to `seq`, so that the next scan sends them all.
    fn restamp(&mut self, seq: u64) {
        for p in &mut self.parts {
            p.seq = seq;
            p.source = 0;
        }
    }

    /// Accounted bytes on top of the entry: content and parts.
    fn bytes(&self) -> usize {
        self.register.content.as_ref().map_or(0, Bytes::len)
            + self.parts.len() * std::mem::size_of::<Part>()
    }
}

/// A key holding a counter: its cell, with the key-level expiry register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counter {
    /// The register and parts.
    pub cell: Cell,
    /// The version of the last write of the key's expiry.
    pub ttl: Version,
    /// Seq and source of the last change of the register.
    pub reg_seq: u64,
    pub reg_source: u32,
    /// Seq and source of the last change of the expiry.
    pub ttl_seq: u64,
    pub ttl_source: u32,
    /// The expiry the TTL register holds (ms; `u64::MAX` for never): kept here too, so that a
    /// deleted counter, out of the LRU, still carries its register whole.
    pub ttl_at: u64,
}

impl PartialEq for Part {
    fn eq(&self, o: &Self) -> bool {
        (self.run, self.origin, self.sum, self.version) == (o.run, o.origin, o.sum, o.version)
    }
}

impl Eq for Part {}

/// One field of a hash. Compared by content (its local seq and source left out).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Field {
    /// The newest version of a change to the field.
    pub version: Version,
    /// What it holds.
    pub value: FieldValue,
    /// The local seq of its last change (not sent).
    #[serde(skip)]
    pub seq: u64,
    /// The link that change came in on (not sent).
    #[serde(skip)]
    pub source: u32,
}

/// What a field holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FieldValue {
    /// A value, written at the field's version.
    Value(Bytes),
    /// Deleted at the field's version (`HDEL`): an older write of it cannot come back.
    Deleted,
    /// A counter (`HINCRBY`), or a value or delete written over one.
    Cell(Box<Cell>),
}

impl PartialEq for Field {
    fn eq(&self, o: &Self) -> bool {
        self.version == o.version && self.value == o.value
    }
}

impl Eq for Field {}

impl Field {
    /// The field as a cell (a value or delete is a register with no parts).
    fn to_cell(&self) -> Cell {
        match &self.value {
            FieldValue::Value(b) => Cell::written(self.version, Some(b.clone())),
            FieldValue::Deleted => Cell::written(self.version, None),
            FieldValue::Cell(c) => (**c).clone(),
        }
    }

    /// What the field reads as, if it holds anything.
    pub fn read(&self) -> Option<Bytes> {
        match &self.value {
            FieldValue::Value(b) => Some(b.clone()),
            FieldValue::Deleted => None,
            FieldValue::Cell(c) => c.read(),
        }
    }

    /// Joins another copy of the field into this one; returns whether it changed.
    fn join(&mut self, other: &Field, seq: u64, source: u32) -> bool {
        let changed = match (&mut self.value, &other.value) {
            (FieldValue::Cell(mine), _) => {
                let theirs = other.to_cell();
                mine.join(&theirs.register, &theirs.parts, seq, source)
            }
            (_, FieldValue::Cell(theirs)) => {
                let mut mine = self.to_cell();
                mine.join(&theirs.register, &theirs.parts, seq, source);
                self.value = FieldValue::Cell(Box::new(mine));
                true
            }
            _ => {
                let (a, b) = (self.to_cell(), other.to_cell());
                if b.register.beats(&a.register) {
                    self.value = other.value.clone();
                    true
                } else {
                    false
                }
            }
        };
        if other.version > self.version {
            self.version = other.version;
        }
        if changed {
            self.seq = seq;
            // The link it came from holds it, unless the join made something new of both
            // copies: then every link, that one too, gets it.
            self.source = if self == other { source } else { 0 };
        }
        changed
    }

    fn bytes(&self, name: &[u8]) -> usize {
        self.bytes_len(name.len())
    }

    fn bytes_len(&self, name_len: usize) -> usize {
        name_len
            + FIELD_OVERHEAD
            + match &self.value {
                FieldValue::Value(b) => b.len(),
                FieldValue::Deleted => 0,
                FieldValue::Cell(c) => std::mem::size_of::<Cell>() + c.bytes(),
            }
    }
}

/// Bytes accounted per hash field on top of its name and value: the field record, its B-tree
/// slot and their allocations. Measured, not estimated: `cargo bench --bench merged_memory`
/// stores 100k hashes of 10 small fields and reads the resident memory they add (322 B per
/// field with a 10-byte payload). Re-measure when the field layout changes.
pub const FIELD_OVERHEAD: usize = 280;

/// Bytes accounted per counter on top of its parts and the entry: the counter's box, its parts'
/// vector and their allocations (measured as [`FIELD_OVERHEAD`] is: 1,076 B resident per
/// counter with one part and a 10-byte key, against 419 B for a string entry).
pub const COUNTER_OVERHEAD: usize = 400;

/// A key holding a hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hash {
    /// The version of the last `DEL` of the whole hash: fields at or below it are gone.
    pub reset: Version,
    /// Its fields, visible or deleted.
    pub fields: BTreeMap<Bytes, Field>,
    /// The version of the last write of the key's expiry.
    pub ttl: Version,
    /// Seq and source of the last change of the reset.
    pub reg_seq: u64,
    pub reg_source: u32,
    /// Seq and source of the last change of the expiry.
    pub ttl_seq: u64,
    pub ttl_source: u32,
    /// The accounted bytes of its fields, kept as they change (a big hash is not summed again
    /// at every write).
    pub size: usize,
    /// The newest version of any field, kept as they change.
    pub top: Version,
    /// The expiry the TTL register holds (ms; `u64::MAX` for never), kept with the state so that
    /// a hash held dead here carries its register whole, as a counter does.
    pub ttl_at: u64,
}

impl Hash {
    /// The fields that hold a value, in field order.
    pub fn visible(&self) -> impl Iterator<Item = (&Bytes, Bytes)> {
        self.fields
            .iter()
            .filter_map(|(k, f)| f.read().map(|v| (k, v)))
    }

    /// How many fields hold a value.
    pub fn len(&self) -> usize {
        self.fields.values().filter(|f| f.read().is_some()).count()
    }

    /// Whether no field holds a value.
    pub fn is_empty(&self) -> bool {
        !self.fields.values().any(|f| f.read().is_some())
    }

    /// Sets field `name` at `version`: a plain value, or a write over its counter. Returns whether
    /// the field held a value before.
    pub fn set(&mut self, name: Bytes, value: Option<Bytes>, version: Version, seq: u64) -> bool {
        use std::collections::btree_map::Entry;
        let name_len = name.len();
        let (field, before) = match self.fields.entry(name) {
            Entry::Occupied(o) => {
                let f = o.into_mut();
                let before = f.bytes_len(name_len);
                (f, Some(before))
            }
            Entry::Vacant(v) => (
                v.insert(Field {
                    version,
                    value: FieldValue::Deleted,
                    seq,
                    source: 0,
                }),
                None,
            ),
        };
        let held = before.is_some() && field.read().is_some();
        match &mut field.value {
            FieldValue::Cell(c) => c.write(version, value),
            v => {
                *v = match value {
                    Some(b) => FieldValue::Value(b),
                    None => FieldValue::Deleted,
                }
            }
        }
        field.version = version;
        field.seq = seq;
        field.source = 0;
        let after = field.bytes_len(name_len);
        self.size = self.size + after - before.unwrap_or(0);
        self.top = self.top.max(version);
        held
    }

    /// Increments field `name` by `by`; on an error nothing changes.
    pub fn increment(
        &mut self,
        name: Bytes,
        by: Num,
        run: u128,
        version: Version,
        seq: u64,
    ) -> Result<Num, NotCounted> {
        let (mut cell, before) = match self.fields.get(&name) {
            Some(f) => (f.to_cell(), f.bytes(&name)),
            None => (Cell::written(ORIGIN, None), 0),
        };
        let n = cell.increment(run, by, version, seq)?;
        let field = Field {
            version,
            value: FieldValue::Cell(Box::new(cell)),
            seq,
            source: 0,
        };
        self.size = self.size + field.bytes(&name) - before;
        self.top = self.top.max(version);
        self.fields.insert(name, field);
        Ok(n)
    }

    /// Joins a delta of another copy: a newer reset hides older fields, fields join one by one.
    pub fn join(
        &mut self,
        reset: Version,
        fields: &[(Bytes, Field)],
        seq: u64,
        source: u32,
    ) -> bool {
        let mut changed = false;
        if reset > self.reset {
            self.reset = reset;
            self.fields.retain(|_, f| f.version > reset);
            self.size = self.fields.iter().map(|(k, f)| f.bytes(k)).sum();
            self.top = self
                .fields
                .values()
                .map(|f| f.version)
                .max()
                .unwrap_or(ORIGIN);
            self.reg_seq = seq;
            self.reg_source = source;
            changed = true;
        }
        for (name, theirs) in fields {
            if theirs.version <= self.reset {
                continue;
            }
            match self.fields.get_mut(name) {
                Some(mine) => {
                    let before = mine.bytes(name);
                    if mine.join(theirs, seq, source) {
                        self.size = self.size + mine.bytes(name) - before;
                        changed = true;
                    }
                    self.top = self.top.max(mine.version);
                }
                None => {
                    let mut f = theirs.clone();
                    f.seq = seq;
                    f.source = source;
                    self.size += f.bytes(name);
                    self.top = self.top.max(f.version);
                    self.fields.insert(name.clone(), f);
                    changed = true;
                }
            }
        }
        changed
    }

    /// The newest version of any field, or of the reset.
    pub fn newest(&self) -> Version {
        self.top.max(self.reset)
    }

    fn restamp(&mut self, seq: u64) {
        self.reg_seq = seq;
        self.reg_source = 0;
        self.ttl_seq = seq;
        self.ttl_source = 0;
        for f in self.fields.values_mut() {
            f.seq = seq;
            f.source = 0;
        }
    }

    /// Accounted bytes on top of the entry.
    pub fn bytes(&self) -> usize {
        self.size
    }
}

impl Counter {
    fn restamp(&mut self, seq: u64) {
        self.reg_seq = seq;
        self.reg_source = 0;
        self.ttl_seq = seq;
        self.ttl_source = 0;
        self.cell.restamp(seq);
    }

    /// Accounted bytes on top of the entry.
    pub fn bytes(&self) -> usize {
        COUNTER_OVERHEAD + self.cell.bytes()
    }
}

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
            Merged::Counter(c) => c.ttl,
            Merged::Hash(h) => h.ttl,
        }
    }

    pub(crate) fn set_ttl(&mut self, version: Version, seq: u64, source: u32) {
        let (ttl, s, src) = match self {
            Merged::Counter(c) => (&mut c.ttl, &mut c.ttl_seq, &mut c.ttl_source),
            Merged::Hash(h) => (&mut h.ttl, &mut h.ttl_seq, &mut h.ttl_source),
        };
        *ttl = version;
        *s = seq;
        *src = source;
    }

    /// The newest version of any change the state holds: the version of the key, the same on
    /// every node holding the same state.
    pub fn newest(&self) -> Version {
        match self {
            Merged::Counter(c) => c.cell.newest().max(c.ttl),
            Merged::Hash(h) => h.newest().max(h.ttl),
        }
    }

    /// The expiry the TTL register holds: the key's expiry, live or dead.
    pub fn ttl_at(&self) -> u64 {
        match self {
            Merged::Counter(c) => c.ttl_at,
            Merged::Hash(h) => h.ttl_at,
        }
    }

    /// Keeps the state's copy of the key's expiry.
    pub fn set_ttl_at(&mut self, at: u64) {
        match self {
            Merged::Counter(c) => c.ttl_at = at,
            Merged::Hash(h) => h.ttl_at = at,
        }
    }

    /// A local delete at `version` that saw everything the state holds: every register and
    /// field written empty, the expiry register written to never. What a write to a key that
    /// expired does first, so that the key counts from nothing, as in Redis.
    pub fn forget_all(&mut self, version: Version, seq: u64) {
        match self {
            Merged::Counter(c) => {
                c.cell.write(version, None);
                c.reg_seq = seq;
                c.reg_source = 0;
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
                    && !sent(c.reg_seq, c.reg_source)
                    && !sent(c.ttl_seq, c.ttl_source)
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
                    && !sent(h.reg_seq, h.reg_source)
                    && !sent(h.ttl_seq, h.ttl_source)
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
                    ttl,
                    reg_seq: seq,
                    reg_source: source,
                    ttl_seq: seq,
                    ttl_source: source,
                    ttl_at: u64::MAX,
                }))
            }
            Body::Hash { reset, fields } => {
                let mut h = Hash {
                    reset: ORIGIN,
                    fields: BTreeMap::new(),
                    ttl,
                    reg_seq: seq,
                    reg_source: source,
                    ttl_seq: seq,
                    ttl_source: source,
                    size: 0,
                    top: ORIGIN,
                    ttl_at: u64::MAX,
                };
                h.join(*reset, fields, seq, source);
                h.reg_seq = seq;
                h.reg_source = source;
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
                    c.reg_seq = seq;
                    c.reg_source = source;
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

/// The join rule of a key's expiry register `(version, at)`: the newer version wins; between two
/// expiries under one version (one write seen with two expiries: never issued, but every node
/// must keep the same one should it happen) the later expiry wins, [`u64::MAX`] (never) latest.
pub fn ttl_beats(a: (Version, u64), b: (Version, u64)) -> bool {
    a > b
}

/// An integer as Redis reads one from a value: optional `-`, no leading zeros or `+`, fits `i64`.
pub fn parse_int(b: &[u8]) -> Option<i64> {
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    if digits.is_empty()
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits[0] == b'0' && (digits.len() > 1 || b.len() > 1))
    {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// A number as Redis reads one from a value: an integer, or a finite float without spaces.
pub fn parse_num(b: &[u8]) -> Option<Num> {
    if let Some(i) = parse_int(b) {
        return Some(Num::Int(i));
    }
    parse_float(b).map(Num::Float)
}

/// A float as Redis reads one (`strtold`: decimal or exponent form, no spaces, finite).
pub fn parse_float(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    if s.is_empty()
        || s.starts_with(|c: char| c.is_whitespace())
        || s.ends_with(char::is_whitespace)
    {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    if lower.contains("inf") || lower.contains("nan") {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// A number as Redis writes one: integers plainly, floats without exponent and without
/// trailing zeros. Redis sums floats in `long double`; this sums in `f64`, so a result is shown
/// with at most 15 significant digits when its shortest form needs more — which hides the
/// `f64` rounding of sums like `0.1 + 0.2`, as Redis's wider type does.
pub fn format_num(n: Num) -> String {
    match n {
        Num::Int(i) => i.to_string(),
        Num::Float(f) => format_float(f),
    }
}

/// See [`format_num`].
pub fn format_float(f: f64) -> String {
    let shortest = format!("{f}");
    let significant = shortest
        .trim_start_matches('-')
        .trim_start_matches(['0', '.'])
        .chars()
        .filter(char::is_ascii_digit)
        .count();
    let s = if significant > 15 {
        let rounded: f64 = format!("{f:.14e}").parse().unwrap_or(f);
        format!("{rounded}")
    } else {
        shortest
    };
    if s == "-0" { "0".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(ts: u64) -> Version {
        Version {
            ts: Timestamp(ts),
            node: NodeId(1),
        }
    }

    fn int(c: &Cell) -> i64 {
        match c.number().unwrap() {
            Num::Int(i) => i,
            n => panic!("{n:?}"),
        }
    }

    #[test]
    fn increments_of_two_runs_add_up_in_any_order_and_twice() {
        let mut a = Cell::written(ORIGIN, None);
        let mut b = Cell::written(ORIGIN, None);
        for i in 0..10 {
            a.increment(1, Num::Int(1), v(100), i).unwrap();
            b.increment(2, Num::Int(2), v(100), i).unwrap();
        }
        let (a0, b0) = (a.clone(), b.clone());
        a.join(&b0.register, &b0.parts, 50, 1);
        a.join(&b0.register, &b0.parts, 51, 1);
        b.join(&a0.register, &a0.parts, 50, 1);
        assert_eq!(int(&a), 30);
        assert_eq!(int(&b), 30);
        assert_eq!(a.read().unwrap(), "30");
    }

    #[test]
    fn a_write_resets_what_it_saw_and_keeps_what_it_did_not() {
        let mut a = Cell::written(ORIGIN, None);
        for i in 0..500 {
            a.increment(1, Num::Int(1), v(100), i).unwrap();
        }
        let mut b = a.clone();
        a.write(v(10), Some("42".into()));
        for i in 0..300 {
            b.increment(2, Num::Int(1), v(100), i).unwrap();
        }
        let (a0, b0) = (a.clone(), b.clone());
        a.join(&b0.register, &b0.parts, 1, 1);
        b.join(&a0.register, &a0.parts, 1, 1);
        assert_eq!((int(&a), int(&b)), (342, 342));
        let mut gone = a.clone();
        gone.write(v(11), None);
        assert!(
            !gone.exists(),
            "a delete that saw everything leaves nothing"
        );
        gone.increment(3, Num::Int(5), v(100), 1).unwrap();
        assert_eq!(gone.read().unwrap(), "5");
    }

    #[test]
    fn increments_are_checked_like_redis() {
        let mut c = Cell::written(v(1), Some(Bytes::from(i64::MAX.to_string())));
        assert_eq!(
            c.increment(1, Num::Int(1), v(100), 1),
            Err(NotCounted::Overflow)
        );
        assert!(c.parts.is_empty(), "a refused increment changes nothing");
        let mut s = Cell::written(v(1), Some("abc".into()));
        assert_eq!(
            s.increment(1, Num::Int(1), v(100), 1),
            Err(NotCounted::NotANumber)
        );
        let mut f = Cell::written(v(1), Some("10.5".into()));
        assert_eq!(
            f.increment(1, Num::Int(1), v(100), 1),
            Err(NotCounted::NotANumber)
        );
        assert_eq!(
            f.increment(1, Num::Float(0.1), v(100), 1),
            Ok(Num::Float(10.6))
        );
        assert_eq!(f.read().unwrap(), "10.6");
        assert_eq!(f.increment(1, Num::Float(0.4), v(100), 2), Ok(Num::Int(11)));
        assert_eq!(f.increment(1, Num::Int(1), v(100), 3), Ok(Num::Int(12)));
        assert_eq!(
            f.increment(1, Num::Float(f64::MAX), v(100), 4)
                .and_then(|_| f.increment(1, Num::Float(f64::MAX), v(100), 5)),
            Err(NotCounted::NotFinite)
        );
        assert_eq!(parse_int(b"007"), None);
        assert_eq!(parse_int(b"+1"), None);
        assert_eq!(parse_int(b"-0"), None);
        assert_eq!(parse_int(b"0"), Some(0));
        assert_eq!(parse_int(b"-12"), Some(-12));
        assert_eq!(format_float(0.1 + 0.2), "0.3");
        assert_eq!(format_float(1e20), "100000000000000000000");
        assert_eq!(format_float(-1.5), "-1.5");
    }

    #[test]
    fn hash_fields_join_one_by_one_and_a_reset_hides_older_ones() {
        let mut a = Hash {
            reset: ORIGIN,
            fields: BTreeMap::new(),
            ttl: ORIGIN,
            reg_seq: 0,
            reg_source: 0,
            ttl_seq: 0,
            ttl_source: 0,
            size: 0,
            top: ORIGIN,
            ttl_at: u64::MAX,
        };
        let mut b = a.clone();
        a.set("x".into(), Some("1".into()), v(5), 1);
        b.set("y".into(), Some("2".into()), v(6), 1);
        b.set("x".into(), None, v(4), 2); // an older delete of x loses to the newer write
        let wire = |h: &Hash| {
            h.fields
                .iter()
                .map(|(k, f)| (k.clone(), f.clone()))
                .collect::<Vec<_>>()
        };
        let (fa, fb) = (wire(&a), wire(&b));
        a.join(b.reset, &fb, 3, 1);
        b.join(a.reset, &fa, 3, 1);
        let read = |h: &Hash| h.visible().map(|(k, v)| (k.clone(), v)).collect::<Vec<_>>();
        assert_eq!(read(&a), read(&b));
        assert_eq!(read(&a).len(), 2);
        a.join(v(5), &[], 4, 1);
        assert_eq!(read(&a), vec![(Bytes::from("y"), Bytes::from("2"))]);
        a.increment("n".into(), Num::Int(3), 9, v(7), 5).unwrap();
        assert_eq!(a.fields[&b"n"[..]].read().unwrap(), "3");
    }
}
