//! Fragmentation: large reliable messages arrive intact across loss; an unreliable message that
//! loses a fragment is dropped whole and leaves no buffer behind.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use tickwire::sim::LinkConfig;
use tickwire::{ChannelId, Event};

use support::{
    connected_pair, inject, intercept, live_events, messages_on, stamped, unstamp, Pair, Wire,
    WireSide,
};

const UNRELIABLE: ChannelId = ChannelId(0);
const RELIABLE_ORDERED: ChannelId = ChannelId(2);
const RELIABLE_UNORDERED: ChannelId = ChannelId(3);

/// 200 KiB: about 175 fragments at the default 1200-byte budget.
const LARGE: usize = 200 * 1024;

/// 20 ± 5 ms with `loss`.
fn lossy(loss: f64) -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(5),
        loss,
        ..LinkConfig::default()
    }
}

/// Sends `sizes.len()` stamped messages client to server on `channel` (counters from 0) and runs
/// until all arrive; returns the counters in arrival order, every byte checked.
fn send_and_collect(pair: &mut Pair, channel: ChannelId, sizes: &[usize]) -> Vec<u32> {
    for (counter, &len) in sizes.iter().enumerate() {
        pair.sim
            .endpoint_mut(pair.client)
            .send(pair.to_server, channel, stamped(counter as u32, len))
            .unwrap();
    }
    let (client, server) = (pair.client, pair.server);
    let mut arrived = Vec::new();
    let done = pair
        .sim
        .run_until(Duration::from_secs(60), |sim| {
            live_events(sim, client);
            for data in messages_on(live_events(sim, server), channel) {
                let counter = unstamp(&data);
                assert_eq!(data.len(), sizes[counter as usize], "message {counter}");
                arrived.push(counter);
            }
            arrived.len() >= sizes.len()
        })
        .unwrap();
    assert!(
        done,
        "only {} of {} messages arrived",
        arrived.len(),
        sizes.len()
    );
    // Nothing more (no duplicate) arrives afterwards.
    pair.sim.run_for(Duration::from_secs(1)).unwrap();
    let late = messages_on(live_events(&mut pair.sim, server), channel);
    assert!(late.is_empty(), "{} messages arrived again", late.len());
    arrived
}

fn assert_clean(pair: &Pair, channel: ChannelId) {
    let receiver = pair
        .sim
        .endpoint(pair.server)
        .connection_stats(pair.to_client)
        .unwrap();
    assert_eq!(
        receiver.reassembly_bytes, 0,
        "reassembly buffers left behind"
    );
    let sender = pair
        .sim
        .endpoint(pair.client)
        .connection_stats(pair.to_server)
        .unwrap();
    let send = &sender.send_channels[usize::from(channel.0)];
    assert!(send.retransmissions > 0, "10 % loss but no retransmission");
    assert_eq!(send.messages_acked, send.messages_sent);
    assert_eq!(
        pair.sim
            .endpoint(pair.client)
            .buffered_bytes(pair.to_server),
        Some(0)
    );
}

#[test]
fn a_200_kib_reliable_message_arrives_intact_under_10_percent_loss() {
    for seed in 0..5 {
        let mut pair = connected_pair(lossy(0.1), seed, |_| {});
        let arrived = send_and_collect(&mut pair, RELIABLE_ORDERED, &[LARGE]);
        assert_eq!(arrived, [0], "seed {seed}");
        assert_clean(&pair, RELIABLE_ORDERED);
    }
}

#[test]
fn several_large_reliable_ordered_messages_arrive_intact_and_in_order() {
    // Large and small messages mixed: a small one must wait for the large one before it.
    let sizes = [LARGE, 10, LARGE - 1, 1_175, 1_176, LARGE + 7, 4, 64 * 1024];
    for seed in 0..3 {
        let mut pair = connected_pair(lossy(0.1), seed, |_| {});
        let arrived = send_and_collect(&mut pair, RELIABLE_ORDERED, &sizes);
        let expected: Vec<u32> = (0..sizes.len() as u32).collect();
        assert_eq!(arrived, expected, "seed {seed}");
        assert_clean(&pair, RELIABLE_ORDERED);
    }
}

