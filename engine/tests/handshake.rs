//! The handshake: connecting, stateless cookies (forged, expired, replayed), the padded request
//! and amplification bound, rejections, timeouts, and completion under heavy loss.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tickwire::sim::{LinkConfig, NodeId, Simulation};
use tickwire::{
    ChannelConfig, ChannelKind, ChannelLayout, Config, ConnectionId, DisconnectReason, Endpoint,
    Event, RejectReason, Transport,
};

use support::{
    client_addr, connected_pair, dead_link, delay_link, drain_events, drain_transmits, server_addr,
    sim_events,
};

// Wire layout of the handshake packets (engine/src/wire/packet.rs): the first byte is
// `kind << 5`; a request and a response carry version (u16), protocol id (u64), channel
// fingerprint (u32) and nonce (u64), all big-endian; a response adds the 24-byte cookie.
const KIND_REQUEST: u8 = 1 << 5;
const KIND_CHALLENGE: u8 = 2 << 5;
const KIND_RESPONSE: u8 = 3 << 5;
const KIND_ACCEPT: u8 = 4 << 5;
const KIND_REJECT: u8 = 5 << 5;
/// Version, protocol id, fingerprint and nonce.
const REQUEST_FIELDS: std::ops::Range<usize> = 1..23;
const COOKIE_LEN: usize = 24;
const REQUEST_MIN_SIZE: usize = 1200;

// ---- connecting ----

#[test]
fn a_client_connects_and_both_sides_see_it() {
    let mut sim = Simulation::new(delay_link(Duration::from_millis(20)), 1).unwrap();
    let server = sim.add_endpoint(server_addr(), server_config(1)).unwrap();
    let client = sim.add_endpoint(client_addr(), client_config(2)).unwrap();
    let now = sim.now();
    let connection = sim
        .endpoint_mut(client)
        .connect(server_addr(), now)
        .unwrap();
    assert!(!sim.endpoint(client).is_connected(connection));

    let mut client_seen = Vec::new();
    let mut server_seen = Vec::new();
    let done = sim
        .run_until(Duration::from_secs(5), |sim| {
            client_seen.extend(sim_events(sim, client));
            server_seen.extend(sim_events(sim, server));
            !client_seen.is_empty() && !server_seen.is_empty()
        })
        .unwrap();
    assert!(done, "handshake did not complete");
    // Request, challenge, response, accept: two round trips of 40 ms.
    assert_eq!(sim.elapsed(), Duration::from_millis(80));
    assert_eq!(
        client_seen,
        vec![Event::Connected {
            connection,
            remote: server_addr(),
            transport: Transport::Native,
        }]
    );
    let [Event::Connected {
        connection: at_server,
        remote,
        transport: Transport::Native,
    }] = server_seen[..]
    else {
        panic!("server events: {server_seen:?}");
    };
    assert_eq!(remote, client_addr());
    assert!(sim.endpoint(client).is_connected(connection));
    assert!(sim.endpoint(server).is_connected(at_server));
    assert_eq!(sim.endpoint(server).connection_count(), 1);
    assert_eq!(
        sim.endpoint(server).remote_address(at_server),
        Some(client_addr())
    );
    assert_eq!(sim.endpoint(server).stats().dropped.total(), 0);
}

// ---- cookies ----

#[test]
fn a_forged_cookie_creates_no_state_and_gets_no_reply() {
    let mut hand = HandHandshake::new(Config::server());
    let request = hand.request.clone();
    let mut rng = StdRng::seed_from_u64(7);
    for round in 0..200 {
        let mut cookie = [0u8; COOKIE_LEN];
        rng.fill(&mut cookie[..]);
        if round % 2 == 0 {
            // A plausible issue time (now, in the server's current window) with a random tag,
            // so that the MAC itself is what refuses it.
            cookie[..8].copy_from_slice(&0u64.to_be_bytes());
        }
        let response = response_with_cookie(&request, &cookie);
        assert_eq!(response.len(), 1 + 22 + COOKIE_LEN);
        let before = hand.server.stats().dropped.clone();
        hand.server
            .handle_datagram(hand.now, client_addr(), response);
        assert_eq!(hand.server.connection_count(), 0, "round {round}");
        assert_eq!(
            hand.server.stats().dropped.cookie_invalid,
            before.cookie_invalid + 1,
            "round {round}"
        );
        assert_eq!(hand.server.stats().dropped.total(), before.total() + 1);
        assert!(drain_transmits(&mut hand.server, hand.now).is_empty());
        assert!(drain_events(&mut hand.server).is_empty());
    }
    assert_eq!(hand.server.stats().connections_opened, 0);
}

