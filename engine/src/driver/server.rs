//! [`Server`]: native UDP, QUIC, or both at once, behind one event stream.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

#[cfg(feature = "quic")]
use super::open_socket;
#[cfg(feature = "quic")]
use super::quic::{quic_port, QuicError, QuicServer};
#[cfg(feature = "quic")]
use super::quic::{CertFingerprint, Session};
use super::udp::NativeServer;
use super::{BindError, DriverConfig, Transport};
use crate::sim::{LinkConfig, LinkConfigError};
#[cfg(feature = "quic")]
use crate::ChannelKind;
use crate::{ChannelId, ConnectionId, ConnectionStats, EndpointStats, Event, MessageId, SendError};
#[cfg(feature = "quic")]
use std::sync::Arc;

/// Tries at binding a native port whose successor is free for QUIC, when the port is chosen by
/// the system.
#[cfg(feature = "quic")]
const PORT_PAIR_ATTEMPTS: usize = 16;

/// A Tickwire server, driven by tokio tasks: native UDP (the default), QUIC, or both
/// ([`DriverConfig::transport`]: `Native`, `Quic`, `Auto`/`Hybrid`). Events of every transport
/// come out of one [`next_event`](Self::next_event); connection ids are unique across them.
///
/// ```no_run
/// use tickwire::{DriverConfig, Event, Server};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let mut server = Server::bind("0.0.0.0:7777".parse()?, DriverConfig::server()).await?;
/// while let Some(event) = server.next_event().await {
///     if let Event::Message { connection, channel, data } = event {
///         server.send(connection, channel, data)?; // echo
///     }
/// }
/// # Ok(()) }
/// ```
pub struct Server {
    native: Option<NativeServer>,
    #[cfg(feature = "quic")]
    quic: Option<QuicServer>,
    /// Native `Connected` events held back while a hybrid client from that IP may still present
    /// its pairing token, with the time they are released regardless.
    #[cfg(feature = "quic")]
    held: Vec<(tokio::time::Instant, Event)>,
    #[cfg(feature = "quic")]
    pairing_wait: Duration,
    local_addr: SocketAddr,
    /// How long a shutdown lets queued data drain.
    #[cfg_attr(not(feature = "quic"), allow(dead_code))]
    drain: Duration,
}

impl Server {
    /// Binds on `addr` (use port 0 for any free port) and starts serving: native UDP on `addr`,
    /// QUIC on the next port (or [`QuicConfig::port`](crate::QuicConfig::port)), as
    /// [`DriverConfig::transport`] says. Must be called within a tokio runtime.
    pub async fn bind(addr: SocketAddr, mut config: DriverConfig) -> Result<Self, BindError> {
        config.endpoint.accept_incoming = true;
        config.validate()?;
        let drain = config.endpoint.ack_timeout;
        let transport = config.transport;
        if transport == Transport::Native {
            let native = NativeServer::bind(addr, config).await?;
            return Ok(Self {
                local_addr: native.local_addr(),
                native: Some(native),
                #[cfg(feature = "quic")]
                quic: None,
                #[cfg(feature = "quic")]
                held: Vec::new(),
                #[cfg(feature = "quic")]
                pairing_wait: Duration::ZERO,
                drain,
            });
        }
        #[cfg(feature = "quic")]
        {
            let (native_socket, quic_socket) = bind_pair(addr, &config)?;
            let local_addr = native_socket
                .local_addr()
                .map_err(|e| BindError::from_io(addr, e))?;
            let quic = QuicServer::start(
                quic_socket,
                &config.endpoint,
                &config.quic,
                config.link_seed,
            )?;
            let pairing_wait = config.quic.handshake_timeout;
            let native = if transport.serves_native() {
                // The native driver opens its own socket on the port just reserved.
                drop(native_socket);
                Some(NativeServer::bind(local_addr, config).await?)
            } else {
                None
            };
            Ok(Self {
                native,
                quic: Some(quic),
                held: Vec::new(),
                pairing_wait,
                local_addr,
                drain,
            })
        }
        #[cfg(not(feature = "quic"))]
        unreachable!("validate refuses QUIC transports without the quic feature")
    }

    /// The address clients connect to: the native socket's (with QUIC only, the native port
    /// reserved at bind time, still the one clients name).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The QUIC socket's address, if QUIC is served.
    #[cfg(feature = "quic")]
    pub fn quic_addr(&self) -> Option<SocketAddr> {
        self.quic.as_ref().map(QuicServer::local_addr)
    }

