//! One connection's state machine: handshake (client side), packet building, acknowledgement,
//! loss detection, retransmission timers, keepalive, idle timeout and graceful close.
//!
//! The [`Endpoint`](crate::Endpoint) owns connections and routes datagrams to them by address;
//! the server side of the handshake is stateless and lives in the endpoint.

pub(crate) mod ack;
mod congestion;
mod rtt;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::channel::{ChannelEvent, Incoming, PacketCtx, RecvChannel, SendChannel, Sizing};
use crate::config::{ChannelConfig, ChannelId, ChannelKind, Config};
use crate::cookie::Cookie;
use crate::error::SendError;
use crate::fragment::ReassemblyBudget;
use crate::secure::{ClientId, ConnectToken, PacketKeys, AEAD_TAG_LEN, SECURE_DATA_OVERHEAD};
use crate::seq::{extend, truncate};
use crate::stats::{ConnectionStats, RateMeter};
use crate::wire::{
    accept_fields, disconnect_fields, encode_disconnect, encode_request_with_token,
    encode_response_with_token, SECURE_ACCEPT_LEN,
};
use crate::wire::{
    AckHeader, ConnectRequest, ConnectResponse, ControlKind, DataHeader, Disconnect, Frame,
    FrameReader, FrameWriter, Handshake, Writer, PROTOCOL_VERSION,
};
use crate::{ConnectionId, DisconnectReason, Event, MessageId, RejectReason};

use ack::{Arrival, Fate, ReceivedPackets, SentPacket, SentPackets, Settled};
use congestion::Congestion;
pub(crate) use rtt::RttEstimator;

/// Largest data header: first byte, packet number, ack (2 + 4) and a 3-byte ack delay.
pub(crate) const MAX_DATA_HEADER: usize = 1 + 2 + 6 + 3;
/// Largest message frame header: type, escaped channel, id, 3-byte length.
const MAX_MESSAGE_HEADER: usize = 1 + 1 + 2 + 3;
/// Largest ack delay encoded, in 100 µs units (fits a 3-byte varint).
const MAX_ACK_DELAY_UNITS: u64 = (1 << 21) - 1;
/// Ack delays below this many 100 µs units are not sent (the field is omitted).
const MIN_ACK_DELAY_UNITS: u64 = 10;

/// Doublings of the retransmission timeout at most.
const MAX_RTO_BACKOFF: u32 = 6;

/// Valid packets in a row, each at most [`RESYNC_GAP`] after the previous one, all below the
/// packet-number window, before the window moves back to them.
const RESYNC_STREAK: u32 = 16;
const RESYNC_GAP: u64 = 64;

/// Close codes the engine itself sends; applications should use codes below 0xFF00.
pub(crate) const CODE_UNACKNOWLEDGED: u16 = 0xFFF1;
pub(crate) const CODE_SHUTDOWN: u16 = 0xFFF2;
/// The code a client reports (as [`DisconnectReason::Remote`]) when the server said it has no
/// session for it: the server restarted, or the client's address changed. Never sent.
pub(crate) const CODE_NO_SESSION: u16 = 0xFFF4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Client,
    Server,
}

/// How a secure connection starts: the client holds its token, the server the session's keys.
#[derive(Debug)]
pub(crate) enum SecureInit {
    Client(ConnectToken),
    Server {
        keys: Box<PacketKeys>,
        client_id: ClientId,
        user_data: Vec<u8>,
        /// The cookie of the response that created the session.
        cookie: Cookie,
        /// The accept sent, to repeat if the client did not get it.
        accept: [u8; SECURE_ACCEPT_LEN],
        /// The session salt, which also tags the client's packets while it may have moved.
        session_tag: u64,
    },
}

/// A path challenge the server sends to a new client address, until the client answers it.
#[derive(Clone, Copy, Debug)]
struct Probe {
    addr: SocketAddr,
    data: [u8; 8],
    /// A challenge is owed (at most one per packet received from the new path).
    due: bool,
    /// No challenge before this instant (at most one per `handshake_resend_interval`).
    next_send: Instant,
}

/// Secure-session state of a connection.
#[derive(Debug)]
struct Secure {
    /// The client's token (client side), sent in its handshake.
    token: Option<ConnectToken>,
    /// The packet keys: from creation on the server, from the accept on the client.
    keys: Option<PacketKeys>,
    client_id: Option<ClientId>,
    user_data: Vec<u8>,
    probe: Option<Probe>,
    probes_sent: u64,
    /// A path challenge received, to echo in the next packet.
    response_due: Option<[u8; 8]>,
    /// Server: the cookie of the response that created the session, and the accept sent.
    cookie: Option<Cookie>,
    accept: Option<[u8; SECURE_ACCEPT_LEN]>,
    /// The server-chosen session salt: the session tag the client sends while it may have
    /// changed address (0 on the client until the accept).
    session_tag: u64,
}

#[derive(Debug)]
enum State {
    /// Client: waiting for a challenge (no cookie yet) or for the accept.
    Connecting {
        cookie: Option<Cookie>,
        /// When the cookie arrived: it is dropped (and a fresh one asked for) after half the
        /// cookie lifetime, so a long handshake never retries a dead cookie.
        cookie_at: Instant,
        started: Instant,
        next_send: Instant,
        /// First time the response was sent, and whether it was sent more than once.
        response_sent: Option<(Instant, bool)>,
    },
    Established,
    /// Closing gracefully: data already queued still goes out and is retransmitted until
    /// acknowledged; the disconnect copies follow once nothing is left, or at `until`.
    Draining {
        code: u16,
        until: Instant,
    },
    /// Sending disconnect copies before disappearing.
    Closing {
        code: u16,
        copies_left: u32,
        next_send: Instant,
    },
    Closed,
}