#[test]
fn an_expired_cookie_creates_no_state_and_gets_no_reply() {
    let lifetime = Config::default().cookie_lifetime;
    let mut hand = HandHandshake::new(Config::server());
    let challenge = hand.challenge();
    let response = hand.response_to(challenge);

    // The client would retransmit and give up; the server only sees the old response, late.
    let late = hand.base + lifetime + Duration::from_millis(1);
    hand.server.handle_datagram(late, client_addr(), response);
    assert_eq!(hand.server.connection_count(), 0);
    assert_eq!(hand.server.stats().dropped.cookie_expired, 1);
    assert_eq!(hand.server.stats().dropped.cookie_invalid, 0);
    assert!(drain_transmits(&mut hand.server, late).is_empty());
    assert!(drain_events(&mut hand.server).is_empty());
}

#[test]
fn a_cookie_is_valid_until_its_lifetime_ends() {
    let lifetime = Config::default().cookie_lifetime;
    let mut hand = HandHandshake::new(Config::server());
    let challenge = hand.challenge();
    let response = hand.response_to(challenge);
    let just_in_time = hand.base + lifetime;
    hand.server
        .handle_datagram(just_in_time, client_addr(), response);
    assert_eq!(hand.server.connection_count(), 1);
    let replies = drain_transmits(&mut hand.server, just_in_time);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].1[0], KIND_ACCEPT);
}

#[test]
fn a_valid_cookie_replayed_from_another_address_is_refused() {
    let mut hand = HandHandshake::new(Config::server());
    let challenge = hand.challenge();
    let response = hand.response_to(challenge);
    let elsewhere: [SocketAddr; 3] = [
        "10.0.0.3:40000".parse().unwrap(),
        // Same IP, other port; same port, other IP.
        "10.0.0.2:40001".parse().unwrap(),
        "10.0.0.9:40000".parse().unwrap(),
    ];
    for (i, from) in elsewhere.into_iter().enumerate() {
        hand.server
            .handle_datagram(hand.now, from, response.clone());
        assert_eq!(hand.server.connection_count(), 0, "from {from}");
        assert_eq!(hand.server.stats().dropped.cookie_invalid, i as u64 + 1);
        assert!(drain_transmits(&mut hand.server, hand.now).is_empty());
    }
    // From the address it was issued to, the same cookie works.
    hand.server
        .handle_datagram(hand.now, client_addr(), response);
    assert_eq!(hand.server.connection_count(), 1);
}

#[test]
fn a_valid_response_sent_twice_opens_one_connection() {
    let mut hand = HandHandshake::new(Config::server());
    let challenge = hand.challenge();
    let response = hand.response_to(challenge);
    for _ in 0..3 {
        hand.server
            .handle_datagram(hand.now, client_addr(), response.clone());
        let replies = drain_transmits(&mut hand.server, hand.now);
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].1[0], KIND_ACCEPT);
    }
    assert_eq!(hand.server.connection_count(), 1);
    assert_eq!(hand.server.stats().connections_opened, 1);
    let connected = drain_events(&mut hand.server)
        .into_iter()
        .filter(|e| matches!(e, Event::Connected { .. }))
        .count();
    assert_eq!(connected, 1);
}

// ---- request size and amplification ----

