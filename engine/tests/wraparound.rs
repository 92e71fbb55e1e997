//! A long connection whose 16-bit packet numbers, reliable ids and sequenced ids all wrap
//! several times: delivery guarantees, acknowledgements and the RTT estimate keep working.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use tickwire::sim::{LinkConfig, NodeId, Simulation};
use tickwire::{ChannelId, ConnectionId, ConnectionStats};

use support::{connected_pair, live_events, stamped, unstamp};

const UNRELIABLE: ChannelId = ChannelId(0);
const SEQUENCED: ChannelId = ChannelId(1);
const RELIABLE_ORDERED: ChannelId = ChannelId(2);

/// One-way latency; the true RTT is twice this (plus at most a millisecond of ack delay).
const LATENCY: Duration = Duration::from_millis(20);
const LOSS: f64 = 0.01;
/// 250 s of one message per channel per millisecond (reliable: every 2 ms), each way.
const TICKS: u32 = 250_000;
/// Acknowledgement progress is checked every this many ticks.
const CHECK_EVERY: u32 = 10_000;

/// What one side received from the other.
#[derive(Default)]
struct Receiver {
    unreliable: BTreeSet<u32>,
    newest_sequenced: Option<u32>,
    sequenced: u32,
    reliable_next: u32,
}

impl Receiver {
    fn collect(&mut self, sim: &mut Simulation, node: NodeId) {
        for event in live_events(sim, node) {
            let tickwire::Event::Message { channel, data, .. } = event else {
                continue;
            };
            let counter = unstamp(&data);
            match channel {
                UNRELIABLE => assert!(
                    self.unreliable.insert(counter),
                    "unreliable message {counter} delivered twice"
                ),
                SEQUENCED => {
                    if let Some(newest) = self.newest_sequenced {
                        assert!(counter > newest, "sequenced {counter} after {newest}");
                    }
                    self.newest_sequenced = Some(counter);
                    self.sequenced += 1;
                }
                RELIABLE_ORDERED => {
                    assert_eq!(counter, self.reliable_next, "reliable out of order");
                    self.reliable_next += 1;
                }
                other => panic!("message on {other:?}"),
            }
        }
    }
}

fn stats(sim: &Simulation, node: NodeId, connection: ConnectionId) -> ConnectionStats {
    sim.endpoint(node).connection_stats(connection).unwrap()
}

#[test]
fn a_quarter_million_packets_each_way_wrap_every_counter_safely() {
    let link = LinkConfig {
        latency: LATENCY,
        loss: LOSS,
        duplicate: 0.01,
        // Held back by 20 ms: overtaken by twenty later packets.
        reorder: 0.01,
        ..LinkConfig::default()
    };
    let mut pair = connected_pair(link, 42, |_| {});
    let sides = [
        (pair.client, pair.to_server, pair.server, pair.to_client),
        (pair.server, pair.to_client, pair.client, pair.to_server),
    ];
    let mut at_server = Receiver::default();
    let mut at_client = Receiver::default();
    let mut acked_before = [0u64; 2];

    for tick in 0..TICKS {
        for &(from, connection, _, _) in &sides {
            let endpoint = pair.sim.endpoint_mut(from);
            endpoint
                .send(connection, UNRELIABLE, stamped(tick, 12))
                .unwrap();
            endpoint
                .send(connection, SEQUENCED, stamped(tick, 12))
                .unwrap();
            if tick % 2 == 0 {
                endpoint
                    .send(connection, RELIABLE_ORDERED, stamped(tick / 2, 12))
                    .unwrap();
            }
        }
        pair.sim.run_for(Duration::from_millis(1)).unwrap();
        at_server.collect(&mut pair.sim, pair.server);
        at_client.collect(&mut pair.sim, pair.client);

        if (tick + 1) % CHECK_EVERY == 0 {
            // Acknowledgements keep flowing across every wrap of the packet number.
            for (side, &(from, connection, _, _)) in sides.iter().enumerate() {
                let acked = stats(&pair.sim, from, connection).packets_acked;
                let progress = acked - acked_before[side];
                assert!(
                    progress > u64::from(CHECK_EVERY) * 9 / 10,
                    "tick {tick}: only {progress} packets acknowledged in {CHECK_EVERY} ms"
                );
                acked_before[side] = acked;
            }
        }
    }
    pair.sim.run_for(Duration::from_secs(2)).unwrap();
    at_server.collect(&mut pair.sim, pair.server);
    at_client.collect(&mut pair.sim, pair.client);

    for (receiver, name) in [(&at_server, "server"), (&at_client, "client")] {
        assert_eq!(
            receiver.reliable_next,
            TICKS / 2,
            "{name}: reliable messages missing"
        );
        let share = receiver.unreliable.len() as f64 / f64::from(TICKS);
        assert!(
            share > 1.0 - 3.0 * LOSS,
            "{name}: {:.2} % unreliable delivered",
            share * 100.0
        );
        assert!(receiver.sequenced > TICKS * 9 / 10, "{name}: sequenced");
    }
    for &(from, connection, to, back) in &sides {
        let sent = stats(&pair.sim, from, connection);
        let received = stats(&pair.sim, to, back);
        println!(
            "packets sent {}, acked {}, lost {} (spurious {}); rtt {:?} (min {:?}); \
             peer dropped {} duplicates, {} too old",
            sent.packets_sent,
            sent.packets_acked,
            sent.packets_lost,
            sent.spurious_losses,
            sent.rtt,
            sent.min_rtt,
            received.dropped.duplicate,
            received.dropped.too_old,
        );
        assert!(sent.packets_sent > 200_000, "{} packets", sent.packets_sent);
        // Every packet is acknowledged or declared lost. Acknowledged ones include those first
        // declared lost and acknowledged later (reordered); truly lost ones stay near the link's
        // loss; the few that are neither are ack-only packets, sent when a gap shows up.
        assert!(sent.packets_acked + sent.packets_lost <= sent.packets_sent);
        let acked_share =
            (sent.packets_acked + sent.spurious_losses) as f64 / sent.packets_sent as f64;
        assert!(
            acked_share > 1.0 - 6.0 * LOSS,
            "{:.2} % of packets acknowledged",
            acked_share * 100.0
        );
        let truly_lost = sent.packets_lost - sent.spurious_losses;
        assert!(
            (truly_lost as f64) < sent.packets_sent as f64 * 2.0 * LOSS,
            "{truly_lost} packets lost"
        );
        let true_rtt = LATENCY * 2;
        assert!(
            sent.rtt > true_rtt - Duration::from_millis(5)
                && sent.rtt < true_rtt + Duration::from_millis(10),
            "rtt estimate {:?}, true rtt about {true_rtt:?}",
            sent.rtt
        );
        assert!(
            received.dropped.duplicate > 0,
            "the link duplicated nothing"
        );
        assert_eq!(received.reassembly_bytes, 0);
        assert_eq!(pair.sim.endpoint(from).buffered_bytes(connection), Some(0));
    }
}
