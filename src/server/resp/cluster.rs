//! Redis Cluster at the RESP door of a sharded node: `CLUSTER` (`KEYSLOT`, `MYID`, `MYSHARDID`,
//! `INFO`, `SLOTS`, `SHARDS`, `NODES`, `COUNTKEYSINSLOT`, `GETKEYSINSLOT`), `READONLY`,
//! `READWRITE`, `ASKING`, and the check dispatch makes before a keyed command: keys of one slot,
//! held by this node's shard — else `-CROSSSLOT`, or `-MOVED` to the owning shard's door.

use super::args::{Args, unknown_subcommand};
use super::session::Session;
use crate::partition::{SLOTS, ShardNode, Shards, key_slot};
use crate::server::protocol::Reply;

/// The error of a cluster command on a node of one tree, in Redis's words.
const DISABLED: &str = "ERR This instance has cluster support disabled";

/// Where a command whose keys this node's shard does not hold goes.
pub(super) enum Elsewhere {
    /// Keys of several slots: refused, with this error.
    Refused(String),
    /// The slot's shard and its door (`None`: no node of it has one).
    Shard {
        slot: u16,
        shard: String,
        door: Option<String>,
    },
}

impl Elsewhere {
    /// The error a cluster client gets: `-CROSSSLOT`, `-MOVED slot host:port`, or `-CLUSTERDOWN`
    /// for a shard without a door.
    pub fn error(&self) -> String {
        match self {
            Elsewhere::Refused(why) => why.clone(),
            Elsewhere::Shard {
                slot,
                door: Some(door),
                ..
            } => format!("MOVED {slot} {door}"),
            Elsewhere::Shard { slot, shard, .. } => {
                format!(
                    "CLUSTERDOWN Hash slot {slot} is held by shard {shard:?}, which has no RESP door"
                )
            }
        }
    }
}

/// Whether a command with its keys at these positions may run here, on a sharded node: `None`
/// if it may (no keys, or keys of one slot this node's shard holds).
pub(super) fn elsewhere(
    s: &Session<'_>,
    mut keys: impl Iterator<Item = usize>,
    args: Args<'_>,
) -> Option<Elsewhere> {
    let shards = s.node.shards()?;
    let slot = key_slot(args.get(keys.next()?));
    if keys.any(|i| key_slot(args.get(i)) != slot) {
        return Some(Elsewhere::Refused(
            "CROSSSLOT Keys in request don't hash to the same slot".into(),
        ));
    }
    if shards.owns(slot) {
        return None;
    }
    Some(Elsewhere::Shard {
        slot,
        shard: shards.map.shards()[shards.map.owner(slot)].clone(),
        door: shards.address_for(slot).map(str::to_string),
    })
}

/// `READONLY`, `READWRITE`, `ASKING`: accepted (every node of a shard serves its reads and
/// writes); after `ASKING` the next command is served here whatever the map says, which is how
/// a slot's new owner reads a key through from its previous one.
pub(super) fn mode(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    if s.node.shards().is_none() {
        out.error(DISABLED);
    } else {
        s.cluster_client = true;
        s.asking = args.get(0).eq_ignore_ascii_case(b"ASKING");
        out.ok();
    }
}

