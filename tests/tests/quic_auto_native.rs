//! `Auto` connects natively when the native handshake works.

mod quic_common;

use quic_common::*;
use tickwire::{ChannelId, Transport};

#[tokio::test]
async fn auto_uses_native_udp_when_it_gets_through() {
    let mut server = server(Transport::Auto).await;
    let (mut client, id, over) = connect_over(&mut server, client_config(Transport::Auto)).await;
    assert_eq!(client.transport(), Transport::Native);
    assert_eq!(server.transport_of(id), Some(Transport::Native));
    assert_eq!(over, Transport::Native);
    assert_eq!(client.stats().expect("stats").transport, Transport::Native);
    assert_eq!(
        server.stats(id).expect("stats").transport,
        Transport::Native
    );
    server
        .send(id, ChannelId(2), numbered(1, 64))
        .expect("queue");
    let (channel, data) = client_message(&mut client).await;
    assert_eq!((channel, number(&data)), (ChannelId(2), 1));
    client.disconnect(0).await;
    server.shutdown().await;
}
