//! The hash commands, as Redis 7.2 documents them: `HSET`/`HMSET`/`HSETNX`, `HGET`/`HMGET`/
//! `HGETALL`, `HDEL`, `HEXISTS`, `HLEN`, `HKEYS`, `HVALS`, `HSTRLEN`, `HINCRBY`/`HINCRBYFLOAT`,
//! `HRANDFIELD`, `HSCAN`. Fields merge one by one across nodes (`cache::merge`).

use bytes::Bytes;

use super::args::{Args, NOT_AN_INTEGER, SYNTAX, count_error, float_arg, int_arg, parse_int};
use super::session::Session;
use crate::cache::merge::{Hash, format_float};
use crate::error::Error;
use crate::server::glob;
use crate::server::protocol::Reply;

/// Answers a hash command's error: `WRONGTYPE` for a key of another type.
fn error(out: &mut Reply<'_>, e: &Error) {
    out.error(&count_error(e, false, false));
}

/// Reads the hash at `key` for a client (registered for tracking first), then runs `f` on it.
fn read<T>(
    s: &mut Session<'_>,
    key: &[u8],
    f: impl FnOnce(Option<&Hash>) -> T,
) -> Result<T, Error> {
    if s.tracking.is_some() {
        super::tracking::remember(s, key);
    }
    s.cache.read_hash(key, f)
}

/// The field/value pairs of `HSET`-like arguments from `from` on, or the arity error.
fn pairs(args: Args<'_>, from: usize, out: &mut Reply<'_>) -> Option<Vec<(Bytes, Bytes)>> {
    if !(args.len() - from).is_multiple_of(2) || args.len() == from {
        out.error(&format!(
            "ERR wrong number of arguments for '{}' command",
            String::from_utf8_lossy(args.get(0)).to_lowercase()
        ));
        return None;
    }
    Some(
        (from..args.len())
            .step_by(2)
            .map(|i| {
                (
                    Bytes::copy_from_slice(args.get(i)),
                    Bytes::copy_from_slice(args.get(i + 1)),
                )
            })
            .collect(),
    )
}

pub(super) fn hset(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let Some(pairs) = pairs(args, 2, out) else {
        return;
    };
    match s.cache.hset_many(args.get(1), &pairs, false) {
        Ok(added) => out.int(added as i64),
        Err(e) => error(out, &e),
    }
}

pub(super) fn hmset(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let Some(pairs) = pairs(args, 2, out) else {
        return;
    };
    match s.cache.hset_many(args.get(1), &pairs, false) {
        Ok(_) => out.ok(),
        Err(e) => error(out, &e),
    }
}

pub(super) fn hsetnx(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let pair = [(
        Bytes::copy_from_slice(args.get(2)),
        Bytes::copy_from_slice(args.get(3)),
    )];
    match s.cache.hset_many(args.get(1), &pair, true) {
        Ok(added) => out.int(added as i64),
        Err(e) => error(out, &e),
    }
}

pub(super) fn hget(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let field = args.get(2);
    match read(s, args.get(1), |h| {
        h.and_then(|h| h.fields.get(field)?.read())
    }) {
        Ok(v) => out.bulk_or_null(v.as_deref()),
        Err(e) => error(out, &e),
    }
}

pub(super) fn hmget(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let fields: Vec<&[u8]> = args.from(2).collect();
    let values = read(s, args.get(1), |h| {
        fields
            .iter()
            .map(|f| h.and_then(|h| h.fields.get(*f)?.read()))
            .collect::<Vec<_>>()
    });
    match values {
        Ok(values) => {
            out.array(values.len());
            for v in &values {
                out.bulk_or_null(v.as_deref());
            }
        }
        Err(e) => error(out, &e),
    }
}

/// The visible fields of the hash at `key`, as (field, value) pairs.
fn visible(s: &mut Session<'_>, key: &[u8]) -> Result<Vec<(Bytes, Bytes)>, Error> {
    read(s, key, |h| {
        h.map(|h| h.visible().map(|(k, v)| (k.clone(), v)).collect())
            .unwrap_or_default()
    })
}

pub(super) fn hgetall(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    match visible(s, args.get(1)) {
        Ok(all) => {
            out.map(all.len());
            for (k, v) in &all {
                out.bulk(k);
                out.bulk(v);
            }
        }
        Err(e) => error(out, &e),
    }
}

pub(super) fn hkeys(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    list(s, args, out, |(k, _)| k);
}

pub(super) fn hvals(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    list(s, args, out, |(_, v)| v);
}

/// `HKEYS`, `HVALS`: one of each visible field's name or value.
fn list(
    s: &mut Session<'_>,
    args: Args<'_>,
    out: &mut Reply<'_>,
    pick: fn(&(Bytes, Bytes)) -> &Bytes,
) {
    match visible(s, args.get(1)) {
        Ok(all) => {
            out.array(all.len());
            for pair in &all {
                out.bulk(pick(pair));
            }
        }
        Err(e) => error(out, &e),
    }
}

pub(super) fn hlen(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    match read(s, args.get(1), |h| h.map_or(0, Hash::len)) {
        Ok(n) => out.int(n as i64),
        Err(e) => error(out, &e),
    }
}

