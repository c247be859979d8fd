//! [`CacheBuilder`]: one cache on a node of its own, with the parameters of the original Python
//! `LRUCacheDistributed(...)`.

use bytes::Bytes;

use super::{IntoDuration, NodeBuilder};
use crate::cache::{Cache, CacheConfig, Loader};
use crate::clock::{Clock, NodeId};
use crate::error::{BoxError, Error};
use crate::node::Node;

impl Cache {
    /// A builder for a standalone cache on a node of its own, in the style of the original
    /// `LRUCacheDistributed(...)`. See [`CacheBuilder`].
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }
}

/// Builds a standalone [`Cache`] (the `default` cache of a node of its own), with the parameters
/// of the original Python `LRUCacheDistributed`:
///
/// | `LRUCacheDistributed(...)` | here |
/// |---|---|
/// | `load_callback=f` | [`load_callback`](Self::load_callback) / [`async_load_callback`](Self::async_load_callback) |
/// | `maximum_capacity=n` | [`maximum_capacity`](Self::maximum_capacity) |
/// | `expiration_time=s` | [`expiration_time`](Self::expiration_time) (seconds, `Duration` or `"120s"`) |
/// | `connection_timeout=s` | [`connection_timeout`](Self::connection_timeout) |
/// | `remote_address=a` | [`remote_address`](Self::remote_address) |
/// | `local_address=a` | [`local_address`](Self::local_address) |
///
/// ```
/// use leafcache::Cache;
/// let cache = Cache::builder()
///     .load_callback(|key: &[u8]| Ok::<_, std::io::Error>(format!("loaded {}", key.len())))
///     .maximum_capacity(1_000)
///     .expiration_time("2m")
///     .connection_timeout(5)
///     .build()?;
/// # Ok::<(), leafcache::Error>(())
/// ```
#[derive(Default)]
#[must_use]
pub struct CacheBuilder {
    node: NodeBuilder,
    config: CacheConfig,
    error: Option<Error>,
}

impl CacheBuilder {
    /// The most entries the cache holds (default 100,000).
    pub fn maximum_capacity(mut self, n: u64) -> Self {
        self.config = self.config.max_entries(n);
        self
    }

    /// How the full cache chooses what to evict: [`Eviction::Lru`](crate::Eviction) (default),
    /// `Eviction::Lfu` or `Eviction::S3Fifo`.
    pub fn eviction(mut self, eviction: crate::Eviction) -> Self {
        self.config = self.config.eviction(eviction);
        self
    }

