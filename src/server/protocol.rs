//! RESP without I/O: the request parser (bytes in, argument ranges out) and the reply writer for
//! RESP2 and RESP3.
//!
//! Requests are what Redis clients send: an array of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\na\r\n`),
//! or an inline line (`PING\r\n`) as typed into `nc`. The parser never copies: it reports where each
//! argument lies in the connection's buffer, and the caller executes the command on those slices
//! before dropping them from the buffer. Every announced length is checked against the limits
//! before the connection reads a byte of what it announces, so a client announcing a 4 GiB string
//! is refused on its header.

use std::ops::Range;

use bytes::{BufMut, BytesMut};

pub(crate) use crate::cache::merge::parse_int;

/// How far one request may go; see [`ServerLimits`](crate::node::ServerLimits) for the settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ParseLimits {
    /// The longest bulk string (argument) accepted, in bytes.
    pub max_bulk: usize,
    /// The most arguments in one request.
    pub max_args: usize,
    /// The longest inline request line.
    pub max_inline: usize,
    /// The most bytes one request may take in the buffer, all its arguments together.
    pub max_request: usize,
}

/// What the parser made of the buffer's start.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A whole request, `consumed` bytes long; its arguments are in `args` (none for an empty
    /// request, which is skipped as Redis does).
    Request { consumed: usize },
    /// Not a whole request yet; it will take at least `total` bytes (0 when not known yet).
    Incomplete { total: usize },
}

/// A request that cannot be read: the connection answers with the message and closes, as Redis
/// does, because the rest of the stream cannot be trusted to start at a request boundary.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProtocolError {
    /// An array element that is not a bulk string (a nested array, an integer...).
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
    /// An array header whose count is not a number.
    #[error("Protocol error: invalid multibulk length")]
    ArrayLength,
    /// A bulk header whose length is not a number, or a bulk string without its `\r\n`.
    #[error("Protocol error: invalid bulk length")]
    BulkLength,
    /// More arguments than `max_args`.
    #[error("Protocol error: {got} arguments in one request, the limit is {limit}")]
    TooManyArgs { got: u64, limit: usize },
    /// A bulk string longer than `max_bulk`.
    #[error("Protocol error: a {got}-byte argument, the limit is {limit} bytes")]
    BulkTooLong { got: u64, limit: usize },
    /// A request that would take more than `max_request` bytes.
    #[error("Protocol error: a request of at least {got} bytes, the limit is {limit} bytes")]
    RequestTooLong { got: usize, limit: usize },
    /// An inline line longer than `max_inline`, or a header line that never ends.
    #[error("Protocol error: too big inline request")]
    InlineTooLong,
}

/// The longest header line (`*123\r\n`, `$456\r\n`): a sign, 20 digits and CRLF fit.
const MAX_HEADER: usize = 32;

/// Parses one request from the start of `buf`, filling `args` with the ranges of its arguments.
pub(crate) fn parse(
    buf: &[u8],
    limits: &ParseLimits,
    args: &mut Vec<Range<usize>>,
) -> Result<Parsed, ProtocolError> {
    args.clear();
    match buf.first() {
        None => Ok(Parsed::Incomplete { total: 0 }),
        Some(b'*') => parse_array(buf, limits, args),
        Some(_) => parse_inline(buf, limits, args),
    }
}

