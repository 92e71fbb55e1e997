//! Wire overhead per small message in secure sessions: the bytes a datagram carries beyond a
//! 64-byte payload, measured on the datagrams themselves (the payload is encrypted, so the
//! datagrams are picked by sender and size). Goal: at most 22 bytes per message one way.
//!
//! Run with `--nocapture` to see the figures.

mod support;

use std::time::Duration;

use support::secure::{secure, token};
use support::{stamped, Wire, WireSide as Side};
use tickwire::ChannelId;

const UNRELIABLE: ChannelId = ChannelId(0);
const RELIABLE_ORDERED: ChannelId = ChannelId(2);
const PAYLOAD: usize = 64;

fn secure_wire() -> Wire {
    let token = token();
    Wire::connected_with(Duration::from_millis(10), |c| secure(c, &token))
}

/// Overheads of the datagrams `side` sent that are large enough to carry a message.
fn overheads(wire: &Wire, side: Side) -> Vec<usize> {
    wire.log
        .iter()
        .filter(|(from, data)| *from == side && data.len() > PAYLOAD)
        .map(|(_, data)| data.len() - PAYLOAD)
        .collect()
}

fn report(name: &str, overheads: &[usize]) -> usize {
    let max = overheads.iter().copied().max().unwrap_or(0);
    let min = overheads.iter().copied().min().unwrap_or(0);
    println!(
        "secure {name}: {} datagrams, overhead per {PAYLOAD}-byte message min {min}, max {max} bytes",
        overheads.len()
    );
    max
}

fn one_way(channel: ChannelId) -> Vec<usize> {
    let mut wire = secure_wire();
    for counter in 0..40 {
        wire.send(Side::Client, channel, stamped(counter, PAYLOAD))
            .unwrap();
        wire.advance(Duration::from_millis(10));
    }
    wire.advance(Duration::from_millis(200));
    overheads(&wire, Side::Client)
}

#[test]
fn one_way_unreliable_message_costs_at_most_21_bytes() {
    let overheads = one_way(UNRELIABLE);
    assert_eq!(overheads.len(), 40, "one datagram per message");
    let max = report("unreliable one way", &overheads);
    // 3-byte header, 1-byte frame, 16-byte tag (+1 for an ack delay never needed one way).
    assert!(max <= 21, "{max} bytes of overhead");
}

#[test]
fn one_way_reliable_message_costs_at_most_22_bytes() {
    let overheads = one_way(RELIABLE_ORDERED);
    assert!(overheads.len() >= 40);
    let max = report("reliable one way", &overheads);
    assert!(max <= 22, "{max} bytes of overhead");
}

#[test]
fn two_way_unreliable_message_with_piggybacked_ack_costs_at_most_28_bytes() {
    let mut wire = secure_wire();
    for counter in 0..100 {
        wire.send(Side::Client, UNRELIABLE, stamped(counter, PAYLOAD))
            .unwrap();
        wire.advance(Duration::from_millis(1));
        wire.send(Side::Server, UNRELIABLE, stamped(counter, PAYLOAD))
            .unwrap();
        wire.advance(Duration::from_millis(1));
    }
    let mut all = overheads(&wire, Side::Client);
    all.extend(overheads(&wire, Side::Server));
    let max = report("unreliable both ways, acks piggybacked", &all);
    // The unsecured 12 plus the tag.
    assert!(max <= 28, "{max} bytes of overhead");
}

#[test]
fn idle_keepalives_carry_no_session_tag() {
    let mut wire = secure_wire();
    wire.advance(Duration::from_secs(5));
    let sizes: Vec<usize> = wire
        .log
        .iter()
        .filter(|(from, _)| *from == Side::Client)
        .map(|(_, data)| data.len())
        .collect();
    assert!(sizes.len() >= 4, "keepalives were sent");
    let max = sizes.iter().copied().max().unwrap_or(0);
    println!(
        "secure idle: {} keepalive datagrams, at most {max} bytes",
        sizes.len()
    );
    // Header with an ack and a delay (12), a ping (1) and the tag (16): no 8-byte session tag.
    assert!(max <= 29, "{max} bytes");
}
