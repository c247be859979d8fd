//! Framing and encoding: a 4-byte big-endian length, then one postcard-encoded [`Message`]. The length is
//! checked against the limit before any buffer grows, so a hostile length costs nothing. A large
//! payload may travel LZ4-compressed inside a [`Message::Packed`] ([`pack`], [`unpack`]).

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use super::{LinkError, Message};

/// The default largest frame, in bytes, a node sends or accepts.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// Splits a byte stream into frames and back, refusing frames over the limit. Used by the TCP and
/// Unix transports; the payload of each frame is one [`Message`] ([`encode`], [`decode`]).
#[derive(Debug)]
pub struct FrameCodec {
    frames: LengthDelimitedCodec,
    max_frame: usize,
    /// Whether a whole frame came in yet: the first bytes are checked for a TLS record.
    framed_one: bool,
}

impl FrameCodec {
    /// A codec refusing frames longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        FrameCodec {
            frames: LengthDelimitedCodec::builder()
                .max_frame_length(max_frame)
                .new_codec(),
            max_frame,
            framed_one: false,
        }
    }
}

/// The message as one frame's payload.
pub fn encode(message: &Message) -> Result<Vec<u8>, LinkError> {
    postcard::to_stdvec(message).map_err(|e| LinkError::Encode(e.to_string()))
}

/// The message one frame's payload holds.
pub fn decode(payload: &[u8]) -> Result<Message, LinkError> {
    postcard::from_bytes(payload).map_err(|e| LinkError::Malformed(e.to_string()))
}

/// Payloads shorter than this are sent as they are: compressing them saves too little.
const PACK_FROM: usize = 256;

/// `payload` compressed into a [`Message::Packed`], if it shrinks; else `payload` as it is.
pub fn pack(payload: Vec<u8>) -> Vec<u8> {
    if payload.len() < PACK_FROM {
        return payload;
    }
    let data = lz4_flex::block::compress(&payload);
    if data.len() + 8 >= payload.len() {
        return payload;
    }
    let packed = Message::Packed {
        raw_len: payload.len() as u32,
        data: Bytes::from(data),
    };
    encode(&packed).unwrap_or(payload)
}

/// The message inside a [`Message::Packed`]: its announced length checked against `max_frame`
/// before anything is allocated, and never another packed one.
///
/// # Errors
/// [`LinkError::FrameTooLarge`] for a length over the limit, [`LinkError::Malformed`] for data
/// that does not decompress or decode, [`LinkError::Protocol`] for a packed message inside one.
pub fn unpack(raw_len: u32, data: &[u8], max_frame: usize) -> Result<Message, LinkError> {
    let raw_len = raw_len as usize;
    if raw_len > max_frame {
        return Err(LinkError::FrameTooLarge { limit: max_frame });
    }
    let raw = lz4_flex::block::decompress(data, raw_len)
        .map_err(|e| LinkError::Malformed(format!("packed frame: {e}")))?;
    match decode(&raw)? {
        Message::Packed { .. } => Err(LinkError::Protocol("a packed frame inside another".into())),
        m => Ok(m),
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = LinkError;

    /// `Ok(None)` while a frame is incomplete — a normal state, not an error.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, LinkError> {
        // A TLS record (handshake or alert, versions 3.x) where a first frame's length should be:
        // a length of 350+ MB, never a hello. Said plainly instead of "frame too large".
        if !self.framed_one && matches!(src.as_ref(), [0x15 | 0x16, 0x03, ..]) {
            return Err(LinkError::Tls(
                "the peer speaks TLS and this node does not: give it the cluster's TLS certificates"
                    .into(),
            ));
        }
        let frame = self.frames.decode(src).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                LinkError::FrameTooLarge {
                    limit: self.max_frame,
                }
            } else {
                LinkError::Io(e.to_string())
            }
        })?;
        self.framed_one |= frame.is_some();
        Ok(frame)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, LinkError> {
        match Decoder::decode(self, src)? {
            Some(m) => Ok(Some(m)),
            None if src.is_empty() => Ok(None),
            None => Err(LinkError::TornFrame { pending: src.len() }),
        }
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = LinkError;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), LinkError> {
        if payload.len() > self.max_frame {
            return Err(LinkError::FrameTooLarge {
                limit: self.max_frame,
            });
        }
        self.frames
            .encode(payload, dst)
            .map_err(|e| LinkError::Io(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_roundtrip_and_partial_frames_wait() {
        let m = Message::Ack { upto: 42 };
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::new();
        codec
            .encode(Bytes::from(encode(&m).unwrap()), &mut buf)
            .unwrap();
        let mut whole = buf.clone();
        let frame = Decoder::decode(&mut codec, &mut whole).unwrap().unwrap();
        assert_eq!(decode(&frame).unwrap(), m);
        let mut half = buf.split_to(buf.len() - 1);
        assert!(
            Decoder::decode(&mut codec, &mut half).unwrap().is_none(),
            "incomplete is not an error"
        );
        assert!(matches!(
            codec.decode_eof(&mut half),
            Err(LinkError::TornFrame { .. })
        ));
    }

    #[test]
    fn oversized_length_is_refused_before_allocating() {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xf0, 1, 2][..]);
        assert!(matches!(
            Decoder::decode(&mut codec, &mut buf),
            Err(LinkError::FrameTooLarge { limit: 1024 })
        ));
        assert!(
            buf.capacity() < 1024,
            "no buffer sized from the hostile length"
        );
    }

    #[test]
    fn garbage_payload_is_a_malformed_error() {
        assert!(matches!(
            decode(&[0xfe, 0xfe, 0xfe]),
            Err(LinkError::Malformed(_))
        ));
    }

    #[test]
    fn large_payloads_pack_and_unpack_and_limits_hold() {
        let m = Message::Ack { upto: 7 };
        let small = encode(&m).unwrap();
        assert_eq!(pack(small.clone()), small, "a small payload goes as it is");
        let big = Message::Want {
            cache: "c".into(),
            keys: vec![Bytes::from_static(b"the same key, again and again"); 64],
        };
        let payload = encode(&big).unwrap();
        let packed = pack(payload.clone());
        assert!(packed.len() < payload.len());
        let Message::Packed { raw_len, data } = decode(&packed).unwrap() else {
            panic!("not packed");
        };
        assert_eq!(unpack(raw_len, &data, 1 << 20).unwrap(), big);
        assert!(matches!(
            unpack(raw_len, &data, 16),
            Err(LinkError::FrameTooLarge { limit: 16 })
        ));
        assert!(matches!(
            unpack(raw_len, &data[..data.len() / 2], 1 << 20),
            Err(LinkError::Malformed(_))
        ));
        let nested = lz4_flex::block::compress(&packed);
        assert!(matches!(
            unpack(packed.len() as u32, &nested, 1 << 20),
            Err(LinkError::Protocol(_))
        ));
    }
}
