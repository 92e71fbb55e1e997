//! Statistics: per connection, per channel, and per endpoint.

use std::time::{Duration, Instant};

/// Counters of one outgoing channel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendChannelStats {
    /// Messages accepted by `send`.
    pub messages_sent: u64,
    /// Payload bytes accepted by `send`.
    pub bytes_sent: u64,
    /// Messages acknowledged whole (reliable kinds, and unreliable with `notify_delivery`).
    pub messages_acked: u64,
    /// Unreliable messages with `notify_delivery` declared lost.
    pub messages_lost: u64,
    /// Reliable units (messages or fragments) sent again.
    pub retransmissions: u64,
}

/// Counters of one incoming channel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecvChannelStats {
    /// Messages handed to the application.
    pub messages_delivered: u64,
    /// Payload bytes handed to the application.
    pub bytes_delivered: u64,
    /// Messages dropped: stale on a sequenced channel, fragmented and never completed, or
    /// (over QUIC, unreliable kinds) refused by a full event queue
    /// ([`QuicConfig::event_queue_bytes`](crate::QuicConfig::event_queue_bytes)).
    pub messages_dropped: u64,
    /// Reliable messages received again after delivery (retransmissions that crossed an ack).
    pub duplicates: u64,
}

/// Why an incoming datagram was dropped, counted per reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropCounters {
    /// Could not be decoded (truncated, bad lengths, unknown kinds, ...).
    pub malformed: u64,
    /// A packet number already received.
    pub duplicate: u64,
    /// A packet number too old to tell whether it is a duplicate.
    pub too_old: u64,
    /// A data or disconnect packet from an address with no connection.
    pub unknown_peer: u64,
    /// A handshake packet not expected in the current state (or with the wrong nonce).
    pub unexpected: u64,
    /// A connection request below the padded minimum size.
    pub request_too_small: u64,
    /// A handshake with another protocol version.
    pub version_mismatch: u64,
    /// A handshake with another protocol id.
    pub protocol_mismatch: u64,
    /// A handshake with another channel layout.
    pub channel_mismatch: u64,
    /// A cookie that failed its MAC (forged, tampered, or from another address).
    pub cookie_invalid: u64,
    /// A cookie older than its lifetime.
    pub cookie_expired: u64,
    /// A request refused because the server is full.
    pub server_full: u64,
    /// An acknowledgement of a packet number never sent (the ack is ignored, the rest of the
    /// datagram stands).
    pub bogus_ack: u64,
    /// A handshake reply dropped because too many replies were queued.
    pub reply_queue_full: u64,
    /// A datagram larger than this endpoint ever accepts.
    pub oversized: u64,
    /// Well-formed frames that broke a channel rule (too large, inconsistent fragment, reliable
    /// id outside the window, reassembly budget exceeded); the frame was dropped.
    pub violation: u64,
    /// Secure server: a handshake without a connect token.
    pub token_missing: u64,
    /// Secure server: a token that did not open (another key, altered bytes) or does not parse.
    pub token_invalid: u64,
    /// Secure server: a token past its expiry time.
    pub token_expired: u64,
    /// Secure server: a token for another server address.
    pub token_wrong_server: u64,
    /// Secure server: a token already used from another address.
    pub token_reused: u64,
    /// Secure server: a token handshake dropped by the global rate cap.
    pub handshake_rate_limited: u64,
    /// Secure session: a packet that failed authentication (tampered, forged, or another
    /// session's); nothing in the session changed.
    pub decrypt_failed: u64,
}

impl DropCounters {
    /// Sum of all counters.
    pub fn total(&self) -> u64 {
        self.malformed
            + self.duplicate
            + self.too_old
            + self.unknown_peer
            + self.unexpected
            + self.request_too_small
            + self.version_mismatch
            + self.protocol_mismatch
            + self.channel_mismatch
            + self.cookie_invalid
            + self.cookie_expired
            + self.server_full
            + self.bogus_ack
            + self.reply_queue_full
            + self.oversized
            + self.violation
            + self.token_missing
            + self.token_invalid
            + self.token_expired
            + self.token_wrong_server
            + self.token_reused
            + self.handshake_rate_limited
            + self.decrypt_failed
    }
}

