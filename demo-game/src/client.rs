//! The network side of a player (human or bot): connects, sends inputs stamped with the tick
//! they apply to, predicts its own player, and interpolates everyone else.
//!
//! Drive it once per frame: [`GameClient::pump_until`] handles what the network delivers (each
//! snapshot timestamped on arrival, so the interpolation buffer and the clock see real
//! arrival times), then [`GameClient::update`] advances the prediction to
//! [`ServerClock::input_tick`] and sends an [`InputPacket`] repeating the last
//! [`INPUT_REDUNDANCY`] inputs, then [`GameClient::frame`] gives what to draw.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tickwire::sim::LinkConfig;
use tickwire::snapshot::{
    BufferConfig, ClockConfig, EntityId, SampleKind, ServerClock, SnapshotBuffer, SnapshotClient,
    SnapshotConfig, View,
};
use tickwire::{Client, ClientError, DisconnectReason, DriverConfig, Event, Transport};

use crate::entity::{Scene, Thing};
use crate::meter::NetMeter;
use crate::prediction::Predictor;
use crate::protocol::{
    truncate_chars, ClientMessage, InputPacket, ScoreEntry, ServerMessage, CLIENT_EVENTS, INPUTS,
    INPUT_REDUNDANCY, MAX_CHAT_CHARS, MAX_NAME_CHARS, SERVER_EVENTS, SNAPSHOTS,
};
use crate::world::{Body, Input};

/// Settings of a [`GameClient`].
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The server's address.
    pub server: SocketAddr,
    /// The player's name.
    pub name: String,
    /// The network driver's configuration (from [`crate::net::driver_config`]).
    pub driver: DriverConfig,
    /// Interpolated frames to keep for [`GameClient::views`] (tests compare them with the
    /// server's history). Default 0: none.
    pub record_views: usize,
}

/// What the server told this client when it joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// This client's player.
    pub player: EntityId,
    /// Server ticks per second.
    pub tick_hz: u32,
    /// Snapshots per second.
    pub snapshot_hz: u32,
}

/// What to draw this frame.
#[derive(Clone, Debug, Default)]
pub struct Frame {
    /// The local player, predicted (after a correction, eased from where it was drawn).
    pub me: Option<(EntityId, Body)>,
    /// Every other player, interpolated.
    pub others: Vec<(EntityId, Body)>,
    /// The coins, interpolated (they jump when respawned).
    pub coins: Vec<Body>,
    /// The server tick rendered for the others (fractional).
    pub render_tick: f64,
    /// How the others' state was made: interpolated, or a hitch kind.
    pub kind: Option<SampleKind>,
}

/// One recorded interpolated frame: the other players as this client drew them.
#[derive(Clone, Debug)]
pub struct ViewSample {
    /// The server tick rendered (fractional).
    pub render_tick: f64,
    /// Interpolated or a hitch.
    pub kind: SampleKind,
    /// Every other player's interpolated body.
    pub players: Vec<(EntityId, Body)>,
}

/// A chat line (`from` empty for the server's notices).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatLine {
    /// Who wrote it.
    pub from: String,
    /// What.
    pub text: String,
}

/// A connected player.
pub struct GameClient {
    net: Client,
    config: ClientConfig,
    decoder: SnapshotClient<Thing>,
    buffer: Option<SnapshotBuffer<Scene>>,
    clock: Option<ServerClock>,
    welcome: Option<Welcome>,
    predictor: Option<Predictor>,
    newest: Option<(u64, Arc<View<Thing>>)>,
    scoreboard: Vec<ScoreEntry>,
    own_score: Option<(u32, ScoreEntry)>,
    players: u32,
    chat: VecDeque<ChatLine>,
    ack: u64,
    ack_sent: u64,
    snapshots_received: u64,
    decode_errors: u64,
    bad_messages: u64,
    last_snapshot_at: Option<Instant>,
    max_snapshot_age: Duration,
    disconnected: Option<DisconnectReason>,
    meter: NetMeter,
    views: VecDeque<ViewSample>,
    bad_network: bool,
    /// Offset of the drawn local player from the predicted one after a correction, decaying.
    smoothing: (f32, f32),
    last_frame: Option<Instant>,
}

