//! Client-side caching: `CLIENT TRACKING` in its default mode (the keys a client read), `BCAST`
//! with `PREFIX`es, `OPTIN`/`OPTOUT`, `NOLOOP` and `REDIRECT`; `CLIENT CACHING`, `GETREDIR`,
//! `TRACKINGINFO`; and the invalidations themselves, RESP3 pushes or, for RESP2, messages on
//! `__redis__:invalidate` to the redirect client.
//!
//! Invalidations come from the caches' [`Watcher`] port, which hears of every key that changes at
//! this node for any reason — a local write, a change replicated from a peer (another leaf's
//! write, a resync after a partition), eviction, expiry, a purge — so a near cache is told of
//! each. A read registers its key *before* it reads, so a change that lands after the read is
//! always invalidated. The table of tracked keys is bounded (`tracking-table-max-keys`); past
//! the bound the oldest keys are invalidated and forgotten, as in Redis.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use lru::LruCache;
use parking_lot::Mutex;

use super::Shared;
use super::session::{Args, SYNTAX, Session, int_arg};
use crate::cache::ports::Watcher;
use crate::server::protocol::Reply;

/// The channel RESP2 clients subscribe to for invalidations.
pub(crate) const INVALIDATE_CHANNEL: &[u8] = b"__redis__:invalidate";

thread_local! {
    /// The client whose command is running on this thread (0: none), for `NOLOOP`.
    pub(super) static CURRENT_CLIENT: Cell<u64> = const { Cell::new(0) };
}

/// How a client tracks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TrackingMode {
    pub bcast: bool,
    pub prefixes: Vec<Bytes>,
    pub optin: bool,
    pub optout: bool,
    pub noloop: bool,
    /// Where invalidations go instead of this client.
    pub redirect: Option<u64>,
}

/// The node's tracking state: the tracked keys and who read them, and every tracking client's
/// mode.
pub(crate) struct Tracking {
    max_keys: usize,
    /// Tracking clients: a write with none skips everything at the cost of one load.
    active: AtomicUsize,
    /// Of those, the ones in `BCAST` mode, which every change must be matched against.
    broadcast: AtomicUsize,
    keys: Mutex<LruCache<Bytes, Vec<u64>>>,
    modes: Mutex<HashMap<u64, TrackingMode>>,
}

impl Tracking {
    pub fn new(max_keys: usize) -> Self {
        Tracking {
            max_keys: max_keys.max(1),
            active: AtomicUsize::new(0),
            broadcast: AtomicUsize::new(0),
            keys: Mutex::new(LruCache::unbounded()),
            modes: Mutex::new(HashMap::new()),
        }
    }

    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// Tracked keys.
    pub fn keys(&self) -> usize {
        self.keys.lock().len()
    }

    /// `BCAST` prefixes, over every client.
    pub fn prefixes(&self) -> usize {
        self.modes.lock().values().map(|m| m.prefixes.len()).sum()
    }

