//! Local changes to merged values (counters and hashes): a state begun from a string, a tombstone or nothing, changed in place or stored anew.

use bytes::Bytes;

use super::slots::touch;
use super::*;
use crate::cache::merge::{Cell, Counter, Hash, Header, Merged, ORIGIN};
use crate::cache::store::{Idx, MAX_KEY, Put, Val};
use crate::clock::Version;

/// A state of `target`'s type holding nothing: on a key whose last change was a delete at
/// `reset`, or ([`ORIGIN`]) on a key this node knows nothing of.
/// The tombstone's seq and source become the state's register's: a tombstone not yet sent goes
/// out as the register of what replaces it.
pub(super) fn begun(target: Target, reset: Version, (reg_seq, reg_source): (u64, u32)) -> Merged {
    let nothing = Header {
        reg_seq,
        reg_source,
        ..Header::new(ORIGIN, 0, LOCAL)
    };
    match target {
        Target::Counter => Merged::Counter(Box::new(Counter {
            cell: Cell::written(reset, None),
            head: nothing,
        })),
        Target::Hash => Merged::Hash(Box::new(Hash {
            reset,
            fields: std::collections::BTreeMap::new(),
            size: 0,
            top: ORIGIN,
            head: nothing,
        })),
    }
}

impl Shard {
    /// A string write (`content`) or a delete (`None`) of a key holding a counter, at
    /// `(version, seq)`: a write of its register, which replaces the increments it saw and keeps
    /// those made elsewhere that it did not see; the key expires at `expires_at` after it.
    pub(super) fn write_counter(
        &mut self,
        key: KeyArg<'_>,
        content: Option<Bytes>,
        (version, seq): (Version, u64),
        expires_at: u64,
        now: u64,
    ) -> Result<(), Refused> {
        let grow = (NEVER, 0);
        self.change_merged(key, Target::Counter, version, seq, now, grow, |m, at| {
            if let Merged::Counter(c) = m {
                c.cell.write(version, content);
                c.head.written(version, seq, LOCAL);
            }
            *at = expires_at;
            Ok(())
        })
    }

    /// Whether `key` holds a counter: live, or deleted with its parts kept.
    pub(super) fn holds_counter(&self, key: &[u8], now: u64) -> bool {
        let Some(i) = self.store.find(key) else {
            return false;
        };
        let _ = now;
        matches!(self.store.at(i).merged(), Some(Merged::Counter(_)))
    }

    /// A string entry's contents as a counter whose register holds it.
    pub(super) fn counter_of(&self, i: Idx, b: &[u8]) -> Merged {
        let e = self.store.at(i);
        let version = self.store.version(i);
        Merged::Counter(Box::new(Counter {
            cell: Cell::written(version, Some(Bytes::copy_from_slice(b))),
            head: Header {
                ttl: version,
                reg_seq: e.seq,
                reg_source: e.source,
                ttl_seq: e.seq,
                ttl_source: e.source,
                ttl_at: e.at,
            },
        }))
    }

    /// A local change to `key` as a value of `target`'s type, made by `f` under this lock: `f`
    /// gets the state the key holds — begun from its string for a counter, from its tombstone, or
    /// from nothing — and the key's expiry to change. On `f`'s error nothing changes; a key of
    /// another type is refused with [`WrongKind`]. The change takes `version` and `seq`; the key
    /// ends live if its state holds a value, as a tombstone otherwise.
    #[allow(clippy::too_many_arguments)]
    pub fn change_merged<T, E: From<Refused>>(
        &mut self,
        key: KeyArg<'_>,
        target: Target,
        version: Version,
        seq: u64,
        now: u64,
        (fresh_expires, grow): (u64, usize),
        f: impl FnOnce(&mut Merged, &mut u64) -> Result<T, E>,
    ) -> Result<T, E> {
        let k = key.as_slice();
        if k.len() > MAX_KEY {
            let (size, limit) = (k.len(), MAX_KEY);
            return Err(Refused::TooLarge { size, limit }.into());
        }
        if self
            .store
            .live(k)
            .is_some_and(|i| self.store.at(i).at <= now)
        {
            self.expire(k, now);
        }
        if let Some(i) = self.store.live(k)
            && matches!(
                (self.store.at(i).merged(), target),
                (Some(Merged::Counter(_)), Target::Counter) | (Some(Merged::Hash(_)), Target::Hash)
            )
        {
            return self.change_in_place(k, grow, (version, seq), now, f);
        }
        let (mut state, mut expires_at) = match self.store.live(k) {
            Some(i) => {
                let e = self.store.at(i);
                match (e.val(), target) {
                    (Val::Str(b), Target::Counter) => (self.counter_of(i, b), e.at),
                    _ => return Err(Refused::WrongKind.into()),
                }
            }
            None => {
                let dead = self.store.dead(k);
                let tombstone = dead.filter(|&d| self.store.at(d).is_tombstone()).map(|d| {
                    let e = self.store.at(d);
                    (self.store.version(d), (e.seq, e.source))
                });
                match (
                    dead.and_then(|d| self.store.at(d).merged().cloned()),
                    target,
                ) {
                    (Some(mut m @ Merged::Counter(_)), Target::Counter)
                    | (Some(mut m @ Merged::Hash(_)), Target::Hash) => {
                        if tombstone.is_none() {
                            // Expired: the key is gone, as in Redis. This write first deletes
                            // everything the state held, as a delete that saw it all.
                            m.forget_all(version, seq);
                            (m, NEVER)
                        } else {
                            let at = m.ttl_at();
                            (m, at)
                        }
                    }
                    (_, target) => {
                        let mut m = match tombstone {
                            Some((version, seq)) => begun(target, version, seq),
                            None => begun(target, ORIGIN, (0, LOCAL)),
                        };
                        // The key's expiry is this write's: its default TTL.
                        m.set_ttl(version, seq, LOCAL);
                        (m, fresh_expires)
                    }
                }
            }
        };
        let out = f(&mut state, &mut expires_at)?;
        if !state.exists() {
            // Gone (a counter deleted, a hash's last field removed): a key written again later
            // has no expiry, as in Redis. A write of the expiry register, at this change.
            state.set_ttl(version, seq, LOCAL);
            expires_at = NEVER;
        }
        let size = entry_size(k.len(), state.bytes());
        if size > self.limits.max_entry {
            let limit = self.limits.max_entry;
            return Err(Refused::TooLarge { size, limit }.into());
        }
        self.put_merged(k, state, expires_at, (seq, LOCAL), now);
        Ok(out)
    }