#[test]
fn a_request_below_the_padded_minimum_gets_no_reply() {
    let mut hand = HandHandshake::new(Config::server());
    let request = hand.request.clone();
    assert_eq!(request.len(), REQUEST_MIN_SIZE);
    let sizes = [1, 2, 23, 100, 600, REQUEST_MIN_SIZE - 1];
    for (i, size) in sizes.into_iter().enumerate() {
        hand.server
            .handle_datagram(hand.now, client_addr(), request.slice(..size));
        assert_eq!(
            hand.server.stats().dropped.request_too_small,
            i as u64 + 1,
            "size {size}"
        );
        assert!(drain_transmits(&mut hand.server, hand.now).is_empty());
        assert_eq!(hand.server.connection_count(), 0);
    }
    // Padding beyond the minimum is fine.
    let mut long = request.to_vec();
    long.resize(1400, 0);
    hand.server
        .handle_datagram(hand.now, client_addr(), long.into());
    assert_eq!(drain_transmits(&mut hand.server, hand.now).len(), 1);
}

#[test]
fn every_reply_is_one_datagram_no_larger_than_what_caused_it() {
    let mut server = Endpoint::new(
        Config {
            max_connections: 1,
            ..server_config(3)
        },
        Instant::now(),
    )
    .unwrap();
    let now = Instant::now();
    let check = |server: &mut Endpoint, from: SocketAddr, datagram: Bytes| {
        replies_to(server, now, from, datagram)
    };

    // A request gets a challenge; the response gets an accept, again if repeated.
    let (mut client, request) = client_request(client_config(4), now);
    let challenge = check(&mut server, client_addr(), request.clone());
    assert_eq!(challenge[0][0], KIND_CHALLENGE);
    client.handle_datagram(now, server_addr(), challenge[0].clone());
    let response = drain_transmits(&mut client, now).remove(0).1;
    assert_eq!(response[0], KIND_RESPONSE);
    let accept = check(&mut server, client_addr(), response.clone());
    assert_eq!(accept[0][0], KIND_ACCEPT);
    let accept = check(&mut server, client_addr(), response);
    assert_eq!(accept[0][0], KIND_ACCEPT);

    // Rejections: full, another protocol id, another channel layout, another version.
    let other: SocketAddr = "10.0.0.3:40000".parse().unwrap();
    let (_, request) = client_request(client_config(5), now);
    let reject = check(&mut server, other, request);
    assert_eq!(reject[0][0], KIND_REJECT);
    let (_, request) = client_request(
        Config {
            protocol_id: 1,
            ..client_config(6)
        },
        now,
    );
    assert_eq!(check(&mut server, other, request)[0][0], KIND_REJECT);
    let (_, request) = client_request(
        Config {
            channels: other_layout(),
            ..client_config(7)
        },
        now,
    );
    assert_eq!(check(&mut server, other, request)[0][0], KIND_REJECT);
    let mut request = request_bytes(client_config(8), now);
    request[1..3].copy_from_slice(&2u16.to_be_bytes());
    assert_eq!(check(&mut server, other, request.into())[0][0], KIND_REJECT);

    // Garbage, truncations and non-request handshake packets get nothing.
    for datagram in [
        Bytes::new(),
        Bytes::from_static(&[KIND_CHALLENGE]),
        accept[0].clone(),
        Bytes::from(vec![0xff; 1200]),
        Bytes::from_static(&[0, 0, 0]),
    ] {
        assert!(check(&mut server, other, datagram).is_empty());
    }
    // A well-formed data packet from an address without a session gets one byte: no session.
    for datagram in [vec![0; 1200], vec![0x00, 0x00, 0x07, 0x80]] {
        let reply = check(&mut server, other, datagram.into());
        assert_eq!(reply, vec![Bytes::from_static(&[0xe0])]);
    }
}

