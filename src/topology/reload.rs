//! Reloading a topology file into running nodes: what changed between the file the nodes run and
//! its new text, what of it applies live (nodes added or removed, hubs, cache capacities and
//! times to live), and what is refused at the line that asks for it (everything else a node
//! binds, opens or tells its peers at start). A reload applies all of it or nothing.

use std::collections::HashMap;
use std::ops::Range;

use super::diagnostics::{Diagnostic, Source, TopologyError};
use super::model::{CacheTableConfig, HubRef, NodeSpec, Topology, build};
use crate::Node;

/// What a new version of a topology file asks of the nodes running the old one, from
/// [`Topology::reload_plan`].
#[derive(Debug, Default)]
pub struct ReloadPlan {
    /// Nodes the new file has and the old did not, in file order (started by a reload of every
    /// node, ignored by a reload of one).
    pub added: Vec<String>,
    /// Nodes the old file had and the new does not (stopped by a reload of every node).
    pub removed: Vec<String>,
    /// Nodes with hubs in both files whose hub list changed.
    pub hubs: Vec<String>,
    /// Caches whose capacity (`capacity`, `max_bytes`) or times to live (`ttl`,
    /// `tombstone_ttl`) changed, with their new settings.
    pub caches: Vec<(String, CacheTableConfig)>,
    /// The shards before and after, when they change: slots move to their new owners, which
    /// read a key they miss through from its previous one until the move ends.
    pub reshard: Option<(Vec<String>, Vec<String>)>,
    /// Changes that cannot be made while the nodes run, each at the line of the new file that
    /// asks for it. A plan with any is not applied.
    pub refused: Vec<Diagnostic>,
}

/// How long a move of slots lasts, in connection timeouts: the new owners read through from the
/// old ones meanwhile, then every node drops the keys of slots it no longer holds.
pub const MOVE_TIMEOUTS: u32 = 3;

impl ReloadPlan {
    /// Whether the new file changes nothing the nodes run with.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.hubs.is_empty()
            && self.caches.is_empty()
            && self.reshard.is_none()
            && self.refused.is_empty()
    }
}

/// What a reload did, one line per change, for the log.
pub type Applied = Vec<String>;

