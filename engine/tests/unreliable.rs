//! The unreliable channel under duplication, reordering and loss: never a message twice; and
//! `notify_delivery`: every message gets exactly one outcome, and an acknowledged one really
//! arrived.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tickwire::sim::LinkConfig;
use tickwire::{ChannelConfig, ChannelId, ChannelKind, ChannelLayout, DeliveryOutcome, Event};

use support::{connected_pair, live_events, messages_on, stamped, unstamp};

const UNRELIABLE: ChannelId = ChannelId(0);

/// 40 ± 20 ms, 10 % loss, 30 % duplication, 20 % held back by 20 ms.
fn duplicating_link() -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(40),
        jitter: Duration::from_millis(20),
        loss: 0.1,
        duplicate: 0.3,
        reorder: 0.2,
        ..LinkConfig::default()
    }
}

#[test]
fn never_delivers_a_message_twice_under_heavy_duplication_for_thirty_seeds() {
    const TICKS: u32 = 500;
    const PER_TICK: u32 = 3;
    for seed in 0..30 {
        let mut pair = connected_pair(duplicating_link(), seed, |_| {});
        let (client, server) = (pair.client, pair.server);
        let mut seen = BTreeSet::new();
        let mut collect = |events| {
            for data in messages_on(events, UNRELIABLE) {
                let counter = unstamp(&data);
                assert!(
                    seen.insert(counter),
                    "seed {seed}: message {counter} delivered twice"
                );
            }
        };
        // Three messages per 10 ms tick, both ways, packed into shared datagrams.
        for tick in 0..TICKS {
            for i in 0..PER_TICK {
                let counter = tick * PER_TICK + i;
                let len = 4 + (counter as usize * 31) % 200;
                let sim = &mut pair.sim;
                sim.endpoint_mut(client)
                    .send(pair.to_server, UNRELIABLE, stamped(counter, len))
                    .unwrap();
                sim.endpoint_mut(server)
                    .send(pair.to_client, UNRELIABLE, stamped(counter, len))
                    .unwrap();
            }
            pair.sim.run_for(Duration::from_millis(10)).unwrap();
            collect(live_events(&mut pair.sim, server));
            // The client's copies only need to arrive at most once too.
            let mut at_client = BTreeSet::new();
            for data in messages_on(live_events(&mut pair.sim, client), UNRELIABLE) {
                assert!(at_client.insert(unstamp(&data)));
            }
        }
        pair.sim.run_for(Duration::from_secs(1)).unwrap();
        collect(live_events(&mut pair.sim, server));

        let sent = TICKS * PER_TICK;
        assert!(
            seen.len() as u32 > sent * 8 / 10,
            "seed {seed}: only {} of {sent} delivered at 10 % loss",
            seen.len()
        );
        let link = pair
            .sim
            .network_mut()
            .stats(support::client_addr(), support::server_addr())
            .copied()
            .unwrap();
        assert!(
            link.duplicated > 0,
            "seed {seed}: the link duplicated nothing"
        );
        let stats = pair
            .sim
            .endpoint(server)
            .connection_stats(pair.to_client)
            .unwrap();
        assert!(
            stats.dropped.duplicate > 0,
            "seed {seed}: no duplicate seen"
        );
        assert_eq!(
            stats.recv_channels[usize::from(UNRELIABLE.0)].messages_delivered,
            seen.len() as u64
        );
    }
}

#[test]
fn duplicates_across_the_whole_packet_window_are_still_dropped() {
    // Copies held back far longer than a second: by the time they arrive, more than a
    // thousand newer packets have been received, so they are too old to check and must go.
    let link = LinkConfig {
        latency: Duration::from_millis(5),
        duplicate: 0.3,
        reorder: 0.3,
        reorder_delay: Duration::from_millis(1_500),
        ..LinkConfig::default()
    };
    let mut pair = connected_pair(link, 3, |_| {});
    let (client, server) = (pair.client, pair.server);
    let mut seen = BTreeSet::new();
    for counter in 0..3_000u32 {
        pair.sim
            .endpoint_mut(client)
            .send(pair.to_server, UNRELIABLE, stamped(counter, 16))
            .unwrap();
        pair.sim.run_for(Duration::from_millis(1)).unwrap();
        for data in messages_on(live_events(&mut pair.sim, server), UNRELIABLE) {
            let counter = unstamp(&data);
            assert!(seen.insert(counter), "message {counter} delivered twice");
        }
        live_events(&mut pair.sim, client);
    }
    pair.sim.run_for(Duration::from_secs(2)).unwrap();
    for data in messages_on(live_events(&mut pair.sim, server), UNRELIABLE) {
        let counter = unstamp(&data);
        assert!(seen.insert(counter), "message {counter} delivered twice");
    }
    let stats = pair
        .sim
        .endpoint(server)
        .connection_stats(pair.to_client)
        .unwrap();
    assert!(stats.dropped.too_old > 0, "no copy arrived late enough");
    assert!(stats.dropped.duplicate > 0);
}

