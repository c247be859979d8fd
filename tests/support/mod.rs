//! Test support shared by the replication tests: polling with a deadline, the convergence checker,
//! a fault-injecting TCP proxy and the deterministic simulator.
#![allow(dead_code)]

pub mod cluster;
pub mod proxy;
pub mod resp;
pub mod sim;
pub mod wan;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use leafcache::{Change, Node, Version};

/// The seeds a random-schedule test runs: `LEAFCACHE_SIM_SEED` alone if set (a replay), else
/// `count` of them (`LEAFCACHE_SIM_*` variable `var` overrides it) from `LEAFCACHE_SIM_FIRST`.
pub fn seeds(var: &str, default: u64) -> Vec<u64> {
    let number = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|s| s.parse::<u64>().expect(name))
    };
    if let Some(seed) = number("LEAFCACHE_SIM_SEED") {
        return vec![seed];
    }
    let first = number("LEAFCACHE_SIM_FIRST").unwrap_or(0);
    (first..first + number(var).unwrap_or(default)).collect()
}

/// Runs `schedule` for every seed, naming the one that fails and how to replay it.
pub fn run_seeds(seeds: Vec<u64>, schedule: impl Fn(u64) + std::panic::RefUnwindSafe) {
    for seed in seeds {
        if let Err(panic) = std::panic::catch_unwind(|| schedule(seed)) {
            eprintln!("failing schedule: seed {seed}; replay with LEAFCACHE_SIM_SEED={seed}");
            std::panic::resume_unwind(panic);
        }
    }
}

/// The end of a simulation's trace for a failure report: all of it when replaying one seed.
pub fn trace_tail(trace: &[String]) -> String {
    let keep = if std::env::var("LEAFCACHE_SIM_SEED").is_ok() {
        usize::MAX
    } else {
        40
    };
    trace[trace.len().saturating_sub(keep)..].join("\n")
}

/// Polls `check` until it returns `Ok`, or panics with its last complaint after `timeout`.
pub async fn eventually<F>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Result<(), String>,
{
    let deadline = Instant::now() + timeout;
    let mut wait = Duration::from_millis(1);
    loop {
        match check() {
            Ok(()) => return,
            Err(why) if Instant::now() >= deadline => {
                panic!("{what}: not true after {timeout:?}: {why}")
            }
            Err(_) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(20));
            }
        }
    }
}

/// What a node knows of one key, as its change log lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Live {
        value: Bytes,
        version: Version,
        expires_at: Option<u64>,
    },
    Deleted(Version),
    Dropped(Version),
    /// A counter or hash: its newest version, what it reads as, its expiry, and its whole state
    /// (registers, parts, fields and field tombstones, the TTL register's version).
    Merged {
        version: Version,
        reading: leafcache::merge::Reading,
        expires_at: Option<u64>,
        state: (leafcache::merge::Body, Version),
    },
}

impl Record {
    pub fn version(&self) -> Version {
        match self {
            Record::Live { version, .. }
            | Record::Deleted(version)
            | Record::Dropped(version)
            | Record::Merged { version, .. } => *version,
        }
    }
}

/// Every record of every cache of `node`: cache → key → record; plus each cache's purge mark.
/// An entry expired at `now_ms` but not yet swept counts as dropped.
pub fn contents_at(
    node: &Node,
    now_ms: u64,
) -> BTreeMap<String, (BTreeMap<Bytes, Record>, Option<Version>)> {
    let mut out = BTreeMap::new();
    for cache in node.caches() {
        let mut keys = BTreeMap::new();
        let mut purge = None;
        for s in cache.changes_since(0, usize::MAX) {
            match s.change {
                Change::Set {
                    key,
                    version,
                    expires_at: Some(at),
                    ..
                } if at <= now_ms => {
                    keys.insert(key, Record::Dropped(version));
                }
                Change::Set {
                    key,
                    value,
                    version,
                    expires_at,
                } => {
                    keys.insert(
                        key,
                        Record::Live {
                            value,
                            version,
                            expires_at,
                        },
                    );
                }
                Change::Delete { key, version } => {
                    keys.insert(key, Record::Deleted(version));
                }
                Change::Invalidate { key, version } => {
                    keys.insert(key, Record::Dropped(version));
                }
                Change::Purge { version } => purge = Some(version),
                Change::Merge(m) if m.expires_at.is_some_and(|at| at <= now_ms) => {
                    keys.insert(m.key.clone(), Record::Dropped(m.version));
                }
                Change::Merge(m) => {
                    keys.insert(
                        m.key.clone(),
                        Record::Merged {
                            version: m.version,
                            reading: m.read(),
                            expires_at: m.expires_at,
                            state: (m.body.clone(), m.ttl),
                        },
                    );
                }
            }
        }
        out.insert(cache.name().to_string(), (keys, purge));
    }
    out
}

