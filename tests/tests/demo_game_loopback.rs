//! demo-game over plain loopback: a server and 8 bots for 5 s. Every bot connects and stays,
//! and every bot's interpolated view of every other player is within tolerance of the server's
//! state at the rendered tick.
//!
//! Tolerance: 0.5 arena units (a player is 1.8 units wide; one unit is one terminal column) for
//! interpolated frames. Interpolating between snapshots 2 ticks apart with the velocities they
//! carry (cubic Hermite) follows the server's path exactly up to quantisation (1/128 unit),
//! except where a bump or a wall changed the velocity between two snapshots; such a kink bends
//! the path by a fraction of the distance covered in one interval (at most 30 units/s × 1/30 s =
//! 1 unit, in practice far less). Measured: at most 0.05 units here, 0.15 under loss (where a
//! lost snapshot makes the interval twice as long). Hitch frames (extrapolated or held, when no
//! snapshot pair surrounds the render time) get 1.5 units: the motion continued from the last
//! snapshot for up to the 100 ms extrapolation cap.

#[path = "support/game.rs"]
mod game;

use std::time::Duration;

use demo_game::net::NetOptions;

/// Largest error of an interpolated player position, arena units (a player is 1.8 wide).
const INTERPOLATED_TOLERANCE: f32 = 0.5;
/// Largest error of an extrapolated or held player position.
const HITCH_TOLERANCE: f32 = 1.5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_bots_see_each_other_where_the_server_has_them() {
    let run = game::play(8, Duration::from_secs(5), NetOptions::default()).await;
    game::assert_all_played(&run);
    let errors = game::compare(&run, 60);
    println!("{errors:?}");
    assert!(
        errors.frames > 8 * 120,
        "too few frames compared: {errors:?}"
    );
    assert!(errors.interpolated > 8 * 7 * 100, "{errors:?}");
    assert!(
        errors.max_interpolated <= INTERPOLATED_TOLERANCE,
        "{errors:?}"
    );
    assert!(errors.max_hitch <= HITCH_TOLERANCE, "{errors:?}");
    assert_eq!(errors.missing, 0, "{errors:?}");
}
