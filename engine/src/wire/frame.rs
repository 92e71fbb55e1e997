//! Frames: the messages, fragments and control signals packed after a data header.
//!
//! First byte of a frame: `TT L CCCCC`. `TT` is the type (0 message, 1 fragment, 2 control),
//! `L` says an explicit length follows (the last frame of a packet omits it and runs to the end),
//! `CCCCC` is the channel (31 = the channel id follows in the next byte) or the control kind.

use std::ops::Range;

use super::{varint_len, BufferTooSmall, DecodeError, Reader, Writer};
use crate::config::ChannelKind;

const TYPE_MESSAGE: u8 = 0;
const TYPE_FRAGMENT: u8 = 1;
const TYPE_CONTROL: u8 = 2;
const FLAG_LENGTH: u8 = 0x20;
const CHANNEL_MASK: u8 = 0x1f;
const CHANNEL_ESCAPE: u8 = 31;
const CONTROL_PATH_CHALLENGE: u8 = 2;
const CONTROL_PATH_RESPONSE: u8 = 3;
const CONTROL_ACK_REQUEST: u8 = 4;

/// Largest fragment count the wire format allows; channels enforce tighter limits.
pub(crate) const MAX_FRAGMENT_COUNT: u64 = 1 << 16;

/// Control signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ControlKind {
    /// Asks for an acknowledgement; used as keepalive and RTT probe.
    Ping = 0,
    /// Asks for an acknowledgement at once, whatever the receiver's ack delay
    /// (`Endpoint::request_ack`).
    AckRequest = CONTROL_ACK_REQUEST as isize,
}

/// One decoded frame; payloads are byte ranges of the datagram, so that the receiver can hand
/// out zero-copy slices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    Message {
        channel: u8,
        /// Low 16 bits of the message id (sequenced and reliable kinds), 0 for unreliable.
        id: u16,
        payload: Range<usize>,
    },
    Fragment {
        channel: u8,
        id: u16,
        index: u32,
        count: u32,
        payload: Range<usize>,
    },
    Control(ControlKind),
    /// Secure sessions only: proves the peer receives at the address this packet went to; the
    /// peer echoes the 8 bytes in a [`Frame::PathResponse`].
    PathChallenge([u8; 8]),
    /// Secure sessions only: the echo of a [`Frame::PathChallenge`].
    PathResponse([u8; 8]),
    /// An extra acknowledgement block: `largest` and the 32 packets below it, like the header's.
    Ack {
        largest: u16,
        bits: u32,
    },
}

/// What a frame carries, for the writer.
#[derive(Clone, Copy, Debug)]
pub(crate) enum FrameBody<'p> {
    Message {
        id: u16,
        payload: &'p [u8],
    },
    Fragment {
        id: u16,
        index: u32,
        count: u32,
        payload: &'p [u8],
    },
}

/// Iterates over the frames of a data packet; stops at the first error.
pub(crate) struct FrameReader<'a, 'k> {
    reader: Reader<'a>,
    base: usize,
    kinds: &'k [ChannelKind],
    failed: bool,
    path_frames: bool,
}

impl<'a, 'k> FrameReader<'a, 'k> {
    /// Frames in `datagram[offset..]`, decoded against the receiving direction's channel kinds.
    pub(crate) fn new(datagram: &'a [u8], offset: usize, kinds: &'k [ChannelKind]) -> Self {
        Self {
            reader: Reader::new(datagram.get(offset..).unwrap_or_default()),
            base: offset,
            kinds,
            failed: false,
            path_frames: false,
        }
    }

    /// Also accepts the path frames of secure sessions (refused as `UnknownFrame` otherwise).
    pub(crate) fn with_path_frames(mut self) -> Self {
        self.path_frames = true;
        self
    }

