//! A long blackout that starts while reliable data and its acknowledgements are in flight, for
//! many seeds: both sides end with `DisconnectReason::Timeout` (the peer went silent), never
//! `Unacknowledged` (which means a peer that is heard but does not acknowledge). The defaults
//! keep `ack_timeout` (15 s) above `idle_timeout` (10 s) for this.

mod support;

use std::time::Duration;

use tickwire::sim::LinkConfig;
use tickwire::{Config, DisconnectReason, Event};

use support::faults::{set_both, Stream, RELIABLE_ORDERED};
use support::{connected_pair, dead_link, stamped};

const SEEDS: u64 = 32;

#[test]
fn a_blackout_with_data_in_flight_ends_as_a_timeout() {
    let defaults = Config::default();
    assert!(defaults.ack_timeout > defaults.idle_timeout);
    for seed in 0..SEEDS {
        let link = LinkConfig {
            latency: Duration::from_millis(20 + seed % 20),
            jitter: Duration::from_millis(5),
            loss: 0.02,
            ..LinkConfig::default()
        };
        let mut pair = connected_pair(link, seed, |_| {});
        let mut stream = Stream::default();
        stream.run(&mut pair, 50, Duration::from_secs(30), seed);
        // Queue more and cut the link a few milliseconds later: data and acks are in flight.
        for counter in 50..60 {
            pair.sim
                .endpoint_mut(pair.client)
                .send(pair.to_server, RELIABLE_ORDERED, stamped(counter, 100))
                .unwrap();
        }
        pair.sim
            .run_for(Duration::from_millis(1 + seed % 15))
            .unwrap();
        set_both(&mut pair, &dead_link());
        let in_flight = pair
            .sim
            .endpoint(pair.client)
            .connection_stats(pair.to_server)
            .unwrap()
            .bytes_in_flight;
        assert!(in_flight > 0, "seed {seed}: nothing in flight");
        let (client, server) = (pair.client, pair.server);
        let mut ends = [None, None];
        pair.sim
            .run_until(Duration::from_secs(30), |sim| {
                for (slot, node) in [client, server].into_iter().enumerate() {
                    while let Some(event) = sim.poll_event(node) {
                        if let Event::Disconnected { reason, .. } = event {
                            ends[slot] = Some(reason);
                        }
                    }
                }
                ends.iter().all(Option::is_some)
            })
            .unwrap();
        assert_eq!(
            ends,
            [
                Some(DisconnectReason::Timeout),
                Some(DisconnectReason::Timeout)
            ],
            "seed {seed}: [client, server]"
        );
    }
}
