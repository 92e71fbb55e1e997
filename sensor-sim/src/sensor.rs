//! Simulated sensors: each its own Tickwire [`Client`] (its own socket), its own clock with an
//! offset and a drift, a battery, a signal, an outbox of alerts and a backlog of readings.
//!
//! Samples are taken on a fixed schedule whatever the network does: a sensor that is
//! connecting, backing off or asleep takes the samples it missed when it next runs, with the
//! timestamps they were due at. Readings wait in the backlog until a batch carrying them is
//! acknowledged; a batch declared lost goes back into the backlog. Alerts wait in the outbox
//! until the hub says they are committed.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tickwire::sim::LinkConfig;
use tickwire::{
    typed, ChannelId, Client, ClientId, ConnectionStats, DeliveryOutcome, DriverConfig, Event,
    MessageId, PrivateKey, SendError, ServerVerification, TokenSpec, Transport,
};
use tokio::time::Instant;

use crate::clock::{unix_micros, DeviceClock};
use crate::protocol::{
    self, Alert, Command, Downlink, Hello, Reading, ReadingBatch, SensorKind, TimeReply, Uplink,
    ALERTS, CONTROL, MAX_BATCH, READINGS,
};
use crate::signal::Signal;

mod pooled;

/// A fleet of sensors to run.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetConfig {
    /// The hub's address.
    pub hub: SocketAddr,
    /// How many sensors.
    pub count: u32,
    /// The first sensor's id; the others follow. Default 0.
    pub first_id: u32,
    /// Samples per second per sensor. Default 10.
    pub rate_hz: f64,
    /// Fraction of sensors (0..=1) that sleep between wakes. Default 0.
    pub sleepy_fraction: f64,
    /// How long sleepy sensors sleep between wakes. Default 5 s.
    pub wake_interval: Duration,
    /// How long sensors take samples. Default 10 s.
    pub duration: Duration,
    /// After `duration`, how long sensors keep trying to deliver what they hold. Default 15 s.
    pub drain_timeout: Duration,
    /// Seed of everything random (signals, clocks, jitter, simulated loss). Default 1.
    pub seed: u64,
    /// Simulated network conditions on every sensor's socket (both directions). Default `None`.
    pub link: Option<LinkConfig>,
    /// Largest clock offset drawn, in either direction. Default 5 s.
    pub max_clock_offset: Duration,
    /// Largest clock drift drawn, in either direction, in parts per million. Default 50.
    pub max_drift_ppm: f64,
    /// Besides threshold crossings, raise an alert on this fraction (0..=1) of readings,
    /// picked at random: for load tests (workload H2 wants alerts on 1 %). Default 0.
    pub alert_fraction: f64,
    /// Fraction of sensors (0..=1, the last ids) that are offline at the start: they sample
    /// into their backlog and first connect, all together, after `offline_for`. Default 0.
    pub offline_fraction: f64,
    /// How long the offline sensors stay offline. Default 0.
    pub offline_for: Duration,
    /// How sensors reach the hub: `Native`, `Quic` or `Auto` (native, QUIC if native gets no
    /// answer). Default `Native`.
    pub transport: Transport,
    /// How sensors trust the hub's QUIC certificate. Default: a self-signed one is accepted
    /// from a loopback address only; pin it (`Pinned`) anywhere else.
    pub verification: ServerVerification,
    /// Secure mode: each sensor mints its own connect token from this key before each
    /// connection, with its sensor id as the token's client id (a provisioning service folded
    /// into the fleet). Default `None`: no token.
    pub key: Option<PrivateKey>,
    /// Natively, how many threads drive the fleet, each a [`ClientSet`](tickwire::ClientSet)
    /// over its share of the sensors; 0 is one per core, but no more than one per
    /// [`SENSORS_PER_THREAD`] sensors. Default 0. One thread drives about 8,000 sensors at
    /// 10 Hz on this project's 2-core machine: H1 at 10,000 sensors had p99 189 ms on one
    /// thread, 35-39 ms on two (with the hub beside them).
    pub threads: usize,
    /// Over how long the awake sensors first power on and connect, each at a random moment.
    /// Default `None`: [`MIN_RAMP`], or one sensor per [`RAMP_RATE`]th of a second if that is
    /// longer (see [`ramp`](Self::ramp)).
    pub ramp: Option<Duration>,
}

/// The shortest default ramp (see [`FleetConfig::ramp`]).
pub const MIN_RAMP: Duration = Duration::from_millis(500);
/// Sensors per second that power on in a default ramp. Each first connection costs the hub a
/// handshake, a hello, a welcome and clock pings, several times a reading's work: 8,000 sensors
/// in 0.5 s overflowed the hub's 8 MiB socket buffer (20,000 datagrams dropped in H1) while they
/// joined, and the readings lost there were late by a second. A fleet that powers on over a few
/// seconds is also the likelier sight (a hub restart is H3's and H4's business).
pub const RAMP_RATE: f64 = 2_500.0;

