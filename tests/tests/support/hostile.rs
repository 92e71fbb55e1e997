//! Shared setup of the `hostile_*` tests: a running `tickwire::Server` on loopback with one
//! honest client exchanging messages through it, and raw UDP sockets that send it whatever a
//! test forges (with `tickwire::fuzzing::forge`). Every wait is bounded.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tickwire::fuzzing::forge::{self, ForgedFrame, Reply};
use tickwire::{
    ChannelId, ChannelLayout, Client, Config, ConnectionId, ConnectionStats, DriverConfig,
    EndpointStats, Event, Server,
};
use tokio::net::UdpSocket;
use tokio::time::timeout;

/// Every wait for a condition is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(5);
/// How long a probe listens for a reply that must not come.
pub const QUIET: Duration = Duration::from_millis(100);
/// The honest client's reliable channel.
pub const RELIABLE: ChannelId = ChannelId(2);

/// The default layout's fingerprint.
pub fn fingerprint() -> u32 {
    forge::fingerprint(&ChannelLayout::default())
}

/// The default protocol id.
pub fn protocol_id() -> u64 {
    Config::default().protocol_id
}

/// A running server with one honest client connected and echoing.
pub struct Target {
    pub server: Server,
    pub addr: SocketAddr,
    pub client: Client,
    /// The server's id of the honest client's connection.
    pub honest: ConnectionId,
    /// Server events the echo loop saw that were not the honest client's messages.
    pub events: Vec<Event>,
    round_trips: u32,
}

impl Target {
    /// A server with the default configuration and a connected client.
    pub async fn start() -> Self {
        Self::start_with(|_| {}, |_| {}).await
    }

