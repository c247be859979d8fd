//! The surface replication and the node's log readers call: changes applied from links (and as
//! if from them, in tests), the change log read in seq order, digests, and repair counts.

use std::sync::atomic::Ordering;

use super::*;

impl Cache {
    /// The whole state of `key` as one change, if it holds a value that merges: what the hub
    /// answers a fetch with.
    pub(crate) fn merged_change(&self, key: &[u8]) -> Option<Change> {
        let now = self.now_ms();
        self.shard(key).lock().merged_change(key, now)
    }

    /// Whether this cache holds nothing of `key` at or above `version` (see `Replica::wants`).
    pub(crate) fn wants(&self, key: &[u8], version: crate::clock::Version) -> bool {
        let now = self.now_ms();
        self.shard(key).lock().wants(key, version, now)
    }

    /// Sends the whole merged state of `key` again on every link — or the record of its drop, if
    /// it is gone since — if this cache holds either.
    pub(crate) fn resend(&self, key: &[u8]) {
        let core = &self.inner.core;
        let mut shard = self.shard(key).lock();
        // The whole state, or the record of its drop (it may have expired since it was sent).
        if let Some(old) = shard.record_seq(key) {
            let seq = core.next_seq();
            shard.restamp(key, seq);
            if core.groups.any() {
                core.groups.moved(old, seq);
            }
            drop(shard);
            core.changed();
        }
    }

    /// Moves every merged state to a new seq, so that every link sends it whole: after a restart
    /// from disk.
    pub(crate) fn restamp_merged(&self) {
        let core = &self.inner.core;
        for shard in self.inner.shards.iter() {
            shard.lock().restamp_merged(&mut || core.next_seq());
        }
    }

    pub(super) fn apply_purge(&self, version: Version, source: u32) -> bool {
        let mut mark = self.inner.purge.lock();
        if mark.is_some_and(|(v, _, _)| v >= version) {
            return false;
        }
        let seq = self.inner.core.next_seq();
        self.install_purge(&mut mark, version, seq, source);
        let pending = self.record(seq, Stored::Purge { version });
        if let Some(watcher) = self.inner.core.watcher() {
            watcher.cleared(self.inner.index);
        }
        drop(mark);
        write_out(pending);
        if let Some(recorder) = self.inner.core.recorder() {
            // The purged entries go off the disk too.
            recorder.purged();
        }
        true
    }

    /// Applies a change made on another node iff it is newer than what this cache knows of its
    /// key (its entry, its tombstone, or the purge mark). Returns whether it applied; duplicates and
    /// echoes of changes already applied return `false`.
    ///
    /// ```
    /// use leafcache::{Cache, Change};
    /// let a = Cache::builder().build()?;
    /// let b = Cache::builder().build()?;
    /// let version = a.set("k", "from a")?;
    /// let change = Change::Set { key: "k".into(), value: "from a".into(), version, expires_at: None };
    /// assert!(b.apply_remote(change.clone()));
    /// assert!(!b.apply_remote(change), "an echo is a no-op");
    /// assert_eq!(b.get("k").unwrap(), "from a");
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    pub fn apply_remote(&self, change: Change) -> bool {
        self.apply_from(&change, LOCAL)
    }

    /// Bench- and test-only: [`apply_remote`](Self::apply_remote) as if `change` had come in on
    /// link `link` of this node, so that replication does not send it back there — a difference
    /// between this node and that peer made on purpose, for anti-entropy to find.
    #[doc(hidden)]
    pub fn apply_as_if_from(&self, change: &Change, link: u32) -> bool {
        self.apply_from(change, link)
    }

    /// [`apply_remote`](Self::apply_remote) for a change that came in on link `source`, so that
    /// replication does not send it back there.
    pub(crate) fn apply_from(&self, change: &Change, source: u32) -> bool {
        let core = &self.inner.core;
        core.hlc.observe(change.version().ts);
        let applied = match change {
            Change::Purge { version } => self.apply_purge(*version, source),
            Change::Set { .. }
            | Change::Delete { .. }
            | Change::Invalidate { .. }
            | Change::Merge(_) => {
                let Some(key) = change.key() else {
                    return false;
                };
                let now = self.now_ms();
                let mut seq = 0;
                let mut shard = self.shard(key).lock();
                let old = core.groups.any().then(|| shard.record_seq(key)).flatten();
                let applied = shard.apply(change, source, now, || {
                    seq = core.next_seq();
                    seq
                });
                if applied && let Some(old) = old {
                    core.groups.moved(old, seq);
                }
                let pending = if applied {
                    self.tell(&mut shard, Some(key));
                    match change {
                        // A string or delete joined into a merged value is recorded as what
                        // it did there.
                        Change::Set { .. } | Change::Delete { .. }
                            if shard.merged(key, now).is_some() =>
                        {
                            let m = shard.merged_at(key, seq);
                            m.and_then(|m| self.record(seq, Stored::Merged { merge: &m }))
                        }
                        _ => self.record(seq, stored(change, now)),
                    }
                } else {
                    self.tell(&mut shard, None);
                    None
                };
                drop(shard);
                write_out(pending);
                applied
            }
        };
        if applied {
            core.changed();
        }
        applied
    }

