//! [`Client`]: one connection to a server over native UDP or QUIC, chosen by
//! [`DriverConfig::transport`].

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

#[cfg(feature = "quic")]
use super::quic::QuicClient;
use super::udp::NativeClient;
use super::{ClientError, DriverConfig, Transport};
use crate::sim::{LinkConfig, LinkConfigError};
use crate::{ChannelId, ConnectionId, ConnectionStats, EndpointStats, Event, MessageId, SendError};

/// A Tickwire client connected to one server, driven by a tokio task.
///
/// ```no_run
/// use tickwire::{ChannelId, Client, DriverConfig, Event};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let mut client = Client::connect("127.0.0.1:7777".parse()?, DriverConfig::client()).await?;
/// client.send(ChannelId(2), "hello".into())?;
/// while let Some(event) = client.next_event().await {
///     if let Event::Message { data, .. } = event {
///         println!("got {} bytes", data.len());
///         break;
///     }
/// }
/// client.disconnect(0).await;
/// # Ok(()) }
/// ```
pub struct Client {
    inner: Inner,
    server: SocketAddr,
    /// How long a graceful disconnect lets queued data drain.
    #[cfg_attr(not(feature = "quic"), allow(dead_code))]
    drain: Duration,
}

enum Inner {
    Native(NativeClient),
    #[cfg(feature = "quic")]
    Quic(QuicClient),
    /// Reliable channels over `quic`, the rest over `native`.
    #[cfg(feature = "quic")]
    Hybrid {
        native: NativeClient,
        quic: QuicClient,
    },
}

impl Client {
    /// Connects to `server` (its native address; QUIC dials the port that goes with it) over
    /// the transport [`DriverConfig::transport`] names, and waits for the handshake:
    /// - `Native`: fails with [`ClientError::Timeout`] after `handshake_timeout` (default 5 s)
    ///   if the server does not answer;
    /// - `Quic`: fails with [`ClientError::Quic`] (certificate, ALPN, handshake timeout);
    /// - `Auto`: native, then QUIC once the native handshake has gone unanswered for
    ///   [`QuicConfig::auto_fallback_after`](crate::QuicConfig::auto_fallback_after) (1 s).
    ///
    /// Must be called within a tokio runtime.
    pub async fn connect(
        server: SocketAddr,
        mut config: DriverConfig,
    ) -> Result<Self, ClientError> {
        config.endpoint.accept_incoming = false;
        config.validate().map_err(crate::BindError::from)?;
        let drain = config.endpoint.ack_timeout;
        let inner = match config.transport {
            Transport::Native => Inner::Native(NativeClient::connect(server, config).await?),
            #[cfg(feature = "quic")]
            Transport::Quic => Inner::Quic(QuicClient::connect(server, &config, false).await?),
            #[cfg(feature = "quic")]
            Transport::Hybrid => hybrid(server, config).await?,
            #[cfg(feature = "quic")]
            Transport::Auto => {
                let mut native = config.clone();
                let patience = config.quic.auto_fallback_after;
                native.endpoint.handshake_timeout = native.endpoint.handshake_timeout.min(patience);
                match NativeClient::connect(server, native).await {
                    Ok(client) => Inner::Native(client),
                    Err(ClientError::Timeout { .. }) => {
                        tracing::info!(%server, "no native answer; falling back to QUIC");
                        Inner::Quic(QuicClient::connect(server, &config, false).await?)
                    }
                    Err(e) => return Err(e),
                }
            }
            #[cfg(not(feature = "quic"))]
            _ => unreachable!("validate refuses QUIC transports without the quic feature"),
        };
        Ok(Self {
            inner,
            server,
            drain,
        })
    }

    /// The transport in use: `Native` or `Quic` (never `Auto`).
    pub fn transport(&self) -> Transport {
        match &self.inner {
            Inner::Native(_) => Transport::Native,
            #[cfg(feature = "quic")]
            Inner::Quic(quic) => quic.session().transport(),
            #[cfg(feature = "quic")]
            Inner::Hybrid { .. } => Transport::Hybrid,
        }
    }

    /// The server's address, as given to [`connect`](Self::connect).
    pub fn server_addr(&self) -> SocketAddr {
        self.server
    }

    /// The local address (of the QUIC socket when over QUIC).
    pub fn local_addr(&self) -> SocketAddr {
        match &self.inner {
            Inner::Native(native) => native.local_addr(),
            #[cfg(feature = "quic")]
            Inner::Quic(quic) => quic.local_addr(),
            #[cfg(feature = "quic")]
            Inner::Hybrid { native, .. } => native.local_addr(),
        }
    }

    /// The connection's id (as named in events).
    pub fn connection(&self) -> ConnectionId {
        match &self.inner {
            Inner::Native(native) => native.connection(),
            #[cfg(feature = "quic")]
            Inner::Quic(quic) => quic.session().id(),
            #[cfg(feature = "quic")]
            Inner::Hybrid { native, .. } => native.connection(),
        }
    }

