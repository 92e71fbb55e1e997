//! A secure data packet with any byte changed is dropped before it has any effect, and counted;
//! the genuine packet with the same number is still accepted afterwards.

mod support;

use bytes::Bytes;
use support::secure::{quiet_link, secure_pair};
use support::{inject, intercept, live_events, messages_on, stamped};
use tickwire::ChannelId;

const RELIABLE: ChannelId = ChannelId(2);

#[test]
fn tampered_packets_are_dropped_and_counted_without_effect() {
    let mut pair = secure_pair(quiet_link(), 21);
    let (client, server) = (pair.client, pair.server);
    let payload = stamped(7, 64);
    pair.sim
        .endpoint_mut(client)
        .send(pair.to_server, RELIABLE, payload.clone())
        .unwrap();
    let datagrams = intercept(&mut pair.sim, client);
    assert_eq!(datagrams.len(), 1);
    let (to, genuine) = datagrams[0].clone();
    // Encrypted: the payload is nowhere in the datagram.
    assert!(!genuine.windows(16).any(|w| w == &payload[8..24]));

    // Flip one bit in each position after the header's first byte (header bytes are the
    // associated data, so changing them fails authentication too).
    for at in 1..genuine.len() {
        let mut bent = genuine.to_vec();
        bent[at] ^= 0x20;
        inject(&mut pair.sim, client, (to, Bytes::from(bent)));
    }
    pair.sim
        .run_for(std::time::Duration::from_millis(50))
        .unwrap();
    assert!(messages_on(live_events(&mut pair.sim, server), RELIABLE).is_empty());
    let dropped = pair.sim.endpoint(server).total_dropped();
    // Each altered copy is refused, by authentication or (packet-number bits) by the window.
    assert!(
        dropped.decrypt_failed >= (genuine.len() - 3) as u64 - 16,
        "{dropped:?}"
    );
    let before = pair
        .sim
        .endpoint(server)
        .connection_stats(pair.to_client)
        .unwrap();

    // The genuine packet still gets through: the forgeries did not advance the window.
    inject(&mut pair.sim, client, (to, genuine));
    pair.sim
        .run_for(std::time::Duration::from_millis(50))
        .unwrap();
    let got = messages_on(live_events(&mut pair.sim, server), RELIABLE);
    assert_eq!(got, vec![payload]);
    let after = pair
        .sim
        .endpoint(server)
        .connection_stats(pair.to_client)
        .unwrap();
    assert!(after.packets_received > before.packets_received);
    assert_eq!(pair.sim.endpoint(server).connection_count(), 1);
}
