//! The `leafcache._native` extension module: the Rust core's caches as Python classes.
//!
//! [`local`] holds `LRUCache` and `LRUCacheDistributed` (a cache on a node of its own, embedded
//! in the process), [`shared`] the module-level cache several processes share through one root,
//! [`codec`] how Python values become the bytes every node and Redis client sees, and [`args`]
//! how Python arguments become settings.

mod args;
mod codec;
mod local;
mod logs;
mod shared;

use std::sync::OnceLock;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;

create_exception!(
    leafcache,
    LeafcacheError,
    PyException,
    "A cache operation failed: the node is closed, a peer or the serving process is unreachable, or the core refused it."
);

/// The runtime every node of this process runs its links, doors and persistence on: two worker
/// threads, started at the first node that needs one.
pub(crate) fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("leafcache")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| LeafcacheError::new_err(format!("cannot start the I/O runtime: {e}")))
}

/// A load callback's exception, carried through the core's loader to every caller that waited
/// on that load, and raised there as it was raised in the callback (type and traceback).
pub(crate) struct CallbackError {
    pub(crate) error: PyErr,
    text: String,
}

impl CallbackError {
    pub(crate) fn new(error: PyErr) -> Self {
        let text = error.to_string();
        CallbackError { error, text }
    }
}

impl std::fmt::Display for CallbackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::fmt::Debug for CallbackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CallbackError({})", self.text)
    }
}

impl std::error::Error for CallbackError {}

/// The Python exception for a core error: settings and sizes are `ValueError`, a value of the
/// wrong type `TypeError`, a load callback's failure its own exception, the rest
/// `LeafcacheError`.
pub(crate) fn to_py(e: leafcache::Error) -> PyErr {
    use leafcache::Error as E;
    match e {
        E::Load(source) => match source.downcast_ref::<CallbackError>() {
            Some(c) => Python::attach(|py| c.error.clone_ref(py)),
            None => LeafcacheError::new_err(format!("load callback failed: {source}")),
        },
        E::ZeroCapacity { .. }
        | E::ZeroDuration { .. }
        | E::InvalidDuration { .. }
        | E::InvalidConfig { .. }
        | E::RootInUse(_)
        | E::ValueTooLarge { .. }
        | E::NotCounted(_) => PyValueError::new_err(e.to_string()),
        E::WrongType => PyTypeError::new_err(
            "the key holds a value of another type (a hash, read or written as a string)",
        ),
        other => LeafcacheError::new_err(other.to_string()),
    }
}

/// Sets the core's log level ("debug", "info", "warning", "error", "critical"; any case); with
/// `root`, also writes the log under it (0600, rotated). Records also go to Python's `logging`
/// (logger `leafcache`). Can be called again to change either.
#[pyfunction]
#[pyo3(signature = (level, root=None))]
fn init_logging(level: &str, root: Option<std::path::PathBuf>) -> PyResult<()> {
    logs::init(level, root.as_deref())
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("LeafcacheError", m.py().get_type::<LeafcacheError>())?;
    m.add_class::<local::LRUCache>()?;
    m.add_class::<local::LRUCacheDistributed>()?;
    m.add_class::<shared::SharedCache>()?;
    m.add_function(wrap_pyfunction!(init_logging, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
