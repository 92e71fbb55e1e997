//! Unreliable-sequenced delivery under jitter, reordering, duplication and loss: the receiver
//! never delivers a message older than (or equal to) one it already delivered, for many seeds,
//! with whole and with fragmented messages.

mod support;

use std::time::Duration;

use tickwire::sim::LinkConfig;
use tickwire::ChannelId;

use support::{connected_pair, inject, intercept, live_events, messages_on, stamped, unstamp};

const SEQUENCED: ChannelId = ChannelId(1);

/// 50 ± 30 ms, 10 % loss, 5 % duplication, 20 % held back by 20 ms.
fn link() -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(50),
        jitter: Duration::from_millis(30),
        loss: 0.1,
        duplicate: 0.05,
        reorder: 0.2,
        ..LinkConfig::default()
    }
}

/// What the server saw of `count` messages the client sent every `interval`.
struct Outcome {
    /// Counters of the messages delivered, in delivery order.
    delivered: Vec<u32>,
    /// The channel's `messages_dropped` at the receiver.
    dropped: u64,
    /// The channel's `messages_delivered` at the receiver.
    delivered_stat: u64,
}

/// Sends `count` stamped messages on the sequenced channel, one every `interval`, message `i`
/// being `size(i)` bytes long, and collects what arrives (every byte checked).
fn run(seed: u64, count: u32, interval: Duration, size: impl Fn(u32) -> usize) -> Outcome {
    let mut pair = connected_pair(link(), seed, |_| {});
    let (client, server, conn) = (pair.client, pair.server, pair.to_server);
    let mut delivered = Vec::new();
    let mut collect = |events| {
        for data in messages_on(events, SEQUENCED) {
            let counter = unstamp(&data);
            assert_eq!(data.len(), size(counter), "seed {seed}: message {counter}");
            delivered.push(counter);
        }
    };
    for counter in 0..count {
        pair.sim
            .endpoint_mut(client)
            .send(conn, SEQUENCED, stamped(counter, size(counter)))
            .unwrap();
        pair.sim.run_for(interval).unwrap();
        collect(live_events(&mut pair.sim, server));
        live_events(&mut pair.sim, client);
    }
    // Let everything in flight land (and incomplete fragments expire).
    pair.sim.run_for(Duration::from_secs(2)).unwrap();
    collect(live_events(&mut pair.sim, server));
    let stats = pair
        .sim
        .endpoint(server)
        .connection_stats(pair.to_client)
        .unwrap();
    let channel = &stats.recv_channels[usize::from(SEQUENCED.0)];
    assert_eq!(
        stats.reassembly_bytes, 0,
        "seed {seed}: fragments left behind"
    );
    Outcome {
        delivered,
        dropped: channel.messages_dropped,
        delivered_stat: channel.messages_delivered,
    }
}

fn assert_strictly_increasing(seed: u64, delivered: &[u32]) {
    for pair in delivered.windows(2) {
        assert!(
            pair[0] < pair[1],
            "seed {seed}: message {} delivered after {}",
            pair[1],
            pair[0]
        );
    }
}

#[test]
fn never_delivers_an_older_message_under_reordering_for_thirty_seeds() {
    const COUNT: u32 = 1_000;
    let mut total = 0;
    for seed in 0..30 {
        // One 40-byte update per 60 Hz tick: ±30 ms of jitter and reordering overtake many.
        let outcome = run(seed, COUNT, Duration::from_millis(16), |_| 40);
        assert_strictly_increasing(seed, &outcome.delivered);
        assert_eq!(outcome.delivered_stat, outcome.delivered.len() as u64);
        assert!(
            outcome.dropped > 0,
            "seed {seed}: no stale message dropped; did the link reorder at all?"
        );
        // Every message that arrived was either delivered or dropped as stale, exactly once:
        // about 10 % never arrive.
        let arrived = outcome.delivered.len() as u64 + outcome.dropped;
        assert!(
            arrived <= u64::from(COUNT) && arrived >= u64::from(COUNT) * 8 / 10,
            "seed {seed}: {arrived} of {COUNT} accounted for"
        );
        let share = outcome.delivered.len() as f64 / f64::from(COUNT);
        assert!(
            share > 0.5,
            "seed {seed}: only {:.0} % delivered",
            share * 100.0
        );
        total += outcome.delivered.len();
    }
    println!(
        "sequenced: {:.1} % of updates delivered on average",
        total as f64 / (30.0 * f64::from(COUNT)) * 100.0
    );
}

#[test]
fn fragmented_sequenced_messages_are_whole_and_never_older() {
    const COUNT: u32 = 300;
    // Mixed sizes: 3-fragment messages (above the 1200-byte budget) and small ones between
    // them, so that a newer small message often overtakes an older half-assembled one.
    let size = |counter: u32| {
        if counter % 3 == 2 {
            100
        } else {
            2_000 + (counter as usize * 7_919) % 2_000
        }
    };
    for seed in 0..10 {
        let outcome = run(seed, COUNT, Duration::from_millis(20), size);
        assert_strictly_increasing(seed, &outcome.delivered);
        assert_eq!(outcome.delivered_stat, outcome.delivered.len() as u64);
        let fragmented = outcome
            .delivered
            .iter()
            .filter(|&&counter| size(counter) > 1_200)
            .count();
        assert!(
            fragmented as u32 > COUNT / 5,
            "seed {seed}: only {fragmented} fragmented messages delivered"
        );
        assert!(
            outcome.delivered.len() as u32 > COUNT / 3,
            "seed {seed}: only {} of {COUNT} delivered",
            outcome.delivered.len()
        );
    }
}

#[test]
fn a_stale_fragmented_message_counts_as_one_dropped_message() {
    let mut pair = connected_pair(LinkConfig::default(), 1, |_| {});
    let (client, server, conn) = (pair.client, pair.server, pair.to_server);
    // Message 0 travels as three fragments; message 1 is small and overtakes all of them.
    let sim = &mut pair.sim;
    sim.endpoint_mut(client)
        .send(conn, SEQUENCED, stamped(0, 3_000))
        .unwrap();
    let old = intercept(sim, client);
    assert_eq!(old.len(), 3, "expected one datagram per fragment");
    sim.endpoint_mut(client)
        .send(conn, SEQUENCED, stamped(1, 100))
        .unwrap();
    for datagram in intercept(sim, client) {
        inject(sim, client, datagram);
    }
    sim.run_for(Duration::from_millis(10)).unwrap();
    for datagram in old {
        inject(sim, client, datagram);
    }
    sim.run_for(Duration::from_millis(10)).unwrap();
    let delivered: Vec<u32> = messages_on(live_events(sim, server), SEQUENCED)
        .iter()
        .map(|data| unstamp(data))
        .collect();
    assert_eq!(delivered, [1]);
    let stats = sim
        .endpoint(server)
        .connection_stats(pair.to_client)
        .unwrap();
    let channel = &stats.recv_channels[usize::from(SEQUENCED.0)];
    assert_eq!(channel.messages_delivered, 1);
    assert_eq!(
        channel.messages_dropped, 1,
        "one stale message, dropped once"
    );
    assert_eq!(stats.reassembly_bytes, 0);
}
