//! Restore and export: records read back from disk installed with the seqs they had, and the
//! cache's records handed out for a snapshot.

use bytes::Bytes;

use super::*;

impl Cache {
    /// Restores a record read from disk (see [`Shard::restore`]).
    pub(crate) fn restore_record(
        &self,
        key: Bytes,
        version: Version,
        seq: u64,
        what: Restored,
        now: u64,
    ) -> bool {
        self.inner.core.hlc.observe(version.ts);
        self.shard(&key)
            .lock()
            .restore(key, version, seq, what, now)
    }

    /// Joins a merged change read from disk.
    pub(crate) fn restore_merge(&self, merge: &merge::Merge, seq: u64, now: u64) -> bool {
        self.inner.core.hlc.observe(merge.version.ts);
        self.shard(&merge.key).lock().restore_merge(merge, seq, now)
    }

    /// Restores a purge read from disk.
    pub(crate) fn restore_purge(&self, version: Version, seq: u64) {
        self.inner.core.hlc.observe(version.ts);
        let mut mark = self.inner.purge.lock();
        if mark.is_none_or(|(v, _, _)| v < version) {
            self.install_purge(&mut mark, version, seq, LOCAL);
        }
    }

    /// Sets the purge mark (whose lock the caller holds) and purges every shard.
    pub(super) fn install_purge(
        &self,
        mark: &mut Option<(Version, u64, u32)>,
        version: Version,
        seq: u64,
        source: u32,
    ) {
        *mark = Some((version, seq, source));
        let core = &self.inner.core;
        for shard in self.inner.shards.iter() {
            shard.lock().purge(version, &mut || core.next_seq());
        }
    }

    /// Ends a restore: puts each shard's change log back in seq order (records came back in
    /// the order they were written to disk, not their seqs').
    pub(crate) fn restored(&self) {
        for shard in self.inner.shards.iter() {
            shard.lock().settle();
        }
    }

    /// Restores the floor read from disk.
    pub(crate) fn restore_floor(&self, floor: u64) {
        self.inner.shards[0].lock().restore_floor(floor);
    }

    /// Hands `f` this cache's state with the seqs it was recorded at: purge mark and floor, then
    /// each shard's entries (least recently used first) and dead records, one shard under its lock
    /// at a time.
    pub(crate) fn export<E>(
        &self,
        mut f: impl FnMut(u64, Stored<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let purge = *self.inner.purge.lock();
        if let Some((version, seq, _)) = purge {
            f(seq, Stored::Purge { version })?;
        }
        f(self.floor(), Stored::Floor)?;
        for shard in self.inner.shards.iter() {
            shard.lock().export(&mut f)?;
        }
        Ok(())
    }
}
