//! The string commands, as Redis 7.2 documents them: `GET`/`SET` and their variants, `APPEND`,
//! `GETRANGE`, `SETRANGE`, `STRLEN`, `GETEX`, `MSET`/`MSETNX`/`MGET`, `LCS`, and the counters
//! (`INCR`, `DECR`, `INCRBY`, `DECRBY`, `INCRBYFLOAT`).
//!
//! Every read-modify-write (`APPEND`, `SETRANGE`, `GETEX`...) reads and writes under its key's
//! shard lock, and replicates as a plain write of the resulting value: the last writer wins,
//! as for `SET`. The `INCR` family is the exception: increments merge, so that increments made
//! on both sides of a partition add up (`cache::merge`).

use std::time::Duration;

use bytes::Bytes;

use super::args::{
    Args, NOT_AN_INTEGER, SYNTAX, WRONGTYPE, count_error, error_line, float_arg, int_arg, parse_int,
};
use super::session::Session;
use crate::cache::{Expiry, NEVER, SetCondition, Write};
use crate::error::Error;
use crate::server::protocol::Reply;

/// A read of `key` by a client: registered for tracking first (so any change after the read is
/// invalidated), without promoting the key under `CLIENT NO-TOUCH`.
pub(super) fn read(s: &mut Session<'_>, key: &[u8]) -> Option<Bytes> {
    if s.tracking.is_some() {
        super::tracking::remember(s, key);
    }
    if s.client.no_touch.load(std::sync::atomic::Ordering::Relaxed) {
        s.cache.peek(key).map(|e| e.value)
    } else {
        s.cache.get(key)
    }
}

pub(super) fn get(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let value = read(s, args.get(1));
    if value.is_none() && s.cache.kind(args.get(1)) == Some(crate::cache::Kind::Hash) {
        out.error(WRONGTYPE);
        return;
    }
    if value.is_none() && !s.in_transaction() {
        // A slot that moved here: the key may still be at its previous owner.
        let key = args.get(1);
        let shards = s.node.shards();
        let from = shards
            .as_ref()
            .and_then(|sh| sh.moved_in_from(crate::partition::key_slot(key)));
        if let Some(door) = from {
            s.pending = Some(super::session::Pending::MoveIn {
                cache: s.cache.clone(),
                key: Bytes::copy_from_slice(key),
                target: crate::node::remote::Target {
                    address: door.to_string(),
                    resp3: false,
                    db: s.db,
                },
            });
            return;
        }
    }
    if value.is_none() && s.cache.loads_on_miss() && !s.in_transaction() {
        // Read through: the connection answers once the origin (or the hub) has.
        s.pending = Some(super::session::Pending::Load {
            cache: s.cache.clone(),
            key: Bytes::copy_from_slice(args.get(1)),
        });
        return;
    }
    out.bulk_or_null(value.as_deref());
}

pub(super) fn mget(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    out.array(args.len() - 1);
    for key in args.from(1) {
        let value = read(s, key);
        out.bulk_or_null(value.as_deref());
    }
}