#[test]
fn a_flood_of_requests_from_spoofed_addresses_costs_no_state() {
    let now = Instant::now();
    let mut server = Endpoint::new(server_config(9), now).unwrap();
    let request = request_bytes(client_config(10), now);
    let floods = 3_000u32;
    for i in 0..floods {
        let from = SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 1000 + (i % 7) as u16));
        server.handle_datagram(now, from, Bytes::from(request.clone()));
    }
    assert_eq!(server.connection_count(), 0);
    let replies = drain_transmits(&mut server, now);
    let dropped = server.stats().dropped.reply_queue_full;
    assert_eq!(replies.len() as u64 + dropped, u64::from(floods));
    assert!(replies
        .iter()
        .all(|(_, reply)| reply.len() <= request.len()));
    assert!(
        server.stats().bytes_sent <= server.stats().bytes_received,
        "amplification: {:?}",
        server.stats()
    );
}

#[test]
fn no_session_replies_are_capped_per_second_and_keep_no_state() {
    let start = Instant::now();
    let mut server = Endpoint::new(server_config(12), start).unwrap();
    let ping = Bytes::from_static(&[0x00, 0x00, 0x07, 0x80]);
    for second in 0..2u64 {
        let now = start + Duration::from_secs(second);
        let mut replies = 0u64;
        for i in 0..1500u32 {
            let from = SocketAddr::from(([10, 2, (i >> 8) as u8, i as u8], 2000));
            server.handle_datagram(now, from, ping.clone());
            for (to, reply) in drain_transmits(&mut server, now) {
                assert_eq!((to, &reply[..]), (from, &[0xe0][..]));
                replies += 1;
            }
        }
        // 1024 a second, whatever the number of senders; the rest are counted, not sent.
        assert_eq!(replies, 1024, "second {second}");
    }
    let stats = server.stats();
    assert_eq!(stats.no_session_replies, 2 * 1024);
    assert_eq!(stats.no_session_suppressed, 2 * (1500 - 1024));
    assert_eq!(stats.dropped.unknown_peer, 2 * 1500);
    assert_eq!(server.connection_count(), 0);
}

// ---- rejections ----

#[test]
fn a_full_server_rejects_the_next_client() {
    let mut sim = Simulation::new(delay_link(Duration::from_millis(10)), 2).unwrap();
    let server = sim
        .add_endpoint(
            server_addr(),
            Config {
                max_connections: 1,
                ..server_config(11)
            },
        )
        .unwrap();
    let first = sim.add_endpoint(client_addr(), client_config(12)).unwrap();
    let second = sim
        .add_endpoint("10.0.0.3:40000".parse().unwrap(), client_config(13))
        .unwrap();
    let now = sim.now();
    let to_server = sim.endpoint_mut(first).connect(server_addr(), now).unwrap();
    let outcome = first_client_event(&mut sim, first, Duration::from_secs(5));
    assert!(matches!(outcome, Some((Event::Connected { .. }, _))));

    let now = sim.now();
    let refused = sim
        .endpoint_mut(second)
        .connect(server_addr(), now)
        .unwrap();
    let (event, _) = first_client_event(&mut sim, second, Duration::from_secs(5)).unwrap();
    assert_eq!(
        event,
        Event::Disconnected {
            connection: refused,
            reason: DisconnectReason::Rejected(RejectReason::ServerFull),
        }
    );
    assert_eq!(sim.endpoint(second).connection_count(), 0);
    assert_eq!(sim.endpoint(server).connection_count(), 1);
    assert!(sim.endpoint(server).stats().dropped.server_full >= 1);
    assert!(sim.endpoint(first).is_connected(to_server));
}

#[test]
fn a_protocol_id_mismatch_is_rejected() {
    let client = Config {
        protocol_id: 0xdead_beef,
        ..client_config(14)
    };
    let (reason, server_stats) = rejection(client);
    assert_eq!(
        reason,
        DisconnectReason::Rejected(RejectReason::ProtocolMismatch)
    );
    assert!(server_stats.protocol_mismatch >= 1);
}

#[test]
fn a_channel_layout_mismatch_is_rejected() {
    let client = Config {
        channels: other_layout(),
        ..client_config(15)
    };
    let (reason, server_stats) = rejection(client);
    assert_eq!(
        reason,
        DisconnectReason::Rejected(RejectReason::ChannelMismatch)
    );
    assert!(server_stats.channel_mismatch >= 1);
}

