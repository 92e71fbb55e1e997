//! Sleepy sensors: commands queued on the hub while they sleep reach them at their next
//! wake, and the backlog they gathered asleep is stored whole.

use std::time::{Duration, Instant};

use sensor_sim::protocol::Command;
mod support;

use sensor_sim::{run_fleet, FleetConfig, RunSummary, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_queued_while_asleep_arrive_at_the_next_wake() {
    let dir = support::fresh_dir("sleepy");
    let hub = support::start_hub(&dir).await;
    let config = FleetConfig {
        count: 6,
        rate_hz: 5.0,
        sleepy_fraction: 1.0,
        wake_interval: Duration::from_millis(1500),
        // Long enough for two more wakes after the last sensor first falls asleep, even when
        // that takes most of the 10 s allowed below (a loaded machine).
        duration: Duration::from_secs(12),
        drain_timeout: Duration::from_secs(15),
        seed: 3,
        ..FleetConfig::new(hub.local_addr())
    };
    let ids: Vec<u32> = config.ids().collect();
    let fleet = tokio::spawn(run_fleet(config));

    // Queue each sensor's commands once the hub has seen it wake, report and fall asleep.
    // Sensors wake out of phase, so they are not all asleep at any one moment: each is
    // watched on its own (bounded in time).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut queued = std::collections::BTreeSet::new();
    while queued.len() < ids.len() {
        let status = hub.status().await.unwrap();
        for sensor in &status.sensors {
            let asleep = sensor.state == "asleep" && sensor.readings_stored > 0;
            if asleep && ids.contains(&sensor.sensor_id) && queued.insert(sensor.sensor_id) {
                hub.queue_command(
                    sensor.sensor_id,
                    Command::SetRate {
                        rate_millihz: 2_000,
                    },
                );
                hub.queue_command(
                    sensor.sensor_id,
                    Command::SetSleepInterval { interval_ms: 1_000 },
                );
            }
        }
        assert!(
            Instant::now() < deadline,
            "only sensors {queued:?} were seen asleep: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = tokio::time::timeout(Duration::from_secs(40), fleet)
        .await
        .expect("the fleet finished within its bound")
        .unwrap();
    for sensor in &report.sensors {
        let commands: Vec<Command> = sensor.commands.iter().map(|(_, c)| *c).collect();
        assert_eq!(
            commands,
            vec![
                Command::SetRate {
                    rate_millihz: 2_000
                },
                Command::SetSleepInterval { interval_ms: 1_000 }
            ],
            "sensor {}",
            sensor.sensor_id
        );
        assert_eq!(sensor.rate_hz, 2.0);
        assert_eq!(sensor.wake_interval_ms, 1_000);
    }
    let status = hub.status().await.unwrap();
    assert_eq!(status.totals.commands_pending, 0);
    hub.flush().await;
    let store = Store::open_read_only(&dir).unwrap();
    let summary = RunSummary::from_store(&report, &store).unwrap();
    assert_eq!(
        summary.readings_stored,
        Some(summary.readings_sent),
        "{summary:?}"
    );
    assert_eq!(summary.alerts_lost, Some(0));
    hub.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
