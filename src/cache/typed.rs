//! The embedded API of the values that merge: counters (`incr`, `incr_float`) and hashes
//! (`hset`, `hget`, `hgetall`, `hdel`, `hincr`), each a local change under the key's shard lock,
//! replicated as the part of the state it changed (see [`merge`](super::merge)).

use bytes::Bytes;

use super::merge::{FIELD_OVERHEAD, Hash, Merged, Num, Part};

/// The most bytes an increment adds: one new part.
const PART_BYTES: usize = std::mem::size_of::<Part>();
/// The most bytes a field increment adds: a new counter cell and its part.
const CELL_BYTES: usize = std::mem::size_of::<super::merge::Cell>() + PART_BYTES;
use super::ports::Stored;
use super::shard::{KeyArg, Kind, Target};
use super::{Cache, Expiry, write_out};
use crate::error::Error;

impl Cache {
    /// Adds `by` to the integer counter at `key` and returns the new value, as Redis `INCRBY`: a
    /// missing key counts from 0, a string holding an integer counts from it. Increments made on
    /// several nodes, even during a partition, add up on every node; a write (`set`, `delete`) that
    /// had seen increments replaces them, while increments it had not seen stay on top of it.
    ///
    /// ```
    /// # let cache = leafcache::Cache::builder().build()?;
    /// assert_eq!(cache.incr("hits", 1)?, 1);
    /// assert_eq!(cache.incr("hits", 41)?, 42);
    /// assert_eq!(cache.get("hits").unwrap(), "42");
    /// cache.set("hits", "100")?;
    /// assert_eq!(cache.incr("hits", -1)?, 99);
    /// assert!(cache.incr("hits", i64::MAX).is_err(), "overflow changes nothing");
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotCounted`] if the value is not an integer or the result would overflow;
    /// [`Error::WrongType`] on a hash.
    pub fn incr(&self, key: impl AsRef<[u8]>, by: i64) -> Result<i64, Error> {
        match self.count(key.as_ref(), Num::Int(by))? {
            Num::Int(n) => Ok(n),
            Num::Float(_) => Err(Error::NotCounted(super::merge::NotCounted::NotANumber)),
        }
    }

    /// Adds `by` to the counter at `key` as a float and returns the new value, as Redis
    /// `INCRBYFLOAT`.
    ///
    /// ```
    /// # let cache = leafcache::Cache::builder().build()?;
    /// cache.set("t", "10.5")?;
    /// assert_eq!(cache.incr_float("t", 0.1)?, 10.6);
    /// assert_eq!(cache.get("t").unwrap(), "10.6");
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`incr`](Self::incr), and when the result would be NaN or infinite.
    pub fn incr_float(&self, key: impl AsRef<[u8]>, by: f64) -> Result<f64, Error> {
        Ok(match self.count(key.as_ref(), Num::Float(by))? {
            Num::Int(n) => n as f64,
            Num::Float(f) => f,
        })
    }

    fn count(&self, key: &[u8], by: Num) -> Result<Num, Error> {
        self.change_merged(
            key,
            Target::Counter,
            PART_BYTES,
            |m, run, version, seq| match m {
                Merged::Counter(c) => Ok(c.cell.increment(run, by, version, seq)?),
                Merged::Hash(_) => Err(Error::WrongType),
            },
        )
    }

    /// Sets `field` of the hash at `key` to `value`; returns whether the field is new. Writes to
    /// different fields on several nodes all survive; one field written on two nodes ends with the
    /// newer write, as a key does.
    ///
    /// ```
    /// # let cache = leafcache::Cache::builder().build()?;
    /// assert!(cache.hset("user:1", "name", "ada")?);
    /// assert!(!cache.hset("user:1", "name", "grace")?);
    /// assert_eq!(cache.hget("user:1", "name")?.unwrap(), "grace");
    /// assert_eq!(cache.hincr("user:1", "visits", 2)?, 2);
    /// assert_eq!(cache.hgetall("user:1")?.len(), 2);
    /// assert_eq!(cache.hdel("user:1", ["name", "nope"])?, 1);
    /// assert!(cache.get("user:1").is_none(), "a hash is not read as a string");
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::WrongType`] if the key holds a string; [`Error::ValueTooLarge`] if the hash would
    /// outgrow the cache's per-entry limit.
    pub fn hset(
        &self,
        key: impl AsRef<[u8]>,
        field: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<bool, Error> {
        let pairs = [(field.into(), value.into())];
        Ok(self.hset_many(key.as_ref(), &pairs, false)? == 1)
    }

    /// Sets several fields at once (Redis `HSET key f v [f v ...]`, or `HSETNX` with `if_new`,
    /// which writes only fields that hold nothing); returns how many fields are new.
    pub(crate) fn hset_many(
        &self,
        key: &[u8],
        pairs: &[(Bytes, Bytes)],
        if_new: bool,
    ) -> Result<usize, Error> {
        let grow = pairs
            .iter()
            .map(|(f, v)| f.len() + v.len() + FIELD_OVERHEAD)
            .sum();
        self.change_merged(key, Target::Hash, grow, |m, _, version, seq| {
            let Merged::Hash(h) = m else {
                return Err(Error::WrongType);
            };
            let mut added = 0;
            for (field, value) in pairs {
                if if_new && h.fields.get(field).is_some_and(|f| f.read().is_some()) {
                    continue;
                }
                let held = h.set(field.clone(), Some(value.clone()), version, seq);
                added += usize::from(!held);
            }
            Ok(added)
        })
    }

    /// The value of `field` in the hash at `key`.
    ///
    /// # Errors
    /// [`Error::WrongType`] if the key holds a string.
    pub fn hget(
        &self,
        key: impl AsRef<[u8]>,
        field: impl AsRef<[u8]>,
    ) -> Result<Option<Bytes>, Error> {
        self.read_hash(key.as_ref(), |h| {
            h.and_then(|h| h.fields.get(field.as_ref())?.read())
        })
    }

    /// Every field of the hash at `key` that holds a value, in field order (empty if the key holds
    /// nothing).
    ///
    /// # Errors
    /// [`Error::WrongType`] if the key holds a string.
    pub fn hgetall(&self, key: impl AsRef<[u8]>) -> Result<Vec<(Bytes, Bytes)>, Error> {
        self.read_hash(key.as_ref(), |h| {
            h.map(|h| h.visible().map(|(k, v)| (k.clone(), v)).collect())
                .unwrap_or_default()
        })
    }

    /// Deletes `fields` from the hash at `key`, leaving field tombstones so that an older write of
    /// a field cannot bring it back; returns how many held a value. A hash left with no field is
    /// deleted, as in Redis.
    ///
    /// # Errors
    /// [`Error::WrongType`] if the key holds a string.
    pub fn hdel<F: AsRef<[u8]>>(
        &self,
        key: impl AsRef<[u8]>,
        fields: impl IntoIterator<Item = F>,
    ) -> Result<usize, Error> {
        let key = key.as_ref();
        let fields: Vec<Bytes> = fields
            .into_iter()
            .map(|f| Bytes::copy_from_slice(f.as_ref()))
            .collect();
        if self.read_hash(key, |h| h.is_none())? {
            return Ok(0);
        }
        self.change_merged(key, Target::Hash, 0, |m, _, version, seq| {
            let Merged::Hash(h) = m else {
                return Err(Error::WrongType);
            };
            let mut removed = 0;
            for field in &fields {
                if h.fields.get(field).is_some_and(|f| f.read().is_some()) {
                    removed += 1;
                    h.set(field.clone(), None, version, seq);
                }
            }
            Ok(removed)
        })
    }

    /// Adds `by` to the integer counter in `field` of the hash at `key` (Redis `HINCRBY`); such
    /// fields merge like counters.
    ///
    /// # Errors
    /// [`Error::NotCounted`] if the field holds no integer or the result would overflow;
    /// [`Error::WrongType`] if the key holds a string.
    pub fn hincr(
        &self,
        key: impl AsRef<[u8]>,
        field: impl Into<Bytes>,
        by: i64,
    ) -> Result<i64, Error> {
        match self.hcount(key.as_ref(), field.into(), Num::Int(by))? {
            Num::Int(n) => Ok(n),
            Num::Float(_) => Err(Error::NotCounted(super::merge::NotCounted::NotANumber)),
        }
    }

    /// [`hincr`](Self::hincr) with a float (Redis `HINCRBYFLOAT`).
    ///
    /// # Errors
    /// As [`incr_float`](Self::incr_float).
    pub fn hincr_float(
        &self,
        key: impl AsRef<[u8]>,
        field: impl Into<Bytes>,
        by: f64,
    ) -> Result<f64, Error> {
        Ok(
            match self.hcount(key.as_ref(), field.into(), Num::Float(by))? {
                Num::Int(n) => n as f64,
                Num::Float(f) => f,
            },
        )
    }

    fn hcount(&self, key: &[u8], field: Bytes, by: Num) -> Result<Num, Error> {
        let grow = field.len() + FIELD_OVERHEAD + CELL_BYTES;
        self.change_merged(key, Target::Hash, grow, |m, run, version, seq| {
            let Merged::Hash(h) = m else {
                return Err(Error::WrongType);
            };
            Ok(h.increment(field, by, run, version, seq)?)
        })
    }

    /// The type of value `key` holds, if it holds one.
    ///
    /// ```
    /// use leafcache::Kind;
    /// # let cache = leafcache::Cache::builder().build()?;
    /// cache.set("s", "v")?;
    /// cache.incr("n", 1)?;
    /// cache.hset("h", "f", "v")?;
    /// assert_eq!(cache.kind("s"), Some(Kind::String));
    /// assert_eq!(cache.kind("n"), Some(Kind::Counter));
    /// assert_eq!(cache.kind("h"), Some(Kind::Hash));
    /// assert_eq!(cache.kind("missing"), None);
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    pub fn kind(&self, key: impl AsRef<[u8]>) -> Option<Kind> {
        let key = key.as_ref();
        let now = self.now_ms();
        self.shard(key).lock().kind(key, now)
    }

    /// Runs `f` on the hash at `key` (`None` if the key holds nothing), under its shard's lock.
    ///
    /// # Errors
    /// [`Error::WrongType`] if the key holds a string.
    pub(crate) fn read_hash<T>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&Hash>) -> T,
    ) -> Result<T, Error> {
        let now = self.now_ms();
        let mut shard = self.shard(key).lock();
        let out = f(shard.hash(key, now)?);
        if !shard.dropped.is_empty() {
            self.tell(&mut shard, None);
        }
        Ok(out)
    }

    /// Changes the expiry of a key holding a value that merges, as a write of its expiry alone.
    pub(crate) fn expire_merged(&self, key: &[u8], expires_at: u64) -> Result<(), Error> {
        let target = match self.kind(key) {
            Some(Kind::Hash) => Target::Hash,
            _ => Target::Counter,
        };
        self.change_merged_at(key, target, 0, |m, at, _, version, seq| {
            m.join_ttl(version, expires_at, seq, super::LOCAL);
            *at = expires_at;
            Ok(())
        })
    }

    /// A local change to `key` as a value of `target`'s type: `f` gets the state (begun from
    /// what the key holds), this run's id, and the change's version and seq. Recorded and
    /// replicated like any write; on `f`'s error nothing changes.
    pub(crate) fn change_merged<T>(
        &self,
        key: &[u8],
        target: Target,
        grow: usize,
        f: impl FnOnce(&mut Merged, u128, crate::clock::Version, u64) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.change_merged_at(key, target, grow, |m, _, run, version, seq| {
            f(m, run, version, seq)
        })
    }

    /// [`change_merged`](Self::change_merged), with the key's expiry for `f` to change.
    pub(crate) fn change_merged_at<T>(
        &self,
        key: &[u8],
        target: Target,
        grow: usize,
        f: impl FnOnce(&mut Merged, &mut u64, u128, crate::clock::Version, u64) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let now = self.now_ms();
        let fresh = self.expires_at(Expiry::Default, now)?;
        let core = &self.inner.core;
        let mut shard = self.shard(key).lock();
        let version = core.new_version();
        let seq = core.next_seq();
        let old = core.groups.any().then(|| shard.record_seq(key)).flatten();
        let run = core.run;
        let out = shard.change_merged(
            KeyArg::Borrowed(key),
            target,
            version,
            seq,
            now,
            (fresh, grow),
            |m, at| f(m, at, run, version, seq),
        )?;
        if let Some(old) = old {
            core.groups.moved(old, seq);
        }
        self.tell(&mut shard, Some(key));
        // Built only for a recorder: walking a big hash's fields is not free.
        let pending = core
            .recorder()
            .and_then(|_| shard.merged_at(key, seq))
            .and_then(|m| self.record(seq, Stored::Merged { merge: &m }));
        drop(shard);
        write_out(pending);
        core.changed();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::cache::merge::Body;
    use crate::cache::{Cache, Change};

    #[test]
    fn a_hash_counted_again_after_its_last_field_went_counts_from_nothing() {
        let c = Cache::builder().build().unwrap();
        c.hincr("h", "f", 4).unwrap();
        c.hdel("h", ["f"]).unwrap();
        assert_eq!(c.hgetall("h").unwrap(), vec![]);
        c.hincr("h", "f", 3).unwrap();
        let changes = c.changes_since(0, 10);
        let Change::Merge(m) = &changes.last().unwrap().change else {
            panic!("{changes:?}")
        };
        assert!(matches!(m.body, Body::Hash { .. }), "{m:?}");
        // The delete saw the first 4: they stay reset away, whatever joins later.
        assert_eq!(c.hget("h", "f").unwrap().unwrap(), "3");
    }
}
