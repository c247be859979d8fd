//! A raw RESP2/RESP3 client for tests: sends commands as arrays of bulk strings and parses every
//! reply type into a [`V`], so tests can check the exact shape a door answers (a map, a push, a
//! null) and compare answers with `redis-server`'s.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use leafcache::Node;

/// A hub and two leaves over TCP on loopback, the leaves with RESP doors; `batch_records` for
/// every link. Call inside a tokio runtime.
pub fn two_leaves(batch_records: usize) -> (Node, Node, Node) {
    let hub = Node::builder()
        .name("hub")
        .local_address("127.0.0.1:0")
        .batch_records(batch_records)
        .build()
        .unwrap();
    let leaf = |name: &str| {
        Node::builder()
            .name(name)
            .remote_address(hub.local_addr().unwrap())
            .batch_records(batch_records)
            .resp_address("127.0.0.1:0")
            .build()
            .unwrap()
    };
    let (a, b) = (leaf("leaf-a"), leaf("leaf-b"));
    (hub, a, b)
}

/// One RESP reply.
#[derive(Clone, Debug, PartialEq)]
pub enum V {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    /// `$-1`, `*-1` or RESP3 `_`.
    Null,
    Array(Vec<V>),
    Map(Vec<(V, V)>),
    Set(Vec<V>),
    Push(Vec<V>),
    Double(String),
    Bool(bool),
    Big(String),
    Verbatim(String, Vec<u8>),
}

impl V {
    /// A bulk string from text.
    pub fn b(s: &str) -> V {
        V::Bulk(s.as_bytes().to_vec())
    }

    pub fn text(&self) -> String {
        match self {
            V::Simple(s) | V::Error(s) | V::Double(s) | V::Big(s) => s.clone(),
            V::Bulk(b) | V::Verbatim(_, b) => String::from_utf8_lossy(b).into_owned(),
            V::Int(n) => n.to_string(),
            other => format!("{other:?}"),
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, V::Error(_))
    }

    /// The elements of an array, set or push.
    pub fn items(&self) -> &[V] {
        match self {
            V::Array(v) | V::Set(v) | V::Push(v) => v,
            other => panic!("not an aggregate: {other:?}"),
        }
    }
}

pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, args: &[&[u8]]) {
        self.try_send(args).expect("send");
    }

    /// Sends a command; an error if the connection is gone.
    pub fn try_send(&mut self, args: &[&[u8]]) -> std::io::Result<()> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.stream.write_all(&out)
    }

    /// Sends a command (words split on spaces) and reads one reply.
    pub fn cmd(&mut self, line: &str) -> V {
        let words: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        self.call(&words)
    }

    pub fn call(&mut self, args: &[&[u8]]) -> V {
        self.send(args);
        self.read()
    }

    /// Whether the server closed the connection.
    pub fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill()
    }

    /// Waits up to `timeout` for a reply (a push), `None` if none came.
    pub fn read_within(&mut self, timeout: Duration) -> Option<V> {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let got = if self.buf.is_empty() && !self.fill() {
            None
        } else {
            Some(self.read())
        };
        self.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        got
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 << 10];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return String::from_utf8_lossy(&line[..i]).into_owned();
            }
            assert!(self.fill(), "connection closed mid-reply");
        }
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n + 2 {
            assert!(self.fill(), "connection closed mid-reply");
        }
        let out: Vec<u8> = self.buf.drain(..n + 2).collect();
        out[..n].to_vec()
    }

    /// Reads one whole reply.
    pub fn read(&mut self) -> V {
        let line = self.line();
        let (kind, rest) = line.split_at(1);
        let n = || rest.parse::<i64>().expect("length");
        match kind {
            "+" => V::Simple(rest.into()),
            "-" => V::Error(rest.into()),
            ":" => V::Int(n()),
            "$" if n() < 0 => V::Null,
            "$" => V::Bulk(self.bytes(n() as usize)),
            "*" if n() < 0 => V::Null,
            "*" => V::Array((0..n()).map(|_| self.read()).collect()),
            "~" => V::Set((0..n()).map(|_| self.read()).collect()),
            ">" => V::Push((0..n()).map(|_| self.read()).collect()),
            "%" => V::Map((0..n()).map(|_| (self.read(), self.read())).collect()),
            "_" => V::Null,
            "," => V::Double(rest.into()),
            "#" => V::Bool(rest == "t"),
            "(" => V::Big(rest.into()),
            "=" => {
                let body = self.bytes(n() as usize);
                V::Verbatim(
                    String::from_utf8_lossy(&body[..3]).into_owned(),
                    body[4..].to_vec(),
                )
            }
            other => panic!("unknown reply type {other:?} in {line:?}"),
        }
    }
}
