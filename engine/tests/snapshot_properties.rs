//! Property tests of world snapshots: random world edits, budgets, interest changes and random
//! loss, delay and reordering of snapshots and acknowledgements never make the client see a
//! delta whose baseline (or prediction view) it lacks, never make it diverge from what the
//! server recorded it holds, and once the world stops changing and the path clears, the client
//! holds the server's world exactly.
//!
//! The path is modelled directly (a queue of snapshots and acknowledgements, each dropped or
//! delayed at random), without the transport: thousands of snapshots per case in milliseconds.
//! Reordering is bounded by a quarter of `history`, the margin the server keeps for it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use tickwire::snapshot::{
    Baseline, BitReader, BitWriter, EntityId, EntityState, SnapshotClient, SnapshotConfig,
    SnapshotDecodeError, SnapshotServer,
};
use tickwire::ConnectionId;

/// An entity moving along one axis, coded as the error of a prediction when the baseline
/// comes with older states (exercising [`Baseline::previous`] and [`Baseline::older`]).
#[derive(Clone, Debug, PartialEq)]
struct Mover {
    x: i64,
    tag: u8,
}

impl Mover {
    fn predict(baseline: &Baseline<'_, Self>) -> i64 {
        let base = baseline.state.x;
        let ahead = baseline.ticks_ahead as i64;
        match (baseline.previous, baseline.older) {
            (Some((p, s1)), Some((o, s2))) => {
                // Velocity from the older pair as well, averaged: any deterministic rule will do.
                let v1 = (base - p.x) * ahead / s1 as i64;
                let v2 = (base - o.x) * ahead / s2 as i64;
                base + (v1 + v2) / 2
            }
            (Some((p, s1)), None) => base + (base - p.x) * ahead / s1 as i64,
            _ => base,
        }
    }
}

impl EntityState for Mover {
    fn write_full(&self, w: &mut BitWriter<'_>) {
        w.write_varint_signed(self.x);
        w.write_bits(u64::from(self.tag), 8);
    }

    fn read_full(r: &mut BitReader<'_>) -> Result<Self, SnapshotDecodeError> {
        Ok(Self {
            x: r.read_varint_signed()?,
            tag: r.read_bits(8)? as u8,
        })
    }

    fn write_delta(&self, base: &Self, w: &mut BitWriter<'_>) {
        w.write_varint_signed(self.x.wrapping_sub(base.x));
        w.write_bits(u64::from(self.tag), 8);
    }

    fn read_delta(base: &Self, r: &mut BitReader<'_>) -> Result<Self, SnapshotDecodeError> {
        Ok(Self {
            x: base.x.wrapping_add(r.read_varint_signed()?),
            tag: r.read_bits(8)? as u8,
        })
    }

    fn write_delta_predicted(&self, baseline: &Baseline<'_, Self>, w: &mut BitWriter<'_>) {
        w.write_exp_golomb_signed(self.x.wrapping_sub(Self::predict(baseline)), 2);
        w.write_bits(u64::from(self.tag), 8);
    }

    fn read_delta_predicted(
        baseline: &Baseline<'_, Self>,
        r: &mut BitReader<'_>,
    ) -> Result<Self, SnapshotDecodeError> {
        Ok(Self {
            x: Self::predict(baseline).wrapping_add(r.read_exp_golomb_signed(2)?),
            tag: r.read_bits(8)? as u8,
        })
    }
}

/// One tick's world edit.
#[derive(Clone, Debug)]
enum Edit {
    /// Move entity (id mod 64) by a step, creating it if absent.
    Move(u32, i64),
    /// Remove entity (id mod 64).
    Remove(u32),
    /// Change its tag.
    Tag(u32, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        6 => (0u32..64, -40i64..40).prop_map(|(id, step)| Edit::Move(id, step)),
        1 => (0u32..64).prop_map(Edit::Remove),
        1 => (0u32..64, any::<u8>()).prop_map(|(id, tag)| Edit::Tag(id, tag)),
    ]
}

/// The path's fate for one message: lost, or delivered after this many ticks.
fn fate() -> impl Strategy<Value = Option<u8>> {
    prop_oneof![1 => Just(None), 4 => (0u8..MAX_DELAY_TICKS).prop_map(Some)]
}

const HISTORY: usize = 64;
/// Reordering stays within the server's margin: a quarter of `history`.
const MAX_DELAY_TICKS: u8 = (HISTORY / 4) as u8;

#[derive(Debug, Clone)]
struct Case {
    ticks: Vec<Vec<Edit>>,
    snapshot_fates: Vec<Option<u8>>,
    ack_fates: Vec<Option<u8>>,
    max_snapshot_bytes: usize,
    interest_from: Option<u32>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(prop::collection::vec(edit(), 0..6), 50..250),
        prop::collection::vec(fate(), 256),
        prop::collection::vec(fate(), 256),
        prop_oneof![Just(3000usize), 40usize..400],
        prop::option::of(0u32..64),
    )
        .prop_map(
            |(ticks, snapshot_fates, ack_fates, max_snapshot_bytes, interest_from)| Case {
                ticks,
                snapshot_fates,
                ack_fates,
                max_snapshot_bytes,
                interest_from,
            },
        )
}

