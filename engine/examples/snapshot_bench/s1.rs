//! Workload S1 on one network profile: the server steps the cube world at 60 Hz and sends every
//! client a delta snapshot each tick; client 0 decodes into a [`SnapshotBuffer`] of the whole
//! world and renders at 60 Hz, compared with the ground truth at the render time.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tickwire::sim::LinkConfig;
use tickwire::snapshot::{
    BitWriter, BufferConfig, EntityId, EntityState, LinkSample, RateConfig, RateController,
    SnapshotBuffer, SnapshotClient, SnapshotConfig, SnapshotServer, View,
};
use tickwire::{ConnectionId, Event};

use crate::cubes::{
    CubeState, CubeWorld, Frame, Pose, Quantizer, BURST_LENGTH, CUBES, ENTITIES, TICK_HZ,
};
use crate::net::{connection_of, Net, SNAPSHOTS};
use crate::report::{mean, percentile, Summary, Timeline};

/// A network profile of workloads.md.
#[derive(Clone, Debug)]
pub(crate) struct Profile {
    /// "A" to "D".
    pub(crate) name: &'static str,
    /// Both directions.
    pub(crate) link: LinkConfig,
    /// Blackouts: (first at, period, length).
    pub(crate) blackout: Option<(Duration, Duration, Duration)>,
}

/// The four profiles of workloads.md, then E (a bottleneck). `run` is the run length, which
/// places the first blackout.
pub(crate) fn profiles(run: Duration) -> Vec<Profile> {
    let a = LinkConfig {
        latency: Duration::from_millis(50),
        ..LinkConfig::default()
    };
    let b = LinkConfig {
        loss: 0.05,
        jitter: Duration::from_millis(33),
        ..a.clone()
    };
    let d = LinkConfig {
        latency: Duration::from_millis(300),
        jitter: Duration::from_millis(75),
        loss: 0.06,
        ..LinkConfig::default()
    };
    let first_blackout = Duration::from_secs(10).min(run / 2);
    // E: A through a 300 kbps bottleneck with a 64 KiB queue (not in workloads.md: it shows
    // what the adaptive budget is for).
    let e = LinkConfig {
        bandwidth: Some(BOTTLENECK_BYTES_PER_SECOND),
        queue_limit: 64 * 1024,
        ..a.clone()
    };
    vec![
        Profile {
            name: "A",
            link: a,
            blackout: None,
        },
        Profile {
            name: "B",
            link: b.clone(),
            blackout: None,
        },
        Profile {
            name: "C",
            link: b,
            blackout: Some((
                first_blackout,
                Duration::from_secs(20),
                Duration::from_millis(250),
            )),
        },
        Profile {
            name: "D",
            link: d,
            blackout: None,
        },
        Profile {
            name: "E",
            link: e,
            blackout: None,
        },
    ]
}

/// How one S1 run is set up.
#[derive(Clone, Debug)]
pub(crate) struct RunConfig {
    /// Simulated run length.
    pub(crate) run: Duration,
    /// Measured from here on (the first full state is sent before).
    pub(crate) warmup: Duration,
    /// Clients the server sends to.
    pub(crate) clients: usize,
    /// Seed of the world and the network.
    pub(crate) seed: u64,
    /// false: nothing in the world moves (the at-rest figure).
    pub(crate) moving: bool,
    /// Time of the first burst, seconds.
    pub(crate) first_burst: f64,
    /// Whether to render and compare with the truth (client 0).
    pub(crate) render: bool,
    /// `SnapshotConfig::history` (the engine's default is 64).
    pub(crate) history: usize,
    /// The snapshot budget per client.
    pub(crate) budget: Budget,
}

/// How the snapshot budget per client is set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Budget {
    /// Only `max_snapshot_bytes` (3000) limits each snapshot.
    Cap,
    /// A fixed token bucket, bytes per second.
    Fixed(u32),
    /// A `RateController` fed with the server's connection statistics every tick.
    Adaptive,
}

/// What a state codec needs beyond [`EntityState`]: built from and read as a [`CubeState`].
pub(crate) trait CubeCodec: EntityState {
    /// Wraps the quantised state.
    fn wrap(state: CubeState) -> Self;
    /// The quantised state.
    fn cube(&self) -> &CubeState;
}

