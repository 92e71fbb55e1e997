//! Every channel kind keeps its guarantees in a secure session on a lossy, duplicating,
//! reordering link.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::secure::secure_pair;
use support::{hostile_link, live_events, stamped, unstamp};
use tickwire::{ChannelId, Event};

#[test]
fn all_channel_kinds_work_encrypted_under_loss() {
    let mut pair = secure_pair(hostile_link(), 51);
    let (client, server) = (pair.client, pair.server);
    const PER_CHANNEL: u32 = 200;
    for i in 0..PER_CHANNEL {
        for channel in 0..4u8 {
            let counter = u32::from(channel) * 10_000 + i;
            // One in ten messages is large enough to be fragmented.
            let len = if i % 10 == 0 { 3000 } else { 64 };
            pair.sim
                .endpoint_mut(client)
                .send(pair.to_server, ChannelId(channel), stamped(counter, len))
                .unwrap();
        }
        pair.sim.run_for(Duration::from_millis(10)).unwrap();
    }
    let mut by_channel: Vec<Vec<u32>> = vec![Vec::new(); 4];
    pair.sim
        .run_until(Duration::from_secs(30), |sim| {
            for event in live_events(sim, server) {
                if let Event::Message { channel, data, .. } = event {
                    by_channel[usize::from(channel.0)].push(unstamp(&data) % 10_000);
                }
            }
            let _ = live_events(sim, client);
            by_channel[2].len() == PER_CHANNEL as usize
                && by_channel[3].len() == PER_CHANNEL as usize
        })
        .unwrap();
    let all: Vec<u32> = (0..PER_CHANNEL).collect();
    // Unreliable: a subset, never twice.
    let unreliable: HashSet<u32> = by_channel[0].iter().copied().collect();
    assert_eq!(
        unreliable.len(),
        by_channel[0].len(),
        "unreliable duplicate"
    );
    assert!(!by_channel[0].is_empty());
    // Sequenced: strictly increasing.
    assert!(
        by_channel[1].windows(2).all(|w| w[0] < w[1]),
        "sequenced out of order"
    );
    assert!(!by_channel[1].is_empty());
    // Reliable ordered: everything, in order.
    assert_eq!(by_channel[2], all);
    // Reliable unordered: everything, once.
    let mut unordered = by_channel[3].clone();
    unordered.sort_unstable();
    assert_eq!(unordered, all);
    let stats = pair
        .sim
        .endpoint(server)
        .connection_stats(pair.to_client)
        .unwrap();
    assert_eq!(
        stats.dropped.decrypt_failed, 0,
        "honest packets always authenticate"
    );
    assert!(stats.dropped.duplicate > 0, "the link duplicated packets");
}
