//! Over QUIC, a sequenced channel (DATAGRAM frames) never delivers a message older than one
//! already delivered, and keeps delivering the newest.

mod quic_common;

use quic_common::*;
use tickwire::{ChannelId, Transport};

#[tokio::test]
async fn sequenced_messages_are_never_older_than_the_newest_delivered() {
    let mut server = server(Transport::Quic).await;
    let (client, _) = connect(&mut server, client_config(Transport::Quic)).await;
    const COUNT: u32 = 5_000;
    for i in 0..COUNT {
        // A full datagram buffer drops the oldest queued frames: allowed for this kind.
        let _ = client.send(ChannelId(1), numbered(i, 64));
    }
    // The last one, again on its own after the burst, so that something newest arrives.
    client
        .send(ChannelId(1), numbered(COUNT, 64))
        .expect("queue");
    let mut newest = None;
    loop {
        let (_, channel, data) = server_message(&mut server).await;
        assert_eq!(channel, ChannelId(1));
        let n = number(&data);
        assert!(
            newest.is_none_or(|newest| n > newest),
            "{n} after {newest:?}"
        );
        newest = Some(n);
        if n == COUNT {
            break;
        }
    }
    client.disconnect(0).await;
    server.shutdown().await;
}
