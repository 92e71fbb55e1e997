//! A replayed secure packet is dropped before decryption (the replay window), from the peer's
//! address or from any other; a replay from a third address does not move the session.

mod support;

use std::time::Duration;

use support::secure::{quiet_link, secure_pair};
use support::{client_addr, intercept, live_events, messages_on, stamped};
use tickwire::ChannelId;

const UNRELIABLE: ChannelId = ChannelId(0);

#[test]
fn replays_are_dropped_and_do_not_move_the_session() {
    let mut pair = secure_pair(quiet_link(), 31);
    let (client, server) = (pair.client, pair.server);
    let payload = stamped(1, 64);
    pair.sim
        .endpoint_mut(client)
        .send(pair.to_server, UNRELIABLE, payload.clone())
        .unwrap();
    let captured = intercept(&mut pair.sim, client);
    assert_eq!(captured.len(), 1);
    let (to, datagram) = captured[0].clone();
    let third = "10.0.0.77:5555".parse().unwrap();
    let now = pair.sim.now();
    // The genuine copy, a replay from the client's address, and replays from a third address.
    pair.sim
        .network_mut()
        .send(now, client_addr(), to, datagram.clone());
    pair.sim.network_mut().send(
        now + Duration::from_millis(1),
        client_addr(),
        to,
        datagram.clone(),
    );
    for i in 0..3 {
        pair.sim.network_mut().send(
            now + Duration::from_millis(2 + i),
            third,
            to,
            datagram.clone(),
        );
    }
    pair.sim.run_for(Duration::from_millis(100)).unwrap();
    let got = messages_on(live_events(&mut pair.sim, server), UNRELIABLE);
    assert_eq!(got, vec![payload], "delivered exactly once");
    let endpoint = pair.sim.endpoint(server);
    let dropped = endpoint.total_dropped();
    assert_eq!(dropped.duplicate, 1, "{dropped:?}");
    // Untagged from an address without a session: not even routed to it.
    assert_eq!(dropped.unknown_peer, 3, "{dropped:?}");
    assert_eq!(endpoint.remote_address(pair.to_client), Some(client_addr()));
    assert_eq!(endpoint.connection_count(), 1);
    let stats = endpoint.connection_stats(pair.to_client).unwrap();
    assert_eq!(stats.path_migrations, 0);
}

#[test]
fn an_authentic_packet_redirected_from_a_third_address_does_not_move_the_session() {
    let mut pair = secure_pair(quiet_link(), 32);
    let (client, server) = (pair.client, pair.server);
    // Silence the server's side for a while so that the client names its session in its
    // packets (as after a NAT rebinding), then capture one before it is delivered.
    pair.sim
        .network_mut()
        .set_link(support::server_addr(), client_addr(), support::dead_link())
        .unwrap();
    pair.sim.run_for(Duration::from_millis(1500)).unwrap();
    pair.sim
        .endpoint_mut(client)
        .send(pair.to_server, UNRELIABLE, stamped(2, 64))
        .unwrap();
    let captured = intercept(&mut pair.sim, client);
    assert!(!captured.is_empty());
    let third = "10.0.0.77:5555".parse().unwrap();
    let now = pair.sim.now();
    for (to, datagram) in captured {
        // Only the attacker's copy arrives: it is authentic and new, so the server reads it and
        // challenges the third address, which cannot answer.
        pair.sim.network_mut().send(now, third, to, datagram);
    }
    pair.sim.run_for(Duration::from_millis(500)).unwrap();
    let endpoint = pair.sim.endpoint(server);
    assert_eq!(endpoint.remote_address(pair.to_client), Some(client_addr()));
    let stats = endpoint.connection_stats(pair.to_client).unwrap();
    assert_eq!(stats.path_migrations, 0);
    let _ = live_events(&mut pair.sim, server);
}
