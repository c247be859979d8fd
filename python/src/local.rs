//! `LRUCache` and `LRUCacheDistributed`: a cache on a node of its own, embedded in this process.
//! A miss with a `load_callback` is one load per key however many threads ask (single flight),
//! and other keys go on meanwhile.
//!
//! The GIL is released wherever the core may wait: a miss that loads (or waits for another
//! thread's load), a write on a node with a root (it may write the op log before returning),
//! closing. A read that hits, and a write in memory, keep it: they hold one shard's lock for
//! about 100 ns and never wait on I/O, while releasing and retaking the GIL costs ~150 ns on
//! its own (BENCHMARKS.md, "Python"). Holding the GIL there cannot deadlock: no shard lock is
//! ever held while Python code runs (a load callback is called outside them).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use leafcache::{Cache, CacheConfig, Flush, Loader, Node};
use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::codec::{self, Codec, Format};
use crate::{CallbackError, LeafcacheError, args, runtime, to_py};

/// A local LRU cache with time expiration and an optional load callback, held in this process.
/// Values are `str` and `bytes` as they are, other objects through the serializer.
///
/// ```python
/// from leafcache import LRUCache
/// cache = LRUCache(load_callback=lambda key: key.upper(), maximum_capacity=1000,
///                  expiration_time=60)
/// assert cache.get("abc") == "ABC"      # loaded once, then cached
/// cache["n"] = {"a": 1}                 # stored as JSON
/// ```
#[pyclass(subclass, frozen, module = "leafcache", name = "LRUCache")]
pub struct LRUCache {
    pub(crate) cache: Cache,
    node: Node,
    codec: Arc<Codec>,
    loads: bool,
    /// The node has links, doors or a root, whose tasks run until it is shut down.
    tasks: bool,
    closed: AtomicBool,
}

/// The settings `LRUCache` and `LRUCacheDistributed` share.
struct Settings {
    config: CacheConfig,
    codec: Arc<Codec>,
    loads: bool,
}

#[allow(clippy::too_many_arguments)] // the constructors' keyword arguments, one each
fn settings(
    py: Python<'_>,
    load_callback: Option<Py<PyAny>>,
    maximum_capacity: i64,
    expiration_time: Option<&Bound<'_, PyAny>>,
    max_bytes: Option<i64>,
    eviction: &str,
    serializer: &str,
    decode: bool,
) -> PyResult<Settings> {
    let mut config = args::cache_config(
        maximum_capacity,
        "expiration_time",
        expiration_time,
        max_bytes,
        eviction,
    )?;
    let codec = Arc::new(Codec::new(py, Format::parse(serializer)?, decode)?);
    let loads = load_callback.is_some();
    if let Some(callback) = load_callback {
        if !callback.bind(py).is_callable() {
            return Err(PyTypeError::new_err(
                "load_callback must be callable: it is called with the key on a miss",
            ));
        }
        config = config.loader(loader(callback, codec.clone()));
    }
    Ok(Settings {
        config,
        codec,
        loads,
    })
}

/// The core's loader around a Python callable: called with the GIL taken, its result encoded;
/// an exception travels as [`CallbackError`] and is raised again in every waiting caller.
fn loader(callback: Py<PyAny>, codec: Arc<Codec>) -> Loader {
    Loader::sync(move |key: &[u8]| -> Result<Bytes, CallbackError> {
        Python::attach(|py| {
            let key = codec::key_object(py, key);
            callback
                .bind(py)
                .call1((key,))
                .and_then(|value| codec.encode(&value))
                .map_err(CallbackError::new)
        })
    })
}

impl LRUCache {
    fn from_node(node: Node, s: &Settings, tasks: bool) -> LRUCache {
        LRUCache {
            cache: node.default_cache(),
            node,
            codec: s.codec.clone(),
            loads: s.loads,
            tasks,
            closed: AtomicBool::new(false),
        }
    }

    /// Runs a write, releasing the GIL when the node persists (the write may reach the file
    /// before it returns).
    fn write<T: Send>(&self, py: Python<'_>, f: impl FnOnce() -> T + Send) -> T {
        if self.node.root().is_some() {
            py.detach(f)
        } else {
            f()
        }
    }