#[test]
fn a_version_mismatch_is_rejected() {
    // No public API builds another version, so edit the version field of a real request.
    let now = Instant::now();
    let mut server = Endpoint::new(server_config(16), now).unwrap();
    let (mut client, request) = client_request(client_config(17), now);
    let mut request = request.to_vec();
    request[1..3].copy_from_slice(&2u16.to_be_bytes());
    server.handle_datagram(now, client_addr(), request.into());
    assert_eq!(server.stats().dropped.version_mismatch, 1);
    let replies = drain_transmits(&mut server, now);
    assert_eq!(replies.len(), 1);
    let reject = replies[0].1.clone();
    // Reject: kind, the client's nonce (u64), the reason (2 = version mismatch).
    assert_eq!(reject.len(), 10);
    assert_eq!(reject[0], KIND_REJECT);
    assert_eq!(reject[9], 2);
    client.handle_datagram(now, server_addr(), reject);
    let events = drain_events(&mut client);
    assert!(
        matches!(
            events[..],
            [Event::Disconnected {
                reason: DisconnectReason::Rejected(RejectReason::VersionMismatch),
                ..
            }]
        ),
        "{events:?}"
    );
    assert_eq!(server.connection_count(), 0);
    assert_eq!(client.connection_count(), 0);
}

#[test]
fn a_reject_with_the_wrong_nonce_is_ignored() {
    let now = Instant::now();
    let (mut client, request) = client_request(client_config(18), now);
    let mut reject = vec![KIND_REJECT];
    let nonce = u64::from_be_bytes(request[15..23].try_into().unwrap());
    reject.extend_from_slice(&(nonce ^ 1).to_be_bytes());
    reject.push(1);
    client.handle_datagram(now, server_addr(), reject.into());
    assert!(drain_events(&mut client).is_empty());
    assert_eq!(client.connection_count(), 1);
}

// ---- timeouts ----

#[test]
fn the_handshake_times_out_when_no_server_answers() {
    let mut sim = Simulation::new(delay_link(Duration::from_millis(10)), 3).unwrap();
    let client = sim.add_endpoint(client_addr(), client_config(19)).unwrap();
    let now = sim.now();
    let connection = sim
        .endpoint_mut(client)
        .connect(server_addr(), now)
        .unwrap();
    let (event, at) = first_client_event(&mut sim, client, Duration::from_secs(30)).unwrap();
    assert_eq!(
        event,
        Event::Disconnected {
            connection,
            reason: DisconnectReason::HandshakeTimeout
        }
    );
    let config = Config::default();
    support::assert_on_time(at, config.handshake_timeout, "handshake timeout");
    assert_eq!(sim.endpoint(client).connection_count(), 0);
    // One request per resend interval, not a storm.
    let sent = sim.endpoint(client).stats().datagrams_sent;
    let expected = (config.handshake_timeout.as_millis()
        / config.handshake_resend_interval.as_millis()) as u64;
    assert!((expected..=expected + 1).contains(&sent), "{sent} requests");
}

#[test]
fn the_handshake_times_out_when_every_reply_is_lost() {
    let mut sim = Simulation::new(delay_link(Duration::from_millis(10)), 4).unwrap();
    let server = sim.add_endpoint(server_addr(), server_config(20)).unwrap();
    let client = sim.add_endpoint(client_addr(), client_config(21)).unwrap();
    sim.network_mut()
        .set_link(server_addr(), client_addr(), dead_link())
        .unwrap();
    let now = sim.now();
    let connection = sim
        .endpoint_mut(client)
        .connect(server_addr(), now)
        .unwrap();
    let mut server_ever_held_state = false;
    let mut outcome = None;
    sim.run_until(Duration::from_secs(30), |sim| {
        server_ever_held_state |= sim.endpoint(server).connection_count() > 0;
        if let Some(event) = sim.poll_event(client) {
            outcome = Some((event, sim.elapsed()));
        }
        outcome.is_some()
    })
    .unwrap();
    let (event, at) = outcome.expect("no outcome");
    assert_eq!(
        event,
        Event::Disconnected {
            connection,
            reason: DisconnectReason::HandshakeTimeout
        }
    );
    support::assert_on_time(at, Config::default().handshake_timeout, "handshake timeout");
    assert!(
        !server_ever_held_state,
        "the server kept state for a client"
    );
    assert!(sim.endpoint(server).stats().datagrams_received >= 10);
    assert!(drain_events_sim(&mut sim, server).is_empty());
}

