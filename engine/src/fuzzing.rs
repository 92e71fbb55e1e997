//! Harness bodies for the fuzzers; also run by `cargo test` over the checked-in corpus.
//!
//! Each function takes arbitrary bytes and must never panic: a panic is a bug in the engine (or
//! a broken invariant, which the harnesses check with `assert!`). The cargo-fuzz targets in
//! `fuzz/fuzz_targets/` call them, and `engine/tests/fuzz_corpus.rs` replays every file of
//! `fuzz/corpus/<target>/` and `fuzz/artifacts/<target>/` through them on stable Rust, so every
//! crash ever found stays a regression test.
//!
//! | function | exercises |
//! |---|---|
//! | [`packet_decoding`] | packet kinds, handshake packets (unsecured and secure), data headers (both modes), frames, connect tokens |
//! | [`endpoint_receive`] | a server [`Endpoint`] with one established client, fed forged datagrams |
//! | [`fragment_reassembly`] | reassembly of fragments against a memory budget |
//! | [`ack_window`] | the received-packet window and the sent-packet ledger |
//! | [`snapshot_decoding`] | [`SnapshotClient::receive`](crate::snapshot::SnapshotClient::receive) after valid baselines |
//!
//! [`forge`] builds packets (valid or not) with the engine's encoders, for the real-socket
//! hostile-input tests in `tests/tests/hostile_*.rs`.
//!
//! Everything is deterministic: endpoints use fixed seeds, and all times are offsets from one
//! [`Instant`] read once per process, so an input replays bit for bit.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::{ChannelId, ChannelKind, ChannelLayout, Config};
use crate::fragment::{Reassembly, ReassemblyBudget};
use crate::secure::{verify_token, ConnectToken, PrivateKey, TokenCheck};
use crate::seq::extend;
use crate::snapshot::{
    BitReader, BitWriter, EntityId, EntityState, SnapshotClient, SnapshotConfig,
    SnapshotDecodeError, SnapshotServer,
};
use crate::wire::{DataHeader, Frame, FrameReader, Handshake, PacketKind, SecureHandshake, Writer};
use crate::{ConnectionId, Endpoint, Event};

pub mod forge;

use crate::connection::ack::{Arrival, Fate, ReceivedPackets, SentPacket, SentPackets, Settled};

/// Decodes `data` as every kind of packet, and the frames of a data packet over the default
/// channel layout (and a layout wide enough to need the escaped channel byte).
///
/// Checks that whatever decodes re-encodes to the same value, and that every frame's payload lies
/// inside the datagram, after the header, in order and without overlap.
pub fn packet_decoding(data: &[u8]) {
    let _ = PacketKind::of(data);

    if let Ok(packet) = Handshake::decode(data) {
        let mut buf = [0u8; 2048];
        let len = packet
            .encode(&mut buf)
            .expect("a decoded handshake packet fits 2048 bytes");
        assert_eq!(Handshake::decode(&buf[..len]), Ok(packet));
        if matches!(packet, Handshake::Request(_)) {
            // Requests are padded; only the fields before the padding must match.
            assert!(len <= data.len());
        } else {
            assert_eq!(&buf[..len], data, "fixed-size packets have one encoding");
        }
    }

    secure_decoding(data);

    let Ok((header, offset)) = DataHeader::decode(data) else {
        return;
    };
    assert!(offset <= data.len());
    let mut buf = [0u8; 32];
    let mut writer = Writer::new(&mut buf);
    header
        .encode(&mut writer)
        .expect("a data header fits 32 bytes");
    let len = writer.position();
    assert_eq!(DataHeader::decode(&buf[..len]), Ok((header, len)));

    let default_kinds = kinds(&ChannelLayout::default());
    let wide_kinds: Vec<ChannelKind> = (0..40).map(|i| KINDS[i % KINDS.len()]).collect();
    for kinds in [&default_kinds, &wide_kinds] {
        check_frames(data, offset, kinds);
    }
}

