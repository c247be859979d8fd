//! The server and introspection commands clients and tools call: `CLIENT` (all but tracking,
//! which `tracking` owns), `COMMAND`, `CONFIG GET`, `INFO`, `DBSIZE`, `FLUSHDB`/`FLUSHALL`,
//! `TIME`, `MEMORY USAGE` and `WAIT`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::session::{
    Args, BAD_NAME, NOT_AN_INTEGER, Pending, SYNTAX, Session, int_arg, valid_name,
};
use super::table::{COMMANDS, Spec, lookup};
use super::tracking;
use crate::server::glob;
use crate::server::metrics;
use crate::server::protocol::{Reply, parse_int};

pub(super) fn dbsize(s: &mut Session<'_>, _: Args<'_>, out: &mut Reply<'_>) {
    out.int(s.cache.len() as i64);
}

/// `FLUSHDB [ASYNC|SYNC]`: a purge of the selected cache, replicated.
pub(super) fn flushdb(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    if !flush_mode_ok(args, out) {
        return;
    }
    s.cache.purge();
    out.ok();
}

/// `FLUSHALL [ASYNC|SYNC]`: a purge of every cache of the node, replicated.
pub(super) fn flushall(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    if !flush_mode_ok(args, out) {
        return;
    }
    for cache in s.node.caches() {
        cache.purge();
    }
    out.ok();
}

fn flush_mode_ok(args: Args<'_>, out: &mut Reply<'_>) -> bool {
    let ok = match args.len() {
        1 => true,
        2 => matches!(args.upper(1).as_bytes(), b"ASYNC" | b"SYNC"),
        _ => false,
    };
    if !ok {
        out.error(SYNTAX);
    }
    ok
}

pub(super) fn info(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let sections: Vec<String> = args
        .from(1)
        .map(|s| String::from_utf8_lossy(s).to_lowercase())
        .collect();
    let clients = s.shared.clients.list();
    let tracking = clients
        .iter()
        .filter(|c| c.tracking.load(Ordering::Relaxed))
        .count();
    let pubsub = clients
        .iter()
        .filter(|c| c.channels.load(Ordering::Relaxed) + c.patterns.load(Ordering::Relaxed) > 0)
        .count();
    let fields = [
        ("blocked_clients", 0),
        ("tracking_clients", tracking as u64),
        ("pubsub_clients", pubsub as u64),
        ("tracking_total_keys", s.shared.tracking.keys() as u64),
        (
            "tracking_total_prefixes",
            s.shared.tracking.prefixes() as u64,
        ),
        ("pubsub_channels", s.shared.pubsub.channels() as u64),
        ("pubsub_patterns", s.shared.pubsub.patterns() as u64),
    ];
    let text = metrics::info(s.node, s.db, &sections, &fields);
    out.verbatim(text.as_bytes());
}

/// `TIME`: the node's clock, seconds and microseconds.
pub(super) fn time(s: &mut Session<'_>, _: Args<'_>, out: &mut Reply<'_>) {
    let ms = s.node.now_ms();
    out.array(2);
    out.bulk(itoa::Buffer::new().format(ms / 1000).as_bytes());
    out.bulk(itoa::Buffer::new().format((ms % 1000) * 1000).as_bytes());
}

/// `MEMORY USAGE key [SAMPLES n]`: the bytes the entry is accounted for (key, value and the
/// measured per-entry overhead); `MEMORY HELP`.
pub(super) fn memory(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    match args.upper(1).as_bytes() {
        b"USAGE" if args.len() == 3 || args.len() == 5 => {
            if args.len() == 5
                && (args.upper(3).as_bytes() != b"SAMPLES" || parse_int(args.get(4)).is_none())
            {
                out.error(SYNTAX);
                return;
            }
            match s.cache.entry_bytes(args.get(2)) {
                Some(n) => out.int(n as i64),
                None => out.null(),
            }
        }
        b"HELP" => {
            let lines = [
                "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "USAGE <key> [SAMPLES <count>]",
                "    Return memory in bytes used by <key> and its value.",
                "HELP",
                "    Print this help.",
            ];
            super::session::help(out, &lines);
        }
        _ => unknown_subcommand(args, "MEMORY", out),
    }
}

