//! demo-game in secure mode: a server requiring connect tokens (`server --secure --key`) and 4
//! bots that each mint their own token with the same key (`bots --key`), for 2 s. Every bot gets
//! a session and plays; a bot whose token was minted with another key gets none.

#[path = "support/game.rs"]
mod game;

use std::net::SocketAddr;
use std::time::Duration;

use demo_game::client::{ClientConfig, GameClient};
use demo_game::net::{driver_config, Access, NetOptions, Role};
use demo_game::server::{GameServer, ServerConfig};
use tickwire::{ClientError, PrivateKey, Transport};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_with_minted_tokens_play_on_a_secure_server() {
    let key = PrivateKey::generate();
    // The token names the server's address, so find a free port before the server starts.
    let addr = free_loopback_port();
    let server = NetOptions {
        access: Access::RequireTokens {
            key: key.clone(),
            public_addresses: vec![addr],
        },
        ..NetOptions::default()
    };
    let run = game::play_over(addr, server, 4, Duration::from_secs(2), |bots| {
        bots.mint_tokens = Some(key);
        bots.first_client_id = 100;
    })
    .await;
    game::assert_all_played(&run);
    for bot in &run.bots {
        assert_eq!(bot.transport, Some(Transport::Native), "{}", bot.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_another_key_gets_no_session() {
    let addr = free_loopback_port();
    let server = GameServer::start(ServerConfig {
        bind: addr,
        driver: driver_config(
            Role::Server { max_players: 8 },
            &NetOptions {
                access: Access::RequireTokens {
                    key: PrivateKey::generate(),
                    public_addresses: vec![addr],
                },
                ..NetOptions::default()
            },
        ),
        ..ServerConfig::default()
    })
    .await
    .expect("start the server");
    let forged = demo_game::tokens::mint(&PrivateKey::generate(), addr, 1, Duration::from_secs(30))
        .expect("mint");
    let mut driver = driver_config(
        Role::Client,
        &NetOptions {
            access: Access::Token(forged),
            ..NetOptions::default()
        },
    );
    driver.endpoint.handshake_timeout = Duration::from_millis(500);
    let result = GameClient::connect(ClientConfig {
        server: addr,
        name: "forger".into(),
        driver,
        record_views: 0,
    })
    .await;
    server.shutdown().await;
    assert!(
        matches!(result, Err(ClientError::Timeout { .. })),
        "a forged token must get no answer"
    );
}

fn free_loopback_port() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .expect("a free loopback port")
}
