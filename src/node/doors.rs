//! What a node's front doors share, kept on the node handle: their bounds ([`ServerLimits`]),
//! password, bound addresses and counters. The doors themselves (`server`) sit above the handle
//! and serve it; the builder, above both, binds them.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use crate::error::Error;

/// The bounds every front-door connection works within. The defaults suit a cache of small
/// values; raise `max_value` (and the caches' `max_bytes`) for large ones.
///
/// ```
/// use leafcache::{Node, ServerLimits};
/// let limits = ServerLimits { max_value: 64 << 20, ..ServerLimits::default() };
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// # let _guard = rt.enter();
/// let node = Node::builder()
///     .resp_address("127.0.0.1:0")
///     .server_limits(limits)
///     .build()?;
/// assert!(node.resp_addr().is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// The longest key, in bytes (default 64 KiB).
    pub max_key: usize,
    /// The longest value, in bytes (default 16 MiB); the cache's own `max_bytes` may refuse
    /// smaller ones.
    pub max_value: usize,
    /// The most arguments in one RESP request (default 1,048,576: `MSET` of 512k pairs).
    pub max_args: usize,
    /// The most bytes one RESP request may take, all arguments together (default 64 MiB): the
    /// input a connection buffers before it must have a whole request.
    pub max_request: usize,
    /// The most concurrent RESP connections, TCP and Unix together (default 10,000); more are
    /// answered with an error and closed.
    pub max_connections: usize,
    /// The largest HTTP request body, in bytes (default 16 MiB).
    pub max_http_body: usize,
    /// The most keys client-side caching tracks for the RESP clients (default 1,000,000, Redis's
    /// `tracking-table-max-keys`); past it the oldest are invalidated and forgotten.
    pub max_tracked_keys: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_key: 64 << 10,
            max_value: 16 << 20,
            max_args: 1 << 20,
            max_request: 64 << 20,
            max_connections: 10_000,
            max_http_body: 16 << 20,
            max_tracked_keys: 1_000_000,
        }
    }
}

impl ServerLimits {
    pub(crate) fn check(&self) -> Result<(), Error> {
        let fields = [
            ("server_limits.max_key", self.max_key),
            ("server_limits.max_value", self.max_value),
            ("server_limits.max_args", self.max_args),
            ("server_limits.max_request", self.max_request),
            ("server_limits.max_connections", self.max_connections),
            ("server_limits.max_http_body", self.max_http_body),
            ("server_limits.max_tracked_keys", self.max_tracked_keys),
        ];
        for (what, n) in fields {
            if n == 0 {
                return Err(Error::ZeroCapacity { what });
            }
        }
        Ok(())
    }
}

/// Counters shared by every front-door connection of a node.
#[derive(Debug, Default)]
pub(crate) struct DoorStats {
    pub connections_received: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_rejected: AtomicU64,
    pub commands: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub http_requests: AtomicU64,
}

/// What a node's front doors share: settings, bound addresses and counters.
#[derive(Debug)]
pub(crate) struct Doors {
    pub password: Option<Arc<[u8]>>,
    pub limits: ServerLimits,
    pub resp_addr: Option<String>,
    pub http_addr: Option<String>,
    pub unix_path: Option<PathBuf>,
    pub stats: DoorStats,
    pub started: Instant,
    /// TLS on the TCP doors (not the Unix socket, which stays on the host), with the node's
    /// certificate.
    pub tls: bool,
}

impl Doors {
    /// Whether `given` is the configured password, compared in constant time.
    pub fn password_ok(&self, given: &[u8]) -> bool {
        match &self.password {
            None => true,
            Some(p) => {
                p.len() == given.len()
                    && p.iter().zip(given).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
            }
        }
    }
}
