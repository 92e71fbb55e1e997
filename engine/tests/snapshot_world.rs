//! Delta snapshots over a lossy simulated link: the client's world converges exactly to the
//! server's, removed entities never reappear, a late joiner gets the full state, and no delta
//! ever names a baseline the client lacks.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tickwire::fuzzing::Probe;
use tickwire::sim::{LinkConfig, NodeId, Simulation};
use tickwire::snapshot::{
    BitWriter, EntityId, SnapshotClient, SnapshotConfig, SnapshotDecodeError, SnapshotServer,
};
use tickwire::{ChannelConfig, ChannelId, ChannelKind, ChannelLayout, Config, ConnectionId, Event};

const SNAPSHOTS: ChannelId = ChannelId(0);

/// The entity: the fuzzing harness's probe state (two 18-bit coordinates and a flag, one
/// "changed" bit per field in deltas).
type Thing = Probe;

fn layout() -> ChannelLayout {
    ChannelLayout::symmetric(vec![ChannelConfig {
        notify_delivery: true,
        ..ChannelConfig::new(ChannelKind::Unreliable)
    }])
}

struct Game {
    sim: Simulation,
    server: NodeId,
    server_addr: SocketAddr,
    world: SnapshotServer<Thing>,
    clients: Vec<Viewer>,
    rng: StdRng,
    /// Clients report decoded snapshots (`handle_ack`) instead of the transport's delivery
    /// notification (`handle_delivery`).
    client_acks: bool,
    next_id: u32,
    removed: BTreeSet<u32>,
    tick: u64,
}

struct Viewer {
    node: NodeId,
    /// The client's connection to the server.
    to_server: ConnectionId,
    /// The server's connection to this client, once accepted.
    on_server: Option<ConnectionId>,
    snapshots: SnapshotClient<Thing>,
    /// Ids this client has seen and then seen gone.
    gone: BTreeSet<u32>,
    seen: BTreeSet<u32>,
}

impl Game {
    fn new(link: LinkConfig, seed: u64) -> Self {
        let mut sim = Simulation::new(link, seed).unwrap();
        let server_addr: SocketAddr = "10.0.0.1:7777".parse().unwrap();
        let config = Config {
            seed: Some(seed),
            channels: layout(),
            ..Config::server()
        };
        let server = sim.add_endpoint(server_addr, config).unwrap();
        Game {
            sim,
            server,
            server_addr,
            world: SnapshotServer::new(SnapshotConfig::default()),
            clients: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
            client_acks: false,
            next_id: 0,
            removed: BTreeSet::new(),
            tick: 0,
        }
    }

    fn join(&mut self, port: u16) -> usize {
        let addr: SocketAddr = format!("10.0.0.2:{port}").parse().unwrap();
        let config = Config {
            seed: Some(u64::from(port)),
            channels: layout(),
            ..Config::client()
        };
        let node = self.sim.add_endpoint(addr, config).unwrap();
        let now = self.sim.now();
        let to_server = self
            .sim
            .endpoint_mut(node)
            .connect(self.server_addr, now)
            .unwrap();
        self.clients.push(Viewer {
            node,
            to_server,
            on_server: None,
            snapshots: SnapshotClient::new(SnapshotConfig::default()),
            gone: BTreeSet::new(),
            seen: BTreeSet::new(),
        });
        self.clients.len() - 1
    }

    /// Random creations, moves and removals; removed ids are never reused.
    fn edit(&mut self) {
        for _ in 0..self.rng.random_range(0..6) {
            match self.rng.random_range(0..10) {
                0..=2 => {
                    let id = self.next_id;
                    self.next_id += 1;
                    let thing = Thing {
                        x: self.rng.random_range(0..1 << 18),
                        y: self.rng.random_range(0..1 << 18),
                        lit: self.rng.random(),
                    };
                    self.world.set(EntityId(id), thing);
                }
                3 => {
                    let ids: Vec<EntityId> = self.world.iter().map(|(id, _)| id).collect();
                    if let Some(&id) = ids.get(self.rng.random_range(0..ids.len().max(1))) {
                        self.world.remove(id);
                        self.removed.insert(id.0);
                    }
                }
                _ => {
                    let ids: Vec<EntityId> = self.world.iter().map(|(id, _)| id).collect();
                    if let Some(&id) = ids.get(self.rng.random_range(0..ids.len().max(1))) {
                        let mut thing = self.world.get(id).cloned().unwrap();
                        thing.x = (thing.x + self.rng.random_range(0..100)) % (1 << 18);
                        thing.lit = !thing.lit;
                        self.world.set(id, thing);
                    }
                }
            }
        }
    }

