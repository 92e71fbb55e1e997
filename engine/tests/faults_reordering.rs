//! 30 % of datagrams reordered in both directions: reliable-ordered messages arrive exactly once
//! and in order, for many seeds.

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
        reorder: 0.3,
        reorder_delay: Duration::from_millis(40),
        ..LinkConfig::default()
    }
}

#[test]
fn thirty_percent_reordered_delivers_exactly_once_in_order() {
    for seed in 0..SEEDS {
        let mut pair = connected_pair(link(), seed, |_| {});
        let received = stream(&mut pair, MESSAGES, Duration::from_secs(600), seed);
        assert_exactly_once_in_order(&received, MESSAGES, seed);
        let (sent, _, _, reordered) = link_totals(&mut pair);
        assert!(
            reordered as f64 / sent as f64 > 0.2,
            "seed {seed}: only {reordered} of {sent} reordered"
        );
    }
}

/// A bulk sender on a link that reorders but never loses: losses declared on reordered packets
/// are disproved by their late acknowledgements, and the congestion window they shrank is
/// restored, so reordering alone does not throttle the sender.
#[test]
fn reordering_alone_does_not_shrink_the_congestion_window() {
    use tickwire::{ChannelId, ConnectionStats};
    const CHANNEL: ChannelId = ChannelId(0); // unreliable in the default layout
    let link = LinkConfig {
        latency: Duration::from_millis(30),
        reorder: 0.1,
        reorder_delay: Duration::from_millis(20),
        ..LinkConfig::default()
    };
    let mut spurious_seen = false;
    for seed in 0..8 {
        let mut pair = connected_pair(link.clone(), seed, |config| {
            config.max_congestion_window = 4 << 20;
        });
        let stats = |pair: &support::Pair| -> ConnectionStats {
            pair.sim
                .endpoint(pair.client)
                .connection_stats(pair.to_server)
                .unwrap()
        };
        // About 6 MB a second offered for 3 s: far above what the floor window lets through at
        // a 60 ms round trip, so the window grows in slow start.
        let payload = bytes::Bytes::from(vec![7u8; 1000]);
        for _ in 0..300 {
            for _ in 0..60 {
                let _ = pair.sim.endpoint_mut(pair.client).send(
                    pair.to_server,
                    CHANNEL,
                    payload.clone(),
                );
            }
            pair.sim.run_for(Duration::from_millis(10)).unwrap();
            while pair.sim.poll_event(pair.server).is_some() {}
            while pair.sim.poll_event(pair.client).is_some() {}
        }
        // Let the last acknowledgements arrive.
        pair.sim.run_for(Duration::from_secs(1)).unwrap();
        let end = stats(&pair);
        spurious_seen |= end.spurious_losses > 0;
        assert!(
            end.packets_lost - end.spurious_losses <= end.packets_lost / 100,
            "seed {seed}: the link loses nothing, yet only {} of {} losses were disproved",
            end.spurious_losses,
            end.packets_lost
        );
        assert!(
            end.congestion_window >= 1 << 20,
            "seed {seed}: window {} after {} spurious losses",
            end.congestion_window,
            end.spurious_losses
        );
    }
    assert!(spurious_seen, "the link never fooled loss detection");
}
