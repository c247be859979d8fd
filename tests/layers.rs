//! The crate's layers point one way (see the Layout section of the crate docs): each module names
//! only the modules below it. This test reads the sources and fails on any path that reaches up,
//! so a new dependency in the wrong direction is caught here rather than in review.

use std::path::{Path, PathBuf};

/// Bottom to top: each layer and the crate modules it may name. `clock` and `error` are the
/// floor; `cache` knows nothing of who persists, replicates or serves it. (`topology` and the
/// binary are the top: they may name anything.)
const LAYERS: &[(&str, &[&str])] = &[
    ("clock.rs", &[]),
    ("error.rs", &[]),
    ("cache", &["clock", "error"]),
    ("replication", &["cache", "clock", "error"]),
    ("persist", &["cache", "clock", "error", "replication"]),
    (
        "net",
        &["cache", "clock", "error", "persist", "replication"],
    ),
    // The node handle, then the front doors over it; the builders (node/builder.rs,
    // node/cache_builder.rs) sit above both and wire them together.
    (
        "node/mod.rs",
        &["cache", "clock", "error", "net", "persist", "replication"],
    ),
    ("node/doors.rs", &["error"]),
    (
        "server",
        &[
            "cache",
            "clock",
            "error",
            "net",
            "node",
            "persist",
            "replication",
        ],
    ),
];

/// Every module of the crate, so that `crate::name` can be recognised.
const MODULES: &[&str] = &[
    "cache",
    "clock",
    "error",
    "net",
    "node",
    "persist",
    "replication",
    "server",
    "topology",
];

fn sources(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).unwrap() {
        out.extend(sources(&entry.unwrap().path()));
    }
    out.retain(|p| p.extension().is_some_and(|e| e == "rs"));
    out
}

/// The crate modules a line names: `crate::x`, plus `crate::{..}` (a root re-export hides which
/// module it comes from, so the lower layers must not use it) and `super::super`.
fn named(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let name: String = if after.starts_with('{') {
            "{".into()
        } else {
            after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        };
        out.push(name);
        rest = after;
    }
    if line.contains("super::super") {
        out.push("super::super".into());
    }
    out
}

#[test]
fn lower_layers_name_nothing_above_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for (layer, allowed) in LAYERS {
        let files = sources(&src.join(layer));
        assert!(!files.is_empty(), "no sources for layer {layer}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                for name in named(line) {
                    let ok = allowed.contains(&name.as_str())
                        || (MODULES.contains(&name.as_str()) && layer.starts_with(&*name));
                    if !ok {
                        violations.push(format!(
                            "{}:{}: {layer} names crate::{name}: {}",
                            file.strip_prefix(&src).unwrap().display(),
                            n + 1,
                            line.trim()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layers reaching up (define a port below, implement it above):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_checker_sees_an_upward_path() {
    // The test above is only as good as its reading of a line.
    assert_eq!(named("use crate::node::Node;"), ["node"]);
    assert_eq!(named("    let j: crate::persist::Journal;"), ["persist"]);
    assert_eq!(named("use crate::{Node, Cache};"), ["{"]);
    assert_eq!(named("use super::super::x;"), ["super::super"]);
    assert!(named("use super::shard::Live;").is_empty());
}
