//! The restore at start: the snapshot, then the op-log segments after it, into the caches —
//! torn tails cut, damage loaded up to its valid prefix and reported.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tracing::{error, info, warn};

use super::format::{Bad, LOG_MAGIC, Next, Reader, Record, SNAPSHOT_MAGIC, frame};
use super::root::*;
use super::*;
use crate::cache::{Cache, Restored};
use crate::clock::{Hlc, NodeId, Timestamp};
use crate::error::Error;
use crate::replication::message::Resume;

impl Store {
    /// Loads the snapshot and the op log into `caches`, sets the node's seq counter, moves `hlc`
    /// past every timestamp the node may have issued, and opens a new op-log segment. Returns the
    /// journal and the peer watermarks to resume from.
    pub fn restore(
        self,
        caches: &[Cache],
        now_ms: u64,
        hlc: &Hlc,
        set_seq: impl FnOnce(u64),
    ) -> Result<(Arc<Journal>, HashMap<NodeId, Resume>), Error> {
        let started = Instant::now();
        let root = self.settings.root.clone();
        let mut load = Load {
            caches,
            now_ms,
            map: Vec::new(),
            counts: Counts::default(),
            marks: HashMap::new(),
            max_seq: 0,
            damage: Vec::new(),
        };
        let first_segment = load.snapshot(&root.join(SNAPSHOT));
        let mut segments = list_segments(&root).map_err(io_error(format!(
            "listing the op log in {}",
            root.display()
        )))?;
        for (_, path) in segments.iter().filter(|(n, _)| *n < first_segment) {
            // Folded into the snapshot already: a crash came between its rename and this delete.
            let _ = std::fs::remove_file(path);
        }
        segments.retain(|(n, _)| *n >= first_segment);
        let last = segments.len().checked_sub(1);
        for (i, (_, path)) in segments.iter().enumerate() {
            load.segment(path, Some(i) == last);
        }
        let Load {
            counts,
            mut marks,
            max_seq,
            damage,
            ..
        } = load;
        if !damage.is_empty() && !marks.is_empty() {
            warn!(
                peers = marks.len(),
                "damaged data was dropped: forgetting the watermarks on every peer, so each sends a full copy"
            );
            marks.clear();
        }
        for cache in caches {
            cache.restored();
        }
        let start_seq = max_seq.max(self.lease);
        set_seq(start_seq);
        // Versions issued after the last write that reached the disk are covered by the lease.
        hlc.observe(Timestamp(self.clock_lease));
        let next_segment = segments.last().map_or(first_segment.max(1), |(n, _)| n + 1);
        let journal = Journal::create(self, caches, next_segment, start_seq, hlc.last())?;
        info!(
            root = %root.display(),
            entries = counts.live,
            dead = counts.dead,
            ops = counts.ops,
            segments = segments.len(),
            marks = marks.len(),
            seq = start_seq,
            ms = started.elapsed().as_millis() as u64,
            "restored"
        );
        if counts.unknown_cache > 0 {
            warn!(
                records = counts.unknown_cache,
                "records of caches this node no longer has were dropped"
            );
        }
        Ok((journal, marks))
    }
}

#[derive(Default)]
pub(super) struct Counts {
    pub(super) live: u64,
    pub(super) dead: u64,
    pub(super) ops: u64,
    pub(super) unknown_cache: u64,
}

/// A restore in progress.
pub(super) struct Load<'a> {
    pub(super) caches: &'a [Cache],
    pub(super) now_ms: u64,
    /// The current file's cache indexes → this node's caches.
    pub(super) map: Vec<Option<&'a Cache>>,
    pub(super) counts: Counts,
    pub(super) marks: HashMap<NodeId, Resume>,
    pub(super) max_seq: u64,
    /// What was dropped as damaged (not a torn tail).
    pub(super) damage: Vec<String>,
}

impl<'a> Load<'a> {
    pub(super) fn header(&mut self, caches: &[String]) {
        self.map = caches
            .iter()
            .map(|name| self.caches.iter().find(|c| c.name() == name))
            .collect();
    }

