//! `demo-game local`: a server on a free loopback port, bots, and the terminal client, in one
//! process.

use std::time::Duration;

use tickwire::Transport;
use tokio::sync::watch;

use crate::bot::{run_bots, BotsConfig};
use crate::cli::CliError;
use crate::client::{ClientConfig, GameClient};
use crate::net::{driver_config, NetOptions, Role};
use crate::server::{GameServer, ServerConfig};

/// Settings of [`run_local`].
#[derive(Clone, Debug)]
pub struct LocalConfig {
    /// Bots playing with you.
    pub bots: usize,
    /// Your name.
    pub name: String,
    /// Server tick rate.
    pub tick_hz: u32,
    /// Snapshot rate.
    pub snapshot_hz: u32,
    /// Simulated network and transport of your connection; the bots use the same transport.
    pub net: NetOptions,
}

/// Runs a server and bots, then the terminal client until you quit; stops everything after.
pub async fn run_local(config: LocalConfig) -> Result<(), CliError> {
    let server = GameServer::start(ServerConfig {
        bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        tick_hz: config.tick_hz,
        snapshot_hz: config.snapshot_hz,
        driver: driver_config(
            Role::Server {
                max_players: config.bots + 1,
            },
            &NetOptions {
                transport: Transport::Auto,
                ..NetOptions::default()
            },
        ),
        ..ServerConfig::default()
    })
    .await?;
    let (stop, stopped) = watch::channel(false);
    let mut bots = BotsConfig::new(server.local_addr(), config.bots, None);
    bots.net.transport = config.net.transport;
    let bots = tokio::spawn(run_bots(bots, stopped));
    let result = async {
        let client = GameClient::connect(ClientConfig {
            server: server.local_addr(),
            name: config.name.clone(),
            driver: driver_config(Role::Client, &config.net),
            record_views: 0,
        })
        .await?;
        crate::tui::run(client).await?;
        Ok(())
    }
    .await;
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(3), bots).await;
    server.shutdown().await;
    result
}
