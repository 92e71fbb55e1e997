//! The hub: one Tickwire [`Server`] for every sensor, a database writer thread, and the
//! per-sensor state (last seen, readings, gaps, duplicates, RTT, clock estimate, battery,
//! asleep or awake).
//!
//! [`Hub::start`] spawns the hub's event loop on the current tokio runtime and returns a
//! handle. The loop owns all state; the handle talks to it through a channel.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use thiserror::Error;
use tickwire::sim::LinkConfig;
use tickwire::{
    typed, BindError, CertFingerprint, ClientId, ConnectionId, Event, PrivateKey, Security, Server,
    ServerCertificate, TokenSecurity, Transport,
};
use tokio::sync::{mpsc, oneshot};

use crate::clock::{unix_micros, ClockEstimator};
use crate::protocol::{
    self, Alert, Command, Downlink, Hello, Reading, SensorKind, Uplink, ALERTS, CONTROL, READINGS,
};
use crate::store::{AlertRow, ReadingRow, Store, StoreError, StoredCommand};
use crate::writer::{self, Committed, Report, WriteOp};

/// How the hub runs.
#[derive(Clone, Debug, PartialEq)]
pub struct HubConfig {
    /// The UDP address to listen on. Default `0.0.0.0:7878`.
    pub bind: SocketAddr,
    /// The directory of the database; created if missing. Default `./hub-data`.
    pub data_dir: PathBuf,
    /// Simulated network conditions on the hub's socket (both directions). Default `None`.
    pub link: Option<LinkConfig>,
    /// An awake sensor not heard from for this long is shown as stale (a sleepy one: this long
    /// past its announced wake). Default 5 s.
    pub stale_after: Duration,
    /// What to serve: `Native` (Tickwire over UDP on `bind`), `Quic` (QUIC only, on the port
    /// after `bind`'s) or `Auto` (both). Default `Native`.
    pub transport: Transport,
    /// Require connect tokens sealed with this key (secure native sessions). Default `None`:
    /// anyone may connect. Only with `Transport::Native`: QUIC sessions carry no token, so a
    /// QUIC listener beside a secure native one would be a way around it.
    pub key: Option<PrivateKey>,
    /// The address sensors dial, which their tokens must name. Default `None`: `bind` (a
    /// wildcard bind needs it: tokens name one concrete address).
    pub public_addr: Option<SocketAddr>,
    /// The certificate QUIC presents. Default: a new self-signed one at every start (the
    /// command line uses [`certificate::persistent`](crate::certificate::persistent) instead,
    /// so pins survive restarts).
    pub certificate: ServerCertificate,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([0, 0, 0, 0], 7878)),
            data_dir: PathBuf::from("./hub-data"),
            link: None,
            stale_after: Duration::from_secs(5),
            transport: Transport::Native,
            key: None,
            public_addr: None,
            certificate: ServerCertificate::default(),
        }
    }
}

