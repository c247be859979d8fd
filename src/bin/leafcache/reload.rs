//! Topology reloads: `leafcache reload FILE` (check it, then SIGHUP every process running it),
//! and what a running `up` or `node` logs when it reloads.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use leafcache::topology::{Topology, TopologyError};

use crate::{Cli, CliResult, Command};

/// Reads and checks the topology file again for a reload; an invalid one is logged, line by
/// line, and `None` (the nodes keep what they run).
pub fn read(file: &Path) -> Option<Topology> {
    match Topology::load(file) {
        Ok(t) => Some(t),
        Err(e) => {
            for d in e.diagnostics() {
                tracing::warn!("{}", one_line(d));
            }
            if e.diagnostics().is_empty() {
                tracing::warn!("{e}");
            }
            tracing::warn!(file = %file.display(), "reload: the file is not a valid topology; nothing changed");
            None
        }
    }
}

/// Logs what a reload changed.
pub fn log_applied(applied: &[String]) {
    if applied.is_empty() {
        tracing::info!("reload: nothing to change");
    }
    for line in applied {
        tracing::info!("reload: {line}");
    }
}

/// Logs why a reload changed nothing: each change refused, at its line.
pub fn log_refused(e: &TopologyError) {
    for d in e.diagnostics() {
        tracing::warn!("{}", one_line(d));
    }
    if e.diagnostics().is_empty() {
        tracing::warn!("reload: {e}");
    }
    tracing::warn!("reload: nothing changed");
}

/// A diagnostic's first line and its help, for a log line.
fn one_line(d: &leafcache::topology::Diagnostic) -> String {
    let first = crate::first_line(d);
    match &d.help {
        Some(help) => format!("{first} ({help})"),
        None => first,
    }
}

/// `leafcache reload FILE`: the file is checked here first (an invalid one is reported and no
/// process is signalled); then every `leafcache up` or `leafcache node` process of this user
/// running that file gets SIGHUP.
pub fn signal(file: &Path) -> CliResult {
    let topology = match crate::load_topology(file) {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let wanted = std::fs::canonicalize(file)
        .map_err(|e| format!("cannot resolve {}: {e}", file.display()))?;
    let running = processes_running(&wanted);
    if running.is_empty() {
        eprintln!(
            "leafcache: no running `leafcache up` or `leafcache node` runs {}",
            file.display()
        );
        return Ok(ExitCode::from(2));
    }
    let mut failed = false;
    for (pid, command) in running {
        // SAFETY: kill only sends a signal; the pid was read from /proc just now.
        if unsafe { libc::kill(pid, libc::SIGHUP) } == 0 {
            println!("pid {pid} ({command}): reloading {}", file.display());
        } else {
            let e = std::io::Error::last_os_error();
            eprintln!("leafcache: pid {pid} ({command}): cannot signal it: {e}");
            failed = true;
        }
    }
    println!(
        "{} checked ({} nodes); each process logs what it changed, or what it refused and why",
        file.display(),
        topology.nodes().len()
    );
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// The `leafcache up FILE` and `leafcache node --topology FILE` processes whose file is `wanted`
/// (canonical), with their command lines: each process's arguments read from /proc and parsed
/// as this command parses its own, its file resolved from its working directory.
fn processes_running(wanted: &Path) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_leafcache = args.first().is_some_and(|a| {
            Path::new(a)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("leafcache"))
        });
        if !is_leafcache {
            continue;
        }
        let file: PathBuf = match Cli::try_parse_from(&args).map(|c| c.command) {
            Ok(Command::Up { file, .. }) => file,
            Ok(Command::Node { topology, .. }) => topology,
            _ => continue,
        };
        let file = match std::fs::read_link(entry.path().join("cwd")) {
            Ok(cwd) => cwd.join(file),
            Err(_) => file,
        };
        if std::fs::canonicalize(&file).is_ok_and(|f| f == wanted) {
            found.push((pid, args.join(" ")));
        }
    }
    found.sort();
    found
}
