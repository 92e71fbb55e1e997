//! The tokio driver: a background task owns the UDP socket and drives the endpoint.
//!
//! The endpoint sits behind a mutex shared by the task and the application's handle; every
//! critical section is short (queue a message; hand over a batch of datagrams and collect the
//! datagrams to send). System calls happen outside it and are batched (see `socket.rs`): one
//! `recvmmsg` reads many datagrams, one `sendmsg` with GSO sends a run of them. The task sleeps
//! until a datagram arrives, the endpoint's next deadline passes, or the application queues
//! something.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn_udp::UdpSocketState;
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::conditioner::Conditioner;
use super::socket::{Inbox, Outbox};
use super::{
    client_bind_addr, endpoint_and_link, open_socket, BindError, ClientError, DriverConfig,
};
use crate::sim::LinkConfig;
use crate::sim::LinkConfigError;
use crate::{
    ChannelId, ConnectionId, ConnectionStats, DisconnectReason, Endpoint, EndpointStats, Event,
    MessageId, SendError,
};

/// Longest a shutdown waits for goodbye packets to leave.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

struct State {
    endpoint: Endpoint,
    conditioner: Option<Conditioner>,
    /// Shutdown requested: stop once every connection is gone (or after the grace period).
    stop_at: Option<Instant>,
    /// The task has ended.
    stopped: bool,
    /// The fatal socket error that ended the task, if any.
    error: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    wake_driver: Notify,
    wake_app: Notify,
    /// Notified (all waiters) after every flush: send buffers may have room again.
    drained: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug elsewhere; the state itself stays usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The part common to [`Server`] and [`Client`]: the shared state and the task.
struct Driver {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Driver {
    fn start(config: DriverConfig, addr: SocketAddr) -> Result<Self, BindError> {
        config.validate()?;
        let std_socket = open_socket(addr, config.socket_buffer_bytes)?;
        let local_addr = std_socket
            .local_addr()
            .map_err(|e| BindError::from_io(addr, e))?;
        let socket = UdpSocket::from_std(std_socket).map_err(|e| BindError::from_io(addr, e))?;
        let io = UdpSocketState::new((&socket).into()).map_err(|e| BindError::from_io(addr, e))?;
        let (endpoint, conditioner) = endpoint_and_link(config)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                endpoint,
                conditioner,
                stop_at: None,
                stopped: false,
                error: None,
            }),
            wake_driver: Notify::new(),
            wake_app: Notify::new(),
            drained: Notify::new(),
        });
        let task = tokio::spawn(drive(Arc::clone(&shared), socket, io));
        Ok(Self {
            shared,
            local_addr,
            task: Some(task),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&mut Endpoint) -> R) -> R {
        let result = f(&mut self.shared.lock().endpoint);
        self.shared.wake_driver.notify_one();
        result
    }

    fn send(
        &self,
        connection: ConnectionId,
        channel: ChannelId,
        data: Bytes,
    ) -> Result<MessageId, SendError> {
        self.with(|endpoint| endpoint.send(connection, channel, data))
    }

    /// Sends, waiting for room while the channel's send buffer is full.
    async fn send_wait(
        &self,
        connection: ConnectionId,
        channel: ChannelId,
        mut data: Bytes,
    ) -> Result<MessageId, SendError> {
        loop {
            let drained = self.shared.drained.notified();
            match self.send(connection, channel, data) {
                Err(SendError::BufferFull { data: back, .. }) => {
                    if self.shared.lock().stopped {
                        return Err(SendError::NotConnected(back));
                    }
                    data = back;
                    drained.await;
                }
                other => return other,
            }
        }
    }

    /// Queues several messages under one lock, so they share datagrams; stops at the first
    /// refusal and returns how many were queued and the refusal.
    fn send_many(
        &self,
        connection: ConnectionId,
        channel: ChannelId,
        messages: impl IntoIterator<Item = Bytes>,
    ) -> (usize, Option<SendError>) {
        self.with(|endpoint| {
            let mut queued = 0;
            for data in messages {
                if let Err(error) = endpoint.send(connection, channel, data) {
                    return (queued, Some(error));
                }
                queued += 1;
            }
            (queued, None)
        })
    }

    fn try_event(&self) -> Option<Event> {
        self.shared.lock().endpoint.poll_event()
    }

    /// Waits for at least one event, then moves up to `max` into `out` under one lock.
    /// Returns `false` once the driver has stopped and no event is left.
    async fn next_events(&self, out: &mut Vec<Event>, max: usize) -> bool {
        loop {
            let notified = self.shared.wake_app.notified();
            {
                let mut state = self.shared.lock();
                let before = out.len();
                while out.len() - before < max {
                    match state.endpoint.poll_event() {
                        Some(event) => out.push(event),
                        None => break,
                    }
                }
                if out.len() > before {
                    return true;
                }
                if state.stopped {
                    return false;
                }
            }
            notified.await;
        }
    }

    async fn next_event(&self) -> Option<Event> {
        loop {
            let notified = self.shared.wake_app.notified();
            {
                let mut state = self.shared.lock();
                if let Some(event) = state.endpoint.poll_event() {
                    return Some(event);
                }
                if state.stopped {
                    return None;
                }
            }
            notified.await;
        }
    }

    fn set_link(&self, link: Option<&LinkConfig>, seed: u64) -> Result<(), LinkConfigError> {
        let mut state = self.shared.lock();
        match (link, &mut state.conditioner) {
            (Some(link), Some(conditioner)) => conditioner.set_config(link)?,
            (Some(link), None) => state.conditioner = Some(Conditioner::new(link, seed)?),
            (None, conditioner) => *conditioner = None,
        }
        drop(state);
        self.shared.wake_driver.notify_one();
        Ok(())
    }

    async fn stop(&mut self, close: impl FnOnce(&mut Endpoint, Instant)) {
        {
            let mut state = self.shared.lock();
            let now = Instant::now();
            close(&mut state.endpoint, now);
            // Draining connections deliver what was queued first, for at most `ack_timeout`.
            let drain = state.endpoint.config().ack_timeout;
            state.stop_at = Some(now + drain + SHUTDOWN_GRACE);
        }
        self.shared.wake_driver.notify_one();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The driver task. Each round: under the lock, hand the datagrams received to the endpoint, run
/// its due timers and collect what it has to send into the outbox; then, without the lock, send
/// the outbox (a few system calls for many datagrams); then wait for a datagram, a deadline, a
/// writable socket (if the outbox is stuck) or the application.
async fn drive(shared: Arc<Shared>, socket: UdpSocket, io: UdpSocketState) {
    let mut inbox = Inbox::new();
    let mut outbox = Outbox::new();
    let sleep = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(sleep);
    let mut armed: Option<Instant> = None;
    // The last receive filled every slot: more is waiting.
    let mut flooded = false;
    let error = loop {
        let (deadline, more, stop) = {
            let mut state = shared.lock();
            let now = Instant::now();
            for (from, datagram) in inbox.received.drain(..) {
                match &mut state.conditioner {
                    Some(conditioner) => conditioner.receive(now, from, datagram),
                    None => state.endpoint.handle_datagram(now, from, datagram),
                }
            }
            let more = collect(&mut state, now, &mut outbox);
            shared.wake_app.notify_one();
            shared.drained.notify_waiters();
            let stop = state
                .stop_at
                .is_some_and(|at| state.endpoint.connection_count() == 0 || now >= at);
            let link = state
                .conditioner
                .as_ref()
                .and_then(Conditioner::next_delivery);
            let deadline = [state.endpoint.poll_timeout(), link, state.stop_at]
                .into_iter()
                .flatten()
                .min();
            (deadline, more, stop)
        };
        let blocked = match outbox.send(&socket, &io) {
            Ok(all_sent) => !all_sent,
            Err(e) => break Some(e.to_string()),
        };
        if stop {
            break None;
        }
        if (more && !blocked) || flooded {
            // The outbox filled up and the endpoint may have more, or the socket has more
            // datagrams: go on after letting the application's tasks run. They may be waiting
            // for buffer room, and under a flood they must drain their events before the next
            // batch adds more (without this, a task on the same thread would only run once the
            // runtime's cooperative budget ran out, with events piling up meanwhile).
            flooded = false;
            tokio::task::yield_now().await;
            if more && !blocked {
                continue;
            }
        }
        if let Some(deadline) = deadline {
            if armed != Some(deadline) {
                sleep.as_mut().reset(deadline.into());
                armed = Some(deadline);
            }
        }
        tokio::select! {
            biased;
            result = socket.writable(), if blocked => {
                if let Err(e) = result {
                    break Some(e.to_string());
                }
            }
            result = socket.readable() => {
                if let Err(e) = result {
                    break Some(e.to_string());
                }
                match inbox.recv(&socket, &io) {
                    Ok(full) => flooded = full,
                    Err(e) => break Some(e.to_string()),
                }
            }
            () = shared.wake_driver.notified() => {}
            () = &mut sleep, if deadline.is_some() => armed = None,
        }
    };
    let mut state = shared.lock();
    state.stopped = true;
    state.error = error;
    drop(state);
    shared.wake_app.notify_one();
    shared.drained.notify_waiters();
}

/// Hands due conditioned datagrams to the endpoint, runs its due timers, and moves what it has
/// to send into the outbox (unless the outbox still holds datagrams the socket refused).
/// Returns whether the outbox filled up before the endpoint ran out.
fn collect(state: &mut State, now: Instant, outbox: &mut Outbox) -> bool {
    let State {
        endpoint,
        conditioner,
        ..
    } = state;
    if let Some(conditioner) = conditioner.as_mut() {
        while let Some((from, datagram)) = conditioner.poll_incoming(now) {
            endpoint.handle_datagram(now, from, datagram);
        }
    }
    if endpoint.poll_timeout().is_some_and(|t| t <= now) {
        endpoint.handle_timeout(now);
    }
    if !outbox.is_empty() {
        return false;
    }
    let size = endpoint.transmit_buffer_size();
    loop {
        let Some(buf) = outbox.room(size) else {
            return true;
        };
        let Some(transmit) = endpoint.poll_transmit(now, buf) else {
            break;
        };
        match conditioner.as_mut() {
            Some(conditioner) => {
                let datagram = Bytes::copy_from_slice(&buf[..transmit.size]);
                conditioner.send(now, transmit.destination, datagram);
            }
            None => outbox.push(transmit.destination, transmit.size),
        }
    }
    if let Some(conditioner) = conditioner.as_mut() {
        // Conditioned datagrams came from `poll_transmit`, so each fits in `size` bytes.
        while outbox.room(size).is_some() {
            let Some((to, datagram)) = conditioner.poll_outgoing(now) else {
                return false;
            };
            outbox.push_copy(to, &datagram);
        }
        return true;
    }
    false
}

/// The native half of a [`Server`](crate::Server): a Tickwire endpoint on a UDP socket, driven by
/// a tokio task.
pub(crate) struct NativeServer {
    driver: Driver,
}

impl NativeServer {
    /// Binds a UDP socket on `addr` (use port 0 for any free port) and starts serving.
    /// Must be called within a tokio runtime.
    pub(crate) async fn bind(
        addr: SocketAddr,
        mut config: DriverConfig,
    ) -> Result<Self, BindError> {
        config.endpoint.accept_incoming = true;
        Ok(Self {
            driver: Driver::start(config, addr)?,
        })
    }

    /// The address the socket is bound to.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.driver.local_addr
    }

    /// Queues a message for a client; it leaves at once (the driver task is woken).
    pub(crate) fn send(
        &self,
        connection: ConnectionId,
        channel: ChannelId,
        data: Bytes,
    ) -> Result<MessageId, SendError> {
        self.driver.send(connection, channel, data)
    }

    /// Sends, waiting while the channel's send buffer is full (backpressure instead of
    /// [`SendError::BufferFull`]).
    pub(crate) async fn send_wait(
        &self,
        connection: ConnectionId,
        channel: ChannelId,
        data: Bytes,
    ) -> Result<MessageId, SendError> {
        self.driver.send_wait(connection, channel, data).await
    }

    /// Queues several messages at once, so they share datagrams. Returns how many were queued
    /// and, if one was refused, why (the rest are not queued).
    pub(crate) fn send_many(
        &self,
        connection: ConnectionId,
        channel: ChannelId,
        messages: impl IntoIterator<Item = Bytes>,
    ) -> (usize, Option<SendError>) {
        self.driver.send_many(connection, channel, messages)
    }

    /// Waits for at least one event, then moves up to `max` waiting events into `out` at once
    /// (cheaper than one [`next_event`](Self::next_event) per message at high rates).
    /// Returns `false` once the server has shut down.
    pub(crate) async fn next_events(&mut self, out: &mut Vec<Event>, max: usize) -> bool {
        self.driver.next_events(out, max).await
    }

    /// Queues the same message for every connected client on `channel`; returns how many took it.
    pub(crate) fn broadcast(&self, channel: ChannelId, data: &Bytes) -> usize {
        self.driver.with(|endpoint| {
            let ids: Vec<ConnectionId> = endpoint.connections().collect();
            ids.into_iter()
                .filter(|&id| endpoint.send(id, channel, data.clone()).is_ok())
                .count()
        })
    }

    /// The next event; `None` once the server has shut down.
    pub(crate) async fn next_event(&mut self) -> Option<Event> {
        self.driver.next_event().await
    }

    /// The next event if one is waiting.
    pub(crate) fn try_event(&mut self) -> Option<Event> {
        self.driver.try_event()
    }

    /// Closes one connection gracefully with an application code (below 0xFF00).
    pub(crate) fn disconnect(&self, connection: ConnectionId, code: u16) {
        self.driver
            .with(|endpoint| endpoint.disconnect(connection, code, Instant::now()));
    }

    /// Asks the peer to acknowledge at once ([`Endpoint::request_ack`]).
    pub(crate) fn request_ack(&self, connection: ConnectionId) -> bool {
        self.driver
            .with(|endpoint| endpoint.request_ack(connection))
    }

    /// The client id of a secure session (from its connect token).
    pub(crate) fn client_id(&self, connection: ConnectionId) -> Option<crate::ClientId> {
        self.driver.with(|endpoint| endpoint.client_id(connection))
    }

    /// One connection's statistics.
    pub(crate) fn stats(&self, connection: ConnectionId) -> Option<ConnectionStats> {
        self.driver
            .with(|endpoint| endpoint.connection_stats(connection))
    }

    /// Endpoint-wide statistics (datagrams, drops by reason, connections).
    pub(crate) fn endpoint_stats(&self) -> EndpointStats {
        self.driver.with(|endpoint| endpoint.stats().clone())
    }

    /// The peer address of a connection, if it exists.
    pub(crate) fn remote_addr(&self, connection: ConnectionId) -> Option<SocketAddr> {
        self.driver
            .with(|endpoint| endpoint.remote_address(connection))
    }

    /// The connections, established or not.
    pub(crate) fn connections(&self) -> Vec<ConnectionId> {
        self.driver
            .with(|endpoint| endpoint.connections().collect())
    }

    /// Changes the simulated network conditions live (`None` turns them off).
    pub(crate) fn set_link(&self, link: Option<&LinkConfig>) -> Result<(), LinkConfigError> {
        self.driver.set_link(link, 0)
    }

    /// Disconnects every client (they see [`DisconnectReason::Remote`]), waits up to a second
    /// for the goodbyes to leave, and stops the task.
    pub(crate) async fn shutdown(mut self) {
        self.driver
            .stop(|endpoint, now| endpoint.shutdown(now))
            .await;
    }
}

