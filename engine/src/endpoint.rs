//! Many connections on one socket, and the server's stateless side of the handshake.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::{ChannelId, Config, ConfigError, MAX_DATAGRAM_SIZE};
use crate::connection::{Connection, Role, SecureInit, CODE_SHUTDOWN};
use crate::cookie::{Cookie, CookieError, CookieJar};
use crate::error::{ConnectError, SendError};
use crate::secure::{
    verify_token, ClientId, ConnectToken, HandshakeGuard, PacketKeys, Security, TokenCheck,
    TokenError, VerifiedToken,
};
use crate::stats::{ConnectionStats, DropCounters, EndpointStats};
use crate::wire::{
    accept_fields, encode_accept, Challenge, ConnectRequest, DataHeader, Handshake, PacketKind,
    Reject, SecureHandshake, PROTOCOL_VERSION, REQUEST_MIN_SIZE,
};
use crate::{ConnectionId, DisconnectReason, Event, MessageId, RejectReason};

/// Handshake replies waiting to be sent; beyond this they are dropped (and counted).
const MAX_PENDING_REPLIES: usize = 1024;

/// Largest handshake reply.
const MAX_REPLY_LEN: usize = 64;

/// No-session replies sent per second at most, whatever the number of senders.
const MAX_NO_SESSION_PER_SEC: u32 = 1024;

/// A datagram to send, written by [`Endpoint::poll_transmit`] into the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// How many bytes of the buffer to send.
    pub size: usize,
}

/// A sans-I/O Tickwire endpoint: many connections multiplexed on one UDP socket.
///
/// It opens no socket, reads no clock and spawns nothing. The caller owns the socket and the
/// clock and drives it:
///
/// - **Inputs**: [`handle_datagram`](Self::handle_datagram) for every datagram received,
///   [`handle_timeout`](Self::handle_timeout) when the deadline from
///   [`poll_timeout`](Self::poll_timeout) passes, and the application calls
///   [`connect`](Self::connect), [`send`](Self::send) and [`disconnect`](Self::disconnect).
/// - **Outputs**, drained after every input, in this order: [`poll_transmit`](Self::poll_transmit)
///   until it returns `None` (send each datagram), [`poll_event`](Self::poll_event) until `None`,
///   then [`poll_timeout`](Self::poll_timeout) for the next wake-up.
///
/// ```
/// use std::time::Instant;
/// use tickwire::{Config, Endpoint, Event};
///
/// let now = Instant::now();
/// let mut server = Endpoint::new(Config { seed: Some(1), ..Config::server() }, now).unwrap();
/// let mut client = Endpoint::new(Config { seed: Some(2), ..Config::client() }, now).unwrap();
/// let server_addr = "127.0.0.1:7777".parse().unwrap();
/// let client_addr = "127.0.0.1:50000".parse().unwrap();
/// let connection = client.connect(server_addr, now).unwrap();
///
/// // Shuttle datagrams by hand (a real driver uses a socket; tests use `sim::Simulation`).
/// let mut buf = vec![0; Endpoint::MAX_DATAGRAM];
/// for _ in 0..3 {
///     while let Some(t) = client.poll_transmit(now, &mut buf) {
///         server.handle_datagram(now, client_addr, buf[..t.size].to_vec().into());
///     }
///     while let Some(t) = server.poll_transmit(now, &mut buf) {
///         client.handle_datagram(now, server_addr, buf[..t.size].to_vec().into());
///     }
/// }
/// assert!(matches!(client.poll_event(), Some(Event::Connected { .. })));
/// assert!(client.is_connected(connection));
/// ```
#[derive(Debug)]
pub struct Endpoint {
    config: Config,
    fingerprint: u32,
    rng: StdRng,
    cookies: CookieJar,
    connections: HashMap<ConnectionId, Connection, BuildHasherDefault<IdHasher>>,
    by_addr: HashMap<SocketAddr, ConnectionId>,
    next_id: u64,
    incoming: usize,
    events: VecDeque<Event>,
    replies: VecDeque<(SocketAddr, [u8; MAX_REPLY_LEN], usize)>,
    transmit_queue: VecDeque<ConnectionId>,
    /// Connection deadlines; an entry may be stale (earlier than the connection's real
    /// deadline), which costs one spurious check, never a missed timer.
    timers: BinaryHeap<Reverse<(Instant, ConnectionId)>>,
    /// Scratch list of connections due in `handle_timeout`.
    due: Vec<ConnectionId>,
    stats: EndpointStats,
    /// The `now` given to [`new`](Self::new): Unix time in secure mode counts from it.
    epoch: Instant,
    /// Secure server: the handshake rate cap and the used-token table.
    guard: Option<HandshakeGuard>,
    /// Secure server: sessions by session tag (the salt the server chose, which a client that
    /// may have moved names in its packets) and by client id.
    by_session: HashMap<u64, ConnectionId>,
    by_client: HashMap<ClientId, ConnectionId>,
    /// Start of the current one-second window of no-session replies, and how many it sent.
    no_session_window: (Instant, u32),
}