fn unknown_subcommand(args: Args<'_>, container: &str, out: &mut Reply<'_>) {
    out.error(&format!(
        "ERR unknown subcommand '{}'. Try {container} HELP.",
        String::from_utf8_lossy(args.get(1))
    ));
}

/// `CONFIG GET pattern...` answers the settings clients and tools read, as a map; the node is
/// configured through its builder or topology file, so `CONFIG SET` is refused.
pub(super) fn config(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    match args.upper(1).as_bytes() {
        b"GET" if args.len() >= 3 => {
            let limits = s.node.doors().limits;
            let settings: [(&str, String); 10] = [
                ("databases", s.node.caches().len().to_string()),
                ("maxclients", limits.max_connections.to_string()),
                ("proto-max-bulk-len", limits.max_value.to_string()),
                ("save", String::new()),
                ("appendonly", "no".into()),
                ("maxmemory", "0".into()),
                ("maxmemory-policy", "allkeys-lru".into()),
                ("timeout", "0".into()),
                (
                    "tracking-table-max-keys",
                    s.shared.tracking.max_keys().to_string(),
                ),
                ("notify-keyspace-events", String::new()),
            ];
            let found: Vec<&(&str, String)> = settings
                .iter()
                .filter(|(name, _)| {
                    args.from(2)
                        .any(|p| glob::matches(&p.to_ascii_lowercase(), name.as_bytes()))
                })
                .collect();
            out.map(found.len());
            for (name, value) in found {
                out.bulk(name.as_bytes());
                out.bulk(value.as_bytes());
            }
        }
        b"RESETSTAT" if args.len() == 2 => out.ok(),
        b"SET" | b"REWRITE" => out.error(
            "ERR CONFIG SET is not supported: configure the node through its builder or topology file",
        ),
        _ => unknown_subcommand(args, "CONFIG", out),
    }
}

/// `WAIT numreplicas timeout`: how many upstream hops acknowledged this connection's writes —
/// 1 once the hub applied them, 0 on a node without a hub or if the timeout passes first
/// (`timeout` 0 waits as long as it takes). Inside `EXEC` it answers at once.
pub(super) fn wait(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let (Some(wanted), Some(timeout)) = (parse_int(args.get(1)), parse_int(args.get(2))) else {
        out.error(NOT_AN_INTEGER);
        return;
    };
    if timeout < 0 {
        out.error("ERR timeout is negative");
        return;
    }
    let uplink = &s.node.core().uplink;
    if !uplink.configured() {
        out.int(0);
        return;
    }
    let acked = uplink.acked_upto() >= s.last_write;
    if acked || wanted <= 0 || s.client.multi.load(Ordering::Relaxed) >= 0 || s.executing {
        out.int(i64::from(acked));
        return;
    }
    s.pending = Some(Pending::Acked {
        seq: s.last_write,
        timeout: (timeout > 0).then(|| Duration::from_millis(timeout as u64)),
    });
}

