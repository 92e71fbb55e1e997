//! Byte layouts of the QUIC mapping (`engine/PROTOCOL.md`, "QUIC mapping"). No state, no I/O.
//!
//! - Control stream (the client's first bidirectional stream): a [`Hello`] from the client, a
//!   one-byte status (and in hybrid mode a pairing token) from the server.
//! - Unidirectional streams: one kind byte (a reliable channel's id, or [`FALLBACK_STREAM`]),
//!   then frames of `length: u32 BE | body`.
//! - DATAGRAM frames (and the bodies on the fallback stream): `channel: u8 | [seq: u16 BE if
//!   sequenced] | payload`, or an engine frame that starts with [`ENGINE_FRAME`]: several such
//!   bodies packed into one ([`Packer`], [`Unpacker`]), acknowledgements of reliable channels
//!   ([`Acks`]), a payload tagged for delivery notices ([`tag`]), acknowledgements of tags
//!   ([`TagAcks`]), or one fragment of a body larger than a datagram ([`fragments`]).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

/// First bytes of the client's hello.
pub(super) const HELLO_MAGIC: [u8; 4] = *b"TWQ1";
/// Length of the client's hello in bytes.
pub(super) const HELLO_LEN: usize = 4 + 8 + 4 + 1;
/// Kind byte of the stream that carries datagram bodies when DATAGRAM frames cannot.
pub(super) const FALLBACK_STREAM: u8 = 0xFF;
/// First byte of a datagram body that is an engine frame, not one message (no channel has
/// this id: a direction has at most 255 channels, ids 0 to 254).
pub(super) const ENGINE_FRAME: u8 = 0xFF;
/// Engine frame kind: several message bodies, each `length: u16 BE | body`.
pub(super) const PACKED: u8 = 0;
/// Engine frame kind: acknowledgements, each `channel: u8 | received: u64 BE`.
pub(super) const ACKS: u8 = 1;
/// Engine frame kind: `tag: u32 BE | payload`, a plain or packed payload whose receipt the
/// receiver acknowledges (channels with `notify_delivery`).
pub(super) const TAGGED: u8 = 2;
/// Engine frame kind: acknowledgements of tagged payloads, each `tag: u32 BE`.
pub(super) const TAG_ACKS: u8 = 3;
/// Engine frame kind: `message: u32 BE | index: u16 BE | count: u16 BE | piece`, one piece of
/// a message body too large for one DATAGRAM frame.
pub(super) const FRAGMENT: u8 = 4;
/// Bytes a tag adds in front of a payload.
pub(super) const TAG_HEADER: usize = 2 + 4;
/// Bytes of a fragment's header, before its piece.
pub(super) const FRAGMENT_HEADER: usize = 2 + 4 + 2 + 2;
/// Most fragments one message may be split into.
pub(super) const MAX_FRAGMENTS: usize = u16::MAX as usize;
/// Bytes of a packed frame's header (`ENGINE_FRAME`, `PACKED`).
const PACKED_HEADER: usize = 2;
/// Bytes of each packed body's length prefix.
const PACKED_LENGTH: usize = 2;
/// Bytes a packer allocates at once, to split payloads from.
const PACK_ARENA: usize = 64 * 1024;
/// Bytes of one acknowledgement.
const ACK_LEN: usize = 1 + 8;
/// Length prefix of each frame on a unidirectional stream.
pub(super) const LENGTH_PREFIX: usize = 4;
/// Length of a hybrid pairing token.
pub(crate) const TOKEN_LEN: usize = 16;
/// Status byte of an accepted hello.
pub(super) const ACCEPTED: u8 = 0;
/// Byte the server writes on a hybrid control stream once the native half presented the token.
pub(super) const PAIRED: u8 = 1;
/// First bytes of the pairing message a hybrid client sends on the native path.
pub(crate) const PAIR_MAGIC: [u8; 6] = *b"TWPAIR";
/// Length of the pairing message: the magic and the token.
pub(crate) const PAIR_LEN: usize = PAIR_MAGIC.len() + TOKEN_LEN;

/// The token in a native message, if the message is a hybrid pairing message.
pub(crate) fn pairing_token(message: &[u8]) -> Option<[u8; TOKEN_LEN]> {
    if message.len() != PAIR_LEN || message[..PAIR_MAGIC.len()] != PAIR_MAGIC {
        return None;
    }
    let mut token = [0; TOKEN_LEN];
    token.copy_from_slice(&message[PAIR_MAGIC.len()..]);
    Some(token)
}

