//! Hashes whose fields merge one by one under a key-level reset, and what their fields cost.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::*;
use crate::clock::Version;

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
    pub(super) fn to_cell(&self) -> Cell {
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
    pub(super) fn join(&mut self, other: &Field, seq: u64, source: u32) -> bool {
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

    pub(super) fn bytes(&self, name: &[u8]) -> usize {
        self.bytes_len(name.len())
    }

    pub(super) fn bytes_len(&self, name_len: usize) -> usize {
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

/// A key holding a hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hash {
    /// The version of the last `DEL` of the whole hash: fields at or below it are gone.
    pub reset: Version,
    /// Its fields, visible or deleted.
    pub fields: BTreeMap<Bytes, Field>,
    /// The accounted bytes of its fields, kept as they change (a big hash is not summed again
    /// at every write).
    pub size: usize,
    /// The newest version of any field, kept as they change.
    pub top: Version,
    /// The key's expiry register, and where the last changes of the reset and the expiry came
    /// from.
    pub head: Header,
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
            self.head.reg_seq = seq;
            self.head.reg_source = source;
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

    pub(super) fn restamp(&mut self, seq: u64) {
        self.head.reg_seq = seq;
        self.head.reg_source = 0;
        self.head.ttl_seq = seq;
        self.head.ttl_source = 0;
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

/// Bytes accounted per counter on top of its parts and the entry: the counter's box, its parts'
/// vector and their allocations (measured as [`FIELD_OVERHEAD`] is: 1,076 B resident per
/// counter with one part and a 10-byte key, against 419 B for a string entry).
pub const COUNTER_OVERHEAD: usize = 400;
