//! The RTT estimate follows a sudden rise of the path's latency (a route change, or a
//! simulated bad network switched on mid-connection): packets sent just before the rise are
//! declared lost on the old, short RTT, and their late acknowledgements must still give RTT
//! samples, or every later packet is declared lost too and the estimate never recovers.

mod support;

use std::time::Duration;

use bytes::Bytes;
use support::{client_addr, connected_pair, server_addr};
use tickwire::sim::LinkConfig;
use tickwire::ChannelId;

/// One message every 16 ms (a 60 Hz game) from each side for `duration`.
fn play(pair: &mut support::Pair, duration: Duration) {
    let ticks = (duration.as_millis() / 16) as usize;
    for _ in 0..ticks {
        let to_server = pair.to_server;
        let to_client = pair.to_client;
        let _ = pair.sim.endpoint_mut(pair.client).send(
            to_server,
            ChannelId(0),
            Bytes::from_static(&[1; 16]),
        );
        let _ = pair.sim.endpoint_mut(pair.server).send(
            to_client,
            ChannelId(0),
            Bytes::from_static(&[2; 64]),
        );
        pair.sim.run_for(Duration::from_millis(16)).unwrap();
        while pair.sim.poll_event(pair.client).is_some() {}
        while pair.sim.poll_event(pair.server).is_some() {}
    }
}

#[test]
fn rtt_follows_a_sudden_latency_rise() {
    let mut pair = connected_pair(LinkConfig::default(), 3, |_| {});
    play(&mut pair, Duration::from_secs(1));
    let before = pair
        .sim
        .endpoint(pair.client)
        .connection_stats(pair.to_server)
        .unwrap();
    assert!(before.rtt < Duration::from_millis(5), "{:?}", before.rtt);

    let slow = LinkConfig {
        latency: Duration::from_millis(100),
        ..LinkConfig::default()
    };
    for (from, to) in [
        (client_addr(), server_addr()),
        (server_addr(), client_addr()),
    ] {
        pair.sim
            .network_mut()
            .set_link(from, to, slow.clone())
            .unwrap();
    }
    play(&mut pair, Duration::from_secs(3));
    let after = pair
        .sim
        .endpoint(pair.client)
        .connection_stats(pair.to_server)
        .unwrap();
    assert!(
        after.rtt > Duration::from_millis(150) && after.rtt < Duration::from_millis(300),
        "RTT {:?} after the rise to 200 ms (loss estimate {:.2})",
        after.rtt,
        after.loss_rate
    );
    assert!(
        after.loss_rate < 0.2,
        "loss estimate {:.2}",
        after.loss_rate
    );
}
