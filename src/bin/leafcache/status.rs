//! What `leafcache up`, `node` and `serve` print: one line per node (role, addresses) and one
//! live status line per link.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant};

use leafcache::topology::{HubRef, Topology};
use leafcache::{Direction, LinkState, LinkStatus, Node};

/// `name role key=address...`: what a node is and where to reach it.
pub fn describe(node: &Node) -> String {
    let mut line = format!("{:<12} {:<6}", node.name(), node.role().to_string());
    let addresses = [
        ("listen", node.local_addr().map(str::to_string)),
        ("hub", node.replication_config().remote_address.clone()),
        ("resp", node.resp_addr().map(str::to_string)),
        ("http", node.http_addr().map(str::to_string)),
        ("unix", node.unix_socket().map(|p| p.display().to_string())),
    ];
    for (label, value) in addresses {
        if let Some(v) = value {
            let _ = write!(line, " {label}={v}");
        }
    }
    line
}

/// One link as seen from both ends: the leaf's upstream status, and the hub's status of its link
/// to that leaf when the hub runs in this process.
struct LinkView {
    /// `leaf -> hub`.
    name: String,
    /// connecting / connected / syncing / down / refused.
    state: &'static str,
    /// The rest: lag, last error.
    detail: String,
}

fn view(leaf: &Node, up: &LinkStatus, hub: Option<&Node>, hub_name: &str) -> LinkView {
    let down_link = hub.and_then(|h| {
        h.links().into_iter().find(|s| {
            s.direction == Direction::Downstream
                && s.state == LinkState::Up
                && s.peer_id == Some(leaf.id())
        })
    });
    let syncing = [Some(up), down_link.as_ref()]
        .into_iter()
        .flatten()
        .any(|s| s.sync.as_ref().is_some_and(|r| !r.done));
    let state = match up.state {
        LinkState::Up if syncing => "syncing",
        LinkState::Up => "connected",
        LinkState::Connecting | LinkState::Handshaking => "connecting",
        LinkState::Down => "down",
        LinkState::Refused => "refused",
    };
    let mut detail = String::new();
    if up.state == LinkState::Up {
        let _ = write!(detail, "lag up {} changes/{} ms", up.lag_changes, up.lag_ms);
        if let Some(d) = &down_link {
            let _ = write!(detail, ", down {} changes/{} ms", d.lag_changes, d.lag_ms);
        }
        if let Some(sync) = down_link.as_ref().and_then(|d| d.sync.as_ref()) {
            let _ = write!(
                detail,
                ", last resync {} of {} changes",
                format!("{:?}", sync.kind).to_lowercase(),
                sync.changes
            );
        }
    } else if let Some(e) = &up.last_error {
        let _ = write!(detail, "{e}");
    }
    LinkView {
        name: format!("{} -> {hub_name}", leaf.name()),
        state,
        detail,
    }
}

fn views(topology: &Topology, nodes: &[Node]) -> Vec<LinkView> {
    let mut out = Vec::new();
    for (spec, node) in topology.nodes().iter().zip(nodes) {
        let (hub, hub_name) = match &spec.hub {
            None => continue,
            Some(HubRef::Node(h)) => (nodes.iter().find(|n| n.name() == h), h.as_str()),
            Some(HubRef::Address(a)) => (None, a.as_str()),
        };
        let links = node.links();
        if let Some(up) = links.iter().find(|s| s.direction == Direction::Upstream) {
            out.push(view(node, up, hub, hub_name));
        }
    }
    out
}

/// Prints a status line per link until cancelled: on a terminal the block is redrawn in place
/// twice a second; otherwise a line is printed whenever a link changes state.
pub async fn watch(topology: &Topology, nodes: &[Node]) {
    let tty = std::io::stdout().is_terminal();
    let start = Instant::now();
    let mut drawn = 0usize;
    let mut last: Vec<(String, &'static str)> = Vec::new();
    loop {
        let views = views(topology, nodes);
        let mut out = String::new();
        if tty {
            if drawn > 0 {
                let _ = write!(out, "\x1b[{drawn}A");
            }
            for v in &views {
                let _ = writeln!(out, "\x1b[2K  {:<24} {:<10} {}", v.name, v.state, v.detail);
            }
            drawn = views.len();
        } else {
            for v in &views {
                if !last.iter().any(|(n, s)| *n == v.name && *s == v.state) {
                    let _ = writeln!(
                        out,
                        "[{:>7.1}s] {}: {} {}",
                        start.elapsed().as_secs_f64(),
                        v.name,
                        v.state,
                        v.detail
                    );
                }
            }
            last = views.iter().map(|v| (v.name.clone(), v.state)).collect();
        }
        if !out.is_empty() {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(out.as_bytes());
            let _ = stdout.flush();
        }
        tokio::time::sleep(Duration::from_millis(if tty { 500 } else { 200 })).await;
    }
}