impl Topology {
    /// Compares this topology (the one the nodes run) with `new`, the file's new text checked.
    /// With `only`, for a process running that one node: other nodes' changes are not its
    /// business, and its own removal from the file is refused.
    ///
    /// ```
    /// use leafcache::topology::Topology;
    /// let old = Topology::parse(
    ///     "[cluster]\nsecret = \"s\"\n[defaults]\ncapacity = 1000\n\
    ///      [[node]]\nname = \"hub\"\nlisten = \"127.0.0.1:7400\"\n\
    ///      [[node]]\nname = \"leaf\"\nhub = \"hub\"\nresp = \"127.0.0.1:6401\"\n",
    ///     "t.toml",
    /// )?;
    /// let new = Topology::parse(
    ///     "[cluster]\nsecret = \"s\"\n[defaults]\ncapacity = 5000\n\
    ///      [[node]]\nname = \"hub\"\nlisten = \"127.0.0.1:7400\"\n\
    ///      [[node]]\nname = \"leaf\"\nhub = \"hub\"\nresp = \"127.0.0.1:6402\"\n",
    ///     "t.toml",
    /// )?;
    /// let plan = old.reload_plan(&new, None);
    /// assert_eq!(plan.caches[0].1.capacity, Some(5000));
    /// // A door is bound at start: moving it is refused, at its line.
    /// assert_eq!(plan.refused.len(), 1);
    /// assert_eq!(plan.refused[0].line, 11);
    /// assert!(plan.refused[0].message.contains("resp"));
    /// # Ok::<(), leafcache::topology::TopologyError>(())
    /// ```
    pub fn reload_plan(&self, new: &Topology, only: Option<&str>) -> ReloadPlan {
        let mut plan = ReloadPlan::default();
        let at = Locator::new(new);
        let mut refused = Vec::new();
        let mut refuse = |span: Range<usize>, message: String, help: &str| {
            refused.push(Diagnostic::at(
                &at.source(),
                span,
                message,
                Some(help.to_string()),
            ));
        };
        let restart = "a running node keeps it: restart the node for it, or put the old value back";

        // The cluster: what every link proves and speaks.
        if self.cluster != new.cluster {
            refuse(
                at.key(&["cluster"], "name"),
                "the cluster name cannot change while nodes run".into(),
                restart,
            );
        }
        if self.secret != new.secret {
            let key = ["secret", "secret_env", "secret_file"]
                .into_iter()
                .map(|k| at.key(&["cluster"], k))
                .find(|s| !s.is_empty())
                .unwrap_or(0..0);
            refuse(
                key,
                "the cluster secret cannot change while nodes run".into(),
                restart,
            );
        }
        if self.tls != new.tls {
            refuse(
                at.table(&["cluster.tls"]),
                "[cluster.tls] cannot change while nodes run (new certificates at the same paths \
                 are picked up by themselves)"
                    .into(),
                restart,
            );
        }
        for (key, same) in [
            (
                "connection_timeout",
                self.connection_timeout == new.connection_timeout,
            ),
            ("anti_entropy", self.anti_entropy == new.anti_entropy),
        ] {
            if !same {
                refuse(
                    at.key(&["defaults"], key),
                    format!("{key} cannot change while nodes run"),
                    restart,
                );
            }
        }

        // Shards: a new map moves slots while the nodes run (see `reload_all`), but a file of
        // one tree does not become a sharded one, nor the other way.
        if self.shards() != new.shards() {
            if self.shards().is_empty() || new.shards().is_empty() {
                let first = new.nodes.iter().position(|n| n.shard.is_some());
                refuse(
                    first.map_or(0..0, |i| new.name_spans[i].clone()),
                    "a file of one tree and a sharded file cannot replace each other while nodes run".into(),
                    restart,
                );
            } else {
                plan.reshard = Some((self.shards(), new.shards()));
            }
        }
        // Caches: added or removed caches, policies and origins take a restart.
        let old_caches: HashMap<&str, &CacheTableConfig> =
            self.caches.iter().map(|(n, c)| (n.as_str(), c)).collect();
        for (name, settings) in &new.caches {
            let tables = [format!("caches.{name}"), "defaults".to_string()];
            let tables: Vec<&str> = tables.iter().map(String::as_str).collect();
            let Some(old) = old_caches.get(name.as_str()) else {
                refuse(
                    at.table(&tables[..1]),
                    format!("cache {name:?} is new; caches cannot be added while nodes run"),
                    restart,
                );
                continue;
            };
            for (key, same) in [
                ("eviction", old.eviction == settings.eviction),
                ("origin", old.origin == settings.origin),
                (
                    "origin_timeout",
                    old.origin_timeout == settings.origin_timeout,
                ),
            ] {
                if !same {
                    refuse(
                        at.key(&tables, key),
                        format!("{key} of cache {name:?} cannot change while nodes run"),
                        restart,
                    );
                }
            }
            let live = |c: &CacheTableConfig| (c.capacity, c.max_bytes, c.ttl, c.tombstone_ttl);
            if live(old) != live(settings) {
                plan.caches.push((name.clone(), settings.clone()));
            }
        }
        for (name, _) in &self.caches {
            if !new.caches.iter().any(|(n, _)| n == name) {
                refuse(
                    0..0,
                    format!(
                        "cache {name:?} is gone from the file; caches cannot be removed while nodes run"
                    ),
                    restart,
                );
            }
        }

        // Nodes.
        let in_scope = |name: &str| only.is_none_or(|o| o == name);
        for (i, spec) in new.nodes.iter().enumerate() {
            let Some(old) = self.find(&spec.name) else {
                if only.is_none() {
                    plan.added.push(spec.name.clone());
                }
                continue;
            };
            if !in_scope(&spec.name) {
                continue;
            }
            let name_span = new.name_spans[i].clone();
            for (key, same) in node_fields(old, spec) {
                if !same {
                    let span = at.node_key(&spec.name, key);
                    let span = if span.is_empty() {
                        name_span.clone()
                    } else {
                        span
                    };
                    refuse(
                        span,
                        format!("{key} of node {:?} cannot change while it runs", spec.name),
                        restart,
                    );
                }
            }
            let hubs = |s: &NodeSpec| s.hubs().cloned().collect::<Vec<HubRef>>();
            let (was, now) = (hubs(old), hubs(spec));
            if was.is_empty() != now.is_empty() {
                let span = at.node_key(&spec.name, "hub");
                refuse(
                    if span.is_empty() { name_span } else { span },
                    format!(
                        "node {:?} {} a hub: its role changes, which its peers are told at start",
                        spec.name,
                        if now.is_empty() {
                            "no longer has"
                        } else {
                            "gains"
                        }
                    ),
                    restart,
                );
            } else if !now.is_empty() {
                // Listed whether or not its hubs' names changed: a hub's address may have.
                plan.hubs.push(spec.name.clone());
            }
        }
        for old in &self.nodes {
            if new.find(&old.name).is_none() {
                if only == Some(old.name.as_str()) {
                    refuse(
                        0..0,
                        format!("node {:?} is gone from the file", old.name),
                        "stop the process that runs it instead",
                    );
                } else if only.is_none() {
                    plan.removed.push(old.name.clone());
                }
            }
        }
        plan.refused = refused;
        plan
    }

