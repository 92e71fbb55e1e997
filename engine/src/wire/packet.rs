//! Packet headers: the first byte, the data header with its acknowledgement, and the handshake
//! and disconnect packets.

use super::{BufferTooSmall, DecodeError, Reader, Writer};
use crate::cookie::{Cookie, COOKIE_LEN};

/// Version of the wire format, checked in the handshake.
pub(crate) const PROTOCOL_VERSION: u16 = 1;

/// A connection request must be at least this large (it is padded with zeros), so that no reply
/// to an address that has not proven it can receive is ever larger than what it sent.
pub(crate) const REQUEST_MIN_SIZE: usize = 1200;

const KIND_SHIFT: u8 = 5;
const FLAG_ACK: u8 = 0x10;
const FLAG_ACK_DELAY: u8 = 0x08;
/// Secure sessions only: an 8-byte session tag follows the packet number.
const FLAG_SESSION: u8 = 0x04;
const DATA_RESERVED: u8 = 0x07;
const FLAGS_MASK: u8 = 0x1f;

/// The kind in the top three bits of every packet's first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PacketKind {
    Data = 0,
    ConnectRequest = 1,
    Challenge = 2,
    ConnectResponse = 3,
    Accept = 4,
    Reject = 5,
    Disconnect = 6,
    NoSession = 7,
}

impl PacketKind {
    pub(crate) fn of(datagram: &[u8]) -> Result<Self, DecodeError> {
        let first = *datagram.first().ok_or(DecodeError::Empty)?;
        Ok(match first >> KIND_SHIFT {
            0 => Self::Data,
            1 => Self::ConnectRequest,
            2 => Self::Challenge,
            3 => Self::ConnectResponse,
            4 => Self::Accept,
            5 => Self::Reject,
            6 => Self::Disconnect,
            _ => Self::NoSession,
        })
    }

    pub(crate) fn first_byte(self) -> u8 {
        (self as u8) << KIND_SHIFT
    }
}

/// Acknowledgement piggybacked on a data packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AckHeader {
    /// Low 16 bits of the newest packet number received.
    pub(crate) largest: u16,
    /// Bit `i` set: packet `largest - 1 - i` was received.
    pub(crate) bits: u32,
    /// Time between receiving `largest` and sending this ack, in units of 100 µs; 0 when absent.
    pub(crate) delay: u64,
}

/// Units of [`AckHeader::delay`], in microseconds.
pub(crate) const ACK_DELAY_UNIT_MICROS: u64 = 100;

/// The header of a data packet; frames follow it to the end of the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DataHeader {
    pub(crate) packet_number: u16,
    /// Secure sessions only: the session tag (the server's session salt from the accept), sent
    /// while the client may have changed address, so that the server finds the session without
    /// the address.
    pub(crate) session: Option<u64>,
    pub(crate) ack: Option<AckHeader>,
}

impl DataHeader {
    /// Decodes the header of an unsecured session's packet and returns it with the offset of
    /// the first frame.
    pub(crate) fn decode(datagram: &[u8]) -> Result<(Self, usize), DecodeError> {
        Self::decode_with(datagram, false)
    }

    /// Decodes the header of a secure session's packet, which may carry a session tag.
    pub(crate) fn decode_secure(datagram: &[u8]) -> Result<(Self, usize), DecodeError> {
        Self::decode_with(datagram, true)
    }

    fn decode_with(datagram: &[u8], secure: bool) -> Result<(Self, usize), DecodeError> {
        let mut reader = Reader::new(datagram);
        let first = reader.u8()?;
        if first >> KIND_SHIFT != PacketKind::Data as u8 {
            return Err(DecodeError::UnknownKind(first >> KIND_SHIFT));
        }
        let reserved = if secure {
            DATA_RESERVED & !FLAG_SESSION
        } else {
            DATA_RESERVED
        };
        if first & reserved != 0 || (first & FLAG_ACK_DELAY != 0 && first & FLAG_ACK == 0) {
            return Err(DecodeError::ReservedBits);
        }
        let packet_number = reader.u16()?;
        let session = if first & FLAG_SESSION != 0 {
            Some(reader.u64()?)
        } else {
            None
        };
        let ack = if first & FLAG_ACK != 0 {
            let largest = reader.u16()?;
            let bits = reader.u32()?;
            let delay = if first & FLAG_ACK_DELAY != 0 {
                reader.varint()?
            } else {
                0
            };
            Some(AckHeader {
                largest,
                bits,
                delay,
            })
        } else {
            None
        };
        Ok((
            Self {
                packet_number,
                session,
                ack,
            },
            reader.position(),
        ))
    }