/// The hub could not start.
#[derive(Debug, Error)]
pub enum HubError {
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The socket could not be opened.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The database thread could not be started.
    #[error("could not start the database thread: {0}")]
    Thread(#[source] std::io::Error),
    /// Connect tokens were asked for together with QUIC.
    #[error("secure mode (connect tokens) covers native sessions only, but transport {0} serves QUIC, which takes no token: use --transport native with --secure (QUIC is encrypted by TLS; pin the certificate instead)")]
    SecureNeedsNative(Transport),
    /// Secure mode on a wildcard address without a public address for the tokens.
    #[error("tokens name the exact address sensors dial, but the hub binds {0}: add --public-addr HOST:PORT (the address sensors use)")]
    NoPublicAddr(SocketAddr),
    /// The QUIC certificate could not be made or saved.
    #[error(transparent)]
    Certificate(#[from] crate::certificate::CertificateError),
    /// The system clock is before 1970 (tokens carry Unix times).
    #[error("the system clock reads before 1970: set the clock (tokens carry Unix times)")]
    Clock,
}

/// A running hub.
pub struct Hub {
    control: mpsc::UnboundedSender<Control>,
    local_addr: SocketAddr,
    transport: Transport,
    quic_addr: Option<SocketAddr>,
    cert_sha256: Option<CertFingerprint>,
    task: tokio::task::JoinHandle<HubStatus>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Hub {
    /// Opens the database, binds the socket and starts serving. Must be called within a
    /// tokio runtime.
    pub async fn start(config: HubConfig) -> Result<Self, HubError> {
        let store = Store::open(&config.data_dir)?;
        let mut driver = protocol::hub_config();
        driver.link = config.link.clone();
        driver.transport = config.transport;
        driver.quic.certificate = config.certificate.clone();
        let mut bind = config.bind;
        if let Some(key) = &config.key {
            if config.transport != Transport::Native {
                return Err(HubError::SecureNeedsNative(config.transport));
            }
            if bind.port() == 0 && config.public_addr.is_none() {
                // Tokens name a concrete port: pick a free one now (tests, `run`).
                bind = free_port(bind)?;
            }
            let public = config.public_addr.unwrap_or(bind);
            if public.ip().is_unspecified() || public.port() == 0 {
                return Err(HubError::NoPublicAddr(config.bind));
            }
            let unix_now = crate::clock::unix_seconds().ok_or(HubError::Clock)?;
            driver.endpoint.security =
                Security::Tokens(TokenSecurity::new(key.clone(), vec![public], unix_now));
        }
        let server = Server::bind(bind, driver).await?;
        let local_addr = server.local_addr();
        let quic_addr = server.quic_addr();
        let cert_sha256 = server.cert_sha256();
        let (results_tx, results) = mpsc::unbounded_channel();
        let (ops, writer) = writer::spawn(store, results_tx).map_err(HubError::Thread)?;
        let (control, control_rx) = mpsc::unbounded_channel();
        let secure = config.key.is_some();
        let state = HubState::new(server, ops, config.stale_after, secure);
        let task = tokio::spawn(state.run(control_rx, results));
        Ok(Self {
            control,
            local_addr,
            transport: config.transport,
            quic_addr,
            cert_sha256,
            task,
            writer: Some(writer),
        })
    }

    /// The address the hub listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether the hub serves native UDP (on [`local_addr`](Self::local_addr)).
    pub fn serves_native(&self) -> bool {
        self.transport != Transport::Quic
    }

    /// The address QUIC listens on, when the hub serves QUIC.
    pub fn quic_addr(&self) -> Option<SocketAddr> {
        self.quic_addr
    }

    /// The SHA-256 fingerprint of the hub's QUIC certificate, for sensors to pin
    /// (`--server-cert-sha256`), when the hub serves QUIC.
    pub fn cert_sha256(&self) -> Option<CertFingerprint> {
        self.cert_sha256
    }

    /// Queues a command for a sensor (known yet or not). It is stored in the database first
    /// (so it survives a hub restart), sent reliably as soon as the sensor is awake, and again
    /// in each session until the sensor acknowledges it; the acknowledgement is stored too.
    /// Commands queued in the database by another process (`sensor-sim command`) are picked
    /// up within 200 ms.
    pub fn queue_command(&self, sensor_id: u32, command: Command) {
        let _ = self.control.send(Control::Command(sensor_id, command));
    }

    /// A snapshot of the hub's state; `None` if the hub has stopped.
    pub async fn status(&self) -> Option<HubStatus> {
        let (tx, rx) = oneshot::channel();
        self.control.send(Control::Status(tx)).ok()?;
        rx.await.ok()
    }

    /// Returns once every message the hub has received so far is committed to the database.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Stops: disconnects every sensor, commits what is pending, and returns the final state.
    pub async fn shutdown(mut self) -> HubStatus {
        let _ = self.control.send(Control::Shutdown);
        let status = self.task.await.unwrap_or_default();
        if let Some(writer) = self.writer.take() {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
        status
    }
}

/// A snapshot of the hub.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HubStatus {
    /// Seconds since the hub started.
    pub uptime_s: f64,
    /// Totals over all sensors.
    pub totals: HubTotals,
    /// Readings stored per second over the last 60 s, oldest first.
    pub ingest_per_s: Vec<u64>,
    /// Every sensor the hub knows, by id.
    pub sensors: Vec<SensorStatus>,
}

impl HubStatus {
    /// The `n` sensors with the most missing readings (gaps), worst first.
    pub fn worst(&self, n: usize) -> Vec<SensorStatus> {
        let mut sensors = self.sensors.clone();
        sensors.sort_by(|a, b| b.gaps.cmp(&a.gaps).then(a.sensor_id.cmp(&b.sensor_id)));
        sensors.truncate(n);
        sensors
    }
}

/// Totals over all sensors.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HubTotals {
    /// Sensors the hub knows of.
    pub sensors: usize,
    /// Sensors connected now.
    pub awake: usize,
    /// Of the awake sensors, those connected over native UDP.
    pub awake_native: usize,
    /// Of the awake sensors, those connected over QUIC.
    pub awake_quic: usize,
    /// Sensors asleep as announced.
    pub asleep: usize,
    /// Sensors not heard from for too long.
    pub stale: usize,
    /// Readings received (including duplicates).
    pub readings_received: u64,
    /// Readings newly stored.
    pub readings_stored: u64,
    /// Readings received again and not stored.
    pub duplicates: u64,
    /// Readings missing: per sensor, sequence numbers below the highest seen and not stored.
    pub gaps: u64,
    /// Readings stored in the last second.
    pub readings_per_s: u64,
    /// Alerts received (including ones sent again).
    pub alerts_received: u64,
    /// Alerts newly stored.
    pub alerts_stored: u64,
    /// Alert confirmations sent.
    pub alerts_confirmed: u64,
    /// Commands waiting for a sensor to wake or acknowledge.
    pub commands_pending: usize,
    /// Commands acknowledged by sensors.
    pub commands_acked: u64,
    /// Database transactions committed.
    pub commits: u64,
    /// Slowest commit, in milliseconds.
    pub commit_ms_max: f64,
    /// Failed database transactions (retried).
    pub db_errors: u64,
    /// The last database error.
    pub last_db_error: Option<String>,
    /// Messages that did not decode.
    pub malformed: u64,
    /// Secure mode: hellos refused because their sensor id is not the connect token's client
    /// id (a sensor holding a valid token may not speak for another; its session is closed).
    pub hellos_refused: u64,
}

/// One sensor as the hub sees it.
#[derive(Clone, Debug, Serialize)]
pub struct SensorStatus {
    /// The sensor's id.
    pub sensor_id: u32,
    /// What it measures, once it said hello.
    pub kind: Option<SensorKind>,
    /// `awake`, `asleep`, `disconnected` (recently) or `stale`.
    pub state: &'static str,
    /// The transport of its current (or last) connection: `native` or `quic`.
    pub transport: Option<&'static str>,
    /// Whether it is a sleepy sensor.
    pub sleepy: bool,
    /// Seconds since the hub last heard from it.
    pub last_seen_s: Option<f64>,
    /// Readings received (including duplicates).
    pub readings_received: u64,
    /// Readings stored.
    pub readings_stored: u64,
    /// Readings received again and not stored.
    pub duplicates: u64,
    /// Sequence numbers below the highest seen that are not stored (yet).
    pub gaps: u64,
    /// Alerts newly stored.
    pub alerts_stored: u64,
    /// Smoothed round-trip time of the current connection, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Estimated offset of its clock (device minus hub) now, in milliseconds.
    pub clock_offset_ms: Option<f64>,
    /// Estimated drift of its clock, in parts per million.
    pub clock_drift_ppm: Option<f64>,
    /// Bound on the error of the offset estimate: half the shortest clock-ping round trip
    /// (the most the one-way delays can differ), in milliseconds.
    pub clock_error_ms: Option<f64>,
    /// Battery charge in percent, as last reported.
    pub battery_pct: Option<f32>,
    /// Commands waiting for it.
    pub pending_commands: usize,
}

enum Control {
    Command(u32, Command),
    Status(oneshot::Sender<HubStatus>),
    Flush(oneshot::Sender<()>),
    Shutdown,
}

/// Something received before the sensor's clock was estimated, held until it is.
enum Held {
    Readings(Vec<Reading>, i64),
    Alert(Alert, i64),
}

#[derive(Default)]
struct SensorState {
    kind: Option<SensorKind>,
    sleepy: bool,
    connection: Option<ConnectionId>,
    transport: Option<Transport>,
    last_seen: Option<Instant>,
    /// Announced wake time of a sleeping sensor.
    asleep_until: Option<Instant>,
    readings_received: u64,
    readings_stored: u64,
    duplicates: u64,
    max_seq: Option<u64>,
    alerts_stored: u64,
    battery_pct: Option<f32>,
    clock: ClockEstimator,
    /// Device time minus hub time from the Hello, a fallback before the first ping returns.
    hello_offset_us: Option<i64>,
    held: Vec<Held>,
    held_since: Option<Instant>,
    pending: VecDeque<(u64, Command)>,
    next_ping: Option<Instant>,
    pings_answered: u32,
}

struct HubState {
    server: Server,
    ops: Sender<WriteOp>,
    sensors: HashMap<u32, SensorState>,
    connections: HashMap<ConnectionId, u32>,
    /// Messages of sessions whose hello has not arrived yet, with when they were received.
    early: HashMap<ConnectionId, Vec<(Uplink, Instant, i64)>>,
    totals: HubTotals,
    started: Instant,
    stale_after: Duration,
    next_ping_id: u32,
    ingest: VecDeque<u64>,
    stored_at_last_second: u64,
    next_second: Instant,
    /// Readings to store, not yet handed to the writer.
    rows: Vec<ReadingRow>,
    /// Secure mode: a hello must name the sensor its connect token was issued for.
    secure: bool,
    /// The clocks when the current batch of events was taken (see `read_clocks`).
    now: Instant,
    now_us: i64,
}

impl HubState {
    fn new(server: Server, ops: Sender<WriteOp>, stale_after: Duration, secure: bool) -> Self {
        let now = Instant::now();
        Self {
            server,
            ops,
            sensors: HashMap::new(),
            connections: HashMap::new(),
            early: HashMap::new(),
            totals: HubTotals::default(),
            started: now,
            stale_after,
            next_ping_id: 0,
            ingest: VecDeque::new(),
            stored_at_last_second: 0,
            next_second: now + Duration::from_secs(1),
            rows: Vec::new(),
            secure,
            now,
            now_us: unix_micros(),
        }
    }

    async fn run(
        mut self,
        mut control: mpsc::UnboundedReceiver<Control>,
        mut results: mpsc::UnboundedReceiver<Report>,
    ) -> HubStatus {
        let mut events = Vec::with_capacity(EVENT_BATCH);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                alive = self.server.next_events(&mut events, EVENT_BATCH) => {
                    if !alive {
                        break;
                    }
                    self.read_clocks();
                    for event in events.drain(..) {
                        self.handle_event(event);
                    }
                    self.send_rows();
                }
                Some(report) = results.recv() => self.handle_report(report),
                command = control.recv() => match command {
                    Some(Control::Command(sensor_id, command)) => {
                        let _ = self.ops.send(WriteOp::QueueCommand(sensor_id, command));
                    }
                    Some(Control::Status(reply)) => {
                        let _ = reply.send(self.status());
                    }
                    Some(Control::Flush(reply)) => self.flush(reply),
                    Some(Control::Shutdown) | None => break,
                },
                _ = tick.tick() => {
                    self.handle_tick();
                    self.send_rows();
                }
            }
        }
        // Commit what is held, and let the writer finish.
        let (tx, _rx) = oneshot::channel();
        self.flush(tx);
        let status = self.status();
        let HubState { server, ops, .. } = self;
        drop(ops);
        server.shutdown().await;
        status
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Message {
                connection, data, ..
            } => match typed::decode::<Uplink>(&data) {
                Ok(message) => self.handle_message(connection, message, self.now, self.now_us),
                Err(_) => self.totals.malformed += 1,
            },
            Event::Disconnected { connection, .. } => {
                self.early.remove(&connection);
                let Some(sensor_id) = self.connections.remove(&connection) else {
                    return;
                };
                if let Some(sensor) = self.sensors.get_mut(&sensor_id) {
                    if sensor.connection == Some(connection) {
                        sensor.connection = None;
                        sensor.next_ping = None;
                    }
                }
            }
            Event::Connected { .. } | Event::Delivery { .. } => {}
        }
    }

    /// Hands the readings gathered from the last batch of events to the writer in one
    /// message (was one per datagram: an allocation and a channel send per reading at 10 Hz).
    fn send_rows(&mut self) {
        if !self.rows.is_empty() {
            let capacity = self.rows.len();
            let rows = std::mem::replace(&mut self.rows, Vec::with_capacity(capacity));
            let _ = self.ops.send(WriteOp::Readings(rows));
        }
    }

    /// Reads the clocks once for a batch of events (two clock reads per message were a few
    /// percent of the hub's time in H1); a batch is handled within a millisecond or so.
    fn read_clocks(&mut self) {
        self.now = Instant::now();
        self.now_us = unix_micros();
    }

    /// Handles one message received at `now` (`received_us` on the wall clock).
    fn handle_message(
        &mut self,
        connection: ConnectionId,
        message: Uplink,
        now: Instant,
        received_us: i64,
    ) {
        if let Uplink::Hello(hello) = message {
            self.handle_hello(connection, hello, now, received_us);
            return;
        }
        // Anything else needs a session that said hello. Unreliable readings can overtake a
        // hello that was lost and sent again: keep them until it arrives.
        let Some(&sensor_id) = self.connections.get(&connection) else {
            let early = self.early.entry(connection).or_default();
            if early.len() < MAX_EARLY {
                // Stored with the time it came, not the time its hello did.
                early.push((message, now, received_us));
            }
            return;
        };
        let Some(sensor) = self.sensors.get_mut(&sensor_id) else {
            return;
        };
        // An early message is older than the hello that released it.
        sensor.last_seen = sensor.last_seen.max(Some(now));
        match message {
            Uplink::Hello(_) => {}
            Uplink::Readings(batch) => {
                sensor.battery_pct = Some(batch.battery_pct);
                let n = batch.readings.len() as u64;
                sensor.readings_received += n;
                self.totals.readings_received += n;
                if let Some(max) = batch.readings.iter().map(|r| r.seq).max() {
                    sensor.max_seq = Some(sensor.max_seq.map_or(max, |m| m.max(max)));
                }
                if sensor.clock.samples() >= SYNC_SAMPLES {
                    store_readings(
                        &mut self.rows,
                        sensor_id,
                        sensor,
                        &batch.readings,
                        received_us,
                    );
                } else {
                    sensor.held_since.get_or_insert(now);
                    sensor
                        .held
                        .push(Held::Readings(batch.readings, received_us));
                }
            }
            Uplink::Alert(alert) => {
                self.totals.alerts_received += 1;
                if sensor.clock.samples() >= SYNC_SAMPLES {
                    store_alert(&self.ops, sensor_id, sensor, &alert, received_us);
                } else {
                    sensor.held_since.get_or_insert(now);
                    sensor.held.push(Held::Alert(alert, received_us));
                }
            }
            Uplink::TimeReply(reply) => {
                sensor.clock.add(
                    reply.hub_sent_us,
                    reply.device_received_us,
                    reply.device_sent_us,
                    received_us,
                );
                sensor.pings_answered += 1;
                if sensor.clock.samples() >= SYNC_SAMPLES {
                    release_held(&self.ops, &mut self.rows, sensor_id, sensor);
                }
            }
            Uplink::CommandAck { command_id } => {
                let before = sensor.pending.len();
                sensor.pending.retain(|(id, _)| *id != command_id);
                if sensor.pending.len() < before {
                    self.totals.commands_acked += 1;
                    let _ = self
                        .ops
                        .send(WriteOp::CommandAcked(command_id, received_us));
                }
            }
            Uplink::Sleeping { wake_in_ms } => {
                sensor.asleep_until = Some(now + Duration::from_millis(wake_in_ms));
            }
        }
    }

    fn handle_hello(
        &mut self,
        connection: ConnectionId,
        hello: Hello,
        now: Instant,
        received_us: i64,
    ) {
        if self.secure
            && self.server.client_id(connection) != Some(ClientId(u64::from(hello.sensor_id)))
        {
            self.totals.hellos_refused += 1;
            self.early.remove(&connection);
            self.server.disconnect(connection, CODE_WRONG_SENSOR);
            return;
        }
        let sensor = self.sensors.entry(hello.sensor_id).or_default();
        if let Some(old) = sensor.connection.replace(connection) {
            if old != connection {
                self.connections.remove(&old);
                self.server.disconnect(old, CODE_REPLACED);
            }
        }
        self.connections.insert(connection, hello.sensor_id);
        sensor.transport = self.server.transport_of(connection);
        sensor.kind = Some(hello.kind);
        sensor.sleepy = hello.sleepy;
        sensor.last_seen = Some(now);
        sensor.asleep_until = None;
        sensor.battery_pct = Some(hello.battery_pct);
        sensor.hello_offset_us = Some(hello.device_time_us - received_us);
        sensor.pings_answered = 0;
        sensor.next_ping = Some(now);
        for &(command_id, command) in &sensor.pending {
            send(
                &self.server,
                connection,
                CONTROL,
                &Downlink::Command {
                    command_id,
                    command,
                },
            );
        }
        let pending_commands = sensor.pending.len() as u32;
        send(
            &self.server,
            connection,
            CONTROL,
            &Downlink::Welcome { pending_commands },
        );
        self.ping(hello.sensor_id, now);
        for (message, at, at_us) in self.early.remove(&connection).unwrap_or_default() {
            self.handle_message(connection, message, at, at_us);
        }
    }

    fn handle_report(&mut self, report: Report) {
        match report {
            Report::Committed(committed, flushes) => {
                self.handle_commit(committed);
                for reply in flushes {
                    let _ = reply.send(());
                }
            }
            Report::Failed(error) => {
                self.totals.db_errors += 1;
                self.totals.last_db_error = Some(error);
            }
            Report::Commands(commands) => {
                for command in commands {
                    self.hold_command(command);
                }
            }
        }
    }

    fn handle_commit(&mut self, committed: Committed) {
        self.totals.commits += 1;
        self.totals.commit_ms_max = self
            .totals
            .commit_ms_max
            .max(committed.took.as_secs_f64() * 1000.0);
        self.totals.alerts_stored += committed.written.alerts_inserted;
        for (sensor_id, (inserted, duplicates)) in committed.written.readings {
            self.totals.readings_stored += inserted;
            self.totals.duplicates += duplicates;
            if let Some(sensor) = self.sensors.get_mut(&sensor_id) {
                sensor.readings_stored += inserted;
                sensor.duplicates += duplicates;
            }
        }
        for (sensor_id, alert_id) in committed.alerts {
            let Some(sensor) = self.sensors.get_mut(&sensor_id) else {
                continue;
            };
            sensor.alerts_stored += 1;
            if let Some(connection) = sensor.connection {
                send(
                    &self.server,
                    connection,
                    ALERTS,
                    &Downlink::AlertStored { alert_id },
                );
                self.totals.alerts_confirmed += 1;
            }
        }
    }

    fn handle_tick(&mut self) {
        let now = Instant::now();
        let due: Vec<u32> = self
            .sensors
            .iter()
            .filter(|(_, s)| s.next_ping.is_some_and(|t| t <= now))
            .map(|(&id, _)| id)
            .collect();
        for sensor_id in due {
            self.ping(sensor_id, now);
        }
        // Held too long without a clock sample (pings lost): use the Hello's rough offset.
        for (&sensor_id, sensor) in &mut self.sensors {
            if sensor.held_since.is_some_and(|t| now - t > HOLD_LIMIT) {
                release_held(&self.ops, &mut self.rows, sensor_id, sensor);
            }
        }
        while now >= self.next_second {
            let stored = self.totals.readings_stored;
            self.ingest.push_back(stored - self.stored_at_last_second);
            self.stored_at_last_second = stored;
            if self.ingest.len() > 60 {
                self.ingest.pop_front();
            }
            self.next_second += Duration::from_secs(1);
        }
    }

    fn ping(&mut self, sensor_id: u32, now: Instant) {
        let Some(sensor) = self.sensors.get_mut(&sensor_id) else {
            return;
        };
        let Some(connection) = sensor.connection else {
            sensor.next_ping = None;
            return;
        };
        self.next_ping_id = self.next_ping_id.wrapping_add(1);
        send(
            &self.server,
            connection,
            READINGS,
            &Downlink::TimeRequest {
                ping_id: self.next_ping_id,
                hub_sent_us: unix_micros(),
            },
        );
        // Quick pings while a session starts, then one every few seconds.
        let interval = if sensor.pings_answered < FAST_PINGS {
            FAST_PING_INTERVAL
        } else {
            PING_INTERVAL
        };
        sensor.next_ping = Some(now + interval);
    }

    /// Holds a command from the database until its sensor acknowledges it; sends it now if
    /// the sensor is awake.
    fn hold_command(&mut self, stored: StoredCommand) {
        let StoredCommand {
            command_id,
            sensor_id,
            command,
            ..
        } = stored;
        let sensor = self.sensors.entry(sensor_id).or_default();
        if sensor.pending.iter().any(|&(id, _)| id == command_id) {
            return;
        }
        sensor.pending.push_back((command_id, command));
        if let Some(connection) = sensor.connection {
            send(
                &self.server,
                connection,
                CONTROL,
                &Downlink::Command {
                    command_id,
                    command,
                },
            );
        }
    }

    fn flush(&mut self, reply: oneshot::Sender<()>) {
        // Take in what the endpoint has already received, then commit everything.
        self.read_clocks();
        while let Some(event) = self.server.try_event() {
            self.handle_event(event);
        }
        for (&sensor_id, sensor) in &mut self.sensors {
            release_held(&self.ops, &mut self.rows, sensor_id, sensor);
        }
        self.send_rows();
        let _ = self.ops.send(WriteOp::Flush(reply));
    }

    fn status(&self) -> HubStatus {
        let now = Instant::now();
        let now_us = unix_micros();
        let mut totals = self.totals.clone();
        totals.sensors = self.sensors.len();
        totals.awake = 0;
        totals.awake_native = 0;
        totals.awake_quic = 0;
        totals.asleep = 0;
        totals.stale = 0;
        totals.gaps = 0;
        totals.commands_pending = 0;
        let mut sensors = Vec::with_capacity(self.sensors.len());
        for (&sensor_id, s) in &self.sensors {
            let state = if s.connection.is_some() {
                "awake"
            } else if let Some(wake) = s.asleep_until {
                if now < wake + self.stale_after {
                    "asleep"
                } else {
                    "stale"
                }
            } else if s.last_seen.is_some_and(|t| now - t < self.stale_after) {
                "disconnected"
            } else {
                "stale"
            };
            match state {
                "awake" => {
                    totals.awake += 1;
                    match s.transport {
                        Some(Transport::Quic) => totals.awake_quic += 1,
                        _ => totals.awake_native += 1,
                    }
                }
                "asleep" => totals.asleep += 1,
                "stale" => totals.stale += 1,
                _ => {}
            }
            let gaps = s
                .max_seq
                .map_or(0, |m| (m + 1).saturating_sub(s.readings_stored));
            totals.gaps += gaps;
            totals.commands_pending += s.pending.len();
            let rtt_ms = s
                .connection
                .and_then(|c| self.server.stats(c))
                .map(|st| st.rtt.as_secs_f64() * 1000.0);
            sensors.push(SensorStatus {
                sensor_id,
                kind: s.kind,
                state,
                transport: s.transport.map(Transport::name),
                sleepy: s.sleepy,
                last_seen_s: s.last_seen.map(|t| (now - t).as_secs_f64()),
                readings_received: s.readings_received,
                readings_stored: s.readings_stored,
                duplicates: s.duplicates,
                gaps,
                alerts_stored: s.alerts_stored,
                rtt_ms,
                clock_offset_ms: s.clock.offset_at(now_us).map(|o| o / 1000.0),
                clock_drift_ppm: s.clock.drift_ppm(),
                clock_error_ms: s.clock.min_rtt_us().map(|r| r as f64 / 2000.0),
                battery_pct: s.battery_pct,
                pending_commands: s.pending.len(),
            });
        }
        sensors.sort_by_key(|s| s.sensor_id);
        totals.readings_per_s = self.ingest.back().copied().unwrap_or(0);
        HubStatus {
            uptime_s: self.started.elapsed().as_secs_f64(),
            totals,
            ingest_per_s: self.ingest.iter().copied().collect(),
            sensors,
        }
    }
}

