//! Changes from peers: the version rule (`newer`), `apply`, joining merged states (`apply_merge`), restamps and purges.

use bytes::Bytes;

use super::merged::begun;
use super::slots::SWEEP_PER_WRITE;
use super::*;
use crate::cache::change::Change;
use crate::cache::merge::{Body, Merge, Merged, ORIGIN, Register, Sum};
use crate::cache::store::{Idx, List, MAX_KEY, Put, Val};
use crate::clock::Version;

/// What a remote change would leave a key holding, for ordering two contents under one version.
enum Content<'a> {
    Value(&'a Bytes, u64),
    Tombstone,
    /// An invalidation: no content, only "the copy of this version is gone".
    Gone,
}

impl Shard {
    /// Whether a change of `key` at `version` carrying `content` wins over what this shard knows
    /// of the key: the newer version wins. Nodes never issue a version twice, but should two
    /// different contents ever meet under one version, every node keeps the same one: a tombstone
    /// over a value, and between values the greater `(expires_at, value)`. A dropped-version record
    /// or a purge mark at that version keeps what it has (it has no content to compare).
    fn newer(&self, key: &[u8], version: Version, content: Content<'_>) -> bool {
        let Some(newest) = self.newest(key) else {
            return true;
        };
        if version != newest {
            return version > newest;
        }
        let Some(i) = self
            .store
            .live(key)
            .filter(|&i| self.store.version(i) == version)
        else {
            return false;
        };
        let held = self.store.at(i);
        match content {
            Content::Tombstone => true,
            Content::Value(value, expires_at) => match held.val() {
                Val::Str(b) => (expires_at, &value[..]) > (held.at, b),
                _ => false,
            },
            Content::Gone => false,
        }
    }

    /// Applies a change from a peer iff it is newer than what this shard knows of its key; `stamp`
    /// hands out the local seq only when it applies. Returns whether it applied.
    ///
    /// A purge is not a per-key change: the cache applies it to every shard with [`Shard::purge`].
    /// `source` is the link it came in on, remembered in the log.
    pub fn apply(
        &mut self,
        change: &Change,
        source: u32,
        now: u64,
        stamp: impl FnOnce() -> u64,
    ) -> bool {
        if change.key().is_some_and(|k| k.len() > MAX_KEY) {
            // Longer than any key a shard holds (and than any door or link accepts by default).
            return false;
        }
        self.sweep(now, SWEEP_PER_WRITE);
        match change {
            Change::Merge(m) => self.apply_merge(m, source, now, stamp, false),
            Change::Set {
                key,
                value,
                version,
                expires_at,
            } if self.holds_counter(key, now) => {
                // A string written where this node holds a counter: its register, which saw none
                // of the parts here.
                let m = Merge {
                    key: key.clone(),
                    version: *version,
                    ttl: *version,
                    expires_at: *expires_at,
                    body: Body::Counter {
                        register: Register {
                            version: *version,
                            content: Some(value.clone()),
                            seen: Sum::default(),
                        },
                        parts: Vec::new(),
                    },
                    complete: false,
                    partial: false,
                };
                self.apply_merge(&m, source, now, stamp, true)
            }
            Change::Delete { key, version } if self.merged(key, now).is_some() => {
                let counter = self.holds_counter(key, now);
                let body = if counter {
                    Body::Counter {
                        register: Register {
                            version: *version,
                            content: None,
                            seen: Sum::default(),
                        },
                        parts: Vec::new(),
                    }
                } else {
                    Body::Hash {
                        reset: *version,
                        fields: Vec::new(),
                    }
                };
                let m = Merge {
                    key: key.clone(),
                    version: *version,
                    ttl: ORIGIN,
                    expires_at: None,
                    body,
                    complete: false,
                    partial: false,
                };
                self.apply_merge(&m, source, now, stamp, counter)
            }
            Change::Set {
                key,
                value,
                version,
                expires_at,
            } => {
                let expires_at = expires_at.unwrap_or(NEVER);
                if !self.newer(key, *version, Content::Value(value, expires_at)) {
                    return false;
                }
                let seq = (stamp(), source);
                let fits = entry_size(key.len(), value.len()) <= self.limits.max_entry;
                let value = Put::Str(value.clone());
                if expires_at > now && fits {
                    if let Err(value) =
                        self.overwrite_live(key, value, *version, expires_at, seq, now)
                    {
                        self.clear_key(key);
                        self.install_live(key, value, *version, expires_at, seq, now);
                    }
                    return true;
                }
                // Already expired, or too large to hold here: remember the version only.
                self.clear_key(key);
                self.install_dead(key, *version, seq, false, now, None);
                true
            }
            Change::Delete { key, version } => {
                if !self.newer(key, *version, Content::Tombstone) {
                    return false;
                }
                let seq = (stamp(), source);
                self.clear_key(key);
                self.install_dead(key, *version, seq, true, now, None);
                true
            }
            Change::Invalidate { key, version } => {
                // Recorded even when nothing is held here: an older write of the key may still be
                // on its way through another link, and this record is what refuses it.
                if !self.newer(key, *version, Content::Gone) {
                    return false;
                }
                let seq = (stamp(), source);
                self.clear_key(key);
                self.install_dead(key, *version, seq, false, now, None);
                true
            }
            Change::Purge { .. } => false,
        }
    }