/// [`contents_at`] the system clock's now.
pub fn contents(node: &Node) -> BTreeMap<String, (BTreeMap<Bytes, Record>, Option<Version>)> {
    contents_at(node, now_ms())
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// [`converged_at`] the system clock's now.
pub fn converged(nodes: &[&Node]) -> Result<(), String> {
    converged_at(nodes, now_ms())
}

/// Invariant 1 over a set of nodes that should be connected, exactly: a key held live on one node
/// is held on every other at the same version, live with the same content (for a counter or hash
/// its whole state, field tombstones and parts included, and its expiry) or dropped there (evicted,
/// expired, too large) at that very version. An older record elsewhere is a lost update, a newer
/// one a stale survivor, a tombstone at the same version a difference. All purge marks agree.
/// `Ok` or the first difference found.
pub fn converged_at(nodes: &[&Node], now_ms: u64) -> Result<(), String> {
    let all: Vec<_> = nodes
        .iter()
        .map(|n| (n.name().to_string(), contents_at(n, now_ms)))
        .collect();
    let (first_name, first) = &all[0];
    for (name, other) in &all[1..] {
        for (cache, (keys, purge)) in first {
            let Some((other_keys, other_purge)) = other.get(cache) else {
                return Err(format!("{name} lacks cache {cache}"));
            };
            if purge != other_purge {
                return Err(format!(
                    "{cache}: purge {purge:?} on {first_name}, {other_purge:?} on {name}"
                ));
            }
            compare(cache, first_name, keys, name, other_keys)?;
            compare(cache, name, other_keys, first_name, keys)?;
        }
    }
    Ok(())
}

/// Two live records agree: equal, or a string and a counter whose text it is (increments under
/// a register that is not a number stay unseen; the string's holder gets them with the key's
/// next change). Two merged records compare whole: what they read as and their states.
fn same(a: &Record, b: &Record) -> bool {
    use leafcache::merge::Reading;
    let text = |r: &Record| match r {
        Record::Live {
            value,
            version,
            expires_at,
        } => Some((value.clone(), *version, *expires_at)),
        Record::Merged {
            version,
            reading: Reading::Value(v),
            expires_at,
            ..
        } => Some((v.clone(), *version, *expires_at)),
        _ => None,
    };
    let string = |r: &Record| matches!(r, Record::Live { .. });
    a == b || ((string(a) || string(b)) && text(a).is_some() && text(a) == text(b))
}

fn compare(
    cache: &str,
    a_name: &str,
    a: &BTreeMap<Bytes, Record>,
    b_name: &str,
    b: &BTreeMap<Bytes, Record>,
) -> Result<(), String> {
    let live = |r: &Record| match r {
        Record::Live { .. } => true,
        Record::Merged { reading, .. } => *reading != leafcache::merge::Reading::Nothing,
        _ => false,
    };
    for (key, ra) in a {
        let version = ra.version();
        if !live(ra) {
            continue;
        }
        match b.get(key) {
            Some(rb) if live(rb) => {
                if !same(ra, rb) {
                    return Err(format!(
                        "{cache}/{key:?}: {ra:?} on {a_name}, {rb:?} on {b_name}"
                    ));
                }
            }
            // Dropped by the other node itself at this very version: evicted, expired, too large.
            Some(Record::Dropped(v)) if *v == version => {}
            Some(rb) => {
                let what = if rb.version() > version {
                    "a newer record (a stale survivor here)"
                } else if rb.version() < version {
                    "an older record (a lost update there)"
                } else {
                    "another content at the same version"
                };
                return Err(format!(
                    "{cache}/{key:?}: live {ra:?} on {a_name}, {what} on {b_name}: {rb:?}"
                ));
            }
            None => {
                return Err(format!(
                    "{cache}/{key:?}: live on {a_name}, unknown on {b_name}"
                ));
            }
        }
    }
    Ok(())
}

/// A node for the tree tests of the HTTP door: named `name`, with an HTTP door on a port of the
/// OS's, a 1 s connection timeout, accepting leaves if `hub_too`, linked to `hub` if given.
pub fn http_node(name: &str, hub: Option<&str>, hub_too: bool) -> Node {
    let mut b = Node::builder()
        .name(name)
        .http_address("127.0.0.1:0")
        .connection_timeout("1s");
    if hub_too {
        b = b.local_address("127.0.0.1:0");
    }
    if let Some(h) = hub {
        b = b.remote_address(h);
    }
    b.build().unwrap()
}

/// A fresh directory under the temp dir, named after `tag` and a random id.
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("leafcache-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port the OS hands out on loopback, never the same one twice in this process: a test that
/// takes a port now and binds it later (a hub started after its leaf) does not meet another test
/// that took the same number meanwhile.
pub fn free_port() -> u16 {
    static TAKEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if TAKEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}
