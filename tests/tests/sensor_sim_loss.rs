//! sensor-sim over loopback with 5 % loss each way: at least 94 % of readings stored, none
//! stored twice, every alert stored exactly once. Counts come from the hub's database.

mod support;

use std::time::Duration;

use sensor_sim::{run_fleet, FleetConfig, RunSummary, Store};
use tickwire::sim::LinkConfig;

async fn run_lossy(name: &str, sensors: u32, duration: Duration) -> RunSummary {
    let dir = support::fresh_dir(name);
    let hub = support::start_hub(&dir).await;
    let fleet = FleetConfig {
        count: sensors,
        rate_hz: 10.0,
        duration,
        drain_timeout: Duration::from_secs(20),
        seed: 7,
        link: Some(LinkConfig {
            loss: 0.05,
            ..LinkConfig::default()
        }),
        ..FleetConfig::new(hub.local_addr())
    };
    // Bounded: sampling time plus the drain timeout, plus slack.
    let report = tokio::time::timeout(duration + Duration::from_secs(40), run_fleet(fleet))
        .await
        .expect("the fleet finished within its bound");
    hub.flush().await;
    let store = Store::open_read_only(&dir).unwrap();
    let summary = RunSummary::from_store(&report, &store).unwrap();
    hub.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    summary
}

fn check(summary: &RunSummary) {
    eprintln!("{}", serde_json_like(summary));
    let sent = summary.readings_sent;
    let stored = summary.readings_stored.unwrap();
    assert!(sent > 0);
    assert!(
        stored * 100 >= sent * 94,
        "only {stored} of {sent} readings stored"
    );
    assert_eq!(summary.duplicates_stored, Some(0));
    assert!(
        summary.alerts_raised > 0,
        "the run raised no alert to check"
    );
    assert_eq!(summary.alerts_stored, Some(summary.alerts_raised));
    assert_eq!(summary.alerts_stored_twice, Some(0));
    assert_eq!(summary.alerts_confirmed, summary.alerts_raised);
}

fn serde_json_like(summary: &RunSummary) -> String {
    format!("{summary:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_sensors_at_10_hz_with_5_percent_loss() {
    check(&run_lossy("loss-100", 100, Duration::from_secs(4)).await);
}

/// The full scale: 1,000 sensors × 10 Hz × 10 s (about 12 s on two cores).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_sensors_at_10_hz_with_5_percent_loss() {
    check(&run_lossy("loss-1000", 1000, Duration::from_secs(10)).await);
}