impl Endpoint {
    /// The buffer size [`poll_transmit`](Self::poll_transmit) needs at most: the padded
    /// connection request or the largest payload budget, whichever is larger.
    pub const MAX_DATAGRAM: usize = MAX_DATAGRAM_SIZE;

    /// Creates an endpoint; `now` is its epoch for cookie timestamps.
    pub fn new(config: Config, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let cookies = CookieJar::new(now, config.cookie_lifetime, &mut rng);
        let guard = match &config.security {
            Security::Tokens(tokens) => {
                Some(HandshakeGuard::new(tokens.max_handshakes_per_sec, now))
            }
            Security::Unsecured => None,
        };
        Ok(Self {
            fingerprint: config.channels.fingerprint(),
            config,
            rng,
            cookies,
            connections: HashMap::default(),
            by_addr: HashMap::new(),
            next_id: 0,
            incoming: 0,
            events: VecDeque::new(),
            replies: VecDeque::new(),
            transmit_queue: VecDeque::new(),
            timers: BinaryHeap::new(),
            due: Vec::new(),
            stats: EndpointStats::default(),
            epoch: now,
            guard,
            by_session: HashMap::new(),
            by_client: HashMap::new(),
            no_session_window: (now, 0),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The smallest buffer [`poll_transmit`](Self::poll_transmit) accepts for this configuration.
    pub fn transmit_buffer_size(&self) -> usize {
        self.config.payload_budget.max(REQUEST_MIN_SIZE)
    }

    // ---- application calls ----

    /// Starts connecting to a server. The outcome arrives as [`Event::Connected`] or
    /// [`Event::Disconnected`] (handshake timeout, or rejected). With
    /// [`Config::connect_token`] set, this is [`connect_with_token`](Self::connect_with_token).
    pub fn connect(
        &mut self,
        remote: SocketAddr,
        now: Instant,
    ) -> Result<ConnectionId, ConnectError> {
        match self.config.connect_token.clone() {
            Some(token) => self.connect_with_token(remote, &token, now),
            None => self.start(remote, None, now),
        }
    }

    /// Starts a secure session with a server that requires connect tokens
    /// ([`Security::Tokens`]): the token goes in the padded connection request, and every
    /// packet after the handshake is encrypted with the keys it carries. A server that does not
    /// know tokens drops the request (the connection ends in
    /// [`DisconnectReason::HandshakeTimeout`]).
    pub fn connect_with_token(
        &mut self,
        remote: SocketAddr,
        token: &ConnectToken,
        now: Instant,
    ) -> Result<ConnectionId, ConnectError> {
        self.start(remote, Some(SecureInit::Client(token.clone())), now)
    }

    fn start(
        &mut self,
        remote: SocketAddr,
        secure: Option<SecureInit>,
        now: Instant,
    ) -> Result<ConnectionId, ConnectError> {
        if remote.ip().is_unspecified() || remote.port() == 0 {
            return Err(ConnectError::InvalidAddress(remote));
        }
        if self.by_addr.contains_key(&remote) {
            return Err(ConnectError::AlreadyConnected(remote));
        }
        let nonce = self.rng.random::<u64>() | 1;
        let id = self.insert(Role::Client, remote, nonce, now, secure);
        Ok(id)
    }

    /// Queues a message on a channel. Returns its id, which [`Event::Delivery`] names on
    /// channels with `notify_delivery`. Nothing is sent until [`poll_transmit`](Self::poll_transmit).
    pub fn send(
        &mut self,
        connection: ConnectionId,
        channel: ChannelId,
        data: Bytes,
    ) -> Result<MessageId, SendError> {
        let Some(conn) = self.connections.get_mut(&connection) else {
            return Err(SendError::UnknownConnection(data));
        };
        if !conn.is_established() {
            return Err(SendError::NotConnected(data));
        }
        let id = conn.send(channel, data)?;
        // Queueing a message never moves the connection's deadline (retransmission and ack
        // timers start when a packet is built), so the timer heap is left alone: this runs for
        // every message and the deadline is costly to compute.
        enqueue(&mut self.transmit_queue, conn, connection);
        Ok(id)
    }

    /// Asks the peer to acknowledge everything it has received without waiting for its
    /// `max_ack_delay`: the next packet to `connection` carries an ack request (a 1-byte
    /// frame; the packet is sent on its own if no data is queued), which the receiver answers
    /// with an acknowledgement at once.
    ///
    /// For peers that hold acknowledgements back to save datagrams (a large `max_ack_delay`
    /// and `ack_frequency`) yet sometimes need to know quickly that everything arrived: a
    /// sleepy device about to sleep, a sender about to close. Returns `false` (and does
    /// nothing) if the connection is unknown or not established.
    pub fn request_ack(&mut self, connection: ConnectionId) -> bool {
        let Some(conn) = self.connections.get_mut(&connection) else {
            return false;
        };
        if !conn.request_ack() {
            return false;
        }
        enqueue(&mut self.transmit_queue, conn, connection);
        true
    }

    /// Closes a connection gracefully: messages already queued are still delivered (for at
    /// most `ack_timeout`), then the peer is told `code` (sent redundantly) and sees
    /// [`DisconnectReason::Remote`]; this side gets [`DisconnectReason::Local`] at once and
    /// `send` refuses new messages.
    /// Codes from 0xFF00 up are reserved for the engine.
    pub fn disconnect(&mut self, connection: ConnectionId, code: u16, now: Instant) {
        let Some(conn) = self.connections.get_mut(&connection) else {
            return;
        };
        conn.close(
            now,
            code,
            DisconnectReason::Local { code },
            true,
            &mut self.events,
        );
        touch(&mut self.transmit_queue, &mut self.timers, conn, connection);
    }

    /// Closes every connection, as [`disconnect`](Self::disconnect) with the shutdown code.
    pub fn shutdown(&mut self, now: Instant) {
        let ids: Vec<ConnectionId> = self.connections.keys().copied().collect();
        for id in ids {
            if let Some(conn) = self.connections.get_mut(&id) {
                conn.close(
                    now,
                    CODE_SHUTDOWN,
                    DisconnectReason::Shutdown,
                    true,
                    &mut self.events,
                );
                touch(&mut self.transmit_queue, &mut self.timers, conn, id);
            }
        }
    }

    // ---- getters ----

    /// Whether the connection exists and has completed its handshake.
    pub fn is_connected(&self, connection: ConnectionId) -> bool {
        self.connections
            .get(&connection)
            .is_some_and(Connection::is_established)
    }

    /// The peer's address.
    pub fn remote_address(&self, connection: ConnectionId) -> Option<SocketAddr> {
        self.connections.get(&connection).map(Connection::remote)
    }

    /// Live connections (handshaking, established or closing).
    pub fn connections(&self) -> impl Iterator<Item = ConnectionId> + '_ {
        self.connections.keys().copied()
    }

    /// Number of live connections.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// A snapshot of one connection's statistics.
    pub fn connection_stats(&self, connection: ConnectionId) -> Option<ConnectionStats> {
        self.connections.get(&connection).map(Connection::stats)
    }

    /// Bytes queued or unacknowledged on all of a connection's outgoing channels.
    pub fn buffered_bytes(&self, connection: ConnectionId) -> Option<usize> {
        self.connections.get(&connection).map(Connection::buffered)
    }

    /// The client id of a secure session (from its token), on both sides.
    pub fn client_id(&self, connection: ConnectionId) -> Option<ClientId> {
        self.connections
            .get(&connection)
            .and_then(Connection::client_id)
    }

    /// Server side of a secure session: the user data the backend sealed in the client's token.
    pub fn user_data(&self, connection: ConnectionId) -> Option<&[u8]> {
        self.connections
            .get(&connection)
            .filter(|c| c.role() == Role::Server)
            .and_then(Connection::user_data)
    }

    /// Whether the connection is a secure session (encrypted and authenticated).
    pub fn is_secure(&self, connection: ConnectionId) -> bool {
        self.connections
            .get(&connection)
            .is_some_and(Connection::is_secure)
    }

    /// Endpoint-wide statistics.
    pub fn stats(&self) -> &EndpointStats {
        &self.stats
    }

    // ---- handle_* inputs ----

    /// Feeds one received datagram. Malformed or unexpected datagrams are dropped and counted;
    /// nothing here panics on any input.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: Bytes) {
        self.stats.datagrams_received += 1;
        self.stats.bytes_received += datagram.len() as u64;
        if datagram.len() > MAX_DATAGRAM_SIZE {
            self.stats.dropped.oversized += 1;
            return;
        }
        let kind = match PacketKind::of(&datagram) {
            Ok(kind) => kind,
            Err(_) => {
                self.stats.dropped.malformed += 1;
                return;
            }
        };
        let existing = self.by_addr.get(&from).copied();
        if kind == PacketKind::Data {
            let id = match existing {
                Some(id) => id,
                None => match self.session_of(&datagram) {
                    Some(id) => id,
                    None => {
                        self.stats.dropped.unknown_peer += 1;
                        self.reply_no_session(now, from, &datagram);
                        return;
                    }
                },
            };
            if let Some(conn) = self.connections.get_mut(&id) {
                let old = conn.remote();
                if conn.handle_data(now, from, datagram, &mut self.events) {
                    // The new path was validated: the session now lives at `from`.
                    if self.by_addr.get(&old) == Some(&id) {
                        self.by_addr.remove(&old);
                    }
                    self.by_addr.insert(from, id);
                }
                // Most datagrams of a steady stream ask for nothing at once (the ack is held
                // back): only the timer needs to move.
                if conn.may_transmit(now) {
                    enqueue(&mut self.transmit_queue, conn, id);
                }
                schedule(&mut self.timers, conn, id);
            }
            self.reap(id);
            return;
        }
        // Secure layouts only where secure sessions live; elsewhere they stay malformed, as in
        // the unsecured protocol.
        let secure_here = self.guard.is_some()
            || existing
                .and_then(|id| self.connections.get(&id))
                .is_some_and(Connection::is_secure);
        if secure_here && SecureHandshake::is_secure(&datagram) {
            self.handle_secure_handshake(now, from, existing, &datagram);
            return;
        }
        let packet = match Handshake::decode(&datagram) {
            Ok(packet) => packet,
            Err(crate::wire::DecodeError::RequestTooSmall) => {
                self.stats.dropped.request_too_small += 1;
                return;
            }
            Err(_) => {
                self.stats.dropped.malformed += 1;
                return;
            }
        };
        match packet {
            Handshake::Request(_) | Handshake::Response(_) if self.guard.is_some() => {
                self.stats.dropped.token_missing += 1;
            }
            Handshake::Request(request) => self.handle_request(now, from, request),
            Handshake::Response(response) => {
                self.handle_response(now, from, response.request, &response.cookie)
            }
            other => {
                let Some(id) = existing else {
                    self.stats.dropped.unknown_peer += 1;
                    return;
                };
                if let Some(conn) = self.connections.get_mut(&id) {
                    if conn.handle_handshake(now, other, &mut self.events).is_ok() {
                        touch(&mut self.transmit_queue, &mut self.timers, conn, id);
                    }
                }
                self.reap(id);
            }
        }
    }

    /// Runs every timer due at `now`: retransmissions, acks, keepalives, timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Collect first: a connection whose deadline stays due until it transmits (an ack, a
        // handshake retry) must be handled once per call, not spun on.
        let mut due = std::mem::take(&mut self.due);
        while let Some(&Reverse((at, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some(conn) = self.connections.get_mut(&id) {
                if conn.scheduled == Some(at) {
                    conn.scheduled = None;
                }
                due.push(id);
            }
        }
        for &id in &due {
            let Some(conn) = self.connections.get_mut(&id) else {
                continue;
            };
            if conn.poll_timeout().is_some_and(|t| t <= now) {
                conn.handle_timeout(now, &mut self.events);
                enqueue(&mut self.transmit_queue, conn, id);
            }
            schedule(&mut self.timers, conn, id);
            self.reap(id);
        }
        due.clear();
        self.due = due;
    }

    // ---- poll_* outputs ----

    /// Writes the next datagram to send into `buf` (at least
    /// [`transmit_buffer_size`](Self::transmit_buffer_size) bytes) and says where it goes.
    /// Call until it returns `None`.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if let Some((destination, reply, len)) = self.replies.pop_front() {
            let size = len.min(buf.len());
            buf[..size].copy_from_slice(&reply[..size]);
            self.count_sent(size);
            return Some(Transmit { destination, size });
        }
        while let Some(id) = self.transmit_queue.pop_front() {
            let Some(conn) = self.connections.get_mut(&id) else {
                continue;
            };
            let written = conn.poll_transmit(now, buf);
            conn.drain_events(&mut self.events);
            schedule(&mut self.timers, conn, id);
            let destination = conn.destination();
            match written {
                Some(size) => {
                    self.transmit_queue.push_front(id);
                    self.stats.datagrams_sent += 1;
                    self.stats.bytes_sent += size as u64;
                    if conn.is_closed() {
                        conn.queued = false;
                        self.transmit_queue.pop_front();
                        self.reap(id);
                    }
                    return Some(Transmit { destination, size });
                }
                None => {
                    conn.queued = false;
                    self.reap(id);
                }
            }
        }
        None
    }