/// `CLUSTER subcommand ...`.
pub(super) fn cluster(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let sub = args.get(1).to_ascii_uppercase();
    if sub == b"HELP" {
        return help(out);
    }
    let Some(shards) = s.node.shards() else {
        out.error(DISABLED);
        return;
    };
    match (sub.as_slice(), args.len()) {
        (b"KEYSLOT", 3) => out.int(i64::from(key_slot(args.get(2)))),
        (b"MYID", 2) => out.bulk(shards.myself().id().as_bytes()),
        (b"MYSHARDID", 2) => out.bulk(shard_id(&shards, shards.mine).as_bytes()),
        (b"INFO", 2) => info(&shards, out),
        (b"SLOTS", 2) => {
            s.cluster_client = true;
            slots(&shards, out);
        }
        (b"SHARDS", 2) => {
            s.cluster_client = true;
            shards_reply(&shards, out);
        }
        (b"NODES", 2) => {
            s.cluster_client = true;
            out.verbatim(nodes(&shards).as_bytes());
        }
        (b"COUNTKEYSINSLOT", 3) => match slot_arg(args.get(2)) {
            Some(slot) => out.int(keys_in(s, slot, usize::MAX).len() as i64),
            None => out.error("ERR Invalid slot"),
        },
        (b"GETKEYSINSLOT", 4) => match (slot_arg(args.get(2)), int_arg(args.get(3))) {
            (Some(slot), Some(count)) => {
                let keys = keys_in(s, slot, count);
                out.array(keys.len());
                for k in &keys {
                    out.bulk(k);
                }
            }
            (None, _) => out.error("ERR Invalid slot"),
            (_, None) => out.error("ERR Invalid number of keys"),
        },
        (
            b"KEYSLOT" | b"MYID" | b"MYSHARDID" | b"INFO" | b"SLOTS" | b"SHARDS" | b"NODES"
            | b"COUNTKEYSINSLOT" | b"GETKEYSINSLOT",
            _,
        ) => out.error(&format!(
            "ERR wrong number of arguments for 'cluster|{}' command",
            String::from_utf8_lossy(&sub).to_lowercase()
        )),
        _ => unknown_subcommand(args, "CLUSTER", out),
    }
}

fn help(out: &mut Reply<'_>) {
    let lines = [
        "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "COUNTKEYSINSLOT <slot>",
        "    Return the number of keys in <slot> on this node.",
        "GETKEYSINSLOT <slot> <count>",
        "    Return key names stored by this node in a slot.",
        "INFO",
        "    Return information about the cluster.",
        "KEYSLOT <key>",
        "    Return the hash slot for <key>.",
        "MYID",
        "    Return the node id.",
        "MYSHARDID",
        "    Return the node's shard id.",
        "NODES",
        "    Return cluster configuration seen by node. Output format:",
        "    <id> <ip:port@cport> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
        "SHARDS",
        "    Return information about slot range mappings and the nodes of each shard.",
        "SLOTS",
        "    Return information about slots range mappings.",
        "HELP",
        "    Print this help.",
    ];
    out.array(lines.len());
    for l in lines {
        out.simple(l);
    }
}

fn slot_arg(arg: &[u8]) -> Option<u16> {
    int_arg(arg).filter(|&s| s < SLOTS).map(|s| s as u16)
}

fn int_arg(arg: &[u8]) -> Option<usize> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// The keys of `slot` this node holds in the selected cache, at most `count`.
fn keys_in(s: &Session<'_>, slot: u16, count: usize) -> Vec<bytes::Bytes> {
    let mut found = Vec::new();
    let mut cursor = 0;
    loop {
        let (keys, next) = s.cache.scan(cursor, 1024);
        found.extend(keys.into_iter().filter(|k| key_slot(k) == slot));
        if next == 0 || found.len() >= count {
            break;
        }
        cursor = next;
    }
    found.sort_unstable();
    found.dedup();
    found.truncate(count);
    found
}

/// A shard's 40-hex id, from its name.
fn shard_id(shards: &Shards, index: usize) -> String {
    ShardNode {
        name: format!("shard:{}", shards.map.shards()[index]),
        resp: None,
        primary: true,
    }
    .id()
}

/// A door's host and port (`host:port`).
fn host_port(address: &str) -> (&str, i64) {
    match address.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().unwrap_or(0)),
        None => (address, 0),
    }
}

/// Each shard's nodes with a door, its primary first.
fn reachable(nodes: &[ShardNode]) -> Vec<&ShardNode> {
    let mut out: Vec<&ShardNode> = nodes.iter().filter(|n| n.resp.is_some()).collect();
    out.sort_by_key(|n| !n.primary);
    out
}

