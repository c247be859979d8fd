//! The node's persistence task: periodic snapshots, timed write-outs of the op log, leases moved
//! ahead off the write path.

use std::sync::Arc;
use std::time::Duration;

use tracing::error;

use super::oplog::*;
use super::*;
use crate::cache::Caches;
use crate::clock::NodeId;
use crate::replication::message::Resume;

/// The node's persistence task: writes a snapshot every interval or when one is asked for, and
/// with [`Flush::Every`] writes the op log out on its period. Ends at shutdown, which writes the
/// final snapshot itself.
pub(crate) async fn run(
    caches: Caches,
    marks: impl Fn() -> Vec<(NodeId, Resume)> + Send + 'static,
    journal: Arc<Journal>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let core = caches.core().clone();
    let mut snapshot_at = tokio::time::Instant::now() + journal.snapshot_every;
    let flush_every = match journal.flush {
        Flush::Every(d) => d,
        // Still look at the lease and the buffer now and then.
        Flush::Always | Flush::Never => Duration::from_secs(1),
    };
    let mut tick = tokio::time::interval(flush_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let snapshot = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => false,
            _ = tokio::time::sleep_until(snapshot_at) => true,
            _ = journal.wanted.notified() => true,
        };
        if !snapshot {
            if matches!(journal.flush, Flush::Every(_)) {
                journal.write_out();
            }
            // Move the seq lease ahead here, half a block early, rather than in a write.
            journal.check_lease(core.current_seq().saturating_add(LEASE_BLOCK / 2));
            journal.check_clock(core.hlc.last().saturating_add(CLOCK_BLOCK / 2));
            continue;
        }
        let (c, j, m) = (caches.clone(), journal.clone(), marks());
        let written = tokio::task::spawn_blocking(move || j.snapshot(&c, &m)).await;
        match written {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                error!(root = %journal.root.display(), "snapshot failed, the op log keeps the changes: {e}")
            }
            Err(e) => error!("snapshot task failed: {e}"),
        }
        snapshot_at = tokio::time::Instant::now() + journal.snapshot_every;
    }
}
