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

/// A hub on a loopback port with these settings (transport, key, certificate), storing into
/// `dir`: `config.bind` and `config.data_dir` are replaced (use `Hub::start` to choose them).
pub async fn start_hub_with(dir: &std::path::Path, config: HubConfig) -> Hub {
    Hub::start(HubConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        ..config
    })
    .await
    .expect("start the hub")
}

/// Runs `fleet` to its end (bounded by its duration and drain timeout plus slack), then
/// judges it against the hub's database; stops the hub and removes `dir`.
pub async fn run_and_judge(
    hub: Hub,
    dir: &std::path::Path,
    fleet: sensor_sim::FleetConfig,
) -> sensor_sim::RunSummary {
    let bound = fleet.duration + fleet.drain_timeout + std::time::Duration::from_secs(20);
    let report = tokio::time::timeout(bound, sensor_sim::run_fleet(fleet))
        .await
        .expect("the fleet finished within its bound");
    hub.flush().await;
    let store = sensor_sim::Store::open_read_only(dir).unwrap();
    let summary = sensor_sim::RunSummary::from_store(&report, &store).unwrap();
    hub.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
    summary
}

/// Every reading stored once, every alert (and there were some) stored and confirmed once.
pub fn assert_nothing_lost(summary: &sensor_sim::RunSummary) {
    assert!(summary.readings_sent > 0);
    assert_eq!(summary.readings_stored, Some(summary.readings_sent));
    assert_eq!(summary.duplicates_stored, Some(0));
    assert!(
        summary.alerts_raised > 0,
        "the run raised no alert to check"
    );
    assert_eq!(summary.alerts_stored, Some(summary.alerts_raised));
    assert_eq!(summary.alerts_stored_twice, Some(0));
    assert_eq!(summary.alerts_confirmed, summary.alerts_raised);
}