/// Statistics of one connection.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnectionStats {
    /// What carries the connection: `Native` (the default, and always from an
    /// [`Endpoint`](crate::Endpoint)), `Quic` or `Hybrid` (then the figures below are quinn's
    /// for `Quic`, and the native path's with the reliable channels' counters from QUIC for
    /// `Hybrid`). Never `Auto`.
    pub transport: crate::Transport,
    /// Smoothed round-trip time (RFC 6298), or the initial estimate before any sample.
    pub rtt: Duration,
    /// Round-trip time variation (RFC 6298).
    pub rtt_var: Duration,
    /// Smallest round-trip time seen.
    pub min_rtt: Duration,
    /// The latest sample.
    pub latest_rtt: Duration,
    /// Share of ack-eliciting packets declared lost, smoothed over roughly the last 100 packets.
    pub loss_rate: f64,
    /// Datagrams sent.
    pub packets_sent: u64,
    /// Datagrams received and accepted.
    pub packets_received: u64,
    /// Ack-eliciting packets acknowledged by the peer.
    pub packets_acked: u64,
    /// Ack-eliciting packets declared lost (including those later found only late).
    pub packets_lost: u64,
    /// Packets declared lost that were acknowledged afterwards: reordered, not lost. The
    /// connection grows its reordering tolerance each time.
    pub spurious_losses: u64,
    /// UDP payload bytes sent.
    pub bytes_sent: u64,
    /// UDP payload bytes received and accepted.
    pub bytes_received: u64,
    /// UDP payload bytes sent per second, over the last full second.
    pub send_bytes_per_sec: u64,
    /// UDP payload bytes received per second, over the last full second.
    pub recv_bytes_per_sec: u64,
    /// Datagrams sent per second, over the last full second.
    pub send_packets_per_sec: u64,
    /// Datagrams received (and accepted) per second, over the last full second.
    pub recv_packets_per_sec: u64,
    /// Times the packet-number window moved back to a steady stream of packets below it
    /// (after a forged far-ahead packet number).
    pub resyncs: u64,
    /// Secure sessions: times the session moved to a new peer address after validating it.
    pub path_migrations: u64,
    /// Bytes of ack-eliciting packets sent and neither acknowledged nor declared lost.
    pub bytes_in_flight: usize,
    /// Bytes the congestion window allows in flight; new data waits while it is full.
    pub congestion_window: usize,
    /// Bytes currently held for reassembly of incoming messages.
    pub reassembly_bytes: usize,
    /// Incoming datagrams from this peer dropped, by reason.
    pub dropped: DropCounters,
    /// Per outgoing channel, by [`ChannelId`](crate::ChannelId).
    pub send_channels: Vec<SendChannelStats>,
    /// Per incoming channel, by [`ChannelId`](crate::ChannelId).
    pub recv_channels: Vec<RecvChannelStats>,
}

/// Statistics of a whole endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Datagrams received on the endpoint.
    pub datagrams_received: u64,
    /// Datagrams sent by the endpoint.
    pub datagrams_sent: u64,
    /// Bytes received on the endpoint.
    pub bytes_received: u64,
    /// Bytes sent by the endpoint.
    pub bytes_sent: u64,
    /// Connections opened (both directions).
    pub connections_opened: u64,
    /// Connections live right now.
    pub connections_live: u64,
    /// Datagrams dropped before reaching a connection, by reason.
    pub dropped: DropCounters,
    /// Server: no-session replies sent to addresses that sent a data packet but have no
    /// session (a client whose address changed, or whose server restarted).
    pub no_session_replies: u64,
    /// Server: no-session replies not sent because the per-second cap was reached.
    pub no_session_suppressed: u64,
}

/// Bytes and datagrams per second over the last full one-second window.
#[derive(Clone, Debug)]
pub(crate) struct RateMeter {
    window_start: Option<Instant>,
    in_window: u64,
    rate: u64,
    packets_in_window: u64,
    packet_rate: u64,
}

impl RateMeter {
    pub(crate) fn new() -> Self {
        Self {
            window_start: None,
            in_window: 0,
            rate: 0,
            packets_in_window: 0,
            packet_rate: 0,
        }
    }

    /// Counts one datagram of `bytes` bytes.
    pub(crate) fn record(&mut self, now: Instant, bytes: u64) {
        self.roll(now);
        self.in_window += bytes;
        self.packets_in_window += 1;
    }

    /// Datagrams per second over the last full second before `now`.
    pub(crate) fn packet_rate(&self, now: Instant) -> u64 {
        let Some(start) = self.window_start else {
            return 0;
        };
        let elapsed = now.saturating_duration_since(start);
        if elapsed < Duration::from_secs(1) {
            self.packet_rate
        } else if elapsed < Duration::from_secs(2) {
            self.packets_in_window
        } else {
            0
        }
    }

    /// Bytes per second over the last full second before `now`.
    pub(crate) fn rate(&self, now: Instant) -> u64 {
        let Some(start) = self.window_start else {
            return 0;
        };
        let elapsed = now.saturating_duration_since(start);
        if elapsed < Duration::from_secs(1) {
            self.rate
        } else if elapsed < Duration::from_secs(2) {
            self.in_window
        } else {
            0
        }
    }

    fn roll(&mut self, now: Instant) {
        const WINDOW: Duration = Duration::from_secs(1);
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed < WINDOW {
            return;
        }
        let recent = elapsed < 2 * WINDOW;
        self.rate = if recent { self.in_window } else { 0 };
        self.packet_rate = if recent { self.packets_in_window } else { 0 };
        self.in_window = 0;
        self.packets_in_window = 0;
        self.window_start = Some(if elapsed < 2 * WINDOW {
            start + WINDOW
        } else {
            now
        });
    }
}
