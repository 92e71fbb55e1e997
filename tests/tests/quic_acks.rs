//! Over QUIC, reliable messages are acknowledged as natively: the receiver reports how many it
//! received per channel (an acks frame on the fallback stream), and the sender's
//! `messages_acked` reaches `messages_sent`, both ways.

mod quic_common;

use quic_common::*;
use tickwire::{ChannelId, ConnectionStats, Transport};
use tokio::time::Instant;

/// Yields until `acked(stats)` holds, for at most [`LIMIT`].
async fn until_acked(what: &str, mut stats: impl FnMut() -> Option<ConnectionStats>, want: u64) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let acked = stats().map(|s| [2, 3].map(|c| s.send_channels[c].messages_acked));
        if acked == Some([want, want]) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: acked {acked:?} of {want}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn reliable_messages_are_counted_acked_over_quic() {
    let mut server = server(Transport::Quic).await;
    let (mut client, id) = connect(&mut server, client_config(Transport::Quic)).await;
    const COUNT: u32 = 500;
    for i in 0..COUNT {
        for channel in [ChannelId(2), ChannelId(3)] {
            client.send(channel, numbered(i, 300)).expect("queue");
            server.send(id, channel, numbered(i, 300)).expect("queue");
        }
    }
    let sent = client.stats().expect("stats").send_channels[2].messages_sent;
    assert_eq!(sent, u64::from(COUNT));
    // Acks leave when messages are received, whether or not the application has read them.
    until_acked("client", || client.stats(), u64::from(COUNT)).await;
    until_acked("server", || server.stats(id), u64::from(COUNT)).await;
    for _ in 0..2 * COUNT {
        server_message(&mut server).await;
        client_message(&mut client).await;
    }
    client.disconnect(0).await;
    server.shutdown().await;
}
