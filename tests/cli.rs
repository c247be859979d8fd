//! The `leafcache` binary run from topology files: `check` on the shipped and the broken files,
//! `up` running the star topology, separate `node` processes surviving the loss of their hub, and
//! a node killed mid-load restarting from its root.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use leafcache::Node;
use redis::Commands;

const BIN: &str = env!("CARGO_BIN_EXE_leafcache");
const TIMEOUT: Duration = Duration::from_secs(20);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run leafcache");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_every_shipped_topology() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo("topologies")).unwrap() {
        let path = entry.unwrap().path();
        // tls.toml names certificates `leafcache certs` makes: checked in its own test.
        if path.extension().is_none_or(|e| e != "toml") || path.ends_with("tls.toml") {
            continue;
        }
        let (code, out, err) = run(&["check", path.to_str().unwrap()]);
        assert_eq!(code, 0, "{}: {err}", path.display());
        assert!(out.trim_end().ends_with(": ok"), "{out}");
        // The shipped files use the dev secret and say so; check repeats the warning.
        assert!(
            err.contains("warning: the cluster secret is written"),
            "{err}"
        );
        checked += 1;
    }
    assert_eq!(checked, 5, "single, star, tree, geo, sharded");
    let (_, tree, _) = run(&["check", repo("topologies/tree.toml").to_str().unwrap()]);
    assert!(tree.contains("hub (hub) listen=127.0.0.1:7410"), "{tree}");
    assert!(tree.contains("├── relay-1 (relay)"), "{tree}");
    assert!(tree.contains("│   ├── leaf-1a (leaf)"), "{tree}");
    assert!(tree.contains("    └── leaf-2b (leaf)"), "{tree}");
}

