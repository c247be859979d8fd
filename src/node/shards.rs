//! What a node of a sharded cluster knows of the other shards' health: a prober that asks each
//! other shard's doors `PING` every half connection timeout, and the state it keeps for
//! `/health`, `/v1/cluster` and the dashboard.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::Node;
use super::remote::{Forwarder, Target, bulk_value, encode};

/// One other shard as this node last found it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ShardHealth {
    /// The shard's name.
    pub name: String,
    /// How many of the 16,384 slots it holds.
    pub slots: usize,
    /// Whether one of its doors answered the last `PING` within the connection timeout.
    pub reachable: bool,
    /// How long it has been unreachable, in ms (0 when reachable).
    pub down_ms: u64,
    /// Why the last probe failed, if it did.
    pub last_error: Option<String>,
    /// This node's own shard (not probed).
    pub mine: bool,
}

/// The probes' results by shard, and since when each shard has been down.
#[derive(Debug, Default)]
pub(crate) struct Probed {
    down_since: BTreeMap<String, (u64, String)>,
}

impl Node {
    /// Every shard of this node's cluster with what this node last found of it: the slots it
    /// holds, whether it answers (see [`ShardHealth`]). Empty on a node of one tree.
    pub fn shard_health(&self) -> Vec<ShardHealth> {
        let Some(shards) = self.shards() else {
            return Vec::new();
        };
        let probed = self.inner.probed.lock();
        let now = self.now_ms();
        (shards.map.shards().iter().enumerate())
            .map(|(i, name)| {
                let down = probed.down_since.get(name);
                ShardHealth {
                    name: name.clone(),
                    slots: shards.map.slots_of(i),
                    reachable: down.is_none(),
                    down_ms: down.map_or(0, |(since, _)| now.saturating_sub(*since)),
                    last_error: down.map(|(_, why)| why.clone()),
                    mine: i == shards.mine,
                }
            })
            .collect()
    }

    /// Starts the prober, on a node of a sharded cluster built inside a runtime.
    pub(crate) fn probe_shards(&self) {
        if self.shards().is_none() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let node = self.clone();
        let registry = self.inner.registry.clone();
        registry.clone().tasks.spawn(async move {
            let timeout = node.replication_config().connection_timeout;
            let every = (timeout / 2).max(Duration::from_millis(50));
            loop {
                tokio::select! {
                    _ = registry.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                node.probe_once(timeout).await;
            }
        });
    }

    /// One round: every other shard's doors, until one answers.
    async fn probe_once(&self, timeout: Duration) {
        let Some(shards) = self.shards() else { return };
        let password = self.inner.doors.password.clone();
        for (i, nodes) in shards.members.iter().enumerate() {
            if i == shards.mine {
                continue;
            }
            let name = &shards.map.shards()[i];
            let mut outcome = Err("no node of it has a RESP door".to_string());
            for door in nodes.iter().filter_map(|n| n.resp.as_deref()) {
                outcome = ping(&self.inner.remote, door, password.clone(), timeout).await;
                if outcome.is_ok() {
                    break;
                }
            }
            let now = self.now_ms();
            let mut probed = self.inner.probed.lock();
            match outcome {
                Ok(()) => {
                    if probed.down_since.remove(name).is_some() {
                        tracing::info!(node = self.name(), shard = %name, "shard reachable again");
                    }
                }
                Err(why) => {
                    if !probed.down_since.contains_key(name) {
                        tracing::warn!(node = self.name(), shard = %name, error = %why, "shard unreachable: its keys read as misses, its writes fail");
                    }
                    let entry = probed
                        .down_since
                        .entry(name.clone())
                        .or_insert((now, String::new()));
                    entry.1 = why;
                }
            }
        }
    }
}

/// The other shards as a node's caches see them (the caches' `Owners` port): a miss in
/// `get_or_load` on another shard's key asks that shard's door.
pub(crate) struct Owners {
    pub node: std::sync::Weak<super::NodeInner>,
}

impl crate::cache::ports::Owners for Owners {
    fn elsewhere(&self, key: &[u8]) -> bool {
        let Some(inner) = self.node.upgrade() else {
            return false;
        };
        let shards = inner.shards.read();
        shards
            .as_ref()
            .is_some_and(|s| !s.owns(crate::partition::key_slot(key)))
    }

    fn read(
        &self,
        index: u32,
        key: bytes::Bytes,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Option<bytes::Bytes>, String>> + Send>,
    > {
        let node = self.node.upgrade();
        Box::pin(async move {
            let inner = node.ok_or("the node is gone")?;
            let shards = inner.shards.read().clone().ok_or("not sharded")?;
            let door = shards
                .address_for(crate::partition::key_slot(&key))
                .ok_or("no door of the key's shard")?
                .to_string();
            let (password, timeout) = (
                inner.doors.password.clone(),
                inner.config.connection_timeout,
            );
            get_at(&inner.remote, &door, password, index, &key, timeout).await
        })
    }
}

/// `GET key` of cache `index` at `door`: the value, or `None`.
async fn get_at(
    remote: &Forwarder,
    door: &str,
    password: Option<Arc<[u8]>>,
    index: u32,
    key: &[u8],
    timeout: Duration,
) -> Result<Option<bytes::Bytes>, String> {
    let target = Target {
        address: door.to_string(),
        resp3: false,
        db: index as usize,
    };
    let reply = remote
        .forward(
            &target,
            password.as_deref(),
            &encode(&[b"GET", key]),
            1,
            timeout,
        )
        .await?;
    match reply.first() {
        Some(b'-') => Err(format!(
            "{door}: {}",
            String::from_utf8_lossy(&reply[1..]).trim_end()
        )),
        _ => Ok(bulk_value(&reply)),
    }
}

/// `PING` at `door`: `Ok` on `+PONG`.
async fn ping(
    remote: &Forwarder,
    door: &str,
    password: Option<Arc<[u8]>>,
    timeout: Duration,
) -> Result<(), String> {
    let target = Target {
        address: door.to_string(),
        resp3: false,
        db: 0,
    };
    let reply = remote
        .forward(
            &target,
            password.as_deref(),
            &encode(&[b"PING"]),
            1,
            timeout,
        )
        .await
        .map_err(|e| format!("{door}: {e}"))?;
    if &reply[..] == b"+PONG\r\n" {
        Ok(())
    } else {
        Err(format!(
            "{door}: PING answered {}",
            String::from_utf8_lossy(&reply).trim_end()
        ))
    }
}
