//! Hostile fragments, lengths and varints over real loopback sockets against a running
//! `tickwire::Server`, from a raw peer that completed the handshake by hand: fragment counts of
//! 0 or above the maximum, indices at or above the count, inconsistent pieces, lengths and
//! varints that run past the end of the datagram, and a flood of first fragments of different
//! messages. Each is dropped and counted; reassembly memory stays capped and is released; the
//! session carries on and the honest client keeps exchanging messages.

#[path = "support/hostile.rs"]
mod hostile;

use hostile::{connection_of, RawPeer, Target};
use tickwire::fuzzing::forge::ForgedFrame;
use tickwire::ConnectionId;

/// Channels of the default layout.
const UNRELIABLE: u8 = 0;
const RELIABLE_ORDERED: u8 = 2;
const RELIABLE_UNORDERED: u8 = 3;
/// Reassembly budget of the flood test's server: the smallest the default layout allows (its
/// two reliable channels' 1 MiB windows).
const BUDGET: usize = 2 * 1024 * 1024;
/// Incomplete unreliable messages a channel keeps (`engine/PROTOCOL.md`, "Fragmentation").
const MAX_ASSEMBLIES: usize = 64;

fn fragment(channel: u8, id: u16, index: u32, count: u32, payload: &[u8]) -> ForgedFrame<'_> {
    ForgedFrame::Fragment {
        channel,
        id,
        index,
        count,
        payload,
    }
}

