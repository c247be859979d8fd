//! What nodes tell each other about the tree: a small [`NodeSummary`] per node, passed along the
//! links in [`Message::Status`](super::Message::Status) so that every node can show the whole
//! tree (`/v1/cluster`, the dashboard), bounded in count and size, rate-limited by the driver.

use serde::{Deserialize, Serialize};

use super::role::Role;
use super::status::{LinkState, SyncReport};
use crate::clock::{NodeId, id_text, opt_id_text};

/// Summaries one status message carries, at most: a tree larger than this shows its nearest
/// nodes and says how many it left out.
pub const MAX_SUMMARIES: usize = 256;

/// Longest text (name, address, error, problem) a summary keeps, in bytes.
pub const MAX_TEXT: usize = 200;

/// Problems a summary keeps, at most.
const MAX_PROBLEMS: usize = 4;

/// One node as the tree sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSummary {
    /// The node's id. Serialized in JSON as its hex text.
    #[serde(with = "id_text")]
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its hub's id, once it linked to it.
    #[serde(with = "opt_id_text")]
    pub hub: Option<NodeId>,
    /// Its HTTP door (where its own dashboard is), if it has one.
    pub http: Option<String>,
    /// Entries in all its caches.
    pub entries: u64,
    /// Accounted bytes of all its caches.
    pub bytes: u64,
    /// The last seq it stamped: how many changes it has made or applied.
    pub seq: u64,
    /// Its links that are up.
    pub links_up: u32,
    /// Its link to its hub, if it has one.
    pub upstream: Option<UplinkSummary>,
    /// Why it is not healthy (persistence), if it is not.
    pub problems: Vec<String>,
    /// How old this summary is, in ms: 0 when its node sends it, grown by each node that passes
    /// it on by how long it held it.
    pub age_ms: u64,
    /// A node on the way lost its link toward this one: this is its last known state.
    pub stale: bool,
}

/// A node's link to its hub, in its [`NodeSummary`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkSummary {
    /// Where the link stands.
    pub state: LinkState,
    /// The hub's address as dialed.
    pub address: String,
    /// The node's changes the hub has not acknowledged.
    pub lag_changes: u64,
    /// How old the oldest of them is, in ms.
    pub lag_ms: u64,
    /// How long the link has been down, in ms (0 while up).
    pub down_ms: u64,
    /// Changes received from the hub.
    pub changes_in: u64,
    /// Changes sent to the hub.
    pub changes_out: u64,
    /// Why the link last failed.
    pub last_error: Option<String>,
    /// The latest resync sent to the hub.
    pub sync: Option<SyncReport>,
}

impl NodeSummary {
    /// Cuts every text to [`MAX_TEXT`] and the problems to a few: what a peer sent is kept only
    /// this large.
    pub fn bounded(mut self) -> Self {
        cut(&mut self.name);
        if let Some(h) = &mut self.http {
            cut(h);
        }
        self.problems.truncate(MAX_PROBLEMS);
        self.problems.iter_mut().for_each(cut);
        if let Some(u) = &mut self.upstream {
            cut(&mut u.address);
            if let Some(e) = &mut u.last_error {
                cut(e);
            }
        }
        self
    }
}

/// Cuts `s` to at most [`MAX_TEXT`] bytes, at a character boundary.
fn cut(s: &mut String) {
    if s.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_is_cut_to_its_bounds_at_character_boundaries() {
        let s = NodeSummary {
            id: NodeId(7),
            name: "é".repeat(300),
            role: Role::Leaf,
            hub: None,
            http: None,
            entries: 0,
            bytes: 0,
            seq: 0,
            links_up: 0,
            upstream: None,
            problems: vec!["p".into(); 10],
            age_ms: 0,
            stale: false,
        }
        .bounded();
        assert!(s.name.len() <= MAX_TEXT && s.name.chars().all(|c| c == 'é'));
        assert_eq!(s.problems.len(), MAX_PROBLEMS);
    }
}
