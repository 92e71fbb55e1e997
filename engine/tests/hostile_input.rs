//! Hostile and malformed datagrams fed straight into endpoints: empty, oversized, truncated at
//! every byte, absurd lengths and varints, bad fragment headers, acks of packets never sent,
//! and random bytes. Nothing may panic, every drop is counted, unknown senders get no reply and
//! no state, and an established session keeps working.

mod support;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed, TestRunner};
use tickwire::sim::LinkConfig;
use tickwire::{ChannelId, Config, ConnectionStats, DisconnectReason, Endpoint, Event};

use support::{
    client_addr, connected_pair, drain_events, drain_transmits, reliable_round_trip, server_addr,
    Captured, HandPair, Pair,
};

// Wire layout (engine/src/wire/packet.rs and frame.rs). A data packet is a first byte
// (`0b000A D000`: A = ack header present, D = ack delay present), a 16-bit packet number, an
// optional ack (largest u16, bits u32, delay varint) and frames. A frame's first byte is
// `TT L CCCCC`: type (0 message, 1 fragment, 2 control), explicit length, channel.
const KIND_REQUEST: u8 = 1;
const KIND_RESPONSE: u8 = 3;
const KIND_DISCONNECT: u8 = 6;
const FRAME_MESSAGE: u8 = 0x00;
const FRAME_FRAGMENT: u8 = 0x40;
const FRAME_LENGTH: u8 = 0x20;
const RELIABLE: ChannelId = ChannelId(2);

fn unknown_addr() -> SocketAddr {
    "10.9.9.9:999".parse().unwrap()
}

// ---- fixed cases ----

#[test]
fn an_empty_datagram_is_dropped_and_counted() {
    let mut pair = established(1);
    for from in [unknown_addr(), client_addr()] {
        let before = pair.sim.endpoint(pair.server).total_dropped();
        inject(&mut pair, from, Bytes::new());
        let after = pair.sim.endpoint(pair.server).total_dropped();
        assert_eq!(after.malformed, before.malformed + 1);
        assert_eq!(after.total(), before.total() + 1);
    }
    assert_no_reply_to(&mut pair, unknown_addr());
    assert!(reliable_round_trip(&mut pair, "after empty datagrams"));
}

#[test]
fn an_oversized_datagram_is_dropped_and_counted() {
    let mut pair = established(2);
    for from in [unknown_addr(), client_addr()] {
        let before = pair.sim.endpoint(pair.server).total_dropped();
        inject(
            &mut pair,
            from,
            Bytes::from(vec![0; Endpoint::MAX_DATAGRAM + 1]),
        );
        let after = pair.sim.endpoint(pair.server).total_dropped();
        assert_eq!(after.oversized, before.oversized + 1);
        assert_eq!(after.total(), before.total() + 1);
    }
    assert_no_reply_to(&mut pair, unknown_addr());
    assert!(reliable_round_trip(&mut pair, "after oversized datagrams"));
}