#[test]
fn certs_makes_what_check_accepts_and_check_reports_bad_certificates() {
    use std::os::unix::fs::PermissionsExt;
    let dir = support::temp_dir("certs");
    let file = dir.join("tls.toml");
    std::fs::copy(repo("topologies/tls.toml"), &file).unwrap();
    let file = file.to_str().unwrap();
    // Before the certificates exist, check says which file is missing.
    let (code, _, err) = run(&["check", file]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("certs/ca.pem") && err.contains("No such file"),
        "{err}"
    );

    let (code, out, err) = run(&["certs", file]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("wrote the CA"), "{out}");
    assert!(
        out.contains("certs/hub.pem for hub, 127.0.0.1, localhost"),
        "{out}"
    );
    assert!(
        out.contains("certs/node.pem for leaf-a, 127.0.0.1, localhost, leaf-b"),
        "{out}"
    );
    let mode = |f: &str| {
        std::fs::metadata(dir.join("certs").join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(
        (
            mode("ca-key.pem"),
            mode("node-key.pem"),
            mode("hub-key.pem")
        ),
        (0o600, 0o600, 0o600)
    );
    let (code, out, err) = run(&["check", file]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("tls: mutual on links") && out.contains("doors too"),
        "{out}"
    );

    // Run again, it keeps what is there.
    let (code, out, _) = run(&["certs", file]);
    assert_eq!(code, 0);
    assert!(out.contains("kept") && !out.contains("wrote"), "{out}");

    let key = dir.join("certs/node-key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = run(&["check", file]);
    assert_eq!(code, 2);
    assert!(
        err.contains("node-key.pem: private key is readable by others"),
        "{err}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A hub certificate for another name than the one its leaves dial, then an expired one.
    let read = |f: &str| std::fs::read_to_string(dir.join("certs").join(f)).unwrap();
    let ca = leafcache::net::DevCa::open("tls-star", &read("ca.pem"), &read("ca-key.pem")).unwrap();
    for (names, valid, expected) in [
        (
            vec!["elsewhere.example".to_string()],
            None,
            "is for another name",
        ),
        (
            vec!["hub".into(), "127.0.0.1".into()],
            Some(((2001, 1, 1), (2002, 1, 1))),
            "the certificate has expired",
        ),
    ] {
        let issued = ca.issue_valid(&names, valid).unwrap();
        std::fs::write(dir.join("certs/hub.pem"), issued.cert_pem).unwrap();
        std::fs::write(dir.join("certs/hub-key.pem"), issued.key_pem).unwrap();
        let (code, _, err) = run(&["check", file]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("error: node \"hub\"") && err.contains(expected),
            "{err}"
        );
    }
    // --force issues them again.
    let (code, out, _) = run(&["certs", "--force", file]);
    assert_eq!(code, 0);
    assert!(out.contains("wrote") && out.contains("hub.pem"), "{out}");
    assert_eq!(run(&["check", file]).0, 0);

    // A file without [cluster.tls] has nothing to make.
    let (code, _, err) = run(&["certs", repo("topologies/star.toml").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("no [cluster.tls]"), "{err}");
}

/// Every file in tests/topologies opens with `# expect: LINE:COLUMN: error: MESSAGE` lines:
/// check must exit 2 and print each of them, prefixed with the file's path.
#[test]
fn check_points_at_each_mistake_in_the_broken_files() {
    let mut files = 0;
    for entry in std::fs::read_dir(repo("tests/topologies")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expected.is_empty(),
            "{} has no expectation",
            path.display()
        );
        let shown = path.to_str().unwrap();
        let (code, out, err) = run(&["check", shown]);
        assert_eq!(code, 2, "{shown} passed:\n{out}{err}");
        for e in &expected {
            assert!(
                err.lines().any(|l| l.starts_with(&format!("{shown}:{e}"))),
                "{shown}: expected `{e}` in:\n{err}"
            );
        }
        let errors = (err.lines())
            .filter(|l| l.starts_with(&format!("{shown}:")) && l.contains(": error: "))
            .count();
        assert_eq!(errors, expected.len(), "{shown}: other errors too:\n{err}");
        assert!(
            err.trim_end().ends_with("error)") || err.trim_end().ends_with("errors)"),
            "a summary line ends the report: {err}"
        );
        files += 1;
    }
    assert!(files >= 20, "{files} broken files");
}

#[test]
fn the_command_fails_in_one_line_on_a_missing_file_or_node() {
    let (code, _, err) = run(&["check", "/nonexistent/topology.toml"]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("leafcache: cannot read topology /nonexistent/topology.toml"));

    let star = repo("topologies/star.toml");
    let (code, _, err) = run(&["node", "-t", star.to_str().unwrap(), "-n", "leaf-z"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no node named \"leaf-z\"") && err.contains("hub, leaf-a, leaf-b, leaf-c"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// A running `leafcache` process whose stdout lines arrive on a channel; killed when dropped.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        Proc::start(args, false)
    }

    /// [`spawn`](Self::spawn), with the log (stderr) read as lines too.
    fn spawn_logging(args: &[&str]) -> Proc {
        Proc::start(args, true)
    }

    /// Runs the binary with `args`, its stdout (and with `log` its stderr) read as lines.
    fn start(args: &[&str], log: bool) -> Proc {
        let mut child = Command::new(BIN)
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(if log { Stdio::piped() } else { Stdio::null() })
            .spawn()
            .expect("spawn leafcache");
        let (tx, lines) = mpsc::channel();
        let mut streams: Vec<Box<dyn std::io::Read + Send>> =
            vec![Box::new(child.stdout.take().unwrap())];
        if let Some(err) = child.stderr.take() {
            streams.push(Box::new(err));
        }
        for stream in streams {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Proc { child, lines }
    }

    /// Lines up to and including the first one `done` accepts.
    fn until(&self, what: &str, mut done: impl FnMut(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let last = done(&line);
                    seen.push(line);
                    if last {
                        return seen;
                    }
                }
                Err(_) => panic!("{what}: not printed; got {seen:?}"),
            }
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(ok.success());
    }

    fn wait(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "process did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name role key=value...` lines, as `up` and `node` print them: the value of `key`.
fn address(lines: &[String], node: &str, key: &str) -> String {
    let line = lines
        .iter()
        .find(|l| l.split_whitespace().next() == Some(node))
        .unwrap_or_else(|| panic!("no line for {node} in {lines:?}"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
        .to_string()
}

fn redis_at(addr: &str) -> redis::Connection {
    let client = redis::Client::open(format!("redis://{addr}")).unwrap();
    client
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap()
}

/// Polls until `check` holds, for at most TIMEOUT.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what}: not true after {TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn get(conn: &mut redis::Connection, key: &str) -> Option<String> {
    conn.get(key).unwrap()
}

fn http_get(addr: &str, key: &str) -> Option<String> {
    let url = format!("http://{addr}/get?key={key}");
    match ureq::get(&url).call() {
        Ok(mut r) => Some(r.body_mut().read_to_string().unwrap()),
        Err(ureq::Error::StatusCode(404)) => None,
        Err(e) => panic!("{url}: {e}"),
    }
}

use support::temp_dir;

/// The shipped star topology, with every port replaced by 0 so that the test runs next to
/// anything else: `up` gives each leaf the address its hub actually bound.
#[test]
fn up_runs_the_star_topology_and_a_write_at_one_leaf_reads_at_the_others() {
    let shipped = std::fs::read_to_string(repo("topologies/star.toml")).unwrap();
    let mut text = String::new();
    for line in shipped.lines() {
        match line.find("127.0.0.1:") {
            Some(i) if !line.trim_start().starts_with('#') => {
                let end = line[i..].find('"').map_or(line.len(), |e| i + e);
                text.push_str(&format!("{}127.0.0.1:0{}\n", &line[..i], &line[end..]));
            }
            _ => text.push_str(&format!("{line}\n")),
        }
    }
    let dir = temp_dir("up");
    let file = dir.join("star.toml");
    std::fs::write(&file, &text).unwrap();

    let up = Proc::spawn(&["up", file.to_str().unwrap()]);
    let lines = up.until("the running line", |l| l.starts_with("up: 4 nodes"));
    for (node, role) in [
        ("hub", "hub"),
        ("leaf-a", "leaf"),
        ("leaf-b", "leaf"),
        ("leaf-c", "leaf"),
    ] {
        let line = lines.iter().find(|l| l.starts_with(node)).unwrap();
        assert_eq!(line.split_whitespace().nth(1), Some(role), "{line}");
    }
    let hub_http_line = address(&lines, "hub", "http");
    assert!(
        lines
            .iter()
            .any(|l| *l == format!("dashboard: http://{hub_http_line}/dashboard")),
        "{lines:?}"
    );
    let hub_listen = address(&lines, "hub", "listen");
    assert_eq!(address(&lines, "leaf-b", "hub"), hub_listen);
    // A status line per link once it is up.
    let mut connected = std::collections::BTreeSet::new();
    up.until("every link connected", |l| {
        if let Some(rest) = l.split_once("] ").map(|(_, r)| r)
            && let Some((link, state)) = rest.split_once(": ")
            && state.starts_with("connected")
        {
            connected.insert(link.to_string());
        }
        connected.len() == 3
    });
    assert!(connected.contains("leaf-a -> hub"), "{connected:?}");

    let mut a = redis_at(&address(&lines, "leaf-a", "resp"));
    let _: () = a.set("greeting", "hello from a").unwrap();
    let _: () = redis::cmd("SELECT").arg(1).query(&mut a).unwrap();
    let _: () = a.set("session:1", "alice").unwrap();
    let mut c = redis_at(&address(&lines, "leaf-c", "resp"));
    eventually("leaf-c reads leaf-a's write", || {
        get(&mut c, "greeting").as_deref() == Some("hello from a")
    });
    let hub_http = address(&lines, "hub", "http");
    let b_http = address(&lines, "leaf-b", "http");
    eventually("the hub and leaf-b read it over HTTP", || {
        http_get(&hub_http, "greeting").as_deref() == Some("hello from a")
            && http_get(&b_http, "greeting").as_deref() == Some("hello from a")
    });
    let url = format!("http://{b_http}/v1/caches/sessions/keys/session:1");
    eventually("the sessions cache replicates too", || {
        ureq::get(&url)
            .call()
            .is_ok_and(|mut r| r.body_mut().read_to_string().unwrap() == "alice")
    });

    up.signal("-INT");
    let rest = up.until("the stop line", |l| l == "stopped");
    assert!(!rest.is_empty());
    let status = up.wait();
    assert!(status.success(), "{status:?}");
    std::fs::remove_dir_all(dir).ok();
}

/// `up` on a terminal (a pseudo-terminal made by `script`): the table is redrawn in place, one
/// line per node and per link, with nothing else between its redraws: the log goes to a file,
/// whose last line the table shows. A leaf whose hub refuses connections shows as down, for how
/// long, and why.
#[test]
fn up_on_a_terminal_redraws_its_table_in_place_and_keeps_the_log_out_of_it() {
    let dir = temp_dir("up-tty");
    let file = dir.join("pair.toml");
    let refused = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        &file,
        format!(
            r#"
[cluster]
name = "tty"
secret = "tty-test-secret"

[[node]]
name = "hub"
listen = "127.0.0.1:0"

[[node]]
name = "leaf"
hub = "hub"

[[node]]
name = "stranded"
hub = "{refused}"
"#
        ),
    )
    .unwrap();
    let typescript = dir.join("typescript");
    let command = format!("{BIN} up {}", file.display());
    let child = Command::new("script")
        .args(["-qfec", &command, typescript.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("script (util-linux) runs up on a pseudo-terminal");
    // Stops `up` (and `script` with it) however the test ends.
    struct Stop(Child, String);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = Command::new("pkill").args(["-INT", "-f", &self.1]).status();
            let _ = self.0.wait();
        }
    }
    let stop = Stop(child, format!("up {}", file.display()));
    // Enough redraws that the leaf is up and the stranded one has failed (and logged) a few times.
    let deadline = Instant::now() + TIMEOUT;
    let screen = loop {
        let screen = std::fs::read_to_string(&typescript).unwrap_or_default();
        if screen.matches("\x1b[6A").count() >= 3
            && screen.contains("leaf -> hub")
            && screen.contains("connected")
            && screen.contains("Connection refused")
        {
            break screen;
        }
        assert!(Instant::now() < deadline, "no table redrawn: {screen:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // The log went to the file the table names (read while `up` runs: it removes it on exit).
    let named = screen
        .split("log: ")
        .last()
        .and_then(|l| l.split([' ', ',']).next())
        .unwrap()
        .to_string();
    let log = std::fs::read_to_string(&named).unwrap();

    // A resize: the table starts again from a cleared screen (no ghost rows of the wider lines),
    // each line fitted to the new width.
    let tty = pty_of(&format!("up {}", file.display()));
    let ok = Command::new("stty")
        .args(["-F", &tty, "cols", "50"])
        .status()
        .unwrap();
    assert!(ok.success(), "stty -F {tty}");
    let deadline = Instant::now() + TIMEOUT;
    let resized = loop {
        let now = std::fs::read_to_string(&typescript).unwrap_or_default();
        if let Some(at) = now.rfind("\x1b[2J\x1b[H")
            && now[at..].contains("\x1b[J")
        {
            let block = &now[at..];
            break block[..block.find("\x1b[J").unwrap()].to_string();
        }
        assert!(Instant::now() < deadline, "no redraw after the resize");
        std::thread::sleep(Duration::from_millis(100));
    };
    let lines: Vec<&str> = resized
        .split('\n')
        .map(|l| l.trim_start_matches("\x1b[2J\x1b[H").trim_end_matches('\r'))
        .map(|l| l.trim_start_matches("\r\x1b[2K"))
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), 6, "{resized:?}");
    for line in &lines {
        assert!(
            line.chars().count() < 50,
            "{line:?} does not fit 50 columns"
        );
    }
    drop(stop);
    // `script` can exit on the same SIGINT before `up` has finished its clean-up: poll.
    let log_dir = Path::new(&named).parent().unwrap().to_path_buf();
    let deadline = Instant::now() + TIMEOUT;
    while log_dir.exists() {
        assert!(
            Instant::now() < deadline,
            "up did not remove its log directory on exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Each redraw moves up over the 6 lines (3 nodes, 2 links, the log line, and nothing else)
    // and rewrites each of them whole.
    let redraws: Vec<&str> = screen.split("\x1b[6A").skip(1).collect();
    assert!(redraws.len() >= 3);
    for block in &redraws[..redraws.len() - 1] {
        let block = block.strip_suffix("\x1b[J").unwrap_or(block);
        let lines: Vec<&str> = block.split('\n').filter(|l| !l.is_empty()).collect();
        // `script` turns each line break into CR LF.
        let lines: Vec<&str> = lines.iter().map(|l| l.trim_end_matches('\r')).collect();
        assert_eq!(lines.len(), 6, "{block:?}");
        for line in &lines {
            assert!(
                line.starts_with("\r\x1b[2K  "),
                "a line not of the table: {line:?}"
            );
        }
        assert!(
            lines[0].contains("hub ") && lines[0].contains("hub    "),
            "{lines:?}"
        );
        assert!(lines.iter().any(|l| l.contains("stranded -> 127.0.0.1:")));
        assert!(lines[5].contains("log: "), "{lines:?}");
    }
    let last = redraws[redraws.len() - 2];
    let stranded = last.lines().find(|l| l.contains("stranded -> ")).unwrap();
    assert!(
        stranded.contains("down") || stranded.contains("connecting"),
        "{stranded}"
    );
    assert!(stranded.contains("Connection refused"), "{stranded}");
    // The log went to the file the table names, not to the terminal.
    assert!(last.contains(", removed on exit"), "{last}");
    assert!(log.contains("hub unreachable"), "{log}");
    assert!(
        !screen.contains("hub unreachable"),
        "a log line reached the terminal"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// The terminal (`/dev/pts/N`) the process whose command line contains `what` writes to.
fn pty_of(what: &str) -> String {
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.starts_with(BIN) && cmdline.contains(what) {
            let tty = std::fs::read_link(entry.path().join("fd/1")).unwrap();
            return tty.display().to_string();
        }
    }
    panic!("no process runs {what:?}");
}

use support::free_port;

/// Three `node` processes: the hub is killed with SIGKILL, the leaves keep serving reads and
/// writes on their own, the hub restarts (empty: no persistence) and everything converges.
#[test]
fn leaves_outlive_a_killed_hub_and_converge_when_it_restarts() {
    let dir = temp_dir("nodes");
    let listen = format!("127.0.0.1:{}", free_port());
    let file = dir.join("cluster.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[cluster]
name = "kill-test"
secret_file = "secret.txt"

[defaults]
connection_timeout = "2s"

[[node]]
name = "hub"
listen = "{listen}"
resp = "127.0.0.1:0"

[[node]]
name = "leaf-a"
hub = "hub"
resp = "127.0.0.1:0"

[[node]]
name = "leaf-b"
hub = "hub"
unix = "leaf-b.sock"
"#
        ),
    )
    .unwrap();
    std::fs::write(dir.join("secret.txt"), "not-a-dev-secret\n").unwrap();
    let file = file.to_str().unwrap().to_string();
    let start = |name: &str| {
        let p = Proc::spawn(&["node", "--topology", &file, "--name", name]);
        let lines = p.until(name, |l| l.starts_with("running"));
        (p, lines)
    };
    let (hub, hub_lines) = start("hub");
    let (leaf_a, a_lines) = start("leaf-a");
    let (leaf_b, b_lines) = start("leaf-b");
    assert_eq!(address(&a_lines, "leaf-a", "hub"), listen);
    // The socket path is relative: it resolves against the topology file's folder.
    let socket = address(&b_lines, "leaf-b", "unix");
    assert_eq!(Path::new(&socket), dir.join("leaf-b.sock"));

    let mut a = redis_at(&address(&a_lines, "leaf-a", "resp"));
    let mut b = redis::Client::open(format!("redis+unix://{socket}"))
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = a.set("before", "1").unwrap();
    eventually("leaf-b reads leaf-a's write", || {
        get(&mut b, "before").as_deref() == Some("1")
    });

    hub.signal("-KILL");
    assert!(!hub.wait().success());
    // Both leaves keep serving locally: reads of what they had, and new writes.
    for i in 0..50 {
        let _: () = a.set(format!("outage-a-{i}"), i).unwrap();
        let _: () = b.set(format!("outage-b-{i}"), i).unwrap();
    }
    assert_eq!(get(&mut a, "before").as_deref(), Some("1"));
    assert_eq!(get(&mut b, "outage-b-49").as_deref(), Some("49"));
    assert_eq!(get(&mut b, "outage-a-0"), None, "no hub, no replication");

    let (hub, hub_lines_again) = start("hub");
    assert_eq!(address(&hub_lines_again, "hub", "listen"), listen);
    let mut h = redis_at(&address(&hub_lines_again, "hub", "resp"));
    eventually("the tree converges after the hub restarts", || {
        let all = |c: &mut redis::Connection| {
            (0..50).all(|i| {
                get(c, &format!("outage-a-{i}")) == Some(i.to_string())
                    && get(c, &format!("outage-b-{i}")) == Some(i.to_string())
            }) && get(c, "before").as_deref() == Some("1")
        };
        all(&mut h) && all(&mut a) && all(&mut b)
    });
    let size = |c: &mut redis::Connection| -> u64 { redis::cmd("DBSIZE").query(c).unwrap() };
    assert_eq!((size(&mut h), size(&mut a), size(&mut b)), (101, 101, 101));
    drop(hub_lines);

    for p in [leaf_a, leaf_b, hub] {
        p.signal("-TERM");
        let status = p.wait();
        assert!(status.success(), "{status:?}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn node_refuses_to_start_without_its_secret() {
    let dir = temp_dir("secret");
    let file = dir.join("t.toml");
    std::fs::write(
        &file,
        "[cluster]\nsecret_env = \"LEAFCACHE_TEST_UNSET_SECRET\"\n\n[[node]]\nname = \"solo\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["node", "-t", file.to_str().unwrap(), "-n", "solo"])
        .env_remove("LEAFCACHE_TEST_UNSET_SECRET")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{}:2:14: error: the cluster secret's variable LEAFCACHE_TEST_UNSET_SECRET is not set",
            file.display()
        )),
        "{err}"
    );
    // One message for the one problem: no warning about the same variable before the error.
    assert_eq!(
        err.matches("is not set").count(),
        1,
        "the unset variable is reported once: {err}"
    );
    assert!(!err.contains("WARN") && !err.contains("warning"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

/// A hub `node` process with a root is killed with SIGKILL in the middle of a stream of
/// acknowledged writes from a leaf, then restarted while the leaf cannot reach it. With
/// `flush = "always"` it holds every write it acknowledged; with a batched flush it holds a prefix
/// of them (the op log is in order) and takes the rest back from the leaf once the link heals.
#[test]
fn a_killed_node_restarts_with_its_acknowledged_writes() {
    for flush in ["always", "50ms"] {
        kill_and_restart(flush);
    }
}

fn kill_and_restart(flush: &str) {
    use std::sync::{Arc, Mutex};
    let dir = temp_dir("crash");
    let listen = format!("127.0.0.1:{}", free_port());
    let file = dir.join("crash.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[cluster]
name = "crash-test"
secret_file = "secret.txt"

[defaults]
connection_timeout = "1s"

[[node]]
name = "hub"
listen = "{listen}"
resp = "127.0.0.1:0"
root = "hub-data"
snapshot = "1h"
flush = "{flush}"
"#
        ),
    )
    .unwrap();
    std::fs::write(dir.join("secret.txt"), "crash-secret").unwrap();
    let file = file.to_str().unwrap().to_string();
    let start = || {
        let p = Proc::spawn(&["node", "--topology", &file, "--name", "hub"]);
        let lines = p.until("hub", |l| l.starts_with("running"));
        (p, address(&lines, "hub", "resp"))
    };
    let (hub, _) = start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = rt.block_on(support::proxy::Proxy::start(&listen));
    let _guard = rt.enter();
    let leaf = Node::builder()
        .name("writer")
        .cluster("crash-test")
        .secret("crash-secret")
        .connection_timeout("1s")
        .remote_address(proxy.addr())
        .build()
        .unwrap();
    let cache = leaf.default_cache();
    eventually("the leaf's link is up", || {
        leaf.links()
            .iter()
            .any(|l| l.state == leafcache::LinkState::Up)
    });
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writer = rt.spawn({
        let (cache, acked) = (cache.clone(), acked.clone());
        async move {
            for i in 0.. {
                let key = format!("k{i:06}");
                match cache.set_acked(key, format!("v{i}")).await {
                    Ok(_) => acked.lock().unwrap().push(i),
                    Err(_) => return i + 1,
                }
            }
            unreachable!()
        }
    });
    eventually("the hub acknowledges 1,000 writes", || {
        acked.lock().unwrap().len() >= 1_000
    });
    hub.signal("-KILL");
    assert!(!hub.wait().success());
    proxy.cut();
    let written = rt.block_on(writer).unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 1_000 && written > acked.len() - 1);

    let (hub, resp) = start();
    let mut h = redis_at(&resp);
    let present: Vec<bool> = (0..written)
        .map(|i| get(&mut h, &format!("k{i:06}")).is_some_and(|v| v == format!("v{i}")))
        .collect();
    let prefix = present.iter().take_while(|&&p| p).count();
    eprintln!(
        "{flush}: {} acknowledged, {written} written, {prefix} restored",
        acked.len()
    );
    assert!(
        present[prefix..].iter().all(|&p| !p),
        "{flush}: what survived is not a prefix of the writes"
    );
    if flush == "always" {
        assert!(
            prefix >= acked.len(),
            "{flush}: {} acknowledged, {prefix} restored",
            acked.len()
        );
    }
    let root = dir.join("hub-data");
    let log = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("leafcache.")
        })
        .expect("a log file under the root");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&log).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    eventually("the log file records the restore", || {
        std::fs::read_to_string(&log).unwrap().contains("restored")
    });

    // The leaf comes back: the hub takes what it lost from it.
    proxy.heal();
    eventually("the hub holds every write again", || {
        (prefix..written).all(|i| get(&mut h, &format!("k{i:06}")).is_some())
    });
    hub.signal("-TERM");
    assert!(hub.wait().success());
    rt.block_on(leaf.shutdown());
    drop(proxy);
    std::fs::remove_dir_all(dir).ok();
}

/// `serve` refuses what cannot work before starting, naming its own flags, and keeps its data
/// under `--root` across a restart.
#[test]
fn serve_refuses_settings_that_cannot_work_and_keeps_a_root() {
    let (code, _, err) = run(&["serve", "--listen", "0.0.0.0:0", "--resp", "127.0.0.1:0"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--listen 0.0.0.0:0") && err.contains("--secret"),
        "{err}"
    );
    let (code, _, err) = run(&["serve", "--max-bytes", "10"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--max-bytes 10 holds no entry") && err.contains("give at least"),
        "{err}"
    );
    let (code, _, err) = run(&["serve", "--capacity", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--capacity"), "{err}");
    let (code, _, err) = run(&["serve", "--snapshot", "5m"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--root"), "{err}");
    let (code, _, err) = run(&["serve", "--ttl", "soon"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--ttl"), "{err}");

    // Exit statuses of the client commands: 0 found or done, 1 not found, 2 an error.
    let p = Proc::spawn(&["serve", "--name", "s0", "--http", "127.0.0.1:0"]);
    let lines = p.until("s0", |l| l.starts_with("s0"));
    let node = address(&lines, "s0", "http");
    let at = ["--node", node.as_str()];
    let cmd = |args: &[&str]| run(&[args, &at[..]].concat()).0;
    assert_eq!(cmd(&["get", "missing"]), 1);
    assert_eq!(cmd(&["del", "missing"]), 1);
    assert_eq!(cmd(&["set", "k", "v"]), 0);
    assert_eq!(cmd(&["get", "k"]), 0);
    assert_eq!(
        cmd(&["get", "k", "--cache", "nope"]),
        2,
        "an unknown cache is an error"
    );
    assert_eq!(cmd(&["del", "k"]), 0);
    drop(p);

    let dir = temp_dir("serve-root");
    let root = dir.join("data");
    let root = root.to_str().unwrap();
    let start = || {
        let p = Proc::spawn(&[
            "serve",
            "--name",
            "s1",
            "--resp",
            "127.0.0.1:0",
            "--root",
            root,
            "--flush",
            "always",
            "--snapshot",
            "1h",
        ]);
        let lines = p.until("s1", |l| l.starts_with("s1"));
        let resp = address(&lines, "s1", "resp");
        (p, resp)
    };
    let (p, resp) = start();
    let mut conn = redis_at(&resp);
    redis::cmd("SET")
        .arg("kept")
        .arg("yes")
        .query::<()>(&mut conn)
        .unwrap();
    p.signal("-KILL");
    p.wait();
    let (_p, resp) = start();
    let mut conn = redis_at(&resp);
    assert_eq!(get(&mut conn, "kept").as_deref(), Some("yes"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn sighup_reloads_the_tls_certificates_of_a_running_node() {
    use std::os::unix::fs::PermissionsExt;
    let dir = support::temp_dir("sighup");
    let ca = leafcache::net::DevCa::new("leafcache").unwrap();
    let write = |name: &str, text: &str, mode: u32| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path.to_str().unwrap().to_string()
    };
    let issued = ca.issue(&["node".into(), "127.0.0.1".into()]).unwrap();
    let ca_file = write("ca.pem", ca.cert_pem(), 0o644);
    let cert = write("node.pem", &issued.cert_pem, 0o644);
    let key = write("node-key.pem", &issued.key_pem, 0o600);
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--name",
            "n",
            "--listen",
            "127.0.0.1:0",
            "--secret",
            "s",
        ])
        .args(["--tls-ca", &ca_file, "--tls-cert", &cert, "--tls-key", &key])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains("listen=127.0.0.1:"), "{first}");
    let pid = child.id().to_string();
    let kill = |sig: &str| {
        let ok = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(ok.success());
    };
    let wait_for = |needle: &str| {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line with {needle:?}"),
            }
        }
    };
    kill("-HUP");
    wait_for("SIGHUP: TLS certificates reloaded");
    // A broken file: SIGHUP says so and the node keeps running on the certificates it has.
    std::fs::write(dir.join("node.pem"), "half-written").unwrap();
    kill("-HUP");
    wait_for("do not load; keeping those in use");
    assert!(child.try_wait().unwrap().is_none(), "the node stopped");
    kill("-TERM");
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_node_no_client_can_reach_says_so_and_get_at_a_resp_door_says_what_it_is() {
    // No door: the node runs (its links work), but says that no client can reach it.
    let p = Proc::spawn_logging(&["serve", "--name", "lonely"]);
    p.until("the no-door warning", |l| {
        l.contains("WARN") && l.contains("no client can reach this node")
    });
    drop(p);
    // `get --node` given a RESP door: told it is one, not that the node is unreachable.
    let p = Proc::spawn(&["serve", "--name", "r0", "--resp", "127.0.0.1:0"]);
    let lines = p.until("r0", |l| l.starts_with("r0"));
    let resp = address(&lines, "r0", "resp");
    let (code, _, err) = run(&["get", "k", "--node", &resp]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is a RESP (Redis protocol) door") && err.contains("--http"),
        "{err}"
    );
}

/// The systemd unit in `contrib/` as `systemd-analyze verify` reads it, with its `ExecStart`
/// pointed at the binary under test: no error and no warning (an unknown key is only a warning
/// to systemd, so the output must be empty too).
#[test]
fn the_systemd_unit_verifies() {
    let Ok(analyze) = which("systemd-analyze") else {
        assert!(
            std::env::var_os("LEAFCACHE_REQUIRE_TOOLS").is_none(),
            "systemd-analyze is needed (tests/run-all installs systemd)"
        );
        eprintln!("skipped: no systemd-analyze");
        return;
    };
    let unit = std::fs::read_to_string(repo("contrib/leafcache-node@.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/leafcache node"),
        "{unit}"
    );
    let bin = std::fs::canonicalize(BIN).unwrap();
    let unit = unit.replace("/usr/local/bin/leafcache", bin.to_str().unwrap());
    let dir = temp_dir("systemd");
    let file = dir.join("leafcache-node@hub.service");
    std::fs::write(&file, unit).unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&file)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(said.trim().is_empty(), "{said}");
    std::fs::remove_dir_all(dir).ok();
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

/// `leafcache completions bash`, sourced by a real bash, completes the subcommands; `leafcache
/// man` is a page groff renders without a warning.
#[test]
fn completions_complete_in_bash_and_the_man_page_renders() {
    let (code, script, err) = run(&["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    let dir = temp_dir("completions");
    let file = dir.join("leafcache.bash");
    std::fs::write(&file, script).unwrap();
    let probe = format!(
        "source {}; complete -p leafcache; COMP_WORDS=(leafcache se); COMP_CWORD=1; \
         _leafcache leafcache se leafcache; echo \"${{COMPREPLY[@]}}\"",
        file.display()
    );
    let out = Command::new("bash").args(["-c", &probe]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("-F _leafcache leafcache"), "{said}");
    assert_eq!(said.lines().last(), Some("serve set"), "{said}");
    let (code, _, err) = run(&["completions", "nosuchshell"]);
    assert_eq!(code, 2, "{err}");
    std::fs::remove_dir_all(dir).ok();

    let (code, page, err) = run(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(page.contains(".TH leafcache 1"), "{page}");
    let Ok(groff) = which("groff") else {
        assert!(
            std::env::var_os("LEAFCACHE_REQUIRE_TOOLS").is_none(),
            "groff is needed (tests/run-all installs it)"
        );
        return;
    };
    let mut render = Command::new(groff)
        .args(["-man", "-Tutf8", "-ww"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    render
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = render.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && warnings.is_empty(), "{warnings}");
    for sub in ["serve", "node", "check", "completions"] {
        assert!(
            text.contains(sub),
            "{sub} missing from the man page:\n{text}"
        );
    }
}

/// `check` reports a missing cluster CA once, at the `ca =` line, not once per node; and an
/// unknown key with the name it was probably meant to be.
#[test]
fn check_says_a_missing_ca_once_and_what_an_unknown_key_meant() {
    let dir = temp_dir("check-ca");
    let file = dir.join("t.toml");
    std::fs::write(
        &file,
        "[cluster]\nname = \"t\"\nsecret = \"s\"\n\n[cluster.tls]\nca = \"nope/ca.pem\"\n\
         cert = \"nope/node.pem\"\nkey = \"nope/node-key.pem\"\n\n[[node]]\nname = \"hub\"\n\
         listen = \"127.0.0.1:7400\"\n\n[[node]]\nname = \"leaf\"\nhub = \"hub\"\n",
    )
    .unwrap();
    let shown = file.to_str().unwrap();
    let (code, _, err) = run(&["check", shown]);
    assert_eq!(code, 2, "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(errors.len(), 1, "one error for the one CA: {err}");
    assert!(
        errors[0].starts_with(&format!("{shown}:6:6: error: the cluster CA:")),
        "{err}"
    );
    std::fs::remove_dir_all(dir).ok();

    let broken = repo("tests/topologies/every_kind_at_once.toml");
    let (_, _, err) = run(&["check", broken.to_str().unwrap()]);
    assert!(err.contains("= help: did you mean `capacity`?"), "{err}");
    // Warnings come in the same run as the errors, after them, and are not counted as errors.
    let warning = err
        .lines()
        .position(|l| l.contains(": warning: the cluster secret is written"))
        .unwrap_or_else(|| panic!("no warning: {err}"));
    let lines: Vec<&str> = err.lines().collect();
    let last_error = lines.iter().rposition(|l| l.contains(": error: ")).unwrap();
    assert!(warning > last_error, "{err}");
    assert!(err.trim_end().ends_with("(3 errors)"), "{err}");
}

/// The line of `text` (1-based) that holds `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in {text}"))
        + 1
}

/// `up` reloads its file on `leafcache reload`: a node added and a leaf moved to it, a capacity
/// changed, a node removed — all live; a door moved is refused at its line and nothing of that
/// reload applies; an invalid file is reported by `reload` itself and no process is signalled.
#[test]
fn up_applies_a_changed_topology_on_reload_and_refuses_what_cannot_change_live() {
    let dir = temp_dir("reload-up");
    let file = dir.join("pair.toml");
    let path = file.to_str().unwrap().to_string();
    let hub2_resp = format!("127.0.0.1:{}", free_port());
    let topology = |capacity: u64, hub2: bool, leaf_hub: &str, leaf_resp: &str, hub: bool| {
        let mut text = format!(
            "[cluster]\nname = \"reload\"\nsecret = \"reload-test-secret\"\n\n\
             [defaults]\ncapacity = {capacity}\nconnection_timeout = \"2s\"\n"
        );
        if hub {
            text.push_str(
                "\n[[node]]\nname = \"hub\"\nlisten = \"127.0.0.1:0\"\nresp = \"127.0.0.1:0\"\n",
            );
        }
        if hub2 {
            text.push_str(&format!(
                "\n[[node]]\nname = \"hub2\"\nlisten = \"127.0.0.1:0\"\nresp = \"{hub2_resp}\"\n"
            ));
        }
        text.push_str(&format!(
            "\n[[node]]\nname = \"leaf\"\nhub = \"{leaf_hub}\"\nresp = \"{leaf_resp}\"\n"
        ));
        std::fs::write(&file, &text).unwrap();
        text
    };
    topology(1000, false, "hub", "127.0.0.1:0", true);
    let up = Proc::spawn_logging(&["up", &path, "--loglevel", "info"]);
    let lines = up.until("up running", |l| l.starts_with("up: "));
    let leaf_resp = address(&lines, "leaf", "resp");
    let hub_resp = address(&lines, "hub", "resp");
    let mut leaf = redis_at(&leaf_resp);
    let _: () = leaf.set("before", "1").unwrap();
    let mut hub = redis_at(&hub_resp);
    eventually("the hub has the leaf's write", || {
        get(&mut hub, "before").as_deref() == Some("1")
    });

    // A new hub, the leaf moved to it, a larger capacity.
    topology(2000, true, "hub2", "127.0.0.1:0", true);
    let (code, out, err) = run(&["reload", &path]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("reloading {path}")), "{out}");
    up.until("hub2 started", |l| {
        l.contains("reload: started node \"hub2\"")
    });
    up.until("leaf moved", |l| {
        l.contains("reload: node \"leaf\" now links to 127.0.0.1:")
    });
    up.until("capacity", |l| {
        l.contains("reload: node \"leaf\": cache \"default\" now holds 2000 entries")
    });
    let mut hub2 = redis_at(&hub2_resp);
    let _: () = leaf.set("after", "2").unwrap();
    eventually("hub2 has the leaf's writes, old and new", || {
        get(&mut hub2, "before").as_deref() == Some("1")
            && get(&mut hub2, "after").as_deref() == Some("2")
    });

    // A door moved (and a capacity changed with it): refused at the door's line, nothing applied.
    let moved = format!("127.0.0.1:{}", free_port());
    let text = topology(3000, true, "hub2", &moved, true);
    let (code, _, err) = run(&["reload", &path]);
    assert_eq!(code, 0, "{err}");
    let refused = up.until("refusal", |l| l.contains("cannot change while it runs"));
    let line = refused.last().unwrap();
    let at = format!(
        "{path}:{}:1: error: resp of node \"leaf\"",
        line_of(&text, &moved)
    );
    assert!(line.contains(&at), "{line} lacks {at}");
    let rest = up.until("nothing changed", |l| l.contains("reload: nothing changed"));
    assert!(
        !refused
            .iter()
            .chain(&rest)
            .any(|l| l.contains("3000 entries")),
        "{rest:?}"
    );
    let _: () = leaf.set("still", "3").unwrap();
    eventually(
        "the leaf still serves at its old door and replicates",
        || get(&mut hub2, "still").as_deref() == Some("3"),
    );

    // The first hub removed: its node stops, the rest runs on.
    topology(2000, true, "hub2", "127.0.0.1:0", false);
    let (code, _, err) = run(&["reload", &path]);
    assert_eq!(code, 0, "{err}");
    up.until("hub stopped", |l| {
        l.contains("reload: stopped node \"hub\"")
    });
    eventually("the removed hub's door is closed", || {
        std::net::TcpStream::connect(&hub_resp).is_err()
    });

    // An invalid file: `reload` reports it at its line and signals nobody.
    std::fs::write(
        &file,
        "[cluster]\nname = \"reload\"\nsecret = \"s\"\n[[node]]\nnmae = \"x\"\n",
    )
    .unwrap();
    let (code, _, err) = run(&["reload", &path]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("{path}:5:1: error: unknown field `nmae`")),
        "{err}"
    );
    let _: () = leaf.set("last", "4").unwrap();
    eventually("the tree still runs", || {
        get(&mut hub2, "last").as_deref() == Some("4")
    });

    up.signal("-TERM");
    assert!(up.wait().success());
    std::fs::remove_dir_all(dir).ok();
}

/// A `node` process reloads its file on a real SIGHUP: its hub changed to another, it moves
/// there and its writes follow; a broken file is logged and the node runs on unchanged.
#[test]
fn node_moves_to_a_new_hub_on_sighup_and_survives_a_broken_file() {
    let dir = temp_dir("reload-node");
    let (p1, p2) = (free_port(), free_port());
    let hubs = dir.join("hubs.toml");
    std::fs::write(
        &hubs,
        format!(
            "[cluster]\nname = \"rn\"\nsecret = \"rn-secret\"\n\
             [[node]]\nname = \"h1\"\nlisten = \"127.0.0.1:{p1}\"\nresp = \"127.0.0.1:0\"\n\
             [[node]]\nname = \"h2\"\nlisten = \"127.0.0.1:{p2}\"\nresp = \"127.0.0.1:0\"\n"
        ),
    )
    .unwrap();
    let leaf_file = dir.join("leaf.toml");
    let leaf_text = |port: u16| {
        format!(
            "[cluster]\nname = \"rn\"\nsecret = \"rn-secret\"\n\
             [[node]]\nname = \"leaf\"\nhub = \"127.0.0.1:{port}\"\nresp = \"127.0.0.1:0\"\n"
        )
    };
    std::fs::write(&leaf_file, leaf_text(p1)).unwrap();
    let up = Proc::spawn(&["up", hubs.to_str().unwrap()]);
    let hub_lines = up.until("hubs up", |l| l.starts_with("up: "));
    let leaf = Proc::spawn_logging(&[
        "node",
        "--topology",
        leaf_file.to_str().unwrap(),
        "--name",
        "leaf",
    ]);
    let leaf_lines = leaf.until("leaf running", |l| l.starts_with("running"));
    let mut l = redis_at(&address(&leaf_lines, "leaf", "resp"));
    let mut h1 = redis_at(&address(&hub_lines, "h1", "resp"));
    let mut h2 = redis_at(&address(&hub_lines, "h2", "resp"));
    let _: () = l.set("one", "1").unwrap();
    eventually("h1 has it", || get(&mut h1, "one").as_deref() == Some("1"));
    assert_eq!(get(&mut h2, "one"), None, "h2 is not in the leaf's tree");

    std::fs::write(&leaf_file, leaf_text(p2)).unwrap();
    leaf.signal("-HUP");
    leaf.until("moved", |line| {
        line.contains(&format!(
            "reload: node \"leaf\" now links to 127.0.0.1:{p2}"
        ))
    });
    let _: () = l.set("two", "2").unwrap();
    eventually("h2 has both writes", || {
        get(&mut h2, "one").as_deref() == Some("1") && get(&mut h2, "two").as_deref() == Some("2")
    });

    std::fs::write(&leaf_file, "[cluster\n").unwrap();
    leaf.signal("-HUP");
    leaf.until("broken file", |line| {
        line.contains("the file is not a valid topology; nothing changed")
    });
    let _: () = l.set("three", "3").unwrap();
    eventually("the leaf runs on, linked to h2", || {
        get(&mut h2, "three").as_deref() == Some("3")
    });
    leaf.signal("-TERM");
    assert!(leaf.wait().success());
    up.signal("-TERM");
    assert!(up.wait().success());
    std::fs::remove_dir_all(dir).ok();
}

/// Three shards as three `node` processes: one is SIGSTOPped, and through the others' doors its
/// keys read as misses and its writes fail, naming it, within the connection timeout; the other
/// shards are untouched, and the stopped one serves again once continued.
#[test]
fn a_stopped_shard_is_a_miss_through_the_other_doors_not_an_outage() {
    let dir = temp_dir("shards");
    let file = dir.join("shards.toml");
    let mut text = String::from(
        "[cluster]\nname = \"stop\"\nsecret = \"stop-test-secret\"\n\
         [defaults]\nconnection_timeout = \"1s\"\n",
    );
    let mut doors = Vec::new();
    for shard in ["red", "green", "blue"] {
        let resp = format!("127.0.0.1:{}", free_port());
        text.push_str(&format!(
            "[[node]]\nname = \"{shard}\"\nshard = \"{shard}\"\nresp = \"{resp}\"\n"
        ));
        doors.push(resp);
    }
    std::fs::write(&file, text).unwrap();
    let path = file.to_str().unwrap();
    let procs: Vec<Proc> = ["red", "green", "blue"]
        .iter()
        .map(|name| {
            let p = Proc::spawn(&["node", "--topology", path, "--name", name]);
            p.until(name, |l| l.starts_with("running"));
            p
        })
        .collect();
    let map = leafcache::partition::SlotMap::new(["red", "green", "blue"]).unwrap();
    let key_of = |shard: &str| {
        (0..)
            .map(|k| format!("k{k}"))
            .find(|k| map.shard_of(k.as_bytes()) == shard)
            .unwrap()
    };
    let (blue_key, green_key) = (key_of("blue"), key_of("green"));
    let mut red = redis_at(&doors[0]);
    let _: () = red.set(&blue_key, "b").unwrap();
    assert_eq!(get(&mut red, &blue_key).as_deref(), Some("b"));

    procs[2].signal("-STOP");
    // SIGSTOP is delivered when the process next runs: wait until the kernel says it is stopped.
    let stat = format!("/proc/{}/stat", procs[2].child.id());
    eventually("the blue shard's process is stopped", || {
        let text = std::fs::read_to_string(&stat).unwrap_or_default();
        text.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
    });
    let started = Instant::now();
    assert_eq!(
        get(&mut red, &blue_key),
        None,
        "a read of the stopped shard is a miss"
    );
    let e = red.set::<_, _, ()>(&blue_key, "c").unwrap_err();
    assert_eq!(e.code(), Some("CLUSTERDOWN"), "{e}");
    assert!(e.to_string().contains("\"blue\""), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let _: () = red.set(&green_key, "g").unwrap();
    assert_eq!(get(&mut red, &green_key).as_deref(), Some("g"));

    procs[2].signal("-CONT");
    eventually("the blue shard serves again", || {
        get(&mut red, &blue_key).as_deref() == Some("b")
    });
    for p in procs {
        p.signal("-TERM");
        assert!(p.wait().success());
    }
    std::fs::remove_dir_all(dir).ok();
}

/// A shard added while `redis-benchmark --cluster` writes: about a third of the slots move and
/// no command fails (the benchmark's connections are plain ones to leafcache, so the old owners
/// forward the moved slots' commands).
#[test]
fn a_shard_added_under_a_cluster_benchmark_fails_no_command() {
    if which("redis-benchmark").is_err() {
        assert!(
            std::env::var_os("LEAFCACHE_REQUIRE_REDIS").is_none(),
            "LEAFCACHE_REQUIRE_REDIS is set but redis-benchmark is missing"
        );
        eprintln!("redis-benchmark not available; skipped — tests/run-all installs it");
        return;
    }
    let dir = temp_dir("reshard");
    let file = dir.join("shards.toml");
    let path = file.to_str().unwrap().to_string();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let write = |shards: usize| {
        let mut text = String::from("[cluster]\nname = \"rs\"\nsecret = \"reshard-secret\"\n");
        for (shard, port) in ["red", "green", "blue"].iter().zip(&ports).take(shards) {
            text.push_str(&format!(
                "[[node]]\nname = \"{shard}\"\nshard = \"{shard}\"\nresp = \"127.0.0.1:{port}\"\n"
            ));
        }
        std::fs::write(&file, text).unwrap();
    };
    write(2);
    let up = Proc::spawn_logging(&["up", &path, "--loglevel", "info"]);
    up.until("up running", |l| l.starts_with("up: "));
    let bench = Command::new("redis-benchmark")
        .args([
            "--cluster",
            "-p",
            &ports[0].to_string(),
            "-t",
            "set",
            "-n",
            "400000",
        ])
        .args(["-c", "20", "-r", "100000", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The load is on: the first shard has answered commands.
    let mut red = redis_at(&format!("127.0.0.1:{}", ports[0]));
    eventually("the benchmark is writing", || {
        let info: String = redis::cmd("INFO").arg("stats").query(&mut red).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:"))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 1_000)
    });
    write(3);
    let (code, _, err) = run(&["reload", &path]);
    assert_eq!(code, 0, "{err}");
    let moved = up.until("slots moved", |l| l.contains("slots move"));
    let line = moved.last().unwrap();
    let count: usize = line
        .split(" of 16384")
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!((5000..6000).contains(&count), "{line}");
    let out = bench.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("Error") && !text.contains("MOVED"), "{text}");
    assert!(text.contains("SET:"), "{text}");
    up.signal("-TERM");
    assert!(up.wait().success());
    std::fs::remove_dir_all(dir).ok();
}