    /// The SHA-256 fingerprint of the certificate QUIC presents, for clients to pin
    /// (`--server-cert-sha256 HEX`); `None` when QUIC is not served.
    #[cfg(feature = "quic")]
    pub fn cert_sha256(&self) -> Option<CertFingerprint> {
        self.quic.as_ref().map(QuicServer::fingerprint)
    }

    /// The client id a secure native session presented in its connect token; `None` for an
    /// unsecured or QUIC session, or an unknown connection. Lets the application check that
    /// what a client says about itself matches what its token was issued for.
    pub fn client_id(&self, connection: ConnectionId) -> Option<crate::ClientId> {
        self.native.as_ref()?.client_id(connection)
    }

    /// Which transport carries a connection: `Native`, `Quic` or `Hybrid`; `None` if unknown.
    pub fn transport_of(&self, connection: ConnectionId) -> Option<Transport> {
        #[cfg(feature = "quic")]
        if let Some(session) = self.quic.as_ref().and_then(|q| q.session(connection)) {
            return Some(session.transport());
        }
        // One lookup, not a list of every connection: the hub asks this for each new session.
        let native = self.native.as_ref()?;
        native.remote_addr(connection).map(|_| Transport::Native)
    }

    /// Queues a message for a client; it leaves at once.
    pub fn send(
        &self,
        connection: ConnectionId,
        channel: ChannelId,
        data: Bytes,
    ) -> Result<MessageId, SendError> {
        #[cfg(feature = "quic")]
        if let Some(session) = self.quic_session(connection, channel) {
            return session.send(channel, data);
        }
        match &self.native {
            Some(native) => native.send(connection, channel, data),
            None => Err(SendError::UnknownConnection(data)),
        }
    }

    /// Sends, waiting while the channel's send buffer is full (backpressure instead of
    /// [`SendError::BufferFull`]).
    pub async fn send_wait(
        &self,
        connection: ConnectionId,
        channel: ChannelId,
        data: Bytes,
    ) -> Result<MessageId, SendError> {
        #[cfg(feature = "quic")]
        if let Some(session) = self.quic_session(connection, channel) {
            return session.send_wait(channel, data).await;
        }
        match &self.native {
            Some(native) => native.send_wait(connection, channel, data).await,
            None => Err(SendError::UnknownConnection(data)),
        }
    }

    /// Queues several messages at once, so they share datagrams. Returns how many were queued
    /// and, if one was refused, why (the rest are not queued).
    pub fn send_many(
        &self,
        connection: ConnectionId,
        channel: ChannelId,
        messages: impl IntoIterator<Item = Bytes>,
    ) -> (usize, Option<SendError>) {
        #[cfg(feature = "quic")]
        if let Some(session) = self.quic_session(connection, channel) {
            return session.send_many(channel, messages);
        }
        match &self.native {
            Some(native) => native.send_many(connection, channel, messages),
            None => (0, None),
        }
    }

    /// Queues the same message for every connected client on `channel`; returns how many took it.
    pub fn broadcast(&self, channel: ChannelId, data: &Bytes) -> usize {
        #[cfg(feature = "quic")]
        if self.quic.is_some() {
            return self
                .connections()
                .into_iter()
                .filter(|&id| self.send(id, channel, data.clone()).is_ok())
                .count();
        }
        let native = self
            .native
            .as_ref()
            .map_or(0, |native| native.broadcast(channel, data));
        native
    }

    /// The next event, from any transport; `None` once the server has shut down.
    pub async fn next_event(&mut self) -> Option<Event> {
        #[cfg(feature = "quic")]
        if self.quic.is_some() {
            return self.next_event_of_both().await;
        }
        match &mut self.native {
            Some(native) => native.next_event().await,
            None => None,
        }
    }

    /// Waits for at least one event, then moves up to `max` waiting events into `out` at once
    /// (cheaper than one [`next_event`](Self::next_event) per message at high rates).
    /// Returns `false` once the server has shut down.
    pub async fn next_events(&mut self, out: &mut Vec<Event>, max: usize) -> bool {
        #[cfg(feature = "quic")]
        if self.quic.is_some() {
            let Some(first) = self.next_event().await else {
                return false;
            };
            out.push(first);
            if let Some(quic) = &mut self.quic {
                quic.try_events(out, max);
            }
            while out.len() < max {
                match self.try_event() {
                    Some(event) => out.push(event),
                    None => break,
                }
            }
            return true;
        }
        match &mut self.native {
            Some(native) => native.next_events(out, max).await,
            None => false,
        }
    }