/// With `threads` 0, the fewest sensors that get a thread of their own.
pub const SENSORS_PER_THREAD: usize = 1_000;

impl FleetConfig {
    /// Defaults for a fleet reporting to `hub`.
    pub fn new(hub: SocketAddr) -> Self {
        Self {
            hub,
            count: 10,
            first_id: 0,
            rate_hz: 10.0,
            sleepy_fraction: 0.0,
            wake_interval: Duration::from_secs(5),
            duration: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(15),
            seed: 1,
            link: None,
            max_clock_offset: Duration::from_secs(5),
            max_drift_ppm: 50.0,
            alert_fraction: 0.0,
            offline_fraction: 0.0,
            offline_for: Duration::ZERO,
            transport: Transport::Native,
            verification: ServerVerification::LoopbackSelfSigned,
            key: None,
            threads: 0,
            ramp: None,
        }
    }

    /// Over how long the awake sensors first connect: [`ramp`](Self::ramp) if set, else
    /// [`MIN_RAMP`] or `count` / [`RAMP_RATE`] seconds, whichever is longer.
    pub fn ramp(&self) -> Duration {
        self.ramp.unwrap_or_else(|| {
            MIN_RAMP.max(Duration::from_secs_f64(f64::from(self.count) / RAMP_RATE))
        })
    }

    /// How many threads drive a native fleet (see [`threads`](Self::threads)).
    pub fn native_threads(&self) -> usize {
        if self.threads > 0 {
            return self.threads.min(self.count.max(1) as usize);
        }
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        cores
            .min((self.count as usize).div_ceil(SENSORS_PER_THREAD))
            .max(1)
    }

    /// The ids of the fleet's sensors.
    pub fn ids(&self) -> std::ops::Range<u32> {
        self.first_id..self.first_id + self.count
    }
}

/// What one sensor did.
#[derive(Clone, Debug, Serialize)]
pub struct SensorReport {
    /// Its id.
    pub sensor_id: u32,
    /// What it measured.
    pub kind: SensorKind,
    /// Whether it slept between wakes.
    pub sleepy: bool,
    /// Its clock (the truth the hub's estimate is judged against).
    #[serde(skip)]
    pub clock: DeviceClock,
    /// Samples taken (each sent at least once, unless the drain timed out).
    pub readings_sent: u64,
    /// Readings still in the backlog at the end (never acknowledged).
    pub readings_undelivered: u64,
    /// Ids of the alerts it raised.
    pub alerts_raised: Vec<u64>,
    /// Alerts the hub confirmed as stored.
    pub alerts_confirmed: u64,
    /// Alerts still in the outbox at the end.
    pub alerts_unconfirmed: u64,
    /// Per confirmed alert: milliseconds from the sample that raised it (its due time) to the
    /// hub's confirmation that it is stored, in the order confirmed.
    pub alert_confirm_ms: Vec<f32>,
    /// Commands applied, in order.
    pub commands: Vec<(u64, Command)>,
    /// Sessions (successful connections).
    pub sessions: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// The transport of its last session: `native` or `quic` (`None`: it never connected).
    pub transport: Option<&'static str>,
    /// Battery left, in percent.
    pub battery_pct: f64,
    /// The sampling rate at the end, in hertz.
    pub rate_hz: f64,
    /// The sleep interval at the end, in milliseconds (sleepy sensors).
    pub wake_interval_ms: u64,
}

/// What a fleet did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FleetReport {
    /// One report per sensor, by id.
    pub sensors: Vec<SensorReport>,
    /// Wall time of the run, in seconds.
    pub elapsed_s: f64,
}

/// Runs a fleet until every sensor has taken samples for `duration` and delivered what it
/// holds (or `drain_timeout` ran out). Must be called within a tokio runtime.
///
/// Natively every sensor is a client of a [`ClientSet`](tickwire::ClientSet) (its own socket
/// and connection); [`FleetConfig::native_threads`] blocking threads each drive one set over
/// their share of the sensors (see `pooled.rs`). Over QUIC or `Auto`, each sensor is its own
/// task with its own [`Client`].
pub async fn run_fleet(config: FleetConfig) -> FleetReport {
    let started = std::time::Instant::now();
    let mut sensors = fleet(&config);
    let sensors = if config.transport == Transport::Native {
        let threads = config.native_threads();
        let share = sensors.len().div_ceil(threads).max(1);
        let config = std::sync::Arc::new(config);
        let mut shards = Vec::with_capacity(threads);
        while !sensors.is_empty() {
            let rest = sensors.split_off(share.min(sensors.len()));
            let shard = std::mem::replace(&mut sensors, rest);
            let config = std::sync::Arc::clone(&config);
            shards.push(tokio::task::spawn_blocking(move || {
                pooled::run(shard, &config)
            }));
        }
        let mut reports = Vec::with_capacity(config.count as usize);
        for shard in shards {
            reports.extend(shard.await.unwrap_or_default());
        }
        reports
    } else {
        let tasks: Vec<_> = sensors
            .into_iter()
            .map(|sensor| tokio::spawn(sensor.run(config.clone())))
            .collect();
        let mut reports = Vec::with_capacity(tasks.len());
        for task in tasks {
            if let Ok(report) = task.await {
                reports.push(report);
            }
        }
        reports
    };
    FleetReport {
        sensors,
        elapsed_s: started.elapsed().as_secs_f64(),
    }
}

