//! The checks of a sharded topology file: every node names its shard or none does, no more
//! shards than a slot map holds, and no link across shards.

use std::collections::HashMap;

use super::check::{Checker, Placed};
use super::model::HubRef;

impl Checker<'_> {
    /// Shards: every node names one, or none does; a link stays within its shard.
    pub(super) fn shards(&mut self, nodes: &[Placed], names: &HashMap<&str, usize>) {
        let sharded: Vec<&Placed> = nodes.iter().filter(|n| n.shard.is_some()).collect();
        if let Some(first) = sharded.first() {
            for n in nodes.iter().filter(|n| n.shard.is_none()) {
                self.error(
                    n.name.clone(),
                    format!(
                        "node {:?} names no shard, and node {:?} does",
                        n.spec.name, first.spec.name
                    ),
                    "in a sharded file every node says its shard: shard = \"NAME\"".to_string(),
                );
            }
            let count = (sharded.iter())
                .filter_map(|n| n.spec.shard.as_deref())
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            if count > crate::partition::MAX_SHARDS {
                self.error(
                    first.shard.clone().unwrap_or(0..0),
                    format!(
                        "{count} shards; a cluster holds at most {}",
                        crate::partition::MAX_SHARDS
                    ),
                    None,
                );
            }
        }
        for n in nodes {
            let (Some(shard), Some(span)) = (&n.spec.shard, &n.hub) else {
                continue;
            };
            for hub in n.spec.hubs() {
                let HubRef::Node(hub) = hub else { continue };
                let other = (names.get(hub.as_str())).and_then(|&h| nodes[h].spec.shard.as_ref());
                if let Some(other) = other.filter(|o| *o != shard) {
                    self.error(
                    span.clone(),
                    format!(
                        "hub {hub:?} is in shard {other:?} and node {:?} in shard {shard:?}: a link never crosses shards",
                        n.spec.name
                    ),
                    "each shard is a tree of its own: name a hub of the same shard".to_string(),
                );
                }
            }
        }
    }
}