#[test]
fn malformed_data_packets_from_the_client_are_dropped_and_the_session_survives() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("header cut short", vec![0x00, 0x01]),
        ("reserved header bits", vec![0x01, 0, 0, 0x80]),
        ("ack delay without ack", vec![0x08, 0, 0, 0x80]),
        ("ack header cut short", vec![0x10, 0, 0, 0, 0]),
        (
            "ack delay varint runs past the end",
            vec![0x18, 0, 0, 0, 0, 0, 0, 0, 0, 0xff],
        ),
        ("fragment count 0", fragment(3, 0, 0)),
        ("fragment index = count", fragment(3, 5, 5)),
        ("fragment index > count", fragment(3, 9, 5)),
        ("fragment count 2^40", fragment(3, 0, 1 << 40)),
        (
            "fragment index and count 2^63",
            fragment(3, 1 << 62, 1 << 63),
        ),
        (
            "message length 2^62",
            frames(&[
                &[FRAME_MESSAGE | FRAME_LENGTH | 2, 0, 1],
                &varint(1 << 62),
                b"x",
            ]),
        ),
        (
            "message length one past the end",
            frames(&[&[FRAME_MESSAGE | FRAME_LENGTH | 2, 0, 1, 4], b"abc"]),
        ),
        (
            "length varint runs past the end",
            frames(&[&[FRAME_MESSAGE | FRAME_LENGTH | 2, 0, 1, 0xff, 0xff]]),
        ),
        (
            "length varint of 11 bytes",
            frames(&[&[FRAME_MESSAGE | FRAME_LENGTH | 2, 0, 1], &[0xff; 10], &[1]]),
        ),
        (
            "unknown channel",
            frames(&[&[FRAME_MESSAGE | 9, 0, 1, b'x']]),
        ),
        (
            "escaped unknown channel",
            frames(&[&[FRAME_MESSAGE | 31, 200, 0, 1]]),
        ),
        (
            "escaped channel byte missing",
            frames(&[&[FRAME_MESSAGE | 31]]),
        ),
        ("reliable id cut short", frames(&[&[FRAME_MESSAGE | 2, 0]])),
        ("unknown frame type", frames(&[&[0xc0, 1, 2, 3]])),
        ("unknown control", frames(&[&[0x85]])),
        ("control with length flag", frames(&[&[0xa0]])),
        ("ack frame cut short", frames(&[&[0x81, 0, 0, 0]])),
        (
            "valid message, then garbage",
            frames(&[&[FRAME_MESSAGE | FRAME_LENGTH | 2, 0, 1, 2], b"ok", &[0xc0]]),
        ),
    ];
    let mut pair = established(3);
    let delivered_before = delivered(&pair);
    for (name, body) in cases {
        let pn = fresh_packet_number(&pair);
        let datagram = with_packet_number(body, pn);
        let before = server_conn(&pair);
        inject(&mut pair, client_addr(), datagram);
        let after = server_conn(&pair);
        assert_eq!(
            after.dropped.malformed,
            before.dropped.malformed + 1,
            "{name}: not counted as malformed"
        );
        assert_eq!(
            after.packets_received, before.packets_received,
            "{name}: accepted"
        );
    }
    assert_no_reply_to(&mut pair, unknown_addr());
    assert_eq!(
        delivered(&pair),
        delivered_before,
        "a malformed packet delivered a message"
    );
    assert!(reliable_round_trip(&mut pair, "after malformed packets"));
}

#[test]
fn acks_of_packets_never_sent_are_dropped_and_the_session_survives() {
    let mut pair = established(4);
    let server_next = server_conn(&pair).packets_sent;
    for ahead in [0u64, 1, 1_000, 30_000] {
        let largest = (server_next + ahead) as u16;
        let mut body = vec![0x10, 0, 0];
        body.extend_from_slice(&largest.to_be_bytes());
        body.extend_from_slice(&u32::MAX.to_be_bytes());
        body.push(0x80); // a ping, so the packet would be ack-eliciting
        let pn = fresh_packet_number(&pair);
        let before = server_conn(&pair);
        inject(&mut pair, client_addr(), with_packet_number(body, pn));
        let after = server_conn(&pair);
        assert_eq!(
            after.dropped.bogus_ack,
            before.dropped.bogus_ack + 1,
            "ack of {ahead} past the next packet"
        );
        // The forged ack is ignored; the rest of the packet (a ping) stands.
        assert_eq!(after.packets_received, before.packets_received + 1);
        assert_eq!(after.packets_acked, before.packets_acked);

        // The same ack in an ack-block frame after a ping: counted the same way.
        let largest = (server_conn(&pair).packets_sent + ahead) as u16;
        let mut body = vec![0x00, 0, 0, 0x80, 0x81];
        body.extend_from_slice(&largest.to_be_bytes());
        body.extend_from_slice(&u32::MAX.to_be_bytes());
        let pn = fresh_packet_number(&pair);
        let before = server_conn(&pair);
        inject(&mut pair, client_addr(), with_packet_number(body, pn));
        let after = server_conn(&pair);
        assert_eq!(
            after.dropped.bogus_ack,
            before.dropped.bogus_ack + 1,
            "ack frame of {ahead} past the next packet"
        );
        assert_eq!(after.packets_received, before.packets_received + 1);
        assert_eq!(after.packets_acked, before.packets_acked);
    }
    assert!(reliable_round_trip(&mut pair, "after bogus acks"));
}

