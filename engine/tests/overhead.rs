//! Wire overhead per small message: the bytes a datagram carries beyond a 64-byte payload,
//! measured on the datagrams themselves, one way, both ways (acks piggybacked), and reliable.
//!
//! Run with `--nocapture` to see the figures.

mod support;

use std::time::Duration;

use bytes::Bytes;
use tickwire::ChannelId;

use support::{stamped, Wire, WireSide as Side};

const UNRELIABLE: ChannelId = ChannelId(0);
const RELIABLE_ORDERED: ChannelId = ChannelId(2);
const PAYLOAD: usize = 64;

/// Sizes of the datagrams `side` sent that carry `payload`.
fn carrying(wire: &Wire, side: Side, payload: &[u8]) -> Vec<usize> {
    wire.log
        .iter()
        .filter(|(from, data)| *from == side && data.windows(payload.len()).any(|w| w == payload))
        .map(|(_, data)| data.len())
        .collect()
}

/// Overhead (datagram size minus payload) of every datagram that carried one of `payloads`.
fn overheads(wire: &Wire, payloads: &[(Side, Bytes)], once: bool) -> Vec<usize> {
    let mut out = Vec::new();
    for (side, payload) in payloads {
        let sizes = carrying(wire, *side, payload);
        assert!(!sizes.is_empty(), "a message was never sent");
        if once {
            assert_eq!(sizes.len(), 1, "a message travelled in several datagrams");
        }
        out.extend(sizes.into_iter().map(|size| size - payload.len()));
    }
    out
}

fn report(name: &str, overheads: &[usize]) -> usize {
    let max = overheads.iter().copied().max().unwrap_or(0);
    let min = overheads.iter().copied().min().unwrap_or(0);
    let mean = overheads.iter().sum::<usize>() as f64 / overheads.len() as f64;
    println!(
        "{name}: {} datagrams, overhead per {PAYLOAD}-byte message min {min}, mean {mean:.2}, max {max} bytes",
        overheads.len()
    );
    max
}

#[test]
fn one_way_unreliable_message_costs_at_most_5_bytes() {
    let mut wire = Wire::connected(Duration::from_millis(10));
    let mut payloads = Vec::new();
    // 40 messages 10 ms apart: the peer only acknowledges (nothing for the sender to ack).
    for counter in 0..40 {
        let payload = stamped(counter, PAYLOAD);
        wire.send(Side::Client, UNRELIABLE, payload.clone())
            .unwrap();
        payloads.push((Side::Client, payload));
        wire.advance(Duration::from_millis(10));
    }
    let max = report("unreliable one way", &overheads(&wire, &payloads, true));
    assert!(max <= 5, "{max} bytes of overhead");
}

#[test]
fn two_way_unreliable_message_with_piggybacked_ack_costs_at_most_12_bytes() {
    // Both sides send every `interval`, the server `offset` after the client, so that every
    // datagram carries an acknowledgement (with an ack delay when the offset is 1 ms or more).
    for (interval, offset) in [(1, 0), (2, 1), (4, 3)] {
        let mut wire = Wire::connected(Duration::from_millis(10));
        let (interval, offset) = (
            Duration::from_millis(interval),
            Duration::from_millis(offset),
        );
        let mut payloads = Vec::new();
        for counter in 0..100 {
            let payload = stamped(counter, PAYLOAD);
            wire.send(Side::Client, UNRELIABLE, payload.clone())
                .unwrap();
            payloads.push((Side::Client, payload));
            wire.advance(offset);
            let payload = stamped(1_000_000 + counter, PAYLOAD);
            wire.send(Side::Server, UNRELIABLE, payload.clone())
                .unwrap();
            payloads.push((Side::Server, payload));
            wire.advance(interval - offset);
        }
        // Skip the first exchanges, before both directions are flowing.
        let overheads = overheads(&wire, &payloads[20..], true);
        let name = format!("unreliable both ways every {interval:?}, offset {offset:?}");
        let max = report(&name, &overheads);
        assert!(max <= 12, "{name}: {max} bytes of overhead");
        let with_ack = overheads.iter().filter(|&&o| o > 5).count();
        assert!(
            with_ack * 2 > overheads.len(),
            "{name}: acks were not piggybacked ({with_ack} of {})",
            overheads.len()
        );
    }
}

#[test]
fn one_way_reliable_message_costs_at_most_12_bytes() {
    let mut wire = Wire::connected(Duration::from_millis(10));
    let mut payloads = Vec::new();
    for counter in 0..40 {
        let payload = stamped(counter, PAYLOAD);
        wire.send(Side::Client, RELIABLE_ORDERED, payload.clone())
            .unwrap();
        payloads.push((Side::Client, payload));
        wire.advance(Duration::from_millis(10));
    }
    wire.advance(Duration::from_millis(200));
    let max = report("reliable one way", &overheads(&wire, &payloads, false));
    assert!(max <= 12, "{max} bytes of overhead");
    let stats = wire.client.connection_stats(wire.to_server).unwrap();
    assert_eq!(stats.send_channels[2].messages_acked, 40);
}