/// What a session carries, as announced in the hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// Every channel.
    Full,
    /// Reliable channels only; the rest flows over a native connection paired by token.
    Hybrid,
}

/// The client's first message on the control stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Hello {
    pub(super) protocol_id: u64,
    pub(super) layout: u32,
    pub(super) mode: Mode,
}

impl Hello {
    pub(super) fn encode(&self) -> [u8; HELLO_LEN] {
        let mut out = [0; HELLO_LEN];
        let mut buf = &mut out[..];
        buf.put_slice(&HELLO_MAGIC);
        buf.put_u64(self.protocol_id);
        buf.put_u32(self.layout);
        buf.put_u8(match self.mode {
            Mode::Full => 0,
            Mode::Hybrid => 1,
        });
        out
    }

    pub(super) fn decode(mut bytes: &[u8]) -> Result<Self, FrameError> {
        if bytes.len() != HELLO_LEN || bytes[..4] != HELLO_MAGIC {
            return Err(FrameError::BadHello);
        }
        bytes.advance(4);
        let protocol_id = bytes.get_u64();
        let layout = bytes.get_u32();
        let mode = match bytes.get_u8() {
            0 => Mode::Full,
            1 => Mode::Hybrid,
            _ => return Err(FrameError::BadHello),
        };
        Ok(Self {
            protocol_id,
            layout,
            mode,
        })
    }
}

/// The header of a datagram body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct DatagramHeader {
    pub(super) channel: u8,
    /// The 16-bit sequence number, on sequenced channels.
    pub(super) seq: Option<u16>,
}

impl DatagramHeader {
    pub(super) fn len(&self) -> usize {
        1 + if self.seq.is_some() { 2 } else { 0 }
    }

    /// The header followed by `payload`, in one buffer.
    pub(super) fn encode(&self, payload: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(self.len() + payload.len());
        self.put(&mut out);
        out.put_slice(payload);
        out.freeze()
    }

    /// Appends the header to `out`.
    fn put(&self, out: &mut BytesMut) {
        out.put_u8(self.channel);
        if let Some(seq) = self.seq {
            out.put_u16(seq);
        }
    }

    /// Splits a datagram body; `sequenced(channel)` says whether the channel carries a sequence
    /// number (`None`: no such channel).
    pub(super) fn decode(
        mut body: Bytes,
        sequenced: impl Fn(u8) -> Option<bool>,
    ) -> Result<(Self, Bytes), FrameError> {
        if body.is_empty() {
            return Err(FrameError::Truncated);
        }
        let channel = body.get_u8();
        let seq = match sequenced(channel) {
            None => return Err(FrameError::UnknownChannel(channel)),
            Some(false) => None,
            Some(true) => {
                if body.len() < 2 {
                    return Err(FrameError::Truncated);
                }
                Some(body.get_u16())
            }
        };
        Ok((Self { channel, seq }, body))
    }
}

/// Builds one DATAGRAM payload from several messages: a packed frame, or the plain body when it
/// holds one message (so a lone message costs no packing bytes).
#[derive(Debug, Default)]
pub(super) struct Packer {
    buf: BytesMut,
    count: usize,
}

impl Packer {
    /// The payload's size with one more message of `body_len` bytes (header included).
    pub(super) fn len_with(&self, body_len: usize) -> usize {
        if self.count == 0 {
            return body_len;
        }
        self.buf.len() + PACKED_LENGTH + body_len
    }

    /// Appends a message (at most 65 535 bytes with its header; larger ones are never packed,
    /// they exceed any datagram size).
    pub(super) fn push(&mut self, header: DatagramHeader, payload: &[u8], capacity: usize) {
        if self.count == 0 {
            // One allocation serves many payloads: each is split off the front of the buffer.
            let need = capacity + PACKED_HEADER + PACKED_LENGTH;
            if self.buf.capacity() < need {
                self.buf.reserve(need.max(PACK_ARENA));
            }
            self.buf.put_u8(ENGINE_FRAME);
            self.buf.put_u8(PACKED);
        }
        self.buf.put_u16((header.len() + payload.len()) as u16);
        header.put(&mut self.buf);
        self.buf.put_slice(payload);
        self.count += 1;
    }

