//! Commands held for a sleeping sensor live in the hub's database: a command queued through
//! the hub while the sensor sleeps, and one queued in the database while no hub runs (what
//! `sensor-sim command` does), both survive a hub restart, reach the sensor when it wakes, are
//! applied once and in order, and their acknowledgements are stored.

use std::time::{Duration, Instant};

use sensor_sim::protocol::Command;
use sensor_sim::{run_fleet, FleetConfig, RunSummary, Store};

mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_held_for_a_sleeper_survive_a_hub_restart() {
    let dir = support::fresh_dir("commands");
    let hub = support::start_hub(&dir).await;
    let addr = hub.local_addr();
    // One sensor, so that it is seen falling asleep at once: the hub restarts well within
    // its 1.5 s sleep.
    let config = FleetConfig {
        count: 1,
        rate_hz: 5.0,
        sleepy_fraction: 1.0,
        wake_interval: Duration::from_millis(1500),
        duration: Duration::from_secs(4),
        drain_timeout: Duration::from_secs(10),
        seed: 11,
        ..FleetConfig::new(addr)
    };
    let id = config.first_id;
    let fleet = tokio::spawn(run_fleet(config));

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = hub.status().await.unwrap();
        if status
            .sensors
            .iter()
            .any(|s| s.state == "asleep" && s.readings_stored > 0)
        {
            break;
        }
        assert!(Instant::now() < deadline, "never fell asleep: {status:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rate = Command::SetRate {
        rate_millihz: 2_000,
    };
    hub.queue_command(id, rate);
    hub.flush().await;
    let before = hub.shutdown().await;
    assert_eq!(
        before.totals.commands_pending, 1,
        "the sensor was asleep throughout: {:?}",
        before.totals
    );

    // While no hub runs, queue another one straight into the database.
    let sleep = Command::SetSleepInterval { interval_ms: 1_000 };
    Store::open_existing(&dir)
        .unwrap()
        .queue_command(id, sleep, sensor_sim::clock::unix_micros())
        .unwrap();

    let hub = support::start_hub_at(&dir, addr).await;
    let report = tokio::time::timeout(Duration::from_secs(20), fleet)
        .await
        .expect("the fleet finished within its bound")
        .unwrap();
    let sensor = &report.sensors[0];
    let applied: Vec<Command> = sensor.commands.iter().map(|(_, c)| *c).collect();
    assert_eq!(applied, vec![rate, sleep]);
    assert_eq!(sensor.rate_hz, 2.0);
    assert_eq!(sensor.wake_interval_ms, 1_000);

    hub.flush().await;
    let store = Store::open_read_only(&dir).unwrap();
    let stored = store.commands(Some(id)).unwrap();
    assert_eq!(stored.len(), 2);
    assert!(
        stored.iter().all(|c| c.acked_ts.is_some()),
        "acknowledgements stored: {stored:?}"
    );
    assert!(store.pending_commands(0).unwrap().is_empty());
    let summary = RunSummary::from_store(&report, &store).unwrap();
    assert_eq!(summary.readings_stored, Some(summary.readings_sent));
    let after = hub.shutdown().await;
    assert_eq!(after.totals.commands_pending, 0);
    let _ = std::fs::remove_dir_all(&dir);
}
