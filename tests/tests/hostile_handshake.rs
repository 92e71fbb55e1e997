//! Hostile handshakes and malformed datagrams over real loopback sockets against a running
//! `tickwire::Server`, with an honest client exchanging messages throughout. For each case: no
//! panic, no reply unless the protocol gives one (a challenge for a padded request, a reject
//! for a mismatch, the one-byte no-session packet for a well-formed data packet), no
//! connection for the sender, the reason counted, and the honest client unaffected.

#[path = "support/hostile.rs"]
mod hostile;

use std::time::{Duration, Instant};

use hostile::{fingerprint, only_no_session, protocol_id, truncations, RawPeer, Target, QUIET};
use tickwire::fuzzing::forge::{self, ForgedFrame, Reply};

/// The cookie lifetime of the cookie test's server, so that an expired cookie is quick to get.
const COOKIE_LIFETIME: Duration = Duration::from_millis(400);

/// One datagram of every packet kind, as a stranger could send it, with whether a well-formed
/// copy may draw the no-session reply.
fn every_kind(nonce: u64) -> Vec<(&'static str, Vec<u8>, bool)> {
    let payload = [0x5a; 40];
    vec![
        (
            "request",
            forge::request(forge::PROTOCOL_VERSION, protocol_id(), fingerprint(), nonce),
            false,
        ),
        (
            "response",
            forge::response(
                forge::PROTOCOL_VERSION,
                protocol_id(),
                fingerprint(),
                nonce,
                [7; forge::COOKIE_SIZE],
            ),
            false,
        ),
        (
            "challenge",
            forge::challenge(nonce, [7; forge::COOKIE_SIZE]),
            false,
        ),
        ("accept", forge::accept(nonce), false),
        ("reject", forge::reject(nonce, 1), false),
        ("disconnect", forge::disconnect(nonce, 7), false),
        ("no-session", forge::no_session(), false),
        (
            "data, ping and message",
            forge::data(
                3,
                None,
                &[
                    ForgedFrame::Ping,
                    ForgedFrame::Message {
                        channel: 2,
                        id: Some(0),
                        payload: &payload,
                    },
                ],
            ),
            true,
        ),
        (
            "data, ack and fragment",
            forge::data(
                4,
                Some((9, 0xffff_ffff)),
                &[
                    ForgedFrame::Fragment {
                        channel: 0,
                        id: 1,
                        index: 0,
                        count: 2,
                        payload: &payload,
                    },
                    ForgedFrame::Ack {
                        largest: 3,
                        bits: 1,
                    },
                ],
            ),
            true,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_truncation_of_every_kind_from_a_stranger_gets_nothing_and_no_state() {
    let mut target = Target::start().await;
    target.round_trip().await;
    for (kind, datagram, data) in every_kind(0x1001) {
        let peer = RawPeer::new(target.addr, 0x1001).await;
        let before = target.server.endpoint_stats();
        let mut sent = 0u64;
        for prefix in truncations(&datagram) {
            peer.send(prefix).await;
            sent += 1;
        }
        let after = target.after(&before, sent).await;
        let replies = peer.collect(QUIET).await;
        assert!(
            replies.len() as u64 <= sent,
            "{kind}: more replies than datagrams"
        );
        if data {
            // Prefixes with a whole header and a byte of frames may be told "no session".
            assert!(only_no_session(&replies), "{kind}: {replies:?}");
            assert!(after.no_session_replies - before.no_session_replies <= sent);
        } else {
            assert!(replies.is_empty(), "{kind}: {} replies", replies.len());
        }
        let dropped = after.dropped.total() - before.dropped.total();
        assert_eq!(dropped, sent, "{kind}: every prefix counted once");
        if kind == "request" {
            // The empty prefix is malformed; 1 to 1199 bytes are too small.
            let small = after.dropped.request_too_small - before.dropped.request_too_small;
            assert_eq!(small, sent - 1, "{kind}");
        }
        target.assert_connections(&[]);
        target.round_trip().await;
    }
    target.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_oversized_and_unknown_datagrams_get_nothing_or_one_small_reply() {
    let mut target = Target::start().await;
    let peer = RawPeer::new(target.addr, 0x2001).await;

    // A zero-length datagram: malformed, no reply.
    let before = target.server.endpoint_stats();
    peer.send_expect_nothing(&[], "zero-length").await;
    let after = target.after(&before, 1).await;
    assert_eq!(after.dropped.malformed, before.dropped.malformed + 1);

    // Kind 7 with reserved bits, and garbage above the MTU and at the maximum UDP size.
    let before = target.server.endpoint_stats();
    peer.send_expect_nothing(&[0xe1, 1, 2, 3], "kind 7, reserved bits")
        .await;
    peer.send_expect_nothing(&vec![0xff; 1500], "garbage above the MTU")
        .await;
    peer.send_expect_nothing(&vec![0xff; 65_507], "garbage at the maximum UDP size")
        .await;
    let after = target.after(&before, 3).await;
    assert_eq!(after.dropped.malformed, before.dropped.malformed + 3);
    target.round_trip().await;

    // Well-formed data above the MTU and at the maximum size: one byte back at most.
    for len in [1500usize, 65_507] {
        let before = target.server.endpoint_stats();
        let body = vec![0x11; len - 8];
        let datagram = forge::data(
            5,
            None,
            &[ForgedFrame::Message {
                channel: 0,
                id: None,
                payload: &body,
            }],
        );
        assert_eq!(datagram.len(), len - 8 + 3 + 1 + varint_len(body.len()));
        peer.send(&datagram).await;
        let after = target.after(&before, 1).await;
        let replies = peer.collect(QUIET).await;
        assert_eq!(replies, vec![vec![0xe0]], "data of {len} B");
        assert_eq!(after.dropped.unknown_peer, before.dropped.unknown_peer + 1);
        assert_eq!(after.no_session_replies, before.no_session_replies + 1);
    }

    // A request padded to the maximum UDP size: one challenge, still no state.
    let big = {
        let mut request = peer.request();
        request.resize(65_507, 0);
        request
    };
    peer.send(&big).await;
    let replies = peer.collect(QUIET).await;
    assert_eq!(replies.len(), 1);
    assert!(matches!(
        forge::reply(&replies[0]),
        Some(Reply::Challenge { .. })
    ));
    target.assert_connections(&[]);
    target.round_trip().await;

    // Version, protocol id and layout mismatches: one reject each, counted by reason.
    let before = target.server.endpoint_stats();
    let mismatches = [
        (
            forge::PROTOCOL_VERSION + 1,
            protocol_id(),
            fingerprint(),
            2u8,
        ),
        (forge::PROTOCOL_VERSION, protocol_id() ^ 1, fingerprint(), 3),
        (forge::PROTOCOL_VERSION, protocol_id(), fingerprint() ^ 1, 4),
    ];
    for (version, id, layout, reason) in mismatches {
        peer.send(&forge::request(version, id, layout, peer.nonce))
            .await;
        let replies = peer.collect(QUIET).await;
        assert_eq!(
            replies.iter().map(|r| forge::reply(r)).collect::<Vec<_>>(),
            vec![Some(Reply::Reject {
                nonce: peer.nonce,
                reason
            })]
        );
    }
    let after = target.after(&before, 3).await;
    assert_eq!(
        after.dropped.version_mismatch,
        before.dropped.version_mismatch + 1
    );
    assert_eq!(
        after.dropped.protocol_mismatch,
        before.dropped.protocol_mismatch + 1
    );
    assert_eq!(
        after.dropped.channel_mismatch,
        before.dropped.channel_mismatch + 1
    );

    // A request below the padded minimum: nothing, counted.
    let before = target.server.endpoint_stats();
    let short = peer.request()[..200].to_vec();
    peer.send_expect_nothing(&short, "unpadded request").await;
    let after = target.after(&before, 1).await;
    assert_eq!(
        after.dropped.request_too_small,
        before.dropped.request_too_small + 1
    );

    target.assert_connections(&[]);
    target.round_trip().await;
    target.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tampered_expired_and_relayed_cookies_create_nothing() {
    let mut target = Target::start_with(
        |server| server.endpoint.cookie_lifetime = COOKIE_LIFETIME,
        |_| {},
    )
    .await;
    let holder = RawPeer::new(target.addr, 0x3001).await;
    let cookie = holder.cookie().await;

    let before = target.server.endpoint_stats();
    let mut tampered_mac = cookie;
    tampered_mac[20] ^= 0x01;
    let mut tampered_time = cookie;
    tampered_time[7] ^= 0x01;
    let cases = [
        ("tampered MAC", holder.response(tampered_mac)),
        ("tampered issue time", holder.response(tampered_time)),
        ("forged", holder.response([0x5a; forge::COOKIE_SIZE])),
        (
            "another nonce's",
            forge::response(
                forge::PROTOCOL_VERSION,
                protocol_id(),
                fingerprint(),
                holder.nonce + 2,
                cookie,
            ),
        ),
    ];
    for (what, response) in &cases {
        holder.send_expect_nothing(response, what).await;
    }
    // The holder's valid response, relayed from another address.
    let relay = RawPeer::new(target.addr, 0x3001).await;
    relay
        .send_expect_nothing(&holder.response(cookie), "relayed from another address")
        .await;
    let after = target.after(&before, 5).await;
    assert_eq!(
        after.dropped.cookie_invalid,
        before.dropped.cookie_invalid + 5
    );
    target.assert_connections(&[]);
    target.round_trip().await;

    // Expired: a genuine cookie just past its lifetime (one window later it is refused as
    // invalid without a MAC check, so retry with a new cookie if the wait crossed two
    // windows). The honest client keeps exchanging while the cookie ages (bounded).
    let mut expired = false;
    for _ in 0..5 {
        let cookie = holder.cookie().await;
        let issued = Instant::now();
        for _ in 0..200 {
            if issued.elapsed() > COOKIE_LIFETIME + Duration::from_millis(10) {
                break;
            }
            target.round_trip().await;
            let _ = holder.collect(Duration::from_millis(5)).await;
        }
        let before = target.server.endpoint_stats();
        holder
            .send_expect_nothing(&holder.response(cookie), "expired")
            .await;
        let after = target.after(&before, 1).await;
        let refused = (after.dropped.cookie_expired - before.dropped.cookie_expired)
            + (after.dropped.cookie_invalid - before.dropped.cookie_invalid);
        assert_eq!(refused, 1, "an old cookie is refused and counted");
        if after.dropped.cookie_expired > before.dropped.cookie_expired {
            expired = true;
            break;
        }
    }
    assert!(expired, "never saw a cookie refused as expired");
    target.assert_connections(&[]);

    // A fresh cookie still works: the checks refuse only what they should.
    let mut fresh = RawPeer::new(target.addr, 0x3005).await;
    fresh.handshake().await;
    let session = hostile::connection_of(&mut target, &fresh).await;
    target.assert_connections(&[session]);
    target.round_trip().await;
    target.shutdown().await;
}

fn varint_len(mut value: usize) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}
