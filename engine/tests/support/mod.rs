//! Shared helpers for the scenario tests: a client and a server on a simulated link.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use tickwire::sim::{LinkConfig, NodeId, Simulation};
use tickwire::{Config, ConnectionId, Event};

pub const SERVER: &str = "10.0.0.1:7777";
pub const CLIENT: &str = "10.0.0.2:40000";

pub struct Pair {
    pub sim: Simulation,
    pub server: NodeId,
    pub client: NodeId,
    /// The client's connection to the server.
    pub to_server: ConnectionId,
    /// The server's connection to the client.
    pub to_client: ConnectionId,
}

pub fn server_addr() -> SocketAddr {
    SERVER.parse().unwrap()
}

pub fn client_addr() -> SocketAddr {
    CLIENT.parse().unwrap()
}

/// A connected pair on `link`, with `adjust` applied to both configs.
pub fn connected_pair(link: LinkConfig, seed: u64, adjust: impl Fn(&mut Config)) -> Pair {
    let mut sim = Simulation::new(link, seed).unwrap();
    let mut server_config = Config {
        seed: Some(seed ^ 0x5e),
        ..Config::server()
    };
    adjust(&mut server_config);
    let mut client_config = Config {
        seed: Some(seed ^ 0xc1),
        ..Config::client()
    };
    adjust(&mut client_config);
    let server = sim.add_endpoint(server_addr(), server_config).unwrap();
    let client = sim.add_endpoint(client_addr(), client_config).unwrap();
    let now = sim.now();
    let to_server = sim
        .endpoint_mut(client)
        .connect(server_addr(), now)
        .unwrap();
    let mut to_client = None;
    let mut client_up = false;
    let ok = sim
        .run_until(Duration::from_secs(30), |sim| {
            while let Some(event) = sim.poll_event(server) {
                if let Event::Connected { connection, .. } = event {
                    to_client = Some(connection);
                }
            }
            while let Some(event) = sim.poll_event(client) {
                match event {
                    Event::Connected { .. } => client_up = true,
                    other => panic!("unexpected client event while connecting: {other:?}"),
                }
            }
            client_up && to_client.is_some()
        })
        .unwrap();
    assert!(ok, "handshake did not complete");
    Pair {
        sim,
        server,
        client,
        to_server,
        to_client: to_client.unwrap(),
    }
}

/// The link of the hostile-network scenario.
pub fn hostile_link() -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(50),
        jitter: Duration::from_millis(30),
        loss: 0.2,
        duplicate: 0.05,
        reorder: 0.1,
        ..LinkConfig::default()
    }
}

/// `len` deterministic pseudo-random bytes derived from `seed` (splitmix64). A shorter pattern
/// with the same seed is a prefix of a longer one.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A payload of `len` bytes (at least 4): `counter` big-endian, then [`pattern`] bytes seeded
/// by the counter, so that the receiver can check every byte with [`unstamp`].
pub fn stamped(counter: u32, len: usize) -> bytes::Bytes {
    assert!(len >= 4, "a stamped payload needs at least 4 bytes");
    let mut out = counter.to_be_bytes().to_vec();
    out.extend(pattern(u64::from(counter), len - 4));
    out.into()
}

/// The counter of a payload built by [`stamped`]; panics if any byte after it is wrong.
pub fn unstamp(data: &[u8]) -> u32 {
    assert!(
        data.len() >= 4,
        "payload of {} bytes is too short",
        data.len()
    );
    let counter = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    assert!(
        data[4..] == pattern(u64::from(counter), data.len() - 4)[..],
        "payload of message {counter} ({} bytes) is corrupted",
        data.len()
    );
    counter
}

/// Drains the events `node` has produced so far; panics if one of them is a disconnect.
pub fn live_events(sim: &mut Simulation, node: NodeId) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(event) = sim.poll_event(node) {
        if let Event::Disconnected { reason, .. } = event {
            panic!("node {node:?} disconnected: {reason}");
        }
        events.push(event);
    }
    events
}

/// The payloads of the messages among `events` that arrived on `channel`; panics on a message
/// on any other channel.
pub fn messages_on(events: Vec<Event>, channel: tickwire::ChannelId) -> Vec<bytes::Bytes> {
    events
        .into_iter()
        .filter_map(|event| match event {
            Event::Message {
                channel: got, data, ..
            } => {
                assert_eq!(got, channel, "message on an unexpected channel");
                Some(data)
            }
            _ => None,
        })
        .collect()
}

