//! [`ClientSet`]: many client connections, each on its own UDP socket, driven together from the
//! caller's thread through one OS poller (epoll on Linux, via `mio`).
//!
//! A [`Client`](crate::Client) costs a background task, a lock, wake-ups and a timer per
//! connection: fine for one game client, heavy for a load generator or a gateway holding
//! thousands of device connections. A `ClientSet` holds one [`Endpoint`] per connection (a
//! server knows an unsecured session by its remote address, so each connection needs its own
//! local port) but one poller, one timer heap and two buffers for all of them, and the caller
//! drives it: [`wait`](ClientSet::wait), [`update`](ClientSet::update), drain
//! [`poll_event`](ClientSet::poll_event), send, [`flush`](ClientSet::flush). Nothing is spawned
//! and nothing locks; the system calls are one `epoll_wait` per round, one `recvfrom` per
//! datagram received (plus one that finds the socket empty) and one `send` per datagram sent.
//! Each socket is connected to its server: the kernel keeps the route, and drops datagrams
//! from any other address before they cost a read.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mio::{Events, Interest, Poll, Token};
use thiserror::Error;

use super::conditioner::Conditioner;
use super::polled::is_transient;
use super::{client_bind_addr, endpoint_and_link, open_socket, BindError, DriverConfig, Transport};
use crate::{
    ChannelId, ConnectError, ConnectionId, ConnectionStats, Endpoint, EndpointStats, Event,
    MessageId, SendError,
};

/// Many client connections, each on its own non-blocking UDP socket, driven together on the
/// caller's thread (native transport only).
///
/// One round of the caller's loop:
/// 1. [`wait`](Self::wait) until a socket is readable or a timeout (at most until
///    [`next_deadline`](Self::next_deadline), or the application's own next deadline);
/// 2. [`update`](Self::update): read what arrived, run due timers, send what is due;
/// 3. drain [`poll_event`](Self::poll_event) (events name the client by [`ClientKey`]);
/// 4. [`send`](Self::send) / [`connect`](Self::connect) / [`disconnect`](Self::disconnect)
///    as the application decides, then [`flush`](Self::flush) so that it leaves now.
///
/// A client whose connection has ended (the set has delivered its [`Event::Disconnected`]),
/// or that was [`disconnect`](Self::disconnect)ed and has finished saying goodbye, is removed
/// from the set, and its key is no longer valid.
///
/// ```no_run
/// use std::time::{Duration, Instant};
/// use tickwire::{ChannelId, ClientSet, DriverConfig, Event};
///
/// let server = "127.0.0.1:7777".parse()?;
/// let mut set = ClientSet::new()?;
/// let keys: Vec<_> = (0..1000)
///     .map(|_| set.connect(server, DriverConfig::client(), Instant::now()))
///     .collect::<Result<_, _>>()?;
/// loop {
///     set.wait(Some(Duration::from_millis(100)))?;
///     set.update(Instant::now())?;
///     while let Some((key, event)) = set.poll_event() {
///         if let Event::Connected { .. } = event {
///             let _ = set.send(key, ChannelId(2), "hello".into());
///         }
///     }
///     set.flush(Instant::now())?;
///     # if keys.is_empty() { break; }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ClientSet {
    poll: Poll,
    ready: Events,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Wake-up hints: `(at, slot, generation)`, earliest first. An entry is live only while it
    /// is the member's `scheduled` one; the member's endpoint decides whether work is due.
    timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    /// Members touched since the last flush: they may have datagrams to send, events to hand
    /// out, a new deadline, or have ended.
    dirty: Vec<u32>,
    /// Members whose sockets may still hold datagrams.
    readable: Vec<u32>,
    /// An empty list with capacity, swapped with `readable` while it is worked through.
    spare: Vec<u32>,
    events: VecDeque<(ClientKey, Event)>,
    recv_buf: Vec<u8>,
    /// Received datagrams are copied here and split off as `Bytes` that share it (one
    /// allocation per [`ARENA_BYTES`] instead of one per datagram).
    arena: BytesMut,
    send_buf: Vec<u8>,
    len: usize,
}