/// The native half of a [`Client`](crate::Client): a Tickwire endpoint connected to one server,
/// driven by a tokio task.
pub(crate) struct NativeClient {
    driver: Driver,
    connection: ConnectionId,
}

impl NativeClient {
    /// Opens a socket on an ephemeral port, connects to `server` and waits for the handshake.
    /// Fails with [`ClientError::Timeout`] after the configured `handshake_timeout` (default
    /// 5 s) if the server does not answer. Must be called within a tokio runtime.
    pub(crate) async fn connect(
        server: SocketAddr,
        mut config: DriverConfig,
    ) -> Result<Self, ClientError> {
        config.endpoint.accept_incoming = false;
        let timeout = config.endpoint.handshake_timeout;
        let driver = Driver::start(config, client_bind_addr(server))?;
        let connection = driver.with(|endpoint| endpoint.connect(server, Instant::now()))?;
        loop {
            match driver.next_event().await {
                Some(Event::Connected { .. }) => break,
                Some(Event::Disconnected { reason, .. }) => {
                    return Err(match reason {
                        DisconnectReason::HandshakeTimeout => ClientError::Timeout {
                            server,
                            after: timeout,
                        },
                        DisconnectReason::Rejected(reason) => {
                            ClientError::Rejected { server, reason }
                        }
                        reason => ClientError::Failed { server, reason },
                    });
                }
                Some(_) => {}
                None => {
                    return Err(ClientError::Failed {
                        server,
                        reason: DisconnectReason::Shutdown,
                    })
                }
            }
        }
        Ok(Self { driver, connection })
    }

