//! Endpoint and channel configuration: plain structs with safe defaults, validated once.

use std::time::Duration;

use thiserror::Error;

use crate::secure::{ConnectToken, Security};

/// The largest UDP payload Tickwire will ever build, whatever the configuration says.
pub const MAX_DATAGRAM_SIZE: usize = 65_507;

/// The smallest payload budget accepted: enough for headers and a useful fragment.
pub const MIN_PAYLOAD_BUDGET: usize = 256;

/// A channel number: an index into [`ChannelLayout::client_to_server`] or
/// [`ChannelLayout::server_to_client`], depending on the direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelId(pub u8);

/// What a channel promises about delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// May be lost, never duplicated, may arrive out of order. Cheapest: no per-message header.
    Unreliable,
    /// Latest wins: may be lost, never duplicated, and a message older than the newest one
    /// delivered is dropped, never delivered. For state that is superseded by the next update.
    UnreliableSequenced,
    /// Delivered exactly once, in the order sent, across loss, duplication and reordering.
    ReliableOrdered,
    /// Delivered exactly once, as soon as it arrives, in any order.
    ReliableUnordered,
}

impl ChannelKind {
    /// Whether messages on this kind are retransmitted until acknowledged.
    pub fn is_reliable(self) -> bool {
        matches!(self, Self::ReliableOrdered | Self::ReliableUnordered)
    }

    pub(crate) fn wire_code(self) -> u8 {
        match self {
            Self::Unreliable => 0,
            Self::UnreliableSequenced => 1,
            Self::ReliableOrdered => 2,
            Self::ReliableUnordered => 3,
        }
    }
}

/// Configuration of one channel in one direction.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelConfig {
    /// The delivery guarantee.
    pub kind: ChannelKind,
    /// Unreliable kinds only: report each message's fate with
    /// [`Event::Delivery`](crate::Event::Delivery) (acked or declared lost). On a sequenced
    /// channel, acked means the peer received it, not that it was delivered: a message that
    /// arrived after a newer one is dropped there as stale.
    /// Default `false`; costs a few bytes of bookkeeping per message in flight, nothing on the
    /// wire natively (over QUIC, a 6-byte tag per datagram and the peer's acknowledgements).
    pub notify_delivery: bool,
    /// Largest message accepted on this channel, in bytes, before or after fragmentation.
    /// Default 256 KiB. Larger messages are refused by `send` and dropped by the receiver.
    pub max_message_size: usize,
    /// Sender side: bytes that may be queued or in flight on this channel before `send` refuses
    /// more with [`SendError::BufferFull`](crate::SendError::BufferFull). Default 4 MiB.
    pub max_buffered_bytes: usize,
    /// Reliable kinds only: bytes sent from the oldest unacknowledged message on (what an
    /// ordered receiver may have to hold while a gap is filled) before new messages wait.
    /// Default 1 MiB. Higher gives more throughput on long fat links and more memory per peer;
    /// the sum over a direction's reliable channels must fit the peer's `max_reassembly_bytes`.
    pub max_in_flight_bytes: usize,
}

impl ChannelConfig {
    /// A channel of `kind` with default limits.
    pub fn new(kind: ChannelKind) -> Self {
        Self {
            kind,
            notify_delivery: false,
            max_message_size: 256 * 1024,
            max_buffered_bytes: 4 * 1024 * 1024,
            max_in_flight_bytes: 1024 * 1024,
        }
    }
}

/// The channels of a connection, per direction. Both peers must use the same layout: a
/// fingerprint of it is checked in the handshake.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelLayout {
    /// Channels the client sends on and the server receives on, indexed by [`ChannelId`].
    pub client_to_server: Vec<ChannelConfig>,
    /// Channels the server sends on and the client receives on, indexed by [`ChannelId`].
    pub server_to_client: Vec<ChannelConfig>,
}

impl ChannelLayout {
    /// The same channels in both directions.
    pub fn symmetric(channels: Vec<ChannelConfig>) -> Self {
        Self {
            client_to_server: channels.clone(),
            server_to_client: channels,
        }
    }

    /// A 32-bit FNV-1a hash of the kinds and size limits, sent in the handshake so that peers
    /// with different layouts are refused instead of misreading each other's frames.
    pub(crate) fn fingerprint(&self) -> u32 {
        let mut hash: u32 = 0x811c_9dc5;
        let mut feed = |byte: u8| {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        };
        for direction in [&self.client_to_server, &self.server_to_client] {
            feed(direction.len() as u8);
            for channel in direction {
                feed(channel.kind.wire_code());
                for byte in (channel.max_message_size as u32).to_be_bytes() {
                    feed(byte);
                }
            }
            feed(0xff);
        }
        hash
    }
}