#[test]
fn handshake_packets_from_the_client_address_leave_the_session_alone() {
    let mut pair = established(5);
    let nonce_guess = 0x1234_5678_9abc_def1u64;
    let mut packets = Vec::new();
    for kind in [2u8, 4, 5, 6] {
        let mut packet = vec![kind << 5];
        packet.extend_from_slice(&nonce_guess.to_be_bytes());
        match kind {
            2 => packet.extend_from_slice(&[7; 24]), // challenge: cookie
            5 => packet.push(1),                     // reject: reason
            6 => packet.extend_from_slice(&[0, 9]),  // disconnect: code
            _ => {}
        }
        packets.push(Bytes::from(packet));
    }
    for packet in packets {
        let before = pair.sim.endpoint(pair.server).total_dropped();
        inject(&mut pair, client_addr(), packet.clone());
        let after = pair.sim.endpoint(pair.server).total_dropped();
        assert_eq!(after.unexpected, before.unexpected + 1, "{packet:x?}");
        assert_eq!(pair.sim.endpoint(pair.server).connection_count(), 1);
    }
    assert!(reliable_round_trip(
        &mut pair,
        "after stray handshake packets"
    ));
}

#[test]
fn malformed_datagrams_do_not_keep_a_dead_session_alive() {
    let mut pair = established(12);
    let idle = Config::default().idle_timeout;
    for (from, to) in [
        (client_addr(), server_addr()),
        (server_addr(), client_addr()),
    ] {
        let dead = LinkConfig {
            loss: 1.0,
            ..LinkConfig::default()
        };
        pair.sim.network_mut().set_link(from, to, dead).unwrap();
    }
    let cut = pair.sim.elapsed();
    let pn = fresh_packet_number(&pair);
    let garbage = [
        Bytes::new(),
        Bytes::from_static(&[0x00, 0x01]),
        with_packet_number(fragment(3, 0, 0), pn),
        with_packet_number(frames(&[&[0xc0]]), pn + 1),
    ];
    let (server, to_client) = (pair.server, pair.to_client);
    let mut last_fed = cut;
    let mut fed = 0usize;
    let mut ended = None;
    pair.sim
        .run_until(idle * 3, |sim| {
            let elapsed = sim.elapsed();
            if ended.is_none() && elapsed >= last_fed + Duration::from_millis(300) {
                let now = sim.now();
                let datagram = garbage[fed % garbage.len()].clone();
                sim.endpoint_mut(server)
                    .handle_datagram(now, client_addr(), datagram);
                last_fed = elapsed;
                fed += 1;
            }
            while let Some(event) = sim.poll_event(server) {
                if let Event::Disconnected { connection, reason } = event {
                    ended = Some((connection, reason, elapsed));
                }
            }
            ended.is_some()
        })
        .unwrap();
    let (connection, reason, at) = ended.expect("the server never timed out");
    assert_eq!((connection, reason), (to_client, DisconnectReason::Timeout));
    assert!(fed >= 20, "only {fed} datagrams fed");
    assert!(
        at <= cut + idle + support::TIMER_SLACK,
        "garbage kept the session alive until {at:?} (cut at {cut:?})"
    );
}

// ---- every truncation of every packet kind ----

#[test]
fn every_truncation_from_unknown_addresses_gets_no_reply_and_no_state() {
    let captured = capture(true);
    assert_kinds_covered(&captured);
    let mut pair = established(6);
    let mut fresh = Endpoint::new(server_config(60), pair.sim.now()).unwrap();
    let now = pair.sim.now();
    let mut fed = 0u64;
    for datagram in &captured {
        for cut in 0..=datagram.data.len() {
            let prefix = datagram.data.slice(..cut);
            let full_request = cut == datagram.data.len() && kind_of(&prefix) == Some(KIND_REQUEST);
            // A fresh server endpoint with no connections.
            let before = fresh.total_dropped().total();
            fresh.handle_datagram(now, unknown_addr(), prefix.clone());
            let replies = drain_transmits(&mut fresh, now);
            check_unknown_sender(
                &replies,
                full_request,
                cut,
                before,
                fresh.total_dropped().total(),
            );
            assert_eq!(fresh.connection_count(), 0);
            assert!(drain_events(&mut fresh).is_empty());
            // The established server.
            let server = pair.sim.endpoint_mut(pair.server);
            let before = server.total_dropped().total();
            server.handle_datagram(now, unknown_addr(), prefix);
            let replies = drain_transmits(server, now);
            let after = server.total_dropped().total();
            check_unknown_sender(&replies, full_request, cut, before, after);
            assert_eq!(server.connection_count(), 1);
            assert!(server.poll_event().is_none());
            fed += 1;
        }
    }
    assert!(fed > 5_000, "only {fed} truncations");
    assert!(reliable_round_trip(&mut pair, "after every truncation"));
}

