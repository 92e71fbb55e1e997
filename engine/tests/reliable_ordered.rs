//! Reliable-ordered delivery under a hostile network: exactly once, in order, for many seeds.

mod support;

use std::time::Duration;

use bytes::Bytes;
use tickwire::{ChannelId, Event};

use support::{connected_pair, hostile_link};

const RELIABLE_ORDERED: ChannelId = ChannelId(2);

fn run(seed: u64, messages: u32) {
    let mut pair = connected_pair(hostile_link(), seed, |_| {});
    let (client, server, conn) = (pair.client, pair.server, pair.to_server);
    let mut next_to_send = 0u32;
    let mut received = Vec::with_capacity(messages as usize);
    let done = pair
        .sim
        .run_until(Duration::from_secs(3_600), |sim| {
            // Offer messages as fast as the send buffer takes them.
            while next_to_send < messages {
                // 4-byte counter plus 0..120 bytes of padding: hundreds of packets per run.
                let mut payload = next_to_send.to_be_bytes().to_vec();
                payload.resize(4 + (next_to_send as usize * 7919) % 120, 0xab);
                let payload = Bytes::from(payload);
                match sim
                    .endpoint_mut(client)
                    .send(conn, RELIABLE_ORDERED, payload)
                {
                    Ok(_) => next_to_send += 1,
                    Err(_) => break,
                }
            }
            while let Some(event) = sim.poll_event(server) {
                match event {
                    Event::Message { channel, data, .. } => {
                        assert_eq!(channel, RELIABLE_ORDERED);
                        let value = u32::from_be_bytes(data[..4].try_into().unwrap());
                        received.push(value);
                    }
                    Event::Disconnected { reason, .. } => {
                        panic!("seed {seed}: disconnected: {reason}")
                    }
                    _ => {}
                }
            }
            while let Some(event) = sim.poll_event(client) {
                if let Event::Disconnected { reason, .. } = event {
                    panic!("seed {seed}: client disconnected: {reason}");
                }
            }
            received.len() as u32 >= messages
        })
        .unwrap();
    assert!(
        done,
        "seed {seed}: only {} of {messages} delivered",
        received.len()
    );
    let expected: Vec<u32> = (0..messages).collect();
    assert_eq!(received, expected, "seed {seed}: not exactly once in order");
}

#[test]
fn ten_thousand_messages_under_loss_duplication_and_reordering_for_fifty_seeds() {
    for seed in 0..50 {
        run(seed, 10_000);
    }
}
