//! A server restart, for many seeds: a new server endpoint comes up at the same address while a
//! client streams reliable data. The new server has no session for the client and says so (a
//! one-byte no-session packet); the client ends its session at once with
//! `Remote { code: 0xFFF4 }` instead of waiting out the idle timeout, reconnects, and starts
//! clean: fresh packet numbers and channel state, and nothing from the old session delivered by
//! the new server.

mod support;

use std::time::Duration;

use tickwire::sim::LinkConfig;
use tickwire::{Config, DisconnectReason, Endpoint, Event};

use support::faults::{assert_exactly_once_in_order, stream, until_client_disconnects};
use support::{connected_pair, server_addr, unstamp};

const SEEDS: u64 = 32;
const NO_SESSION: u16 = 0xFFF4;
const DETECTED_WITHIN: Duration = Duration::from_secs(4);
/// A secure server answers only packets that name a session, which a secure client starts
/// doing once a packet of its own has gone unanswered for an RTO; retransmission backoff
/// stretches that while it keeps sending. Still well below the 10 s idle timeout.
const SECURE_DETECTED_WITHIN: Duration = Duration::from_secs(6);

#[test]
fn clients_notice_a_restarted_server_at_once_and_start_clean() {
    for seed in 0..SEEDS {
        let link = LinkConfig {
            latency: Duration::from_millis(10 + seed % 40),
            jitter: Duration::from_millis(3),
            loss: if seed % 4 == 3 { 0.05 } else { 0.0 },
            ..LinkConfig::default()
        };
        let mut pair = connected_pair(link, seed, |_| {});
        let before = stream(&mut pair, 20, Duration::from_secs(30), seed);
        assert_exactly_once_in_order(&before, 20, seed);

        // The server process restarts: same address, all state gone. Some seeds keep sending
        // through the restart, the others are idle.
        let config = Config {
            seed: Some(seed ^ 0x7e57),
            ..Config::server()
        };
        restart_and_notice(&mut pair, config, seed, DETECTED_WITHIN);

        reconnect_and_stream(&mut pair, seed);
    }
}

/// Replaces the pair's server with a fresh endpoint built from `config` at the same address,
/// keeps the client sending (even seeds) or idle (odd ones), and asserts that the client ends
/// its session with the no-session code within `within`, and that the new server
/// saw nothing and kept no state.
fn restart_and_notice(pair: &mut support::Pair, config: Config, seed: u64, within: Duration) {
    let server = pair.server;
    let busy = seed % 2 == 0;
    let now = pair.sim.now();
    *pair.sim.endpoint_mut(server) = Endpoint::new(config, now).unwrap();
    let ended = until_client_disconnects(pair, busy, 1000, |event| {
        panic!("seed {seed}: the new server saw something of the old session: {event:?}")
    });
    let (at, reason) = ended.unwrap_or_else(|| panic!("seed {seed}: client never noticed"));
    assert_eq!(
        reason,
        DisconnectReason::Remote { code: NO_SESSION },
        "seed {seed}"
    );
    assert!(at <= within, "seed {seed}: noticed after {at:?}");
    let stats = pair.sim.endpoint(server).stats().clone();
    assert_eq!(stats.connections_opened, 0, "seed {seed}");
    assert!(stats.no_session_replies >= 1, "seed {seed}");
}

/// Reconnects the pair's client and checks that the new session starts clean: fresh packet
/// numbers and channels, and only its own messages delivered, once each, in order.
fn reconnect_and_stream(pair: &mut support::Pair, seed: u64) {
    let (client, server) = (pair.client, pair.server);
    // Reconnect: a new session, numbered from scratch on both sides.
    let now = pair.sim.now();
    pair.to_server = pair
        .sim
        .endpoint_mut(client)
        .connect(server_addr(), now)
        .unwrap();
    let mut accepted = None;
    let to_server = pair.to_server;
    let ok = pair
        .sim
        .run_until(Duration::from_secs(10), |sim| {
            while let Some(event) = sim.poll_event(server) {
                if let Event::Connected { connection, .. } = event {
                    accepted = Some(connection);
                }
            }
            let _ = support::sim_events(sim, client);
            accepted.is_some() && sim.endpoint(client).is_connected(to_server)
        })
        .unwrap();
    assert!(ok, "seed {seed}: the reconnect did not complete");
    pair.to_client = accepted.unwrap();
    let fresh = pair
        .sim
        .endpoint(client)
        .connection_stats(pair.to_server)
        .unwrap();
    assert!(
        fresh.packets_sent < 10,
        "seed {seed}: {}",
        fresh.packets_sent
    );
    assert_eq!(fresh.send_channels[2].messages_sent, 0, "seed {seed}");

    // Only the new session's messages reach the new server, each once, from id 0.
    let after = stream(pair, 30, Duration::from_secs(30), seed);
    assert_exactly_once_in_order(&after, 30, seed);
    pair.sim.run_for(Duration::from_secs(1)).unwrap();
    for event in support::sim_events(&mut pair.sim, server) {
        if let Event::Message { data, .. } = event {
            panic!(
                "seed {seed}: late message {} after the stream",
                unstamp(&data)
            );
        }
    }
    let server_stats = pair
        .sim
        .endpoint(server)
        .connection_stats(pair.to_client)
        .unwrap();
    assert_eq!(server_stats.recv_channels[2].messages_delivered, 30);
}

#[test]
fn secure_clients_notice_a_restarted_secure_server_and_start_clean() {
    for seed in 0..SEEDS {
        let mut pair = support::secure::secure_pair(support::secure::quiet_link(), seed);
        let before = stream(&mut pair, 20, Duration::from_secs(30), seed);
        assert_exactly_once_in_order(&before, 20, seed);
        let mut config = Config {
            seed: Some(seed ^ 0x7e57),
            ..Config::server()
        };
        support::secure::secure_server(&mut config);
        restart_and_notice(&mut pair, config, seed, SECURE_DETECTED_WITHIN);
        reconnect_and_stream(&mut pair, seed);
        assert!(pair.sim.endpoint(pair.server).is_secure(pair.to_client));
    }
}
