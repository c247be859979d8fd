//! The tokio side of replication: accept leaves, dial the hub with backoff, and move frames between
//! a connection of any [`Transport`] and a [`Link`], handing the link's events on (watermarks to
//! the registry and the op log, acknowledgements and fetch answers to the caches' [`Uplink`]).
//! No replication decision is made here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use backoff::backoff::Backoff;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tokio_util::codec::Framed;
use tracing::{Instrument, info, info_span, warn};

use super::links::LinkRegistry;
use super::{Listener, Stream, Transport};
use crate::cache::ports::{FetchRequest, Uplink};
use crate::cache::{Caches, Change};
use crate::replication::codec::FrameCodec;
use crate::replication::{Direction, Link, LinkError, LinkEvent, LinkState, LinkStatus};

/// Links accepted at once, at most; more connections wait for a slot.
const MAX_INBOUND: usize = 1024;
/// The slot of the upstream link's status.
const UPSTREAM_SLOT: u32 = 0;
/// How often a running link republishes its status.
const PUBLISH_EVERY_MS: u64 = 10;
/// How often a link that is up tells its peer what this node knows of the tree.
const SUMMARIES_EVERY_MS: u64 = 1000;

/// A new link of the node's caches, registered with its registry.
pub(crate) fn new_link(
    caches: &Caches,
    registry: &LinkRegistry,
    direction: Direction,
    address: &str,
) -> Link<Caches> {
    Link::new(
        caches.clone(),
        registry.config.clone(),
        registry.marks.clone(),
        registry.next_link_id(),
        registry.challenge(),
        direction,
        address,
    )
}

