//! Drives endpoints over a [`SimNetwork`] in virtual time.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use thiserror::Error;

use super::{LinkConfig, LinkConfigError, SimNetwork};
use crate::{Config, ConfigError, Endpoint, Event};

/// Steps allowed at one instant of virtual time before the run is declared a livelock.
const MAX_STEPS_AT_ONE_INSTANT: u32 = 100_000;

/// Identifies an endpoint in a [`Simulation`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub usize);

/// Why a simulation stopped.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SimError {
    /// Virtual time stopped advancing: something reschedules itself at the same instant forever.
    #[error("livelock: {steps} steps at virtual time {at:?} without time advancing")]
    Livelock {
        /// Virtual time since the start.
        at: Duration,
        /// Steps taken at that instant.
        steps: u32,
    },
    /// More steps than the configured bound.
    #[error("step limit of {0} reached")]
    StepLimit(u64),
}

struct Node {
    addr: SocketAddr,
    endpoint: Endpoint,
    events: VecDeque<Event>,
}

/// Endpoints on a seeded simulated network, in virtual time that jumps to the next deadline.
///
/// ```
/// use std::time::Duration;
/// use tickwire::sim::{LinkConfig, Simulation};
/// use tickwire::{ChannelId, Config, Event};
///
/// let link = LinkConfig { latency: Duration::from_millis(50), loss: 0.1, ..LinkConfig::default() };
/// let mut sim = Simulation::new(link, 7).unwrap();
/// let server_addr = "10.0.0.1:7777".parse().unwrap();
/// let server = sim.add_endpoint(server_addr, Config { seed: Some(1), ..Config::server() }).unwrap();
/// let client = sim.add_endpoint("10.0.0.2:5000".parse().unwrap(), Config { seed: Some(2), ..Config::client() }).unwrap();
/// let now = sim.now();
/// let connection = sim.endpoint_mut(client).connect(server_addr, now).unwrap();
/// let connected = sim
///     .run_until(Duration::from_secs(10), |sim| {
///         matches!(sim.poll_event(client), Some(Event::Connected { .. }))
///     })
///     .unwrap();
/// assert!(connected);
/// sim.endpoint_mut(client).send(connection, ChannelId(2), "hello".into()).unwrap();
/// let got = sim
///     .run_until(Duration::from_secs(10), |sim| loop {
///         match sim.poll_event(server) {
///             Some(Event::Message { data, .. }) => return &data[..] == b"hello",
///             Some(_) => continue,
///             None => return false,
///         }
///     })
///     .unwrap();
/// assert!(got);
/// ```
pub struct Simulation {
    start: Instant,
    now: Instant,
    network: SimNetwork,
    nodes: Vec<Node>,
    buf: Vec<u8>,
    steps: u64,
    max_steps: u64,
    steps_at_instant: u32,
}

impl Simulation {
    /// A simulation whose every link has `link` conditions (override with
    /// [`network_mut`](Self::network_mut)), seeded by `seed`.
    pub fn new(link: LinkConfig, seed: u64) -> Result<Self, LinkConfigError> {
        let now = Instant::now();
        Ok(Self {
            start: now,
            now,
            network: SimNetwork::new(link, seed)?,
            nodes: Vec::new(),
            buf: vec![0; Endpoint::MAX_DATAGRAM],
            steps: 0,
            max_steps: 50_000_000,
            steps_at_instant: 0,
        })
    }

    /// Bounds the total number of steps (default 50 million); beyond it, steps fail with
    /// [`SimError::StepLimit`].
    pub fn set_max_steps(&mut self, max_steps: u64) {
        self.max_steps = max_steps;
    }

    /// Adds an endpoint at `addr`.
    pub fn add_endpoint(
        &mut self,
        addr: SocketAddr,
        config: Config,
    ) -> Result<NodeId, ConfigError> {
        let endpoint = Endpoint::new(config, self.now)?;
        self.nodes.push(Node {
            addr,
            endpoint,
            events: VecDeque::new(),
        });
        Ok(NodeId(self.nodes.len() - 1))
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// An endpoint. Panics if `node` was not returned by [`add_endpoint`](Self::add_endpoint).
    pub fn endpoint(&self, node: NodeId) -> &Endpoint {
        &self.nodes[node.0].endpoint
    }

    /// An endpoint, to call `connect`, `send` or `disconnect` (with [`now`](Self::now)).
    pub fn endpoint_mut(&mut self, node: NodeId) -> &mut Endpoint {
        &mut self.nodes[node.0].endpoint
    }

    /// The address of an endpoint.
    pub fn address(&self, node: NodeId) -> SocketAddr {
        self.nodes[node.0].addr
    }

    /// Moves an endpoint to another address, as a NAT rebinding does: it keeps its state, and
    /// from now on it sends from and receives at `addr` only.
    pub fn set_address(&mut self, node: NodeId, addr: SocketAddr) {
        self.nodes[node.0].addr = addr;
    }

    /// The network, to change link conditions mid-run.
    pub fn network_mut(&mut self) -> &mut SimNetwork {
        &mut self.network
    }

    /// The next event an endpoint produced.
    pub fn poll_event(&mut self, node: NodeId) -> Option<Event> {
        self.nodes[node.0].events.pop_front()
    }

    /// Advances to the next deadline or delivery and processes it. Returns `Ok(false)` when
    /// nothing is left to happen.
    pub fn step(&mut self) -> Result<bool, SimError> {
        self.flush();
        let next_timer = self
            .nodes
            .iter()
            .filter_map(|n| n.endpoint.poll_timeout())
            .min();
        let next = match (next_timer, self.network.next_delivery()) {
            (None, None) => return Ok(false),
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
        };
        self.steps += 1;
        if self.steps > self.max_steps {
            return Err(SimError::StepLimit(self.max_steps));
        }
        if next > self.now {
            self.now = next;
            self.steps_at_instant = 0;
        } else {
            self.steps_at_instant += 1;
            if self.steps_at_instant > MAX_STEPS_AT_ONE_INSTANT {
                return Err(SimError::Livelock {
                    at: self.elapsed(),
                    steps: self.steps_at_instant,
                });
            }
        }
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
        self.flush();
        Ok(true)
    }

    /// Steps until `done` returns true (checked after every step) or `limit` of virtual time
    /// passes. Returns whether `done` became true.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> Result<bool, SimError> {
        let end = self.now + limit;
        loop {
            if done(self) {
                return Ok(true);
            }
            // What the application queued since the last step leaves now, not at the next wake.
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
            if next.is_none_or(|t| t > end) {
                self.now = self.now.max(end);
                self.flush();
                return Ok(done(self));
            }
            if !self.step()? {
                return Ok(done(self));
            }
        }
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) -> Result<(), SimError> {
        self.run_until(duration, |_| false).map(|_| ())
    }

    fn flush(&mut self) {
        let now = self.now;
        for node in &mut self.nodes {
            while let Some(transmit) = node.endpoint.poll_transmit(now, &mut self.buf) {
                let data = Bytes::copy_from_slice(&self.buf[..transmit.size]);
                self.network
                    .send(now, node.addr, transmit.destination, data);
            }
            while let Some(event) = node.endpoint.poll_event() {
                node.events.push_back(event);
            }
        }
    }
}