/// A connection to one peer.
#[derive(Debug)]
pub(crate) struct Connection {
    id: ConnectionId,
    role: Role,
    remote: SocketAddr,
    /// The client's handshake nonce: identifies the session in handshake and disconnect packets.
    nonce: u64,
    state: State,
    config: Config,
    fingerprint: u32,
    recv_kinds: Vec<ChannelKind>,
    send: Vec<SendChannel>,
    recv: Vec<RecvChannel>,
    next_channel: usize,
    received: ReceivedPackets,
    sent: SentPackets,
    rtt: RttEstimator,
    budget: ReassemblyBudget,
    /// Ack-eliciting packets received since the last ack was sent.
    unacked_eliciting: u32,
    ack_deadline: Option<Instant>,
    last_received: Instant,
    last_eliciting_sent: Instant,
    /// When the last data packet of any kind left (an ack-only one included).
    last_sent: Instant,
    /// The first ack-eliciting packet sent since the last valid packet received.
    unanswered_since: Option<Instant>,
    ping_due: bool,
    /// `request_ack` was called: the next packet carries an ack request.
    ack_request_due: bool,
    channel_events: Vec<ChannelEvent>,
    /// Scratch: the frames of the packet being handled, decoded once.
    frames: Vec<Frame>,
    settled: Vec<Settled>,
    stats: ConnectionStats,
    send_rate: RateMeter,
    recv_rate: RateMeter,
    /// Retransmission timeouts in a row without an acknowledgement.
    rto_backoff: u32,
    congestion: Congestion,
    /// Valid packets in a row below the packet-number window, and the latest of them.
    too_old_streak: u32,
    too_old_last: u64,
    /// The latest `now` seen, for statistics read without a clock.
    last_activity: Instant,
    /// Secure sessions only.
    secure: Option<Box<Secure>>,
    /// Where the datagram last written by `poll_transmit` goes.
    destination: SocketAddr,
    /// Whether the endpoint has this connection in its transmit queue.
    pub(crate) queued: bool,
    /// The time of this connection's earliest entry in the endpoint's timer heap.
    pub(crate) scheduled: Option<Instant>,
}

impl Connection {
    pub(crate) fn new(
        id: ConnectionId,
        role: Role,
        remote: SocketAddr,
        nonce: u64,
        config: &Config,
        now: Instant,
        secure: Option<SecureInit>,
    ) -> Self {
        let (send_configs, recv_configs) = match role {
            Role::Client => (
                &config.channels.client_to_server,
                &config.channels.server_to_client,
            ),
            Role::Server => (
                &config.channels.server_to_client,
                &config.channels.client_to_server,
            ),
        };
        let overhead = if secure.is_some() {
            SECURE_DATA_OVERHEAD
        } else {
            0
        };
        let sizing = sizing(config.payload_budget - overhead);
        let send = send_configs
            .iter()
            .enumerate()
            .map(|(i, c)| SendChannel::new(i as u8, c, sizing))
            .collect();
        let recv = recv_configs
            .iter()
            .enumerate()
            .map(|(i, c)| RecvChannel::new(i as u8, c))
            .collect();
        let state = match role {
            Role::Client => State::Connecting {
                cookie: None,
                cookie_at: now,
                started: now,
                next_send: now,
                response_sent: None,
            },
            Role::Server => State::Established,
        };
        Self {
            id,
            role,
            remote,
            nonce,
            state,
            config: config.clone(),
            fingerprint: config.channels.fingerprint(),
            recv_kinds: recv_configs
                .iter()
                .map(|c: &ChannelConfig| c.kind)
                .collect(),
            send,
            recv,
            next_channel: 0,
            received: ReceivedPackets::new(),
            sent: SentPackets::new(),
            rtt: RttEstimator::new(config.initial_rtt),
            budget: ReassemblyBudget::new(config.max_reassembly_bytes),
            unacked_eliciting: 0,
            ack_deadline: None,
            last_received: now,
            last_eliciting_sent: now,
            last_sent: now,
            unanswered_since: None,
            ping_due: false,
            ack_request_due: false,
            channel_events: Vec::new(),
            frames: Vec::new(),
            settled: Vec::new(),
            stats: ConnectionStats::default(),
            send_rate: RateMeter::new(),
            recv_rate: RateMeter::new(),
            rto_backoff: 0,
            congestion: Congestion::new(config.max_congestion_window, config.payload_budget),
            too_old_streak: 0,
            too_old_last: 0,
            last_activity: now,
            secure: secure.map(|init| {
                Box::new(match init {
                    SecureInit::Client(token) => Secure {
                        client_id: Some(token.client_id()),
                        token: Some(token),
                        keys: None,
                        user_data: Vec::new(),
                        probe: None,
                        probes_sent: 0,
                        response_due: None,
                        cookie: None,
                        accept: None,
                        session_tag: 0,
                    },
                    SecureInit::Server {
                        keys,
                        client_id,
                        user_data,
                        cookie,
                        accept,
                        session_tag,
                    } => Secure {
                        token: None,
                        keys: Some(*keys),
                        client_id: Some(client_id),
                        user_data,
                        probe: None,
                        probes_sent: 0,
                        response_due: None,
                        cookie: Some(cookie),
                        accept: Some(accept),
                        session_tag,
                    },
                })
            }),
            destination: remote,
            queued: false,
            scheduled: None,
        }
    }

    pub(crate) fn remote(&self) -> SocketAddr {
        self.remote
    }

    pub(crate) fn nonce(&self) -> u64 {
        self.nonce
    }

    /// Where the datagram last written by [`poll_transmit`](Self::poll_transmit) goes.
    pub(crate) fn destination(&self) -> SocketAddr {
        self.destination
    }

    /// Whether this is a secure session.
    pub(crate) fn is_secure(&self) -> bool {
        self.secure.is_some()
    }

    /// The client id of a secure session.
    pub(crate) fn client_id(&self) -> Option<ClientId> {
        self.secure.as_ref().and_then(|s| s.client_id)
    }

    /// The session tag of a secure session: the server's session salt.
    pub(crate) fn session_tag(&self) -> Option<u64> {
        self.secure.as_ref().map(|s| s.session_tag)
    }

    /// The token's user data, on the server side of a secure session.
    pub(crate) fn user_data(&self) -> Option<&[u8]> {
        self.secure.as_ref().map(|s| &s.user_data[..])
    }

