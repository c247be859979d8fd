//! The RESP door: one task per connection (TCP or Unix socket) that reads what the client sent,
//! executes every whole request in it in order, and writes all their replies at once.
//!
//! Pipelined requests cost no task or allocation each: arguments are slices of the read buffer,
//! replies go into one output buffer that is written when the input holds no further whole
//! request. A protocol error is answered and closes that connection only.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::glob;
use super::protocol::{Parsed, Reply, parse, parse_int};
use super::{count, metrics};
use crate::cache::{Cache, Expiry, SetCondition};
use crate::error::Error;
use crate::net::{Listener, Stream};
use crate::node::Node;

/// Output above this is written before the next request is executed, so that a long pipeline of
/// large replies does not pile up in memory.
const FLUSH_AT: usize = 64 << 10;

/// The most buffer reserved at once for a request still arriving.
const READ_AHEAD: usize = 1 << 20;

/// How many records `KEYS` reads per pass over the change log.
const KEYS_BATCH: usize = 4096;

/// Accepts RESP connections until the node shuts down.
pub(crate) async fn accept_loop(node: Node, listener: Box<dyn Listener>, permits: Arc<Semaphore>) {
    let shutdown = node.registry().shutdown.clone();
    let stats = &node.doors().stats;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (mut stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment rather than spin.
                warn!(error = %e, "resp accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        count(&stats.connections_received, 1);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            count(&stats.connections_rejected, 1);
            let _ = stream
                .write_all(b"-ERR max number of clients reached\r\n")
                .await;
            continue;
        };
        let node = node.clone();
        node.registry().tasks.clone().spawn(async move {
            let stats = &node.doors().stats;
            stats.connections_open.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = serve(&node, stream).await {
                debug!(peer = %peer, error = %e, "resp connection closed");
            }
            stats.connections_open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

/// Serves one connection until the client leaves, sends `QUIT`, breaks the protocol, or the node
/// shuts down.
async fn serve(node: &Node, mut stream: Stream) -> std::io::Result<()> {
    let shutdown = node.registry().shutdown.clone();
    let doors = node.doors();
    let limits = super::parse_limits(&doors.limits);
    let mut session = Session::new(node);
    let mut input = BytesMut::with_capacity(16 << 10);
    let mut output = BytesMut::with_capacity(16 << 10);
    let mut args: Vec<Range<usize>> = Vec::with_capacity(8);
    loop {
        if input.capacity() - input.len() < 4096 {
            input.reserve(16 << 10);
        }
        let read = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = stream.read_buf(&mut input) => r?,
        };
        if read == 0 {
            return Ok(());
        }
        let mut commands = 0;
        let mut close = false;
        loop {
            match parse(&input, &limits, &mut args) {
                Ok(Parsed::Request { consumed }) => {
                    if !args.is_empty() {
                        commands += 1;
                        let flow = session.execute(
                            Args {
                                buf: &input,
                                ranges: &args,
                            },
                            &mut Reply(&mut output),
                        );
                        close = flow == Flow::Close;
                    }
                    input.advance(consumed);
                    if close {
                        break;
                    }
                    if output.len() >= FLUSH_AT {
                        stream.write_all(&output).await?;
                        output.clear();
                    }
                }
                Ok(Parsed::Incomplete { total }) => {
                    // Room for what the request announced, 1 MiB at a time: an announcement
                    // costs memory only as its bytes arrive.
                    if total > input.capacity() {
                        input.reserve((total - input.len()).min(READ_AHEAD));
                    }
                    break;
                }
                Err(e) => {
                    count(&doors.stats.protocol_errors, 1);
                    Reply(&mut output).error(&e.to_string());
                    close = true;
                    break;
                }
            }
        }
        count(&doors.stats.commands, commands);
        if !output.is_empty() {
            stream.write_all(&output).await?;
            output.clear();
        }
        if close {
            stream.flush().await?;
            return Ok(());
        }
    }
}

/// One request's arguments: ranges in the connection's read buffer.
#[derive(Clone, Copy)]
struct Args<'a> {
    buf: &'a [u8],
    ranges: &'a [Range<usize>],
}

impl<'a> Args<'a> {
    fn len(&self) -> usize {
        self.ranges.len()
    }

    fn get(&self, i: usize) -> &'a [u8] {
        &self.buf[self.ranges[i].clone()]
    }

    /// The arguments from `i` on.
    fn from(&self, i: usize) -> impl Iterator<Item = &'a [u8]> + 'a {
        let buf = self.buf;
        self.ranges[i..].iter().map(move |r| &buf[r.clone()])
    }
}

/// Whether the connection goes on after a request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// One connection's state: the selected cache, authentication, the client's name.
struct Session<'n> {
    node: &'n Node,
    db: usize,
    cache: Cache,
    authenticated: bool,
    name: Option<Bytes>,
    id: u64,
}

