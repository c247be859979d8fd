//! One connection's state and the dispatch of its requests: authentication, the protocol it
//! speaks, the selected cache, `MULTI` queueing, `WATCH`, and the connection and transaction
//! commands (`AUTH`, `HELLO`, `SELECT`, `RESET`, `MULTI`/`EXEC`/`DISCARD`/`WATCH`).

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::clients::Client;
use super::table::{self, COMMANDS, NO_AUTH, NOT_QUEUED, SUBSCRIBED, Spec};
use super::tracking::TrackingMode;
use super::{Shared, pubsub};
use crate::cache::{Cache, Probe};
use crate::error::Error;
use crate::node::Node;
use crate::server::protocol::{Reply, parse_int};

/// One request's arguments: ranges in a buffer (the connection's read buffer, or a queued
/// command's own copy).
#[derive(Clone, Copy)]
pub(crate) struct Args<'a> {
    pub buf: &'a [u8],
    pub ranges: &'a [Range<usize>],
}

impl<'a> Args<'a> {
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn get(&self, i: usize) -> &'a [u8] {
        &self.buf[self.ranges[i].clone()]
    }

    /// The arguments from `i` on.
    pub fn from(&self, i: usize) -> impl Iterator<Item = &'a [u8]> + 'a {
        let buf = self.buf;
        self.ranges[i..].iter().map(move |r| &buf[r.clone()])
    }

    /// Argument `i` upper-cased, for comparing options (`EX`, `NX`...); options are short, so
    /// anything longer than 16 bytes comes back as is and matches none.
    pub fn upper(&self, i: usize) -> Upper {
        Upper::of(self.get(i))
    }

    /// An owned copy, for a transaction's queue.
    fn to_owned(self) -> Queued {
        let mut buf = BytesMut::with_capacity(self.ranges.iter().map(|r| r.len()).sum());
        let mut ranges = Vec::with_capacity(self.len());
        for a in self.from(0) {
            let start = buf.len();
            buf.extend_from_slice(a);
            ranges.push(start..buf.len());
        }
        Queued {
            buf: buf.freeze(),
            ranges,
        }
    }
}

/// A short argument in upper case, on the stack.
pub(crate) struct Upper {
    buf: [u8; 16],
    len: usize,
}

