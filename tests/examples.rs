//! The examples finish by themselves and do what they print: each is run from the binaries
//! `cargo test` builds next to this test (`target/<profile>/examples/`; a filtered run such as
//! `cargo test --test examples` does not rebuild them, plain `cargo test` does). `load_callback`
//! is left out: it writes 100,000 files and is meant for `--release`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    profile_dir.join("examples").join(name)
}

/// Runs an example to completion (at most 60 s) and returns its stdout.
fn run(name: &str) -> String {
    run_with(name, &[])
}

fn run_with(name: &str, args: &[&str]) -> String {
    let path = example(name);
    let mut child = Command::new(&path)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("example {name} did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "example {name} failed: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn embedded_drops_and_heals_the_link() {
    let out = run("embedded");
    assert!(out.contains("hub reads product:1 locally"), "{out}");
    assert!(out.contains("leaf reads banner = \"spring sale\""), "{out}");
    assert!(out.contains("link down; leaf still serves"), "{out}");
    assert!(
        out.contains("written-offline = \"while the hub was away\""),
        "{out}"
    );
}

#[test]
fn two_processes_share_one_node() {
    let out = run("two_processes");
    assert_eq!(out.matches("wrote 1000 keys").count(), 3, "{out}");
    assert_eq!(
        out.matches("read 2000 keys the others wrote").count(),
        3,
        "{out}"
    );
    assert!(out.contains("reads 3000 of 3000 keys locally"), "{out}");
}

#[test]
fn star_and_local_cache_finish() {
    let star = run("star");
    assert!(
        star.contains("leaf-c restarted and resynced: 3 entries"),
        "{star}"
    );
    let local = run("local_cache");
    assert!(
        local.contains("100 concurrent misses -> 1 backend call(s)"),
        "{local}"
    );
}

/// The read-through benchmark, small: every lookup answered through the node's file origins,
/// each file read from the origin at most once.
#[test]
fn origin_reads_files_through_a_node() {
    let dir = std::env::temp_dir().join(format!("leafcache-origin-example-{}", std::process::id()));
    let out = run_with(
        "origin",
        &[
            "--products",
            "300",
            "--images",
            "40",
            "--reads",
            "3000",
            "--threads",
            "2",
            "--dir",
            dir.to_str().unwrap(),
        ],
    );
    assert!(out.contains("files, read directly"), "{out}");
    assert!(out.contains("through a node, warm"), "{out}");
    for line in out.lines().filter(|l| l.trim_start().starts_with("cache ")) {
        let field = |name: &str| -> u64 {
            let rest = line.split(name).nth(1).unwrap().trim_start();
            rest.split_whitespace().next().unwrap().parse().unwrap()
        };
        assert!(field("origin reads") <= field("misses"), "{line}");
        assert!(field("origin reads") >= 1, "{line}");
        assert_eq!(field("origin reads"), field("entries"), "{line}");
    }
    std::fs::remove_dir_all(dir).ok();
}
