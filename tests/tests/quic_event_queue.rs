//! Over QUIC, the server's event queue is bounded (`QuicConfig::event_queue_bytes`): while the
//! application does not drain it, unreliable messages beyond the bound are dropped and counted,
//! and reliable ones wait (QUIC flow control pushes back), then all arrive in order.

mod quic_common;

use quic_common::*;
use tickwire::{ChannelId, DriverConfig, Event, Server, Transport};
use tokio::time::{timeout, Instant};

#[tokio::test]
async fn a_full_event_queue_drops_unreliable_and_holds_back_reliable() {
    let mut config = DriverConfig {
        transport: Transport::Quic,
        ..DriverConfig::server()
    };
    config.quic.event_queue_bytes = 16 * 1024;
    let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("bind");
    let (client, id) = connect(&mut server, client_config(Transport::Quic)).await;

    // 2,000 unreliable messages of 64 B charge about 250 kB, far above the bound.
    const UNRELIABLE: u32 = 2_000;
    for batch in 0..UNRELIABLE / 100 {
        let messages = (batch * 100..batch * 100 + 100).map(|i| numbered(i, 64));
        let (queued, _) = client.send_many(ChannelId(0), messages);
        assert_eq!(queued, 100);
    }
    // Wait, without draining, until the server counted drops.
    let deadline = Instant::now() + LIMIT;
    loop {
        let dropped = server
            .stats(id)
            .map_or(0, |s| s.recv_channels[0].messages_dropped);
        if dropped > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no drops counted while not draining"
        );
        tokio::task::yield_now().await;
    }
    // 200 reliable messages of 1 KiB, also above the bound: they must wait, not drop.
    const RELIABLE: u32 = 200;
    for i in 0..RELIABLE {
        client.send(ChannelId(2), numbered(i, 1024)).expect("queue");
    }
    let mut next_reliable = 0;
    let mut unreliable = 0u64;
    while next_reliable < RELIABLE {
        match timeout(LIMIT, server.next_event()).await {
            Ok(Some(Event::Message {
                channel: ChannelId(2),
                data,
                ..
            })) => {
                assert_eq!(number(&data), next_reliable, "reliable in order, none lost");
                next_reliable += 1;
            }
            Ok(Some(Event::Message { .. })) => unreliable += 1,
            Ok(Some(_)) => {}
            other => panic!("reliable messages stalled: {other:?}"),
        }
    }
    let stats = server.stats(id).expect("stats");
    let channel = &stats.recv_channels[0];
    assert_eq!(channel.messages_delivered, unreliable);
    assert!(channel.messages_dropped > 0);
    assert!(channel.messages_delivered + channel.messages_dropped <= u64::from(UNRELIABLE));
    assert_eq!(
        stats.recv_channels[2].messages_delivered,
        u64::from(RELIABLE)
    );
    client.disconnect(0).await;
    server.shutdown().await;
}