    /// The local address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.driver.local_addr
    }

    /// The connection's id (as named in events).
    pub(crate) fn connection(&self) -> ConnectionId {
        self.connection
    }

    /// Queues a message for the server; it leaves at once.
    pub(crate) fn send(&self, channel: ChannelId, data: Bytes) -> Result<MessageId, SendError> {
        self.driver.send(self.connection, channel, data)
    }

    /// Asks the server to acknowledge at once ([`Endpoint::request_ack`]).
    pub(crate) fn request_ack(&self) -> bool {
        let connection = self.connection;
        self.driver
            .with(|endpoint| endpoint.request_ack(connection))
    }

    /// Sends, waiting while the channel's send buffer is full (backpressure instead of
    /// [`SendError::BufferFull`]).
    pub(crate) async fn send_wait(
        &self,
        channel: ChannelId,
        data: Bytes,
    ) -> Result<MessageId, SendError> {
        self.driver.send_wait(self.connection, channel, data).await
    }

    /// Queues several messages at once, so they share datagrams. Returns how many were queued
    /// and, if one was refused, why (the rest are not queued).
    pub(crate) fn send_many(
        &self,
        channel: ChannelId,
        messages: impl IntoIterator<Item = Bytes>,
    ) -> (usize, Option<SendError>) {
        self.driver.send_many(self.connection, channel, messages)
    }

    /// Waits for at least one event, then moves up to `max` waiting events into `out` at once.
    /// Returns `false` once the client has stopped.
    pub(crate) async fn next_events(&mut self, out: &mut Vec<Event>, max: usize) -> bool {
        self.driver.next_events(out, max).await
    }

    /// Endpoint-wide statistics of the client's socket (bytes and datagrams each way, drops).
    pub(crate) fn endpoint_stats(&self) -> EndpointStats {
        self.driver.with(|endpoint| endpoint.stats().clone())
    }

    /// The next event; `None` once the client has stopped. After
    /// [`Event::Disconnected`] no more messages arrive.
    pub(crate) async fn next_event(&mut self) -> Option<Event> {
        self.driver.next_event().await
    }

    /// The next event if one is waiting.
    pub(crate) fn try_event(&mut self) -> Option<Event> {
        self.driver.try_event()
    }

    /// Whether the connection is established.
    pub(crate) fn is_connected(&self) -> bool {
        self.driver
            .with(|endpoint| endpoint.is_connected(self.connection))
    }

    /// The connection's statistics.
    pub(crate) fn stats(&self) -> Option<ConnectionStats> {
        self.driver
            .with(|endpoint| endpoint.connection_stats(self.connection))
    }

    /// Changes the simulated network conditions live (`None` turns them off).
    pub(crate) fn set_link(&self, link: Option<&LinkConfig>) -> Result<(), LinkConfigError> {
        self.driver.set_link(link, 1)
    }

    /// Closes the connection gracefully with an application code (the server sees
    /// [`DisconnectReason::Remote`]), waits for the goodbyes to leave, and stops.
    pub(crate) async fn disconnect(mut self, code: u16) {
        let connection = self.connection;
        self.driver
            .stop(|endpoint, now| endpoint.disconnect(connection, code, now))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The batched path end to end on loopback: a burst of reliable messages crosses a lossy,
    /// delayed simulated link (conditioned datagrams go through the same outbox) and arrives
    /// whole and in order.
    #[tokio::test]
    async fn reliable_burst_crosses_a_lossy_link_in_order() {
        let link = LinkConfig {
            latency: Duration::from_millis(2),
            loss: 0.05,
            ..LinkConfig::default()
        };
        let config = DriverConfig {
            link: Some(link),
            ..DriverConfig::server()
        };
        let mut server = NativeServer::bind("127.0.0.1:0".parse().unwrap(), config)
            .await
            .unwrap();
        let client_config = DriverConfig {
            link: Some(LinkConfig::default()),
            ..DriverConfig::client()
        };
        let client = NativeClient::connect(server.local_addr(), client_config)
            .await
            .unwrap();
        let messages: Vec<Bytes> = (0..2_000u32)
            .map(|i| {
                let mut message = vec![0u8; 700];
                message[..4].copy_from_slice(&i.to_be_bytes());
                Bytes::from(message)
            })
            .collect();
        let (queued, refused) = client.send_many(ChannelId(2), messages);
        assert_eq!((queued, refused.is_none()), (2_000, true));
        let mut expected = 0u32;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while expected < 2_000 {
            let event = tokio::time::timeout_at(deadline, server.next_event())
                .await
                .expect("every message within 20 s")
                .expect("server running");
            if let Event::Message { data, .. } = event {
                assert_eq!(data.len(), 700);
                assert_eq!(&data[..4], &expected.to_be_bytes());
                expected += 1;
            }
        }
        client.disconnect(0).await;
        server.shutdown().await;
    }
}
