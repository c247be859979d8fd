//! What a node reports about itself in text: the RESP `INFO` reply and the Prometheus exposition
//! served at `/metrics`.
//!
//! Both are read at request time from the caches' and links' own snapshots ([`Cache::stats`],
//! [`Node::links`]); nothing is counted twice. Prometheus' text format is written directly: the
//! values are snapshots, not instruments a registry would own.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::cache::Cache;
use crate::node::Node;
use crate::replication::{Direction, LinkState, LinkStatus};

pub(crate) fn state_name(state: LinkState) -> &'static str {
    match state {
        LinkState::Connecting => "connecting",
        LinkState::Handshaking => "handshaking",
        LinkState::Up => "up",
        LinkState::Down => "down",
        LinkState::Refused => "refused",
    }
}

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Upstream => "upstream",
        Direction::Downstream => "downstream",
    }
}

/// The `INFO` reply: sections `server`, `clients`, `persistence`, `stats`, `replication`,
/// `keyspace` (all by default, or those named).
///
/// `clients` are the `# Clients` fields the RESP door counts (tracking and pub/sub clients...),
/// after `connected_clients`.
pub(crate) fn info(node: &Node, db: usize, sections: &[String], clients: &[(&str, u64)]) -> String {
    let wants = |s: &str| {
        sections.is_empty()
            || sections
                .iter()
                .any(|x| x == s || x == "all" || x == "everything" || x == "default")
    };
    let doors = node.doors();
    let stats = &doors.stats;
    let mut out = String::new();
    if wants("server") {
        let _ = write!(
            out,
            "# Server\r\nredis_version:7.4.0\r\nleafcache_version:{}\r\nredis_mode:standalone\r\n\
             node_name:{}\r\nnode_id:{}\r\nrole:master\r\nleafcache_role:{}\r\nprocess_id:{}\r\ntcp_port:{}\r\n\
             uptime_in_seconds:{}\r\nselected_db:{}\r\nselected_cache:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            node.name(),
            node.id(),
            node.role(),
            std::process::id(),
            node.resp_addr()
                .and_then(|a| a.rsplit_once(':'))
                .map_or("0", |(_, p)| p),
            doors.started.elapsed().as_secs(),
            db,
            node.caches()[db].name(),
        );
    }
    if wants("clients") {
        let _ = write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\n",
            stats.connections_open.load(Ordering::Relaxed),
            doors.limits.max_connections,
        );
        for (name, n) in clients {
            let _ = write!(out, "{name}:{n}\r\n");
        }
        out.push_str("\r\n");
    }
    if wants("persistence") {
        out.push_str("# Persistence\r\n");
        match node.persistence() {
            None => out.push_str("leafcache_root:\r\n"),
            Some(p) => {
                let secs = |ms: Option<u64>| ms.map_or(-1, |ms| (ms / 1000) as i64);
                let _ = write!(
                    out,
                    "leafcache_root:{}\r\nleafcache_flush:{}\r\nrdb_last_save_time:{}\r\n\
                     rdb_last_bgsave_status:{}\r\nrdb_last_bgsave_time_sec:{}\r\n\
                     leafcache_snapshot_bytes:{}\r\nleafcache_snapshot_failures:{}\r\n\
                     aof_current_size:{}\r\naof_buffer_length:{}\r\n\
                     aof_last_write_status:{}\r\nleafcache_write_errors:{}\r\n",
                    p.root,
                    p.flush,
                    secs(p.last_snapshot_ms),
                    if p.snapshot_error.is_some() {
                        "err"
                    } else {
                        "ok"
                    },
                    p.last_snapshot_duration_ms / 1000,
                    p.last_snapshot_bytes,
                    p.snapshot_failures,
                    p.oplog_bytes,
                    p.oplog_pending_bytes,
                    if p.write_error.is_some() { "err" } else { "ok" },
                    p.write_errors,
                );
            }
        }
        out.push_str("\r\n");
    }
    if wants("stats") {
        let mut total = crate::cache::CacheStats::default();
        for c in node.caches() {
            let s = c.stats();
            total.hits += s.hits;
            total.misses += s.misses;
            total.evictions += s.evictions;
            total.expirations += s.expirations;
            total.antientropy_repairs += s.antientropy_repairs;
        }
        let _ = write!(
            out,
            "# Stats\r\ntotal_connections_received:{}\r\nrejected_connections:{}\r\n\
             total_commands_processed:{}\r\nprotocol_errors:{}\r\nkeyspace_hits:{}\r\n\
             keyspace_misses:{}\r\nevicted_keys:{}\r\nexpired_keys:{}\r\n\
             leafcache_antientropy_repairs:{}\r\n\r\n",
            stats.connections_received.load(Ordering::Relaxed),
            stats.connections_rejected.load(Ordering::Relaxed),
            stats.commands.load(Ordering::Relaxed),
            stats.protocol_errors.load(Ordering::Relaxed),
            total.hits,
            total.misses,
            total.evictions,
            total.expirations,
            total.antientropy_repairs,
        );
    }
    if wants("replication") {
        let links = node.links();
        let _ = write!(
            out,
            "# Replication\r\nrole:master\r\nleafcache_role:{}\r\nconnected_slaves:0\r\nseq:{}\r\nconnected_links:{}\r\n",
            node.role(),
            node.current_seq(),
            links.iter().filter(|l| l.state == LinkState::Up).count()
        );
        for (i, l) in links.iter().enumerate() {
            let _ = write!(
                out,
                "link{i}:direction={},state={},peer={},address={},down_ms={},lag_changes={},lag_ms={},\
                 bytes_in={},bytes_out={},full_syncs={},delta_syncs={},last_error={}\r\n",
                direction_name(l.direction),
                state_name(l.state),
                l.peer_name.as_deref().unwrap_or("?"),
                l.address,
                l.down_ms,
                l.lag_changes,
                l.lag_ms,
                l.bytes_in,
                l.bytes_out,
                l.full_syncs,
                l.delta_syncs,
                // INFO fields end at a line break and split at commas.
                l.last_error
                    .as_deref()
                    .unwrap_or("")
                    .replace(['\r', '\n', ','], " "),
            );
        }
        out.push_str("\r\n");
    }
    if wants("keyspace") {
        out.push_str("# Keyspace\r\n");
        // As Redis: only the databases that hold keys; avg_ttl in ms.
        for (i, c) in node.caches().iter().enumerate() {
            let ks = c.keyspace();
            if ks.keys > 0 {
                let _ = write!(
                    out,
                    "db{i}:keys={},expires={},avg_ttl={},name={}\r\n",
                    ks.keys,
                    ks.expires,
                    ks.avg_ttl_ms,
                    c.name()
                );
            }
        }
    }
    out
}