/// The expiry an option such as `EX n` gives: `n` in units of `unit_ms`, relative or absolute.
fn expiry_arg(raw: &[u8], unit_ms: u64, absolute: bool, command: &str) -> Result<Expiry, String> {
    let n = parse_int(raw).ok_or(NOT_AN_INTEGER)?;
    if n <= 0 {
        return Err(format!("ERR invalid expire time in '{command}' command"));
    }
    let ms = (n as u64)
        .checked_mul(unit_ms)
        .filter(|&ms| ms < i64::MAX as u64)
        .ok_or_else(|| format!("ERR invalid expire time in '{command}' command"))?;
    Ok(if absolute {
        Expiry::AtMs(ms)
    } else {
        Expiry::After(Duration::from_millis(ms))
    })
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]`.
pub(super) fn set(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let (key, value) = (args.get(1), args.get(2));
    let mut condition = SetCondition::Always;
    let mut expiry = Expiry::Default;
    let mut expiry_given = false;
    let mut get = false;
    let mut i = 3;
    while i < args.len() {
        let opt = args.upper(i);
        let result = match opt.as_bytes() {
            b"NX" if condition == SetCondition::Always => {
                condition = SetCondition::IfAbsent;
                Ok(())
            }
            b"XX" if condition == SetCondition::Always => {
                condition = SetCondition::IfPresent;
                Ok(())
            }
            b"GET" => {
                get = true;
                Ok(())
            }
            b"KEEPTTL" if !expiry_given => {
                expiry_given = true;
                expiry = Expiry::Keep;
                Ok(())
            }
            o @ (b"EX" | b"PX" | b"EXAT" | b"PXAT") if !expiry_given && i + 1 < args.len() => {
                expiry_given = true;
                let unit = if o[0] == b'E' { 1000 } else { 1 };
                let r = expiry_arg(args.get(i + 1), unit, o.ends_with(b"AT"), "set");
                i += 1;
                r.map(|e| expiry = e)
            }
            _ => Err(SYNTAX.to_string()),
        };
        if let Err(msg) = result {
            out.error(&msg);
            return;
        }
        i += 1;
    }
    if !s.key_ok(key, out) || !s.value_ok(value, out) {
        return;
    }
    let value = Bytes::copy_from_slice(value);
    let result = if condition == SetCondition::Always && !get {
        s.cache
            .set_borrowed(key, value, expiry)
            .map(|_| (true, None))
    } else {
        s.cache
            .set_if(Bytes::copy_from_slice(key), value, expiry, condition)
            .map(|o| (o.version.is_some(), o.previous))
    };
    match result {
        Ok((_, previous)) if get => out.bulk_or_null(previous.as_deref()),
        Ok((true, _)) => out.ok(),
        Ok((false, _)) => out.null(),
        Err(e) => out.error(&error_line(&e)),
    }
}

/// `SETEX key seconds value` / `PSETEX key ms value`.
fn set_expiring(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>, unit: u64, name: &str) {
    let (key, value) = (args.get(1), args.get(3));
    let expiry = match expiry_arg(args.get(2), unit, false, name) {
        Ok(e) => e,
        Err(msg) => return out.error(&msg),
    };
    if !s.key_ok(key, out) || !s.value_ok(value, out) {
        return;
    }
    match s
        .cache
        .set_borrowed(key, Bytes::copy_from_slice(value), expiry)
    {
        Ok(_) => out.ok(),
        Err(e) => out.error(&error_line(&e)),
    }
}

pub(super) fn setex(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    set_expiring(s, args, out, 1000, "setex");
}

pub(super) fn psetex(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    set_expiring(s, args, out, 1, "psetex");
}

/// `SETNX` and `GETSET`: `SET` with `NX`, and with `GET`.
fn set_if(
    s: &mut Session<'_>,
    args: Args<'_>,
    condition: SetCondition,
) -> Result<(bool, Option<Bytes>), Error> {
    let (key, value) = (args.get(1), args.get(2));
    s.cache
        .set_if(
            Bytes::copy_from_slice(key),
            Bytes::copy_from_slice(value),
            Expiry::Default,
            condition,
        )
        .map(|o| (o.version.is_some(), o.previous))
}

pub(super) fn setnx(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    if !s.key_ok(args.get(1), out) || !s.value_ok(args.get(2), out) {
        return;
    }
    match set_if(s, args, SetCondition::IfAbsent) {
        Ok((written, _)) => out.int(i64::from(written)),
        Err(e) => out.error(&error_line(&e)),
    }
}

pub(super) fn getset(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    if !s.key_ok(args.get(1), out) || !s.value_ok(args.get(2), out) {
        return;
    }
    match set_if(s, args, SetCondition::Always) {
        Ok((_, previous)) => out.bulk_or_null(previous.as_deref()),
        Err(e) => out.error(&error_line(&e)),
    }
}

pub(super) fn getdel(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let old = s.cache.delete(args.get(1));
    out.bulk_or_null(old.as_deref());
}

/// `GETEX key [EX s|PX ms|EXAT s|PXAT ms|PERSIST]`.
pub(super) fn getex(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let key = args.get(1);
    let mut change: Option<Option<Expiry>> = None;
    let mut i = 2;
    while i < args.len() {
        let opt = args.upper(i);
        let result = match opt.as_bytes() {
            b"PERSIST" if change.is_none() => {
                change = Some(None);
                Ok(())
            }
            o @ (b"EX" | b"PX" | b"EXAT" | b"PXAT") if change.is_none() && i + 1 < args.len() => {
                let unit = if o[0] == b'E' { 1000 } else { 1 };
                let r = expiry_arg(args.get(i + 1), unit, o.ends_with(b"AT"), "getex");
                i += 1;
                r.map(|e| change = Some(Some(e)))
            }
            _ => Err(SYNTAX.to_string()),
        };
        if let Err(msg) = result {
            out.error(&msg);
            return;
        }
        i += 1;
    }
    let Some(change) = change else {
        let value = read(s, key);
        out.bulk_or_null(value.as_deref());
        return;
    };
    if s.tracking.is_some() {
        super::tracking::remember(s, key);
    }
    let now = s.node.now_ms();
    let result: Result<Option<Bytes>, Error> = s.cache.update(key, |current| {
        let Some(current) = current else {
            return Ok((None, None));
        };
        let expires_at = match change {
            None => NEVER,
            Some(Expiry::After(d)) => now.saturating_add(d.as_millis() as u64),
            Some(Expiry::AtMs(at)) => at,
            Some(_) => current.expires_at,
        };
        let write = (expires_at != current.expires_at).then(|| Write {
            value: current.value.clone(),
            expires_at,
        });
        Ok((write, Some(current.value.clone())))
    });
    match result {
        Ok(value) => out.bulk_or_null(value.as_deref()),
        Err(e) => out.error(&error_line(&e)),
    }
}

/// Checks `MSET`/`MSETNX`'s pairs before anything is written, so a refused pair leaves nothing
/// half done.
fn pairs_ok(s: &Session<'_>, args: Args<'_>, name: &str, out: &mut Reply<'_>) -> bool {
    if args.len().is_multiple_of(2) {
        out.error(&format!(
            "ERR wrong number of arguments for '{name}' command"
        ));
        return false;
    }
    for i in (1..args.len()).step_by(2) {
        let (key, value) = (args.get(i), args.get(i + 1));
        if !s.key_ok(key, out) || !s.value_ok(value, out) {
            return false;
        }
        let size = crate::cache::entry_size(key.len(), value.len());
        if size > s.cache.max_entry_bytes() {
            out.error(&error_line(&Error::ValueTooLarge {
                size,
                limit: s.cache.max_entry_bytes(),
            }));
            return false;
        }
    }
    true
}

fn write_pairs(s: &Session<'_>, args: Args<'_>) -> Result<(), Error> {
    for i in (1..args.len()).step_by(2) {
        let value = Bytes::copy_from_slice(args.get(i + 1));
        s.cache.set_borrowed(args.get(i), value, Expiry::Default)?;
    }
    Ok(())
}

/// `MSET`: runs with the node's gate held alone, so no client sees some pairs written and not
/// the others, and replicates as one group.
pub(super) fn mset(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    if !pairs_ok(s, args, "mset", out) {
        return;
    }
    match write_pairs(s, args) {
        Ok(()) => out.ok(),
        Err(e) => out.error(&error_line(&e)),
    }
}

/// `MSETNX`: writes every pair if no key exists, else none; atomic on the node like `MSET`.
pub(super) fn msetnx(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    if !pairs_ok(s, args, "msetnx", out) {
        return;
    }
    if (1..args.len())
        .step_by(2)
        .any(|i| s.cache.contains(args.get(i)))
    {
        out.int(0);
        return;
    }
    match write_pairs(s, args) {
        Ok(()) => out.int(1),
        Err(e) => out.error(&error_line(&e)),
    }
}

pub(super) fn append(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let tail = args.get(2);
    rebuild(
        s,
        args.get(1),
        out,
        |old| Some(old + tail.len()),
        |old, value| {
            value.extend_from_slice(old);
            value.extend_from_slice(tail);
        },
    );
}

/// `APPEND` and `SETRANGE`: rebuilds `key`'s value (empty if it holds none) under its shard
/// lock, keeping its expiry (a new key gets the cache's default), and answers the new length.
/// `len_of` gives the new length from the old one, `None` to write nothing (answering the old
/// length); a length over the value limit is refused before anything is built.
fn rebuild(
    s: &mut Session<'_>,
    key: &[u8],
    out: &mut Reply<'_>,
    len_of: impl FnOnce(usize) -> Option<usize>,
    build: impl FnOnce(&[u8], &mut Vec<u8>),
) {
    if !s.key_ok(key, out) {
        return;
    }
    let limit = s.node.doors().limits.max_value;
    let default_expiry = s.cache_default_expiry();
    let result: Result<Result<usize, usize>, Error> = s.cache.update(key, |current| {
        let (old, expires_at) = match current {
            Some(c) => (&c.value[..], c.expires_at),
            None => (&b""[..], default_expiry),
        };
        let Some(len) = len_of(old.len()) else {
            return Ok((None, Ok(old.len())));
        };
        if len > limit {
            return Ok((None, Err(len)));
        }
        let mut value = Vec::with_capacity(len);
        build(old, &mut value);
        let write = Write {
            value: value.into(),
            expires_at,
        };
        Ok((Some(write), Ok(len)))
    });
    match result {
        Ok(Ok(len)) => out.int(len as i64),
        Ok(Err(len)) | Err(Error::ValueTooLarge { size: len, .. }) => {
            s.built_ok(key, len, out);
        }
        Err(e) => out.error(&error_line(&e)),
    }
}

/// `GETRANGE key start end` (and `SUBSTR`): inclusive offsets, negative ones from the end.
pub(super) fn getrange(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let (Some(start), Some(end)) = (parse_int(args.get(2)), parse_int(args.get(3))) else {
        out.error(NOT_AN_INTEGER);
        return;
    };
    let value = read(s, args.get(1)).unwrap_or_default();
    out.bulk(&value[range(value.len(), start, end)]);
}

/// Redis's `GETRANGE` arithmetic: the byte range `start..=end` of a string of `len` bytes.
fn range(len: usize, start: i64, end: i64) -> std::ops::Range<usize> {
    let len = len as i64;
    if len == 0 || (start < 0 && end < 0 && start > end) {
        return 0..0;
    }
    let fix = |i: i64| if i < 0 { (len + i).max(0) } else { i };
    let (start, end) = (fix(start), fix(end).min(len - 1));
    if start > end {
        return 0..0;
    }
    start as usize..end as usize + 1
}

/// `SETRANGE key offset value`: overwrites from `offset`, padding with zero bytes.
pub(super) fn setrange(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let patch = args.get(3);
    let Some(offset) = parse_int(args.get(2)) else {
        out.error(NOT_AN_INTEGER);
        return;
    };
    if offset < 0 {
        out.error("ERR offset is out of range");
        return;
    }
    let offset = offset as usize;
    rebuild(
        s,
        args.get(1),
        out,
        // An empty patch writes nothing and creates no key.
        |old| (!patch.is_empty()).then(|| old.max(offset.saturating_add(patch.len()))),
        |old, value| {
            value.extend_from_slice(old);
            value.resize(old.len().max(offset + patch.len()), 0);
            value[offset..offset + patch.len()].copy_from_slice(patch);
        },
    );
}

pub(super) fn strlen(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let len = read(s, args.get(1)).map_or(0, |v| v.len());
    out.int(len as i64);
}

/// The most cells the `LCS` table may take (4 bytes each): 1 GiB.
const LCS_MAX_CELLS: usize = 1 << 28;

/// `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN]`.
pub(super) fn lcs(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let (mut len_only, mut idx, mut with_len, mut min_len) = (false, false, false, 0usize);
    let mut i = 3;
    while i < args.len() {
        match args.upper(i).as_bytes() {
            b"LEN" => len_only = true,
            b"IDX" => idx = true,
            b"WITHMATCHLEN" => with_len = true,
            b"MINMATCHLEN" if i + 1 < args.len() => {
                let Some(n) = int_arg(args.get(i + 1), out) else {
                    return;
                };
                min_len = n.max(0) as usize;
                i += 1;
            }
            _ => {
                out.error(SYNTAX);
                return;
            }
        }
        i += 1;
    }
    if len_only && idx {
        out.error("ERR If you want both the length and indexes, please just use IDX.");
        return;
    }
    let a = read(s, args.get(1)).unwrap_or_default();
    let b = read(s, args.get(2)).unwrap_or_default();
    let cells = (a.len() + 1).saturating_mul(b.len() + 1);
    if cells > LCS_MAX_CELLS {
        out.error("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len");
        return;
    }
    // table[i][j]: the LCS length of a[..i] and b[..j].
    let w = b.len() + 1;
    let mut table = vec![0u32; cells];
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            table[i * w + j] = if a[i - 1] == b[j - 1] {
                table[(i - 1) * w + j - 1] + 1
            } else {
                table[(i - 1) * w + j].max(table[i * w + j - 1])
            };
        }
    }
    let total = table[a.len() * w + b.len()] as usize;
    if len_only {
        out.int(total as i64);
        return;
    }
    // Walk back from the end, as Redis does, collecting the common string and the matching
    // ranges (last first).
    let mut common = vec![0u8; total];
    let mut matches: Vec<[usize; 5]> = Vec::new();
    let (mut i, mut j, mut k) = (a.len(), b.len(), total);
    let mut open: Option<[usize; 4]> = None; // a_start, a_end, b_start, b_end
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            common[k - 1] = a[i - 1];
            match &mut open {
                None => open = Some([i - 1, i - 1, j - 1, j - 1]),
                Some(r) if r[0] == i && r[2] == j => {
                    r[0] -= 1;
                    r[2] -= 1;
                }
                Some(_) => emit = true,
            }
            if open.is_some_and(|r| r[0] == 0 || r[2] == 0) {
                emit = true;
            }
            k -= 1;
            i -= 1;
            j -= 1;
        } else {
            if table[(i - 1) * w + j] > table[i * w + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            emit = open.is_some();
        }
        if emit && let Some(r) = open.take() {
            let n = r[1] - r[0] + 1;
            if n >= min_len {
                matches.push([r[0], r[1], r[2], r[3], n]);
            }
        }
    }
    if !idx {
        out.bulk(&common);
        return;
    }
    out.map(2);
    out.bulk(b"matches");
    out.array(matches.len());
    for m in &matches {
        out.array(2 + usize::from(with_len));
        out.array(2);
        out.int(m[0] as i64);
        out.int(m[1] as i64);
        out.array(2);
        out.int(m[2] as i64);
        out.int(m[3] as i64);
        if with_len {
            out.int(m[4] as i64);
        }
    }
    out.bulk(b"len");
    out.int(total as i64);
}

/// `INCR`, `DECR`, `INCRBY`, `DECRBY`: an increment of the key's counter, which merges with the
/// increments other nodes make (see `cache::merge`).
pub(super) fn incr(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    count_by(s, args.get(1), 1, out);
}

pub(super) fn decr(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    count_by(s, args.get(1), -1, out);
}

pub(super) fn incrby(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    if let Some(by) = int_arg(args.get(2), out) {
        count_by(s, args.get(1), by, out);
    }
}

pub(super) fn decrby(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let Some(by) = int_arg(args.get(2), out) else {
        return;
    };
    match by.checked_neg() {
        Some(by) => count_by(s, args.get(1), by, out),
        None => out.error("ERR decrement would overflow"),
    }
}

fn count_by(s: &mut Session<'_>, key: &[u8], by: i64, out: &mut Reply<'_>) {
    match s.cache.incr(key, by) {
        Ok(n) => out.int(n),
        Err(e) => out.error(&count_error(&e, false, false)),
    }
}

pub(super) fn incrbyfloat(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let Some(by) = float_arg(args.get(2), out) else {
        return;
    };
    match s.cache.incr_float(args.get(1), by) {
        Ok(f) => out.bulk(crate::cache::merge::format_float(f).as_bytes()),
        Err(e) => out.error(&count_error(&e, true, false)),
    }
}

impl Session<'_> {
    /// The expiry a new key gets in the selected cache: its default time to live, if any.
    pub(super) fn cache_default_expiry(&self) -> u64 {
        self.cache.default_ttl().map_or(NEVER, |ttl| {
            self.node.now_ms().saturating_add(ttl.as_millis() as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::range;

    #[test]
    fn getrange_follows_redis_arithmetic() {
        // "This is a string", as in Redis's documentation.
        let s = b"This is a string";
        let cut = |a, b| &s[range(s.len(), a, b)];
        assert_eq!(cut(0, 3), b"This");
        assert_eq!(cut(-3, -1), b"ing");
        assert_eq!(cut(0, -1), s);
        assert_eq!(cut(10, 100), b"string");
        assert_eq!(cut(5, 3), b"");
        assert_eq!(cut(-1, -5), b"");
        assert_eq!(cut(100, 200), b"");
        assert_eq!(&b""[range(0, 0, -1)], b"");
    }
}
