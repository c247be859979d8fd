//! The in-memory transport: a [`MemoryNet`] of named hosts whose connections are byte pipes in
//! this process, with faults between any two hosts — cut, heal, delay, stall. Timing follows
//! tokio's clock, so under paused time (`tokio::time::pause`) a run is deterministic.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! use leafcache::net::MemoryNet;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let net = MemoryNet::new();
//! let listener = net.host("hub").bind("mem:hub")?;
//! let mut client = net.host("leaf").connect("mem:hub").await?;
//! let (mut server, from) = listener.accept().await?;
//! assert_eq!(from, "mem:leaf");
//! client.write_all(b"hello").await?;
//! let mut buf = [0u8; 5];
//! server.read_exact(&mut buf).await?;
//! assert_eq!(&buf, b"hello");
//! net.cut("leaf", "hub");
//! assert!(client.write_all(b"lost").await.is_err(), "a cut breaks the connection");
//! assert!(net.host("leaf").connect("mem:hub").await.is_err(), "and refuses new ones");
//! net.heal("leaf", "hub");
//! assert!(net.host("leaf").connect("mem:hub").await.is_ok());
//! # Ok::<(), std::io::Error>(())
//! # }).unwrap();
//! ```

use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

use super::{BoxFuture, Listener, Stream, Transport};

/// Bytes one direction of a connection holds before its writer waits.
const PIPE_CAPACITY: usize = 256 << 10;

/// A network of in-memory hosts. Cheap to clone; clones are the same network.
#[derive(Clone, Default)]
pub struct MemoryNet {
    inner: Arc<Mutex<NetState>>,
}

impl std::fmt::Debug for MemoryNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryNet").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct NetState {
    /// Bound listeners by address.
    listeners: HashMap<String, (String, mpsc::UnboundedSender<(Stream, String)>)>,
    /// Faults and open connections between two hosts, keyed by the pair in name order.
    pairs: HashMap<(String, String), Pair>,
}

#[derive(Default)]
struct Pair {
    cut: bool,
    delay: Duration,
    stalled: bool,
    conns: Vec<Weak<Conn>>,
}

fn key(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

impl MemoryNet {
    /// An empty network.
    pub fn new() -> Self {
        MemoryNet::default()
    }

    /// The transport of host `name`: what it binds is reached at `mem:<anything>`, what it
    /// connects to is subject to the faults between `name` and the listener's host.
    pub fn host(&self, name: &str) -> Arc<dyn Transport> {
        Arc::new(MemHost {
            net: self.clone(),
            name: name.to_string(),
        })
    }

    fn with_pair<T>(&self, a: &str, b: &str, f: impl FnOnce(&mut Pair) -> T) -> T {
        let mut state = self.inner.lock();
        let pair = state.pairs.entry(key(a, b)).or_default();
        pair.conns.retain(|c| c.strong_count() > 0);
        f(pair)
    }

    /// Breaks every connection between hosts `a` and `b` (both ends see an error) and refuses
    /// new ones until [`heal`](Self::heal).
    pub fn cut(&self, a: &str, b: &str) {
        let conns = self.with_pair(a, b, |p| {
            p.cut = true;
            std::mem::take(&mut p.conns)
        });
        for conn in conns.iter().filter_map(Weak::upgrade) {
            conn.state.lock().broken = true;
            conn.wake_all();
        }
    }

    /// Lets hosts `a` and `b` connect again.
    pub fn heal(&self, a: &str, b: &str) {
        self.with_pair(a, b, |p| p.cut = false);
    }

    /// Whether `a` and `b` are cut apart.
    pub fn is_cut(&self, a: &str, b: &str) -> bool {
        self.with_pair(a, b, |p| p.cut)
    }

    /// Bytes written between `a` and `b` from now on arrive `delay` later (in tokio time).
    pub fn delay(&self, a: &str, b: &str, delay: Duration) {
        self.with_pair(a, b, |p| p.delay = delay);
    }

    /// Stops (or resumes) delivery between `a` and `b` without breaking anything: readers wait,
    /// writers fill the pipes and then wait too — a peer that stopped reading.
    pub fn stall(&self, a: &str, b: &str, stalled: bool) {
        let conns = self.with_pair(a, b, |p| {
            p.stalled = stalled;
            p.conns.clone()
        });
        if !stalled {
            for conn in conns.iter().filter_map(Weak::upgrade) {
                conn.wake_all();
            }
        }
    }

    fn delay_of(&self, a: &str, b: &str) -> Duration {
        self.with_pair(a, b, |p| p.delay)
    }

    fn stalled(&self, a: &str, b: &str) -> bool {
        self.with_pair(a, b, |p| p.stalled)
    }
}

/// One host's view of the network.
struct MemHost {
    net: MemoryNet,
    name: String,
}

impl std::fmt::Debug for MemHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemHost({})", self.name)
    }
}

