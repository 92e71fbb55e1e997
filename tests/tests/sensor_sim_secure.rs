//! sensor-sim in secure mode: the hub requires connect tokens sealed with its key; each
//! sensor mints its own (client id = sensor id) and everything is stored once. A sensor with
//! a token from another key never gets in.

mod support;

use std::time::Duration;

use sensor_sim::{FleetConfig, Hub, HubConfig};
use tickwire::PrivateKey;

/// A hub in `dir` that requires tokens sealed with `key`.
async fn secure_hub(dir: &std::path::Path, key: &PrivateKey) -> Hub {
    let config = HubConfig {
        key: Some(key.clone()),
        ..HubConfig::default()
    };
    support::start_hub_with(dir, config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sensors_with_tokens_store_everything_once() {
    let dir = support::fresh_dir("secure");
    let key = PrivateKey::generate();
    let hub = secure_hub(&dir, &key).await;
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
    let hub = secure_hub(&dir, &PrivateKey::generate()).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_for_another_sensor_than_the_token_is_refused() {
    use sensor_sim::hub::CODE_WRONG_SENSOR;
    use sensor_sim::protocol::{self, Hello, SensorKind, Uplink, CONTROL};
    use tickwire::{typed, Client, ClientId, DisconnectReason, Event, TokenSpec};

    let dir = support::fresh_dir("secure-wrong-id");
    let key = PrivateKey::generate();
    let hub = secure_hub(&dir, &key).await;
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // A valid token for sensor 7, and a hello that claims to be sensor 8.
    let token = TokenSpec::new(protocol::PROTOCOL_ID, ClientId(7), vec![hub.local_addr()])
        .issue(&key, unix_now)
        .unwrap();
    let mut config = protocol::sensor_config();
    config.endpoint.connect_token = Some(token);
    let mut client = Client::connect(hub.local_addr(), config).await.unwrap();
    let hello = Uplink::Hello(Hello {
        sensor_id: 8,
        kind: SensorKind::ALL[0],
        sleepy: false,
        rate_millihz: 1000,
        wake_interval_ms: 0,
        device_time_us: 0,
        battery_pct: 50.0,
    });
    client
        .send(CONTROL, typed::encode(&hello).unwrap())
        .unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match client.next_event().await {
                Some(Event::Disconnected { reason, .. }) => return Some(reason),
                Some(_) => continue,
                None => return None,
            }
        }
    })
    .await
    .expect("the hub closes the session");
    assert_eq!(
        reason,
        Some(DisconnectReason::Remote {
            code: CODE_WRONG_SENSOR
        })
    );
    let status = hub.status().await.unwrap();
    assert_eq!(status.totals.hellos_refused, 1);
    assert!(
        status.sensors.iter().all(|s| s.sensor_id != 8),
        "{status:?}"
    );
    hub.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
