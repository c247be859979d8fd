//! Where links run, and the tokio driver that runs them: one [`Transport`] trait with TCP,
//! Unix-socket and in-memory ([`MemoryNet`]) implementations, the node's link registry, and the
//! accept and dial loops that move frames between a connection and a
//! [`Link`](crate::replication::Link). No replication decision is made here.
//!
//! Addresses: `host:port` is TCP, `unix:/path` a Unix socket, `mem:name` a host of a
//! [`MemoryNet`] (given to the node with `NodeBuilder::transport`).

pub(crate) mod driver;
pub(crate) mod links;
mod mem;
pub(crate) mod tls;

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::error::Error;
pub use links::{ClusterNode, ClusterView, Unreachable};
pub use mem::MemoryNet;
pub use tls::{Day, DevCa, Issued, Tls, TlsError, TlsFiles, ca_problem, tls_covers, tls_problems};

/// The host of a network address, without its port or an IPv6 address's brackets; `None` for a
/// Unix socket or an in-memory host, which have none.
///
/// ```
/// use leafcache::net::host_of;
/// assert_eq!(host_of("eu-1.example:7000"), Some("eu-1.example"));
/// assert_eq!(host_of("[::1]:7000"), Some("::1"));
/// assert_eq!(host_of("::1"), Some("::1"));
/// assert_eq!(host_of("10.0.0.5"), Some("10.0.0.5"));
/// assert_eq!(host_of("unix:/run/lc.sock"), None);
/// ```
pub fn host_of(address: &str) -> Option<&str> {
    if address.starts_with("unix:") || address.starts_with("mem:") {
        return None;
    }
    if let Some(rest) = address.strip_prefix('[') {
        return Some(rest.split_once(']').map_or(rest, |(h, _)| h));
    }
    if address.parse::<std::net::IpAddr>().is_ok() {
        return Some(address);
    }
    Some(address.rsplit_once(':').map_or(address, |(h, _)| h))
}

/// Whether `address` only reaches this host: a Unix socket or an in-memory host, `localhost`,
/// or a loopback IP (with or without a port). What a node without a secret or password may
/// listen on without being refused or warned about.
///
/// ```
/// use leafcache::net::stays_on_host;
/// assert!(stays_on_host("127.0.0.1:7000") && stays_on_host("[::1]:7000"));
/// assert!(stays_on_host("localhost:7000") && stays_on_host("unix:/run/lc.sock"));
/// assert!(!stays_on_host("0.0.0.0:7000") && !stays_on_host("10.0.0.5:7000"));
/// ```
pub fn stays_on_host(address: &str) -> bool {
    let Some(host) = host_of(address) else {
        return true;
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A connected byte stream of any transport.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A connection, boxed: every transport hands out the same type.
pub type Stream = Pin<Box<dyn Io>>;

/// A boxed future, so that [`Transport`] can be a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Dials and binds addresses of one kind.
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// Connects to `address`.
    fn connect<'a>(&'a self, address: &'a str) -> BoxFuture<'a, io::Result<Stream>>;
    /// Binds `address`; synchronous so that a builder can report a taken address at once. Socket
    /// transports must be called inside a tokio runtime.
    fn bind(&self, address: &str) -> io::Result<Box<dyn Listener>>;
}

/// A bound address accepting connections.
pub trait Listener: Send + Sync {
    /// The bound address as a peer would dial it (with the OS-chosen port for `:0`).
    fn local_addr(&self) -> String;
    /// The next connection and the peer's address.
    fn accept(&self) -> BoxFuture<'_, io::Result<(Stream, String)>>;
}

/// The operating system's sockets: TCP for `host:port`, a Unix socket for `unix:/path`.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use leafcache::net::{Sockets, Transport};
/// let listener = Sockets.bind("127.0.0.1:0")?;
/// let address = listener.local_addr();
/// let _client = Sockets.connect(&address).await?;
/// let (_server, _peer) = listener.accept().await?;
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Sockets;

impl Transport for Sockets {
    fn connect<'a>(&'a self, address: &'a str) -> BoxFuture<'a, io::Result<Stream>> {
        Box::pin(async move {
            Ok(
                match Endpoint::parse("address", address).map_err(io::Error::other)? {
                    Endpoint::Tcp(addr) => {
                        let s = TcpStream::connect(addr.as_str()).await?;
                        s.set_nodelay(true)?;
                        Box::pin(s) as Stream
                    }
                    Endpoint::Unix(path) => Box::pin(UnixStream::connect(path).await?),
                    Endpoint::Mem(_) => return Err(no_memory_net(address)),
                },
            )
        })
    }

    fn bind(&self, address: &str) -> io::Result<Box<dyn Listener>> {
        Ok(
            match Endpoint::parse("address", address).map_err(io::Error::other)? {
                Endpoint::Tcp(addr) => {
                    let l = std::net::TcpListener::bind(addr.as_str())?;
                    l.set_nonblocking(true)?;
                    Box::new(TcpDoor(TcpListener::from_std(l)?))
                }
                Endpoint::Unix(path) => {
                    // A socket file left by a previous run would make bind fail; only remove it
                    // if nothing answers on it.
                    if path.exists() && std::os::unix::net::UnixStream::connect(&path).is_err() {
                        std::fs::remove_file(&path)?;
                    }
                    let l = std::os::unix::net::UnixListener::bind(&path)?;
                    l.set_nonblocking(true)?;
                    Box::new(UnixDoor(UnixListener::from_std(l)?, path))
                }
                Endpoint::Mem(_) => return Err(no_memory_net(address)),
            },
        )
    }
}

fn no_memory_net(address: &str) -> io::Error {
    io::Error::other(format!(
        "{address} is an in-memory address; the node needs a MemoryNet transport for it"
    ))
}

struct TcpDoor(TcpListener);

impl Listener for TcpDoor {
    fn local_addr(&self) -> String {
        self.0
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into())
    }

    fn accept(&self) -> BoxFuture<'_, io::Result<(Stream, String)>> {
        Box::pin(async move {
            let (s, addr) = self.0.accept().await?;
            s.set_nodelay(true)?;
            Ok((Box::pin(s) as Stream, addr.to_string()))
        })
    }
}