    /// Queues a message for the server; it leaves at once.
    pub fn send(&self, channel: ChannelId, data: Bytes) -> Result<MessageId, SendError> {
        match &self.inner {
            Inner::Native(native) => native.send(channel, data),
            #[cfg(feature = "quic")]
            Inner::Quic(quic) => quic.session().send(channel, data),
            #[cfg(feature = "quic")]
            Inner::Hybrid { native, quic } => match reliable(quic, channel) {
                true => quic.session().send(channel, data),
                false => native.send(channel, data),
            },
        }
    }

    /// Sends, waiting while the channel's send buffer is full (backpressure instead of
    /// [`SendError::BufferFull`]).
    pub async fn send_wait(&self, channel: ChannelId, data: Bytes) -> Result<MessageId, SendError> {
        match &self.inner {
            Inner::Native(native) => native.send_wait(channel, data).await,
            #[cfg(feature = "quic")]
            Inner::Quic(quic) => quic.session().send_wait(channel, data).await,
            #[cfg(feature = "quic")]
            Inner::Hybrid { native, quic } => match reliable(quic, channel) {
                true => quic.session().send_wait(channel, data).await,
                false => native.send_wait(channel, data).await,
            },
        }
    }

    /// Queues several messages at once, so they share datagrams. Returns how many were queued
    /// and, if one was refused, why (the rest are not queued).
    pub fn send_many(
        &self,
        channel: ChannelId,
        messages: impl IntoIterator<Item = Bytes>,
    ) -> (usize, Option<SendError>) {
        match &self.inner {
            Inner::Native(native) => native.send_many(channel, messages),
            #[cfg(feature = "quic")]
            Inner::Quic(quic) => quic.session().send_many(channel, messages),
            #[cfg(feature = "quic")]
            Inner::Hybrid { native, quic } => match reliable(quic, channel) {
                true => quic.session().send_many(channel, messages),
                false => native.send_many(channel, messages),
            },
        }
    }

    /// Waits for at least one event, then moves up to `max` waiting events into `out` at once.
    /// Returns `false` once the client has stopped.
    pub async fn next_events(&mut self, out: &mut Vec<Event>, max: usize) -> bool {
        #[allow(irrefutable_let_patterns)] // without the `quic` feature, native is all there is
        if let Inner::Native(native) = &mut self.inner {
            return native.next_events(out, max).await;
        }
        let Some(first) = self.next_event().await else {
            return false;
        };
        out.push(first);
        #[cfg(feature = "quic")]
        if let Inner::Quic(quic) | Inner::Hybrid { quic, .. } = &mut self.inner {
            quic.try_events(out, max);
        }
        while out.len() < max {
            match self.try_event() {
                Some(event) => out.push(event),
                None => break,
            }
        }
        true
    }

    /// Endpoint-wide statistics of the client's native socket (bytes and datagrams each way,
    /// drops); over QUIC, the QUIC connection's datagram and byte counts.
    pub fn endpoint_stats(&self) -> EndpointStats {
        match &self.inner {
            Inner::Native(native) => native.endpoint_stats(),
            #[cfg(feature = "quic")]
            Inner::Quic(quic) => {
                let stats = quic.session().stats();
                EndpointStats {
                    datagrams_received: stats.packets_received,
                    datagrams_sent: stats.packets_sent,
                    bytes_received: stats.bytes_received,
                    bytes_sent: stats.bytes_sent,
                    connections_opened: 1,
                    connections_live: u64::from(self.is_connected()),
                    dropped: stats.dropped,
                    ..EndpointStats::default()
                }
            }
            #[cfg(feature = "quic")]
            Inner::Hybrid { native, .. } => native.endpoint_stats(),
        }
    }

    /// The next event; `None` once the client has stopped. After
    /// [`Event::Disconnected`] no more messages arrive.
    pub async fn next_event(&mut self) -> Option<Event> {
        match &mut self.inner {
            Inner::Native(native) => native.next_event().await,
            #[cfg(feature = "quic")]
            Inner::Quic(quic) => quic.next_event().await,
            #[cfg(feature = "quic")]
            Inner::Hybrid { native, quic } => tokio::select! {
                Some(event) = quic.next_event() => Some(event),
                event = native.next_event() => event,
            },
        }
    }

    /// The next event if one is waiting.
    pub fn try_event(&mut self) -> Option<Event> {
        match &mut self.inner {
            Inner::Native(native) => native.try_event(),
            #[cfg(feature = "quic")]
            Inner::Quic(quic) => quic.try_event(),
            #[cfg(feature = "quic")]
            Inner::Hybrid { native, quic } => quic.try_event().or_else(|| native.try_event()),
        }
    }

