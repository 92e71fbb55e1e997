//! Garbage aimed at a secure session (every packet kind with the secure bit, tagged data
//! headers, truncations, from the client's address and from strangers) is dropped and counted:
//! no panic, no new state, no reply to strangers, and the session carries on.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use support::secure::{quiet_link, secure_pair};
use support::{client_addr, intercept, pattern, server_addr};

#[test]
fn garbage_never_hurts_a_secure_session() {
    let mut pair = secure_pair(quiet_link(), 71);
    let (client, server) = (pair.client, pair.server);
    // One genuine data packet, to mutate.
    pair.sim
        .endpoint_mut(client)
        .send(pair.to_server, tickwire::ChannelId(0), "x".into())
        .unwrap();
    let genuine = intercept(&mut pair.sim, client).remove(0).1;
    let stranger: SocketAddr = "10.9.9.9:9999".parse().unwrap();
    let firsts = [
        0x00u8, 0x04, 0x14, 0x1c, 0x21, 0x40, 0x61, 0x81, 0xa0, 0xc1, 0xe0,
    ];
    let before = pair.sim.endpoint(server).stats().datagrams_sent;
    for i in 0..3000u64 {
        let len = (i as usize * 37) % 1300;
        let mut bytes = pattern(i, len.max(1));
        bytes[0] = firsts[i as usize % firsts.len()];
        if i % 7 == 0 {
            // A mutated genuine packet.
            bytes = genuine.to_vec();
            let at = (i as usize / 7) % bytes.len();
            bytes[at] ^= 1 << (i % 8);
        }
        let from = if i % 2 == 0 { client_addr() } else { stranger };
        let now = pair.sim.now();
        pair.sim
            .network_mut()
            .send(now, from, server_addr(), Bytes::from(bytes));
    }
    pair.sim.run_for(Duration::from_millis(100)).unwrap();
    let endpoint = pair.sim.endpoint(server);
    assert_eq!(endpoint.connection_count(), 1);
    assert_eq!(endpoint.remote_address(pair.to_client), Some(client_addr()));
    assert!(endpoint.total_dropped().total() >= 2900);
    // The session's own traffic and the one-byte no-session replies to well-formed packets
    // naming unknown sessions aside, the server answered nothing.
    let no_session = endpoint.stats().no_session_replies;
    assert!(no_session <= 1500, "{no_session} no-session replies");
    let sent = endpoint.stats().datagrams_sent - before - no_session;
    assert!(sent < 50, "{sent} datagrams sent in reply to garbage");
    let _ = support::live_events(&mut pair.sim, server);
    assert!(support::reliable_round_trip(&mut pair, "still fine"));
}