impl GameClient {
    /// Connects and says hello. Fails with the driver's actionable error (server unreachable,
    /// refused, ...).
    pub async fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        let net = Client::connect(config.server, config.driver.clone()).await?;
        let hello = ClientMessage::Hello {
            name: config.name.clone(),
        };
        if let Ok(bytes) = tickwire::typed::encode(&hello) {
            let _ = net.send(CLIENT_EVENTS, bytes);
        }
        Ok(Self {
            net,
            decoder: SnapshotClient::new(SnapshotConfig::default()),
            buffer: None,
            clock: None,
            welcome: None,
            predictor: None,
            newest: None,
            scoreboard: Vec::new(),
            own_score: None,
            players: 0,
            chat: VecDeque::new(),
            ack: 0,
            ack_sent: 0,
            snapshots_received: 0,
            decode_errors: 0,
            bad_messages: 0,
            last_snapshot_at: None,
            max_snapshot_age: Duration::ZERO,
            disconnected: None,
            meter: NetMeter::default(),
            views: VecDeque::new(),
            bad_network: false,
            smoothing: (0.0, 0.0),
            last_frame: None,
            config,
        })
    }

    /// Handles what the network delivers until `deadline` (or until the connection ends).
    pub async fn pump_until(&mut self, deadline: tokio::time::Instant) {
        while self.disconnected.is_none() {
            match tokio::time::timeout_at(deadline, self.net.next_event()).await {
                Ok(Some(event)) => self.handle_event(event, Instant::now()),
                Ok(None) => {
                    self.disconnected.get_or_insert(DisconnectReason::Shutdown);
                }
                Err(_) => return,
            }
        }
    }

    /// Handles what the network has delivered already, without waiting.
    pub fn pump(&mut self, now: Instant) {
        while let Some(event) = self.net.try_event() {
            self.handle_event(event, now);
        }
    }

    /// Advances the prediction with `input` held and sends the input packet; measures.
    pub fn update(&mut self, now: Instant, input: Input) {
        if let Some(at) = self.last_snapshot_at {
            self.max_snapshot_age = self.max_snapshot_age.max(now.saturating_duration_since(at));
        }
        if self.meter.due(now) {
            if let Some(stats) = self.net.stats() {
                self.meter.sample(now, &stats);
            }
        }
        let target = self.clock.as_ref().and_then(|c| c.input_tick(now));
        let mut packet = None;
        if let (Some(predictor), Some(target)) = (self.predictor.as_mut(), target) {
            if predictor.advance(target, input) > 0 {
                let (newest_tick, inputs) = predictor.recent_inputs(INPUT_REDUNDANCY);
                packet = Some(InputPacket {
                    ack: self.ack,
                    newest_tick,
                    inputs,
                });
            }
        }
        if packet.is_none() && self.ack != self.ack_sent {
            packet = Some(InputPacket {
                ack: self.ack,
                newest_tick: 0,
                inputs: Vec::new(),
            });
        }
        if let Some(packet) = packet {
            if let Ok(bytes) = tickwire::typed::encode(&packet) {
                if self.net.send(INPUTS, bytes).is_ok() {
                    self.ack_sent = packet.ack;
                }
            }
        }
    }

    /// What to draw at `now`: the predicted local player and the interpolated rest.
    pub fn frame(&mut self, now: Instant) -> Frame {
        let me_id = self.welcome.map(|w| w.player);
        let elapsed = self
            .last_frame
            .map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f32());
        self.last_frame = Some(now);
        let keep = (-elapsed / SMOOTHING_TIME).exp();
        self.smoothing = (self.smoothing.0 * keep, self.smoothing.1 * keep);
        let smoothing = self.smoothing;
        let mut frame = Frame {
            me: me_id.zip(self.predictor.as_ref().map(|p| {
                let body = p.body();
                Body {
                    x: body.x + smoothing.0,
                    y: body.y + smoothing.1,
                    ..body
                }
            })),
            ..Frame::default()
        };
        let Some(sample) = self.buffer.as_mut().and_then(|b| b.sample(now)) else {
            return frame;
        };
        frame.render_tick = sample.render_tick;
        frame.kind = Some(sample.kind);
        for (id, is_player, body) in sample.state.entities {
            if !is_player {
                frame.coins.push(body);
            } else if Some(id) != me_id {
                frame.others.push((id, body));
            }
        }
        if self.config.record_views > 0 {
            self.views.push_back(ViewSample {
                render_tick: sample.render_tick,
                kind: sample.kind,
                players: frame.others.clone(),
            });
            while self.views.len() > self.config.record_views {
                self.views.pop_front();
            }
        }
        frame
    }

    /// The transport this client connected over (`native` or `quic`).
    pub fn transport(&self) -> Transport {
        self.net.transport()
    }

    /// The newest snapshot's coins and players as decoded (no interpolation): cheap, for bots.
    pub fn latest(&self) -> Option<&View<Thing>> {
        self.newest.as_ref().map(|(_, view)| &**view)
    }

    /// The local player's predicted body.
    pub fn me(&self) -> Option<Body> {
        self.predictor.as_ref().map(Predictor::body)
    }

    /// Sends a chat line to everyone.
    pub fn send_chat(&self, text: &str) {
        let message = ClientMessage::Chat {
            text: text.to_owned(),
        };
        if let Ok(bytes) = tickwire::typed::encode(&message) {
            let _ = self.net.send(CLIENT_EVENTS, bytes);
        }
    }

    /// Switches the simulated bad network ([`crate::net::bad_network`]) on or off; returns
    /// whether it is now on. Off restores the link the client started with.
    pub fn toggle_bad_network(&mut self) -> bool {
        let link: Option<LinkConfig> = if self.bad_network {
            self.config.driver.link.clone()
        } else {
            Some(crate::net::bad_network())
        };
        if self.net.set_link(link.as_ref()).is_ok() {
            self.bad_network = !self.bad_network;
        }
        self.bad_network
    }

    /// Whether the simulated bad network is on.
    pub fn bad_network(&self) -> bool {
        self.bad_network
    }

    /// Why the connection ended, once it has.
    pub fn disconnected(&self) -> Option<DisconnectReason> {
        self.disconnected
    }

    /// The server's welcome, once received.
    pub fn welcome(&self) -> Option<Welcome> {
        self.welcome
    }

    /// The scoreboard's top lines, by descending score.
    pub fn scoreboard(&self) -> &[ScoreEntry] {
        &self.scoreboard
    }

    /// This client's rank (1 = first) and scoreboard line.
    pub fn own_score(&self) -> Option<&(u32, ScoreEntry)> {
        self.own_score.as_ref()
    }

    /// Players in the game, as of the last scoreboard.
    pub fn players(&self) -> u32 {
        self.players
    }

    /// Recent chat lines, oldest first.
    pub fn chat(&self) -> impl Iterator<Item = &ChatLine> + '_ {
        self.chat.iter()
    }

    /// The network figures.
    pub fn meter(&self) -> &NetMeter {
        &self.meter
    }

    /// Snapshots decoded that were the newest so far.
    pub fn snapshots_received(&self) -> u64 {
        self.snapshots_received
    }

    /// Snapshots or messages that failed to decode.
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors + self.bad_messages
    }

    /// Time since the newest snapshot arrived, at `now`.
    pub fn snapshot_age(&self, now: Instant) -> Option<Duration> {
        self.last_snapshot_at
            .map(|at| now.saturating_duration_since(at))
    }

    /// The longest [`snapshot_age`](Self::snapshot_age) seen at any update after the first
    /// snapshot.
    pub fn max_snapshot_age(&self) -> Duration {
        self.max_snapshot_age
    }

    /// The interpolation delay in effect.
    pub fn interpolation_delay(&self) -> Duration {
        self.buffer
            .as_ref()
            .map_or(Duration::ZERO, SnapshotBuffer::delay)
    }

    /// The prediction's state: `(corrections, reconciliations, correction sizes)`.
    pub fn prediction(&self) -> (u64, u64, &[f64]) {
        self.predictor.as_ref().map_or((0, 0, &[][..]), |p| {
            (p.corrections(), p.reconciliations(), p.correction_sizes())
        })
    }

    /// The recorded interpolated frames (see [`ClientConfig::record_views`]).
    pub fn views(&self) -> impl Iterator<Item = &ViewSample> + '_ {
        self.views.iter()
    }

    /// The server tick the client's clock estimates for now.
    pub fn server_tick_estimate(&self, now: Instant) -> Option<f64> {
        self.clock.as_ref().and_then(|c| c.estimate(now))
    }

    /// Leaves the game gracefully.
    pub async fn disconnect(self) {
        self.net.disconnect(0).await;
    }

    fn handle_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::Message { channel, data, .. } if channel == SNAPSHOTS => {
                self.handle_snapshot(&data, now);
            }
            Event::Message { channel, data, .. } if channel == SERVER_EVENTS => {
                match tickwire::typed::decode::<ServerMessage>(&data) {
                    Ok(message) => self.handle_message(message),
                    Err(_) => self.bad_messages += 1,
                }
            }
            Event::Disconnected { reason, .. } => self.disconnected = Some(reason),
            _ => {}
        }
    }

    fn handle_snapshot(&mut self, data: &[u8], now: Instant) {
        let decoded = match self.decoder.receive(data) {
            Ok(Some(decoded)) => decoded,
            Ok(None) => return,
            Err(_) => {
                self.decode_errors += 1;
                return;
            }
        };
        self.snapshots_received += 1;
        self.ack = self.ack.max(decoded.seq);
        self.last_snapshot_at = Some(now);
        if let Some(clock) = self.clock.as_mut() {
            // The meter's RTT is at most a sample period old; the clock smooths it anyway.
            let rtt = match self.meter.rtt {
                rtt if rtt.is_zero() => self.net.stats().map_or(rtt, |s| s.rtt),
                rtt => rtt,
            };
            clock.handle_sample(decoded.tick, now, rtt);
        }
        if let Some(buffer) = self.buffer.as_mut() {
            buffer.push(decoded.tick, Scene::of_view(&decoded.view), now);
        }
        if let Some(welcome) = self.welcome {
            if let Some(me) = decoded.view.get(welcome.player) {
                let body = me.body();
                match self.predictor.as_mut() {
                    Some(predictor) => {
                        let before = predictor.body();
                        predictor.reconcile(decoded.tick, body);
                        let after = predictor.body();
                        // Drawn where it was, then eased to where it is (see `frame`).
                        self.smoothing.0 += before.x - after.x;
                        self.smoothing.1 += before.y - after.y;
                    }
                    None => {
                        self.predictor = Some(Predictor::new(decoded.tick, body, welcome.tick_hz));
                    }
                }
            }
        }
        self.newest = Some((decoded.tick, decoded.view));
    }

    fn handle_message(&mut self, message: ServerMessage) {
        match message {
            ServerMessage::Welcome {
                player,
                tick_hz,
                snapshot_hz,
            } => {
                if self.welcome.is_some() || tick_hz == 0 {
                    return;
                }
                let rate = f64::from(tick_hz);
                self.buffer = SnapshotBuffer::new(BufferConfig {
                    tick_rate_hz: rate,
                    ..BufferConfig::default()
                })
                .ok();
                self.clock = ServerClock::new(ClockConfig {
                    tick_rate_hz: rate,
                    ..ClockConfig::default()
                })
                .ok();
                self.welcome = Some(Welcome {
                    player: EntityId(player),
                    tick_hz,
                    snapshot_hz,
                });
            }
            ServerMessage::Scoreboard {
                entries,
                you,
                players,
            } => {
                self.scoreboard = entries;
                self.own_score = you;
                self.players = players;
            }
            ServerMessage::Chat { from, text } => {
                // The server cuts lines already; a hostile one cannot make us hold more.
                self.chat.push_back(ChatLine {
                    from: truncate_chars(&from, MAX_NAME_CHARS),
                    text: truncate_chars(&text, MAX_CHAT_CHARS),
                });
                while self.chat.len() > CHAT_LINES {
                    self.chat.pop_front();
                }
            }
        }
    }
}

/// Time constant of the easing of a corrected local player to its new position, seconds: a
/// correction is drawn as a quick glide (about 0.2 s to settle) instead of a jump.
const SMOOTHING_TIME: f32 = 0.06;

/// Chat lines kept.
const CHAT_LINES: usize = 50;
