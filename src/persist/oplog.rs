//! The op log: every applied change appended in order (the [`Recorder`] the caches record
//! through), written out per the [`Flush`] setting, rotated at snapshots; the leases kept in the
//! identity file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tracing::{error, info};

use super::format::{self, LOG_MAGIC, Record, frame};
use super::root::*;
use super::*;
use crate::cache::Cache;
use crate::cache::ports::{Recorder, Stored};
use crate::clock::{NodeId, Timestamp, Version};
use crate::error::Error;
use crate::replication::message::Resume;

/// The two leases kept in the identity file.
#[derive(Clone, Copy, Debug)]
enum Lease {
    /// No seq above it was handed out.
    Seq,
    /// No version timestamp above it was issued.
    Clock,
}

/// The outcomes of snapshots and writes, kept for [`Journal::status`].
#[derive(Debug, Default)]
pub(super) struct Health {
    pub(super) last: Option<(u64, SnapshotReport)>,
    pub(super) snapshot_error: Option<String>,
    pub(super) snapshot_failures: u64,
    pub(super) write_errors: u64,
    pub(super) write_error: Option<String>,
}

/// The open segment of the op log.
pub(super) struct Out {
    pub(super) file: Option<File>,
    pub(super) segment: u64,
    pub(super) bytes: u64,
    /// The buffer swapped with the pending one at each flush, so neither is reallocated.
    pub(super) spare: Vec<u8>,
}

/// A node's running persistence: the op log it appends every applied change to, the seq lease,
/// and the snapshot writer.
pub(crate) struct Journal {
    pub(super) root: PathBuf,
    pub(super) flush: Flush,
    pub snapshot_every: Duration,
    pub(super) node: NodeId,
    pub(super) incarnation: uuid::Uuid,
    pub(super) writer: NodeId,
    pub(super) caches: Vec<String>,
    /// Framed entries not yet written.
    pub(super) pending: Mutex<Vec<u8>>,
    pub(super) out: Mutex<Out>,
    /// No seq above this was handed out; moved ahead in blocks, written to `identity` first.
    pub(super) lease: AtomicU64,
    /// No version timestamp above this was issued; moved ahead in blocks like `lease`.
    pub(super) clock_lease: AtomicU64,
    pub(super) identity: Mutex<()>,
    /// One snapshot at a time.
    pub(super) snapshotting: Mutex<()>,
    /// Asks the snapshot task for a snapshot now (after a purge, or a long segment).
    pub wanted: tokio::sync::Notify,
    /// Whether the last write failed (logged once, until one succeeds again).
    pub(super) failing: AtomicBool,
    /// What the persistence status reports that the files do not say: the last snapshot, the
    /// failures.
    pub(super) health: Mutex<Health>,
    /// Set by [`release`](Self::release): nothing more is written to the root.
    pub(super) closed: AtomicBool,
    /// The root's lock, held until the node shuts down (or the journal is dropped).
    pub(super) lock: Mutex<Option<File>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("root", &self.root)
            .field("flush", &self.flush)
            .finish_non_exhaustive()
    }
}

