//! A 2 s blackout in both directions, shorter than the 10 s idle timeout: neither side
//! disconnects, and reliable-ordered delivery resumes afterwards with nothing lost or
//! duplicated, for many seeds.

mod support;

use std::time::Duration;

use tickwire::sim::LinkConfig;

use support::faults::{assert_exactly_once_in_order, set_both, Stream};
use support::{connected_pair, dead_link};

const SEEDS: u64 = 32;

fn link() -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(5),
        ..LinkConfig::default()
    }
}

#[test]
fn a_blackout_shorter_than_the_idle_timeout_keeps_the_session() {
    for seed in 0..SEEDS {
        let mut pair = connected_pair(link(), seed, |_| {});
        let mut stream = Stream::default();
        stream.run(&mut pair, 50, Duration::from_secs(30), seed);
        assert_eq!(stream.received.len(), 50, "seed {seed}");
        set_both(&mut pair, &dead_link());
        // Messages keep being offered through the blackout (a disconnect would panic).
        stream.run(&mut pair, 250, Duration::from_secs(2), seed);
        let in_blackout = stream.received.len();
        set_both(&mut pair, &link());
        stream.run(&mut pair, 400, Duration::from_secs(30), seed);
        assert!(
            in_blackout < 60,
            "seed {seed}: {in_blackout} delivered by a dead link"
        );
        assert_exactly_once_in_order(&stream.received, 400, seed);
    }
}
