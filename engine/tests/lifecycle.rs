//! The life of an established connection: idle timeout, keepalives, graceful close under loss,
//! shutdown, and a peer that stops acknowledging reliable data (with memory kept capped).

mod support;

use std::time::Duration;

use bytes::Bytes;
use tickwire::sim::{LinkConfig, NodeId, Simulation};
use tickwire::{ChannelId, Config, ConnectionId, DisconnectReason, Event, SendError};

use support::{
    assert_on_time, client_addr, connected_pair, dead_link, delay_link, server_addr, sim_events,
    Pair,
};

const RELIABLE: ChannelId = ChannelId(2);
const LATENCY: Duration = Duration::from_millis(20);
/// Close code the engine sends when its reliable data went unacknowledged.
const CODE_UNACKNOWLEDGED: u16 = 0xFFF1;
/// Close code the engine sends on shutdown.
const CODE_SHUTDOWN: u16 = 0xFFF2;

// ---- idle timeout and keepalive ----

#[test]
fn both_sides_time_out_when_the_link_goes_silent() {
    let config = Config::default();
    let mut pair = connected_pair(delay_link(LATENCY), 1, |_| {});
    let mut watch = Watch::new(&pair);
    // Some traffic first, so that the timeout is measured from real packets.
    pair.sim
        .endpoint_mut(pair.client)
        .send(pair.to_server, RELIABLE, Bytes::from_static(b"before"))
        .unwrap();
    pair.sim
        .run_until(Duration::from_millis(2_500), |sim| {
            watch.observe(sim);
            false
        })
        .unwrap();
    assert!(watch.ended.is_empty());

    let cut = pair.sim.elapsed();
    cut_link(&mut pair.sim, true, true);
    pair.sim
        .run_until(Duration::from_secs(30), |sim| {
            watch.observe(sim);
            watch.ended.len() == 2
        })
        .unwrap();

    for side in [Side::Client, Side::Server] {
        let (reason, at) = watch.end_of(side).expect("no disconnect");
        assert_eq!(reason, DisconnectReason::Timeout, "{side:?}");
        let last = watch.last_received(side);
        // Exactly one idle timeout after the last packet received: not before, not late.
        assert_on_time(
            at,
            last + config.idle_timeout,
            &format!("{side:?} idle timeout"),
        );
        assert!(last <= cut + LATENCY, "{side:?} received after the cut");
        assert!(at <= cut + config.idle_timeout + LATENCY, "{side:?}");
        assert!(
            at >= cut + config.idle_timeout - config.keepalive_interval - LATENCY,
            "{side:?}: timed out {:?} after the cut",
            at - cut
        );
    }
    assert_eq!(pair.sim.endpoint(pair.client).connection_count(), 0);
    assert_eq!(pair.sim.endpoint(pair.server).connection_count(), 0);
}

#[test]
fn keepalives_hold_an_idle_connection_open_for_a_minute() {
    let link = LinkConfig {
        latency: Duration::from_millis(40),
        jitter: Duration::from_millis(10),
        ..LinkConfig::default()
    };
    let mut pair = connected_pair(link, 2, |_| {});
    let sides = [(pair.client, pair.to_server), (pair.server, pair.to_client)];
    let sent_before = sides.map(|(node, connection)| packets_sent(&pair.sim, node, connection));
    pair.sim.run_for(Duration::from_secs(60)).unwrap();
    assert!(sim_events(&mut pair.sim, pair.client).is_empty());
    assert!(sim_events(&mut pair.sim, pair.server).is_empty());
    assert!(pair.sim.endpoint(pair.client).is_connected(pair.to_server));
    assert!(pair.sim.endpoint(pair.server).is_connected(pair.to_client));
    // About one keepalive a second each way kept it alive (bounded: no keepalive storm).
    for ((node, connection), before) in sides.into_iter().zip(sent_before) {
        let sent = packets_sent(&pair.sim, node, connection) - before;
        assert!((30..=200).contains(&sent), "{sent} packets in 60 s");
    }
    assert!(support::reliable_round_trip(&mut pair, "still alive"));
}

// ---- graceful close ----