impl Upper {
    fn of(raw: &[u8]) -> Upper {
        let mut buf = [0u8; 16];
        if raw.len() > buf.len() {
            return Upper { buf, len: 0 };
        }
        buf[..raw.len()].copy_from_slice(raw);
        buf[..raw.len()].make_ascii_uppercase();
        Upper {
            buf,
            len: raw.len(),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// A command queued by `MULTI`.
struct Queued {
    buf: Bytes,
    ranges: Vec<Range<usize>>,
}

/// A transaction being queued.
#[derive(Default)]
struct Multi {
    queue: Vec<(usize, Queued)>,
    /// A command was refused while queueing: `EXEC` aborts.
    dirty: bool,
}

/// What the connection must wait for before it answers (the reply is written when it is over).
pub(crate) enum Pending {
    /// `WAIT`: the hub's acknowledgement of this connection's writes up to `seq`.
    Acked { seq: u64, timeout: Option<Duration> },
    /// `GET` of a key that missed in a cache that reads through (an origin, or the hub with
    /// `fetch_on_miss`): the value once fetched.
    Load { cache: Cache, key: Bytes },
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
    multi: Option<Multi>,
    /// Watched keys: (database, key, what it was when watched).
    watched: Vec<(usize, Bytes, Probe)>,
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
        }
    }

    /// Undoes what the connection registered node-wide (tracking, subscriptions) when it ends.
    pub fn leave(&mut self) {
        super::tracking::stop(self);
        pubsub::leave_all(self);
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

    /// How the dispatcher must hold the node's gate for command `index` (from
    /// [`table::lookup`]): `Some(true)` alone, `Some(false)` shared, `None` not at all.
    pub fn gate_for(&self, index: Option<usize>) -> Option<bool> {
        let spec = &COMMANDS[index?];
        if self.multi.is_some() && !spec.has(NOT_QUEUED) {
            return None;
        }
        if spec.has(table::ALONE) {
            Some(true)
        } else if spec.has(table::READ | table::WRITE) {
            Some(false)
        } else {
            None
        }
    }

    /// Runs one request, whose command `index` is the table's (from [`table::lookup`]), writing
    /// its reply.
    pub fn execute(&mut self, index: Option<usize>, args: Args<'_>, out: &mut Reply<'_>) {
        let Some(index) = index else {
            self.refuse_in_multi();
            unknown(args, out);
            return;
        };
        let spec = &COMMANDS[index];
        if !self.authenticated && !spec.has(NO_AUTH) {
            self.refuse_in_multi();
            out.error("NOAUTH Authentication required.");
            return;
        }
        if !spec.arity_ok(args.len()) {
            self.refuse_in_multi();
            out.error(&format!(
                "ERR wrong number of arguments for '{}' command",
                spec.name
            ));
            return;
        }
        if self.subscribed() && !spec.has(SUBSCRIBED) {
            out.error(&format!(
                "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                spec.name
            ));
            return;
        }
        if let Some(multi) = &mut self.multi
            && !spec.has(NOT_QUEUED)
        {
            multi.queue.push((index, args.to_owned()));
            self.client
                .multi
                .store(multi.queue.len() as i64, Ordering::Relaxed);
            out.simple("QUEUED");
            return;
        }
        self.run(index, spec, args, out);
    }

    /// Whether one of the command's keys holds a hash (a string command on it is refused).
    fn holds_hash(&self, spec: &Spec, args: Args<'_>) -> bool {
        let (first, last, step) = spec.keys;
        if first <= 0 {
            return false;
        }
        let last = if last < 0 {
            args.len() as i32 + last
        } else {
            last
        };
        (first..=last.min(args.len() as i32 - 1))
            .step_by(step.max(1) as usize)
            .any(|i| self.cache.kind(args.get(i as usize)) == Some(crate::cache::Kind::Hash))
    }

    fn run(&mut self, index: usize, spec: &Spec, args: Args<'_>, out: &mut Reply<'_>) {
        self.client.last_cmd.store(index, Ordering::Relaxed);
        let seq_before = if spec.has(table::WRITE) {
            self.node.current_seq()
        } else {
            0
        };
        self.caching_kept = false;
        if spec.group == "string" && !OVERWRITES.contains(&spec.name) && self.holds_hash(spec, args)
        {
            out.error(super::strings::WRONGTYPE);
            return;
        }
        super::tracking::CURRENT_CLIENT.set(self.client.id);
        (spec.run)(self, args, out);
        super::tracking::CURRENT_CLIENT.set(0);
        if !self.caching_kept && !self.executing {
            self.caching_next = None;
        }
        if spec.has(table::WRITE) {
            let seq = self.node.current_seq();
            if seq != seq_before {
                self.last_write = seq;
            }
        }
    }

    /// A command refused while a transaction is queued makes `EXEC` abort.
    fn refuse_in_multi(&mut self) {
        if let Some(multi) = &mut self.multi {
            multi.dirty = true;
        }
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

    fn authenticate(&mut self, user: &[u8], password: &[u8]) -> bool {
        let ok = user == b"default" && self.node.doors().password_ok(password);
        if ok {
            self.authenticated = true;
        }
        ok
    }

    /// Switches the selected database.
    fn select_db(&mut self, db: usize) {
        self.db = db;
        self.cache = self.node.caches()[db].clone();
        self.client.db.store(db, Ordering::Relaxed);
    }
}

/// The unknown-command error, in Redis's words.
fn unknown(args: Args<'_>, out: &mut Reply<'_>) {
    let name = args.get(0);
    let mut msg = format!(
        "ERR unknown command '{}', with args beginning with: ",
        String::from_utf8_lossy(&name[..name.len().min(128)])
    );
    for a in args.from(1).take(4) {
        msg.push_str(&format!(
            "'{}' ",
            String::from_utf8_lossy(&a[..a.len().min(128)])
        ));
    }
    out.error(&msg);
}

/// Whether a `what` of `len` bytes is within `limit`; answers the error if not.
pub(crate) fn within(what: &str, len: usize, limit: usize, out: &mut Reply<'_>) -> bool {
    if len > limit {
        out.error(&format!(
            "ERR {what} of {len} bytes is over the {limit}-byte limit"
        ));
        return false;
    }
    true
}

/// A library error as one RESP error line.
pub(crate) fn error_line(e: &Error) -> String {
    format!("ERR {e}")
}

/// The string commands the door does not check the type of first: they replace any type (`SET`,
/// `MSET`...), read it as Redis does (`GET` answers `WRONGTYPE` itself, checked on a miss only;
/// `MGET` answers nil), or are refused by the cache (the counters).
const OVERWRITES: &[&str] = &[
    "get",
    "mget",
    "set",
    "setnx",
    "setex",
    "psetex",
    "mset",
    "msetnx",
    // The counters answer `WRONGTYPE` from the cache itself.
    "incr",
    "decr",
    "incrby",
    "decrby",
    "incrbyfloat",
];

pub(crate) const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";
pub(crate) const SYNTAX: &str = "ERR syntax error";

/// A `HELP` subcommand's answer: one status line each.
pub(crate) fn help(out: &mut Reply<'_>, lines: &[&str]) {
    out.array(lines.len());
    for line in lines {
        out.simple(line);
    }
}

/// `ON` or `OFF` (any case), or the syntax error.
pub(crate) fn on_off(raw: &[u8], out: &mut Reply<'_>) -> Option<bool> {
    match Upper::of(raw).as_bytes() {
        b"ON" => Some(true),
        b"OFF" => Some(false),
        _ => {
            out.error(SYNTAX);
            None
        }
    }
}

/// An integer argument, or the error Redis gives.
pub(crate) fn int_arg(raw: &[u8], out: &mut Reply<'_>) -> Option<i64> {
    let n = parse_int(raw);
    if n.is_none() {
        out.error(NOT_AN_INTEGER);
    }
    n
}

/// `AUTH password` or `AUTH default password`.
pub(super) fn auth(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    if args.len() > 3 {
        out.error(SYNTAX);
        return;
    }
    let (user, password) = match args.len() {
        2 => (&b"default"[..], args.get(1)),
        _ => (args.get(1), args.get(2)),
    };
    if s.node.doors().password.is_none() {
        out.error(
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        );
        return;
    }
    if s.authenticate(user, password) {
        out.ok();
    } else {
        out.error("WRONGPASS invalid username-password pair or user is disabled.");
    }
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`: switches the connection to RESP2 or RESP3
/// and answers the server's description.
pub(super) fn hello(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let mut proto = if s.resp3 { 3 } else { 2 };
    if args.len() > 1 {
        match parse_int(args.get(1)) {
            Some(v @ (2 | 3)) => proto = v,
            Some(_) => {
                out.error("NOPROTO unsupported protocol version");
                return;
            }
            None => {
                out.error("ERR Protocol version is not an integer or out of range");
                return;
            }
        }
    }
    let mut name = None;
    let mut i = 2;
    while i < args.len() {
        let opt = args.upper(i);
        if opt.as_bytes() == b"AUTH" && i + 2 < args.len() {
            if !s.authenticate(args.get(i + 1), args.get(i + 2)) {
                out.error("WRONGPASS invalid username-password pair or user is disabled.");
                return;
            }
            i += 3;
        } else if opt.as_bytes() == b"SETNAME" && i + 1 < args.len() {
            let n = args.get(i + 1);
            if !valid_name(n) {
                out.error(BAD_NAME);
                return;
            }
            name = Some(Bytes::copy_from_slice(n));
            i += 2;
        } else {
            out.error(&format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(args.get(i))
            ));
            return;
        }
    }
    if !s.authenticated {
        out.error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
        return;
    }
    if let Some(name) = name {
        s.client.names.lock().name = (!name.is_empty()).then_some(name);
    }
    s.resp3 = proto == 3;
    out.resp3 = s.resp3;
    s.client.resp.store(proto as u8, Ordering::Relaxed);
    out.map(7);
    out.bulk(b"server");
    out.bulk(b"redis");
    out.bulk(b"version");
    out.bulk(VERSION.as_bytes());
    out.bulk(b"proto");
    out.int(proto);
    out.bulk(b"id");
    out.int(s.client.id as i64);
    out.bulk(b"mode");
    out.bulk(b"standalone");
    out.bulk(b"role");
    out.bulk(b"master");
    out.bulk(b"modules");
    out.array(0);
}

/// The Redis version the door reports (`HELLO`, `INFO`): the one whose commands it answers like,
/// for clients that gate features on it. redis-py's client-side cache, for one, needs a server
/// that calls itself `redis` at 7.4 or later, and the tracking it needs is here.
pub(crate) const VERSION: &str = "7.4.0";

pub(crate) const BAD_NAME: &str =
    "ERR Client names cannot contain spaces, newlines or special characters.";

/// A client name as Redis accepts them: printable ASCII without spaces.
pub(crate) fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&b| b > b' ' && b <= b'~')
}

pub(super) fn ping(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    if args.len() > 2 {
        out.error("ERR wrong number of arguments for 'ping' command");
    } else if s.subscribed() {
        // In RESP2's subscribed mode PING answers as a message does.
        out.array(2);
        out.bulk(b"pong");
        out.bulk(if args.len() == 2 { args.get(1) } else { b"" });
    } else if args.len() == 2 {
        out.bulk(args.get(1));
    } else {
        out.simple("PONG");
    }
}

pub(super) fn echo(_: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    out.bulk(args.get(1));
}

pub(super) fn quit(s: &mut Session<'_>, _: Args<'_>, out: &mut Reply<'_>) {
    out.ok();
    s.close = true;
}

/// `RESET`: back to a fresh connection's state (protocol, database, transaction, watches,
/// tracking, subscriptions; authenticated again only without a password).
pub(super) fn reset(s: &mut Session<'_>, _: Args<'_>, out: &mut Reply<'_>) {
    s.multi = None;
    s.client.multi.store(-1, Ordering::Relaxed);
    clear_watches(s);
    super::tracking::stop(s);
    pubsub::leave_all(s);
    s.select_db(0);
    s.resp3 = false;
    out.resp3 = false;
    s.client.resp.store(2, Ordering::Relaxed);
    s.authenticated = s.node.doors().password.is_none();
    s.client.names.lock().name = None;
    s.client.no_evict.store(false, Ordering::Relaxed);
    s.client.no_touch.store(false, Ordering::Relaxed);
    out.simple("RESET");
}

pub(super) fn select(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    match parse_int(args.get(1)) {
        Some(i) if i >= 0 && (i as usize) < s.node.caches().len() => {
            s.select_db(i as usize);
            out.ok();
        }
        Some(_) => out.error("ERR DB index is out of range"),
        None => out.error(NOT_AN_INTEGER),
    }
}

pub(super) fn multi(s: &mut Session<'_>, _: Args<'_>, out: &mut Reply<'_>) {
    if s.multi.is_some() {
        out.error("ERR MULTI calls can not be nested");
        return;
    }
    s.multi = Some(Multi::default());
    s.client.multi.store(0, Ordering::Relaxed);
    out.ok();
}

pub(super) fn discard(s: &mut Session<'_>, _: Args<'_>, out: &mut Reply<'_>) {
    if s.multi.take().is_none() {
        out.error("ERR DISCARD without MULTI");
        return;
    }
    s.client.multi.store(-1, Ordering::Relaxed);
    clear_watches(s);
    out.ok();
}

/// `EXEC`: runs the queued commands with the node's gate held alone (the dispatcher took it), so
/// no other client sees part of the transaction; aborts if a watched key changed.
pub(super) fn exec(s: &mut Session<'_>, _: Args<'_>, out: &mut Reply<'_>) {
    let Some(multi) = s.multi.take() else {
        out.error("ERR EXEC without MULTI");
        return;
    };
    s.client.multi.store(-1, Ordering::Relaxed);
    if multi.dirty {
        clear_watches(s);
        out.error("EXECABORT Transaction discarded because of previous errors.");
        return;
    }
    let changed = s
        .watched
        .iter()
        .any(|(db, key, probe)| s.cache_of(*db).is_none_or(|c| c.probe(key) != *probe));
    clear_watches(s);
    if changed {
        out.null_array();
        return;
    }
    out.array(multi.queue.len());
    s.executing = true;
    for (index, queued) in &multi.queue {
        let args = Args {
            buf: &queued.buf,
            ranges: &queued.ranges,
        };
        s.run(*index, &COMMANDS[*index], args, out);
    }
    s.executing = false;
    s.caching_next = None;
}

/// `WATCH key...`: remembers what each key is now; `EXEC` aborts if any has changed by then, for
/// any reason — a write here, a change replicated from a peer, expiry, eviction, a purge.
pub(super) fn watch(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    if s.multi.is_some() {
        out.error("ERR WATCH inside MULTI is not allowed");
        return;
    }
    for key in args.from(1) {
        if !s.watched.iter().any(|(db, k, _)| *db == s.db && k == key) {
            let probe = s.cache.probe(key);
            s.watched.push((s.db, Bytes::copy_from_slice(key), probe));
        }
    }
    s.client.watching.store(s.watched.len(), Ordering::Relaxed);
    out.ok();
}

pub(super) fn unwatch(s: &mut Session<'_>, _: Args<'_>, out: &mut Reply<'_>) {
    clear_watches(s);
    out.ok();
}

fn clear_watches(s: &mut Session<'_>) {
    s.watched.clear();
    s.client.watching.store(0, Ordering::Relaxed);
}