impl Default for ChannelLayout {
    /// Four channels in each direction, one of each kind, in the order
    /// `Unreliable` (0), `UnreliableSequenced` (1), `ReliableOrdered` (2), `ReliableUnordered` (3).
    fn default() -> Self {
        Self::symmetric(vec![
            ChannelConfig::new(ChannelKind::Unreliable),
            ChannelConfig::new(ChannelKind::UnreliableSequenced),
            ChannelConfig::new(ChannelKind::ReliableOrdered),
            ChannelConfig::new(ChannelKind::ReliableUnordered),
        ])
    }
}

/// Configuration of an [`Endpoint`](crate::Endpoint). Every field has a safe default.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Application protocol id, checked in the handshake: peers with different ids are refused.
    /// Pick a random constant per game or product. Default `0x5449_434b_5749_5245` ("TICKWIRE").
    pub protocol_id: u64,
    /// The channel layout; must be identical on both peers.
    pub channels: ChannelLayout,
    /// Whether this endpoint answers connection requests (a server). Default `false`.
    pub accept_incoming: bool,
    /// Maximum number of simultaneous incoming connections; further clients are refused with
    /// [`RejectReason::ServerFull`](crate::RejectReason::ServerFull). Default 1024.
    pub max_connections: usize,
    /// Largest UDP payload built, in bytes: many messages are packed into a datagram up to this
    /// size and larger messages are fragmented. Default 1200 (safe on almost every path).
    pub payload_budget: usize,
    /// How long a client keeps trying to connect before giving up with
    /// [`DisconnectReason::HandshakeTimeout`](crate::DisconnectReason::HandshakeTimeout). Default 5 s.
    pub handshake_timeout: Duration,
    /// Interval between handshake retransmissions. Default 250 ms.
    pub handshake_resend_interval: Duration,
    /// How long a handshake cookie stays valid; the cookie secret rotates at this period. Default 10 s.
    pub cookie_lifetime: Duration,
    /// A ping (an RTT sample, and proof the peer is alive) goes out when nothing
    /// ack-eliciting has been sent for this long: inside the next packet that leaves anyway,
    /// or on its own once nothing at all was sent, or nothing received, for as long.
    /// Default 1 s.
    pub keepalive_interval: Duration,
    /// Close a connection when nothing has been received for this long. Default 10 s.
    pub idle_timeout: Duration,
    /// Close a connection with [`DisconnectReason::Unacknowledged`](crate::DisconnectReason::Unacknowledged)
    /// when reliable data stays unacknowledged for this long, counted from the data's first
    /// transmission: a peer that is heard but never acknowledges cannot hold memory forever.
    /// Also the longest a graceful close drains queued data. Default 15 s: keep it above
    /// `idle_timeout`, so that a peer that goes silent (a blackout starting while data is in
    /// flight) ends as [`DisconnectReason::Timeout`](crate::DisconnectReason::Timeout), not as
    /// `Unacknowledged`.
    pub ack_timeout: Duration,
    /// Longest an acknowledgement is held back waiting for an outgoing packet to ride on. Default 5 ms.
    pub max_ack_delay: Duration,
    /// Send an acknowledgement at once after this many packets that need one. Default 2.
    pub ack_frequency: u32,
    /// Ceiling of the congestion window, in bytes of ack-eliciting packets in flight. The
    /// window starts at 256 KiB, doubles per round trip until a loss, halves on loss (never
    /// below 256 KiB) and grows by a datagram per round trip after. Games and sensors stay far
    /// below it; it paces floods and bulk transfers to what the receiver acknowledges.
    /// Default 8 MiB.
    pub max_congestion_window: usize,
    /// Floor of the retransmission timeout. Default 10 ms.
    pub min_rto: Duration,
    /// Ceiling of the retransmission timeout, which doubles for each timeout in a row without
    /// an acknowledgement. Default 2 s.
    pub max_rto: Duration,
    /// RTT assumed before the first measurement. Default 100 ms.
    pub initial_rtt: Duration,
    /// Per connection: bytes of incoming fragments and out-of-order reliable messages held for
    /// reassembly. A peer that exceeds it is disconnected. Default 8 MiB; must be at least
    /// the largest `max_message_size`.
    pub max_reassembly_bytes: usize,
    /// Incomplete unreliable fragmented messages are dropped after this long. Default 1 s.
    pub reassembly_timeout: Duration,
    /// How many copies of a disconnect packet are sent, spaced by `disconnect_interval`. Default 10.
    pub disconnect_copies: u32,
    /// Spacing between disconnect copies. Default 10 ms.
    pub disconnect_interval: Duration,
    /// Seed for all randomness (cookie secrets, nonces). `None` draws one from the OS;
    /// set it in tests and simulations so a run replays bit for bit.
    pub seed: Option<u64>,
    /// Server: whether clients need a connect token ([`Security::Tokens`]), which also
    /// encrypts and authenticates every session. Default [`Security::Unsecured`].
    pub security: Security,
    /// Client: the token [`Endpoint::connect`](crate::Endpoint::connect) presents, making the
    /// session secure (the drivers connect this way). Default `None`: unsecured.
    pub connect_token: Option<ConnectToken>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            protocol_id: 0x5449_434b_5749_5245,
            channels: ChannelLayout::default(),
            accept_incoming: false,
            max_connections: 1024,
            payload_budget: 1200,
            handshake_timeout: Duration::from_secs(5),
            handshake_resend_interval: Duration::from_millis(250),
            cookie_lifetime: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(15),
            max_ack_delay: Duration::from_millis(5),
            ack_frequency: 2,
            max_congestion_window: 8 * 1024 * 1024,
            min_rto: Duration::from_millis(10),
            max_rto: Duration::from_secs(2),
            initial_rtt: Duration::from_millis(100),
            max_reassembly_bytes: 8 * 1024 * 1024,
            reassembly_timeout: Duration::from_secs(1),
            disconnect_copies: 10,
            disconnect_interval: Duration::from_millis(10),
            seed: None,
            security: Security::Unsecured,
            connect_token: None,
        }
    }
}