    /// Joins a merged change from a peer (or from disk, with `source` [`LOCAL`]) into what this
    /// shard holds of its key. With `restamp_live`, a key still holding a value afterwards is sent
    /// whole again (the change came from a node that held none of its parts).
    pub(super) fn apply_merge(
        &mut self,
        m: &Merge,
        source: u32,
        now: u64,
        stamp: impl FnOnce() -> u64,
        restamp_live: bool,
    ) -> bool {
        let key = &m.key;
        if self.purged_before.is_some_and(|p| m.version <= p) {
            return false;
        }
        if self
            .store
            .live(key)
            .is_some_and(|i| self.store.at(i).at <= now)
        {
            self.expire(key, now);
        }
        let expires = m.expires_at.unwrap_or(NEVER);
        let dead = self.store.dead(key);
        // What the key holds, as a merged state to join into (or `None`: take the change whole).
        let held: Option<Merged> = match self.store.live(key) {
            Some(i) => {
                let e = self.store.at(i);
                match (e.val(), &m.body) {
                    (Val::Merged(s @ Merged::Counter(_)), Body::Counter { .. })
                    | (Val::Merged(s @ Merged::Hash(_)), Body::Hash { .. }) => Some(s.clone()),
                    (Val::Str(b), Body::Counter { .. }) => Some(self.counter_of(i, b)),
                    // Another type: the newer key wins whole.
                    _ if m.version > self.store.version(i) && m.complete => None,
                    _ => return false,
                }
            }
            None => match dead {
                Some(d) => {
                    let e = self.store.at(d);
                    match (e.merged(), &m.body) {
                        (Some(s @ Merged::Counter(_)), Body::Counter { .. })
                        | (Some(s @ Merged::Hash(_)), Body::Hash { .. }) => Some(s.clone()),
                        _ if e.is_tombstone() => {
                            let target = match m.body {
                                Body::Counter { .. } => Target::Counter,
                                Body::Hash { .. } => Target::Hash,
                            };
                            let version = self.store.version(d);
                            Some(begun(target, version, (e.seq, e.source)))
                        }
                        // A merged value dropped here comes back whole (one version may name
                        // states that differ in older parts); a dropped string only to a newer one.
                        _ if m.version >= self.store.version(d) && m.complete => None,
                        _ => return false,
                    }
                }
                None if m.complete => None,
                // A part of a state this node does not hold: nothing to join it to.
                None => return false,
            },
        };
        let seq = stamp();
        let (state, expires_at, changed) = match held {
            Some(mut state) => {
                let changed = state.join(&m.body, seq, source).unwrap_or(false);
                let ttl = state.join_ttl(m.ttl, expires, seq, source);
                let at = state.ttl_at();
                (state, at, changed || ttl)
            }
            None => {
                let state = Merged::from_body(&m.body, m.ttl, seq, source);
                (state, expires, true)
            }
        };
        if !changed {
            return false;
        }
        let newest = state.newest();
        let fits = entry_size(key.len(), state.bytes()) <= self.limits.max_entry;
        let dead = self.store.dead(key).map(|d| {
            let e = self.store.at(d);
            (
                e.is_tombstone(),
                self.store.version(d),
                e.merged().is_none(),
            )
        });
        if state.exists()
            && !fits
            && dead.is_some_and(|(tomb, version, _)| !tomb && version == newest)
        {
            // Dropped here already (too large), as it would be again.
            return false;
        }
        if let Merged::Hash(h) = &state
            && h.fields.is_empty()
            && h.head.ttl <= h.reset
            && dead.is_some_and(|(tomb, version, stateless)| {
                tomb && stateless && version >= h.newest()
            })
        {
            // A hash holding nothing above its reset is that reset's tombstone: here already.
            return false;
        }
        // A whole state from a peer that this node holds more than: the peer lacks something,
        // so the whole joined state goes back (and on).
        let repair = (m.complete
            && state.fingerprint() != Merged::from_body(&m.body, m.ttl, 0, 0).fingerprint())
            || (restamp_live && state.exists());
        self.put_merged(key, state, expires_at, (seq, source), now);
        if repair {
            self.restamp(key, seq);
        }
        true
    }