pub mod faults;
pub mod secure;

// ---- helpers for the handshake, lifecycle and hostile-input tests ----

/// Every datagram an endpoint wants to send at `now`, with its destination.
pub fn drain_transmits(
    endpoint: &mut tickwire::Endpoint,
    now: std::time::Instant,
) -> Vec<(SocketAddr, bytes::Bytes)> {
    let mut buf = vec![0; tickwire::Endpoint::MAX_DATAGRAM];
    let mut out = Vec::new();
    while let Some(transmit) = endpoint.poll_transmit(now, &mut buf) {
        out.push((
            transmit.destination,
            bytes::Bytes::copy_from_slice(&buf[..transmit.size]),
        ));
    }
    out
}

/// Every event an endpoint has queued.
pub fn drain_events(endpoint: &mut tickwire::Endpoint) -> Vec<Event> {
    std::iter::from_fn(|| endpoint.poll_event()).collect()
}

/// Events a simulation node has queued.
pub fn sim_events(sim: &mut Simulation, node: NodeId) -> Vec<Event> {
    std::iter::from_fn(|| sim.poll_event(node)).collect()
}

/// A link with `latency` one way and nothing else.
pub fn delay_link(latency: Duration) -> LinkConfig {
    LinkConfig {
        latency,
        ..LinkConfig::default()
    }
}

/// A link that drops everything.
pub fn dead_link() -> LinkConfig {
    LinkConfig {
        loss: 1.0,
        ..LinkConfig::default()
    }
}

/// Sends a reliable message each way and runs until both arrive (or 10 s of virtual time
/// pass). Returns whether both arrived; panics on a disconnect.
pub fn reliable_round_trip(pair: &mut Pair, tag: &'static str) -> bool {
    const RELIABLE: tickwire::ChannelId = tickwire::ChannelId(2);
    let (client, server) = (pair.client, pair.server);
    if pair
        .sim
        .endpoint_mut(client)
        .send(
            pair.to_server,
            RELIABLE,
            bytes::Bytes::from_static(tag.as_bytes()),
        )
        .is_err()
        || pair
            .sim
            .endpoint_mut(server)
            .send(
                pair.to_client,
                RELIABLE,
                bytes::Bytes::from_static(tag.as_bytes()),
            )
            .is_err()
    {
        return false;
    }
    let (mut at_server, mut at_client) = (false, false);
    pair.sim
        .run_until(Duration::from_secs(10), |sim| {
            for (node, seen) in [(server, &mut at_server), (client, &mut at_client)] {
                while let Some(event) = sim.poll_event(node) {
                    match event {
                        Event::Message { data, .. } if &data[..] == tag.as_bytes() => *seen = true,
                        Event::Disconnected { reason, .. } => {
                            panic!("disconnected while checking the session: {reason:?}")
                        }
                        _ => {}
                    }
                }
            }
            at_server && at_client
        })
        .unwrap()
}

/// One datagram seen by a [`HandPair`].
#[derive(Clone, Debug)]
pub struct Captured {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub data: bytes::Bytes,
}

/// A client and a server endpoint driven by hand on a fake clock (`base` plus offsets), with
/// every datagram exchanged recorded in `log`.
pub struct HandPair {
    pub base: std::time::Instant,
    pub now: std::time::Instant,
    pub client: tickwire::Endpoint,
    pub server: tickwire::Endpoint,
    pub client_events: Vec<Event>,
    pub server_events: Vec<Event>,
    pub log: Vec<Captured>,
}

impl HandPair {
    /// Two endpoints at [`client_addr`] and [`server_addr`]; nothing is sent yet.
    pub fn new(client: Config, server: Config) -> Self {
        let base = std::time::Instant::now();
        Self {
            base,
            now: base,
            client: tickwire::Endpoint::new(client, base).unwrap(),
            server: tickwire::Endpoint::new(server, base).unwrap(),
            client_events: Vec::new(),
            server_events: Vec::new(),
            log: Vec::new(),
        }
    }