    pub(crate) fn encode(&self, writer: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        let mut first = PacketKind::Data.first_byte();
        if let Some(ack) = &self.ack {
            first |= FLAG_ACK;
            if ack.delay != 0 {
                first |= FLAG_ACK_DELAY;
            }
        }
        if self.session.is_some() {
            first |= FLAG_SESSION;
        }
        writer.u8(first)?;
        writer.u16(self.packet_number)?;
        if let Some(session) = self.session {
            writer.u64(session)?;
        }
        if let Some(ack) = &self.ack {
            writer.u16(ack.largest)?;
            writer.u32(ack.bits)?;
            if ack.delay != 0 {
                writer.varint(ack.delay)?;
            }
        }
        Ok(())
    }
}

/// Client → server, padded to [`REQUEST_MIN_SIZE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnectRequest {
    pub(crate) version: u16,
    pub(crate) protocol_id: u64,
    pub(crate) fingerprint: u32,
    pub(crate) nonce: u64,
}

/// Server → client: the stateless cookie to echo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub(crate) nonce: u64,
    pub(crate) cookie: Cookie,
}

/// Client → server: the request again, with the cookie echoed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnectResponse {
    pub(crate) request: ConnectRequest,
    pub(crate) cookie: Cookie,
}

/// Server → client: why the connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reject {
    pub(crate) nonce: u64,
    pub(crate) reason: u8,
}

/// Either direction, after the handshake: the session is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Disconnect {
    /// The client's handshake nonce, which both sides know and an off-path attacker does not.
    pub(crate) token: u64,
    pub(crate) code: u16,
}

/// Every packet kind but data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handshake {
    Request(ConnectRequest),
    Challenge(Challenge),
    Response(ConnectResponse),
    Accept {
        nonce: u64,
    },
    Reject(Reject),
    Disconnect(Disconnect),
    /// Server → an address without a session: "I have no session for you" (one byte, no
    /// fields), so that a client whose address changed or whose server restarted reconnects
    /// at once instead of waiting out its idle timeout.
    NoSession,
}

impl Handshake {
    /// Decodes any packet but a data packet.
    pub(crate) fn decode(datagram: &[u8]) -> Result<Self, DecodeError> {
        let kind = PacketKind::of(datagram)?;
        let mut reader = Reader::new(datagram);
        let first = reader.u8()?;
        if first & FLAGS_MASK != 0 {
            return Err(DecodeError::ReservedBits);
        }
        let packet = match kind {
            PacketKind::Data => return Err(DecodeError::UnknownKind(0)),
            PacketKind::ConnectRequest => {
                if datagram.len() < REQUEST_MIN_SIZE {
                    return Err(DecodeError::RequestTooSmall);
                }
                let request = decode_request(&mut reader)?;
                // The rest is padding; its content is ignored.
                return Ok(Self::Request(request));
            }
            PacketKind::Challenge => Self::Challenge(Challenge {
                nonce: reader.u64()?,
                cookie: Cookie(reader.array::<COOKIE_LEN>()?),
            }),
            PacketKind::ConnectResponse => Self::Response(ConnectResponse {
                request: decode_request(&mut reader)?,
                cookie: Cookie(reader.array::<COOKIE_LEN>()?),
            }),
            PacketKind::Accept => Self::Accept {
                nonce: reader.u64()?,
            },
            PacketKind::Reject => Self::Reject(Reject {
                nonce: reader.u64()?,
                reason: reader.u8()?,
            }),
            PacketKind::Disconnect => Self::Disconnect(Disconnect {
                token: reader.u64()?,
                code: reader.u16()?,
            }),
            PacketKind::NoSession => Self::NoSession,
        };
        reader.finish()?;
        Ok(packet)
    }

    /// Encodes the packet, padding requests to [`REQUEST_MIN_SIZE`]; returns the length.
    pub(crate) fn encode(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let mut writer = Writer::new(buf);
        match self {
            Self::Request(request) => {
                writer.u8(PacketKind::ConnectRequest.first_byte())?;
                encode_request(&mut writer, request)?;
                let padding = REQUEST_MIN_SIZE.saturating_sub(writer.position());
                writer.zeros(padding)?;
            }
            Self::Challenge(challenge) => {
                writer.u8(PacketKind::Challenge.first_byte())?;
                writer.u64(challenge.nonce)?;
                writer.put(&challenge.cookie.0)?;
            }
            Self::Response(response) => {
                writer.u8(PacketKind::ConnectResponse.first_byte())?;
                encode_request(&mut writer, &response.request)?;
                writer.put(&response.cookie.0)?;
            }
            Self::Accept { nonce } => {
                writer.u8(PacketKind::Accept.first_byte())?;
                writer.u64(*nonce)?;
            }
            Self::Reject(reject) => {
                writer.u8(PacketKind::Reject.first_byte())?;
                writer.u64(reject.nonce)?;
                writer.u8(reject.reason)?;
            }
            Self::Disconnect(disconnect) => {
                writer.u8(PacketKind::Disconnect.first_byte())?;
                writer.u64(disconnect.token)?;
                writer.u16(disconnect.code)?;
            }
            Self::NoSession => writer.u8(PacketKind::NoSession.first_byte())?,
        }
        Ok(writer.position())
    }
}

