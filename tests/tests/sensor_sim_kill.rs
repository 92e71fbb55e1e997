//! The hub killed with SIGKILL mid-run and restarted on the same data directory: every alert
//! any sensor raised ends up in the database exactly once, and every sensor's outbox empties.
//!
//! The hub runs in a child process: this test binary again, running only `hub_child` with
//! `SENSOR_SIM_HUB_CHILD` set to `PORT DATA_DIR` (the sensor-sim binary of another package is
//! not reachable through `CARGO_BIN_EXE_*`).

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use sensor_sim::{run_fleet, FleetConfig, Hub, HubConfig, RunSummary, Store};

const CHILD_ENV: &str = "SENSOR_SIM_HUB_CHILD";

/// In the child: runs a hub until killed (or for at most a minute). In a normal test run the
/// variable is unset and this returns at once.
#[test]
fn hub_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (port, dir) = spec.split_once(' ').expect("PORT DATA_DIR");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let hub = Hub::start(HubConfig {
            bind: format!("127.0.0.1:{port}").parse().unwrap(),
            data_dir: dir.into(),
            ..HubConfig::default()
        })
        .await
        .expect("child hub starts");
        eprintln!("child hub on {}", hub.local_addr());
        tokio::time::sleep(Duration::from_secs(60)).await;
        hub.shutdown().await;
    });
}

fn spawn_hub(port: u16, dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "hub_child", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, format!("{port} {}", dir.display()))
        .spawn()
        .expect("spawn the hub child")
}

/// Polls (bounded) until the hub's database holds at least `alerts` alerts.
async fn wait_for_alerts(dir: &Path, alerts: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stored = Store::open_read_only(dir)
            .and_then(|s| s.totals())
            .map_or(0, |(_, a)| a);
        if stored >= alerts {
            return;
        }
        assert!(Instant::now() < deadline, "only {stored} alerts stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_survive_a_sigkilled_hub_exactly_once() {
    let dir = std::env::temp_dir().join(format!("sensor-sim-e2e-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = spawn_hub(port, &dir);
    let config = FleetConfig {
        count: 40,
        rate_hz: 20.0,
        duration: Duration::from_secs(8),
        drain_timeout: Duration::from_secs(25),
        seed: 5,
        ..FleetConfig::new(format!("127.0.0.1:{port}").parse().unwrap())
    };
    // Sensors retry with backoff until the child hub answers.
    let fleet = tokio::spawn(run_fleet(config));
    wait_for_alerts(&dir, 3).await;
    child.kill().expect("SIGKILL the hub"); // Child::kill sends SIGKILL on Unix.
    let _ = child.wait();
    // The hub stays down for a while (sensors notice, back off, keep raising alerts).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut child = spawn_hub(port, &dir);
    let report = tokio::time::timeout(Duration::from_secs(60), fleet)
        .await
        .expect("the fleet finished within its bound")
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();

    let store = Store::open_read_only(&dir).unwrap();
    let summary = RunSummary::from_store(&report, &store).unwrap();
    eprintln!("{summary:?}");
    assert!(summary.alerts_raised > 0);
    assert_eq!(summary.alerts_stored, Some(summary.alerts_raised));
    assert_eq!(summary.alerts_stored_twice, Some(0));
    assert_eq!(summary.duplicates_stored, Some(0));
    for sensor in &report.sensors {
        assert_eq!(sensor.alerts_unconfirmed, 0, "sensor {}", sensor.sensor_id);
    }
    assert!(
        summary.reconnects > 0,
        "the sensors never reconnected: {summary:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
