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