/// The fleet's sensors, by id: the first ones sleepy, the last ones offline.
fn fleet(config: &FleetConfig) -> Vec<Sensor> {
    let origin_us = unix_micros();
    let sleepy_count =
        (f64::from(config.count) * config.sleepy_fraction.clamp(0.0, 1.0)).round() as u32;
    let offline_count =
        (f64::from(config.count) * config.offline_fraction.clamp(0.0, 1.0)).round() as u32;
    config
        .ids()
        .enumerate()
        .map(|(index, sensor_id)| {
            let sleepy = (index as u32) < sleepy_count;
            let mut sensor = Sensor::new(config, sensor_id, sleepy, origin_us);
            sensor.offline = (index as u32) >= config.count - offline_count;
            sensor
        })
        .collect()
}

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// The connection was lost.
    Lost,
    /// Sleepy sensor: time to sleep.
    Sleep,
    /// The run is over and everything is delivered (or the drain timed out).
    Done,
}

/// The state of one session (connection) of a sensor.
pub(crate) struct Session {
    awake_since: Instant,
    welcomed: bool,
    time_replies: u32,
    /// A command changed the sampling rate: the work timer must follow.
    pub(crate) retick: bool,
}

/// What a sensor needs of its connection: a [`Client`] (one task per sensor, any transport)
/// or a client of the fleet's [`ClientSet`](tickwire::ClientSet) (native, all sensors on one
/// thread: see `pooled.rs`).
pub(crate) trait Link {
    /// Queues a message.
    fn send(&mut self, channel: ChannelId, data: Bytes) -> Result<MessageId, SendError>;
    /// The connection's statistics.
    fn stats(&self) -> Option<ConnectionStats>;
    /// Datagrams the connection's socket has sent.
    fn datagrams_sent(&self) -> u64;
    /// Asks the hub to acknowledge what it has received at once (it otherwise holds
    /// acknowledgements up to [`MAX_ACK_DELAY`](crate::protocol::MAX_ACK_DELAY)).
    fn request_ack(&mut self);
}

impl Link for Client {
    fn send(&mut self, channel: ChannelId, data: Bytes) -> Result<MessageId, SendError> {
        Client::send(self, channel, data)
    }

    fn stats(&self) -> Option<ConnectionStats> {
        Client::stats(self)
    }

    fn datagrams_sent(&self) -> u64 {
        self.endpoint_stats().datagrams_sent
    }

    fn request_ack(&mut self) {
        Client::request_ack(self);
    }
}

pub(crate) struct Sensor {
    id: u32,
    kind: SensorKind,
    sleepy: bool,
    clock: DeviceClock,
    rng: SmallRng,
    signal: Signal,
    battery_pct: f64,
    rate_hz: f64,
    wake_interval: Duration,
    /// Instant and true time (µs) of the start, to timestamp samples.
    start: Instant,
    start_us: i64,
    next_sample: Instant,
    next_seq: u64,
    stop_at: Instant,
    drain_until: Instant,
    backlog: VecDeque<Reading>,
    /// Reading batches awaiting their delivery notice, in the order sent (notices come in
    /// about that order, so the one named is found at or near the front).
    in_flight: VecDeque<(MessageId, Vec<Reading>)>,
    /// Over QUIC: readings sent on a reliable stream within the last [`QUIC_RESEND_WINDOW`],
    /// sent again if the connection is lost (see [`Sensor::send_backlog`]).
    quic_recent: VecDeque<(Instant, Vec<Reading>)>,
    /// The current session runs over QUIC.
    quic: bool,
    transport: Option<Transport>,
    outbox: BTreeMap<u64, Alert>,
    /// Alerts raised since the last send (the whole outbox is sent at each session start).
    pending_alerts: Vec<Alert>,
    next_alert_id: u64,
    alerts_raised: Vec<u64>,
    alerts_confirmed: u64,
    /// When each alert of the outbox was raised (its sample's due time).
    alert_raised_at: HashMap<u64, Instant>,
    alert_confirm_ms: Vec<f32>,
    applied: HashSet<u64>,
    commands: Vec<(u64, Command)>,
    sessions: u64,
    connect_failures: u64,
    datagrams_sent_before: u64,
    /// Offline at the start for `FleetConfig::offline_for`.
    offline: bool,
    /// Sampling has started.
    powered: bool,
    alert_fraction: f64,
}