/// A server [`Endpoint`] with one established client is fed the datagrams encoded in `data`,
/// from the client's address and from unknown ones, and the client is fed datagrams forged with
/// the server's address, interleaved with timer runs and real traffic from the client.
///
/// `data` is a sequence of records `[control: u8][length: u16 BE][bytes]` (the last record may be
/// short). In `control`, bits 0-1 pick the path (0: to the server from the client's address; 1:
/// to the client from the server's address, as an off-path forger would send; 2, 3: to the
/// server from two unknown addresses), bits 2-4 how far virtual time advances first (0 to 20 s),
/// bit 5 makes the client application send a message first, and bit 6 runs every due timer
/// afterwards.
///
/// Checks: at most one connection, only to the client's address; an unknown address never gets
/// more datagrams or bytes than it sent; timers do not spin; nothing panics on either side.
pub fn endpoint_receive(data: &[u8]) {
    let mut session = Session::establish();
    let mut input = Input::new(data);
    for _ in 0..MAX_DATAGRAMS {
        let Some(control) = input.u8() else {
            break;
        };
        let len = input.u16().unwrap_or(0);
        let body = input.take(usize::from(len));
        session.now += ADVANCES[usize::from(control >> 2 & 0x7)];
        if control & 0x20 != 0 {
            session.client_sends(control);
        }
        let body = Bytes::copy_from_slice(body);
        match control & 0x3 {
            0 => session.deliver_to_server(client_addr(), body),
            1 => session.deliver_to_client(body),
            2 => session.deliver_to_server(stranger_addr(), body),
            _ => session.deliver_to_server(neighbour_addr(), body),
        }
        if control & 0x40 != 0 {
            session.run_timers();
        }
        session.check();
    }
    session.now += Duration::from_secs(1);
    session.run_timers();
    session.check();
}

/// Drives fragment reassembly with inserts and discards derived from `data`.
///
/// Layout: `[limit: u16][max message size: u16]`, then operations `[op: u8]...`. The low two bits
/// of `op` pick one of four messages being reassembled; `op & 0x4` discards it, otherwise an
/// insert follows: `[index: u16][count: u16][piece length: u8]`, with count kept within the wire
/// limits (1 to 65,536) as the frame decoder guarantees.
///
/// Checks: the budget always equals the bytes held, never exceeds its limit, and returns to 0
/// once every message is assembled or discarded; an assembled message is its pieces in order and
/// no larger than the maximum.
pub fn fragment_reassembly(data: &[u8]) {
    let mut input = Input::new(data);
    let limit = usize::from(input.u16().unwrap_or(4096));
    let max_message_size = usize::from(input.u16().unwrap_or(1024));
    let mut budget = ReassemblyBudget::new(limit);
    let mut slots: [Option<(Reassembly, BTreeMap<u32, Bytes>)>; 4] = Default::default();
    let now = base();
    while let Some(op) = input.u8() {
        let slot = &mut slots[usize::from(op & 0x3)];
        if op & 0x4 != 0 {
            if let Some((reassembly, _)) = slot.take() {
                reassembly.discard(&mut budget);
            }
        } else {
            let index = u32::from(input.u16().unwrap_or(0));
            let count = u32::from(input.u16().unwrap_or(0)) + 1;
            let piece_len = usize::from(input.u8().unwrap_or(0));
            let piece = Bytes::copy_from_slice(input.take(piece_len));
            if index >= count {
                // The frame decoder refuses these before reassembly sees them.
                continue;
            }
            let (reassembly, pieces) =
                slot.get_or_insert_with(|| (Reassembly::new(count, now), BTreeMap::new()));
            let used_before = budget.used;
            match reassembly.insert(index, count, piece.clone(), max_message_size, &mut budget) {
                Ok(complete) => {
                    match pieces.entry(index) {
                        Entry::Occupied(_) => {
                            assert_eq!(budget.used, used_before, "a duplicate piece was charged");
                        }
                        Entry::Vacant(slot) => {
                            assert_eq!(budget.used, used_before + piece.len());
                            slot.insert(piece);
                        }
                    }
                    assert_eq!(complete, reassembly.is_complete());
                    if complete {
                        let (reassembly, pieces) = slot.take().expect("the slot was just filled");
                        let whole = reassembly.assemble(&mut budget);
                        let expected: Vec<u8> =
                            pieces.values().flat_map(|p| p.iter().copied()).collect();
                        assert_eq!(&whole[..], &expected[..]);
                        assert!(whole.len() <= max_message_size);
                    }
                }
                Err(_) => assert_eq!(budget.used, used_before, "a refused piece was charged"),
            }
        }
        assert!(budget.used <= budget.limit);
        let held: usize = slots
            .iter()
            .flatten()
            .map(|(_, pieces)| pieces.values().map(Bytes::len).sum::<usize>())
            .sum();
        assert_eq!(
            budget.used, held,
            "the budget does not match the bytes held"
        );
    }
    for (reassembly, _) in slots.into_iter().flatten() {
        reassembly.discard(&mut budget);
    }
    assert_eq!(budget.used, 0, "budget leaked after discarding everything");
}

