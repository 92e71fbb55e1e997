//! Workload S2, sparse IoT state: 10,000 entities of 6 small fields, 10 Hz snapshots, 1 % of
//! entities changing per tick, on profile D; then nothing changing.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tickwire::sim::LinkConfig;
use tickwire::snapshot::{
    BitReader, BitWriter, BoundedFloat, EntityId, EntityState, SnapshotClient, SnapshotConfig,
    SnapshotDecodeError, SnapshotServer,
};
use tickwire::{ConnectionId, Event};

use crate::net::{connection_of, Net, SNAPSHOTS};
use crate::report::{percentile, Summary};

/// Entities in the world.
pub(crate) const SENSORS: u32 = 10_000;
/// Snapshot (and tick) rate.
const TICK_HZ: f64 = 10.0;
/// Entities changed per tick: 1 %.
const CHANGES_PER_TICK: u32 = SENSORS / 100;

/// One sensor: two enums, a counter, two small ints and a float, quantised.
///
/// Full: 3 + 2 bits of enums, the counter as a varint, 10 + 7 bits, the reading at 0.01 in
/// [−40, 85] (14 bits). Delta: one changed bit per field; the counter and reading as zig-zag
/// varint differences, the others at full width.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sensor {
    kind: u8,
    mode: u8,
    counter: u32,
    level: u16,
    battery: u8,
    reading: u32,
}

impl EntityState for Sensor {
    fn write_full(&self, w: &mut BitWriter<'_>) {
        w.write_bits(u64::from(self.kind), 3);
        w.write_bits(u64::from(self.mode), 2);
        w.write_varint(u64::from(self.counter));
        w.write_bits(u64::from(self.level), 10);
        w.write_bits(u64::from(self.battery), 7);
        w.write_bits(u64::from(self.reading), READING_BITS);
    }

    fn read_full(r: &mut BitReader<'_>) -> Result<Self, SnapshotDecodeError> {
        Ok(Sensor {
            kind: r.read_bits(3)? as u8,
            mode: r.read_bits(2)? as u8,
            counter: u32::try_from(r.read_varint()?).map_err(|_| SnapshotDecodeError::Malformed)?,
            level: r.read_bits(10)? as u16,
            battery: r.read_bits(7)? as u8,
            reading: u32::try_from(r.read_bits(READING_BITS)?)
                .ok()
                .filter(|v| *v <= READING_MAX)
                .ok_or(SnapshotDecodeError::Malformed)?,
        })
    }

    fn write_delta(&self, base: &Self, w: &mut BitWriter<'_>) {
        let small = [
            (self.kind != base.kind, u64::from(self.kind), 3),
            (self.mode != base.mode, u64::from(self.mode), 2),
        ];
        for (changed, value, bits) in small {
            w.write_bool(changed);
            if changed {
                w.write_bits(value, bits);
            }
        }
        w.write_bool(self.counter != base.counter);
        if self.counter != base.counter {
            w.write_varint_signed(i64::from(self.counter) - i64::from(base.counter));
        }
        for (changed, value, bits) in [
            (self.level != base.level, u64::from(self.level), 10),
            (self.battery != base.battery, u64::from(self.battery), 7),
        ] {
            w.write_bool(changed);
            if changed {
                w.write_bits(value, bits);
            }
        }
        w.write_bool(self.reading != base.reading);
        if self.reading != base.reading {
            w.write_varint_signed(i64::from(self.reading) - i64::from(base.reading));
        }
    }

    fn read_delta(base: &Self, r: &mut BitReader<'_>) -> Result<Self, SnapshotDecodeError> {
        let mut s = base.clone();
        if r.read_bool()? {
            s.kind = r.read_bits(3)? as u8;
        }
        if r.read_bool()? {
            s.mode = r.read_bits(2)? as u8;
        }
        if r.read_bool()? {
            let value = i64::from(base.counter) + r.read_varint_signed()?;
            s.counter = u32::try_from(value).map_err(|_| SnapshotDecodeError::Malformed)?;
        }
        if r.read_bool()? {
            s.level = r.read_bits(10)? as u16;
        }
        if r.read_bool()? {
            s.battery = r.read_bits(7)? as u8;
        }
        if r.read_bool()? {
            let value = i64::from(base.reading) + r.read_varint_signed()?;
            s.reading = u32::try_from(value)
                .ok()
                .filter(|v| *v <= READING_MAX)
                .ok_or(SnapshotDecodeError::Malformed)?;
        }
        Ok(s)
    }
}

