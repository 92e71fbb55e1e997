//! Bursty (Gilbert-Elliott) loss of about 30 % of datagrams in both directions: reliable-ordered
//! messages still arrive exactly once and in order, for many seeds.

mod support;

use std::time::Duration;

use tickwire::sim::{BurstLoss, LinkConfig};

use support::connected_pair;
use support::faults::{assert_exactly_once_in_order, link_totals, stream};

const SEEDS: u64 = 32;
const MESSAGES: u32 = 300;

fn link() -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(30),
        jitter: Duration::from_millis(10),
        loss: 0.02,
        // Bad 0.1 / (0.1 + 0.25) = 29 % of the time, bursts of 4 datagrams on average.
        burst_loss: Some(BurstLoss {
            enter_bad: 0.1,
            leave_bad: 0.25,
            loss_in_bad: 1.0,
        }),
        ..LinkConfig::default()
    }
}

#[test]
fn bursty_loss_up_to_30_percent_delivers_exactly_once_in_order() {
    for seed in 0..SEEDS {
        let mut pair = connected_pair(link(), seed, |_| {});
        let received = stream(&mut pair, MESSAGES, Duration::from_secs(600), seed);
        assert_exactly_once_in_order(&received, MESSAGES, seed);
        let (sent, dropped, _, _) = link_totals(&mut pair);
        assert!(
            dropped as f64 / sent as f64 > 0.12,
            "seed {seed}: only {dropped} of {sent} datagrams lost"
        );
    }
}
