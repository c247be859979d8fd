//! The module-level cache: one cache per root that every process of this user on this host
//! shares, and a plain process-local cache without a root.
//!
//! The process that holds the root's lock serves the cache on a Unix socket in the root (mode
//! 0600, RESP); the others are clients of that socket. When the serving process exits or is
//! killed the lock is free: the first client to take it restores the root (snapshot and op log)
//! and serves, the others reconnect. A call that found the server gone is retried when doing it
//! twice is harmless (get, set, delete, purge) and fails with `LeafcacheError` when it is not
//! (incr, pop: the lost server may have applied it). With `flush="always"` a write is in the op
//! log before it is acknowledged, so no acknowledged write is lost to a kill.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use leafcache::{Cache, CacheConfig, Flush, Node};
use parking_lot::{Mutex, RwLock};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::codec::{self, Codec, Format};
use crate::{LeafcacheError, args, runtime, to_py};

/// The socket the serving process listens on, in the root.
const SOCKET: &str = "cache.sock";
/// The settings every process sharing the root must agree on, written by the first server.
const SETTINGS: &str = "python-cache.json";

/// Writes `text` to a new file at `path` that only its owner can read (0600).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(text.as_bytes())
}

/// What this process talks to.
enum Backend {
    /// The cache is in this process: it holds the root (or there is none).
    Serving {
        node: Node,
        cache: Cache,
        root: bool,
    },
    /// Another process serves the root; these are connections to its socket.
    Client {
        client: redis::Client,
        pool: Mutex<Vec<redis::Connection>>,
    },
}

/// Why a call failed, before the GIL is taken again to raise it.
enum Failure {
    Core(leafcache::Error),
    /// The server refused the command (RESP error text).
    Refused(String),
    /// No process serves the root, or the server was lost during a call that may have applied.
    Lost(String),
    /// Processes sharing the root disagree, or the root cannot be used.
    Config(String),
}

impl Failure {
    fn into_py(self) -> PyErr {
        match self {
            Failure::Core(e) => to_py(e),
            Failure::Refused(text) if text.starts_with("WRONGTYPE") => PyTypeError::new_err(text),
            Failure::Refused(text) => PyValueError::new_err(text),
            Failure::Lost(text) => LeafcacheError::new_err(text),
            Failure::Config(text) => PyValueError::new_err(text),
        }
    }
}