#[test]
fn every_truncation_replayed_from_the_client_address_leaves_the_session_working() {
    let captured = capture(true);
    // The target is the very session that produced the datagrams (same seeds, same script), so
    // the replays carry its nonce and packet numbers it has already seen.
    let mut target = scripted_session(false);
    let server_conn_id = server_connection(&target);
    let mut fed = 0u64;
    for datagram in &captured {
        let kind = kind_of(&datagram.data);
        for cut in 0..=datagram.data.len() {
            let full = cut == datagram.data.len();
            if full && kind == Some(KIND_DISCONNECT) && datagram.from == client_addr() {
                continue; // the client's own close, replayed whole, is a real close
            }
            let prefix = datagram.data.slice(..cut);
            let before = target.server.total_dropped().total();
            let received = conn_stats(&target.server, server_conn_id).packets_received;
            target
                .server
                .handle_datagram(target.now, client_addr(), prefix);
            let replies = drain_transmits(&mut target.server, target.now);
            let dropped = target.server.total_dropped().total() - before;
            let accepted = conn_stats(&target.server, server_conn_id).packets_received - received;
            // Whole requests and responses get their normal handshake reply; everything else
            // is either dropped and counted or (never here) accepted.
            let answered = full && matches!(kind, Some(KIND_REQUEST | KIND_RESPONSE));
            // (A whole request from the rejected stranger is counted and answered.)
            assert!(
                (answered && replies.len() == 1 && dropped <= 1)
                    || (!answered && replies.is_empty() && dropped + accepted == 1),
                "{:?} cut at {cut}: dropped {dropped}, accepted {accepted}, replies {}",
                datagram.data.get(..cut.min(16)),
                replies.len()
            );
            for (to, _) in &replies {
                assert_eq!(*to, client_addr());
            }
            for event in drain_events(&mut target.server) {
                assert!(
                    !matches!(event, Event::Disconnected { .. }),
                    "{:?} cut at {cut} ended the session: {event:?}",
                    datagram.data.get(..cut.min(16))
                );
            }
            fed += 1;
        }
    }
    assert!(fed > 5_000, "only {fed} truncations");
    assert_eq!(target.server.connection_count(), 1);
    assert!(hand_round_trip(&mut target, "after replays"));
}

/// Every truncation of every data packet the client sent, re-stamped with a packet number the
/// server has not seen, so that frame decoding and the channels run on it. A truncation that
/// still decodes is a well-formed packet with a shorter last frame; it may be accepted. Nothing
/// panics, each datagram is counted exactly once (dropped or accepted), and anything that does
/// not decode never disturbs the session.
#[test]
fn truncated_data_packets_with_fresh_packet_numbers_never_panic() {
    let captured = capture(false);
    let data: Vec<&Captured> = captured
        .iter()
        .filter(|d| d.from == client_addr() && kind_of(&d.data) == Some(0))
        .collect();
    assert!(data.len() >= 8, "only {} data packets captured", data.len());
    let mut accepted_total = 0;
    for datagram in data {
        let mut target = scripted_session(false);
        let conn = server_connection(&target);
        let mut next_pn = client_next_packet_number(&target);
        for cut in 3..=datagram.data.len() {
            let mut bytes = datagram.data[..cut].to_vec();
            bytes[1..3].copy_from_slice(&(next_pn as u16).to_be_bytes());
            let before = datagram_drops(&target.server);
            let received = conn_stats(&target.server, conn).packets_received;
            target
                .server
                .handle_datagram(target.now, client_addr(), bytes.into());
            let dropped = datagram_drops(&target.server) - before;
            let accepted = conn_stats(&target.server, conn).packets_received - received;
            assert_eq!(
                dropped + accepted,
                1,
                "cut at {cut}: counted {dropped} + {accepted}"
            );
            let ended: Vec<DisconnectReason> = drain_events(&mut target.server)
                .into_iter()
                .filter_map(|e| match e {
                    Event::Disconnected { reason, .. } => Some(reason),
                    _ => None,
                })
                .collect();
            assert!(
                ended.is_empty(),
                "cut at {cut} ended the session: {ended:?}"
            );
            if accepted == 1 {
                accepted_total += 1;
                // The real client now uses up that packet number (the server drops its copy
                // as a duplicate), so that the server's acks stay genuine.
                next_pn = burn_packet_number(&mut target, next_pn);
            }
        }
        assert!(hand_round_trip(&mut target, "after fresh truncations"));
    }
    assert!(accepted_total > 0);
}