/// S2 on `link`: `changing` of 1 % change per tick (after the initial state arrives), then
/// `quiet` with no change at all (measured after `settle`).
pub(crate) fn run(
    link: &LinkConfig,
    skip_unchanged: bool,
    changing: Duration,
    quiet: Duration,
    seed: u64,
) -> Summary {
    let reading = BoundedFloat::new(-40.0, 85.0, 0.01).expect("valid bounds");
    let mut rng = StdRng::seed_from_u64(seed);
    let config = SnapshotConfig {
        skip_unchanged,
        ..SnapshotConfig::default()
    };
    let mut server = SnapshotServer::<Sensor>::new(config.clone());
    let mut client = SnapshotClient::<Sensor>::new(config);
    for id in 0..SENSORS {
        server.set(
            EntityId(id),
            Sensor {
                kind: rng.random_range(0..8),
                mode: rng.random_range(0..4),
                counter: rng.random_range(0..100_000),
                level: rng.random_range(0..1024),
                battery: rng.random_range(20..=100),
                reading: reading.quantize(rng.random_range(10.0..30.0)),
            },
        );
    }
    let mut net = Net::new(link.clone(), 1, seed);
    let mut connection: Option<ConnectionId> = None;
    let tick_len = Duration::from_secs_f64(1.0 / TICK_HZ);
    let start = net.now();
    let settle = Duration::from_secs(3);
    // Phase boundaries in ticks: sync (until the client holds everything, bounded), changing,
    // quiet (settle, then measure).
    let max_sync_ticks = (30.0 * TICK_HZ) as u64;
    let changing_ticks = (changing.as_secs_f64() * TICK_HZ) as u64;
    let settle_ticks = (settle.as_secs_f64() * TICK_HZ) as u64;
    let quiet_ticks = (quiet.as_secs_f64() * TICK_HZ) as u64;
    let mut phase_start: Option<u64> = None;
    let mut changing_range = (0, 0);
    let mut quiet_range = (0, 0);
    let mut encode_us = Vec::new();
    let mut snapshot_bytes = [0u64; 2];
    let mut decode_errors = 0u64;

    let mut tick = 0u64;
    loop {
        tick += 1;
        let now = start + tick_len.mul_f64(tick as f64);
        net.advance_to(now);
        while let Some((_, event)) = net.poll_event(0) {
            if let Some((c, _)) = connection_of(&event) {
                server.add_client(c);
                connection = Some(c);
                continue;
            }
            if let Event::Delivery {
                connection,
                message,
                outcome,
                ..
            } = event
            {
                server.handle_delivery(connection, message, outcome);
            }
        }
        while let Some((_, event)) = net.poll_event(1) {
            if let Event::Message { data, .. } = event {
                if client.receive(&data).is_err() {
                    decode_errors += 1;
                }
            }
        }

        // Phases.
        let synced = client.view().is_some_and(|v| v.len() == SENSORS as usize);
        let begin = match phase_start {
            None if synced || tick > max_sync_ticks => {
                phase_start = Some(tick);
                net.counting = true;
                changing_range.0 = net.downlinks[0].sizes.len();
                tick
            }
            None => {
                step_sends(&mut server, connection, tick, now, &mut net, None);
                continue;
            }
            Some(begin) => begin,
        };
        let elapsed = tick - begin;
        let phase = if elapsed < changing_ticks {
            0
        } else if elapsed < changing_ticks + settle_ticks {
            if elapsed == changing_ticks {
                changing_range.1 = net.downlinks[0].sizes.len();
            }
            2
        } else if elapsed < changing_ticks + settle_ticks + quiet_ticks {
            if elapsed == changing_ticks + settle_ticks {
                quiet_range.0 = net.downlinks[0].sizes.len();
            }
            1
        } else {
            quiet_range.1 = net.downlinks[0].sizes.len();
            break;
        };
        if phase == 0 {
            for _ in 0..CHANGES_PER_TICK {
                let id = EntityId(rng.random_range(0..SENSORS));
                let Some(mut s) = server.get(id).cloned() else {
                    continue;
                };
                let step = rng.random_range(1..=50) as u32;
                s.reading = if rng.random_bool(0.5) {
                    s.reading.saturating_sub(step)
                } else {
                    (s.reading + step).min(reading.max_quantized())
                };
                if rng.random_bool(0.5) {
                    s.counter += 1;
                }
                if rng.random_bool(0.05) {
                    s.battery = s.battery.saturating_sub(1);
                }
                if rng.random_bool(0.05) {
                    s.mode = rng.random_range(0..4);
                }
                server.set(id, s);
            }
        }
        let measure = snapshot_bytes
            .get_mut(phase)
            .map(|bytes| (&mut encode_us, bytes));
        step_sends(&mut server, connection, tick, now, &mut net, measure);
    }

    let converged = client.view().is_some_and(|view| {
        view.len() == server.len() && view.iter().zip(server.iter()).all(|(a, b)| a == b)
    });
    let kbps = |range: (usize, usize), seconds: f64, headers: bool| {
        let sizes = &net.downlinks[0].sizes[range.0..range.1.max(range.0)];
        let bytes: f64 = sizes.iter().map(|&s| f64::from(s)).sum::<f64>()
            + if headers {
                28.0 * sizes.len() as f64
            } else {
                0.0
            };
        bytes * 8.0 / seconds.max(1e-9) / 1000.0
    };
    let changing_s = changing_ticks as f64 / TICK_HZ;
    let quiet_s = quiet_ticks as f64 / TICK_HZ;
    let mut s = Summary::default();
    s.put("sync_seconds", phase_start.unwrap_or(0) as f64 / TICK_HZ);
    s.put("kbps_per_client", kbps(changing_range, changing_s, false));
    s.put(
        "kbps_per_client_with_ip_udp",
        kbps(changing_range, changing_s, true),
    );
    s.put(
        "snapshot_kbps",
        snapshot_bytes[0] as f64 * 8.0 / changing_s / 1000.0,
    );
    s.put("unchanged_kbps", kbps(quiet_range, quiet_s, false));
    s.put(
        "unchanged_kbps_with_ip_udp",
        kbps(quiet_range, quiet_s, true),
    );
    s.put(
        "unchanged_snapshot_kbps",
        snapshot_bytes[1] as f64 * 8.0 / quiet_s / 1000.0,
    );
    s.put("encode_us_median", percentile(&mut encode_us, 50.0));
    s.put("encode_us_p99", percentile(&mut encode_us, 99.0));
    s.put("decode_errors", decode_errors as f64);
    s.put("converged", f64::from(u8::from(converged)));
    s
}

/// Encodes and sends this tick's snapshot, timing it when `measure` is given.
fn step_sends(
    server: &mut SnapshotServer<Sensor>,
    connection: Option<ConnectionId>,
    tick: u64,
    now: Instant,
    net: &mut Net,
    measure: Option<(&mut Vec<f64>, &mut u64)>,
) {
    let Some(connection) = connection else {
        return;
    };
    let mut out = Vec::new();
    let started = Instant::now();
    let info = server.encode(connection, tick, now, &mut out);
    let took = started.elapsed();
    let Some(info) = info else {
        return;
    };
    match net.server().send(connection, SNAPSHOTS, Bytes::from(out)) {
        Ok(message) => server.sent(connection, info.seq, message),
        Err(error) => panic!("S2: send: {error}"),
    }
    if let Some((encode_us, bytes)) = measure {
        encode_us.push(took.as_secs_f64() * 1e6);
        *bytes += info.bytes as u64;
    }
}

/// The reading's width: 0.01 steps over [−40, 85].
const READING_BITS: u32 = 14;
/// The largest quantised reading: 125 / 0.01.
const READING_MAX: u32 = 12_500;