#[test]
fn a_graceful_disconnect_reaches_the_peer_under_half_loss() {
    for seed in 0..20 {
        for closer in [Side::Client, Side::Server] {
            let mut pair = connected_pair(delay_link(LATENCY), seed, |_| {});
            let lossy = LinkConfig {
                latency: LATENCY,
                loss: 0.5,
                ..LinkConfig::default()
            };
            set_links(&mut pair.sim, lossy.clone(), lossy);
            let (local, local_conn, remote, remote_conn) = match closer {
                Side::Client => (pair.client, pair.to_server, pair.server, pair.to_client),
                Side::Server => (pair.server, pair.to_client, pair.client, pair.to_server),
            };
            let code = 4_000 + seed as u16;
            let now = pair.sim.now();
            pair.sim
                .endpoint_mut(local)
                .disconnect(local_conn, code, now);
            assert_eq!(
                pair.sim.endpoint_mut(local).poll_event(),
                Some(Event::Disconnected {
                    connection: local_conn,
                    reason: DisconnectReason::Local { code },
                }),
                "seed {seed}, {closer:?} closing"
            );
            assert!(!pair.sim.endpoint(local).is_connected(local_conn));
            assert!(matches!(
                pair.sim.endpoint_mut(local).send(
                    local_conn,
                    RELIABLE,
                    Bytes::from_static(b"late")
                ),
                Err(SendError::NotConnected(_) | SendError::UnknownConnection(_))
            ));

            let mut seen = None;
            pair.sim
                .run_until(Duration::from_secs(5), |sim| {
                    if let Some(event) = sim.poll_event(remote) {
                        seen = Some((event, sim.elapsed()));
                    }
                    seen.is_some()
                })
                .unwrap();
            let (event, _) = seen.expect("the peer never learnt of the close");
            assert_eq!(
                event,
                Event::Disconnected {
                    connection: remote_conn,
                    reason: DisconnectReason::Remote { code },
                },
                "seed {seed}, {closer:?} closing"
            );
            assert!(matches!(
                pair.sim.endpoint_mut(remote).send(
                    remote_conn,
                    RELIABLE,
                    Bytes::from_static(b"late")
                ),
                Err(SendError::UnknownConnection(_))
            ));
            // The closing side stops after its copies and forgets the connection.
            pair.sim.run_for(Duration::from_secs(1)).unwrap();
            assert_eq!(pair.sim.endpoint(local).connection_count(), 0);
            assert_eq!(pair.sim.endpoint(remote).connection_count(), 0);
            assert!(sim_events(&mut pair.sim, local).is_empty());
            assert!(sim_events(&mut pair.sim, remote).is_empty());
            assert!(matches!(
                pair.sim.endpoint_mut(local).send(
                    local_conn,
                    RELIABLE,
                    Bytes::from_static(b"late")
                ),
                Err(SendError::UnknownConnection(_))
            ));
        }
    }
}

#[test]
fn a_disconnect_sends_the_configured_number_of_copies() {
    let mut pair = connected_pair(delay_link(LATENCY), 3, |_| {});
    let copies = Config::default().disconnect_copies;
    // Nothing reaches the server, so it cannot cut the copies short.
    set_links(&mut pair.sim, dead_link(), delay_link(LATENCY));
    let sent_before = pair.sim.endpoint(pair.client).stats().datagrams_sent;
    let now = pair.sim.now();
    pair.sim
        .endpoint_mut(pair.client)
        .disconnect(pair.to_server, 9, now);
    pair.sim.run_for(Duration::from_secs(1)).unwrap();
    let sent = pair.sim.endpoint(pair.client).stats().datagrams_sent - sent_before;
    assert_eq!(sent, u64::from(copies));
    assert_eq!(pair.sim.endpoint(pair.client).connection_count(), 0);
}

#[test]
fn disconnecting_twice_or_an_unknown_connection_does_nothing() {
    let mut pair = connected_pair(delay_link(LATENCY), 4, |_| {});
    let now = pair.sim.now();
    let client = pair.sim.endpoint_mut(pair.client);
    client.disconnect(ConnectionId(999), 1, now);
    assert!(client.poll_event().is_none());
    client.disconnect(pair.to_server, 1, now);
    client.disconnect(pair.to_server, 2, now);
    assert_eq!(
        client.poll_event(),
        Some(Event::Disconnected {
            connection: pair.to_server,
            reason: DisconnectReason::Local { code: 1 }
        })
    );
    assert!(client.poll_event().is_none());
}