    fn start(&self, client: u64, mode: TrackingMode) {
        let bcast = mode.bcast;
        match self.modes.lock().insert(client, mode) {
            None => {
                self.active.fetch_add(1, Ordering::SeqCst);
            }
            Some(old) if old.bcast => {
                self.broadcast.fetch_sub(1, Ordering::SeqCst);
            }
            Some(_) => {}
        }
        if bcast {
            self.broadcast.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn stop(&self, client: u64) {
        if let Some(old) = self.modes.lock().remove(&client) {
            self.active.fetch_sub(1, Ordering::SeqCst);
            if old.bcast {
                self.broadcast.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

/// Registers that `s`'s client read `key`, if its mode tracks this read; called before the read.
pub(super) fn remember(s: &mut Session<'_>, key: &[u8]) {
    let Some(mode) = &s.tracking else {
        return;
    };
    if mode.bcast
        || (mode.optin && s.caching_next != Some(true))
        || (mode.optout && s.caching_next == Some(false))
    {
        return;
    }
    let id = s.client.id;
    let tracking = &s.shared.tracking;
    let evicted = {
        let mut keys = tracking.keys.lock();
        if let Some(readers) = keys.get_mut(key) {
            if !readers.contains(&id) {
                readers.push(id);
            }
            None
        } else {
            keys.put(Bytes::copy_from_slice(key), vec![id]);
            (keys.len() > tracking.max_keys)
                .then(|| keys.pop_lru())
                .flatten()
        }
    };
    if let Some((old, readers)) = evicted {
        s.shared.invalidate(&old, &readers, 0);
    }
}

/// Ends tracking for `s`'s client (`CLIENT TRACKING off`, `RESET`, disconnect).
pub(super) fn stop(s: &mut Session<'_>) {
    if s.tracking.take().is_some() {
        s.shared.tracking.stop(s.client.id);
        s.client.tracking.store(false, Ordering::Relaxed);
        s.client.redirect.store(-1, Ordering::Relaxed);
    }
}

impl Shared {
    /// Sends the invalidation of `key` (`None`: everything) to the clients `readers` (and their
    /// redirect targets), except `skip` where it tracks with `NOLOOP`.
    fn invalidate(&self, key: &[u8], readers: &[u64], skip: u64) {
        let modes = self.tracking.modes.lock();
        for &id in readers {
            if let Some(mode) = modes.get(&id)
                && !(mode.noloop && id == skip)
            {
                self.send_invalidation(id, mode, Some(key));
            }
        }
    }

    /// One invalidation frame to `id`'s target, in the target's protocol.
    fn send_invalidation(&self, id: u64, mode: &TrackingMode, key: Option<&[u8]>) {
        let target = mode.redirect.unwrap_or(id);
        let Some(client) = self.clients.get(target) else {
            if let Some(own) = self.clients.get(id)
                && own.resp3()
            {
                let mut buf = BytesMut::new();
                let mut r = Reply::new(&mut buf, true);
                r.push(2);
                r.bulk(b"tracking-redir-broken");
                r.int(target as i64);
                own.push(buf.freeze());
            }
            return;
        };
        let mut buf = BytesMut::with_capacity(64 + key.map_or(0, <[u8]>::len));
        if client.resp3() {
            let mut r = Reply::new(&mut buf, true);
            r.push(2);
            r.bulk(b"invalidate");
            write_keys(&mut r, key);
        } else if self.pubsub.is_subscribed(target, INVALIDATE_CHANNEL) {
            let mut r = Reply::new(&mut buf, false);
            r.array(3);
            r.bulk(b"message");
            r.bulk(INVALIDATE_CHANNEL);
            write_keys(&mut r, key);
        } else {
            // A RESP2 client that is not subscribed cannot receive it, as in Redis.
            return;
        }
        client.push(buf.freeze());
    }
}

fn write_keys(r: &mut Reply<'_>, key: Option<&[u8]>) {
    match key {
        Some(k) => {
            r.array(1);
            r.bulk(k);
        }
        None => r.null(),
    }
}

impl Watcher for Shared {
    fn changed(&self, _cache: u32, key: &[u8]) {
        if self.tracking.active.load(Ordering::SeqCst) == 0 {
            return;
        }
        let skip = CURRENT_CLIENT.get();
        let readers = self.tracking.keys.lock().pop(key);
        if let Some(readers) = readers {
            self.invalidate(key, &readers, skip);
        }
        if self.tracking.broadcast.load(Ordering::SeqCst) == 0 {
            return;
        }
        let modes = self.tracking.modes.lock();
        for (&id, mode) in modes.iter() {
            if mode.bcast
                && !(mode.noloop && id == skip)
                && (mode.prefixes.is_empty() || mode.prefixes.iter().any(|p| key.starts_with(p)))
            {
                self.send_invalidation(id, mode, Some(key));
            }
        }
    }

    fn cleared(&self, _cache: u32) {
        if self.tracking.active.load(Ordering::SeqCst) == 0 {
            return;
        }
        self.tracking.keys.lock().clear();
        let modes = self.tracking.modes.lock();
        for (&id, mode) in modes.iter() {
            self.send_invalidation(id, mode, None);
        }
    }
}

/// `CLIENT TRACKING on|off [REDIRECT id] [PREFIX p]... [BCAST] [OPTIN] [OPTOUT] [NOLOOP]`.
pub(super) fn client_tracking(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let Some(on) = super::session::on_off(args.get(2), out) else {
        return;
    };
    let mut mode = TrackingMode::default();
    let mut i = 3;
    while i < args.len() {
        match args.upper(i).as_bytes() {
            b"BCAST" => mode.bcast = true,
            b"OPTIN" => mode.optin = true,
            b"OPTOUT" => mode.optout = true,
            b"NOLOOP" => mode.noloop = true,
            b"REDIRECT" if i + 1 < args.len() => {
                let Some(id) = int_arg(args.get(i + 1), out) else {
                    return;
                };
                if id != s.client.id as i64 && s.shared.clients.get(id as u64).is_none() {
                    out.error("ERR The client ID you want redirect to does not exist");
                    return;
                }
                mode.redirect = (id != s.client.id as i64).then_some(id as u64);
                i += 1;
            }
            b"PREFIX" if i + 1 < args.len() => {
                mode.prefixes.push(Bytes::copy_from_slice(args.get(i + 1)));
                i += 1;
            }
            _ => {
                out.error(SYNTAX);
                return;
            }
        }
        i += 1;
    }
    if !on {
        stop(s);
        out.ok();
        return;
    }
    if !mode.bcast && !mode.prefixes.is_empty() {
        out.error("ERR PREFIX option requires BCAST mode to be enabled");
        return;
    }
    if mode.optin && mode.optout {
        out.error("ERR You can't specify both OPTIN mode and OPTOUT mode");
        return;
    }
    if mode.bcast && (mode.optin || mode.optout) {
        out.error("ERR OPTIN and OPTOUT are not compatible with BCAST");
        return;
    }
    for (i, a) in mode.prefixes.iter().enumerate() {
        for b in &mode.prefixes[i + 1..] {
            if a.starts_with(b) || b.starts_with(a) {
                out.error(&format!(
                    "ERR Prefix '{}' overlaps with another provided prefix '{}'. Prefixes for a single client must not overlap.",
                    String::from_utf8_lossy(a),
                    String::from_utf8_lossy(b)
                ));
                return;
            }
        }
    }
    if let Some(current) = &s.tracking
        && current.bcast != mode.bcast
    {
        out.error("ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode.");
        return;
    }
    s.client.tracking.store(true, Ordering::Relaxed);
    s.client
        .redirect
        .store(mode.redirect.map_or(0, |r| r as i64), Ordering::Relaxed);
    s.shared.tracking.start(s.client.id, mode.clone());
    s.tracking = Some(mode);
    out.ok();
}

/// `CLIENT CACHING yes|no`: whether the next command's reads are tracked, in `OPTIN` / `OPTOUT`
/// mode.
pub(super) fn client_caching(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let Some(mode) = &s.tracking.as_ref().filter(|m| m.optin || m.optout) else {
        out.error("ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled");
        return;
    };
    match args.upper(2).as_bytes() {
        b"YES" if mode.optin => s.caching_next = Some(true),
        b"YES" => {
            out.error(
                "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
            );
            return;
        }
        b"NO" if mode.optout => s.caching_next = Some(false),
        b"NO" => {
            out.error(
                "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
            );
            return;
        }
        _ => {
            out.error(SYNTAX);
            return;
        }
    }
    s.caching_kept = true;
    out.ok();
}

/// `CLIENT GETREDIR`: -1 without tracking, 0 tracking without redirect, else the redirect id.
pub(super) fn client_getredir(s: &mut Session<'_>, out: &mut Reply<'_>) {
    out.int(match &s.tracking {
        None => -1,
        Some(mode) => mode.redirect.map_or(0, |r| r as i64),
    });
}

/// `CLIENT TRACKINGINFO`: flags, redirect and prefixes, as a map.
pub(super) fn client_trackinginfo(s: &mut Session<'_>, out: &mut Reply<'_>) {
    let mut flags: Vec<&str> = Vec::new();
    let (redirect, prefixes) = match &s.tracking {
        None => {
            flags.push("off");
            (-1, Vec::new())
        }
        Some(mode) => {
            flags.push("on");
            for (set, name) in [
                (mode.bcast, "bcast"),
                (mode.optin, "optin"),
                (mode.optout, "optout"),
                (mode.noloop, "noloop"),
                (s.caching_next == Some(true), "caching-yes"),
                (s.caching_next == Some(false), "caching-no"),
            ] {
                if set {
                    flags.push(name);
                }
            }
            let redirect = match mode.redirect {
                Some(r) if s.shared.clients.get(r).is_none() => {
                    flags.push("broken_redirect");
                    r as i64
                }
                Some(r) => r as i64,
                None => 0,
            };
            (redirect, mode.prefixes.clone())
        }
    };
    out.map(3);
    out.bulk(b"flags");
    out.set(flags.len());
    for f in flags {
        out.bulk(f.as_bytes());
    }
    out.bulk(b"redirect");
    out.int(redirect);
    out.bulk(b"prefixes");
    out.array(prefixes.len());
    for p in &prefixes {
        out.bulk(p);
    }
}