/// `addr` with a port the system has free now (it could be taken again before the hub binds
/// it, which fails the start with "port in use", never silently).
fn free_port(addr: SocketAddr) -> Result<SocketAddr, HubError> {
    let socket = std::net::UdpSocket::bind(addr)
        .map_err(|source| HubError::Bind(BindError::Io { addr, source }))?;
    socket
        .local_addr()
        .map_err(|source| HubError::Bind(BindError::Io { addr, source }))
}

/// Adds the rows of `readings` to `rows` (sent to the writer by [`HubState::send_rows`]).
fn store_readings(
    rows: &mut Vec<ReadingRow>,
    sensor_id: u32,
    sensor: &SensorState,
    readings: &[Reading],
    received_us: i64,
) {
    rows.extend(readings.iter().map(|r| ReadingRow {
        sensor_id,
        seq: r.seq,
        device_ts: r.device_ts_us,
        corrected_ts: correct(sensor, r.device_ts_us),
        received_ts: received_us,
        value: r.value,
    }));
}

fn store_alert(
    ops: &Sender<WriteOp>,
    sensor_id: u32,
    sensor: &SensorState,
    alert: &Alert,
    received_us: i64,
) {
    let _ = ops.send(WriteOp::Alert(AlertRow {
        sensor_id,
        alert_id: alert.alert_id,
        seq: alert.reading.seq,
        device_ts: alert.reading.device_ts_us,
        corrected_ts: correct(sensor, alert.reading.device_ts_us),
        received_ts: received_us,
        value: alert.reading.value,
        threshold: alert.threshold,
    }));
}