/// Drives the received-packet window and the sent-packet ledger with operations from `data`.
///
/// Each operation is `[op: u8]` and operands: `op % 8` is 0-2: a packet arrives (`[pn: u16]`,
/// extended and checked as the connection does; `op & 0x8` makes it ack-eliciting, and
/// `op & 0x10` resyncs on a packet behind the window, as a streak of them does); 3: the next
/// acknowledgement block is taken; 4: the window before the last far jump is restored; 5: a
/// packet is sent (`[size: u8]`, `op & 0x8` eliciting); 6: one is acknowledged (`[pn: u16]`,
/// extended against the next packet number); 7: loss detection runs (`[u8]` of elapsed time).
///
/// Checks: nothing is reported received or acknowledged that did not arrive; a packet just
/// recorded is a duplicate; bytes in flight equal the eliciting packets neither acked nor lost;
/// each packet is settled at most once, and lost only behind the largest acknowledged or after
/// its deadline.
pub fn ack_window(data: &[u8]) {
    let mut input = Input::new(data);
    // Late enough that the loss-detection deadlines below never go before the base.
    let mut now = base() + Duration::from_secs(1);
    let mut received = ReceivedPackets::new();
    let mut arrived: HashSet<u64> = HashSet::new();
    let mut sent = SentPackets::new();
    let mut ledger: Vec<(Instant, usize, bool, Fate)> = Vec::new();
    let mut largest_acked: Option<u64> = None;
    let mut settled: Vec<Settled> = Vec::new();
    while let Some(op) = input.u8() {
        let flag = op & 0x8 != 0;
        match op % 8 {
            0..=2 => {
                let pn = extend(received.expected(), input.u16().unwrap_or(0));
                let arrival = received.check(pn);
                if arrival == Arrival::Duplicate {
                    assert!(
                        arrived.contains(&pn),
                        "{pn} reported duplicate, never arrived"
                    );
                }
                if arrival == Arrival::Behind {
                    // The connection accepts these only after a resync, which restores the
                    // window from before the far jump.
                    if op & 0x10 == 0 {
                        continue;
                    }
                    received.restore_previous();
                }
                if matches!(arrival, Arrival::New | Arrival::Behind) {
                    received.insert(pn, now, flag);
                    arrived.insert(pn);
                    assert_eq!(received.check(pn), Arrival::Duplicate);
                }
            }
            3 => {
                if let Some(block) = received.next_block() {
                    assert!(arrived.contains(&block.largest));
                    for i in 0..32u64 {
                        if block.bits & (1 << i) != 0 {
                            let pn = block.largest - 1 - i;
                            assert!(arrived.contains(&pn), "acked {pn}, which never arrived");
                        }
                    }
                }
            }
            4 => received.restore_previous(),
            5 => {
                let size = usize::from(input.u8().unwrap_or(0)) + 1;
                let records = sent.take_records();
                sent.push(
                    SentPacket {
                        time: now,
                        size,
                        eliciting: flag,
                        fate: Fate::InFlight,
                        records,
                    },
                    &mut settled,
                );
                ledger.push((now, size, flag, Fate::InFlight));
                settle(&mut ledger, &mut settled, |_, fate, _| fate == Fate::Lost);
            }
            6 => {
                let pn = extend(sent.next(), input.u16().unwrap_or(0));
                let expected = ledger
                    .get(pn as usize)
                    .is_some_and(|&(_, _, eliciting, fate)| eliciting && fate == Fate::InFlight);
                let acked = sent.ack(pn, &mut settled);
                if expected {
                    assert!(acked, "in-flight packet {pn} not acknowledged");
                }
                if (pn as usize) < ledger.len() {
                    largest_acked = largest_acked.max(Some(pn));
                }
                let eliciting = ledger.get(pn as usize).is_some_and(|entry| entry.2);
                if acked && !eliciting {
                    ledger[pn as usize].3 = Fate::Acked;
                }
                settle(&mut ledger, &mut settled, |settled_pn, fate, _| {
                    settled_pn == pn && fate == Fate::Acked
                });
            }
            _ => {
                now += Duration::from_millis(u64::from(input.u8().unwrap_or(0)) * 4);
                let sent_before = now - Duration::from_millis(100);
                let expired_before = flag.then(|| now - Duration::from_millis(500));
                sent.detect_lost(sent_before, expired_before, &mut settled);
                settle(&mut ledger, &mut settled, |pn, fate, time| {
                    fate == Fate::Lost
                        && (largest_acked.is_some_and(|largest| pn < largest)
                            || expired_before.is_some_and(|t| time <= t))
                });
            }
        }
        let in_flight: usize = ledger
            .iter()
            .filter(|&&(_, _, eliciting, fate)| eliciting && fate == Fate::InFlight)
            .map(|&(_, size, _, _)| size)
            .sum();
        assert_eq!(sent.in_flight(), in_flight, "bytes in flight out of step");
        assert_eq!(sent.next(), ledger.len() as u64);
    }
}

