//! A replayed connection response never makes the server reuse session keys: while the session
//! lives it gets the same accept again, and once it is gone a new session with a fresh salt
//! (and so fresh keys).

mod support;

use std::time::Duration;

use support::secure::{secure, token};
use support::{client_addr, drain_transmits, HandPair};
use tickwire::{Config, Event};

#[test]
fn replayed_responses_never_reuse_session_keys() {
    let token = token();
    let mut client = Config {
        seed: Some(1),
        ..Config::client()
    };
    secure(&mut client, &token);
    let mut server = Config {
        seed: Some(2),
        ..Config::server()
    };
    secure(&mut server, &token);
    let mut pair = HandPair::new(client, server);
    let now = pair.now;
    pair.client.connect(support::server_addr(), now).unwrap();
    pair.run_for(Duration::from_millis(100));
    assert!(pair
        .client_events
        .iter()
        .any(|e| matches!(e, Event::Connected { .. })));
    let response = pair
        .log
        .iter()
        .find(|c| c.from == client_addr() && c.data[0] == 0x61)
        .expect("a secure response")
        .data
        .clone();
    let accept = pair
        .log
        .iter()
        .find(|c| c.from == support::server_addr() && c.data[0] == 0x81)
        .expect("a secure accept")
        .data
        .clone();
    assert_eq!(accept.len(), 33);

    // While the session lives: the same accept again, no second session.
    pair.server
        .handle_datagram(pair.now, client_addr(), response.clone());
    let replies = drain_transmits(&mut pair.server, pair.now);
    assert_eq!(replies, vec![(client_addr(), accept.clone())]);
    assert_eq!(pair.server.connection_count(), 1);

    // Once the session is gone, the replay (within the cookie's lifetime) makes a new session,
    // but with another salt: keys no earlier session used.
    let connection = pair.server.connections().next().unwrap();
    pair.server.disconnect(connection, 1, pair.now);
    pair.run_for(Duration::from_millis(500));
    assert_eq!(pair.server.connection_count(), 0);
    pair.server
        .handle_datagram(pair.now, client_addr(), response);
    let replies = drain_transmits(&mut pair.server, pair.now);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].1.len(), 33);
    assert_ne!(replies[0].1, accept, "a new session must get a new salt");
    assert_eq!(replies[0].1[..9], accept[..9], "same nonce");
}