    /// Shuttles datagrams both ways at the current instant until neither side has more.
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            let from_client = drain_transmits(&mut self.client, self.now);
            let from_server = drain_transmits(&mut self.server, self.now);
            if from_client.is_empty() && from_server.is_empty() {
                break;
            }
            for (to, data) in from_client {
                self.log.push(Captured {
                    from: client_addr(),
                    to,
                    data: data.clone(),
                });
                if to == server_addr() {
                    self.server.handle_datagram(self.now, client_addr(), data);
                }
            }
            for (to, data) in from_server {
                self.log.push(Captured {
                    from: server_addr(),
                    to,
                    data: data.clone(),
                });
                if to == client_addr() {
                    self.client.handle_datagram(self.now, server_addr(), data);
                }
            }
        }
        self.client_events.extend(drain_events(&mut self.client));
        self.server_events.extend(drain_events(&mut self.server));
    }

    /// Runs timers and exchanges datagrams for `duration` of fake time.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        self.pump();
        let mut steps = 0u32;
        loop {
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next.filter(|&t| t <= end) else {
                break;
            };
            steps += 1;
            assert!(steps < 1_000_000, "livelock at {:?}", self.now - self.base);
            self.now = self.now.max(next);
            for endpoint in [&mut self.client, &mut self.server] {
                if endpoint.poll_timeout().is_some_and(|t| t <= self.now) {
                    endpoint.handle_timeout(self.now);
                }
            }
            self.pump();
        }
        self.now = end;
        self.pump();
    }
}

/// Takes the datagrams `node` wants to send now, before the simulation sees them, so that a
/// test can drop, delay or reorder exactly the ones it wants (send them on with [`inject`]).
pub fn intercept(sim: &mut Simulation, node: NodeId) -> Vec<(SocketAddr, bytes::Bytes)> {
    let now = sim.now();
    let mut buf = vec![0; tickwire::Endpoint::MAX_DATAGRAM];
    let mut out = Vec::new();
    while let Some(transmit) = sim.endpoint_mut(node).poll_transmit(now, &mut buf) {
        out.push((
            transmit.destination,
            bytes::Bytes::copy_from_slice(&buf[..transmit.size]),
        ));
    }
    out
}

/// Puts a datagram taken with [`intercept`] on the simulated network, from `node`'s address.
pub fn inject(sim: &mut Simulation, node: NodeId, datagram: (SocketAddr, bytes::Bytes)) {
    let (now, from) = (sim.now(), sim.address(node));
    sim.network_mut().send(now, from, datagram.0, datagram.1);
}

/// How late a timer may fire (a driver or timer wheel may round deadlines up a little).
pub const TIMER_SLACK: Duration = Duration::from_millis(5);

/// Panics unless `at` is at `deadline` or at most [`TIMER_SLACK`] after it: never early.
pub fn assert_on_time(at: Duration, deadline: Duration, what: &str) {
    assert!(
        at >= deadline && at <= deadline + TIMER_SLACK,
        "{what}: fired at {at:?}, due at {deadline:?}"
    );
}

// ---- a hand-driven pair on a fixed-latency link, for overhead and datagram-filter tests ----

/// One end of a [`Wire`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireSide {
    Client,
    Server,
}

/// Decides, from the sender, the time since the wire was connected and the bytes, whether a
/// datagram is dropped.
pub type DropFilter = Box<dyn FnMut(WireSide, Duration, &[u8]) -> bool>;

/// A connected client and server driven by hand over a lossless link with a fixed one-way
/// latency: every datagram can be logged (`log`) and dropped by a filter (`drop_if`).
/// Application sends are transmitted at once. Panics on any disconnect.
pub struct Wire {
    pub now: std::time::Instant,
    /// When the handshake completed.
    pub connected_at: std::time::Instant,
    pub latency: Duration,
    pub client: tickwire::Endpoint,
    pub server: tickwire::Endpoint,
    pub to_server: ConnectionId,
    pub to_client: ConnectionId,
    /// Whether to record every datagram sent in `log`.
    pub record: bool,
    /// Datagrams sent since the handshake, with their sender (when `record` is set).
    pub log: Vec<(WireSide, bytes::Bytes)>,
    /// Events of each side since the handshake (disconnects panic instead).
    pub client_events: Vec<Event>,
    pub server_events: Vec<Event>,
    pub drop_if: Option<DropFilter>,
    in_flight: Vec<(std::time::Instant, WireSide, bytes::Bytes)>,
    buf: Vec<u8>,
}

impl Wire {
    /// A connected pair `latency` apart, with default configs (seeded).
    pub fn connected(latency: Duration) -> Self {
        Self::connected_with(latency, |_| {})
    }