#[test]
fn large_reliable_unordered_messages_arrive_intact_exactly_once() {
    let sizes = [LARGE, 10, LARGE - 1, 1_175, 1_176, LARGE + 7, 4, 64 * 1024];
    for seed in 0..3 {
        let mut pair = connected_pair(lossy(0.1), seed, |_| {});
        let arrived = send_and_collect(&mut pair, RELIABLE_UNORDERED, &sizes);
        let unique: BTreeSet<u32> = arrived.iter().copied().collect();
        assert_eq!(unique.len(), sizes.len(), "seed {seed}: {arrived:?}");
        assert_clean(&pair, RELIABLE_UNORDERED);
    }
}

#[test]
fn an_unreliable_message_missing_one_fragment_is_dropped_and_leaves_no_buffer() {
    let mut pair = connected_pair(lossy(0.0), 1, |_| {});
    let (client, server) = (pair.client, pair.server);
    let timeout = pair.sim.endpoint(server).config().reassembly_timeout;
    pair.sim
        .endpoint_mut(client)
        .send(pair.to_server, UNRELIABLE, stamped(0, 4_000))
        .unwrap();
    let datagrams = intercept(&mut pair.sim, client);
    assert_eq!(datagrams.len(), 4, "expected one datagram per fragment");
    // Lose exactly the second fragment.
    for (index, datagram) in datagrams.into_iter().enumerate() {
        if index != 1 {
            inject(&mut pair.sim, client, datagram);
        }
    }
    pair.sim.run_for(Duration::from_millis(100)).unwrap();
    let stats = |pair: &Pair| {
        pair.sim
            .endpoint(server)
            .connection_stats(pair.to_client)
            .unwrap()
    };
    let held = stats(&pair).reassembly_bytes;
    assert!(
        (2_000..4_000).contains(&held),
        "three of four fragments should be held, {held} bytes are"
    );

    pair.sim.run_for(timeout).unwrap();
    let after = stats(&pair);
    assert_eq!(
        after.reassembly_bytes, 0,
        "the incomplete message was not freed"
    );
    let channel = &after.recv_channels[usize::from(UNRELIABLE.0)];
    assert_eq!(channel.messages_dropped, 1);
    assert_eq!(channel.messages_delivered, 0);
    let partial = messages_on(live_events(&mut pair.sim, server), UNRELIABLE);
    assert!(partial.is_empty(), "an incomplete message was delivered");

    // The channel still works: the next fragmented message arrives whole.
    pair.sim
        .endpoint_mut(client)
        .send(pair.to_server, UNRELIABLE, stamped(1, 4_000))
        .unwrap();
    let mut got = Vec::new();
    let arrived = pair
        .sim
        .run_until(Duration::from_secs(2), |sim| {
            got.extend(messages_on(live_events(sim, server), UNRELIABLE));
            !got.is_empty()
        })
        .unwrap();
    assert!(arrived, "the next fragmented message did not arrive");
    assert_eq!(unstamp(&got[0]), 1);
    assert_eq!(stats(&pair).reassembly_bytes, 0);
}

