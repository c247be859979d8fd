//! What a node of a sharded cluster knows of the other shards' health: a prober that asks each
//! other shard's doors `PING` every half connection timeout, and the state it keeps for
//! `/health`, `/v1/cluster` and the dashboard.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Node;

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
                outcome = match tokio::time::timeout(timeout, ping(door, password.clone())).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("{door}: no answer within {timeout:?}")),
                };
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

/// `PING` (after `AUTH` if the doors have a password) at `door`: `Ok` on `+PONG`.
async fn ping(door: &str, password: Option<Arc<[u8]>>) -> Result<(), String> {
    let mut stream = TcpStream::connect(door)
        .await
        .map_err(|e| format!("{door}: {e}"))?;
    let mut request = Vec::new();
    if let Some(p) = &password {
        request.extend_from_slice(format!("*2\r\n$4\r\nAUTH\r\n${}\r\n", p.len()).as_bytes());
        request.extend_from_slice(p);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
    stream
        .write_all(&request)
        .await
        .map_err(|e| format!("{door}: {e}"))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.ends_with(b"+PONG\r\n") {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("{door}: {e}"))?;
        if n == 0 || got.len() > 4096 {
            return Err(format!("{door}: closed without answering PING"));
        }
        got.extend_from_slice(&buf[..n]);
        if got.starts_with(b"-") {
            return Err(format!(
                "{door}: {}",
                String::from_utf8_lossy(&got[1..]).trim_end()
            ));
        }
    }
    Ok(())
}
