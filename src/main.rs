//! The `leafcache` command.
//!
//! Today it has one subcommand, `replay`, which sizes a cache from a real key trace: it replays the
//! keys read-through against a leafcache with the given capacity and prints the hit ratio.

use std::io::{BufRead, BufReader};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use leafcache::{Cache, Error};

#[derive(Parser)]
#[command(
    name = "leafcache",
    version,
    about = "A hub/leaf replicated LRU cache with time expiration"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replays a key trace (one key per line) read-through against a cache and prints its hit
    /// ratio: a way to choose `maximum_capacity` from real traffic.
    Replay {
        /// The trace file, or `-` for standard input.
        trace: String,
        /// The cache's capacity in entries.
        #[arg(long, default_value_t = 100_000)]
        capacity: u64,
        /// The cache's capacity in bytes (keys + values + per-entry overhead).
        #[arg(long)]
        max_bytes: Option<u64>,
        /// The size of the value stored on each miss, in bytes.
        #[arg(long, default_value_t = 64)]
        value_size: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leafcache: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Replay {
            trace,
            capacity,
            max_bytes,
            value_size,
        } => {
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
            Ok(())
        }
    }
}
