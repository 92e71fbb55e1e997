//! The one place where the game's network driver configuration is built from the command
//! line's network options, for the server, the player and the bots alike.
//!
//! Today the transport is always Tickwire's own UDP protocol ("native"); a transport choice
//! (QUIC) would be one more field of [`NetOptions`] read here.

use std::time::Duration;

use tickwire::sim::LinkConfig;
use tickwire::{Config, DriverConfig};

use crate::protocol::endpoint_config;

/// The name of the transport in use, as reported by the HUD and the bots' JSON.
pub const TRANSPORT: &str = "native";

/// Network options shared by every command: a simulated bad network on this side's socket.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NetOptions {
    /// Added one-way latency, each direction, ms.
    pub lag_ms: u64,
    /// Added jitter (uniform ±), ms.
    pub jitter_ms: u64,
    /// Datagrams lost, each direction, percent.
    pub loss_pct: f64,
    /// Seed of the simulated link.
    pub seed: u64,
}

impl NetOptions {
    /// The simulated link these options ask for; `None` when they add nothing.
    pub fn link(&self) -> Option<LinkConfig> {
        if self.lag_ms == 0 && self.jitter_ms == 0 && self.loss_pct <= 0.0 {
            return None;
        }
        Some(LinkConfig {
            latency: Duration::from_millis(self.lag_ms),
            jitter: Duration::from_millis(self.jitter_ms),
            loss: (self.loss_pct / 100.0).clamp(0.0, 1.0),
            ..LinkConfig::default()
        })
    }
}

/// Which side a driver is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The game server.
    Server {
        /// Most players at once.
        max_players: usize,
    },
    /// A player or a bot.
    Client,
}

/// The driver configuration for `role` with `options`: the game's protocol id and channels,
/// and the simulated link if any.
pub fn driver_config(role: Role, options: &NetOptions) -> DriverConfig {
    let (base, driver) = match role {
        Role::Server { max_players } => (
            Config {
                max_connections: max_players,
                ..Config::server()
            },
            DriverConfig::server(),
        ),
        Role::Client => (Config::client(), DriverConfig::client()),
    };
    DriverConfig {
        endpoint: endpoint_config(base),
        link: options.link(),
        link_seed: options.seed,
        ..driver
    }
}

/// The "bad network" the HUD's toggle key switches on: 100 ms each way, ±20 ms, 10 % loss.
pub fn bad_network() -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(100),
        jitter: Duration::from_millis(20),
        loss: 0.10,
        ..LinkConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_a_link() {
        assert_eq!(NetOptions::default().link(), None);
        let options = NetOptions {
            lag_ms: 80,
            loss_pct: 10.0,
            ..NetOptions::default()
        };
        let link = options.link().unwrap();
        assert_eq!(link.latency, Duration::from_millis(80));
        assert!((link.loss - 0.1).abs() < 1e-9);
        driver_config(Role::Client, &options).validate().unwrap();
        driver_config(Role::Server { max_players: 64 }, &options)
            .validate()
            .unwrap();
    }
}
