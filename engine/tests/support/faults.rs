//! Shared driver of the `faults_*` tests: a reliable-ordered stream from client to server over a
//! connected pair, with the link changed mid-run.

use std::time::Duration;

use tickwire::sim::LinkConfig;
use tickwire::{ChannelId, DisconnectReason, Event};

use super::{client_addr, server_addr, stamped, unstamp, Pair};

/// The channel the streams use.
pub const RELIABLE_ORDERED: ChannelId = ChannelId(2);

/// Sets `link` in both directions between the client and the server.
pub fn set_both(pair: &mut Pair, link: &LinkConfig) {
    for (from, to) in [
        (client_addr(), server_addr()),
        (server_addr(), client_addr()),
    ] {
        pair.sim
            .network_mut()
            .set_link(from, to, link.clone())
            .unwrap();
    }
}

/// A reliable-ordered stream from the client to the server that lasts over several phases:
/// messages are numbered from 0 across every [`run`](Self::run).
#[derive(Default)]
pub struct Stream {
    next: u32,
    /// The counters in the order the server delivered them.
    pub received: Vec<u32>,
}

impl Stream {
    /// Offers messages up to `total` (stamped, 4 to 203 bytes) on [`RELIABLE_ORDERED`], two
    /// every 10 ms of virtual time (so that they travel in many datagrams), and runs until
    /// `total` have arrived or `limit` of virtual time passes. Panics on a disconnect.
    pub fn run(&mut self, pair: &mut Pair, total: u32, limit: Duration, seed: u64) {
        let (client, server, conn) = (pair.client, pair.server, pair.to_server);
        for _ in 0..limit.as_millis() / TICK.as_millis() {
            for _ in 0..2 {
                if self.next < total {
                    let len = 4 + (self.next as usize * 7919) % 200;
                    let sent = pair.sim.endpoint_mut(client).send(
                        conn,
                        RELIABLE_ORDERED,
                        stamped(self.next, len),
                    );
                    if sent.is_ok() {
                        self.next += 1;
                    }
                }
            }
            pair.sim.run_for(TICK).unwrap();
            for node in [client, server] {
                while let Some(event) = pair.sim.poll_event(node) {
                    match event {
                        Event::Message { channel, data, .. } => {
                            assert_eq!(channel, RELIABLE_ORDERED, "seed {seed}");
                            self.received.push(unstamp(&data));
                        }
                        Event::Disconnected { reason, .. } => {
                            panic!("seed {seed}: node {node:?} disconnected: {reason}")
                        }
                        _ => {}
                    }
                }
            }
            if self.received.len() as u32 >= total {
                break;
            }
        }
    }
}

/// A one-phase [`Stream`] of `count` messages; returns the counters as delivered.
pub fn stream(pair: &mut Pair, count: u32, limit: Duration, seed: u64) -> Vec<u32> {
    let mut stream = Stream::default();
    stream.run(pair, count, limit, seed);
    stream.received
}

/// The pacing step of [`stream`].
const TICK: Duration = Duration::from_millis(10);

/// Asserts that `received` is exactly `0..count`: every message once, in order.
pub fn assert_exactly_once_in_order(received: &[u32], count: u32, seed: u64) {
    assert_eq!(
        received.len() as u32,
        count,
        "seed {seed}: {} of {count} delivered",
        received.len()
    );
    for (expected, got) in received.iter().enumerate() {
        assert_eq!(
            *got, expected as u32,
            "seed {seed}: out of order or duplicated"
        );
    }
}

/// The link statistics of both directions, summed: (sent, dropped, duplicated, reordered).
pub fn link_totals(pair: &mut Pair) -> (u64, u64, u64, u64) {
    let mut totals = (0, 0, 0, 0);
    for (from, to) in [
        (client_addr(), server_addr()),
        (server_addr(), client_addr()),
    ] {
        if let Some(stats) = pair.sim.network_mut().stats(from, to) {
            totals.0 += stats.sent;
            totals.1 += stats.dropped_random + stats.dropped_burst + stats.dropped_queue;
            totals.2 += stats.duplicated;
            totals.3 += stats.reordered;
        }
    }
    totals
}

/// Runs the pair in 10 ms steps, for at most 10 simulated seconds, until the client's session
/// ends; when `busy`, the client sends one stamped reliable-ordered message per step, numbered
/// from `counter`. Every server event goes to `on_server_event`. Returns how long after the
/// start the session ended, and why, or `None` if it did not.
pub fn until_client_disconnects(
    pair: &mut Pair,
    busy: bool,
    mut counter: u32,
    mut on_server_event: impl FnMut(Event),
) -> Option<(Duration, DisconnectReason)> {
    let (client, server) = (pair.client, pair.server);
    let start = pair.sim.elapsed();
    for _ in 0..1000 {
        if busy {
            let _ = pair.sim.endpoint_mut(client).send(
                pair.to_server,
                RELIABLE_ORDERED,
                stamped(counter, 40),
            );
            counter += 1;
        }
        pair.sim.run_for(Duration::from_millis(10)).unwrap();
        let mut ended = None;
        while let Some(event) = pair.sim.poll_event(client) {
            if let Event::Disconnected { reason, .. } = event {
                ended = Some((pair.sim.elapsed() - start, reason));
            }
        }
        while let Some(event) = pair.sim.poll_event(server) {
            on_server_event(event);
        }
        if ended.is_some() {
            return ended;
        }
    }
    None
}
