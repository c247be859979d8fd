//! Digests: what two ends of a link compare to find the records where they differ, without
//! sending the records. Pure functions over bucket sums and over a record source (a closure that
//! visits records, as `Replica::digest_records` does), so they are tested without a node; the
//! link's state machine (src/replication/link/resync.rs) decides when each round runs.
//!
//! A record's bucket is a hash of its cache and key; a bucket's sum is the wrapping sum of its
//! records' hashes. Rounds go coarse (`2^(fine - split)` sums), then fine under the coarse
//! buckets that differ, then (anti-entropy) key by key in the fine buckets that still differ.

use bytes::Bytes;

use super::LinkError;
use super::message::{KeySum, MAX_KEY_BUCKETS, MAX_KEY_SUMS};
use super::replica::DigestVisit;
use crate::cache::DigestItem;
use crate::clock::Version;

/// The most buckets a digest has: 2^20 sums of 8 bytes, 8 MiB.
pub const DIGEST_MAX_LOG2: u8 = 20;
/// The fewest: 2^8.
pub(crate) const DIGEST_MIN_LOG2: u8 = 8;

/// The bucket of a record: a hash of its cache and key (keyless records, purges, share their
/// cache's bucket). CRC-32 because both ends must compute the same value, whatever their build;
/// it is also what the disk format uses.
pub(crate) fn bucket_of(cache: &str, key: Option<&[u8]>, log2: u8) -> usize {
    bucket_in(&key_hasher(cache, key), log2)
}

/// A CRC-32 of a record's cache and key: the start of both its bucket and its hash.
fn key_hasher(cache: &str, key: Option<&[u8]>) -> crc32fast::Hasher {
    let mut h = crc32fast::Hasher::new();
    h.update(cache.as_bytes());
    h.update(&[0xff]);
    if let Some(key) = key {
        h.update(key);
    }
    h
}

/// [`bucket_of`] from the record's [`key_hasher`].
fn bucket_in(h: &crc32fast::Hasher, log2: u8) -> usize {
    let h = h.clone();
    // CRC-32 is linear: keys that differ in a pattern (`key00000`, `key00200`...) get CRCs that
    // differ in a pattern, and their low bits crowd into a few buckets. A multiplication by an
    // odd 64-bit constant (Fibonacci hashing) spreads every bit of it into the high bits taken.
    let mixed = u64::from(h.finalize()).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (mixed >> (64 - u32::from(log2))) as usize
}

/// A record's contribution to its bucket's sum: a 64-bit XXH3 of what identifies it. Two nodes
/// hold the same records in a bucket when the sums agree (but for a 2^-64 chance).
///
/// Not CRC-32, which picks the buckets: a CRC is linear, so the wrapping sums of records with
/// structured keys and versions (a writer's consecutive timestamps) collide far more often than
/// chance — wide schedule 220114631 found two buckets {k7@t+2, k23@t+1} and {k7@s+1, k23@s+2}
/// of two writers with equal CRC sums, and the sync by difference skipped them. And not 32 bits:
/// a false "same" hides a bucket until it changes again, and a busy tree compares billions.
///
/// A string's record (a value, a tombstone, a dropped version) is hashed by its cache, key and
/// version: a version names one write, so a copy evicted or expired at one node and held at
/// another is no difference. A merged state is hashed whole (registers, parts, fields, the TTL
/// register and the expiry), leaving out whether the sender sent it whole: two states under
/// one version may differ, and that is what the digest must see.
fn record_hash(
    cache: &str,
    key: Option<&[u8]>,
    item: &mut DigestItem,
    scratch: &mut Vec<u8>,
) -> Sum {
    // One-shot XXH3 over the bytes laid out in `scratch`: its streaming state costs more to set
    // up than a short record takes to hash.
    scratch.clear();
    scratch.extend_from_slice(cache.as_bytes());
    scratch.push(0xff);
    match item {
        DigestItem::Merged(m, _) => {
            m.complete = true;
            if postcard::to_io(&**m, &mut *scratch).is_err() {
                scratch.truncate(cache.len() + 1);
            }
        }
        DigestItem::Version(version, _) | DigestItem::Purge(version) => {
            // The key's length first, so that no key and version run into another's.
            let key = key.unwrap_or_default();
            scratch.extend_from_slice(&(key.len() as u64).to_le_bytes());
            scratch.extend_from_slice(key);
            scratch.extend_from_slice(&version.ts.0.to_le_bytes());
            scratch.extend_from_slice(&version.node.0.to_le_bytes());
        }
    }
    xxhash_rust::xxh3::xxh3_64(scratch)
}