impl Transport for MemHost {
    fn connect<'a>(&'a self, address: &'a str) -> BoxFuture<'a, io::Result<Stream>> {
        Box::pin(async move {
            let refused = || io::Error::new(io::ErrorKind::ConnectionRefused, address.to_string());
            let (host, tx) = self
                .net
                .inner
                .lock()
                .listeners
                .get(address)
                .cloned()
                .ok_or_else(refused)?;
            let conn = Arc::new(Conn {
                net: self.net.clone(),
                hosts: [self.name.clone(), host.clone()],
                state: Mutex::new(ConnState::default()),
            });
            let accepted = self.net.with_pair(&self.name, &host, |p| {
                if p.cut {
                    return false;
                }
                p.conns.push(Arc::downgrade(&conn));
                true
            });
            if !accepted {
                return Err(refused());
            }
            let server: Stream = Box::pin(MemStream::new(conn.clone(), 1));
            tx.send((server, format!("mem:{}", self.name)))
                .map_err(|_| refused())?;
            Ok(Box::pin(MemStream::new(conn, 0)) as Stream)
        })
    }

    fn bind(&self, address: &str) -> io::Result<Box<dyn Listener>> {
        let mut state = self.net.inner.lock();
        if state.listeners.contains_key(address) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{address} is bound already"),
            ));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        state
            .listeners
            .insert(address.to_string(), (self.name.clone(), tx));
        Ok(Box::new(MemListener {
            net: self.net.clone(),
            address: address.to_string(),
            rx: tokio::sync::Mutex::new(rx),
        }))
    }
}

struct MemListener {
    net: MemoryNet,
    address: String,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<(Stream, String)>>,
}

impl Listener for MemListener {
    fn local_addr(&self) -> String {
        self.address.clone()
    }

    fn accept(&self) -> BoxFuture<'_, io::Result<(Stream, String)>> {
        Box::pin(async move {
            self.rx
                .lock()
                .await
                .recv()
                .await
                .ok_or_else(|| io::Error::other("listener closed"))
        })
    }
}

impl Drop for MemListener {
    fn drop(&mut self) {
        self.net.inner.lock().listeners.remove(&self.address);
    }
}

/// One direction of a connection.
#[derive(Default)]
struct Pipe {
    /// Written bytes and when they may be read.
    chunks: VecDeque<(Instant, Bytes)>,
    buffered: usize,
    /// The writer shut down or went away: the reader sees the end after the last chunk.
    eof: bool,
    /// The reader went away: writes fail.
    reader_gone: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

#[derive(Default)]
struct ConnState {
    /// `pipes[0]` carries the dialer's bytes, `pipes[1]` the acceptor's.
    pipes: [Pipe; 2],
    broken: bool,
}

struct Conn {
    net: MemoryNet,
    /// The dialing host and the accepting host.
    hosts: [String; 2],
    state: Mutex<ConnState>,
}

impl Conn {
    fn wake_all(&self) {
        let mut state = self.state.lock();
        for pipe in &mut state.pipes {
            for waker in [pipe.read_waker.take(), pipe.write_waker.take()]
                .into_iter()
                .flatten()
            {
                waker.wake();
            }
        }
    }
}

/// One end of a connection: `side` 0 is the dialer's, 1 the acceptor's.
struct MemStream {
    conn: Arc<Conn>,
    side: usize,
    /// A timer for the next delayed chunk, while one is waited for.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl MemStream {
    fn new(conn: Arc<Conn>, side: usize) -> Self {
        MemStream {
            conn,
            side,
            sleep: None,
        }
    }
}

fn broken() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "connection cut")
}

impl AsyncRead for MemStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let [a, b] = &this.conn.hosts;
        let stalled = this.conn.net.stalled(a, b);
        let mut state = this.conn.state.lock();
        if state.broken {
            return Poll::Ready(Err(broken()));
        }
        let pipe = &mut state.pipes[1 - this.side];
        if stalled {
            pipe.read_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let now = Instant::now();
        let mut copied = 0;
        while buf.remaining() > 0 {
            let Some((at, chunk)) = pipe.chunks.front_mut() else {
                break;
            };
            if *at > now {
                break;
            }
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk.split_to(n));
            copied += n;
            if chunk.is_empty() {
                pipe.chunks.pop_front();
            }
        }
        if copied > 0 {
            pipe.buffered -= copied;
            if let Some(w) = pipe.write_waker.take() {
                w.wake();
            }
            return Poll::Ready(Ok(()));
        }
        match pipe.chunks.front() {
            Some(&(at, _)) => {
                pipe.read_waker = Some(cx.waker().clone());
                drop(state);
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                sleep.as_mut().reset(at);
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            None if pipe.eof => Poll::Ready(Ok(())),
            None => {
                pipe.read_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

use std::future::Future;

impl AsyncWrite for MemStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let [a, b] = &self.conn.hosts;
        let delay = self.conn.net.delay_of(a, b);
        let mut state = self.conn.state.lock();
        if state.broken {
            return Poll::Ready(Err(broken()));
        }
        let pipe = &mut state.pipes[self.side];
        if pipe.reader_gone {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the peer closed the connection",
            )));
        }
        let room = PIPE_CAPACITY.saturating_sub(pipe.buffered);
        if room == 0 {
            pipe.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = data.len().min(room);
        pipe.chunks
            .push_back((Instant::now() + delay, Bytes::copy_from_slice(&data[..n])));
        pipe.buffered += n;
        if let Some(w) = pipe.read_waker.take() {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.conn.state.lock();
        let pipe = &mut state.pipes[self.side];
        pipe.eof = true;
        if let Some(w) = pipe.read_waker.take() {
            w.wake();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for MemStream {
    fn drop(&mut self) {
        {
            let mut state = self.conn.state.lock();
            state.pipes[self.side].eof = true;
            state.pipes[1 - self.side].reader_gone = true;
        }
        self.conn.wake_all();
    }
}