impl Sensor {
    fn new(config: &FleetConfig, id: u32, sleepy: bool, origin_us: i64) -> Self {
        let mut rng = SmallRng::seed_from_u64(mix(config.seed, u64::from(id)));
        let kind = SensorKind::ALL[id as usize % SensorKind::ALL.len()];
        let max_offset = config.max_clock_offset.as_micros() as i64;
        let clock = DeviceClock {
            offset_us: if max_offset > 0 {
                rng.random_range(-max_offset..=max_offset)
            } else {
                0
            },
            drift_ppm: (rng.random::<f64>() * 2.0 - 1.0) * config.max_drift_ppm,
            origin_us,
        };
        let signal = Signal::new(kind, &mut rng);
        let battery_pct = rng.random_range(60.0..100.0);
        let start = Instant::now();
        let stop_at = start + config.duration;
        Self {
            id,
            kind,
            sleepy,
            clock,
            signal,
            battery_pct,
            rate_hz: config.rate_hz,
            wake_interval: config.wake_interval,
            start,
            start_us: unix_micros(),
            next_sample: start,
            next_seq: 0,
            stop_at,
            drain_until: stop_at + config.drain_timeout,
            backlog: VecDeque::new(),
            in_flight: VecDeque::new(),
            quic_recent: VecDeque::new(),
            quic: false,
            transport: None,
            outbox: BTreeMap::new(),
            pending_alerts: Vec::new(),
            next_alert_id: 1,
            alerts_raised: Vec::new(),
            alerts_confirmed: 0,
            alert_raised_at: HashMap::new(),
            alert_confirm_ms: Vec::new(),
            applied: HashSet::new(),
            commands: Vec::new(),
            sessions: 0,
            connect_failures: 0,
            datagrams_sent_before: 0,
            offline: false,
            powered: false,
            alert_fraction: config.alert_fraction.clamp(0.0, 1.0),
            rng,
        }
    }

    async fn run(mut self, config: FleetConfig) -> SensorReport {
        let driver = self.driver_config(&config);
        let mut wake_at = self.first_wake(&config);
        let mut failures = 0u32;
        loop {
            let now = Instant::now();
            if now >= self.drain_until {
                break;
            }
            tokio::time::sleep_until(self.sleep_until(wake_at, now)).await;
            self.take_samples(Instant::now());
            let mut client = match self.connect(&config, &driver).await {
                Ok(client) => client,
                Err(_) => {
                    failures += 1;
                    wake_at = Instant::now() + self.connect_failed(failures);
                    continue;
                }
            };
            failures = 0;
            self.connected(client.transport(), &config);
            let end = self.session(&mut client).await;
            self.return_in_flight();
            match end {
                SessionEnd::Lost => {
                    wake_at = Instant::now() + self.backoff(1);
                }
                SessionEnd::Sleep => {
                    let wake_in = self.going_to_sleep(&mut client);
                    self.wait_reliable_acked(&client, SLEEP_SETTLE).await;
                    client.disconnect(0).await;
                    wake_at = Instant::now() + wake_in;
                }
                SessionEnd::Done => {
                    client.disconnect(0).await;
                    break;
                }
            }
        }
        self.report()
    }

    /// The driver configuration of this sensor's connections (a token is added per
    /// connection in secure mode).
    pub(crate) fn driver_config(&self, config: &FleetConfig) -> DriverConfig {
        let mut driver = protocol::sensor_config();
        driver.link = config.link.clone();
        driver.transport = config.transport;
        driver.quic.verification = config.verification.clone();
        driver.link_seed = mix(config.seed ^ 0x4c49_4e4b, u64::from(self.id));
        driver
    }

    /// Until when a sensor not connected sleeps: its next wake, but no later than the end of
    /// sampling (the end of the run wakes a sleeping sensor to deliver what it holds) or,
    /// after that, the end of the drain.
    pub(crate) fn sleep_until(&self, wake_at: Instant, now: Instant) -> Instant {
        if now < self.stop_at {
            wake_at.min(self.stop_at)
        } else {
            wake_at.min(self.drain_until)
        }
    }

    /// Whether the run is over for this sensor (drain time included).
    pub(crate) fn finished(&self, now: Instant) -> bool {
        now >= self.drain_until
    }

    /// A connection attempt failed (the `failures`th in a row): returns the backoff.
    pub(crate) fn connect_failed(&mut self, failures: u32) -> Duration {
        self.connect_failures += 1;
        self.backoff(failures)
    }

