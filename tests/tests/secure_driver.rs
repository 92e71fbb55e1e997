//! Secure sessions over real loopback sockets with the tokio driver: a client with a token
//! connects and echoes on every channel kind; a client without one, or with a token from
//! another key, times out without the server creating anything.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tickwire::{
    ChannelId, Client, ClientError, ClientId, Config, DriverConfig, Event, PrivateKey, Security,
    Server, TokenSecurity, TokenSpec,
};
use tokio::time::timeout;

/// Every wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(10);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A secure server on a free loopback port (the token must name its address).
async fn secure_server(key: &PrivateKey) -> (Server, SocketAddr) {
    let addr = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = DriverConfig::server();
    config.endpoint.security =
        Security::Tokens(TokenSecurity::new(key.clone(), vec![addr], unix_now()));
    (Server::bind(addr, config).await.unwrap(), addr)
}

fn client_config(key: &PrivateKey, server: SocketAddr) -> DriverConfig {
    let token = TokenSpec::new(Config::default().protocol_id, ClientId(5), vec![server])
        .issue(key, unix_now())
        .unwrap();
    let mut config = DriverConfig::client();
    config.endpoint.connect_token = Some(token);
    config
}

#[tokio::test]
async fn a_token_holder_echoes_on_every_channel() {
    let key = PrivateKey::generate();
    let (mut server, addr) = secure_server(&key).await;
    let echo = tokio::spawn(async move {
        while let Ok(Some(event)) = timeout(LIMIT, server.next_event()).await {
            match event {
                Event::Message {
                    connection,
                    channel,
                    data,
                } => {
                    let _ = server.send(connection, channel, data);
                }
                Event::Disconnected { .. } => break,
                _ => {}
            }
        }
        server
    });
    let mut client = Client::connect(addr, client_config(&key, addr))
        .await
        .unwrap();
    for channel in 0..4u8 {
        client
            .send(ChannelId(channel), format!("secret {channel}").into())
            .unwrap();
    }
    let mut echoed = Vec::new();
    while echoed.len() < 4 {
        match timeout(LIMIT, client.next_event()).await {
            Ok(Some(Event::Message { channel, data, .. })) => {
                assert_eq!(&data[..], format!("secret {}", channel.0).as_bytes());
                echoed.push(channel.0);
            }
            Ok(Some(_)) => {}
            other => panic!("no echo: {other:?}"),
        }
    }
    client.disconnect(0).await;
    let server = timeout(LIMIT, echo).await.unwrap().unwrap();
    assert_eq!(server.endpoint_stats().dropped.decrypt_failed, 0);
}

#[tokio::test]
async fn clients_without_a_valid_token_are_refused() {
    let key = PrivateKey::generate();
    let (server, addr) = secure_server(&key).await;
    let mut fast = DriverConfig::client();
    fast.endpoint.handshake_timeout = Duration::from_millis(600);
    let unsecured = Client::connect(addr, fast.clone()).await;
    assert!(matches!(unsecured, Err(ClientError::Timeout { .. })));
    let mut forged = client_config(&PrivateKey::generate(), addr);
    forged.endpoint.handshake_timeout = Duration::from_millis(600);
    let forged = Client::connect(addr, forged).await;
    assert!(matches!(forged, Err(ClientError::Timeout { .. })));
    let stats = server.endpoint_stats();
    assert!(stats.dropped.token_missing >= 1);
    assert!(stats.dropped.token_invalid >= 1);
    assert_eq!(stats.datagrams_sent, 0);
    assert!(server.connections().is_empty());
    server.shutdown().await;
}
