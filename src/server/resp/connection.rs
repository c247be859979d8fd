//! The connection commands: `AUTH`, `HELLO`, `PING`, `ECHO`, `QUIT`, `RESET`, `SELECT`.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::args::{Args, BAD_NAME, NOT_AN_INTEGER, SYNTAX, VERSION, parse_int, valid_name};
use super::session::Session;
use crate::server::protocol::Reply;

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
    s.clear_watches();
    // Tracking and subscriptions end, as when the connection closes.
    s.leave();
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
