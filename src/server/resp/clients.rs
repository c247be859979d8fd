//! The connected RESP clients of a node: what `CLIENT LIST`, `CLIENT INFO` and `CLIENT KILL`
//! show and act on, and each client's queue of push frames (pub/sub messages, invalidations)
//! that other connections and the caches' watcher write into.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Push frames a client may have waiting before it is disconnected, in bytes: a subscriber or a
/// tracking client that does not read is cut off rather than let grow the node's memory (Redis's
/// `client-output-buffer-limit pubsub 32mb`). A tracking client that is cut off drops its whole
/// near cache on reconnect, so no invalidation is ever lost silently.
pub(crate) const MAX_PUSH_BYTES: usize = 32 << 20;

/// What a client announced or set of itself.
#[derive(Debug, Default, Clone)]
pub(crate) struct Names {
    pub name: Option<Bytes>,
    pub lib_name: Option<Bytes>,
    pub lib_ver: Option<Bytes>,
}

/// One connected client, shared between its connection and the registry.
pub(crate) struct Client {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    pub unix: bool,
    pub created: Instant,
    pub names: Mutex<Names>,
    /// The selected database.
    pub db: AtomicUsize,
    /// The protocol the connection speaks: 2 or 3.
    pub resp: AtomicU8,
    /// ms after `created` of the last command.
    pub last_active_ms: AtomicU64,
    /// The table index of the last command (`usize::MAX`: none yet).
    pub last_cmd: AtomicUsize,
    /// Commands queued in `MULTI`, or -1 outside one.
    pub multi: AtomicI64,
    pub watching: AtomicUsize,
    pub channels: AtomicUsize,
    pub patterns: AtomicUsize,
    pub tracking: AtomicBool,
    /// The client tracking invalidations are redirected to, or -1.
    pub redirect: AtomicI64,
    pub no_evict: AtomicBool,
    pub no_touch: AtomicBool,
    /// Cancelled by `CLIENT KILL`, or when the push queue overflows.
    pub killed: CancellationToken,
    pushes: mpsc::UnboundedSender<Bytes>,
    /// Bytes of push frames queued and not yet written to the socket.
    pub queued: AtomicUsize,
}

impl Client {
    /// Queues a push frame (already encoded for this client's protocol); a client whose queue
    /// is over [`MAX_PUSH_BYTES`] is disconnected instead.
    pub fn push(&self, frame: Bytes) {
        let queued = self.queued.fetch_add(frame.len(), Ordering::Relaxed) + frame.len();
        if queued > MAX_PUSH_BYTES {
            tracing::warn!(
                client = self.id,
                queued,
                "client does not read its push messages; disconnecting it"
            );
            self.killed.cancel();
            return;
        }
        if self.pushes.send(frame).is_err() {
            self.killed.cancel();
        }
    }

    /// Whether the connection speaks RESP3.
    pub fn resp3(&self) -> bool {
        self.resp.load(Ordering::Relaxed) == 3
    }

    /// Marks the client active now (once per run of pipelined commands).
    pub fn active_now(&self) {
        let ms = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    /// The `CLIENT LIST` / `CLIENT INFO` line of this client (without its line break).
    pub fn describe(&self, command_name: impl Fn(usize) -> &'static str) -> String {
        let names = self.names.lock().clone();
        let text =
            |b: &Option<Bytes>| String::from_utf8_lossy(b.as_deref().unwrap_or(b"")).into_owned();
        let age_ms = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        let idle_ms = age_ms.saturating_sub(self.last_active_ms.load(Ordering::Relaxed));
        let channels = self.channels.load(Ordering::Relaxed);
        let patterns = self.patterns.load(Ordering::Relaxed);
        let multi = self.multi.load(Ordering::Relaxed);
        let mut flags = String::new();
        if channels + patterns > 0 {
            flags.push('P');
        }
        if multi >= 0 {
            flags.push('x');
        }
        if self.tracking.load(Ordering::Relaxed) {
            flags.push('t');
        }
        if self.no_evict.load(Ordering::Relaxed) {
            flags.push('e');
        }
        if self.no_touch.load(Ordering::Relaxed) {
            flags.push('T');
        }
        if self.unix {
            flags.push('U');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        let cmd = match self.last_cmd.load(Ordering::Relaxed) {
            usize::MAX => "NULL",
            i => command_name(i),
        };
        let mut line = String::with_capacity(256);
        let _ = write!(
            line,
            "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags={} db={} sub={} psub={} \
             ssub=0 multi={} watch={} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 \
             oll=0 omem={} tot-mem=0 events=r cmd={} user=default redir={} resp={} lib-name={} \
             lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            text(&names.name),
            age_ms / 1000,
            idle_ms / 1000,
            flags,
            self.db.load(Ordering::Relaxed),
            channels,
            patterns,
            multi,
            self.watching.load(Ordering::Relaxed),
            self.queued.load(Ordering::Relaxed),
            cmd,
            self.redirect.load(Ordering::Relaxed),
            self.resp.load(Ordering::Relaxed),
            text(&names.lib_name),
            text(&names.lib_ver),
        );
        line
    }
}

/// Every connected client of a node, by id.
#[derive(Default)]
pub(crate) struct Clients {
    next_id: AtomicU64,
    all: Mutex<BTreeMap<u64, Arc<Client>>>,
}

impl Clients {
    /// Registers a new connection: its client, and the receiving end of its push queue.
    pub fn register(
        &self,
        addr: String,
        laddr: String,
        unix: bool,
    ) -> (Arc<Client>, mpsc::UnboundedReceiver<Bytes>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = Arc::new(Client {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            addr,
            laddr,
            unix,
            created: Instant::now(),
            names: Mutex::new(Names::default()),
            db: AtomicUsize::new(0),
            resp: AtomicU8::new(2),
            last_active_ms: AtomicU64::new(0),
            last_cmd: AtomicUsize::new(usize::MAX),
            multi: AtomicI64::new(-1),
            watching: AtomicUsize::new(0),
            channels: AtomicUsize::new(0),
            patterns: AtomicUsize::new(0),
            tracking: AtomicBool::new(false),
            redirect: AtomicI64::new(-1),
            no_evict: AtomicBool::new(false),
            no_touch: AtomicBool::new(false),
            killed: CancellationToken::new(),
            pushes: tx,
            queued: AtomicUsize::new(0),
        });
        self.all.lock().insert(client.id, client.clone());
        (client, rx)
    }

    pub fn remove(&self, id: u64) {
        self.all.lock().remove(&id);
    }

    pub fn get(&self, id: u64) -> Option<Arc<Client>> {
        self.all.lock().get(&id).cloned()
    }

    /// Every client, by id.
    pub fn list(&self) -> Vec<Arc<Client>> {
        self.all.lock().values().cloned().collect()
    }
}