/// How long load callbacks (origins) took, per cache: a Prometheus histogram in seconds.
fn load_histogram(f: &mut Family<'_>, caches: &[(&Cache, crate::cache::CacheStats)]) {
    let name = "cache_load_duration_seconds";
    f.header(
        name,
        "histogram",
        "How long load callback (origin) runs took.",
    );
    for (cache, stats) in caches {
        let mut cumulative = 0;
        let bounds = crate::cache::LOAD_BUCKETS_MS
            .iter()
            .map(|&ms| format!("{}", ms as f64 / 1000.0));
        for (i, le) in bounds.chain(["+Inf".to_string()]).enumerate() {
            cumulative += stats.load_buckets[i];
            f.sample(
                &format!("{name}_bucket"),
                &[("cache", cache.name()), ("le", &le)],
                cumulative,
            );
        }
        let _ = writeln!(
            f.out,
            "leafcache_{name}_sum{{cache=\"{}\"}} {}",
            label_value(cache.name()),
            stats.load_time_us as f64 / 1e6
        );
        f.sample(
            &format!("{name}_count"),
            &[("cache", cache.name())],
            cumulative,
        );
    }
}

/// A label value escaped as the text format wants it.
fn label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// What names a link in metrics, stable across its reconnections: the peer's name once it said
/// hello (an upstream link keeps it between attempts), else the address.
fn peer_label(l: &LinkStatus) -> &str {
    l.peer_name.as_deref().unwrap_or(&l.address)
}

