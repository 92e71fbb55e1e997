//! A token already used from one address is refused from another: no second session, a counter.

mod support;

use std::time::Duration;

use support::secure::{secure, token};
use support::{connected_pair, sim_events};
use tickwire::{Config, Event};

#[test]
fn a_token_reused_from_another_address_is_refused() {
    let token = token();
    let mut pair = connected_pair(support::secure::quiet_link(), 11, |c| secure(c, &token));
    // Someone who copied the token (it travels in the clear in the request) tries it elsewhere.
    let thief_addr = "10.0.0.66:40000".parse().unwrap();
    let thief = pair
        .sim
        .add_endpoint(
            thief_addr,
            Config {
                seed: Some(66),
                connect_token: Some(token.clone()),
                ..Config::client()
            },
        )
        .unwrap();
    let now = pair.sim.now();
    pair.sim
        .endpoint_mut(thief)
        .connect(support::server_addr(), now)
        .unwrap();
    pair.sim.run_for(Duration::from_secs(1)).unwrap();
    let events = sim_events(&mut pair.sim, thief);
    assert!(!events.iter().any(|e| matches!(e, Event::Connected { .. })));
    let server = pair.sim.endpoint(pair.server);
    assert_eq!(server.connection_count(), 1);
    assert!(
        server.stats().dropped.token_reused >= 1,
        "{:?}",
        server.stats().dropped
    );
    assert_eq!(
        server.remote_address(pair.to_client),
        Some(support::client_addr())
    );
    // The thief got no reply at all.
    assert_eq!(pair.sim.endpoint(thief).stats().datagrams_received, 0);
    assert!(support::reliable_round_trip(&mut pair, "still here"));
}