    /// The next event if one is waiting.
    pub fn try_event(&mut self) -> Option<Event> {
        #[cfg(feature = "quic")]
        if self.quic.is_some() {
            if let Some(event) = self.release_expired() {
                return Some(event);
            }
            if let Some(event) = self.quic.as_mut().and_then(QuicServer::try_event) {
                return Some(event);
            }
            while let Some(event) = self.native.as_mut().and_then(NativeServer::try_event) {
                if let Some(event) = self.filter_native(event) {
                    return Some(event);
                }
            }
            return None;
        }
        self.native.as_mut().and_then(NativeServer::try_event)
    }

    /// Closes one connection gracefully with an application code (below 0xFF00).
    pub fn disconnect(&self, connection: ConnectionId, code: u16) {
        #[cfg(feature = "quic")]
        if let Some(session) = self.quic_whole_session(connection) {
            let drain = self.drain;
            tokio::spawn(async move { session.close(code, drain).await });
            return;
        }
        if let Some(native) = &self.native {
            native.disconnect(connection, code);
        }
    }

    /// Asks a client to acknowledge at once instead of after its `max_ack_delay` (see
    /// [`Endpoint::request_ack`](crate::Endpoint::request_ack)). Native connections only:
    /// `false` for a connection carried whole by QUIC, or one not established.
    pub fn request_ack(&self, connection: ConnectionId) -> bool {
        #[cfg(feature = "quic")]
        if self.quic_whole_session(connection).is_some() {
            return false;
        }
        self.native
            .as_ref()
            .is_some_and(|native| native.request_ack(connection))
    }

    /// One connection's statistics.
    pub fn stats(&self, connection: ConnectionId) -> Option<ConnectionStats> {
        #[cfg(feature = "quic")]
        if let Some(session) = self.quic_whole_session(connection) {
            return Some(session.stats());
        }
        #[allow(unused_mut)] // reliable channels overlaid from QUIC in hybrid mode
        let mut stats = self.native.as_ref()?.stats(connection)?;
        #[cfg(feature = "quic")]
        if let Some(session) = self.quic.as_ref().and_then(|q| q.session(connection)) {
            session.overlay_reliable(&mut stats);
        }
        Some(stats)
    }

    /// Endpoint-wide statistics of the native socket (datagrams, drops by reason,
    /// connections); zero when native UDP is not served.
    pub fn endpoint_stats(&self) -> EndpointStats {
        self.native
            .as_ref()
            .map(NativeServer::endpoint_stats)
            .unwrap_or_default()
    }

    /// The connections, established or not, of every transport.
    pub fn connections(&self) -> Vec<ConnectionId> {
        #[allow(unused_mut)] // extended with QUIC sessions under the `quic` feature
        let mut all = self
            .native
            .as_ref()
            .map(NativeServer::connections)
            .unwrap_or_default();
        #[cfg(feature = "quic")]
        if let Some(quic) = &self.quic {
            // Hybrid sessions go by their native half's id, already listed.
            all.extend(quic.connections());
            all.sort_unstable();
            all.dedup();
        }
        all
    }

    /// Changes the simulated network conditions live (`None` turns them off): of the native
    /// path, and of the QUIC path if it was conditioned from the start
    /// ([`QuicConfig::link`](crate::QuicConfig::link); then `None` makes its link perfect).
    pub fn set_link(&self, link: Option<&LinkConfig>) -> Result<(), LinkConfigError> {
        #[cfg(feature = "quic")]
        if let Some(quic) = &self.quic {
            quic.set_link(link)?;
        }
        match &self.native {
            Some(native) => native.set_link(link),
            None => Ok(()),
        }
    }

    /// Disconnects every client (they see [`DisconnectReason::Remote`](crate::DisconnectReason::Remote)),
    /// waits up to a second for the goodbyes to leave, and stops the tasks.
    pub async fn shutdown(self) {
        #[cfg(feature = "quic")]
        if let Some(quic) = self.quic {
            quic.shutdown(self.drain).await;
        }
        if let Some(native) = self.native {
            native.shutdown().await;
        }
    }

    /// The QUIC session that carries `channel` of `connection`: a whole QUIC session, or a
    /// hybrid one for reliable channels.
    #[cfg(feature = "quic")]
    fn quic_session(&self, connection: ConnectionId, channel: ChannelId) -> Option<Arc<Session>> {
        let session = self.quic.as_ref()?.session(connection)?;
        let carries = session.transport() == Transport::Quic
            || session
                .send_kind(channel)
                .is_some_and(ChannelKind::is_reliable);
        carries.then_some(session)
    }