    fn frame(&mut self) -> Result<Frame, DecodeError> {
        let first = self.reader.u8()?;
        let kind = first >> 6;
        let has_length = first & FLAG_LENGTH != 0;
        let low = first & CHANNEL_MASK;
        if kind == TYPE_CONTROL {
            if has_length {
                return Err(DecodeError::ReservedBits);
            }
            return match low {
                0 => Ok(Frame::Control(ControlKind::Ping)),
                CONTROL_ACK_REQUEST => Ok(Frame::Control(ControlKind::AckRequest)),
                1 => Ok(Frame::Ack {
                    largest: self.reader.u16()?,
                    bits: self.reader.u32()?,
                }),
                CONTROL_PATH_CHALLENGE if self.path_frames => {
                    Ok(Frame::PathChallenge(self.reader.array()?))
                }
                CONTROL_PATH_RESPONSE if self.path_frames => {
                    Ok(Frame::PathResponse(self.reader.array()?))
                }
                _ => Err(DecodeError::UnknownFrame),
            };
        }
        if kind != TYPE_MESSAGE && kind != TYPE_FRAGMENT {
            return Err(DecodeError::UnknownFrame);
        }
        let channel = if low == CHANNEL_ESCAPE {
            self.reader.u8()?
        } else {
            low
        };
        let channel_kind = *self
            .kinds
            .get(usize::from(channel))
            .ok_or(DecodeError::UnknownChannel(channel))?;
        let id = if kind == TYPE_FRAGMENT || channel_kind != ChannelKind::Unreliable {
            self.reader.u16()?
        } else {
            0
        };
        let fragment = if kind == TYPE_FRAGMENT {
            let index = self.reader.varint()?;
            let count = self.reader.varint()?;
            if count == 0 || index >= count || count > MAX_FRAGMENT_COUNT {
                return Err(DecodeError::InvalidFragment);
            }
            Some((index as u32, count as u32))
        } else {
            None
        };
        let len = if has_length {
            let len = self.reader.varint()?;
            if len > self.reader.remaining() as u64 {
                return Err(DecodeError::LengthOverrun);
            }
            len as usize
        } else {
            self.reader.remaining()
        };
        let start = self.base + self.reader.position();
        self.reader.skip(len)?;
        let payload = start..start + len;
        Ok(match fragment {
            Some((index, count)) => Frame::Fragment {
                channel,
                id,
                index,
                count,
                payload,
            },
            None => Frame::Message {
                channel,
                id,
                payload,
            },
        })
    }
}

impl Iterator for FrameReader<'_, '_> {
    type Item = Result<Frame, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.reader.is_empty() {
            return None;
        }
        let frame = self.frame();
        self.failed = frame.is_err();
        Some(frame)
    }
}

/// Writes frames after a data header, omitting the last frame's length when finished.
pub(crate) struct FrameWriter {
    /// Position of the last frame's first byte, of its length varint, and the varint's size.
    last: Option<(usize, usize, usize)>,
    /// Ack-eliciting frames written (all but ack frames).
    count: usize,
}

impl FrameWriter {
    pub(crate) fn new() -> Self {
        Self {
            last: None,
            count: 0,
        }
    }

    /// Ack-eliciting frames written so far.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// Bytes a frame takes with its explicit length.
    pub(crate) fn frame_len(channel: u8, kind: ChannelKind, body: &FrameBody<'_>) -> usize {
        let channel_len = if channel >= CHANNEL_ESCAPE { 2 } else { 1 };
        match body {
            FrameBody::Message { payload, .. } => {
                let id_len = if kind == ChannelKind::Unreliable {
                    0
                } else {
                    2
                };
                channel_len + id_len + varint_len(payload.len() as u64) + payload.len()
            }
            FrameBody::Fragment {
                index,
                count,
                payload,
                ..
            } => {
                channel_len
                    + 2
                    + varint_len(u64::from(*index))
                    + varint_len(u64::from(*count))
                    + varint_len(payload.len() as u64)
                    + payload.len()
            }
        }
    }

    /// Bytes of a fragment frame's header, with the length field, at most, for a payload below
    /// 64 KiB: used to size fragments.
    pub(crate) const MAX_FRAGMENT_HEADER: usize = 2 + 2 + 3 + 3 + 3;