// ---- well-formed spoofed packets ----

/// A 3-byte data packet (header only, no frames, no ack) is never built by Tickwire: it is
/// dropped as malformed, whatever its packet number.
#[test]
fn an_empty_data_packet_is_malformed() {
    let mut pair = established(7);
    let conn = pair.to_client;
    let before = pair
        .sim
        .endpoint(pair.server)
        .connection_stats(conn)
        .unwrap()
        .dropped
        .malformed;
    let pn = fresh_packet_number(&pair) + 20_000;
    inject(&mut pair, client_addr(), with_packet_number(Vec::new(), pn));
    let after = pair
        .sim
        .endpoint(pair.server)
        .connection_stats(conn)
        .unwrap()
        .dropped
        .malformed;
    assert_eq!(after, before + 1);
    assert!(reliable_round_trip(&mut pair, "after an empty packet"));
}

/// A spoofed ping from the client's address with a packet number 20 000 ahead pushes the
/// server's packet-number window past the real client, whose packets then look too old. The
/// server moves its window back once a steady stream of valid packets arrives below it, and the
/// session carries on.
#[test]
fn a_spoofed_packet_number_jump_does_not_kill_the_session() {
    let mut pair = established(7);
    let pn = fresh_packet_number(&pair) + 20_000;
    // Header (no ack) and one ping frame.
    inject(
        &mut pair,
        client_addr(),
        with_packet_number(vec![0x00, 0, 0, 0x80], pn),
    );
    assert!(reliable_round_trip(&mut pair, "after a packet-number jump"));
    let stats = pair
        .sim
        .endpoint(pair.server)
        .connection_stats(pair.to_client)
        .unwrap();
    assert_eq!(stats.resyncs, 1);
}

/// A fragment with an empty payload that is not the last piece breaks a channel rule: the frame
/// is dropped and counted as a violation, and the session carries on.
#[test]
fn a_spoofed_inconsistent_fragment_does_not_kill_the_session() {
    let mut pair = established(8);
    let pn = fresh_packet_number(&pair);
    // Channel 0 (unreliable) fragment 0 of 3, empty payload, implicit length.
    let body = frames(&[&[FRAME_FRAGMENT, 0, 7, 0, 3]]);
    inject(&mut pair, client_addr(), with_packet_number(body, pn));
    let ended = support::sim_events(&mut pair.sim, pair.server);
    assert!(
        !ended
            .iter()
            .any(|e| matches!(e, Event::Disconnected { .. })),
        "{ended:?}"
    );
    let stats = pair
        .sim
        .endpoint(pair.server)
        .connection_stats(pair.to_client)
        .unwrap();
    assert_eq!(stats.dropped.violation, 1);
    assert!(reliable_round_trip(&mut pair, "after a bad fragment"));
}

// ---- random bytes ----

#[test]
fn random_bytes_from_unknown_addresses_get_no_reply_and_no_state() {
    let pair = RefCell::new(established(9));
    let cases = Cell::new(0u32);
    let mut runner = runner(2_000, 0x686f_7374);
    let strategy = (garbage(), 0usize..UNKNOWN_SENDERS.len());
    runner
        .run(&strategy, |(bytes, sender)| {
            cases.set(cases.get() + 1);
            let mut pair = pair.borrow_mut();
            let from: SocketAddr = UNKNOWN_SENDERS[sender].parse().unwrap();
            let now = pair.sim.now();
            let node = pair.server;
            let server = pair.sim.endpoint_mut(node);
            let before = server.total_dropped().total();
            let looks_like_request = bytes.len() >= 1_200 && bytes[0] == KIND_REQUEST << 5;
            let size = bytes.len();
            server.handle_datagram(now, from, bytes.into());
            let replies = drain_transmits(server, now);
            prop_assert_eq!(server.connection_count(), 1);
            prop_assert!(server.poll_event().is_none());
            if looks_like_request {
                // Formally a connection request (with a wrong version or id): at most one
                // small reply, never larger than the datagram.
                prop_assert!(replies.len() <= 1);
                prop_assert!(replies.iter().all(|(to, r)| *to == from && r.len() <= size));
            } else {
                prop_assert!(
                    replies.is_empty() || (size >= 4 && is_no_session(&replies)),
                    "{} replies to garbage",
                    replies.len()
                );
                prop_assert_eq!(server.total_dropped().total(), before + 1);
            }
            Ok(())
        })
        .unwrap();
    assert!(cases.get() >= 2_000, "only {} cases ran", cases.get());
    let mut pair = pair.into_inner();
    assert!(reliable_round_trip(&mut pair, "after random bytes"));
}

