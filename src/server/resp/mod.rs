//! The RESP door: one task per connection (TCP or Unix socket) that reads what the client sent,
//! executes every whole request in it in order, writes all their replies at once, and writes the
//! push frames (pub/sub messages, invalidations) other connections and the caches queue for it.
//!
//! Pipelined requests cost no task or allocation each: arguments are slices of the read buffer,
//! replies go into one output buffer that is written when the input holds no further whole
//! request. A protocol error is answered and closes that connection only.
//!
//! Commands run under the node's gate (`Core::gate`): shared by ordinary commands, held alone by
//! `EXEC` and the multi-key writes, so those are atomic on the node. The shared hold is taken once
//! for a run of pipelined commands, and never across an `.await`.
//!
//! Inside, dispatch flows one way (bottom to top): `args` (arguments, parsers, error texts) →
//! `session` (one connection's state) → the registries (`clients`, `tracking`; `pubsub` holds its
//! commands beside its registry) → the command files (`connection`, `transactions`, `strings`,
//! `keys`, `hashes`, `client`, `admin`, `pubsub`), which name none of one another → `table` (one
//! row per command, and `COMMAND`) → `dispatch` (checks, `MULTI` queueing, running `EXEC`'s
//! queue) → this file's connection loop. tests/layers.rs holds the door to that order.

mod admin;
mod args;
mod client;
mod clients;
mod cluster;
mod connection;
mod dispatch;
mod hashes;
mod keys;
mod pubsub;
mod session;
mod strings;
mod table;
mod tracking;
mod transactions;

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::count;
use super::protocol::{ParseLimits, Parsed, Reply, parse};
use crate::net::{Listener, Stream};
use crate::node::Node;
use args::Args;
use clients::Clients;
use pubsub::PubSub;
use session::{Pending, Session};
use tracking::Tracking;

/// Output above this is written before the next request is executed, so that a long pipeline of
/// large replies does not pile up in memory.
const FLUSH_AT: usize = 64 << 10;

/// The most buffer reserved at once for a request still arriving.
const READ_AHEAD: usize = 1 << 20;

/// What every RESP connection of a node shares: the client registry, the tracking table and the
/// pub/sub subscriptions. It is the caches' watcher, so it hears of every changed key.
pub(crate) struct Shared {
    clients: Clients,
    tracking: Tracking,
    pubsub: PubSub,
    /// A command's name by its table index (for `CLIENT LIST`), without the table below it.
    names: fn(usize) -> &'static str,
}

impl Shared {
    pub fn new(max_tracked_keys: usize) -> Arc<Self> {
        Arc::new(Shared {
            clients: Clients::default(),
            tracking: Tracking::new(max_tracked_keys),
            pubsub: PubSub::default(),
            names: |i| table::COMMANDS[i].name,
        })
    }
}

/// How often expired entries are looked for and removed without a read or write touching them:
/// what lets a client-side cache hear of an expiry on time (Redis's active expiry, 10 per second).
const EXPIRE_EVERY: Duration = Duration::from_millis(100);

/// Expired entries removed per cache per pass, at most.
const EXPIRE_BUDGET: usize = 4096;

/// Removes expired entries in the background until the node shuts down.
pub(crate) async fn expire_loop(node: Node) {
    let shutdown = node.registry().shutdown.clone();
    let mut every = tokio::time::interval(EXPIRE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = every.tick() => {
                for cache in node.caches() {
                    cache.sweep(EXPIRE_BUDGET);
                }
            }
        }
    }
}

