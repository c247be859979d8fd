//! The crate's layers point one way (see the Layout section of the crate docs), and no modules
//! import each other in a circle. This test reads the sources — every `use` tree, and every
//! `crate::`, `super::` and `self::` path — and fails on a path that reaches up a layer, or on a
//! circle of imports between modules, so a dependency in the wrong direction is caught here
//! rather than in review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom to top: each layer and the crate modules it may name. `clock` and `error` are the
/// floor; `cache` knows nothing of who persists, replicates or serves it; `topology` is the top
/// of the library (the binary, `src/bin/`, is a crate of its own over the library's public API).
const LAYERS: &[(&str, &[&str])] = &[
    ("clock", &[]),
    ("error", &[]),
    ("partition", &["error"]),
    ("cache", &["clock", "error"]),
    ("replication", &["cache", "clock", "error"]),
    ("persist", &["cache", "clock", "error", "replication"]),
    (
        "net",
        &["cache", "clock", "error", "persist", "replication"],
    ),
    (
        "node",
        &[
            "cache",
            "clock",
            "error",
            "net",
            "partition",
            "persist",
            "replication",
        ],
    ),
    (
        "server",
        &[
            "cache",
            "clock",
            "error",
            "net",
            "node",
            "partition",
            "persist",
            "replication",
        ],
    ),
    (
        "build",
        &[
            "cache",
            "clock",
            "error",
            "net",
            "node",
            "partition",
            "persist",
            "replication",
            "server",
        ],
    ),
    (
        "topology",
        &[
            "build",
            "cache",
            "clock",
            "error",
            "net",
            "node",
            "partition",
            "persist",
            "replication",
            "server",
            // The crate root's re-exports (`crate::{Node, NodeBuilder}`): only the top may use
            // them, since they hide which layer a name comes from.
            "",
        ],
    ),
];

/// One source file of the library, as the module it is.
struct Module {
    /// Its path under `src/`, for messages.
    file: PathBuf,
    /// Its module path: `["cache", "shard", "access"]`; empty for `lib.rs`.
    path: Vec<String>,
    text: String,
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "bin") {
                sources(&p, out);
            }
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn modules() -> Vec<Module> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(&src).unwrap().with_extension("");
            let mut path: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if path.last().is_some_and(|l| l == "mod" || l == "lib") {
                path.pop();
            }
            Module {
                text: std::fs::read_to_string(&f).unwrap(),
                file: f.strip_prefix(&src).unwrap().to_path_buf(),
                path,
            }
        })
        .collect()
}

/// The code of a file without comments and string literals (a path in a doc comment or a
/// message is no import) and without its `#[cfg(test)]` tests module at the end.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        let mut in_str = false;
        let mut prev = ' ';
        for c in line.chars() {
            if c == '"' && prev != '\\' && prev != '\'' {
                in_str = !in_str;
                out.push(' ');
            } else if !in_str {
                out.push(c);
            }
            prev = c;
        }
        out.push('\n');
    }
    out
}

/// Every path a file names: each `use` tree expanded to its leaves (`use a::{b, c::d}` gives
/// `a::b` and `a::c::d`), and every other `crate::`, `super::` or `self::` path.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    // `use` statements, which may span lines.
    let mut outside = String::new();
    while let Some(at) = find_use(rest) {
        outside.push_str(&rest[..at]);
        let after = &rest[at..];
        let start = after.find("use ").unwrap() + 4;
        let end = after.find(';').unwrap_or(after.len());
        expand("", &after[start..end], &mut out);
        rest = &after[(end + 1).min(after.len())..];
    }
    outside.push_str(rest);
    // Paths in expressions and types.
    let bytes = outside.as_bytes();
    for root in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = outside[from..].find(root) {
            let at = from + at;
            let before = at.checked_sub(1).map(|i| bytes[i] as char);
            from = at + root.len();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let len = outside[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(outside.len() - at);
            out.push(outside[at..at + len].trim_end_matches(':').to_string());
        }
    }
    out
}

/// Where the next `use` statement starts: at a line's start, after an optional `pub(..)`.
fn find_use(text: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let bare = trimmed
            .strip_prefix("pub(crate) ")
            .or_else(|| trimmed.strip_prefix("pub(super) "))
            .or_else(|| trimmed.strip_prefix("pub "))
            .unwrap_or(trimmed);
        if bare.starts_with("use ") {
            return Some(offset + (line.len() - trimmed.len()));
        }
        offset += line.len();
    }
    None
}

/// Expands a use tree under `prefix` into full paths.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree: String = tree.split_whitespace().collect();
    let join = |p: &str, s: &str| {
        if p.is_empty() {
            s.to_string()
        } else {
            format!("{p}::{s}")
        }
    };
    match tree.find('{') {
        None => {
            let leaf = tree.split(" as ").next().unwrap_or(&tree);
            let leaf = leaf.split("as").next().unwrap_or(leaf);
            out.push(join(prefix, leaf.trim_end_matches("::*")));
        }
        Some(open) => {
            let head = tree[..open].trim_end_matches("::");
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let prefix = join(prefix, head);
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&prefix, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            if start < inner.len() {
                expand(&prefix, &inner[start..], out);
            }
        }
    }
}

