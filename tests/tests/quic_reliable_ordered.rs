//! Over QUIC, a reliable-ordered channel delivers every message once, in order, both ways, and
//! the transport in use is reported on both sides.

mod quic_common;

use quic_common::*;
use tickwire::{ChannelId, Transport};

#[tokio::test]
async fn reliable_ordered_messages_arrive_once_in_order_over_quic() {
    let mut server = server(Transport::Quic).await;
    let (mut client, id) = connect(&mut server, client_config(Transport::Quic)).await;
    assert_eq!(client.transport(), Transport::Quic);
    assert_eq!(server.transport_of(id), Some(Transport::Quic));

    const COUNT: u32 = 3_000;
    for i in 0..COUNT {
        client
            .send_wait(ChannelId(2), numbered(i, 700))
            .await
            .expect("queue");
    }
    for expected in 0..COUNT {
        let (from, channel, data) = server_message(&mut server).await;
        assert_eq!((from, channel), (id, ChannelId(2)));
        assert_eq!(number(&data), expected, "in order, no gap, no duplicate");
        assert_eq!(data.len(), 700);
    }
    for i in 0..100 {
        server
            .send(id, ChannelId(2), numbered(i, 64))
            .expect("queue");
    }
    for expected in 0..100 {
        let (channel, data) = client_message(&mut client).await;
        assert_eq!((channel, number(&data)), (ChannelId(2), expected));
    }
    let stats = server.stats(id).expect("stats of a live connection");
    assert_eq!(stats.recv_channels[2].messages_delivered, u64::from(COUNT));
    client.disconnect(7).await;
    server.shutdown().await;
}
