//! Over QUIC, an unreliable channel delivers messages at most once: small ones as DATAGRAM
//! frames, ones larger than a datagram on the fallback stream, and everything on the fallback
//! stream when datagrams are off.

mod quic_common;

use std::collections::HashSet;

use quic_common::*;
use tickwire::{ChannelId, Transport};

async fn at_most_once(disable_datagrams: bool) {
    let mut server = server(Transport::Quic).await;
    let mut config = client_config(Transport::Quic);
    config.quic.disable_datagrams = disable_datagrams;
    let (client, _) = connect(&mut server, config).await;
    // 200 small messages, then one of 20 kB (above any datagram size) that must still arrive
    // (the fallback stream is reliable), as the marker that the burst is over.
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