    fn open(&self) -> PyResult<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(LeafcacheError::new_err("the cache is closed"));
        }
        Ok(())
    }

    /// The value of `key`, loading it on a miss. The core's `get_or_load` is polled once here:
    /// a hit, or a miss this thread loads, completes in that poll, the callback running on this
    /// thread; only a thread that waits for another's load parks, in the runtime's `block_on`.
    fn load(&self, py: Python<'_>, key: Bytes) -> PyResult<Py<PyAny>> {
        let value = py.detach(|| {
            // Inside the runtime's context even for the first poll: asking another shard's door
            // sets a timer.
            let rt = runtime()?;
            let _entered = rt.enter();
            let mut load = std::pin::pin!(self.cache.get_or_load(key));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            match load.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(r) => Ok::<_, PyErr>(r),
                std::task::Poll::Pending => Ok(rt.block_on(load)),
            }
        })?;
        self.codec.decode(py, &value.map_err(to_py)?)
    }

    fn lookup(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        self.open()?;
        let k = codec::key(key)?;
        if self.loads {
            return self.load(py, k).map(Some);
        }
        match self.cache.get(&k) {
            Some(v) => self.codec.decode(py, &v).map(Some),
            // On a node of a sharded cluster, a key another shard holds is asked there.
            None if self.node.shards().is_some() => {
                let fetched =
                    py.detach(|| runtime().map(|rt| rt.block_on(self.cache.get_or_fetch(k))))?;
                match fetched.map_err(to_py)? {
                    Some(v) => self.codec.decode(py, &v).map(Some),
                    None => Ok(None),
                }
            }
            None => Ok(None),
        }
    }
}

