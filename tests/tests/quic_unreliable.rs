//! Over QUIC, an unreliable channel delivers messages at most once: small ones as DATAGRAM
//! frames, ones larger than a datagram as fragment frames (`quic_fragments.rs`), and
//! everything on the fallback stream when datagrams are off.

mod quic_common;

use std::collections::HashSet;

use quic_common::*;
use tickwire::{ChannelId, Transport};

async fn at_most_once(disable_datagrams: bool) {
    let mut server = server(Transport::Quic).await;
    let mut config = client_config(Transport::Quic);
    config.quic.disable_datagrams = disable_datagrams;
    let (client, _) = connect(&mut server, config).await;
    // 200 small messages, then one of 20 kB (above any datagram size, so fragmented, or on the
    // reliable fallback stream without datagrams) as the marker that the burst is over: on
    // loopback nothing is lost.
    for i in 0..200 {
        client.send(ChannelId(0), numbered(i, 64)).expect("queue");
    }
    client
        .send(ChannelId(0), numbered(u32::MAX, 20_000))
        .expect("queue a large unreliable message");
    let mut seen = HashSet::new();
    loop {
        let (_, channel, data) = server_message(&mut server).await;
        assert_eq!(channel, ChannelId(0));
        let n = number(&data);
        assert!(seen.insert(n), "{n} delivered twice");
        if n == u32::MAX {
            assert_eq!(data.len(), 20_000);
            break;
        }
    }
    client.disconnect(0).await;
    server.shutdown().await;
}

#[tokio::test]
async fn unreliable_messages_arrive_at_most_once_as_datagrams() {
    at_most_once(false).await;
}

#[tokio::test]
async fn unreliable_messages_use_the_fallback_stream_without_datagrams() {
    at_most_once(true).await;
}

/// `send_many` packs its messages into shared DATAGRAM payloads (or, without datagrams, into
/// shared frames on the fallback stream); each still arrives as its own message, at most once.
async fn packed(disable_datagrams: bool) {
    let mut server = server(Transport::Quic).await;
    let mut config = client_config(Transport::Quic);
    config.quic.disable_datagrams = disable_datagrams;
    let (client, _) = connect(&mut server, config).await;
    const COUNT: u32 = 400;
    for batch in 0..COUNT / 40 {
        let messages = (batch * 40..batch * 40 + 40).map(|i| numbered(i, 1 + (i as usize % 90)));
        let (queued, refused) = client.send_many(ChannelId(0), messages);
        assert_eq!((queued, refused.is_none()), (40, true));
    }
    client
        .send(ChannelId(0), numbered(u32::MAX, 20_000))
        .expect("queue the end marker");
    let mut seen = HashSet::new();
    loop {
        let (_, channel, data) = server_message(&mut server).await;
        assert_eq!(channel, ChannelId(0));
        let n = number(&data);
        if n == u32::MAX {
            break;
        }
        assert_eq!(
            data.len(),
            4.max(1 + (n as usize % 90)),
            "message {n} intact"
        );
        assert!(seen.insert(n), "{n} delivered twice");
    }
    if disable_datagrams {
        // The fallback stream is reliable and ordered before the marker.
        assert_eq!(seen.len(), COUNT as usize);
    }
    client.disconnect(0).await;
    server.shutdown().await;
}

#[tokio::test]
async fn send_many_packs_datagrams_and_every_message_arrives_whole() {
    packed(false).await;
}

#[tokio::test]
async fn send_many_packs_fallback_frames_without_datagrams() {
    packed(true).await;
}

/// A peer without datagram support (this client does not offer DATAGRAM frames, so quinn on
/// the server reports no datagram size): the server's unreliable and sequenced messages fall
/// back to its fallback stream, and every one arrives, in order.
#[tokio::test]
async fn a_server_falls_back_to_a_stream_for_a_client_without_datagrams() {
    let mut server = server(Transport::Quic).await;
    let mut config = client_config(Transport::Quic);
    config.quic.disable_datagrams = true;
    let (mut client, id) = connect(&mut server, config).await;
    const COUNT: u32 = 300;
    for i in 0..COUNT {
        let channel = ChannelId((i % 2) as u8);
        server.send(id, channel, numbered(i, 64)).expect("queue");
    }
    let mut next = [0u32, 1];
    while next[0] < COUNT || next[1] < COUNT {
        let (channel, data) = client_message(&mut client).await;
        let lane = usize::from(channel.0);
        assert!(lane < 2, "unexpected channel {channel:?}");
        assert_eq!(number(&data), next[lane], "stream order on channel {lane}");
        next[lane] += 2;
    }
    client.disconnect(0).await;
    server.shutdown().await;
}
