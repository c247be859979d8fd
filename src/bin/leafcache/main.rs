//! The `leafcache` command: run a topology file (`up`, `node`, `check`) or one node from flags
//! (`serve`), talk to a running node over its HTTP door (`get`, `set`, `del`, `stats`,
//! `topology`), or size a cache from a key trace (`replay`).

mod certs;
mod client;
mod reload;
mod status;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use leafcache::topology::{CacheTableConfig, Topology, TopologyError};
use leafcache::{Cache, Error, Node};

#[derive(Parser)]
#[command(
    name = "leafcache",
    version,
    about = "A hub/leaf replicated LRU cache with time expiration",
    after_help = "Exit status: 0 found or done; 1 not found (get, del); 2 an error (bad input, \
                  an unreachable node, a cache the node does not have)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs every node of a topology file in this process, prints their roles and addresses,
    /// then a status line per link, until Ctrl-C or SIGTERM.
    Up {
        /// The topology file, e.g. topologies/star.toml.
        file: PathBuf,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Runs one node of a topology file until Ctrl-C or SIGTERM.
    Node {
        /// The topology file.
        #[arg(long, short = 't')]
        topology: PathBuf,
        /// The node to run: a `name` of one of the file's [[node]] tables.
        #[arg(long, short = 'n')]
        name: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Checks a topology file and prints its tree; errors point at file:line:column (exit 2).
    Check {
        /// The topology file.
        file: PathBuf,
    },
    /// Makes a development CA and a certificate for every node of a topology file with
    /// [cluster.tls], at the paths it names (the CA's key beside the CA as NAME-key.pem). Files
    /// already there are kept, unless --force; an existing CA is reused.
    Certs {
        /// The topology file.
        file: PathBuf,
        /// Issue the node certificates again even where they exist (the CA is kept).
        #[arg(long)]
        force: bool,
    },
    /// Checks a topology file again and has every `leafcache up` or `node` process running it
    /// apply it (SIGHUP): nodes added or removed, hubs, cache capacities and times to live change
    /// live; anything else is refused, at its line, in the process's log, and nothing applied.
    Reload {
        /// The topology file the processes run.
        file: PathBuf,
    },
    /// Runs one node from command-line settings until Ctrl-C or SIGTERM.
    Serve(Box<ServeArgs>),
    /// Prints the value of KEY, read through a node's HTTP door.
    Get {
        key: String,
        #[command(flatten)]
        target: client::Target,
    },
    /// Stores VALUE under KEY through a node's HTTP door.
    Set {
        key: String,
        value: String,
        /// Time to live: "120s", "30m", "1d" (default: the cache's).
        #[arg(long)]
        ttl: Option<String>,
        #[command(flatten)]
        target: client::Target,
    },
    /// Deletes KEY through a node's HTTP door.
    Del {
        key: String,
        #[command(flatten)]
        target: client::Target,
    },
    /// Prints a node's statistics (JSON).
    Stats {
        #[command(flatten)]
        target: client::Target,
    },
    /// Prints a node, its links and their state (JSON).
    Topology {
        #[command(flatten)]
        target: client::Target,
    },
    /// Replays a key trace (one key per line) read-through against a cache and prints its hit
    /// ratio: a way to choose `maximum_capacity` from real traffic.
    Replay(ReplayArgs),
    /// Prints the shell completion script for SHELL, e.g.
    /// `leafcache completions bash > /etc/bash_completion.d/leafcache`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Prints the manual page (roff), e.g. `leafcache man | man -l -`.
    Man,
}

/// Settings of a run that the topology file does not hold.
#[derive(Args)]
struct RunArgs {
    /// Front-door password (RESP AUTH, HTTP bearer token) for every node run.
    #[arg(long, env = "LEAFCACHE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Log filter, e.g. "info" or "leafcache=debug" (RUST_LOG wins; default: the node's
    /// `loglevel`, else "info" for `node` and "warn" for `up`).
    #[arg(long)]
    loglevel: Option<String>,
}

#[derive(Args)]
struct ReplayArgs {
    /// The trace file, or `-` for standard input.
    trace: String,
    /// The cache's capacity in entries.
    #[arg(long, default_value_t = 100_000)]
    capacity: u64,
    /// The cache's capacity in bytes (keys + values + per-entry overhead): a number or "256MiB".
    #[arg(long, value_parser = parse_size)]
    max_bytes: Option<u64>,
    /// The size of the value stored on each miss, in bytes.
    #[arg(long, default_value_t = 64)]
    value_size: usize,
}

/// One node's settings on the command line.
#[derive(Args)]
struct ServeArgs {
    /// The node's name.
    #[arg(long)]
    name: Option<String>,
    /// Accept leaves on this address (host:port or unix:/path): makes the node a hub.
    #[arg(long)]
    listen: Option<String>,
    /// The hub to link to (host:port or unix:/path): makes the node a leaf. Repeated, the hubs
    /// in order of preference: it fails over down the list.
    #[arg(long)]
    hub: Vec<String>,
    /// RESP (Redis protocol) door: host:port, or a port on 127.0.0.1.
    #[arg(long)]
    resp: Option<String>,
    /// HTTP door: host:port, or a port on 127.0.0.1.
    #[arg(long)]
    http: Option<String>,
    /// A Unix socket speaking RESP, created 0600.
    #[arg(long)]
    unix: Option<std::path::PathBuf>,
    /// Front-door password (RESP AUTH, HTTP bearer token).
    #[arg(long, env = "LEAFCACHE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// The cluster secret peers prove they know.
    #[arg(long, env = "LEAFCACHE_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// The cluster name; links form only within one.
    #[arg(long)]
    cluster: Option<String>,
    /// Entries the default cache holds.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    capacity: u64,
    /// Bytes the default cache holds: a number or "256MiB", "1GB".
    #[arg(long, value_parser = parse_size)]
    max_bytes: Option<u64>,
    /// Default time to live: "120s", "30m", "1d".
    #[arg(long, value_parser = parse_interval)]
    ttl: Option<std::time::Duration>,
    /// How the full cache chooses what to evict: "lru" (default), "lfu" or "s3fifo".
    #[arg(long, value_parser = |s: &str| s.parse::<leafcache::Eviction>().map_err(|e| e.to_string()))]
    eviction: Option<leafcache::Eviction>,
    /// Read misses through this origin: "http://host:port/path/{key}" or "file:/dir/{key}"
    /// (the key URL-escaped; a 404 or a missing file is a miss).
    #[arg(long, value_parser = |s: &str| leafcache::Origin::new(s, leafcache::DEFAULT_ORIGIN_TIMEOUT).map(|_| s.to_string()).map_err(|e| e.to_string()))]
    origin: Option<String>,
    /// How long the origin may take to answer: "5s" (the default).
    #[arg(long, requires = "origin", value_parser = parse_interval)]
    origin_timeout: Option<std::time::Duration>,
    /// A link silent this long is down: "5s".
    #[arg(long, value_parser = parse_interval)]
    connection_timeout: Option<std::time::Duration>,
    /// Keep the node's data under this directory (snapshot and op log): it restarts with it.
    #[arg(long)]
    root: Option<std::path::PathBuf>,
    /// How often to write a snapshot under --root: "5m" (the default), "30s".
    #[arg(long, requires = "root", value_parser = parse_interval)]
    snapshot: Option<std::time::Duration>,
    /// When changes reach the op log's file: "always", "never", or an interval ("100ms", the
    /// default).
    #[arg(long, requires = "root", value_parser = |s: &str| s.parse::<leafcache::Flush>().map_err(|e| e.to_string()))]
    flush: Option<leafcache::Flush>,
    /// The cluster CA (PEM): with --tls-cert and --tls-key, links are mutual TLS.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// This node's certificate (PEM).
    #[arg(long, requires = "tls_ca")]
    tls_cert: Option<PathBuf>,
    /// This node's private key (PEM, mode 600).
    #[arg(long, requires = "tls_ca")]
    tls_key: Option<PathBuf>,
    /// TLS on the RESP and HTTP doors too, with the node's certificate.
    #[arg(long, requires = "tls_ca")]
    tls_doors: bool,
    /// Log filter, e.g. "info" or "leafcache=debug" (or RUST_LOG).
    #[arg(long, default_value = "info")]
    loglevel: String,
}

/// A duration on the command line, above zero: `"30s"`, `"5m"`.
fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be above zero".into());
    }
    Ok(d)
}

