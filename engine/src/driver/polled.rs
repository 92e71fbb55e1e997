//! The non-async driver: a non-blocking std UDP socket polled from the application's own loop.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

use bytes::Bytes;

use super::conditioner::Conditioner;
use super::{client_bind_addr, endpoint_and_link, open_socket, BindError, DriverConfig};
use crate::{
    ChannelId, ConnectError, ConnectionId, ConnectionStats, Endpoint, Event, MessageId, SendError,
};

/// Datagrams read per [`update`](PolledEndpoint::update) at most, so a flood cannot stall a frame.
const MAX_READS_PER_UPDATE: usize = 4096;

/// An [`Endpoint`] on a non-blocking UDP socket, for game loops that are not async: call
/// [`update`](Self::update) once per frame (or tick), then drain [`poll_event`](Self::poll_event).
/// No threads, no async runtime.
///
/// ```no_run
/// use std::time::{Duration, Instant};
/// use tickwire::{ChannelId, DriverConfig, Event, PolledEndpoint};
///
/// let mut client = PolledEndpoint::client(DriverConfig::client(), "127.0.0.1:7777".parse()?)?;
/// loop {
///     client.update(Instant::now())?;
///     while let Some(event) = client.poll_event() {
///         if let Event::Message { data, .. } = event { println!("{} bytes", data.len()); }
///     }
///     if let Some(server) = client.connection().filter(|c| client.is_connected(*c)) {
///         client.send(server, ChannelId(0), "input".into())?;
///     }
///     std::thread::sleep(Duration::from_millis(16)); // the rest of the frame
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct PolledEndpoint {
    socket: UdpSocket,
    endpoint: Endpoint,
    conditioner: Option<Conditioner>,
    send_buf: Vec<u8>,
    recv_buf: Vec<u8>,
    connection: Option<ConnectionId>,
    local_addr: SocketAddr,
}

impl PolledEndpoint {
    /// A server endpoint bound to `addr`.
    pub fn server(mut config: DriverConfig, addr: SocketAddr) -> Result<Self, BindError> {
        config.endpoint.accept_incoming = true;
        Self::bind(config, addr)
    }

    /// A client endpoint on an ephemeral port that starts connecting to `server`. Check
    /// [`is_connected`](Self::is_connected) or wait for [`Event::Connected`].
    pub fn client(mut config: DriverConfig, server: SocketAddr) -> Result<Self, ClientSetupError> {
        config.endpoint.accept_incoming = false;
        let mut this = Self::bind(config, client_bind_addr(server))?;
        let connection = this.endpoint.connect(server, Instant::now())?;
        this.connection = Some(connection);
        Ok(this)
    }

    /// An endpoint bound to `addr` that neither connects nor accepts until told.
    pub fn bind(config: DriverConfig, addr: SocketAddr) -> Result<Self, BindError> {
        config.validate()?;
        let socket = open_socket(addr, config.socket_buffer_bytes)?;
        let local_addr = socket
            .local_addr()
            .map_err(|e| BindError::from_io(addr, e))?;
        let (endpoint, conditioner) = endpoint_and_link(config)?;
        let send_buf = vec![0; endpoint.transmit_buffer_size()];
        Ok(Self {
            socket,
            endpoint,
            conditioner,
            send_buf,
            recv_buf: vec![0; 64 * 1024],
            connection: None,
            local_addr,
        })
    }

    /// The local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The client's connection, for endpoints made with [`client`](Self::client).
    pub fn connection(&self) -> Option<ConnectionId> {
        self.connection
    }

    /// Whether a connection has completed its handshake.
    pub fn is_connected(&self, connection: ConnectionId) -> bool {
        self.endpoint.is_connected(connection)
    }

