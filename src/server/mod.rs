//! Front doors: the RESP server (TCP and Unix socket) and the HTTP API a node opens so that
//! programs in any language, and several processes on one host, can use it without embedding it.
//!
//! They are configured on the `NodeBuilder` (`resp_address`,
//! `http_address`, `unix_socket`, `password`, `server_limits`), bound by `build()` and stopped by
//! [`Node::shutdown`](crate::node::Node::shutdown).

pub(crate) mod glob;
mod http;
mod metrics;
pub(crate) mod protocol;
mod resp;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::error::Error;
use crate::net::{Endpoint, Listener, Sockets, Transport};
use crate::node::{DoorStats, Doors, Node, ServerLimits};
use protocol::ParseLimits;

/// The parser's limits for a door with these bounds.
pub(crate) fn parse_limits(limits: &ServerLimits) -> ParseLimits {
    ParseLimits {
        max_bulk: limits.max_key.max(limits.max_value),
        max_args: limits.max_args,
        max_inline: 64 << 10,
        max_request: limits.max_request,
    }
}

/// The front doors asked of a node builder.
#[derive(Clone, Debug, Default)]
pub(crate) struct DoorConfig {
    pub resp: Option<String>,
    pub http: Option<String>,
    pub unix: Option<PathBuf>,
    pub password: Option<String>,
    pub limits: ServerLimits,
    /// TLS on the RESP and HTTP doors, with the node's certificate.
    pub tls: bool,
}

impl DoorConfig {
    /// Whether any door is asked for.
    pub fn any(&self) -> bool {
        self.resp.is_some() || self.http.is_some() || self.unix.is_some()
    }
}

/// A front-door address as configured: `host:port`, or a bare port meaning `127.0.0.1:port`.
pub(crate) fn door_address(what: &'static str, addr: &str) -> Result<String, Error> {
    let full = if !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_digit()) {
        format!("127.0.0.1:{addr}")
    } else {
        addr.to_string()
    };
    match Endpoint::parse(what, &full)? {
        Endpoint::Tcp(a) => Ok(a),
        Endpoint::Unix(_) => Err(Error::InvalidConfig {
            what,
            reason: format!("{addr:?} is a Unix socket; use unix_socket(path) for that"),
        }),
        Endpoint::Mem(_) => Err(Error::InvalidConfig {
            what,
            reason: format!("{addr:?} is an in-memory address; front doors take host:port"),
        }),
    }
}

/// The listeners `build()` bound, before the node exists to serve them.
pub(crate) struct BoundDoors {
    resp: Option<Box<dyn Listener>>,
    http: Option<std::net::TcpListener>,
    unix: Option<Box<dyn Listener>>,
}

/// Binds every door asked for; synchronous so that a taken port fails `build()`.
pub(crate) fn bind(settings: &DoorConfig) -> Result<BoundDoors, Error> {
    let io = |what: String| {
        move |e: std::io::Error| Error::Io {
            what,
            reason: e.to_string(),
        }
    };
    let resp = (settings.resp.as_deref())
        .map(|a| Sockets.bind(a).map_err(io(format!("binding resp {a:?}"))))
        .transpose()?;
    let http = (settings.http.as_deref())
        .map(|a| {
            let l = std::net::TcpListener::bind(a).map_err(io(format!("binding http {a:?}")))?;
            l.set_nonblocking(true)
                .map_err(io(format!("binding http {a:?}")))?;
            Ok::<_, Error>(l)
        })
        .transpose()?;
    let unix = (settings.unix.as_deref())
        .map(|p| bind_unix(p).map_err(io(format!("binding unix socket {}", p.display()))))
        .transpose()?;
    for (door, addr) in [("resp", &settings.resp), ("http", &settings.http)] {
        if let Some(addr) = addr
            && settings.password.is_none()
            && !crate::net::stays_on_host(addr)
        {
            tracing::warn!(
                door,
                address = %addr,
                "front door on a non-loopback address without a password: anyone who can reach it can read and write"
            );
        }
    }
    Ok(BoundDoors { resp, http, unix })
}

/// Binds a Unix socket readable and writable by this user only: several processes of one user
/// share the node, other users cannot reach it.
fn bind_unix(path: &Path) -> std::io::Result<Box<dyn Listener>> {
    use std::os::unix::fs::PermissionsExt;
    let listener = Sockets.bind(&format!("unix:{}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

impl BoundDoors {
    /// The shared state the doors will run with, naming the addresses as bound.
    pub fn doors(&self, settings: &DoorConfig) -> Doors {
        Doors {
            tls: settings.tls,
            password: settings
                .password
                .as_deref()
                .map(|p| Arc::from(p.as_bytes())),
            limits: settings.limits,
            resp_addr: self.resp.as_ref().map(|l| l.local_addr()),
            http_addr: (self.http.as_ref())
                .and_then(|l| l.local_addr().ok())
                .map(|a| a.to_string()),
            unix_path: settings.unix.clone(),
            stats: DoorStats::default(),
            started: Instant::now(),
        }
    }

    /// Starts serving on every bound door, on the node's task tracker.
    pub fn spawn(self, node: &Node) -> Result<(), Error> {
        let tasks = &node.registry().tasks;
        let connections = Arc::new(tokio::sync::Semaphore::new(
            node.doors().limits.max_connections,
        ));
        if self.resp.is_some() || self.unix.is_some() {
            let shared = resp::Shared::new(node.doors().limits.max_tracked_keys);
            tasks.spawn(resp::expire_loop(node.clone()));
            node.cache_set().set_watcher(shared.clone());
            let subscribers = shared.clone();
            let _ = node
                .registry()
                .deliver
                .set(Arc::new(move |channel, message| {
                    subscribers.deliver(channel, message);
                }));
            for listener in [self.resp, self.unix].into_iter().flatten() {
                tasks.spawn(resp::accept_loop(
                    node.clone(),
                    shared.clone(),
                    listener,
                    connections.clone(),
                ));
            }
        }
        if let Some(l) = self.http {
            let listener = tokio::net::TcpListener::from_std(l).map_err(|e| Error::Io {
                what: "starting the http door".into(),
                reason: e.to_string(),
            })?;
            tasks.spawn(http::serve(node.clone(), listener));
        }
        Ok(())
    }
}

/// Adds to a shared counter.
#[inline]
pub(crate) fn count(counter: &AtomicU64, n: u64) {
    if n > 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::door_address;
    use crate::net::stays_on_host as is_loopback;

    #[test]
    fn door_addresses_default_to_loopback() {
        assert_eq!(door_address("resp", "6400").unwrap(), "127.0.0.1:6400");
        assert_eq!(
            door_address("resp", "0.0.0.0:6400").unwrap(),
            "0.0.0.0:6400"
        );
        assert!(door_address("resp", "unix:/tmp/x.sock").is_err());
        assert!(door_address("resp", "localhost").is_err());
        assert!(door_address("resp", "").is_err());
    }

    #[test]
    fn only_loopback_doors_go_without_the_password_warning() {
        for quiet in [
            "127.0.0.1:6400",
            "127.8.9.1:1",
            "[::1]:6400",
            "localhost:6400",
        ] {
            assert!(is_loopback(quiet), "{quiet}");
        }
        for loud in [
            "0.0.0.0:6400",
            "10.0.0.5:6400",
            "[::]:6400",
            "cache.internal:6400",
        ] {
            assert!(!is_loopback(loud), "{loud}");
        }
    }
}