fn parse_array(
    buf: &[u8],
    limits: &ParseLimits,
    args: &mut Vec<Range<usize>>,
) -> Result<Parsed, ProtocolError> {
    let Some((count, mut pos)) = header(buf, 1, ProtocolError::ArrayLength)? else {
        return Ok(Parsed::Incomplete { total: 0 });
    };
    if count <= 0 {
        // `*0` and `*-1` are empty requests: skipped.
        return Ok(Parsed::Request { consumed: pos });
    }
    let count = count as u64;
    if count > limits.max_args as u64 {
        return Err(ProtocolError::TooManyArgs {
            got: count,
            limit: limits.max_args,
        });
    }
    for _ in 0..count {
        let Some(&first) = buf.get(pos) else {
            return Ok(Parsed::Incomplete { total: 0 });
        };
        if first != b'$' {
            return Err(ProtocolError::ExpectedBulk(char::from(first)));
        }
        let Some((len, after)) = header(&buf[pos..], 1, ProtocolError::BulkLength)? else {
            return Ok(Parsed::Incomplete { total: 0 });
        };
        let len = u64::try_from(len).map_err(|_| ProtocolError::BulkLength)?;
        if len > limits.max_bulk as u64 {
            return Err(ProtocolError::BulkTooLong {
                got: len,
                limit: limits.max_bulk,
            });
        }
        let start = pos + after;
        let end = start + len as usize;
        if end + 2 > limits.max_request {
            return Err(ProtocolError::RequestTooLong {
                got: end + 2,
                limit: limits.max_request,
            });
        }
        if buf.len() < end + 2 {
            return Ok(Parsed::Incomplete { total: end + 2 });
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(ProtocolError::BulkLength);
        }
        args.push(start..end);
        pos = end + 2;
    }
    Ok(Parsed::Request { consumed: pos })
}

/// Reads `<sign><digits>\r\n` after `skip` type bytes: the number and the bytes taken, or `None`
/// if the line is not complete yet.
fn header(
    buf: &[u8],
    skip: usize,
    bad: ProtocolError,
) -> Result<Option<(i64, usize)>, ProtocolError> {
    let window = &buf[skip..buf.len().min(MAX_HEADER)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        if buf.len() >= MAX_HEADER {
            return Err(bad);
        }
        return Ok(None);
    };
    let Some(&lf) = window.get(cr + 1) else {
        return Ok(None);
    };
    if lf != b'\n' {
        return Err(bad);
    }
    let n = parse_int(&window[..cr]).ok_or(bad)?;
    Ok(Some((n, skip + cr + 2)))
}

fn parse_inline(
    buf: &[u8],
    limits: &ParseLimits,
    args: &mut Vec<Range<usize>>,
) -> Result<Parsed, ProtocolError> {
    let Some(nl) = buf
        .iter()
        .take(limits.max_inline + 1)
        .position(|&b| b == b'\n')
    else {
        if buf.len() > limits.max_inline {
            return Err(ProtocolError::InlineTooLong);
        }
        return Ok(Parsed::Incomplete { total: 0 });
    };
    let line_end = if nl > 0 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let mut i = 0;
    while i < line_end {
        if buf[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        while i < line_end && !buf[i].is_ascii_whitespace() {
            i += 1;
        }
        if args.len() == limits.max_args {
            return Err(ProtocolError::TooManyArgs {
                got: args.len() as u64 + 1,
                limit: limits.max_args,
            });
        }
        args.push(start..i);
    }
    Ok(Parsed::Request { consumed: nl + 1 })
}

/// Writes replies into a connection's output buffer, in the protocol the connection speaks:
/// RESP2 by default, RESP3 after `HELLO 3`. Each RESP3 type has its RESP2 fallback, as Redis
/// writes it: a map is a flat array of pairs, a double a bulk string, a boolean an integer.
pub(crate) struct Reply<'a> {
    pub buf: &'a mut BytesMut,
    pub resp3: bool,
}

impl<'a> Reply<'a> {
    /// A writer for a connection speaking RESP3 (`resp3`) or RESP2.
    pub fn new(buf: &'a mut BytesMut, resp3: bool) -> Self {
        Reply { buf, resp3 }
    }

    fn line(&mut self, kind: u8, n: impl itoa::Integer) {
        self.buf.put_u8(kind);
        self.buf.put_slice(itoa::Buffer::new().format(n).as_bytes());
        self.buf.put_slice(b"\r\n");
    }

