//! The key commands, as Redis 7.2 documents them: `DEL`/`UNLINK`, `EXISTS`, `TOUCH`, `TYPE`,
//! the TTL and `EXPIRE` families, `RENAME`/`RENAMENX`, `COPY`, `RANDOMKEY`, `KEYS`, `SCAN`,
//! `OBJECT`, `DUMP`/`RESTORE`.
//!
//! What a multi-key write means once replicated (see the README's "Transactions and multi-key
//! writes"): `RENAME a b` is a write of `b` and a delete of `a`, two versioned changes applied
//! together here (under the node's gate, alone) and sent together; a peer that wrote `a` or `b`
//! itself with a newer version keeps its own write for that key, as for any write.

use std::time::Duration;

use bytes::Bytes;

use super::args::{Args, NOT_AN_INTEGER, SYNTAX, error_line, int_arg, parse_int};
use super::session::Session;
use crate::cache::{Cache, Expiry, Kind, NEVER, Write};
use crate::server::glob;
use crate::server::protocol::Reply;

/// How many records `KEYS` reads per pass over the change log.
const KEYS_BATCH: usize = 4096;

pub(super) fn del(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let deleted = args.from(1).filter(|k| s.cache.delete(k).is_some());
    out.int(deleted.count() as i64);
}

pub(super) fn exists(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let found = args.from(1).filter(|k| s.cache.contains(k));
    out.int(found.count() as i64);
}

/// `TOUCH key...`: marks the keys most recently used; answers how many exist.
pub(super) fn touch(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let found = args.from(1).filter(|k| s.cache.get(k).is_some());
    out.int(found.count() as i64);
}

pub(super) fn type_of(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    out.simple(type_name(s.cache.kind(args.get(1))));
}

/// Redis's name of a type: a counter is a `string`, as Redis's `INCR` keys are.
fn type_name(kind: Option<Kind>) -> &'static str {
    match kind {
        Some(Kind::String | Kind::Counter) => "string",
        Some(Kind::Hash) => "hash",
        None => "none",
    }
}

/// `TTL`, `PTTL`, `EXPIRETIME`, `PEXPIRETIME`: -2 for a missing key, -1 for one that does not
/// expire; seconds are rounded to the nearest, as Redis does.
fn ttl_of(s: &Session<'_>, key: &[u8], unit_ms: u64, absolute: bool) -> i64 {
    match s.cache.peek(key) {
        None => -2,
        Some(e) => match e.expires_at {
            None => -1,
            Some(at) => {
                let ms = if absolute {
                    at
                } else {
                    at.saturating_sub(s.node.now_ms())
                };
                ((ms + unit_ms / 2) / unit_ms) as i64
            }
        },
    }
}

pub(super) fn ttl(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    out.int(ttl_of(s, args.get(1), 1000, false));
}

pub(super) fn pttl(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    out.int(ttl_of(s, args.get(1), 1, false));
}

pub(super) fn expiretime(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    out.int(ttl_of(s, args.get(1), 1000, true));
}

pub(super) fn pexpiretime(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    out.int(ttl_of(s, args.get(1), 1, true));
}

/// The condition options of the `EXPIRE` family.
#[derive(Clone, Copy, Default)]
struct When {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

impl When {
    fn parse(args: Args<'_>, out: &mut Reply<'_>) -> Option<When> {
        let mut w = When::default();
        for i in 3..args.len() {
            match args.upper(i).as_bytes() {
                b"NX" => w.nx = true,
                b"XX" => w.xx = true,
                b"GT" => w.gt = true,
                b"LT" => w.lt = true,
                _ => {
                    out.error(&format!(
                        "ERR Unsupported option {}",
                        String::from_utf8_lossy(args.get(i))
                    ));
                    return None;
                }
            }
        }
        if w.nx && (w.xx || w.gt || w.lt) {
            out.error("ERR NX and XX, GT or LT options at the same time are not compatible");
            return None;
        }
        if w.gt && w.lt {
            out.error("ERR GT and LT options at the same time are not compatible");
            return None;
        }
        Some(w)
    }