#[pymethods]
impl LRUCache {
    #[new]
    #[pyo3(signature = (load_callback=None, maximum_capacity=100_000, expiration_time=None, *, max_bytes=None, eviction="lru", serializer="json", decode=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        load_callback: Option<Py<PyAny>>,
        maximum_capacity: i64,
        expiration_time: Option<&Bound<'_, PyAny>>,
        max_bytes: Option<i64>,
        eviction: &str,
        serializer: &str,
        decode: bool,
    ) -> PyResult<Self> {
        let s = settings(
            py,
            load_callback,
            maximum_capacity,
            expiration_time,
            max_bytes,
            eviction,
            serializer,
            decode,
        )?;
        let node = Node::builder()
            .default_cache(s.config.clone())
            .build()
            .map_err(to_py)?;
        Ok(LRUCache::from_node(node, &s, false))
    }

    /// The value of `key`; on a miss, what `load_callback(key)` returns (stored for next time),
    /// or `default` when the cache has no callback. A callback's exception is raised here and
    /// nothing is stored.
    #[pyo3(signature = (key, default=None))]
    fn get(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        Ok(self
            .lookup(py, key)?
            .unwrap_or_else(|| default.unwrap_or_else(|| py.None())))
    }

    /// Stores `value` under `key`, expiring after `ttl` (seconds or "30m"; default: the cache's
    /// `expiration_time`). Raises `ValueError` for an entry larger than the cache accepts.
    #[pyo3(signature = (key, value, ttl=None))]
    fn set(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.open()?;
        let k = codec::key(key)?;
        let v = self.codec.encode(value)?;
        let ttl = args::optional_duration("ttl", ttl)?;
        self.write(py, || match ttl {
            Some(t) => self.cache.set_with_ttl(k, v, t),
            None => self.cache.set(k, v),
        })
        .map(drop)
        .map_err(to_py)
    }

    /// Removes `key`; whether it was held.
    fn delete(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.open()?;
        let k = codec::key(key)?;
        Ok(self.write(py, || self.cache.delete(&k)).is_some())
    }

    /// Removes `key` and returns its value, or `default` if it was not held.
    #[pyo3(signature = (key, default=None))]
    fn pop(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        self.open()?;
        let k = codec::key(key)?;
        match self.write(py, || self.cache.delete(&k)) {
            Some(v) => self.codec.decode(py, &v),
            None => Ok(default.unwrap_or_else(|| py.None())),
        }
    }

    /// Adds `amount` (an int, or a float as Redis INCRBYFLOAT) to the counter at `key` and
    /// returns the new value. A missing key counts from 0, text holding a number counts from
    /// it; increments on several nodes add up, even across a partition.
    #[pyo3(signature = (key, amount=None))]
    fn incr(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        amount: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        self.open()?;
        let k = codec::key(key)?;
        match args::Amount::of(amount)? {
            args::Amount::Int(by) => {
                let cache = &self.cache;
                let incr = || codec::counting(cache, &k, false, || cache.incr(&k, by));
                let n = self.write(py, incr).map_err(to_py)?;
                Ok(n.into_pyobject(py)?.into_any().unbind())
            }
            args::Amount::Float(by) => {
                let cache = &self.cache;
                let incr = || codec::counting(cache, &k, true, || cache.incr_float(&k, by));
                let n = self.write(py, incr).map_err(to_py)?;
                Ok(n.into_pyobject(py)?.into_any().unbind())
            }
        }
    }

    /// Removes every entry (on every linked node, for a distributed cache).
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        self.open()?;
        self.write(py, || self.cache.purge());
        Ok(())
    }

    /// Counters: hits, misses, loads, load_errors, evictions, expirations, entries, bytes.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.cache.stats();
        let d = PyDict::new(py);
        for (name, value) in [
            ("hits", s.hits),
            ("misses", s.misses),
            ("loads", s.loads),
            ("load_errors", s.load_errors),
            ("evictions", s.evictions),
            ("expirations", s.expirations),
            ("entries", s.entries),
            ("bytes", s.bytes),
        ] {
            d.set_item(name, value)?;
        }
        Ok(d)
    }

    /// Stops the cache: a distributed one closes its links and listener, writes what a root
    /// holds and releases it. Later calls raise `LeafcacheError`; closing twice is harmless.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if self.closed.swap(true, Ordering::SeqCst) || !self.tasks {
            return Ok(());
        }
        let rt = runtime()?;
        let node = self.node.clone();
        py.detach(|| rt.block_on(node.shutdown()));
        Ok(())
    }

    /// Whether the cache was closed.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __getitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.lookup(py, key)?
            .ok_or_else(|| PyKeyError::new_err(key.clone().unbind()))
    }

    fn __setitem__(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.set(py, key, value, None)
    }

    fn __delitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.delete(py, key)? {
            Ok(())
        } else {
            Err(PyKeyError::new_err(key.clone().unbind()))
        }
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.open()?;
        let k = codec::key(key)?;
        Ok(self.cache.contains(&k))
    }

    fn __len__(&self) -> usize {
        self.cache.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "{}(entries={}, serializer={:?})",
            if self.tasks {
                "LRUCacheDistributed"
            } else {
                "LRUCache"
            },
            self.cache.len(),
            self.codec.format.name()
        )
    }
}

impl Drop for LRUCache {
    fn drop(&mut self) {
        // A node's link tasks hold it: one dropped unclosed would run on unseen.
        if self.tasks
            && !self.closed.swap(true, Ordering::SeqCst)
            && let Ok(rt) = runtime()
        {
            let node = self.node.clone();
            rt.spawn(async move { node.shutdown().await });
        }
    }
}

/// An `LRUCache` on a node that links to others: a leaf of `remote_address`, a hub on
/// `local_address`, or both. Reads are local; every write reaches every linked node; when a
/// link drops both sides go on, and they resync what changed when it is back.
///
/// With `shards` (shard name → the RESP doors of its nodes, the hub first) and `shard` (this
/// node's), it is a node of a sharded cluster: a miss on a key another shard holds is asked at
/// that shard's door before `load_callback`.
///
/// ```python
/// from leafcache import LRUCacheDistributed
/// hub = LRUCacheDistributed(local_address=("127.0.0.1", 5555), secret="s3cret")
/// leaf = LRUCacheDistributed(load_callback=load, maximum_capacity=10_000,
///                            expiration_time=3600, connection_timeout=5,
///                            remote_address=("127.0.0.1", "5555"), secret="s3cret")
/// ```
#[pyclass(extends = LRUCache, frozen, module = "leafcache", name = "LRUCacheDistributed")]
pub struct LRUCacheDistributed {}

