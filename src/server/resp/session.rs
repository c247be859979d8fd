//! One connection's state: authentication, the protocol it speaks, the selected cache, its
//! transaction and watched keys, tracking and subscriptions, and what it waits for. Commands
//! change it; dispatch (src/server/resp/dispatch.rs) reads it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::Shared;
use super::args::{Queued, within};
use super::clients::Client;
use crate::cache::{Cache, Probe};
use crate::node::Node;
use crate::server::protocol::Reply;

/// A transaction being queued: the table index of each command, and its arguments.
#[derive(Default)]
pub(crate) struct Multi {
    pub queue: Vec<(usize, Queued)>,
    /// A command was refused while queueing: `EXEC` aborts.
    pub dirty: bool,
}

/// How a client tracks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TrackingMode {
    pub bcast: bool,
    pub prefixes: Vec<Bytes>,
    pub optin: bool,
    pub optout: bool,
    pub noloop: bool,
    /// Where invalidations go instead of this client.
    pub redirect: Option<u64>,
}

/// What the connection must wait for before it answers (the reply is written when it is over).
pub(crate) enum Pending {
    /// `WAIT`: the hub's acknowledgement of this connection's writes up to `seq`.
    Acked { seq: u64, timeout: Option<Duration> },
    /// `GET` of a key that missed in a cache that reads through (an origin, or the hub with
    /// `fetch_on_miss`): the value once fetched.
    Load { cache: Cache, key: Bytes },
    /// A command on a key another shard holds, from a client that is not a cluster client: its
    /// answer is that shard's (see src/server/forward.rs).
    Forward {
        target: crate::node::remote::Target,
        request: Vec<u8>,
        /// Whether the command writes: an unreachable shard fails it, where a read is a miss.
        write: bool,
        slot: u16,
        shard: String,
    },
    /// `GET` of a key this node missed in a slot that moved here: read through from the slot's
    /// previous owner (`door`), kept here if found.
    MoveIn {
        cache: Cache,
        key: Bytes,
        target: crate::node::remote::Target,
    },
}

/// One connection's state.
pub(crate) struct Session<'n> {
    pub node: &'n Node,
    pub shared: &'n Arc<Shared>,
    pub client: Arc<Client>,
    pub db: usize,
    pub cache: Cache,
    pub authenticated: bool,
    pub resp3: bool,
    pub multi: Option<Multi>,
    /// An `EXEC`'s checked queue, for the dispatcher to run into its reply.
    pub exec: Option<Vec<(usize, Queued)>>,
    /// Watched keys: (database, key, what it was when watched).
    pub watched: Vec<(usize, Bytes, Probe)>,
    /// The node's seq after this connection's last write, for `WAIT`.
    pub last_write: u64,
    pub tracking: Option<TrackingMode>,
    /// `CLIENT CACHING yes|no` given for the next command.
    pub caching_next: Option<bool>,
    /// Channels and patterns this connection is subscribed to.
    pub channels: Vec<Bytes>,
    pub patterns: Vec<Bytes>,
    /// Set by a command that closes the connection once answered (`QUIT`).
    pub close: bool,
    /// Set by a command that must wait before answering.
    pub pending: Option<Pending>,
    /// Whether `EXEC` is running the queued commands.
    pub executing: bool,
    /// Set by `CLIENT CACHING`, so that its choice outlives it and applies to the next command.
    pub caching_kept: bool,
    /// The connection asked for the slot map or said `READONLY`/`READWRITE`/`ASKING`: a
    /// cluster client, sent to the owning shard with `-MOVED` instead of forwarded.
    pub cluster_client: bool,
    /// `ASKING` came: the next command is served here whatever the slot map says (a slot's new
    /// owner reading a key through from its previous one).
    pub asking: bool,
}