/// The links with one per (direction, peer) label set, so that no series is written twice: a
/// link that is up wins over a closed record of the same peer, a newer record over an older one.
fn stable_links(mut links: Vec<LinkStatus>) -> Vec<LinkStatus> {
    links.sort_by_key(|l| (l.state != LinkState::Up, std::cmp::Reverse(l.id)));
    let mut seen = std::collections::HashSet::new();
    links.retain(|l| seen.insert((l.direction, peer_label(l).to_string())));
    links.sort_by_key(|l| l.id);
    links
}

/// A metric read from a snapshot: name, type, help, and how to read it.
type Metric<T> = (&'static str, &'static str, &'static str, fn(&T) -> u64);

/// Writes one metric family: its help and type lines, then one sample per label set.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP leafcache_{name} {help}");
        let _ = writeln!(self.out, "# TYPE leafcache_{name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        let _ = write!(self.out, "leafcache_{name}");
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", label_value(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// The Prometheus text exposition (format 0.0.4) of the node's caches, links and doors.
pub(crate) fn prometheus(node: &Node) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    let caches: Vec<(&Cache, crate::cache::CacheStats)> =
        node.caches().iter().map(|c| (c, c.stats())).collect();
    let cache_metrics: [Metric<crate::cache::CacheStats>; 11] = [
        (
            "load_misses_total",
            "counter",
            "Load callback (origin) runs that found nothing: misses, not cached.",
            |s| s.load_misses,
        ),
        ("hits_total", "counter", "Reads that found a value.", |s| {
            s.hits
        }),
        (
            "misses_total",
            "counter",
            "Reads that found nothing.",
            |s| s.misses,
        ),
        (
            "evictions_total",
            "counter",
            "Entries removed to make room.",
            |s| s.evictions,
        ),
        (
            "expirations_total",
            "counter",
            "Entries removed because they expired.",
            |s| s.expirations,
        ),
        (
            "antientropy_repairs_total",
            "counter",
            "Keys anti-entropy found different at a peer and sent whole again (0 on a healthy tree).",
            |s| s.antientropy_repairs,
        ),
        (
            "loads_total",
            "counter",
            "Load callback runs that succeeded.",
            |s| s.loads,
        ),
        (
            "load_errors_total",
            "counter",
            "Load callback runs that failed.",
            |s| s.load_errors,
        ),
        ("entries", "gauge", "Entries held.", |s| s.entries),
        (
            "bytes",
            "gauge",
            "Accounted bytes held (keys, values, per-entry overhead).",
            |s| s.bytes,
        ),
        (
            "dead_records",
            "gauge",
            "Tombstones and dropped-version records kept for replication.",
            |s| s.dead_records,
        ),
    ];
    for (name, kind, help, get) in cache_metrics {
        let name = format!("cache_{name}");
        f.header(&name, kind, help);
        for (cache, stats) in &caches {
            f.sample(&name, &[("cache", cache.name())], get(stats));
        }
    }

    load_histogram(&mut f, &caches);

    let links = stable_links(node.links());
    f.header(
        "link_up",
        "gauge",
        "1 if the link is up, else 0 (see the state label).",
    );
    for l in &links {
        let labels = [
            ("direction", direction_name(l.direction)),
            ("peer", peer_label(l)),
            ("state", state_name(l.state)),
        ];
        f.sample("link_up", &labels, u64::from(l.state == LinkState::Up));
    }
    let link_metrics: [Metric<LinkStatus>; 15] = [
        (
            "syncing",
            "gauge",
            "1 while a resync is being sent on the link.",
            |l| u64::from(l.sync.as_ref().is_some_and(|s| !s.done)),
        ),
        (
            "sync_sent_changes",
            "gauge",
            "Records the latest resync sent so far.",
            |l| l.sync.as_ref().map_or(0, |s| s.changes),
        ),
        (
            "sync_total_changes",
            "gauge",
            "Records the latest resync had to send.",
            |l| l.sync.as_ref().map_or(0, |s| s.total_changes),
        ),
        (
            "sync_sent_bytes",
            "gauge",
            "Frame bytes the latest resync sent so far.",
            |l| l.sync.as_ref().map_or(0, |s| s.bytes),
        ),
        (
            "down_ms",
            "gauge",
            "How long the link has been down, in ms (0 while up).",
            |l| l.down_ms,
        ),
        (
            "lag_changes",
            "gauge",
            "Our changes (in seqs) the peer has not acknowledged.",
            |l| l.lag_changes,
        ),
        (
            "lag_ms",
            "gauge",
            "Age of the oldest change the peer has not acknowledged, in ms.",
            |l| l.lag_ms,
        ),
        ("bytes_in_total", "counter", "Frame bytes received.", |l| {
            l.bytes_in
        }),
        ("bytes_out_total", "counter", "Frame bytes sent.", |l| {
            l.bytes_out
        }),
        ("changes_in_total", "counter", "Changes received.", |l| {
            l.changes_in
        }),
        (
            "changes_applied_total",
            "counter",
            "Changes received and applied (newer than what was held).",
            |l| l.changes_applied,
        ),
        ("changes_out_total", "counter", "Changes sent.", |l| {
            l.changes_out
        }),
        ("full_syncs_total", "counter", "Full syncs sent.", |l| {
            l.full_syncs
        }),
        ("delta_syncs_total", "counter", "Delta syncs sent.", |l| {
            l.delta_syncs
        }),
        (
            "digest_syncs_total",
            "counter",
            "Syncs by difference (digests compared) sent.",
            |l| l.digest_syncs,
        ),
    ];
    for (name, kind, help, get) in link_metrics {
        let name = format!("link_{name}");
        f.header(&name, kind, help);
        for l in &links {
            let labels = [
                ("direction", direction_name(l.direction)),
                ("peer", peer_label(l)),
            ];
            f.sample(&name, &labels, get(l));
        }
    }

    let stats = &node.doors().stats;
    let door_metrics = [
        (
            "connections_open",
            "gauge",
            "Open RESP connections.",
            &stats.connections_open,
        ),
        (
            "connections_received_total",
            "counter",
            "RESP connections accepted.",
            &stats.connections_received,
        ),
        (
            "connections_rejected_total",
            "counter",
            "RESP connections refused over max_connections.",
            &stats.connections_rejected,
        ),
        (
            "commands_total",
            "counter",
            "RESP commands executed.",
            &stats.commands,
        ),
        (
            "protocol_errors_total",
            "counter",
            "RESP connections closed for a protocol error.",
            &stats.protocol_errors,
        ),
        (
            "http_requests_total",
            "counter",
            "HTTP requests served.",
            &stats.http_requests,
        ),
    ];
    for (name, kind, help, counter) in door_metrics {
        let name = format!("server_{name}");
        f.header(&name, kind, help);
        f.sample(&name, &[], counter.load(Ordering::Relaxed));
    }
    if let Some(p) = node.persistence() {
        let persist_metrics: [Metric<crate::persist::PersistStatus>; 8] = [
            (
                "snapshot_last_success_timestamp_ms",
                "gauge",
                "When the last snapshot was written, in ms since the epoch (0: none this run).",
                |p| p.last_snapshot_ms.unwrap_or(0),
            ),
            (
                "snapshot_last_bytes",
                "gauge",
                "The last snapshot's file size.",
                |p| p.last_snapshot_bytes,
            ),
            (
                "snapshot_last_duration_ms",
                "gauge",
                "How long the last snapshot took to write, in ms.",
                |p| p.last_snapshot_duration_ms,
            ),
            (
                "snapshot_failures_total",
                "counter",
                "Snapshot attempts that failed.",
                |p| p.snapshot_failures,
            ),
            (
                "snapshot_failing",
                "gauge",
                "1 if the last snapshot attempt failed.",
                |p| u64::from(p.snapshot_error.is_some()),
            ),
            (
                "oplog_bytes",
                "gauge",
                "Bytes in the op log since the last snapshot.",
                |p| p.oplog_bytes,
            ),
            (
                "oplog_pending_bytes",
                "gauge",
                "Op-log bytes not yet written out.",
                |p| p.oplog_pending_bytes,
            ),
            (
                "persist_write_errors_total",
                "counter",
                "Writes to the op log or the identity file that failed.",
                |p| p.write_errors,
            ),
        ];
        for (name, kind, help, get) in persist_metrics {
            f.header(name, kind, help);
            f.sample(name, &[], get(&p));
        }
    }
    f.header(
        "node_seq",
        "counter",
        "The last seq this node stamped on a change.",
    );
    f.sample("node_seq", &[("node", node.name())], node.current_seq());
    out
}