impl Journal {
    pub(super) fn create(
        store: Store,
        caches: &[Cache],
        segment: u64,
        seq: u64,
        clock: u64,
    ) -> Result<Arc<Journal>, Error> {
        let Store {
            settings,
            lock,
            id,
            incarnation,
            writer,
            ..
        } = store;
        let journal = Journal {
            root: settings.root,
            flush: settings.flush,
            snapshot_every: settings.snapshot_every,
            node: id,
            incarnation,
            writer,
            caches: caches.iter().map(|c| c.name().to_string()).collect(),
            pending: Mutex::new(Vec::with_capacity(64 << 10)),
            out: Mutex::new(Out {
                file: None,
                segment,
                bytes: 0,
                spare: Vec::with_capacity(64 << 10),
            }),
            lease: AtomicU64::new(seq),
            clock_lease: AtomicU64::new(clock),
            identity: Mutex::new(()),
            snapshotting: Mutex::new(()),
            wanted: tokio::sync::Notify::new(),
            failing: AtomicBool::new(false),
            health: Mutex::new(Health::default()),
            closed: AtomicBool::new(false),
            lock: Mutex::new(Some(lock)),
        };
        journal
            .write_identity(
                seq.saturating_add(LEASE_BLOCK),
                clock.saturating_add(CLOCK_BLOCK),
            )
            .map_err(io_error(format!(
                "writing {}",
                journal.root.join(IDENTITY).display()
            )))?;
        let file = journal.open_segment(segment).map_err(io_error(format!(
            "creating {}",
            segment_path(&journal.root, segment).display()
        )))?;
        {
            let mut out = journal.out.lock();
            out.bytes = file.1;
            out.file = Some(file.0);
        }
        Ok(Arc::new(journal))
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How persistence stands.
    pub fn status(&self) -> PersistStatus {
        let (oplog_bytes, pending) = (self.out.lock().bytes, self.pending.lock().len());
        let h = self.health.lock();
        let (at, last) = h.last.map_or((None, None), |(at, r)| (Some(at), Some(r)));
        PersistStatus {
            root: self.root.display().to_string(),
            flush: self.flush.to_string(),
            last_snapshot_ms: at,
            last_snapshot_bytes: last.map_or(0, |r| r.bytes),
            last_snapshot_entries: last.map_or(0, |r| r.entries),
            last_snapshot_duration_ms: last.map_or(0, |r| r.elapsed.as_millis() as u64),
            snapshot_error: h.snapshot_error.clone(),
            snapshot_failures: h.snapshot_failures,
            oplog_bytes,
            oplog_pending_bytes: pending as u64,
            write_errors: h.write_errors,
            write_error: h.write_error.clone(),
        }
    }

    /// Records the outcome of a write to the op log or the identity file.
    pub(super) fn wrote(&self, result: &io::Result<()>) {
        let mut h = self.health.lock();
        match result {
            Ok(()) => h.write_error = None,
            Err(e) => {
                h.write_errors += 1;
                h.write_error = Some(e.to_string());
            }
        }
    }

    /// Records the outcome of a snapshot written at `now` (wall ms).
    pub(super) fn snapshotted(&self, now: u64, result: &io::Result<SnapshotReport>) {
        let mut h = self.health.lock();
        match result {
            Ok(report) => {
                h.last = Some((now, *report));
                h.snapshot_error = None;
            }
            Err(e) => {
                h.snapshot_failures += 1;
                h.snapshot_error = Some(e.to_string());
            }
        }
    }

    pub(super) fn header(&self, segment: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = frame(
            &mut buf,
            &Record::<&[u8]>::Header {
                node: self.node,
                incarnation: self.incarnation.as_u128(),
                caches: self.caches.clone(),
                segment,
            },
        );
        buf
    }

    pub(super) fn open_segment(&self, n: u64) -> io::Result<(File, u64)> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(segment_path(&self.root, n))?;
        let mut head = LOG_MAGIC.to_vec();
        head.extend_from_slice(&self.header(n));
        f.write_all(&head)?;
        Ok((f, head.len() as u64))
    }

    pub(super) fn write_identity(&self, lease: u64, clock_lease: u64) -> io::Result<()> {
        let _one = self.identity.lock();
        let text = format!(
            "# This node's identity; written by leafcache. Do not copy it to another node's root.\n{}",
            toml::to_string(&Identity {
                node_id: self.node.to_string(),
                incarnation: self.incarnation.to_string(),
                seq_lease: lease,
                clock_lease,
                writer_id: Some(self.writer.to_string()),
            })
            .map_err(io::Error::other)?
        );
        write_atomic(&self.root, IDENTITY, text.as_bytes())?;
        self.lease.store(lease, Ordering::SeqCst);
        self.clock_lease.store(clock_lease, Ordering::SeqCst);
        Ok(())
    }

    /// Called with every seq handed out: moves the lease ahead before a seq passes it.
    #[inline]
    pub fn check_lease(&self, seq: u64) {
        if seq > self.lease.load(Ordering::Relaxed) {
            self.extend(Lease::Seq, seq);
        }
    }

    /// Called with every version timestamp issued: moves the clock lease ahead before one passes
    /// it.
    #[inline]
    pub fn check_clock(&self, ts: u64) {
        if ts > self.clock_lease.load(Ordering::Relaxed) {
            self.extend(Lease::Clock, ts);
        }
    }

    /// Moves one lease a block past `needed`, writing the identity first.
    #[cold]
    fn extend(&self, which: Lease, needed: u64) {
        let (seq, clock) = (
            self.lease.load(Ordering::SeqCst),
            self.clock_lease.load(Ordering::SeqCst),
        );
        let (current, seq, clock) = match which {
            Lease::Seq => (seq, needed.saturating_add(LEASE_BLOCK), clock),
            Lease::Clock => (clock, seq, needed.saturating_add(CLOCK_BLOCK)),
        };
        if needed <= current {
            return;
        }
        let written = self.write_identity(seq, clock);
        if let Err(e) = &written {
            // Keep going: seqs or versions are only at risk if the node also crashes now.
            let which = match which {
                Lease::Seq => "seq",
                Lease::Clock => "clock",
            };
            error!(root = %self.root.display(), lease = which, error = %e, "cannot extend a lease in the identity file");
            self.wrote(&written);
            self.lease.store(seq, Ordering::SeqCst);
            self.clock_lease.store(clock, Ordering::SeqCst);
        }
    }

    /// Records the exact last seq and clock reading as the leases: after a graceful stop the
    /// node resumes there.
    pub(super) fn settle_lease(&self, seq: u64, clock: u64) {
        if let Err(e) = self.write_identity(seq, clock) {
            error!(root = %self.root.display(), "cannot write the identity file: {e}");
        }
    }