    /// Reads every datagram waiting, runs due timers, and sends everything queued. Call once
    /// per frame; it never blocks.
    pub fn update(&mut self, now: Instant) -> io::Result<()> {
        for _ in 0..MAX_READS_PER_UPDATE {
            match self.socket.recv_from(&mut self.recv_buf) {
                Ok((len, from)) => {
                    let datagram = Bytes::copy_from_slice(&self.recv_buf[..len]);
                    self.deliver(now, from, datagram);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP port unreachable surfaces here on some systems; the protocol's timers
                // handle an unreachable peer.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => continue,
                Err(e) => return Err(e),
            }
        }
        if let Some(conditioner) = &mut self.conditioner {
            while let Some((from, datagram)) = conditioner.poll_incoming(now) {
                self.endpoint.handle_datagram(now, from, datagram);
            }
        }
        if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            self.endpoint.handle_timeout(now);
        }
        self.flush(now)
    }

    /// Sends everything the endpoint has queued (also done by [`update`](Self::update)).
    pub fn flush(&mut self, now: Instant) -> io::Result<()> {
        while let Some(transmit) = self.endpoint.poll_transmit(now, &mut self.send_buf) {
            let datagram = &self.send_buf[..transmit.size];
            match &mut self.conditioner {
                Some(conditioner) => {
                    conditioner.send(now, transmit.destination, Bytes::copy_from_slice(datagram))
                }
                None => send_or_drop(&self.socket, datagram, transmit.destination)?,
            }
        }
        if let Some(conditioner) = &mut self.conditioner {
            while let Some((to, datagram)) = conditioner.poll_outgoing(now) {
                send_or_drop(&self.socket, &datagram, to)?;
            }
        }
        Ok(())
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.endpoint.poll_event()
    }

    /// Queues a message; it leaves at the next [`update`](Self::update) or [`flush`](Self::flush).
    pub fn send(
        &mut self,
        connection: ConnectionId,
        channel: ChannelId,
        data: Bytes,
    ) -> Result<MessageId, SendError> {
        self.endpoint.send(connection, channel, data)
    }

    /// Asks the peer to acknowledge at once ([`Endpoint::request_ack`]); the ack request
    /// leaves at the next [`update`](Self::update) or [`flush`](Self::flush).
    pub fn request_ack(&mut self, connection: ConnectionId) -> bool {
        self.endpoint.request_ack(connection)
    }

    /// Closes a connection gracefully (the goodbye copies leave over the next updates).
    pub fn disconnect(&mut self, connection: ConnectionId, code: u16) {
        self.endpoint.disconnect(connection, code, Instant::now());
    }

    /// A connection's statistics.
    pub fn stats(&self, connection: ConnectionId) -> Option<ConnectionStats> {
        self.endpoint.connection_stats(connection)
    }

    /// When [`update`](Self::update) next has timer work, for loops that sleep until then.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timer = self.endpoint.poll_timeout();
        let link = self
            .conditioner
            .as_ref()
            .and_then(Conditioner::next_delivery);
        match (timer, link) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Changes the simulated network conditions live (`None` turns them off), e.g. from a
    /// "bad network" key in a game.
    pub fn set_link(
        &mut self,
        link: Option<&crate::sim::LinkConfig>,
    ) -> Result<(), crate::sim::LinkConfigError> {
        match (link, &mut self.conditioner) {
            (Some(link), Some(conditioner)) => conditioner.set_config(link)?,
            (Some(link), None) => self.conditioner = Some(Conditioner::new(link, 0)?),
            (None, conditioner) => *conditioner = None,
        }
        Ok(())
    }

    /// The protocol endpoint, for everything else.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The protocol endpoint, mutably.
    pub fn endpoint_mut(&mut self) -> &mut Endpoint {
        &mut self.endpoint
    }

    fn deliver(&mut self, now: Instant, from: SocketAddr, datagram: Bytes) {
        match &mut self.conditioner {
            Some(conditioner) => conditioner.receive(now, from, datagram),
            None => self.endpoint.handle_datagram(now, from, datagram),
        }
    }
}

/// A client endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    /// The socket could not be opened.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The server address is not usable.
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

/// Sends a datagram; a full socket buffer drops it (UDP semantics: the protocol recovers).
fn send_or_drop(socket: &UdpSocket, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
    match socket.send_to(datagram, to) {
        Ok(_) => Ok(()),
        Err(e) if is_transient(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Send errors that lose one datagram but leave the socket usable.
pub(crate) fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    ) || error.raw_os_error() == Some(90) // EMSGSIZE on Linux: datagram above the path MTU
}