    /// Applies `new` to `node`, the one node of this topology a process runs (what SIGHUP does
    /// to `leafcache node`): its hubs and its caches' capacities and times to live. Returns what
    /// changed, one line each.
    ///
    /// # Errors
    /// [`TopologyError::Invalid`] with every change that cannot be made live, at its line;
    /// nothing is applied then.
    pub fn reload_node(&self, new: &Topology, node: &Node) -> Result<Applied, TopologyError> {
        let plan = self.reload_plan(new, Some(node.name()));
        if !plan.refused.is_empty() {
            return Err(TopologyError::Invalid(plan.refused));
        }
        let mut applied = Vec::new();
        if plan.hubs.iter().any(|n| n == node.name()) {
            let hubs = new.node_builder_hubs(node.name())?;
            set_hubs(node, hubs, &mut applied)?;
        }
        reconfigure(node, &plan.caches, &mut applied)?;
        if node.shards().is_some() {
            let before = plan.reshard.as_ref().map(|_| self.members(&|_| None));
            let now = new.cluster_of(node.name(), &|_| None);
            set_shards(node, now, before, &mut applied)?;
        }
        Ok(applied)
    }

    /// Applies `new` to `nodes`, every node of this topology in file order, run in one process
    /// (what SIGHUP does to `leafcache up`): nodes added are started (hubs before their leaves),
    /// hubs and cache settings changed live, nodes removed shut down once their leaves have
    /// moved. On success `nodes` holds the new file's nodes in its order.
    ///
    /// # Errors
    /// [`TopologyError::Invalid`] with every change that cannot be made live, at its line, or a
    /// new node that does not start ([`TopologyError::Start`]); nothing is applied then (the
    /// nodes the reload started are shut down again).
    pub async fn reload_all(
        &self,
        new: &Topology,
        nodes: &mut Vec<Node>,
    ) -> Result<Applied, TopologyError> {
        let plan = self.reload_plan(new, None);
        if !plan.refused.is_empty() {
            return Err(TopologyError::Invalid(plan.refused));
        }
        let mut running: HashMap<String, Node> = (self.nodes.iter())
            .zip(nodes.iter())
            .map(|(s, n)| (s.name.clone(), n.clone()))
            .collect();
        let address = |running: &HashMap<String, Node>, hub: &HubRef| match hub {
            HubRef::Address(a) => Some(a.clone()),
            HubRef::Node(h) => running
                .get(h)
                .and_then(|n| n.local_addr().map(str::to_string)),
        };
        let mut applied = Vec::new();
        // New nodes, hubs first, as `start_all` does.
        let mut order: Vec<usize> = (0..new.nodes.len())
            .filter(|&i| plan.added.contains(&new.nodes[i].name))
            .collect();
        order.sort_by_key(|&i| new.depth(i));
        let mut started = Vec::new();
        for i in order {
            let spec = &new.nodes[i];
            let hubs = spec.hubs().filter_map(|h| address(&running, h)).collect();
            match new
                .builder_with_hub(spec, hubs)
                .and_then(|b| build(&spec.name, b))
            {
                Ok(node) => {
                    applied.push(format!("started node {:?}", spec.name));
                    started.push(node.clone());
                    running.insert(spec.name.clone(), node);
                }
                Err(e) => {
                    for node in &started {
                        node.shutdown().await;
                    }
                    return Err(e);
                }
            }
        }
        for name in &plan.hubs {
            let spec = new.find(name).expect("planned from the new file");
            let hubs: Vec<String> = spec.hubs().filter_map(|h| address(&running, h)).collect();
            set_hubs(&running[name], hubs, &mut applied)?;
        }
        for node in running.values() {
            if !plan.removed.iter().any(|r| r == node.name()) {
                reconfigure(node, &plan.caches, &mut applied)?;
            }
        }
        if !new.shards().is_empty() {
            // Every node learns the shards' doors as bound, and, if the shards changed, the map
            // the slots move from (the doors of the nodes about to stop included).
            let doors = |spec: &NodeSpec| {
                (running.get(&spec.name)).and_then(|n| n.resp_addr().map(str::to_string))
            };
            let before = plan.reshard.as_ref().map(|_| self.members(&doors));
            for spec in &new.nodes {
                let now = new.cluster_of(&spec.name, &doors);
                set_shards(&running[&spec.name], now, before.clone(), &mut applied)?;
            }
        }
        for name in &plan.removed {
            if let Some(node) = running.remove(name) {
                node.shutdown().await;
                applied.push(format!("stopped node {name:?}"));
            }
        }
        *nodes = (new.nodes.iter())
            .filter_map(|s| running.remove(&s.name))
            .collect();
        Ok(applied)
    }

