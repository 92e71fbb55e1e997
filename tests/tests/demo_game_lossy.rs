//! demo-game under 10 % loss and 80 ms of added latency each way on every bot's socket: a server
//! and 8 bots for 5 s. Every bot connects and stays, and its interpolated view of the others is
//! within the same tolerance as on a clean network (see `demo_game_loopback.rs`): the
//! interpolation delay grows to cover lost snapshots, so only hitch frames may be further off.

#[path = "support/game.rs"]
mod game;

use std::time::Duration;

use demo_game::net::NetOptions;

/// Largest error of an interpolated player position, arena units.
const INTERPOLATED_TOLERANCE: f32 = 0.5;
/// Largest error of an extrapolated or held player position.
const HITCH_TOLERANCE: f32 = 1.5;
/// Largest share of compared positions drawn from hitch frames.
const HITCH_SHARE: f64 = 0.05;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_bots_ride_out_loss_and_latency() {
    let net = NetOptions {
        lag_ms: 80,
        loss_pct: 10.0,
        seed: 7,
        ..NetOptions::default()
    };
    let run = game::play(8, Duration::from_secs(5), net).await;
    game::assert_all_played(&run);
    let errors = game::compare(&run, 60);
    println!("{errors:?}");
    assert!(
        errors.frames > 8 * 100,
        "too few frames compared: {errors:?}"
    );
    assert!(
        errors.max_interpolated <= INTERPOLATED_TOLERANCE,
        "{errors:?}"
    );
    assert!(errors.max_hitch <= HITCH_TOLERANCE, "{errors:?}");
    let share = errors.hitches as f64 / (errors.hitches + errors.interpolated).max(1) as f64;
    assert!(share <= HITCH_SHARE, "hitch share {share:.3}: {errors:?}");
    assert_eq!(errors.missing, 0, "{errors:?}");
}