/// The commands this door knows, for `COMMAND COUNT` and the unknown-command error.
const COMMANDS: &[&str] = &[
    "AUTH", "CLIENT", "COMMAND", "CONFIG", "DBSIZE", "DEL", "ECHO", "EXISTS", "EXPIRE", "FLUSHALL",
    "FLUSHDB", "GET", "GETDEL", "HELLO", "INFO", "KEYS", "MGET", "MSET", "PERSIST", "PEXPIRE",
    "PING", "PTTL", "QUIT", "SCAN", "SELECT", "SET", "TTL", "TYPE",
];

impl<'n> Session<'n> {
    fn new(node: &'n Node) -> Self {
        Session {
            node,
            db: 0,
            cache: node.default_cache(),
            authenticated: node.doors().password.is_none(),
            name: None,
            id: node
                .doors()
                .stats
                .connections_received
                .load(Ordering::Relaxed),
        }
    }

    fn execute(&mut self, args: Args<'_>, out: &mut Reply<'_>) -> Flow {
        let raw = args.get(0);
        let mut upper = [0u8; 16];
        let name: &[u8] = if raw.len() <= upper.len() {
            upper[..raw.len()].copy_from_slice(raw);
            upper[..raw.len()].make_ascii_uppercase();
            &upper[..raw.len()]
        } else {
            raw
        };
        if !self.authenticated && !matches!(name, b"AUTH" | b"HELLO" | b"QUIT") {
            out.error("NOAUTH Authentication required.");
            return Flow::Continue;
        }
        let n = args.len();
        // Arity: (exact or minimum count including the name, whether it is a minimum).
        let arity = match name {
            b"GET" | b"GETDEL" | b"TYPE" | b"TTL" | b"PTTL" | b"PERSIST" | b"ECHO" | b"SELECT"
            | b"KEYS" => (2, false),
            b"EXPIRE" | b"PEXPIRE" => (3, true),
            b"SET" => (3, true),
            b"DEL" | b"EXISTS" | b"MGET" | b"SCAN" | b"CLIENT" | b"CONFIG" | b"AUTH" => (2, true),
            b"MSET" => (3, true),
            _ => (1, true),
        };
        if n < arity.0 || (!arity.1 && n != arity.0) {
            out.error(&format!(
                "ERR wrong number of arguments for '{}' command",
                String::from_utf8_lossy(raw).to_lowercase()
            ));
            return Flow::Continue;
        }
        match name {
            b"GET" => {
                let value = self.cache.get(args.get(1));
                out.bulk_or_null(value.as_deref());
            }
            b"SET" => self.set(args, out),
            b"PING" => match n {
                1 => out.simple("PONG"),
                2 => out.bulk(args.get(1)),
                _ => out.error("ERR wrong number of arguments for 'ping' command"),
            },
            b"MGET" => {
                out.array(n - 1);
                for key in args.from(1) {
                    let value = self.cache.get(key);
                    out.bulk_or_null(value.as_deref());
                }
            }
            b"MSET" => self.mset(args, out),
            b"DEL" => {
                let deleted = args.from(1).filter(|k| self.cache.delete(k).is_some());
                out.int(deleted.count() as i64);
            }
            b"GETDEL" => {
                let old = self.cache.delete(args.get(1));
                out.bulk_or_null(old.as_deref());
            }
            b"EXISTS" => {
                let found = args.from(1).filter(|k| self.cache.contains(k));
                out.int(found.count() as i64);
            }
            b"TYPE" => out.simple(if self.cache.contains(args.get(1)) {
                "string"
            } else {
                "none"
            }),
            b"EXPIRE" => self.expire(args, out, 1000),
            b"PEXPIRE" => self.expire(args, out, 1),
            b"PERSIST" => {
                let key = args.get(1);
                let has_ttl = self.cache.peek(key).is_some_and(|e| e.expires_at.is_some());
                let done = has_ttl && self.cache.set_expiry(key, Expiry::Never).unwrap_or(false);
                out.int(i64::from(done));
            }
            b"TTL" => self.ttl(args.get(1), out, 1000),
            b"PTTL" => self.ttl(args.get(1), out, 1),
            b"DBSIZE" => out.int(self.cache.len() as i64),
            b"FLUSHDB" => {
                self.cache.purge();
                out.ok();
            }
            b"FLUSHALL" => {
                for cache in self.node.caches() {
                    cache.purge();
                }
                out.ok();
            }
            b"SCAN" => self.scan(args, out),
            b"KEYS" => self.keys(args.get(1), out),
            b"SELECT" => self.select(args.get(1), out),
            b"ECHO" => out.bulk(args.get(1)),
            b"AUTH" => self.auth(args, out),
            b"HELLO" => self.hello(args, out),
            b"QUIT" => {
                out.ok();
                return Flow::Close;
            }
            b"INFO" => {
                let sections: Vec<String> = args
                    .from(1)
                    .map(|s| String::from_utf8_lossy(s).to_lowercase())
                    .collect();
                out.bulk(metrics::info(self.node, self.db, &sections).as_bytes());
            }
            b"COMMAND" => self.command(args, out),
            b"CLIENT" => self.client(args, out),
            b"CONFIG" => {
                // Tools such as redis-benchmark read their server's settings first; there are
                // none to report here, which they accept.
                if args.get(1).eq_ignore_ascii_case(b"GET") {
                    out.array(0);
                } else {
                    out.error("ERR CONFIG is not supported; configure the node instead");
                }
            }
            _ => self.unknown(args, out),
        }
        Flow::Continue
    }

