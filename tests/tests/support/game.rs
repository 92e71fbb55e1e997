//! Shared setup of the demo-game end-to-end tests: a server and bots in-process over loopback,
//! and the comparison of each bot's interpolated view with the server's recorded states.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use demo_game::bot::{run_bots, BotOutcome, BotsConfig};
use demo_game::net::{driver_config, NetOptions, Role};
use demo_game::server::{GameServer, ServerConfig, TickState};
use tickwire::snapshot::{EntityId, SampleKind};
use tokio::sync::watch;

/// What a run recorded.
pub struct Run {
    pub history: Vec<TickState>,
    pub bots: Vec<BotOutcome>,
}

/// A server and `count` bots playing for `duration`, the bots' sockets on `net`.
pub async fn play(count: usize, duration: Duration, net: NetOptions) -> Run {
    play_over(
        "127.0.0.1:0".parse().unwrap(),
        NetOptions::default(),
        count,
        duration,
        |bots| bots.net = net,
    )
    .await
}

/// A server on `bind` with `server` options (transport, access) and `count` bots playing for
/// `duration`, their settings adjusted by `setup`.
pub async fn play_over(
    bind: SocketAddr,
    server: NetOptions,
    count: usize,
    duration: Duration,
    setup: impl FnOnce(&mut BotsConfig),
) -> Run {
    let server = GameServer::start(ServerConfig {
        bind,
        driver: driver_config(Role::Server { max_players: 64 }, &server),
        history_ticks: 60 * 20,
        ..ServerConfig::default()
    })
    .await
    .expect("start the server");
    let mut config = BotsConfig::new(server.local_addr(), count, Some(duration));
    config.record_views = 60 * 20;
    setup(&mut config);
    let (_stop, stopped) = watch::channel(false);
    let bots = tokio::time::timeout(
        duration + Duration::from_secs(20),
        run_bots(config, stopped),
    )
    .await
    .expect("the bots finish within their duration plus 20 s");
    let history = server.history();
    server.shutdown().await;
    Run { history, bots }
}

/// How far each bot's view of the others was from the server's state at the rendered tick.
#[derive(Debug, Default)]
pub struct ViewErrors {
    /// Player positions compared, in interpolated frames.
    pub interpolated: usize,
    /// Largest error in an interpolated frame, arena units.
    pub max_interpolated: f32,
    /// Player positions compared in hitch frames (extrapolated or held).
    pub hitches: usize,
    /// Largest error in a hitch frame.
    pub max_hitch: f32,
    /// Frames (after the warm-up) that lacked a player the server had.
    pub missing: usize,
    /// Frames compared.
    pub frames: usize,
}

/// Compares every recorded frame after the first `warmup_ticks` of each bot with the server's
/// history interpolated at the frame's render tick.
pub fn compare(run: &Run, warmup_ticks: u64) -> ViewErrors {
    let mut errors = ViewErrors::default();
    let first_tick = run.history.first().map_or(0, |(t, _)| *t);
    for bot in &run.bots {
        let me = bot.player;
        let first_view = bot.views.first().map_or(0.0, |v| v.render_tick);
        for view in &bot.views {
            if view.render_tick < first_view + warmup_ticks as f64 {
                continue;
            }
            let Some(truth) = state_at(&run.history, view.render_tick) else {
                continue;
            };
            if view.render_tick < first_tick as f64 {
                continue;
            }
            errors.frames += 1;
            // Every other player the server had on both sides of the render tick is drawn.
            for (id, _) in &truth {
                if Some(*id) != me && !view.players.iter().any(|(p, _)| p == id) {
                    errors.missing += 1;
                }
            }
            for (id, body) in &view.players {
                let Some((_, (x, y))) = truth.iter().find(|(t, _)| t == id) else {
                    continue;
                };
                let error = ((body.x - x).powi(2) + (body.y - y).powi(2)).sqrt();
                if view.kind == SampleKind::Interpolated {
                    errors.interpolated += 1;
                    errors.max_interpolated = errors.max_interpolated.max(error);
                } else {
                    errors.hitches += 1;
                    errors.max_hitch = errors.max_hitch.max(error);
                }
            }
        }
    }
    errors
}

/// Players present at both ticks around `tick`, their positions blended linearly.
fn state_at(history: &[TickState], tick: f64) -> Option<Vec<(EntityId, (f32, f32))>> {
    let below = tick.floor() as u64;
    let index = history.binary_search_by_key(&below, |(t, _)| *t).ok()?;
    let (_, a) = &history[index];
    let (_, b) = history.get(index + 1).unwrap_or(&history[index]);
    let f = (tick - below as f64) as f32;
    Some(
        a.iter()
            .filter_map(|(id, pa)| {
                let (_, pb) = b.iter().find(|(other, _)| other == id)?;
                Some((*id, (pa.x + (pb.x - pa.x) * f, pa.y + (pb.y - pa.y) * f)))
            })
            .collect(),
    )
}

/// Every bot connected and stayed connected, and received snapshots.
pub fn assert_all_played(run: &Run) {
    for bot in &run.bots {
        assert_eq!(bot.connect_error, None, "{} could not connect", bot.name);
        assert_eq!(bot.dropped, None, "{} was dropped", bot.name);
        assert!(bot.snapshots_received > 0, "{} got no snapshot", bot.name);
        assert!(!bot.views.is_empty(), "{} drew nothing", bot.name);
    }
}