    /// A server and a client, their configurations adjusted first.
    pub async fn start_with(
        server: impl FnOnce(&mut DriverConfig),
        client: impl FnOnce(&mut DriverConfig),
    ) -> Self {
        let mut server_config = DriverConfig::server();
        server(&mut server_config);
        let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), server_config)
            .await
            .expect("bind a loopback server");
        let addr = server.local_addr();
        let mut client_config = DriverConfig::client();
        client(&mut client_config);
        let client = timeout(LIMIT, Client::connect(addr, client_config))
            .await
            .expect("connect in time")
            .expect("connect");
        let honest = loop {
            match timeout(LIMIT, server.next_event()).await.unwrap().unwrap() {
                Event::Connected { connection, .. } => break connection,
                _ => continue,
            }
        };
        Self {
            server,
            addr,
            client,
            honest,
            events: Vec::new(),
            round_trips: 0,
        }
    }

    /// The honest client sends a reliable message; the server echoes it and the client gets it
    /// back. Panics if that does not happen within [`LIMIT`] or either side disconnects.
    pub async fn round_trip(&mut self) {
        self.round_trips += 1;
        let tag = Bytes::from(format!("round trip {}", self.round_trips));
        self.client
            .send(RELIABLE, tag.clone())
            .expect("the honest client can send");
        let deadline = tokio::time::Instant::now() + LIMIT;
        let mut echoed = false;
        loop {
            tokio::select! {
                event = self.server.next_event() => {
                    let event = event.expect("the server is running");
                    match event {
                        Event::Message { connection, channel, data } if connection == self.honest => {
                            let _ = self.server.send(connection, channel, data);
                            echoed = true;
                        }
                        Event::Disconnected { connection, reason } if connection == self.honest => {
                            panic!("the server dropped the honest client: {reason}")
                        }
                        other => self.events.push(other),
                    }
                }
                event = self.client.next_event() => match event {
                    Some(Event::Message { data, .. }) if data == tag => break,
                    Some(Event::Disconnected { reason, .. }) => {
                        panic!("the honest client was disconnected: {reason}")
                    }
                    Some(_) => {}
                    None => panic!("the honest client stopped"),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    panic!("no round trip within {LIMIT:?} (echoed: {echoed})")
                }
            }
        }
        assert!(self.client.is_connected());
    }

    /// The endpoint statistics once `done` holds for them (polled, bounded by [`LIMIT`]): the
    /// driver counts datagrams on its own task.
    pub async fn stats_when(&self, done: impl Fn(&EndpointStats) -> bool) -> EndpointStats {
        let deadline = Instant::now() + LIMIT;
        loop {
            let stats = self.server.endpoint_stats();
            if done(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "condition never held: {stats:#?}"
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The endpoint statistics once the server has received `count` more datagrams than
    /// `before` shows.
    pub async fn after(&self, before: &EndpointStats, count: u64) -> EndpointStats {
        let want = before.datagrams_received + count;
        self.stats_when(|s| s.datagrams_received >= want).await
    }

    /// One connection's statistics once `done` holds for them (bounded by [`LIMIT`]).
    pub async fn connection_when(
        &self,
        connection: ConnectionId,
        done: impl Fn(&ConnectionStats) -> bool,
    ) -> ConnectionStats {
        let deadline = Instant::now() + LIMIT;
        loop {
            let stats = self
                .server
                .stats(connection)
                .expect("the connection exists");
            if done(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "condition never held: {stats:#?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Waits (bounded by [`LIMIT`]) until `connection` is gone from the server (a closing
    /// connection still sends its disconnect copies for a moment).
    pub async fn gone(&self, connection: ConnectionId) {
        let deadline = Instant::now() + LIMIT;
        while self.server.connections().contains(&connection) {
            assert!(Instant::now() < deadline, "{connection} never went away");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The only connection is the honest client's (plus `also`).
    pub fn assert_connections(&self, also: &[ConnectionId]) {
        let mut expected = vec![self.honest];
        expected.extend_from_slice(also);
        expected.sort_unstable();
        assert_eq!(self.server.connections(), expected, "per-sender state");
        let stats = self.server.endpoint_stats();
        assert_eq!(stats.connections_live, expected.len() as u64);
    }

    /// Waits (bounded) for a server event about a connection other than the honest one.
    pub async fn next_other_event(&mut self, limit: Duration) -> Option<Event> {
        if !self.events.is_empty() {
            return Some(self.events.remove(0));
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let event = tokio::select! {
                event = self.server.next_event() => event?,
                _ = tokio::time::sleep_until(deadline) => return None,
            };
            match event {
                Event::Message {
                    connection,
                    channel,
                    data,
                } if connection == self.honest => {
                    let _ = self.server.send(connection, channel, data);
                }
                Event::Disconnected { connection, reason } if connection == self.honest => {
                    panic!("the server dropped the honest client: {reason}")
                }
                other => return Some(other),
            }
        }
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// A raw UDP socket on a fresh loopback port that speaks to the server by hand.
pub struct RawPeer {
    pub socket: UdpSocket,
    pub server: SocketAddr,
    pub nonce: u64,
    /// The next packet number [`data`](Self::data) uses.
    pub next_pn: u16,
}

impl RawPeer {
    pub async fn new(server: SocketAddr, nonce: u64) -> Self {
        Self {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            server,
            nonce: nonce | 1,
            next_pn: 0,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    pub async fn send(&self, datagram: &[u8]) {
        self.socket.send_to(datagram, self.server).await.unwrap();
    }

    /// The next datagram from the server within `limit`.
    pub async fn recv_within(&self, limit: Duration) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (len, from) = timeout(limit, self.socket.recv_from(&mut buf))
                .await
                .ok()?
                .ok()?;
            if from == self.server {
                buf.truncate(len);
                return Some(buf);
            }
        }
    }

    /// Everything the server sends within `limit` (at most 4096 datagrams).
    pub async fn collect(&self, limit: Duration) -> Vec<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut out = Vec::new();
        while out.len() < 4096 {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_within(left).await {
                Some(datagram) => out.push(datagram),
                None => break,
            }
        }
        out
    }

    /// Sends `datagram` and asserts that nothing comes back within [`QUIET`].
    pub async fn send_expect_nothing(&self, datagram: &[u8], what: &str) {
        self.send(datagram).await;
        let replies = self.collect(QUIET).await;
        assert!(
            replies.is_empty(),
            "{what}: {} replies ({:?})",
            replies.len(),
            replies.iter().map(|r| forge::reply(r)).collect::<Vec<_>>()
        );
    }

    /// A valid connection request for this peer's nonce.
    pub fn request(&self) -> Vec<u8> {
        forge::request(
            forge::PROTOCOL_VERSION,
            protocol_id(),
            fingerprint(),
            self.nonce,
        )
    }

    /// Sends a request and returns the challenge's cookie.
    pub async fn cookie(&self) -> [u8; forge::COOKIE_SIZE] {
        for _ in 0..20 {
            self.send(&self.request()).await;
            while let Some(reply) = self.recv_within(Duration::from_millis(250)).await {
                if let Some(Reply::Challenge { nonce, cookie }) = forge::reply(&reply) {
                    assert_eq!(nonce, self.nonce);
                    return cookie;
                }
            }
        }
        panic!("no challenge")
    }

    /// The response for `cookie`.
    pub fn response(&self, cookie: [u8; forge::COOKIE_SIZE]) -> Vec<u8> {
        forge::response(
            forge::PROTOCOL_VERSION,
            protocol_id(),
            fingerprint(),
            self.nonce,
            cookie,
        )
    }

    /// Completes the handshake by hand; the server then has a session for this peer.
    pub async fn handshake(&mut self) {
        let cookie = self.cookie().await;
        for _ in 0..20 {
            self.send(&self.response(cookie)).await;
            while let Some(reply) = self.recv_within(Duration::from_millis(250)).await {
                if forge::reply(&reply) == Some(Reply::Accept { nonce: self.nonce }) {
                    return;
                }
            }
        }
        panic!("no accept")
    }

    /// A data packet with the next packet number.
    pub fn data(&mut self, ack: Option<(u16, u32)>, frames: &[ForgedFrame<'_>]) -> Vec<u8> {
        let packet = forge::data(self.next_pn, ack, frames);
        self.next_pn = self.next_pn.wrapping_add(1);
        packet
    }

    /// A ping with the next packet number.
    pub fn ping(&mut self) -> Vec<u8> {
        self.data(None, &[ForgedFrame::Ping])
    }
}

/// Waits (bounded by [`LIMIT`]) for the server's `Connected` event for `peer` and returns the
/// connection.
pub async fn connection_of(target: &mut Target, peer: &RawPeer) -> ConnectionId {
    let addr = peer.local_addr();
    for _ in 0..100 {
        match target.next_other_event(LIMIT).await {
            Some(Event::Connected {
                connection, remote, ..
            }) if remote == addr => return connection,
            Some(_) => continue,
            None => break,
        }
    }
    panic!("no Connected event for {addr}")
}

/// Every proper prefix of `datagram`, from the empty one.
pub fn truncations(datagram: &[u8]) -> impl Iterator<Item = &[u8]> {
    (0..datagram.len()).map(move |n| &datagram[..n])
}

/// Whether `replies` are all one-byte no-session packets.
pub fn only_no_session(replies: &[Vec<u8>]) -> bool {
    replies
        .iter()
        .all(|r| forge::reply(r) == Some(Reply::NoSession))
}