    fn unknown(&self, args: Args<'_>, out: &mut Reply<'_>) {
        let mut msg = format!(
            "ERR unknown command '{}', with args beginning with:",
            String::from_utf8_lossy(&args.get(0)[..args.get(0).len().min(128)])
        );
        for a in args.from(1).take(4) {
            msg.push_str(&format!(
                " '{}'",
                String::from_utf8_lossy(&a[..a.len().min(64)])
            ));
        }
        out.error(&msg);
    }

    fn key_ok(&self, key: &[u8], out: &mut Reply<'_>) -> bool {
        within("key", key.len(), self.node.doors().limits.max_key, out)
    }

    fn value_ok(&self, value: &[u8], out: &mut Reply<'_>) -> bool {
        within(
            "value",
            value.len(),
            self.node.doors().limits.max_value,
            out,
        )
    }

    /// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]`.
    fn set(&mut self, args: Args<'_>, out: &mut Reply<'_>) {
        let (key, value) = (args.get(1), args.get(2));
        let mut condition = SetCondition::Always;
        let mut expiry = Expiry::Default;
        let mut expiry_given = false;
        let mut get = false;
        let mut i = 3;
        while i < args.len() {
            let opt = args.get(i).to_ascii_uppercase();
            let result = match opt.as_slice() {
                b"NX" if condition == SetCondition::Always => {
                    condition = SetCondition::IfAbsent;
                    Ok(())
                }
                b"XX" if condition == SetCondition::Always => {
                    condition = SetCondition::IfPresent;
                    Ok(())
                }
                b"GET" => {
                    get = true;
                    Ok(())
                }
                b"KEEPTTL" if !expiry_given => {
                    expiry_given = true;
                    expiry = Expiry::Keep;
                    Ok(())
                }
                b"EX" | b"PX" | b"EXAT" | b"PXAT" if !expiry_given && i + 1 < args.len() => {
                    expiry_given = true;
                    let unit = if matches!(opt.as_slice(), b"EX" | b"EXAT") {
                        1000
                    } else {
                        1
                    };
                    let r = set_expiry_arg(args.get(i + 1), unit, opt.ends_with(b"AT"));
                    i += 1;
                    r.map(|e| expiry = e)
                }
                _ => Err("ERR syntax error"),
            };
            if let Err(msg) = result {
                out.error(msg);
                return;
            }
            i += 1;
        }
        if !self.key_ok(key, out) || !self.value_ok(value, out) {
            return;
        }
        let value = Bytes::copy_from_slice(value);
        let result = if condition == SetCondition::Always && !get {
            self.cache
                .set_borrowed(key, value, expiry)
                .map(|_| (true, None))
        } else {
            self.cache
                .set_if(Bytes::copy_from_slice(key), value, expiry, condition)
                .map(|o| (o.version.is_some(), o.previous))
        };
        match result {
            Ok((_, previous)) if get => out.bulk_or_null(previous.as_deref()),
            Ok((true, _)) => out.ok(),
            Ok((false, _)) => out.null(),
            Err(e) => out.error(&error_line(&e)),
        }
    }

