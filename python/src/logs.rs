//! The core's log, for Python: the level `init(loglevel=...)` sets (again on every call), lines
//! on standard error (coloured only on a terminal), a private rotated file under the root, and
//! every record handed to Python's `logging` (logger `leafcache`).
//!
//! Records reach Python through a bounded channel and one thread that takes the GIL for them: a
//! thread of the core that logs never waits for the GIL (a Python thread holding it while it
//! waits for the core would otherwise deadlock), and a flood of records drops the excess rather
//! than blocking the cache.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Mutex, OnceLock};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// Records waiting for Python, at most; past it they are dropped (and counted in the next one).
const BACKLOG: usize = 4096;
/// The log file under a root is rotated past this size, keeping [`KEPT`] old ones.
const ROTATE_AT: u64 = 16 << 20;
const KEPT: usize = 3;
/// The log file's name under the root.
pub const LOG_FILE: &str = "leafcache-python.log";

/// The level a `loglevel` names, in Python's words or tracing's, any case.
///
/// # Errors
/// `ValueError` for anything else.
pub fn level(name: &str) -> PyResult<LevelFilter> {
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "trace" => LevelFilter::TRACE,
        "debug" => LevelFilter::DEBUG,
        "info" => LevelFilter::INFO,
        "warn" | "warning" => LevelFilter::WARN,
        "error" | "critical" | "fatal" => LevelFilter::ERROR,
        "off" | "none" => LevelFilter::OFF,
        _ => {
            return Err(PyValueError::new_err(format!(
                "invalid loglevel {name:?}: give one of \"debug\", \"info\", \"warning\", \
                 \"error\", \"critical\" (any case), \"trace\" or \"off\""
            )));
        }
    })
}

struct Installed {
    level: reload::Handle<LevelFilter, Registry>,
    file: &'static Mutex<Option<LogFile>>,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Sets the core's log level, and with `root` writes the log under it too (0600, rotated).
/// The first call installs the logging; later calls change the level and the file.
pub fn init(level_name: &str, root: Option<&Path>) -> PyResult<()> {
    let wanted = level(level_name)?;
    let installed = INSTALLED.get_or_init(|| {
        let (filter, handle) = reload::Layer::new(wanted);
        let file: &'static Mutex<Option<LogFile>> = Box::leak(Box::new(Mutex::new(None)));
        let stderr = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
        let to_file = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || FileWriter(file));
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(stderr)
            .with(to_file)
            .with(ToPython::start())
            .try_init();
        Installed {
            level: handle,
            file,
        }
    });
    installed
        .level
        .reload(wanted)
        .map_err(|e| PyValueError::new_err(format!("cannot set the log level: {e}")))?;
    let mut file = installed.file.lock().unwrap_or_else(|p| p.into_inner());
    match root {
        Some(root) if file.as_ref().is_none_or(|f| f.path.parent() != Some(root)) => {
            *file = Some(LogFile::open(root.join(LOG_FILE)).map_err(|e| {
                PyValueError::new_err(format!("cannot open the log under {}: {e}", root.display()))
            })?);
        }
        Some(_) => {}
        None => *file = None,
    }
    Ok(())
}

/// The log file under a root: created 0600, rotated by size into `.1`..`.3`. (tracing-appender
/// rotates by time and cannot set a file's mode, which a root's files must have; this is the
/// small part of it needed here.)
struct LogFile {
    path: PathBuf,
    file: std::fs::File,
    written: u64,
}

impl LogFile {
    fn open(path: PathBuf) -> std::io::Result<LogFile> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        if let Some(dir) = path.parent() {
            // The root, as the node makes it: its owner's alone.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        // One written by an older version may be readable by others.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        let written = file.metadata()?.len();
        Ok(LogFile {
            path,
            file,
            written,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.written + bytes.len() as u64 > ROTATE_AT {
            for n in (1..KEPT).rev() {
                let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
            }
            std::fs::rename(&self.path, self.rotated(1))?;
            *self = LogFile::open(self.path.clone())?;
        }
        self.file.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }
}

/// A writer of one formatted record into the log file, if there is one.
struct FileWriter(&'static Mutex<Option<LogFile>>);

impl std::io::Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut file = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = file.as_mut() {
            f.write(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A record for Python's `logging`: its level number, target and text.
struct Record {
    level: u8,
    target: String,
    message: String,
}

/// The layer that hands every record to Python's `logging`.
struct ToPython {
    records: SyncSender<Record>,
    dropped: std::sync::atomic::AtomicU64,
}

impl ToPython {
    fn start() -> ToPython {
        let (records, rx) = sync_channel::<Record>(BACKLOG);
        let _ = std::thread::Builder::new()
            .name("leafcache-logging".into())
            .spawn(move || {
                for r in rx {
                    // Best effort: an interpreter shutting down takes no more records.
                    let sent = Python::try_attach(|py| -> PyResult<()> {
                        let logger = py
                            .import("logging")?
                            .getattr("getLogger")?
                            .call1(("leafcache",))?;
                        let extra = pyo3::types::PyDict::new(py);
                        extra.set_item("target", &r.target)?;
                        let kwargs = pyo3::types::PyDict::new(py);
                        kwargs.set_item("extra", extra)?;
                        logger.call_method("log", (r.level, &r.message), Some(&kwargs))?;
                        Ok(())
                    });
                    if sent.is_none() {
                        break;
                    }
                }
            });
        ToPython {
            records,
            dropped: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for ToPython {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        let level = match *meta.level() {
            tracing::Level::TRACE => 5,
            tracing::Level::DEBUG => 10,
            tracing::Level::INFO => 20,
            tracing::Level::WARN => 30,
            tracing::Level::ERROR => 40,
        };
        let mut text = Text::default();
        event.record(&mut text);
        let dropped = self.dropped.swap(0, std::sync::atomic::Ordering::Relaxed);
        if dropped > 0 {
            let _ = write!(text.fields, " (after {dropped} records dropped)");
        }
        let record = Record {
            level,
            target: meta.target().to_string(),
            message: format!("{}{}", text.message, text.fields),
        };
        if let Err(TrySendError::Full(_)) = self.records.try_send(record) {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A record's message, then its fields as ` key=value`.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}
