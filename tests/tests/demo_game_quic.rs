//! demo-game over QUIC: a server serving both transports and 4 bots dialling with
//! `--transport quic` for 3 s. Every bot connects over QUIC, stays, and sees the others where
//! the server has them (the loopback test's tolerances).

#[path = "support/game.rs"]
mod game;

use std::time::Duration;

use demo_game::net::NetOptions;
use tickwire::Transport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_play_over_quic() {
    let server = NetOptions {
        transport: Transport::Auto,
        ..NetOptions::default()
    };
    let run = game::play_over(
        "127.0.0.1:0".parse().unwrap(),
        server,
        4,
        Duration::from_secs(3),
        |bots| bots.net.transport = Transport::Quic,
    )
    .await;
    game::assert_all_played(&run);
    for bot in &run.bots {
        assert_eq!(bot.transport, Some(Transport::Quic), "{}", bot.name);
    }
    let errors = game::compare(&run, 60);
    println!("{errors:?}");
    assert!(errors.interpolated > 4 * 3 * 60, "{errors:?}");
    assert!(errors.max_interpolated <= 0.5, "{errors:?}");
    assert!(errors.max_hitch <= 1.5, "{errors:?}");
    assert_eq!(errors.missing, 0, "{errors:?}");
}