/// `COMMAND`, `COMMAND COUNT|INFO|DOCS|LIST|GETKEYS|HELP`.
pub(super) fn command(_: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    if args.len() == 1 {
        out.array(COMMANDS.len());
        for spec in COMMANDS {
            command_info(spec, out);
        }
        return;
    }
    let named = || -> Vec<Option<&'static Spec>> {
        args.from(2)
            .map(|n| lookup(n).map(|i| &COMMANDS[i]))
            .collect()
    };
    match args.upper(1).as_bytes() {
        b"COUNT" => out.int(COMMANDS.len() as i64),
        b"INFO" => {
            let specs: Vec<Option<&Spec>> = if args.len() == 2 {
                COMMANDS.iter().map(Some).collect()
            } else {
                named()
            };
            out.array(specs.len());
            for spec in specs {
                match spec {
                    Some(spec) => command_info(spec, out),
                    None => out.null_array(),
                }
            }
        }
        b"DOCS" => {
            let specs: Vec<&Spec> = if args.len() == 2 {
                COMMANDS.iter().collect()
            } else {
                named().into_iter().flatten().collect()
            };
            out.map(specs.len());
            for spec in specs {
                out.bulk(spec.name.as_bytes());
                out.map(3);
                out.bulk(b"summary");
                out.bulk(spec.summary.as_bytes());
                out.bulk(b"since");
                out.bulk(b"1.0.0");
                out.bulk(b"group");
                out.bulk(spec.group.as_bytes());
            }
        }
        b"LIST" => {
            let filter = if args.len() == 5 && args.upper(2).as_bytes() == b"FILTERBY" {
                Some((args.upper(3), args.get(4)))
            } else if args.len() == 2 {
                None
            } else {
                out.error(SYNTAX);
                return;
            };
            let names: Vec<&str> = COMMANDS
                .iter()
                .filter(|spec| match &filter {
                    None => true,
                    Some((by, value)) => match by.as_bytes() {
                        b"PATTERN" => glob::matches(value, spec.name.as_bytes()),
                        b"ACLCAT" => {
                            let cat = format!("@{}", String::from_utf8_lossy(value).to_lowercase());
                            spec.categories().contains(&cat)
                        }
                        _ => false,
                    },
                })
                .map(|spec| spec.name)
                .collect();
            out.array(names.len());
            for n in names {
                out.bulk(n.as_bytes());
            }
        }
        b"GETKEYS" if args.len() >= 3 => {
            let Some(spec) = lookup(args.get(2)).map(|i| &COMMANDS[i]) else {
                out.error("ERR Invalid command specified");
                return;
            };
            let n = args.len() - 2;
            if !spec.arity_ok(n) {
                out.error("ERR Invalid number of arguments specified for command");
                return;
            }
            let (first, last, step) = spec.keys;
            if first == 0 {
                out.error("ERR The command has no key arguments");
                return;
            }
            let last = if last < 0 { n as i32 + last } else { last };
            // Only positions the command line has (an optional key may be absent).
            let keys: Vec<&[u8]> = (first..=last)
                .step_by(step.max(1) as usize)
                .filter(|&i| (i as usize) < n)
                .map(|i| args.get(2 + i as usize))
                .collect();
            out.array(keys.len());
            for k in keys {
                out.bulk(k);
            }
        }
        b"HELP" => {
            let lines = [
                "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "(no subcommand)",
                "    Return details about all commands.",
                "COUNT",
                "    Return the total number of commands in this server.",
                "LIST [FILTERBY (ACLCAT <category>|PATTERN <pattern>)]",
                "    Return a list of all commands in this server.",
                "INFO [<command-name> ...]",
                "    Return details about multiple commands.",
                "DOCS [<command-name> ...]",
                "    Return documentation details about multiple commands.",
                "GETKEYS <full-command>",
                "    Return the keys from a full command.",
                "HELP",
                "    Print this help.",
            ];
            super::session::help(out, &lines);
        }
        _ => unknown_subcommand(args, "COMMAND", out),
    }
}

/// One `COMMAND INFO` entry, in Redis 7's ten-field shape.
fn command_info(spec: &Spec, out: &mut Reply<'_>) {
    out.array(10);
    out.bulk(spec.name.as_bytes());
    out.int(i64::from(spec.arity));
    let flags = spec.flag_names();
    out.set(flags.len());
    for f in flags {
        out.simple(f);
    }
    out.int(i64::from(spec.keys.0));
    out.int(i64::from(spec.keys.1));
    out.int(i64::from(spec.keys.2));
    let cats = spec.categories();
    out.set(cats.len());
    for c in cats {
        out.simple(&c);
    }
    out.set(0); // tips
    out.array(0); // key specs
    out.array(0); // subcommands
}