#[test]
fn both_sides_closing_at_once_end_cleanly() {
    let mut pair = connected_pair(delay_link(LATENCY), 5, |_| {});
    let now = pair.sim.now();
    pair.sim
        .endpoint_mut(pair.client)
        .disconnect(pair.to_server, 1, now);
    pair.sim
        .endpoint_mut(pair.server)
        .disconnect(pair.to_client, 2, now);
    pair.sim.run_for(Duration::from_secs(2)).unwrap();
    assert_eq!(
        sim_events(&mut pair.sim, pair.client),
        vec![Event::Disconnected {
            connection: pair.to_server,
            reason: DisconnectReason::Local { code: 1 }
        }]
    );
    assert_eq!(
        sim_events(&mut pair.sim, pair.server),
        vec![Event::Disconnected {
            connection: pair.to_client,
            reason: DisconnectReason::Local { code: 2 }
        }]
    );
    assert_eq!(pair.sim.endpoint(pair.client).connection_count(), 0);
    assert_eq!(pair.sim.endpoint(pair.server).connection_count(), 0);
}

#[test]
fn shutdown_closes_every_connection_and_tells_the_peers() {
    let mut pair = connected_pair(delay_link(LATENCY), 6, |_| {});
    let now = pair.sim.now();
    pair.sim.endpoint_mut(pair.server).shutdown(now);
    assert_eq!(
        pair.sim.endpoint_mut(pair.server).poll_event(),
        Some(Event::Disconnected {
            connection: pair.to_client,
            reason: DisconnectReason::Shutdown
        })
    );
    pair.sim.run_for(Duration::from_secs(1)).unwrap();
    assert_eq!(
        sim_events(&mut pair.sim, pair.client),
        vec![Event::Disconnected {
            connection: pair.to_server,
            reason: DisconnectReason::Remote {
                code: CODE_SHUTDOWN
            }
        }]
    );
    assert_eq!(pair.sim.endpoint(pair.server).connection_count(), 0);
}

// ---- a peer that stops acknowledging ----

/// Only the return path is cut: the client's reliable data reaches the server, but neither the
/// acks nor anything else come back. With the defaults (`ack_timeout` 15 s above
/// `idle_timeout` 10 s) the idle timeout fires first: the peer went silent. Meanwhile the send
/// buffer stays capped.
#[test]
fn a_peer_whose_acks_never_arrive_times_out_with_memory_capped() {
    let config = Config::default();
    let cap = config.channels.client_to_server[RELIABLE.0 as usize].max_buffered_bytes;
    let mut pair = connected_pair(delay_link(LATENCY), 7, |_| {});
    let mut watch = Watch::new(&pair);
    pair.sim
        .run_until(Duration::from_millis(1_500), |sim| {
            watch.observe(sim);
            false
        })
        .unwrap();

    cut_link(&mut pair.sim, false, true);
    let cut = pair.sim.elapsed();
    let (client, conn) = (pair.client, pair.to_server);
    let message = Bytes::from(vec![0x5a; 1024]);
    let mut accepted = 0usize;
    let refused = loop {
        match pair
            .sim
            .endpoint_mut(client)
            .send(conn, RELIABLE, message.clone())
        {
            Ok(_) => accepted += 1,
            Err(error) => break error,
        }
        assert!(accepted <= cap / 1024, "send kept accepting past the cap");
    };
    assert!(
        matches!(&refused, SendError::BufferFull { channel, data } if *channel == RELIABLE && *data == message),
        "{refused:?}"
    );
    // Each message costs its size plus some bookkeeping against the cap.
    assert!(accepted > cap / 2048, "only {accepted} messages accepted");
    let buffered = pair.sim.endpoint(client).buffered_bytes(conn).unwrap();
    assert!(
        buffered <= cap && buffered > cap - 2 * 1024,
        "{buffered} bytes buffered"
    );

    let mut max_buffered = 0;
    pair.sim
        .run_until(Duration::from_secs(30), |sim| {
            watch.observe(sim);
            if let Some(buffered) = sim.endpoint(client).buffered_bytes(conn) {
                max_buffered = max_buffered.max(buffered);
                if watch.end_of(Side::Client).is_none() {
                    assert!(matches!(
                        sim.endpoint_mut(client)
                            .send(conn, RELIABLE, message.clone()),
                        Err(SendError::BufferFull { .. })
                    ));
                }
            }
            watch.end_of(Side::Client).is_some()
        })
        .unwrap();
    assert!(max_buffered <= cap, "{max_buffered} bytes buffered");
    assert!(max_buffered > cap - 2 * 1024);

    let (reason, at) = watch.end_of(Side::Client).expect("client never gave up");
    assert_eq!(reason, DisconnectReason::Timeout);
    let last = watch.last_received(Side::Client);
    assert!(last <= cut + LATENCY);
    assert_on_time(at, last + config.idle_timeout, "idle timeout");
    assert!(at <= cut + config.ack_timeout);
    assert_eq!(pair.sim.endpoint(client).buffered_bytes(conn), None);
    assert!(matches!(
        pair.sim
            .endpoint_mut(client)
            .send(conn, RELIABLE, message.clone()),
        Err(SendError::UnknownConnection(_))
    ));
}

