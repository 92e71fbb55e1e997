//! Packet encoders and a reply decoder for hostile-input tests: build any packet the wire format
//! can express, including ones no honest peer sends (a fragment count of 0, an ack of a packet
//! never sent), with the engine's own encoders, so that tests do not write the byte layouts of
//! `engine/PROTOCOL.md` a second time. Unsecured layouts only.
//!
//! ```
//! use tickwire::fuzzing::forge::{self, ForgedFrame, Reply};
//! use tickwire::{ChannelLayout, Config};
//!
//! let fingerprint = forge::fingerprint(&ChannelLayout::default());
//! let request = forge::request(forge::PROTOCOL_VERSION, Config::default().protocol_id, fingerprint, 3);
//! assert_eq!(request.len(), forge::REQUEST_MIN_SIZE);
//! let ping = forge::data(7, None, &[ForgedFrame::Ping]);
//! assert_eq!(ping, [0x00, 0x00, 0x07, 0x80]);
//! assert_eq!(forge::reply(&[0xe0]), Some(Reply::NoSession));
//! ```

use crate::config::{ChannelKind, ChannelLayout};
use crate::cookie::{Cookie, COOKIE_LEN};
use crate::wire::{
    AckHeader, ConnectRequest, ConnectResponse, ControlKind, DataHeader, Disconnect, FrameBody,
    FrameWriter, Handshake, Writer,
};

/// The protocol version this engine speaks.
pub const PROTOCOL_VERSION: u16 = crate::wire::PROTOCOL_VERSION;

/// The padded size of a connection request; shorter ones are dropped.
pub const REQUEST_MIN_SIZE: usize = crate::wire::REQUEST_MIN_SIZE;

/// The size of a handshake cookie.
pub const COOKIE_SIZE: usize = COOKIE_LEN;

/// The layout fingerprint a handshake carries for `layout`.
pub fn fingerprint(layout: &ChannelLayout) -> u32 {
    layout.fingerprint()
}

/// A connection request, padded to [`REQUEST_MIN_SIZE`].
pub fn request(version: u16, protocol_id: u64, fingerprint: u32, nonce: u64) -> Vec<u8> {
    encode(Handshake::Request(ConnectRequest {
        version,
        protocol_id,
        fingerprint,
        nonce,
    }))
}

/// A connection response echoing `cookie`.
pub fn response(
    version: u16,
    protocol_id: u64,
    fingerprint: u32,
    nonce: u64,
    cookie: [u8; COOKIE_SIZE],
) -> Vec<u8> {
    encode(Handshake::Response(ConnectResponse {
        request: ConnectRequest {
            version,
            protocol_id,
            fingerprint,
            nonce,
        },
        cookie: Cookie(cookie),
    }))
}

/// A challenge, as a server sends it (to test clients, or as a stray packet).
pub fn challenge(nonce: u64, cookie: [u8; COOKIE_SIZE]) -> Vec<u8> {
    encode(Handshake::Challenge(crate::wire::Challenge {
        nonce,
        cookie: Cookie(cookie),
    }))
}

/// An accept.
pub fn accept(nonce: u64) -> Vec<u8> {
    encode(Handshake::Accept { nonce })
}

/// A reject with a raw reason code.
pub fn reject(nonce: u64, reason: u8) -> Vec<u8> {
    encode(Handshake::Reject(crate::wire::Reject { nonce, reason }))
}

/// A disconnect carrying `token` (the session's nonce) and `code`.
pub fn disconnect(token: u64, code: u16) -> Vec<u8> {
    encode(Handshake::Disconnect(Disconnect { token, code }))
}

/// The one-byte no-session packet.
pub fn no_session() -> Vec<u8> {
    encode(Handshake::NoSession)
}

/// One frame of a forged data packet. Nothing is checked: counts, indices and ids are written
/// as given.
#[derive(Clone, Copy, Debug)]
pub enum ForgedFrame<'a> {
    /// A message frame; `id` is present on every channel kind but `Unreliable` (pass `None`
    /// there), exactly as the receiver's layout expects.
    Message {
        /// Channel id (escaped from 31 up).
        channel: u8,
        /// Low 16 bits of the message id, or `None` for an `Unreliable` channel.
        id: Option<u16>,
        /// The payload.
        payload: &'a [u8],
    },
    /// A fragment frame.
    Fragment {
        /// Channel id (escaped from 31 up).
        channel: u8,
        /// Low 16 bits of the message id.
        id: u16,
        /// Fragment index.
        index: u32,
        /// Fragment count.
        count: u32,
        /// The piece.
        payload: &'a [u8],
    },
    /// A ping (ack-eliciting, no body).
    Ping,
    /// An ack request (ack-eliciting, no body; answered with an acknowledgement at once).
    AckRequest,
    /// An extra ack block.
    Ack {
        /// Low 16 bits of the newest packet number acknowledged.
        largest: u16,
        /// The 32 packets below it.
        bits: u32,
    },
}

