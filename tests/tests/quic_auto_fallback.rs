//! `Auto` falls back to QUIC when native packets never get through: the native path at 100 %
//! loss, or a server that does not serve native UDP at all.

mod quic_common;

use std::time::Duration;

use quic_common::*;
use tickwire::sim::LinkConfig;
use tickwire::{ChannelId, Transport};

async fn falls_back(server_transport: Transport, client_link: Option<LinkConfig>) {
    let mut server = server(server_transport).await;
    let mut config = client_config(Transport::Auto);
    config.link = client_link;
    config.quic.auto_fallback_after = Duration::from_millis(300);
    let (client, id, over) = connect_over(&mut server, config).await;
    // The transport in use shows in the API, the server's `Connected` event and both sides'
    // statistics.
    assert_eq!(client.transport(), Transport::Quic);
    assert_eq!(server.transport_of(id), Some(Transport::Quic));
    assert_eq!(over, Transport::Quic);
    assert_eq!(client.stats().expect("stats").transport, Transport::Quic);
    assert_eq!(server.stats(id).expect("stats").transport, Transport::Quic);
    assert!(id.is_quic(), "{id}");
    client.send(ChannelId(2), numbered(5, 64)).expect("queue");
    let (from, channel, data) = server_message(&mut server).await;
    assert_eq!((from, channel, number(&data)), (id, ChannelId(2), 5));
    client.disconnect(0).await;
    server.shutdown().await;
}

#[tokio::test]
async fn auto_falls_back_to_quic_when_native_packets_are_all_lost() {
    let blocked = LinkConfig {
        loss: 1.0,
        ..LinkConfig::default()
    };
    falls_back(Transport::Auto, Some(blocked)).await;
}

#[tokio::test]
async fn auto_falls_back_to_quic_when_the_server_serves_no_native_udp() {
    falls_back(Transport::Quic, None).await;
}