    /// Hands an applied change to the node's recorder, if it has one: the one place persistence
    /// is entered. Returns the recorder to write out through once the caller's locks are released.
    #[inline]
    pub(super) fn record(&self, seq: u64, stored: Stored<'_>) -> Option<&dyn Recorder> {
        let recorder = self.inner.core.recorder()?;
        recorder
            .record(self.inner.index, seq, stored)
            .then_some(recorder)
    }

    /// The changes this cache applied after local seq `after`, in seq order, at most `max` of them.
    ///
    /// The log is compacted: a key changed many times appears once, at its latest change, as a
    /// `Set`, a `Delete` (tombstone), or an `Invalidate` (evicted or expired here). Calling again
    /// with the last returned seq continues the scan; an empty answer means the scan has caught up.
    /// A scan from 0 is a consistent snapshot in the usual sense: every record is a real state, and
    /// changes made while it runs appear later in the same scan.
    ///
    /// The answer is complete only when `after >= floor()`; below that, records were forgotten.
    pub fn changes_since(&self, after: u64, max: usize) -> Vec<Stamped> {
        let upto = self.inner.core.current_seq();
        let scan = Scan {
            after,
            upto,
            since: after,
            skip: LOCAL,
        };
        self.changes_between(scan, max)
    }

    /// The records `scan` covers, in seq order, at most `max`. `scan.upto` must have been read from the node's seq counter before
    /// the call: seqs are handed out under the shard lock that records them, so every seq up to it
    /// is then visible.
    ///
    /// Keys of merged types carry the part of their state changed after `since` (at most
    /// `after`): everything the receiver may lack. A scan cut short by `max` moves a receiver's
    /// watermark past parts of keys whose record lies further on, so `since` stays where the last
    /// scan that reached `upto` left it.
    /// Calls `f(key, item)` for every record of this cache with a seq up to `upto` (the purge
    /// mark with no key), shard by shard: what a digest covers. See [`Shard::digest_records`].
    pub(crate) fn digest_records(&self, upto: u64, f: &mut dyn FnMut(Option<&[u8]>, DigestItem)) {
        let now = self.now_ms();
        for shard in self.inner.shards.iter() {
            shard
                .0
                .read()
                .digest_records(upto, now, &mut |k, item| f(Some(k), item));
        }
        if let Some((version, seq, _)) = *self.inner.purge.lock()
            && seq <= upto
        {
            f(None, DigestItem::Purge(version));
        }
    }

    pub(crate) fn changes_between(&self, scan: Scan, max: usize) -> Vec<Stamped> {
        let Scan {
            after,
            upto,
            since,
            skip,
        } = scan;
        let purge = *self.inner.purge.lock();
        let mut out = Vec::new();
        let mut lo = after;
        while out.len() < max && lo < upto {
            // Seqs are unique node-wide, so a window this wide holds at most `max - len` records.
            let hi = lo.saturating_add((max - out.len()) as u64).min(upto);
            let start = out.len();
            for shard in self.inner.shards.iter() {
                let window = Scan {
                    after: lo,
                    upto: hi,
                    since,
                    skip,
                };
                shard.lock().changes_in(window, &mut out);
            }
            if let Some((version, seq, source)) = purge
                && !skipped(source, skip)
                && seq > lo
                && seq <= hi
            {
                out.push(Stamped {
                    seq,
                    change: Change::Purge { version },
                });
            }
            out[start..].sort_unstable_by_key(|s| s.seq);
            lo = hi;
            if out.len() == start {
                // An empty window: jump straight to the next record, if any.
                let next = self
                    .inner
                    .shards
                    .iter()
                    .filter_map(|s| s.lock().next_seq_after(lo))
                    .chain(purge.map(|(_, s, _)| s).filter(|&s| s > lo))
                    .min();
                match next {
                    Some(n) if n <= upto => lo = n - 1,
                    _ => break,
                }
            }
        }
        out
    }

    /// The records of this cache with `after < seq <= upto`, and their key and value bytes.
    pub(crate) fn pending(&self, after: u64, upto: u64) -> (u64, u64) {
        self.inner.shards.iter().fold((0, 0), |(n, b), s| {
            let (sn, sb) = s.lock().pending(after, upto);
            (n + sn, b + sb)
        })
    }

    /// When the oldest record above `after` in this cache was written, by its version (ms), if it
    /// has one.
    pub(crate) fn written_after(&self, after: u64) -> Option<u64> {
        self.inner
            .shards
            .iter()
            .filter_map(|s| s.lock().written_after(after))
            .min()
    }

    /// Counts a key anti-entropy repaired (see [`CacheStats::antientropy_repairs`]).
    pub(crate) fn note_repair(&self) {
        self.inner
            .antientropy_repairs
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// A change from a peer as the cache stores it once applied.
fn stored(change: &Change, now: u64) -> Stored<'_> {
    match change {
        Change::Set {
            key,
            value,
            version,
            expires_at,
        } => Stored::Live {
            key,
            value,
            version: *version,
            expires_at: expires_at.unwrap_or(NEVER),
        },
        Change::Delete { key, version } | Change::Invalidate { key, version } => Stored::Dead {
            key,
            version: *version,
            tombstone: matches!(change, Change::Delete { .. }),
            since_ms: now,
        },
        Change::Purge { version } => Stored::Purge { version: *version },
        Change::Merge(m) => Stored::Merged { merge: m },
    }
}