    /// One snapshot tick: send a snapshot to every connected client, then run the network for
    /// `period`, feeding events to both sides.
    fn step(&mut self, period: Duration, editing: bool) {
        if editing {
            self.edit();
        }
        self.tick += 1;
        let now = self.sim.now();
        for viewer in &self.clients {
            let Some(connection) = viewer.on_server else {
                continue;
            };
            let mut bytes = Vec::new();
            if let Some(info) = self.world.encode(connection, self.tick, now, &mut bytes) {
                assert!(info.bytes <= SnapshotConfig::default().max_snapshot_bytes + 8);
                let message = self
                    .sim
                    .endpoint_mut(self.server)
                    .send(connection, SNAPSHOTS, Bytes::from(bytes))
                    .unwrap();
                self.world.sent(connection, info.seq, message);
            }
        }
        let end = self.sim.now() + period;
        let (server, world, clients) = (self.server, &mut self.world, &mut self.clients);
        let client_acks = self.client_acks;
        self.sim
            .run_until(period, |sim| {
                while let Some(event) = sim.poll_event(server) {
                    match event {
                        Event::Connected {
                            connection, remote, ..
                        } => {
                            world.add_client(connection);
                            if let Some(v) =
                                clients.iter_mut().find(|v| sim.address(v.node) == remote)
                            {
                                v.on_server = Some(connection);
                            }
                        }
                        Event::Delivery {
                            connection,
                            message,
                            outcome,
                            ..
                        } if !client_acks => world.handle_delivery(connection, message, outcome),
                        Event::Message {
                            connection, data, ..
                        } if client_acks => {
                            let seq = u64::from_be_bytes(data[..8].try_into().unwrap());
                            world.handle_ack(connection, seq);
                        }
                        Event::Disconnected { reason, .. } => panic!("server: {reason}"),
                        _ => {}
                    }
                }
                for viewer in clients.iter_mut() {
                    while let Some(event) = sim.poll_event(viewer.node) {
                        match event {
                            Event::Message { data, .. } => {
                                let decoded = viewer
                                    .snapshots
                                    .receive(&data)
                                    .expect("a delta against a baseline the client lacks");
                                if let Some(decoded) = decoded {
                                    // Never diverge: what the client decoded is exactly what the
                                    // server recorded it would hold.
                                    if let Some(expected) = viewer
                                        .on_server
                                        .and_then(|c| world.sent_view(c, decoded.seq))
                                    {
                                        let got: Vec<_> = decoded.view.iter().collect();
                                        let want: Vec<_> = expected.iter().collect();
                                        assert_eq!(got, want, "view {} diverged", decoded.seq);
                                    }
                                    if client_acks {
                                        let ack =
                                            Bytes::copy_from_slice(&decoded.seq.to_be_bytes());
                                        let to_server = viewer.to_server;
                                        let _ = sim
                                            .endpoint_mut(viewer.node)
                                            .send(to_server, SNAPSHOTS, ack);
                                    }
                                    let ids: BTreeSet<u32> =
                                        decoded.view.iter().map(|(id, _)| id.0).collect();
                                    for id in &ids {
                                        assert!(
                                            !viewer.gone.contains(id),
                                            "entity {id} reappeared"
                                        );
                                    }
                                    for id in viewer.seen.difference(&ids) {
                                        viewer.gone.insert(*id);
                                    }
                                    viewer.seen = ids;
                                }
                            }
                            Event::Disconnected { reason, .. } => panic!("client: {reason}"),
                            _ => {}
                        }
                    }
                }
                sim.now() >= end
            })
            .unwrap();
    }

    fn assert_converged(&self, index: usize) {
        let viewer = &self.clients[index];
        let view = viewer.snapshots.view().expect("no snapshot decoded");
        let client: Vec<(EntityId, &Thing)> = view.iter().collect();
        let server: Vec<(EntityId, &Thing)> = self.world.iter().collect();
        assert_eq!(client, server, "client {index} diverged from the server");
        for id in &self.removed {
            assert!(
                view.get(EntityId(*id)).is_none(),
                "removed entity {id} present"
            );
        }
    }
}

fn lossy_link() -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(150),
        jitter: Duration::from_millis(50),
        loss: 0.25,
        ..LinkConfig::default()
    }
}

#[test]
fn converges_exactly_within_a_second_of_the_last_change_under_25_percent_loss() {
    for seed in 0..8 {
        let mut game = Game::new(lossy_link(), seed);
        game.join(40_000);
        let period = Duration::from_millis(33);
        for _ in 0..300 {
            game.step(period, true);
        }
        // A client that joins late gets everything.
        game.join(40_001);
        for _ in 0..150 {
            game.step(period, true);
        }
        // The server stops changing: within one second both clients hold its world exactly.
        for _ in 0..30 {
            game.step(period, false);
        }
        game.assert_converged(0);
        game.assert_converged(1);
        assert!(
            game.world.len() > 10,
            "seed {seed}: too small a world to mean much"
        );
    }
}