/// A byte size on the command line: `1048576`, `"256MiB"`, `"1GB"`.
fn parse_size(s: &str) -> Result<u64, String> {
    let size = s.trim().parse::<bytesize::ByteSize>()?.as_u64();
    if size == 0 {
        return Err("must be at least 1 byte".into());
    }
    Ok(size)
}

fn main() -> ExitCode {
    // Everything this command creates — roots, log files, Unix sockets — is its user's alone,
    // including files made by libraries (the rolling log appender) that take no mode.
    // SAFETY: umask only sets this process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up { file, run } => up(&file, run),
        Command::Node {
            topology,
            name,
            run,
        } => run_node(&topology, &name, run),
        Command::Check { file } => check(&file),
        Command::Reload { file } => reload::signal(&file),
        Command::Certs { file, force } => certs::make(&file, force),
        Command::Serve(args) => serve(*args),
        Command::Get { key, target } => client::get(&target, &key),
        Command::Set {
            key,
            value,
            ttl,
            target,
        } => client::set(&target, &key, &value, ttl.as_deref()),
        Command::Del { key, target } => client::del(&target, &key),
        Command::Stats { target } => client::show(&target, "/v1/stats"),
        Command::Topology { target } => client::show(&target, "/v1/topology"),
        Command::Replay(args) => run_replay(args),
        Command::Completions { shell } => {
            let mut cli = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cli, "leafcache", &mut script);
            print_all(&script)
        }
        Command::Man => {
            let cli = <Cli as clap::CommandFactory>::command();
            let mut page = Vec::new();
            match clap_mangen::Man::new(cli).render(&mut page) {
                Ok(()) => print_all(&page),
                Err(e) => Err(e.into()),
            }
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("leafcache: {e}");
            ExitCode::from(2)
        }
    }
}

