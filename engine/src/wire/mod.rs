//! Byte layouts only: encoding and decoding of packets and frames, no state.
//!
//! `engine/PROTOCOL.md` documents every layout byte by byte. Decoding never panics and never
//! allocates: it borrows from the datagram and returns a [`DecodeError`] for anything malformed.

mod frame;
mod packet;
#[cfg(test)]
mod proptests;
mod secure;

pub(crate) use frame::{ControlKind, Frame, FrameBody, FrameReader, FrameWriter};
pub(crate) use packet::{
    AckHeader, Challenge, ConnectRequest, ConnectResponse, DataHeader, Disconnect, Handshake,
    PacketKind, Reject, ACK_DELAY_UNIT_MICROS, PROTOCOL_VERSION, REQUEST_MIN_SIZE,
};
pub(crate) use secure::{
    accept_fields, disconnect_fields, encode_accept, encode_disconnect, encode_request_with_token,
    encode_response_with_token, SecureHandshake, SECURE_ACCEPT_LEN,
};

use thiserror::Error;

/// Why a datagram could not be decoded. Each variant is counted in the stats.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// The datagram was empty.
    #[error("empty datagram")]
    Empty,
    /// The datagram ended in the middle of a field.
    #[error("datagram truncated")]
    Truncated,
    /// The packet kind is not one this version knows.
    #[error("unknown packet kind {0}")]
    UnknownKind(u8),
    /// Bits reserved for future use were set.
    #[error("reserved bits set")]
    ReservedBits,
    /// A variable-length integer was longer than allowed.
    #[error("varint too long")]
    VarintOverflow,
    /// A length field points past the end of the datagram.
    #[error("length runs past the end of the datagram")]
    LengthOverrun,
    /// A frame names a channel the layout does not have.
    #[error("unknown channel {0}")]
    UnknownChannel(u8),
    /// A frame type that this version does not know.
    #[error("unknown frame type")]
    UnknownFrame,
    /// Fragment index or count out of range.
    #[error("invalid fragment header")]
    InvalidFragment,
    /// A connection request smaller than the padded minimum.
    #[error("connection request below the padded minimum size")]
    RequestTooSmall,
    /// Bytes after the end of a fixed-size packet.
    #[error("trailing bytes after a fixed-size packet")]
    TrailingBytes,
}

/// A bounds-checked cursor over received bytes.
#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let byte = *self.bytes.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(byte)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let slice = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_be_bytes)
    }

    /// LEB128, at most 10 bytes, rejecting values above `u64::MAX`.
    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for index in 0..10 {
            let byte = self.u8()?;
            let low = u64::from(byte & 0x7f);
            if index == 9 && low > 1 {
                return Err(DecodeError::VarintOverflow);
            }
            value |= low << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::VarintOverflow)
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(len).ok_or(DecodeError::Truncated)?;
        let slice = self
            .bytes
            .get(self.pos..end)
            .ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }

    pub(crate) fn skip(&mut self, len: usize) -> Result<(), DecodeError> {
        self.take(len).map(|_| ())
    }

    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}

/// A cursor writing into a caller-owned buffer. Writers check capacity before writing with
/// [`Writer::remaining`]; writing past the end is a bug in the planner and panics in debug only
/// through slice indexing, so every write goes through `put`, which reports overflow instead.
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

/// The buffer given to a writer was too small; the packet planner must not let this happen.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[error("output buffer too small")]
pub(crate) struct BufferTooSmall;

impl<'a> Writer<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn put(&mut self, bytes: &[u8]) -> Result<(), BufferTooSmall> {
        let end = self.pos + bytes.len();
        let dst = self.buf.get_mut(self.pos..end).ok_or(BufferTooSmall)?;
        dst.copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    pub(crate) fn u8(&mut self, value: u8) -> Result<(), BufferTooSmall> {
        self.put(&[value])
    }

    pub(crate) fn u16(&mut self, value: u16) -> Result<(), BufferTooSmall> {
        self.put(&value.to_be_bytes())
    }

    pub(crate) fn u32(&mut self, value: u32) -> Result<(), BufferTooSmall> {
        self.put(&value.to_be_bytes())
    }

    pub(crate) fn u64(&mut self, value: u64) -> Result<(), BufferTooSmall> {
        self.put(&value.to_be_bytes())
    }

    pub(crate) fn varint(&mut self, mut value: u64) -> Result<(), BufferTooSmall> {
        if value < 0x80 {
            // The common case (lengths below 128), without the general loop's copy.
            return self.u8(value as u8);
        }
        let mut tmp = [0u8; 10];
        let mut len = 0;
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                tmp[len] = byte;
                len += 1;
                break;
            }
            tmp[len] = byte | 0x80;
            len += 1;
        }
        self.put(&tmp[..len])
    }

    pub(crate) fn zeros(&mut self, len: usize) -> Result<(), BufferTooSmall> {
        let end = self.pos + len;
        let dst = self.buf.get_mut(self.pos..end).ok_or(BufferTooSmall)?;
        dst.fill(0);
        self.pos = end;
        Ok(())
    }

    /// Removes `len` bytes at `at`, shifting everything after it left.
    pub(crate) fn remove(&mut self, at: usize, len: usize) {
        self.buf.copy_within(at + len..self.pos, at);
        self.pos -= len;
    }

    pub(crate) fn buffer_mut(&mut self) -> &mut [u8] {
        self.buf
    }
}

/// Bytes a varint of `value` takes.
pub(crate) fn varint_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.max(1).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip() {
        for value in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut buf = [0u8; 10];
            let mut writer = Writer::new(&mut buf);
            writer.varint(value).unwrap();
            let len = writer.position();
            assert_eq!(len, varint_len(value));
            let mut reader = Reader::new(&buf[..len]);
            assert_eq!(reader.varint().unwrap(), value);
            assert!(reader.is_empty());
        }
    }

    #[test]
    fn varint_rejects_overlong_and_truncated() {
        assert_eq!(
            Reader::new(&[0xff; 11]).varint(),
            Err(DecodeError::VarintOverflow)
        );
        assert_eq!(
            Reader::new(&[0x80, 0x80]).varint(),
            Err(DecodeError::Truncated)
        );
        let mut too_big = [0xffu8; 10];
        too_big[9] = 0x02;
        assert_eq!(
            Reader::new(&too_big).varint(),
            Err(DecodeError::VarintOverflow)
        );
    }

    #[test]
    fn take_never_overruns() {
        let mut reader = Reader::new(&[1, 2, 3]);
        assert_eq!(reader.take(usize::MAX), Err(DecodeError::Truncated));
        assert_eq!(reader.take(4), Err(DecodeError::Truncated));
        assert_eq!(reader.take(3).unwrap(), &[1, 2, 3]);
    }
}