    /// The payload, leaving the packer empty; `None` if it was empty.
    pub(super) fn finish(&mut self) -> Option<Bytes> {
        let count = std::mem::take(&mut self.count);
        let body = self.buf.split().freeze();
        match count {
            0 => None,
            1 => Some(body.slice(PACKED_HEADER + PACKED_LENGTH..)),
            _ => Some(body),
        }
    }
}

/// What a datagram payload holds.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Payload {
    /// One message body (`channel | [seq] | payload`).
    Message(Bytes),
    /// Several, to split with [`Unpacker`].
    Packed(Unpacker),
    /// Acknowledgements, to read with [`Acks`].
    Acks(Acks),
    /// A payload to acknowledge with its tag.
    Tagged {
        /// The sender's tag.
        tag: u32,
        /// The payload (plain or packed; anything else is malformed).
        inner: Bytes,
    },
    /// Acknowledgements of tagged payloads.
    TagAcks(TagAcks),
    /// One piece of a fragmented message body.
    Fragment {
        /// The sender's number for the fragmented message.
        message: u32,
        /// The piece's place, `0..count`.
        index: u16,
        /// Pieces in the message, at least 2.
        count: u16,
        /// The piece.
        piece: Bytes,
    },
}

impl Payload {
    /// Tells what `body` holds, by its first bytes.
    pub(super) fn classify(mut body: Bytes) -> Result<Self, FrameError> {
        match body.first() {
            None => Err(FrameError::Truncated),
            Some(&ENGINE_FRAME) => {
                if body.len() < 2 {
                    return Err(FrameError::Truncated);
                }
                body.advance(1);
                match body.get_u8() {
                    PACKED => Ok(Self::Packed(Unpacker(body))),
                    ACKS if body.len() % ACK_LEN == 0 => Ok(Self::Acks(Acks(body))),
                    ACKS => Err(FrameError::Truncated),
                    TAGGED if body.len() >= 4 => {
                        let tag = body.get_u32();
                        Ok(Self::Tagged { tag, inner: body })
                    }
                    TAG_ACKS if body.len() % 4 == 0 => Ok(Self::TagAcks(TagAcks(body))),
                    FRAGMENT if body.len() > FRAGMENT_HEADER - 2 => {
                        let message = body.get_u32();
                        let index = body.get_u16();
                        let count = body.get_u16();
                        if count < 2 || index >= count {
                            return Err(FrameError::BadFragment);
                        }
                        Ok(Self::Fragment {
                            message,
                            index,
                            count,
                            piece: body,
                        })
                    }
                    TAGGED | TAG_ACKS | FRAGMENT => Err(FrameError::Truncated),
                    kind => Err(FrameError::UnknownFrame(kind)),
                }
            }
            Some(_) => Ok(Self::Message(body)),
        }
    }
}

/// The message bodies of a packed frame, in order; zero-copy slices of it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Unpacker(Bytes);

impl Iterator for Unpacker {
    type Item = Result<Bytes, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        if self.0.len() < PACKED_LENGTH {
            self.0.clear();
            return Some(Err(FrameError::Truncated));
        }
        let len = usize::from(self.0.get_u16());
        if len == 0 || len > self.0.len() {
            self.0.clear();
            return Some(Err(FrameError::Truncated));
        }
        Some(Ok(self.0.split_to(len)))
    }
}

/// The acknowledgements of an acks frame: `(channel, messages received)` pairs.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Acks(Bytes);

impl Acks {
    /// An acks frame for these `(channel, messages received)` pairs.
    pub(super) fn encode(acks: impl ExactSizeIterator<Item = (u8, u64)>) -> Bytes {
        let mut out = BytesMut::with_capacity(2 + acks.len() * ACK_LEN);
        out.put_u8(ENGINE_FRAME);
        out.put_u8(ACKS);
        for (channel, received) in acks {
            out.put_u8(channel);
            out.put_u64(received);
        }
        out.freeze()
    }
}

impl Iterator for Acks {
    type Item = (u8, u64);

    fn next(&mut self) -> Option<Self::Item> {
        // `classify` checked that the length is a multiple of ACK_LEN.
        if self.0.len() < ACK_LEN {
            return None;
        }
        Some((self.0.get_u8(), self.0.get_u64()))
    }
}

/// `payload` (plain or packed) behind a tag, in a new buffer.
pub(super) fn tag(tag: u32, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(TAG_HEADER + payload.len());
    out.put_u8(ENGINE_FRAME);
    out.put_u8(TAGGED);
    out.put_u32(tag);
    out.put_slice(payload);
    out.freeze()
}