#[pymethods]
impl LRUCacheDistributed {
    #[new]
    #[pyo3(signature = (load_callback=None, maximum_capacity=100_000, expiration_time=None, connection_timeout=None, remote_address=None, local_address=None, *, secret=None, name=None, root=None, cluster=None, flush=None, snapshot=None, max_bytes=None, eviction="lru", serializer="json", decode=true, shards=None, shard=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        load_callback: Option<Py<PyAny>>,
        maximum_capacity: i64,
        expiration_time: Option<&Bound<'_, PyAny>>,
        connection_timeout: Option<&Bound<'_, PyAny>>,
        remote_address: Option<&Bound<'_, PyAny>>,
        local_address: Option<&Bound<'_, PyAny>>,
        secret: Option<String>,
        name: Option<String>,
        root: Option<std::path::PathBuf>,
        cluster: Option<String>,
        flush: Option<&str>,
        snapshot: Option<&Bound<'_, PyAny>>,
        max_bytes: Option<i64>,
        eviction: &str,
        serializer: &str,
        decode: bool,
        shards: Option<&Bound<'_, pyo3::types::PyDict>>,
        shard: Option<String>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let cluster_map = args::shards(shards, shard.as_deref(), name.as_deref())?;
        let s = settings(
            py,
            load_callback,
            maximum_capacity,
            expiration_time,
            max_bytes,
            eviction,
            serializer,
            decode,
        )?;
        let remote = remote_address
            .filter(|a| !a.is_none())
            .map(|a| args::address("remote_address", a, false))
            .transpose()?;
        let local = local_address
            .filter(|a| !a.is_none())
            .map(|a| args::address("local_address", a, true))
            .transpose()?;
        let secret = args::secret(py, secret, local.as_deref(), remote.as_deref())?;
        let mut builder = Node::builder().default_cache(s.config.clone());
        if let Some(t) = args::optional_duration("connection_timeout", connection_timeout)? {
            builder = builder.connection_timeout(t);
        }
        if let Some(a) = remote {
            builder = builder.remote_address(a);
        }
        if let Some(a) = local {
            builder = builder.local_address(a);
        }
        if let Some(s) = secret {
            builder = builder.secret(s);
        }
        if let Some(n) = name {
            builder = builder.name(n);
        }
        if let Some(map) = cluster_map {
            builder = builder.shards(map);
        }
        if let Some(c) = cluster {
            builder = builder.cluster(c);
        }
        if let Some(r) = root {
            builder = builder.root(r);
            if let Some(f) = flush {
                builder = builder.flush(f.parse::<Flush>().map_err(to_py)?);
            }
            if let Some(every) = args::optional_duration("snapshot", snapshot)? {
                builder = builder.snapshot_interval(every);
            }
        } else if flush.is_some() || snapshot.is_some_and(|s| !s.is_none()) {
            return Err(PyValueError::new_err(
                "flush and snapshot are settings of a root: pass root=... as well",
            ));
        }
        let rt = runtime()?;
        let node = py
            .detach(|| {
                let _entered = rt.enter();
                builder.build()
            })
            .map_err(to_py)?;
        Ok(
            PyClassInitializer::from(LRUCache::from_node(node, &s, true))
                .add_subclass(LRUCacheDistributed {}),
        )
    }

    /// The address this node accepts leaves on, as bound (the OS's port for port 0), or None.
    #[getter]
    fn address(slf: PyRef<'_, Self>) -> Option<String> {
        slf.as_super().node.local_addr().map(str::to_string)
    }

    /// This node's name.
    #[getter]
    fn name(slf: PyRef<'_, Self>) -> String {
        slf.as_super().node.name().to_string()
    }

    /// Whether the link to the hub is up (False for a node without `remote_address`).
    #[getter]
    fn connected(slf: PyRef<'_, Self>) -> bool {
        slf.as_super().node.links().iter().any(|l| {
            l.direction == leafcache::Direction::Upstream && l.state == leafcache::LinkState::Up
        })
    }

    /// Every link of this node, as dicts: direction, state, address, peer_name, last_error,
    /// lag_changes, bytes_in, bytes_out, ...
    fn links<'py>(slf: PyRef<'py, Self>, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let links = slf.as_super().node.links();
        let text = serde_json::to_string(&links)
            .map_err(|e| LeafcacheError::new_err(format!("cannot describe the links: {e}")))?;
        py.import("json")?.getattr("loads")?.call1((text,))
    }
}
