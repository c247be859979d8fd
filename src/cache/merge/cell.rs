//! The cell every merged value is built from: a register (the last write, with the increments it
//! had seen) and the parts, one per run that incremented it; and how two copies of each join.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::*;
use crate::clock::Version;

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

impl PartialEq for Part {
    fn eq(&self, o: &Self) -> bool {
        (self.run, self.origin, self.sum, self.version) == (o.run, o.origin, o.sum, o.version)
    }
}

impl Eq for Part {}

/// Whether copy `a` of a part replaces copy `b` of the same part: the one with more operations.
/// A run's part only grows, so that is the newer copy; should two copies ever hold as many
/// operations but differ (a node forgot a deleted key's state past its retention, learned an
/// older copy of its own part and counted on it), the one with the newer last increment wins,
/// the same on every node.
pub(super) fn part_beats(a: &Part, b: &Part) -> bool {
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
    pub(super) fn beats(&self, other: &Register) -> bool {
        (self.version, self.content.is_none(), &self.content)
            > (other.version, other.content.is_none(), &other.content)
    }
}

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
    pub(super) fn unseen(&self) -> bool {
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
    pub(super) fn restamp(&mut self, seq: u64) {
        for p in &mut self.parts {
            p.seq = seq;
            p.source = 0;
        }
    }

    /// Accounted bytes on top of the entry: content and parts.
    pub(super) fn bytes(&self) -> usize {
        self.register.content.as_ref().map_or(0, Bytes::len)
            + self.parts.len() * std::mem::size_of::<Part>()
    }
}
