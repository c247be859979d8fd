//! The named caches of one node, sharing one [`Core`]: lookup by name, and the node-wide reads
//! replication makes over all of them (changes in seq order, the floor).

use std::collections::HashMap;
use std::sync::Arc;

use super::core::Core;
use super::{Cache, CacheConfig, Change};
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

    /// The records of all caches with `after < seq <= upto` not from link `skip`, in seq order, as
    /// (cache index, change), at most `max_records` and about `max_bytes`; and the seq the answer
    /// is complete up to (`upto` unless a limit cut it short).
    pub(crate) fn collect_changes(
        &self,
        after: u64,
        upto: u64,
        max_records: usize,
        max_bytes: usize,
        skip: u32,
    ) -> (Vec<(usize, Change)>, u64) {
        let mut reached = upto;
        let mut all: Vec<(u64, usize, Change)> = Vec::new();
        for (i, cache) in self.list.iter().enumerate() {
            let records = cache.changes_between(after, upto, max_records, skip);
            if records.len() >= max_records
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
            if bytes > max_bytes && j > 0 {
                reached = all[j - 1].0;
                all.truncate(j);
                break;
            }
        }
        (all.into_iter().map(|(_, i, c)| (i, c)).collect(), reached)
    }
}

/// About what a change takes on the wire.
fn approx_size(change: &Change) -> usize {
    match change {
        Change::Set { key, value, .. } => key.len() + value.len() + 48,
        Change::Delete { key, .. } | Change::Invalidate { key, .. } => key.len() + 40,
        Change::Purge { .. } => 40,
    }
}
