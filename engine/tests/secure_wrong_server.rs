//! A token for another server address is refused: no session, no state, a counter.

mod support;

use support::secure::{attempt, key, token_with, UNIX_NOW};

#[test]
fn a_token_for_another_server_is_refused_without_state() {
    let elsewhere = vec![
        "10.0.0.9:7777".parse().unwrap(),
        "10.0.0.1:7778".parse().unwrap(),
    ];
    let token = token_with(&key(), 1, elsewhere, UNIX_NOW);
    let result = attempt(&token, |_| {});
    assert!(!result.connected);
    assert_eq!(result.server_connections, 0);
    assert!(
        result.dropped.token_wrong_server >= 1,
        "{:?}",
        result.dropped
    );
    assert_eq!(result.server_sent, 0);
}

#[test]
fn an_unsecured_client_is_refused_by_a_secure_server() {
    let mut sim = tickwire::sim::Simulation::new(support::secure::quiet_link(), 1).unwrap();
    let mut config = tickwire::Config {
        seed: Some(1),
        ..tickwire::Config::server()
    };
    support::secure::secure_server(&mut config);
    let server = sim.add_endpoint(support::server_addr(), config).unwrap();
    let client = sim
        .add_endpoint(
            support::client_addr(),
            tickwire::Config {
                seed: Some(2),
                ..tickwire::Config::client()
            },
        )
        .unwrap();
    let now = sim.now();
    sim.endpoint_mut(client)
        .connect(support::server_addr(), now)
        .unwrap();
    sim.run_for(std::time::Duration::from_secs(1)).unwrap();
    let endpoint = sim.endpoint(server);
    assert_eq!(endpoint.connection_count(), 0);
    assert!(endpoint.stats().dropped.token_missing >= 1);
    assert_eq!(endpoint.stats().datagrams_sent, 0);
}

#[test]
fn a_secure_client_is_ignored_by_an_unsecured_server() {
    let mut sim = tickwire::sim::Simulation::new(support::secure::quiet_link(), 2).unwrap();
    let server = sim
        .add_endpoint(
            support::server_addr(),
            tickwire::Config {
                seed: Some(1),
                ..tickwire::Config::server()
            },
        )
        .unwrap();
    let client = sim
        .add_endpoint(
            support::client_addr(),
            tickwire::Config {
                seed: Some(2),
                connect_token: Some(support::secure::token()),
                ..tickwire::Config::client()
            },
        )
        .unwrap();
    let now = sim.now();
    sim.endpoint_mut(client)
        .connect(support::server_addr(), now)
        .unwrap();
    sim.run_for(std::time::Duration::from_secs(1)).unwrap();
    let endpoint = sim.endpoint(server);
    assert_eq!(endpoint.connection_count(), 0);
    // To a server that knows no tokens, the secure layout is just malformed.
    assert!(endpoint.stats().dropped.malformed >= 1);
    assert_eq!(endpoint.stats().datagrams_sent, 0);
}
