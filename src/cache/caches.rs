//! The named caches of one node, sharing one [`Core`]: lookup by name, and the node-wide reads
//! replication makes over all of them (changes in seq order, the floor).

use std::collections::HashMap;
use std::sync::Arc;

use super::core::Core;
use super::{Budget, Cache, CacheConfig, Change, Scan};
use crate::error::Error;

/// The name of the cache every node has.
pub const DEFAULT_CACHE: &str = "default";

/// A node's caches, `default` first, then in the order they were declared: the replica a node's
/// links run over (replication implements its `Replica` trait for this type; see
/// `Node::new_link`). Cheap to clone.
#[derive(Clone)]
pub struct Caches {
    core: Arc<Core>,
    list: Arc<[Cache]>,
    by_name: Arc<HashMap<String, usize>>,
}

/// The largest batch a group is stretched to (half the default frame); a larger group is sent
/// split.
const MAX_GROUP_BATCH_BYTES: usize = 8 << 20;

impl Caches {
    /// Builds the caches on `core`: `default` with its configuration, then the named ones.
    pub(crate) fn new(
        core: Arc<Core>,
        default: &CacheConfig,
        named: &[(String, CacheConfig)],
    ) -> Result<Self, Error> {
        let mut list = vec![Cache::new(DEFAULT_CACHE, 0, default, core.clone())?];
        let mut by_name = HashMap::from([(DEFAULT_CACHE.to_string(), 0)]);
        for (name, config) in named {
            by_name.insert(name.clone(), list.len());
            let index = u32::try_from(list.len()).unwrap_or(u32::MAX);
            list.push(Cache::new(name, index, config, core.clone())?);
        }
        Ok(Caches {
            core,
            list: list.into(),
            by_name: Arc::new(by_name),
        })
    }

    /// Installs the watcher told of every changed key (once, before the doors open); the
    /// shards start listing the keys they drop by themselves.
    pub(crate) fn set_watcher(&self, watcher: Arc<dyn super::ports::Watcher>) {
        if self.core.set_watcher(watcher) {
            for cache in self.list.iter() {
                cache.report_drops();
            }
        }
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    pub(crate) fn all(&self) -> &[Cache] {
        &self.list
    }

    /// The cache named `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Cache> {
        self.by_name.get(name).map(|&i| &self.list[i])
    }

    /// The highest seq any cache forgot a record at: a peer watermark below it needs a full sync.
    pub(crate) fn floor(&self) -> u64 {
        self.list.iter().map(Cache::floor).max().unwrap_or(0)
    }

    /// How long ago, in ms at `now`, the oldest change after seq `after` was written (by its
    /// version's timestamp; 0 if there is none, or its writer's clock is ahead): how far behind
    /// a peer that acknowledged up to `after` is.
    pub(crate) fn age_after(&self, after: u64, now: u64) -> u64 {
        self.list
            .iter()
            .filter_map(|c| c.written_after(after))
            .min()
            .map_or(0, |at| now.saturating_sub(at))
    }

    /// The records of all caches that `scan` covers, in seq order, as (cache index, change),
    /// within `budget`; the seq the answer is complete up to (`scan.upto` unless the budget cut it
    /// short); and whether it holds changes made together, which the receiver must apply together.
    ///
    /// The answer never ends inside a group ([`groups`](super::groups)): it ends before one, or,
    /// when it starts with one, reaches its end whatever the limits.
    pub(crate) fn collect_changes(
        &self,
        scan: Scan,
        budget: Budget,
    ) -> (Vec<(usize, Change)>, u64, bool) {
        let after = scan.after;
        // Under the gate, so that no transaction is half made while its changes are read: one
        // that is running finishes (and registers its group) first.
        let _shared = self.core.gate.read();
        let strip =
            |all: Vec<(u64, usize, Change)>| all.into_iter().map(|(_, i, c)| (i, c)).collect();
        let (mut all, mut reached) = self.collect(scan, budget);
        let groups = &self.core.groups;
        if !groups.any() {
            return (strip(all), reached, false);
        }
        match groups.cut(after, reached) {
            super::groups::Cut::Keep => {}
            super::groups::Cut::Before(end) => {
                all.retain(|r| r.0 <= end);
                reached = end;
            }
            super::groups::Cut::Extend(end) => {
                let whole_group = Scan { upto: end, ..scan };
                let unbounded = Budget {
                    records: usize::MAX,
                    bytes: usize::MAX,
                };
                let (whole, to) = self.collect(whole_group, unbounded);
                let bytes: usize = whole.iter().map(|r| approx_size(&r.2)).sum();
                if bytes <= MAX_GROUP_BATCH_BYTES {
                    (all, reached) = (whole, to);
                } else {
                    // Too large for one frame: sent split, as if it were not a group.
                    tracing::debug!(bytes, "a group too large for one batch is sent split");
                    return (strip(all), reached, false);
                }
            }
        }
        let together = groups.within(after, reached);
        (strip(all), reached, together)
    }

    fn collect(&self, scan: Scan, budget: Budget) -> (Vec<(u64, usize, Change)>, u64) {
        let mut reached = scan.upto;
        let mut all: Vec<(u64, usize, Change)> = Vec::new();
        let scan = Scan {
            since: scan.since.min(scan.after),
            ..scan
        };
        for (i, cache) in self.list.iter().enumerate() {
            let records = cache.changes_between(scan, budget.records);
            if records.len() >= budget.records
                && let Some(last) = records.last()
            {
                reached = reached.min(last.seq);
            }
            all.extend(records.into_iter().map(|s| (s.seq, i, s.change)));
        }
        all.retain(|r| r.0 <= reached);
        all.sort_unstable_by_key(|r| r.0);
        let mut bytes = 0;
        for j in 0..all.len() {
            bytes += approx_size(&all[j].2);
            if bytes > budget.bytes && j > 0 {
                reached = all[j - 1].0;
                all.truncate(j);
                break;
            }
        }
        (all, reached)
    }
}

/// About what a change takes on the wire.
pub(crate) fn approx_size(change: &Change) -> usize {
    match change {
        Change::Set { key, value, .. } => key.len() + value.len() + 48,
        Change::Delete { key, .. } | Change::Invalidate { key, .. } => key.len() + 40,
        Change::Purge { .. } => 40,
        Change::Merge(m) => {
            m.key.len()
                + 96
                + match &m.body {
                    super::merge::Body::Counter { parts, .. } => parts.len() * 48,
                    super::merge::Body::Hash { fields, .. } => fields
                        .iter()
                        .map(|(k, f)| k.len() + f.read().map_or(0, |v| v.len()) + 64)
                        .sum(),
                }
        }
    }
}