#[test]
fn the_handshake_completes_under_half_loss_both_ways() {
    let link = LinkConfig {
        latency: Duration::from_millis(30),
        loss: 0.5,
        ..LinkConfig::default()
    };
    for seed in 0..30 {
        let mut sim = Simulation::new(link.clone(), seed).unwrap();
        let server = sim
            .add_endpoint(server_addr(), server_config(seed ^ 0x5e))
            .unwrap();
        let client = sim
            .add_endpoint(client_addr(), client_config(seed ^ 0xc1))
            .unwrap();
        let now = sim.now();
        let connection = sim
            .endpoint_mut(client)
            .connect(server_addr(), now)
            .unwrap();
        let outcome = first_client_event(&mut sim, client, Duration::from_secs(30));
        assert!(
            matches!(outcome, Some((Event::Connected { .. }, _))),
            "seed {seed}: {outcome:?}"
        );
        assert!(sim.endpoint(client).is_connected(connection));
        let accepted = drain_events_sim(&mut sim, server);
        assert_eq!(accepted.len(), 1, "seed {seed}: {accepted:?}");
        assert_eq!(sim.endpoint(server).connection_count(), 1);
    }
}

#[test]
fn connecting_twice_to_the_same_address_is_refused() {
    let pair = connected_pair(LinkConfig::default(), 5, |_| {});
    let mut sim = pair.sim;
    let now = sim.now();
    assert_eq!(
        sim.endpoint_mut(pair.client).connect(server_addr(), now),
        Err(tickwire::ConnectError::AlreadyConnected(server_addr()))
    );
    let unspecified: SocketAddr = "0.0.0.0:7777".parse().unwrap();
    assert_eq!(
        sim.endpoint_mut(pair.client).connect(unspecified, now),
        Err(tickwire::ConnectError::InvalidAddress(unspecified))
    );
}

// ---- helpers ----

fn server_config(seed: u64) -> Config {
    Config {
        seed: Some(seed),
        ..Config::server()
    }
}

fn client_config(seed: u64) -> Config {
    Config {
        seed: Some(seed),
        ..Config::client()
    }
}

/// The default layout with one channel changed.
fn other_layout() -> ChannelLayout {
    let mut layout = ChannelLayout::default();
    layout.client_to_server[0] = ChannelConfig::new(ChannelKind::ReliableOrdered);
    layout
}

/// A client endpoint that has called `connect`, and its first request.
fn client_request(config: Config, now: Instant) -> (Endpoint, Bytes) {
    let mut client = Endpoint::new(config, now).unwrap();
    client.connect(server_addr(), now).unwrap();
    let mut sent = drain_transmits(&mut client, now);
    assert_eq!(sent.len(), 1);
    let (to, request) = sent.remove(0);
    assert_eq!(to, server_addr());
    assert_eq!(request[0], KIND_REQUEST);
    (client, request)
}

fn request_bytes(config: Config, now: Instant) -> Vec<u8> {
    client_request(config, now).1.to_vec()
}

/// A connection response carrying `request`'s fields and `cookie`.
fn response_with_cookie(request: &[u8], cookie: &[u8; COOKIE_LEN]) -> Bytes {
    let mut response = vec![KIND_RESPONSE];
    response.extend_from_slice(&request[REQUEST_FIELDS]);
    response.extend_from_slice(cookie);
    response.into()
}

/// A server and a client driven by hand through the first half of the handshake.
struct HandHandshake {
    base: Instant,
    now: Instant,
    server: Endpoint,
    client: Endpoint,
    request: Bytes,
}

