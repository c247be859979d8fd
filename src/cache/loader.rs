//! Load callbacks: what a cache calls on a miss in `get_or_load`, sync or async.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::BoxError;

type SyncFn = dyn Fn(&[u8]) -> Result<Bytes, BoxError> + Send + Sync;
type LoadFuture = Pin<Box<dyn Future<Output = Result<Bytes, BoxError>> + Send>>;
type AsyncFn = dyn Fn(Bytes) -> LoadFuture + Send + Sync;

/// What a load callback returns when the key does not exist where it loads from (an origin's
/// 404, a missing file): the read is a miss, nothing is cached, and it is not an error.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let cache = leafcache::Cache::builder()
///     .load_callback(|key: &[u8]| {
///         if key == b"known" { Ok(b"value".to_vec()) } else { Err(leafcache::Missing) }
///     })
///     .build()?;
/// assert_eq!(cache.get_or_fetch("known").await?.unwrap(), "value");
/// assert_eq!(cache.get_or_fetch("unknown").await?, None);
/// assert_eq!(cache.stats().load_misses, 1);
/// # Ok::<(), leafcache::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the key is not where the cache loads from")]
pub struct Missing;

/// A cache's load callback: produces the value of a key that missed.
///
/// ```
/// use leafcache::Loader;
/// let from_disk = Loader::sync(|key: &[u8]| std::fs::read(String::from_utf8_lossy(key).as_ref()));
/// let from_service = Loader::from_async(|key| async move {
///     Ok::<_, std::io::Error>(format!("value of {key:?}"))
/// });
/// # let _ = (from_disk, from_service);
/// ```
#[derive(Clone)]
pub enum Loader {
    /// A blocking function. On a multi-thread tokio runtime it runs in place (`block_in_place`),
    /// on a current-thread runtime on the blocking pool, outside a runtime directly.
    Sync(Arc<SyncFn>),
    /// An async function.
    Async(Arc<AsyncFn>),
}

impl Loader {
    /// A loader from a blocking function.
    pub fn sync<F, V, E>(f: F) -> Self
    where
        F: Fn(&[u8]) -> Result<V, E> + Send + Sync + 'static,
        V: Into<Bytes>,
        E: Into<BoxError>,
    {
        Loader::Sync(Arc::new(move |key| {
            f(key).map(Into::into).map_err(Into::into)
        }))
    }

    /// A loader from an async function.
    pub fn from_async<F, Fut, V, E>(f: F) -> Self
    where
        F: Fn(Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        V: Into<Bytes>,
        E: Into<BoxError>,
    {
        Loader::Async(Arc::new(move |key| {
            let fut = f(key);
            Box::pin(async move { fut.await.map(Into::into).map_err(Into::into) })
        }))
    }

    /// Runs the loader for `key`. A panicking sync loader becomes an error, not a crashed task.
    pub(crate) async fn load(&self, key: Bytes) -> Result<Bytes, BoxError> {
        match self {
            Loader::Async(f) => f(key).await,
            Loader::Sync(f) => {
                use tokio::runtime::{Handle, RuntimeFlavor};
                match Handle::try_current().map(|h| h.runtime_flavor()) {
                    // On a multi-thread runtime the callback runs right here, after this worker
                    // hands its other tasks to another thread: a miss costs the callback, not a
                    // trip to the blocking pool and back (~30 µs, more than a file read).
                    Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| {
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&key)))
                            .map_err(|_| -> BoxError { "load callback panicked".into() })?
                    }),
                    // A current-thread runtime cannot block in place: the blocking pool.
                    Ok(_) => {
                        let f = f.clone();
                        tokio::task::spawn_blocking(move || f(&key)).await.map_err(
                            |e| -> BoxError { format!("load callback panicked: {e}").into() },
                        )?
                    }
                    Err(_) => f(&key),
                }
            }
        }
    }
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Loader::Sync(_) => "Loader::Sync",
            Loader::Async(_) => "Loader::Async",
        })
    }
}
