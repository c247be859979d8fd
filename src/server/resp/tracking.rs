//! Client-side caching's registry: the tracked keys and who read them, every tracking client's
//! mode (`BCAST` with `PREFIX`es, `OPTIN`/`OPTOUT`, `NOLOOP`, `REDIRECT`), and the invalidations
//! themselves, RESP3 pushes or, for RESP2, messages on `__redis__:invalidate` to the redirect
//! client. The `CLIENT TRACKING` family of commands that drive it is in `client.rs`.
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
use super::session::{Session, TrackingMode};
use crate::cache::ports::Watcher;
use crate::server::protocol::Reply;

/// The channel RESP2 clients subscribe to for invalidations.
pub(crate) const INVALIDATE_CHANNEL: &[u8] = b"__redis__:invalidate";

thread_local! {
    /// The client whose command is running on this thread (0: none), for `NOLOOP`.
    pub(super) static CURRENT_CLIENT: Cell<u64> = const { Cell::new(0) };
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

    pub(super) fn start(&self, client: u64, mode: TrackingMode) {
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

    pub(super) fn stop(&self, client: u64) {
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
