//! What `leafcache up`, `node` and `serve` print: one line per node (role, addresses), and
//! `up`'s live view of the tree: a line per node and per link, redrawn in place.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leafcache::topology::{HubRef, Topology};
use leafcache::{Direction, LinkState, LinkStatus, Node, SyncKind, SyncReport};

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

/// The last line the node's log wrote and how many it wrote, for `up`'s screen to show below its
/// table while the log itself goes to a file.
#[derive(Clone, Default)]
pub struct LogTail(Arc<Mutex<(u64, String)>>);

impl LogTail {
    /// Notes what the log wrote (whole formatted lines).
    pub fn saw(&self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let mut tail = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            tail.0 += 1;
            tail.1 = line.to_string();
        }
    }

    fn read(&self) -> (u64, String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// One link as seen from both ends: the leaf's upstream status, and the hub's status of its link
/// to that leaf when the hub runs in this process.
struct LinkView {
    /// `leaf -> hub`.
    name: String,
    /// connecting / connected / syncing / down / refused.
    state: &'static str,
    /// The rest: lag, resync progress, how long down and why.
    detail: String,
}

/// `full 1200/5000 changes (24%), 1.2 MiB sent`.
fn progress(sync: &SyncReport) -> String {
    let kind = match sync.kind {
        SyncKind::Full => "full",
        SyncKind::Delta => "delta",
        SyncKind::Digest => "by difference",
    };
    let pct = (sync.changes * 100)
        .checked_div(sync.total_changes)
        .map_or(100, |p| p.min(100));
    format!(
        "{kind} {}/{} changes ({pct}%), {} sent",
        sync.changes,
        sync.total_changes,
        bytes(sync.bytes)
    )
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn view(leaf: &Node, up: &LinkStatus, hub: Option<&Node>, hub_name: &str) -> LinkView {
    let down_link = hub.and_then(|h| {
        h.links().into_iter().find(|s| {
            s.direction == Direction::Downstream
                && s.state == LinkState::Up
                && s.peer_id == Some(leaf.id())
        })
    });
    let running = [down_link.as_ref(), Some(up)]
        .into_iter()
        .flatten()
        .find_map(|s| s.sync.as_ref().filter(|r| !r.done));
    let state = match up.state {
        LinkState::Up if running.is_some() => "syncing",
        LinkState::Up => "connected",
        LinkState::Connecting | LinkState::Handshaking => "connecting",
        LinkState::Down => "down",
        LinkState::Refused => "refused",
    };
    let mut detail = String::new();
    if let Some(sync) = running {
        let _ = write!(detail, "{}; ", progress(sync));
    }
    if up.state == LinkState::Up {
        let _ = write!(detail, "lag to hub {} ({} ms)", up.lag_changes, up.lag_ms);
        if let Some(d) = &down_link {
            let _ = write!(detail, ", from hub {} ({} ms)", d.lag_changes, d.lag_ms);
            if let Some(sync) = d.sync.as_ref().filter(|r| r.done) {
                let _ = write!(
                    detail,
                    "; last resync {}, {}",
                    sync.kind,
                    plural(sync.changes, "change")
                );
            }
        }
    } else {
        let _ = write!(detail, "for {:.1}s", up.down_ms as f64 / 1000.0);
        if let Some(e) = &up.last_error {
            let _ = write!(detail, ": {e}");
        }
    }
    LinkView {
        name: format!("{} -> {hub_name}", leaf.name()),
        state,
        detail,
    }
}

/// Per node, its line of the table and the view of its link to its hub (if it has one).
fn views(topology: &Topology, nodes: &[Node]) -> Vec<(String, Option<LinkView>)> {
    let mut out = Vec::new();
    // At least 12 wide, wider for a longer name: every node line keeps one alignment.
    let name_width = (topology.nodes().iter())
        .map(|n| n.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(12);
    for (spec, node) in topology.nodes().iter().zip(nodes) {
        let entries: u64 = node.caches().iter().map(|c| c.stats().entries).sum();
        let up = node
            .links()
            .iter()
            .filter(|l| l.state == LinkState::Up)
            .count();
        let mut line = format!(
            "{:<name_width$} {:<6} {}, {} up",
            node.name(),
            node.role().to_string(),
            plural(entries, "entry"),
            plural(up as u64, "link")
        );
        if let Some(p) = node.persistence() {
            for problem in p.problems() {
                let _ = write!(line, "; {problem}");
            }
        }
        let link = match &spec.hub {
            None => None,
            Some(hub_ref) => {
                let (hub, hub_name) = match hub_ref {
                    HubRef::Node(h) => (nodes.iter().find(|n| n.name() == h), h.as_str()),
                    HubRef::Address(a) => (None, a.as_str()),
                };
                node.links()
                    .iter()
                    .find(|s| s.direction == Direction::Upstream)
                    .map(|up| view(node, up, hub, hub_name))
            }
        };
        out.push((line, link));
    }
    out
}

/// The terminal's width in columns, if stdout is one.
fn columns() -> usize {
    // SAFETY: TIOCGWINSZ fills the `winsize` it is given and reads nothing else.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 {
        usize::from(ws.ws_col)
    } else {
        100
    }
}

/// `line` fitted to `width` columns, so that it never wraps (a wrapped line would break the
/// redraw, which moves up by lines): its least important parts — the `; `-separated ones at its
/// end — are left out first, then what is still too long is cut with an ellipsis.
fn fit(line: &str, width: usize) -> String {
    let room = width.saturating_sub(1);
    let mut line = line;
    while line.chars().count() > room {
        match line.rsplit_once("; ") {
            Some((kept, _)) => line = kept,
            None => break,
        }
    }
    if line.chars().count() <= room {
        return line.to_string();
    }
    let mut cut: String = line.chars().take(room.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Shows the tree until cancelled. On a terminal, a block of one line per node and per link is
/// redrawn in place twice a second, with the log's last line below it (the log itself goes to the
/// file `log` names, never into the block). Otherwise a line is printed whenever a link changes
/// state.
pub async fn watch(running: &Mutex<(Topology, Vec<Node>)>, log: Option<(PathBuf, LogTail)>) {
    let tty = std::io::stdout().is_terminal();
    let start = Instant::now();
    let mut drawn = 0usize;
    let mut drawn_width = 0usize;
    let mut last: Vec<(String, &'static str)> = Vec::new();
    loop {
        // What runs now: a reload may have added or removed nodes.
        let (topology, nodes) = running.lock().expect("not poisoned").clone();
        let views = views(&topology, &nodes);
        let mut out = String::new();
        if tty {
            let width = columns();
            let mut lines = Vec::new();
            // Columns as wide as the longest name, so that long names keep the alignment.
            let link_width = views
                .iter()
                .filter_map(|(_, l)| l.as_ref().map(|v| v.name.chars().count()))
                .max()
                .unwrap_or(0);
            for (node, link) in &views {
                lines.push(format!("  {node}"));
                if let Some(v) = link {
                    lines.push(format!(
                        "    {:<link_width$} {:<10} {}",
                        v.name, v.state, v.detail
                    ));
                }
            }
            if let Some((path, tail)) = &log {
                let (n, line) = tail.read();
                // The last line without its timestamp.
                let line = line
                    .split_once(' ')
                    .map_or(line.as_str(), |(_, l)| l)
                    .trim();
                lines.push(match n {
                    0 => format!("  log: {}, removed on exit; empty", path.display()),
                    n => format!(
                        "  log: {}, removed on exit; {}; last: {line}",
                        path.display(),
                        plural(n, "line")
                    ),
                });
            }
            if drawn > 0 && width != drawn_width {
                // Resized: the lines drawn at the old width may have wrapped into more rows than
                // were drawn, so moving up by lines would leave ghosts. Start from a clear screen.
                out.push_str("\x1b[2J\x1b[H");
            } else if drawn > 0 {
                let _ = write!(out, "\x1b[{drawn}A");
            }
            drawn_width = width;
            for line in &lines {
                let _ = write!(out, "\r\x1b[2K{}\n", fit(line, width));
            }
            out.push_str("\x1b[J");
            drawn = lines.len();
        } else {
            let links: Vec<&LinkView> = views.iter().filter_map(|(_, l)| l.as_ref()).collect();
            for v in &links {
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
            last = links.iter().map(|v| (v.name.clone(), v.state)).collect();
        }
        if !out.is_empty() {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(out.as_bytes());
            let _ = stdout.flush();
        }
        tokio::time::sleep(Duration::from_millis(if tty { 500 } else { 200 })).await;
    }
}

/// `n` and `what`, in the plural unless `n` is one: "1 link", "3 links", "1 entry", "0 entries".
pub fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else if let Some(stem) = what.strip_suffix('y') {
        format!("{n} {stem}ies")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_fits_by_leaving_out_its_least_important_parts_first() {
        let line = "    leaf -> hub  connected  lag to hub 0 (0 ms), from hub 0 (0 ms); last resync delta, 12 changes";
        assert_eq!(fit(line, 200), line);
        let at_80 = fit(line, 80);
        assert_eq!(
            at_80,
            "    leaf -> hub  connected  lag to hub 0 (0 ms), from hub 0 (0 ms)"
        );
        let narrow = fit(line, 30);
        assert_eq!(narrow.chars().count(), 29);
        assert!(narrow.ends_with('…'), "{narrow}");
        for width in 1..120 {
            assert!(fit(line, width).chars().count() < width.max(2), "{width}");
        }
    }
}