    /// Whether a part of `key`'s merged state at `version` is not enough here: this shard holds
    /// no merged state of the key, but a string (that the parts would join), or nothing newer.
    pub fn wants(&self, key: &[u8], version: Version, now: u64) -> bool {
        self.merged(key, now).is_none()
            && (self.peek(key, now).is_some() || self.newest(key).is_none_or(|n| n <= version))
    }

    /// Restamps every merged state this shard holds, live or dead.
    pub fn restamp_merged(&mut self, stamp: &mut dyn FnMut() -> u64) {
        let s = &self.store;
        let slots: Vec<Idx> = s
            .iter_live()
            .chain(s.iter(List::Dead))
            .filter(|&i| s.at(i).merged().is_some())
            .collect();
        for i in slots {
            self.restamp_at(i, stamp());
        }
    }

    /// Moves `key`'s record and every part of its merged state to `seq`, as a local change: every
    /// link sends the whole state next. Returns whether the key had a record to move.
    pub fn restamp(&mut self, key: &[u8], seq: u64) -> bool {
        match self.store.find(key) {
            Some(i) => {
                self.restamp_at(i, seq);
                true
            }
            None => false,
        }
    }

    pub(super) fn restamp_at(&mut self, i: Idx, seq: u64) {
        let e = self.store.at_mut(i);
        if let Some(m) = e.merged_mut() {
            m.restamp(seq);
        }
        let (old, at, live) = (e.seq, e.at, e.is_live());
        self.store.relog(i, seq, LOCAL);
        if live {
            self.unindex_expiry(at, old);
            self.index_expiry(at, seq);
        }
    }

    /// Removes every entry and dead record at or below `before`, and remembers the mark.
    ///
    /// A counter or hash changed after the purge survives it whole, here and everywhere: it may
    /// hold parts older than the purge that other nodes removed with their older copy, so its
    /// whole state goes out again (with seqs from `stamp`).
    pub fn purge(&mut self, before: Version, stamp: &mut dyn FnMut() -> u64) {
        let s = &self.store;
        let all: Vec<Idx> = s.iter_live().chain(s.iter(List::Dead)).collect();
        let survivors: Vec<Idx> = all
            .iter()
            .copied()
            .filter(|&i| s.version(i) > before && s.at(i).merged().is_some())
            .collect();
        let doomed: Vec<Idx> = all
            .iter()
            .copied()
            .filter(|&i| s.version(i) <= before)
            .collect();
        for i in survivors {
            self.restamp_at(i, stamp());
        }
        self.purged_before = self.purged_before.max(Some(before));
        for i in doomed {
            self.clear_slot(i);
        }
    }
}