    /// The next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called. It may be a
    /// little early (a deadline that moved later); calling early is harmless.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    // ---- internals ----

    fn insert(
        &mut self,
        role: Role,
        remote: SocketAddr,
        nonce: u64,
        now: Instant,
        secure: Option<SecureInit>,
    ) -> ConnectionId {
        let id = ConnectionId(self.next_id);
        self.next_id += 1;
        let mut conn = Connection::new(id, role, remote, nonce, &self.config, now, secure);
        if role == Role::Server {
            if let (Some(client), Some(tag)) = (conn.client_id(), conn.session_tag()) {
                self.by_session.insert(tag, id);
                self.by_client.insert(client, id);
            }
        }
        touch(&mut self.transmit_queue, &mut self.timers, &mut conn, id);
        self.connections.insert(id, conn);
        self.by_addr.insert(remote, id);
        if role == Role::Server {
            self.incoming += 1;
        }
        self.stats.connections_opened += 1;
        self.stats.connections_live = self.connections.len() as u64;
        id
    }

    /// Removes a connection once it is fully closed.
    fn reap(&mut self, id: ConnectionId) {
        if !self.connections.get(&id).is_some_and(Connection::is_closed) {
            return;
        }
        let Some(conn) = self.connections.remove(&id) else {
            return;
        };
        if self.by_addr.get(&conn.remote()) == Some(&id) {
            self.by_addr.remove(&conn.remote());
        }
        self.forget_secure(&conn, id);
        if conn.role() == Role::Server {
            self.incoming -= 1;
        }
        self.stats.connections_live = self.connections.len() as u64;
    }