/// The module a path in `module` names, as the longest known module path it starts with
/// (`crate::cache::store::Idx` names `cache::store`), or `None` for a path outside the crate.
fn resolve(module: &[String], path: &str, known: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let mut segments = path.split("::").filter(|s| !s.is_empty());
    let mut at: Vec<String> = match segments.next()? {
        "crate" => Vec::new(),
        "self" => module.to_vec(),
        "super" => module[..module.len().saturating_sub(1)].to_vec(),
        _ => return None,
    };
    for s in segments {
        if s == "super" {
            at.pop();
            continue;
        }
        let mut next = at.clone();
        next.push(s.to_string());
        if !known.contains(&next) {
            break;
        }
        at = next;
    }
    Some(at)
}

/// The import edges between modules that are not one inside the other (a parent declares its
/// children and a child may use what its parent holds), each with where it was found.
fn edges(mods: &[Module]) -> Vec<(Vec<String>, Vec<String>, String)> {
    let known: BTreeSet<Vec<String>> = mods.iter().map(|m| m.path.clone()).collect();
    let mut out = Vec::new();
    for m in mods {
        for p in paths(&code(&m.text)) {
            let Some(to) = resolve(&m.path, &p, &known) else {
                continue;
            };
            if to.starts_with(&m.path) || m.path.starts_with(&to) {
                continue;
            }
            out.push((m.path.clone(), to, format!("{}: {p}", m.file.display())));
        }
    }
    out
}

#[test]
fn lower_layers_name_nothing_above_them() {
    let mods = modules();
    let mut violations = Vec::new();
    let mut covered = BTreeSet::new();
    for (from, to, at) in edges(&mods) {
        let (Some(layer), target) = (from.first(), to.first().map_or("", |s| s.as_str())) else {
            continue;
        };
        let Some((_, allowed)) = LAYERS.iter().find(|(l, _)| l == layer) else {
            violations.push(format!("{at}: {layer} is in no layer: add it to LAYERS"));
            continue;
        };
        covered.insert(layer.clone());
        let node_doors = from == ["node", "doors"] && target != "error";
        if (target != *layer && !allowed.contains(&target)) || node_doors {
            violations.push(format!("{at}: {layer} names `{target}` above it"));
        }
    }
    for m in &mods {
        if let Some(layer) = m.path.first() {
            assert!(
                LAYERS.iter().any(|(l, _)| l == layer),
                "{} is in no layer: add `{layer}` to LAYERS",
                m.file.display()
            );
        }
    }
    assert!(
        violations.is_empty(),
        "layers reaching up (define a port below, implement it above):\n{}",
        violations.join("\n")
    );
    for layer in [
        "cache",
        "replication",
        "persist",
        "net",
        "server",
        "build",
        "topology",
    ] {
        assert!(covered.contains(layer), "no imports read in {layer}");
    }
}

/// The RESP door's files, bottom to top, and the files of the door each may name: dispatch
/// flows one way, and no command file takes another's helpers.
const RESP: &[(&str, &[&str])] = &[
    ("args", &[]),
    ("clients", &["args"]),
    ("session", &["args", "clients"]),
    ("tracking", &["args", "clients", "session"]),
    ("pubsub", &["args", "clients", "session"]),
    ("connection", &["args", "session"]),
    ("transactions", &["args", "session"]),
    ("strings", &["args", "session", "tracking"]),
    ("keys", &["args", "session"]),
    ("hashes", &["args", "session", "tracking"]),
    ("client", &["args", "clients", "session", "tracking"]),
    ("admin", &["args", "clients", "session"]),
    ("cluster", &["args", "session"]),
    (
        "table",
        &[
            "args",
            "session",
            "connection",
            "transactions",
            "strings",
            "keys",
            "hashes",
            "client",
            "admin",
            "pubsub",
            "cluster",
        ],
    ),
    (
        "dispatch",
        &["args", "session", "table", "tracking", "cluster"],
    ),
];

#[test]
fn the_resp_door_dispatches_one_way() {
    let mods = modules();
    let door = ["server", "resp"];
    let mut violations = Vec::new();
    let mut files = BTreeSet::new();
    for m in &mods {
        if m.path.len() == 3 && m.path.starts_with(&door.map(String::from)) {
            files.insert(m.path[2].clone());
        }
    }
    for file in &files {
        assert!(
            RESP.iter().any(|(f, _)| f == file),
            "src/server/resp/{file}.rs has no place in RESP: add it"
        );
    }
    for (from, to, at) in edges(&mods) {
        if from.len() < 3 || to.len() < 3 || !from.starts_with(&door.map(String::from)) {
            continue;
        }
        if !to.starts_with(&door.map(String::from)) {
            continue;
        }
        let (a, b) = (&from[2], &to[2]);
        let allowed = RESP
            .iter()
            .find(|(f, _)| f == a)
            .map_or(&[][..], |(_, n)| n);
        if a != b && !allowed.contains(&b.as_str()) {
            violations.push(format!("{at}: {a} names {b}"));
        }
    }
    assert!(
        violations.is_empty(),
        "the RESP door's files naming what they may not:\n{}",
        violations.join("\n")
    );
}

