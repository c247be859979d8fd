//! Where links run: TCP (`host:port`) or a Unix socket (`unix:/path`), behind one stream type.

use std::path::PathBuf;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::error::Error;

/// A connected byte stream of either kind.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

pub(crate) type Stream = Pin<Box<dyn Io>>;

/// A parsed link address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Tcp(String),
    Unix(PathBuf),
}

impl Endpoint {
    /// `unix:/path/to.sock` or `host:port`.
    pub fn parse(what: &'static str, addr: &str) -> Result<Endpoint, Error> {
        if let Some(path) = addr.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(Error::InvalidConfig {
                    what,
                    reason: format!("{addr:?} has no socket path; expected unix:/path/to.sock"),
                });
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
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

    pub async fn connect(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Endpoint::Tcp(addr) => {
                let s = TcpStream::connect(addr.as_str()).await?;
                s.set_nodelay(true)?;
                Box::pin(s)
            }
            Endpoint::Unix(path) => Box::pin(UnixStream::connect(path).await?),
        })
    }

    /// Binds a listener; synchronous so that a builder can report a taken port at once. Must run
    /// inside a tokio runtime.
    pub fn bind(&self) -> std::io::Result<Listener> {
        Ok(match self {
            Endpoint::Tcp(addr) => {
                let l = std::net::TcpListener::bind(addr.as_str())?;
                l.set_nonblocking(true)?;
                Listener::Tcp(TcpListener::from_std(l)?)
            }
            Endpoint::Unix(path) => {
                // A socket file left by a previous run would make bind fail; only remove it if
                // nothing answers on it.
                if path.exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
                    std::fs::remove_file(path)?;
                }
                let l = std::os::unix::net::UnixListener::bind(path)?;
                l.set_nonblocking(true)?;
                Listener::Unix(UnixListener::from_std(l)?, path.clone())
            }
        })
    }
}

/// A bound listener of either kind.
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// The bound address, as a peer would dial it (with the OS-chosen port for `:0`).
    pub fn local_addr(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".into()),
            Listener::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }

    /// The next connection and the peer's address.
    pub async fn accept(&self) -> std::io::Result<(Stream, String)> {
        Ok(match self {
            Listener::Tcp(l) => {
                let (s, addr) = l.accept().await?;
                s.set_nodelay(true)?;
                (Box::pin(s), addr.to_string())
            }
            Listener::Unix(l, path) => {
                let (s, _) = l.accept().await?;
                (Box::pin(s), format!("unix:{}", path.display()))
            }
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}