    /// Drops a closed secure session's entries from the session and client maps.
    fn forget_secure(&mut self, conn: &Connection, id: ConnectionId) {
        if let Some(tag) = conn.session_tag() {
            if self.by_session.get(&tag) == Some(&id) {
                self.by_session.remove(&tag);
            }
        }
        if let Some(client) = conn.client_id() {
            if self.by_client.get(&client) == Some(&id) {
                self.by_client.remove(&client);
            }
        }
    }

    /// Secure server: the session a data packet from an unknown address names in its header.
    fn session_of(&self, datagram: &[u8]) -> Option<ConnectionId> {
        self.guard.as_ref()?;
        let (header, _) = DataHeader::decode_secure(datagram).ok()?;
        self.by_session.get(&header.session?).copied()
    }

    /// Unix time in seconds at `now`, in secure mode.
    fn unix_now(&self, now: Instant) -> u64 {
        match &self.config.security {
            Security::Tokens(tokens) => tokens
                .unix_time
                .saturating_add(now.saturating_duration_since(self.epoch).as_secs()),
            Security::Unsecured => 0,
        }
    }

    /// A handshake or disconnect packet with the secure bit.
    fn handle_secure_handshake(
        &mut self,
        now: Instant,
        from: SocketAddr,
        existing: Option<ConnectionId>,
        datagram: &[u8],
    ) {
        let packet = match SecureHandshake::decode(datagram) {
            Ok(packet) => packet,
            Err(crate::wire::DecodeError::RequestTooSmall) => {
                self.stats.dropped.request_too_small += 1;
                return;
            }
            Err(_) => {
                self.stats.dropped.malformed += 1;
                return;
            }
        };
        match packet {
            SecureHandshake::Accept { nonce, salt, tag } => {
                let Some(id) = existing else {
                    self.stats.dropped.unknown_peer += 1;
                    return;
                };
                if let Some(conn) = self.connections.get_mut(&id) {
                    if conn
                        .handle_secure_accept(now, nonce, salt, &tag, &mut self.events)
                        .is_ok()
                    {
                        touch(&mut self.transmit_queue, &mut self.timers, conn, id);
                    }
                }
                self.reap(id);
            }
            SecureHandshake::Disconnect { token, code, tag } => {
                let Some(id) = existing else {
                    self.stats.dropped.unknown_peer += 1;
                    return;
                };
                if let Some(conn) = self.connections.get_mut(&id) {
                    if conn
                        .handle_secure_disconnect(now, token, code, &tag, &mut self.events)
                        .is_ok()
                    {
                        touch(&mut self.transmit_queue, &mut self.timers, conn, id);
                    }
                }
                self.reap(id);
            }
            SecureHandshake::Request { request, token } => {
                let token = datagram.get(token).unwrap_or_default();
                self.handle_secure_request(now, from, request, token);
            }
            SecureHandshake::Response {
                request,
                cookie,
                token,
            } => {
                let token = datagram.get(token).unwrap_or_default();
                self.handle_secure_response(now, from, request, &cookie, token);
            }
        }
    }