/// Accepts RESP connections until the node shuts down.
pub(crate) async fn accept_loop(
    node: Node,
    shared: Arc<Shared>,
    listener: Box<dyn Listener>,
    permits: Arc<Semaphore>,
) {
    let shutdown = node.registry().shutdown.clone();
    let stats = &node.doors().stats;
    let local = listener.local_addr();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (mut stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment rather than spin.
                warn!(error = %e, "resp accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        count(&stats.connections_received, 1);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            count(&stats.connections_rejected, 1);
            let _ = stream
                .write_all(b"-ERR max number of clients reached\r\n")
                .await;
            continue;
        };
        let node = node.clone();
        let shared = shared.clone();
        let local = local.clone();
        let tls = node
            .door_tls_config()
            .filter(|_| !local.starts_with("unix:"));
        node.registry().tasks.clone().spawn(async move {
            let stats = &node.doors().stats;
            if let Some(tls) = tls {
                let timeout = node.replication_config().connection_timeout;
                stream = match tokio::time::timeout(timeout, tls.accept_door(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(reason)) => {
                        debug!(peer = %peer, error = %reason, "resp connection refused");
                        return;
                    }
                    Err(_) => return,
                };
            }
            stats.connections_open.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = serve(&node, &shared, stream, peer.clone(), local).await {
                debug!(peer = %peer, error = %e, "resp connection closed");
            }
            stats.connections_open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

/// Why a run of requests stopped.
enum Stop {
    /// The input holds no further whole request.
    NeedInput,
    /// The output is large: write it, then go on.
    Flush,
    /// A command waits before its reply.
    Wait(Pending),
    /// Write what there is and close.
    Close,
    /// The input broke the protocol (or a limit): write the error, then take in and drop what
    /// the client is still sending for a moment, so that closing does not reset the connection
    /// before the client has read why.
    Refuse,
}

/// How long a refused connection's input is drained before it is closed.
const DRAIN_FOR: Duration = Duration::from_millis(500);

/// Serves one connection until the client leaves, sends `QUIT`, breaks the protocol, is killed,
/// or the node shuts down.
async fn serve(
    node: &Node,
    shared: &Arc<Shared>,
    mut stream: Stream,
    peer: String,
    local: String,
) -> std::io::Result<()> {
    let unix = local.starts_with("unix:");
    let (client, mut pushes) = shared.clients.register(peer, local, unix);
    let mut session = Session::new(node, shared, client.clone());
    let result = serve_session(node, &mut session, &mut stream, &mut pushes).await;
    session.leave();
    shared.clients.remove(client.id);
    result
}

async fn serve_session(
    node: &Node,
    session: &mut Session<'_>,
    stream: &mut Stream,
    pushes: &mut tokio::sync::mpsc::UnboundedReceiver<bytes::Bytes>,
) -> std::io::Result<()> {
    let shutdown = node.registry().shutdown.clone();
    let killed = session.client.killed.clone();
    let doors = node.doors();
    let limits = super::parse_limits(&doors.limits);
    let mut input = BytesMut::with_capacity(16 << 10);
    let mut output = BytesMut::with_capacity(16 << 10);
    let mut args: Vec<Range<usize>> = Vec::with_capacity(8);
    // Commands forwarded to other shards whose replies go at these places of the output.
    let mut forwards: Vec<(usize, Pending)> = Vec::new();
    // Registered once for the connection, not once per read: the node-wide token is shared by
    // every connection, and registering with it takes its lock.
    let shut_down = shutdown.cancelled();
    let was_killed = killed.cancelled();
    tokio::pin!(shut_down, was_killed);
    loop {
        if input.capacity() - input.len() < 4096 {
            input.reserve(16 << 10);
        }
        let read = tokio::select! {
            biased;
            _ = &mut shut_down => return Ok(()),
            _ = &mut was_killed => return Ok(()),
            Some(frame) = pushes.recv() => {
                write_pushes(session, frame, pushes, &mut output);
                stream.write_all(&output).await?;
                output.clear();
                continue;
            }
            r = stream.read_buf(&mut input) => r?,
        };
        if read == 0 {
            return Ok(());
        }
        loop {
            let (stop, commands) = run(
                session,
                &mut input,
                &mut output,
                &mut args,
                &limits,
                &mut forwards,
            );
            count(&doors.stats.commands, commands);
            if !forwards.is_empty() {
                forward_batch(node, &mut forwards, &mut output).await;
            }
            match stop {
                Stop::NeedInput => break,
                Stop::Flush => {
                    stream.write_all(&output).await?;
                    output.clear();
                }
                Stop::Wait(pending) => {
                    stream.write_all(&output).await?;
                    output.clear();
                    answer(node, pending, &mut Reply::new(&mut output, session.resp3)).await;
                }
                Stop::Close => {
                    stream.write_all(&output).await?;
                    stream.flush().await?;
                    return Ok(());
                }
                Stop::Refuse => {
                    stream.write_all(&output).await?;
                    stream.shutdown().await?;
                    let mut sink = vec![0u8; 64 << 10];
                    let drain =
                        async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
                    let _ = tokio::time::timeout(DRAIN_FOR, drain).await;
                    return Ok(());
                }
            }
        }
        if !output.is_empty() {
            stream.write_all(&output).await?;
            output.clear();
        }
    }
}

/// Moves the push frames queued for this connection into the output.
fn write_pushes(
    session: &Session<'_>,
    first: bytes::Bytes,
    pushes: &mut tokio::sync::mpsc::UnboundedReceiver<bytes::Bytes>,
    output: &mut BytesMut,
) {
    let mut frame = Some(first);
    while let Some(f) = frame {
        session.client.queued.fetch_sub(f.len(), Ordering::Relaxed);
        output.extend_from_slice(&f);
        if output.len() >= FLUSH_AT {
            break;
        }
        frame = pushes.try_recv().ok();
    }
}

/// The most forwarded commands one batch holds.
const MAX_FORWARDS: usize = 256;

/// Sends the forwarded commands of `forwards` — pipelined, one connection per target door, the
/// doors at once — and puts each reply at its place in `output`. A door that does not answer
/// within the connection timeout makes its reads misses and its writes `-CLUSTERDOWN` errors.
async fn forward_batch(node: &Node, forwards: &mut Vec<(usize, Pending)>, output: &mut BytesMut) {
    let doors = node.doors();
    let password = doors.password.as_deref();
    let timeout = node.replication_config().connection_timeout;
    let mut groups: Vec<(&crate::node::remote::Target, Vec<usize>)> = Vec::new();
    for (i, (_, f)) in forwards.iter().enumerate() {
        if let Pending::Forward { target, .. } = f {
            match groups.iter_mut().find(|(t, _)| *t == target) {
                Some((_, members)) => members.push(i),
                None => groups.push((target, vec![i])),
            }
        }
    }
    let sent = groups.iter().map(|(target, members)| {
        let mut request = Vec::new();
        for &i in members {
            if let Pending::Forward { request: r, .. } = &forwards[i].1 {
                request.extend_from_slice(r);
            }
        }
        async move {
            node.remote()
                .forward_all(target, password, &request, members.len(), timeout)
                .await
        }
    });
    let results = futures_util::future::join_all(sent).await;
    let mut replies: Vec<Option<BytesMut>> = vec![None; forwards.len()];
    let mut failures: Vec<Option<String>> = vec![None; forwards.len()];
    for ((_, members), result) in groups.iter().zip(results) {
        match result {
            Ok(all) => {
                for (&i, reply) in members.iter().zip(all) {
                    replies[i] = Some(reply);
                }
            }
            Err(why) => {
                for &i in members {
                    failures[i] = Some(why.clone());
                }
            }
        }
    }
    let mut merged = BytesMut::with_capacity(output.len() + 64 * forwards.len());
    let mut from = 0;
    for (i, (at, f)) in forwards.drain(..).enumerate() {
        merged.extend_from_slice(&output[from..at]);
        from = at;
        match (replies[i].take(), f) {
            (Some(reply), _) => merged.extend_from_slice(&reply),
            // An unreachable shard is a miss for a read, and a clear error for a write.
            (
                None,
                Pending::Forward {
                    target,
                    write,
                    slot,
                    shard,
                    ..
                },
            ) => {
                let mut out = Reply::new(&mut merged, target.resp3);
                if write {
                    out.error(&format!(
                        "CLUSTERDOWN shard {shard:?}, which holds slot {slot}, cannot be reached at {}: {}",
                        target.address,
                        one_line(failures[i].as_deref().unwrap_or("no answer"))
                    ));
                } else {
                    out.null();
                }
            }
            (None, _) => {}
        }
    }
    merged.extend_from_slice(&output[from..]);
    *output = merged;
}

/// The answer of a command that waited: `WAIT`'s count, or the value `GET` read through.
async fn answer(node: &Node, pending: Pending, out: &mut Reply<'_>) {
    match pending {
        forward @ Pending::Forward { .. } => {
            let mut one = vec![(0, forward)];
            let mut reply = BytesMut::new();
            forward_batch(node, &mut one, &mut reply).await;
            out.buf.extend_from_slice(&reply);
        }
        Pending::Acked { seq, timeout } => {
            out.int(i64::from(
                node.core().uplink.wait_acked_within(seq, timeout).await,
            ));
        }
        Pending::MoveIn { cache, key, target } => {
            let doors = node.doors();
            let timeout = node.replication_config().connection_timeout;
            let mut request = crate::node::remote::encode(&[b"ASKING"]);
            request.extend(crate::node::remote::encode(&[b"GET", &key]));
            let found = node
                .remote()
                .forward(&target, doors.password.as_deref(), &request, 2, timeout)
                .await
                .ok()
                .and_then(|reply| crate::node::remote::bulk_value(&reply));
            match found {
                // Kept here, with the cache's time to live: the slot's keys move as they are read.
                Some(value) => {
                    // A value this cache refuses (too large here) is still the answer.
                    let _ = cache.set(key, value.clone());
                    out.bulk(&value);
                }
                None if cache.loads_on_miss() => match cache.after_miss(key).await {
                    Ok(value) => out.bulk_or_null(value.as_deref()),
                    Err(e) => out.error(&format!("ERR {}", one_line(&e.to_string()))),
                },
                None => out.null(),
            }
        }
        Pending::Load { cache, key } => match cache.after_miss(key).await {
            Ok(value) => out.bulk_or_null(value.as_deref()),
            Err(e) => out.error(&format!("ERR {}", one_line(&e.to_string()))),
        },
    }
}

/// `text` on one line, as an error reply must be.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// Executes the whole requests at the start of `input`, under the node's gate, until one of the
/// reasons in [`Stop`]; returns it and how many commands ran.
fn run(
    session: &mut Session<'_>,
    input: &mut BytesMut,
    output: &mut BytesMut,
    args: &mut Vec<Range<usize>>,
    limits: &ParseLimits,
    forwards: &mut Vec<(usize, Pending)>,
) -> (Stop, u64) {
    let node = session.node;
    let core = node.core();
    let mut shared_hold = None;
    let mut commands = 0;
    session.client.active_now();
    loop {
        match parse(input, limits, args) {
            Ok(Parsed::Request { consumed }) => {
                if !args.is_empty() {
                    commands += 1;
                    let request = Args {
                        buf: input,
                        ranges: args,
                    };
                    let mut out = Reply::new(output, session.resp3);
                    let index = table::lookup(request.get(0));
                    match session.gate_for(index) {
                        Some(true) => {
                            shared_hold = None;
                            core.atomically(|| session.execute(index, request, &mut out));
                        }
                        Some(false) => {
                            if shared_hold.is_none() {
                                shared_hold = Some(core.gate.read());
                            }
                            session.execute(index, request, &mut out);
                        }
                        None => session.execute(index, request, &mut out),
                    }
                }
                input.advance(consumed);
                if session.close {
                    return (Stop::Close, commands);
                }
                match session.pending.take() {
                    // Forwarded commands of a pipeline go out together; each reply takes the
                    // place in the output where the command would have written it. Commands on
                    // other shards touch other keys, so those run here meanwhile stay in order
                    // for every key.
                    Some(p @ Pending::Forward { .. }) => {
                        forwards.push((output.len(), p));
                        if forwards.len() >= MAX_FORWARDS {
                            return (Stop::Flush, commands);
                        }
                    }
                    Some(p) => return (Stop::Wait(p), commands),
                    None => {}
                }
                if output.len() >= FLUSH_AT {
                    return (Stop::Flush, commands);
                }
            }
            Ok(Parsed::Incomplete { total }) => {
                // Room for what the request announced, 1 MiB at a time: an announcement
                // costs memory only as its bytes arrive.
                if total > input.capacity() {
                    input.reserve((total - input.len()).min(READ_AHEAD));
                }
                return (Stop::NeedInput, commands);
            }
            Err(e) => {
                count(&session.node.doors().stats.protocol_errors, 1);
                Reply::new(output, session.resp3).error(&format!("ERR {e}"));
                return (Stop::Refuse, commands);
            }
        }
    }
}