impl CubeCodec for CubeState {
    fn wrap(state: CubeState) -> Self {
        state
    }
    fn cube(&self) -> &CubeState {
        self
    }
}

impl CubeCodec for crate::cubes::PlainCube {
    fn wrap(state: CubeState) -> Self {
        Self(state)
    }
    fn cube(&self) -> &CubeState {
        &self.0
    }
}

/// Runs S1 on one profile and summarises it.
pub(crate) fn run<S: CubeCodec>(profile: &Profile, config: &RunConfig) -> Summary {
    let quantizer = Quantizer::new();
    let mut net = Net::new(profile.link.clone(), config.clients, config.seed);
    let snapshot_config = SnapshotConfig {
        history: config.history,
        bandwidth: match config.budget {
            Budget::Fixed(rate) => Some(rate),
            _ => None,
        },
        ..SnapshotConfig::default()
    };
    let mut server = SnapshotServer::<S>::new(snapshot_config.clone());
    let mut world = CubeWorld::new(config.seed, config.moving);
    let mut decoders: Vec<SnapshotClient<S>> = (0..config.clients)
        .map(|_| SnapshotClient::new(snapshot_config.clone()))
        .collect();
    let mut connections: HashMap<ConnectionId, usize> = HashMap::new();
    let mut by_client: Vec<Option<ConnectionId>> = vec![None; config.clients];
    let mut buffer = SnapshotBuffer::<Frame>::new(BufferConfig::default()).expect("defaults");

    let tick_len = Duration::from_secs_f64(1.0 / TICK_HZ);
    let total_ticks = (config.run.as_secs_f64() * TICK_HZ).round() as u64;
    let warmup_ticks = (config.warmup.as_secs_f64() * TICK_HZ).round() as u64;
    let start = net.now();

    let mut m = Measures::default();
    let mut truth: VecDeque<(u64, Vec<Pose>)> = VecDeque::new();
    let mut quantised: Vec<CubeState> = Vec::with_capacity(ENTITIES);
    let mut last_change = vec![0u64; ENTITIES];
    let mut blacked_out = false;
    let mut blackout_ends: Vec<Instant> = Vec::new();
    let mut scratch = Vec::new();
    let mut synced_at: Option<u64> = None;
    // Datagrams of client 0 already in the timeline.
    let mut counted = 0usize;
    let mut rate = match config.budget {
        Budget::Adaptive => Some(RateController::new(RateConfig::default()).expect("defaults")),
        _ => None,
    };

    for tick in 1..=total_ticks {
        let now = start + tick_len.mul_f64(tick as f64);
        net.advance_to(now);
        // Measured after the warm-up, and once client 0 holds the whole world (on a long
        // path the first full state takes a few round trips: `sync_ms`).
        let measuring = tick > warmup_ticks && synced_at.is_some();
        if measuring {
            m.measured_ticks += 1;
        }
        net.counting = measuring;

        // Blackouts (profile C): both directions lose everything, then recover.
        if let Some((first, period, length)) = profile.blackout {
            let t = net.elapsed();
            let inside = t >= first
                && (t - first).as_secs_f64() % period.as_secs_f64() < length.as_secs_f64();
            if inside != blacked_out {
                blacked_out = inside;
                let link = if inside {
                    LinkConfig {
                        loss: 1.0,
                        ..profile.link.clone()
                    }
                } else {
                    blackout_ends.push(now);
                    profile.link.clone()
                };
                net.set_links(&link);
            }
        }

        // Server: connections and delivery notifications.
        while let Some((_, event)) = net.poll_event(0) {
            if let Some((connection, remote)) = connection_of(&event) {
                let client = (1..=config.clients).find(|&n| net.address(n) == remote);
                if let Some(client) = client {
                    server.add_client(connection);
                    connections.insert(connection, client - 1);
                    by_client[client - 1] = Some(connection);
                }
                continue;
            }
            match event {
                Event::Delivery {
                    connection,
                    message,
                    outcome,
                    ..
                } => server.handle_delivery(connection, message, outcome),
                Event::Disconnected { reason, .. } => {
                    panic!("S1 {}: server: {reason}", profile.name)
                }
                _ => {}
            }
        }

        // Clients: decode, and client 0 buffers the world for rendering.
        for (client, decoder) in decoders.iter_mut().enumerate() {
            while let Some((at, event)) = net.poll_event(client + 1) {
                let Event::Message { data, .. } = event else {
                    if let Event::Disconnected { reason, .. } = event {
                        panic!("S1 {}: client {client}: {reason}", profile.name);
                    }
                    continue;
                };
                let started = Instant::now();
                let decoded = decoder.receive(&data);
                let took = started.elapsed();
                if measuring {
                    m.decode_us.push(took.as_secs_f64() * 1e6);
                }
                match decoded {
                    Ok(Some(decoded)) if client == 0 => {
                        if synced_at.is_none() && decoded.view.len() == ENTITIES {
                            synced_at = Some(tick);
                        }
                        if config.render {
                            let frame = frame_of(&quantizer, &decoded.view);
                            buffer.push(decoded.tick, frame, at);
                        }
                    }
                    // Stale (overtaken) or duplicate: still an arrival for the jitter.
                    Ok(None) if client == 0 && config.render => {
                        if let Some(tick) = decoder.last_decoded_tick() {
                            buffer.record_arrival(tick, at);
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        m.decode_errors += 1;
                        if std::env::var_os("SNAPSHOT_BENCH_DEBUG").is_some() {
                            eprintln!(
                                "S1 {} client {client} tick {tick}: {error:?} ({} bytes)",
                                profile.name,
                                data.len()
                            );
                        }
                    }
                }
            }
        }

        // Client 0 renders a frame.
        if config.render {
            if let Some(sample) = buffer.sample(now) {
                if measuring {
                    m.frames += 1;
                    m.delay_ms.push(buffer.delay().as_secs_f64() * 1e3);
                    let hitch = sample.is_hitch();
                    if hitch {
                        m.hitches += 1;
                    }
                    m.frame_log.push((now, hitch));
                    m.timeline_hitches
                        .push(((now - start).as_secs_f64(), hitch));
                    let calm =
                        !burst_window(sample.render_tick.max(0.0) as u64, config.first_burst);
                    let errors = if calm {
                        &mut m.error_mm_calm
                    } else {
                        &mut m.error_mm_burst
                    };
                    render_error(&sample.state, sample.render_tick, &truth, errors);
                }
            }
        }

        // Server: step the world, quantise, detect changes.
        world.step(config.first_burst);
        quantised.clear();
        for (i, pose) in world.poses().iter().enumerate() {
            let state = quantizer.quantize(pose, world.interacting(i));
            quantised.push(state);
        }
        for (i, state) in quantised.iter().enumerate() {
            let changed = server
                .get(EntityId(i as u32))
                .is_none_or(|old| old.cube() != state);
            if changed {
                last_change[i] = tick;
                server.set(EntityId(i as u32), S::wrap(state.clone()));
            }
        }
        truth.push_back((tick, world.poses().to_vec()));
        while truth.len() > TRUTH_TICKS {
            truth.pop_front();
        }
        let in_burst = burst_window(tick, config.first_burst);
        if measuring {
            let window_start = tick.saturating_sub(WINDOW_TICKS);
            let moving = last_change[..CUBES]
                .iter()
                .filter(|&&t| t > window_start && t > 1)
                .count();
            let fraction = moving as f64 / CUBES as f64;
            m.moving.push(fraction);
            if !in_burst {
                m.moving_calm.push(fraction);
            }
            scratch.clear();
            m.full_bytes += full_snapshot_bytes(&server, tick, &mut scratch) as u64;
        }

        // Server: the adaptive budget from the transport's RTT and loss.
        if let Some(rate) = rate.as_mut() {
            for connection in by_client.iter().flatten() {
                if let Some(stats) = net.server().connection_stats(*connection) {
                    rate.handle_sample(now, LinkSample::from_stats(&stats));
                    server.set_bandwidth(*connection, Some(rate.bytes_per_second()));
                }
            }
            if measuring {
                m.timeline_budget
                    .push(((now - start).as_secs_f64(), rate.bytes_per_second()));
            }
        }

        // Server: one snapshot per client.
        let mut tick_bytes = [0u64; 2];
        for (client, connection) in by_client.iter().enumerate() {
            let Some(connection) = *connection else {
                continue;
            };
            let mut out = Vec::new();
            let started = Instant::now();
            let info = server.encode(connection, tick, now, &mut out);
            let took = started.elapsed();
            let Some(info) = info else {
                continue;
            };
            let message = match net.server().send(connection, SNAPSHOTS, Bytes::from(out)) {
                Ok(message) => message,
                Err(error) => panic!("S1 {}: send: {error}", profile.name),
            };
            server.sent(connection, info.seq, message);
            if !measuring {
                continue;
            }
            m.encode_us.push(took.as_secs_f64() * 1e6);
            if in_burst {
                m.encode_us_burst.push(took.as_secs_f64() * 1e6);
            }
            if client == 0 {
                m.snapshots += 1;
                m.snapshot_bytes.push(info.bytes as f64);
                m.entries.push(info.entries as f64);
                m.deferred += info.deferred as u64;
                match info.baseline {
                    Some(base) => m.baseline_age.push((info.seq - base) as f64),
                    None => m.full_snapshots += 1,
                }
                if let Some(base) = info.baseline {
                    let (now_bits, proposed_bits) =
                        entry_header_bits(&server, connection, info.seq, base);
                    m.entry_header_bits += now_bits;
                    m.proposed_header_bits += proposed_bits;
                }
                tick_bytes[usize::from(in_burst)] += info.bytes as u64;
            }
        }
        if measuring {
            m.ticks[usize::from(in_burst)] += 1;
            m.snapshot_bytes_by_phase[0] += tick_bytes[0];
            m.snapshot_bytes_by_phase[1] += tick_bytes[1];
            for client in 0..config.clients {
                // Datagrams sent to this client since the previous tick: the snapshot's fragments,
                // plus any ack-only or keepalive packet.
                let burst = net.take_burst(client);
                if client == 0 {
                    m.fragments_max = m.fragments_max.max(burst);
                }
            }
            let sizes = &net.downlinks[0].sizes;
            let sent: u64 = sizes[counted..].iter().map(|&s| u64::from(s)).sum();
            counted = sizes.len();
            m.timeline_bytes.push(((now - start).as_secs_f64(), sent));
        } else {
            for client in 0..config.clients {
                net.take_burst(client);
            }
        }
    }
    net.advance_to(start + tick_len.mul_f64((total_ticks + 1) as f64));
    m.recovery_ms = recovery_ms(&m.frame_log, &blackout_ends);
    m.sync_ms = synced_at.map(|t| t as f64 * 1000.0 / TICK_HZ);
    let measured = m.measured_ticks;
    m.summarise(&net, config, measured)
}

/// Everything measured during the run (after warm-up).
#[derive(Default)]
struct Measures {
    encode_us: Vec<f64>,
    /// Encode times of ticks inside a burst window.
    encode_us_burst: Vec<f64>,
    decode_us: Vec<f64>,
    decode_errors: u64,
    snapshots: u64,
    full_snapshots: u64,
    snapshot_bytes: Vec<f64>,
    /// Snapshot bytes of client 0 outside and inside bursts.
    snapshot_bytes_by_phase: [u64; 2],
    /// Ticks outside and inside bursts.
    ticks: [u64; 2],
    entries: Vec<f64>,
    deferred: u64,
    baseline_age: Vec<f64>,
    entry_header_bits: u64,
    proposed_header_bits: u64,
    fragments_max: u32,
    frames: u64,
    hitches: u64,
    frame_log: Vec<(Instant, bool)>,
    delay_ms: Vec<f64>,
    error_mm_calm: Vec<f64>,
    error_mm_burst: Vec<f64>,
    moving: Vec<f64>,
    moving_calm: Vec<f64>,
    full_bytes: u64,
    recovery_ms: Option<f64>,
    /// Per measured tick: seconds since the start, UDP payload bytes sent to client 0.
    timeline_bytes: Vec<(f64, u64)>,
    /// Per measured frame: seconds since the start, whether it was a hitch.
    timeline_hitches: Vec<(f64, bool)>,
    /// The adaptive budget over time (seconds, bytes per second).
    timeline_budget: Vec<(f64, u32)>,
    measured_ticks: u64,
    sync_ms: Option<f64>,
}

impl Measures {
    fn summarise(mut self, net: &Net, config: &RunConfig, measured_ticks: u64) -> Summary {
        let seconds = measured_ticks as f64 / TICK_HZ;
        let kbps = |bytes: f64, secs: f64| bytes * 8.0 / secs.max(1e-9) / 1000.0;
        let mut sizes: Vec<f64> = net.downlinks[0]
            .sizes
            .iter()
            .map(|&s| f64::from(s))
            .collect();
        let payload: f64 = net
            .downlinks
            .iter()
            .map(|d| d.sizes.iter().map(|&s| f64::from(s)).sum::<f64>())
            .sum::<f64>()
            / config.clients as f64;
        let packets: f64 = net
            .downlinks
            .iter()
            .map(|d| d.sizes.len() as f64)
            .sum::<f64>()
            / config.clients as f64;
        let snapshot_total: f64 = self.snapshot_bytes.iter().sum();
        let header_saving = self.entry_header_bits as f64 - self.proposed_header_bits as f64;
        let phase_kbps = |phase: usize| {
            kbps(
                self.snapshot_bytes_by_phase[phase] as f64,
                self.ticks[phase] as f64 / TICK_HZ,
            )
        };
        let changed_entries: f64 = self.entries.iter().sum();
        let mut s = Summary::default();
        s.timeline = Timeline {
            bytes: std::mem::take(&mut self.timeline_bytes),
            hitches: std::mem::take(&mut self.timeline_hitches),
            budget: std::mem::take(&mut self.timeline_budget),
        };
        s.put("seconds_measured", seconds);
        s.put("clients", config.clients as f64);
        s.put("kbps_per_client", kbps(payload, seconds));
        s.put(
            "kbps_per_client_with_ip_udp",
            kbps(payload + packets * IP_UDP_HEADER, seconds),
        );
        s.put("snapshot_kbps", kbps(snapshot_total, seconds));
        s.put("snapshot_kbps_calm", phase_kbps(0));
        if self.ticks[1] > 0 {
            s.put("snapshot_kbps_burst", phase_kbps(1));
        }
        s.put("full_kbps", kbps(self.full_bytes as f64, seconds));
        s.put(
            "full_over_delta",
            self.full_bytes as f64 / snapshot_total.max(1.0),
        );
        s.put("packets_per_second", packets / seconds);
        s.put("bytes_per_packet_mean", mean(&sizes));
        s.put("bytes_per_packet_p99", percentile(&mut sizes, 99.0));
        s.put("bytes_per_packet_max", percentile(&mut sizes, 100.0));
        s.put("fragments_max", f64::from(self.fragments_max));
        s.put("snapshot_bytes_mean", mean(&self.snapshot_bytes));
        s.put(
            "snapshot_bytes_max",
            percentile(&mut self.snapshot_bytes, 100.0),
        );
        s.put("entries_per_snapshot", mean(&self.entries));
        if changed_entries > 0.0 {
            s.put("bits_per_entry", snapshot_total * 8.0 / changed_entries);
            s.put(
                "entry_header_bits_per_entry",
                self.entry_header_bits as f64 / changed_entries,
            );
        }
        s.put(
            "proposed_layout_snapshot_kbps",
            kbps(snapshot_total - header_saving / 8.0, seconds),
        );
        s.put("deferred_entries", self.deferred as f64);
        s.put("full_snapshots", self.full_snapshots as f64);
        s.put("baseline_age_mean", mean(&self.baseline_age));
        s.put("baseline_age_p99", percentile(&mut self.baseline_age, 99.0));
        let encode_median = percentile(&mut self.encode_us, 50.0);
        // The name for the goal's figure (at most 100 µs): the median per client-tick.
        s.put("encode_us_per_client_tick", encode_median);
        s.put("encode_us_median", encode_median);
        s.put("encode_us_p90", percentile(&mut self.encode_us, 90.0));
        s.put("encode_us_p99", percentile(&mut self.encode_us, 99.0));
        // The median inside bursts: the cost of the biggest snapshots, robust to the 4 ms
        // scheduler slices that other processes on a shared machine put into the p99.
        s.put(
            "encode_us_median_burst",
            percentile(&mut self.encode_us_burst, 50.0),
        );
        s.put("decode_us_median", percentile(&mut self.decode_us, 50.0));
        s.put("decode_us_p99", percentile(&mut self.decode_us, 99.0));
        s.put("decode_errors", self.decode_errors as f64);
        if config.render {
            s.put("interpolation_delay_ms", mean(&self.delay_ms));
            s.put(
                "interpolation_delay_ms_max",
                percentile(&mut self.delay_ms, 100.0),
            );
            s.put(
                "hitch_rate",
                self.hitches as f64 / (self.frames.max(1)) as f64,
            );
            let mut all: Vec<f64> = self
                .error_mm_calm
                .iter()
                .chain(&self.error_mm_burst)
                .copied()
                .collect();
            s.put("render_error_p99_mm", percentile(&mut all, 99.0));
            s.put("render_error_median_mm", percentile(&mut all, 50.0));
            s.put(
                "render_error_p99_mm_calm",
                percentile(&mut self.error_mm_calm, 99.0),
            );
        }
        if let Some(recovery) = self.recovery_ms {
            s.put("recovery_ms", recovery);
        }
        s.put("sync_ms", self.sync_ms.unwrap_or(f64::NAN));
        s.put("moving_fraction", mean(&self.moving));
        s.put("moving_fraction_calm", mean(&self.moving_calm));
        s
    }
}

/// Bits of a full snapshot of the world as it is now (every entity "created").
fn full_snapshot_bytes<S: EntityState>(
    server: &SnapshotServer<S>,
    tick: u64,
    scratch: &mut Vec<u8>,
) -> usize {
    let mut w = BitWriter::new(scratch);
    w.write_varint(tick);
    w.write_varint(tick);
    w.write_varint(0);
    for (_, state) in server.iter() {
        w.write_bool(true);
        w.write_varint(0);
        w.write_bits(1, 2);
        state.write_full(&mut w);
    }
    w.write_bool(false);
    w.byte_len()
}

/// The entry headers (continuation bit, id gap, kind) of snapshot `seq` against `base` as
/// world.rs writes them, and as the proposed layout would (see the report).
fn entry_header_bits<S: EntityState>(
    server: &SnapshotServer<S>,
    connection: ConnectionId,
    seq: u64,
    base: u64,
) -> (u64, u64) {
    let (Some(new), Some(old)) = (
        server.sent_view(connection, seq),
        server.sent_view(connection, base),
    ) else {
        return (0, 0);
    };
    let ids = changed_ids(&new, &old);
    let mut current = 1u64;
    let mut gamma = varint_bits(ids.len() as u64);
    let mut previous: Option<u32> = None;
    for &id in &ids {
        let gap = u64::from(id - previous.map_or(0, |p| p + 1));
        previous = Some(id);
        current += 1 + varint_bits(gap) + 2;
        // Proposed: an Elias-gamma gap and a 1-bit kind (changed; 1 = escape to a 2-bit kind).
        gamma += elias_gamma_bits(gap + 1) + 1;
    }
    // Or a bitmap of every id in the baseline and the world, whichever is smaller.
    let bitmap =
        varint_bits(ids.len() as u64) + 1 + new.len().max(old.len()) as u64 + ids.len() as u64;
    (current, gamma.min(bitmap) + 1)
}

fn changed_ids<S: EntityState>(new: &Arc<View<S>>, old: &Arc<View<S>>) -> Vec<u32> {
    let mut ids = Vec::new();
    let mut old_iter = old.iter().peekable();
    for (id, state) in new.iter() {
        while let Some((old_id, _)) = old_iter.peek() {
            if *old_id >= id {
                break;
            }
            ids.push(old_id.0);
            old_iter.next();
        }
        match old_iter.peek() {
            Some((old_id, old_state)) if *old_id == id => {
                if *old_state != state {
                    ids.push(id.0);
                }
                old_iter.next();
            }
            _ => ids.push(id.0),
        }
    }
    ids.extend(old_iter.map(|(id, _)| id.0));
    ids
}

fn varint_bits(value: u64) -> u64 {
    8 * u64::from((64 - value.leading_zeros()).max(1).div_ceil(7))
}

fn elias_gamma_bits(value: u64) -> u64 {
    let n = u64::from(63 - value.max(1).leading_zeros());
    2 * n + 1
}

/// The client's frame: every entity of the view, dequantised.
fn frame_of<S: CubeCodec>(quantizer: &Quantizer, view: &View<S>) -> Frame {
    let mut poses = vec![
        Pose {
            position: [0.0; 3],
            rotation: tickwire::snapshot::Quat::IDENTITY,
        };
        ENTITIES
    ];
    for (id, state) in view.iter() {
        if let Some(slot) = poses.get_mut(id.0 as usize) {
            *slot = quantizer.dequantize(state.cube());
        }
    }
    Frame(poses)
}

/// Position error of every entity in motion at the render time (and the player), in mm.
fn render_error(
    frame: &Frame,
    render_tick: f64,
    truth: &VecDeque<(u64, Vec<Pose>)>,
    out: &mut Vec<f64>,
) {
    let Some(&(first, _)) = truth.front() else {
        return;
    };
    let k0 = render_tick.floor();
    if k0 < first as f64 {
        return;
    }
    let index = (k0 as u64 - first) as usize;
    let (Some((_, a)), Some((_, b))) = (truth.get(index), truth.get(index + 1)) else {
        return;
    };
    let f = (render_tick - k0) as f32;
    for (i, shown) in frame.0.iter().enumerate() {
        let (pa, pb) = (&a[i], &b[i]);
        let moving = pa != pb || i == CUBES;
        if !moving {
            continue;
        }
        let mut sq = 0.0f64;
        for axis in 0..3 {
            let true_axis = pa.position[axis] + (pb.position[axis] - pa.position[axis]) * f;
            sq += f64::from(shown.position[axis] - true_axis).powi(2);
        }
        out.push(sq.sqrt() * 1000.0);
    }
}

/// From each blackout's end to the first frame that starts 30 hitch-free frames, averaged.
fn recovery_ms(frames: &[(Instant, bool)], ends: &[Instant]) -> Option<f64> {
    let mut recoveries = Vec::new();
    for &end in ends {
        let from = frames.partition_point(|(at, _)| *at < end);
        let rest = &frames[from..];
        let found = (0..rest.len()).find(|&i| {
            let window = &rest[i..(i + RECOVERED_FRAMES).min(rest.len())];
            window.len() == RECOVERED_FRAMES && window.iter().all(|(_, hitch)| !hitch)
        });
        if let Some(i) = found {
            recoveries.push((rest[i].0 - end).as_secs_f64() * 1e3);
        }
    }
    (!recoveries.is_empty()).then(|| mean(&recoveries))
}

/// Whether `tick` is in a burst or the settling second after it.
fn burst_window(tick: u64, first_burst: f64) -> bool {
    let t = tick as f64 / TICK_HZ - first_burst;
    t >= 0.0 && t.rem_euclid(crate::cubes::BURST_PERIOD) < BURST_LENGTH + 1.0
}

/// Capacity of profile E's bottleneck: 300 kbps.
pub(crate) const BOTTLENECK_BYTES_PER_SECOND: u64 = 37_500;
/// IPv4 (20) + UDP (8) header bytes per datagram.
const IP_UDP_HEADER: f64 = 28.0;
/// Ticks of ground truth kept for the render-time comparison (over 4 s).
const TRUTH_TICKS: usize = 256;
/// The 100 ms window of the moving fraction, in ticks.
const WINDOW_TICKS: u64 = 6;
/// Hitch-free frames in a row that count as recovered.
const RECOVERED_FRAMES: usize = 30;
