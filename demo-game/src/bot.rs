//! Headless players: a [`Brain`] that chases coins (and now and then charges at the nearest
//! player, to bump a coin off them), and [`run_bots`], which runs many of them at once and
//! reports what each saw.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tickwire::snapshot::{EntityId, View};
use tickwire::{PrivateKey, Transport};
use tokio::sync::watch;

use crate::client::{ClientConfig, GameClient, ViewSample};
use crate::entity::Thing;
use crate::net::{connect_hint, driver_config, Access, NetOptions, Role};
use crate::percentile::percentile;
use crate::world::{Body, Input};

/// A bot's decision making.
#[derive(Clone, Debug)]
pub struct Brain {
    rng: StdRng,
    /// Prefer the second-nearest coin (spreads bots out).
    picky: bool,
    /// Charging at a player until this many more decisions.
    charge: u32,
}

impl Brain {
    /// A brain seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        Self {
            picky: rng.random_bool(0.3),
            rng,
            charge: 0,
        }
    }

    /// The input to hold this frame, for a player at `me` seeing `view`.
    pub fn decide(&mut self, me: Body, me_id: EntityId, view: &View<Thing>) -> Input {
        if self.charge == 0 && self.rng.random_bool(CHARGE_CHANCE) {
            self.charge = CHARGE_FRAMES;
        }
        let mut coins: Vec<(f32, Body)> = Vec::new();
        let mut nearest_player: Option<(f32, Body)> = None;
        for (id, thing) in view.iter() {
            let body = thing.body();
            let distance = me.distance(&body);
            if !thing.is_player() {
                coins.push((distance, body));
            } else if id != me_id && nearest_player.is_none_or(|(d, _)| distance < d) {
                nearest_player = Some((distance, body));
            }
        }
        coins.sort_by(|a, b| a.0.total_cmp(&b.0));
        let target = if self.charge > 0 {
            self.charge -= 1;
            nearest_player.map(|(_, b)| b)
        } else {
            None
        }
        .or_else(|| {
            let pick = usize::from(self.picky && coins.len() > 1);
            coins.get(pick).map(|(_, b)| *b)
        });
        match target {
            Some(t) => Input::towards(t.x - me.x, t.y - me.y, 0.4),
            None => Input::NONE,
        }
    }
}

/// Settings of [`run_bots`].
#[derive(Clone, Debug)]
pub struct BotsConfig {
    /// The server.
    pub server: SocketAddr,
    /// How many bots.
    pub count: usize,
    /// How long each bot plays after connecting; `None`: until stopped.
    pub duration: Option<Duration>,
    /// Simulated network on each bot's socket.
    pub net: NetOptions,
    /// Interpolated frames each bot keeps for its [`BotOutcome::views`] (tests). 0: none.
    pub record_views: usize,
    /// Frames per second each bot runs at. Default 60.
    pub frame_hz: u32,
    /// Name prefix.
    pub name: String,
    /// Secure servers: each bot mints its own connect token with this key (a test and demo
    /// shortcut; a real client gets its token from a backend). `None`: use `net.access`.
    pub mint_tokens: Option<PrivateKey>,
    /// The client id of bot 0's minted token; bot `i` gets this + `i`.
    pub first_client_id: u64,
}

impl BotsConfig {
    /// `count` bots against `server` for `duration`, on a plain network.
    pub fn new(server: SocketAddr, count: usize, duration: Option<Duration>) -> Self {
        Self {
            server,
            count,
            duration,
            net: NetOptions::default(),
            record_views: 0,
            frame_hz: 60,
            name: "bot".into(),
            mint_tokens: None,
            first_client_id: 1,
        }
    }
}

/// What one bot saw.
#[derive(Clone, Debug, Default)]
pub struct BotOutcome {
    /// Its name.
    pub name: String,
    /// Its player's entity id, once welcomed.
    pub player: Option<EntityId>,
    /// The transport it connected over.
    pub transport: Option<Transport>,
    /// Why it could not connect, if it could not.
    pub connect_error: Option<String>,
    /// Why it was dropped before the end, if it was.
    pub dropped: Option<String>,
    /// Snapshots decoded (newest-so-far only).
    pub snapshots_received: u64,
    /// RTT samples, ms.
    pub rtt_ms: Vec<f64>,
    /// Mean kbps received and sent (UDP payload).
    pub kbps: (f64, f64),
    /// Predictions corrected.
    pub corrections: u64,
    /// Predictions checked.
    pub reconciliations: u64,
    /// Sizes of the corrections, units.
    pub correction_sizes: Vec<f64>,
    /// Longest time without a snapshot, after the first.
    pub max_snapshot_age: Duration,
    /// How long it played.
    pub played: Duration,
    /// Recorded interpolated frames.
    pub views: Vec<ViewSample>,
}

