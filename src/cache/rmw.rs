//! Reads and read-modify-writes of one key under its shard's lock, and the keyspace summaries the
//! front doors report: what the Redis string and key commands (`APPEND`, `SETRANGE`, `GETEX`,
//! `EXPIRE ... GT`, `RANDOMKEY`, `INFO keyspace`, `WATCH`) are built on.

use bytes::Bytes;

use super::shard::{KeyArg, Kind};
use super::{Cache, Peeked};
use crate::clock::Version;
use crate::error::Error;

/// What an [`update`](Cache::update) writes: the new value and its absolute expiry (`NEVER` for
/// none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Write {
    pub value: Bytes,
    pub expires_at: u64,
}

/// How many keys a cache holds, how many of them expire, and their mean time to live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Keyspace {
    pub keys: usize,
    pub expires: usize,
    /// The mean remaining time to live of the keys that expire, in ms (0 when none do).
    pub avg_ttl_ms: u64,
}

/// What [`Cache::probe`] saw of a key: enough to tell, later, whether it changed in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Probe {
    /// The newest version the cache knows for the key: its entry, tombstone, dropped version or
    /// the purge mark.
    pub version: Option<Version>,
    /// Whether the key held an unexpired value.
    pub live: bool,
}

impl Cache {
    /// Reads `key`'s unexpired entry and, under the same lock, writes what `f` decides: nothing,
    /// or a new value with its expiry, replicated like any write. `f`'s result is returned.
    ///
    /// # Errors
    /// `f`'s error, or [`Error::ValueTooLarge`] (nothing written) if the new entry is too large.
    pub(crate) fn update<T, E: From<Error>>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&Peeked>) -> Result<(Option<Write>, T), E>,
    ) -> Result<T, E> {
        let now = self.now_ms();
        let shard = self.shard(key).lock();
        let current = shard.peek(key, now);
        let (write, result) = f(current.as_ref())?;
        if let Some(w) = write {
            match &current {
                // The value kept, the expiry changed: a write of a merged value's expiry alone.
                Some(c) if c.kind != Kind::String && c.value == w.value => {
                    drop(shard);
                    self.expire_merged(key, w.expires_at)?;
                    return Ok(result);
                }
                Some(c) if c.kind == Kind::Hash => return Err(Error::WrongType.into()),
                _ => {}
            }
            self.check_size(key.len(), w.value.len())?;
            self.commit(shard, KeyArg::Borrowed(key), w.value, w.expires_at, now);
        }
        Ok(result)
    }

    /// A key picked at random among the live ones, or `None` if the cache is empty.
    pub(crate) fn random_key(&self) -> Option<Bytes> {
        let shards = &self.inner.shards;
        let start = rand::random_range(0..shards.len());
        let upto = self.inner.core.current_seq().max(1);
        let from = rand::random_range(0..=upto);
        let now = self.now_ms();
        (0..shards.len()).find_map(|i| {
            let shard = shards[(start + i) % shards.len()].lock();
            let key = shard.live_key_from(from)?;
            shard.peek(&key, now).is_some().then_some(key)
        })
    }

    /// How many keys the cache holds, how many expire, and their mean time to live.
    pub(crate) fn keyspace(&self) -> Keyspace {
        let now = u128::from(self.now_ms());
        let (mut keys, mut expires, mut sum) = (0usize, 0usize, 0u128);
        for shard in self.inner.shards.iter() {
            let s = shard.lock();
            let (n, at_sum) = s.expiring();
            keys += s.len();
            expires += n;
            sum += at_sum;
        }
        let left = sum.saturating_sub(now * expires as u128);
        Keyspace {
            keys,
            expires,
            avg_ttl_ms: if expires == 0 {
                0
            } else {
                u64::try_from(left / expires as u128).unwrap_or(u64::MAX)
            },
        }
    }

    /// What the cache knows of `key` now; a later probe that differs means the key changed
    /// (written, deleted, expired, evicted or purged) in between.
    pub(crate) fn probe(&self, key: &[u8]) -> Probe {
        let now = self.now_ms();
        let (version, live) = self.shard(key).lock().probe(key, now);
        Probe { version, live }
    }

    /// The bytes `key`'s entry is accounted for, if it is held.
    pub(crate) fn entry_bytes(&self, key: &[u8]) -> Option<usize> {
        let now = self.now_ms();
        self.shard(key).lock().entry_bytes(key, now)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cache::{Expiry, NEVER};
    use crate::clock::ManualClock;

    fn cache(clock: &ManualClock) -> Cache {
        Cache::builder()
            .clock(clock.clone())
            .maximum_capacity(1000)
            .max_bytes(1 << 20)
            .shards(1)
            .build()
            .unwrap()
    }

    #[test]
    fn update_reads_and_writes_under_one_lock() {
        let clock = ManualClock::new(1_000_000);
        let c = cache(&clock);
        let appended: Result<usize, Error> = c.update(b"k", |cur| {
            assert!(cur.is_none());
            Ok((
                Some(Write {
                    value: "ab".into(),
                    expires_at: NEVER,
                }),
                2,
            ))
        });
        assert_eq!(appended.unwrap(), 2);
        let unchanged: Result<(), Error> = c.update(b"k", |cur| {
            assert_eq!(cur.unwrap().value, "ab");
            Ok((None, ()))
        });
        unchanged.unwrap();
        assert_eq!(c.get("k").unwrap(), "ab");
        let too_big: Result<(), Error> = c.update(b"k", |_| {
            Ok((
                Some(Write {
                    value: vec![0; 2 << 20].into(),
                    expires_at: NEVER,
                }),
                (),
            ))
        });
        assert!(matches!(too_big, Err(Error::ValueTooLarge { .. })));
        assert_eq!(c.get("k").unwrap(), "ab", "a refused update writes nothing");
    }

    #[test]
    fn keyspace_counts_expiring_keys_and_their_mean_ttl() {
        let clock = ManualClock::new(1_000_000);
        let c = cache(&clock);
        c.set("forever", "v").unwrap();
        c.set_with_ttl("a", "v", Duration::from_secs(10)).unwrap();
        c.set_with_ttl("b", "v", Duration::from_secs(30)).unwrap();
        let ks = c.keyspace();
        assert_eq!((ks.keys, ks.expires, ks.avg_ttl_ms), (3, 2, 20_000));
        c.set_expiry("b", Expiry::Never).unwrap();
        clock.advance(Duration::from_secs(4));
        let ks = c.keyspace();
        assert_eq!((ks.keys, ks.expires, ks.avg_ttl_ms), (3, 1, 6_000));
    }

    #[test]
    fn a_probe_changes_with_every_kind_of_change() {
        let clock = ManualClock::new(1_000_000);
        let c = cache(&clock);
        let missing = c.probe(b"k");
        assert_eq!(
            missing,
            Probe {
                version: None,
                live: false
            }
        );
        c.set_with_ttl("k", "v", Duration::from_secs(1)).unwrap();
        let set = c.probe(b"k");
        assert_ne!(set, missing);
        clock.advance(Duration::from_secs(2));
        let expired = c.probe(b"k");
        assert_ne!(expired, set, "expiry is a change");
        c.purge();
        assert_ne!(c.probe(b"k"), expired, "a purge is a change");
    }

    #[test]
    fn random_key_finds_the_live_keys_only() {
        let clock = ManualClock::new(1_000_000);
        let c = cache(&clock);
        assert_eq!(c.random_key(), None);
        for i in 0..20 {
            c.set(format!("k{i}"), "v").unwrap();
        }
        for i in 0..19 {
            c.delete(format!("k{i}"));
        }
        for _ in 0..20 {
            assert_eq!(c.random_key().unwrap(), "k19");
        }
    }
}
