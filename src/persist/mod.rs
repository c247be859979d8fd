//! Persistence under a node's cache root: the node's identity, snapshots, the op log between them,
//! and the restore that rebuilds the caches at start.
//!
//! Files under the root (directory `0700`, files `0600`):
//!
//! | file | holds |
//! |---|---|
//! | `lock` | locked while a node runs on this root: a second node on it is refused |
//! | `identity` | node id, incarnation, and the leases: no seq and no version timestamp above them was handed out |
//! | `snapshot` | every entry, dead record, purge mark, floor and peer watermark at one point |
//! | `oplog-N` | every change applied after snapshot `N` began, in order; `Close` ends a rotated one |
//! | `leafcache.log.*` | the node's log, written by the `leafcache node` command, rolled daily |
//!
//! **Why restored seqs keep peers on deltas.** Records come back with the seqs they had, the
//! incarnation is the stored one, and the seq counter resumes at the stored lease. A peer's
//! watermark on this node is at most the last seq handed out, so a delta from it misses nothing:
//! seqs this node lost in a crash are never handed out again. Watermarks this node keeps on its peers
//! are op-log entries written after the changes they cover, so a torn tail loses both together and
//! the peer resends what was lost. Damage (a checksum failure in the middle of a file, a segment that
//! lost its tail) breaks that order: the node then forgets every watermark, and its peers send full
//! copies.

pub(crate) mod format;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::cache::ports::{Recorder, Stored};
use crate::cache::{Cache, Caches, DeadKind, Restored};
use crate::clock::{Hlc, NodeId, Timestamp, Version};
use crate::error::Error;
use crate::replication::message::Resume;
use format::{Bad, Entry, LOG_MAGIC, Next, Reader, SNAPSHOT_MAGIC, frame};

/// How often a node with a root writes a snapshot when not configured.
pub const DEFAULT_SNAPSHOT_INTERVAL: Duration = Duration::from_secs(300);

/// How often the op log is written out when not configured.
pub const DEFAULT_FLUSH: Flush = Flush::Every(Duration::from_millis(100));

/// Seqs reserved per write of the identity file.
const LEASE_BLOCK: u64 = 1 << 20;

/// How far ahead of the clock's reading the clock lease is moved, in raw [`Timestamp`] units
/// (five seconds of physical time): after a crash, the node's first versions are at most this far
/// ahead of the last one it issued.
const CLOCK_BLOCK: u64 = 5_000 << 16;

/// Buffered op-log bytes that make the writer flush at once whatever the setting.
const PENDING_LIMIT: usize = 256 << 10;

/// An op-log segment this long asks for a snapshot before the interval is over.
const SEGMENT_LIMIT: u64 = 256 << 20;

const IDENTITY: &str = "identity";
const SNAPSHOT: &str = "snapshot";
const SNAPSHOT_TMP: &str = "snapshot.tmp";
const LOCK: &str = "lock";
const SEGMENT_PREFIX: &str = "oplog-";

/// When the op log is written to its file.
///
/// ```
/// use std::time::Duration;
/// use leafcache::Flush;
/// assert_eq!("always".parse::<Flush>()?, Flush::Always);
/// assert_eq!("50ms".parse::<Flush>()?, Flush::Every(Duration::from_millis(50)));
/// assert_eq!("never".parse::<Flush>()?, Flush::Never);
/// assert!("sometimes".parse::<Flush>().is_err());
/// # Ok::<(), leafcache::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// Every change is in the file before the call that made it returns (a local write) or before
    /// its batch is acknowledged (a change from a peer). A crash of the process loses nothing.
    Always,
    /// Changes are written out every this long: a crash loses at most the last interval, which
    /// peers that had it send back.
    Every(Duration),
    /// Changes are written out only when 256 KiB of them are waiting, at a snapshot, and at
    /// shutdown.
    Never,
}

impl std::str::FromStr for Flush {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim() {
            "always" => Ok(Flush::Always),
            "never" => Ok(Flush::Never),
            other => match crate::error::parse_duration("flush", other) {
                Ok(d) if d.is_zero() => Err(Error::ZeroDuration { what: "flush" }),
                Ok(d) => Ok(Flush::Every(d)),
                Err(_) => Err(Error::InvalidConfig {
                    what: "flush",
                    reason: format!(
                        "{other:?} is not \"always\", \"never\" or a duration such as \"100ms\""
                    ),
                }),
            },
        }
    }
}

impl std::fmt::Display for Flush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Flush::Always => f.write_str("always"),
            Flush::Never => f.write_str("never"),
            Flush::Every(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

/// Where and how a node keeps its data on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PersistConfig {
    pub root: PathBuf,
    pub snapshot_every: Duration,
    pub flush: Flush,
}

