//! Hostile traffic inside an established session, over real loopback sockets against a running
//! `tickwire::Server`: a raw peer completes the handshake by hand and then sends garbage,
//! replays, very old packets and acks for packets never sent, or never acknowledges what it
//! is sent; and a snapshot delta naming an unknown baseline reaches a real client. Every case
//! is counted, none ends or refreshes a session it should not, and the honest client keeps
//! exchanging messages throughout.

#[path = "support/hostile.rs"]
mod hostile;

use std::time::{Duration, Instant};

use bytes::Bytes;
use hostile::{connection_of, RawPeer, Target, LIMIT, RELIABLE};
use tickwire::fuzzing::forge::{self, ForgedFrame, Reply};
use tickwire::fuzzing::Probe;
use tickwire::snapshot::{
    BitWriter, EntityId, SnapshotClient, SnapshotConfig, SnapshotDecodeError, SnapshotServer,
};
use tickwire::{ConnectionId, DisconnectReason, Event, SendError};

/// The server's idle timeout in the garbage test: short, so that the test is.
const IDLE: Duration = Duration::from_millis(1000);
/// Keepalives well inside it, so that the honest client never idles out.
const KEEPALIVE: Duration = Duration::from_millis(150);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_a_connected_peers_address_neither_kills_nor_refreshes_its_session() {
    let short = |config: &mut tickwire::DriverConfig| {
        config.endpoint.idle_timeout = IDLE;
        config.endpoint.keepalive_interval = KEEPALIVE;
    };
    let mut target = Target::start_with(short, short).await;
    let mut peer = RawPeer::new(target.addr, 0x4001).await;
    peer.handshake().await;
    let session = connection_of(&mut target, &peer).await;
    let first = peer.ping();
    peer.send(&first).await;
    let last_valid = Instant::now();
    target
        .connection_when(session, |s| s.packets_received >= 1)
        .await;

    // From now on only garbage from the peer's address: each of these is dropped before it
    // can refresh the idle timer.
    let payload = [0x42; 8];
    let garbage: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0xff; 300],
        first.clone(), // a replay: duplicate
        forge::data(
            peer.next_pn + 5,
            None,
            &[ForgedFrame::Message {
                channel: 9, // no such channel: malformed
                id: Some(0),
                payload: &payload,
            }],
        ),
        forge::data(peer.next_pn + 6, None, &[])[..3].to_vec(), // no frames: malformed
        forge::disconnect(peer.nonce ^ 2, 1),                   // wrong token: unexpected
        forge::accept(peer.nonce),                              // unexpected
        forge::no_session(),                                    // unexpected (server side)
        forge::request(9, 0, 0, peer.nonce), // a mismatched request: rejected, no refresh
    ];
    let mut sent = 0u64;
    let mut ended = None;
    let deadline = Instant::now() + IDLE * 3;
    while Instant::now() < deadline && ended.is_none() {
        for datagram in &garbage {
            peer.send(datagram).await;
            sent += 1;
        }
        target.round_trip().await;
        let _ = peer.collect(Duration::from_millis(20)).await;
        if let Some(stats) = target.server.stats(session) {
            assert_eq!(stats.packets_received, 1, "garbage was accepted");
        }
        ended = target.events.iter().find_map(|event| match event {
            Event::Disconnected { connection, reason } if *connection == session => {
                Some((*reason, last_valid.elapsed()))
            }
            _ => None,
        });
    }
    let (reason, at) = ended.expect("the peer's session outlived its idle timeout");
    assert_eq!(reason, DisconnectReason::Timeout);
    assert!(at >= IDLE, "the session ended early, after {at:?}");
    assert!(sent >= 20, "only {sent} garbage datagrams");
    let stats = target.server.endpoint_stats();
    assert!(stats.dropped.malformed >= 2, "{stats:#?}");
    target.assert_connections(&[]);
    target.round_trip().await;
    target.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncations_of_every_kind_from_a_connected_peers_address_leave_it_alive() {
    let mut target = Target::start().await;
    let mut peer = RawPeer::new(target.addr, 0x4801).await;
    peer.handshake().await;
    let session = connection_of(&mut target, &peer).await;
    let payload = [0x77; 30];
    // Its own packets, including a disconnect with the right token: whole, that one would end
    // the session (the protocol says so); every proper prefix must not.
    // (Without an ack header: a bare header with one is a valid ack-only packet.)
    let message = peer.data(
        None,
        &[ForgedFrame::Message {
            channel: RELIABLE.0,
            id: Some(0),
            payload: &payload,
        }],
    );
    let kinds = [
        message,
        peer.request(),
        peer.response([3; forge::COOKIE_SIZE]),
        forge::disconnect(peer.nonce, 9),
        forge::accept(peer.nonce),
        forge::reject(peer.nonce, 1),
        forge::challenge(peer.nonce, [3; forge::COOKIE_SIZE]),
    ];
    let before = target.server.endpoint_stats();
    let mut sent = 0;
    for datagram in &kinds {
        for prefix in hostile::truncations(&datagram[..datagram.len().min(64)]) {
            peer.send(prefix).await;
            sent += 1;
        }
    }
    target.after(&before, sent).await;
    let stats = target.server.stats(session).expect("the session survived");
    assert_eq!(stats.packets_received, 0, "a prefix was accepted");
    // Alive and unchanged: its first real packet is accepted and acknowledged.
    let ping = peer.ping();
    peer.send(&ping).await;
    target
        .connection_when(session, |s| s.packets_received == 1)
        .await;
    target.assert_connections(&[session]);
    target.round_trip().await;
    target.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_very_old_and_bogus_ack_packets_are_counted_and_harmless() {
    let mut target = Target::start().await;
    let mut peer = RawPeer::new(target.addr, 0x5001).await;
    peer.handshake().await;
    let session = connection_of(&mut target, &peer).await;

    // Packet 0, then the same datagram again: a duplicate.
    let early = peer.ping();
    peer.send(&early).await;
    target
        .connection_when(session, |s| s.packets_received == 1)
        .await;
    peer.send(&early).await;
    target
        .connection_when(session, |s| s.dropped.duplicate == 1)
        .await;

    // 1,100 more, paced in batches so that none is lost to the socket buffer, then packet 0
    // again: too old to tell, dropped.
    for _ in 0..11 {
        for _ in 0..100 {
            let ping = peer.ping();
            peer.send(&ping).await;
        }
        let want = u64::from(peer.next_pn);
        target
            .connection_when(session, |s| s.packets_received >= want)
            .await;
        let _ = peer.collect(Duration::from_millis(1)).await;
    }
    peer.send(&early).await;
    target
        .connection_when(session, |s| s.dropped.too_old == 1)
        .await;

    // Acks of packets the server never sent, in the header and in an ack frame: ignored and
    // counted, the rest of the packet stands.
    let bogus_header = peer.data(Some((40_000, 0xffff_ffff)), &[ForgedFrame::Ping]);
    peer.send(&bogus_header).await;
    let bogus_frame = peer.data(
        None,
        &[
            ForgedFrame::Ping,
            ForgedFrame::Ack {
                largest: 50_000,
                bits: 7,
            },
        ],
    );
    peer.send(&bogus_frame).await;
    let received = u64::from(peer.next_pn) - 1;
    let stats = target
        .connection_when(session, |s| s.dropped.bogus_ack == 2)
        .await;
    assert!(stats.packets_received >= received, "{stats:#?}");
    assert_eq!(stats.packets_acked, 0, "nothing was really acknowledged");

    // The session is alive and acknowledges the peer's next packet.
    let ping = peer.ping();
    let pn = peer.next_pn - 1;
    peer.send(&ping).await;
    let mut acked = false;
    for reply in peer.collect(Duration::from_millis(300)).await {
        if let Some(Reply::Data {
            ack: Some((largest, _)),
            ..
        }) = forge::reply(&reply)
        {
            acked |= largest == pn;
        }
    }
    assert!(acked, "the server stopped acknowledging the peer");
    target.assert_connections(&[session]);
    target.round_trip().await;
    target.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_acknowledges_is_capped_then_disconnected() {
    const ACK_TIMEOUT: Duration = Duration::from_millis(800);
    let mut target =
        Target::start_with(|server| server.endpoint.ack_timeout = ACK_TIMEOUT, |_| {}).await;
    let mut peer = RawPeer::new(target.addr, 0x6001).await;
    peer.handshake().await;
    let session = connection_of(&mut target, &peer).await;

    // The server queues reliable data for the peer until the channel's buffer refuses more.
    // The ack timeout runs from the first datagram sent, which may leave while this loop still
    // fills the buffer: the clock starts before it.
    let started = Instant::now();
    let message = Bytes::from(vec![0x33; 16 * 1024]);
    let mut queued = 0usize;
    let refused = loop {
        match target.server.send(session, RELIABLE, message.clone()) {
            Ok(_) => queued += message.len(),
            Err(error) => break error,
        }
        assert!(queued <= 64 * 1024 * 1024, "the send buffer is unbounded");
    };
    assert!(matches!(refused, SendError::BufferFull { .. }), "{refused}");

    // The peer stays alive (pings without acks) and reads what it is sent, never acking.
    let mut received = 0usize;
    let mut disconnect = None;
    let mut ended = None;
    let deadline = Instant::now() + ACK_TIMEOUT * 4;
    while Instant::now() < deadline && ended.is_none() {
        let ping = peer.ping();
        peer.send(&ping).await;
        for datagram in peer.collect(Duration::from_millis(50)).await {
            received += datagram.len();
            if let Some(Reply::Disconnect { token, code }) = forge::reply(&datagram) {
                disconnect = Some((token, code));
            }
        }
        if let Some(stats) = target.server.stats(session) {
            assert!(stats.bytes_in_flight <= stats.congestion_window + 2 * 1200);
        }
        ended = target.next_other_event(Duration::from_millis(1)).await;
        if !matches!(ended, Some(Event::Disconnected { .. })) {
            ended = None;
        }
    }
    let Some(Event::Disconnected { connection, reason }) = ended else {
        panic!("the server never gave up on the peer");
    };
    assert_eq!(connection, session);
    assert_eq!(reason, DisconnectReason::Unacknowledged);
    assert!(started.elapsed() >= ACK_TIMEOUT);
    assert!(
        received > 0 && received <= queued,
        "{received} of {queued} bytes"
    );
    // The server tells the peer why (the protocol's one unsolicited packet here).
    if disconnect.is_none() {
        for datagram in peer.collect(Duration::from_millis(300)).await {
            if let Some(Reply::Disconnect { token, code }) = forge::reply(&datagram) {
                disconnect = Some((token, code));
            }
        }
    }
    assert_eq!(disconnect, Some((peer.nonce, 0xFFF1)));
    target.gone(session).await;
    target.assert_connections(&[]);
    target.round_trip().await;
    target.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_delta_naming_an_unknown_baseline_changes_nothing() {
    let mut target = Target::start().await;
    let config = SnapshotConfig::default();
    let mut world = SnapshotServer::new(config.clone());
    let mut view = SnapshotClient::<Probe>::new(config);
    let peer = ConnectionId(0);
    world.add_client(peer);
    world.set(
        EntityId(1),
        Probe {
            x: 10,
            y: 20,
            lit: true,
        },
    );
    let mut full = Vec::new();
    let info = world
        .encode(peer, 1, Instant::now(), &mut full)
        .expect("the client was added");
    world.handle_ack(peer, info.seq);

    // Snapshot 5 as a delta against snapshot 3, which the client never had.
    let mut forged = Vec::new();
    {
        let mut w = BitWriter::new(&mut forged);
        w.write_varint(5); // seq
        w.write_varint(5); // tick
        w.write_varint(2); // baseline: 5 - 2 = 3
        w.write_varint(0); // no prediction views
        w.write_exp_golomb(0, 0); // nothing removed
        w.write_bits(0, 3); // gap order
        w.write_varint(0); // no entries
    }
    world.set(
        EntityId(1),
        Probe {
            x: 11,
            y: 20,
            lit: false,
        },
    );
    let mut next = Vec::new();
    world
        .encode(peer, 2, Instant::now(), &mut next)
        .expect("the client was added");

    // Over the wire to the honest client, in order, on a reliable channel.
    for payload in [&full, &forged, &next] {
        target
            .server
            .send(target.honest, RELIABLE, Bytes::copy_from_slice(payload))
            .unwrap();
    }
    let mut results = Vec::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while results.len() < 3 {
        let event = tokio::time::timeout_at(deadline, target.client.next_event())
            .await
            .expect("three snapshots within the limit")
            .expect("the client is running");
        if let Event::Message { data, .. } = event {
            let before = view.view().map(|v| v.get(EntityId(1)).cloned());
            let result = view.receive(&data).map(|d| d.map(|d| d.tick));
            if result.is_err() {
                let after = view.view().map(|v| v.get(EntityId(1)).cloned());
                assert_eq!(before, after, "a refused snapshot changed the view");
            }
            results.push(result);
        }
    }
    assert_eq!(results[0], Ok(Some(1)));
    assert_eq!(results[1], Err(SnapshotDecodeError::UnknownBaseline(3)));
    assert_eq!(results[2], Ok(Some(2)));
    assert_eq!(view.errors(), 1);
    let latest = view.view().unwrap();
    assert_eq!(latest.get(EntityId(1)).map(|p| p.x), Some(11));
    target.round_trip().await;
    target.shutdown().await;
}