#[test]
fn fragmented_unreliable_messages_under_loss_are_delivered_only_whole() {
    const COUNT: u32 = 400;
    for seed in 0..5 {
        let link = LinkConfig {
            reorder: 0.1,
            duplicate: 0.05,
            ..lossy(0.05)
        };
        let mut pair = connected_pair(link, seed, |_| {});
        let (client, server) = (pair.client, pair.server);
        let size = |counter: u32| 1_000 + (counter as usize * 7_919) % 12_000;
        let mut delivered = BTreeSet::new();
        let mut collect = |events| {
            for data in messages_on(events, UNRELIABLE) {
                let counter = unstamp(&data);
                assert_eq!(data.len(), size(counter), "seed {seed}: message {counter}");
                assert!(delivered.insert(counter), "seed {seed}: {counter} twice");
            }
        };
        for counter in 0..COUNT {
            pair.sim
                .endpoint_mut(client)
                .send(pair.to_server, UNRELIABLE, stamped(counter, size(counter)))
                .unwrap();
            pair.sim.run_for(Duration::from_millis(10)).unwrap();
            collect(live_events(&mut pair.sim, server));
            live_events(&mut pair.sim, client);
        }
        pair.sim.run_for(Duration::from_secs(2)).unwrap();
        collect(live_events(&mut pair.sim, server));

        let stats = pair
            .sim
            .endpoint(server)
            .connection_stats(pair.to_client)
            .unwrap();
        assert_eq!(
            stats.reassembly_bytes, 0,
            "seed {seed}: buffers left behind"
        );
        let channel = &stats.recv_channels[usize::from(UNRELIABLE.0)];
        assert_eq!(channel.messages_delivered, delivered.len() as u64);
        // A message of n fragments survives 5 % loss with probability 0.95^n (n up to 12).
        assert!(
            delivered.len() as u32 > COUNT / 2,
            "seed {seed}: only {} of {COUNT} delivered",
            delivered.len()
        );
        assert!(
            channel.messages_dropped > 0,
            "seed {seed}: 5 % loss but nothing incomplete"
        );
        assert!(
            u64::from(COUNT) >= delivered.len() as u64 + channel.messages_dropped,
            "seed {seed}: {} delivered + {} dropped > {COUNT} sent",
            delivered.len(),
            channel.messages_dropped
        );
    }
}

#[test]
fn a_reliable_stream_survives_a_long_hole_in_its_first_message() {
    // Every copy of message 0's first fragment is lost for 2 s (any path can do that to one
    // datagram); everything else gets through. The sender keeps sending 200 KiB messages
    // behind the hole. Once the hole is filled, all of them must be delivered, in order.
    const COUNT: u32 = 60;
    let messages: Vec<_> = (0..COUNT).map(|counter| stamped(counter, LARGE)).collect();
    let needle = messages[0][..64].to_vec();
    let mut wire = Wire::connected(Duration::from_millis(20));
    wire.record = false;
    wire.drop_if = Some(Box::new(move |side, elapsed, data| {
        side == WireSide::Client
            && elapsed < Duration::from_secs(2)
            && data.windows(needle.len()).any(|w| w == needle)
    }));
    let mut next = 0;
    let mut delivered = Vec::new();
    while delivered.len() < COUNT as usize && wire.now - wire.connected_at < Duration::from_secs(30)
    {
        while let Some(message) = messages.get(next) {
            if wire
                .send(WireSide::Client, RELIABLE_ORDERED, message.clone())
                .is_err()
            {
                break;
            }
            next += 1;
        }
        wire.advance(Duration::from_millis(10));
        for event in wire.server_events.drain(..) {
            if let Event::Message { data, .. } = event {
                delivered.push(unstamp(&data));
            }
        }
    }
    let received = wire.server.connection_stats(wire.to_client).unwrap();
    let sent = wire.client.connection_stats(wire.to_server).unwrap();
    let expected: Vec<u32> = (0..COUNT).collect();
    assert!(
        delivered == expected,
        "{} of {COUNT} delivered; the sender counts {} acknowledged; the receiver dropped {} \
         frames as violations and holds {} bytes",
        delivered.len(),
        sent.send_channels[usize::from(RELIABLE_ORDERED.0)].messages_acked,
        received.dropped.violation,
        received.reassembly_bytes,
    );
    assert_eq!(received.dropped.total(), 0, "{:?}", received.dropped);
}