/// The `identity` file.
#[derive(Serialize, Deserialize)]
struct Identity {
    node_id: String,
    incarnation: String,
    /// No seq above this was handed out.
    seq_lease: u64,
    /// No version timestamp above this (raw [`Timestamp`]) was issued. Absent in roots written
    /// before it existed: read as 0.
    #[serde(default)]
    clock_lease: u64,
    /// The id the node's versions carry (see `Cache::writer_id`). Absent in roots written before
    /// it existed: the node id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    writer_id: Option<String>,
}

/// What an identity file says.
struct Known {
    id: NodeId,
    incarnation: uuid::Uuid,
    lease: u64,
    clock_lease: u64,
    writer: Option<NodeId>,
}

/// A root opened and locked, its identity read; the caches are not restored yet.
pub(crate) struct Store {
    settings: PersistConfig,
    lock: File,
    pub id: NodeId,
    pub incarnation: uuid::Uuid,
    /// The id the node's versions carry.
    pub writer: NodeId,
    lease: u64,
    clock_lease: u64,
}

/// Creates `path` (and its parents) as a directory only its owner can enter; tightens an existing
/// one.
pub(crate) fn create_private_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode != 0o700 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
        warn!(root = %path.display(), "the root was readable by others (mode {mode:o}); set it to 700");
    }
    Ok(())
}

fn private_file(path: &Path, truncate: bool) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(truncate)
        .mode(0o600)
        .open(path)
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |e| Error::Io {
        what,
        reason: e.to_string(),
    }
}

/// Writes `bytes` to `dir/name` through a temporary file and an atomic rename, synced.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = private_file(&tmp, true)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

impl Store {
    /// Creates and locks the root and reads (or creates) its identity. `explicit` is a node id
    /// the builder was given: it must match the root's. A new identity draws its incarnation (and
    /// node id, if none is given) from `draw`.
    ///
    /// A new root under a given node id may belong to a node that ran before without it (or lost
    /// its disk): its writes then carry a writer id drawn for this root, so that no version of an
    /// earlier run is issued again. The writer id is kept in the identity.
    pub fn open(
        settings: PersistConfig,
        explicit: Option<NodeId>,
        draw: impl Fn() -> u128,
    ) -> Result<Store, Error> {
        let root = &settings.root;
        let shown = root.display().to_string();
        create_private_dir(root).map_err(io_error(format!("creating the root {shown}")))?;
        let lock = private_file(&root.join(LOCK), false)
            .map_err(io_error(format!("opening {shown}/{LOCK}")))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::InvalidConfig {
                    what: "root",
                    reason: format!("{shown} is in use by another running node"),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io_error(format!("locking {shown}/{LOCK}"))(e));
            }
        }
        let stored = match std::fs::read_to_string(root.join(IDENTITY)) {
            Ok(text) => match parse_identity(&text) {
                Ok(found) => Some(found),
                Err(reason) => {
                    error!(root = %shown, "the identity file is unreadable ({reason}): starting as a new node; the data is still loaded");
                    None
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(format!("reading {shown}/{IDENTITY}"))(e)),
        };
        let known = match stored {
            Some(known) if explicit.is_some_and(|e| e != known.id) => {
                return Err(Error::InvalidConfig {
                    what: "root",
                    reason: format!(
                        "{shown} holds the data of node {}, not of node {}",
                        known.id,
                        explicit.expect("checked")
                    ),
                });
            }
            Some(known) => known,
            None => {
                let incarnation = uuid::Uuid::from_u128(draw());
                Known {
                    id: explicit.unwrap_or_else(|| NodeId(draw())),
                    incarnation,
                    lease: 0,
                    clock_lease: 0,
                    writer: explicit.map(|_| NodeId(incarnation.as_u128())),
                }
            }
        };
        Ok(Store {
            settings,
            lock,
            id: known.id,
            incarnation: known.incarnation,
            writer: known.writer.unwrap_or(known.id),
            lease: known.lease,
            clock_lease: known.clock_lease,
        })
    }

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

fn parse_identity(text: &str) -> Result<Known, String> {
    let id: Identity = toml::from_str(text).map_err(|e| e.message().to_string())?;
    let uuid =
        |what: &str, text: &str| uuid::Uuid::parse_str(text).map_err(|e| format!("{what}: {e}"));
    Ok(Known {
        id: NodeId(uuid("node_id", &id.node_id)?.as_u128()),
        incarnation: uuid("incarnation", &id.incarnation)?,
        lease: id.seq_lease,
        clock_lease: id.clock_lease,
        writer: (id.writer_id.as_deref())
            .map(|w| uuid("writer_id", w).map(|u| NodeId(u.as_u128())))
            .transpose()?,
    })
}

