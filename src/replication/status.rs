//! What a node reports about each of its links: [`LinkStatus`], read with
//! `Node::links`.

use serde::{Deserialize, Serialize};

use super::role::Role;
use crate::clock::NodeId;

/// Which way a link points in the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// To this node's hub (this node dialed it).
    Upstream,
    /// From one of this node's leaves (it dialed this node).
    Downstream,
}

/// Where a link stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    /// Dialing the hub, or waiting to dial again after a failure.
    Connecting,
    /// Connected; hello and proofs being exchanged.
    Handshaking,
    /// Authenticated; changes flow (a resync may still be streaming, see [`LinkStatus::sync`]).
    Up,
    /// Closed; an upstream link reconnects with backoff.
    Down,
    /// The handshake was refused (secret, cluster, version); retried only at the backoff cap.
    Refused,
}

/// Whether a resync sent the changes after the peer's watermark or everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncKind {
    /// The changes after the peer's watermark, from the change log.
    Delta,
    /// Every record, because the peer's watermark was unusable (unknown incarnation, or older
    /// than what the log still holds) and the peer held nothing.
    Full,
    /// No usable watermark, but the peer held records: the records of the key ranges where the
    /// peer's digest differs from this node's (see [`Message::Digest`](super::Message::Digest)).
    Digest,
}

impl std::fmt::Display for SyncKind {
    /// Lowercase, as logs and the `up` table say it: `delta`, `full`, `digest`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SyncKind::Delta => "delta",
            SyncKind::Full => "full",
            SyncKind::Digest => "digest",
        })
    }
}

/// The resync a link sends when it comes up: what it is and what it cost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Delta or full.
    pub kind: SyncKind,
    /// The seq it started after.
    pub from: u64,
    /// Records sent until it caught up with the log as it stood when the link came up.
    pub changes: u64,
    /// Frame bytes those records took, length prefixes included.
    pub bytes: u64,
    /// Records the log held to send when the link came up (those that came from the peer
    /// itself are among them but not sent, so `changes` may end below it).
    pub total_changes: u64,
    /// Key and value bytes of those records: about what `bytes` grows to.
    pub total_bytes: u64,
    /// Whether it caught up.
    pub done: bool,
}

/// One link's state and counters. Counters of an upstream link add up over its reconnections.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LinkStatus {
    /// The connection's id on this node.
    pub id: u32,
    /// Upstream (to our hub) or downstream (a leaf of ours).
    pub direction: Direction,
    /// Connecting, handshaking, up, down, refused.
    pub state: LinkState,
    /// The peer's address as dialed, or as it connected from.
    pub address: String,
    /// The peer's name, once it said hello.
    pub peer_name: Option<String>,
    /// The peer's node id, once it said hello. Serialized as its hex text: JSON numbers cannot
    /// hold 128 bits.
    #[serde(serialize_with = "crate::clock::opt_id_text::serialize")]
    pub peer_id: Option<NodeId>,
    /// The peer's role, once it said hello.
    pub peer_role: Option<Role>,
    /// Why the link last failed, if it did.
    pub last_error: Option<String>,
    /// When the link last stopped being up (wall ms since the epoch), or, for a hub never
    /// reached, when this node began dialing it; `None` while up.
    pub down_since_ms: Option<u64>,
    /// How long the link has been down, in ms, as of when the status was read (0 while up).
    pub down_ms: u64,
    /// Our seq the peer acknowledged applying up to.
    pub acked: u64,
    /// Our changes (in seqs) the peer has not acknowledged yet.
    pub lag_changes: u64,
    /// How old the oldest of our changes the peer has not acknowledged is, in ms (0 when the
    /// peer has them all): counted from the change's version, so a change relayed from elsewhere
    /// counts from when it was written there.
    pub lag_ms: u64,
    /// Frame bytes received.
    pub bytes_in: u64,
    /// Frame bytes sent.
    pub bytes_out: u64,
    /// Frames received.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Changes received.
    pub changes_in: u64,
    /// Changes received that were newer than what this node held, so applied.
    pub changes_applied: u64,
    /// Changes sent.
    pub changes_out: u64,
    /// Changes received for a cache this node does not have.
    pub unknown_cache_changes: u64,
    /// Full syncs sent on this link.
    pub full_syncs: u64,
    /// Delta syncs sent on this link.
    pub delta_syncs: u64,
    /// Syncs by difference sent on this link (no usable watermark, digests compared).
    pub digest_syncs: u64,
    /// Anti-entropy rounds this end ran on the link (the side that dialed runs them).
    #[serde(default)]
    pub antientropy_rounds: u64,
    /// Keys those rounds found different at both ends and had sent whole again.
    #[serde(default)]
    pub antientropy_repairs: u64,
    /// The latest resync sent, in progress or done.
    pub sync: Option<SyncReport>,
    /// Whether this connection came up (its handshake completed): an outage after it starts
    /// when it went down, not at an earlier connection's failure.
    #[serde(skip)]
    pub(crate) came_up: bool,
}

