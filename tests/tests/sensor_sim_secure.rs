//! sensor-sim in secure mode: the hub requires connect tokens sealed with its key; each
//! sensor mints its own (client id = sensor id) and everything is stored once. A sensor with
//! a token from another key never gets in.

mod support;

use std::time::Duration;

use sensor_sim::{FleetConfig, HubConfig};
use tickwire::PrivateKey;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sensors_with_tokens_store_everything_once() {
    let dir = support::fresh_dir("secure");
    let key = PrivateKey::generate();
    let hub = support::start_hub_with(
        &dir,
        HubConfig {
            key: Some(key.clone()),
            ..HubConfig::default()
        },
    )
    .await;
    let fleet = FleetConfig {
        count: 20,
        duration: Duration::from_secs(3),
        drain_timeout: Duration::from_secs(10),
        seed: 13,
        alert_fraction: 0.05,
        key: Some(key),
        ..FleetConfig::new(hub.local_addr())
    };
    let summary = support::run_and_judge(hub, &dir, fleet).await;
    eprintln!("{summary:?}");
    assert_eq!(summary.transport, Some("native"));
    support::assert_nothing_lost(&summary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sensor_with_the_wrong_key_never_connects() {
    let dir = support::fresh_dir("secure-wrong-key");
    let hub = support::start_hub_with(
        &dir,
        HubConfig {
            key: Some(PrivateKey::generate()),
            ..HubConfig::default()
        },
    )
    .await;
    let fleet = FleetConfig {
        count: 1,
        duration: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(1),
        key: Some(PrivateKey::generate()),
        ..FleetConfig::new(hub.local_addr())
    };
    let summary = support::run_and_judge(hub, &dir, fleet).await;
    assert_eq!(summary.transport, None, "{summary:?}");
    assert_eq!(summary.readings_stored, Some(0));
}