    /// The most bytes the cache holds, keys, values and per-entry overhead counted.
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.config = self.config.max_bytes(n);
        self
    }

    /// The default time-to-live of a write.
    pub fn expiration_time(mut self, ttl: impl IntoDuration) -> Self {
        match ttl.into_duration("expiration_time") {
            Ok(d) => self.config = self.config.ttl(d),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// How long tombstones are kept (default one day).
    pub fn tombstone_ttl(mut self, ttl: impl IntoDuration) -> Self {
        match ttl.into_duration("tombstone_ttl") {
            Ok(d) => self.config = self.config.tombstone_ttl(d),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// A blocking load callback for [`Cache::get_or_load`].
    pub fn load_callback<F, V, E>(mut self, f: F) -> Self
    where
        F: Fn(&[u8]) -> Result<V, E> + Send + Sync + 'static,
        V: Into<Bytes>,
        E: Into<BoxError>,
    {
        self.config = self.config.loader(Loader::sync(f));
        self
    }

    /// An async load callback for [`Cache::get_or_load`].
    pub fn async_load_callback<F, Fut, V, E>(mut self, f: F) -> Self
    where
        F: Fn(Bytes) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<V, E>> + Send + 'static,
        V: Into<Bytes>,
        E: Into<BoxError>,
    {
        self.config = self.config.loader(Loader::from_async(f));
        self
    }

    /// Reads the keys that miss through `origin` (an HTTP URL or a file path with `{key}`): the
    /// front doors and [`Cache::get_or_fetch`] load them from it, once per key however many ask
    /// at once, and cache what it returns.
    pub fn origin(mut self, origin: crate::cache::Origin) -> Self {
        self.config = self.config.loader(origin.loader());
        self
    }

    /// The number of shards (see [`CacheConfig::shards`]).
    pub fn shards(mut self, n: usize) -> Self {
        self.config = self.config.shards(n);
        self
    }

    /// How long a silent link waits before it is declared down.
    pub fn connection_timeout(mut self, timeout: impl IntoDuration) -> Self {
        self.node = self.node.connection_timeout(timeout);
        self
    }

    /// The hub to replicate with, as `host:port`.
    pub fn remote_address(mut self, addr: impl Into<String>) -> Self {
        self.node = self.node.remote_address(addr);
        self
    }

    /// The address to accept leaves on, as `host:port`.
    pub fn local_address(mut self, addr: impl Into<String>) -> Self {
        self.node = self.node.local_address(addr);
        self
    }

    /// The cluster name (see [`NodeBuilder::cluster`]).
    pub fn cluster(mut self, name: impl Into<String>) -> Self {
        self.node = self.node.cluster(name);
        self
    }

    /// The cluster secret (see [`NodeBuilder::secret`]).
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.node = self.node.secret(secret);
        self
    }

    /// Ask the hub on a miss before loading (see [`NodeBuilder::fetch_on_miss`]).
    pub fn fetch_on_miss(mut self, timeout: impl IntoDuration) -> Self {
        self.node = self.node.fetch_on_miss(timeout);
        self
    }

    /// The node's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.node = self.node.name(name);
        self
    }

    /// The node's id (default: random).
    pub fn node_id(mut self, id: NodeId) -> Self {
        self.node = self.node.node_id(id);
        self
    }

    /// The wall clock (default: the system's).
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.node = self.node.clock(clock);
        self
    }

    /// Builds the cache.
    ///
    /// # Errors
    /// As [`NodeBuilder::build`].
    pub fn build(self) -> Result<Cache, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        Ok(self.build_node()?.default_cache())
    }

    /// Builds the node, for callers that also want its other handles.
    pub fn build_node(self) -> Result<Node, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.node.default_cache(self.config).build()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cache::CacheConfig;
    use crate::net::Endpoint;

    #[test]
    fn handles_are_clone_send_sync() {
        fn check<T: Clone + Send + Sync + 'static>() {}
        check::<Cache>();
        check::<Node>();
    }

    #[test]
    fn addresses_are_checked() {
        let ok = |a| Endpoint::parse("a", a).is_ok();
        assert!(ok("127.0.0.1:7400"));
        assert!(ok("hub.internal:7400"));
        assert!(ok("[::1]:7400"));
        assert!(ok("unix:/run/leafcache.sock"));
        for bad in [
            "",
            "7400",
            ":7400",
            "host:",
            "host:99999",
            "host:port",
            "unix:",
        ] {
            assert!(!ok(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn builder_reports_the_first_bad_setting() {
        let err = Cache::builder()
            .expiration_time("later")
            .build()
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidDuration {
                    what: "expiration_time",
                    ..
                }
            ),
            "{err}"
        );
        let err = Cache::builder().connection_timeout(0).build().unwrap_err();
        assert!(matches!(
            err,
            Error::ZeroDuration {
                what: "connection_timeout"
            }
        ));
        let err = Cache::builder().maximum_capacity(0).build().unwrap_err();
        assert!(matches!(err, Error::ZeroCapacity { .. }));
        let err = Cache::builder()
            .remote_address("nowhere")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("remote_address"), "{err}");
    }

    #[tokio::test]
    async fn builder_accepts_python_style_parameters() {
        let node = Cache::builder()
            .maximum_capacity(10)
            .expiration_time(120)
            .connection_timeout("3s")
            .remote_address("127.0.0.1:9")
            .local_address("127.0.0.1:0")
            .build_node()
            .unwrap();
        let links = node.replication_config();
        assert_eq!(links.connection_timeout, Duration::from_secs(3));
        assert_eq!(links.remote_address.as_deref(), Some("127.0.0.1:9"));
        assert_eq!(links.local_address.as_deref(), Some("127.0.0.1:0"));
        assert_ne!(
            node.local_addr(),
            Some("127.0.0.1:0"),
            "the OS picked a port"
        );
        node.shutdown().await;
    }

    #[test]
    fn links_need_a_runtime() {
        let err = Cache::builder()
            .remote_address("127.0.0.1:9")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("tokio runtime"), "{err}");
    }

    #[test]
    fn named_caches_are_separate() {
        let node = Node::builder()
            .cache("a", CacheConfig::new())
            .cache("b", CacheConfig::new())
            .build()
            .unwrap();
        node.cache("a").unwrap().set("k", "in a").unwrap();
        assert_eq!(node.cache("b").unwrap().get("k"), None);
        assert_eq!(node.default_cache().get("k"), None);
        assert!(matches!(node.cache("c"), Err(Error::UnknownCache(n)) if n == "c"));
        let dup = Node::builder()
            .cache("a", CacheConfig::new())
            .cache("a", CacheConfig::new())
            .build();
        assert!(dup.is_err());
    }
}