    pub(crate) fn write(
        &mut self,
        writer: &mut Writer<'_>,
        channel: u8,
        kind: ChannelKind,
        body: &FrameBody<'_>,
    ) -> Result<(), BufferTooSmall> {
        if writer.remaining() < Self::frame_len(channel, kind, body) {
            return Err(BufferTooSmall);
        }
        let (frame_type, id, fragment, payload) = match *body {
            FrameBody::Message { id, payload } => (TYPE_MESSAGE, id, None, payload),
            FrameBody::Fragment {
                id,
                index,
                count,
                payload,
            } => (TYPE_FRAGMENT, id, Some((index, count)), payload),
        };
        let start = writer.position();
        let low = channel.min(CHANNEL_ESCAPE);
        writer.u8(frame_type << 6 | FLAG_LENGTH | low)?;
        if low == CHANNEL_ESCAPE {
            writer.u8(channel)?;
        }
        if frame_type == TYPE_FRAGMENT || kind != ChannelKind::Unreliable {
            writer.u16(id)?;
        }
        if let Some((index, count)) = fragment {
            writer.varint(u64::from(index))?;
            writer.varint(u64::from(count))?;
        }
        let len_pos = writer.position();
        writer.varint(payload.len() as u64)?;
        let len_size = writer.position() - len_pos;
        writer.put(payload)?;
        self.last = Some((start, len_pos, len_size));
        self.count += 1;
        Ok(())
    }

    pub(crate) fn write_control(
        &mut self,
        writer: &mut Writer<'_>,
        control: ControlKind,
    ) -> Result<(), BufferTooSmall> {
        writer.u8(TYPE_CONTROL << 6 | control as u8)?;
        self.last = None;
        self.count += 1;
        Ok(())
    }

    /// Bytes of a path frame.
    pub(crate) const PATH_FRAME_LEN: usize = 9;

    /// Writes a path challenge or response (secure sessions only). Ack-eliciting.
    pub(crate) fn write_path(
        &mut self,
        writer: &mut Writer<'_>,
        response: bool,
        data: [u8; 8],
    ) -> Result<(), BufferTooSmall> {
        if writer.remaining() < Self::PATH_FRAME_LEN {
            return Err(BufferTooSmall);
        }
        let low = if response {
            CONTROL_PATH_RESPONSE
        } else {
            CONTROL_PATH_CHALLENGE
        };
        writer.u8(TYPE_CONTROL << 6 | low)?;
        writer.put(&data)?;
        self.last = None;
        self.count += 1;
        Ok(())
    }

    /// Bytes of an ack frame.
    pub(crate) const ACK_FRAME_LEN: usize = 7;

    /// Writes an extra acknowledgement block. Not ack-eliciting.
    pub(crate) fn write_ack(
        &mut self,
        writer: &mut Writer<'_>,
        largest: u16,
        bits: u32,
    ) -> Result<(), BufferTooSmall> {
        if writer.remaining() < Self::ACK_FRAME_LEN {
            return Err(BufferTooSmall);
        }
        writer.u8(TYPE_CONTROL << 6 | 1)?;
        writer.u16(largest)?;
        writer.u32(bits)?;
        self.last = None;
        Ok(())
    }