/// Random bytes from the client's address, each case on a fresh session: no panic, each
/// datagram counted once (dropped, or accepted if it happens to be well-formed), no state for
/// anyone else, and a dropped datagram never ends the session.
#[test]
fn random_bytes_from_the_client_address_never_panic_and_are_counted() {
    let cases = Cell::new(0u32);
    let mut runner = runner(2_000, 0x636c_6965);
    runner
        .run(&garbage(), |bytes| {
            cases.set(cases.get() + 1);
            let mut pair = established(10);
            let before = datagram_drops(pair.sim.endpoint(pair.server));
            let received = server_conn(&pair).packets_received;
            inject(&mut pair, client_addr(), bytes.into());
            let endpoint = pair.sim.endpoint(pair.server);
            let dropped = datagram_drops(endpoint) - before;
            let accepted = endpoint
                .connection_stats(pair.to_client)
                .map_or(1, |s| s.packets_received - received);
            prop_assert_eq!(endpoint.connection_count(), 1);
            prop_assert!(dropped + accepted <= 1);
            if accepted == 0 {
                prop_assert_eq!(dropped, 1);
                prop_assert!(endpoint.is_connected(pair.to_client));
                prop_assert!(reliable_round_trip(&mut pair, "after garbage"));
            }
            Ok(())
        })
        .unwrap();
    assert!(cases.get() >= 2_000, "only {} cases ran", cases.get());
}

/// As above, but requiring that the session survives whatever the bytes: random bytes biased
/// towards data packets find the two bugs above.
#[test]
fn random_bytes_from_the_client_address_never_kill_the_session() {
    let mut runner = runner(2_000, 0x6b69_6c6c);
    runner
        .run(&garbage(), |bytes| {
            let mut pair = established(11);
            inject(&mut pair, client_addr(), bytes.into());
            let ended: Vec<Event> = support::sim_events(&mut pair.sim, pair.server)
                .into_iter()
                .filter(|e| matches!(e, Event::Disconnected { .. }))
                .collect();
            prop_assert!(ended.is_empty(), "{:?}", ended);
            prop_assert!(reliable_round_trip(&mut pair, "after garbage"));
            Ok(())
        })
        .unwrap();
}

// ---- helpers: targets ----

/// Datagrams dropped whole: not counting the parts of accepted datagrams that were dropped
/// (a frame breaking a channel rule, an ack naming a packet never sent).
fn datagram_drops(endpoint: &Endpoint) -> u64 {
    let dropped = endpoint.total_dropped();
    dropped.total() - dropped.violation - dropped.bogus_ack
}

const UNKNOWN_SENDERS: [&str; 4] = [
    "10.9.9.9:999",
    "10.0.0.2:40001",
    "10.0.0.1:7777",
    "[2001:db8::1]:40000",
];

fn server_config(seed: u64) -> Config {
    Config {
        seed: Some(seed),
        ..Config::server()
    }
}

/// A connected pair on a perfect link, with some traffic behind it.
fn established(seed: u64) -> Pair {
    let mut pair = connected_pair(LinkConfig::default(), seed, |_| {});
    assert!(reliable_round_trip(&mut pair, "warm-up"));
    pair
}

/// Feeds a datagram to the server of `pair` at the current instant, then lets the simulation
/// deliver whatever follows at that instant.
fn inject(pair: &mut Pair, from: SocketAddr, datagram: Bytes) {
    let now = pair.sim.now();
    pair.sim
        .endpoint_mut(pair.server)
        .handle_datagram(now, from, datagram);
    pair.sim.run_for(Duration::ZERO).unwrap();
}