#[test]
fn client_acknowledgements_work_as_well_on_a_long_lossy_path() {
    let link = LinkConfig {
        latency: Duration::from_millis(300),
        jitter: Duration::from_millis(75),
        loss: 0.06,
        ..LinkConfig::default()
    };
    for seed in 0..4 {
        let mut game = Game::new(link.clone(), seed);
        game.client_acks = true;
        game.join(40_000);
        let period = Duration::from_millis(33);
        for _ in 0..300 {
            game.step(period, true);
        }
        for _ in 0..60 {
            game.step(period, false);
        }
        game.assert_converged(0);
    }
}

#[test]
fn a_bandwidth_budget_defers_changes_but_they_all_arrive() {
    let mut game = Game::new(lossy_link(), 77);
    game.world = SnapshotServer::new(SnapshotConfig {
        max_snapshot_bytes: 200,
        ..SnapshotConfig::default()
    });
    game.join(40_000);
    let period = Duration::from_millis(33);
    for _ in 0..200 {
        game.step(period, true);
    }
    for _ in 0..150 {
        game.step(period, false);
    }
    game.assert_converged(0);
}

#[test]
fn nothing_changing_costs_nothing_with_skip_unchanged() {
    let mut server = SnapshotServer::new(SnapshotConfig {
        skip_unchanged: true,
        ..SnapshotConfig::default()
    });
    let mut client = SnapshotClient::<Thing>::new(SnapshotConfig::default());
    for id in 0..10_000 {
        server.set(
            EntityId(id),
            Thing {
                x: id,
                y: 0,
                lit: false,
            },
        );
    }
    let connection = ConnectionId(1);
    server.add_client(connection);
    let now = std::time::Instant::now();
    let mut total = 0;
    for tick in 0..50u64 {
        let mut bytes = Vec::new();
        if let Some(info) = server.encode(connection, tick, now, &mut bytes) {
            total += info.bytes;
            client.receive(&bytes).unwrap();
            // Acknowledge at once: a perfect link.
            server.sent(connection, info.seq, tickwire::MessageId(info.seq));
            server.handle_delivery(
                connection,
                tickwire::MessageId(info.seq),
                tickwire::DeliveryOutcome::Acked,
            );
        }
    }
    // The full world went out once (in budget-sized pieces), then nothing more.
    let view = client.view().unwrap();
    assert_eq!(view.len(), 10_000);
    let before = total;
    for tick in 50..100u64 {
        let mut bytes = Vec::new();
        assert!(server.encode(connection, tick, now, &mut bytes).is_none());
    }
    assert_eq!(total, before);
}

#[test]
fn hostile_snapshot_bytes_are_errors_not_panics() {
    let mut client = SnapshotClient::<Thing>::new(SnapshotConfig::default());
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..20_000 {
        let len = rng.random_range(0..64);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let _ = client.receive(&bytes);
    }
    // A delta against a baseline never received.
    let mut bytes = Vec::new();
    let mut w = BitWriter::new(&mut bytes);
    w.write_varint(10);
    w.write_varint(1);
    w.write_varint(3);
    w.write_bool(false);
    assert_eq!(
        SnapshotClient::<Thing>::new(SnapshotConfig::default())
            .receive(&bytes)
            .err(),
        Some(SnapshotDecodeError::UnknownBaseline(7))
    );
}

#[test]
fn leaving_and_entering_interest_is_a_removal_and_a_creation() {
    let mut server = SnapshotServer::new(SnapshotConfig::default());
    let mut client = SnapshotClient::<Thing>::new(SnapshotConfig::default());
    let connection = ConnectionId(7);
    server.add_client(connection);
    // The client sees only the left half of the world.
    server.set_interest(
        connection,
        Some(Box::new(|_, thing: &Thing| thing.x < 1000)),
    );
    let now = std::time::Instant::now();
    let mut exchange = |server: &mut SnapshotServer<Thing>, tick: u64| {
        let mut bytes = Vec::new();
        let info = server.encode(connection, tick, now, &mut bytes).unwrap();
        let decoded = client.receive(&bytes).unwrap().unwrap();
        server.handle_ack(connection, decoded.seq);
        (info, decoded.view)
    };
    let near = Thing {
        x: 10,
        y: 0,
        lit: false,
    };
    let far = Thing {
        x: 5000,
        y: 0,
        lit: false,
    };
    server.set(EntityId(1), near.clone());
    server.set(EntityId(2), far.clone());
    let (_, view) = exchange(&mut server, 1);
    assert_eq!(view.get(EntityId(1)), Some(&near));
    assert!(view.get(EntityId(2)).is_none(), "outside the filter");
    // Entity 1 walks away: removed for this client; entity 2 walks in: created, whole.
    server.set(EntityId(1), far.clone());
    server.set(EntityId(2), near.clone());
    let (info, view) = exchange(&mut server, 2);
    assert_eq!(info.entries, 2);
    assert!(view.get(EntityId(1)).is_none());
    assert_eq!(view.get(EntityId(2)), Some(&near));
    // Nothing changed: an empty delta.
    let (info, view) = exchange(&mut server, 3);
    assert_eq!((info.entries, view.len()), (0, 1));
}
