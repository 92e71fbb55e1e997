//! Hybrid: one logical connection, reliable channels over QUIC streams (delivered in order)
//! while sequenced traffic flows over native UDP, all under the native connection's id.

mod quic_common;

use quic_common::*;
use tickwire::{ChannelId, Event, Transport};
use tokio::time::timeout;

#[tokio::test]
async fn hybrid_delivers_reliable_in_order_while_sequenced_flows_natively() {
    let mut server = server(Transport::Hybrid).await;
    let (client, id, over) = connect_over(&mut server, client_config(Transport::Hybrid)).await;
    assert_eq!(client.transport(), Transport::Hybrid);
    assert_eq!(server.transport_of(id), Some(Transport::Hybrid));
    assert_eq!(
        over,
        Transport::Hybrid,
        "one Connected for the pair, named hybrid"
    );
    assert_eq!(client.stats().expect("stats").transport, Transport::Hybrid);
    assert_eq!(
        server.stats(id).expect("stats").transport,
        Transport::Hybrid
    );
    let native_before = server.stats(id).expect("native stats").packets_received;

    const COUNT: u32 = 1_000;
    for i in 0..COUNT {
        client
            .send_wait(ChannelId(2), numbered(i, 500))
            .await
            .expect("queue reliable");
        client
            .send(ChannelId(1), numbered(i, 32))
            .expect("queue sequenced");
    }
    let (mut reliable, mut sequenced) = (0u32, None::<u32>);
    while reliable < COUNT || sequenced.is_none() {
        let event = timeout(LIMIT, server.next_event())
            .await
            .expect("events within the limit")
            .expect("server running");
        let Event::Message {
            connection,
            channel,
            data,
        } = event
        else {
            continue;
        };
        assert_eq!(connection, id, "one connection id for both paths");
        match channel {
            ChannelId(2) => {
                assert_eq!(number(&data), reliable, "reliable in order");
                reliable += 1;
            }
            ChannelId(1) => {
                let n = number(&data);
                assert!(sequenced.is_none_or(|s| n > s), "sequenced never older");
                sequenced = Some(n);
            }
            other => panic!("unexpected channel {other:?}"),
        }
    }
    let native_after = server.stats(id).expect("native stats").packets_received;
    assert!(
        native_after > native_before,
        "sequenced traffic flowed over native UDP"
    );
    // The pair's statistics show the reliable channel as QUIC carried it, acknowledged.
    let stats = server.stats(id).expect("stats");
    assert_eq!(stats.recv_channels[2].messages_delivered, u64::from(COUNT));
    let deadline = tokio::time::Instant::now() + LIMIT;
    while client.stats().expect("stats").send_channels[2].messages_acked < u64::from(COUNT) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "reliable acks over QUIC"
        );
        tokio::task::yield_now().await;
    }
    client.disconnect(0).await;
    server.shutdown().await;
}
