//! Shared setup of the sensor-sim end-to-end tests: a fresh data directory and a hub on it.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use sensor_sim::{Hub, HubConfig};

/// An empty data directory for this test and process.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sensor-sim-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A hub on a loopback port, storing into `dir`.
pub async fn start_hub(dir: &std::path::Path) -> Hub {
    Hub::start(HubConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        ..HubConfig::default()
    })
    .await
    .expect("start the hub")
}

/// A hub on the given address (to restart one on the port its sensors know), storing into `dir`.
pub async fn start_hub_at(dir: &std::path::Path, bind: std::net::SocketAddr) -> Hub {
    Hub::start(HubConfig {
        bind,
        data_dir: dir.to_path_buf(),
        ..HubConfig::default()
    })
    .await
    .expect("start the hub")
}