    /// Asks the server to acknowledge everything it has received at once, instead of after
    /// its `max_ack_delay` (see [`Endpoint::request_ack`](crate::Endpoint::request_ack)): for
    /// a client that keeps acknowledgements sparse but must sometimes learn quickly that all
    /// its messages arrived. Native UDP only (and the native path of a hybrid connection);
    /// over QUIC the QUIC stack schedules its own acknowledgements and this returns `false`,
    /// as it does when the connection is not established.
    pub fn request_ack(&self) -> bool {
        match &self.inner {
            Inner::Native(native) => native.request_ack(),
            #[cfg(feature = "quic")]
            Inner::Quic(_) => false,
            #[cfg(feature = "quic")]
            Inner::Hybrid { native, .. } => native.request_ack(),
        }
    }

    /// Whether the connection is established.
    pub fn is_connected(&self) -> bool {
        match &self.inner {
            Inner::Native(native) => native.is_connected(),
            #[cfg(feature = "quic")]
            Inner::Quic(quic) => quic.session().is_open(),
            #[cfg(feature = "quic")]
            Inner::Hybrid { native, .. } => native.is_connected(),
        }
    }

    /// The connection's statistics.
    pub fn stats(&self) -> Option<ConnectionStats> {
        match &self.inner {
            Inner::Native(native) => native.stats(),
            #[cfg(feature = "quic")]
            Inner::Quic(quic) => Some(quic.session().stats()),
            #[cfg(feature = "quic")]
            Inner::Hybrid { native, quic } => {
                let mut stats = native.stats()?;
                quic.session().overlay_reliable(&mut stats);
                Some(stats)
            }
        }
    }

    /// Changes the simulated network conditions live (`None` turns them off): of the native
    /// path, and of the QUIC path if it was conditioned from the start
    /// ([`QuicConfig::link`](crate::QuicConfig::link); then `None` makes its link perfect).
    pub fn set_link(&self, link: Option<&LinkConfig>) -> Result<(), LinkConfigError> {
        match &self.inner {
            Inner::Native(native) => native.set_link(link),
            #[cfg(feature = "quic")]
            Inner::Quic(quic) => quic.set_link(link),
            #[cfg(feature = "quic")]
            Inner::Hybrid { native, quic } => {
                quic.set_link(link)?;
                native.set_link(link)
            }
        }
    }

    /// Closes the connection gracefully with an application code (the server sees
    /// [`DisconnectReason::Remote`](crate::DisconnectReason::Remote)), waits for queued data
    /// and the goodbye to leave, and stops.
    pub async fn disconnect(self, code: u16) {
        match self.inner {
            Inner::Native(native) => native.disconnect(code).await,
            #[cfg(feature = "quic")]
            Inner::Quic(quic) => quic.disconnect(code, self.drain).await,
            #[cfg(feature = "quic")]
            Inner::Hybrid { native, quic } => {
                quic.disconnect(code, self.drain).await;
                native.disconnect(code).await;
            }
        }
    }
}

/// Whether `channel` is reliable, so that a hybrid connection sends it over QUIC.
#[cfg(feature = "quic")]
fn reliable(quic: &QuicClient, channel: ChannelId) -> bool {
    quic.session()
        .send_kind(channel)
        .is_some_and(crate::ChannelKind::is_reliable)
}

/// Hybrid connect: the QUIC session first (it hands out a pairing token), then the native
/// connection, which presents the token on its first reliable channel (or, with none, channel
/// 0, resent until confirmed); the server confirms on the QUIC control stream.
#[cfg(feature = "quic")]
async fn hybrid(server: SocketAddr, config: DriverConfig) -> Result<Inner, ClientError> {
    use super::quic::QuicError;

    let mut quic = QuicClient::connect(server, &config, true).await?;
    let channels = &config.endpoint.channels.client_to_server;
    if channels.is_empty() {
        return Err(QuicError::NoPairingChannel.into());
    }
    let pair_channel = channels
        .iter()
        .position(|c| c.kind.is_reliable())
        .map_or(ChannelId(0), |i| ChannelId(i as u8));
    let resend = !channels[usize::from(pair_channel.0)].kind.is_reliable();
    let timeout = config.quic.handshake_timeout;
    let native = NativeClient::connect(server, config).await?;
    let Some(message) = quic.pairing_message() else {
        return Err(QuicError::NoPairingChannel.into());
    };
    let pairing = async {
        let paired = quic.paired(native.connection());
        tokio::pin!(paired);
        loop {
            // A refusal here (the connection just dropped) ends in the pairing timeout.
            let _ = native.send(pair_channel, message.clone());
            if !resend {
                return paired.await;
            }
            tokio::select! {
                result = &mut paired => return result,
                () = tokio::time::sleep(PAIRING_RESEND) => {}
            }
        }
    };
    match tokio::time::timeout(timeout, pairing).await {
        Ok(Ok(())) => Ok(Inner::Hybrid { native, quic }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(QuicError::HandshakeTimeout {
            server,
            after: timeout,
        }
        .into()),
    }
}

/// How often an unreliable pairing message is resent until the server confirms it.
#[cfg(feature = "quic")]
const PAIRING_RESEND: Duration = Duration::from_millis(100);
