//! The ports through which the layers above serve the caches: [`Recorder`], where every applied
//! change is recorded (the op log, implemented by `persist`), and [`Uplink`], the caches' side of
//! the link to a hub (write acknowledgements and fetch on miss, fed by the link driver).
//!
//! The caches name only these; who implements them is wired up by the node.

use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use super::change::Change;
use super::merge::Merge;
use crate::clock::{Timestamp, Version};
use crate::error::Error;

/// What a cache holds for a key, or of itself, as it hands it to a [`Recorder`] when it applies a
/// change and to an export when a snapshot is taken. Borrowed from the shard that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stored<'a> {
    /// A live entry.
    Live {
        key: &'a [u8],
        value: &'a [u8],
        version: Version,
        /// Absolute expiry in ms, or `u64::MAX` for never.
        expires_at: u64,
    },
    /// A dead record: a tombstone, or a version dropped here (evicted, expired, too large).
    Dead {
        key: &'a [u8],
        version: Version,
        tombstone: bool,
        /// When the record was made, for its retention.
        since_ms: u64,
    },
    /// A key holding a value that merges: its whole state (in exports), or the part a change
    /// touched (as the change is recorded).
    Merged { merge: &'a Merge },
    /// The cache's purge mark.
    Purge { version: Version },
    /// Records at or below this seq were forgotten (only in exports).
    Floor,
}

/// On a node of a sharded cluster, the other shards as the caches see them: a miss in
/// `get_or_load`/`get_or_fetch` on a key another shard holds asks that shard before the loader.
pub(crate) trait Owners: Send + Sync {
    /// Whether another shard holds `key`.
    fn elsewhere(&self, key: &[u8]) -> bool;
    /// `key` of cache `index` as its shard holds it: `Ok(None)` a miss there, `Err` if the shard
    /// could not be asked.
    fn read(
        &self,
        index: u32,
        key: Bytes,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<Bytes>, String>> + Send>>;
}

/// Where a node records every change its caches apply, local or remote, and the ids it hands
/// out. Each applied change reaches [`record`](Self::record) exactly once, from one place
/// (`Cache::record`), under the shard lock that applied it, so per key the records are in seq
/// order.
pub(crate) trait Recorder: Send + Sync {
    /// Records change `seq` of cache `cache`. Returns `true` if the caller must call
    /// [`write_out`](Self::write_out) once it has released its locks.
    fn record(&self, cache: u32, seq: u64, stored: Stored<'_>) -> bool;
    /// Writes out what [`record`](Self::record) buffered.
    fn write_out(&self);
    /// Called with every seq handed out, before it is used.
    fn seq_issued(&self, seq: u64);
    /// Called with every version timestamp handed out, before it is used.
    fn version_issued(&self, ts: Timestamp);
    /// A purge was applied: the recorder should drop purged data soon (a snapshot).
    fn purged(&self);
}

/// Who hears of every key that changes in a node's caches, whatever changed it: a local write, a
/// change replicated from a peer, an eviction, an expiry, a purge, a resync. Client-side caching
/// (`CLIENT TRACKING`) is built on it: a near cache is told of each change, so it never stays
/// stale.
///
/// Called after the change is applied and its shard lock released, on the thread that applied
/// it; an implementation must not block.
pub(crate) trait Watcher: Send + Sync {
    /// `key` of cache `cache` changed or left the cache.
    fn changed(&self, cache: u32, key: &[u8]);
    /// Cache `cache` was purged: every key may have changed.
    fn cleared(&self, cache: u32);
}

/// A question for the hub on a local miss.
pub(crate) struct FetchRequest {
    pub cache: String,
    pub key: Bytes,
    pub reply: oneshot::Sender<Option<Change>>,
}

/// The caches' side of the node's link to its hub: how far the hub acknowledged this node's
/// changes, and a way to ask it for a key. The link driver feeds it ([`acked`](Self::acked),
/// [`set_fetcher`](Self::set_fetcher)); the caches wait on it.
pub(crate) struct Uplink {
    /// Whether the node has a hub at all.
    configured: bool,
    /// Our seq the hub acknowledged applying up to.
    acked: watch::Sender<u64>,
    /// Open while the upstream link is up.
    fetch: Mutex<Option<mpsc::Sender<FetchRequest>>>,
    /// How long a miss waits for the hub; `None`: misses do not ask.
    pub fetch_timeout: Option<Duration>,
    /// How long an acknowledged write waits.
    pub ack_timeout: Duration,
}

impl Uplink {
    pub fn new(configured: bool, fetch_timeout: Option<Duration>, ack_timeout: Duration) -> Self {
        Uplink {
            configured,
            acked: watch::Sender::new(0),
            fetch: Mutex::new(None),
            fetch_timeout,
            ack_timeout,
        }
    }

    /// The hub applied this node's changes up to `upto`.
    pub fn acked(&self, upto: u64) {
        self.acked.send_if_modified(|a| {
            let moved = upto > *a;
            *a = (*a).max(upto);
            moved
        });
    }

    /// Waits until the hub has applied this node's changes up to `seq`.
    pub async fn wait_acked(&self, seq: u64) -> Result<(), Error> {
        if !self.configured {
            return Err(Error::NoUpstream);
        }
        let mut rx = self.acked.subscribe();
        match tokio::time::timeout(self.ack_timeout, rx.wait_for(|&a| a >= seq)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Error::NoUpstream),
            Err(_) => Err(Error::Timeout {
                what: "acknowledgement from the hub",
                after: self.ack_timeout,
            }),
        }
    }

    /// How far the hub acknowledged this node's changes.
    pub fn acked_upto(&self) -> u64 {
        *self.acked.borrow()
    }

    /// Whether this node has a hub.
    pub fn configured(&self) -> bool {
        self.configured
    }

    /// Waits until the hub acknowledged applying this node's changes up to `seq`, at most
    /// `timeout` (`None`: as long as it takes). Returns whether it did.
    pub async fn wait_acked_within(&self, seq: u64, timeout: Option<Duration>) -> bool {
        if !self.configured {
            return false;
        }
        let mut rx = self.acked.subscribe();
        let acked = rx.wait_for(|&a| a >= seq);
        match timeout {
            Some(t) => matches!(tokio::time::timeout(t, acked).await, Ok(Ok(_))),
            None => acked.await.is_ok(),
        }
    }

    /// Where fetches go while the upstream link is up; `None` when it is down.
    pub fn set_fetcher(&self, tx: Option<mpsc::Sender<FetchRequest>>) {
        *self.fetch.lock() = tx;
    }

    /// Asks the hub for `key` of `cache`; `None` when fetching is off, the link is down, the hub
    /// does not hold the key, or it does not answer in time.
    pub async fn fetch(&self, cache: &str, key: &Bytes) -> Option<Change> {
        let timeout = self.fetch_timeout?;
        let tx = self.fetch.lock().clone()?;
        let (reply, rx) = oneshot::channel();
        let request = FetchRequest {
            cache: cache.to_string(),
            key: key.clone(),
            reply,
        };
        tokio::time::timeout(timeout, async {
            tx.send(request).await.ok()?;
            rx.await.ok().flatten()
        })
        .await
        .ok()
        .flatten()
    }
}