    /// Whether a key expiring at `current` (`NEVER` for no expiry) may get `new`; no expiry
    /// counts as an infinite time to live for `GT` and `LT`.
    fn allows(self, current: u64, new: u64) -> bool {
        let has = current != NEVER;
        !(self.nx && has
            || self.xx && !has
            || self.gt && new <= current
            || self.lt && new >= current)
    }
}

/// The `EXPIRE` family: `unit_ms` per unit of the argument, relative or absolute. An instant
/// at or before now deletes the key, as in Redis.
fn expire_generic(
    s: &mut Session<'_>,
    args: Args<'_>,
    out: &mut Reply<'_>,
    unit_ms: i64,
    absolute: bool,
) {
    let name = String::from_utf8_lossy(args.get(0)).to_lowercase();
    let Some(n) = parse_int(args.get(2)) else {
        out.error(NOT_AN_INTEGER);
        return;
    };
    let Some(when) = When::parse(args, out) else {
        return;
    };
    let now = s.node.now_ms() as i64;
    let at = n.checked_mul(unit_ms).and_then(|ms| {
        if absolute {
            Some(ms)
        } else {
            ms.checked_add(now)
        }
    });
    let Some(at) = at else {
        out.error(&format!("ERR invalid expire time in '{name}' command"));
        return;
    };
    let key = args.get(1);
    let past = at <= now;
    let at = at.max(0) as u64;
    let result: Result<(bool, bool), crate::error::Error> = s.cache.update(key, |current| {
        let Some(c) = current else {
            return Ok((None, (false, false)));
        };
        if !when.allows(c.expires_at, at) {
            return Ok((None, (false, false)));
        }
        if past {
            return Ok((None, (true, true)));
        }
        let write = Write {
            value: c.value.clone(),
            expires_at: at,
        };
        Ok((Some(write), (true, false)))
    });
    match result {
        Ok((done, delete)) => {
            if delete {
                s.cache.delete(key);
            }
            out.int(i64::from(done));
        }
        Err(e) => out.error(&error_line(&e)),
    }
}

pub(super) fn expire(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    expire_generic(s, args, out, 1000, false);
}

pub(super) fn pexpire(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    expire_generic(s, args, out, 1, false);
}

pub(super) fn expireat(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    expire_generic(s, args, out, 1000, true);
}

pub(super) fn pexpireat(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    expire_generic(s, args, out, 1, true);
}

pub(super) fn persist(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let result: Result<bool, crate::error::Error> = s.cache.update(args.get(1), |current| {
        Ok(match current {
            Some(c) if c.expires_at != NEVER => (
                Some(Write {
                    value: c.value.clone(),
                    expires_at: NEVER,
                }),
                true,
            ),
            _ => (None, false),
        })
    });
    match result {
        Ok(done) => out.int(i64::from(done)),
        Err(e) => out.error(&error_line(&e)),
    }
}

/// The expiry a copy of an entry expiring at `at` keeps.
fn same_expiry(at: Option<u64>) -> Expiry {
    at.map_or(Expiry::Never, Expiry::AtMs)
}

/// `RENAME` and `RENAMENX`: run with the node's gate held alone, so no client sees the key
/// under both names or neither.
fn rename_generic(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>, nx: bool) {
    let (from, to) = (args.get(1), args.get(2));
    let Some(entry) = s.cache.peek(from) else {
        out.error("ERR no such key");
        return;
    };
    if !s.key_ok(to, out) {
        return;
    }
    if from == to {
        if nx {
            out.int(0);
        } else {
            out.ok();
        }
        return;
    }
    if nx && s.cache.contains(to) {
        out.int(0);
        return;
    }
    let target = s.cache.clone();
    if let Err(e) = copy_value(&s.cache, from, &entry, &target, to) {
        out.error(&error_line(&e));
        return;
    }
    s.cache.delete(from);
    if nx {
        out.int(1);
    } else {
        out.ok();
    }
}

pub(super) fn rename(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    rename_generic(s, args, out, false);
}

pub(super) fn renamenx(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    rename_generic(s, args, out, true);
}

/// `COPY source destination [DB index] [REPLACE]`.
pub(super) fn copy(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let (from, to) = (args.get(1), args.get(2));
    let (mut db, mut replace) = (s.db, false);
    let mut i = 3;
    while i < args.len() {
        match args.upper(i).as_bytes() {
            b"REPLACE" => replace = true,
            b"DB" if i + 1 < args.len() => {
                let Some(n) = int_arg(args.get(i + 1), out) else {
                    return;
                };
                if n < 0 || n as usize >= s.node.caches().len() {
                    out.error("ERR DB index is out of range");
                    return;
                }
                db = n as usize;
                i += 1;
            }
            _ => {
                out.error(SYNTAX);
                return;
            }
        }
        i += 1;
    }
    if db == s.db && from == to {
        out.error("ERR source and destination objects are the same");
        return;
    }
    if !s.key_ok(to, out) {
        return;
    }
    let target: Cache = s.node.caches()[db].clone();
    let Some(entry) = s.cache.peek(from) else {
        out.int(0);
        return;
    };
    if !replace && target.contains(to) {
        out.int(0);
        return;
    }
    match copy_value(&s.cache, from, &entry, &target, to) {
        Ok(()) => out.int(1),
        Err(e) => out.error(&error_line(&e)),
    }
}

/// Writes what `from` holds (read as `entry`) under `to` in `target`, with its expiry: a
/// string as a write of its value, a hash as a new hash of its fields.
fn copy_value(
    cache: &Cache,
    from: &[u8],
    entry: &crate::cache::EntryInfo,
    target: &Cache,
    to: &[u8],
) -> Result<(), crate::error::Error> {
    let expiry = same_expiry(entry.expires_at);
    if entry.kind != Kind::Hash {
        target.set_with_expiry(Bytes::copy_from_slice(to), entry.value.clone(), expiry)?;
        return Ok(());
    }
    let fields = cache.hgetall(from)?;
    target.delete(to);
    target.hset_many(to, &fields, false)?;
    if expiry != Expiry::Never {
        target.set_expiry(to, expiry)?;
    }
    Ok(())
}

pub(super) fn randomkey(s: &mut Session<'_>, _: Args<'_>, out: &mut Reply<'_>) {
    let key = s.cache.random_key();
    out.bulk_or_null(key.as_deref());
}

pub(super) fn keys(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let pattern = args.get(1);
    let mut found = Vec::new();
    let mut cursor = 0;
    loop {
        let (keys, next) = s.cache.scan(cursor, KEYS_BATCH);
        found.extend(keys.into_iter().filter(|k| glob::matches(pattern, k)));
        if next == 0 {
            break;
        }
        cursor = next;
    }
    // A key rewritten during the walk can be seen twice; KEYS lists each once.
    found.sort_unstable();
    found.dedup();
    out.array(found.len());
    for key in &found {
        out.bulk(key);
    }
}

/// `SCAN cursor [MATCH pattern] [COUNT n] [TYPE t]`: the cursor is a position in the change
/// log, so a key held throughout is returned at least once. `TYPE` is `string` (counters too) or
/// `hash`.
pub(super) fn scan(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let Some(cursor) = std::str::from_utf8(args.get(1))
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        out.error("ERR invalid cursor");
        return;
    };
    let mut pattern: Option<&[u8]> = None;
    let mut count = 10usize;
    let mut wanted: Option<String> = None;
    let mut i = 2;
    while i < args.len() {
        if i + 1 >= args.len() {
            out.error(SYNTAX);
            return;
        }
        let value = args.get(i + 1);
        match args.upper(i).as_bytes() {
            b"MATCH" => pattern = Some(value),
            b"COUNT" => match parse_int(value) {
                Some(c) if c > 0 => count = (c as usize).min(100_000),
                Some(_) => {
                    out.error(SYNTAX);
                    return;
                }
                None => {
                    out.error(NOT_AN_INTEGER);
                    return;
                }
            },
            b"TYPE" => wanted = Some(String::from_utf8_lossy(value).to_ascii_lowercase()),
            _ => {
                out.error(SYNTAX);
                return;
            }
        }
        i += 2;
    }
    let (keys, next) = s.cache.scan(cursor, count);
    let keys: Vec<Bytes> = keys
        .into_iter()
        .filter(|k| pattern.is_none_or(|p| glob::matches(p, k)))
        .filter(|k| {
            wanted
                .as_deref()
                .is_none_or(|w| type_name(s.cache.kind(k)) == w)
        })
        .collect();
    out.array(2);
    out.bulk(itoa::Buffer::new().format(next).as_bytes());
    out.array(keys.len());
    for key in &keys {
        out.bulk(key);
    }
}

