//! The on-disk format shared by snapshots and op-log segments: a magic line, then entries, each
//! framed as `length (u32 LE) · CRC-32 of the payload (u32 LE) · postcard payload`.
//!
//! A reader stops at the first entry it cannot trust and says why: the file ends inside an entry
//! (a torn tail, what a crash mid-write leaves), or a complete entry fails its checksum or does not
//! decode (damage). Nothing after that point is loaded.

use std::io::{self, BufRead, Read};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::clock::{NodeId, Version};

/// The first bytes of a snapshot file.
pub(crate) const SNAPSHOT_MAGIC: &[u8; 8] = b"LCSNAP01";
/// The first bytes of an op-log segment.
pub(crate) const LOG_MAGIC: &[u8; 8] = b"LCOPLG01";

/// No entry is longer than this; a longer length field is damage, not an allocation.
const MAX_ENTRY: usize = 1 << 30;

/// One entry. `B` is the byte type: borrowed slices when writing (no copy of keys and values),
/// [`Bytes`] when reading. Both encode alike (a length, then the bytes).
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub(crate) enum Record<B> {
    /// The first entry of every file: whose it is, and the caches that `cache` indexes refer to.
    /// In a snapshot, `segment` is the first op-log segment to replay after it; in a segment, its
    /// own number.
    Header {
        node: NodeId,
        incarnation: u128,
        caches: Vec<String>,
        segment: u64,
    },
    /// A live entry (a local or remote write).
    Live {
        cache: u32,
        seq: u64,
        key: B,
        value: B,
        version: Version,
        /// Wall-clock ms, `u64::MAX` for never.
        expires_at: u64,
    },
    /// A key deleted (`tombstone`) or dropped (evicted, expired, invalidated), with its version.
    Dead {
        cache: u32,
        seq: u64,
        key: B,
        version: Version,
        tombstone: bool,
        since_ms: u64,
    },
    /// Everything in the cache at or below `version` is gone.
    Purge {
        cache: u32,
        seq: u64,
        version: Version,
    },
    /// The highest seq of a record the cache forgot.
    Floor { cache: u32, seq: u64 },
    /// This node applied `peer`'s changes up to `seq` of its `incarnation`.
    Mark {
        peer: NodeId,
        incarnation: u128,
        seq: u64,
    },
    /// The last entry of a segment closed by rotation: a segment without it, other than the
    /// newest, lost its tail.
    Close,
    /// The last entry of a complete snapshot.
    End { entries: u64 },
    /// A key holding a value that merges: its whole state (in a snapshot), or the part a change
    /// touched (in the op log), joined into what is restored. Added after the others, so files
    /// written before merged values existed still read.
    Merged {
        cache: u32,
        seq: u64,
        merge: Box<crate::cache::merge::Merge>,
    },
}

/// Appends `entry`, framed, to `out`. On an encoding failure `out` is left as it was.
pub(crate) fn frame<B: Serialize>(out: &mut Vec<u8>, entry: &Record<B>) -> Result<(), String> {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    if let Err(e) = postcard::to_extend(entry, Append(out)) {
        out.truncate(start);
        return Err(e.to_string());
    }
    let len = out.len() - start - 8;
    if len > MAX_ENTRY {
        out.truncate(start);
        return Err(format!(
            "entry of {len} bytes over the {MAX_ENTRY}-byte limit"
        ));
    }
    seal(out, start);
    Ok(())
}