/// Runs `config.count` bots at once until their duration ends or `stop` turns true.
pub async fn run_bots(config: BotsConfig, stop: watch::Receiver<bool>) -> Vec<BotOutcome> {
    let mut tasks = Vec::with_capacity(config.count);
    for index in 0..config.count {
        let config = config.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(run_bot(config, index, stop)));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for (index, task) in tasks.into_iter().enumerate() {
        outcomes.push(task.await.unwrap_or_else(|_| BotOutcome {
            name: format!("{}{index}", config.name),
            dropped: Some("the bot's task failed".into()),
            ..BotOutcome::default()
        }));
    }
    outcomes
}

async fn run_bot(config: BotsConfig, index: usize, mut stop: watch::Receiver<bool>) -> BotOutcome {
    let name = format!("{}{index}", config.name);
    let mut outcome = BotOutcome {
        name: name.clone(),
        ..BotOutcome::default()
    };
    let mut net = NetOptions {
        seed: config.net.seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        ..config.net.clone()
    };
    if let Some(key) = &config.mint_tokens {
        let client_id = config.first_client_id.wrapping_add(index as u64);
        match crate::tokens::mint(key, config.server, client_id, Duration::from_secs(30)) {
            Ok(token) => net.access = Access::Token(token),
            Err(error) => {
                outcome.connect_error = Some(error.to_string());
                return outcome;
            }
        }
    }
    let client_config = ClientConfig {
        server: config.server,
        name,
        driver: driver_config(Role::Client, &net),
        record_views: config.record_views,
    };
    let mut client = match GameClient::connect(client_config).await {
        Ok(client) => client,
        Err(error) => {
            outcome.connect_error = Some(match connect_hint(&error, &net) {
                Some(hint) => format!("{error}; {hint}"),
                None => error.to_string(),
            });
            return outcome;
        }
    };
    let mut brain = Brain::new(net.seed);
    let started = Instant::now();
    let frame = Duration::from_secs_f64(1.0 / f64::from(config.frame_hz.max(1)));
    let mut next = tokio::time::Instant::now() + frame;
    let mut frames = 0u64;
    let mut input = Input::NONE;
    loop {
        tokio::select! {
            () = client.pump_until(next) => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        next += frame;
        let now = Instant::now();
        if config
            .duration
            .is_some_and(|d| now.duration_since(started) >= d)
        {
            break;
        }
        if let Some(reason) = client.disconnected() {
            outcome.dropped = Some(reason.to_string());
            break;
        }
        if frames % DECIDE_EVERY == 0 {
            input = match (client.me(), client.welcome(), client.latest()) {
                (Some(me), Some(welcome), Some(view)) => brain.decide(me, welcome.player, view),
                _ => Input::NONE,
            };
        }
        client.update(now, input);
        frames += 1;
        if config.record_views > 0 || frames % 6 == 0 {
            client.frame(now);
        }
    }
    outcome.played = started.elapsed();
    outcome.transport = Some(client.transport());
    outcome.player = client.welcome().map(|w| w.player);
    outcome.snapshots_received = client.snapshots_received();
    outcome.rtt_ms = client.meter().all_rtt_ms.clone();
    outcome.kbps = client.meter().mean_kbps();
    let (corrections, reconciliations, sizes) = client.prediction();
    outcome.corrections = corrections;
    outcome.reconciliations = reconciliations;
    outcome.correction_sizes = sizes.to_vec();
    outcome.max_snapshot_age = client.max_snapshot_age();
    outcome.views = client.views().cloned().collect();
    client.disconnect().await;
    outcome
}

/// The `bots --json` summary.
#[derive(Clone, Debug, Serialize)]
pub struct BotsSummary {
    /// Bots started.
    pub bots: usize,
    /// Bots that connected.
    pub connected: usize,
    /// Bots dropped before the end.
    pub disconnects: usize,
    /// Snapshots decoded, all bots together.
    pub snapshots_received: u64,
    /// Median of every bot's RTT samples, ms.
    pub rtt_ms_p50: f64,
    /// 99th percentile of the RTT samples, ms.
    pub rtt_ms_p99: f64,
    /// Mean kbps received per connected bot (UDP payload).
    pub kbps_down_per_bot: f64,
    /// Mean kbps sent per connected bot.
    pub kbps_up_per_bot: f64,
    /// Predictions corrected, all bots together.
    pub prediction_corrections: u64,
    /// Corrections per bot per minute of play.
    pub prediction_corrections_per_min: f64,
    /// Share of the checked predictions that needed a correction.
    pub prediction_correction_rate: f64,
    /// 99th percentile of the corrections' sizes, arena units (0 if none).
    pub prediction_error_p99: f64,
    /// Longest any bot went without a snapshot, ms.
    pub max_snapshot_age_ms: f64,
    /// The transport the connected bots used: `native`, `quic`, or `mixed`; `none` when no
    /// bot connected.
    pub transport: &'static str,
    /// Why bots failed to connect or were dropped.
    pub failures: Vec<String>,
}

impl BotsSummary {
    /// Sums up the outcomes.
    pub fn of(outcomes: &[BotOutcome]) -> Self {
        let connected: Vec<&BotOutcome> = outcomes
            .iter()
            .filter(|o| o.connect_error.is_none())
            .collect();
        let mut rtts: Vec<f64> = connected.iter().flat_map(|o| o.rtt_ms.clone()).collect();
        let mut sizes: Vec<f64> = connected
            .iter()
            .flat_map(|o| o.correction_sizes.clone())
            .collect();
        let n = connected.len().max(1) as f64;
        let corrections: u64 = connected.iter().map(|o| o.corrections).sum();
        let checked: u64 = connected.iter().map(|o| o.reconciliations).sum();
        let minutes = connected
            .iter()
            .fold(0.0, |sum, o| sum + o.played.as_secs_f64() / 60.0);
        let failures = outcomes
            .iter()
            .filter_map(|o| {
                o.connect_error
                    .as_ref()
                    .map(|e| format!("{}: could not connect: {e}", o.name))
                    .or_else(|| {
                        o.dropped
                            .as_ref()
                            .map(|e| format!("{}: dropped: {e}", o.name))
                    })
            })
            .collect();
        Self {
            bots: outcomes.len(),
            connected: connected.len(),
            disconnects: connected.iter().filter(|o| o.dropped.is_some()).count(),
            snapshots_received: connected.iter().map(|o| o.snapshots_received).sum(),
            rtt_ms_p50: round2(percentile(&mut rtts, 50.0)),
            rtt_ms_p99: round2(percentile(&mut rtts, 99.0)),
            kbps_down_per_bot: round2(connected.iter().fold(0.0, |sum, o| sum + o.kbps.0) / n),
            kbps_up_per_bot: round2(connected.iter().fold(0.0, |sum, o| sum + o.kbps.1) / n),
            prediction_corrections: corrections,
            prediction_corrections_per_min: round2(if minutes > 0.0 {
                corrections as f64 / minutes
            } else {
                0.0
            }),
            prediction_correction_rate: round4(if checked > 0 {
                corrections as f64 / checked as f64
            } else {
                0.0
            }),
            prediction_error_p99: round4(percentile(&mut sizes, 99.0)),
            max_snapshot_age_ms: round2(
                connected
                    .iter()
                    .map(|o| o.max_snapshot_age.as_secs_f64() * 1e3)
                    .fold(0.0, f64::max),
            ),
            transport: transport_of(&connected),
            failures,
        }
    }

    /// Whether every bot connected and stayed connected.
    pub fn ok(&self) -> bool {
        self.connected == self.bots && self.disconnects == 0
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// The one transport all connected bots used, `mixed` if they differ, `none` without any.
fn transport_of(connected: &[&BotOutcome]) -> &'static str {
    let mut used = connected.iter().filter_map(|o| o.transport);
    match used.next() {
        None => "none",
        Some(first) if used.all(|t| t == first) => first.name(),
        Some(_) => "mixed",
    }
}

/// Chance per decision that a bot starts charging at the nearest player.
const CHARGE_CHANCE: f64 = 0.012;
/// Decisions a charge lasts (0.75 s at 20 decisions a second).
const CHARGE_FRAMES: u32 = 15;
/// Frames between two decisions (a bot reacts 20 times a second at 60 frames per second; its
/// input still goes out every tick).
const DECIDE_EVERY: u64 = 3;