/// Names one client of a [`ClientSet`]. Never reused by that set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientKey {
    index: u32,
    generation: u32,
}

/// [`ClientSet::connect`] was refused.
#[derive(Debug, Error)]
pub enum ClientSetError {
    /// The local socket could not be opened or registered with the poller.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The server address is not usable.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A `ClientSet` speaks native UDP only; use [`Client`](crate::Client) for QUIC.
    #[error("a ClientSet speaks native UDP only, not {0}")]
    NotNative(Transport),
    /// The set already holds `u32::MAX` clients.
    #[error("the client set is full")]
    Full,
}

impl ClientSet {
    /// An empty set with its own poller.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            poll: Poll::new()?,
            ready: Events::with_capacity(EVENTS_PER_WAIT),
            slots: Vec::new(),
            free: Vec::new(),
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            readable: Vec::new(),
            spare: Vec::new(),
            events: VecDeque::new(),
            recv_buf: vec![0; 64 * 1024],
            arena: BytesMut::new(),
            send_buf: Vec::new(),
            len: 0,
        })
    }

    /// Opens a socket on an ephemeral port and starts connecting to `server` (with
    /// [`Config::connect_token`](crate::Config::connect_token), a secure session). The outcome
    /// arrives as [`Event::Connected`] or [`Event::Disconnected`]; the handshake's first
    /// datagram leaves at the next [`flush`](Self::flush) or [`update`](Self::update).
    pub fn connect(
        &mut self,
        server: SocketAddr,
        mut config: DriverConfig,
        now: Instant,
    ) -> Result<ClientKey, ClientSetError> {
        if config.transport != Transport::Native {
            return Err(ClientSetError::NotNative(config.transport));
        }
        config.endpoint.accept_incoming = false;
        config.validate().map_err(BindError::from)?;
        let bind = client_bind_addr(server);
        let std_socket = open_socket(bind, config.socket_buffer_bytes)?;
        let local_addr = std_socket
            .local_addr()
            .map_err(|e| BindError::from_io(bind, e))?;
        // Connected to the server: the kernel keeps the route (no lookup per send) and drops
        // datagrams from any other address before they cost a read.
        std_socket
            .connect(server)
            .map_err(|e| BindError::from_io(local_addr, e))?;
        let mut socket = mio::net::UdpSocket::from_std(std_socket);
        let (mut endpoint, conditioner) = endpoint_and_link(config)?;
        let connection = endpoint.connect(server, now)?;
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(self.slots.len()).map_err(|_| ClientSetError::Full)?;
                self.slots.push(Slot {
                    generation: 0,
                    member: None,
                });
                index
            }
        };
        let token = Token(index as usize);
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut socket, token, Interest::READABLE)
        {
            self.free.push(index);
            return Err(BindError::from_io(local_addr, e).into());
        }
        let needed = endpoint.transmit_buffer_size();
        if self.send_buf.len() < needed {
            self.send_buf.resize(needed, 0);
        }
        let slot = &mut self.slots[index as usize];
        slot.member = Some(Member {
            socket,
            endpoint,
            connection,
            conditioner,
            local_addr,
            server,
            scheduled: None,
            closing_until: None,
            dirty: false,
        });
        self.len += 1;
        let key = ClientKey {
            index,
            generation: slot.generation,
        };
        self.mark_dirty(index);
        Ok(key)
    }

    /// Queues a message for the server of `key`; it leaves at the next
    /// [`flush`](Self::flush) or [`update`](Self::update).
    pub fn send(
        &mut self,
        key: ClientKey,
        channel: ChannelId,
        data: Bytes,
    ) -> Result<MessageId, SendError> {
        let Some(member) = self.member_mut(key) else {
            return Err(SendError::UnknownConnection(data));
        };
        let sent = member.endpoint.send(member.connection, channel, data);
        if sent.is_ok() {
            self.mark_dirty(key.index);
        }
        sent
    }

    /// Asks the server of `key` to acknowledge at once
    /// ([`Endpoint::request_ack`](crate::Endpoint::request_ack)); the ack request leaves at
    /// the next [`flush`](Self::flush) or [`update`](Self::update). `false` if `key` is
    /// unknown or not connected.
    pub fn request_ack(&mut self, key: ClientKey) -> bool {
        let Some(member) = self.member_mut(key) else {
            return false;
        };
        let requested = member.endpoint.request_ack(member.connection);
        if requested {
            self.mark_dirty(key.index);
        }
        requested
    }

    /// Closes the connection of `key` gracefully with an application code (the server sees
    /// [`DisconnectReason::Remote`](crate::DisconnectReason::Remote)): queued messages are
    /// still delivered (for at most the endpoint's `ack_timeout`), then the goodbye leaves, and
    /// the client is removed. Its later events are not handed out.
    pub fn disconnect(&mut self, key: ClientKey, code: u16, now: Instant) {
        let Some(member) = self.member_mut(key) else {
            return;
        };
        member.endpoint.disconnect(member.connection, code, now);
        let drain = member.endpoint.config().ack_timeout;
        member.closing_until = Some(now + drain + CLOSE_GRACE);
        self.mark_dirty(key.index);
    }

    /// Drops the client of `key` at once, without a goodbye (the server times it out).
    pub fn remove(&mut self, key: ClientKey) {
        if self.member(key).is_some() {
            self.remove_slot(key.index);
        }
    }

    /// Waits until a socket is readable or `timeout` passes (`None`: no limit); returns at once
    /// if work is pending (datagrams left unread, or sends not flushed). Call
    /// [`update`](Self::update) next.
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let timeout = if self.readable.is_empty() && self.dirty.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        match self.poll.poll(&mut self.ready, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for event in &self.ready {
            if let Ok(index) = u32::try_from(event.token().0) {
                self.readable.push(index);
            }
        }
        Ok(())
    }

    /// Reads every datagram that arrived (up to a bound per socket, the rest next time), runs
    /// due timers, and sends everything queued. Never blocks.
    pub fn update(&mut self, now: Instant) -> io::Result<()> {
        // `read` may queue a member again (it left datagrams unread): swap in the spare list
        // rather than take a fresh `Vec` each round.
        let mut readable = std::mem::replace(&mut self.readable, std::mem::take(&mut self.spare));
        for &index in &readable {
            self.read(index, now);
        }
        readable.clear();
        self.spare = readable;
        while let Some(&Reverse((at, index, generation))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(member) = self.slots.get_mut(index as usize).and_then(|slot| {
                (slot.generation == generation)
                    .then_some(slot.member.as_mut())
                    .flatten()
            }) else {
                continue;
            };
            if member.scheduled != Some(at) {
                continue; // superseded by an earlier wake-up
            }
            member.scheduled = None;
            member.run_timers(now);
            self.mark_dirty(index);
        }
        self.flush(now)
    }

    /// Sends what the clients touched since the last flush have queued, hands out their events
    /// and removes those that have ended. Also done by [`update`](Self::update).
    pub fn flush(&mut self, now: Instant) -> io::Result<()> {
        let dirty = std::mem::take(&mut self.dirty);
        for &index in &dirty {
            let Some(slot) = self.slots.get_mut(index as usize) else {
                continue;
            };
            let generation = slot.generation;
            let Some(member) = slot.member.as_mut() else {
                continue;
            };
            member.dirty = false;
            member.transmit(now, &mut self.send_buf);
            let key = ClientKey { index, generation };
            while let Some(event) = member.endpoint.poll_event() {
                if member.closing_until.is_none() {
                    self.events.push_back((key, event));
                }
            }
            let ended = member.endpoint.connection_count() == 0
                || member.closing_until.is_some_and(|until| now >= until);
            if !ended {
                if let Some(at) = member.deadline() {
                    if member.scheduled.is_none_or(|scheduled| at < scheduled) {
                        member.scheduled = Some(at);
                        self.timers.push(Reverse((at, index, generation)));
                    }
                }
                continue;
            }
            self.remove_slot(index);
        }
        // Reuse the allocation (nothing marks members dirty while flushing).
        self.dirty = dirty;
        self.dirty.clear();
        Ok(())
    }

    /// The next event of any client, with the client's key.
    pub fn poll_event(&mut self) -> Option<(ClientKey, Event)> {
        self.events.pop_front()
    }

    /// The earliest time a client may have timer work (possibly a little early; calling
    /// [`update`](Self::update) early is harmless).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }

    /// How many clients the set holds (connecting, connected or closing).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set holds no client.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `key` names a client still in the set.
    pub fn contains(&self, key: ClientKey) -> bool {
        self.member(key).is_some()
    }

    /// Whether the connection of `key` has completed its handshake (and is not closing).
    pub fn is_connected(&self, key: ClientKey) -> bool {
        self.member(key)
            .is_some_and(|m| m.closing_until.is_none() && m.endpoint.is_connected(m.connection))
    }

    /// The local address of the socket of `key`.
    pub fn local_addr(&self, key: ClientKey) -> Option<SocketAddr> {
        self.member(key).map(|m| m.local_addr)
    }

    /// The connection's statistics.
    pub fn stats(&self, key: ClientKey) -> Option<ConnectionStats> {
        self.member(key)
            .and_then(|m| m.endpoint.connection_stats(m.connection))
    }

    /// Statistics of the client's socket (datagrams and bytes each way, drops).
    pub fn endpoint_stats(&self, key: ClientKey) -> Option<&EndpointStats> {
        self.member(key).map(|m| m.endpoint.stats())
    }

    fn member(&self, key: ClientKey) -> Option<&Member> {
        let slot = self.slots.get(key.index as usize)?;
        (slot.generation == key.generation)
            .then_some(slot.member.as_ref())
            .flatten()
    }

    fn member_mut(&mut self, key: ClientKey) -> Option<&mut Member> {
        let slot = self.slots.get_mut(key.index as usize)?;
        (slot.generation == key.generation)
            .then_some(slot.member.as_mut())
            .flatten()
    }

    fn mark_dirty(&mut self, index: u32) {
        if let Some(member) = self
            .slots
            .get_mut(index as usize)
            .and_then(|s| s.member.as_mut())
        {
            if !member.dirty {
                member.dirty = true;
                self.dirty.push(index);
            }
        }
    }

    /// Reads up to [`MAX_READS_PER_SOCKET`] datagrams of one member into its endpoint.
    fn read(&mut self, index: u32, now: Instant) {
        let Some(member) = self
            .slots
            .get_mut(index as usize)
            .and_then(|s| s.member.as_mut())
        else {
            return;
        };
        let mut drained = false;
        for _ in 0..MAX_READS_PER_SOCKET {
            match member.socket.recv_from(&mut self.recv_buf) {
                Ok((len, from)) => {
                    if self.arena.capacity() < len {
                        // Reuses the allocation once every datagram split off it is dropped.
                        self.arena.reserve(ARENA_BYTES.max(len));
                    }
                    self.arena.extend_from_slice(&self.recv_buf[..len]);
                    let datagram = self.arena.split().freeze();
                    match &mut member.conditioner {
                        Some(conditioner) => conditioner.receive(now, from, datagram),
                        None => member.endpoint.handle_datagram(now, from, datagram),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                // ICMP errors from an earlier send surface here; the protocol's timers handle
                // an unreachable server.
                Err(e) if is_transient(&e) => continue,
                Err(e) => {
                    // The socket is unusable: the connection will time out.
                    tracing::warn!(local = %member.local_addr, "receive failed: {e}");
                    drained = true;
                    break;
                }
            }
        }
        if !drained {
            self.readable.push(index);
        }
        self.mark_dirty(index);
    }

    fn remove_slot(&mut self, index: u32) {
        let Some(slot) = self.slots.get_mut(index as usize) else {
            return;
        };
        if let Some(mut member) = slot.member.take() {
            let _ = self.poll.registry().deregister(&mut member.socket);
            slot.generation = slot.generation.wrapping_add(1);
            self.free.push(index);
            self.len -= 1;
        }
    }
}

impl std::fmt::Debug for ClientSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSet")
            .field("clients", &self.len)
            .field("pending_events", &self.events.len())
            .finish_non_exhaustive()
    }
}

