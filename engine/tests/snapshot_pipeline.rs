//! The snapshot building blocks end to end, through the public API only: a server quantises and
//! bit-packs a moving, spinning cube every tick (workload S1's quantisation); a seeded link
//! delays, reorders and drops the snapshots (profile B: 100 ms RTT, ±33 ms jitter, 5 % loss);
//! the client decodes them into a `SnapshotBuffer` and a `ServerClock` and renders at 60 fps.
//!
//! Checks: hostile-free decoding round-trips, the rendered cube stays within a few millimetres
//! and a degree of the truth, hitches are rare, and the clock estimate tracks the server.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tickwire::snapshot::{
    quantize_quat, BitReader, BitWriter, BoundedFloat, BufferConfig, ClockConfig, Interpolate,
    QuantizedQuat, Quat, ServerClock, SnapshotBuffer, SnapshotDecodeError, DEFAULT_QUAT_BITS,
};

const TICK_HZ: f64 = 60.0;
const SECONDS: f64 = 20.0;
const WARMUP: f64 = 2.0;

#[derive(Clone, Debug)]
struct Cube {
    position: [f32; 3],
    rotation: Quat,
}

impl Interpolate for Cube {
    fn interpolate(&self, other: &Self, t: f32) -> Self {
        Cube {
            position: self.position.interpolate(&other.position, t),
            rotation: self.rotation.interpolate(&other.rotation, t),
        }
    }
}

/// Ground truth at a (fractional) server tick: a 5 m circle at 1 rad/s, spinning at 2 rad/s.
fn truth(tick: f64) -> Cube {
    let t = tick / TICK_HZ;
    Cube {
        position: [
            (5.0 * t.cos()) as f32,
            (5.0 * t.sin()) as f32,
            (1.0 + 0.5 * (0.3 * t).sin()) as f32,
        ],
        rotation: Quat::from_axis_angle([0.2, 0.3, 1.0], (2.0 * t) as f32),
    }
}

struct Codec {
    xy: BoundedFloat,
    z: BoundedFloat,
}

impl Codec {
    fn new() -> Self {
        Codec {
            xy: BoundedFloat::new(-256.0, 255.0, 1.0 / 512.0).unwrap(),
            z: BoundedFloat::new(0.0, 32.0, 1.0 / 512.0).unwrap(),
        }
    }

    fn encode(&self, tick: u64, cube: &Cube, out: &mut Vec<u8>) {
        out.clear();
        let mut w = BitWriter::new(out);
        w.write_varint(tick);
        self.xy.write(&mut w, cube.position[0]);
        self.xy.write(&mut w, cube.position[1]);
        self.z.write(&mut w, cube.position[2]);
        quantize_quat(cube.rotation, DEFAULT_QUAT_BITS).write(&mut w);
    }

    fn decode(&self, bytes: &[u8]) -> Result<(u64, Cube), SnapshotDecodeError> {
        let mut r = BitReader::new(bytes);
        let tick = r.read_varint()?;
        let position = [
            self.xy.read(&mut r)?,
            self.xy.read(&mut r)?,
            self.z.read(&mut r)?,
        ];
        let rotation = QuantizedQuat::read(&mut r, DEFAULT_QUAT_BITS)?.dequantize();
        r.finish()?;
        Ok((tick, Cube { position, rotation }))
    }
}

#[test]
fn cube_renders_smoothly_under_profile_b() {
    let codec = Codec::new();
    let mut rng = StdRng::seed_from_u64(0x5331);
    let rtt = Duration::from_millis(100);

    // Server side: one datagram per tick, sent through the seeded link.
    let mut in_flight: Vec<(f64, Vec<u8>)> = Vec::new();
    let mut buf = Vec::new();
    for tick in 0..(SECONDS * TICK_HZ) as u64 {
        codec.encode(tick, &truth(tick as f64), &mut buf);
        // Tick varint (8 or 16 bits) + position (51) + rotation (29).
        assert_eq!(buf.len(), if tick < 128 { 11 } else { 12 });
        if rng.random_bool(0.05) {
            continue;
        }
        let arrival = tick as f64 / TICK_HZ + 0.05 + rng.random_range(-0.033..=0.033);
        in_flight.push((arrival, buf.clone()));
    }
    in_flight.sort_by(|a, b| a.0.total_cmp(&b.0));

    // Client side.
    let base = Instant::now();
    let at = |secs: f64| base + Duration::from_secs_f64(secs);
    let mut buffer = SnapshotBuffer::new(BufferConfig::default()).unwrap();
    let mut clock = ServerClock::new(ClockConfig::default()).unwrap();
    let mut arrivals = in_flight.iter().peekable();
    let (mut frames, mut hitches) = (0u32, 0u32);
    let mut position_errors = Vec::new();
    let mut worst_angle = 0.0f32;
    let mut worst_clock = 0.0f64;
    for frame in 0..(SECONDS * 60.0) as u64 {
        let now = frame as f64 / 60.0;
        while let Some((arrival, bytes)) = arrivals.next_if(|(arrival, _)| *arrival <= now) {
            let (tick, cube) = codec.decode(bytes).expect("well-formed snapshot");
            buffer.push(tick, cube, at(*arrival));
            clock.handle_sample(tick, at(*arrival), rtt);
        }
        let Some(sample) = buffer.sample(at(now)) else {
            continue;
        };
        if now < WARMUP {
            continue;
        }
        frames += 1;
        hitches += u32::from(sample.is_hitch());
        let want = truth(sample.render_tick);
        let error = (0..3)
            .map(|i| (sample.state.position[i] - want.position[i]).powi(2))
            .sum::<f32>()
            .sqrt();
        position_errors.push(error);
        worst_angle = worst_angle.max(sample.state.rotation.angle_to(want.rotation));
        let server_now = now * TICK_HZ;
        worst_clock = worst_clock.max((clock.estimate(at(now)).unwrap() - server_now).abs());
    }

    position_errors.sort_by(f32::total_cmp);
    let p99 = position_errors[position_errors.len() * 99 / 100];
    let hitch_rate = f64::from(hitches) / f64::from(frames);
    let delay = buffer.delay();
    assert!(p99 < 0.005, "p99 position error {p99} m");
    assert!(
        worst_angle.to_degrees() < 1.0,
        "worst angle {}°",
        worst_angle.to_degrees()
    );
    assert!(
        hitch_rate < 0.01,
        "hitch rate {hitch_rate} ({hitches} of {frames})"
    );
    assert!(
        delay > Duration::from_millis(50) && delay < Duration::from_millis(150),
        "delay {delay:?}"
    );
    assert!(worst_clock < 1.5, "clock off by {worst_clock} ticks");
}

#[test]
fn truncated_and_garbage_snapshots_are_errors() {
    let codec = Codec::new();
    let mut buf = Vec::new();
    codec.encode(1_000, &truth(1_000.0), &mut buf);
    assert!(codec.decode(&buf).is_ok());
    for len in 0..buf.len() {
        assert!(codec.decode(&buf[..len]).is_err(), "prefix of {len} bytes");
    }
    let mut longer = buf.clone();
    longer.push(0);
    assert!(matches!(
        codec.decode(&longer),
        Err(SnapshotDecodeError::TrailingBits(_))
    ));
    let mut rng = StdRng::seed_from_u64(9);
    for _ in 0..10_000 {
        let len = rng.random_range(0..24);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let _ = codec.decode(&bytes);
    }
}
