//! A secure session survives the client's address changing (a NAT rebinding): the client names
//! its session while it hears nothing, the server challenges the new address, and the session
//! moves once the client answers. Nothing is lost on the reliable channel.

mod support;

use std::time::Duration;

use support::secure::{quiet_link, secure_pair};
use support::{live_events, messages_on, stamped, unstamp};
use tickwire::ChannelId;

const RELIABLE: ChannelId = ChannelId(2);

#[test]
fn the_session_moves_to_a_validated_new_address() {
    let mut pair = secure_pair(quiet_link(), 41);
    let (client, server) = (pair.client, pair.server);
    let new_addr = "10.0.0.2:41999".parse().unwrap();
    let mut next = 0u32;
    let mut received = Vec::new();
    for step in 0..60u32 {
        if step == 20 {
            // The NAT forgets the mapping: the client's packets now come from another port.
            pair.sim.set_address(client, new_addr);
        }
        pair.sim
            .endpoint_mut(client)
            .send(pair.to_server, RELIABLE, stamped(next, 64))
            .unwrap();
        next += 1;
        pair.sim.run_for(Duration::from_millis(50)).unwrap();
        received.extend(messages_on(live_events(&mut pair.sim, server), RELIABLE));
        let _ = live_events(&mut pair.sim, client);
    }
    pair.sim.run_for(Duration::from_secs(2)).unwrap();
    received.extend(messages_on(live_events(&mut pair.sim, server), RELIABLE));
    let counters: Vec<u32> = received.iter().map(|m| unstamp(m)).collect();
    assert_eq!(
        counters,
        (0..next).collect::<Vec<_>>(),
        "every message once, in order"
    );

    let endpoint = pair.sim.endpoint(server);
    assert_eq!(endpoint.remote_address(pair.to_client), Some(new_addr));
    let stats = endpoint.connection_stats(pair.to_client).unwrap();
    assert_eq!(stats.path_migrations, 1);
    assert_eq!(endpoint.connection_count(), 1);
    // And the server reaches the client at its new address.
    assert!(support::reliable_round_trip(&mut pair, "after the move"));
}