    /// Appends an entry to the op log; `true` if the caller must [`flush`](Self::flush) once it
    /// has released its locks.
    #[inline]
    pub fn append(&self, entry: &Record<&[u8]>) -> bool {
        let mut pending = self.pending.lock();
        if let Err(e) = frame(&mut pending, entry) {
            error!("an op-log entry could not be encoded and was not logged: {e}");
        }
        self.flush == Flush::Always || pending.len() > PENDING_LIMIT
    }

    /// [`append`](Self::append) for a live write, encoded without serde (the hot path).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn append_live(
        &self,
        cache: u32,
        seq: u64,
        key: &[u8],
        value: &[u8],
        version: Version,
        expires_at: u64,
    ) -> bool {
        let mut pending = self.pending.lock();
        format::frame_live(&mut pending, cache, seq, key, value, version, expires_at);
        self.flush == Flush::Always || pending.len() > PENDING_LIMIT
    }

    /// Stops writing to the root and unlocks it, after the final snapshot: a node shut down
    /// releases its root at once, even while handles to its caches live on (their later writes
    /// stay in memory), so that another node or process can open it.
    pub(super) fn release(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.write_out();
        self.lock.lock().take();
    }

    /// Whether the root was released.
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Records a watermark on `peer`, after the changes it covers, and writes it out.
    pub fn record_mark(&self, peer: NodeId, mark: Resume) {
        if self.is_closed() {
            return;
        }
        let entry = Record::Mark {
            peer,
            incarnation: mark.incarnation,
            seq: mark.seq,
        };
        if self.append(&entry) {
            self.write_out();
        }
    }

    /// Writes every appended record to the open segment.
    pub fn write_out(&self) {
        let mut out = self.out.lock();
        self.write_into(&mut out);
    }

    pub(super) fn write_into(&self, out: &mut Out) {
        {
            let mut pending = self.pending.lock();
            if pending.is_empty() {
                return;
            }
            std::mem::swap(&mut *pending, &mut out.spare);
        }
        let Out {
            file, spare, bytes, ..
        } = out;
        let result = match file {
            Some(f) => f.write_all(spare),
            None => Err(io::Error::other("no open segment")),
        };
        self.wrote(&result);
        match result {
            Ok(()) => {
                *bytes += spare.len() as u64;
                if self.failing.swap(false, Ordering::Relaxed) {
                    info!(root = %self.root.display(), "op log writable again");
                }
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    error!(root = %self.root.display(), lost_bytes = spare.len(), "op-log write failed, changes since the last snapshot may be lost on restart: {e}");
                }
            }
        }
        spare.clear();
        if *bytes > SEGMENT_LIMIT {
            self.wanted.notify_one();
        }
    }

    /// Flushes and closes the open segment and opens the next one; returns its number.
    pub(super) fn rotate(&self) -> io::Result<u64> {
        let mut out = self.out.lock();
        self.write_into(&mut out);
        let next = out.segment + 1;
        let (file, bytes) = self.open_segment(next)?;
        if let Some(mut old) = out.file.replace(file) {
            let mut close = Vec::new();
            let _ = frame(&mut close, &Record::<&[u8]>::Close);
            old.write_all(&close)?;
        }
        out.segment = next;
        out.bytes = bytes;
        Ok(next)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.write_out();
    }
}

/// What a cache stored under seq `seq`, as the op log and snapshots record it: the one place
/// such records are built.
pub(super) fn to_record(cache: u32, seq: u64, stored: Stored<'_>) -> Record<&[u8]> {
    match stored {
        Stored::Live {
            key,
            value,
            version,
            expires_at,
        } => Record::Live {
            cache,
            seq,
            key,
            value,
            version,
            expires_at,
        },
        Stored::Dead {
            key,
            version,
            tombstone,
            since_ms,
        } => Record::Dead {
            cache,
            seq,
            key,
            version,
            tombstone,
            since_ms,
        },
        Stored::Purge { version } => Record::Purge {
            cache,
            seq,
            version,
        },
        Stored::Floor => Record::Floor { cache, seq },
        Stored::Merged { merge } => Record::Merged {
            cache,
            seq,
            merge: Box::new(merge.clone()),
        },
    }
}

impl Recorder for Journal {
    #[inline]
    fn record(&self, cache: u32, seq: u64, stored: Stored<'_>) -> bool {
        if self.is_closed() {
            return false;
        }
        match stored {
            // The hot path: framed by hand, without the serde encoder.
            Stored::Live {
                key,
                value,
                version,
                expires_at,
            } => self.append_live(cache, seq, key, value, version, expires_at),
            other => self.append(&to_record(cache, seq, other)),
        }
    }

    fn write_out(&self) {
        Journal::write_out(self);
    }

    #[inline]
    fn seq_issued(&self, seq: u64) {
        if !self.is_closed() {
            self.check_lease(seq);
        }
    }

    #[inline]
    fn version_issued(&self, ts: Timestamp) {
        if !self.is_closed() {
            self.check_clock(ts.0);
        }
    }

    fn purged(&self) {
        self.wanted.notify_one();
    }
}