    /// Opens and checks a token (one decryption at most, within the global rate cap), and
    /// refuses one already used from another address. Counts every refusal.
    fn open_token(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sealed: &[u8],
    ) -> Option<VerifiedToken> {
        let unix_now = self.unix_now(now);
        let Security::Tokens(tokens) = &self.config.security else {
            self.stats.dropped.unexpected += 1;
            return None;
        };
        let guard = self.guard.as_mut()?;
        if !guard.allow(now) {
            self.stats.dropped.handshake_rate_limited += 1;
            return None;
        }
        let check = TokenCheck {
            protocol_id: self.config.protocol_id,
            unix_now,
            server_addresses: &tokens.public_addresses,
        };
        let token = match verify_token(&tokens.private_key, sealed, &check) {
            Ok(token) => token,
            Err(error) => {
                let counter = match error {
                    TokenError::Malformed | TokenError::Invalid => {
                        &mut self.stats.dropped.token_invalid
                    }
                    TokenError::WrongProtocol => &mut self.stats.dropped.protocol_mismatch,
                    TokenError::Expired => &mut self.stats.dropped.token_expired,
                    TokenError::WrongServer => &mut self.stats.dropped.token_wrong_server,
                };
                *counter += 1;
                return None;
            }
        };
        if guard.used_elsewhere(&token.tag(), from) {
            self.stats.dropped.token_reused += 1;
            return None;
        }
        Some(token)
    }