/// Decodes `data` as a world snapshot on a client that already holds valid baselines (a full
/// snapshot, then a delta with a change, a creation and a removal).
///
/// Checks: a refused snapshot leaves the client unchanged and is refused again the same way; an
/// accepted one has ascending ids, at most `max_entities`, a new number, becomes the client's
/// view, and is ignored as a duplicate when received again.
pub fn snapshot_decoding(data: &[u8]) {
    let config = SnapshotConfig {
        history: 8,
        max_entities: 64,
        ..SnapshotConfig::default()
    };
    let (mut client, newest) = snapshot_client_with_baselines(&config);
    let view_before = client.view().expect("the baselines were decoded");
    let errors_before = client.errors();
    match client.receive(data) {
        Err(error) => {
            assert_eq!(client.errors(), errors_before + 1);
            let view_after = client.view().expect("a view is kept");
            assert!(
                Arc::ptr_eq(&view_before, &view_after),
                "a refused snapshot changed the view"
            );
            assert_eq!(client.receive(data).err(), Some(error));
        }
        Ok(None) => {
            let view_after = client.view().expect("a view is kept");
            assert!(
                Arc::ptr_eq(&view_before, &view_after),
                "a stale snapshot changed the view"
            );
        }
        Ok(Some(decoded)) => {
            assert!(decoded.seq > newest);
            assert!(decoded.view.len() <= config.max_entities);
            let ids: Vec<EntityId> = decoded.view.iter().map(|(id, _)| id).collect();
            assert!(
                ids.windows(2).all(|pair| pair[0] < pair[1]),
                "ids out of order"
            );
            let view_after = client.view().expect("a view is kept");
            assert!(Arc::ptr_eq(&decoded.view, &view_after));
            assert!(matches!(client.receive(data), Ok(None)));
        }
    }
}

// ---- endpoint session ----

/// Datagrams one input may feed, so that an input's cost stays bounded.
const MAX_DATAGRAMS: usize = 64;

/// Timer runs at one instant before the timers are declared spinning.
const MAX_TIMER_RUNS: usize = 64;

/// Virtual time advances selectable by a record's control byte.
const ADVANCES: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_millis(1),
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(20),
];

/// The server's address; the seed corpus generator uses the same addresses and seeds.
fn server_addr() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 7777))
}

fn client_addr() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 2], 5000))
}

fn stranger_addr() -> SocketAddr {
    SocketAddr::from(([10, 6, 6, 6], 666))
}

