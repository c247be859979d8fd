//! A node's place in the tree, as it tells its peers and its status shows.

use serde::{Deserialize, Serialize};

/// A node's place in the tree. In JSON, lowercase (`"hub"`); on the wire, its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Accepts leaves, has no hub.
    Hub,
    /// Has a hub, accepts no leaves.
    Leaf,
    /// Has a hub and accepts leaves.
    Relay,
    /// Neither (only seen in tests driving links by hand).
    Standalone,
}

impl Role {
    /// The role of a node that does or does not accept leaves and have a hub.
    pub fn of(accepts: bool, has_hub: bool) -> Role {
        match (accepts, has_hub) {
            (true, false) => Role::Hub,
            (false, true) => Role::Leaf,
            (true, true) => Role::Relay,
            (false, false) => Role::Standalone,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Hub => "hub",
            Role::Leaf => "leaf",
            Role::Relay => "relay",
            Role::Standalone => "standalone",
        })
    }
}