/// `CLIENT ...`.
pub(super) fn client(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let sub = args.upper(1);
    let n = args.len();
    match sub.as_bytes() {
        b"ID" if n == 2 => out.int(s.client.id as i64),
        b"GETNAME" if n == 2 => {
            let name = s.client.names.lock().name.clone();
            out.bulk_or_null(name.as_deref());
        }
        b"SETNAME" if n == 3 => {
            let name = args.get(2);
            if !valid_name(name) {
                out.error(BAD_NAME);
                return;
            }
            s.client.names.lock().name = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
            out.ok();
        }
        b"SETINFO" if n == 4 => {
            let value = args.get(3);
            if !valid_name(value) {
                out.error("ERR lib-name or lib-ver cannot contain spaces, newlines or special characters.");
                return;
            }
            let value = (!value.is_empty()).then(|| Bytes::copy_from_slice(value));
            let mut names = s.client.names.lock();
            match args.upper(2).as_bytes() {
                b"LIB-NAME" => names.lib_name = value,
                b"LIB-VER" => names.lib_ver = value,
                _ => {
                    drop(names);
                    out.error(&format!(
                        "ERR Unrecognized option '{}'",
                        String::from_utf8_lossy(args.get(2))
                    ));
                    return;
                }
            }
            out.ok();
        }
        b"INFO" if n == 2 => {
            let mut line = s.client.describe(|i| COMMANDS[i].name);
            line.push('\n');
            out.verbatim(line.as_bytes());
        }
        b"LIST" => client_list(s, args, out),
        b"KILL" if n >= 3 => client_kill(s, args, out),
        b"NO-EVICT" | b"NO-TOUCH" if n == 3 => {
            let Some(on) = super::session::on_off(args.get(2), out) else {
                return;
            };
            let flag = if sub.as_bytes() == b"NO-EVICT" {
                &s.client.no_evict
            } else {
                &s.client.no_touch
            };
            flag.store(on, Ordering::Relaxed);
            out.ok();
        }
        b"TRACKING" if n >= 3 => tracking::client_tracking(s, args, out),
        b"CACHING" if n == 3 => tracking::client_caching(s, args, out),
        b"GETREDIR" if n == 2 => tracking::client_getredir(s, out),
        b"TRACKINGINFO" if n == 2 => tracking::client_trackinginfo(s, out),
        b"HELP" => {
            let lines = [
                "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CACHING (YES|NO)",
                "GETNAME",
                "GETREDIR",
                "ID",
                "INFO",
                "KILL <ip:port> | KILL <option> <value> [<option> <value> [...]]",
                "LIST [TYPE (NORMAL|PUBSUB)] [ID <id> [<id> ...]]",
                "NO-EVICT (ON|OFF)",
                "NO-TOUCH (ON|OFF)",
                "SETINFO <LIB-NAME|LIB-VER> <value>",
                "SETNAME <name>",
                "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]] [OPTIN] [OPTOUT] [NOLOOP]",
                "TRACKINGINFO",
                "HELP",
            ];
            super::session::help(out, &lines);
        }
        _ => unknown_subcommand(args, "CLIENT", out),
    }
}