    /// A connection is up: starts sampling if not yet, counts the session.
    pub(crate) fn connected(&mut self, transport: Transport, config: &FleetConfig) {
        if !self.powered {
            self.power_on(config.duration, config.drain_timeout);
        }
        self.sessions += 1;
        self.transport = Some(transport);
        self.quic = transport == Transport::Quic;
        self.datagrams_sent_before = 0;
    }

    /// A session ended in sleep: tells the hub; returns how long until the next wake.
    pub(crate) fn going_to_sleep(&mut self, link: &mut impl Link) -> Duration {
        let wake_in = self.wake_interval;
        self.send(
            link,
            CONTROL,
            &Uplink::Sleeping {
                wake_in_ms: wake_in.as_millis() as u64,
            },
        );
        link.request_ack();
        wake_in
    }

    /// The first wake, spread so that the hub is not hit all at once; sets up offline and
    /// sleepy sensors' sampling.
    pub(crate) fn first_wake(&mut self, config: &FleetConfig) -> Instant {
        let first = if self.sleepy {
            self.wake_interval.mul_f64(self.rng.random::<f64>())
        } else {
            config.ramp().mul_f64(self.rng.random::<f64>())
        };
        let mut wake_at = Instant::now() + first;
        if self.offline {
            // Sample from the start, connect only when the outage ends, all at once.
            self.power_on(config.duration, config.drain_timeout);
            wake_at = self.start + config.offline_for;
            self.stop_at = self.stop_at.max(wake_at);
            self.drain_until = self.stop_at + config.drain_timeout;
        } else if self.sleepy {
            // A sleepy sensor samples from the start and reports at its first wake.
            self.powered = true;
        }
        // An awake sensor powers on (starts sampling) once its first connection is up.
        wake_at
    }

    /// What the sensor did.
    pub(crate) fn report(self) -> SensorReport {
        SensorReport {
            sensor_id: self.id,
            kind: self.kind,
            sleepy: self.sleepy,
            clock: self.clock,
            readings_sent: self.next_seq,
            readings_undelivered: self.backlog.len() as u64,
            alerts_raised: self.alerts_raised,
            alerts_confirmed: self.alerts_confirmed,
            alerts_unconfirmed: self.outbox.len() as u64,
            alert_confirm_ms: self.alert_confirm_ms,
            commands: self.commands,
            sessions: self.sessions,
            connect_failures: self.connect_failures,
            transport: self.transport.map(Transport::name),
            battery_pct: self.battery_pct,
            rate_hz: self.rate_hz,
            wake_interval_ms: self.wake_interval.as_millis() as u64,
        }
    }

    /// Connects, with a freshly minted token in secure mode.
    async fn connect(
        &self,
        config: &FleetConfig,
        driver: &DriverConfig,
    ) -> Result<Client, tickwire::ClientError> {
        Client::connect(config.hub, self.connect_config(config, driver)).await
    }

    /// The driver configuration of one connection: `driver` with a freshly minted token in
    /// secure mode.
    pub(crate) fn connect_config(
        &self,
        config: &FleetConfig,
        driver: &DriverConfig,
    ) -> DriverConfig {
        let mut driver = driver.clone();
        if let Some(key) = &config.key {
            driver.endpoint.connect_token = mint_token(key, self.id, config.hub);
        }
        driver
    }

    /// Starts the sampling schedule (and the run's end) now.
    fn power_on(&mut self, duration: Duration, drain_timeout: Duration) {
        self.powered = true;
        self.start = Instant::now();
        self.start_us = unix_micros();
        self.next_sample = self.start;
        self.stop_at = self.start + duration;
        self.drain_until = self.stop_at + drain_timeout;
    }

    /// One connection: hello, then readings, alerts, clock replies and commands until the
    /// connection drops, the sensor goes to sleep, or the run is over.
    async fn session(&mut self, client: &mut Client) -> SessionEnd {
        let mut session = self.start_session(client);
        let mut tick = self.ticker();
        loop {
            let end = tokio::select! {
                event = client.next_event() => match event {
                    Some(event) => self.handle_event(client, &mut session, event),
                    None => Some(SessionEnd::Lost),
                },
                _ = tick.tick() => self.tick(client, &mut session, Instant::now()),
            };
            if let Some(end) = end {
                return end;
            }
            if std::mem::take(&mut session.retick) {
                tick = self.ticker();
            }
        }
    }