/// The device timestamp on the hub's clock: from the fitted estimate, else the Hello's rough
/// offset, else as is.
fn correct(sensor: &SensorState, device_us: i64) -> i64 {
    sensor
        .clock
        .correct(device_us)
        .or_else(|| sensor.hello_offset_us.map(|o| device_us - o))
        .unwrap_or(device_us)
}

fn release_held(
    ops: &Sender<WriteOp>,
    rows: &mut Vec<ReadingRow>,
    sensor_id: u32,
    sensor: &mut SensorState,
) {
    sensor.held_since = None;
    for held in std::mem::take(&mut sensor.held) {
        match held {
            Held::Readings(readings, at) => store_readings(rows, sensor_id, sensor, &readings, at),
            Held::Alert(alert, at) => store_alert(ops, sensor_id, sensor, &alert, at),
        }
    }
}

fn send(
    server: &Server,
    connection: ConnectionId,
    channel: tickwire::ChannelId,
    message: &Downlink,
) {
    // Encoding these plain structs cannot fail; a full send buffer means the sensor is not
    // reading, and reliable messages are resent in its next session.
    if let Ok(bytes) = typed::encode(message) {
        let _: Result<_, _> = server.send(connection, channel, Bytes::clone(&bytes));
    }
}

/// Events taken from the server at once.
const EVENT_BATCH: usize = 4096;
/// Period of the hub's housekeeping: pings, stale checks, ingest history.
const TICK: Duration = Duration::from_millis(50);
/// Longest readings wait for a clock sample before the Hello's rough offset is used.
const HOLD_LIMIT: Duration = Duration::from_secs(2);
/// Most messages kept per session while its hello is missing.
const MAX_EARLY: usize = 1024;
/// Clock pings answered at the start of a session before the hub slows down to
/// [`PING_INTERVAL`], and their spacing.
const FAST_PINGS: u32 = 5;
const FAST_PING_INTERVAL: Duration = Duration::from_millis(200);
/// Spacing of clock pings once a session's clock is estimated. Drift within ±50 ppm moves an
/// offset by at most 0.25 ms in 5 s, and the estimator fits the drift over its last 32 samples,
/// so sparser pings cost no accuracy (H5) but save the hub a send and the sensor a send per
/// sensor and second (was 1 s: 10,000 pings and 10,000 replies a second in H1).
const PING_INTERVAL: Duration = Duration::from_secs(5);
/// Clock samples wanted before readings are stored with corrected timestamps.
const SYNC_SAMPLES: usize = 3;
/// Disconnect code for a session replaced by a newer one of the same sensor.
const CODE_REPLACED: u16 = 1;
/// Disconnect code for a secure session whose hello names another sensor than its token.
pub const CODE_WRONG_SENSOR: u16 = 2;