    /// The hub addresses node `name` dials, as [`node_builder`](Self::node_builder) resolves them.
    fn node_builder_hubs(&self, name: &str) -> Result<Vec<String>, TopologyError> {
        Ok(self.node_builder(name)?.hub_addresses())
    }
}

/// The fields of a node that take a restart, and whether they are the same in both files.
fn node_fields<'a>(old: &'a NodeSpec, new: &'a NodeSpec) -> [(&'static str, bool); 12] {
    [
        ("shard", old.shard == new.shard),
        ("listen", old.listen == new.listen),
        ("advertise", old.advertise == new.advertise),
        ("resp", old.resp == new.resp),
        ("http", old.http == new.http),
        ("unix", old.unix == new.unix),
        ("root", old.root == new.root),
        ("snapshot", old.snapshot == new.snapshot),
        ("flush", old.flush == new.flush),
        ("loglevel", old.loglevel == new.loglevel),
        ("tls_cert", old.tls_cert == new.tls_cert),
        ("tls_key", old.tls_key == new.tls_key),
    ]
}

fn set_hubs(node: &Node, hubs: Vec<String>, applied: &mut Applied) -> Result<(), TopologyError> {
    let changed = node
        .set_hubs(hubs.clone())
        .map_err(|source| TopologyError::Start {
            name: node.name().to_string(),
            source,
        })?;
    if changed {
        applied.push(format!(
            "node {:?} now links to {}",
            node.name(),
            hubs.join(", ")
        ));
    }
    Ok(())
}

/// Gives `node` the shards `now`, moving from `before` if the shards changed (the move ends
/// [`MOVE_TIMEOUTS`] connection timeouts later).
fn set_shards(
    node: &Node,
    now: Option<crate::partition::Shards>,
    before: Option<Vec<(String, Vec<crate::partition::ShardNode>)>>,
    applied: &mut Applied,
) -> Result<(), TopologyError> {
    let fail = |source| TopologyError::Start {
        name: node.name().to_string(),
        source,
    };
    let Some(mut shards) = now else {
        return Ok(());
    };
    if let Some(before) = before {
        shards = shards.moving_from(before).map_err(fail)?;
        let moved = (shards.previous.as_ref()).map_or(0, |(old, _)| old.moved_to(&shards.map));
        node.set_shards(shards).map_err(fail)?;
        let lasts = node.replication_config().connection_timeout * MOVE_TIMEOUTS;
        node.finish_move_after(lasts);
        applied.push(format!(
            "node {:?}: {moved} of 16384 slots move; their keys are read through from their \
             previous shard for {}",
            node.name(),
            humantime::format_duration(lasts)
        ));
    } else {
        node.set_shards(shards).map_err(fail)?;
    }
    Ok(())
}