/// Same host as the client, another port (as after a NAT rebinding).
fn neighbour_addr() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 2], 5001))
}

/// A server and a client shuttled by hand, as in the [`Endpoint`] docs.
struct Session {
    now: Instant,
    server: Endpoint,
    client: Endpoint,
    connection: ConnectionId,
    buf: Vec<u8>,
    /// Per unknown address: datagrams and bytes received from it, and sent to it.
    strangers: HashMap<SocketAddr, [usize; 4]>,
}

impl Session {
    fn establish() -> Self {
        let now = base();
        let server = Endpoint::new(
            Config {
                seed: Some(1),
                ..Config::server()
            },
            now,
        )
        .expect("the default server config is valid");
        let mut client = Endpoint::new(
            Config {
                seed: Some(2),
                ..Config::client()
            },
            now,
        )
        .expect("the default client config is valid");
        let connection = client
            .connect(server_addr(), now)
            .expect("the server address is valid");
        let mut session = Self {
            now,
            server,
            client,
            connection,
            buf: vec![0; Endpoint::MAX_DATAGRAM],
            strangers: HashMap::new(),
        };
        session.shuttle();
        assert!(
            session.client.is_connected(connection),
            "the scripted handshake failed"
        );
        assert_eq!(session.server.connection_count(), 1);
        session
    }

    /// The client application sends a message on the channel the control byte picks.
    fn client_sends(&mut self, control: u8) {
        let channel = ChannelId(control >> 3 & 0x3);
        let len = if control & 0x80 != 0 { 3000 } else { 20 };
        let _ = self
            .client
            .send(self.connection, channel, Bytes::from(vec![control; len]));
        self.shuttle();
    }

    fn deliver_to_server(&mut self, from: SocketAddr, datagram: Bytes) {
        if from != client_addr() {
            let counts = self.strangers.entry(from).or_default();
            counts[0] += 1;
            counts[1] += datagram.len();
        }
        self.server.handle_datagram(self.now, from, datagram);
        self.shuttle();
    }

    /// A datagram forged with the server's address reaches the client.
    fn deliver_to_client(&mut self, datagram: Bytes) {
        self.client
            .handle_datagram(self.now, server_addr(), datagram);
        self.shuttle();
    }

    /// Runs due timers on both sides until none is due at `now`.
    fn run_timers(&mut self) {
        for _ in 0..MAX_TIMER_RUNS {
            let server_due = self.server.poll_timeout().is_some_and(|t| t <= self.now);
            let client_due = self.client.poll_timeout().is_some_and(|t| t <= self.now);
            if !server_due && !client_due {
                return;
            }
            self.server.handle_timeout(self.now);
            self.client.handle_timeout(self.now);
            self.shuttle();
        }
        panic!("timers still due after {MAX_TIMER_RUNS} runs at one instant");
    }

    /// Moves datagrams between the endpoints until both are quiet; what the server sends to
    /// other addresses is counted.
    fn shuttle(&mut self) {
        for _ in 0..MAX_TIMER_RUNS {
            let mut moved = false;
            while let Some(t) = self.server.poll_transmit(self.now, &mut self.buf) {
                moved = true;
                let datagram = Bytes::copy_from_slice(&self.buf[..t.size]);
                if t.destination == client_addr() {
                    self.client
                        .handle_datagram(self.now, server_addr(), datagram);
                } else {
                    let counts = self.strangers.entry(t.destination).or_default();
                    counts[2] += 1;
                    counts[3] += t.size;
                }
            }
            while let Some(t) = self.client.poll_transmit(self.now, &mut self.buf) {
                moved = true;
                assert_eq!(t.destination, server_addr());
                let datagram = Bytes::copy_from_slice(&self.buf[..t.size]);
                self.server
                    .handle_datagram(self.now, client_addr(), datagram);
            }
            while let Some(event) = self.server.poll_event() {
                if let Event::Connected { remote, .. } = event {
                    assert_eq!(
                        remote,
                        client_addr(),
                        "a connection from an unknown address"
                    );
                }
            }
            while self.client.poll_event().is_some() {}
            if !moved {
                return;
            }
        }
    }