    fn handle_secure_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        request: ConnectRequest,
        sealed: &[u8],
    ) {
        if !self.config.accept_incoming || self.guard.is_none() {
            self.stats.dropped.unexpected += 1;
            return;
        }
        if let Err(reason) = self.check_request(&request) {
            self.reject(from, request.nonce, reason);
            return;
        }
        if self.open_token(now, from, sealed).is_none() {
            return;
        }
        if self.incoming >= self.config.max_connections && !self.by_addr.contains_key(&from) {
            self.stats.dropped.server_full += 1;
            self.reject(from, request.nonce, RejectReason::ServerFull);
            return;
        }
        let cookie = self.cookies.issue(now, from, request.nonce, &mut self.rng);
        self.reply(
            from,
            Handshake::Challenge(Challenge {
                nonce: request.nonce,
                cookie,
            }),
        );
    }

    fn handle_secure_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        request: ConnectRequest,
        cookie: &Cookie,
        sealed: &[u8],
    ) {
        if self.guard.is_none() {
            self.stats.dropped.unexpected += 1;
            return;
        }
        // The cookie first: it is cheap and proves the address before any decryption.
        if !self.request_admissible(now, from, &request, cookie) {
            return;
        }
        if let Some(&existing) = self.by_addr.get(&from) {
            let repeat = self
                .connections
                .get(&existing)
                .filter(|c| c.nonce() == request.nonce)
                .and_then(|c| c.repeat_accept(cookie));
            if let Some(accept) = repeat {
                // The accept was lost: say it again (no decryption needed).
                self.reply_bytes(from, &accept);
                return;
            }
        }
        let Some(token) = self.open_token(now, from, sealed) else {
            return;
        };
        // A new session from this address or for this client replaces the old one.
        let replaced = [
            self.by_addr.get(&from).copied(),
            self.by_client.get(&token.client_id()).copied(),
        ];
        for old in replaced.into_iter().flatten() {
            if let Some(conn) = self.connections.get_mut(&old) {
                conn.abandon(DisconnectReason::Replaced, &mut self.events);
            }
            self.force_reap(old);
        }
        if self.incoming >= self.config.max_connections {
            self.stats.dropped.server_full += 1;
            self.reject(from, request.nonce, RejectReason::ServerFull);
            return;
        }
        let unix_now = self.unix_now(now);
        if let Some(guard) = self.guard.as_mut() {
            guard.record(token.tag(), from, token.expires(), unix_now);
        }
        // A fresh salt for every session created: even a replayed response (same nonce, same
        // cookie) gets keys no earlier session had, so no nonce is ever reused.
        // The salt also names the session in the client's tagged packets: unique among the
        // live sessions, and chosen by the server, so no client can claim another's tag.
        let mut salt = self.rng.random::<u64>();
        while self.by_session.contains_key(&salt) {
            salt = self.rng.random::<u64>();
        }
        let (c2s, s2c) = token.keys();
        let keys = PacketKeys::derive(c2s, s2c, request.nonce, cookie, salt, false);
        let fields = accept_fields(request.nonce, salt);
        let accept = encode_accept(&fields, &keys.accept_tag(&fields));
        let client_id = token.client_id();
        let secure = SecureInit::Server {
            keys: Box::new(keys),
            client_id,
            user_data: token.into_user_data(),
            cookie: *cookie,
            accept,
            session_tag: salt,
        };
        let id = self.insert(Role::Server, from, request.nonce, now, Some(secure));
        self.events.push_back(Event::Connected {
            connection: id,
            remote: from,
            transport: crate::Transport::Native,
        });
        self.reply_bytes(from, &accept);
    }

    fn check_request(&mut self, request: &ConnectRequest) -> Result<(), RejectReason> {
        if request.version != PROTOCOL_VERSION {
            self.stats.dropped.version_mismatch += 1;
            return Err(RejectReason::VersionMismatch);
        }
        if request.protocol_id != self.config.protocol_id {
            self.stats.dropped.protocol_mismatch += 1;
            return Err(RejectReason::ProtocolMismatch);
        }
        if request.fingerprint != self.fingerprint {
            self.stats.dropped.channel_mismatch += 1;
            return Err(RejectReason::ChannelMismatch);
        }
        Ok(())
    }

    fn handle_request(&mut self, now: Instant, from: SocketAddr, request: ConnectRequest) {
        if !self.config.accept_incoming {
            self.stats.dropped.unexpected += 1;
            return;
        }
        if let Err(reason) = self.check_request(&request) {
            self.reject(from, request.nonce, reason);
            return;
        }
        if self.incoming >= self.config.max_connections && !self.by_addr.contains_key(&from) {
            self.stats.dropped.server_full += 1;
            self.reject(from, request.nonce, RejectReason::ServerFull);
            return;
        }
        let cookie = self.cookies.issue(now, from, request.nonce, &mut self.rng);
        self.reply(
            from,
            Handshake::Challenge(Challenge {
                nonce: request.nonce,
                cookie,
            }),
        );
    }

    fn handle_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        request: ConnectRequest,
        cookie: &crate::cookie::Cookie,
    ) {
        if !self.request_admissible(now, from, &request, cookie) {
            return;
        }
        if let Some(&existing) = self.by_addr.get(&from) {
            let same = self
                .connections
                .get(&existing)
                .is_some_and(|c| c.nonce() == request.nonce);
            if same {
                // The accept was lost: say it again.
                self.reply(
                    from,
                    Handshake::Accept {
                        nonce: request.nonce,
                    },
                );
                return;
            }
            // A new session from the same address (the client restarted): replace the old one.
            if let Some(old) = self.connections.get_mut(&existing) {
                old.abandon(DisconnectReason::Replaced, &mut self.events);
            }
            self.by_addr.remove(&from);
            self.force_reap(existing);
        }
        if self.incoming >= self.config.max_connections {
            self.stats.dropped.server_full += 1;
            self.reject(from, request.nonce, RejectReason::ServerFull);
            return;
        }
        let id = self.insert(Role::Server, from, request.nonce, now, None);
        self.events.push_back(Event::Connected {
            connection: id,
            remote: from,
            transport: crate::Transport::Native,
        });
        self.reply(
            from,
            Handshake::Accept {
                nonce: request.nonce,
            },
        );
    }

    fn force_reap(&mut self, id: ConnectionId) {
        if let Some(conn) = self.connections.remove(&id) {
            if self.by_addr.get(&conn.remote()) == Some(&id) {
                self.by_addr.remove(&conn.remote());
            }
            self.forget_secure(&conn, id);
            if conn.role() == Role::Server {
                self.incoming -= 1;
            }
        }
        self.stats.connections_live = self.connections.len() as u64;
    }

    /// The checks every connection response passes before it may create a session: this
    /// endpoint accepts clients, the cookie proves `from`, and the request matches this
    /// server (else a reject is queued). Refusals are counted.
    fn request_admissible(
        &mut self,
        now: Instant,
        from: SocketAddr,
        request: &ConnectRequest,
        cookie: &crate::cookie::Cookie,
    ) -> bool {
        if !self.config.accept_incoming {
            self.stats.dropped.unexpected += 1;
            return false;
        }
        if !self.cookie_valid(now, from, request.nonce, cookie) {
            return false;
        }
        if let Err(reason) = self.check_request(request) {
            self.reject(from, request.nonce, reason);
            return false;
        }
        true
    }

    /// Checks a handshake cookie for `from` and `nonce`, counting a refusal by its reason.
    fn cookie_valid(
        &mut self,
        now: Instant,
        from: SocketAddr,
        nonce: u64,
        cookie: &crate::cookie::Cookie,
    ) -> bool {
        match self.cookies.verify(now, from, nonce, cookie, &mut self.rng) {
            Ok(()) => true,
            Err(CookieError::Invalid) => {
                self.stats.dropped.cookie_invalid += 1;
                false
            }
            Err(CookieError::Expired) => {
                self.stats.dropped.cookie_expired += 1;
                false
            }
        }
    }

    fn reject(&mut self, to: SocketAddr, nonce: u64, reason: RejectReason) {
        let reason = reason.code();
        self.reply(to, Handshake::Reject(Reject { nonce, reason }));
    }

    fn reply(&mut self, to: SocketAddr, packet: Handshake) {
        if self.replies.len() >= MAX_PENDING_REPLIES {
            self.stats.dropped.reply_queue_full += 1;
            return;
        }
        let mut buf = [0u8; MAX_REPLY_LEN];
        if let Ok(len) = packet.encode(&mut buf) {
            self.replies.push_back((to, buf, len));
        }
    }

    fn reply_bytes(&mut self, to: SocketAddr, packet: &[u8]) {
        if self.replies.len() >= MAX_PENDING_REPLIES {
            self.stats.dropped.reply_queue_full += 1;
            return;
        }
        let mut buf = [0u8; MAX_REPLY_LEN];
        let Some(out) = buf.get_mut(..packet.len()) else {
            return;
        };
        out.copy_from_slice(packet);
        self.replies.push_back((to, buf, packet.len()));
    }

    /// Server: tells an address that sent a well-formed data packet but has no session here
    /// (the client's address changed, or this server restarted) that it must reconnect. One
    /// byte for at least four, never more than [`MAX_NO_SESSION_PER_SEC`] a second; no state.
    fn reply_no_session(&mut self, now: Instant, to: SocketAddr, datagram: &[u8]) {
        if !self.config.accept_incoming {
            return;
        }
        let header = if self.guard.is_some() {
            DataHeader::decode_secure(datagram)
        } else {
            DataHeader::decode(datagram)
        };
        // A header and at least one byte of frames: four bytes or more, four times the reply.
        // A secure client names its session when it hears nothing (it may have moved): only
        // then is an unknown session worth a reply, the path validation handles the rest.
        let secure = self.guard.is_some();
        let worth_it = header.is_ok_and(|(header, offset)| {
            offset < datagram.len() && (!secure || header.session.is_some())
        });
        if !worth_it {
            return;
        }
        let (start, sent) = &mut self.no_session_window;
        if now.saturating_duration_since(*start) >= Duration::from_secs(1) {
            *start = now;
            *sent = 0;
        }
        if *sent >= MAX_NO_SESSION_PER_SEC {
            self.stats.no_session_suppressed += 1;
            return;
        }
        *sent += 1;
        self.stats.no_session_replies += 1;
        self.reply(to, Handshake::NoSession);
    }

    fn count_sent(&mut self, size: usize) {
        self.stats.datagrams_sent += 1;
        self.stats.bytes_sent += size as u64;
    }

    /// Incoming datagrams dropped before reaching a connection, plus those each connection
    /// dropped, summed.
    pub fn total_dropped(&self) -> DropCounters {
        let mut total = self.stats.dropped.clone();
        for conn in self.connections.values() {
            let stats = conn.stats();
            add_counters(&mut total, &stats.dropped);
        }
        total
    }
}