    /// Drops the explicit length of the last frame, which then runs to the end of the packet.
    pub(crate) fn finish(&mut self, writer: &mut Writer<'_>) {
        if let Some((start, len_pos, len_size)) = self.last {
            if len_pos + len_size > writer.position() {
                return;
            }
            writer.buffer_mut()[start] &= !FLAG_LENGTH;
            writer.remove(len_pos, len_size);
            self.last = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [ChannelKind; 4] = [
        ChannelKind::Unreliable,
        ChannelKind::UnreliableSequenced,
        ChannelKind::ReliableOrdered,
        ChannelKind::ReliableUnordered,
    ];

    fn write_sample(buf: &mut [u8]) -> usize {
        let mut writer = Writer::new(buf);
        let mut frames = FrameWriter::new();
        let body = FrameBody::Message {
            id: 0,
            payload: b"hello",
        };
        frames.write(&mut writer, 0, KINDS[0], &body).unwrap();
        frames
            .write_control(&mut writer, ControlKind::Ping)
            .unwrap();
        frames.write_ack(&mut writer, 700, 0xffff_0000).unwrap();
        let body = FrameBody::Fragment {
            id: 9,
            index: 1,
            count: 3,
            payload: b"frag",
        };
        frames.write(&mut writer, 2, KINDS[2], &body).unwrap();
        let body = FrameBody::Message {
            id: 513,
            payload: b"last",
        };
        frames.write(&mut writer, 1, KINDS[1], &body).unwrap();
        frames.finish(&mut writer);
        writer.position()
    }

    #[test]
    fn frames_round_trip_with_implicit_last_length() {
        let mut buf = [0u8; 64];
        let len = write_sample(&mut buf);
        let mut frames: Vec<_> = FrameReader::new(&buf[..len], 0, &KINDS)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(frames.len(), 5);
        assert_eq!(
            frames.remove(2),
            Frame::Ack {
                largest: 700,
                bits: 0xffff_0000
            }
        );
        assert!(
            matches!(&frames[0], Frame::Message { channel: 0, id: 0, payload } if &buf[payload.clone()] == b"hello")
        );
        assert_eq!(frames[1], Frame::Control(ControlKind::Ping));
        assert!(
            matches!(&frames[2], Frame::Fragment { channel: 2, id: 9, index: 1, count: 3, payload } if &buf[payload.clone()] == b"frag")
        );
        assert!(
            matches!(&frames[3], Frame::Message { channel: 1, id: 513, payload } if &buf[payload.clone()] == b"last")
        );
        // 1 + 1 + 5 | 1 | 1 + 2 + 1 + 1 + 1 + 4 | 1 + 2 + 4 (no length)
        assert_eq!(len, 7 + 1 + 7 + 10 + 7);
    }

    #[test]
    fn one_small_unreliable_message_costs_one_byte() {
        let mut buf = [0u8; 100];
        let mut writer = Writer::new(&mut buf);
        let mut frames = FrameWriter::new();
        let payload = [7u8; 64];
        let body = FrameBody::Message {
            id: 0,
            payload: &payload,
        };
        frames.write(&mut writer, 0, KINDS[0], &body).unwrap();
        frames.finish(&mut writer);
        assert_eq!(writer.position(), 65);
    }

    #[test]
    fn escaped_channels_round_trip() {
        let kinds = vec![ChannelKind::ReliableUnordered; 200];
        let mut buf = [0u8; 64];
        let mut writer = Writer::new(&mut buf);
        let mut frames = FrameWriter::new();
        let body = FrameBody::Message {
            id: 1,
            payload: b"x",
        };
        frames.write(&mut writer, 150, kinds[150], &body).unwrap();
        frames.finish(&mut writer);
        let len = writer.position();
        let frame = FrameReader::new(&buf[..len], 0, &kinds)
            .next()
            .unwrap()
            .unwrap();
        assert!(matches!(
            frame,
            Frame::Message {
                channel: 150,
                id: 1,
                ..
            }
        ));
    }

    #[test]
    fn truncations_and_garbage_are_typed_errors() {
        let mut buf = [0u8; 64];
        let len = write_sample(&mut buf);
        for cut in 0..len {
            // Any prefix either decodes (implicit last length) or fails; never panics.
            for frame in FrameReader::new(&buf[..cut], 0, &KINDS) {
                let _ = frame;
            }
        }
        let bad_fragment = [TYPE_FRAGMENT << 6 | 2, 0, 1, 5, 5];
        assert_eq!(
            FrameReader::new(&bad_fragment, 0, &KINDS).next(),
            Some(Err(DecodeError::InvalidFragment))
        );
        let unknown_channel = [9u8, 1, 2];
        assert_eq!(
            FrameReader::new(&unknown_channel, 0, &KINDS).next(),
            Some(Err(DecodeError::UnknownChannel(9)))
        );
        let overrun = [FLAG_LENGTH, 0xff, 0x01, 1];
        assert_eq!(
            FrameReader::new(&overrun, 0, &KINDS).next(),
            Some(Err(DecodeError::LengthOverrun))
        );
        assert_eq!(
            FrameReader::new(&[0xc0], 0, &KINDS).next(),
            Some(Err(DecodeError::UnknownFrame))
        );
    }
}