fn reconfigure(
    node: &Node,
    caches: &[(String, CacheTableConfig)],
    applied: &mut Applied,
) -> Result<(), TopologyError> {
    for (name, settings) in caches {
        let fail = |source| TopologyError::Start {
            name: node.name().to_string(),
            source,
        };
        let cache = node.cache(name).map_err(fail)?;
        cache.reconfigure(&settings.config()).map_err(fail)?;
        applied.push(format!(
            "node {:?}: cache {name:?} now holds {} entries{}, ttl {}",
            node.name(),
            cache.max_entries(),
            cache
                .max_bytes()
                .map_or(String::new(), |b| format!(" and {b} bytes")),
            cache
                .default_ttl()
                .map_or("none".to_string(), |d| humantime::format_duration(d)
                    .to_string()),
        ));
    }
    Ok(())
}

/// Finds where a key is written in a topology file's text: a table's lines run from its header
/// to the next header; a `[[node]]` table is the one whose `name` is the node's.
struct Locator<'a> {
    topology: &'a Topology,
    /// Each table: its header (`cluster`, `caches.sessions`, `node`), where its header is, and
    /// the byte range of its lines.
    tables: Vec<(String, Range<usize>, Range<usize>)>,
}

impl<'a> Locator<'a> {
    fn new(topology: &'a Topology) -> Self {
        let text = &topology.source;
        let mut tables: Vec<(String, Range<usize>, Range<usize>)> = Vec::new();
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            let trimmed = line.trim();
            if trimmed.starts_with('[') {
                let header = trimmed
                    .trim_start_matches('[')
                    .split(']')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                if let Some(last) = tables.last_mut() {
                    last.2.end = offset;
                }
                let start = offset + (line.len() - line.trim_start().len());
                tables.push((header, start..start + trimmed.len(), offset..text.len()));
            }
            offset += line.len();
        }
        Locator { topology, tables }
    }

    fn source(&self) -> Source<'a> {
        Source {
            path: &self.topology.path,
            text: &self.topology.source,
        }
    }

    /// The header of the first of `tables` the file has; empty if none.
    fn table(&self, tables: &[&str]) -> Range<usize> {
        (tables.iter())
            .find_map(|t| self.tables.iter().find(|(h, _, _)| h == t))
            .map_or(0..0, |(_, header, _)| header.clone())
    }

    /// Where `key` is written in the first of `tables` that has it; empty if none does.
    fn key(&self, tables: &[&str], key: &str) -> Range<usize> {
        (tables.iter())
            .flat_map(|t| self.tables.iter().filter(move |(h, _, _)| h == t))
            .find_map(|(_, _, lines)| self.in_lines(lines.clone(), key))
            .unwrap_or(0..0)
    }

    /// Where `key` is written in the `[[node]]` table of node `name`; empty if it is not.
    fn node_key(&self, name: &str, key: &str) -> Range<usize> {
        (self.tables.iter())
            .filter(|(h, _, _)| h == "node")
            .filter(|(_, _, lines)| {
                self.in_lines(lines.clone(), "name").is_some_and(|at| {
                    let line = &self.topology.source[at.start..];
                    let value = line.lines().next().unwrap_or_default();
                    value.contains(&format!("\"{name}\"")) || value.contains(&format!("'{name}'"))
                })
            })
            .find_map(|(_, _, lines)| self.in_lines(lines.clone(), key))
            .unwrap_or(0..0)
    }

    /// The span of `key` where a line of `lines` sets it.
    fn in_lines(&self, lines: Range<usize>, key: &str) -> Option<Range<usize>> {
        let text = &self.topology.source[lines.clone()];
        let mut offset = lines.start;
        for line in text.split_inclusive('\n') {
            let trimmed = line.trim_start();
            if let Some(rest) = trimmed.strip_prefix(key)
                && rest.trim_start().starts_with('=')
            {
                let start = offset + (line.len() - trimmed.len());
                return Some(start..start + key.len());
            }
            offset += line.len();
        }
        None
    }
}