    /// Starts a session on a fresh connection: hello, the whole outbox, the samples due (sent
    /// at once).
    pub(crate) fn start_session(&mut self, link: &mut impl Link) -> Session {
        let hello = Uplink::Hello(Hello {
            sensor_id: self.id,
            kind: self.kind,
            sleepy: self.sleepy,
            rate_millihz: (self.rate_hz * 1000.0).round() as u32,
            wake_interval_ms: self.wake_interval.as_millis() as u64,
            device_time_us: self.device_now(),
            battery_pct: self.battery_pct as f32,
        });
        self.send(link, CONTROL, &hello);
        let outbox: Vec<Alert> = self.outbox.values().copied().collect();
        for alert in outbox {
            self.send(link, ALERTS, &Uplink::Alert(alert));
        }
        self.pending_alerts.clear();
        // The samples due go out now, not at the first tick a sampling period later: the
        // first reading of every session would otherwise wait that long (at 10 Hz, 100 ms,
        // for 1 % of a 10 s run's readings).
        self.take_samples(Instant::now());
        self.send_backlog(link);
        Session {
            awake_since: Instant::now(),
            welcomed: false,
            time_replies: 0,
            retick: false,
        }
    }

    /// Handles one event of the session's connection; `Some` when the session ends.
    pub(crate) fn handle_event(
        &mut self,
        link: &mut impl Link,
        session: &mut Session,
        event: Event,
    ) -> Option<SessionEnd> {
        match event {
            Event::Message { data, .. } => {
                let Ok(message) = typed::decode::<Downlink>(&data) else {
                    return None;
                };
                match message {
                    Downlink::Welcome { .. } => session.welcomed = true,
                    Downlink::TimeRequest {
                        ping_id,
                        hub_sent_us,
                    } => {
                        let device_received_us = self.device_now();
                        let reply = Uplink::TimeReply(TimeReply {
                            ping_id,
                            hub_sent_us,
                            device_received_us,
                            device_sent_us: self.device_now(),
                        });
                        self.send(link, READINGS, &reply);
                        session.time_replies += 1;
                    }
                    Downlink::AlertStored { alert_id } => {
                        if self.outbox.remove(&alert_id).is_some() {
                            self.alerts_confirmed += 1;
                            if let Some(raised) = self.alert_raised_at.remove(&alert_id) {
                                let ms = raised.elapsed().as_secs_f64() * 1000.0;
                                self.alert_confirm_ms.push(ms as f32);
                            }
                        }
                    }
                    Downlink::Command {
                        command_id,
                        command,
                    } => {
                        if self.applied.insert(command_id) {
                            self.apply(command);
                            self.commands.push((command_id, command));
                            session.retick = true;
                        }
                        self.send(link, CONTROL, &Uplink::CommandAck { command_id });
                    }
                }
            }
            Event::Delivery {
                message, outcome, ..
            } => {
                let found = self.in_flight.iter().position(|(id, _)| *id == message);
                if let Some((_, readings)) = found.and_then(|i| self.in_flight.remove(i)) {
                    if outcome == DeliveryOutcome::Lost {
                        for r in readings.into_iter().rev() {
                            self.backlog.push_front(r);
                        }
                    }
                }
            }
            Event::Disconnected { .. } => return Some(SessionEnd::Lost),
            _ => {}
        }
        None
    }

    /// The session's periodic work: sample, send, account the battery, and decide whether
    /// the session is over; `Some` when it ends.
    pub(crate) fn tick(
        &mut self,
        link: &mut impl Link,
        session: &mut Session,
        now: Instant,
    ) -> Option<SessionEnd> {
        self.take_samples(now);
        self.send_backlog(link);
        self.drain_battery(link, now);
        self.forget_settled_quic(now);
        let drained = self.backlog.is_empty()
            && self.in_flight.is_empty()
            && self.outbox.is_empty()
            && self.reliable_acked(link);
        if now >= self.stop_at && (drained || now >= self.drain_until) {
            return Some(SessionEnd::Done);
        }
        let awake = now - session.awake_since;
        if self.sleepy && now < self.stop_at {
            let ready = session.welcomed && session.time_replies >= 2 && drained;
            if (ready && awake >= MIN_AWAKE) || awake >= MAX_AWAKE {
                return Some(SessionEnd::Sleep);
            }
        }
        // Waiting only for acknowledgements (to sleep, or to finish the run): ask for them
        // now rather than wait out the hub's ack delay.
        let waiting = if self.sleepy && now < self.stop_at {
            session.welcomed && session.time_replies >= 2 && awake >= MIN_AWAKE
        } else {
            now >= self.stop_at
        };
        if waiting && !drained && self.backlog.is_empty() && !self.quic {
            link.request_ack();
        }
        None
    }

