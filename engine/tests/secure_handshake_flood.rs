//! A flood of connection requests with forged tokens from many addresses: the server decrypts
//! at most its rate cap per second, creates no state, sends nothing, and counts every one.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use support::secure::{secure_server, token};
use tickwire::{Config, Endpoint, Security};

#[test]
fn forged_token_floods_are_capped_and_leave_no_state() {
    let start = std::time::Instant::now();
    let mut config = Config {
        seed: Some(9),
        ..Config::server()
    };
    secure_server(&mut config);
    if let Security::Tokens(tokens) = &mut config.security {
        tokens.max_handshakes_per_sec = 100;
    }
    let mut server = Endpoint::new(config, start).unwrap();

    // A genuine request's layout, with the sealed token's bytes scrambled: the cheap checks
    // pass, so every request costs a decryption if the cap lets it.
    let genuine = {
        let mut client = Endpoint::new(
            Config {
                seed: Some(1),
                connect_token: Some(token()),
                ..Config::client()
            },
            start,
        )
        .unwrap();
        client.connect(support::server_addr(), start).unwrap();
        support::drain_transmits(&mut client, start).remove(0).1
    };
    let mut buf = vec![0u8; Endpoint::MAX_DATAGRAM];
    let mut sent = 0u64;
    for i in 0..2000u32 {
        let now = start + Duration::from_millis(u64::from(i)); // 2 s, 1000 requests per second
        let mut forged = genuine.to_vec();
        // Past the 23-byte request header, the token length and the token's clear fields.
        for (j, byte) in forged[23 + 2 + 25..23 + 2 + 200].iter_mut().enumerate() {
            *byte ^= (i as u8).wrapping_add(j as u8) | 1;
        }
        let from = SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 40_000));
        server.handle_datagram(now, from, Bytes::from(forged));
        while server.poll_transmit(now, &mut buf).is_some() {
            sent += 1;
        }
    }
    let dropped = &server.stats().dropped;
    assert_eq!(server.connection_count(), 0);
    assert_eq!(sent, 0, "forged tokens get no reply");
    assert_eq!(dropped.token_invalid + dropped.handshake_rate_limited, 2000);
    // The bucket starts full (100) and refills at 100 per second for 2 s.
    assert!(dropped.token_invalid <= 300, "{dropped:?}");
    assert!(dropped.handshake_rate_limited >= 1700, "{dropped:?}");
}
