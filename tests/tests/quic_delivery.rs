//! Over QUIC, an unreliable channel with `notify_delivery` reports each message's fate once
//! (`Event::Delivery`), as natively: its payloads carry a tag that the receiver acknowledges.

mod quic_common;

use std::collections::HashMap;

use quic_common::*;
use tickwire::{ChannelId, DeliveryOutcome, Event, MessageId, Transport};
use tokio::time::timeout;

#[tokio::test]
async fn every_tracked_message_gets_exactly_one_delivery_notice() {
    let mut server = server(Transport::Quic).await;
    let mut config = client_config(Transport::Quic);
    config.endpoint.channels.client_to_server[0].notify_delivery = true;
    let (mut client, _) = connect(&mut server, config).await;

    let mut sent = Vec::new();
    for i in 0..100 {
        sent.push(client.send(ChannelId(0), numbered(i, 64)).expect("queue"));
    }
    for batch in 0..10u32 {
        let messages = (0..30).map(|i| numbered(1_000 + batch * 30 + i, 64));
        let first = client.stats().expect("stats").send_channels[0].messages_sent;
        let (queued, refused) = client.send_many(ChannelId(0), messages);
        assert_eq!((queued, refused.is_none()), (30, true));
        sent.extend((first..first + 30).map(MessageId));
    }
    // One larger than any datagram: tagged on the fallback stream.
    sent.push(
        client
            .send(ChannelId(0), numbered(9_999, 5_000))
            .expect("queue"),
    );

    let mut outcomes: HashMap<MessageId, DeliveryOutcome> = HashMap::new();
    while outcomes.len() < sent.len() {
        match timeout(LIMIT, client.next_event()).await {
            Ok(Some(Event::Delivery {
                channel,
                message,
                outcome,
                ..
            })) => {
                assert_eq!(channel, ChannelId(0));
                assert!(
                    outcomes.insert(message, outcome).is_none(),
                    "{message:?} twice"
                );
            }
            Ok(Some(_)) => {}
            other => panic!("delivery notices stalled at {}: {other:?}", outcomes.len()),
        }
    }
    assert!(sent.iter().all(|id| outcomes.contains_key(id)));
    let stats = client.stats().expect("stats").send_channels[0].clone();
    let acked = outcomes
        .values()
        .filter(|o| **o == DeliveryOutcome::Acked)
        .count() as u64;
    assert_eq!(stats.messages_acked, acked);
    assert_eq!(
        stats.messages_acked + stats.messages_lost,
        sent.len() as u64
    );
    assert!(acked > 0, "loopback delivers most of them");
    client.disconnect(0).await;
    server.shutdown().await;
}