    fn check(&self) {
        assert!(self.server.connection_count() <= 1);
        for id in self.server.connections() {
            assert_eq!(self.server.remote_address(id), Some(client_addr()));
        }
        for (addr, [received, received_bytes, sent, sent_bytes]) in &self.strangers {
            assert!(
                sent <= received,
                "{sent} datagrams to {addr}, which sent {received}"
            );
            assert!(
                sent_bytes <= received_bytes,
                "{sent_bytes} bytes to {addr}, which sent {received_bytes}"
            );
        }
    }
}

// ---- snapshots ----

/// The entity state [`snapshot_decoding`] decodes: two 18-bit coordinates and a flag, with one
/// "changed" bit per field in deltas. Public so that seed corpora can be built with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// First coordinate, below 2^18.
    pub x: u32,
    /// Second coordinate, below 2^18.
    pub y: u32,
    /// A flag.
    pub lit: bool,
}

impl EntityState for Probe {
    fn write_full(&self, w: &mut BitWriter<'_>) {
        w.write_bits(u64::from(self.x), 18);
        w.write_bits(u64::from(self.y), 18);
        w.write_bool(self.lit);
    }

    fn read_full(r: &mut BitReader<'_>) -> Result<Self, SnapshotDecodeError> {
        Ok(Self {
            x: r.read_bits(18)? as u32,
            y: r.read_bits(18)? as u32,
            lit: r.read_bool()?,
        })
    }

    fn write_delta(&self, base: &Self, w: &mut BitWriter<'_>) {
        for (new, old) in [(self.x, base.x), (self.y, base.y)] {
            w.write_bool(new != old);
            if new != old {
                w.write_varint_signed(i64::from(new) - i64::from(old));
            }
        }
        w.write_bool(self.lit);
    }

    fn read_delta(base: &Self, r: &mut BitReader<'_>) -> Result<Self, SnapshotDecodeError> {
        let mut field = |old: u32| -> Result<u32, SnapshotDecodeError> {
            if !r.read_bool()? {
                return Ok(old);
            }
            let value = i64::from(old) + r.read_varint_signed()?;
            u32::try_from(value).map_err(|_| SnapshotDecodeError::Malformed)
        };
        let x = field(base.x)?;
        let y = field(base.y)?;
        Ok(Self {
            x,
            y,
            lit: r.read_bool()?,
        })
    }
}

/// A client that decoded snapshot 1 (full) and 2 (a delta against 1); returns it and 2.
fn snapshot_client_with_baselines(config: &SnapshotConfig) -> (SnapshotClient<Probe>, u64) {
    let peer = ConnectionId(0);
    let mut server = SnapshotServer::new(config.clone());
    let mut client = SnapshotClient::new(config.clone());
    server.add_client(peer);
    for id in [0, 1, 2, 5, 40] {
        let state = Probe {
            x: id * 100,
            y: 7,
            lit: id % 2 == 0,
        };
        server.set(EntityId(id), state);
    }
    let mut newest = 0;
    for tick in 1..=2 {
        let mut buf = Vec::new();
        let info = server
            .encode(peer, tick, base(), &mut buf)
            .expect("the client was added");
        client
            .receive(&buf)
            .expect("a valid snapshot decodes")
            .expect("and is the newest");
        server.handle_ack(peer, info.seq);
        newest = info.seq;
        server.set(
            EntityId(1),
            Probe {
                x: 150,
                y: 9,
                lit: true,
            },
        );
        server.set(
            EntityId(3),
            Probe {
                x: 3,
                y: 3,
                lit: false,
            },
        );
        server.remove(EntityId(5));
    }
    (client, newest)
}

// ---- helpers ----

/// The one clock read: every time in the harnesses is an offset from it.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

const KINDS: [ChannelKind; 4] = [
    ChannelKind::Unreliable,
    ChannelKind::UnreliableSequenced,
    ChannelKind::ReliableOrdered,
    ChannelKind::ReliableUnordered,
];

fn kinds(layout: &ChannelLayout) -> Vec<ChannelKind> {
    layout.client_to_server.iter().map(|c| c.kind).collect()
}