impl Config {
    /// Defaults for a server: accepts incoming connections.
    pub fn server() -> Self {
        Self {
            accept_incoming: true,
            ..Self::default()
        }
    }

    /// Defaults for a client.
    pub fn client() -> Self {
        Self::default()
    }

    /// Checks every field; called by [`Endpoint::new`](crate::Endpoint::new).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_PAYLOAD_BUDGET..=MAX_DATAGRAM_SIZE).contains(&self.payload_budget) {
            return Err(ConfigError::PayloadBudget(self.payload_budget));
        }
        for direction in [
            &self.channels.client_to_server,
            &self.channels.server_to_client,
        ] {
            if direction.len() > usize::from(u8::MAX) {
                return Err(ConfigError::TooManyChannels(direction.len()));
            }
            for (index, channel) in direction.iter().enumerate() {
                let id = ChannelId(index as u8);
                if channel.max_message_size == 0 || channel.max_message_size > MAX_MESSAGE_SIZE {
                    return Err(ConfigError::MaxMessageSize(id));
                }
                if channel.max_message_size > self.max_reassembly_bytes {
                    return Err(ConfigError::ReassemblyTooSmall(id));
                }
                let piece = self
                    .payload_budget
                    .saturating_sub(MAX_FRAGMENTING_OVERHEAD + self.secure_overhead());
                if channel.max_message_size > piece.saturating_mul(MAX_FRAGMENTS) {
                    return Err(ConfigError::TooManyFragments(id));
                }
                if channel.max_buffered_bytes < channel.max_message_size {
                    return Err(ConfigError::BufferSmallerThanMessage(id));
                }
                if channel.kind.is_reliable() && channel.max_in_flight_bytes < self.payload_budget {
                    return Err(ConfigError::InFlightTooSmall(id));
                }
            }
        }
        for direction in [
            &self.channels.client_to_server,
            &self.channels.server_to_client,
        ] {
            let window: usize = direction
                .iter()
                .filter(|c| c.kind.is_reliable())
                .map(|c| c.max_in_flight_bytes)
                .sum();
            if window > self.max_reassembly_bytes {
                return Err(ConfigError::WindowsExceedReassembly);
            }
        }
        let zero_checks = [
            ("handshake_timeout", self.handshake_timeout),
            ("handshake_resend_interval", self.handshake_resend_interval),
            ("cookie_lifetime", self.cookie_lifetime),
            ("keepalive_interval", self.keepalive_interval),
            ("idle_timeout", self.idle_timeout),
            ("ack_timeout", self.ack_timeout),
            ("min_rto", self.min_rto),
            ("initial_rtt", self.initial_rtt),
            ("reassembly_timeout", self.reassembly_timeout),
        ];
        for (field, value) in zero_checks {
            if value.is_zero() {
                return Err(ConfigError::ZeroDuration(field));
            }
        }
        if self.keepalive_interval >= self.idle_timeout {
            return Err(ConfigError::KeepaliveNotBelowIdle);
        }
        if self.max_rto < self.min_rto {
            return Err(ConfigError::RtoRange);
        }
        if self.ack_frequency == 0 {
            return Err(ConfigError::AckFrequency);
        }
        if let Security::Tokens(tokens) = &self.security {
            if tokens.public_addresses.is_empty() {
                return Err(ConfigError::NoPublicAddresses);
            }
        }
        Ok(())
    }

    /// Bytes of each datagram that secure sessions spend on protection.
    fn secure_overhead(&self) -> usize {
        if self.security.is_unsecured() && self.connect_token.is_none() {
            0
        } else {
            crate::secure::SECURE_DATA_OVERHEAD
        }
    }
}

