//! The tokio UDP driver over real loopback sockets: connect, echo on every channel kind,
//! disconnect seen by both sides, handshake timeout, server full, port in use, IPv6.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use bytes::Bytes;
use tickwire::{
    BindError, ChannelId, Client, ClientError, DisconnectReason, DriverConfig, Event, RejectReason,
    Server,
};
use tokio::time::timeout;

/// Every wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(10);

async fn server_on(addr: &str) -> Server {
    Server::bind(addr.parse().unwrap(), DriverConfig::server())
        .await
        .expect("bind a loopback server")
}

/// Serves echo until the server shuts down: every message goes back on its channel.
fn spawn_echo(mut server: Server) -> tokio::task::JoinHandle<Server> {
    tokio::spawn(async move {
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
    })
}

async fn next_message(client: &mut Client) -> (ChannelId, Bytes) {
    loop {
        match timeout(LIMIT, client.next_event()).await {
            Ok(Some(Event::Message { channel, data, .. })) => return (channel, data),
            Ok(Some(_)) => continue,
            other => panic!("no message: {other:?}"),
        }
    }
}

#[tokio::test]
async fn echo_on_every_channel_kind_and_disconnect_seen_by_both() {
    let server = server_on("127.0.0.1:0").await;
    let addr = server.local_addr();
    let echo = spawn_echo(server);
    let mut client = Client::connect(addr, DriverConfig::client()).await.unwrap();
    for channel in 0..4u8 {
        for size in [1usize, 64, 1000, 5000] {
            let payload = Bytes::from(vec![channel ^ (size as u8); size]);
            client.send(ChannelId(channel), payload.clone()).unwrap();
            let (got_channel, got) = next_message(&mut client).await;
            assert_eq!(got_channel, ChannelId(channel));
            assert_eq!(got, payload, "channel {channel} size {size}");
        }
    }
    let stats = client.stats().unwrap();
    assert!(stats.rtt < Duration::from_millis(500));
    client.disconnect(7).await;
    // The echo task ends when it sees the client's goodbye.
    let server = timeout(LIMIT, echo).await.unwrap().unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn server_sees_remote_code_and_client_sees_server_shutdown() {
    let mut server = server_on("127.0.0.1:0").await;
    let addr = server.local_addr();
    let client = Client::connect(addr, DriverConfig::client()).await.unwrap();
    let connection = loop {
        match timeout(LIMIT, server.next_event()).await.unwrap().unwrap() {
            Event::Connected { connection, .. } => break connection,
            _ => continue,
        }
    };
    client.disconnect(42).await;
    loop {
        match timeout(LIMIT, server.next_event()).await.unwrap().unwrap() {
            Event::Disconnected {
                connection: c,
                reason,
            } => {
                assert_eq!(c, connection);
                assert_eq!(reason, DisconnectReason::Remote { code: 42 });
                break;
            }
            _ => continue,
        }
    }
    let mut client = Client::connect(addr, DriverConfig::client()).await.unwrap();
    server.shutdown().await;
    loop {
        match timeout(LIMIT, client.next_event()).await.unwrap() {
            Some(Event::Disconnected { reason, .. }) => {
                assert!(
                    matches!(reason, DisconnectReason::Remote { .. }),
                    "{reason:?}"
                );
                break;
            }
            Some(_) => continue,
            None => panic!("client stopped without a disconnect event"),
        }
    }
}

#[tokio::test]
async fn handshake_times_out_against_a_silent_port() {
    // A bound socket that never answers: datagrams vanish, no ICMP error.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let mut config = DriverConfig::client();
    config.endpoint.handshake_timeout = Duration::from_millis(500);
    let error = Client::connect(addr, config)
        .await
        .err()
        .expect("must time out");
    assert!(
        matches!(error, ClientError::Timeout { server, .. } if server == addr),
        "{error}"
    );
    assert!(error.to_string().contains("is the server running"));
}

#[tokio::test]
async fn second_client_is_refused_when_the_server_is_full() {
    let mut config = DriverConfig::server();
    config.endpoint.max_connections = 1;
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let addr = server.local_addr();
    let _first = Client::connect(addr, DriverConfig::client()).await.unwrap();
    let error = Client::connect(addr, DriverConfig::client())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            error,
            ClientError::Rejected {
                reason: RejectReason::ServerFull,
                ..
            }
        ),
        "{error}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn binding_a_port_in_use_says_so() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let error = Server::bind(addr, DriverConfig::server())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(error, BindError::AddrInUse(a) if a == addr),
        "{error}"
    );
    assert!(error.to_string().contains("already in use"));
}

#[tokio::test]
async fn ipv6_loopback_works() {
    let Ok(probe) = UdpSocket::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback on this machine: skipping");
        return;
    };
    drop(probe);
    let server = server_on("[::1]:0").await;
    let addr: SocketAddr = server.local_addr();
    assert!(addr.is_ipv6());
    let echo = spawn_echo(server);
    let mut client = Client::connect(addr, DriverConfig::client()).await.unwrap();
    client
        .send(ChannelId(2), Bytes::from_static(b"over v6"))
        .unwrap();
    let (_, got) = next_message(&mut client).await;
    assert_eq!(&got[..], b"over v6");
    client.disconnect(0).await;
    timeout(LIMIT, echo)
        .await
        .unwrap()
        .unwrap()
        .shutdown()
        .await;
}
