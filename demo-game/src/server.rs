//! The authoritative game server: a fixed-tick loop over a [`tickwire::Server`].
//!
//! Each tick it drains the network's events (joins, inputs, chat, leaves), applies every
//! player's input stamped for this tick (or repeats its last one if none arrived in time),
//! simulates the [`World`], and every `tick_hz / snapshot_hz` ticks encodes one delta snapshot
//! per client ([`SnapshotServer`]) against the newest snapshot that client acknowledged in its
//! input packets.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use thiserror::Error;
use tickwire::snapshot::{EntityId, SnapshotConfig, SnapshotServer};
use tickwire::{BindError, CertFingerprint, ConnectionId, DriverConfig, Event, Server, Transport};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::entity::Thing;
use crate::percentile::percentile;
use crate::protocol::{
    truncate_chars, ClientMessage, InputPacket, ScoreEntry, ServerMessage, CLIENT_EVENTS, INPUTS,
    MAX_CHAT_CHARS, MAX_INPUTS_PER_PACKET, MAX_NAME_CHARS, SCOREBOARD_LINES, SERVER_EVENTS,
    SNAPSHOTS,
};
use crate::world::{Body, GameEvent, Input, World};

/// Settings of a [`GameServer`].
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on. Default `0.0.0.0:7777`.
    pub bind: SocketAddr,
    /// Simulation ticks per second. Default 60.
    pub tick_hz: u32,
    /// Snapshots per second to each client; at most `tick_hz` (rounded to a whole number of
    /// ticks between snapshots). Default 30.
    pub snapshot_hz: u32,
    /// The network driver's configuration (from [`crate::net::driver_config`]).
    pub driver: DriverConfig,
    /// Seed of coin placement and spawn points. Default 1.
    pub seed: u64,
    /// Ticks of player positions to remember for [`GameServer::history`] (tests compare
    /// clients' views with it). Default 0: none.
    pub history_ticks: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([0, 0, 0, 0], 7777)),
            tick_hz: 60,
            snapshot_hz: 30,
            driver: DriverConfig::server(),
            seed: 1,
            history_ticks: 0,
        }
    }
}

/// Why the server did not start.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The socket could not be opened (port in use, ...).
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The tick rate is out of range.
    #[error("the tick rate must be between 1 and {MAX_TICK_HZ} Hz, got {0}")]
    TickRate(u32),
    /// The snapshot rate is out of range.
    #[error("the snapshot rate must be between 1 Hz and the tick rate ({tick_hz} Hz), got {snapshot_hz}")]
    SnapshotRate {
        /// The tick rate.
        tick_hz: u32,
        /// The snapshot rate asked for.
        snapshot_hz: u32,
    },
}

/// What the server did over the last second, for its status line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerStatus {
    /// The last tick simulated.
    pub tick: u64,
    /// Players in the game.
    pub players: usize,
    /// Of those, players connected over QUIC (the rest use native UDP, or hybrid).
    pub quic_players: usize,
    /// Tick processing time (events, simulation, snapshots), median over the last second's
    /// ticks with players in the game, µs.
    pub tick_us_p50: f64,
    /// Tick processing time, 99th percentile over the last second, µs.
    pub tick_us_p99: f64,
    /// Bytes per second sent to all clients (UDP payload), over the last second.
    pub bytes_out_per_sec: u64,
    /// Bytes per second received from all clients, over the last second.
    pub bytes_in_per_sec: u64,
    /// Mean snapshot size over the last second, bytes.
    pub snapshot_bytes_mean: f64,
    /// Inputs that arrived after their tick was simulated (since the start).
    pub late_inputs: u64,
    /// Client messages that did not decode (since the start).
    pub bad_messages: u64,
}

/// Tick times over the whole run (ticks with players only), for the benchmark.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunSummary {
    /// Ticks simulated.
    pub ticks: u64,
    /// Ticks with at least one player (those the tick times describe).
    pub busy_ticks: u64,
    /// Median tick processing time, µs.
    pub tick_us_p50: f64,
    /// 99th percentile tick processing time, µs.
    pub tick_us_p99: f64,
    /// Most players at once.
    pub max_players: usize,
    /// Bytes sent in total (UDP payload).
    pub bytes_out: u64,
    /// Bytes received in total.
    pub bytes_in: u64,
    /// Inputs that arrived after their tick.
    pub late_inputs: u64,
}