/// Panics if the server ever sent anything to `to`.
fn assert_no_reply_to(pair: &mut Pair, to: SocketAddr) {
    pair.sim.run_for(Duration::ZERO).unwrap();
    let sent = pair
        .sim
        .network_mut()
        .stats(server_addr(), to)
        .map_or(0, |s| s.sent);
    assert_eq!(sent, 0, "{sent} datagrams sent to {to}");
}

fn server_conn(pair: &Pair) -> ConnectionStats {
    pair.sim
        .endpoint(pair.server)
        .connection_stats(pair.to_client)
        .expect("the server lost its connection")
}

/// Messages the server has delivered, on every channel.
fn delivered(pair: &Pair) -> u64 {
    server_conn(pair)
        .recv_channels
        .iter()
        .map(|c| c.messages_delivered)
        .sum()
}

/// A packet number the server has not seen from the client: on a perfect link every client
/// packet arrived, numbered from 0.
fn fresh_packet_number(pair: &Pair) -> u64 {
    server_conn(pair).packets_received
}

// ---- helpers: building datagrams ----

fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A data header without ack (first byte 0, packet number to be filled in) and `parts`.
fn frames(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![0x00, 0, 0];
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// A packet with one fragment frame on channel `channel` with the given index and count.
fn fragment(channel: u8, index: u64, count: u64) -> Vec<u8> {
    let mut frame = vec![FRAME_FRAGMENT | FRAME_LENGTH | channel, 0, 1];
    frame.extend(varint(index));
    frame.extend(varint(count));
    frame.extend(varint(2));
    frame.extend_from_slice(b"ab");
    frames(&[&frame])
}

/// `body` (a data packet, or empty for a bare header) with its packet number set.
fn with_packet_number(mut body: Vec<u8>, pn: u64) -> Bytes {
    if body.is_empty() {
        body = vec![0x00, 0, 0];
    }
    if body.len() >= 3 {
        body[1..3].copy_from_slice(&(pn as u16).to_be_bytes());
    }
    body.into()
}

/// Whether `replies` is exactly one no-session packet (`0xE0`, one byte).
fn is_no_session(replies: &[(SocketAddr, Bytes)]) -> bool {
    matches!(replies, [(_, reply)] if reply[..] == [0xe0])
}

fn kind_of(datagram: &[u8]) -> Option<u8> {
    datagram.first().map(|b| b >> 5)
}

fn check_unknown_sender(
    replies: &[(SocketAddr, Bytes)],
    full_request: bool,
    cut: usize,
    dropped_before: u64,
    dropped_after: u64,
) {
    if full_request {
        assert_eq!(replies.len(), 1, "a whole request gets a challenge");
        assert!(replies[0].1.len() <= cut);
        return;
    }
    // A data packet (header and at least a byte of frames) may get the one-byte no-session
    // reply, never anything else.
    assert!(
        replies.is_empty() || (cut >= 4 && is_no_session(replies)),
        "reply to a {cut}-byte datagram from an unknown sender"
    );
    assert_eq!(
        dropped_after,
        dropped_before + 1,
        "{cut}-byte datagram not counted"
    );
}

// ---- helpers: capturing real datagrams ----

/// Runs a scripted session between two hand-driven endpoints: handshake, small and fragmented
/// messages on every channel both ways, acks, keepalives, a rejected second client and (if
/// `close`) a disconnect. Same seeds, same datagrams.
fn scripted_session(close: bool) -> HandPair {
    let client_config = Config {
        seed: Some(0xc1),
        ..Config::client()
    };
    let mut hand = HandPair::new(client_config, server_config(0x5e));
    let now = hand.now;
    let conn = hand.client.connect(server_addr(), now).unwrap();
    hand.pump();
    assert!(hand.client.is_connected(conn), "scripted handshake failed");
    let to_client = server_connection(&hand);
    for round in 0..2u8 {
        for channel in 0..4u8 {
            for size in [5usize, 3_000] {
                let payload = Bytes::from(vec![channel ^ round; size]);
                hand.client
                    .send(conn, ChannelId(channel), payload.clone())
                    .unwrap();
                hand.server
                    .send(to_client, ChannelId(channel), payload)
                    .unwrap();
            }
        }
        hand.pump();
        hand.run_for(Duration::from_millis(20));
    }
    // Keepalives and their acks.
    hand.run_for(Duration::from_millis(1_500));

    // A client with another protocol id, for a reject.
    let mut stranger = Endpoint::new(
        Config {
            protocol_id: 1,
            seed: Some(3),
            ..Config::client()
        },
        hand.now,
    )
    .unwrap();
    let stranger_addr: SocketAddr = "10.0.0.3:40000".parse().unwrap();
    stranger.connect(server_addr(), hand.now).unwrap();
    for (_, request) in drain_transmits(&mut stranger, hand.now) {
        hand.log.push(Captured {
            from: stranger_addr,
            to: server_addr(),
            data: request.clone(),
        });
        hand.server
            .handle_datagram(hand.now, stranger_addr, request);
    }
    hand.pump(); // the server's reject goes to the stranger's address, and is logged

    if close {
        let now = hand.now;
        hand.client.disconnect(conn, 77, now);
        hand.run_for(Duration::from_millis(200));
    }
    hand
}

fn capture(close: bool) -> Vec<Captured> {
    scripted_session(close).log
}

fn assert_kinds_covered(captured: &[Captured]) {
    let mut kinds: Vec<u8> = captured.iter().filter_map(|d| kind_of(&d.data)).collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(kinds, vec![0, 1, 2, 3, 4, 5, 6], "packet kinds captured");
    let fragments = captured
        .iter()
        .filter(|d| kind_of(&d.data) == Some(0) && d.data.len() > 1_000)
        .count();
    assert!(
        fragments >= 8,
        "only {fragments} fragment-sized data packets"
    );
}

fn server_connection(hand: &HandPair) -> tickwire::ConnectionId {
    hand.server
        .connections()
        .next()
        .expect("no server connection")
}

fn conn_stats(endpoint: &Endpoint, conn: tickwire::ConnectionId) -> ConnectionStats {
    endpoint
        .connection_stats(conn)
        .expect("the server lost its connection")
}

/// The packet number the hand-driven client will use next, read from its last data packet.
fn client_next_packet_number(hand: &HandPair) -> u64 {
    let last = hand
        .log
        .iter()
        .rev()
        .find(|d| d.from == client_addr() && kind_of(&d.data) == Some(0))
        .expect("the client sent no data packet");
    u64::from(u16::from_be_bytes([last.data[1], last.data[2]])) + 1
}

/// Makes the hand-driven client send until it has used packet number `pn`; returns its next.
fn burn_packet_number(hand: &mut HandPair, pn: u64) -> u64 {
    let conn = hand.client.connections().next().expect("client connection");
    for _ in 0..8 {
        hand.client
            .send(conn, ChannelId(0), Bytes::from_static(b"burn"))
            .unwrap();
        hand.pump();
        let next = client_next_packet_number(hand);
        if next > pn {
            return next;
        }
    }
    panic!("the client did not reach packet number {pn}");
}

/// A reliable message each way between hand-driven endpoints.
fn hand_round_trip(hand: &mut HandPair, tag: &'static str) -> bool {
    let client_conn = hand.client.connections().next().expect("client connection");
    let server_conn = server_connection(hand);
    let payload = Bytes::from_static(tag.as_bytes());
    hand.client
        .send(client_conn, RELIABLE, payload.clone())
        .unwrap();
    hand.server.send(server_conn, RELIABLE, payload).unwrap();
    hand.client_events.clear();
    hand.server_events.clear();
    hand.run_for(Duration::from_secs(2));
    let got = |events: &[Event]| {
        events
            .iter()
            .any(|e| matches!(e, Event::Message { data, .. } if &data[..] == tag.as_bytes()))
    };
    got(&hand.client_events) && got(&hand.server_events)
}

// ---- helpers: random input ----

fn runner(cases: u32, seed: u64) -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

/// Random bytes, plain or dressed as a data packet (valid first byte, random rest), or as
/// another packet kind.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    let any_bytes = |max| prop::collection::vec(any::<u8>(), 0..max);
    prop_oneof![
        3 => any_bytes(64),
        1 => any_bytes(1_400),
        3 => (prop::sample::select(vec![0x00u8, 0x10, 0x18]), any_bytes(48)).prop_map(
            |(first, mut rest)| {
                rest.insert(0, first);
                rest
            }
        ),
        1 => (0u8..8, any_bytes(1_300)).prop_map(|(kind, mut rest)| {
            rest.insert(0, kind << 5);
            rest
        }),
    ]
}