/// A bucket's sum of record hashes, as the digest carries it.
pub(crate) type Sum = u64;
/// The bytes of one [`Sum`] on the wire.
const SUM_BYTES: usize = std::mem::size_of::<Sum>();

/// Whether a peer's coarse [`Message::Digest`] says it holds records (`false`: the empty digest
/// of a peer holding nothing).
///
/// # Errors
/// [`LinkError::Protocol`] for a digest this node could not have asked for: a shape it never
/// uses, or not one sum per coarse bucket.
pub(crate) fn holds_records(log2: u8, fine: u8, split: u8, sums: &[u8]) -> Result<bool, LinkError> {
    if log2 == 0 && fine == 0 && sums.is_empty() {
        return Ok(false);
    }
    if !digest_shape_ok(log2, fine, split) || sums.len() != SUM_BYTES << log2 {
        return Err(LinkError::Protocol(format!(
            "a digest of {} bytes for 2^{log2} buckets (2^{fine} fine)",
            sums.len()
        )));
    }
    Ok(true)
}

/// Which coarse buckets of `2^log2` differ: this node's fine sums `ours`, summed by prefix,
/// against the peer's coarse `sums` (whose length the caller checked). A bitmap, and how many.
pub(crate) fn coarse_differ(ours: &[Sum], log2: u8, fine: u8, sums: &[u8]) -> (Vec<u64>, u64) {
    let split = fine - log2;
    let mut differ = vec![0u64; (1usize << log2).div_ceil(64)];
    let mut differing = 0u64;
    for (b, (group, theirs)) in ours.chunks(1 << split).zip(sums_of(sums)).enumerate() {
        let mine = group.iter().fold(0, |a: Sum, s| a.wrapping_add(*s));
        if mine != theirs {
            differ[b / 64] |= 1 << (b % 64);
            differing += 1;
        }
    }
    (differ, differing)
}

/// A bitmap of `2^log2` buckets as [`Message::DigestRefine`] carries it.
pub(crate) fn bitmap_bytes(differ: &[u64], log2: u8) -> Bytes {
    let mut buckets = vec![0u8; (1usize << log2) / 8];
    for (b, byte) in buckets.iter_mut().enumerate() {
        *byte = (differ[b / 8] >> ((b % 8) * 8)) as u8;
    }
    buckets.into()
}

/// Which fine buckets of `2^fine` differ: under each coarse bucket set in `coarse`, this node's
/// fine sums `ours` against the peer's answer `sums`.
///
/// # Errors
/// [`LinkError::Protocol`] if `sums` is not one sum per fine bucket asked for.
pub(crate) fn fine_differ(
    ours: &[Sum],
    log2: u8,
    fine: u8,
    coarse: &[u64],
    sums: &[u8],
) -> Result<Vec<u64>, LinkError> {
    let split = fine - log2;
    let asked: u32 = coarse.iter().map(|w| w.count_ones()).sum();
    if sums.len() != ((asked as usize) << split) * SUM_BYTES {
        return Err(LinkError::Protocol(format!(
            "{} bytes of fine sums for {asked} buckets of 2^{split}",
            sums.len()
        )));
    }
    let mut differ = vec![0u64; (1usize << fine).div_ceil(64)];
    let mut theirs = sums_of(sums);
    for c in set_bits(coarse, 1 << log2) {
        for f in c << split..(c + 1) << split {
            if theirs.next() != Some(ours[f]) {
                differ[f / 64] |= 1 << (f % 64);
            }
        }
    }
    Ok(differ)
}

/// The buckets set in a bitmap of `n` bits.
pub(crate) fn set_bits(bits: &[u64], n: usize) -> impl Iterator<Item = usize> + '_ {
    (0..n).filter(move |b| bits[b / 64] & (1 << (b % 64)) != 0)
}

/// How many fine buckets a coarse bucket of a digest holds, as a power of two. The first round
/// sends `2^(fine - 5)` sums, the second 32 for each coarse bucket that differs: for 1M records
/// (2^20 fine buckets) and 1,000 keys changed, 256 KiB and about 250 KiB instead of 8 MiB.
pub const DIGEST_SPLIT: u8 = 5;

