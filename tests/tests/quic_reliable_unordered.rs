//! Over QUIC, a reliable-unordered channel delivers every message exactly once.

mod quic_common;

use std::collections::HashSet;

use quic_common::*;
use tickwire::{ChannelId, Transport};

#[tokio::test]
async fn reliable_unordered_messages_arrive_exactly_once_over_quic() {
    let mut server = server(Transport::Quic).await;
    let (client, _) = connect(&mut server, client_config(Transport::Quic)).await;
    const COUNT: u32 = 2_000;
    for i in 0..COUNT {
        client
            .send_wait(ChannelId(3), numbered(i, 300))
            .await
            .expect("queue");
    }
    let mut seen = HashSet::new();
    for _ in 0..COUNT {
        let (_, channel, data) = server_message(&mut server).await;
        assert_eq!(channel, ChannelId(3));
        assert!(seen.insert(number(&data)), "delivered twice");
    }
    assert_eq!(seen.len(), COUNT as usize);
    client.disconnect(0).await;
    server.shutdown().await;
}
