//! A server process that dies without a goodbye and comes back on the same port, over real
//! loopback sockets: the tokio `Client` learns from the new server's no-session reply that its
//! session is gone (`Remote { code: 0xFFF4 }`) well before its idle timeout, reconnects, and
//! the new session starts clean. (The simulator covers many seeds and the secure mode:
//! `engine/tests/faults_server_restart.rs`.)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tickwire::{ChannelId, Client, Config, DisconnectReason, DriverConfig, Event, Server};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);
const RELIABLE: ChannelId = ChannelId(2);
const NO_SESSION: u16 = 0xFFF4;

/// Binds a server on `addr`, retrying (bounded) while the old socket is still being closed.
async fn bind_again(addr: SocketAddr) -> Server {
    let deadline = Instant::now() + LIMIT;
    loop {
        match Server::bind(addr, DriverConfig::server()).await {
            Ok(server) => return server,
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "could not bind {addr} again: {error}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Echoes one message through `server` for `client`; panics on anything else within [`LIMIT`].
async fn echo_once(server: &mut Server, client: &mut Client, tag: &'static str) {
    client
        .send(RELIABLE, Bytes::from_static(tag.as_bytes()))
        .unwrap();
    loop {
        match timeout(LIMIT, server.next_event()).await.unwrap().unwrap() {
            Event::Message {
                connection,
                channel,
                data,
            } => {
                assert_eq!(&data[..], tag.as_bytes(), "the server got an old message");
                server.send(connection, channel, data).unwrap();
                break;
            }
            Event::Connected { .. } => continue,
            other => panic!("unexpected server event {other:?}"),
        }
    }
    loop {
        match timeout(LIMIT, client.next_event()).await.unwrap() {
            Some(Event::Message { data, .. }) if &data[..] == tag.as_bytes() => return,
            Some(Event::Message { .. } | Event::Connected { .. }) => continue,
            other => panic!("unexpected client event {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_notices_a_restarted_server_at_once_and_reconnects_clean() {
    let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), DriverConfig::server())
        .await
        .unwrap();
    let addr = server.local_addr();
    let mut client = Client::connect(addr, DriverConfig::client()).await.unwrap();
    echo_once(&mut server, &mut client, "before").await;

    // The server dies: no disconnect is sent. A new one comes up on the same port.
    drop(server);
    let mut server = bind_again(addr).await;
    let restarted = Instant::now();

    // The client keeps sending; its packets reach a server without its session.
    let idle = Config::default().idle_timeout;
    let reason = loop {
        assert!(
            restarted.elapsed() < idle,
            "the client waited for its idle timeout"
        );
        let _ = client.send(RELIABLE, Bytes::from_static(b"lost with the old server"));
        match timeout(Duration::from_millis(50), client.next_event()).await {
            Ok(Some(Event::Disconnected { reason, .. })) => break reason,
            Ok(Some(_)) | Err(_) => continue,
            Ok(None) => panic!("the client stopped without a disconnect event"),
        }
    };
    let noticed = restarted.elapsed();
    eprintln!("noticed the restart after {noticed:?}");
    assert_eq!(reason, DisconnectReason::Remote { code: NO_SESSION });
    assert!(noticed < idle / 2, "noticed after {noticed:?}");
    assert!(server.endpoint_stats().no_session_replies >= 1);
    assert!(server.connections().is_empty());

    // Reconnect: a fresh session; the new server delivers only what it carries.
    let mut client = Client::connect(addr, DriverConfig::client()).await.unwrap();
    echo_once(&mut server, &mut client, "after").await;
    let stats = client.stats().unwrap();
    assert!(stats.packets_sent < 20, "{} packets", stats.packets_sent);
    client.disconnect(1).await;
    server.shutdown().await;
}