/// The split of anti-entropy's digest: its first round, every round on an idle link, sends
/// `2^(fine - 8)` sums (32 KiB of 8-byte sums for 1M records); the second 256 for each coarse
/// bucket that differs, which on a healthy tree is none.
pub const ANTI_ENTROPY_SPLIT: u8 = 8;

/// The coarse buckets of a digest with `2^fine` fine ones split `2^split` ways: at least 8, a
/// byte of the refinement's bitmap.
pub(crate) fn coarse_log2(fine: u8, split: u8) -> u8 {
    fine.saturating_sub(split).max(3)
}

/// Whether a peer's `(coarse, fine)` pair is one this node could have asked for with `split`.
pub(crate) fn digest_shape_ok(log2: u8, fine: u8, split: u8) -> bool {
    (DIGEST_MIN_LOG2..=DIGEST_MAX_LOG2).contains(&fine) && coarse_log2(fine, split) == log2
}

/// `sums` as little-endian bytes, the wire form of a digest.
pub(crate) fn sums_to_bytes(sums: &[Sum]) -> Bytes {
    let mut bytes = Vec::with_capacity(sums.len() * SUM_BYTES);
    for s in sums {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    bytes.into()
}

/// The sums of a digest's wire form (whose length the caller checked is a multiple of
/// [`SUM_BYTES`]).
fn sums_of(bytes: &[u8]) -> impl Iterator<Item = Sum> + '_ {
    (bytes.chunks_exact(SUM_BYTES)).map(|c| Sum::from_le_bytes(c.try_into().expect("8 bytes")))
}

/// How many buckets a digest of `records` gets: about one record per fine bucket, within bounds,
/// and small enough to go in half a frame.
pub(crate) fn digest_log2(records: u64, max_frame: usize) -> u8 {
    let wanted = (64 - records.max(1).saturating_sub(1).leading_zeros()) as u8;
    let fits = ((max_frame / (2 * SUM_BYTES)).max(1).ilog2() as u8).max(DIGEST_MIN_LOG2);
    wanted.clamp(DIGEST_MIN_LOG2, DIGEST_MAX_LOG2.min(fits))
}