    fn mset(&mut self, args: Args<'_>, out: &mut Reply<'_>) {
        if args.len().is_multiple_of(2) {
            out.error("ERR wrong number of arguments for 'mset' command");
            return;
        }
        // Check every pair before writing any, so that a refused pair leaves nothing half done.
        let pairs = || {
            (1..args.len())
                .step_by(2)
                .map(|i| (args.get(i), args.get(i + 1)))
        };
        for (key, value) in pairs() {
            if !self.key_ok(key, out) || !self.value_ok(value, out) {
                return;
            }
            let size = crate::cache::entry_size(key.len(), value.len());
            if size > self.cache.max_entry_bytes() {
                out.error(&error_line(&Error::ValueTooLarge {
                    size,
                    limit: self.cache.max_entry_bytes(),
                }));
                return;
            }
        }
        for (key, value) in pairs() {
            let value = Bytes::copy_from_slice(value);
            if let Err(e) = self.cache.set_borrowed(key, value, Expiry::Default) {
                out.error(&error_line(&e));
                return;
            }
        }
        out.ok();
    }

    /// `EXPIRE key seconds` / `PEXPIRE key ms`: a TTL of zero or less deletes, as in Redis.
    fn expire(&mut self, args: Args<'_>, out: &mut Reply<'_>, unit_ms: i64) {
        if args.len() > 3 {
            out.error("ERR NX, XX, GT and LT options are not supported");
            return;
        }
        let Some(n) = parse_int(args.get(2)) else {
            out.error("ERR value is not an integer or out of range");
            return;
        };
        let key = args.get(1);
        let Some(ms) = n.checked_mul(unit_ms) else {
            out.error("ERR invalid expire time in 'expire' command");
            return;
        };
        let done = if ms <= 0 {
            self.cache.delete(key).is_some()
        } else {
            let expiry = Expiry::After(Duration::from_millis(ms as u64));
            self.cache.set_expiry(key, expiry).unwrap_or(false)
        };
        out.int(i64::from(done));
    }