/// One call, the same whether the cache is here or behind the socket.
enum Op<'a> {
    Get(&'a [u8]),
    Set(&'a [u8], Bytes, Option<Duration>),
    Delete(&'a [u8]),
    Pop(&'a [u8]),
    IncrInt(&'a [u8], i64),
    IncrFloat(&'a [u8], f64),
    Contains(&'a [u8]),
    Len,
    Purge,
}

impl Op<'_> {
    /// Whether doing the call twice leaves what doing it once does.
    fn repeatable(&self) -> bool {
        !matches!(self, Op::Pop(_) | Op::IncrInt(..) | Op::IncrFloat(..))
    }

    fn name(&self) -> &'static str {
        match self {
            Op::Get(_) => "get",
            Op::Set(..) => "set",
            Op::Delete(_) => "delete",
            Op::Pop(_) => "pop",
            Op::IncrInt(..) | Op::IncrFloat(..) => "incr",
            Op::Contains(_) => "contains",
            Op::Len => "len",
            Op::Purge => "purge",
        }
    }
}

enum Reply {
    Value(Option<Bytes>),
    Int(i64),
    Float(f64),
    Flag(bool),
    Count(usize),
    Done,
}

struct Settings {
    name: String,
    config: CacheConfig,
    flush: Flush,
    snapshot: Option<Duration>,
    takeover: Duration,
    format: Format,
}

struct Shared {
    root: Option<PathBuf>,
    settings: Settings,
    backend: RwLock<Arc<Backend>>,
    /// Held by the one thread that replaces a lost backend.
    takeover: Mutex<()>,
}

/// The module-level cache behind `leafcache.init()`, `leafcache.get()`, ...: shared by every
/// process that opens the same `root`, process-local without one.
///
/// ```python
/// import leafcache
/// leafcache.init("foo_cache", root="/var/cache/foo", expires="1d", snapshot="120s")
/// leafcache.set("a", "b")          # in one process
/// leafcache.get("a")               # "b", in another
/// ```
#[pyclass(frozen, module = "leafcache", name = "SharedCache")]
pub struct SharedCache {
    shared: Arc<Shared>,
    codec: Codec,
    closed: AtomicBool,
}

fn socket(root: &Path) -> PathBuf {
    root.join(SOCKET)
}

impl Settings {
    /// Serves the root from this process, restoring what it holds.
    fn serve(&self, root: &Path) -> Result<Backend, leafcache::Error> {
        let s = self;
        let mut builder = Node::builder()
            .name(&s.name)
            .default_cache(s.config.clone())
            .root(root)
            .flush(s.flush)
            .unix_socket(socket(root));
        if let Some(every) = s.snapshot {
            builder = builder.snapshot_interval(every);
        }
        let rt = runtime().map_err(|e| leafcache::Error::Io {
            what: "starting the runtime".into(),
            reason: e.to_string(),
        })?;
        let node = {
            let _entered = rt.enter();
            builder.build()?
        };
        Ok(Backend::Serving {
            cache: node.default_cache(),
            node,
            root: true,
        })
    }

    fn connect(&self, root: &Path) -> Result<Backend, String> {
        let path = socket(root);
        let client =
            redis::Client::open(redis::ConnectionAddr::Unix(path)).map_err(|e| e.to_string())?;
        let conn = self.dial(&client)?;
        Ok(Backend::Client {
            client,
            pool: Mutex::new(vec![conn]),
        })
    }

    fn dial(&self, client: &redis::Client) -> Result<redis::Connection, String> {
        let conn = client
            .get_connection_with_timeout(self.takeover)
            .map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(self.takeover))
            .map_err(|e| e.to_string())?;
        Ok(conn)
    }

    /// The settings every process of the root agrees on, as written in it.
    fn agreed(&self) -> String {
        serde_json::json!({
            "name": self.name,
            "serializer": self.format.name(),
        })
        .to_string()
    }

    /// Checks this process's settings against the root's (`write`: record them if the root has
    /// none yet; only the serving process writes). `Ok(false)`: the server has not written them
    /// yet.
    fn check_agreed(&self, root: &Path, write: bool) -> Result<bool, Failure> {
        let path = root.join(SETTINGS);
        let mine = self.agreed();
        match std::fs::read_to_string(&path) {
            Ok(theirs) if theirs.trim() == mine => {
                if write {
                    // Every file under a root is its owner's alone (a root written by an older
                    // version may hold this one readable by others).
                    use std::os::unix::fs::PermissionsExt;
                    let private = std::fs::Permissions::from_mode(0o600);
                    let _ = std::fs::set_permissions(&path, private);
                }
                Ok(true)
            }
            Ok(theirs) => Err(Failure::Config(format!(
                "the root {} holds the cache {}, but this process asked for {mine}: every \
                 process sharing a root must use the same name and serializer",
                root.display(),
                theirs.trim()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && write => {
                let tmp = root.join(format!("{SETTINGS}.tmp"));
                write_private(&tmp, &format!("{mine}\n"))
                    .and_then(|()| std::fs::rename(&tmp, &path))
                    .map_err(|e| {
                        Failure::Config(format!("cannot write {}: {e}", path.display()))
                    })?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Failure::Config(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// A backend for the root: serve it if it is free, else connect to the process that does,
    /// waiting (up to the takeover timeout) through the moments when neither works — a server
    /// that died and a successor still restoring.
    fn establish(&self, root: &Path) -> Result<Backend, Failure> {
        let deadline = Instant::now() + self.takeover;
        let mut pause = Duration::from_millis(2);
        loop {
            let reason = match self.serve(root) {
                Ok(backend) => {
                    if let Err(e) = self.check_agreed(root, true) {
                        if let Backend::Serving { node, .. } = &backend {
                            shutdown(node);
                        }
                        return Err(e);
                    }
                    tracing::info!(root = %root.display(), "serving the shared cache");
                    return Ok(backend);
                }
                Err(leafcache::Error::RootInUse(_)) => match self.connect(root) {
                    Ok(backend) => match self.check_agreed(root, false)? {
                        true => return Ok(backend),
                        false => "the serving process has not recorded its settings yet".into(),
                    },
                    Err(e) => e,
                },
                Err(e) => return Err(Failure::Core(e)),
            };
            if Instant::now() >= deadline {
                return Err(Failure::Lost(format!(
                    "no process serves the cache at {} within {:?}: {reason}",
                    root.display(),
                    self.takeover
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

impl Shared {
    /// Replaces `lost` (unless another thread did already) with whatever now serves the root.
    fn recover(&self, lost: &Arc<Backend>) -> Result<(), Failure> {
        let _one = self.takeover.lock();
        if !Arc::ptr_eq(&self.backend.read(), lost) {
            return Ok(());
        }
        let root = self
            .root
            .as_deref()
            .expect("only a root's client loses its server");
        let backend = self.settings.establish(root)?;
        *self.backend.write() = Arc::new(backend);
        Ok(())
    }

    fn run(&self, op: &Op<'_>) -> Result<Reply, Failure> {
        let deadline = Instant::now() + self.settings.takeover;
        loop {
            let backend = self.backend.read().clone();
            match &*backend {
                Backend::Serving { cache, .. } => return local(cache, op).map_err(Failure::Core),
                Backend::Client { client, pool } => {
                    let conn = pool.lock().pop();
                    let mut conn = match conn.map_or_else(|| self.settings.dial(client), Ok) {
                        Ok(c) => c,
                        Err(reason) => {
                            tracing::debug!(%reason, "the serving process is unreachable");
                            self.recover(&backend)?;
                            continue;
                        }
                    };
                    match remote(&mut conn, op) {
                        Ok(reply) => {
                            pool.lock().push(conn);
                            return Ok(reply);
                        }
                        Err(e) if is_lost(&e) => {
                            drop(conn);
                            tracing::debug!(error = %e, "lost the serving process");
                            self.recover(&backend)?;
                            if !op.repeatable() {
                                return Err(Failure::Lost(format!(
                                    "the process serving the cache went away during {}; it may \
                                     or may not have been applied",
                                    op.name()
                                )));
                            }
                            if Instant::now() >= deadline {
                                return Err(Failure::Lost(format!(
                                    "{} did not complete within {:?}: {e}",
                                    op.name(),
                                    self.settings.takeover
                                )));
                            }
                        }
                        Err(e) => {
                            pool.lock().push(conn);
                            return Err(Failure::Refused(
                                e.detail().map_or_else(|| e.to_string(), str::to_string),
                            ));
                        }
                    }
                }
            }
        }
    }
}

fn is_lost(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

fn local(cache: &Cache, op: &Op<'_>) -> Result<Reply, leafcache::Error> {
    Ok(match op {
        Op::Get(k) => Reply::Value(cache.get(k)),
        Op::Set(k, v, ttl) => {
            let k = Bytes::copy_from_slice(k);
            match ttl {
                Some(t) => cache.set_with_ttl(k, v.clone(), *t)?,
                None => cache.set(k, v.clone())?,
            };
            Reply::Done
        }
        Op::Delete(k) => Reply::Flag(cache.delete(k).is_some()),
        Op::Pop(k) => Reply::Value(cache.delete(k)),
        Op::IncrInt(k, by) => Reply::Int(codec::counting(cache, k, false, || cache.incr(k, *by))?),
        Op::IncrFloat(k, by) => Reply::Float(codec::counting(cache, k, true, || {
            cache.incr_float(k, *by)
        })?),
        Op::Contains(k) => Reply::Flag(cache.contains(k)),
        Op::Len => Reply::Count(cache.len()),
        Op::Purge => {
            cache.purge();
            Reply::Done
        }
    })
}

fn remote(conn: &mut redis::Connection, op: &Op<'_>) -> redis::RedisResult<Reply> {
    use redis::cmd;
    Ok(match op {
        Op::Get(k) => Reply::Value(
            cmd("GET")
                .arg(*k)
                .query::<Option<Vec<u8>>>(conn)?
                .map(Bytes::from),
        ),
        Op::Set(k, v, ttl) => {
            let mut c = cmd("SET");
            c.arg(*k).arg(v.as_ref());
            if let Some(t) = ttl {
                c.arg("PX")
                    .arg(u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1));
            }
            c.query::<()>(conn)?;
            Reply::Done
        }
        Op::Delete(k) => Reply::Flag(cmd("DEL").arg(*k).query::<i64>(conn)? > 0),
        Op::Pop(k) => Reply::Value(
            cmd("GETDEL")
                .arg(*k)
                .query::<Option<Vec<u8>>>(conn)?
                .map(Bytes::from),
        ),
        Op::IncrInt(k, by) => {
            let incr = |conn: &mut redis::Connection| cmd("INCRBY").arg(*k).arg(*by).query(conn);
            Reply::Int(remote_counting(conn, k, false, incr)?)
        }
        Op::IncrFloat(k, by) => {
            let incr = |conn: &mut redis::Connection| {
                cmd("INCRBYFLOAT").arg(*k).arg(*by).query::<String>(conn)
            };
            let text = remote_counting(conn, k, true, incr)?;
            Reply::Float(text.parse().unwrap_or(f64::NAN))
        }
        Op::Contains(k) => Reply::Flag(cmd("EXISTS").arg(*k).query::<i64>(conn)? > 0),
        Op::Len => Reply::Count(cmd("DBSIZE").query::<usize>(conn)?),
        Op::Purge => {
            cmd("FLUSHDB").query::<()>(conn)?;
            Reply::Done
        }
    })
}

/// [`codec::counting`] over the serving process's socket: an increment refused because the key
/// holds a number Python stored rewrites it as its plain text (`SET ... KEEPTTL`) and runs again.
fn remote_counting<T>(
    conn: &mut redis::Connection,
    key: &[u8],
    float: bool,
    incr: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>,
) -> redis::RedisResult<T> {
    let refused = match incr(conn) {
        Err(e)
            if e.to_string().contains("not an integer")
                || e.to_string().contains("not a valid float") =>
        {
            e
        }
        other => return other,
    };
    use redis::cmd;
    let stored: Option<Vec<u8>> = cmd("GET").arg(key).query(conn)?;
    let Some(text) = stored.and_then(|s| codec::stored_number(&s, float)) else {
        return Err(refused);
    };
    cmd("SET")
        .arg(key)
        .arg(&text[..])
        .arg("KEEPTTL")
        .query::<()>(conn)?;
    incr(conn)
}

fn shutdown(node: &Node) {
    if let Ok(rt) = runtime() {
        let node = node.clone();
        rt.block_on(node.shutdown());
    }
}

impl SharedCache {
    fn run(&self, py: Python<'_>, op: Op<'_>) -> PyResult<Reply> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(LeafcacheError::new_err("the cache is closed"));
        }
        py.detach(|| self.shared.run(&op)).map_err(Failure::into_py)
    }

    fn value(
        &self,
        py: Python<'_>,
        reply: Reply,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        match reply {
            Reply::Value(Some(v)) => self.codec.decode(py, &v),
            _ => Ok(default.unwrap_or_else(|| py.None())),
        }
    }
}

#[pymethods]
impl SharedCache {
    #[new]
    #[pyo3(signature = (name="default", root=None, *, expires=None, snapshot=None, flush="always", maximum_capacity=100_000, max_bytes=None, eviction="lru", serializer="json", decode=true, takeover_timeout=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: &str,
        root: Option<PathBuf>,
        expires: Option<&Bound<'_, PyAny>>,
        snapshot: Option<&Bound<'_, PyAny>>,
        flush: &str,
        maximum_capacity: i64,
        max_bytes: Option<i64>,
        eviction: &str,
        serializer: &str,
        decode: bool,
        takeover_timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        if name.is_empty() {
            return Err(PyValueError::new_err("name must not be empty"));
        }
        let config = args::cache_config(maximum_capacity, "expires", expires, max_bytes, eviction)?;
        let format = Format::parse(serializer)?;
        let settings = Settings {
            name: name.to_string(),
            config,
            flush: flush.parse().map_err(to_py)?,
            snapshot: args::optional_duration("snapshot", snapshot)?,
            takeover: args::optional_duration("takeover_timeout", takeover_timeout)?
                .unwrap_or(Duration::from_secs(10)),
            format,
        };
        let codec = Codec::new(py, format, decode)?;
        let backend = match &root {
            Some(root) => py
                .detach(|| settings.establish(root))
                .map_err(Failure::into_py)?,
            None => {
                let node = Node::builder()
                    .name(name)
                    .default_cache(settings.config.clone())
                    .build()
                    .map_err(to_py)?;
                Backend::Serving {
                    cache: node.default_cache(),
                    node,
                    root: false,
                }
            }
        };
        let shared = Shared {
            root,
            settings,
            backend: RwLock::new(Arc::new(backend)),
            takeover: Mutex::new(()),
        };
        Ok(SharedCache {
            shared: Arc::new(shared),
            codec,
            closed: AtomicBool::new(false),
        })
    }

    /// The value of `key`, or `default`.
    #[pyo3(signature = (key, default=None))]
    fn get(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let k = codec::key(key)?;
        let reply = self.run(py, Op::Get(&k))?;
        self.value(py, reply, default)
    }

    /// Stores `value` under `key`, expiring after `ttl` (default: `expires`).
    #[pyo3(signature = (key, value, ttl=None))]
    fn set(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let k = codec::key(key)?;
        let v = self.codec.encode(value)?;
        let ttl = args::optional_duration("ttl", ttl)?;
        self.run(py, Op::Set(&k, v, ttl)).map(drop)
    }

    /// Removes `key`; whether it was held.
    fn delete(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = codec::key(key)?;
        Ok(matches!(self.run(py, Op::Delete(&k))?, Reply::Flag(true)))
    }

    /// Removes `key` and returns its value, or `default`.
    #[pyo3(signature = (key, default=None))]
    fn pop(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let k = codec::key(key)?;
        let reply = self.run(py, Op::Pop(&k))?;
        self.value(py, reply, default)
    }

    /// Adds `amount` (int or float) to the counter at `key`; the new value.
    #[pyo3(signature = (key, amount=None))]
    fn incr(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        amount: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let k = codec::key(key)?;
        let op = match args::Amount::of(amount)? {
            args::Amount::Int(by) => Op::IncrInt(&k, by),
            args::Amount::Float(by) => Op::IncrFloat(&k, by),
        };
        Ok(match self.run(py, op)? {
            Reply::Int(n) => n.into_pyobject(py)?.into_any().unbind(),
            Reply::Float(n) => n.into_pyobject(py)?.into_any().unbind(),
            _ => py.None(),
        })
    }

    /// Removes every entry.
    fn purge(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, Op::Purge).map(drop)
    }

    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = codec::key(key)?;
        Ok(matches!(self.run(py, Op::Contains(&k))?, Reply::Flag(true)))
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(match self.run(py, Op::Len)? {
            Reply::Count(n) => n,
            _ => 0,
        })
    }

    /// "serving" when this process holds the cache (the root's server, or no root), "client"
    /// when another process serves the root.
    #[getter]
    fn role(&self) -> &'static str {
        match &**self.shared.backend.read() {
            Backend::Serving { .. } => "serving",
            Backend::Client { .. } => "client",
        }
    }

    /// The root the cache is shared through, if any.
    #[getter]
    fn root(&self) -> Option<PathBuf> {
        self.shared.root.clone()
    }

    /// The cache's name.
    #[getter]
    fn name(&self) -> String {
        self.shared.settings.name.clone()
    }

    /// Stops using the cache. The serving process writes the root out and releases it, and one
    /// of the others takes over. Later calls raise `LeafcacheError`.
    fn close(&self, py: Python<'_>) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let backend = self.shared.backend.read().clone();
        match &*backend {
            Backend::Serving {
                node, root: true, ..
            } => py.detach(|| shutdown(node)),
            Backend::Serving { .. } => {}
            Backend::Client { pool, .. } => pool.lock().clear(),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "SharedCache(name={:?}, root={:?}, role={:?})",
            self.shared.settings.name,
            self.shared.root,
            self.role()
        )
    }
}
