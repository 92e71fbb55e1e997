//! Secure-mode handshake and disconnect packets: the unsecured layouts with bit `0x01` of the
//! first byte set and a connect token (or an AEAD tag) added. Unsecured endpoints refuse that
//! bit (`ReservedBits`), so the two modes never misread each other.

use std::ops::Range;

use super::packet::{decode_request, encode_request, PacketKind, REQUEST_MIN_SIZE};
use super::{BufferTooSmall, ConnectRequest, DecodeError, Reader, Writer};
use crate::cookie::{Cookie, COOKIE_LEN};

/// Bit of a handshake packet's first byte that marks the secure layout.
pub(crate) const FLAG_SECURE: u8 = 0x01;
/// Length of the tag on a secure disconnect.
pub(crate) const DISCONNECT_TAG_LEN: usize = 16;
/// Length of a secure disconnect's authenticated fields: first byte, nonce, code.
pub(crate) const DISCONNECT_FIELDS_LEN: usize = 1 + 8 + 2;
/// Largest sealed token part a request may carry.
const MAX_TOKEN_LEN: usize = crate::secure::MAX_SEALED_LEN;

/// A secure handshake packet; token bytes are ranges of the datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SecureHandshake {
    /// Connection request with a sealed token, padded to [`REQUEST_MIN_SIZE`].
    Request {
        request: ConnectRequest,
        token: Range<usize>,
    },
    /// Connection response: the request, the cookie, the sealed token again.
    Response {
        request: ConnectRequest,
        cookie: Cookie,
        token: Range<usize>,
    },
    /// Accept with the server's key-derivation salt and an AEAD tag over both fields.
    Accept {
        nonce: u64,
        salt: u64,
        tag: [u8; DISCONNECT_TAG_LEN],
    },
    /// Disconnect with an AEAD tag over its fields.
    Disconnect {
        token: u64,
        code: u16,
        tag: [u8; DISCONNECT_TAG_LEN],
    },
}

impl SecureHandshake {
    /// Whether `datagram` is a handshake packet with the secure bit set.
    pub(crate) fn is_secure(datagram: &[u8]) -> bool {
        datagram
            .first()
            .is_some_and(|first| first >> 5 != PacketKind::Data as u8 && first & FLAG_SECURE != 0)
    }

    pub(crate) fn decode(datagram: &[u8]) -> Result<Self, DecodeError> {
        let kind = PacketKind::of(datagram)?;
        let mut reader = Reader::new(datagram);
        let first = reader.u8()?;
        if first & 0x1f != FLAG_SECURE {
            return Err(DecodeError::ReservedBits);
        }
        let packet = match kind {
            PacketKind::ConnectRequest => {
                if datagram.len() < REQUEST_MIN_SIZE {
                    return Err(DecodeError::RequestTooSmall);
                }
                let request = decode_request(&mut reader)?;
                let token = token_range(&mut reader)?;
                // The rest is padding.
                return Ok(Self::Request { request, token });
            }
            PacketKind::ConnectResponse => {
                let request = decode_request(&mut reader)?;
                let cookie = Cookie(reader.array::<COOKIE_LEN>()?);
                let token = token_range(&mut reader)?;
                Self::Response {
                    request,
                    cookie,
                    token,
                }
            }
            PacketKind::Accept => Self::Accept {
                nonce: reader.u64()?,
                salt: reader.u64()?,
                tag: reader.array()?,
            },
            PacketKind::Disconnect => Self::Disconnect {
                token: reader.u64()?,
                code: reader.u16()?,
                tag: reader.array()?,
            },
            _ => return Err(DecodeError::ReservedBits),
        };
        reader.finish()?;
        Ok(packet)
    }
}

/// Writes a secure request carrying `token`, padded; returns the length.
pub(crate) fn encode_request_with_token(
    buf: &mut [u8],
    request: &ConnectRequest,
    token: &[u8],
) -> Result<usize, BufferTooSmall> {
    let mut writer = Writer::new(buf);
    writer.u8(PacketKind::ConnectRequest.first_byte() | FLAG_SECURE)?;
    encode_request(&mut writer, request)?;
    put_token(&mut writer, token)?;
    let padding = REQUEST_MIN_SIZE.saturating_sub(writer.position());
    writer.zeros(padding)?;
    Ok(writer.position())
}

/// Writes a secure response; returns the length.
pub(crate) fn encode_response_with_token(
    buf: &mut [u8],
    request: &ConnectRequest,
    cookie: &Cookie,
    token: &[u8],
) -> Result<usize, BufferTooSmall> {
    let mut writer = Writer::new(buf);
    writer.u8(PacketKind::ConnectResponse.first_byte() | FLAG_SECURE)?;
    encode_request(&mut writer, request)?;
    writer.put(&cookie.0)?;
    put_token(&mut writer, token)?;
    Ok(writer.position())
}