/// The fate of every message sent on a `notify_delivery` channel, and what the peer got.
#[test]
fn notify_delivery_reports_each_message_exactly_once_for_ten_seeds() {
    const COUNT: u32 = 2_000;
    let notified = |kind| ChannelConfig {
        notify_delivery: true,
        ..ChannelConfig::new(kind)
    };
    let layout = ChannelLayout::symmetric(vec![
        notified(ChannelKind::Unreliable),
        ChannelConfig::new(ChannelKind::ReliableOrdered),
    ]);
    let link = LinkConfig {
        latency: Duration::from_millis(30),
        jitter: Duration::from_millis(10),
        loss: 0.1,
        duplicate: 0.05,
        ..LinkConfig::default()
    };
    for seed in 0..10 {
        let mut pair = connected_pair(link.clone(), seed, |config| {
            config.channels = layout.clone();
        });
        let (client, server) = (pair.client, pair.server);
        let mut outcomes = BTreeMap::new();
        let mut received = BTreeSet::new();
        let mut collect = |sim: &mut tickwire::sim::Simulation| {
            for event in live_events(sim, client) {
                if let Event::Delivery {
                    channel,
                    message,
                    outcome,
                    ..
                } = event
                {
                    assert_eq!(channel, UNRELIABLE);
                    let previous = outcomes.insert(message.0, outcome);
                    assert!(
                        previous.is_none(),
                        "seed {seed}: message {message:?} reported twice: {previous:?} then {outcome:?}"
                    );
                }
            }
            for data in messages_on(live_events(sim, server), UNRELIABLE) {
                assert!(received.insert(unstamp(&data)));
            }
        };
        let mut fragmented = 0;
        for counter in 0..COUNT {
            // Every tenth message is fragmented (3 datagrams): acked only if all three are.
            let len = if counter % 10 == 9 { 3_000 } else { 64 };
            fragmented += u32::from(len > 1_200);
            let id = pair
                .sim
                .endpoint_mut(client)
                .send(pair.to_server, UNRELIABLE, stamped(counter, len))
                .unwrap();
            assert_eq!(id.0, u64::from(counter), "message ids count from 0");
            pair.sim.run_for(Duration::from_millis(5)).unwrap();
            collect(&mut pair.sim);
        }
        pair.sim.run_for(Duration::from_secs(3)).unwrap();
        collect(&mut pair.sim);

        let missing: Vec<u32> = (0..COUNT)
            .filter(|c| !outcomes.contains_key(&u64::from(*c)))
            .collect();
        assert!(
            missing.is_empty(),
            "seed {seed}: {} messages never got an outcome, first {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        assert_eq!(outcomes.len(), COUNT as usize);
        let mut lost = 0;
        for (&id, &outcome) in &outcomes {
            let delivered = received.contains(&(id as u32));
            match outcome {
                DeliveryOutcome::Acked => assert!(
                    delivered,
                    "seed {seed}: message {id} acknowledged but never delivered"
                ),
                DeliveryOutcome::Lost => lost += 1,
            }
        }
        // Every message not delivered was reported lost (an unacknowledged one cannot be
        // acked); a few delivered ones may be reported lost when their ack was lost.
        let undelivered = COUNT - received.len() as u32;
        assert!(lost >= undelivered);
        assert!(
            lost - undelivered <= COUNT / 20,
            "seed {seed}: {lost} reported lost but only {undelivered} undelivered"
        );
        let expected = f64::from(COUNT - fragmented) * 0.1 + f64::from(fragmented) * 0.271;
        assert!(
            (f64::from(lost) - expected).abs() < expected * 0.35,
            "seed {seed}: {lost} reported lost, about {expected:.0} expected ({undelivered} undelivered)"
        );
        let stats = pair
            .sim
            .endpoint(client)
            .connection_stats(pair.to_server)
            .unwrap();
        let channel = &stats.send_channels[usize::from(UNRELIABLE.0)];
        assert_eq!(channel.messages_acked, u64::from(COUNT - lost));
        assert_eq!(channel.messages_lost, u64::from(lost));
    }
}

#[test]
fn a_message_leaves_when_sent_not_when_the_run_ends() {
    // A perfect 20 ms link: a message sent at t arrives at t + 20 ms, however the test then
    // slices virtual time.
    let latency = Duration::from_millis(20);
    let link = LinkConfig {
        latency,
        ..LinkConfig::default()
    };
    let mut pair = connected_pair(link, 1, |_| {});
    let (client, server) = (pair.client, pair.server);
    pair.sim.run_for(Duration::from_millis(2_500)).unwrap();
    live_events(&mut pair.sim, server);
    let sent_at = pair.sim.elapsed();
    pair.sim
        .endpoint_mut(client)
        .send(pair.to_server, UNRELIABLE, stamped(0, 8))
        .unwrap();
    pair.sim.run_for(Duration::from_millis(5)).unwrap();
    let mut arrived_at = None;
    pair.sim
        .run_until(Duration::from_secs(1), |sim| {
            if !messages_on(live_events(sim, server), UNRELIABLE).is_empty() {
                arrived_at = Some(sim.elapsed());
            }
            arrived_at.is_some()
        })
        .unwrap();
    let arrived_at = arrived_at.expect("the message never arrived");
    assert_eq!(
        arrived_at - sent_at,
        latency,
        "sent {sent_at:?}, arrived {arrived_at:?}"
    );
}