    /// `+OK`-style status.
    pub fn simple(&mut self, s: &str) {
        self.buf.put_u8(b'+');
        self.buf.put_slice(s.as_bytes());
        self.buf.put_slice(b"\r\n");
    }

    /// `+OK`.
    pub fn ok(&mut self) {
        self.buf.put_slice(b"+OK\r\n");
    }

    /// An error line; `msg` starts with its code (`ERR`, `WRONGPASS`...). Line breaks in it are
    /// replaced so that it stays one line.
    pub fn error(&mut self, msg: &str) {
        self.buf.put_u8(b'-');
        for b in msg.bytes() {
            self.buf
                .put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
        }
        self.buf.put_slice(b"\r\n");
    }

    /// `:n`.
    pub fn int(&mut self, n: i64) {
        self.line(b':', n);
    }

    /// A bulk string.
    pub fn bulk(&mut self, data: &[u8]) {
        self.buf.reserve(data.len() + 16);
        self.line(b'$', data.len());
        self.buf.put_slice(data);
        self.buf.put_slice(b"\r\n");
    }

    /// A bulk string or null.
    pub fn bulk_or_null(&mut self, data: Option<&[u8]>) {
        match data {
            Some(d) => self.bulk(d),
            None => self.null(),
        }
    }

    /// "No value": RESP3 `_`, RESP2 the null bulk string `$-1`.
    pub fn null(&mut self) {
        self.buf
            .put_slice(if self.resp3 { b"_\r\n" } else { b"$-1\r\n" });
    }

    /// "No array" (an aborted `EXEC`, a timed-out wait): RESP3 `_`, RESP2 `*-1`.
    pub fn null_array(&mut self) {
        self.buf
            .put_slice(if self.resp3 { b"_\r\n" } else { b"*-1\r\n" });
    }

    /// The header of an array of `n` elements, which the caller writes next.
    pub fn array(&mut self, n: usize) {
        self.line(b'*', n);
    }

    /// The header of a map of `n` pairs (key, value, key, value... follow); in RESP2 an array
    /// of `2n`.
    pub fn map(&mut self, n: usize) {
        if self.resp3 {
            self.line(b'%', n);
        } else {
            self.line(b'*', 2 * n);
        }
    }

    /// The header of a set of `n` elements; in RESP2 an array.
    pub fn set(&mut self, n: usize) {
        self.line(if self.resp3 { b'~' } else { b'*' }, n);
    }

    /// The header of a push frame of `n` elements (pub/sub messages, invalidations); in RESP2
    /// an array.
    pub fn push(&mut self, n: usize) {
        self.line(if self.resp3 { b'>' } else { b'*' }, n);
    }

    // No string or key command answers this type; the data-type commands will.
    #[allow(dead_code)]
    /// A double; in RESP2 a bulk string, as Redis formats it (`inf`, `-inf`, `nan`, or the
    /// shortest decimal that reads back to the same value).
    pub fn double(&mut self, x: f64) {
        let text = format_double(x);
        if self.resp3 {
            self.buf.put_u8(b',');
            self.buf.put_slice(text.as_bytes());
            self.buf.put_slice(b"\r\n");
        } else {
            self.bulk(text.as_bytes());
        }
    }

    // No string or key command answers this type; the data-type commands will.
    #[allow(dead_code)]
    /// A boolean; in RESP2 the integer 1 or 0.
    pub fn boolean(&mut self, b: bool) {
        if self.resp3 {
            self.buf.put_slice(if b { b"#t\r\n" } else { b"#f\r\n" });
        } else {
            self.int(i64::from(b));
        }
    }

    // No string or key command answers this type; the data-type commands will.
    #[allow(dead_code)]
    /// A big number, given as its decimal digits; in RESP2 a bulk string.
    pub fn big_number(&mut self, digits: &str) {
        if self.resp3 {
            self.buf.put_u8(b'(');
            self.buf.put_slice(digits.as_bytes());
            self.buf.put_slice(b"\r\n");
        } else {
            self.bulk(digits.as_bytes());
        }
    }