impl HandHandshake {
    fn new(server: Config) -> Self {
        let base = Instant::now();
        let server = Endpoint::new(
            Config {
                seed: Some(30),
                ..server
            },
            base,
        )
        .unwrap();
        let (client, request) = client_request(client_config(31), base);
        Self {
            base,
            now: base,
            server,
            client,
            request,
        }
    }

    /// Sends the request to the server and returns its challenge.
    fn challenge(&mut self) -> Bytes {
        self.server
            .handle_datagram(self.now, client_addr(), self.request.clone());
        let mut replies = drain_transmits(&mut self.server, self.now);
        assert_eq!(replies.len(), 1);
        let (to, challenge) = replies.remove(0);
        assert_eq!(to, client_addr());
        assert_eq!(challenge[0], KIND_CHALLENGE);
        assert_eq!(self.server.connection_count(), 0);
        challenge
    }

    /// Hands the challenge to the client and returns the response it sends.
    fn response_to(&mut self, challenge: Bytes) -> Bytes {
        self.client
            .handle_datagram(self.now, server_addr(), challenge);
        let mut sent = drain_transmits(&mut self.client, self.now);
        assert_eq!(sent.len(), 1);
        let response = sent.remove(0).1;
        assert_eq!(response[0], KIND_RESPONSE);
        assert_eq!(response.len(), 1 + 22 + COOKIE_LEN);
        response
    }
}

/// Runs until the client node has an event; returns it with the virtual time elapsed.
fn first_client_event(
    sim: &mut Simulation,
    client: NodeId,
    limit: Duration,
) -> Option<(Event, Duration)> {
    let mut outcome = None;
    sim.run_until(limit, |sim| {
        if let Some(event) = sim.poll_event(client) {
            outcome = Some((event, sim.elapsed()));
        }
        outcome.is_some()
    })
    .unwrap();
    outcome
}

/// Feeds one datagram to `server` and returns its replies, checking that there is at most one
/// and that it is no larger than the datagram.
fn replies_to(
    server: &mut Endpoint,
    now: Instant,
    from: SocketAddr,
    datagram: Bytes,
) -> Vec<Bytes> {
    let size = datagram.len();
    server.handle_datagram(now, from, datagram);
    let replies = drain_transmits(server, now);
    assert!(
        replies.len() <= 1,
        "{} replies to one datagram",
        replies.len()
    );
    for (to, reply) in &replies {
        assert_eq!(*to, from);
        assert!(
            reply.len() <= size,
            "{}-byte reply to a {size}-byte datagram",
            reply.len()
        );
    }
    replies.into_iter().map(|(_, reply)| reply).collect()
}

fn drain_events_sim(sim: &mut Simulation, node: NodeId) -> Vec<Event> {
    sim_events(sim, node)
}

/// Connects a client with `config` to a default server; returns how it ended and the server's
/// drop counters.
fn rejection(config: Config) -> (DisconnectReason, tickwire::DropCounters) {
    let mut sim = Simulation::new(delay_link(Duration::from_millis(10)), 6).unwrap();
    let server = sim.add_endpoint(server_addr(), server_config(40)).unwrap();
    let client = sim.add_endpoint(client_addr(), config).unwrap();
    let now = sim.now();
    let connection: ConnectionId = sim
        .endpoint_mut(client)
        .connect(server_addr(), now)
        .unwrap();
    let (event, at) = first_client_event(&mut sim, client, Duration::from_secs(10)).unwrap();
    let Event::Disconnected {
        connection: ended,
        reason,
    } = event
    else {
        panic!("expected a rejection, got {event:?}");
    };
    assert_eq!(ended, connection);
    // One round trip: refused at the request, not after a timeout.
    assert_eq!(at, Duration::from_millis(20));
    assert_eq!(sim.endpoint(server).connection_count(), 0);
    assert_eq!(sim.endpoint(client).connection_count(), 0);
    assert!(sim_events(&mut sim, server).is_empty());
    (reason, sim.endpoint(server).stats().dropped.clone())
}