/// `CLIENT LIST [TYPE normal|pubsub|master|replica] [ID id...]`.
fn client_list(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let mut clients = s.shared.clients.list();
    let mut i = 2;
    while i < args.len() {
        match args.upper(i).as_bytes() {
            b"TYPE" if i + 1 < args.len() => {
                let pubsub = |c: &super::clients::Client| {
                    c.channels.load(Ordering::Relaxed) + c.patterns.load(Ordering::Relaxed) > 0
                };
                match args.upper(i + 1).as_bytes() {
                    b"NORMAL" => clients.retain(|c| !pubsub(c)),
                    b"PUBSUB" => clients.retain(|c| pubsub(c)),
                    b"MASTER" | b"REPLICA" | b"SLAVE" => clients.clear(),
                    _ => {
                        out.error(&format!(
                            "ERR Unknown client type '{}'",
                            String::from_utf8_lossy(args.get(i + 1))
                        ));
                        return;
                    }
                }
                i += 2;
            }
            b"ID" if i + 1 < args.len() => {
                let mut ids = Vec::new();
                for raw in args.from(i + 1) {
                    match parse_int(raw) {
                        Some(id) if id > 0 => ids.push(id as u64),
                        _ => {
                            out.error("ERR Invalid client ID");
                            return;
                        }
                    }
                }
                clients.retain(|c| ids.contains(&c.id));
                i = args.len();
            }
            _ => {
                out.error(SYNTAX);
                return;
            }
        }
    }
    let mut text = String::new();
    for c in clients {
        text.push_str(&c.describe(|i| COMMANDS[i].name));
        text.push('\n');
    }
    out.verbatim(text.as_bytes());
}

/// `CLIENT KILL addr` (answers OK or an error) or `CLIENT KILL filter value...` with filters
/// `ID`, `ADDR`, `LADDR`, `TYPE`, `USER`, `SKIPME` (answers how many were killed).
fn client_kill(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    if args.len() == 3 {
        let addr = String::from_utf8_lossy(args.get(2)).into_owned();
        let target = s.shared.clients.list().into_iter().find(|c| c.addr == addr);
        match target {
            Some(c) => {
                kill(s, &c);
                out.ok();
            }
            None => out.error("ERR No such client"),
        }
        return;
    }
    if !args.len().is_multiple_of(2) {
        out.error(SYNTAX);
        return;
    }
    let mut clients = s.shared.clients.list();
    let mut skip_me = true;
    for i in (2..args.len()).step_by(2) {
        let value = args.get(i + 1);
        let text = String::from_utf8_lossy(value).into_owned();
        match args.upper(i).as_bytes() {
            b"ID" => {
                let Some(id) = int_arg(value, out) else {
                    return;
                };
                clients.retain(|c| c.id as i64 == id);
            }
            b"ADDR" => clients.retain(|c| c.addr == text),
            b"LADDR" => clients.retain(|c| c.laddr == text),
            b"USER" => clients.retain(|_| text == "default"),
            b"TYPE" => match args.upper(i + 1).as_bytes() {
                b"NORMAL" | b"PUBSUB" => {
                    let want_pubsub = args.upper(i + 1).as_bytes() == b"PUBSUB";
                    clients.retain(|c| {
                        (c.channels.load(Ordering::Relaxed) + c.patterns.load(Ordering::Relaxed)
                            > 0)
                            == want_pubsub
                    });
                }
                b"MASTER" | b"REPLICA" | b"SLAVE" => clients.clear(),
                _ => {
                    out.error(&format!("ERR Unknown client type '{text}'"));
                    return;
                }
            },
            b"SKIPME" => match args.upper(i + 1).as_bytes() {
                b"YES" => skip_me = true,
                b"NO" => skip_me = false,
                _ => {
                    out.error(SYNTAX);
                    return;
                }
            },
            b"MAXAGE" => {
                let Some(age) = int_arg(value, out) else {
                    return;
                };
                clients.retain(|c| c.created.elapsed().as_secs() as i64 >= age);
            }
            _ => {
                out.error(SYNTAX);
                return;
            }
        }
    }
    if skip_me {
        clients.retain(|c| c.id != s.client.id);
    }
    for c in &clients {
        kill(s, c);
    }
    out.int(clients.len() as i64);
}

/// Closes another client's connection (or, once this reply is written, this one).
fn kill(s: &mut Session<'_>, c: &super::clients::Client) {
    if c.id == s.client.id {
        s.close = true;
    } else {
        c.killed.cancel();
    }
}