    /// [`change_merged`](Self::change_merged) of a live merged state, in place: a big hash costs
    /// no copy per change. `grow` bounds the bytes the change may add, checked first, so that a
    /// refused change leaves the state as it was; `f` must leave it untouched when it fails.
    pub(super) fn change_in_place<T, E: From<Refused>>(
        &mut self,
        k: &[u8],
        grow: usize,
        (version, seq): (Version, u64),
        now: u64,
        f: impl FnOnce(&mut Merged, &mut u64) -> Result<T, E>,
    ) -> Result<T, E> {
        let limit = self.limits.max_entry;
        let Some(i) = touch(&mut self.store, &mut *self.policy, k) else {
            unreachable!("checked live by the caller");
        };
        let e = self.store.at_mut(i);
        let old_size = entry_size(k.len(), e.value_len());
        if old_size.saturating_add(grow) > limit {
            let size = old_size.saturating_add(grow);
            return Err(Refused::TooLarge { size, limit }.into());
        }
        let (old_at, old_seq) = (e.at, e.seq);
        let Some(m) = e.merged_mut() else {
            unreachable!("checked merged by the caller");
        };
        let mut at = old_at;
        let out = f(m, &mut at)?;
        if !m.exists() {
            // As in `change_merged`: a key gone has no expiry left for a later write.
            m.set_ttl(version, seq, LOCAL);
            at = NEVER;
        }
        m.set_ttl_at(at);
        if !m.exists() || at <= now {
            // Deleted (a counter's parts kept), or expired by the change: out of the live lists.
            self.unaccount(i);
            let taken = self.store.take(i);
            let Put::Merged(state) = taken.value else {
                unreachable!()
            };
            self.put_merged(&taken.key, state, at, (seq, LOCAL), now);
            return Ok(out);
        }
        let newest = m.newest();
        e.at = at;
        let new_size = entry_size(k.len(), e.value_len());
        self.store.set_version(i, newest);
        self.rewritten(
            i,
            (old_at, old_seq, old_size),
            (at, seq, new_size),
            LOCAL,
            now,
        );
        Ok(out)
    }

    /// Stores a merged state after a change: live if it holds a value, dead otherwise (a counter
    /// with its parts; a hash as a tombstone at its newest version).
    pub(super) fn put_merged(
        &mut self,
        key: &[u8],
        mut state: Merged,
        expires_at: u64,
        seq: (u64, u32),
        now: u64,
    ) {
        state.set_ttl_at(expires_at);
        // The key's version is its state's newest: nodes holding one state agree on it.
        let version = state.newest();
        let fits = entry_size(key.len(), state.bytes()) <= self.limits.max_entry;
        if state.exists() && expires_at > now && fits {
            let state = Put::Merged(state);
            if let Err(state) = self.overwrite_live(key, state, version, expires_at, seq, now) {
                self.clear_key(key);
                self.install_live(key, state, version, expires_at, seq, now);
            }
            return;
        }
        self.clear_key(key);
        if !state.exists() {
            // Deleted: the dead record keeps the state (its registers, parts, field tombstones and
            // expiry register), so that whatever arrives later joins the same state here as
            // anywhere. A hash holding nothing above its reset is that reset's tombstone exactly.
            let (state, seq) = match state {
                Merged::Hash(h) if h.fields.is_empty() && h.head.ttl <= h.reset => {
                    (None, (seq.0, LOCAL))
                }
                state => (Some(state), seq),
            };
            self.install_dead(key, version, seq, true, now, state);
        } else if fits {
            // Expired: dropped, keeping the state, as a live one that expires here does (see
            // `Shard::merged`).
            self.install_dead(key, version, seq, false, now, Some(state));
        } else {
            // Too large to hold here.
            self.install_dead(key, version, seq, false, now, None);
        }
    }
}