fn info(shards: &Shards, out: &mut Reply<'_>) {
    let known: usize = shards.members.iter().map(Vec::len).sum();
    let text = format!(
        "cluster_enabled:1\r\ncluster_state:ok\r\ncluster_slots_assigned:{SLOTS}\r\n\
         cluster_slots_ok:{SLOTS}\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\n\
         cluster_known_nodes:{known}\r\ncluster_size:{}\r\ncluster_current_epoch:1\r\n\
         cluster_my_epoch:1\r\ncluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\n\
         total_cluster_links_buffer_limit_exceeded:0\r\n",
        shards.members.len()
    );
    out.verbatim(text.as_bytes());
}

/// `CLUSTER SLOTS`: per run of slots, the shard's primary then the other nodes with a door.
fn slots(shards: &Shards, out: &mut Reply<'_>) {
    let ranges: Vec<(u16, u16, Vec<&ShardNode>)> = (shards.map.ranges().into_iter())
        .map(|(a, b, shard)| (a, b, reachable(&shards.members[shard])))
        .filter(|(_, _, nodes)| !nodes.is_empty())
        .collect();
    out.array(ranges.len());
    for (first, last, nodes) in ranges {
        out.array(2 + nodes.len());
        out.int(i64::from(first));
        out.int(i64::from(last));
        for node in nodes {
            let (host, port) = host_port(node.resp.as_deref().unwrap_or_default());
            out.array(4);
            out.bulk(host.as_bytes());
            out.int(port);
            out.bulk(node.id().as_bytes());
            out.map(0);
        }
    }
}

/// `CLUSTER SHARDS`: per shard, its slot ranges and its nodes.
fn shards_reply(shards: &Shards, out: &mut Reply<'_>) {
    let ranges = shards.map.ranges();
    out.array(shards.members.len());
    for (index, nodes) in shards.members.iter().enumerate() {
        let mine: Vec<(u16, u16)> = (ranges.iter())
            .filter(|r| r.2 == index)
            .map(|r| (r.0, r.1))
            .collect();
        out.map(2);
        out.bulk(b"slots");
        out.array(mine.len() * 2);
        for (a, b) in &mine {
            out.int(i64::from(*a));
            out.int(i64::from(*b));
        }
        out.bulk(b"nodes");
        let nodes = reachable(nodes);
        out.array(nodes.len());
        for node in nodes {
            let (host, port) = host_port(node.resp.as_deref().unwrap_or_default());
            out.map(7);
            out.bulk(b"id");
            out.bulk(node.id().as_bytes());
            out.bulk(b"port");
            out.int(port);
            out.bulk(b"ip");
            out.bulk(host.as_bytes());
            out.bulk(b"endpoint");
            out.bulk(host.as_bytes());
            out.bulk(b"role");
            out.bulk(if node.primary { b"master" } else { b"replica" });
            out.bulk(b"replication-offset");
            out.int(0);
            out.bulk(b"health");
            out.bulk(b"online");
        }
    }
}

/// `CLUSTER NODES`: one line per node with a door, a primary's slots on its line.
fn nodes(shards: &Shards) -> String {
    let ranges = shards.map.ranges();
    let mut text = String::new();
    for (index, members) in shards.members.iter().enumerate() {
        let nodes = reachable(members);
        let Some(primary) = nodes.first().map(|n| n.id()) else {
            continue;
        };
        for (i, node) in nodes.iter().enumerate() {
            let (host, port) = host_port(node.resp.as_deref().unwrap_or_default());
            let mut flags = String::new();
            if node.name == shards.me {
                flags.push_str("myself,");
            }
            flags.push_str(if i == 0 { "master" } else { "slave" });
            let master = if i == 0 {
                "-".to_string()
            } else {
                primary.clone()
            };
            text.push_str(&format!(
                "{} {host}:{port}@{} {flags} {master} 0 0 1 connected",
                node.id(),
                port + 10_000
            ));
            if i == 0 {
                for (a, b, _) in ranges.iter().filter(|r| r.2 == index) {
                    if a == b {
                        text.push_str(&format!(" {a}"));
                    } else {
                        text.push_str(&format!(" {a}-{b}"));
                    }
                }
            }
            text.push('\n');
        }
    }
    text
}