/// A message `body` (`channel | [seq] | message`) split into fragment frames of at most
/// `max_datagram` bytes each, numbered `message`. `None` if it would take fewer than 2 or more
/// than [`MAX_FRAGMENTS`] pieces (or `max_datagram` leaves no room for a piece).
pub(super) fn fragments(
    message: u32,
    body: &[u8],
    max_datagram: usize,
) -> Option<impl ExactSizeIterator<Item = Bytes> + '_> {
    let count = fragment_count(body.len(), max_datagram)?;
    let piece = max_datagram - FRAGMENT_HEADER;
    Some(body.chunks(piece).enumerate().map(move |(index, piece)| {
        let mut out = BytesMut::with_capacity(FRAGMENT_HEADER + piece.len());
        out.put_u8(ENGINE_FRAME);
        out.put_u8(FRAGMENT);
        out.put_u32(message);
        out.put_u16(index as u16);
        out.put_u16(count as u16);
        out.put_slice(piece);
        out.freeze()
    }))
}

/// How many fragments [`fragments`] makes of a body of `body_len` bytes, if it fragments it.
pub(super) fn fragment_count(body_len: usize, max_datagram: usize) -> Option<usize> {
    let piece = max_datagram
        .checked_sub(FRAGMENT_HEADER)
        .filter(|&p| p > 0)?;
    Some(body_len.div_ceil(piece)).filter(|count| (2..=MAX_FRAGMENTS).contains(count))
}

/// Bytes on the wire of `body` split by [`fragments`] for `max_datagram`: the body and a header
/// per piece.
pub(super) fn fragmented_len(body_len: usize, max_datagram: usize) -> usize {
    let piece = max_datagram.saturating_sub(FRAGMENT_HEADER).max(1);
    body_len + body_len.div_ceil(piece) * FRAGMENT_HEADER
}

/// The tags of a tag acknowledgements frame, in order.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TagAcks(Bytes);

impl TagAcks {
    /// A frame acknowledging these tags.
    pub(super) fn encode(tags: &[u32]) -> Bytes {
        let mut out = BytesMut::with_capacity(2 + 4 * tags.len());
        out.put_u8(ENGINE_FRAME);
        out.put_u8(TAG_ACKS);
        for &tag in tags {
            out.put_u32(tag);
        }
        out.freeze()
    }
}

impl Iterator for TagAcks {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        // `classify` checked that the length is a multiple of 4.
        (self.0.len() >= 4).then(|| self.0.get_u32())
    }
}

/// Appends one length-prefixed frame to `out`.
pub(super) fn put_frame(out: &mut BytesMut, body: &[u8]) {
    out.reserve(LENGTH_PREFIX + body.len());
    out.put_u32(body.len() as u32);
    out.put_slice(body);
}

/// Splits the next whole frame off the front of `buf`, if it is all there. Refuses a length
/// above `max` before buffering any of it.
pub(super) fn take_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < LENGTH_PREFIX {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > max {
        return Err(FrameError::TooLong { len, max });
    }
    if buf.len() < LENGTH_PREFIX + len {
        return Ok(None);
    }
    buf.advance(LENGTH_PREFIX);
    Ok(Some(buf.split_to(len).freeze()))
}