struct Slot {
    generation: u32,
    member: Option<Member>,
}

/// One client: its socket, its endpoint (one connection) and its simulated link.
struct Member {
    socket: mio::net::UdpSocket,
    endpoint: Endpoint,
    connection: ConnectionId,
    conditioner: Option<Conditioner>,
    local_addr: SocketAddr,
    /// The server the socket is connected to.
    server: SocketAddr,
    /// The live entry of the set's timer heap, if any.
    scheduled: Option<Instant>,
    /// Disconnected by the application: removed once gone or at this time.
    closing_until: Option<Instant>,
    /// In the set's dirty list.
    dirty: bool,
}

impl Member {
    fn run_timers(&mut self, now: Instant) {
        if let Some(conditioner) = &mut self.conditioner {
            while let Some((from, datagram)) = conditioner.poll_incoming(now) {
                self.endpoint.handle_datagram(now, from, datagram);
            }
        }
        if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            self.endpoint.handle_timeout(now);
        }
    }

    /// Sends everything the endpoint (and the simulated link) has due. A full socket buffer
    /// drops the datagram, as UDP may; the protocol recovers.
    fn transmit(&mut self, now: Instant, buf: &mut [u8]) {
        while let Some(transmit) = self.endpoint.poll_transmit(now, buf) {
            let datagram = &buf[..transmit.size];
            match &mut self.conditioner {
                Some(conditioner) => {
                    conditioner.send(now, transmit.destination, Bytes::copy_from_slice(datagram))
                }
                None => self.send_to(datagram, transmit.destination),
            }
        }
        if let Some(conditioner) = &mut self.conditioner {
            while let Some((to, datagram)) = conditioner.poll_outgoing(now) {
                send(&self.socket, self.server, self.local_addr, &datagram, to);
            }
        }
    }

    fn send_to(&self, datagram: &[u8], to: SocketAddr) {
        send(&self.socket, self.server, self.local_addr, datagram, to);
    }

    /// When this member next has timer work: the endpoint's timers, the simulated link's next
    /// delivery, the end of a graceful close.
    fn deadline(&self) -> Option<Instant> {
        let link = self
            .conditioner
            .as_ref()
            .and_then(Conditioner::next_delivery);
        [self.endpoint.poll_timeout(), link, self.closing_until]
            .into_iter()
            .flatten()
            .min()
    }
}

/// Sends one datagram on a socket connected to `server` (`send`, the kernel's cached route);
/// to any other address (none in this protocol today) with `send_to`.
fn send(
    socket: &mio::net::UdpSocket,
    server: SocketAddr,
    local: SocketAddr,
    datagram: &[u8],
    to: SocketAddr,
) {
    let sent = if to == server {
        socket.send(datagram)
    } else {
        socket.send_to(datagram, to)
    };
    match sent {
        Ok(_) => {}
        Err(e) if is_transient(&e) => {}
        Err(e) => tracing::warn!(%local, "send failed: {e}"),
    }
}

/// Readiness events taken per [`ClientSet::wait`]; more stay queued in the kernel.
const EVENTS_PER_WAIT: usize = 1024;
/// Datagrams read from one socket per [`ClientSet::update`] at most, so that one flooded
/// socket cannot starve the others.
const MAX_READS_PER_SOCKET: usize = 64;
/// Receive arena chunk, in bytes.
const ARENA_BYTES: usize = 256 * 1024;
/// After a graceful close's drain time, how long the goodbye may take.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
