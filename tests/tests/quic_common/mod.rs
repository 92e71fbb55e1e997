//! Shared setup of the QUIC transport tests: a server and a client over loopback, and bounded
//! waits for events.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use bytes::Bytes;
use tickwire::{ChannelId, Client, ConnectionId, DriverConfig, Event, Server, Transport};
use tokio::time::timeout;

/// Every wait in these tests is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(10);

/// A server on a loopback port serving `transport`.
pub async fn server(transport: Transport) -> Server {
    let config = DriverConfig {
        transport,
        ..DriverConfig::server()
    };
    Server::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("bind a loopback server")
}

/// A client config for `transport` with the defaults (self-signed accepted from loopback).
pub fn client_config(transport: Transport) -> DriverConfig {
    DriverConfig {
        transport,
        ..DriverConfig::client()
    }
}

/// Connects, while the server drains its events (a hybrid pairing completes there), until the
/// server has seen the connection too.
pub async fn connect(server: &mut Server, config: DriverConfig) -> (Client, ConnectionId) {
    let (client, id, _) = connect_over(server, config).await;
    (client, id)
}

/// [`connect`], also returning the transport named by the server's `Connected` event.
pub async fn connect_over(
    server: &mut Server,
    config: DriverConfig,
) -> (Client, ConnectionId, Transport) {
    let addr = server.local_addr();
    let connected = async {
        loop {
            match timeout(LIMIT, server.next_event()).await {
                Ok(Some(Event::Connected {
                    connection,
                    transport,
                    ..
                })) => break (connection, transport),
                Ok(Some(_)) => continue,
                other => panic!("no connection at the server: {other:?}"),
            }
        }
    };
    let (client, (id, transport)) =
        tokio::join!(timeout(LIMIT, Client::connect(addr, config)), connected);
    let client = client.expect("connect within the limit").expect("connect");
    (client, id, transport)
}

/// The next message at the server, skipping other events.
pub async fn server_message(server: &mut Server) -> (ConnectionId, ChannelId, Bytes) {
    loop {
        match timeout(LIMIT, server.next_event()).await {
            Ok(Some(Event::Message {
                connection,
                channel,
                data,
            })) => return (connection, channel, data),
            Ok(Some(_)) => continue,
            other => panic!("no message at the server: {other:?}"),
        }
    }
}

/// The next message at the client, skipping other events.
pub async fn client_message(client: &mut Client) -> (ChannelId, Bytes) {
    loop {
        match timeout(LIMIT, client.next_event()).await {
            Ok(Some(Event::Message { channel, data, .. })) => return (channel, data),
            Ok(Some(_)) => continue,
            other => panic!("no message at the client: {other:?}"),
        }
    }
}

/// A message of `len` bytes starting with the big-endian counter `i`.
pub fn numbered(i: u32, len: usize) -> Bytes {
    let mut message = vec![0xAB; len.max(4)];
    message[..4].copy_from_slice(&i.to_be_bytes());
    Bytes::from(message)
}

/// The counter at the start of a [`numbered`] message.
pub fn number(data: &[u8]) -> u32 {
    u32::from_be_bytes([data[0], data[1], data[2], data[3]])
}