/// Frames lie inside the datagram, after the header, in order, and respect the wire limits.
/// The decoders only secure sessions use: secure handshake packets, secure data headers and
/// path frames, tokens as clients hold them, and sealed tokens as servers open them.
fn secure_decoding(data: &[u8]) {
    if let Ok(SecureHandshake::Request { token, .. } | SecureHandshake::Response { token, .. }) =
        SecureHandshake::decode(data)
    {
        assert!(
            token.end <= data.len(),
            "a token range lies inside the datagram"
        );
    }
    if let Ok((header, offset)) = DataHeader::decode_secure(data) {
        assert!(offset <= data.len());
        let mut buf = [0u8; 32];
        let mut writer = Writer::new(&mut buf);
        header
            .encode(&mut writer)
            .expect("a secure data header fits 32 bytes");
        let len = writer.position();
        assert_eq!(DataHeader::decode_secure(&buf[..len]), Ok((header, len)));
        let kinds = kinds(&ChannelLayout::default());
        for frame in FrameReader::new(data, offset, &kinds).with_path_frames() {
            if frame.is_err() {
                break;
            }
        }
    }
    if let Ok(token) = ConnectToken::from_bytes(data) {
        assert_eq!(ConnectToken::from_bytes(&token.to_bytes()), Ok(token));
    }
    let servers = [SocketAddr::from(([10, 0, 0, 1], 7777))];
    let check = TokenCheck {
        protocol_id: Config::default().protocol_id,
        unix_now: 0,
        server_addresses: &servers,
    };
    // Nobody without the key can seal a token that opens.
    assert!(verify_token(&PrivateKey::from_bytes([1; 32]), data, &check).is_err());
}

fn check_frames(data: &[u8], offset: usize, kinds: &[ChannelKind]) {
    let mut end_of_previous = offset;
    for frame in FrameReader::new(data, offset, kinds) {
        let Ok(frame) = frame else {
            break;
        };
        let payload = match frame {
            Frame::Message {
                channel,
                id,
                payload,
            } => {
                let kind = kinds[usize::from(channel)];
                if kind == ChannelKind::Unreliable {
                    assert_eq!(id, 0);
                }
                payload
            }
            Frame::Fragment {
                channel,
                index,
                count,
                payload,
                ..
            } => {
                assert!(usize::from(channel) < kinds.len());
                assert!(index < count && (1..=1 << 16).contains(&count));
                payload
            }
            Frame::Control(_)
            | Frame::Ack { .. }
            | Frame::PathChallenge(_)
            | Frame::PathResponse(_) => continue,
        };
        assert!(payload.start >= end_of_previous && payload.start <= payload.end);
        assert!(payload.end <= data.len());
        end_of_previous = payload.end;
    }
}

/// Moves settled packets into the ledger, checking each was in flight and eliciting, and that
/// `allowed(pn, fate)` holds.
fn settle(
    ledger: &mut [(Instant, usize, bool, Fate)],
    settled: &mut Vec<Settled>,
    allowed: impl Fn(u64, Fate, Instant) -> bool,
) {
    for done in settled.drain(..) {
        let entry = &mut ledger[done.packet_number as usize];
        assert_eq!(
            entry.3,
            Fate::InFlight,
            "packet {} settled twice",
            done.packet_number
        );
        assert!(
            entry.2,
            "non-eliciting packet {} settled",
            done.packet_number
        );
        assert_eq!(entry.1, done.size);
        assert!(
            allowed(done.packet_number, done.fate, entry.0),
            "packet {} settled as {:?} unexpectedly",
            done.packet_number,
            done.fate
        );
        entry.3 = done.fate;
    }
}

/// A cursor over fuzz input that runs dry instead of failing.
struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn u8(&mut self) -> Option<u8> {
        let (&first, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(first)
    }

    fn u16(&mut self) -> Option<u16> {
        let high = self.u8()?;
        let low = self.u8()?;
        Some(u16::from_be_bytes([high, low]))
    }

    /// Up to `len` bytes: fewer if the input ends.
    fn take(&mut self, len: usize) -> &'a [u8] {
        let (taken, rest) = self.bytes.split_at(len.min(self.bytes.len()));
        self.bytes = rest;
        taken
    }
}
