//! `request_ack`: a receiver that holds acknowledgements back (a long `max_ack_delay`, a high
//! `ack_frequency`) still acknowledges at once when the sender asks with a ping.

mod support;

use std::time::Duration;

use tickwire::sim::LinkConfig;
use tickwire::ChannelId;

use support::{connected_pair, live_events, stamped, Pair};

const CHANNEL: ChannelId = ChannelId(0);

/// 20 ms each way: a round trip is 40 ms.
fn link() -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(20),
        ..LinkConfig::default()
    }
}

/// Acks held up to 1 s, or until 100 packets are unreported.
fn sparse_acks(seed: u64) -> Pair {
    connected_pair(link(), seed, |config| {
        config.max_ack_delay = Duration::from_secs(1);
        config.ack_frequency = 100;
        // No keepalive pings in the test window: they would be acknowledged too.
        config.keepalive_interval = Duration::from_secs(5);
        config.idle_timeout = Duration::from_secs(20);
    })
}

fn acked(pair: &Pair) -> u64 {
    pair.sim
        .endpoint(pair.client)
        .connection_stats(pair.to_server)
        .unwrap()
        .packets_acked
}

/// Sends one message from the client, then runs 100 ms (2.5 round trips).
fn send_and_wait(pair: &mut Pair, counter: u32, request: bool) {
    pair.sim
        .endpoint_mut(pair.client)
        .send(pair.to_server, CHANNEL, stamped(counter, 32))
        .unwrap();
    if request {
        assert!(pair
            .sim
            .endpoint_mut(pair.client)
            .request_ack(pair.to_server));
    }
    pair.sim.run_for(Duration::from_millis(100)).unwrap();
    live_events(&mut pair.sim, pair.server);
    live_events(&mut pair.sim, pair.client);
}

#[test]
fn a_requested_ack_comes_within_a_round_trip_while_others_wait_for_the_delay() {
    for seed in 0..10 {
        let mut pair = sparse_acks(seed);
        // Let the handshake's own acknowledgements settle.
        pair.sim.run_for(Duration::from_secs(2)).unwrap();
        live_events(&mut pair.sim, pair.server);

        let before = acked(&pair);
        send_and_wait(&mut pair, 1, false);
        assert_eq!(
            acked(&pair),
            before,
            "seed {seed}: the ack was not held back"
        );

        send_and_wait(&mut pair, 2, true);
        assert!(
            acked(&pair) > before,
            "seed {seed}: no ack within 100 ms of request_ack"
        );
    }
}

#[test]
fn request_ack_refuses_a_connection_that_is_closing() {
    let mut pair = sparse_acks(1);
    let now = pair.sim.now();
    let client = pair.sim.endpoint_mut(pair.client);
    assert!(client.request_ack(pair.to_server));
    client.disconnect(pair.to_server, 0, now);
    assert!(!client.request_ack(pair.to_server));
}