    /// Text meant for a person (`INFO`, `CLIENT LIST`): a RESP3 verbatim string of format
    /// `txt`; in RESP2 a bulk string.
    pub fn verbatim(&mut self, text: &[u8]) {
        if self.resp3 {
            self.line(b'=', text.len() + 4);
            self.buf.put_slice(b"txt:");
            self.buf.put_slice(text);
            self.buf.put_slice(b"\r\n");
        } else {
            self.bulk(text);
        }
    }
}

/// A double as Redis writes it in replies.
#[allow(dead_code)]
pub(crate) fn format_double(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf".into() } else { "-inf".into() }
    } else if x == x.trunc() && x.abs() < 1e17 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: ParseLimits = ParseLimits {
        max_bulk: 1024,
        max_args: 16,
        max_inline: 64,
        max_request: 4096,
    };

    /// A whole request's length and arguments.
    type Request = (usize, Vec<Vec<u8>>);

    fn request(input: &[u8]) -> Result<Option<Request>, ProtocolError> {
        let mut args = Vec::new();
        Ok(match parse(input, &LIMITS, &mut args)? {
            Parsed::Request { consumed } => Some((
                consumed,
                args.iter().map(|r| input[r.clone()].to_vec()).collect(),
            )),
            Parsed::Incomplete { .. } => None,
        })
    }

    fn encode(args: &[Vec<u8>]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn arrays_of_bulk_strings_and_inline_lines() {
        let input = b"*2\r\n$3\r\nGET\r\n$1\r\na\r\nPING\r\n";
        let (used, args) = request(input).unwrap().unwrap();
        assert_eq!(args, vec![b"GET".to_vec(), b"a".to_vec()]);
        let (used2, args) = request(&input[used..]).unwrap().unwrap();
        assert_eq!(args, vec![b"PING".to_vec()]);
        assert_eq!(used + used2, input.len());
        let (_, args) = request(b"  set  k\tv \n").unwrap().unwrap();
        assert_eq!(args, vec![b"set".to_vec(), b"k".to_vec(), b"v".to_vec()]);
        assert_eq!(request(b"*0\r\n").unwrap(), Some((4, vec![])));
        assert_eq!(request(b"\r\n").unwrap(), Some((2, vec![])));
    }

    #[test]
    fn a_request_split_anywhere_is_incomplete_until_whole() {
        let whole = encode(&[b"SET".to_vec(), b"key".to_vec(), vec![0, 13, 10, 255]]);
        for cut in 0..whole.len() {
            assert_eq!(request(&whole[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(request(&whole).unwrap().is_some());
    }

    #[test]
    fn lengths_are_refused_on_their_header() {
        let mut args = Vec::new();
        // 4 GiB announced, nothing of it sent: refused at once.
        assert_eq!(
            parse(b"*2\r\n$3\r\nSET\r\n$4294967296\r\n", &LIMITS, &mut args),
            Err(ProtocolError::BulkTooLong {
                got: 4294967296,
                limit: 1024
            })
        );
        assert!(matches!(
            parse(b"*1000000000\r\n", &LIMITS, &mut args),
            Err(ProtocolError::TooManyArgs { .. })
        ));
        // The whole request is bounded too: 8 arguments of 1000 bytes exceed 4096.
        let big = encode(&vec![vec![b'x'; 1000]; 8]);
        assert!(matches!(
            parse(&big, &LIMITS, &mut args),
            Err(ProtocolError::RequestTooLong { .. })
        ));
        // The size still to come is reported, for the reader to reserve.
        assert_eq!(
            parse(b"*1\r\n$100\r\nab", &LIMITS, &mut args),
            Ok(Parsed::Incomplete {
                total: 10 + 100 + 2
            })
        );
    }

    #[test]
    fn malformed_requests_are_errors() {
        for bad in [
            &b"*1\r\n*1\r\n$1\r\na\r\n"[..],
            b"*1\r\n:1\r\n",
            b"*x\r\n",
            b"*1\r\n$-1\r\n",
            b"*1\r\n$1\r\nab\r\n",
            b"*1\r\n$1\r\n",
            b"*1\n",
            b"*99999999999999999999999\r\n",
            b"*1\r\n$99999999999999999999999999999999999",
        ] {
            // Some need one more byte to be judged; none is ever a request.
            let r = request(bad);
            assert!(!matches!(r, Ok(Some(_))), "{bad:?} parsed: {r:?}");
        }
        assert_eq!(
            request(b"*1\r\n*1\r\n$1\r\na\r\n"),
            Err(ProtocolError::ExpectedBulk('*'))
        );
        assert_eq!(request(&[b'a'; 100]), Err(ProtocolError::InlineTooLong));
    }

    #[test]
    fn replies_are_well_formed() {
        let mut out = BytesMut::new();
        let mut r = Reply::new(&mut out, false);
        r.ok();
        r.int(-7);
        r.bulk(b"a\r\nb");
        r.null();
        r.array(2);
        r.error("ERR bad\r\nthing");
        assert_eq!(
            &out[..],
            b"+OK\r\n:-7\r\n$4\r\na\r\nb\r\n$-1\r\n*2\r\n-ERR bad  thing\r\n"
        );
    }

    /// Every RESP3 type, and what the same calls write on a RESP2 connection.
    #[test]
    fn resp3_types_and_their_resp2_fallbacks() {
        let write = |resp3: bool| {
            let mut out = BytesMut::new();
            let mut r = Reply::new(&mut out, resp3);
            r.map(1);
            r.bulk(b"k");
            r.set(1);
            r.double(1.5);
            r.boolean(true);
            r.null();
            r.null_array();
            r.push(1);
            r.big_number("123");
            r.verbatim(b"hi");
            r.double(f64::INFINITY);
            r.double(3.0);
            out
        };
        assert_eq!(
            &write(true)[..],
            &b"%1\r\n$1\r\nk\r\n~1\r\n,1.5\r\n#t\r\n_\r\n_\r\n>1\r\n(123\r\n=6\r\ntxt:hi\r\n,inf\r\n,3\r\n"[..]
        );
        assert_eq!(
            &write(false)[..],
            &b"*2\r\n$1\r\nk\r\n*1\r\n$3\r\n1.5\r\n:1\r\n$-1\r\n*-1\r\n*1\r\n$3\r\n123\r\n$2\r\nhi\r\n$3\r\ninf\r\n$1\r\n3\r\n"[..]
        );
    }

    proptest! {
        #[test]
        fn any_bytes_parse_to_a_request_more_or_an_error(input in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut args = Vec::new();
            match parse(&input, &LIMITS, &mut args) {
                Ok(Parsed::Request { consumed }) => {
                    prop_assert!(consumed > 0 && consumed <= input.len());
                    for r in &args {
                        prop_assert!(r.end <= consumed);
                    }
                }
                Ok(Parsed::Incomplete { .. }) | Err(_) => {}
            }
        }

        #[test]
        fn resp_prefixed_noise_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..128), head in 0usize..4) {
            let heads: [&[u8]; 4] = [b"*", b"*2\r\n$", b"*1\r\n$3\r\n", b"*3\r\n$3\r\nSET\r\n"];
            let mut input = heads[head].to_vec();
            input.extend_from_slice(&tail);
            let mut args = Vec::new();
            let _ = parse(&input, &LIMITS, &mut args);
        }

        #[test]
        fn encoded_requests_round_trip(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8)) {
            let wire = encode(&args);
            let (used, got) = request(&wire).unwrap().unwrap();
            prop_assert_eq!(used, wire.len());
            prop_assert_eq!(got, args);
        }
    }
}
