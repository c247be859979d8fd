//! The server commands clients and tools call: `CLIENT` (its tracking subcommands answered by
//! the tracking registry), `CONFIG GET`, `INFO`, `DBSIZE`, `FLUSHDB`/`FLUSHALL`, `TIME`,
//! `MEMORY USAGE` and `WAIT`. (`COMMAND` is the table's own, in `table.rs`.)

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::args::{Args, NOT_AN_INTEGER, SYNTAX, help, parse_int, unknown_subcommand};
use super::session::{Pending, Session};
use crate::cache::Eviction;
use crate::server::glob;
use crate::server::metrics;
use crate::server::protocol::Reply;

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
            help(out, &lines);
        }
        _ => unknown_subcommand(args, "MEMORY", out),
    }
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
                // The selected cache's byte capacity (0: none, as in Redis) and its policy, in
                // Redis's words where Redis has one.
                ("maxmemory", s.cache.max_bytes().unwrap_or(0).to_string()),
                (
                    "maxmemory-policy",
                    match s.cache.eviction() {
                        Eviction::Lru => "allkeys-lru",
                        Eviction::Lfu => "allkeys-lfu",
                        Eviction::S3Fifo => "s3fifo",
                    }
                    .into(),
                ),
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