/// Hashes [`ConnectionId`]s with one multiplication instead of SipHash: the endpoint assigns them
/// from a counter, so no peer can choose keys that collide, and the map is read for every
/// message sent. (Addresses, which peers do choose, keep the standard hasher.)
#[derive(Clone, Copy, Debug, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Queues the connection for transmission and makes sure its timers are scheduled: called
/// after anything that may give it something to send or change its deadline.
fn touch(
    queue: &mut VecDeque<ConnectionId>,
    timers: &mut BinaryHeap<Reverse<(Instant, ConnectionId)>>,
    conn: &mut Connection,
    id: ConnectionId,
) {
    enqueue(queue, conn, id);
    schedule(timers, conn, id);
}

/// Makes sure the timer heap has an entry no later than the connection's deadline.
fn schedule(
    timers: &mut BinaryHeap<Reverse<(Instant, ConnectionId)>>,
    conn: &mut Connection,
    id: ConnectionId,
) {
    let Some(deadline) = conn.poll_timeout() else {
        return;
    };
    if conn.scheduled.is_some_and(|at| at <= deadline) {
        return;
    }
    conn.scheduled = Some(deadline);
    timers.push(Reverse((deadline, id)));
}

fn enqueue(queue: &mut VecDeque<ConnectionId>, conn: &mut Connection, id: ConnectionId) {
    if !conn.queued {
        conn.queued = true;
        queue.push_back(id);
    }
}

fn add_counters(total: &mut DropCounters, more: &DropCounters) {
    total.malformed += more.malformed;
    total.duplicate += more.duplicate;
    total.too_old += more.too_old;
    total.unknown_peer += more.unknown_peer;
    total.unexpected += more.unexpected;
    total.bogus_ack += more.bogus_ack;
    total.violation += more.violation;
    total.decrypt_failed += more.decrypt_failed;
}