impl LinkStatus {
    /// A fresh status for a link to `address`.
    pub fn new(id: u32, direction: Direction, address: &str) -> Self {
        LinkStatus {
            id,
            direction,
            state: LinkState::Connecting,
            address: address.to_string(),
            peer_name: None,
            peer_id: None,
            peer_role: None,
            last_error: None,
            down_since_ms: None,
            down_ms: 0,
            acked: 0,
            lag_changes: 0,
            lag_ms: 0,
            bytes_in: 0,
            bytes_out: 0,
            frames_in: 0,
            frames_out: 0,
            changes_in: 0,
            changes_applied: 0,
            changes_out: 0,
            unknown_cache_changes: 0,
            full_syncs: 0,
            digest_syncs: 0,
            delta_syncs: 0,
            antientropy_rounds: 0,
            antientropy_repairs: 0,
            sync: None,
            came_up: false,
        }
    }

    /// Marks the link down at `now` (wall ms), unless it already was.
    pub(crate) fn went_down(&mut self, now: u64) {
        if self.down_since_ms.is_none() {
            self.down_since_ms = Some(now);
        }
    }

    /// Brings the figures that grow with time up to `now`: how long the link has been down, and
    /// its lag against our latest seq `current`, where `age_after(acked)` says how old the oldest
    /// change after `acked` is. A published status is otherwise as old as its last frame.
    pub(crate) fn refresh(&mut self, now: u64, current: u64, age_after: impl Fn(u64) -> u64) {
        self.down_ms = self.down_since_ms.map_or(0, |at| now.saturating_sub(at));
        self.lag_changes = current.saturating_sub(self.acked);
        self.lag_ms = if self.lag_changes == 0 {
            0
        } else {
            self.lag_ms.max(age_after(self.acked))
        };
    }

    /// Adds the counters of a previous connection of the same upstream link.
    pub(crate) fn carry(&mut self, before: &LinkStatus) {
        self.bytes_in += before.bytes_in;
        self.bytes_out += before.bytes_out;
        self.frames_in += before.frames_in;
        self.frames_out += before.frames_out;
        self.changes_in += before.changes_in;
        self.changes_applied += before.changes_applied;
        self.changes_out += before.changes_out;
        self.unknown_cache_changes += before.unknown_cache_changes;
        self.full_syncs += before.full_syncs;
        self.digest_syncs += before.digest_syncs;
        self.delta_syncs += before.delta_syncs;
        self.antientropy_rounds += before.antientropy_rounds;
        self.antientropy_repairs += before.antientropy_repairs;
        if self.sync.is_none() {
            self.sync.clone_from(&before.sync);
        }
        // A new attempt knows no peer and no error until its handshake: it keeps showing whom
        // the link is for and why the last attempt ended, not `peer: null, last_error: null`.
        if self.peer_id.is_none() {
            self.peer_id = before.peer_id;
            self.peer_name.clone_from(&before.peer_name);
        }
        if self.state != LinkState::Up {
            if self.last_error.is_none() {
                self.last_error.clone_from(&before.last_error);
            }
            // What the hub acknowledged stays acknowledged (seqs are this node's own, whatever
            // the connection): an attempt that has not reached it yet is not lag from zero.
            self.acked = self.acked.max(before.acked);
            // Down since the first attempt that failed, not since the latest one: unless this
            // connection came up, which ended that outage.
            if before.down_since_ms.is_some() && !self.came_up {
                self.down_since_ms = before.down_since_ms;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An attempt of the upstream link: failing at `failed`, after coming up or not.
    fn attempt(failed: u64, came_up: bool, before: Option<&LinkStatus>) -> LinkStatus {
        let mut st = LinkStatus::new(1, Direction::Upstream, "hub:1");
        st.came_up = came_up;
        st.state = LinkState::Down;
        st.went_down(failed);
        if let Some(before) = before {
            st.carry(before);
        }
        st
    }

    #[test]
    fn an_outage_counts_from_its_own_start_not_from_a_failure_before_the_link_came_up() {
        // The hub was not there at start-up (t = 1 s), nor at the next try (t = 2 s).
        let first = attempt(1_000, false, None);
        let second = attempt(2_000, false, Some(&first));
        assert_eq!(
            second.down_since_ms,
            Some(1_000),
            "one outage across failed tries"
        );
        // Then the link came up, and went down at t = 60 s.
        let up = attempt(60_000, true, Some(&second));
        assert_eq!(up.down_since_ms, Some(60_000));
        // Retries during this outage keep its start.
        let mut retry = attempt(61_000, false, Some(&up));
        assert_eq!(retry.down_since_ms, Some(60_000));
        retry.refresh(72_000, 0, |_| 0);
        assert_eq!(retry.down_ms, 12_000);
    }
}