/// Fills in the length and checksum of the entry whose 8-byte header starts at `start`.
#[inline]
fn seal(out: &mut [u8], start: usize) {
    let len = out.len() - start - 8;
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// [`frame`] for the hot entry, a live write, encoded by hand: the same bytes postcard writes for
/// `Record::Live` (variant index, then each field; integers as varints, bytes length-prefixed),
/// without going through serde. A test holds the two encodings equal.
#[inline]
pub(crate) fn frame_live(
    out: &mut Vec<u8>,
    cache: u32,
    seq: u64,
    key: &[u8],
    value: &[u8],
    version: Version,
    expires_at: u64,
) {
    let start = out.len();
    out.reserve(8 + 1 + 5 + 10 * 5 + 19 + key.len() + value.len());
    out.extend_from_slice(&[0; 8]);
    out.push(LIVE_VARIANT);
    varint(out, u128::from(cache));
    varint(out, u128::from(seq));
    varint(out, key.len() as u128);
    out.extend_from_slice(key);
    varint(out, value.len() as u128);
    out.extend_from_slice(value);
    varint(out, u128::from(version.ts.0));
    varint(out, version.node.0);
    varint(out, u128::from(expires_at));
    seal(out, start);
}

/// `Record::Live`'s variant index (its place in the enum).
const LIVE_VARIANT: u8 = 1;

/// A LEB128 varint, as postcard writes every integer wider than a byte.
#[inline]
fn varint(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends to a borrowed buffer (postcard's `to_extend` takes its writer by value).
struct Append<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Append<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

/// What a [`Reader`] found next.
#[derive(Debug)]
pub(crate) enum Next {
    Record(Record<Bytes>),
    /// The file ended cleanly, between entries.
    End,
    /// The entry at `offset` cannot be trusted; nothing from there on is read.
    Bad(Bad),
}

/// Where and why a file stopped being readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bad {
    pub offset: u64,
    /// The file ends inside this entry, or the entry is the file's last and fails its checksum:
    /// what a crash during a write leaves. Otherwise the bytes are damaged.
    pub torn: bool,
    pub reason: String,
}

/// Reads framed entries from a file opened at its start.
pub(crate) struct Reader<R> {
    inner: R,
    /// Bytes consumed so far: the offset of the next entry.
    pub offset: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> Reader<R> {
    /// Checks the magic line. `Err` carries what is wrong (the file is unusable as a whole).
    pub fn open(mut inner: R, magic: &[u8; 8]) -> Result<Self, String> {
        let mut head = [0u8; 8];
        let n = read_full(&mut inner, &mut head).map_err(|e| e.to_string())?;
        if n < 8 {
            return Err(format!("{n}-byte file: shorter than its 8-byte magic"));
        }
        if &head != magic {
            return Err(format!(
                "not a leafcache {} file (magic {:?})",
                if magic == SNAPSHOT_MAGIC {
                    "snapshot"
                } else {
                    "op-log"
                },
                String::from_utf8_lossy(&head)
            ));
        }
        Ok(Reader {
            inner,
            offset: 8,
            buf: Vec::new(),
        })
    }

    pub fn next(&mut self) -> Next {
        let at = self.offset;
        let bad = |torn: bool, reason: String| {
            Next::Bad(Bad {
                offset: at,
                torn,
                reason,
            })
        };
        let mut head = [0u8; 8];
        let n = match read_full(&mut self.inner, &mut head) {
            Ok(n) => n,
            Err(e) => return bad(false, format!("read error: {e}")),
        };
        if n == 0 {
            return Next::End;
        }
        if n < 8 {
            return bad(true, format!("file ends {n} bytes into an entry header"));
        }
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        if len > MAX_ENTRY {
            return bad(false, format!("entry length {len} over the limit"));
        }
        self.buf.resize(len, 0);
        let got = match read_full(&mut self.inner, &mut self.buf) {
            Ok(n) => n,
            Err(e) => return bad(false, format!("read error: {e}")),
        };
        if got < len {
            return bad(
                true,
                format!("file ends {got} bytes into a {len}-byte entry"),
            );
        }
        if crc32fast::hash(&self.buf) != crc {
            let last = self.inner.fill_buf().map(|b| b.is_empty()).unwrap_or(false);
            return bad(last, "checksum mismatch".to_string());
        }
        match postcard::from_bytes::<Record<Bytes>>(&self.buf) {
            Ok(entry) => {
                self.offset += 8 + len as u64;
                Next::Record(entry)
            }
            Err(e) => bad(false, format!("undecodable entry: {e}")),
        }
    }
}

/// Reads until `buf` is full or the input ends; returns how many bytes it read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;

    fn v(ts: u64) -> Version {
        Version {
            ts: Timestamp(ts),
            node: NodeId(7),
        }
    }

    fn file(entries: &[Record<&[u8]>]) -> Vec<u8> {
        let mut out = LOG_MAGIC.to_vec();
        for e in entries {
            frame(&mut out, e).unwrap();
        }
        out
    }

    fn read_all(bytes: &[u8]) -> (Vec<Record<Bytes>>, Option<Bad>) {
        let mut r = Reader::open(bytes, LOG_MAGIC).unwrap();
        let mut out = Vec::new();
        loop {
            match r.next() {
                Next::Record(e) => out.push(e),
                Next::End => return (out, None),
                Next::Bad(b) => return (out, Some(b)),
            }
        }
    }

    fn sample() -> Vec<Record<&'static [u8]>> {
        vec![
            Record::Live {
                cache: 0,
                seq: 1,
                key: b"k1",
                value: b"value one",
                version: v(1),
                expires_at: u64::MAX,
            },
            Record::Dead {
                cache: 1,
                seq: 2,
                key: b"k2",
                version: v(2),
                tombstone: true,
                since_ms: 5,
            },
            Record::Mark {
                peer: NodeId(9),
                incarnation: 3,
                seq: 40,
            },
        ]
    }

    #[test]
    fn borrowed_entries_read_back_as_owned() {
        let (read, bad) = read_all(&file(&sample()));
        assert_eq!(bad, None);
        assert_eq!(read.len(), 3);
        assert!(matches!(&read[0], Record::Live { key, value, seq: 1, .. }
            if key == &b"k1"[..] && value == &b"value one"[..]));
        assert!(matches!(&read[2], Record::Mark { seq: 40, .. }));
    }

    #[test]
    fn the_hand_encoded_live_entry_is_postcards() {
        for (key, value, ts, node, expires_at, seq) in [
            (&b""[..], &b""[..], 0u64, 0u128, 0u64, 0u64),
            (b"k1", b"value one", 1 << 40, 7, u64::MAX, 300),
            (
                b"key",
                &[9u8; 200][..],
                u64::MAX,
                u128::MAX,
                1_700_000_000_000,
                u64::MAX,
            ),
        ] {
            let version = Version {
                ts: Timestamp(ts),
                node: NodeId(node),
            };
            let mut by_hand = Vec::new();
            frame_live(&mut by_hand, 3, seq, key, value, version, expires_at);
            let mut by_serde = Vec::new();
            frame(
                &mut by_serde,
                &Record::Live {
                    cache: 3,
                    seq,
                    key,
                    value,
                    version,
                    expires_at,
                },
            )
            .unwrap();
            assert_eq!(by_hand, by_serde);
        }
    }

    #[test]
    fn every_truncation_yields_a_prefix_and_a_torn_tail() {
        let bytes = file(&sample());
        let boundaries: Vec<usize> = {
            let mut r = Reader::open(&bytes[..], LOG_MAGIC).unwrap();
            let mut b = vec![8];
            while let Next::Record(_) = r.next() {
                b.push(r.offset as usize);
            }
            b
        };
        for cut in 8..bytes.len() {
            let (read, bad) = read_all(&bytes[..cut]);
            let whole = boundaries.iter().filter(|&&b| b <= cut).count() - 1;
            assert_eq!(read.len(), whole, "cut at {cut}");
            let at_boundary = boundaries.contains(&cut);
            assert_eq!(bad.is_none(), at_boundary, "cut at {cut}");
            if let Some(bad) = bad {
                assert!(bad.torn, "a truncation is a torn tail: {bad:?}");
                assert_eq!(bad.offset as usize, boundaries[whole]);
            }
        }
    }

    #[test]
    fn a_flipped_byte_is_damage_unless_it_is_in_the_last_entry() {
        let bytes = file(&sample());
        let mut r = Reader::open(&bytes[..], LOG_MAGIC).unwrap();
        r.next();
        let second = r.offset as usize;
        let mut middle = bytes.clone();
        middle[second + 10] ^= 0x40;
        let (read, bad) = read_all(&middle);
        assert_eq!(read.len(), 1);
        let bad = bad.unwrap();
        assert!(!bad.torn && bad.reason.contains("checksum"), "{bad:?}");
        let mut last = bytes.clone();
        let end = last.len() - 1;
        last[end] ^= 0x01;
        let (read, bad) = read_all(&last);
        assert_eq!(read.len(), 2);
        assert!(bad.unwrap().torn, "a bad final entry is a torn write");
    }

    #[test]
    fn a_huge_length_is_refused_without_allocating() {
        let mut bytes = LOG_MAGIC.to_vec();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0; 12]);
        let (_, bad) = read_all(&bytes);
        assert!(bad.unwrap().reason.contains("over the limit"));
    }

    #[test]
    fn a_foreign_file_is_named_as_such() {
        let err = Reader::open(&b"GARBAGE!rest"[..], SNAPSHOT_MAGIC)
            .err()
            .unwrap();
        assert!(err.contains("not a leafcache snapshot file"), "{err}");
        let err = Reader::open(&b"LC"[..], LOG_MAGIC).err().unwrap();
        assert!(err.contains("shorter than"), "{err}");
    }
}