pub(super) fn hexists(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let field = args.get(2);
    match read(s, args.get(1), |h| {
        h.is_some_and(|h| h.fields.get(field).is_some_and(|f| f.read().is_some()))
    }) {
        Ok(b) => out.int(i64::from(b)),
        Err(e) => error(out, &e),
    }
}

pub(super) fn hstrlen(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let field = args.get(2);
    match read(s, args.get(1), |h| {
        h.and_then(|h| h.fields.get(field)?.read())
            .map_or(0, |v| v.len())
    }) {
        Ok(n) => out.int(n as i64),
        Err(e) => error(out, &e),
    }
}

pub(super) fn hdel(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    match s.cache.hdel(args.get(1), args.from(2)) {
        Ok(n) => out.int(n as i64),
        Err(e) => error(out, &e),
    }
}

pub(super) fn hincrby(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let Some(by) = int_arg(args.get(3), out) else {
        return;
    };
    let field = Bytes::copy_from_slice(args.get(2));
    match s.cache.hincr(args.get(1), field, by) {
        Ok(n) => out.int(n),
        Err(e) => out.error(&count_error(&e, false, true)),
    }
}

pub(super) fn hincrbyfloat(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let Some(by) = float_arg(args.get(3), out) else {
        return;
    };
    let field = Bytes::copy_from_slice(args.get(2));
    match s.cache.hincr_float(args.get(1), field, by) {
        Ok(f) => out.bulk(format_float(f).as_bytes()),
        Err(e) => out.error(&count_error(&e, true, true)),
    }
}

/// `HRANDFIELD key [count [WITHVALUES]]`: a positive count picks distinct fields (at most all of
/// them), a negative one picks `-count` fields that may repeat.
pub(super) fn hrandfield(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let count = if args.len() >= 3 {
        match parse_int(args.get(2)) {
            Some(n) if (-(1 << 40)..=(1 << 40)).contains(&n) => Some(n),
            Some(_) => {
                out.error("ERR value is out of range");
                return;
            }
            None => {
                out.error(NOT_AN_INTEGER);
                return;
            }
        }
    } else {
        None
    };
    let with_values = match args.len() {
        4 if args.upper(3).as_bytes() == b"WITHVALUES" => true,
        2 | 3 => false,
        _ => {
            out.error(SYNTAX);
            return;
        }
    };
    let all = match visible(s, args.get(1)) {
        Ok(all) => all,
        Err(e) => return error(out, &e),
    };
    let Some(count) = count else {
        match all.get(rand::random_range(0..all.len().max(1))) {
            Some((k, _)) => out.bulk(k),
            None => out.null(),
        }
        return;
    };
    let picked: Vec<&(Bytes, Bytes)> = if all.is_empty() {
        Vec::new()
    } else if count >= 0 {
        let n = (count as usize).min(all.len());
        rand::seq::index::sample(&mut rand::rng(), all.len(), n)
            .into_iter()
            .map(|i| &all[i])
            .collect()
    } else {
        (0..count.unsigned_abs())
            .map(|_| &all[rand::random_range(0..all.len())])
            .collect()
    };
    if with_values && out.resp3 {
        out.array(picked.len());
        for (k, v) in picked {
            out.array(2);
            out.bulk(k);
            out.bulk(v);
        }
        return;
    }
    out.array(picked.len() * if with_values { 2 } else { 1 });
    for (k, v) in picked {
        out.bulk(k);
        if with_values {
            out.bulk(v);
        }
    }
}

/// `HSCAN key cursor [MATCH pattern] [COUNT count] [NOVALUES]`: the cursor is a position in
/// field order; fields added or deleted during a walk may or may not be returned.
pub(super) fn hscan(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let Some(cursor) = std::str::from_utf8(args.get(2))
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
    else {
        out.error("ERR invalid cursor");
        return;
    };
    let (mut pattern, mut count, mut values) = (None, 10usize, true);
    let mut i = 3;
    while i < args.len() {
        match args.upper(i).as_bytes() {
            b"NOVALUES" => {
                values = false;
                i += 1;
                continue;
            }
            b"MATCH" if i + 1 < args.len() => pattern = Some(args.get(i + 1)),
            b"COUNT" if i + 1 < args.len() => match parse_int(args.get(i + 1)) {
                Some(c) if c > 0 => count = (c as usize).min(100_000),
                Some(_) => return out.error(SYNTAX),
                None => return out.error(NOT_AN_INTEGER),
            },
            _ => return out.error(SYNTAX),
        }
        i += 2;
    }
    let all = match visible(s, args.get(1)) {
        Ok(all) => all,
        Err(e) => return error(out, &e),
    };
    let end = cursor.saturating_add(count).min(all.len());
    let page = all.get(cursor.min(all.len())..end).unwrap_or_default();
    let next = if end >= all.len() { 0 } else { end };
    let page: Vec<_> = page
        .iter()
        .filter(|(k, _)| pattern.is_none_or(|p| glob::matches(p, k)))
        .collect();
    out.array(2);
    out.bulk(itoa::Buffer::new().format(next).as_bytes());
    out.array(page.len() * if values { 2 } else { 1 });
    for (k, v) in page {
        out.bulk(k);
        if values {
            out.bulk(v);
        }
    }
}