/// Writes a secure disconnect's fields (the associated data) into `buf`.
pub(crate) fn disconnect_fields(token: u64, code: u16) -> [u8; DISCONNECT_FIELDS_LEN] {
    let mut out = [0u8; DISCONNECT_FIELDS_LEN];
    out[0] = PacketKind::Disconnect.first_byte() | FLAG_SECURE;
    out[1..9].copy_from_slice(&token.to_be_bytes());
    out[9..].copy_from_slice(&code.to_be_bytes());
    out
}

/// Length of a secure accept: first byte, nonce, salt, tag.
pub(crate) const SECURE_ACCEPT_LEN: usize = ACCEPT_FIELDS_LEN + DISCONNECT_TAG_LEN;
/// Length of a secure accept's authenticated fields.
pub(crate) const ACCEPT_FIELDS_LEN: usize = 1 + 8 + 8;

/// A secure accept's authenticated fields.
pub(crate) fn accept_fields(nonce: u64, salt: u64) -> [u8; ACCEPT_FIELDS_LEN] {
    let mut out = [0u8; ACCEPT_FIELDS_LEN];
    out[0] = PacketKind::Accept.first_byte() | FLAG_SECURE;
    out[1..9].copy_from_slice(&nonce.to_be_bytes());
    out[9..].copy_from_slice(&salt.to_be_bytes());
    out
}

/// A whole secure accept.
pub(crate) fn encode_accept(
    fields: &[u8; ACCEPT_FIELDS_LEN],
    tag: &[u8; DISCONNECT_TAG_LEN],
) -> [u8; SECURE_ACCEPT_LEN] {
    let mut out = [0u8; SECURE_ACCEPT_LEN];
    out[..ACCEPT_FIELDS_LEN].copy_from_slice(fields);
    out[ACCEPT_FIELDS_LEN..].copy_from_slice(tag);
    out
}

/// Writes a secure disconnect; returns the length.
pub(crate) fn encode_disconnect(
    buf: &mut [u8],
    fields: &[u8; DISCONNECT_FIELDS_LEN],
    tag: &[u8; DISCONNECT_TAG_LEN],
) -> Result<usize, BufferTooSmall> {
    let mut writer = Writer::new(buf);
    writer.put(fields)?;
    writer.put(tag)?;
    Ok(writer.position())
}

fn put_token(writer: &mut Writer<'_>, token: &[u8]) -> Result<(), BufferTooSmall> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(BufferTooSmall);
    }
    writer.u16(token.len() as u16)?;
    writer.put(token)
}

fn token_range(reader: &mut Reader<'_>) -> Result<Range<usize>, DecodeError> {
    let len = usize::from(reader.u16()?);
    if len > MAX_TOKEN_LEN {
        return Err(DecodeError::LengthOverrun);
    }
    let start = reader.position();
    reader.skip(len)?;
    Ok(start..start + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_packets_round_trip_and_truncations_fail() {
        let request = ConnectRequest {
            version: 1,
            protocol_id: 2,
            fingerprint: 3,
            nonce: 5,
        };
        let token = [9u8; 300];
        let cookie = Cookie([4; COOKIE_LEN]);
        let mut buf = [0u8; 2048];
        let len = encode_request_with_token(&mut buf, &request, &token).unwrap();
        assert_eq!(len, REQUEST_MIN_SIZE);
        let Ok(SecureHandshake::Request {
            request: got,
            token: range,
        }) = SecureHandshake::decode(&buf[..len])
        else {
            panic!("request did not decode");
        };
        assert_eq!((got, &buf[range]), (request, &token[..]));
        let len = encode_response_with_token(&mut buf, &request, &cookie, &token).unwrap();
        assert!(matches!(
            SecureHandshake::decode(&buf[..len]),
            Ok(SecureHandshake::Response { .. })
        ));
        for cut in 0..len {
            assert!(SecureHandshake::decode(&buf[..cut]).is_err());
        }
        let fields = disconnect_fields(5, 7);
        let len = encode_disconnect(&mut buf, &fields, &[1; 16]).unwrap();
        assert_eq!(
            SecureHandshake::decode(&buf[..len]),
            Ok(SecureHandshake::Disconnect {
                token: 5,
                code: 7,
                tag: [1; 16]
            })
        );
        let accept = encode_accept(&accept_fields(5, 9), &[2; 16]);
        assert_eq!(
            SecureHandshake::decode(&accept),
            Ok(SecureHandshake::Accept {
                nonce: 5,
                salt: 9,
                tag: [2; 16]
            })
        );
        for cut in 0..accept.len() {
            assert!(SecureHandshake::decode(&accept[..cut]).is_err());
        }
        // The unsecured decoder refuses the secure bit.
        assert_eq!(
            super::super::Handshake::decode(&buf[..len]),
            Err(DecodeError::ReservedBits)
        );
    }
}