/// The server keeps sending (pings, injected from its address because its own packets are cut
/// off) but never acknowledges anything: the client gives up with `Unacknowledged` exactly one
/// `ack_timeout` after it first sent the data, tells the server, and its memory stays capped.
#[test]
fn a_peer_that_talks_but_never_acks_is_dropped_after_the_ack_timeout() {
    let config = Config::default();
    let cap = config.channels.client_to_server[RELIABLE.0 as usize].max_buffered_bytes;
    let mut pair = connected_pair(delay_link(LATENCY), 8, |_| {});
    pair.sim.run_for(Duration::from_millis(1_500)).unwrap();
    cut_link(&mut pair.sim, false, true);

    let (client, server, conn) = (pair.client, pair.server, pair.to_server);
    let first_sent = pair.sim.elapsed();
    let mut accepted = 0usize;
    while pair
        .sim
        .endpoint_mut(client)
        .send(conn, RELIABLE, Bytes::from(vec![7; 4096]))
        .is_ok()
    {
        accepted += 1;
    }
    assert!(
        accepted <= cap / 4096 && accepted > cap / 8192,
        "{accepted} accepted"
    );
    assert!(pair.sim.endpoint(client).buffered_bytes(conn).unwrap() <= cap);

    let to_client = pair.to_client;
    let mut last_injected: Option<(u64, Duration)> = None;
    let mut injected = 0;
    let mut ended = None;
    let mut server_saw = None;
    pair.sim
        .run_until(Duration::from_secs(30), |sim| {
            // A ping in a packet number the server really used (its own copy was lost), so
            // that the client's acks of it are genuine.
            let now = sim.elapsed();
            let sent = sim
                .endpoint(server)
                .connection_stats(to_client)
                .map_or(0, |s| s.packets_sent);
            let due = last_injected.is_none_or(|(pn, at)| {
                sent > 0 && sent - 1 > pn && now >= at + Duration::from_millis(300)
            });
            if ended.is_none() && sent > 0 && due {
                let pn = sent - 1;
                let ping = Bytes::from(vec![0x00, (pn >> 8) as u8, pn as u8, 0x80]);
                let at = sim.now();
                sim.endpoint_mut(client)
                    .handle_datagram(at, server_addr(), ping);
                last_injected = Some((pn, now));
                injected += 1;
            }
            if let Some(buffered) = sim.endpoint(client).buffered_bytes(conn) {
                assert!(buffered <= cap);
            }
            if let Some(event) = sim.poll_event(client) {
                ended = Some((event, now));
            }
            while let Some(event) = sim.poll_event(server) {
                if let Event::Disconnected { connection, reason } = event {
                    server_saw = Some((connection, reason));
                }
            }
            ended.is_some() && server_saw.is_some()
        })
        .unwrap();
    assert!(injected >= 8, "only {injected} pings injected");
    let (event, at) = ended.expect("client never gave up");
    assert_eq!(
        event,
        Event::Disconnected {
            connection: conn,
            reason: DisconnectReason::Unacknowledged
        }
    );
    assert_on_time(at, first_sent + config.ack_timeout, "ack timeout");
    assert_eq!(
        server_saw,
        Some((
            to_client,
            DisconnectReason::Remote {
                code: CODE_UNACKNOWLEDGED
            }
        ))
    );
}

// ---- helpers ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// Follows a pair step by step: when each side last accepted a packet, and how each ended.
struct Watch {
    nodes: [(NodeId, ConnectionId); 2],
    received: [u64; 2],
    last_received: [Duration; 2],
    ended: Vec<(Side, DisconnectReason, Duration)>,
}

