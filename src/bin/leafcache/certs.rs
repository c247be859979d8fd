//! `leafcache certs FILE`: a development CA and node certificates at the paths a topology's
//! `[cluster.tls]` (and its nodes' `tls_cert`/`tls_key`) name, so that TLS runs in two commands.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use leafcache::net::DevCa;
use leafcache::topology::NodeSpec;

use crate::{CliResult, load_topology};

/// Where the CA's key is kept: beside the CA, `ca.pem` → `ca-key.pem`.
fn ca_key_path(ca: &Path) -> PathBuf {
    let stem = ca
        .file_stem()
        .map_or_else(|| "ca".into(), |s| s.to_string_lossy().into_owned());
    ca.with_file_name(format!("{stem}-key.pem"))
}

/// The names a node is reached by: its name, the hosts of its addresses (but not a wildcard),
/// and `localhost` and `127.0.0.1` for the processes of its own host.
fn names_of(spec: &NodeSpec, names: &mut Vec<String>) {
    let mut add = |n: &str| {
        if !n.is_empty() && !names.iter().any(|m| m == n) {
            names.push(n.to_string());
        }
    };
    add(&spec.name);
    let addresses = [&spec.listen, &spec.advertise, &spec.resp, &spec.http];
    for address in addresses.into_iter().flatten() {
        let Some(host) = leafcache::net::host_of(address) else {
            continue;
        };
        let wildcard = host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified());
        if !wildcard {
            add(host);
        }
    }
    add("localhost");
    add("127.0.0.1");
}

fn write(path: &Path, text: &str, private: bool) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    let mode = if private { 0o600 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))
}

pub(crate) fn make(file: &Path, force: bool) -> CliResult {
    let topology = match load_topology(file) {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let Some(tls) = topology.tls() else {
        eprintln!(
            "{}: no [cluster.tls], so no certificates to make; add\n\n[cluster.tls]\nca = \"certs/ca.pem\"\ncert = \"certs/node.pem\"\nkey = \"certs/node-key.pem\"",
            file.display()
        );
        return Ok(ExitCode::from(2));
    };
    // Which nodes share each certificate file: the cluster's, or a node's own.
    let mut groups: BTreeMap<(PathBuf, PathBuf), Vec<String>> = BTreeMap::new();
    for spec in topology.nodes() {
        if let Some(files) = topology.tls_files(spec) {
            names_of(spec, groups.entry((files.cert, files.key)).or_default());
        }
    }
    let missing = |(cert, key): &(PathBuf, PathBuf)| force || !cert.exists() || !key.exists();
    let to_issue: Vec<_> = groups.iter().filter(|(files, _)| missing(files)).collect();
    let ca_key = ca_key_path(&tls.ca);
    let ca = match (tls.ca.exists(), ca_key.exists()) {
        _ if to_issue.is_empty() => None,
        (true, true) => {
            let read =
                |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
            let ca = DevCa::open(topology.cluster(), &read(&tls.ca)?, &read(&ca_key)?)
                .map_err(|e| format!("{}: {e}", tls.ca.display()))?;
            println!("using the CA {}", tls.ca.display());
            Some(ca)
        }
        (true, false) => {
            eprintln!(
                "{} exists without its key {}: `leafcache certs` issues only with a CA it made; \
                 issue the node certificates with that CA's own tools",
                tls.ca.display(),
                ca_key.display()
            );
            return Ok(ExitCode::from(2));
        }
        (false, _) => {
            let ca = DevCa::new(topology.cluster())?;
            write(&tls.ca, ca.cert_pem(), false)?;
            write(&ca_key, &ca.key_pem(), true)?;
            println!(
                "wrote the CA {} (its key: {})",
                tls.ca.display(),
                ca_key.display()
            );
            Some(ca)
        }
    };
    for ((cert, key), names) in &groups {
        match &ca {
            Some(ca) if missing(&(cert.clone(), key.clone())) => {
                let issued = ca
                    .issue(names)
                    .map_err(|e| format!("a certificate for {names:?}: {e}"))?;
                write(key, &issued.key_pem, true)?;
                write(cert, &issued.cert_pem, false)?;
                println!("wrote {} for {}", cert.display(), names.join(", "));
            }
            _ => println!("kept {} (--force issues it again)", cert.display()),
        }
    }
    println!("development certificates only: a production cluster uses its own CA");
    Ok(ExitCode::SUCCESS)
}
