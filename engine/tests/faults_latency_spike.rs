//! A +1 s latency spike lasting 3 s in both directions: neither side disconnects, delivery
//! stays exactly once and in order, and the RTT estimate comes back to the base path's once the
//! spike ends, for many seeds.

mod support;

use std::time::Duration;

use tickwire::sim::LinkConfig;

use support::connected_pair;
use support::faults::{assert_exactly_once_in_order, set_both, Stream};

const SEEDS: u64 = 32;
const BASE: Duration = Duration::from_millis(20);
const SPIKE: Duration = Duration::from_secs(1);

#[test]
fn a_latency_spike_keeps_the_session_and_the_rtt_recovers() {
    for seed in 0..SEEDS {
        let mut pair = connected_pair(link(BASE), seed, |_| {});
        let mut stream = Stream::default();
        stream.run(&mut pair, 50, Duration::from_secs(30), seed);
        let base_rtt = rtt(&pair);
        assert!(
            base_rtt < Duration::from_millis(100),
            "seed {seed}: {base_rtt:?}"
        );

        set_both(&mut pair, &link(BASE + SPIKE));
        // 3 s of spike with traffic (2 messages per 10 ms), then back to the base path.
        stream.run(&mut pair, 650, Duration::from_secs(3), seed);
        let spike_rtt = rtt(&pair);
        assert!(
            spike_rtt > SPIKE,
            "seed {seed}: RTT {spike_rtt:?} during the spike"
        );
        set_both(&mut pair, &link(BASE));
        stream.run(&mut pair, 1000, Duration::from_secs(30), seed);
        assert_exactly_once_in_order(&stream.received, 1000, seed);
        let recovered = rtt(&pair);
        assert!(
            recovered < base_rtt * 2 + Duration::from_millis(40),
            "seed {seed}: RTT {recovered:?} after the spike (spike {spike_rtt:?}, before {base_rtt:?})"
        );
    }
}

fn link(latency: Duration) -> LinkConfig {
    LinkConfig {
        latency,
        jitter: Duration::from_millis(5),
        ..LinkConfig::default()
    }
}

fn rtt(pair: &support::Pair) -> Duration {
    pair.sim
        .endpoint(pair.client)
        .connection_stats(pair.to_server)
        .unwrap()
        .rtt
}