/// The modules a layer is made of: a file or directory directly under it (`cache::shard` for
/// every file of `src/cache/shard/`), or the layer itself.
fn unit(path: &[String]) -> Vec<String> {
    path.iter().take(2).cloned().collect()
}

#[test]
fn no_modules_import_each_other_in_a_circle() {
    let mods = modules();
    let mut graph: BTreeMap<Vec<String>, BTreeMap<Vec<String>, String>> = BTreeMap::new();
    for (from, to, at) in edges(&mods) {
        // Between layers, by layer; within one, by the modules directly under it.
        let (a, b) = if from.first() == to.first() {
            (unit(&from), unit(&to))
        } else {
            (from[..1].to_vec(), to[..1.min(to.len())].to_vec())
        };
        if a != b && !a.starts_with(&b) && !b.starts_with(&a) {
            graph.entry(a).or_default().entry(b).or_insert(at);
        }
    }
    let circles = find_circles(&graph);
    let shown: Vec<String> = circles
        .iter()
        .map(|c| {
            let names: Vec<String> = c.iter().map(|m| m.join("::")).collect();
            let mut why = Vec::new();
            for (i, a) in c.iter().enumerate() {
                let b = &c[(i + 1) % c.len()];
                why.push(format!("  {}", graph[a][b]));
            }
            format!("{}\n{}", names.join(" -> "), why.join("\n"))
        })
        .collect();
    assert!(
        circles.is_empty(),
        "modules importing each other in a circle (move what both need below both):\n{}",
        shown.join("\n")
    );
}

/// One circle through each strongly connected group of more than one module.
fn find_circles(
    graph: &BTreeMap<Vec<String>, BTreeMap<Vec<String>, String>>,
) -> Vec<Vec<Vec<String>>> {
    let mut circles = Vec::new();
    let mut done: BTreeSet<Vec<String>> = BTreeSet::new();
    for start in graph.keys() {
        if done.contains(start) {
            continue;
        }
        // A path back to `start`, breadth first, if there is one.
        let mut prev: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.clone()]);
        let mut found = None;
        while let Some(at) = queue.pop_front() {
            for next in graph.get(&at).into_iter().flat_map(|e| e.keys()) {
                if next == start {
                    found = Some(at.clone());
                    break;
                }
                if !prev.contains_key(next) {
                    prev.insert(next.clone(), at.clone());
                    queue.push_back(next.clone());
                }
            }
            if found.is_some() {
                break;
            }
        }
        if let Some(mut at) = found {
            let mut circle = vec![at.clone()];
            while at != *start {
                at = prev[&at].clone();
                circle.push(at.clone());
            }
            circle.reverse();
            done.extend(circle.iter().cloned());
            circles.push(circle);
        }
    }
    circles
}

#[test]
fn the_reader_sees_every_kind_of_path() {
    // The tests above are only as good as their reading of the code.
    let code = code(
        "use crate::node::Node;\n\
         use super::{message::Hello, summary::{NodeSummary, MAX}};\n\
         pub(crate) use self::store::Put;\n\
         // use crate::server::Commented;\n\
         let s = \"crate::server::InAString\";\n\
         let j: crate::persist::Journal = super::super::x::y();\n",
    );
    let found = paths(&code);
    for expected in [
        "crate::node::Node",
        "super::message::Hello",
        "super::summary::NodeSummary",
        "super::summary::MAX",
        "self::store::Put",
        "crate::persist::Journal",
        "super::super::x::y",
    ] {
        assert!(
            found.iter().any(|p| p == expected),
            "{expected} in {found:?}"
        );
    }
    assert!(!found.iter().any(|p| p.contains("server")), "{found:?}");
    let known: BTreeSet<Vec<String>> = [
        vec!["replication".to_string()],
        vec!["replication".to_string(), "message".to_string()],
    ]
    .into_iter()
    .collect();
    let here = vec!["replication".to_string(), "status".to_string()];
    assert_eq!(
        resolve(&here, "super::message::Hello", &known),
        Some(vec!["replication".to_string(), "message".to_string()])
    );
    assert_eq!(
        resolve(&here, "crate::replication::Role", &known),
        Some(vec!["replication".to_string()])
    );
    let mut circle = BTreeMap::new();
    let (a, b) = (vec!["a".to_string()], vec!["b".to_string()]);
    circle.insert(a.clone(), BTreeMap::from([(b.clone(), "a->b".to_string())]));
    circle.insert(b.clone(), BTreeMap::from([(a.clone(), "b->a".to_string())]));
    assert_eq!(find_circles(&circle), vec![vec![a, b]]);
}