pub(super) fn decode_request(reader: &mut Reader<'_>) -> Result<ConnectRequest, DecodeError> {
    Ok(ConnectRequest {
        version: reader.u16()?,
        protocol_id: reader.u64()?,
        fingerprint: reader.u32()?,
        nonce: reader.u64()?,
    })
}

pub(super) fn encode_request(
    writer: &mut Writer<'_>,
    request: &ConnectRequest,
) -> Result<(), BufferTooSmall> {
    writer.u16(request.version)?;
    writer.u64(request.protocol_id)?;
    writer.u32(request.fingerprint)?;
    writer.u64(request.nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_handshakes() -> Vec<Handshake> {
        let request = ConnectRequest {
            version: PROTOCOL_VERSION,
            protocol_id: 42,
            fingerprint: 7,
            nonce: 99,
        };
        let cookie = Cookie([5; COOKIE_LEN]);
        vec![
            Handshake::Request(request),
            Handshake::Challenge(Challenge { nonce: 99, cookie }),
            Handshake::Response(ConnectResponse { request, cookie }),
            Handshake::Accept { nonce: 99 },
            Handshake::Reject(Reject {
                nonce: 99,
                reason: 1,
            }),
            Handshake::Disconnect(Disconnect { token: 99, code: 3 }),
            Handshake::NoSession,
        ]
    }

    #[test]
    fn handshakes_round_trip_and_every_truncation_fails() {
        for packet in all_handshakes() {
            let mut buf = [0u8; 1500];
            let len = packet.encode(&mut buf).unwrap();
            assert_eq!(Handshake::decode(&buf[..len]), Ok(packet));
            for cut in 0..len {
                assert!(
                    Handshake::decode(&buf[..cut]).is_err(),
                    "{packet:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn replies_are_smaller_than_requests() {
        let mut buf = [0u8; 1500];
        let sizes: Vec<usize> = all_handshakes()
            .iter()
            .map(|p| p.encode(&mut buf).unwrap())
            .collect();
        assert_eq!(sizes[0], REQUEST_MIN_SIZE);
        // Challenge and reject answer a request; accept and reject answer a response.
        assert!(sizes[1] * 3 < sizes[0]);
        assert!(sizes[3] <= sizes[2] && sizes[4] <= sizes[2]);
    }

    #[test]
    fn data_header_round_trip_and_truncation() {
        let headers = [
            DataHeader {
                packet_number: 7,
                session: None,
                ack: None,
            },
            DataHeader {
                packet_number: 65_535,
                session: None,
                ack: Some(AckHeader {
                    largest: 3,
                    bits: 0xdead_beef,
                    delay: 0,
                }),
            },
            DataHeader {
                packet_number: 1,
                session: None,
                ack: Some(AckHeader {
                    largest: 3,
                    bits: 1,
                    delay: 300,
                }),
            },
        ];
        for header in headers {
            let mut buf = [0u8; 32];
            let mut writer = Writer::new(&mut buf);
            header.encode(&mut writer).unwrap();
            let len = writer.position();
            assert_eq!(DataHeader::decode(&buf[..len]), Ok((header, len)));
            for cut in 0..len {
                assert!(DataHeader::decode(&buf[..cut]).is_err());
            }
        }
    }

    #[test]
    fn reserved_bits_and_unknown_kinds_are_refused() {
        assert_eq!(
            DataHeader::decode(&[0x01, 0, 0]),
            Err(DecodeError::ReservedBits)
        );
        assert_eq!(
            DataHeader::decode(&[0x08, 0, 0]),
            Err(DecodeError::ReservedBits)
        );
        assert_eq!(PacketKind::of(&[0xe0]), Ok(PacketKind::NoSession));
        assert_eq!(Handshake::decode(&[0xe0]), Ok(Handshake::NoSession));
        assert_eq!(Handshake::decode(&[0xe1]), Err(DecodeError::ReservedBits));
        assert_eq!(
            Handshake::decode(&[0xe0, 0]),
            Err(DecodeError::TrailingBytes)
        );
        assert_eq!(PacketKind::of(&[]), Err(DecodeError::Empty));
        let mut small = [0u8; 100];
        small[0] = PacketKind::ConnectRequest.first_byte();
        assert_eq!(Handshake::decode(&small), Err(DecodeError::RequestTooSmall));
    }
}