impl<'n> Session<'n> {
    pub fn new(node: &'n Node, shared: &'n Arc<Shared>, client: Arc<Client>) -> Self {
        Session {
            node,
            shared,
            client,
            db: 0,
            cache: node.default_cache(),
            authenticated: node.doors().password.is_none(),
            resp3: false,
            multi: None,
            exec: None,
            watched: Vec::new(),
            last_write: 0,
            tracking: None,
            caching_next: None,
            channels: Vec::new(),
            patterns: Vec::new(),
            close: false,
            pending: None,
            executing: false,
            caching_kept: false,
            cluster_client: false,
            asking: false,
        }
    }

    /// Ends tracking for this client (`CLIENT TRACKING off`, `RESET`, disconnect).
    pub fn stop_tracking(&mut self) {
        if self.tracking.take().is_some() {
            self.shared.tracking.stop(self.client.id);
            self.client.tracking.store(false, Ordering::Relaxed);
            self.client.redirect.store(-1, Ordering::Relaxed);
        }
    }

    /// Drops every subscription of this client (`RESET`, disconnect).
    pub fn leave_channels(&mut self) {
        for c in std::mem::take(&mut self.channels) {
            self.shared.pubsub.remove_channel(self.client.id, &c);
        }
        for p in std::mem::take(&mut self.patterns) {
            self.shared.pubsub.remove_pattern(self.client.id, &p);
        }
        self.count_subscriptions();
    }

    /// Publishes how many channels and patterns the client is subscribed to (`CLIENT LIST`).
    pub fn count_subscriptions(&self) {
        self.client
            .channels
            .store(self.channels.len(), Ordering::Relaxed);
        self.client
            .patterns
            .store(self.patterns.len(), Ordering::Relaxed);
    }

    /// Forgets every watched key.
    pub fn clear_watches(&mut self) {
        self.watched.clear();
        self.client.watching.store(0, Ordering::Relaxed);
    }

    /// Undoes what the connection registered node-wide (tracking, subscriptions) when it ends.
    pub fn leave(&mut self) {
        self.stop_tracking();
        self.leave_channels();
    }

    /// Whether the connection is in RESP2's subscribed mode, where only the pub/sub commands,
    /// `PING`, `QUIT` and `RESET` run.
    /// Whether a command runs inside `MULTI`/`EXEC` (queued, or executing): it must answer at
    /// once, without waiting for anything.
    pub fn in_transaction(&self) -> bool {
        self.multi.is_some() || self.executing
    }

    pub fn subscribed(&self) -> bool {
        !self.resp3 && (!self.channels.is_empty() || !self.patterns.is_empty())
    }

    /// The cache of database `db`.
    pub fn cache_of(&self, db: usize) -> Option<&Cache> {
        self.node.caches().get(db)
    }

    /// Whether `key` is within the door's key limit; answers the error if not.
    pub fn key_ok(&self, key: &[u8], out: &mut Reply<'_>) -> bool {
        within("key", key.len(), self.node.doors().limits.max_key, out)
    }

    /// Whether `value` is within the door's value limit; answers the error if not.
    pub fn value_ok(&self, value: &[u8], out: &mut Reply<'_>) -> bool {
        within(
            "value",
            value.len(),
            self.node.doors().limits.max_value,
            out,
        )
    }

    /// A value of `len` bytes a command would build (`APPEND`, `SETRANGE`): within the door's
    /// and the cache's limits, or the error Redis gives for a string too large.
    pub fn built_ok(&self, key: &[u8], len: usize, out: &mut Reply<'_>) -> bool {
        let limit = self.node.doors().limits.max_value;
        if len > limit || crate::cache::entry_size(key.len(), len) > self.cache.max_entry_bytes() {
            out.error(&format!(
                "ERR string exceeds maximum allowed size (a {len}-byte value; the limit is {limit} bytes)"
            ));
            return false;
        }
        true
    }

    pub fn authenticate(&mut self, user: &[u8], password: &[u8]) -> bool {
        let ok = user == b"default" && self.node.doors().password_ok(password);
        if ok {
            self.authenticated = true;
        }
        ok
    }

    /// Switches the selected database.
    pub fn select_db(&mut self, db: usize) {
        self.db = db;
        self.cache = self.node.caches()[db].clone();
        self.client.db.store(db, Ordering::Relaxed);
    }
}
