//! Half of all datagrams duplicated in both directions: reliable-ordered messages arrive
//! exactly once and in order, for many seeds.

mod support;

use std::time::Duration;

use tickwire::sim::LinkConfig;

use support::connected_pair;
use support::faults::{assert_exactly_once_in_order, link_totals, stream};

const SEEDS: u64 = 32;
const MESSAGES: u32 = 300;

fn link() -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(30),
        jitter: Duration::from_millis(10),
        duplicate: 0.5,
        ..LinkConfig::default()
    }
}

#[test]
fn half_the_datagrams_duplicated_delivers_exactly_once_in_order() {
    for seed in 0..SEEDS {
        let mut pair = connected_pair(link(), seed, |_| {});
        let received = stream(&mut pair, MESSAGES, Duration::from_secs(600), seed);
        assert_exactly_once_in_order(&received, MESSAGES, seed);
        let (sent, _, duplicated, _) = link_totals(&mut pair);
        assert!(
            duplicated as f64 / sent as f64 > 0.4,
            "seed {seed}: only {duplicated} of {sent} duplicated"
        );
    }
}