    /// Server side of a secure session: the accept to repeat if `cookie` is the one the session
    /// was created with (the client did not get the accept), `None` otherwise.
    pub(crate) fn repeat_accept(&self, cookie: &Cookie) -> Option<[u8; SECURE_ACCEPT_LEN]> {
        let secure = self.secure.as_ref()?;
        if secure.cookie.as_ref() != Some(cookie) || !self.is_established() {
            return None;
        }
        secure.accept
    }

    /// Moves the session to a validated new address.
    fn migrate(&mut self, to: SocketAddr) {
        self.remote = to;
        self.destination = to;
        self.stats.path_migrations += 1;
    }

    pub(crate) fn role(&self) -> Role {
        self.role
    }

    pub(crate) fn is_established(&self) -> bool {
        matches!(self.state, State::Established)
    }

    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Whether the connection is gone or going: no more sends, no more events but its end.
    pub(crate) fn is_closing(&self) -> bool {
        matches!(
            self.state,
            State::Draining { .. } | State::Closing { .. } | State::Closed
        )
    }

    /// Whether data packets flow: established, or draining before a graceful close.
    fn is_open(&self) -> bool {
        matches!(self.state, State::Established | State::Draining { .. })
    }

    // ---- application calls ----

    /// Asks the peer to acknowledge at once: the next packet carries an ack request. `false`
    /// unless established.
    pub(crate) fn request_ack(&mut self) -> bool {
        if !self.is_established() {
            return false;
        }
        self.ack_request_due = true;
        true
    }

    pub(crate) fn send(&mut self, channel: ChannelId, data: Bytes) -> Result<MessageId, SendError> {
        if self.is_closing() {
            return Err(SendError::NotConnected(data));
        }
        let Some(half) = self.send.get_mut(usize::from(channel.0)) else {
            return Err(SendError::UnknownChannel(channel, data));
        };
        half.send(data)
    }

    /// Starts a graceful close; the disconnect event is emitted now. With `drain`, data
    /// already queued is delivered first (for at most `ack_timeout`): nothing sent before the
    /// close is lost to it.
    pub(crate) fn close(
        &mut self,
        now: Instant,
        code: u16,
        reason: DisconnectReason,
        drain: bool,
        events: &mut VecDeque<Event>,
    ) {
        if self.is_closing() {
            return;
        }
        let established = self.is_established();
        self.state = if !established || self.config.disconnect_copies == 0 {
            State::Closed
        } else if drain && self.buffered() > 0 {
            State::Draining {
                code,
                until: now + self.config.ack_timeout,
            }
        } else {
            self.closing(code, now)
        };
        events.push_back(Event::Disconnected {
            connection: self.id,
            reason,
        });
    }

    /// Ends the connection at once, without telling the peer.
    pub(crate) fn abandon(&mut self, reason: DisconnectReason, events: &mut VecDeque<Event>) {
        self.close_silently(reason, events);
    }

    fn closing(&self, code: u16, now: Instant) -> State {
        State::Closing {
            code,
            copies_left: self.config.disconnect_copies,
            next_send: now,
        }
    }

    fn close_silently(&mut self, reason: DisconnectReason, events: &mut VecDeque<Event>) {
        if let State::Draining { .. } = self.state {
            // Already reported when the close began.
            self.state = State::Closed;
            return;
        }
        if self.is_closing() {
            return;
        }
        self.state = State::Closed;
        events.push_back(Event::Disconnected {
            connection: self.id,
            reason,
        });
    }

    // ---- handle_* inputs ----

    /// A handshake or disconnect packet from the peer's address.
    pub(crate) fn handle_handshake(
        &mut self,
        now: Instant,
        packet: Handshake,
        events: &mut VecDeque<Event>,
    ) -> Result<(), ()> {
        if self.is_secure() && matches!(packet, Handshake::Disconnect(_) | Handshake::Accept { .. })
        {
            // A secure session starts only on an authenticated accept and ends only on an
            // authenticated disconnect.
            self.stats.dropped.unexpected += 1;
            return Err(());
        }
        self.handle_handshake_checked(now, packet, events)
    }

    /// A secure disconnect from the peer's address: handled if its tag verifies.
    pub(crate) fn handle_secure_disconnect(
        &mut self,
        now: Instant,
        token: u64,
        code: u16,
        tag: &[u8; AEAD_TAG_LEN],
        events: &mut VecDeque<Event>,
    ) -> Result<(), ()> {
        let fields = disconnect_fields(token, code);
        let authentic = self
            .secure
            .as_ref()
            .and_then(|s| s.keys.as_ref())
            .is_some_and(|keys| keys.verify_disconnect(&fields, tag));
        if !authentic {
            self.stats.dropped.decrypt_failed += 1;
            return Err(());
        }
        self.handle_handshake_checked(
            now,
            Handshake::Disconnect(Disconnect { token, code }),
            events,
        )
    }

    /// A secure accept from the server's address (client side): derives the session keys from
    /// the token, the cookie and the server's salt, and connects if the tag verifies.
    pub(crate) fn handle_secure_accept(
        &mut self,
        now: Instant,
        nonce: u64,
        salt: u64,
        tag: &[u8; AEAD_TAG_LEN],
        events: &mut VecDeque<Event>,
    ) -> Result<(), ()> {
        let (
            State::Connecting {
                cookie: Some(cookie),
                ..
            },
            Some(secure),
        ) = (&self.state, self.secure.as_mut())
        else {
            self.stats.dropped.unexpected += 1;
            return Err(());
        };
        let Some(token) = &secure.token else {
            self.stats.dropped.unexpected += 1;
            return Err(());
        };
        if nonce != self.nonce {
            self.stats.dropped.unexpected += 1;
            return Err(());
        }
        let (c2s, s2c) = token.keys();
        let keys = PacketKeys::derive(c2s, s2c, self.nonce, cookie, salt, true);
        if !keys.verify_accept(&accept_fields(nonce, salt), tag) {
            self.stats.dropped.decrypt_failed += 1;
            return Err(());
        }
        secure.keys = Some(keys);
        secure.session_tag = salt;
        self.handle_handshake_checked(now, Handshake::Accept { nonce }, events)
    }

