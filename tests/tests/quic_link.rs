//! The simulated link applies to the QUIC path too (`QuicConfig::link`): its latency shows in
//! QUIC's RTT, and under its loss reliable channels still deliver everything in order while
//! unreliable ones with `notify_delivery` report the lost messages.

mod quic_common;

use std::collections::HashMap;
use std::time::Duration;

use quic_common::*;
use tickwire::sim::LinkConfig;
use tickwire::{ChannelId, DeliveryOutcome, Event, Transport};
use tokio::time::timeout;

#[tokio::test]
async fn the_quic_path_takes_the_simulated_latency() {
    let mut server = server(Transport::Quic).await;
    let mut config = client_config(Transport::Quic);
    config.quic.link = Some(LinkConfig {
        latency: Duration::from_millis(25),
        ..LinkConfig::default()
    });
    let (mut client, id) = connect(&mut server, config).await;
    client.send(ChannelId(2), numbered(1, 64)).expect("queue");
    let (_, channel, data) = server_message(&mut server).await;
    server.send(id, channel, data).expect("echo");
    client_message(&mut client).await;
    let rtt = client.stats().expect("stats").rtt;
    assert!(
        rtt >= Duration::from_millis(50),
        "25 ms each way: rtt {rtt:?}"
    );
    // Off again: the link becomes perfect.
    client.set_link(None).expect("set_link");
    client.disconnect(0).await;
    server.shutdown().await;
}

#[tokio::test]
async fn under_simulated_loss_reliable_arrives_and_lost_datagrams_are_reported() {
    let mut server = server(Transport::Quic).await;
    let mut config = client_config(Transport::Quic);
    config.link_seed = 7;
    config.quic.link = Some(LinkConfig {
        loss: 0.15,
        ..LinkConfig::default()
    });
    config.endpoint.channels.client_to_server[0].notify_delivery = true;
    let (mut client, _) = connect(&mut server, config).await;

    const COUNT: u32 = 200;
    let mut sent = Vec::new();
    for i in 0..COUNT {
        client
            .send(ChannelId(2), numbered(i, 200))
            .expect("queue reliable");
        sent.push(
            client
                .send(ChannelId(0), numbered(i, 64))
                .expect("queue unreliable"),
        );
    }
    let mut next = 0;
    while next < COUNT {
        let (_, channel, data) = server_message(&mut server).await;
        if channel == ChannelId(2) {
            assert_eq!(number(&data), next, "reliable in order despite loss");
            next += 1;
        }
    }
    let mut outcomes = HashMap::new();
    while outcomes.len() < sent.len() {
        match timeout(LIMIT, client.next_event()).await {
            Ok(Some(Event::Delivery {
                message, outcome, ..
            })) => {
                assert!(
                    outcomes.insert(message, outcome).is_none(),
                    "one notice each"
                );
            }
            Ok(Some(_)) => {}
            other => panic!("notices stalled at {}: {other:?}", outcomes.len()),
        }
    }
    let lost = outcomes
        .values()
        .filter(|o| **o == DeliveryOutcome::Lost)
        .count();
    assert!(
        lost > 0,
        "15 % loss each way loses some of {COUNT} datagrams"
    );
    assert!(lost < sent.len(), "and delivers others");
    client.disconnect(0).await;
    server.shutdown().await;
}
