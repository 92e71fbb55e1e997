//! Over QUIC, an unreliable message larger than the DATAGRAM size quinn reports travels as
//! fragment frames of that size: it arrives whole, and on a lossy path a message missing a
//! fragment is lost whole (it does not fall back to a reliable stream).

mod quic_common;

use quic_common::*;
use tickwire::sim::LinkConfig;
use tickwire::{ChannelId, Event, Transport};
use tokio::time::timeout;

/// Bytes of each large message: several datagrams' worth.
const LARGE: usize = 5_000;

/// Whether `data` is the [`numbered`] message `n` of `len` bytes, intact.
fn intact(data: &[u8], len: usize) -> bool {
    data.len() == len && data[4..].iter().all(|&b| b == 0xAB)
}

#[tokio::test]
async fn large_unreliable_messages_arrive_whole_as_fragments() {
    let mut server = server(Transport::Quic).await;
    let (mut client, id) = connect(&mut server, client_config(Transport::Quic)).await;
    for i in 0..20 {
        client
            .send(ChannelId(0), numbered(i, LARGE))
            .expect("queue");
        server
            .send(id, ChannelId(0), numbered(i, LARGE))
            .expect("queue");
    }
    let mut seen = 0;
    while seen < 20 {
        let (_, channel, data) = server_message(&mut server).await;
        assert_eq!(channel, ChannelId(0));
        assert!(intact(&data, LARGE), "message {} whole", number(&data));
        seen += 1;
    }
    let (channel, data) = client_message(&mut client).await;
    assert_eq!(channel, ChannelId(0));
    assert!(intact(&data, LARGE));
    let stats = server.stats(id).expect("stats");
    assert_eq!(stats.dropped.malformed, 0);
    client.disconnect(0).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_fragmented_message_missing_a_piece_is_lost_whole() {
    let mut server = server(Transport::Quic).await;
    let mut config = client_config(Transport::Quic);
    config.link_seed = 7;
    config.quic.link = Some(LinkConfig {
        loss: 0.1,
        ..LinkConfig::default()
    });
    let (client, id) = connect(&mut server, config).await;
    const COUNT: u32 = 50;
    let before = client.stats().expect("stats").bytes_sent;
    for i in 0..COUNT {
        client
            .send_wait(ChannelId(0), numbered(i, LARGE))
            .await
            .expect("queue");
    }
    // Once quinn has sent every fragment (lost ones included: the simulated link drops them
    // after), the end marker, on a reliable stream: it arrives after them, lost packets or not.
    let deadline = tokio::time::Instant::now() + LIMIT;
    while client.stats().expect("stats").bytes_sent - before < u64::from(COUNT) * LARGE as u64 {
        assert!(tokio::time::Instant::now() < deadline, "fragments sent");
        tokio::task::yield_now().await;
    }
    client
        .send(ChannelId(2), numbered(u32::MAX, 8))
        .expect("queue the marker");
    let mut delivered = 0u32;
    loop {
        let event = timeout(LIMIT, server.next_event())
            .await
            .expect("events within the limit")
            .expect("server running");
        let Event::Message { channel, data, .. } = event else {
            continue;
        };
        if channel == ChannelId(2) {
            break;
        }
        assert!(intact(&data, LARGE), "message {} whole", number(&data));
        delivered += 1;
    }
    // Each message spans about five datagrams at 10 % loss: about 40 % of them lose one, and
    // none arrives in part. (Over the reliable fallback stream all would arrive.)
    assert!(
        delivered < COUNT,
        "{delivered} of {COUNT}: some must be lost"
    );
    assert_eq!(server.stats(id).expect("stats").dropped.malformed, 0);
    // A perfect link again, so that the close gets through at once.
    client.set_link(None).expect("clear the link");
    client.disconnect(0).await;
    server.shutdown().await;
}
