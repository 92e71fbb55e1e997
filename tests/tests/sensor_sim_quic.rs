//! sensor-sim over QUIC: 20 sensors for 3 s against a hub serving QUIC only, pinning its
//! certificate. Readings (which take a reliable stream over QUIC, since QUIC reports no
//! delivery of datagrams) are all stored once; every alert is stored and confirmed once.
//! Counts come from the hub's database.

mod support;

use std::time::Duration;

use sensor_sim::{FleetConfig, HubConfig};
use tickwire::{ServerVerification, Transport};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sensors_over_quic_store_everything_once() {
    let dir = support::fresh_dir("quic");
    let hub = support::start_hub_with(
        &dir,
        HubConfig {
            transport: Transport::Quic,
            ..HubConfig::default()
        },
    )
    .await;
    let fingerprint = hub.cert_sha256().expect("a QUIC hub has a certificate");
    let fleet = FleetConfig {
        count: 20,
        duration: Duration::from_secs(3),
        drain_timeout: Duration::from_secs(10),
        seed: 11,
        alert_fraction: 0.05,
        transport: Transport::Quic,
        verification: ServerVerification::Pinned(fingerprint),
        ..FleetConfig::new(hub.local_addr())
    };
    let summary = support::run_and_judge(hub, &dir, fleet).await;
    eprintln!("{summary:?}");
    assert_eq!(summary.transport, Some("quic"));
    assert_eq!(summary.reconnects, 0);
    support::assert_nothing_lost(&summary);
}

/// Sleepy sensors connect again at every wake; what they gathered asleep crosses QUIC whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleepy_sensors_over_quic_deliver_their_backlogs() {
    let dir = support::fresh_dir("quic-sleepy");
    let hub = support::start_hub_with(
        &dir,
        HubConfig {
            transport: Transport::Auto,
            ..HubConfig::default()
        },
    )
    .await;
    let fingerprint = hub.cert_sha256().expect("the hub serves QUIC");
    let fleet = FleetConfig {
        count: 10,
        sleepy_fraction: 1.0,
        wake_interval: Duration::from_millis(800),
        duration: Duration::from_secs(3),
        drain_timeout: Duration::from_secs(10),
        seed: 12,
        alert_fraction: 0.05,
        transport: Transport::Quic,
        verification: ServerVerification::Pinned(fingerprint),
        ..FleetConfig::new(hub.local_addr())
    };
    let summary = support::run_and_judge(hub, &dir, fleet).await;
    eprintln!("{summary:?}");
    assert_eq!(summary.transport, Some("quic"));
    assert!(summary.reconnects > 0, "the sensors never slept");
    support::assert_nothing_lost(&summary);
}