    pub(super) fn cache(&mut self, i: u32) -> Option<&'a Cache> {
        let found = self.map.get(i as usize).copied().flatten();
        if found.is_none() {
            self.counts.unknown_cache += 1;
        }
        found
    }

    /// Applies one entry; `in_snapshot` counts it as loaded state rather than a replayed change.
    pub(super) fn apply(&mut self, entry: Record<Bytes>, in_snapshot: bool) {
        let now = self.now_ms;
        match entry {
            Record::Live {
                cache,
                seq,
                key,
                value,
                version,
                expires_at,
            } => {
                self.max_seq = self.max_seq.max(seq);
                if let Some(c) = self.cache(cache) {
                    c.restore_record(key, version, seq, Restored::Live { value, expires_at }, now);
                }
                self.count(in_snapshot, true);
            }
            Record::Dead {
                cache,
                seq,
                key,
                version,
                tombstone,
                since_ms,
            } => {
                self.max_seq = self.max_seq.max(seq);
                if let Some(c) = self.cache(cache) {
                    c.restore_record(
                        key,
                        version,
                        seq,
                        Restored::Dead {
                            tombstone,
                            since_ms,
                        },
                        now,
                    );
                }
                self.count(in_snapshot, false);
            }
            Record::Purge {
                cache,
                seq,
                version,
            } => {
                self.max_seq = self.max_seq.max(seq);
                if let Some(c) = self.cache(cache) {
                    c.restore_purge(version, seq);
                }
            }
            Record::Floor { cache, seq } => {
                if let Some(c) = self.cache(cache) {
                    c.restore_floor(seq);
                }
            }
            Record::Mark {
                peer,
                incarnation,
                seq,
            } => {
                self.marks.insert(peer, Resume { incarnation, seq });
            }
            Record::Merged { cache, seq, merge } => {
                self.max_seq = self.max_seq.max(seq);
                if let Some(c) = self.cache(cache) {
                    c.restore_merge(&merge, seq, now);
                }
                self.count(in_snapshot, true);
            }
            Record::Header { caches, .. } => self.header(&caches),
            Record::Close | Record::End { .. } => {}
        }
    }

    pub(super) fn count(&mut self, in_snapshot: bool, live: bool) {
        match (in_snapshot, live) {
            (true, true) => self.counts.live += 1,
            (true, false) => self.counts.dead += 1,
            (false, _) => self.counts.ops += 1,
        }
    }

    pub(super) fn damaged(&mut self, file: &Path, what: String) {
        error!(file = %file.display(), "{what}");
        self.damage.push(what);
    }

    /// Loads the snapshot; returns the first op-log segment to replay after it.
    pub(super) fn snapshot(&mut self, path: &Path) -> u64 {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return 0,
            Err(e) => {
                self.damaged(path, format!("cannot read the snapshot: {e}"));
                return 0;
            }
        };
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut reader = match Reader::open(BufReader::with_capacity(1 << 20, file), SNAPSHOT_MAGIC)
        {
            Ok(r) => r,
            Err(reason) => {
                self.damaged(path, format!("snapshot dropped: {reason}"));
                return 0;
            }
        };
        let segment = match reader.next() {
            Next::Record(Record::Header {
                caches, segment, ..
            }) => {
                self.header(&caches);
                segment
            }
            other => {
                self.damaged(
                    path,
                    format!("snapshot dropped: it does not start with a header ({other:?})"),
                );
                return 0;
            }
        };
        let mut entries = 0u64;
        loop {
            match reader.next() {
                Next::Record(Record::End { entries: expected }) => {
                    if expected != entries {
                        self.damaged(
                            path,
                            format!("snapshot holds {entries} entries, its end says {expected}"),
                        );
                    }
                    return segment;
                }
                Next::Record(entry) => {
                    entries += 1;
                    self.apply(entry, true);
                }
                Next::End => {
                    self.damaged(
                        path,
                        format!(
                            "snapshot ends after {entries} entries without its end mark: the rest is missing"
                        ),
                    );
                    return segment;
                }
                Next::Bad(bad) => {
                    self.dropped(path, "snapshot", &bad, size, entries);
                    self.damage.push(bad.reason);
                    return segment;
                }
            }
        }
    }

    pub(super) fn dropped(&self, path: &Path, what: &str, bad: &Bad, size: u64, kept: u64) {
        error!(
            file = %path.display(),
            offset = bad.offset,
            dropped_bytes = size.saturating_sub(bad.offset),
            kept_entries = kept,
            "{what} damaged ({}): loaded the {kept} entries before byte {}, dropped the rest",
            bad.reason,
            bad.offset
        );
    }

    /// Replays one op-log segment. The newest one may end in a torn entry (a crash mid-write):
    /// it is cut back to its valid prefix and closed, so that it reads as complete from now on.
    pub(super) fn segment(&mut self, path: &Path, newest: bool) {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) => {
                self.damaged(path, format!("cannot read the op-log segment: {e}"));
                return;
            }
        };
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut reader = match Reader::open(BufReader::with_capacity(1 << 20, file), LOG_MAGIC) {
            Ok(r) => r,
            Err(reason) if newest && size < 8 => {
                // Created, then the process died before its magic was written.
                warn!(file = %path.display(), "empty op-log segment ({reason}) removed");
                let _ = std::fs::remove_file(path);
                return;
            }
            Err(reason) => {
                self.damaged(path, format!("op-log segment dropped: {reason}"));
                return;
            }
        };
        let (mut kept, mut closed) = (0u64, false);
        let valid = loop {
            match reader.next() {
                Next::Record(Record::Close) => {
                    closed = true;
                }
                Next::Record(entry) => {
                    kept += 1;
                    self.apply(entry, false);
                }
                Next::End => break reader.offset,
                Next::Bad(bad) if bad.torn && newest => {
                    warn!(
                        file = %path.display(),
                        offset = bad.offset,
                        dropped_bytes = size.saturating_sub(bad.offset),
                        "op log ends in a torn entry ({}), the write a crash interrupted: replayed the {kept} entries before it",
                        bad.reason
                    );
                    break bad.offset;
                }
                Next::Bad(bad) => {
                    self.dropped(path, "op-log segment", &bad, size, kept);
                    self.damage.push(bad.reason);
                    break bad.offset;
                }
            }
        };
        if closed {
            return;
        }
        if !newest {
            self.damaged(
                path,
                format!("op-log segment lost its tail: it ends after {kept} entries without its close mark"),
            );
        }
        // Cut any torn or damaged tail and close the segment: this run writes a new one.
        let repaired = OpenOptions::new().write(true).open(path).and_then(|mut f| {
            f.set_len(valid)?;
            let mut close = Vec::new();
            let _ = frame(&mut close, &Record::<&[u8]>::Close);
            std::io::Seek::seek(&mut f, io::SeekFrom::End(0))?;
            f.write_all(&close)?;
            f.sync_all()
        });
        if let Err(e) = repaired {
            error!(file = %path.display(), "cannot close the op-log segment: {e}");
        }
    }
}
