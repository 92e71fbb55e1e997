//! The hub's estimate of each sensor's clock (offsets up to ±5 s, drift up to ±50 ppm) is
//! within 50 ms, on a lossy link with latency, both live and in the corrected timestamps stored.

use std::time::Duration;

use sensor_sim::clock::unix_micros;
mod support;

use sensor_sim::{run_fleet, FleetConfig, RunSummary, Store};
use tickwire::sim::LinkConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_offsets_are_estimated_within_50_ms() {
    let dir = support::fresh_dir("clock");
    let hub = support::start_hub(&dir).await;
    let config = FleetConfig {
        count: 20,
        rate_hz: 10.0,
        duration: Duration::from_secs(4),
        seed: 11,
        link: Some(LinkConfig {
            loss: 0.05,
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            ..LinkConfig::default()
        }),
        ..FleetConfig::new(hub.local_addr())
    };
    let fleet = tokio::spawn(run_fleet(config));
    let report = tokio::time::timeout(Duration::from_secs(40), fleet)
        .await
        .expect("the fleet finished within its bound")
        .unwrap();

    // The hub's current estimates, against each sensor's true clock.
    let status = hub.status().await.unwrap();
    let now = unix_micros();
    for sensor in &report.sensors {
        let estimate = status
            .sensors
            .iter()
            .find(|s| s.sensor_id == sensor.sensor_id)
            .and_then(|s| s.clock_offset_ms)
            .expect("an estimate for every sensor");
        let truth = sensor.clock.offset_at(now) as f64 / 1000.0;
        assert!(
            (estimate - truth).abs() < 50.0,
            "sensor {}: estimated {estimate:.1} ms, true {truth:.1} ms",
            sensor.sensor_id
        );
    }
    // And the corrected timestamps in the database.
    hub.flush().await;
    let store = Store::open_read_only(&dir).unwrap();
    let summary = RunSummary::from_store(&report, &store).unwrap();
    let p99 = summary.clock_offset_error_ms_p99.unwrap();
    assert!(p99 < 50.0, "p99 corrected-timestamp error {p99} ms");
    hub.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