impl Watch {
    fn new(pair: &Pair) -> Self {
        let mut watch = Self {
            nodes: [(pair.client, pair.to_server), (pair.server, pair.to_client)],
            received: [0; 2],
            last_received: [Duration::ZERO; 2],
            ended: Vec::new(),
        };
        let elapsed = pair.sim.elapsed();
        for (i, (node, connection)) in watch.nodes.into_iter().enumerate() {
            watch.received[i] = pair
                .sim
                .endpoint(node)
                .connection_stats(connection)
                .map_or(0, |s| s.packets_received);
            watch.last_received[i] = elapsed;
        }
        watch
    }

    /// Call after every step.
    fn observe(&mut self, sim: &mut Simulation) {
        for (i, (node, connection)) in self.nodes.into_iter().enumerate() {
            let side = [Side::Client, Side::Server][i];
            if let Some(stats) = sim.endpoint(node).connection_stats(connection) {
                if stats.packets_received != self.received[i] {
                    self.received[i] = stats.packets_received;
                    self.last_received[i] = sim.elapsed();
                }
            }
            while let Some(event) = sim.poll_event(node) {
                if let Event::Disconnected { reason, .. } = event {
                    self.ended.push((side, reason, sim.elapsed()));
                }
            }
        }
    }

    fn end_of(&self, side: Side) -> Option<(DisconnectReason, Duration)> {
        self.ended
            .iter()
            .find(|(s, _, _)| *s == side)
            .map(|&(_, reason, at)| (reason, at))
    }

    fn last_received(&self, side: Side) -> Duration {
        self.last_received[side as usize]
    }
}

/// Drops everything sent from now on client → server and/or server → client.
fn cut_link(sim: &mut Simulation, to_server: bool, to_client: bool) {
    if to_server {
        sim.network_mut()
            .set_link(client_addr(), server_addr(), dead_link())
            .unwrap();
    }
    if to_client {
        sim.network_mut()
            .set_link(server_addr(), client_addr(), dead_link())
            .unwrap();
    }
}

fn set_links(sim: &mut Simulation, to_server: LinkConfig, to_client: LinkConfig) {
    sim.network_mut()
        .set_link(client_addr(), server_addr(), to_server)
        .unwrap();
    sim.network_mut()
        .set_link(server_addr(), client_addr(), to_client)
        .unwrap();
}

fn packets_sent(sim: &Simulation, node: NodeId, connection: ConnectionId) -> u64 {
    sim.endpoint(node)
        .connection_stats(connection)
        .map_or(0, |s| s.packets_sent)
}

/// A graceful close delivers everything queued before it: 500 reliable messages sent right
/// before `disconnect`, over a link losing 20 % each way, all arrive, in order, before the peer
/// sees the close.
#[test]
fn disconnect_delivers_what_was_queued_before_it() {
    for seed in 0..5 {
        let link = LinkConfig {
            latency: Duration::from_millis(40),
            loss: 0.2,
            ..LinkConfig::default()
        };
        let mut pair = connected_pair(link, seed, |_| {});
        let (client, server, conn) = (pair.client, pair.server, pair.to_server);
        for i in 0..500u32 {
            let data = bytes::Bytes::copy_from_slice(&i.to_be_bytes());
            pair.sim
                .endpoint_mut(client)
                .send(conn, tickwire::ChannelId(2), data)
                .unwrap();
        }
        let now = pair.sim.now();
        pair.sim.endpoint_mut(client).disconnect(conn, 9, now);
        let mut received = Vec::new();
        let mut closed = None;
        pair.sim
            .run_until(Duration::from_secs(30), |sim| {
                while let Some(event) = sim.poll_event(server) {
                    match event {
                        Event::Message { data, .. } => {
                            assert!(closed.is_none(), "a message after the close");
                            received.push(u32::from_be_bytes(data[..].try_into().unwrap()));
                        }
                        Event::Disconnected { reason, .. } => closed = Some(reason),
                        _ => {}
                    }
                }
                closed.is_some()
            })
            .unwrap();
        assert_eq!(
            closed,
            Some(DisconnectReason::Remote { code: 9 }),
            "seed {seed}"
        );
        assert_eq!(received, (0..500).collect::<Vec<_>>(), "seed {seed}");
    }
}