    fn ttl(&self, key: &[u8], out: &mut Reply<'_>, unit_ms: u64) {
        let reply = match self.cache.peek(key) {
            None => -2,
            Some(e) => match e.expires_at {
                None => -1,
                Some(at) => {
                    let left = at.saturating_sub(self.node.now_ms());
                    // Rounded to the nearest unit, as Redis does.
                    ((left + unit_ms / 2) / unit_ms) as i64
                }
            },
        };
        out.int(reply);
    }

    /// `SCAN cursor [MATCH pattern] [COUNT n] [TYPE t]`: the cursor is a position in the change
    /// log, so a key held throughout is returned at least once.
    fn scan(&mut self, args: Args<'_>, out: &mut Reply<'_>) {
        let Some(cursor) = std::str::from_utf8(args.get(1))
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            out.error("ERR invalid cursor");
            return;
        };
        let mut pattern: Option<&[u8]> = None;
        let mut count = 10usize;
        let mut only_strings = true;
        let mut i = 2;
        while i < args.len() {
            if i + 1 >= args.len() {
                out.error("ERR syntax error");
                return;
            }
            let value = args.get(i + 1);
            match args.get(i).to_ascii_uppercase().as_slice() {
                b"MATCH" => pattern = Some(value),
                b"COUNT" => match parse_int(value) {
                    Some(c) if c > 0 => count = (c as usize).min(100_000),
                    _ => {
                        out.error("ERR value is not an integer or out of range");
                        return;
                    }
                },
                b"TYPE" => only_strings = value.eq_ignore_ascii_case(b"string"),
                _ => {
                    out.error("ERR syntax error");
                    return;
                }
            }
            i += 2;
        }
        let (keys, next) = self.cache.scan(cursor, count);
        let keys: Vec<Bytes> = keys
            .into_iter()
            .filter(|k| only_strings && pattern.is_none_or(|p| glob::matches(p, k)))
            .collect();
        out.array(2);
        out.bulk(itoa::Buffer::new().format(next).as_bytes());
        out.array(keys.len());
        for key in &keys {
            out.bulk(key);
        }
    }

    fn keys(&mut self, pattern: &[u8], out: &mut Reply<'_>) {
        let mut found = Vec::new();
        let mut cursor = 0;
        loop {
            let (keys, next) = self.cache.scan(cursor, KEYS_BATCH);
            found.extend(keys.into_iter().filter(|k| glob::matches(pattern, k)));
            if next == 0 {
                break;
            }
            cursor = next;
        }
        // A key rewritten during the walk can be seen twice; KEYS lists each once.
        found.sort_unstable();
        found.dedup();
        out.array(found.len());
        for key in &found {
            out.bulk(key);
        }
    }

    fn select(&mut self, index: &[u8], out: &mut Reply<'_>) {
        match parse_int(index) {
            Some(i) if i >= 0 && (i as usize) < self.node.caches().len() => {
                self.db = i as usize;
                self.cache = self.node.caches()[self.db].clone();
                out.ok();
            }
            Some(_) => out.error("ERR DB index is out of range"),
            None => out.error("ERR value is not an integer or out of range"),
        }
    }

    /// `AUTH password` or `AUTH default password`.
    fn auth(&mut self, args: Args<'_>, out: &mut Reply<'_>) {
        if args.len() > 3 {
            out.error("ERR syntax error");
            return;
        }
        let (user, password) = match args.len() {
            2 => (&b"default"[..], args.get(1)),
            _ => (args.get(1), args.get(2)),
        };
        if self.node.doors().password.is_none() {
            out.error(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            );
            return;
        }
        if self.check_password(user, password) {
            out.ok();
        } else {
            out.error("WRONGPASS invalid username-password pair or user is disabled.");
        }
    }

    fn check_password(&mut self, user: &[u8], password: &[u8]) -> bool {
        let ok = user == b"default" && self.node.doors().password_ok(password);
        if ok {
            self.authenticated = true;
        }
        ok
    }

    /// `HELLO [2 [AUTH user pass] [SETNAME name]]`: RESP2 only; `HELLO 3` gets `-NOPROTO` so that
    /// clients fall back to RESP2.
    fn hello(&mut self, args: Args<'_>, out: &mut Reply<'_>) {
        if args.len() > 1 {
            match parse_int(args.get(1)) {
                Some(2) => {}
                Some(_) => {
                    out.error("NOPROTO sorry, this protocol version is not supported");
                    return;
                }
                None => {
                    out.error("ERR Protocol version is not an integer or out of range");
                    return;
                }
            }
        }
        let mut i = 2;
        while i < args.len() {
            let opt = args.get(i).to_ascii_uppercase();
            if opt == b"AUTH" && i + 2 < args.len() {
                if !self.check_password(args.get(i + 1), args.get(i + 2)) {
                    out.error("WRONGPASS invalid username-password pair or user is disabled.");
                    return;
                }
                i += 3;
            } else if opt == b"SETNAME" && i + 1 < args.len() {
                self.name = Some(Bytes::copy_from_slice(args.get(i + 1)));
                i += 2;
            } else {
                out.error(&format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(args.get(i))
                ));
                return;
            }
        }
        if !self.authenticated {
            out.error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
            return;
        }
        out.array(14);
        out.bulk(b"server");
        out.bulk(b"leafcache");
        out.bulk(b"version");
        out.bulk(env!("CARGO_PKG_VERSION").as_bytes());
        out.bulk(b"proto");
        out.int(2);
        out.bulk(b"id");
        out.int(self.id as i64);
        out.bulk(b"mode");
        out.bulk(b"standalone");
        out.bulk(b"role");
        out.bulk(b"master");
        out.bulk(b"modules");
        out.array(0);
    }

    fn command(&mut self, args: Args<'_>, out: &mut Reply<'_>) {
        let sub = (args.len() > 1).then(|| args.get(1).to_ascii_uppercase());
        match sub.as_deref() {
            Some(b"COUNT") => out.int(COMMANDS.len() as i64),
            // `COMMAND`, `COMMAND DOCS` (what redis-cli asks at start), `COMMAND INFO`: no
            // per-command metadata is published, which clients accept.
            _ => out.array(0),
        }
    }

    fn client(&mut self, args: Args<'_>, out: &mut Reply<'_>) {
        match args.get(1).to_ascii_uppercase().as_slice() {
            b"SETNAME" if args.len() == 3 => {
                let name = args.get(2);
                if name.iter().any(|&b| b <= b' ' || b > b'~') {
                    out.error(
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    );
                } else {
                    self.name = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
                    out.ok();
                }
            }
            b"GETNAME" => out.bulk_or_null(self.name.as_deref()),
            b"ID" => out.int(self.id as i64),
            // Client libraries announce themselves; nothing to keep.
            b"SETINFO" => out.ok(),
            _ => out.error(&format!(
                "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                String::from_utf8_lossy(args.get(1))
            )),
        }
    }
}

/// The expiry of `SET ... EX n` (and `PX`, `EXAT`, `PXAT`): `n` in units of `unit_ms`.
fn set_expiry_arg(raw: &[u8], unit_ms: u64, absolute: bool) -> Result<Expiry, &'static str> {
    let n = parse_int(raw).ok_or("ERR value is not an integer or out of range")?;
    if n <= 0 {
        return Err("ERR invalid expire time in 'set' command");
    }
    let ms = (n as u64).saturating_mul(unit_ms);
    Ok(if absolute {
        Expiry::AtMs(ms)
    } else {
        Expiry::After(Duration::from_millis(ms))
    })
}

/// Whether a `what` of `len` bytes is within `limit`; answers the error if not.
fn within(what: &str, len: usize, limit: usize, out: &mut Reply<'_>) -> bool {
    if len > limit {
        out.error(&format!(
            "ERR {what} of {len} bytes is over the {limit}-byte limit"
        ));
        return false;
    }
    true
}

/// A library error as one RESP error line.
fn error_line(e: &Error) -> String {
    format!("ERR {e}")
}