    fn handle_handshake_checked(
        &mut self,
        now: Instant,
        packet: Handshake,
        events: &mut VecDeque<Event>,
    ) -> Result<(), ()> {
        let lost_by_server = self.role == Role::Client && self.unanswered(now);
        match (packet, &mut self.state) {
            (
                Handshake::Challenge(challenge),
                State::Connecting {
                    cookie,
                    next_send,
                    cookie_at,
                    ..
                },
            ) if challenge.nonce == self.nonce => {
                if cookie.is_none() {
                    *cookie = Some(challenge.cookie);
                    *cookie_at = now;
                    *next_send = now;
                }
                Ok(())
            }
            (
                Handshake::Accept { nonce },
                State::Connecting {
                    cookie: Some(_),
                    response_sent,
                    ..
                },
            ) if nonce == self.nonce => {
                if let Some((sent, false)) = *response_sent {
                    self.rtt
                        .update(now.saturating_duration_since(sent), Duration::ZERO);
                }
                self.state = State::Established;
                self.last_received = now;
                self.last_eliciting_sent = now;
                events.push_back(Event::Connected {
                    connection: self.id,
                    remote: self.remote,
                    transport: crate::Transport::Native,
                });
                Ok(())
            }
            (Handshake::Reject(reject), State::Connecting { .. }) if reject.nonce == self.nonce => {
                self.close_silently(
                    DisconnectReason::Rejected(RejectReason::from_code(reject.reason)),
                    events,
                );
                Ok(())
            }
            (Handshake::Disconnect(Disconnect { token, code }), State::Established)
                if token == self.nonce =>
            {
                self.close_silently(DisconnectReason::Remote { code }, events);
                Ok(())
            }
            (Handshake::NoSession, State::Established | State::Draining { .. })
                if lost_by_server =>
            {
                // Unauthenticated: believed only while the server has answered nothing this
                // client sent for an RTO, which a live session's acks never allow.
                self.close_silently(
                    DisconnectReason::Remote {
                        code: CODE_NO_SESSION,
                    },
                    events,
                );
                Ok(())
            }
            (
                Handshake::Disconnect(Disconnect { token, .. }),
                State::Closing { .. } | State::Draining { .. },
            ) if token == self.nonce => {
                // Both sides closed at once: stop sending copies.
                self.state = State::Closed;
                Ok(())
            }
            _ => {
                self.stats.dropped.unexpected += 1;
                Err(())
            }
        }
    }

    /// A data packet from the peer's address.
    ///
    /// `from` is the datagram's source: the peer's address, or (secure sessions) a new address
    /// the packet named this session from. Returns `true` when the packet completed the
    /// validation of a new path and the session moved to `from`.
    pub(crate) fn handle_data(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: Bytes,
        events: &mut VecDeque<Event>,
    ) -> bool {
        if !self.is_open() {
            self.stats.dropped.unexpected += 1;
            return false;
        }
        let secure = self.is_secure();
        let decoded = if secure {
            DataHeader::decode_secure(&datagram)
        } else {
            DataHeader::decode(&datagram)
        };
        let Ok((header, offset)) = decoded else {
            self.stats.dropped.malformed += 1;
            return false;
        };
        self.last_activity = now;
        let pn = extend(self.received.expected(), header.packet_number);
        let arrival = self.received.check(pn);
        if arrival == Arrival::Duplicate {
            self.stats.dropped.duplicate += 1;
            return false;
        }
        let datagram = if secure {
            // The replay window is checked before decryption (above and here: an authenticated
            // session has no forged jumps to resynchronise from) and advanced only after it.
            if matches!(arrival, Arrival::TooOld | Arrival::Behind) {
                self.stats.dropped.too_old += 1;
                return false;
            }
            match self.open(pn, datagram, offset) {
                Some(plain) => plain,
                None => {
                    self.stats.dropped.decrypt_failed += 1;
                    return false;
                }
            }
        } else {
            datagram
        };
        // Validate every frame before anything changes: garbage neither acts nor refreshes. The
        // frames are decoded once, into a scratch list the passes below read.
        let mut eliciting = false;
        let mut ack_blocks = false;
        let mut ack_now = false;
        self.frames.clear();
        let reader = FrameReader::new(&datagram, offset, &self.recv_kinds);
        let reader = if secure {
            reader.with_path_frames()
        } else {
            reader
        };
        for frame in reader {
            let Ok(frame) = frame else {
                self.stats.dropped.malformed += 1;
                return false;
            };
            match frame {
                Frame::Ack { .. } => ack_blocks = true,
                Frame::Control(ControlKind::AckRequest) => {
                    ack_now = true;
                    eliciting = true;
                }
                _ => eliciting = true,
            }
            self.frames.push(frame);
        }
        if !eliciting && !ack_blocks && header.ack.is_none() {
            // No Tickwire sender builds an empty packet.
            self.stats.dropped.malformed += 1;
            return false;
        }
        match arrival {
            Arrival::TooOld => {
                self.stats.dropped.too_old += 1;
                return false;
            }
            Arrival::Behind if !self.resync(pn) => {
                self.stats.dropped.too_old += 1;
                return false;
            }
            _ => {}
        }
        let mut migrated = false;
        if let Some(secure) = self.secure.as_mut() {
            for frame in &self.frames {
                match *frame {
                    Frame::PathChallenge(data) => secure.response_due = Some(data),
                    Frame::PathResponse(data)
                        if secure
                            .probe
                            .is_some_and(|probe| probe.addr == from && probe.data == data) =>
                    {
                        secure.probe = None;
                        migrated = true;
                    }
                    _ => {}
                }
            }
            if from != self.remote && !migrated {
                // An authentic packet from a new address: the client may have moved (a NAT
                // rebinding), or someone replays its packets from elsewhere. Ask the new address
                // to prove it receives; the session moves only when it answers.
                let fresh = secure.probe.is_none_or(|probe| probe.addr != from);
                if fresh {
                    secure.probes_sent += 1;
                    let mut data = (self.nonce ^ secure.probes_sent.rotate_left(32)).to_be_bytes();
                    data[0] ^= 0x5a;
                    secure.probe = Some(Probe {
                        addr: from,
                        data,
                        due: true,
                        next_send: now,
                    });
                } else if let Some(probe) = secure.probe.as_mut() {
                    probe.due = true;
                }
            }
        }
        if migrated {
            self.migrate(from);
        }
        self.too_old_streak = 0;
        // An ack naming a packet never sent is ignored (and counted); the rest of the packet
        // stands, so a forged ack cannot make the peer's real packets undeliverable.
        let acked = header.ack.and_then(|ack| {
            let largest = ack_range(&self.sent, ack.largest);
            if largest.is_none() {
                self.stats.dropped.bogus_ack += 1;
            }
            largest
        });
        let in_order = self.received.insert(pn, now, eliciting);
        self.last_received = now;
        self.unanswered_since = None;
        self.stats.packets_received += 1;
        self.stats.bytes_received += datagram.len() as u64;
        self.recv_rate.record(now, datagram.len() as u64);

        if let (Some(ack), Some(largest)) = (header.ack, acked) {
            self.on_ack(now, ack, largest);
        }
        // Taken out (and put back below) so the passes can change the rest of `self`.
        let frames = std::mem::take(&mut self.frames);
        if ack_blocks {
            for frame in &frames {
                if let Frame::Ack { largest, bits } = *frame {
                    match ack_range(&self.sent, largest) {
                        Some(largest) => {
                            self.sent.ack(largest, &mut self.settled);
                            ack_bits(&mut self.sent, &mut self.settled, largest, bits);
                        }
                        None => self.stats.dropped.bogus_ack += 1,
                    }
                }
            }
        }
        if acked.is_some() || ack_blocks {
            self.detect_lost(now, events);
        }

        for frame in &frames {
            let (channel, incoming) = match *frame {
                Frame::Control(_)
                | Frame::Ack { .. }
                | Frame::PathChallenge(_)
                | Frame::PathResponse(_) => continue,
                Frame::Message {
                    channel,
                    id,
                    ref payload,
                } => (
                    channel,
                    Incoming::Message {
                        id,
                        data: datagram.slice(payload.clone()),
                    },
                ),
                Frame::Fragment {
                    channel,
                    id,
                    index,
                    count,
                    ref payload,
                } => (
                    channel,
                    Incoming::Fragment {
                        id,
                        index,
                        count,
                        data: datagram.slice(payload.clone()),
                    },
                ),
            };
            let Some(half) = self.recv.get_mut(usize::from(channel)) else {
                continue;
            };
            // A well-formed frame that breaks a channel rule is dropped and counted; no honest
            // peer sends one, and closing the session would let one forged datagram end it.
            if half
                .receive(incoming, now, &mut self.budget, &mut self.channel_events)
                .is_err()
            {
                self.stats.dropped.violation += 1;
            }
        }
        self.frames = frames;
        self.flush_channel_events(events);

        if eliciting {
            self.unacked_eliciting += 1;
            // An ack request (the peer's `request_ack`) is answered now, whatever the policy.
            if !in_order || ack_now || self.unacked_eliciting >= self.config.ack_frequency {
                self.ack_deadline = Some(now);
            } else if self.ack_deadline.is_none() {
                self.ack_deadline = Some(now + self.config.max_ack_delay);
            }
        }
        migrated
    }

