//! What every command file shares, below them all: a request's arguments ([`Args`]), options
//! in upper case, the argument parsers (integers by the one rule the merge code uses too,
//! floats, `ON`/`OFF`) and Redis's error texts. Command files take their helpers from here,
//! never from one another.

use std::ops::Range;

use bytes::BytesMut;

pub(crate) use crate::cache::merge::parse_int;
use crate::error::Error;
use crate::server::protocol::Reply;

/// One request's arguments: ranges in a buffer (the connection's read buffer, or a queued
/// command's own copy).
#[derive(Clone, Copy)]
pub(crate) struct Args<'a> {
    pub buf: &'a [u8],
    pub ranges: &'a [Range<usize>],
}

impl<'a> Args<'a> {
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn get(&self, i: usize) -> &'a [u8] {
        &self.buf[self.ranges[i].clone()]
    }

    /// The arguments from `i` on.
    pub fn from(&self, i: usize) -> impl Iterator<Item = &'a [u8]> + 'a {
        let buf = self.buf;
        self.ranges[i..].iter().map(move |r| &buf[r.clone()])
    }

    /// Argument `i` upper-cased, for comparing options (`EX`, `NX`...); options are short, so
    /// anything longer than 16 bytes comes back as is and matches none.
    pub fn upper(&self, i: usize) -> Upper {
        Upper::of(self.get(i))
    }

    /// An owned copy, for a transaction's queue.
    pub fn to_owned(self) -> Queued {
        let mut buf = BytesMut::with_capacity(self.ranges.iter().map(|r| r.len()).sum());
        let mut ranges = Vec::with_capacity(self.len());
        for a in self.from(0) {
            let start = buf.len();
            buf.extend_from_slice(a);
            ranges.push(start..buf.len());
        }
        Queued {
            buf: buf.freeze(),
            ranges,
        }
    }
}

/// A command queued by `MULTI`: its own copy of its arguments.
pub(crate) struct Queued {
    pub buf: bytes::Bytes,
    pub ranges: Vec<Range<usize>>,
}

impl Queued {
    /// The queued arguments, to run.
    pub fn args(&self) -> Args<'_> {
        Args {
            buf: &self.buf,
            ranges: &self.ranges,
        }
    }
}

/// A short argument in upper case, on the stack.
pub(crate) struct Upper {
    buf: [u8; 16],
    len: usize,
}

impl Upper {
    pub fn of(raw: &[u8]) -> Upper {
        let mut buf = [0u8; 16];
        if raw.len() > buf.len() {
            return Upper { buf, len: 0 };
        }
        buf[..raw.len()].copy_from_slice(raw);
        buf[..raw.len()].make_ascii_uppercase();
        Upper {
            buf,
            len: raw.len(),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Whether a `what` of `len` bytes is within `limit`; answers the error if not.
pub(crate) fn within(what: &str, len: usize, limit: usize, out: &mut Reply<'_>) -> bool {
    if len > limit {
        out.error(&format!(
            "ERR {what} of {len} bytes is over the {limit}-byte limit"
        ));
        return false;
    }
    true
}

/// A library error as one RESP error line.
pub(crate) fn error_line(e: &Error) -> String {
    format!("ERR {e}")
}

pub(crate) const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";
pub(crate) const SYNTAX: &str = "ERR syntax error";

/// A `HELP` subcommand's answer: one status line each.
pub(crate) fn help(out: &mut Reply<'_>, lines: &[&str]) {
    out.array(lines.len());
    for line in lines {
        out.simple(line);
    }
}

/// `ON` or `OFF` (any case), or the syntax error.
pub(crate) fn on_off(raw: &[u8], out: &mut Reply<'_>) -> Option<bool> {
    match Upper::of(raw).as_bytes() {
        b"ON" => Some(true),
        b"OFF" => Some(false),
        _ => {
            out.error(SYNTAX);
            None
        }
    }
}

/// An integer argument, or the error Redis gives.
pub(crate) fn int_arg(raw: &[u8], out: &mut Reply<'_>) -> Option<i64> {
    let n = parse_int(raw);
    if n.is_none() {
        out.error(NOT_AN_INTEGER);
    }
    n
}

/// A float argument as Redis reads one, or its error answered.
pub(crate) fn float_arg(raw: &[u8], out: &mut Reply<'_>) -> Option<f64> {
    let f = crate::cache::merge::parse_float(raw);
    if f.is_none() {
        out.error("ERR value is not a valid float");
    }
    f
}

/// Redis's error line for a refused increment of a key (or, with `field`, of a hash field).
pub(crate) fn count_error(e: &Error, float: bool, field: bool) -> String {
    use crate::cache::merge::NotCounted;
    match e {
        Error::NotCounted(NotCounted::NotANumber) => match (field, float) {
            (false, false) => NOT_AN_INTEGER.into(),
            (false, true) => "ERR value is not a valid float".into(),
            (true, false) => "ERR hash value is not an integer".into(),
            (true, true) => "ERR hash value is not a float".into(),
        },
        Error::NotCounted(NotCounted::Overflow) => {
            "ERR increment or decrement would overflow".into()
        }
        Error::NotCounted(NotCounted::NotFinite) => {
            "ERR increment would produce NaN or Infinity".into()
        }
        Error::WrongType => WRONGTYPE.into(),
        other => error_line(other),
    }
}

/// Redis's answer to a command on a key of another type.
pub(crate) const WRONGTYPE: &str =
    "WRONGTYPE Operation against a key holding the wrong kind of value";

pub(crate) fn unknown_subcommand(args: Args<'_>, container: &str, out: &mut Reply<'_>) {
    out.error(&format!(
        "ERR unknown subcommand '{}'. Try {container} HELP.",
        String::from_utf8_lossy(args.get(1))
    ));
}

/// The Redis version the door reports (`HELLO`, `INFO`): the one whose commands it answers like,
/// for clients that gate features on it. redis-py's client-side cache, for one, needs a server
/// that calls itself `redis` at 7.4 or later, and the tracking it needs is here.
pub(crate) const VERSION: &str = "7.4.0";

pub(crate) const BAD_NAME: &str =
    "ERR Client names cannot contain spaces, newlines or special characters.";

/// A client name as Redis accepts them: printable ASCII without spaces.
pub(crate) fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&b| b > b' ' && b <= b'~')
}