/// Accepts leaves on `listener` until the node shuts down.
pub(crate) async fn accept_loop(
    caches: Caches,
    registry: Arc<LinkRegistry>,
    listener: Box<dyn Listener>,
) {
    let slots = Arc::new(Semaphore::new(MAX_INBOUND));
    loop {
        let permit = tokio::select! {
            biased;
            _ = registry.shutdown.cancelled() => return,
            p = slots.clone().acquire_owned() => p.expect("never closed"),
        };
        let accepted = tokio::select! {
            biased;
            _ = registry.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer_addr)) => {
                let (caches, reg) = (caches.clone(), registry.clone());
                let span = info_span!("link", node = %caches.core().name, peer = %peer_addr);
                registry.tasks.spawn(
                    async move {
                        let Some(stream) = secure_inbound(&reg, stream, &peer_addr, &caches).await
                        else {
                            return;
                        };
                        let mut link = new_link(&caches, &reg, Direction::Downstream, &peer_addr);
                        let slot = link.id();
                        let fresh = LinkStatus::new(slot, Direction::Downstream, &peer_addr);
                        let result = run(&reg, &mut link, stream, slot, &fresh, None, None).await;
                        report(&link, &result);
                        reg.retire(slot, link.status());
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The TLS handshake of an accepted connection, when the node has TLS: the stream to run the
/// link on, or `None` after recording why the peer was refused (in the node's links and log).
async fn secure_inbound(
    registry: &LinkRegistry,
    stream: Stream,
    peer_addr: &str,
    caches: &Caches,
) -> Option<Stream> {
    let Some(tls) = &registry.tls else {
        return Some(stream);
    };
    let timeout = Duration::from_millis(registry.config.timeout_ms);
    let reason = match tokio::time::timeout(timeout, tls.accept_link(stream)).await {
        Ok(Ok(stream)) => return Some(stream),
        Ok(Err(reason)) => reason,
        Err(_) => format!("TLS: no handshake within {timeout:?}"),
    };
    warn!(error = %reason, "link refused");
    let slot = registry.next_link_id();
    let mut status = LinkStatus::new(slot, Direction::Downstream, peer_addr);
    status.state = LinkState::Refused;
    status.last_error = Some(reason);
    status.went_down(caches.core().now_ms());
    registry.retire(slot, status);
    None
}

/// Connects to `address`, with TLS when the node has it, within `timeout`.
async fn dial(
    registry: &LinkRegistry,
    transport: &dyn Transport,
    address: &str,
    timeout: Duration,
) -> Result<Stream, LinkError> {
    let work = async {
        let stream = transport
            .connect(address)
            .await
            .map_err(|e| LinkError::Io(format!("connect: {e}")))?;
        match &registry.tls {
            None => Ok(stream),
            Some(tls) => tls
                .connect_link(stream, address)
                .await
                .map_err(LinkError::Tls),
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(LinkError::Io(format!(
                "connect: no answer within {timeout:?}"
            )))
        })
}

/// How the delay between two dials grows: exponentially from 20 ms to a cap, each delay spread by
/// ±50 % with the node's [`Entropy`](super::links::Entropy) (so a simulated run replays).
const BACKOFF_SPREAD: f64 = 0.5;

/// How often a leaf linked to a later hub of its list tries the earlier ones, in connection
/// timeouts: with the default 5 s timeout, every 10 s.
const RETURN_PROBE_TIMEOUTS: u32 = 2;

/// Keeps a link to one of `hubs` up until the node shuts down: dial, run, and on failure wait an
/// exponentially growing, jittered, capped delay (the cap at once after a refusal).
///
/// With several hubs, the rule is:
/// - at start, the first of the list that can be reached (each is tried once, in order, before
///   any wait);
/// - a hub whose link is lost, or that cannot be reached, is dialed again with backoff; once it
///   has been unreachable for the connection timeout, the leaf moves to the next hub of the list
///   (after the last, the first);
/// - while linked to a later hub, the leaf tries the earlier ones every two connection timeouts,
///   and moves back to the first that completes a connection (TLS included), closing the current
///   link cleanly: frames in flight are delivered, writes not yet acknowledged are sent to the new
///   hub by its resync, so no acknowledged write is lost and none waits for a dead hub;
/// - a new list ([`Node::set_hubs`](crate::Node::set_hubs), a topology reload) closes the link the
///   same clean way, unless its hub is the new list's first, and starts over at the new first.
pub(crate) async fn dial_loop(
    caches: Caches,
    registry: Arc<LinkRegistry>,
    transport: Arc<dyn Transport>,
) {
    let mut watch = registry.hubs.subscribe();
    let mut hubs = watch.borrow_and_update().clone();
    let timeout = Duration::from_millis(registry.config.timeout_ms);
    let cap = timeout.clamp(Duration::from_millis(500), Duration::from_secs(30));
    // The backoff crate grows the delay; the jitter is applied here, from the node's entropy.
    let mut backoff = backoff::ExponentialBackoff {
        initial_interval: Duration::from_millis(20),
        randomization_factor: 0.0,
        multiplier: 2.0,
        max_interval: cap,
        max_elapsed_time: None,
        ..Default::default()
    };
    let uplink: &Uplink = &caches.core().uplink;
    let now = || caches.core().now_ms();
    let mut totals = LinkStatus::new(0, Direction::Upstream, &hubs[0]);
    // Down until it first comes up: a hub never reached has been down since the node started.
    totals.went_down(now());
    let (fetch_tx, mut fetch_rx) = mpsc::channel::<FetchRequest>(256);
    // The hub dialed, since when it has been unreachable, and the hubs tried at start.
    let mut at = 0usize;
    let mut unreachable_since: Option<u64> = None;
    let mut first_pass = hubs.len() > 1;
    let mut ready: Option<Stream> = None;
    let timeout_ms = registry.config.timeout_ms;
    let mut hubs_changed = false;
    loop {
        if std::mem::take(&mut hubs_changed) || watch.has_changed().unwrap_or(false) {
            let new = watch.borrow_and_update().clone();
            if !new.is_empty() {
                info!(hubs = ?new, "the hub list changed");
                let kept = ready.is_some() && new.first() == hubs.get(at);
                if !kept {
                    ready = None;
                }
                hubs = new;
                at = 0;
                unreachable_since = None;
                first_pass = hubs.len() > 1;
                backoff.reset();
            }
        }
        let address = hubs[at].clone();
        let mut status = totals.clone();
        status.state = LinkState::Connecting;
        status.address = address.clone();
        registry.publish(UPSTREAM_SLOT, status);
        let connected = match ready.take() {
            Some(stream) => Ok(stream),
            None => tokio::select! {
                biased;
                _ = registry.shutdown.cancelled() => break,
                c = dial(&registry, transport.as_ref(), &address, timeout) => c,
            },
        };
        let mut delay = None;
        match connected {
            Ok(stream) => {
                let mut link = new_link(&caches, &registry, Direction::Upstream, &address);
                uplink.set_fetcher(Some(fetch_tx.clone()));
                let leave = tokio_util::sync::CancellationToken::new();
                // A new hub list that does not start with this hub closes the link cleanly.
                let retarget = {
                    let (mut watch, leave, current) =
                        (registry.hubs.subscribe(), leave.clone(), address.clone());
                    tokio::spawn(async move {
                        while watch.changed().await.is_ok() {
                            let first = watch.borrow().first().cloned();
                            if first.is_some_and(|f| f != current) {
                                leave.cancel();
                                return true;
                            }
                        }
                        false
                    })
                };
                let probe = (at > 0).then(|| {
                    tokio::spawn(probe_earlier(
                        registry.clone(),
                        transport.clone(),
                        hubs[..at].to_vec(),
                        timeout * RETURN_PROBE_TIMEOUTS,
                        leave.clone(),
                    ))
                });
                let result = run(
                    &registry,
                    &mut link,
                    stream,
                    UPSTREAM_SLOT,
                    &totals,
                    Some(&mut fetch_rx),
                    Some(&leave),
                )
                .await;
                retarget.abort();
                let retargeted = retarget.await.unwrap_or(false);
                // A probe that cancelled `leave` has returned, with the earlier hub's stream.
                let moving = match probe {
                    Some(p) if retargeted => {
                        p.abort();
                        None
                    }
                    Some(p) if leave.is_cancelled() => p.await.ok(),
                    Some(p) => {
                        p.abort();
                        None
                    }
                    None => None,
                };
                uplink.set_fetcher(None);
                let mut st = link.status();
                st.carry(&totals);
                totals = st;
                if link.frames() > 2 {
                    // It was up: the hub is unreachable from now, if at all.
                    unreachable_since = None;
                    first_pass = false;
                }
                if let Some((earlier, stream)) = moving {
                    info!(from = %address, to = %hubs[earlier], "moving back to an earlier hub");
                    at = earlier;
                    ready = Some(stream);
                    backoff.reset();
                    continue;
                }
                report(&link, &result);
                if retargeted {
                    // The top of the loop takes the new list.
                    continue;
                }
                match &result {
                    Ok(()) => break,
                    Err(e) if e.is_refusal() => delay = Some(cap),
                    Err(_) if link.frames() > 2 => backoff.reset(),
                    Err(_) => {}
                }
            }
            Err(e) => {
                if e.is_refusal() {
                    warn!(hub = %address, error = %e, "hub refused");
                    totals.state = LinkState::Refused;
                    delay = Some(cap);
                } else {
                    info!(hub = %address, error = %e, "hub unreachable");
                    totals.state = LinkState::Down;
                }
                totals.address = address.clone();
                totals.last_error = Some(match e {
                    LinkError::Io(reason) => reason,
                    e => e.to_string(),
                });
                totals.went_down(now());
            }
        }
        registry.publish(UPSTREAM_SLOT, totals.clone());
        let since = *unreachable_since.get_or_insert_with(now);
        if hubs.len() > 1 && (first_pass || now().saturating_sub(since) >= timeout_ms) {
            let next = (at + 1) % hubs.len();
            if first_pass && next == 0 {
                // Every hub tried once: from now on each gets its connection timeout.
                first_pass = false;
            } else {
                info!(from = %address, to = %hubs[next], "failing over to the next hub");
                at = next;
                unreachable_since = None;
                backoff.reset();
                continue;
            }
        }
        let wait = delay.unwrap_or_else(|| {
            let grown = backoff.next_backoff().unwrap_or(cap);
            grown
                .mul_f64(registry.entropy.jitter(BACKOFF_SPREAD))
                .min(cap)
        });
        tokio::select! {
            biased;
            _ = registry.shutdown.cancelled() => break,
            Ok(()) = watch.changed() => hubs_changed = true,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// While a leaf is linked to a later hub: every `every`, dials the `earlier` hubs in order. The
/// first that connects is returned with its stream, after `leave` is cancelled so that the
/// current link closes cleanly and the leaf moves there.
async fn probe_earlier(
    registry: Arc<LinkRegistry>,
    transport: Arc<dyn Transport>,
    earlier: Vec<String>,
    every: Duration,
    leave: tokio_util::sync::CancellationToken,
) -> (usize, Stream) {
    let timeout = Duration::from_millis(registry.config.timeout_ms);
    loop {
        tokio::time::sleep(every.mul_f64(registry.entropy.jitter(BACKOFF_SPREAD))).await;
        for (i, address) in earlier.iter().enumerate() {
            if let Ok(stream) = dial(&registry, transport.as_ref(), address, timeout).await {
                leave.cancel();
                return (i, stream);
            }
        }
    }
}

fn report(link: &Link<Caches>, result: &Result<(), LinkError>) {
    match result {
        Ok(()) => info!(link = link.id(), "link closed on shutdown"),
        Err(LinkError::Closed) => info!(link = link.id(), "link closed by the peer"),
        Err(e) if e.is_refusal() => {
            warn!(link = link.id(), peer = link.peer_name().unwrap_or("unknown"), error = %e, "handshake refused");
        }
        Err(e) => {
            warn!(link = link.id(), peer = link.peer_name().unwrap_or("unknown"), error = %e, "link closed")
        }
    }
}

/// Moves frames between `stream` and `link` until the link ends, publishing its status in `slot`
/// with the counters of `before` (earlier connections of the same link) added. `Ok` only for a
/// clean close on shutdown.
async fn run(
    registry: &LinkRegistry,
    link: &mut Link<Caches>,
    stream: Stream,
    slot: u32,
    before: &LinkStatus,
    mut fetches: Option<&mut mpsc::Receiver<FetchRequest>>,
    leave: Option<&tokio_util::sync::CancellationToken>,
) -> Result<(), LinkError> {
    let core = link.replica().core().clone();
    let timeout = Duration::from_millis(registry.config.timeout_ms);
    let mut framed = Framed::new(stream, FrameCodec::new(registry.config.max_frame));
    let mut waiting: HashMap<u64, oneshot::Sender<Option<Change>>> = HashMap::new();
    let mut next_fetch = 0u64;
    let mut last_publish = 0u64;
    let mut published_state = None;
    let mut published_activity = 0;
    let publish = |link: &Link<Caches>| {
        let mut st = link.status();
        st.carry(before);
        registry.publish(slot, st);
    };
    let mut bus = registry.bus.subscribe();
    let mut summaries_at = 0u64;
    let caches = link.replica().clone();
    core.watch();
    let _unwatch = scopeguard(|| core.unwatch());
    let result = async {
        loop {
            // Events first: a watermark reaches the op log before the ack that follows it.
            hand_on(link, registry, &core.uplink, &mut waiting);
            send_ready(link, &mut framed, timeout).await?;
            let now = core.now_ms();
            let (state, activity) = (link.state(), link.progress());
            let stale = activity != published_activity;
            if published_state != Some(state) || (stale && now >= last_publish + PUBLISH_EVERY_MS) {
                published_state = Some(state);
                published_activity = activity;
                last_publish = now;
                publish(link);
            }
            // After the publication, so that the summary knows this link's state.
            if link.is_up() && now >= summaries_at {
                let own = registry.own_summary(&caches);
                link.send_summaries(registry.summaries_for(slot, own, now));
                summaries_at = now + SUMMARIES_EVERY_MS;
                send_ready(link, &mut framed, timeout).await?;
            }
            let unpublished = activity != published_activity;
            let notified = core.changes();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if link.has_output() {
                continue;
            }
            let mut wake_at = link.next_tick_ms();
            if unpublished {
                wake_at = wake_at.min(last_publish + PUBLISH_EVERY_MS);
            }
            if link.is_up() {
                wake_at = wake_at.min(summaries_at);
            }
            let tick_in = Duration::from_millis(wake_at.saturating_sub(now).max(1));
            tokio::select! {
                biased;
                _ = registry.shutdown.cancelled() => {
                    return close(link, &mut framed, timeout, registry).await;
                }
                _ = cancelled(leave) => {
                    return close(link, &mut framed, timeout, registry).await;
                }
                frame = framed.next() => match frame {
                    Some(Ok(frame)) => link.handle(&frame)?,
                    Some(Err(e)) => return Err(e),
                    None => return Err(LinkError::Eof),
                },
                _ = &mut notified, if link.wants_changes() => {}
                _ = tokio::time::sleep(tick_in) => link.tick()?,
                published = bus.recv(), if link.is_up() => match published {
                    Ok(p) if p.from_link != link.id() => link.publish(p.channel, p.message),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        warn!(link = link.id(), missed, "link fell behind on pub/sub messages; skipped some");
                    }
                    Err(broadcast::error::RecvError::Closed) => {}
                },
                Some(req) = recv(&mut fetches), if link.is_up() => {
                    next_fetch += 1;
                    waiting.insert(next_fetch, req.reply);
                    link.fetch(next_fetch, req.cache, req.key);
                }
            }
        }
    }
    .await;
    if let Err(e) = &result {
        link.fail(e);
        // A refusal queued a Reject: try to get it to the peer so it knows why.
        let _ = tokio::time::timeout(
            Duration::from_millis(200),
            send_ready(link, &mut framed, timeout),
        )
        .await;
    }
    hand_on(link, registry, &core.uplink, &mut waiting);
    publish(link);
    registry.lost_view(slot);
    result
}

/// Hands the link's events on: watermarks to the registry (and so the op log), acknowledgements of
/// an upstream link to the waiting writers, fetch answers to the waiting readers.
fn hand_on(
    link: &mut Link<Caches>,
    registry: &LinkRegistry,
    uplink: &Uplink,
    waiting: &mut HashMap<u64, oneshot::Sender<Option<Change>>>,
) {
    while let Some(event) = link.poll_event() {
        if let Some((id, change)) = hand_on_event(
            registry,
            uplink,
            link.id(),
            link.direction(),
            event,
            now_ms(link),
        ) && let Some(tx) = waiting.remove(&id)
        {
            let _ = tx.send(change);
        }
    }
}

/// Hands one event of link `link_id` pointing `direction` on: a watermark to the registry (and
/// the op log), an upstream acknowledgement to the waiting writers, a pub/sub message to this
/// node's subscribers and its other links. A fetch answer is returned, for whoever asked.
pub(crate) fn hand_on_event(
    registry: &LinkRegistry,
    uplink: &Uplink,
    link_id: u32,
    direction: Direction,
    event: LinkEvent,
    now: u64,
) -> Option<(u64, Option<Change>)> {
    match event {
        LinkEvent::Published { channel, message } => registry.arrived(link_id, channel, message),
        LinkEvent::Watermark { peer, resume } => registry.remember(peer, resume),
        LinkEvent::Acked { upto } if direction == Direction::Upstream => uplink.acked(upto),
        LinkEvent::Acked { .. } => {}
        LinkEvent::Fetched { id, change } => return Some((id, change)),
        LinkEvent::Summaries { nodes } => {
            let slot = match direction {
                Direction::Upstream => UPSTREAM_SLOT,
                Direction::Downstream => link_id,
            };
            registry.heard(slot, nodes, now);
        }
    }
    None
}

fn now_ms(link: &Link<Caches>) -> u64 {
    link.replica().core().now_ms()
}

/// Sends what is left and a goodbye, then reads until the peer's goodbye (or the timeout), so that
/// frames in flight either way are not cut off by closing the socket.
async fn close(
    link: &mut Link<Caches>,
    framed: &mut Framed<Stream, FrameCodec>,
    timeout: Duration,
    registry: &LinkRegistry,
) -> Result<(), LinkError> {
    link.close();
    send_ready(link, framed, timeout).await?;
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    while link.is_closing() {
        tokio::select! {
            biased;
            frame = framed.next() => match frame {
                Some(Ok(frame)) => match link.handle(&frame) {
                    Ok(()) => {
                        // Closing: fetch answers have no one waiting any more.
                        let uplink = &link.replica().core().clone().uplink;
                        while let Some(event) = link.poll_event() {
                            hand_on_event(registry, uplink, link.id(), link.direction(), event, now_ms(link));
                        }
                        send_ready(link, framed, timeout).await?
                    }
                    Err(LinkError::Closed) => break,
                    Err(e) => return Err(e),
                },
                _ => break,
            },
            _ = &mut deadline => break,
        }
    }
    Ok(())
}

/// Until `token` is cancelled; never without one.
async fn cancelled(token: Option<&tokio_util::sync::CancellationToken>) {
    match token {
        Some(t) => t.cancelled().await,
        None => std::future::pending().await,
    }
}

async fn recv(rx: &mut Option<&mut mpsc::Receiver<FetchRequest>>) -> Option<FetchRequest> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Writes everything the link has ready. A peer that does not take it within the timeout is
/// treated as gone: the link closes and resumes from its watermark after reconnecting, so a stuck
/// peer costs a bounded window, not a growing buffer.
async fn send_ready(
    link: &mut Link<Caches>,
    framed: &mut Framed<Stream, FrameCodec>,
    timeout: Duration,
) -> Result<(), LinkError> {
    let mut wrote = false;
    while let Some(payload) = link.poll_transmit() {
        wrote = true;
        tokio::time::timeout(timeout, framed.feed(Bytes::from(payload)))
            .await
            .map_err(|_| LinkError::Timeout {
                ms: timeout.as_millis() as u64,
            })??;
    }
    if wrote {
        tokio::time::timeout(timeout, framed.flush())
            .await
            .map_err(|_| LinkError::Timeout {
                ms: timeout.as_millis() as u64,
            })??;
    }
    Ok(())
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// How often the TLS files are looked at for a change.
const TLS_WATCH_EVERY: Duration = Duration::from_secs(1);

/// Reloads the node's TLS files when they change, until the node shuts down. A change that does
/// not load (a half-written or wrong file) keeps the certificates in use and is logged.
pub(crate) async fn watch_tls(tls: Arc<super::Tls>, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(TLS_WATCH_EVERY) => {}
        }
        match tls.reload_if_changed() {
            None => {}
            Some(Ok(())) => info!("TLS certificates reloaded"),
            Some(Err(e)) => {
                warn!(error = %e, "TLS certificates changed but do not load; keeping those in use")
            }
        }
    }
}
