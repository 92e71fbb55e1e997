//! A blackout in both directions longer than the idle timeout: both sides disconnect with
//! `DisconnectReason::Timeout` once the idle timeout has passed, not before, for many seeds.

mod support;

use std::time::Duration;

use tickwire::sim::LinkConfig;
use tickwire::{Config, DisconnectReason, Event};

use support::faults::{set_both, stream};
use support::{connected_pair, dead_link};

const SEEDS: u64 = 32;
const BLACKOUT: Duration = Duration::from_secs(15);

#[test]
fn a_blackout_longer_than_the_idle_timeout_times_out_both_sides() {
    let idle = Config::default().idle_timeout;
    assert!(BLACKOUT > idle);
    for seed in 0..SEEDS {
        let link = LinkConfig {
            latency: Duration::from_millis(20),
            ..LinkConfig::default()
        };
        let mut pair = connected_pair(link, seed, |_| {});
        let before = stream(&mut pair, 20, Duration::from_secs(30), seed);
        assert_eq!(before.len(), 20, "seed {seed}");
        // Let the last acknowledgements land (a blackout with data in flight is
        // `faults_blackout_in_flight.rs`).
        stream(&mut pair, 0, Duration::from_millis(500), seed);
        set_both(&mut pair, &dead_link());
        let start = pair.sim.elapsed();
        let (client, server) = (pair.client, pair.server);
        let mut ends: [Option<(Duration, DisconnectReason)>; 2] = [None, None];
        pair.sim
            .run_until(BLACKOUT, |sim| {
                for (slot, node) in [client, server].into_iter().enumerate() {
                    while let Some(event) = sim.poll_event(node) {
                        if let Event::Disconnected { reason, .. } = event {
                            ends[slot] = Some((sim.elapsed() - start, reason));
                        }
                    }
                }
                ends.iter().all(Option::is_some)
            })
            .unwrap();
        for (side, end) in ["client", "server"].into_iter().zip(ends) {
            let (at, reason) = end.unwrap_or_else(|| panic!("seed {seed}: {side} never ended"));
            assert_eq!(reason, DisconnectReason::Timeout, "seed {seed}: {side}");
            // The last packet heard was at most one keepalive interval before the blackout.
            let earliest = idle.saturating_sub(Config::default().keepalive_interval);
            assert!(
                at >= earliest && at <= idle + Duration::from_millis(100),
                "seed {seed}: {side} timed out after {at:?} of blackout (idle timeout {idle:?})"
            );
        }
    }
}
