//! A secure server knows clients by client id: a new session of the same client (a fresh token,
//! another address, as after a device reboot behind a new NAT mapping) replaces the old one.

mod support;

use std::time::Duration;

use support::secure::{key, secure, token, token_with, UNIX_NOW};
use support::{connected_pair, server_addr, sim_events};
use tickwire::{Config, DisconnectReason, Event};

#[test]
fn a_new_session_of_the_same_client_replaces_the_old_one() {
    let first = token();
    let mut pair = connected_pair(support::secure::quiet_link(), 61, |c| secure(c, &first));
    let rebooted = pair
        .sim
        .add_endpoint(
            "10.0.0.3:50000".parse().unwrap(),
            Config {
                seed: Some(62),
                connect_token: Some(token_with(&key(), 1, vec![server_addr()], UNIX_NOW)),
                ..Config::client()
            },
        )
        .unwrap();
    let now = pair.sim.now();
    pair.sim
        .endpoint_mut(rebooted)
        .connect(server_addr(), now)
        .unwrap();
    pair.sim.run_for(Duration::from_secs(1)).unwrap();
    let events = sim_events(&mut pair.sim, pair.server);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Disconnected {
            connection,
            reason: DisconnectReason::Replaced
        } if *connection == pair.to_client
    )));
    let server = pair.sim.endpoint(pair.server);
    assert_eq!(server.connection_count(), 1);
    let new = server.connections().next().unwrap();
    assert_eq!(server.client_id(new), Some(tickwire::ClientId(1)));
    assert_eq!(server.user_data(new), Some(&b"player"[..]));
    assert!(sim_events(&mut pair.sim, rebooted)
        .iter()
        .any(|e| matches!(e, Event::Connected { .. })));
}
