//! The transaction commands: `MULTI`, `EXEC`, `DISCARD`, `WATCH`, `UNWATCH`. Queueing is the
//! dispatcher's (src/server/resp/dispatch.rs), and so is running an `EXEC`'s queue.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::args::Args;
use super::session::{Multi, Session};
use crate::server::protocol::Reply;

pub(super) fn multi(s: &mut Session<'_>, _: Args<'_>, out: &mut Reply<'_>) {
    if s.multi.is_some() {
        out.error("ERR MULTI calls can not be nested");
        return;
    }
    s.multi = Some(Multi::default());
    s.client.multi.store(0, Ordering::Relaxed);
    out.ok();
}

pub(super) fn discard(s: &mut Session<'_>, _: Args<'_>, out: &mut Reply<'_>) {
    if s.multi.take().is_none() {
        out.error("ERR DISCARD without MULTI");
        return;
    }
    s.client.multi.store(-1, Ordering::Relaxed);
    s.clear_watches();
    out.ok();
}

/// `EXEC`: hands the queued commands to the dispatcher, which runs them with the node's gate held
/// alone (it took it for `EXEC`), so no other client sees part of the transaction; aborts if a
/// watched key changed.
pub(super) fn exec(s: &mut Session<'_>, _: Args<'_>, out: &mut Reply<'_>) {
    let Some(multi) = s.multi.take() else {
        out.error("ERR EXEC without MULTI");
        return;
    };
    s.client.multi.store(-1, Ordering::Relaxed);
    if multi.dirty {
        s.clear_watches();
        out.error("EXECABORT Transaction discarded because of previous errors.");
        return;
    }
    let changed = s
        .watched
        .iter()
        .any(|(db, key, probe)| s.cache_of(*db).is_none_or(|c| c.probe(key) != *probe));
    s.clear_watches();
    if changed {
        out.null_array();
        return;
    }
    out.array(multi.queue.len());
    // The dispatcher runs the queue into this reply as soon as this returns.
    s.exec = Some(multi.queue);
}

/// `WATCH key...`: remembers what each key is now; `EXEC` aborts if any has changed by then, for
/// any reason — a write here, a change replicated from a peer, expiry, eviction, a purge.
pub(super) fn watch(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    if s.multi.is_some() {
        out.error("ERR WATCH inside MULTI is not allowed");
        return;
    }
    for key in args.from(1) {
        if !s.watched.iter().any(|(db, k, _)| *db == s.db && k == key) {
            let probe = s.cache.probe(key);
            s.watched.push((s.db, Bytes::copy_from_slice(key), probe));
        }
    }
    s.client.watching.store(s.watched.len(), Ordering::Relaxed);
    out.ok();
}

pub(super) fn unwatch(s: &mut Session<'_>, _: Args<'_>, out: &mut Reply<'_>) {
    s.clear_watches();
    out.ok();
}
