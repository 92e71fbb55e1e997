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

/// The hub restarts mid-run on the same ports and with the same certificate (kept in its data
/// directory): the sensors' pin still holds, they reconnect over QUIC, and the readings they
/// had in flight when the connection went are sent again: none lost, none stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensors_pinned_over_quic_survive_a_hub_restart() {
    let dir = support::fresh_dir("quic-restart");
    let certificate = sensor_sim::certificate::persistent(&dir, &[]).unwrap();
    let config = HubConfig {
        transport: Transport::Auto,
        certificate,
        ..HubConfig::default()
    };
    let hub = support::start_hub_with(&dir, config.clone()).await;
    let addr = hub.local_addr();
    let fingerprint = hub.cert_sha256().expect("the hub serves QUIC");
    let fleet = FleetConfig {
        count: 10,
        duration: Duration::from_secs(4),
        drain_timeout: Duration::from_secs(15),
        seed: 14,
        alert_fraction: 0.05,
        transport: Transport::Quic,
        verification: ServerVerification::Pinned(fingerprint),
        ..FleetConfig::new(addr)
    };
    let fleet = tokio::spawn(sensor_sim::run_fleet(fleet));

    // Wait (bounded) until every sensor is connected and storing, then restart the hub.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = hub.status().await.unwrap();
        if status.totals.awake_quic == 10 && status.totals.readings_stored > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sensors never all connected: {:?}",
            status.totals
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    hub.shutdown().await;
    let hub = sensor_sim::Hub::start(HubConfig {
        bind: addr,
        data_dir: dir.clone(),
        ..config
    })
    .await
    .expect("restart the hub on its ports");
    assert_eq!(hub.cert_sha256(), Some(fingerprint), "same certificate");

    let report = tokio::time::timeout(Duration::from_secs(30), fleet)
        .await
        .expect("the fleet finished within its bound")
        .unwrap();
    hub.flush().await;
    let store = sensor_sim::Store::open_read_only(&dir).unwrap();
    let summary = sensor_sim::RunSummary::from_store(&report, &store).unwrap();
    hub.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("{summary:?}");
    assert_eq!(summary.transport, Some("quic"));
    assert!(summary.reconnects >= 10, "every sensor reconnected");
    support::assert_nothing_lost(&summary);
}