/// Calls `add(bucket, hash)` for each record `records` visits, with its bucket of `2^log2`.
fn scan_buckets(
    log2: u8,
    records: impl FnOnce(&mut DigestVisit<'_>),
    mut add: impl FnMut(usize, Sum),
) {
    let mut scratch = Vec::new();
    records(&mut |cache, key, mut item| {
        add(
            bucket_of(cache, key, log2),
            record_hash(cache, key, &mut item, &mut scratch),
        );
    });
}

/// Per bucket of `2^log2`, the sum of the hashes of the records `records` visits (on a node:
/// every record a full sync would send, read the same way).
pub(crate) fn sums(log2: u8, records: impl FnOnce(&mut DigestVisit<'_>)) -> Vec<Sum> {
    let mut sums: Vec<Sum> = vec![0; 1 << log2];
    scan_buckets(log2, records, |b, h| sums[b] = sums[b].wrapping_add(h));
    sums
}

/// The answer to a [`Message::DigestRefine`]: the fine sums under the coarse buckets set in
/// `buckets`, coarse bucket after coarse bucket.
pub(crate) fn fine_sums(
    log2: u8,
    fine: u8,
    buckets: &[u8],
    records: impl FnOnce(&mut DigestVisit<'_>),
) -> Result<Bytes, LinkError> {
    let asked_for = |split| digest_shape_ok(log2, fine, split);
    if !(DIGEST_SPLIT..=ANTI_ENTROPY_SPLIT).any(asked_for) || buckets.len() != (1usize << log2) / 8
    {
        return Err(LinkError::Protocol(format!(
            "a digest refinement of 2^{log2} into 2^{fine} buckets in {} bytes",
            buckets.len()
        )));
    }
    let split = fine - log2;
    // Where each coarse bucket's fine sums start in the answer, or none if it is not asked.
    let mut start = vec![u32::MAX; 1 << log2];
    let mut asked = 0u32;
    for (b, slot) in start.iter_mut().enumerate() {
        if buckets[b / 8] & (1 << (b % 8)) != 0 {
            *slot = asked << split;
            asked += 1;
        }
    }
    let mut sums: Vec<Sum> = vec![0; (asked as usize) << split];
    let low = (1usize << split) - 1;
    scan_buckets(fine, records, |f, h| {
        let at = start[f >> split];
        if at != u32::MAX {
            let i = at as usize | (f & low);
            sums[i] = sums[i].wrapping_add(h);
        }
    });
    Ok(sums_to_bytes(&sums))
}

/// The records `records` visits in the fine buckets `buckets` (ascending) of `2^fine`, with what
/// anti-entropy compares of each, at most [`MAX_KEY_SUMS`].
pub(crate) fn records_in(
    fine: u8,
    buckets: &[u32],
    records: impl FnOnce(&mut DigestVisit<'_>),
) -> Vec<(String, Bytes, Held)> {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    records(&mut |cache, key, mut item| {
        let Some(key) = key else {
            return;
        };
        let keyed = key_hasher(cache, Some(key));
        let b = bucket_in(&keyed, fine) as u32;
        if out.len() >= MAX_KEY_SUMS || buckets.binary_search(&b).is_err() {
            return;
        }
        let (version, dropped) = match &item {
            DigestItem::Version(v, dropped) => (*v, *dropped),
            DigestItem::Merged(m, expired) => (m.version, *expired),
            DigestItem::Purge(v) => (*v, false),
        };
        let hash = record_hash(cache, Some(key), &mut item, &mut scratch);
        out.push((
            cache.to_string(),
            Bytes::copy_from_slice(key),
            (version, hash, dropped),
        ));
    });
    out
}

/// The answer to a [`Message::KeysRequest`].
pub(crate) fn key_sums(
    fine: u8,
    buckets: &[u32],
    records: impl FnOnce(&mut DigestVisit<'_>),
) -> Result<Vec<(String, Vec<KeySum>)>, LinkError> {
    if !(DIGEST_MIN_LOG2..=DIGEST_MAX_LOG2).contains(&fine)
        || buckets.len() > MAX_KEY_BUCKETS
        || buckets.windows(2).any(|w| w[0] >= w[1])
        || buckets.last().is_some_and(|&b| b >> fine != 0)
    {
        return Err(LinkError::Protocol(format!(
            "a request for the keys of {} buckets of 2^{fine}",
            buckets.len()
        )));
    }
    let mut caches: Vec<(String, Vec<KeySum>)> = Vec::new();
    for (cache, key, (version, hash, dropped)) in records_in(fine, buckets, records) {
        let sum = KeySum {
            key,
            version,
            hash,
            dropped,
        };
        match caches.iter_mut().find(|(c, _)| *c == cache) {
            Some((_, sums)) => sums.push(sum),
            None => caches.push((cache, vec![sum])),
        }
    }
    Ok(caches)
}

/// What anti-entropy compares of one record: its version, its digest hash, whether it was
/// dropped by its holder.
pub(crate) type Held = (Version, Sum, bool);

/// How one key's records at the two ends of a link compare (see [`compare`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compared {
    /// The same version with the same content.
    Same,
    /// One end dropped by itself (evicted, expired) a merged state at the version the other
    /// holds: sent back whole, since states under one version may differ, but no fault.
    Dropped,
    /// Another version, or the same version with another content: a difference replication
    /// left behind (or one still on its way).
    Differs,
}

/// How our record of a key (`ours`) compares with the peer's (`theirs`).
pub(crate) fn compare(ours: Held, theirs: &KeySum) -> Compared {
    let (version, hash, dropped) = ours;
    if version == theirs.version && hash == theirs.hash {
        Compared::Same
    } else if version == theirs.version && (dropped || theirs.dropped) {
        Compared::Dropped
    } else {
        Compared::Differs
    }
}

/// The answer to a [`Message::DigestRequest`](super::Message::DigestRequest) for `records`
/// split `split` ways, from a node holding `own` records, as `(log2, fine, sums)`: the empty
/// digest if it holds nothing, else its coarse sums.
///
/// # Errors
/// [`LinkError::Protocol`] for a split this node never asks for.
pub(crate) fn answer(
    records: u64,
    split: u8,
    own: u64,
    max_frame: usize,
    scan: impl FnOnce(&mut DigestVisit<'_>),
) -> Result<(u8, u8, Bytes), LinkError> {
    if !(DIGEST_SPLIT..=ANTI_ENTROPY_SPLIT).contains(&split) {
        return Err(LinkError::Protocol(format!(
            "a digest request split {split} ways"
        )));
    }
    if own == 0 {
        return Ok((0, 0, Bytes::new()));
    }
    let fine = digest_log2(records.max(own), max_frame);
    let log2 = coarse_log2(fine, split);
    // A coarse bucket is a prefix of fine ones: the scan at `log2` sums them.
    Ok((log2, fine, sums_to_bytes(&sums(log2, scan))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{NodeId, Timestamp};

    fn v(ts: u64) -> Version {
        Version {
            ts: Timestamp(ts),
            node: NodeId(1),
        }
    }

    /// A node's records as `(key, version)`, all of cache `c`, visited as a replica would.
    fn node<'a>(records: &'a [(&'a str, u64)]) -> impl Fn(&mut DigestVisit<'_>) + 'a {
        move |f| {
            for &(key, ts) in records {
                f("c", Some(key.as_bytes()), DigestItem::Version(v(ts), false));
            }
        }
    }

    fn keys(n: usize) -> Vec<(String, u64)> {
        (0..n).map(|i| (format!("key{i:05}"), 1)).collect()
    }

    fn borrowed(owned: &[(String, u64)]) -> Vec<(&str, u64)> {
        owned.iter().map(|(k, t)| (k.as_str(), *t)).collect()
    }

    #[test]
    fn sums_do_not_depend_on_order_and_coarse_sums_are_prefix_sums_of_fine() {
        let owned = keys(1_000);
        let a = borrowed(&owned);
        let mut b = a.clone();
        b.reverse();
        assert_eq!(sums(10, node(&a)), sums(10, node(&b)));
        let fine = sums(10, node(&a));
        let coarse = sums(5, node(&a));
        for (c, group) in coarse.iter().zip(fine.chunks(1 << 5)) {
            assert_eq!(*c, group.iter().fold(0u64, |s, x| s.wrapping_add(*x)));
        }
    }

    #[test]
    fn two_rounds_find_exactly_the_buckets_that_differ() {
        let owned = keys(2_000);
        let ours = borrowed(&owned);
        let mut theirs = ours.clone();
        theirs[17].1 = 2; // a newer version there
        theirs[1_500].1 = 3;
        let (fine, split) = (digest_log2(2_000, 1 << 20), DIGEST_SPLIT);
        let log2 = coarse_log2(fine, split);
        let (l, f, coarse) = answer(2_000, split, 2_000, 1 << 20, node(&theirs)).unwrap();
        assert_eq!((l, f), (log2, fine));
        assert!(holds_records(log2, fine, split, &coarse).unwrap());
        let our_fine = sums(fine, node(&ours));
        let (differ, n) = coarse_differ(&our_fine, log2, fine, &coarse);
        assert_eq!(n, 2);
        let asked = bitmap_bytes(&differ, log2);
        let answer = fine_sums(log2, fine, &asked, node(&theirs)).unwrap();
        let bits = fine_differ(&our_fine, log2, fine, &differ, &answer).unwrap();
        let found: Vec<usize> = set_bits(&bits, 1 << fine).collect();
        let expected: Vec<usize> = {
            let mut b = vec![
                bucket_of("c", Some(b"key00017"), fine),
                bucket_of("c", Some(b"key01500"), fine),
            ];
            b.sort();
            b
        };
        assert_eq!(found, expected);
        // Key by key in those buckets: exactly the two keys differ.
        let buckets: Vec<u32> = found.iter().map(|&b| b as u32).collect();
        let listed = key_sums(fine, &buckets, node(&theirs)).unwrap();
        let ours_there = records_in(fine, &buckets, node(&ours));
        let differing: Vec<&Bytes> = listed[0]
            .1
            .iter()
            .filter(|sum| {
                let held = ours_there.iter().find(|(_, k, _)| *k == sum.key).unwrap().2;
                compare(held, sum) == Compared::Differs
            })
            .map(|sum| &sum.key)
            .collect();
        assert_eq!(differing.len(), 2);
    }

    #[test]
    fn an_empty_node_answers_the_empty_digest() {
        let (log2, fine, sums) = answer(10, DIGEST_SPLIT, 0, 1 << 20, node(&[])).unwrap();
        assert_eq!((log2, fine, sums.len()), (0, 0, 0));
        assert!(!holds_records(log2, fine, DIGEST_SPLIT, &sums).unwrap());
    }

    #[test]
    fn shapes_a_node_never_asks_for_are_protocol_errors() {
        let scan = node(&[("k", 1)]);
        assert!(
            answer(1, 4, 1, 1 << 20, &scan).is_err(),
            "split below the range"
        );
        assert!(
            answer(1, ANTI_ENTROPY_SPLIT + 1, 1, 1 << 20, &scan).is_err(),
            "split above the range"
        );
        assert!(holds_records(3, 8, DIGEST_SPLIT, &[0; 31]).is_err());
        assert!(
            holds_records(4, 8, DIGEST_SPLIT, &[0; 64]).is_err(),
            "wrong coarse"
        );
        assert!(
            fine_sums(3, 8, &[0; 2], &scan).is_err(),
            "bitmap of the wrong size"
        );
        assert!(fine_differ(&[0; 256], 3, 8, &[1], &[0; 12]).is_err());
        assert!(key_sums(7, &[1], &scan).is_err(), "fine below the range");
        assert!(key_sums(8, &[2, 1], &scan).is_err(), "not ascending");
        assert!(key_sums(8, &[256], &scan).is_err(), "out of range");
        let too_many: Vec<u32> = (0..MAX_KEY_BUCKETS as u32 + 1).collect();
        assert!(key_sums(20, &too_many, &scan).is_err());
    }

    #[test]
    fn a_digest_fits_half_a_frame_and_tracks_the_record_count() {
        assert_eq!(digest_log2(1, 1 << 20), DIGEST_MIN_LOG2);
        assert_eq!(digest_log2(1 << 16, 16 << 20), 16);
        assert_eq!(digest_log2(1 << 30, 16 << 20), DIGEST_MAX_LOG2);
        // 2^fine sums of 4 bytes stay within half a frame.
        let fine = digest_log2(1 << 30, 1 << 16);
        assert!(4usize << fine <= (1 << 16) / 2);
    }

    #[test]
    fn a_drop_at_the_version_held_elsewhere_is_no_fault() {
        let sum = |version, hash, dropped| KeySum {
            key: Bytes::from_static(b"k"),
            version,
            hash,
            dropped,
        };
        assert_eq!(
            compare((v(1), 5, false), &sum(v(1), 5, false)),
            Compared::Same
        );
        assert_eq!(
            compare((v(1), 5, true), &sum(v(1), 6, false)),
            Compared::Dropped
        );
        assert_eq!(
            compare((v(1), 5, false), &sum(v(1), 6, true)),
            Compared::Dropped
        );
        assert_eq!(
            compare((v(1), 5, false), &sum(v(1), 6, false)),
            Compared::Differs
        );
        assert_eq!(
            compare((v(1), 5, true), &sum(v(2), 5, false)),
            Compared::Differs
        );
    }

    /// The buckets wide schedule 220114631 left different: two writers' records of `k7` and
    /// `k23`, each pair written a timestamp apart in opposite orders. CRC-32 hashes, summed,
    /// called them the same (checked here by the formula the digest used), so the sync by
    /// difference skipped `k7`; XXH3 sums tell them apart.
    #[test]
    fn structured_records_that_crc_sums_confused_differ() {
        let w1 = NodeId(0xb6c9_3038_bd93_499f_8b9f_b947_bae4_2bbb);
        let w4 = NodeId(0xdb2d_9ee6_73b7_4a23_8419_2c62_5247_5f1e);
        let at = |ts, node| Version {
            ts: Timestamp(ts),
            node,
        };
        let n1 = [
            ("k7", at(111_411_200_004_587_522, w1)),
            ("k23", at(111_411_200_004_587_521, w1)),
        ];
        let n4 = [
            ("k23", at(111_411_200_090_439_682, w4)),
            ("k7", at(111_411_200_090_439_681, w4)),
        ];
        let crc_sum = |records: &[(&str, Version)]| {
            records.iter().fold(0u32, |sum, (key, version)| {
                let mut h = key_hasher("default", Some(key.as_bytes()));
                h.update(&version.ts.0.to_le_bytes());
                h.update(&version.node.0.to_le_bytes());
                sum.wrapping_add(h.finalize())
            })
        };
        assert_eq!(crc_sum(&n1), crc_sum(&n4), "the collision the seed met");
        let xxh3_sum = |records: &[(&str, Version)]| {
            sums(3, |f: &mut DigestVisit<'_>| {
                for (key, version) in records {
                    f(
                        "default",
                        Some(key.as_bytes()),
                        DigestItem::Version(*version, false),
                    );
                }
            })[2]
        };
        assert_eq!(bucket_of("default", Some(b"k7"), 3), 2);
        assert_eq!(bucket_of("default", Some(b"k23"), 3), 2);
        assert_ne!(xxh3_sum(&n1), xxh3_sum(&n4));
    }
}
