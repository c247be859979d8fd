//! The root directory: created private and locked, and the `identity` file — node id,
//! incarnation, writer id and the seq and clock leases.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::*;
use crate::clock::NodeId;
use crate::error::Error;

/// The `identity` file.
#[derive(Serialize, Deserialize)]
pub(super) struct Identity {
    pub(super) node_id: String,
    pub(super) incarnation: String,
    /// No seq above this was handed out.
    pub(super) seq_lease: u64,
    /// No version timestamp above this (raw [`Timestamp`]) was issued. Absent in roots written
    /// before it existed: read as 0.
    #[serde(default)]
    pub(super) clock_lease: u64,
    /// The id the node's versions carry (see `Cache::writer_id`). Absent in roots written before
    /// it existed: the node id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) writer_id: Option<String>,
}

/// What an identity file says.
pub(super) struct Known {
    pub(super) id: NodeId,
    pub(super) incarnation: uuid::Uuid,
    pub(super) lease: u64,
    pub(super) clock_lease: u64,
    pub(super) writer: Option<NodeId>,
}

/// A root opened and locked, its identity read; the caches are not restored yet.
pub(crate) struct Store {
    pub(super) settings: PersistConfig,
    pub(super) lock: File,
    pub id: NodeId,
    pub incarnation: uuid::Uuid,
    /// The id the node's versions carry.
    pub writer: NodeId,
    pub(super) lease: u64,
    pub(super) clock_lease: u64,
}

/// Creates `path` (and its parents) as a directory only its owner can enter; tightens an existing
/// one.
pub(crate) fn create_private_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    // Say what is wrong with the path itself, not "File exists".
    if let Some(bad) = path
        .ancestors()
        .find(|p| p.exists() && !p.is_dir() && !p.as_os_str().is_empty())
    {
        let what = if bad == path {
            "it"
        } else {
            "a directory above it"
        };
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!(
                "{what} ({}) is a file, not a directory: a root must be a directory (or not exist yet)",
                bad.display()
            ),
        ));
    }
    // The highest directory of the path that does not exist yet: created with it.
    let created = path
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
        .last()
        .map(Path::to_path_buf);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    match &created {
        Some(top) if top != path => info!(
            root = %path.display(),
            created = %top.display(),
            "created the root, and the missing directories above it from the one named created"
        ),
        Some(_) => info!(root = %path.display(), "created the root"),
        None => {}
    }
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode != 0o700 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
        warn!(root = %path.display(), "the root was readable by others (mode {mode:o}); set it to 700");
    }
    Ok(())
}

pub(super) fn private_file(path: &Path, truncate: bool) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(truncate)
        .mode(0o600)
        .open(path)
}

pub(super) fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |e| Error::Io {
        what,
        reason: e.to_string(),
    }
}

/// Writes `bytes` to `dir/name` through a temporary file and an atomic rename, synced.
pub(super) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
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
        draw: impl Fn() -> uuid::Uuid,
    ) -> Result<Store, Error> {
        let root = &settings.root;
        let shown = root.display().to_string();
        create_private_dir(root).map_err(io_error(format!("creating the root {shown}")))?;
        let lock = private_file(&root.join(LOCK), false)
            .map_err(io_error(format!("opening {shown}/{LOCK}")))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::RootInUse(shown));
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
                let incarnation = draw();
                Known {
                    id: explicit.unwrap_or_else(|| NodeId(draw().as_u128())),
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
}

pub(super) fn parse_identity(text: &str) -> Result<Known, String> {
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
pub(super) fn list_segments(root: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
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

pub(super) fn segment_path(root: &Path, n: u64) -> PathBuf {
    root.join(format!("{SEGMENT_PREFIX}{n:010}"))
}