/// Redis's encoding of a string value: `int` for a decimal integer that fits 64 bits, `embstr`
/// up to 44 bytes, `raw` beyond.
fn encoding(value: &[u8]) -> &'static str {
    if value.len() <= 20 && parse_int(value).is_some() {
        "int"
    } else if value.len() <= 44 {
        "embstr"
    } else {
        "raw"
    }
}

/// `OBJECT ENCODING|FREQ|IDLETIME|REFCOUNT key`, `OBJECT HELP`. `IDLETIME` counts from the
/// key's last write: entries carry no read time, to stay small.
pub(super) fn object(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let sub = args.upper(1);
    if sub.as_bytes() == b"HELP" {
        let lines = [
            "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ENCODING <key>",
            "    Return the kind of internal representation used in order to store the value",
            "    associated with a <key>.",
            "FREQ <key>",
            "    Return the access frequency index of the <key> (needs an LFU policy, which this cache does not use).",
            "IDLETIME <key>",
            "    Return the idle time of the <key>, in seconds since it was last written.",
            "REFCOUNT <key>",
            "    Return the number of references of the value associated with the specified",
            "    <key>.",
            "HELP",
            "    Print this help.",
        ];
        super::args::help(out, &lines);
        return;
    }
    if args.len() != 3 {
        out.error(&format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try OBJECT HELP.",
            String::from_utf8_lossy(args.get(1))
        ));
        return;
    }
    let Some(entry) = s.cache.peek(args.get(2)) else {
        out.null();
        return;
    };
    match sub.as_bytes() {
        b"ENCODING" => {
            let name = match entry.kind {
                Kind::String => encoding(&entry.value),
                Kind::Counter => "int",
                Kind::Hash => {
                    let small = s.cache.hgetall(args.get(2)).is_ok_and(|f| {
                        f.len() <= 128 && f.iter().all(|(k, v)| k.len() <= 64 && v.len() <= 64)
                    });
                    if small { "listpack" } else { "hashtable" }
                }
            };
            out.bulk(name.as_bytes())
        }
        b"REFCOUNT" => out.int(1),
        b"IDLETIME" => {
            let written = entry.version.ts.physical_ms();
            out.int((s.node.now_ms().saturating_sub(written) / 1000) as i64);
        }
        b"FREQ" => out.error("ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust."),
        _ => out.error(&format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try OBJECT HELP.",
            String::from_utf8_lossy(args.get(1))
        )),
    }
}