fn run(case: &Case) -> Result<(), TestCaseError> {
    let config = SnapshotConfig {
        history: HISTORY,
        max_snapshot_bytes: case.max_snapshot_bytes,
        ..SnapshotConfig::default()
    };
    let mut server = SnapshotServer::<Mover>::new(config.clone());
    let mut client = SnapshotClient::<Mover>::new(config);
    let peer = ConnectionId(1);
    server.add_client(peer);
    if let Some(from) = case.interest_from {
        // Entities at or above `from` are out of scope while their tag is odd: they leave and
        // re-enter as tags change.
        server.set_interest(
            peer,
            Some(Box::new(move |id, m: &Mover| id.0 < from || m.tag % 2 == 0)),
        );
    }
    let start = Instant::now();
    // (due tick, bytes) and (due tick, seq).
    let mut downlink: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut uplink: Vec<(u64, u64)> = Vec::new();
    let settle = 200u64;
    let total = case.ticks.len() as u64 + settle;
    for (fate_index, tick) in (1..=total).enumerate() {
        let now = start + Duration::from_millis(16) * tick as u32;
        let editing = tick as usize <= case.ticks.len();
        if editing {
            for e in &case.ticks[tick as usize - 1] {
                match *e {
                    Edit::Move(id, step) => {
                        let mut m = server
                            .get(EntityId(id))
                            .cloned()
                            .unwrap_or(Mover { x: 0, tag: 0 });
                        m.x += step;
                        server.set(EntityId(id), m);
                    }
                    Edit::Remove(id) => {
                        server.remove(EntityId(id));
                    }
                    Edit::Tag(id, tag) => {
                        if let Some(mut m) = server.get(EntityId(id)).cloned() {
                            m.tag = tag;
                            server.set(EntityId(id), m);
                        }
                    }
                }
            }
        }
        let mut bytes = Vec::new();
        if let Some(info) = server.encode(peer, tick, now, &mut bytes) {
            // The last part of the run is a clean path, so that it must converge.
            let fate = if editing {
                case.snapshot_fates[fate_index % case.snapshot_fates.len()]
            } else {
                Some(0)
            };
            if let Some(delay) = fate {
                downlink.push((tick + u64::from(delay), bytes));
            }
            prop_assert!(info.bytes <= case.max_snapshot_bytes.max(64) + 16 || info.entries <= 1);
        }
        // Deliver what is due, in arrival order.
        downlink.sort_by_key(|(due, _)| *due);
        let due: Vec<Vec<u8>> = {
            let split = downlink.partition_point(|(d, _)| *d <= tick);
            downlink.drain(..split).map(|(_, b)| b).collect()
        };
        for bytes in due {
            let decoded = client.receive(&bytes);
            prop_assert!(
                decoded.is_ok(),
                "decode error {:?} at tick {tick}",
                decoded.err()
            );
            if let Ok(Some(decoded)) = decoded {
                let expected = server.sent_view(peer, decoded.seq);
                if let Some(expected) = expected {
                    let got: Vec<_> = decoded.view.iter().collect();
                    let want: Vec<_> = expected.iter().collect();
                    prop_assert_eq!(got, want, "view {} diverged", decoded.seq);
                }
                let fate = if editing {
                    case.ack_fates[fate_index % case.ack_fates.len()]
                } else {
                    Some(0)
                };
                if let Some(delay) = fate {
                    uplink.push((tick + u64::from(delay), decoded.seq));
                }
            }
        }
        uplink.sort_by_key(|(due, _)| *due);
        let split = uplink.partition_point(|(d, _)| *d <= tick);
        for (_, seq) in uplink.drain(..split) {
            server.handle_ack(peer, seq);
        }
    }
    // Converged: the client's view is the server's world as the client may see it.
    let view = client.view();
    prop_assert!(view.is_some() || server.is_empty());
    let got: BTreeMap<u32, Mover> = view
        .map(|v| v.iter().map(|(id, m)| (id.0, m.clone())).collect())
        .unwrap_or_default();
    let want: BTreeMap<u32, Mover> = server
        .iter()
        .filter(|(id, m)| {
            case.interest_from
                .is_none_or(|from| id.0 < from || m.tag % 2 == 0)
        })
        .map(|(id, m)| (id.0, m.clone()))
        .collect();
    prop_assert_eq!(got, want);
    prop_assert_eq!(client.errors(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_edits_and_loss_never_lack_a_baseline_or_diverge(case in case()) {
        run(&case)?;
    }
}

/// A client holding a few baselines (with prediction views) and the next snapshots the server
/// would send it.
fn client_and_next_snapshots() -> (SnapshotClient<Mover>, Vec<Vec<u8>>) {
    let config = SnapshotConfig::default();
    let mut server = SnapshotServer::<Mover>::new(config.clone());
    let mut client = SnapshotClient::<Mover>::new(config);
    let peer = ConnectionId(1);
    server.add_client(peer);
    let start = Instant::now();
    let mut next = Vec::new();
    for tick in 1..=40u64 {
        for id in 0..20u32 {
            if (id as u64 + tick) % 3 != 0 {
                server.set(
                    EntityId(id * 7),
                    Mover {
                        x: (tick * u64::from(id)) as i64,
                        tag: id as u8,
                    },
                );
            }
        }
        if tick % 10 == 0 {
            server.remove(EntityId(tick as u32 / 10 * 7));
        }
        let mut bytes = Vec::new();
        let now = start + Duration::from_millis(16) * tick as u32;
        let info = server.encode(peer, tick, now, &mut bytes).unwrap();
        if tick <= 36 {
            client.receive(&bytes).unwrap();
            server.handle_ack(peer, info.seq);
        } else {
            next.push(bytes);
        }
    }
    (client, next)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Valid snapshots with bits flipped, cut short or extended decode to an error or to a
    /// well-formed view, never a panic; a refused one leaves the client as it was.
    #[test]
    fn hostile_snapshot_bytes_are_errors_never_panics(
        which in 0usize..4,
        flips in prop::collection::vec(any::<u32>(), 0..6),
        cut in any::<u16>(),
        tail in prop::collection::vec(any::<u8>(), 0..4),
    ) {
        let (mut client, next) = client_and_next_snapshots();
        let mut bytes = next[which].clone();
        for flip in flips {
            let bit = flip as usize % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
        }
        bytes.truncate(usize::from(cut) % (bytes.len() + 1) + 1);
        bytes.extend(tail);
        let before = client.view().unwrap();
        match client.receive(&bytes) {
            Err(_) => {
                let after = client.view().unwrap();
                prop_assert!(std::sync::Arc::ptr_eq(&before, &after));
                prop_assert_eq!(client.errors(), 1);
            }
            Ok(Some(decoded)) => {
                let ids: Vec<EntityId> = decoded.view.iter().map(|(id, _)| id).collect();
                prop_assert!(ids.windows(2).all(|p| p[0] < p[1]));
            }
            Ok(None) => {}
        }
    }
}

/// Under a budget too small for every change, an entity carried since the baseline is carried
/// again until the snapshot that first carried it is acknowledged. When it is then left out,
/// the view falls back to the baseline, at most a round trip older than what was shown (every
/// entity here only moves forward, so a step back is visible); and every entity is refreshed
/// now and then.
#[test]
fn a_budget_steps_an_entity_back_by_at_most_a_round_trip() {
    let config = SnapshotConfig {
        max_snapshot_bytes: 120,
        ..SnapshotConfig::default()
    };
    let mut server = SnapshotServer::<Mover>::new(config.clone());
    let mut client = SnapshotClient::<Mover>::new(config);
    let peer = ConnectionId(1);
    server.add_client(peer);
    let start = Instant::now();
    let mut acks: Vec<(u64, u64)> = Vec::new();
    // Per entity: the tick of the state shown last, and when it last moved forward.
    let mut shown: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    let round_trip = 6u64;
    for tick in 1..=600u64 {
        for id in 0..60u32 {
            server.set(
                EntityId(id),
                Mover {
                    x: (tick * u64::from(id + 1)) as i64,
                    tag: 0,
                },
            );
        }
        let mut bytes = Vec::new();
        let now = start + Duration::from_millis(16) * tick as u32;
        server.encode(peer, tick, now, &mut bytes).unwrap();
        let decoded = client.receive(&bytes).unwrap().unwrap();
        for (id, m) in decoded.view.iter() {
            let state_tick = m.x as u64 / u64::from(id.0 + 1);
            let (last, since) = shown.entry(id.0).or_insert((state_tick, tick));
            // After the first round trips (full snapshots until the first acknowledgement).
            if tick > 4 * round_trip {
                assert!(
                    state_tick + round_trip + 1 >= *last,
                    "entity {} stepped back from tick {last} to {state_tick} at tick {tick}",
                    id.0
                );
            }
            if state_tick > *last {
                *since = tick;
            }
            *last = state_tick;
        }
        // Acknowledged a round trip later.
        acks.push((tick + round_trip, decoded.seq));
        acks.retain(|&(due, seq)| {
            if due <= tick {
                server.handle_ack(peer, seq);
            }
            due > tick
        });
    }
    assert_eq!(shown.len(), 60);
    for (id, (_, since)) in &shown {
        assert!(
            600 - since < 120,
            "entity {id} last refreshed at tick {since}"
        );
    }
}