/// The op-log segments under `root`, by number.
fn list_segments(root: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SEGMENT_PREFIX))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push((n, entry.path()));
        }
    }
    out.sort_unstable_by_key(|(n, _)| *n);
    Ok(out)
}

fn segment_path(root: &Path, n: u64) -> PathBuf {
    root.join(format!("{SEGMENT_PREFIX}{n:010}"))
}

#[derive(Default)]
struct Counts {
    live: u64,
    dead: u64,
    ops: u64,
    unknown_cache: u64,
}

/// A restore in progress.
struct Load<'a> {
    caches: &'a [Cache],
    now_ms: u64,
    /// The current file's cache indexes → this node's caches.
    map: Vec<Option<&'a Cache>>,
    counts: Counts,
    marks: HashMap<NodeId, Resume>,
    max_seq: u64,
    /// What was dropped as damaged (not a torn tail).
    damage: Vec<String>,
}

impl<'a> Load<'a> {
    fn header(&mut self, caches: &[String]) {
        self.map = caches
            .iter()
            .map(|name| self.caches.iter().find(|c| c.name() == name))
            .collect();
    }

    fn cache(&mut self, i: u32) -> Option<&'a Cache> {
        let found = self.map.get(i as usize).copied().flatten();
        if found.is_none() {
            self.counts.unknown_cache += 1;
        }
        found
    }

    /// Applies one entry; `in_snapshot` counts it as loaded state rather than a replayed change.
    fn apply(&mut self, entry: Entry<Bytes>, in_snapshot: bool) {
        let now = self.now_ms;
        match entry {
            Entry::Live {
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
            Entry::Dead {
                cache,
                seq,
                key,
                version,
                tombstone,
                since_ms,
            } => {
                self.max_seq = self.max_seq.max(seq);
                let kind = if tombstone {
                    DeadKind::Tombstone
                } else {
                    DeadKind::Gone
                };
                if let Some(c) = self.cache(cache) {
                    c.restore_record(key, version, seq, Restored::Dead { kind, since_ms }, now);
                }
                self.count(in_snapshot, false);
            }
            Entry::Purge {
                cache,
                seq,
                version,
            } => {
                self.max_seq = self.max_seq.max(seq);
                if let Some(c) = self.cache(cache) {
                    c.restore_purge(version, seq);
                }
            }
            Entry::Floor { cache, seq } => {
                if let Some(c) = self.cache(cache) {
                    c.restore_floor(seq);
                }
            }
            Entry::Mark {
                peer,
                incarnation,
                seq,
            } => {
                self.marks.insert(peer, Resume { incarnation, seq });
            }
            Entry::Header { caches, .. } => self.header(&caches),
            Entry::Close | Entry::End { .. } => {}
        }
    }

    fn count(&mut self, in_snapshot: bool, live: bool) {
        match (in_snapshot, live) {
            (true, true) => self.counts.live += 1,
            (true, false) => self.counts.dead += 1,
            (false, _) => self.counts.ops += 1,
        }
    }

    fn damaged(&mut self, file: &Path, what: String) {
        error!(file = %file.display(), "{what}");
        self.damage.push(what);
    }

    /// Loads the snapshot; returns the first op-log segment to replay after it.
    fn snapshot(&mut self, path: &Path) -> u64 {
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
            Next::Entry(Entry::Header {
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
                Next::Entry(Entry::End { entries: expected }) => {
                    if expected != entries {
                        self.damaged(
                            path,
                            format!("snapshot holds {entries} entries, its end says {expected}"),
                        );
                    }
                    return segment;
                }
                Next::Entry(entry) => {
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

    fn dropped(&self, path: &Path, what: &str, bad: &Bad, size: u64, kept: u64) {
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
    fn segment(&mut self, path: &Path, newest: bool) {
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
                Next::Entry(Entry::Close) => {
                    closed = true;
                }
                Next::Entry(entry) => {
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
            let _ = frame(&mut close, &Entry::<&[u8]>::Close);
            std::io::Seek::seek(&mut f, io::SeekFrom::End(0))?;
            f.write_all(&close)?;
            f.sync_all()
        });
        if let Err(e) = repaired {
            error!(file = %path.display(), "cannot close the op-log segment: {e}");
        }
    }
}

/// The open segment of the op log.
struct Out {
    file: Option<File>,
    segment: u64,
    bytes: u64,
    /// The buffer swapped with the pending one at each flush, so neither is reallocated.
    spare: Vec<u8>,
}

/// A node's running persistence: the op log it appends every applied change to, the seq lease,
/// and the snapshot writer.
pub(crate) struct Journal {
    root: PathBuf,
    flush: Flush,
    pub snapshot_every: Duration,
    node: NodeId,
    incarnation: uuid::Uuid,
    writer: NodeId,
    caches: Vec<String>,
    /// Framed entries not yet written.
    pending: Mutex<Vec<u8>>,
    out: Mutex<Out>,
    /// No seq above this was handed out; moved ahead in blocks, written to `identity` first.
    lease: AtomicU64,
    /// No version timestamp above this was issued; moved ahead in blocks like `lease`.
    clock_lease: AtomicU64,
    identity: Mutex<()>,
    /// One snapshot at a time.
    snapshotting: Mutex<()>,
    /// Asks the snapshot task for a snapshot now (after a purge, or a long segment).
    pub wanted: tokio::sync::Notify,
    /// Whether the last write failed (logged once, until one succeeds again).
    failing: AtomicBool,
    _lock: File,
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
    fn create(
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
            _lock: lock,
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

    fn header(&self, segment: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = frame(
            &mut buf,
            &Entry::<&[u8]>::Header {
                node: self.node,
                incarnation: self.incarnation.as_u128(),
                caches: self.caches.clone(),
                segment,
            },
        );
        buf
    }

    fn open_segment(&self, n: u64) -> io::Result<(File, u64)> {
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

    fn write_identity(&self, lease: u64, clock_lease: u64) -> io::Result<()> {
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
            self.extend_lease(seq);
        }
    }

    #[cold]
    fn extend_lease(&self, seq: u64) {
        if seq <= self.lease.load(Ordering::SeqCst) {
            return;
        }
        let clock = self.clock_lease.load(Ordering::SeqCst);
        if let Err(e) = self.write_identity(seq.saturating_add(LEASE_BLOCK), clock) {
            // Keep going: the counter only risks reusing seqs if the node also crashes now.
            error!(root = %self.root.display(), "cannot extend the seq lease in the identity file: {e}");
            self.lease
                .store(seq.saturating_add(LEASE_BLOCK), Ordering::SeqCst);
        }
    }

    /// Called with every version timestamp issued: moves the clock lease ahead before one passes
    /// it.
    #[inline]
    pub fn check_clock(&self, ts: u64) {
        if ts > self.clock_lease.load(Ordering::Relaxed) {
            self.extend_clock(ts);
        }
    }

    #[cold]
    fn extend_clock(&self, ts: u64) {
        if ts <= self.clock_lease.load(Ordering::SeqCst) {
            return;
        }
        let (seq, clock) = (
            self.lease.load(Ordering::SeqCst),
            ts.saturating_add(CLOCK_BLOCK),
        );
        if let Err(e) = self.write_identity(seq, clock) {
            // Keep going: versions are only at risk if the node also crashes now.
            error!(root = %self.root.display(), "cannot extend the clock lease in the identity file: {e}");
            self.clock_lease.store(clock, Ordering::SeqCst);
        }
    }

    /// Records the exact last seq and clock reading as the leases: after a graceful stop the
    /// node resumes there.
    fn settle_lease(&self, seq: u64, clock: u64) {
        if let Err(e) = self.write_identity(seq, clock) {
            error!(root = %self.root.display(), "cannot write the identity file: {e}");
        }
    }

    /// Appends an entry to the op log; `true` if the caller must [`flush`](Self::flush) once it
    /// has released its locks.
    #[inline]
    pub fn append(&self, entry: &Entry<&[u8]>) -> bool {
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

    /// Records a watermark on `peer`, after the changes it covers, and writes it out.
    pub fn record_mark(&self, peer: NodeId, mark: Resume) {
        let entry = Entry::Mark {
            peer,
            incarnation: mark.incarnation,
            seq: mark.seq,
        };
        if self.append(&entry) {
            self.flush();
        }
    }

    /// Writes every appended entry to the open segment.
    pub fn flush(&self) {
        let mut out = self.out.lock();
        self.flush_into(&mut out);
    }

    fn flush_into(&self, out: &mut Out) {
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
    fn rotate(&self) -> io::Result<u64> {
        let mut out = self.out.lock();
        self.flush_into(&mut out);
        let next = out.segment + 1;
        let (file, bytes) = self.open_segment(next)?;
        if let Some(mut old) = out.file.replace(file) {
            let mut close = Vec::new();
            let _ = frame(&mut close, &Entry::<&[u8]>::Close);
            old.write_all(&close)?;
        }
        out.segment = next;
        out.bytes = bytes;
        Ok(next)
    }

    /// Writes a snapshot of `node` and drops the op-log segments it covers.
    ///
    /// The op log is rotated first, so every change in the dropped segments was applied before the
    /// snapshot began and is in it. Each shard is written under its lock, streamed through a
    /// buffer: no copy of the cache is made.
    pub fn snapshot(
        &self,
        caches: &Caches,
        marks: &[(NodeId, Resume)],
    ) -> io::Result<SnapshotReport> {
        let _one = self.snapshotting.lock();
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
                &Entry::<&[u8]>::Mark {
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
                frame(&mut buf, &record(cache.index(), seq, stored)).map_err(io::Error::other)?;
                if buf.len() >= 256 << 10 {
                    w.write_all(&buf)?;
                    buf.clear();
                }
                Ok::<(), io::Error>(())
            })?;
        }
        frame(&mut buf, &Entry::<&[u8]>::End { entries }).map_err(io::Error::other)?;
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
            self.flush();
            return;
        }
        let core = caches.core();
        self.settle_lease(core.current_seq(), core.hlc.last());
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.flush();
    }
}

/// What one snapshot wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotReport {
    /// Live entries written.
    pub entries: u64,
    /// Dead records (tombstones and dropped versions) written.
    pub dead: u64,
    /// The snapshot file's size.
    pub bytes: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// What a cache stored under seq `seq`, as the op log and snapshots record it: the one place
/// such records are built.
fn record(cache: u32, seq: u64, stored: Stored<'_>) -> Entry<&[u8]> {
    match stored {
        Stored::Live {
            key,
            value,
            version,
            expires_at,
        } => Entry::Live {
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
        } => Entry::Dead {
            cache,
            seq,
            key,
            version,
            tombstone,
            since_ms,
        },
        Stored::Purge { version } => Entry::Purge {
            cache,
            seq,
            version,
        },
        Stored::Floor => Entry::Floor { cache, seq },
    }
}

impl Recorder for Journal {
    #[inline]
    fn record(&self, cache: u32, seq: u64, stored: Stored<'_>) -> bool {
        match stored {
            // The hot path: framed by hand, without the serde encoder.
            Stored::Live {
                key,
                value,
                version,
                expires_at,
            } => self.append_live(cache, seq, key, value, version, expires_at),
            other => self.append(&record(cache, seq, other)),
        }
    }

    fn write_out(&self) {
        self.flush();
    }

    #[inline]
    fn seq_issued(&self, seq: u64) {
        self.check_lease(seq);
    }

    #[inline]
    fn version_issued(&self, ts: Timestamp) {
        self.check_clock(ts.0);
    }

    fn purged(&self) {
        self.wanted.notify_one();
    }
}

/// The node's persistence task: writes a snapshot every interval or when one is asked for, and
/// with [`Flush::Every`] writes the op log out on its period. Ends at shutdown, which writes the
/// final snapshot itself.
pub(crate) async fn run(
    caches: Caches,
    marks: impl Fn() -> Vec<(NodeId, Resume)> + Send + 'static,
    journal: Arc<Journal>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let core = caches.core().clone();
    let mut snapshot_at = tokio::time::Instant::now() + journal.snapshot_every;
    let flush_every = match journal.flush {
        Flush::Every(d) => d,
        // Still look at the lease and the buffer now and then.
        Flush::Always | Flush::Never => Duration::from_secs(1),
    };
    let mut tick = tokio::time::interval(flush_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let snapshot = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => false,
            _ = tokio::time::sleep_until(snapshot_at) => true,
            _ = journal.wanted.notified() => true,
        };
        if !snapshot {
            if matches!(journal.flush, Flush::Every(_)) {
                journal.flush();
            }
            // Move the seq lease ahead here, half a block early, rather than in a write.
            journal.check_lease(core.current_seq().saturating_add(LEASE_BLOCK / 2));
            journal.check_clock(core.hlc.last().saturating_add(CLOCK_BLOCK / 2));
            continue;
        }
        let (c, j, m) = (caches.clone(), journal.clone(), marks());
        let written = tokio::task::spawn_blocking(move || j.snapshot(&c, &m)).await;
        match written {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                error!(root = %journal.root.display(), "snapshot failed, the op log keeps the changes: {e}")
            }
            Err(e) => error!("snapshot task failed: {e}"),
        }
        snapshot_at = tokio::time::Instant::now() + journal.snapshot_every;
    }
}