/// The format byte of `DUMP` payloads: leafcache's own, `value ‖ version ‖ magic ‖ crc32`.
const DUMP_VERSION: u8 = 1;
const DUMP_MAGIC: u8 = b'L';
const DUMP_TRAILER: usize = 6;

/// A `DUMP` payload of `value`: the value, the format version and a CRC-32 of both, so that
/// `RESTORE` refuses a truncated or altered payload.
pub(crate) fn dump_payload(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + DUMP_TRAILER);
    out.extend_from_slice(value);
    out.push(DUMP_VERSION);
    out.push(DUMP_MAGIC);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The value in a `DUMP` payload, if it is whole.
pub(crate) fn undump(payload: &[u8]) -> Option<&[u8]> {
    let body_len = payload.len().checked_sub(4)?;
    let (body, crc) = payload.split_at(body_len);
    if body.len() < 2 || crc32fast::hash(body).to_le_bytes() != crc {
        return None;
    }
    let (value, trailer) = body.split_at(body.len() - 2);
    (trailer == [DUMP_VERSION, DUMP_MAGIC]).then_some(value)
}

pub(super) fn dump(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    match s.cache.peek(args.get(1)) {
        Some(e) if e.kind == Kind::Hash => match s.cache.hgetall(args.get(1)) {
            Ok(fields) => out.bulk(&dump_hash(&fields)),
            Err(e) => out.error(&error_line(&e)),
        },
        Some(e) => out.bulk(&dump_payload(&e.value)),
        None => out.null(),
    }
}