    /// Takes every sample due by `now` (and before the end of the run) into the backlog.
    fn take_samples(&mut self, now: Instant) {
        if !self.powered {
            return;
        }
        let period = Duration::from_secs_f64(1.0 / self.rate_hz.max(0.001));
        let until = now.min(self.stop_at);
        while self.next_sample <= until {
            let at = self.next_sample;
            let true_us = self.start_us + (at - self.start).as_micros() as i64;
            let t = (at - self.start).as_secs_f64();
            let (value, mut crossed) = self.signal.sample(t, &mut self.rng);
            if self.alert_fraction > 0.0 {
                crossed |= self.rng.random::<f64>() < self.alert_fraction;
            }
            let reading = Reading {
                seq: self.next_seq,
                device_ts_us: self.clock.device_at(true_us),
                value,
            };
            self.next_seq += 1;
            if crossed {
                let alert = Alert {
                    alert_id: self.next_alert_id,
                    reading,
                    threshold: self.signal.threshold(),
                };
                self.next_alert_id += 1;
                self.alerts_raised.push(alert.alert_id);
                self.alert_raised_at.insert(alert.alert_id, at);
                self.outbox.insert(alert.alert_id, alert);
                self.pending_alerts.push(alert);
            }
            if self.backlog.len() >= MAX_BACKLOG {
                self.backlog.pop_front();
            }
            self.backlog.push_back(reading);
            self.next_sample += period;
        }
    }

    /// Sends the oldest readings of the backlog in batches, and new alerts.
    ///
    /// Natively readings go unreliably on [`READINGS`], and the engine's delivery notices put
    /// a lost batch back into the backlog. Over QUIC the engine reports no delivery of
    /// unreliable messages (quinn acknowledges no single DATAGRAM frame), so a batch there
    /// would be neither confirmed nor resent: over QUIC readings take the reliable
    /// [`ALERTS`] channel (a QUIC stream, retransmitted by quinn), and the batches of the
    /// last [`QUIC_RESEND_WINDOW`] are kept and sent again if the connection is lost, since a
    /// stream's unacknowledged bytes die with it. The hub drops the copies it already has.
    fn send_backlog(&mut self, link: &mut impl Link) {
        for alert in std::mem::take(&mut self.pending_alerts) {
            self.send(link, ALERTS, &Uplink::Alert(alert));
        }
        for _ in 0..MAX_BATCHES_PER_TICK {
            if self.backlog.is_empty() {
                return;
            }
            let n = self.backlog.len().min(MAX_BATCH);
            let mut batch = Uplink::Readings(ReadingBatch {
                battery_pct: self.battery_pct as f32,
                readings: self.backlog.drain(..n).collect(),
            });
            let channel = if self.quic { ALERTS } else { READINGS };
            let sent = typed::encode(&batch)
                .ok()
                .and_then(|bytes| link.send(channel, bytes).ok());
            let Uplink::Readings(ReadingBatch { readings, .. }) = &mut batch else {
                return;
            };
            let readings = std::mem::take(readings);
            match sent {
                Some(_) if self.quic => {
                    self.quic_recent.push_back((Instant::now(), readings));
                }
                Some(id) => {
                    self.in_flight.push_back((id, readings));
                }
                None => {
                    // Refused (buffer full or closing): keep them for later.
                    for r in readings.into_iter().rev() {
                        self.backlog.push_front(r);
                    }
                    return;
                }
            }
        }
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::SetRate { rate_millihz } => {
                self.rate_hz = (f64::from(rate_millihz) / 1000.0).max(0.001);
            }
            Command::SetSleepInterval { interval_ms } => {
                self.wake_interval = Duration::from_millis(interval_ms.max(100));
            }
        }
    }

    /// Readings in flight when a session ends have an unknown fate: send them again (the hub
    /// drops the copies it already has).
    fn return_in_flight(&mut self) {
        let mut readings: Vec<Reading> = self.in_flight.drain(..).flat_map(|(_, r)| r).collect();
        readings.extend(self.quic_recent.drain(..).flat_map(|(_, r)| r));
        readings.sort_by_key(|r| std::cmp::Reverse(r.seq));
        for r in readings {
            self.backlog.push_front(r);
        }
        // Alerts not confirmed are sent again in the next session (they stay in the outbox).
        self.pending_alerts.clear();
    }

    /// Over QUIC: forgets the batches sent longer than [`QUIC_RESEND_WINDOW`] ago.
    fn forget_settled_quic(&mut self, now: Instant) {
        while self
            .quic_recent
            .front()
            .is_some_and(|(sent, _)| now - *sent >= QUIC_RESEND_WINDOW)
        {
            self.quic_recent.pop_front();
        }
    }

    /// Whether every reliable message of the session is acknowledged. Over QUIC the engine
    /// counts no acknowledgements (quinn retransmits streams itself and a graceful
    /// disconnect drains them), so this holds at once; alerts are still confirmed end to end
    /// by `AlertStored`, and commands are sent again each session until acknowledged.
    pub(crate) fn reliable_acked(&self, link: &impl Link) -> bool {
        self.quic || reliable_acked(link)
    }

    async fn wait_reliable_acked(&self, client: &Client, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.reliable_acked(client) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            // Again, in case the request or its answer was lost: an acknowledgement of a
            // later packet also shows the hub which earlier one to expect again.
            client.request_ack();
        }
    }

    fn drain_battery(&mut self, link: &impl Link, now: Instant) {
        let sent = link.datagrams_sent();
        let datagrams = sent.saturating_sub(self.datagrams_sent_before);
        self.datagrams_sent_before = sent;
        let awake_s = self.tick_period().as_secs_f64();
        let _ = now;
        self.battery_pct = (self.battery_pct
            - datagrams as f64 * BATTERY_PER_DATAGRAM
            - awake_s * BATTERY_PER_AWAKE_S)
            .max(0.0);
    }

    fn backoff(&mut self, failures: u32) -> Duration {
        let ceiling = BACKOFF_BASE
            .saturating_mul(1 << failures.min(8))
            .min(BACKOFF_MAX);
        // Full jitter over the upper half, so reconnecting sensors spread out.
        ceiling.mul_f64(0.5 + 0.5 * self.rng.random::<f64>())
    }

    /// The session's work timer, aligned with the sampling schedule so that a reading leaves
    /// as soon as it is taken.
    fn ticker(&self) -> tokio::time::Interval {
        let mut tick =
            tokio::time::interval_at(self.first_tick(Instant::now()), self.tick_period());
        // Skip, not Delay: a late tick must not shift every later one, or readings would
        // wait up to a sampling period for a tick that drifted behind the schedule.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tick
    }

    /// When a session's work timer first fires: at the next sample, so that a reading leaves
    /// as soon as it is taken.
    pub(crate) fn first_tick(&self, now: Instant) -> Instant {
        self.next_sample.max(now)
    }

    /// The period of the session's work timer.
    pub(crate) fn tick_period(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate_hz.max(0.001)).clamp(MIN_TICK, MAX_TICK)
    }

    fn device_now(&self) -> i64 {
        self.clock.device_at(unix_micros())
    }

    pub(crate) fn send(&self, link: &mut impl Link, channel: ChannelId, message: &Uplink) {
        // Encoding plain structs cannot fail; a refused reliable message is covered by the
        // outbox (alerts) or the next session's hello.
        if let Ok(bytes) = typed::encode(message) {
            let _: Result<_, _> = link.send(channel, Bytes::clone(&bytes));
        }
    }
}