    /// A connected pair `latency` apart, with `adjust` applied to both (seeded) configs.
    pub fn connected_with(latency: Duration, adjust: impl Fn(&mut Config)) -> Self {
        let now = std::time::Instant::now();
        let mut client_config = Config {
            seed: Some(1),
            ..Config::client()
        };
        adjust(&mut client_config);
        let mut server_config = Config {
            seed: Some(2),
            ..Config::server()
        };
        adjust(&mut server_config);
        let mut client = tickwire::Endpoint::new(client_config, now).unwrap();
        let server = tickwire::Endpoint::new(server_config, now).unwrap();
        let to_server = client.connect(server_addr(), now).unwrap();
        let mut wire = Self {
            now,
            connected_at: now,
            latency,
            client,
            server,
            to_server,
            to_client: ConnectionId(u64::MAX),
            record: true,
            log: Vec::new(),
            client_events: Vec::new(),
            server_events: Vec::new(),
            drop_if: None,
            in_flight: Vec::new(),
            buf: vec![0; tickwire::Endpoint::MAX_DATAGRAM],
        };
        for _ in 0..100 {
            wire.advance(latency);
            let accepted = wire.server_events.iter().find_map(|event| match event {
                Event::Connected { connection, .. } => Some(*connection),
                _ => None,
            });
            if let (Some(to_client), true) = (accepted, wire.client.is_connected(to_server)) {
                wire.to_client = to_client;
                wire.connected_at = wire.now;
                wire.log.clear();
                wire.client_events.clear();
                wire.server_events.clear();
                return wire;
            }
        }
        panic!("handshake did not complete");
    }

    pub fn endpoint(&mut self, side: WireSide) -> &mut tickwire::Endpoint {
        match side {
            WireSide::Client => &mut self.client,
            WireSide::Server => &mut self.server,
        }
    }

    /// Queues `data` on `channel` from `side` and transmits at once.
    pub fn send(
        &mut self,
        side: WireSide,
        channel: tickwire::ChannelId,
        data: bytes::Bytes,
    ) -> Result<tickwire::MessageId, tickwire::SendError> {
        let connection = match side {
            WireSide::Client => self.to_server,
            WireSide::Server => self.to_client,
        };
        let id = self.endpoint(side).send(connection, channel, data)?;
        self.flush();
        Ok(id)
    }

    /// Runs timers and deliveries for `duration`.
    pub fn advance(&mut self, duration: Duration) {
        let end = self.now + duration;
        loop {
            self.flush();
            let next = self
                .in_flight
                .iter()
                .map(|(at, _, _)| *at)
                .chain(self.client.poll_timeout())
                .chain(self.server.poll_timeout())
                .min();
            let Some(next) = next.filter(|&t| t <= end) else {
                break;
            };
            self.now = self.now.max(next);
            let now = self.now;
            let (due, later) = std::mem::take(&mut self.in_flight)
                .into_iter()
                .partition(|(at, _, _)| *at <= now);
            self.in_flight = later;
            for (_, to, data) in due {
                let from = match to {
                    WireSide::Client => server_addr(),
                    WireSide::Server => client_addr(),
                };
                self.endpoint(to).handle_datagram(now, from, data);
            }
            for side in [WireSide::Client, WireSide::Server] {
                let endpoint = self.endpoint(side);
                if endpoint.poll_timeout().is_some_and(|t| t <= now) {
                    endpoint.handle_timeout(now);
                }
            }
        }
        self.now = end;
        self.flush();
    }

    /// Sends whatever both endpoints have to send now, and collects their events.
    pub fn flush(&mut self) {
        let now = self.now;
        let elapsed = now - self.connected_at;
        let mut buf = std::mem::take(&mut self.buf);
        for side in [WireSide::Client, WireSide::Server] {
            let to = match side {
                WireSide::Client => WireSide::Server,
                WireSide::Server => WireSide::Client,
            };
            while let Some(transmit) = self.endpoint(side).poll_transmit(now, &mut buf) {
                let data = bytes::Bytes::copy_from_slice(&buf[..transmit.size]);
                if self.record {
                    self.log.push((side, data.clone()));
                }
                if let Some(drop_if) = &mut self.drop_if {
                    if drop_if(side, elapsed, &data) {
                        continue;
                    }
                }
                self.in_flight.push((now + self.latency, to, data));
            }
            while let Some(event) = self.endpoint(side).poll_event() {
                if let Event::Disconnected { reason, .. } = event {
                    panic!("{side:?} disconnected at {elapsed:?}: {reason}");
                }
                match side {
                    WireSide::Client => self.client_events.push(event),
                    WireSide::Server => self.server_events.push(event),
                }
            }
        }
        self.buf = buf;
    }
}
