//! A server and its clients on a seeded [`SimNetwork`], in virtual time, with every datagram
//! the server sends counted by size.
//!
//! This is `sim::Simulation` with two additions a bandwidth benchmark needs: the size of every
//! server-to-client datagram (for bytes per packet and fragments per snapshot), and the virtual
//! time at which each event was produced (for the snapshot buffer's arrival times).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tickwire::sim::{LinkConfig, SimNetwork};
use tickwire::{
    ChannelConfig, ChannelId, ChannelKind, ChannelLayout, Config, ConnectionId, Endpoint, Event,
};

/// The snapshot channel: unreliable with delivery notification. (Not `UnreliableSequenced`:
/// there an ack means "received", not "decoded", and a stale snapshot the client dropped
/// would become the server's baseline.)
pub(crate) const SNAPSHOTS: ChannelId = ChannelId(0);

/// Steps one `advance_to` may take before the run is declared a livelock.
const MAX_STEPS_PER_ADVANCE: u32 = 1_000_000;

/// One endpoint and what it produced.
struct Node {
    addr: SocketAddr,
    endpoint: Endpoint,
    events: VecDeque<(Instant, Event)>,
}

/// Counters of the datagrams the server sent to one client.
#[derive(Clone, Debug, Default)]
pub(crate) struct Downlink {
    /// Sizes (UDP payload bytes) of datagrams sent while counting was on.
    pub(crate) sizes: Vec<u32>,
    /// Datagrams sent since the last [`Net::take_burst`].
    pub(crate) burst: u32,
}

/// A server (node 0) and clients (nodes 1..) on one simulated network.
pub(crate) struct Net {
    network: SimNetwork,
    now: Instant,
    start: Instant,
    nodes: Vec<Node>,
    buf: Vec<u8>,
    /// Per client node (index − 1): the server's datagrams to it.
    pub(crate) downlinks: Vec<Downlink>,
    /// Whether datagram sizes are recorded (off during warm-up).
    pub(crate) counting: bool,
}

impl Net {
    /// A server and `clients` clients, each client connecting at once. Every link has `link`.
    pub(crate) fn new(link: LinkConfig, clients: usize, seed: u64) -> Self {
        let start = Instant::now();
        // The link configs come from the fixed profile table: valid.
        let network = SimNetwork::new(link, seed).expect("valid link");
        let mut net = Self {
            network,
            now: start,
            start,
            nodes: Vec::new(),
            buf: vec![0; Endpoint::MAX_DATAGRAM],
            downlinks: vec![Downlink::default(); clients],
            counting: false,
        };
        let server_addr: SocketAddr = "10.0.0.1:7777".parse().expect("literal address");
        net.add(
            server_addr,
            Config {
                seed: Some(seed),
                channels: layout(),
                max_connections: clients.max(1),
                ..Config::server()
            },
        );
        for i in 0..clients {
            let addr = SocketAddr::from(([10, 0, 1, (i / 250) as u8], 20_000 + i as u16));
            net.add(
                addr,
                Config {
                    seed: Some(seed ^ ((i as u64 + 1) * 0x9e37_79b9)),
                    channels: layout(),
                    ..Config::client()
                },
            );
            let now = net.now;
            // A fresh client endpoint connecting to a valid address cannot fail.
            net.nodes[i + 1]
                .endpoint
                .connect(server_addr, now)
                .expect("connect");
        }
        net
    }

    /// Virtual time now.
    pub(crate) fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the start.
    pub(crate) fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The address of node `node` (0 is the server).
    pub(crate) fn address(&self, node: usize) -> SocketAddr {
        self.nodes[node].addr
    }

    /// The server endpoint.
    pub(crate) fn server(&mut self) -> &mut Endpoint {
        &mut self.nodes[0].endpoint
    }

    /// The next event of node `node`, with the virtual time it happened.
    pub(crate) fn poll_event(&mut self, node: usize) -> Option<(Instant, Event)> {
        self.nodes[node].events.pop_front()
    }

    /// Changes both directions between the server and every client.
    pub(crate) fn set_links(&mut self, link: &LinkConfig) {
        let server = self.nodes[0].addr;
        for node in 1..self.nodes.len() {
            let client = self.nodes[node].addr;
            for (from, to) in [(server, client), (client, server)] {
                // Profile links are valid.
                self.network
                    .set_link(from, to, link.clone())
                    .expect("valid link");
            }
        }
    }

    /// Datagrams the server sent to client `client` since the last call.
    pub(crate) fn take_burst(&mut self, client: usize) -> u32 {
        std::mem::take(&mut self.downlinks[client].burst)
    }

    /// Sends what the endpoints queued, then runs deliveries and timers up to `until`.
    pub(crate) fn advance_to(&mut self, until: Instant) {
        let mut steps = 0u32;
        loop {
            self.flush();
            let next_timer = self
                .nodes
                .iter()
                .filter_map(|n| n.endpoint.poll_timeout())
                .min();
            let next = [next_timer, self.network.next_delivery()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next.filter(|t| *t <= until) else {
                self.now = self.now.max(until);
                self.flush();
                return;
            };
            steps += 1;
            assert!(
                steps < MAX_STEPS_PER_ADVANCE,
                "livelock at {:?}",
                self.elapsed()
            );
            self.now = self.now.max(next);
            let now = self.now;
            while let Some(datagram) = self.network.poll(now) {
                if let Some(node) = self.nodes.iter_mut().find(|n| n.addr == datagram.to) {
                    node.endpoint
                        .handle_datagram(now, datagram.from, datagram.data);
                }
            }
            for node in &mut self.nodes {
                if node.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                    node.endpoint.handle_timeout(now);
                }
            }
        }
    }

    fn add(&mut self, addr: SocketAddr, config: Config) {
        // The configs above are built from valid defaults.
        let endpoint = Endpoint::new(config, self.now).expect("valid config");
        self.nodes.push(Node {
            addr,
            endpoint,
            events: VecDeque::new(),
        });
    }

    fn flush(&mut self) {
        let now = self.now;
        for (index, node) in self.nodes.iter_mut().enumerate() {
            while let Some(transmit) = node.endpoint.poll_transmit(now, &mut self.buf) {
                if index == 0 {
                    let client = client_index(transmit.destination);
                    if let Some(downlink) = client.and_then(|c| self.downlinks.get_mut(c)) {
                        downlink.burst += 1;
                        if self.counting {
                            downlink.sizes.push(transmit.size as u32);
                        }
                    }
                }
                let data = Bytes::copy_from_slice(&self.buf[..transmit.size]);
                self.network
                    .send(now, node.addr, transmit.destination, data);
            }
            while let Some(event) = node.endpoint.poll_event() {
                node.events.push_back((now, event));
            }
        }
    }
}

/// The client index of a client address (see `Net::new`).
fn client_index(addr: SocketAddr) -> Option<usize> {
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    let index = usize::from(v4.port().checked_sub(20_000)?);
    (v4.ip().octets()[2] == 1).then_some(index)
}

/// One unreliable channel with delivery notification, both ways.
fn layout() -> ChannelLayout {
    ChannelLayout::symmetric(vec![ChannelConfig {
        notify_delivery: true,
        ..ChannelConfig::new(ChannelKind::Unreliable)
    }])
}

/// The server's connection id for a client, from its `Connected` event.
pub(crate) fn connection_of(event: &Event) -> Option<(ConnectionId, SocketAddr)> {
    match event {
        Event::Connected {
            connection, remote, ..
        } => Some((*connection, *remote)),
        _ => None,
    }
}
