//! # Tickwire
//!
//! Real-time state sync over UDP for multiplayer games and IoT fleets: sequenced datagrams,
//! channels with or without acknowledgements, packing of many messages per datagram,
//! fragmentation, RTT and loss statistics, and a handshake that resists spoofing and
//! amplification.
//!
//! ## The sans-I/O contract
//!
//! The protocol core ([`Endpoint`]) opens no socket, reads no clock, spawns nothing and takes
//! no lock. Time comes in as `now: Instant`, datagrams come in as bytes, and datagrams, events and
//! the next timer deadline come out. A driver (a tokio UDP socket, a game loop, or the
//! [`sim::Simulation`] in tests) owns the I/O. Every run with the same seed and inputs is
//! identical, which makes protocol tests deterministic.
//!
//! ## The drive loop
//!
//! ```text
//! loop {
//!     wait for: a datagram, the deadline from poll_timeout(), or an application call
//!     handle_datagram(now, from, bytes) | handle_timeout(now) | send / connect / disconnect
//!     while let Some(t) = poll_transmit(now, &mut buf) { socket.send_to(&buf[..t.size], t.destination) }
//!     while let Some(event) = poll_event() { application handles it }
//! }
//! ```
//!
//! ## Layout
//!
//! | module | role |
//! |---|---|
//! | `config` | [`Config`], [`ChannelConfig`], [`ChannelLayout`]: plain structs with defaults |
//! | `seq` | 16-bit wire sequence numbers extended to 64 bits |
//! | `wire` | byte layouts of packets and frames (see `engine/PROTOCOL.md`), no state |
//! | `channel` | one send half and one receive half per delivery kind |
//! | `fragment` | bounded reassembly of large messages |
//! | `connection` | per-peer state machine: acks, loss detection, RTT, timers, close |
//! | `cookie` | stateless handshake cookies (HMAC-SHA256, rotating secret) |
//! | `secure` | connect tokens ([`TokenSpec`], [`ConnectToken`], [`PrivateKey`]), packet protection, handshake limits |
//! | `endpoint` | [`Endpoint`]: many connections on one socket, server side of the handshake |
//! | `stats` | [`ConnectionStats`], [`EndpointStats`] |
//! | [`sim`] | seeded network simulator and virtual-time harness |
//! | [`snapshot`] | world snapshots: delta against acknowledged views, bit packing, quantisation, interpolation buffer, clock sync |
//! | `driver` | the I/O layers: [`Server`] and [`Client`] on tokio (native UDP, or QUIC with feature `quic`: [`Transport`]), [`PolledEndpoint`] for game loops, [`ClientSet`] for thousands of client connections on one thread |
//! | [`typed`] | serde + postcard encoding of messages |
//! | [`fuzzing`] | harness bodies for the fuzzers in `fuzz/`, replayed by `cargo test` |
#![forbid(unsafe_code)]

mod channel;
mod config;
mod connection;
mod cookie;
mod driver;
mod endpoint;
mod error;
mod fragment;
pub mod fuzzing;
mod secure;
mod seq;
pub mod sim;
pub mod snapshot;
mod stats;
#[cfg(feature = "serde")]
pub mod typed;
mod wire;

/// The README's code blocks, compiled and run as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;

pub use config::{
    ChannelConfig, ChannelId, ChannelKind, ChannelLayout, Config, ConfigError, MAX_DATAGRAM_SIZE,
    MAX_MESSAGE_SIZE, MIN_PAYLOAD_BUDGET,
};
#[cfg(feature = "quic")]
pub use driver::QuicError;
pub use driver::{
    BindError, CertFingerprint, ClientError, ClientSetupError, DriverConfig, DriverConfigError,
    ParseFingerprintError, ParseTransportError, PolledEndpoint, QuicConfig, ServerCertificate,
    ServerVerification, Transport, ALPN,
};
#[cfg(feature = "tokio")]
pub use driver::{Client, Server};
#[cfg(feature = "client-set")]
pub use driver::{ClientKey, ClientSet, ClientSetError};
pub use endpoint::{Endpoint, Transmit};
pub use error::{ConnectError, SendError};
pub use secure::{
    verify_token, ClientId, ConnectToken, IssueError, KeyFileError, KeyParseError, PrivateKey,
    Security, TokenCheck, TokenError, TokenSecurity, TokenSpec, VerifiedToken, KEY_LEN,
    MAX_TOKEN_SERVERS, MAX_USER_DATA, TOKEN_VERSION,
};
pub use stats::{ConnectionStats, DropCounters, EndpointStats, RecvChannelStats, SendChannelStats};
pub use wire::DecodeError;

/// Identifies a connection on one [`Endpoint`]. Never reused by that endpoint.
///
/// Displays as `#` and the number (`#3`); the ids of QUIC sessions, which have
/// [`QUIC_BIT`](Self::QUIC_BIT) set, as `#q` and their number without it (`#q3`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u64);

impl ConnectionId {
    /// Set in the ids a [`Server`]'s QUIC listener hands out (and in a QUIC [`Client`]'s own),
    /// so that they never collide with the native endpoint's, which count up from zero.
    /// Hybrid connections go by their native half's id.
    pub const QUIC_BIT: u64 = 1 << 63;

    /// Whether this is the id of a whole-QUIC session ([`QUIC_BIT`](Self::QUIC_BIT) set).
    pub fn is_quic(self) -> bool {
        self.0 & Self::QUIC_BIT != 0
    }

