//! A RESP client to other shards' doors, for a sharded node: the RESP door forwards a plain
//! client's command on another shard's key through it (one round trip, over connections kept per
//! door), reads a moving slot's key through from its previous owner, and the caches' `Owners`
//! port and the shard prober ask with it. Requests are RESP arrays; replies are measured frame by
//! frame (RESP2 and RESP3) and handed back whole.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Idle connections kept per target door (and protocol, and cache); more are closed after use.
const IDLE_PER_TARGET: usize = 16;

/// Where a request goes and how the connection to it is set up.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct Target {
    /// The door, `host:port`.
    pub address: String,
    /// RESP3 (`HELLO 3`) or RESP2, as the client speaks.
    pub resp3: bool,
    /// The cache (`SELECT n`) the client has selected.
    pub db: usize,
}

/// A connection to another shard's door, set up for one [`Target`].
struct Conn {
    stream: TcpStream,
    input: BytesMut,
}

/// The idle connections of a node's door to other shards' doors.
#[derive(Default)]
pub(crate) struct Forwarder {
    idle: Mutex<HashMap<Target, Vec<Conn>>>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").finish_non_exhaustive()
    }
}

impl Forwarder {
    /// Sends `request` (`replies` commands, as RESP) to `target` and returns the last one's whole
    /// reply, as RESP, within `timeout`. `password` authenticates a new connection.
    pub async fn forward(
        &self,
        target: &Target,
        password: Option<&[u8]>,
        request: &[u8],
        replies: usize,
        timeout: Duration,
    ) -> Result<BytesMut, String> {
        let mut all = self
            .forward_all(target, password, request, replies, timeout)
            .await?;
        all.pop().ok_or_else(|| "no command sent".to_string())
    }

    /// Sends `request` (`replies` commands, as RESP, pipelined) to `target` and returns every
    /// reply in order, within `timeout`.
    pub async fn forward_all(
        &self,
        target: &Target,
        password: Option<&[u8]>,
        request: &[u8],
        replies: usize,
        timeout: Duration,
    ) -> Result<Vec<BytesMut>, String> {
        let pooled = self.idle.lock().get_mut(target).and_then(Vec::pop);
        let work = async {
            let mut conn = match pooled {
                Some(c) => c,
                None => connect(target, password).await?,
            };
            conn.stream
                .write_all(request)
                .await
                .map_err(|e| e.to_string())?;
            let mut all = Vec::with_capacity(replies);
            for _ in 0..replies {
                all.push(read_reply(&mut conn).await?);
            }
            Ok::<_, String>((conn, all))
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok((conn, all))) => {
                let mut idle = self.idle.lock();
                let kept = idle.entry(target.clone()).or_default();
                if kept.len() < IDLE_PER_TARGET {
                    kept.push(conn);
                }
                Ok(all)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }
}

/// A new connection to `target`: authenticated, in its protocol, told it is a cluster client (so
/// that the target answers `-MOVED` rather than forwarding again), on its cache.
async fn connect(target: &Target, password: Option<&[u8]>) -> Result<Conn, String> {
    let stream = TcpStream::connect(&target.address)
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        input: BytesMut::with_capacity(4096),
    };
    let mut setup: Vec<Vec<&[u8]>> = Vec::new();
    if let Some(p) = password {
        setup.push(vec![b"AUTH", p]);
    }
    if target.resp3 {
        setup.push(vec![b"HELLO", b"3"]);
    }
    setup.push(vec![b"READWRITE"]);
    let db = target.db.to_string();
    if target.db != 0 {
        setup.push(vec![b"SELECT", db.as_bytes()]);
    }
    for command in setup {
        conn.stream
            .write_all(&encode(&command))
            .await
            .map_err(|e| e.to_string())?;
        let reply = read_reply(&mut conn).await?;
        if reply.first() == Some(&b'-') {
            return Err(String::from_utf8_lossy(&reply[1..]).trim_end().to_string());
        }
    }
    Ok(conn)
}

/// The value of a bulk-string reply (`None` for nil, an error or any other type).
pub(crate) fn bulk_value(reply: &[u8]) -> Option<bytes::Bytes> {
    let rest = reply.strip_prefix(b"$")?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    let len: usize = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    let value = rest.get(end + 2..end + 2 + len)?;
    Some(bytes::Bytes::copy_from_slice(value))
}

/// `args` as a RESP array of bulk strings.
pub(crate) fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one whole reply (with any push frames before it left out).
async fn read_reply(conn: &mut Conn) -> Result<BytesMut, String> {
    loop {
        match frame_len(&conn.input, 0)? {
            Some(n) if conn.input.first() == Some(&b'>') => conn.input.advance(n),
            Some(n) => return Ok(conn.input.split_to(n)),
            None => {
                if conn.input.len() > 512 << 20 {
                    return Err("a reply over 512 MiB".into());
                }
                let read = conn
                    .stream
                    .read_buf(&mut conn.input)
                    .await
                    .map_err(|e| e.to_string())?;
                if read == 0 {
                    return Err("the connection closed".into());
                }
            }
        }
    }
}

/// The length of the RESP2/RESP3 frame at the start of `buf`: `None` if it is not all there.
fn frame_len(buf: &[u8], depth: usize) -> Result<Option<usize>, String> {
    if depth > 64 {
        return Err("a reply nested too deep".into());
    }
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = &buf[1..end];
    let header = end + 2;
    let number = || -> Result<i64, String> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                format!(
                    "a malformed reply header {:?}",
                    String::from_utf8_lossy(line)
                )
            })
    };
    match kind {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Ok(Some(header)),
        b'$' | b'!' | b'=' => {
            let n = number()?;
            if n < 0 {
                return Ok(Some(header));
            }
            // A length past what the buffer could hold is incomplete for now (the caller caps it).
            let total = usize::try_from(n)
                .ok()
                .and_then(|n| header.checked_add(n)?.checked_add(2));
            Ok(total.filter(|&t| buf.len() >= t))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = number()?;
            if n < 0 {
                return Ok(Some(header));
            }
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            let items = if matches!(kind, b'%' | b'|') {
                n.saturating_mul(2)
            } else {
                n
            };
            let mut at = header;
            for _ in 0..items {
                match frame_len(&buf[at..], depth + 1)? {
                    Some(len) => at += len,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        other => Err(format!("an unknown reply type {:?}", other as char)),
    }
}

#[cfg(test)]
mod tests {
    use super::frame_len;

    #[test]
    fn frames_are_measured_whole_or_not_at_all() {
        for (frame, len) in [
            (&b"+OK\r\n"[..], 5),
            (b"$3\r\nabc\r\n", 9),
            (b"$-1\r\n", 5),
            (b"*2\r\n$1\r\na\r\n:5\r\n", 15),
            (b"%1\r\n+k\r\n_\r\n", 11),
            (b"*-1\r\n", 5),
        ] {
            let mut longer = frame.to_vec();
            longer.extend_from_slice(b"+next\r\n");
            assert_eq!(frame_len(&longer, 0), Ok(Some(len)), "{frame:?}");
            assert_eq!(frame_len(&frame[..len - 1], 0), Ok(None), "{frame:?}");
        }
        assert!(frame_len(b"?\r\n", 0).is_err());
        // Lengths no buffer holds are incomplete, not an overflow.
        assert_eq!(frame_len(b"$9223372036854775807\r\nab", 0), Ok(None));
        assert_eq!(frame_len(b"*9223372036854775807\r\n:1\r\n", 0), Ok(None));
        assert!(frame_len(b"$x\r\n", 0).is_err());
    }
}
