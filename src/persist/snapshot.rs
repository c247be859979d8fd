//! Snapshots: the whole state streamed shard by shard into `snapshot.tmp`, synced and renamed;
//! the op-log segments it covers dropped; the final snapshot of a graceful stop.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::time::Instant;

use tracing::{error, info};

use super::format::{Record, SNAPSHOT_MAGIC, frame};
use super::oplog::*;
use super::root::*;
use super::*;
use crate::cache::Caches;
use crate::cache::ports::Stored;
use crate::clock::NodeId;
use crate::replication::message::Resume;

impl Journal {
    /// Writes a snapshot of `node` and drops the op-log segments it covers; its outcome is kept
    /// for [`status`](Self::status).
    pub fn snapshot(
        &self,
        caches: &Caches,
        marks: &[(NodeId, Resume)],
    ) -> io::Result<SnapshotReport> {
        let written = self.write_snapshot(caches, marks);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.snapshotted(now, &written);
        written
    }

    ///
    /// The op log is rotated first, so every change in the dropped segments was applied before the
    /// snapshot began and is in it. Each shard is written under its lock, streamed through a
    /// buffer: no copy of the cache is made.
    fn write_snapshot(
        &self,
        caches: &Caches,
        marks: &[(NodeId, Resume)],
    ) -> io::Result<SnapshotReport> {
        let _one = self.snapshotting.lock();
        if self.is_closed() {
            return Err(io::Error::other(
                "the node was shut down and released its root",
            ));
        }
        let started = Instant::now();
        let segment = self.rotate()?;
        let tmp = self.root.join(SNAPSHOT_TMP);
        let file = private_file(&tmp, true)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        w.write_all(SNAPSHOT_MAGIC)?;
        let mut buf = self.header(segment);
        let mut entries = 0u64;
        // Watermarks first: everything they cover was applied before the shards are read.
        for &(peer, mark) in marks {
            frame(
                &mut buf,
                &Record::<&[u8]>::Mark {
                    peer,
                    incarnation: mark.incarnation,
                    seq: mark.seq,
                },
            )
            .map_err(io::Error::other)?;
            entries += 1;
        }
        let (mut live, mut dead) = (0u64, 0u64);
        for cache in caches.all() {
            cache.export(|seq, stored| {
                match stored {
                    Stored::Live { .. } => live += 1,
                    Stored::Dead { .. } => dead += 1,
                    _ => {}
                }
                entries += 1;
                frame(&mut buf, &to_record(cache.index(), seq, stored))
                    .map_err(io::Error::other)?;
                if buf.len() >= 256 << 10 {
                    w.write_all(&buf)?;
                    buf.clear();
                }
                Ok::<(), io::Error>(())
            })?;
        }
        frame(&mut buf, &Record::<&[u8]>::End { entries }).map_err(io::Error::other)?;
        w.write_all(&buf)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let bytes = file.metadata()?.len();
        std::fs::rename(&tmp, self.root.join(SNAPSHOT))?;
        File::open(&self.root)?.sync_all()?;
        for (n, path) in list_segments(&self.root)? {
            if n < segment {
                std::fs::remove_file(path)?;
            }
        }
        let report = SnapshotReport {
            entries: live,
            dead,
            bytes,
            elapsed: started.elapsed(),
        };
        info!(
            root = %self.root.display(),
            entries = live,
            dead,
            bytes,
            ms = report.elapsed.as_millis() as u64,
            "snapshot written"
        );
        Ok(report)
    }

    /// The final snapshot of a graceful stop, then the exact seq and clock reading as the leases.
    pub fn close(&self, caches: &Caches, marks: &[(NodeId, Resume)]) {
        if let Err(e) = self.snapshot(caches, marks) {
            error!(root = %self.root.display(), "final snapshot failed, the op log keeps the changes: {e}");
            self.release();
            return;
        }
        let core = caches.core();
        self.settle_lease(core.current_seq(), core.hlc.last());
        self.release();
    }
}