/// Fragments per message at most (the wire allows 2^16).
const MAX_FRAGMENTS: usize = 1 << 16;
/// Data header and fragment frame header at their largest, per datagram.
const MAX_FRAGMENTING_OVERHEAD: usize =
    crate::connection::MAX_DATA_HEADER + crate::wire::FrameWriter::MAX_FRAGMENT_HEADER;

/// The largest `max_message_size` a channel may have: 64 MiB.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Why a [`Config`] was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `payload_budget` is outside 256..=65507 bytes.
    #[error("payload_budget {0} is outside {MIN_PAYLOAD_BUDGET}..={MAX_DATAGRAM_SIZE} bytes")]
    PayloadBudget(usize),
    /// More than 255 channels in one direction.
    #[error("{0} channels in one direction; at most 255 are allowed")]
    TooManyChannels(usize),
    /// A channel's `max_message_size` is zero or above 64 MiB.
    #[error("channel {0:?}: max_message_size must be between 1 byte and 64 MiB")]
    MaxMessageSize(ChannelId),
    /// A channel's `max_message_size` exceeds `max_reassembly_bytes`.
    #[error("channel {0:?}: max_message_size exceeds max_reassembly_bytes; raise the latter")]
    ReassemblyTooSmall(ChannelId),
    /// A channel's `max_message_size` needs more than 65,536 fragments at this payload budget.
    #[error("channel {0:?}: max_message_size needs more than 65536 fragments; raise payload_budget or lower max_message_size")]
    TooManyFragments(ChannelId),
    /// A channel's `max_buffered_bytes` is smaller than its `max_message_size`.
    #[error("channel {0:?}: max_buffered_bytes must be at least max_message_size")]
    BufferSmallerThanMessage(ChannelId),
    /// A reliable channel's `max_in_flight_bytes` is below one datagram.
    #[error("channel {0:?}: max_in_flight_bytes must be at least payload_budget")]
    InFlightTooSmall(ChannelId),
    /// The reliable channels' `max_in_flight_bytes` in one direction add up to more than
    /// `max_reassembly_bytes`: a receiver could not hold what honest senders may send.
    #[error("the reliable channels' max_in_flight_bytes add up to more than max_reassembly_bytes; raise the latter")]
    WindowsExceedReassembly,
    /// A duration that must be positive is zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// `keepalive_interval` is not below `idle_timeout`, so idle peers would time out.
    #[error("keepalive_interval must be shorter than idle_timeout")]
    KeepaliveNotBelowIdle,
    /// `max_rto` is below `min_rto`.
    #[error("max_rto must be at least min_rto")]
    RtoRange,
    /// `ack_frequency` is zero.
    #[error("ack_frequency must be at least 1")]
    AckFrequency,
    /// [`Security::Tokens`] lists no public address, so every token would be refused.
    #[error("security: list the addresses clients reach this server at in public_addresses")]
    NoPublicAddresses,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        Config::server().validate().unwrap();
    }

    #[test]
    fn fingerprint_tells_layouts_apart() {
        let a = ChannelLayout::default();
        let mut b = a.clone();
        b.server_to_client[0].kind = ChannelKind::ReliableOrdered;
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
    }

    #[test]
    fn bad_budget_is_refused() {
        let config = Config {
            payload_budget: 10,
            ..Config::default()
        };
        assert_eq!(config.validate(), Err(ConfigError::PayloadBudget(10)));
    }
}