    /// The QUIC session of `connection` if it carries the whole connection.
    #[cfg(feature = "quic")]
    fn quic_whole_session(&self, connection: ConnectionId) -> Option<Arc<Session>> {
        let session = self.quic.as_ref()?.session(connection)?;
        (session.transport() == Transport::Quic).then_some(session)
    }

    /// The next event when QUIC is served: from either listener, pairing hybrid connections.
    #[cfg(feature = "quic")]
    async fn next_event_of_both(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.release_expired() {
                return Some(event);
            }
            let release = self.held.iter().map(|(at, _)| *at).min();
            let (native, quic) = (&mut self.native, &mut self.quic);
            let quic = quic.as_mut()?;
            let from_native = async {
                match native {
                    Some(native) => native.next_event().await,
                    None => std::future::pending().await,
                }
            };
            let event = tokio::select! {
                Some(event) = from_native => event,
                Some(event) = quic.next_event() => return Some(event),
                () = sleep_until(release), if release.is_some() => continue,
                else => return None,
            };
            if let Some(event) = self.filter_native(event) {
                return Some(event);
            }
        }
    }

    /// Applies hybrid pairing to a native event: holds back the `Connected` of a connection
    /// that may be a hybrid client's native half, swallows pairing messages (releasing that
    /// `Connected`), and closes a hybrid session whose native half ended.
    #[cfg(feature = "quic")]
    fn filter_native(&mut self, event: Event) -> Option<Event> {
        let quic = self.quic.as_ref()?;
        match &event {
            Event::Connected { remote, .. } if quic.pending_ips().contains(&remote.ip()) => {
                let release = tokio::time::Instant::now() + self.pairing_wait;
                self.held.push((release, event));
                None
            }
            Event::Message {
                connection, data, ..
            } => {
                let Some(token) = super::quic::pairing_token(data) else {
                    return Some(event);
                };
                let native_ip = self
                    .native
                    .as_ref()
                    .and_then(|native| native.remote_addr(*connection))
                    .map(|addr| addr.ip());
                let paired = native_ip.and_then(|ip| quic.pair(&token, *connection, ip));
                if paired.is_none() {
                    return Some(event);
                }
                let held = self.held.iter().position(
                    |(_, e)| matches!(e, Event::Connected { connection: c, .. } if c == connection),
                )?;
                let mut connected = self.held.remove(held).1;
                if let Event::Connected { transport, .. } = &mut connected {
                    *transport = Transport::Hybrid;
                }
                Some(connected)
            }
            Event::Disconnected { connection, .. } => {
                if let Some(session) = quic.session(*connection) {
                    session.abort(0);
                }
                self.held.retain(
                    |(_, e)| !matches!(e, Event::Connected { connection: c, .. } if c == connection),
                );
                Some(event)
            }
            _ => Some(event),
        }
    }

    /// A held `Connected` whose release time has come.
    #[cfg(feature = "quic")]
    fn release_expired(&mut self) -> Option<Event> {
        if self.held.is_empty() {
            // No clock read per event while nothing is held (the common case).
            return None;
        }
        let now = tokio::time::Instant::now();
        let due = self.held.iter().position(|(at, _)| *at <= now)?;
        Some(self.held.remove(due).1)
    }
}

/// Sleeps until `at` (forever when `None`).
#[cfg(feature = "quic")]
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A native socket on `addr` and a QUIC socket on the port that goes with it. With port 0 the
/// system picks the native port; if the next one is taken, another pair is tried.
#[cfg(feature = "quic")]
fn bind_pair(
    addr: SocketAddr,
    config: &DriverConfig,
) -> Result<(std::net::UdpSocket, std::net::UdpSocket), BindError> {
    let buffer = config.socket_buffer_bytes;
    let mut attempts = 0;
    loop {
        let native = open_socket(addr, buffer)?;
        let native_addr = native
            .local_addr()
            .map_err(|e| BindError::from_io(addr, e))?;
        let port = quic_port(native_addr.port(), &config.quic).ok_or(QuicError::NoPort)?;
        let quic_addr = SocketAddr::new(addr.ip(), port);
        match open_socket(quic_addr, buffer) {
            Ok(quic) => return Ok((native, quic)),
            Err(BindError::AddrInUse(_))
                if addr.port() == 0
                    && config.quic.port.is_none()
                    && attempts < PORT_PAIR_ATTEMPTS =>
            {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