type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

/// Writes `bytes` to standard output; a reader that stopped early (`| head`) is no error.
fn print_all(bytes: &[u8]) -> CliResult {
    use std::io::Write;
    match std::io::stdout().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Logs to stderr through `filter`, unless RUST_LOG is set.
fn init_logging(filter: &str) -> Result<(), String> {
    init_logging_to(filter, None).map(|_| ())
}

/// Logs to stderr (human-readable, colored on a terminal) and, given a node's root, also to
/// `leafcache.log.DATE` files there, rolled daily, the last 7 kept. The guard flushes the file
/// writer when dropped.
fn init_logging_to(
    filter: &str,
    root: Option<&Path>,
) -> Result<Option<tracing_appender::non_blocking::WorkerGuard>, String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .map_err(|e| format!("invalid log filter {filter:?}: {e}"))?;
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let (file, guard) = match root {
        Some(root) => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root)
                .map_err(|e| format!("creating the root {}: {e}", root.display()))?;
            let appender = tracing_appender::rolling::RollingFileAppender::builder()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .filename_prefix("leafcache")
                .filename_suffix("log")
                .max_log_files(7)
                .build(root)
                .map_err(|e| format!("opening the log file in {}: {e}", root.display()))?;
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false);
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .init();
    Ok(guard)
}

/// Logs to `leafcache.log` in a fresh private directory under the temp dir (for `up` on a
/// terminal), noting each line in the returned [`status::LogTail`]. The guard flushes the file
/// writer when dropped.
fn init_logging_to_file(
    filter: &str,
) -> Result<
    (
        PathBuf,
        status::LogTail,
        tracing_appender::non_blocking::WorkerGuard,
    ),
    String,
> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .map_err(|e| format!("invalid log filter {filter:?}: {e}"))?;
    let dir = std::env::temp_dir().join(format!("leafcache-up-{}", std::process::id()));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("creating the log directory {}: {e}", dir.display()))?;
    let appender = tracing_appender::rolling::never(&dir, "leafcache.log");
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let tail = status::LogTail::default();
    let noted = tail.clone();
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(move || Noted {
            inner: writer.clone(),
            tail: noted.clone(),
        });
    tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .init();
    Ok((dir.join("leafcache.log"), tail, guard))
}