    /// The number shown after `#` or `#q`: the id without [`QUIC_BIT`](Self::QUIC_BIT).
    pub fn number(self) -> u64 {
        self.0 & !Self::QUIC_BIT
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = if self.is_quic() { "#q" } else { "#" };
        write!(f, "{prefix}{}", self.number())
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({self})")
    }
}

/// Identifies a message within its connection and channel, in the order sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub u64);

/// What became of an unreliable message sent on a channel with `notify_delivery`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Every packet carrying it was acknowledged.
    Acked,
    /// A packet carrying it was declared lost; the message will not be delivered whole.
    Lost,
}

/// Something that happened, for the application. Drained with [`Endpoint::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed (client side), or a client was accepted (server side).
    Connected {
        /// The connection.
        connection: ConnectionId,
        /// The peer's address.
        remote: SocketAddr,
        /// What carries it: `Native` from an [`Endpoint`] and the native driver; from a
        /// [`Server`] serving QUIC, `Quic` for a whole-QUIC session and `Hybrid` for a paired
        /// hybrid connection. Never `Auto`.
        transport: Transport,
    },
    /// A message arrived, with the guarantees of its channel's kind.
    Message {
        /// The connection.
        connection: ConnectionId,
        /// The channel it arrived on.
        channel: ChannelId,
        /// The payload: a zero-copy slice of the datagram where it was not fragmented.
        data: Bytes,
    },
    /// The fate of a message on a channel with `notify_delivery`.
    Delivery {
        /// The connection.
        connection: ConnectionId,
        /// The channel it was sent on.
        channel: ChannelId,
        /// The id `send` returned.
        message: MessageId,
        /// Acknowledged or lost.
        outcome: DeliveryOutcome,
    },
    /// The connection ended (or never started). No more events follow for it.
    Disconnected {
        /// The connection.
        connection: ConnectionId,
        /// Why.
        reason: DisconnectReason,
    },
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisconnectReason {
    /// This side called [`Endpoint::disconnect`] with this code.
    Local {
        /// The application's code.
        code: u16,
    },
    /// The peer closed with this code (codes from 0xFF00 up are the engine's own:
    /// 0xFFF1 data unacknowledged, 0xFFF2 shutdown; 0xFFF4, never sent, when the server said
    /// it has no session for this client: it restarted, or the client's address changed).
    Remote {
        /// The peer's code.
        code: u16,
    },
    /// Nothing was received for the configured `idle_timeout`.
    Timeout,
    /// The server never answered the handshake within `handshake_timeout`.
    HandshakeTimeout,
    /// The server refused the connection.
    Rejected(RejectReason),
    /// Reliable data stayed unacknowledged for `ack_timeout`: the peer stopped acknowledging.
    Unacknowledged,
    /// The same client reconnected from the same address with a new session.
    Replaced,
    /// This endpoint was shut down with [`Endpoint::shutdown`].
    Shutdown,
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local { code } => write!(f, "closed locally (code {code})"),
            Self::Remote { code } => write!(f, "closed by the peer (code {code})"),
            Self::Timeout => write!(f, "the peer went silent (idle timeout)"),
            Self::HandshakeTimeout => write!(
                f,
                "the server did not answer: is it running, and is the address and port right?"
            ),
            Self::Rejected(reason) => write!(f, "refused by the server: {reason}"),
            Self::Unacknowledged => write!(f, "the peer stopped acknowledging reliable data"),
            Self::Replaced => write!(f, "replaced by a new session from the same address"),
            Self::Shutdown => write!(f, "the endpoint shut down"),
        }
    }
}

/// Why a server refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// The server has `max_connections` clients.
    ServerFull,
    /// The server speaks another version of the wire protocol.
    VersionMismatch,
    /// The server's `protocol_id` differs: another game or product.
    ProtocolMismatch,
    /// The server's channel layout differs.
    ChannelMismatch,
    /// A reason this version does not know.
    Unknown(u8),
}

impl RejectReason {
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::ServerFull => 1,
            Self::VersionMismatch => 2,
            Self::ProtocolMismatch => 3,
            Self::ChannelMismatch => 4,
            Self::Unknown(code) => code,
        }
    }

    pub(crate) fn from_code(code: u8) -> Self {
        match code {
            1 => Self::ServerFull,
            2 => Self::VersionMismatch,
            3 => Self::ProtocolMismatch,
            4 => Self::ChannelMismatch,
            other => Self::Unknown(other),
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ServerFull => write!(f, "the server is full; try again later"),
            Self::VersionMismatch => {
                write!(
                    f,
                    "the server runs another Tickwire protocol version; upgrade one side"
                )
            }
            Self::ProtocolMismatch => {
                write!(f, "the server runs another application (protocol id)")
            }
            Self::ChannelMismatch => {
                write!(
                    f,
                    "the server uses another channel layout; build both from the same config"
                )
            }
            Self::Unknown(code) => write!(f, "unknown reason {code}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectionId;

    #[test]
    fn connection_ids_display_short_and_quic_ids_with_a_q() {
        assert_eq!(ConnectionId(3).to_string(), "#3");
        let quic = ConnectionId(ConnectionId::QUIC_BIT | 3);
        assert!(quic.is_quic() && !ConnectionId(3).is_quic());
        assert_eq!(quic.number(), 3);
        assert_eq!(quic.to_string(), "#q3");
        assert_eq!(format!("{quic:?}"), "ConnectionId(#q3)");
    }
}
