//! NAT rebinding on an unsecured session, for many seeds: the client's address changes
//! mid-session. Unsecured packets are not authenticated, so the server never moves the session
//! to the new address; it answers the new address's data packets with a one-byte no-session
//! packet, and the client, which has heard nothing since, ends the session at once
//! (`Remote { code: 0xFFF4 }`) and can reconnect from its new address, well before the idle
//! timeout. A third party replaying the client's packets from its own address moves nothing
//! and disturbs nothing, and a no-session packet forged with the server's address does not end
//! a session the server is answering. (Secure sessions move after validating the new path:
//! `secure_address_change.rs`.)

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use tickwire::sim::LinkConfig;
use tickwire::{Config, DisconnectReason, Event};

use support::faults::{assert_exactly_once_in_order, until_client_disconnects, RELIABLE_ORDERED};
use support::{client_addr, connected_pair, intercept, server_addr, stamped, Pair};

const SEEDS: u64 = 32;
/// The code a client reports when the server has no session for it.
const NO_SESSION: u16 = 0xFFF4;
/// Detection bound: far below the 10 s idle timeout (an idle client needs two keepalives and
/// a round trip).
const DETECTED_WITHIN: Duration = Duration::from_secs(4);

fn link(seed: u64) -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(20 + seed % 30),
        jitter: Duration::from_millis(5),
        ..LinkConfig::default()
    }
}

fn new_addr() -> SocketAddr {
    "10.0.0.2:41999".parse().unwrap()
}

#[test]
fn an_unsecured_session_stays_put_and_the_client_reconnects_at_once() {
    for seed in 0..SEEDS {
        // Half the runs stream reliable data through the change, half are idle (keepalives only).
        let busy = seed % 2 == 0;
        let mut pair = connected_pair(link(seed), seed, |_| {});
        let (client, server, old_session) = (pair.client, pair.server, pair.to_client);
        pair.sim.run_for(Duration::from_millis(500)).unwrap();
        pair.sim.set_address(client, new_addr());
        let ended = until_client_disconnects(&mut pair, busy, 0, |event| {
            assert!(
                !matches!(event, Event::Disconnected { .. } | Event::Connected { .. }),
                "seed {seed}: server event before the client reconnected: {event:?}"
            );
        });
        let (at, reason) = ended.unwrap_or_else(|| panic!("seed {seed}: client never noticed"));
        assert_eq!(
            reason,
            DisconnectReason::Remote { code: NO_SESSION },
            "seed {seed}"
        );
        assert!(at <= DETECTED_WITHIN, "seed {seed}: noticed after {at:?}");
        // The server never moved the session: it still names the old address.
        let endpoint = pair.sim.endpoint(server);
        assert_eq!(endpoint.remote_address(old_session), Some(client_addr()));
        assert_eq!(endpoint.connection_count(), 1, "seed {seed}");
        assert!(endpoint.stats().no_session_replies >= 1, "seed {seed}");

        // The client reconnects from its new address and starts clean.
        reconnect(&mut pair, seed);
        let stream = support::faults::stream(&mut pair, 30, Duration::from_secs(5), seed);
        assert_exactly_once_in_order(&stream, 30, seed);
        let endpoint = pair.sim.endpoint(server);
        assert_eq!(endpoint.remote_address(pair.to_client), Some(new_addr()));
        // The abandoned session at the old address ends by its idle timeout.
        let idle = Config::default().idle_timeout;
        let mut old_ended = None;
        pair.sim
            .run_until(idle + Duration::from_secs(1), |sim| {
                while let Some(event) = sim.poll_event(server) {
                    if let Event::Disconnected { connection, reason } = event {
                        assert_eq!(connection, old_session, "seed {seed}");
                        old_ended = Some(reason);
                    }
                }
                old_ended.is_some()
            })
            .unwrap();
        assert_eq!(old_ended, Some(DisconnectReason::Timeout), "seed {seed}");
        assert!(pair.sim.endpoint(pair.client).is_connected(pair.to_server));
    }
}