/// A peer sent bytes that break the QUIC mapping.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub(super) enum FrameError {
    /// The control stream did not start with a valid hello.
    #[error("bad hello on the control stream")]
    BadHello,
    /// A frame or header ended early.
    #[error("truncated frame")]
    Truncated,
    /// A channel id not in the layout (or not of a kind this stream or frame may carry).
    #[error("no channel {0} of that kind")]
    UnknownChannel(u8),
    /// A fragment whose count is below 2 or whose index is not below its count.
    #[error("fragment index or count out of range")]
    BadFragment,
    /// An engine frame of a kind this version does not know.
    #[error("unknown engine frame kind {0}")]
    UnknownFrame(u8),
    /// A length prefix above the channel's limit.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLong {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_and_refuses_garbage() {
        let hello = Hello {
            protocol_id: 0x1234_5678_9abc_def0,
            layout: 0xdead_beef,
            mode: Mode::Hybrid,
        };
        assert_eq!(Hello::decode(&hello.encode()), Ok(hello));
        let mut bad = hello.encode();
        bad[0] = b'X';
        assert_eq!(Hello::decode(&bad), Err(FrameError::BadHello));
        let mut bad = hello.encode();
        bad[HELLO_LEN - 1] = 7;
        assert_eq!(Hello::decode(&bad), Err(FrameError::BadHello));
        assert_eq!(Hello::decode(&[]), Err(FrameError::BadHello));
    }

    #[test]
    fn datagram_headers_round_trip() {
        let sequenced = |channel: u8| match channel {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        };
        for header in [
            DatagramHeader {
                channel: 0,
                seq: None,
            },
            DatagramHeader {
                channel: 1,
                seq: Some(65_535),
            },
        ] {
            let body = header.encode(b"payload");
            assert_eq!(body.len(), header.len() + 7);
            let (decoded, payload) = DatagramHeader::decode(body, sequenced).unwrap();
            assert_eq!((decoded, &payload[..]), (header, &b"payload"[..]));
        }
        assert_eq!(
            DatagramHeader::decode(Bytes::new(), sequenced),
            Err(FrameError::Truncated)
        );
        assert_eq!(
            DatagramHeader::decode(Bytes::from_static(&[1, 0]), sequenced),
            Err(FrameError::Truncated)
        );
        assert_eq!(
            DatagramHeader::decode(Bytes::from_static(&[9]), sequenced),
            Err(FrameError::UnknownChannel(9))
        );
    }

    #[test]
    fn packed_messages_round_trip_and_a_lone_one_stays_plain() {
        let header = |channel| DatagramHeader { channel, seq: None };
        let mut packer = Packer::default();
        assert_eq!(packer.finish(), None);
        packer.push(header(3), b"alone", 64);
        assert_eq!(packer.finish().as_deref(), Some(&b"\x03alone"[..]));
        assert_eq!(packer.finish(), None);
        packer.push(header(1), b"one", 64);
        assert_eq!(packer.len_with(4), 2 + 2 + 4 + 2 + 4);
        packer.push(header(2), b"two", 64);
        let body = packer.finish().unwrap();
        assert_eq!(body.len(), 2 + 2 * (2 + 4));
        let Ok(Payload::Packed(unpacker)) = Payload::classify(body) else {
            panic!("not packed");
        };
        let bodies: Vec<Bytes> = unpacker.map(Result::unwrap).collect();
        assert_eq!(bodies, [&b"\x01one"[..], &b"\x02two"[..]]);
    }

    #[test]
    fn engine_frames_refuse_garbage() {
        let bad = |bytes: &'static [u8]| Payload::classify(Bytes::from_static(bytes));
        assert_eq!(bad(&[]), Err(FrameError::Truncated));
        assert_eq!(bad(&[0xFF]), Err(FrameError::Truncated));
        assert_eq!(bad(&[0xFF, 9]), Err(FrameError::UnknownFrame(9)));
        assert_eq!(bad(&[0xFF, ACKS, 1, 2]), Err(FrameError::Truncated));
        for truncated in [
            &[0xFF, PACKED, 0][..],
            &[0xFF, PACKED, 0, 5, 1],
            &[0xFF, PACKED, 0, 0],
        ] {
            let Ok(Payload::Packed(mut unpacker)) =
                Payload::classify(Bytes::from_static(truncated))
            else {
                panic!("not packed");
            };
            assert_eq!(unpacker.next(), Some(Err(FrameError::Truncated)));
            assert_eq!(unpacker.next(), None);
        }
    }

    proptest::proptest! {
        /// Any bytes from the network decode to a value or an error, never a panic.
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let sequenced = |channel: u8| (channel < 4).then_some(channel % 2 == 1);
            // Half the cases as engine frames of a known kind, which random bytes rarely are.
            let mut framed = bytes.clone();
            if let Some(first) = framed.first().copied() {
                framed.splice(..1, [ENGINE_FRAME, first % 5]);
            }
            let input = if bytes.len() % 2 == 0 { framed } else { bytes.clone() };
            let mut bodies = vec![Bytes::from(input.clone())];
            let mut payload = Payload::classify(Bytes::from(input));
            if let Ok(Payload::Tagged { inner, .. }) = payload {
                payload = Payload::classify(inner);
            }
            match payload {
                Ok(Payload::Packed(unpacker)) => bodies.extend(unpacker.flatten()),
                Ok(Payload::Acks(acks)) => drop(acks.count()),
                Ok(Payload::TagAcks(tags)) => drop(tags.count()),
                _ => {}
            }
            for body in bodies {
                let _ = DatagramHeader::decode(body, sequenced);
            }
            let _ = Hello::decode(&bytes);
            let _ = pairing_token(&bytes);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = take_frame(&mut buf, 16) {}
        }
    }

    #[test]
    fn tags_and_tag_acks_round_trip() {
        let Ok(Payload::Tagged { tag: 7, inner }) = Payload::classify(tag(7, b"\x01abc")) else {
            panic!("not tagged");
        };
        assert_eq!(&inner[..], b"\x01abc");
        let Ok(Payload::TagAcks(tags)) = Payload::classify(TagAcks::encode(&[1, u32::MAX])) else {
            panic!("not tag acks");
        };
        assert_eq!(tags.collect::<Vec<_>>(), [1, u32::MAX]);
        let bad = |bytes: &'static [u8]| Payload::classify(Bytes::from_static(bytes));
        assert_eq!(bad(&[0xFF, TAGGED, 0, 0]), Err(FrameError::Truncated));
        assert_eq!(bad(&[0xFF, TAG_ACKS, 0, 0, 0]), Err(FrameError::Truncated));
    }

    #[test]
    fn fragments_split_within_the_datagram_size_and_classify_back() {
        let body: Vec<u8> = (0..2_500u32).map(|i| i as u8).collect();
        let frames: Vec<Bytes> = fragments(9, &body, 1_000).expect("fragments").collect();
        assert_eq!(frames.len(), 3);
        assert!(frames.iter().all(|f| f.len() <= 1_000));
        assert_eq!(
            frames.iter().map(Bytes::len).sum::<usize>(),
            fragmented_len(body.len(), 1_000)
        );
        let mut whole = Vec::new();
        for (i, frame) in frames.into_iter().enumerate() {
            let Ok(Payload::Fragment {
                message: 9,
                index,
                count: 3,
                piece,
            }) = Payload::classify(frame)
            else {
                panic!("not a fragment");
            };
            assert_eq!(usize::from(index), i);
            whole.extend_from_slice(&piece);
        }
        assert_eq!(whole, body);
        // One piece is no fragmentation; a datagram without room for a piece cannot carry any.
        assert!(fragments(1, &body[..500], 1_000).is_none());
        assert!(fragments(1, &body, FRAGMENT_HEADER).is_none());
        let bad = |bytes: &'static [u8]| Payload::classify(Bytes::from_static(bytes));
        assert_eq!(
            bad(&[0xFF, FRAGMENT, 0, 0, 0, 1, 0, 2, 0, 2, 7]),
            Err(FrameError::BadFragment)
        );
        assert_eq!(
            bad(&[0xFF, FRAGMENT, 0, 0, 0, 1, 0, 0, 0, 1, 7]),
            Err(FrameError::BadFragment)
        );
        assert_eq!(
            bad(&[0xFF, FRAGMENT, 0, 0, 0, 1, 0, 0, 0, 2]),
            Err(FrameError::Truncated)
        );
    }

    #[test]
    fn acks_round_trip() {
        let body = Acks::encode([(2u8, 7u64), (3, u64::MAX)].into_iter());
        let Ok(Payload::Acks(acks)) = Payload::classify(body) else {
            panic!("not acks");
        };
        assert_eq!(acks.collect::<Vec<_>>(), [(2, 7), (3, u64::MAX)]);
    }

    #[test]
    fn frames_split_only_when_whole_and_within_the_limit() {
        let mut buf = BytesMut::new();
        put_frame(&mut buf, b"one");
        put_frame(&mut buf, b"");
        put_frame(&mut buf, b"three");
        let whole = buf.clone();
        let mut partial = BytesMut::from(&whole[..whole.len() - 1]);
        assert_eq!(
            take_frame(&mut buf, 16).unwrap().as_deref(),
            Some(&b"one"[..])
        );
        assert_eq!(take_frame(&mut buf, 16).unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(
            take_frame(&mut buf, 16).unwrap().as_deref(),
            Some(&b"three"[..])
        );
        assert_eq!(take_frame(&mut buf, 16), Ok(None));
        take_frame(&mut partial, 16).unwrap();
        take_frame(&mut partial, 16).unwrap();
        assert_eq!(take_frame(&mut partial, 16), Ok(None));
        let mut huge = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        assert_eq!(
            take_frame(&mut huge, 16),
            Err(FrameError::TooLong {
                len: u32::MAX as usize,
                max: 16
            })
        );
    }
}