/// Players' bodies at one tick, as recorded for [`GameServer::history`].
pub type TickState = (u64, Vec<(EntityId, Body)>);

/// A running game server; dropping it stops the loop.
pub struct GameServer {
    local_addr: SocketAddr,
    quic_addr: Option<SocketAddr>,
    cert_sha256: Option<CertFingerprint>,
    shared: Arc<Mutex<Shared>>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl GameServer {
    /// Binds the socket and starts the tick loop. Must be called within a tokio runtime.
    pub async fn start(config: ServerConfig) -> Result<Self, ServerError> {
        if config.tick_hz == 0 || config.tick_hz > MAX_TICK_HZ {
            return Err(ServerError::TickRate(config.tick_hz));
        }
        if config.snapshot_hz == 0 || config.snapshot_hz > config.tick_hz {
            return Err(ServerError::SnapshotRate {
                tick_hz: config.tick_hz,
                snapshot_hz: config.snapshot_hz,
            });
        }
        let net = Server::bind(config.bind, config.driver.clone()).await?;
        let local_addr = net.local_addr();
        let quic_addr = net.quic_addr();
        let cert_sha256 = net.cert_sha256();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(net, config, Arc::clone(&shared), stopped));
        Ok(Self {
            local_addr,
            quic_addr,
            cert_sha256,
            shared,
            stop,
            task: Some(task),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address QUIC listens on, when the server serves QUIC.
    pub fn quic_addr(&self) -> Option<SocketAddr> {
        self.quic_addr
    }

    /// The SHA-256 of the QUIC certificate, for clients to pin, when the server serves QUIC.
    pub fn cert_sha256(&self) -> Option<CertFingerprint> {
        self.cert_sha256
    }

    /// The last second's figures.
    pub fn status(&self) -> ServerStatus {
        self.lock().status.clone()
    }

    /// Tick times and totals since the start.
    pub fn summary(&self) -> RunSummary {
        let shared = self.lock();
        let mut times = shared.all_tick_us.clone();
        RunSummary {
            ticks: shared.status.tick,
            busy_ticks: times.len() as u64,
            tick_us_p50: percentile(&mut times, 50.0),
            tick_us_p99: percentile(&mut times, 99.0),
            max_players: shared.max_players,
            bytes_out: shared.bytes_out,
            bytes_in: shared.bytes_in,
            late_inputs: shared.status.late_inputs,
        }
    }

    /// The players' bodies at each of the last `history_ticks` ticks, oldest first.
    pub fn history(&self) -> Vec<TickState> {
        self.lock().history.iter().cloned().collect()
    }

    /// Stops the loop and closes every connection (clients see the server leave).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for GameServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[derive(Default)]
struct Shared {
    status: ServerStatus,
    history: VecDeque<TickState>,
    all_tick_us: Vec<f64>,
    max_players: usize,
    bytes_out: u64,
    bytes_in: u64,
}

/// One connection.
struct Peer {
    /// Its player, once it said hello.
    player: Option<EntityId>,
    /// Inputs received for future ticks.
    inputs: BTreeMap<u64, Input>,
    /// The input applied last, repeated while none arrives.
    last_input: Input,
    /// The transport it connected over.
    transport: Transport,
}

struct Loop {
    net: Server,
    config: ServerConfig,
    shared: Arc<Mutex<Shared>>,
    world: World,
    snapshots: SnapshotServer<Thing>,
    peers: HashMap<ConnectionId, Peer>,
    owners: HashMap<EntityId, ConnectionId>,
    scoreboard_dirty: bool,
    scoreboard_sent: Option<Instant>,
    notice_tokens: f64,
    notice_refill: Instant,
    buf: Vec<u8>,
    // Measures since the last status.
    tick_us: Vec<f64>,
    snapshot_bytes: (u64, u64),
    late_inputs: u64,
    bad_messages: u64,
    last_status: Instant,
    last_bytes: (u64, u64),
}

async fn run(
    net: Server,
    config: ServerConfig,
    shared: Arc<Mutex<Shared>>,
    mut stopped: watch::Receiver<bool>,
) {
    let period = Duration::from_secs_f64(1.0 / f64::from(config.tick_hz));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let snapshot_config = SnapshotConfig {
        max_snapshot_bytes: MAX_SNAPSHOT_BYTES,
        ..SnapshotConfig::default()
    };
    let mut game = Loop {
        world: World::new(config.seed),
        snapshots: SnapshotServer::new(snapshot_config),
        net,
        config,
        shared,
        peers: HashMap::new(),
        owners: HashMap::new(),
        scoreboard_dirty: false,
        scoreboard_sent: None,
        notice_tokens: NOTICE_BURST,
        notice_refill: Instant::now(),
        buf: Vec::with_capacity(MAX_SNAPSHOT_BYTES),
        tick_us: Vec::new(),
        snapshot_bytes: (0, 0),
        late_inputs: 0,
        bad_messages: 0,
        last_status: Instant::now(),
        last_bytes: (0, 0),
    };
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.changed() => break,
        }
        let started = Instant::now();
        game.tick(started);
        if game.peers.values().any(|p| p.player.is_some()) {
            game.tick_us.push(started.elapsed().as_secs_f64() * 1e6);
        }
        if started.duration_since(game.last_status) >= STATUS_PERIOD {
            game.publish_status(started);
        }
        // Catching up after a stall, the interval is ready at once: let the socket's driver
        // task (possibly on this worker) send what the tick queued before the next tick.
        tokio::task::yield_now().await;
    }
    game.net.shutdown().await;
}

impl Loop {
    fn tick(&mut self, now: Instant) {
        while let Some(event) = self.net.try_event() {
            self.handle_event(event);
        }
        let dt = 1.0 / self.config.tick_hz as f32;
        let tick = self.world.tick() + 1;
        let mut applied: HashMap<EntityId, Input> = HashMap::new();
        for peer in self.peers.values_mut() {
            let Some(player) = peer.player else { continue };
            // Inputs stamped for earlier ticks are too late now; the newest of them still
            // tells what the player holds.
            while let Some(entry) = peer.inputs.first_entry() {
                if *entry.key() > tick {
                    break;
                }
                let (_, input) = entry.remove_entry();
                peer.last_input = input;
            }
            applied.insert(player, peer.last_input);
        }
        let events = self
            .world
            .step(dt, |id| applied.get(&id).copied().unwrap_or_default());
        self.announce(&events);
        if !events.is_empty() {
            self.scoreboard_dirty = true;
        }
        self.record_history();
        let every = (self.config.tick_hz / self.config.snapshot_hz).max(1);
        if tick % u64::from(every) == 0 {
            self.send_snapshots(tick, now);
        }
        if self.scoreboard_dirty
            && self
                .scoreboard_sent
                .is_none_or(|at| now.duration_since(at) >= SCOREBOARD_PERIOD)
        {
            self.send_scoreboard(now);
        }
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Connected { connection, .. } => {
                let transport = self.net.transport_of(connection).unwrap_or_default();
                self.peers.insert(
                    connection,
                    Peer {
                        player: None,
                        inputs: BTreeMap::new(),
                        last_input: Input::NONE,
                        transport,
                    },
                );
                self.snapshots.add_client(connection);
            }
            Event::Message {
                connection,
                channel,
                data,
            } => {
                if channel == INPUTS {
                    self.handle_inputs(connection, &data);
                } else if channel == CLIENT_EVENTS {
                    self.handle_control(connection, &data);
                }
            }
            Event::Disconnected { connection, .. } => {
                self.snapshots.remove_client(connection);
                if let Some(player) = self.peers.remove(&connection).and_then(|p| p.player) {
                    self.owners.remove(&player);
                    self.snapshots.remove(player);
                    if let Some(gone) = self.world.leave(player) {
                        self.notice(format!("{} left", gone.name));
                    }
                    self.scoreboard_dirty = true;
                }
            }
            Event::Delivery { .. } => {}
        }
    }

    fn handle_inputs(&mut self, connection: ConnectionId, data: &[u8]) {
        let Ok(packet) = tickwire::typed::decode::<InputPacket>(data) else {
            self.bad_messages += 1;
            return;
        };
        if packet.inputs.len() > MAX_INPUTS_PER_PACKET {
            self.bad_messages += 1;
            return;
        }
        if packet.ack > 0 {
            self.snapshots.handle_ack(connection, packet.ack);
        }
        let Some(peer) = self.peers.get_mut(&connection) else {
            return;
        };
        let now_tick = self.world.tick();
        for (tick, input) in packet.stamped() {
            if tick <= now_tick {
                // Already simulated; only the newest packet's tail is news, and it is counted once.
                if tick == packet.newest_tick {
                    self.late_inputs += 1;
                }
                continue;
            }
            if tick > now_tick + MAX_INPUT_LEAD {
                continue;
            }
            peer.inputs.insert(tick, input);
        }
    }

    fn handle_control(&mut self, connection: ConnectionId, data: &[u8]) {
        let Ok(message) = tickwire::typed::decode::<ClientMessage>(data) else {
            self.bad_messages += 1;
            return;
        };
        match message {
            ClientMessage::Hello { name } => {
                let Some(peer) = self.peers.get_mut(&connection) else {
                    return;
                };
                if peer.player.is_some() {
                    return;
                }
                let mut name = truncate_chars(name.trim(), MAX_NAME_CHARS);
                if name.is_empty() {
                    // `#3` or, over QUIC, `#q3`: a short name either way.
                    name = format!("player{}", connection.to_string().trim_start_matches('#'));
                }
                let player = self.world.join(name.clone());
                peer.player = Some(player);
                self.owners.insert(player, connection);
                let welcome = ServerMessage::Welcome {
                    player: player.0,
                    tick_hz: self.config.tick_hz,
                    snapshot_hz: self.config.snapshot_hz,
                };
                self.send_to(connection, &welcome);
                self.notice(format!("{name} joined"));
                self.scoreboard_dirty = true;
            }
            ClientMessage::Chat { text } => {
                let Some(player) = self.peers.get(&connection).and_then(|p| p.player) else {
                    return;
                };
                let from = self
                    .world
                    .player(player)
                    .map(|p| p.name.clone())
                    .unwrap_or_default();
                let text = truncate_chars(&text, MAX_CHAT_CHARS);
                self.broadcast(&ServerMessage::Chat { from, text });
            }
        }
    }

    fn announce(&mut self, events: &[GameEvent]) {
        for event in events {
            if let GameEvent::Stole { thief, victim } = event {
                let name = |id| {
                    self.world
                        .player(id)
                        .map(|p| p.name.clone())
                        .unwrap_or_default()
                };
                let text = format!("{} bumped a coin off {}!", name(*thief), name(*victim));
                self.notice(text);
            }
        }
    }

    fn record_history(&mut self) {
        if self.config.history_ticks == 0 {
            return;
        }
        let state: Vec<(EntityId, Body)> =
            self.world.players().map(|(id, p)| (id, p.body)).collect();
        let mut shared = lock(&self.shared);
        shared.history.push_back((self.world.tick(), state));
        while shared.history.len() > self.config.history_ticks {
            shared.history.pop_front();
        }
    }

    fn send_snapshots(&mut self, tick: u64, now: Instant) {
        for (index, (x, y)) in self.world.coins().iter().enumerate() {
            self.snapshots
                .set(EntityId(index as u32), Thing::coin(*x, *y));
        }
        for (id, player) in self.world.players() {
            self.snapshots.set(id, Thing::player(&player.body));
        }
        let connections: Vec<ConnectionId> = self.peers.keys().copied().collect();
        for connection in connections {
            self.buf.clear();
            let Some(info) = self.snapshots.encode(connection, tick, now, &mut self.buf) else {
                continue;
            };
            self.snapshot_bytes.0 += info.bytes as u64;
            self.snapshot_bytes.1 += 1;
            let bytes = Bytes::copy_from_slice(&self.buf);
            if let Ok(message) = self.net.send(connection, SNAPSHOTS, bytes) {
                self.snapshots.sent(connection, info.seq, message);
            }
        }
    }

    fn send_scoreboard(&mut self, now: Instant) {
        let mut entries: Vec<ScoreEntry> = self
            .world
            .players()
            .map(|(id, p)| ScoreEntry {
                player: id.0,
                name: p.name.clone(),
                score: p.score,
            })
            .collect();
        entries.sort_by(|a, b| b.score.cmp(&a.score).then(a.player.cmp(&b.player)));
        let players = entries.len() as u32;
        let top: Vec<ScoreEntry> = entries.iter().take(SCOREBOARD_LINES).cloned().collect();
        let ranks: HashMap<u32, (u32, &ScoreEntry)> = entries
            .iter()
            .enumerate()
            .map(|(rank, e)| (e.player, (rank as u32 + 1, e)))
            .collect();
        for (connection, peer) in &self.peers {
            let Some(player) = peer.player else { continue };
            let you = ranks
                .get(&player.0)
                .map(|(rank, entry)| (*rank, (*entry).clone()));
            let message = ServerMessage::Scoreboard {
                entries: top.clone(),
                you,
                players,
            };
            self.send_to(*connection, &message);
        }
        self.scoreboard_dirty = false;
        self.scoreboard_sent = Some(now);
    }

    /// A server notice for everyone, unless notices are coming faster than
    /// [`NOTICES_PER_SEC`] (with many players, joins and steals would otherwise flood every
    /// client's reliable channel).
    fn notice(&mut self, text: String) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.notice_refill).as_secs_f64();
        self.notice_refill = now;
        self.notice_tokens = (self.notice_tokens + elapsed * NOTICES_PER_SEC).min(NOTICE_BURST);
        if self.notice_tokens < 1.0 {
            return;
        }
        self.notice_tokens -= 1.0;
        self.broadcast(&ServerMessage::Chat {
            from: String::new(),
            text,
        });
    }

    fn broadcast(&self, message: &ServerMessage) {
        if let Ok(bytes) = tickwire::typed::encode(message) {
            for (connection, peer) in &self.peers {
                if peer.player.is_some() {
                    let _ = self.net.send(*connection, SERVER_EVENTS, bytes.clone());
                }
            }
        }
    }

    fn send_to(&self, connection: ConnectionId, message: &ServerMessage) {
        if let Ok(bytes) = tickwire::typed::encode(message) {
            let _ = self.net.send(connection, SERVER_EVENTS, bytes);
        }
    }

    fn publish_status(&mut self, now: Instant) {
        let stats = self.net.endpoint_stats();
        let elapsed = now.duration_since(self.last_status).as_secs_f64().max(1e-3);
        let out = stats.bytes_sent - self.last_bytes.0;
        let inn = stats.bytes_received - self.last_bytes.1;
        self.last_bytes = (stats.bytes_sent, stats.bytes_received);
        self.last_status = now;
        let mut tick_us = std::mem::take(&mut self.tick_us);
        let (bytes, count) = std::mem::take(&mut self.snapshot_bytes);
        let players = self.world.players().count();
        let quic_players = self
            .peers
            .values()
            .filter(|p| p.player.is_some() && p.transport == Transport::Quic)
            .count();
        let mut shared = lock(&self.shared);
        if shared.all_tick_us.len() + tick_us.len() <= MAX_TICK_SAMPLES {
            shared.all_tick_us.extend_from_slice(&tick_us);
        }
        shared.max_players = shared.max_players.max(players);
        shared.bytes_out = stats.bytes_sent;
        shared.bytes_in = stats.bytes_received;
        shared.status = ServerStatus {
            tick: self.world.tick(),
            players,
            quic_players,
            tick_us_p50: percentile(&mut tick_us, 50.0),
            tick_us_p99: percentile(&mut tick_us, 99.0),
            bytes_out_per_sec: (out as f64 / elapsed) as u64,
            bytes_in_per_sec: (inn as f64 / elapsed) as u64,
            snapshot_bytes_mean: if count == 0 {
                0.0
            } else {
                bytes as f64 / count as f64
            },
            late_inputs: self.late_inputs,
            bad_messages: self.bad_messages,
        };
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// Highest tick rate accepted.
pub const MAX_TICK_HZ: u32 = 1000;
/// Largest snapshot, bytes (256 moving players fit).
const MAX_SNAPSHOT_BYTES: usize = 8 * 1024;
/// Inputs stamped further ahead than this many ticks are ignored (a client with a broken clock).
const MAX_INPUT_LEAD: u64 = 120;
/// How often the status is updated.
const STATUS_PERIOD: Duration = Duration::from_secs(1);
/// Server notices per second at most, on average.
const NOTICES_PER_SEC: f64 = 2.0;
/// Server notices sent at once at most.
const NOTICE_BURST: f64 = 5.0;
/// Least time between two scoreboards.
const SCOREBOARD_PERIOD: Duration = Duration::from_millis(500);
/// Tick times kept for the run summary (about 4.6 hours at 60 Hz).
const MAX_TICK_SAMPLES: usize = 1_000_000;