#[test]
fn a_third_party_replaying_the_clients_packets_moves_nothing() {
    let third: SocketAddr = "10.0.0.66:5000".parse().unwrap();
    for seed in 0..SEEDS {
        let mut pair = connected_pair(link(seed), seed, |_| {});
        let (client, server) = (pair.client, pair.server);
        let mut replayed = 0u64;
        let mut received = Vec::new();
        for counter in 0..100u32 {
            pair.sim
                .endpoint_mut(client)
                .send(pair.to_server, RELIABLE_ORDERED, stamped(counter, 40))
                .unwrap();
            // Every datagram the client sends goes out as usual, and a copy from `third`.
            let now = pair.sim.now();
            for (to, data) in intercept(&mut pair.sim, client) {
                let network = pair.sim.network_mut();
                network.send(now, client_addr(), to, data.clone());
                network.send(now, third, to, data);
                replayed += 1;
            }
            pair.sim.run_for(Duration::from_millis(10)).unwrap();
            received.extend(support::messages_on(
                support::live_events(&mut pair.sim, server),
                RELIABLE_ORDERED,
            ));
            let _ = support::live_events(&mut pair.sim, client);
        }
        pair.sim.run_for(Duration::from_secs(1)).unwrap();
        received.extend(support::messages_on(
            support::live_events(&mut pair.sim, server),
            RELIABLE_ORDERED,
        ));
        let counters: Vec<u32> = received.iter().map(|m| support::unstamp(m)).collect();
        assert_exactly_once_in_order(&counters, 100, seed);
        let endpoint = pair.sim.endpoint(server);
        assert_eq!(endpoint.remote_address(pair.to_client), Some(client_addr()));
        assert_eq!(endpoint.connection_count(), 1);
        // The third address got at most one one-byte reply per datagram, never a session.
        let stats = endpoint.stats();
        assert!(replayed > 0);
        assert!(stats.no_session_replies <= replayed, "seed {seed}");
        assert!(stats.dropped.unknown_peer >= replayed, "seed {seed}");
        assert!(pair.sim.endpoint(client).is_connected(pair.to_server));
    }
}

/// Connects the pair's client again (from wherever it is now) and updates the pair's ids.
fn reconnect(pair: &mut Pair, seed: u64) {
    let (client, server) = (pair.client, pair.server);
    let now = pair.sim.now();
    pair.to_server = pair
        .sim
        .endpoint_mut(client)
        .connect(server_addr(), now)
        .unwrap();
    let mut accepted = None;
    let ok = pair
        .sim
        .run_until(Duration::from_secs(5), |sim| {
            while let Some(event) = sim.poll_event(server) {
                if let Event::Connected { connection, .. } = event {
                    accepted = Some(connection);
                }
            }
            let _ = support::sim_events(sim, client);
            accepted.is_some() && sim.endpoint(client).is_connected(pair.to_server)
        })
        .unwrap();
    assert!(ok, "seed {seed}: the reconnect did not complete");
    pair.to_client = accepted.unwrap();
}

#[test]
fn a_forged_no_session_packet_does_not_end_an_answered_session() {
    for seed in 0..SEEDS {
        let mut pair = connected_pair(link(seed), seed, |_| {});
        let (client, server) = (pair.client, pair.server);
        let mut received = Vec::new();
        for counter in 0..200u32 {
            pair.sim
                .endpoint_mut(client)
                .send(pair.to_server, RELIABLE_ORDERED, stamped(counter, 40))
                .unwrap();
            // An off-path attacker forges the server's address: the client hears the server
            // all the time, so it does not believe the packet.
            let now = pair.sim.now();
            pair.sim.network_mut().send(
                now,
                server_addr(),
                client_addr(),
                bytes::Bytes::from_static(&[0xe0]),
            );
            pair.sim.run_for(Duration::from_millis(10)).unwrap();
            received.extend(support::messages_on(
                support::live_events(&mut pair.sim, server),
                RELIABLE_ORDERED,
            ));
            let _ = support::live_events(&mut pair.sim, client);
        }
        pair.sim.run_for(Duration::from_secs(1)).unwrap();
        received.extend(support::messages_on(
            support::live_events(&mut pair.sim, server),
            RELIABLE_ORDERED,
        ));
        let counters: Vec<u32> = received.iter().map(|m| support::unstamp(m)).collect();
        assert_exactly_once_in_order(&counters, 200, seed);
        let stats = pair
            .sim
            .endpoint(client)
            .connection_stats(pair.to_server)
            .unwrap();
        assert_eq!(stats.dropped.unexpected, 200, "seed {seed}");
    }
}