/// A log writer that also tells the [`status::LogTail`] what it wrote.
struct Noted {
    inner: tracing_appender::non_blocking::NonBlocking,
    tail: status::LogTail,
}

impl std::io::Write for Noted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tail.saw(buf);
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Reads and checks a topology; an invalid one prints every diagnostic and exits 2.
fn load_topology(file: &Path) -> Result<Topology, ExitCode> {
    match Topology::load(file) {
        Ok(t) => Ok(t),
        Err(TopologyError::Invalid(diagnostics)) => {
            for d in &diagnostics {
                eprintln!("{d}");
            }
            eprintln!(
                "leafcache: {} is not a valid topology ({})",
                file.display(),
                status::plural(
                    (diagnostics.iter())
                        .filter(|d| d.severity == leafcache::topology::Severity::Error)
                        .count() as u64,
                    "error"
                )
            );
            Err(ExitCode::from(2))
        }
        Err(e) => {
            eprintln!("leafcache: {e}");
            Err(ExitCode::from(2))
        }
    }
}

fn check(file: &Path) -> CliResult {
    let topology = match load_topology(file) {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    for w in topology.warnings() {
        eprintln!("{w}");
    }
    let problems = topology.file_problems();
    for p in &problems {
        eprintln!("{p}");
    }
    print!("{}", topology.render());
    if !problems.is_empty() {
        eprintln!(
            "{}: {} with the files it names",
            file.display(),
            status::plural(problems.len() as u64, "problem")
        );
        return Ok(ExitCode::from(2));
    }
    println!("{}: ok", file.display());
    Ok(ExitCode::SUCCESS)
}

fn run_node(file: &Path, name: &str, run: RunArgs) -> CliResult {
    let mut topology = match load_topology(file) {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let spec = topology.node(name)?;
    let filter = (run.loglevel.clone())
        .or_else(|| spec.loglevel.clone())
        .unwrap_or_else(|| "info".into());
    let _log_file = init_logging_to(&filter, spec.root.as_deref())?;
    for w in topology.start_warnings() {
        tracing::warn!("{}", first_line(w));
    }
    if let Some(p) = run.password {
        topology = topology.with_password(p);
    }
    runtime()?.block_on(async move {
        // Before the first line that says the node runs: a signal from then on is handled.
        let mut signals = Signals::new()?;
        let node = topology.start(name)?;
        println!("{}", status::describe(&node));
        if let Some(http) = node.http_addr() {
            println!("dashboard: {}://{http}/dashboard", scheme(&node));
        }
        println!(
            "running {name}; Ctrl-C to stop, SIGHUP to reload {}",
            file.display()
        );
        let mut topology = topology;
        while signals.next().await? == Signal::Hangup {
            reload_tls(std::slice::from_ref(&node));
            if let Some(new) = reload::read(file) {
                match topology.reload_node(&new, &node) {
                    Ok(applied) => {
                        reload::log_applied(&applied);
                        topology = new;
                    }
                    Err(e) => reload::log_refused(&e),
                }
            }
        }
        tracing::info!("shutting down");
        node.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

fn up(file: &Path, run: RunArgs) -> CliResult {
    let mut topology = match load_topology(file) {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let filter = run.loglevel.as_deref().unwrap_or("warn");
    // On a terminal the log goes to a file, so that it never breaks the table redrawn in place;
    // the table shows its last line. Piped, it goes to stderr as usual.
    let (log, log_guard) = if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        let (path, tail, guard) = init_logging_to_file(filter)?;
        (Some((path, tail)), Some(guard))
    } else {
        init_logging(filter)?;
        (None, None)
    };
    for w in topology.start_warnings() {
        eprintln!("{}", first_line(w));
    }
    if let Some(p) = run.password {
        topology = topology.with_password(p);
    }
    // The log's directory, removed when `up` ends (the table's log line says so).
    let log_dir = log
        .as_ref()
        .and_then(|(path, _)| path.parent().map(Path::to_path_buf));
    let ran = runtime()?.block_on(async move {
        let mut signals = Signals::new()?;
        let nodes = topology.start_all().await?;
        for node in &nodes {
            println!("{}", status::describe(node));
        }
        if let Some((node, http)) = nodes.iter().find_map(|n| n.http_addr().map(|a| (n, a))) {
            println!("dashboard: {}://{http}/dashboard", scheme(node));
        }
        println!(
            "up: {} of cluster {:?} running; Ctrl-C to stop",
            status::plural(nodes.len() as u64, "node"),
            topology.cluster()
        );
        let running = std::sync::Mutex::new((topology, nodes));
        let reloads = async {
            while signals.next().await? == Signal::Hangup {
                let (topology, mut nodes) = running.lock().expect("not poisoned").clone();
                reload_tls(&nodes);
                let Some(new) = reload::read(file) else {
                    continue;
                };
                match topology.reload_all(&new, &mut nodes).await {
                    Ok(applied) => {
                        reload::log_applied(&applied);
                        *running.lock().expect("not poisoned") = (new, nodes);
                    }
                    Err(e) => reload::log_refused(&e),
                }
            }
            Ok::<(), std::io::Error>(())
        };
        tokio::select! {
            r = reloads => r?,
            () = status::watch(&running, log) => {}
        }
        let nodes = running.lock().expect("not poisoned").1.clone();
        for node in &nodes {
            node.shutdown().await;
        }
        println!("stopped");
        Ok(ExitCode::SUCCESS)
    });
    drop(log_guard);
    if let Some(dir) = log_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    ran
}

fn first_line(d: &impl std::fmt::Display) -> String {
    d.to_string().lines().next().unwrap_or_default().to_string()
}

/// The settings of `serve` that cannot work, refused before anything starts, in the flags' names.
fn check_serve(args: &ServeArgs) -> Result<(), String> {
    if let Some(listen) = &args.listen
        && args.secret.is_none()
    {
        if !leafcache::net::stays_on_host(listen) {
            return Err(format!(
                "--listen {listen} accepts leaves from other hosts, and no --secret is set: give \
                 --secret (or LEAFCACHE_SECRET), which every leaf must prove it knows"
            ));
        }
        tracing::warn!(
            listen = %listen,
            "a hub without --secret: any process on this host can link to it"
        );
    }
    if args.resp.is_none() && args.http.is_none() && args.unix.is_none() {
        tracing::warn!(
            "no --resp, --http or --unix door: no client can reach this node, only its links"
        );
    }
    if let Some(max_bytes) = args.max_bytes {
        // The smallest entry worth a cache: a 16-byte key and a 64-byte value.
        let smallest = leafcache::entry_size(16, 64);
        let limit = |bytes: u64| {
            Cache::builder()
                .maximum_capacity(args.capacity)
                .max_bytes(bytes)
                .build()
                .map(|c| c.max_entry_bytes())
                .map_err(|e| format!("--max-bytes {bytes}: {e}"))
        };
        if limit(max_bytes)? < smallest {
            // The least budget that takes it (the entry limit is the budget over its shards).
            let mut least = smallest as u64;
            while limit(least)? < smallest {
                least *= 2;
            }
            return Err(format!(
                "--max-bytes {max_bytes} holds no entry: the largest entry it takes is {} bytes, \
                 and a 16-byte key with a 64-byte value needs {smallest} (each entry costs {} bytes \
                 beside its key and value); give at least {least}",
                limit(max_bytes)?,
                leafcache::ENTRY_OVERHEAD,
            ));
        }
    }
    Ok(())
}

fn serve(args: ServeArgs) -> CliResult {
    init_logging(&args.loglevel)?;
    check_serve(&args)?;
    runtime()?.block_on(async move {
        let settings = CacheTableConfig {
            capacity: Some(args.capacity),
            max_bytes: args.max_bytes,
            ttl: args.ttl,
            tombstone_ttl: None,
            eviction: args.eviction,
            origin: args.origin,
            origin_timeout: args.origin_timeout,
        };
        let mut builder = Node::builder().default_cache(settings.config());
        if let Some(n) = args.name {
            builder = builder.name(n);
        }
        if let Some(a) = args.listen {
            builder = builder.local_address(a);
        }
        if !args.hub.is_empty() {
            builder = builder.remote_addresses(args.hub);
        }
        if let Some(a) = args.resp {
            builder = builder.resp_address(a);
        }
        if let Some(a) = args.http {
            builder = builder.http_address(a);
        }
        if let Some(p) = args.unix {
            builder = builder.unix_socket(p);
        }
        if let Some(p) = args.password {
            builder = builder.password(p);
        }
        if let Some(s) = args.secret {
            builder = builder.secret(s);
        }
        if let Some(c) = args.cluster {
            builder = builder.cluster(c);
        }
        if let Some(t) = args.connection_timeout {
            builder = builder.connection_timeout(t);
        }
        if let Some(root) = args.root {
            builder = builder.root(root);
        }
        if let Some(every) = args.snapshot {
            builder = builder.snapshot_interval(every);
        }
        if let Some(flush) = args.flush {
            builder = builder.flush(flush);
        }
        if let (Some(ca), Some(cert), Some(key)) = (args.tls_ca, args.tls_cert, args.tls_key) {
            builder = builder
                .tls(leafcache::net::TlsFiles::new(ca, cert, key))
                .door_tls(args.tls_doors);
        }
        let mut signals = Signals::new()?;
        let node = builder.build()?;
        println!("{}", status::describe(&node));
        while signals.next().await? == Signal::Hangup {
            reload_tls(std::slice::from_ref(&node));
        }
        tracing::info!("shutting down");
        node.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// `https` for a node whose doors speak TLS, else `http`.
fn scheme(node: &Node) -> &'static str {
    if node.door_tls() { "https" } else { "http" }
}

/// What a running command is asked by a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    /// Ctrl-C or SIGTERM: shut down.
    Stop,
    /// SIGHUP: reload what can be reloaded.
    Hangup,
}

/// The signals a running command listens to, registered once for its whole run.
struct Signals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next one.
    async fn next(&mut self) -> std::io::Result<Signal> {
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map(|()| Signal::Stop),
            _ = self.term.recv() => Ok(Signal::Stop),
            _ = self.hup.recv() => Ok(Signal::Hangup),
        }
    }
}

/// Reads the TLS files of `nodes` again (on SIGHUP).
fn reload_tls(nodes: &[Node]) {
    for node in nodes {
        match node.reload_tls() {
            Ok(true) => tracing::info!(node = node.name(), "SIGHUP: TLS certificates reloaded"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(node = node.name(), error = %e, "SIGHUP: TLS certificates do not load; keeping those in use")
            }
        }
    }
}

fn run_replay(args: ReplayArgs) -> CliResult {
    let ReplayArgs {
        trace,
        capacity,
        max_bytes,
        value_size,
    } = args;
    {
        {
            let mut builder = Cache::builder().maximum_capacity(capacity);
            if let Some(b) = max_bytes {
                builder = builder.max_bytes(b);
            }
            let cache = builder.build()?;
            let input: Box<dyn BufRead> = if trace == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                let file = std::fs::File::open(&trace)
                    .map_err(|e| format!("cannot open trace {trace:?}: {e}"))?;
                Box::new(BufReader::new(file))
            };
            let value = bytes::Bytes::from(vec![0u8; value_size]);
            let start = Instant::now();
            let mut reads = 0u64;
            for line in input.split(b'\n') {
                let line = line.map_err(|e| format!("cannot read trace {trace:?}: {e}"))?;
                let key = line.strip_suffix(b"\r").unwrap_or(&line);
                if key.is_empty() {
                    continue;
                }
                reads += 1;
                if cache.get(key).is_none() {
                    match cache.set(key.to_vec(), value.clone()) {
                        Ok(_) | Err(Error::ValueTooLarge { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            let elapsed = start.elapsed();
            let s = cache.stats();
            println!("reads        {reads}");
            println!("hits         {}", s.hits);
            println!("misses       {}", s.misses);
            println!("hit ratio    {:.4}", s.hit_ratio());
            println!("evictions    {}", s.evictions);
            println!("entries      {}", s.entries);
            println!("bytes        {}", s.bytes);
            println!("elapsed      {elapsed:.2?}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
