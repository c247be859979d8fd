//! Several OS processes on one host sharing one node through its Unix socket.
//!
//! The parent starts a node with a Unix-socket door and spawns this same test binary four times
//! as children (`child <socket> <id>`). Each child writes its own keys and a shared set of keys
//! through the socket with pipelined RESP, reading back as it goes; every value carries its
//! writer, its key and a checksum, so a torn or mixed value is detected. The parent then checks
//! that every child's keys are all there, intact, and that every shared key holds one whole
//! value written by some child.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

const CHILDREN: usize = 4;
const OWN_KEYS: usize = 2_000;
const SHARED_KEYS: usize = 100;
const ROUNDS: usize = 5;
const NAME: &str = "four_processes_share_one_node_through_its_unix_socket";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test` passes harness flags (`--nocapture`, filters...); only `child` is ours.
    if args.get(1).map(String::as_str) == Some("child") {
        return match child(Path::new(&args[2]), args[3].parse().expect("child id")) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("child failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // Honour a name filter the way the standard harness does.
    let filters: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| NAME.contains(f.as_str())) {
        println!("test result: ok. 0 passed; 1 filtered out");
        return ExitCode::SUCCESS;
    }
    parent();
    println!("test {NAME} ... ok");
    ExitCode::SUCCESS
}

/// A value that says who wrote it for which key, with a checksum over both and a body whose size
/// varies, so that a torn write or a mix of two writes cannot pass for a whole one.
fn value(writer: usize, key: &str, round: usize) -> Vec<u8> {
    let body = "x".repeat((writer * 37 + round * 11 + key.len()) % 300);
    let text = format!("{writer}|{key}|{round}|{body}");
    format!("{text}|{:016x}", checksum(text.as_bytes())).into_bytes()
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// Checks a value's shape and checksum; returns its writer and round.
fn verify(key: &str, raw: &[u8]) -> Result<(usize, usize), String> {
    let text = std::str::from_utf8(raw).map_err(|_| format!("{key}: not UTF-8"))?;
    let (body, sum) = text.rsplit_once('|').ok_or(format!("{key}: no checksum"))?;
    if format!("{:016x}", checksum(body.as_bytes())) != sum {
        return Err(format!("{key}: checksum mismatch in {text:?}"));
    }
    let mut parts = body.splitn(4, '|');
    let writer = parts.next().and_then(|w| w.parse().ok()).ok_or("writer")?;
    let k = parts.next().ok_or("key")?;
    let round = parts.next().and_then(|r| r.parse().ok()).ok_or("round")?;
    if k != key {
        return Err(format!("value for {k:?} found under {key:?}"));
    }
    Ok((writer, round))
}

/// A minimal RESP client over the Unix socket: pipelined requests, replies read in order.
struct Client {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Client {
    fn connect(path: &Path) -> std::io::Result<Client> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        Ok(Client {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    fn send(&mut self, out: &mut Vec<u8>, args: &[&[u8]]) {
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
    }

    fn flush(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        self.writer.write_all(out)?;
        out.clear();
        Ok(())
    }

    /// One reply: `Ok(Some(bytes))` for a bulk string or status, `Ok(None)` for a null.
    fn reply(&mut self) -> Result<Option<Vec<u8>>, String> {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let line = line.trim_end();
        match line.as_bytes().first() {
            Some(b'+') => Ok(Some(line.as_bytes()[1..].to_vec())),
            Some(b'$') if line == "$-1" => Ok(None),
            Some(b'$') => {
                let len: usize = line[1..].parse().map_err(|_| format!("bad {line}"))?;
                let mut buf = vec![0; len + 2];
                std::io::Read::read_exact(&mut self.reader, &mut buf).map_err(|e| e.to_string())?;
                buf.truncate(len);
                Ok(Some(buf))
            }
            _ => Err(format!("unexpected reply {line:?}")),
        }
    }
}

fn child(path: &Path, id: usize) -> Result<(), String> {
    let mut c = Client::connect(path).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for round in 0..ROUNDS {
        // Own keys: write a batch pipelined, then read it back pipelined.
        for chunk in (0..OWN_KEYS).collect::<Vec<_>>().chunks(250) {
            for &i in chunk {
                let key = format!("p{id}:{i}");
                c.send(&mut out, &[b"SET", key.as_bytes(), &value(id, &key, round)]);
            }
            for i in 0..SHARED_KEYS {
                if i % CHILDREN == round % CHILDREN {
                    let key = format!("shared:{i}");
                    c.send(&mut out, &[b"SET", key.as_bytes(), &value(id, &key, round)]);
                }
            }
            c.flush(&mut out).map_err(|e| e.to_string())?;
            let writes = chunk.len()
                + (0..SHARED_KEYS)
                    .filter(|i| i % CHILDREN == round % CHILDREN)
                    .count();
            for _ in 0..writes {
                if c.reply()?.as_deref() != Some(b"OK") {
                    return Err("SET not OK".into());
                }
            }
            for &i in chunk {
                c.send(&mut out, &[b"GET", format!("p{id}:{i}").as_bytes()]);
            }
            c.flush(&mut out).map_err(|e| e.to_string())?;
            for &i in chunk {
                let key = format!("p{id}:{i}");
                let got = c.reply()?.ok_or(format!("{key} missing after its write"))?;
                if verify(&key, &got)? != (id, round) {
                    return Err(format!("{key}: read back another write"));
                }
            }
        }
        // Shared keys: whatever is there must be one whole value from some child.
        for i in 0..SHARED_KEYS {
            c.send(&mut out, &[b"GET", format!("shared:{i}").as_bytes()]);
        }
        c.flush(&mut out).map_err(|e| e.to_string())?;
        for i in 0..SHARED_KEYS {
            let key = format!("shared:{i}");
            if let Some(v) = c.reply()? {
                verify(&key, &v)?;
            }
        }
    }
    Ok(())
}

fn parent() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("leafcache-procs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("node.sock");
    let node = {
        let _guard = runtime.enter();
        leafcache::Node::builder()
            .unix_socket(&socket)
            .default_cache(leafcache::CacheConfig::new().max_entries(100_000))
            .build()
            .unwrap()
    };
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..CHILDREN)
        .map(|id| {
            Command::new(&exe)
                .arg("child")
                .arg(&socket)
                .arg(id.to_string())
                .spawn()
                .unwrap()
        })
        .collect();
    for (id, mut child) in children.into_iter().enumerate() {
        let status = child.wait().unwrap();
        assert!(status.success(), "child {id} failed: {status}");
    }
    let cache = node.default_cache();
    for id in 0..CHILDREN {
        for i in 0..OWN_KEYS {
            let key = format!("p{id}:{i}");
            let v = cache.get(&key).unwrap_or_else(|| panic!("{key} lost"));
            assert_eq!(verify(&key, &v), Ok((id, ROUNDS - 1)), "{key}");
        }
    }
    for i in 0..SHARED_KEYS {
        let key = format!("shared:{i}");
        let v = cache.get(&key).unwrap_or_else(|| panic!("{key} lost"));
        verify(&key, &v).unwrap();
    }
    assert_eq!(cache.len(), CHILDREN * OWN_KEYS + SHARED_KEYS);
    runtime.block_on(node.shutdown());
    std::fs::remove_dir_all(&dir).unwrap();
}