/// Sends `datagram` from `peer` and waits until the server has counted it as malformed.
async fn expect_malformed(
    target: &Target,
    session: ConnectionId,
    peer: &RawPeer,
    datagram: &[u8],
    what: &str,
) {
    let before = target.server.stats(session).unwrap();
    peer.send(datagram).await;
    let after = target
        .connection_when(session, |s| s.dropped.malformed > before.dropped.malformed)
        .await;
    assert_eq!(
        after.dropped.malformed,
        before.dropped.malformed + 1,
        "{what}"
    );
    assert_eq!(
        after.packets_received, before.packets_received,
        "{what}: accepted"
    );
    assert_eq!(
        after.reassembly_bytes, before.reassembly_bytes,
        "{what}: memory held"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_fragment_headers_and_overrunning_lengths_are_malformed() {
    let mut target = Target::start().await;
    let mut peer = RawPeer::new(target.addr, 0x7001).await;
    peer.handshake().await;
    let session = connection_of(&mut target, &peer).await;
    let piece = [0xab; 100];

    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "count 0",
            peer.data(None, &[fragment(UNRELIABLE, 1, 0, 0, &piece)]),
        ),
        (
            "count above the maximum",
            peer.data(None, &[fragment(UNRELIABLE, 1, 0, 65_537, &piece)]),
        ),
        (
            "count far above the maximum",
            peer.data(None, &[fragment(RELIABLE_ORDERED, 1, 0, u32::MAX, &piece)]),
        ),
        (
            "index at the count",
            peer.data(None, &[fragment(UNRELIABLE, 1, 4, 4, &piece)]),
        ),
        (
            "index above the count",
            peer.data(None, &[fragment(RELIABLE_UNORDERED, 1, 90, 4, &piece)]),
        ),
    ];
    for (what, datagram) in &cases {
        expect_malformed(&target, session, &peer, datagram, what).await;
    }

    // Lengths and varints running past the end of the datagram.
    let message = |peer: &mut RawPeer| {
        peer.data(
            None,
            &[
                ForgedFrame::Message {
                    channel: RELIABLE_ORDERED,
                    id: Some(0),
                    payload: &piece,
                },
                ForgedFrame::Ping,
            ],
        )
    };
    let whole = message(&mut peer);
    // Header 3, frame byte, id 2, length 1: cutting the payload short leaves the length
    // pointing past the end.
    let overrun = whole[..3 + 1 + 2 + 1 + 50].to_vec();
    expect_malformed(&target, session, &peer, &overrun, "length past the end").await;
    let mut cut_in_length = message(&mut peer);
    cut_in_length.truncate(3 + 1 + 2);
    expect_malformed(&target, session, &peer, &cut_in_length, "length missing").await;
    let mut big_index = peer.data(None, &[fragment(UNRELIABLE, 2, 300, 400, &piece)]);
    // Frame byte and id (3 bytes) after the header, then the 2-byte index varint: keep its
    // first byte only.
    big_index.truncate(3 + 3 + 1);
    expect_malformed(&target, session, &peer, &big_index, "varint past the end").await;
    let mut overflow = peer.data(None, &[ForgedFrame::Ping]);
    overflow.extend_from_slice(&[0x60 | UNRELIABLE, 0, 3]); // fragment frame with a length
    overflow.extend_from_slice(&[0xff; 11]); // an 11-byte varint
    expect_malformed(&target, session, &peer, &overflow, "varint overflow").await;
    let mut huge_length = peer.data(None, &[ForgedFrame::Ping]);
    huge_length.extend_from_slice(&[0x20 | UNRELIABLE]); // message frame with a length
    huge_length.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    huge_length.extend_from_slice(b"tiny");
    expect_malformed(&target, session, &peer, &huge_length, "2^63 length").await;

    // The session carries on: a valid packet is accepted, the honest client is fine.
    let before = target.server.stats(session).unwrap();
    let ping = peer.ping();
    peer.send(&ping).await;
    target
        .connection_when(session, |s| {
            s.packets_received == before.packets_received + 1
        })
        .await;
    target.assert_connections(&[session]);
    target.round_trip().await;
    target.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inconsistent_fragments_are_violations_and_release_their_memory() {
    let mut target = Target::start().await;
    let mut peer = RawPeer::new(target.addr, 0x7101).await;
    peer.handshake().await;
    let session = connection_of(&mut target, &peer).await;
    let piece = [0xcd; 200];

    // Each pair: a first piece the server holds, then one inconsistent with it.
    // On a reliable channel the partial message stays (its acknowledged pieces would never be
    // sent again); on an unreliable one it is dropped with the bad piece.
    let cases: Vec<(&str, [ForgedFrame<'_>; 2])> = vec![
        (
            "another count",
            [
                fragment(RELIABLE_ORDERED, 0, 0, 3, &piece),
                fragment(RELIABLE_ORDERED, 0, 1, 4, &piece),
            ],
        ),
        (
            "a middle piece of another size",
            [
                fragment(RELIABLE_UNORDERED, 0, 0, 3, &piece),
                fragment(RELIABLE_UNORDERED, 0, 1, 3, &piece[..150]),
            ],
        ),
        (
            "a last piece larger than the others",
            [
                fragment(UNRELIABLE, 5, 0, 3, &piece[..100]),
                fragment(UNRELIABLE, 5, 2, 3, &piece),
            ],
        ),
    ];
    for (what, [first, second]) in cases {
        let before = target.server.stats(session).unwrap();
        let datagram = peer.data(None, &[first]);
        peer.send(&datagram).await;
        let held = target
            .connection_when(session, |s| s.packets_received > before.packets_received)
            .await;
        assert!(held.reassembly_bytes > 0, "{what}: first piece not held");
        let datagram = peer.data(None, &[second]);
        peer.send(&datagram).await;
        let after = target
            .connection_when(session, |s| s.dropped.violation > before.dropped.violation)
            .await;
        assert_eq!(
            after.dropped.violation,
            before.dropped.violation + 1,
            "{what}"
        );
        let kept = match first {
            ForgedFrame::Fragment {
                channel: UNRELIABLE,
                payload,
                ..
            } => held.reassembly_bytes - payload.len(),
            _ => held.reassembly_bytes,
        };
        assert_eq!(after.reassembly_bytes, kept, "{what}");
    }

    // A count whose message would exceed the channel's limit (256 KiB): refused at once.
    let before = target.server.stats(session).unwrap();
    let datagram = peer.data(None, &[fragment(RELIABLE_ORDERED, 1, 0, 60_000, &piece)]);
    peer.send(&datagram).await;
    let after = target
        .connection_when(session, |s| s.dropped.violation > before.dropped.violation)
        .await;
    assert_eq!(after.reassembly_bytes, before.reassembly_bytes);

    target.assert_connections(&[session]);
    target.round_trip().await;
    target.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_first_fragments_is_capped_and_counted() {
    let mut target = Target::start_with(
        |server| server.endpoint.max_reassembly_bytes = BUDGET,
        |_| {},
    )
    .await;
    let mut peer = RawPeer::new(target.addr, 0x7201).await;
    peer.handshake().await;
    let session = connection_of(&mut target, &peer).await;
    let piece = [0xef; 1100];

    // Unreliable: 400 messages begun, none finished; at most 64 are kept per channel.
    for batch in 0..8u16 {
        for i in 0..50u16 {
            let id = batch * 50 + i;
            let datagram = peer.data(None, &[fragment(UNRELIABLE, id, 0, 4, &piece)]);
            peer.send(&datagram).await;
        }
        let want = u64::from(peer.next_pn);
        let stats = target
            .connection_when(session, |s| s.packets_received >= want)
            .await;
        assert!(
            stats.reassembly_bytes <= MAX_ASSEMBLIES * piece.len(),
            "{}",
            stats.reassembly_bytes
        );
    }
    let stats = target.server.stats(session).unwrap();
    let dropped = stats.recv_channels[usize::from(UNRELIABLE)].messages_dropped;
    assert!(
        dropped >= 400 - MAX_ASSEMBLIES as u64,
        "only {dropped} incomplete messages dropped"
    );

    // Reliable: first pieces of every id of both windows, more than the budget holds, then
    // ids beyond the window.
    for channel in [RELIABLE_ORDERED, RELIABLE_UNORDERED] {
        for batch in 0..21u16 {
            for i in 0..50u16 {
                let id = batch * 50 + i;
                let datagram = peer.data(None, &[fragment(channel, id, 0, 2, &piece)]);
                peer.send(&datagram).await;
            }
            let want = u64::from(peer.next_pn);
            let stats = target
                .connection_when(session, |s| {
                    s.packets_received + s.dropped.violation >= want || s.packets_received >= want
                })
                .await;
            assert!(
                stats.reassembly_bytes <= BUDGET,
                "{}",
                stats.reassembly_bytes
            );
        }
    }
    let stats = target.server.stats(session).unwrap();
    assert!(stats.reassembly_bytes <= BUDGET);
    assert!(
        stats.reassembly_bytes > BUDGET / 2,
        "the budget was not reached: {}",
        stats.reassembly_bytes
    );
    // Over the budget, or beyond the 1024-message window: both counted as violations.
    assert!(stats.dropped.violation >= 50, "{:#?}", stats.dropped);

    target.assert_connections(&[session]);
    target.round_trip().await;
    target.shutdown().await;
}