/// A connect token for sensor `id` to `hub`, valid 30 s from now; `None` if the clock reads
/// before 1970 (the hub then refuses the connection, and the sensor backs off).
fn mint_token(key: &PrivateKey, id: u32, hub: SocketAddr) -> Option<tickwire::ConnectToken> {
    let unix_now = crate::clock::unix_seconds()?;
    TokenSpec::new(protocol::PROTOCOL_ID, ClientId(u64::from(id)), vec![hub])
        .issue(key, unix_now)
        .ok()
}

/// Whether every reliable message sent on the connection has been acknowledged.
fn reliable_acked(link: &impl Link) -> bool {
    link.stats().is_none_or(|stats| {
        [CONTROL, ALERTS].iter().all(|c| {
            stats
                .send_channels
                .get(usize::from(c.0))
                .is_none_or(|s| s.messages_acked >= s.messages_sent)
        })
    })
}

/// SplitMix64 of `seed` and `n`: independent per-sensor seeds from one run seed.
fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed
        .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Over QUIC, how long sent readings are kept to send again should the connection be lost:
/// the QUIC idle timeout (10 s), after which a connection still open has heard from the hub
/// since, and quinn has retransmitted what was lost.
const QUIC_RESEND_WINDOW: Duration = Duration::from_secs(10);
/// Most readings a sensor holds; older ones are dropped first.
const MAX_BACKLOG: usize = 200_000;
/// Most reading batches sent per tick (backlog drains at up to this × 40 readings a tick).
const MAX_BATCHES_PER_TICK: usize = 25;
/// Bounds of the sensor's work period (it follows the sampling period in between).
const MIN_TICK: Duration = Duration::from_millis(20);
const MAX_TICK: Duration = Duration::from_millis(100);
/// Before going to sleep, how long a sensor waits for its reliable messages to be
/// acknowledged (the `Sleeping` notice among them).
pub(crate) const SLEEP_SETTLE: Duration = Duration::from_millis(500);
/// A sleepy sensor stays awake at least this long (for clock pings), at most this long.
const MIN_AWAKE: Duration = Duration::from_millis(300);
const MAX_AWAKE: Duration = Duration::from_secs(5);
/// Reconnect backoff: doubling from the base up to the maximum, with jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Battery cost of one datagram sent, and of one second awake, in percent.
const BATTERY_PER_DATAGRAM: f64 = 0.000_5;
const BATTERY_PER_AWAKE_S: f64 = 0.000_2;