    /// Decrypts a secure data packet; `None` if it is not authentic. The session is unchanged
    /// either way.
    fn open(&self, pn: u64, datagram: Bytes, offset: usize) -> Option<Bytes> {
        let keys = self.secure.as_ref()?.keys.as_ref()?;
        let mut buf = datagram
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        let plain = keys.open_data(pn, &mut buf, offset).ok()?;
        buf.truncate(offset + plain);
        Some(buf.freeze())
    }

    /// Runs timers due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant, events: &mut VecDeque<Event>) {
        self.last_activity = now;
        match self.state {
            State::Connecting { started, .. } => {
                if now.saturating_duration_since(started) >= self.config.handshake_timeout {
                    self.close_silently(DisconnectReason::HandshakeTimeout, events);
                }
                return;
            }
            State::Established => {}
            State::Draining { code, until } => {
                if now >= until || self.buffered() == 0 {
                    self.state = self.closing(code, now);
                    return;
                }
            }
            State::Closing { .. } | State::Closed => return,
        }
        if now.saturating_duration_since(self.last_received) >= self.config.idle_timeout {
            self.close_silently(DisconnectReason::Timeout, events);
            return;
        }
        let oldest = self
            .send
            .iter()
            .filter_map(SendChannel::oldest_unacked)
            .min();
        if oldest.is_some_and(|t| now.saturating_duration_since(t) >= self.config.ack_timeout) {
            self.close(
                now,
                CODE_UNACKNOWLEDGED,
                DisconnectReason::Unacknowledged,
                false,
                events,
            );
            return;
        }
        self.detect_lost(now, events);
        let rto = self.rto();
        let mut fired = false;
        for half in &mut self.send {
            fired |= half.on_timeout(now, rto);
        }
        if fired {
            self.rto_backoff = (self.rto_backoff + 1).min(MAX_RTO_BACKOFF);
        }
        for half in &mut self.recv {
            half.expire(now, self.config.reassembly_timeout, &mut self.budget);
        }
        if now >= self.keepalive_at() {
            self.ping_due = true;
        }
    }

    /// When a keepalive ping is due in a packet of its own: nothing ack-eliciting sent for
    /// `keepalive_interval`, and either nothing at all sent (the peer's idle timer needs a
    /// packet) or nothing received (this side needs an answer) for as long. Before that, a
    /// packet that leaves anyway carries the ping (see `build_data`), so a side that only
    /// acknowledges a steady stream sends no datagram for its keepalives.
    fn keepalive_at(&self) -> Instant {
        let quiet_since = self.last_sent.min(self.last_received);
        self.last_eliciting_sent.max(quiet_since) + self.config.keepalive_interval
    }

    // ---- poll_* outputs ----

    /// The earliest time [`handle_timeout`](Self::handle_timeout) or
    /// [`poll_transmit`](Self::poll_transmit) has work.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Connecting {
                started, next_send, ..
            } => Some(next_send.min(started + self.config.handshake_timeout)),
            State::Closing { next_send, .. } => Some(next_send),
            State::Closed => None,
            State::Established | State::Draining { .. } => {
                let mut deadline = self.last_received + self.config.idle_timeout;
                if let State::Draining { until, .. } = self.state {
                    deadline = deadline.min(until);
                }
                let mut consider = |t: Option<Instant>| {
                    if let Some(t) = t {
                        deadline = deadline.min(t);
                    }
                };
                consider(self.ack_deadline);
                consider(Some(self.keepalive_at()));
                let rto = self.rto();
                for half in &self.send {
                    consider(half.next_timeout(rto));
                    consider(half.oldest_unacked().map(|t| t + self.config.ack_timeout));
                }
                for half in &self.recv {
                    consider(half.next_expiry(self.config.reassembly_timeout));
                }
                if let Some((sent, behind)) = self.sent.oldest_in_flight() {
                    let delay = if behind {
                        self.rtt.loss_delay()
                    } else {
                        self.expiry()
                    };
                    consider(Some(sent + delay));
                }
                Some(deadline)
            }
        }
    }

    /// Whether [`poll_transmit`](Self::poll_transmit) may have something to send now; `false`
    /// only when it surely has not (an established unsecured session with no ack, ping or
    /// data due), so that the endpoint can leave such a connection out of its transmit queue
    /// after a datagram that asked for nothing (most of a steady stream's, while the ack is
    /// held back).
    pub(crate) fn may_transmit(&self, now: Instant) -> bool {
        !matches!(self.state, State::Established) || self.secure.is_some() || self.data_due(now)
    }

    /// Whether a data packet is due now: an ack whose deadline passed, a ping, an ack request,
    /// a path response, or new data with the congestion window open.
    fn data_due(&self, now: Instant) -> bool {
        let ack_due = self.received.has_unreported() && self.ack_deadline.is_some_and(|t| t <= now);
        let window_open = self.sent.in_flight() < self.congestion.window();
        let response_due = self
            .secure
            .as_ref()
            .is_some_and(|s| s.response_due.is_some());
        ack_due
            || self.ping_due
            || self.ack_request_due
            || response_due
            || (window_open && self.send.iter().any(SendChannel::has_pending))
    }

    /// Writes the next datagram for this connection into `buf`; returns its length.
    pub(crate) fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.last_activity = now;
        self.destination = self.remote;
        if let State::Draining { code, .. } = self.state {
            if self.buffered() == 0 {
                // Everything was acknowledged: say goodbye.
                self.state = self.closing(code, now);
            }
        }
        let len = match &mut self.state {
            State::Connecting {
                cookie,
                cookie_at,
                next_send,
                response_sent,
                ..
            } => {
                if now < *next_send {
                    return None;
                }
                if cookie.is_some()
                    && now.saturating_duration_since(*cookie_at) >= self.config.cookie_lifetime / 2
                {
                    *cookie = None;
                    *response_sent = None;
                }
                *next_send = now + self.config.handshake_resend_interval;
                let request = ConnectRequest {
                    version: PROTOCOL_VERSION,
                    protocol_id: self.config.protocol_id,
                    fingerprint: self.fingerprint,
                    nonce: self.nonce,
                };
                if let Some(token) = self.secure.as_ref().and_then(|s| s.token.as_ref()) {
                    let len = match cookie {
                        None => encode_request_with_token(buf, &request, token.sealed()),
                        Some(cookie) => {
                            *response_sent = Some(match *response_sent {
                                None => (now, false),
                                Some((first, _)) => (first, true),
                            });
                            encode_response_with_token(buf, &request, cookie, token.sealed())
                        }
                    };
                    let len = len.ok()?;
                    self.stats.packets_sent += 1;
                    self.stats.bytes_sent += len as u64;
                    self.send_rate.record(now, len as u64);
                    return Some(len);
                }
                let packet = match cookie {
                    None => Handshake::Request(request),
                    Some(cookie) => {
                        *response_sent = Some(match *response_sent {
                            None => (now, false),
                            Some((first, _)) => (first, true),
                        });
                        Handshake::Response(ConnectResponse {
                            request,
                            cookie: *cookie,
                        })
                    }
                };
                packet.encode(buf).ok()?
            }
            State::Closing {
                code,
                copies_left,
                next_send,
            } => {
                if now < *next_send {
                    return None;
                }
                let packet = Handshake::Disconnect(Disconnect {
                    token: self.nonce,
                    code: *code,
                });
                let code = *code;
                *copies_left = copies_left.saturating_sub(1);
                *next_send = now + self.config.disconnect_interval;
                if *copies_left == 0 {
                    self.state = State::Closed;
                }
                match self.secure.as_ref().and_then(|s| s.keys.as_ref()) {
                    Some(keys) => {
                        let fields = disconnect_fields(self.nonce, code);
                        encode_disconnect(buf, &fields, &keys.disconnect_tag(&fields)).ok()?
                    }
                    None => packet.encode(buf).ok()?,
                }
            }
            State::Closed => return None,
            State::Established | State::Draining { .. } => match self.build_probe(now, buf) {
                Some(len) => len,
                None => self.build_data(now, buf)?,
            },
        };
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += len as u64;
        self.send_rate.record(now, len as u64);
        Some(len)
    }

    /// Secure sessions: a packet holding only a path challenge, to the new address being
    /// validated.
    fn build_probe(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let secure = self.secure.as_mut()?;
        let probe = secure.probe.as_mut()?;
        if !probe.due || now < probe.next_send {
            return None;
        }
        let keys = secure.keys.as_ref()?;
        probe.due = false;
        probe.next_send = now + self.config.handshake_resend_interval;
        let (addr, data) = (probe.addr, probe.data);
        let pn = self.sent.next();
        let budget = self.config.payload_budget.min(buf.len());
        let mut writer = Writer::new(buf.get_mut(..budget - AEAD_TAG_LEN)?);
        let header = DataHeader {
            packet_number: truncate(pn),
            session: None,
            ack: None,
        };
        header.encode(&mut writer).ok()?;
        let header_len = writer.position();
        FrameWriter::new()
            .write_path(&mut writer, false, data)
            .ok()?;
        let len = writer.position();
        let len = keys.seal_data(pn, buf, header_len, len)?;
        // The packet number is used up (never reuse a nonce); the probe is not ack-eliciting
        // bookkeeping on the old path, so it is recorded as not in flight.
        let records = self.sent.take_records();
        self.sent.push(
            SentPacket {
                time: now,
                size: len,
                eliciting: false,
                fate: Fate::InFlight,
                records,
            },
            &mut self.settled,
        );
        self.apply_settled(None);
        self.destination = addr;
        Some(len)
    }

    fn build_data(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if !self.data_due(now) {
            return None;
        }
        // New data waits while the congestion window is full; acks and pings never do.
        let window_open = self.sent.in_flight() < self.congestion.window();
        let response_due = self.secure.as_ref().and_then(|s| s.response_due);
        let tag_len = if self.is_secure() { AEAD_TAG_LEN } else { 0 };
        let budget = self.config.payload_budget.min(buf.len());
        let mut writer = Writer::new(buf.get_mut(..budget.checked_sub(tag_len)?)?);
        let pn = self.sent.next();
        // A secure client names its session while it may have changed address: when a packet
        // it sent an RTO ago is unacknowledged and nothing at all arrived since it was sent, and
        // when it answers a path challenge. An idle session's keepalives carry no tag.
        let session = if self.role == Role::Client && self.is_secure() {
            let unanswered = self.sent.oldest_in_flight().is_some_and(|(sent, _)| {
                self.last_received <= sent && now.saturating_duration_since(sent) >= self.rto()
            });
            (response_due.is_some() || unanswered)
                .then(|| self.session_tag())
                .flatten()
        } else {
            None
        };
        // From here on the packet is sent: taking ack blocks marks packets as reported.
        let ack = self.received.next_block().map(|block| {
            let delay = now.saturating_duration_since(block.arrived).as_micros() as u64
                / crate::wire::ACK_DELAY_UNIT_MICROS;
            AckHeader {
                largest: truncate(block.largest),
                bits: block.bits,
                delay: if delay < MIN_ACK_DELAY_UNITS {
                    0
                } else {
                    delay.min(MAX_ACK_DELAY_UNITS)
                },
            }
        });
        let header = DataHeader {
            packet_number: truncate(pn),
            session,
            ack,
        };
        header.encode(&mut writer).ok()?;
        let header_len = writer.position();
        let mut frames = FrameWriter::new();
        let mut records = self.sent.take_records();
        if self.ack_request_due
            && frames
                .write_control(&mut writer, ControlKind::AckRequest)
                .is_ok()
        {
            // It elicits an acknowledgement as a ping does: one frame serves both.
            self.ack_request_due = false;
            self.ping_due = false;
        }
        // A ping rides on any packet once nothing ack-eliciting has left for a keepalive
        // interval (an RTT sample and a liveness check at no datagram's cost).
        let ping = self.ping_due
            || now.saturating_duration_since(self.last_eliciting_sent)
                >= self.config.keepalive_interval;
        if ping && frames.write_control(&mut writer, ControlKind::Ping).is_ok() {
            self.ping_due = false;
        }
        if let Some(data) = response_due {
            if frames.write_path(&mut writer, true, data).is_ok() {
                if let Some(secure) = self.secure.as_mut() {
                    secure.response_due = None;
                }
            }
        }
        let channels = if window_open { self.send.len() } else { 0 };
        for step in 0..channels {
            let index = (self.next_channel + step) % channels;
            let Some(half) = self.send.get_mut(index) else {
                continue;
            };
            let mut ctx = PacketCtx {
                writer: &mut writer,
                frames: &mut frames,
                records: &mut records,
                now,
                packet_number: pn,
            };
            half.write(&mut ctx);
        }
        if channels > 0 {
            self.next_channel = (self.next_channel + 1) % channels;
        }
        // Packets the header's block did not cover go in extra ack frames while they fit.
        while self.received.has_unreported() && writer.remaining() >= FrameWriter::ACK_FRAME_LEN {
            let Some(block) = self.received.next_block() else {
                break;
            };
            if frames
                .write_ack(&mut writer, truncate(block.largest), block.bits)
                .is_err()
            {
                break;
            }
        }
        // Last: drop the final frame's length (a no-op when the last frame is an ack block).
        frames.finish(&mut writer);
        let eliciting = frames.count() > 0;
        if !eliciting && ack.is_none() {
            self.sent.recycle(records);
            return None;
        }
        let mut len = writer.position();
        if let Some(keys) = self.secure.as_ref().and_then(|s| s.keys.as_ref()) {
            len = keys.seal_data(pn, buf, header_len, len)?;
        }
        if self.received.has_unreported() {
            self.ack_deadline = Some(now);
        } else {
            self.unacked_eliciting = 0;
            self.ack_deadline = None;
        }
        self.last_sent = now;
        if eliciting {
            self.last_eliciting_sent = now;
            self.unanswered_since.get_or_insert(now);
        }
        self.sent.push(
            SentPacket {
                time: now,
                size: len,
                eliciting,
                fate: Fate::InFlight,
                records,
            },
            &mut self.settled,
        );
        self.apply_settled(None);
        Some(len)
    }

    /// Drains events produced while building packets (losses of tracked packets).
    pub(crate) fn drain_events(&mut self, events: &mut VecDeque<Event>) {
        self.flush_channel_events(events);
    }

    pub(crate) fn stats(&self) -> ConnectionStats {
        let mut stats = self.stats.clone();
        stats.rtt = self.rtt.smoothed();
        stats.rtt_var = self.rtt.var();
        stats.min_rtt = self.rtt.min();
        stats.latest_rtt = self.rtt.latest();
        stats.reassembly_bytes = self.budget.used;
        stats.spurious_losses = self.sent.spurious_losses();
        stats.bytes_in_flight = self.sent.in_flight();
        stats.congestion_window = self.congestion.window();
        stats.send_bytes_per_sec = self.send_rate.rate(self.last_activity);
        stats.recv_bytes_per_sec = self.recv_rate.rate(self.last_activity);
        stats.send_packets_per_sec = self.send_rate.packet_rate(self.last_activity);
        stats.recv_packets_per_sec = self.recv_rate.packet_rate(self.last_activity);
        stats.send_channels = self.send.iter().map(|c| c.stats().clone()).collect();
        stats.recv_channels = self.recv.iter().map(|c| c.stats().clone()).collect();
        stats
    }

    /// Bytes queued or in flight on all outgoing channels.
    pub(crate) fn buffered(&self) -> usize {
        self.send.iter().map(SendChannel::buffered).sum()
    }

    // ---- internals ----

    /// The retransmission timeout, doubled for every timeout in a row without an ack
    /// (exponential backoff), capped at `max_rto`.
    /// Whether nothing at all arrived from the peer for at least an RTO after this side sent an
    /// ack-eliciting packet: the peer may no longer know this session's address.
    fn unanswered(&self, now: Instant) -> bool {
        self.unanswered_since
            .is_some_and(|sent| now.saturating_duration_since(sent) >= self.rto())
    }

    fn rto(&self) -> Duration {
        let base = self.rtt.rto(
            self.config.max_ack_delay,
            self.config.min_rto,
            self.config.max_rto,
        );
        base.saturating_mul(1 << self.rto_backoff)
            .min(self.config.max_rto)
    }

    /// How long an unacknowledged packet with nothing acknowledged after it stays in flight.
    fn expiry(&self) -> Duration {
        self.rto() * 2
    }

    fn on_ack(&mut self, now: Instant, ack: AckHeader, largest: u64) {
        let newly_largest = self.sent.ack(largest, &mut self.settled);
        if newly_largest {
            if let Some(packet) = self.sent.get(largest) {
                if packet.eliciting {
                    let sample = now.saturating_duration_since(packet.time);
                    let delay = Duration::from_micros(
                        ack.delay.saturating_mul(crate::wire::ACK_DELAY_UNIT_MICROS),
                    )
                    .min(self.config.max_ack_delay.max(Duration::from_millis(1)) * 4);
                    self.rtt.update(sample, delay);
                }
            }
        }
        ack_bits(&mut self.sent, &mut self.settled, largest, ack.bits);
    }

    fn detect_lost(&mut self, now: Instant, events: &mut VecDeque<Event>) {
        let sent_before = now.checked_sub(self.rtt.loss_delay()).unwrap_or(now);
        let expired_before = now.checked_sub(self.expiry());
        self.sent
            .detect_lost(sent_before, expired_before, &mut self.settled);
        self.apply_settled(Some(events));
    }

    fn apply_settled(&mut self, events: Option<&mut VecDeque<Event>>) {
        let congestion = &mut self.congestion;
        self.sent.take_disproved(|pn| congestion.on_spurious(pn));
        let mut settled = std::mem::take(&mut self.settled);
        for packet in settled.drain(..) {
            match packet.fate {
                Fate::Acked => {
                    self.stats.packets_acked += 1;
                    self.rto_backoff = 0;
                    self.congestion.on_acked(packet.size);
                }
                Fate::Lost => {
                    self.stats.packets_lost += 1;
                    self.congestion
                        .on_lost(packet.packet_number, self.sent.next());
                }
                Fate::InFlight => {}
            }
            let lost = packet.fate == Fate::Lost;
            self.stats.loss_rate += (f64::from(u8::from(lost)) - self.stats.loss_rate) / 100.0;
            for record in &packet.records {
                let channel = match record {
                    crate::channel::SentRecord::Reliable { channel, .. }
                    | crate::channel::SentRecord::Notify { channel, .. } => *channel,
                };
                let Some(half) = self.send.get_mut(usize::from(channel)) else {
                    continue;
                };
                if lost {
                    half.on_lost(record, packet.packet_number, &mut self.channel_events);
                } else {
                    half.on_acked(record, &mut self.channel_events);
                }
            }
            self.sent.recycle(packet.records);
        }
        self.settled = settled;
        if let Some(events) = events {
            self.flush_channel_events(events);
        }
    }

    fn flush_channel_events(&mut self, events: &mut VecDeque<Event>) {
        for event in self.channel_events.drain(..) {
            events.push_back(match event {
                ChannelEvent::Message { channel, data } => Event::Message {
                    connection: self.id,
                    channel,
                    data,
                },
                ChannelEvent::Delivery {
                    channel,
                    message,
                    outcome,
                } => Event::Delivery {
                    connection: self.id,
                    channel,
                    message,
                    outcome,
                },
            });
        }
    }

    /// A valid packet below the packet-number window but new by the window before the last far
    /// jump. One alone is dropped; a steady stream of them means the jump was forged and the
    /// real peer is behind it: the window goes back to where it was before the jump.
    fn resync(&mut self, pn: u64) -> bool {
        let consistent = self.too_old_streak > 0
            && pn > self.too_old_last
            && pn - self.too_old_last <= RESYNC_GAP;
        self.too_old_streak = if consistent {
            self.too_old_streak + 1
        } else {
            1
        };
        self.too_old_last = pn;
        if self.too_old_streak < RESYNC_STREAK {
            return false;
        }
        self.received.restore_previous();
        self.stats.resyncs += 1;
        true
    }
}

/// The full packet number of an ack's largest, or `None` if it names a packet never sent.
fn ack_range(sent: &SentPackets, wire_largest: u16) -> Option<u64> {
    let next = sent.next();
    let largest = extend(next, wire_largest);
    (largest < next).then_some(largest)
}

/// Acknowledges the 32 packets below `largest` whose bits are set.
fn ack_bits(sent: &mut SentPackets, settled: &mut Vec<Settled>, largest: u64, bits: u32) {
    for i in 0..32u64 {
        if bits & (1 << i) == 0 {
            continue;
        }
        let Some(pn) = largest.checked_sub(i + 1) else {
            break;
        };
        sent.ack(pn, settled);
    }
}

/// Message and fragment sizes for a payload budget.
pub(crate) fn sizing(payload_budget: usize) -> Sizing {
    Sizing {
        max_whole: payload_budget - MAX_DATA_HEADER - MAX_MESSAGE_HEADER,
        piece_size: payload_budget - MAX_DATA_HEADER - FrameWriter::MAX_FRAGMENT_HEADER,
    }
}