struct UnixDoor(UnixListener, PathBuf);

impl Listener for UnixDoor {
    fn local_addr(&self) -> String {
        format!("unix:{}", self.1.display())
    }

    fn accept(&self) -> BoxFuture<'_, io::Result<(Stream, String)>> {
        Box::pin(async move {
            let (s, _) = self.0.accept().await?;
            Ok((Box::pin(s) as Stream, self.local_addr()))
        })
    }
}

impl Drop for UnixDoor {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.1);
    }
}

/// A parsed link address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Tcp(String),
    Unix(PathBuf),
    Mem(String),
}

impl Endpoint {
    /// `unix:/path/to.sock`, `mem:name` or `host:port`.
    pub fn parse(what: &'static str, addr: &str) -> Result<Endpoint, Error> {
        for (prefix, example) in [("unix:", "unix:/path/to.sock"), ("mem:", "mem:hub")] {
            if let Some(rest) = addr.strip_prefix(prefix) {
                if rest.is_empty() {
                    return Err(Error::InvalidConfig {
                        what,
                        reason: format!("{addr:?} has nothing after {prefix}; expected {example}"),
                    });
                }
                return Ok(if prefix == "unix:" {
                    Endpoint::Unix(PathBuf::from(rest))
                } else {
                    Endpoint::Mem(addr.to_string())
                });
            }
        }
        let bad = |reason: &str| Error::InvalidConfig {
            what,
            reason: format!(
                "{addr:?} {reason}; expected host:port (e.g. 127.0.0.1:7400) or unix:/path"
            ),
        };
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("has no port"))?;
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        port.parse::<u16>()
            .map_err(|_| bad("has an invalid port"))?;
        Ok(Endpoint::Tcp(addr.to_string()))
    }

    /// Checks a leaf's list of hubs: at least one, each an address, none twice.
    pub fn check_hubs(what: &'static str, hubs: &[String]) -> Result<(), Error> {
        if hubs.is_empty() {
            return Err(Error::InvalidConfig {
                what,
                reason: "names no hub".into(),
            });
        }
        for h in hubs {
            Endpoint::parse(what, h)?;
        }
        match hubs
            .iter()
            .enumerate()
            .find(|(i, h)| hubs[..*i].contains(h))
        {
            Some((_, dup)) => Err(Error::InvalidConfig {
                what,
                reason: format!("{dup:?} is listed twice"),
            }),
            None => Ok(()),
        }
    }
}