/// `RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f]`.
pub(super) fn restore(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let key = args.get(1);
    let (mut replace, mut absolute) = (false, false);
    let mut i = 4;
    while i < args.len() {
        match args.upper(i).as_bytes() {
            b"REPLACE" => replace = true,
            b"ABSTTL" => absolute = true,
            b"IDLETIME" | b"FREQ" if i + 1 < args.len() => {
                // Accepted for compatibility; entries keep no access time or frequency.
                match parse_int(args.get(i + 1)) {
                    Some(n) if n >= 0 => {}
                    _ => {
                        out.error("ERR Invalid IDLETIME value, must be >= 0");
                        return;
                    }
                }
                i += 1;
            }
            _ => {
                out.error(SYNTAX);
                return;
            }
        }
        i += 1;
    }
    let ttl = match parse_int(args.get(2)) {
        Some(t) if t >= 0 => t as u64,
        _ => {
            out.error("ERR Invalid TTL value, must be >= 0");
            return;
        }
    };
    let hash = undump_hash(args.get(3));
    let Some(value) = undump(args.get(3)).or(hash.as_ref().map(|_| &b""[..])) else {
        out.error("ERR DUMP payload version or checksum are wrong");
        return;
    };
    if !s.key_ok(key, out) || !s.value_ok(value, out) {
        return;
    }
    if !replace && s.cache.contains(key) {
        out.error("BUSYKEY Target key name already exists.");
        return;
    }
    let now = s.node.now_ms();
    let expiry = match (ttl, absolute) {
        (0, _) => Expiry::Never,
        (at, true) if at <= now => {
            // Already expired: nothing to create, as Redis.
            s.cache.delete(key);
            out.ok();
            return;
        }
        (at, true) => Expiry::AtMs(at),
        (ms, false) => Expiry::After(Duration::from_millis(ms)),
    };
    let written = match hash {
        Some(fields) => {
            s.cache.delete(key);
            s.cache
                .hset_many(key, &fields, false)
                .and_then(|_| match expiry {
                    Expiry::Never => Ok(true),
                    e => s.cache.set_expiry(key, e),
                })
                .map(|_| ())
        }
        None => s
            .cache
            .set_borrowed(key, Bytes::copy_from_slice(value), expiry)
            .map(|_| ()),
    };
    match written {
        Ok(()) => out.ok(),
        Err(e) => out.error(&error_line(&e)),
    }
}

/// The format byte of a hash's `DUMP` payload: its fields, postcard-encoded, then the trailer.
const DUMP_HASH_VERSION: u8 = 2;

/// A `DUMP` payload of a hash's fields.
pub(crate) fn dump_hash(fields: &[(Bytes, Bytes)]) -> Vec<u8> {
    let mut out = postcard::to_allocvec(fields).unwrap_or_default();
    out.push(DUMP_HASH_VERSION);
    out.push(DUMP_MAGIC);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The fields in a hash's `DUMP` payload, if it is one and whole.
pub(crate) fn undump_hash(payload: &[u8]) -> Option<Vec<(Bytes, Bytes)>> {
    let body_len = payload.len().checked_sub(4)?;
    let (body, crc) = payload.split_at(body_len);
    if body.len() < 2 || crc32fast::hash(body).to_le_bytes() != crc {
        return None;
    }
    let (value, trailer) = body.split_at(body.len() - 2);
    if trailer != [DUMP_HASH_VERSION, DUMP_MAGIC] {
        return None;
    }
    postcard::from_bytes(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_payloads_round_trip_and_refuse_damage() {
        for value in [&b""[..], b"v", &[0u8, 1, 255, 13, 10]] {
            let payload = dump_payload(value);
            assert_eq!(undump(&payload), Some(value));
            for cut in 0..payload.len() {
                assert_eq!(undump(&payload[..cut]), None, "cut at {cut}");
            }
            let mut flipped = payload.clone();
            flipped[0] ^= 1;
            assert_eq!(undump(&flipped), None);
        }
    }

    #[test]
    fn encodings_are_redis_s() {
        assert_eq!(encoding(b"12345"), "int");
        assert_eq!(encoding(b"-9223372036854775808"), "int");
        assert_eq!(encoding(b"hello"), "embstr");
        assert_eq!(encoding(&[b'x'; 45]), "raw");
    }

    #[test]
    fn expire_conditions_treat_no_ttl_as_infinite() {
        let gt = When {
            gt: true,
            ..When::default()
        };
        let lt = When {
            lt: true,
            ..When::default()
        };
        let nx = When {
            nx: true,
            ..When::default()
        };
        let xx = When {
            xx: true,
            ..When::default()
        };
        assert!(!gt.allows(NEVER, 5) && gt.allows(4, 5) && !gt.allows(5, 5));
        assert!(lt.allows(NEVER, 5) && lt.allows(6, 5) && !lt.allows(5, 5));
        assert!(nx.allows(NEVER, 5) && !nx.allows(4, 5));
        assert!(!xx.allows(NEVER, 5) && xx.allows(4, 5));
    }
}