/// An unsecured data packet: `packet_number`, an optional ack header `(largest, bits)` and the
/// frames, each with an explicit length.
pub fn data(packet_number: u16, ack: Option<(u16, u32)>, frames: &[ForgedFrame<'_>]) -> Vec<u8> {
    let room = 16 + frames.iter().map(frame_room).sum::<usize>();
    let mut buf = vec![0u8; room];
    let mut writer = Writer::new(&mut buf);
    let header = DataHeader {
        packet_number,
        session: None,
        ack: ack.map(|(largest, bits)| AckHeader {
            largest,
            bits,
            delay: 0,
        }),
    };
    // The buffer is sized for the header and every frame, so no write below can fail; a
    // failure would only shorten the forged packet.
    let _ = header.encode(&mut writer);
    let mut frame_writer = FrameWriter::new();
    for frame in frames {
        let _ = match *frame {
            ForgedFrame::Message {
                channel,
                id,
                payload,
            } => {
                let kind = match id {
                    Some(_) => ChannelKind::ReliableOrdered,
                    None => ChannelKind::Unreliable,
                };
                let body = FrameBody::Message {
                    id: id.unwrap_or(0),
                    payload,
                };
                frame_writer.write(&mut writer, channel, kind, &body)
            }
            ForgedFrame::Fragment {
                channel,
                id,
                index,
                count,
                payload,
            } => {
                let body = FrameBody::Fragment {
                    id,
                    index,
                    count,
                    payload,
                };
                frame_writer.write(&mut writer, channel, ChannelKind::ReliableOrdered, &body)
            }
            ForgedFrame::Ping => frame_writer.write_control(&mut writer, ControlKind::Ping),
            ForgedFrame::AckRequest => {
                frame_writer.write_control(&mut writer, ControlKind::AckRequest)
            }
            ForgedFrame::Ack { largest, bits } => {
                frame_writer.write_ack(&mut writer, largest, bits)
            }
        };
    }
    let len = writer.position();
    buf.truncate(len);
    buf
}

/// What a datagram from a server (or client) is, as far as a hostile-input test cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A challenge carrying `cookie` for `nonce`.
    Challenge {
        /// The nonce echoed.
        nonce: u64,
        /// The cookie to echo in a response.
        cookie: [u8; COOKIE_SIZE],
    },
    /// An accept.
    Accept {
        /// The nonce echoed.
        nonce: u64,
    },
    /// A reject.
    Reject {
        /// The nonce echoed.
        nonce: u64,
        /// The reason code.
        reason: u8,
    },
    /// A disconnect.
    Disconnect {
        /// The session's nonce.
        token: u64,
        /// The close code.
        code: u16,
    },
    /// The no-session packet.
    NoSession,
    /// An unsecured data packet.
    Data {
        /// Low 16 bits of its packet number.
        packet_number: u16,
        /// Its ack header's largest and bits, if any.
        ack: Option<(u16, u32)>,
    },
}

/// Decodes a datagram as an unsecured packet; `None` if it does not decode.
pub fn reply(datagram: &[u8]) -> Option<Reply> {
    if let Ok(packet) = Handshake::decode(datagram) {
        return match packet {
            Handshake::Challenge(challenge) => Some(Reply::Challenge {
                nonce: challenge.nonce,
                cookie: challenge.cookie.0,
            }),
            Handshake::Accept { nonce } => Some(Reply::Accept { nonce }),
            Handshake::Reject(reject) => Some(Reply::Reject {
                nonce: reject.nonce,
                reason: reject.reason,
            }),
            Handshake::Disconnect(disconnect) => Some(Reply::Disconnect {
                token: disconnect.token,
                code: disconnect.code,
            }),
            Handshake::NoSession => Some(Reply::NoSession),
            Handshake::Request(_) | Handshake::Response(_) => None,
        };
    }
    let (header, _) = DataHeader::decode(datagram).ok()?;
    Some(Reply::Data {
        packet_number: header.packet_number,
        ack: header.ack.map(|ack| (ack.largest, ack.bits)),
    })
}

fn encode(packet: Handshake) -> Vec<u8> {
    let mut buf = vec![0u8; REQUEST_MIN_SIZE];
    // Every handshake packet fits the padded request size.
    let len = packet.encode(&mut buf).unwrap_or(0);
    buf.truncate(len);
    buf
}

/// Bytes a frame takes at most.
fn frame_room(frame: &ForgedFrame<'_>) -> usize {
    match frame {
        ForgedFrame::Message { payload, .. } | ForgedFrame::Fragment { payload, .. } => {
            payload.len() + 24
        }
        ForgedFrame::Ping | ForgedFrame::AckRequest => 1,
        ForgedFrame::Ack { .. } => FrameWriter::ACK_FRAME_LEN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Frame, FrameReader};

    #[test]
    fn forged_packets_decode_as_written() {
        let packet = data(
            9,
            Some((3, 0b101)),
            &[
                ForgedFrame::Ping,
                ForgedFrame::AckRequest,
                ForgedFrame::Message {
                    channel: 2,
                    id: Some(4),
                    payload: b"hi",
                },
                ForgedFrame::Fragment {
                    channel: 0,
                    id: 1,
                    index: 2,
                    count: 3,
                    payload: b"xyz",
                },
                ForgedFrame::Ack {
                    largest: 1,
                    bits: 0,
                },
            ],
        );
        assert_eq!(
            reply(&packet),
            Some(Reply::Data {
                packet_number: 9,
                ack: Some((3, 0b101))
            })
        );
        let (_, offset) = DataHeader::decode(&packet).unwrap();
        let kinds: Vec<_> = ChannelLayout::default()
            .client_to_server
            .iter()
            .map(|c| c.kind)
            .collect();
        let frames: Vec<Frame> = FrameReader::new(&packet, offset, &kinds)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(frames.len(), 5);
        assert!(matches!(
            frames[3],
            Frame::Fragment {
                index: 2,
                count: 3,
                ..
            }
        ));
        assert_eq!(
            reply(&challenge(5, [1; COOKIE_SIZE])),
            Some(Reply::Challenge {
                nonce: 5,
                cookie: [1; COOKIE_SIZE]
            })
        );
        assert_eq!(reply(&no_session()), Some(Reply::NoSession));
        assert_eq!(request(1, 2, 3, 4).len(), REQUEST_MIN_SIZE);
        assert_eq!(response(1, 2, 3, 4, [0; COOKIE_SIZE]).len(), 47);
    }
}
