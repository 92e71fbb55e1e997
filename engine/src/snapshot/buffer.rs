//! The client's jitter and interpolation buffer: [`SnapshotBuffer`] holds recent snapshots by
//! server tick and renders the state at a moment slightly in the past, between two snapshots,
//! so that late and lost snapshots do not show.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::interpolate::Interpolate;

/// Settings of a [`SnapshotBuffer`]. Plain fields with safe defaults; checked by
/// [`SnapshotBuffer::new`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BufferConfig {
    /// Server ticks per second: converts the `server_tick` of a snapshot to server time.
    /// Default 60. The snapshot rate (every tick, every other tick…) is measured, not set.
    pub tick_rate_hz: f64,
    /// Lost snapshots in a row to ride out without a hitch. The delay covers
    /// `(lost_snapshots + 1)` snapshot intervals. Default 2, Glenn Fiedler's rule of thumb
    /// (a delay of three intervals). Each one more costs one interval of latency.
    pub lost_snapshots: u32,
    /// Multiple of the measured jitter (mean absolute deviation of arrival times) added to the
    /// delay as margin. Default 3.0, which covers uniform jitter of any width with room to spare.
    /// Smaller trades hitches on late snapshots for latency.
    pub jitter_factor: f64,
    /// Lower bound of the delay. Default 50 ms (three intervals at 60 Hz).
    pub min_delay: Duration,
    /// Upper bound of the delay, whatever the measured rate and jitter. Default 1 s. A
    /// snapshot rate below 3 Hz needs more.
    pub max_delay: Duration,
    /// How far past the newest snapshot the state is extrapolated when the buffer runs dry,
    /// before it is held still. Default 100 ms. Longer hides longer gaps but mispredicts more
    /// (objects that stopped keep moving, then jump back).
    pub extrapolation_cap: Duration,
    /// Snapshots held at most. Default 64 (about 1 s at 60 Hz). When full, the oldest is
    /// dropped. Must be at least 2.
    pub capacity: usize,
    /// How much faster or slower than real time the render time may run while the delay adapts,
    /// as a fraction. Default 0.1 (±10 %): a 50 ms change of delay takes 0.5 s. Must be in
    /// (0, 1).
    pub max_time_warp: f64,
    /// A difference between the wanted and current render time above this is fixed by jumping
    /// (for example when the server restarts its ticks). Default 500 ms.
    pub snap_threshold: Duration,
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            tick_rate_hz: 60.0,
            lost_snapshots: 2,
            jitter_factor: 3.0,
            min_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(1),
            extrapolation_cap: Duration::from_millis(100),
            capacity: 64,
            max_time_warp: 0.1,
            snap_threshold: Duration::from_millis(500),
        }
    }
}

/// Why a [`BufferConfig`] was refused.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq, Hash)]
pub enum BufferConfigError {
    /// `tick_rate_hz` was not a positive finite number.
    #[error("tick_rate_hz must be positive and finite")]
    TickRate,
    /// `min_delay` was above `max_delay`.
    #[error("min_delay must not exceed max_delay")]
    DelayBounds,
    /// `jitter_factor` was negative or not finite.
    #[error("jitter_factor must be finite and not negative")]
    JitterFactor,
    /// `capacity` was below 2.
    #[error("capacity must be at least 2")]
    Capacity,
    /// `max_time_warp` was outside (0, 1).
    #[error("max_time_warp must be in (0, 1)")]
    TimeWarp,
}

/// What [`SnapshotBuffer::push`] did with a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PushOutcome {
    /// Stored, in tick order.
    Inserted,
    /// A snapshot of this tick was already held; the new one was dropped.
    Duplicate,
    /// Older than the render time already reached, or than everything a full buffer holds:
    /// dropped. Its arrival time still counts towards the measured jitter, so that late
    /// snapshots make the delay grow.
    TooOld,
}

/// How a [`Sample`] was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SampleKind {
    /// Blended between the two snapshots around the render time. The only kind that is not a
    /// hitch.
    Interpolated,
    /// The render time is past the newest snapshot, by less than the extrapolation cap: the
    /// motion of the last two snapshots was continued.
    Extrapolated,
    /// The render time is past the newest snapshot by more than the cap: the state is frozen
    /// where extrapolation stopped (or at the only snapshot held).
    Held,
    /// The render time is before the oldest snapshot: the buffer is still filling (at start, or
    /// after a jump of the server's ticks). The oldest snapshot is shown.
    BeforeFirst,
}

/// One rendered state, from [`SnapshotBuffer::sample`].
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<T> {
    /// The state to show.
    pub state: T,
    /// The server tick rendered, fractional: estimated server time minus the delay.
    pub render_tick: f64,
    /// Interpolated, or one of the hitch kinds.
    pub kind: SampleKind,
}

impl<T> Sample<T> {
    /// Whether this frame had no pair of snapshots around its render time.
    pub fn is_hitch(&self) -> bool {
        self.kind != SampleKind::Interpolated
    }
}

/// The client-side snapshot buffer: snapshots in by server tick, smooth states out.
///
/// Call [`push`](Self::push) for every snapshot received (in any order, duplicates allowed) and
/// [`sample`](Self::sample) once per rendered frame. Both take the current time; the buffer
/// reads no clock. Use one buffer per connection (or per entity, for per-entity buffers): the
/// server's ticks must only grow within it.
///
/// # Timing
///
/// The buffer maps local time to server time from the arrival times of snapshots: the smoothed
/// offset between a snapshot's server time (`tick / tick_rate_hz`) and its arrival. One-way
/// latency is thus folded into the offset; the server tick an input should carry comes from
/// [`ServerClock`](super::ServerClock) instead. The render time is that estimate minus the
/// interpolation delay:
///
/// `delay = (lost_snapshots + 1) × snapshot interval + jitter_factor × jitter`,
///
/// clamped to `[min_delay, max_delay]`, where the interval is the smallest tick gap between
/// held snapshots and the jitter is the smoothed absolute deviation of arrival times. When the
/// wanted render time moves (jitter grows, the rate changes), the render time runs up to
/// `max_time_warp` faster or slower until it catches up; it never jumps or goes backwards
/// unless the difference exceeds `snap_threshold`.
///
/// ```
/// use std::time::{Duration, Instant};
/// use tickwire::snapshot::{BufferConfig, SampleKind, SnapshotBuffer};
///
/// let mut buffer = SnapshotBuffer::new(BufferConfig::default())?;
/// let start = Instant::now(); // in a real client, the frame's time
/// let tick = Duration::from_secs(1) / 60;
/// for i in 0..30u32 {
///     // A position moving at 6 m/s, one snapshot per tick.
///     buffer.push(u64::from(i), i as f32 * 0.1, start + tick * i);
/// }
/// let frame = buffer.sample(start + tick * 29).unwrap();
/// assert_eq!(frame.kind, SampleKind::Interpolated);
/// // Rendered three ticks (50 ms) in the past.
/// assert!((frame.render_tick - 26.0).abs() < 1e-3);
/// assert!((frame.state - 2.6).abs() < 1e-5);
/// assert!((buffer.delay().as_secs_f64() - 0.050).abs() < 1e-6);
/// # Ok::<(), tickwire::snapshot::BufferConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct SnapshotBuffer<T> {
    config: BufferConfig,
    /// Held snapshots, in increasing tick order, no two with the same tick.
    snapshots: VecDeque<(u64, T)>,
    /// Ticks below this are behind the render time and are refused.
    floor: u64,
    /// Local time zero: the first push.
    epoch: Option<Instant>,
    /// Smoothed server time minus arrival time, in seconds.
    offset: f64,
    /// Smoothed mean absolute deviation of `offset` samples, in seconds.
    jitter: f64,
    /// The gap between snapshots, in ticks, as last measured.
    interval_ticks: u64,
    /// Render time minus local time, in seconds: `offset − delay`, slewed.
    render_offset: f64,
    /// Local time of the last `sample`, in seconds.
    last_sample: Option<f64>,
}

impl<T: Interpolate + Clone> SnapshotBuffer<T> {
    /// An empty buffer.
    pub fn new(config: BufferConfig) -> Result<Self, BufferConfigError> {
        if !(config.tick_rate_hz.is_finite() && config.tick_rate_hz > 0.0) {
            return Err(BufferConfigError::TickRate);
        }
        if config.min_delay > config.max_delay {
            return Err(BufferConfigError::DelayBounds);
        }
        if !(config.jitter_factor.is_finite() && config.jitter_factor >= 0.0) {
            return Err(BufferConfigError::JitterFactor);
        }
        if config.capacity < 2 {
            return Err(BufferConfigError::Capacity);
        }
        if !(config.max_time_warp > 0.0 && config.max_time_warp < 1.0) {
            return Err(BufferConfigError::TimeWarp);
        }
        Ok(Self {
            config,
            snapshots: VecDeque::with_capacity(config.capacity),
            floor: 0,
            epoch: None,
            offset: 0.0,
            jitter: 0.0,
            interval_ticks: 1,
            render_offset: 0.0,
            last_sample: None,
        })
    }

    /// Takes in the snapshot of `server_tick`, received at `now`.
    pub fn push(&mut self, server_tick: u64, state: T, now: Instant) -> PushOutcome {
        let slot = self
            .snapshots
            .partition_point(|(tick, _)| *tick < server_tick);
        if self
            .snapshots
            .get(slot)
            .is_some_and(|(tick, _)| *tick == server_tick)
        {
            return PushOutcome::Duplicate;
        }
        self.measure_arrival(server_tick, now);
        let full = self.snapshots.len() >= self.config.capacity;
        if server_tick < self.floor || (full && slot == 0) {
            return PushOutcome::TooOld;
        }
        self.snapshots.insert(slot, (server_tick, state));
        if full {
            self.snapshots.pop_front();
        }
        self.measure_interval();
        PushOutcome::Inserted
    }

    /// Counts a snapshot of `server_tick` that arrived at `now` but will not be pushed (for
    /// example one [`SnapshotClient::receive`](super::SnapshotClient::receive) decoded as stale
    /// because a newer one overtook it) towards the measured offset and jitter. On a path that
    /// reorders, measuring only the snapshots that arrive in order sees the early ones and
    /// underestimates the jitter; call this for the others so the delay covers it.
    pub fn record_arrival(&mut self, server_tick: u64, now: Instant) {
        self.measure_arrival(server_tick, now);
    }

    /// The state to render at `now`, or `None` before the first snapshot.
    ///
    /// Advances the render time (see [Timing](Self#timing)) and drops snapshots the render time
    /// has passed, keeping the one just before it.
    pub fn sample(&mut self, now: Instant) -> Option<Sample<T>> {
        let local = self.local_seconds(now)?;
        self.advance_render_offset(local);
        let render_time = local + self.render_offset;
        let render_tick = render_time * self.config.tick_rate_hz;

        let after = self
            .snapshots
            .partition_point(|(tick, _)| (*tick as f64) <= render_tick);
        let (state, kind) = if after == 0 {
            // Non-empty: `local_seconds` returned Some, so a snapshot was pushed, and pruning
            // always keeps at least one.
            let (_, oldest) = self.snapshots.front()?;
            (oldest.clone(), SampleKind::BeforeFirst)
        } else if after < self.snapshots.len() {
            let (t0, a) = &self.snapshots[after - 1];
            let (t1, b) = &self.snapshots[after];
            let t = ((render_tick - *t0 as f64) / (t1 - t0) as f64) as f32;
            (
                a.interpolate_over(b, t, self.span(*t0, *t1)),
                SampleKind::Interpolated,
            )
        } else {
            self.beyond_newest(render_tick)
        };

        // Keep the snapshot just before the render time, and two for extrapolation.
        let keep_from = after
            .saturating_sub(1)
            .min(self.snapshots.len().saturating_sub(2));
        if keep_from > 0 {
            self.snapshots.drain(..keep_from);
            if let Some((oldest, _)) = self.snapshots.front() {
                self.floor = self.floor.max(*oldest);
            }
        }

        Some(Sample {
            state,
            render_tick,
            kind,
        })
    }

    /// The interpolation delay in effect: how far behind the estimated server time the render
    /// time is. Before the first snapshot, the delay that the configured minimum and a snapshot
    /// every tick would give.
    pub fn delay(&self) -> Duration {
        if self.epoch.is_none() {
            return self.target_delay();
        }
        Duration::from_secs_f64((self.offset - self.render_offset).max(0.0))
    }

    /// The delay the buffer is moving towards, from the measured interval and jitter.
    pub fn target_delay(&self) -> Duration {
        let wanted = (f64::from(self.config.lost_snapshots) + 1.0) * self.interval_ticks as f64
            / self.config.tick_rate_hz
            + self.config.jitter_factor * self.jitter;
        Duration::from_secs_f64(wanted.max(0.0)).clamp(self.config.min_delay, self.config.max_delay)
    }

    /// The measured time between snapshots: the smallest tick gap among those held.
    pub fn snapshot_interval(&self) -> Duration {
        Duration::from_secs_f64(self.interval_ticks as f64 / self.config.tick_rate_hz)
    }

    /// The measured jitter: smoothed mean absolute deviation of arrival times.
    pub fn jitter(&self) -> Duration {
        Duration::from_secs_f64(self.jitter)
    }

    /// The newest tick held.
    pub fn newest_tick(&self) -> Option<u64> {
        self.snapshots.back().map(|(tick, _)| *tick)
    }

    /// Snapshots held.
    pub fn len(&self) -> usize {
        self.snapshots.len()
    }

    /// Whether no snapshot is held.
    pub fn is_empty(&self) -> bool {
        self.snapshots.is_empty()
    }

    /// The configuration.
    pub fn config(&self) -> &BufferConfig {
        &self.config
    }

    /// The render time is past the newest snapshot: extrapolate from the last two for at most
    /// the cap, then hold.
    fn beyond_newest(&self, render_tick: f64) -> (T, SampleKind) {
        let len = self.snapshots.len();
        let (t1, newest) = &self.snapshots[len - 1];
        if len < 2 {
            return (newest.clone(), SampleKind::Held);
        }
        let (t0, previous) = &self.snapshots[len - 2];
        let cap_ticks = self.config.extrapolation_cap.as_secs_f64() * self.config.tick_rate_hz;
        let ahead = render_tick - *t1 as f64;
        let kind = if ahead <= cap_ticks {
            SampleKind::Extrapolated
        } else {
            SampleKind::Held
        };
        let t = 1.0 + (ahead.min(cap_ticks) / (t1 - t0) as f64) as f32;
        (
            previous.interpolate_over(newest, t, self.span(*t0, *t1)),
            kind,
        )
    }

    fn span(&self, from: u64, to: u64) -> Duration {
        Duration::from_secs_f64((to - from) as f64 / self.config.tick_rate_hz)
    }

    /// Seconds since the first push; `None` before it.
    fn local_seconds(&self, now: Instant) -> Option<f64> {
        Some(now.saturating_duration_since(self.epoch?).as_secs_f64())
    }

    /// Updates the offset and jitter estimates with one arrival.
    fn measure_arrival(&mut self, server_tick: u64, now: Instant) {
        let server_time = server_tick as f64 / self.config.tick_rate_hz;
        let Some(epoch) = self.epoch else {
            self.epoch = Some(now);
            self.offset = server_time;
            self.render_offset = self.offset - self.target_delay().as_secs_f64();
            return;
        };
        let local = now.saturating_duration_since(epoch).as_secs_f64();
        // One wildly late snapshot (a queue flushed after a stall) moves the estimates by a
        // bounded amount.
        let limit = self.config.max_delay.as_secs_f64();
        let deviation = (server_time - local - self.offset).clamp(-limit, limit);
        self.jitter += SMOOTHING * (deviation.abs() - self.jitter);
        self.offset += SMOOTHING * deviation;
    }

    /// The smallest tick gap between held snapshots, robust to loss.
    fn measure_interval(&mut self) {
        let smallest = self
            .snapshots
            .iter()
            .zip(self.snapshots.iter().skip(1))
            .map(|((a, _), (b, _))| b - a)
            .min();
        if let Some(gap) = smallest {
            self.interval_ticks = gap;
        }
    }

    /// Moves the render offset towards `offset − target_delay`, at most `max_time_warp` of the
    /// time since the last sample, or at once past the snap threshold.
    fn advance_render_offset(&mut self, local: f64) {
        let wanted = self.offset - self.target_delay().as_secs_f64();
        let error = wanted - self.render_offset;
        let elapsed = self.last_sample.map_or(0.0, |last| (local - last).max(0.0));
        self.last_sample = Some(self.last_sample.map_or(local, |last| last.max(local)));
        if error.abs() > self.config.snap_threshold.as_secs_f64() {
            self.render_offset = wanted;
            return;
        }
        let step = self.config.max_time_warp * elapsed;
        self.render_offset += error.clamp(-step, step);
    }
}

/// Weight of each arrival in the smoothed offset and jitter: about 16 snapshots of memory.
const SMOOTHING: f64 = 1.0 / 16.0;

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    const TICK: f64 = 1.0 / 60.0;
    /// Metres per tick of the test motion (6 m/s at 60 Hz).
    const SPEED: f32 = 0.1;

    fn at(base: Instant, secs: f64) -> Instant {
        base + Duration::from_secs_f64(secs)
    }

    fn buffer() -> SnapshotBuffer<f32> {
        SnapshotBuffer::new(BufferConfig::default()).unwrap()
    }

    /// Arrival times in seconds of snapshots sent every `every` ticks for `seconds`, with one-way
    /// delay `delay ± jitter`, skipping those `lost` says, sorted by arrival.
    fn arrivals(
        seconds: f64,
        every: u64,
        delay: f64,
        jitter: f64,
        seed: u64,
        lost: impl Fn(u64) -> bool,
    ) -> Vec<(f64, u64)> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut out: Vec<(f64, u64)> = (0..(seconds / TICK) as u64)
            .step_by(every as usize)
            .map(|tick| {
                (
                    tick as f64 * TICK + delay + rng.random_range(-jitter..=jitter),
                    tick,
                )
            })
            .filter(|(_, tick)| !lost(*tick))
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }

    /// Plays `arrivals` into `buffer` while rendering at `fps`; returns every frame after
    /// `warmup` seconds with its time.
    fn play(
        buffer: &mut SnapshotBuffer<f32>,
        arrivals: &[(f64, u64)],
        seconds: f64,
        fps: f64,
        warmup: f64,
    ) -> Vec<(f64, Sample<f32>)> {
        let base = Instant::now();
        let mut next = arrivals.iter().peekable();
        let mut frames = Vec::new();
        for frame in 0..(seconds * fps) as u64 {
            let time = frame as f64 / fps;
            while let Some(&&(arrival, tick)) = next.peek() {
                if arrival > time {
                    break;
                }
                buffer.push(tick, tick as f32 * SPEED, at(base, arrival));
                next.next();
            }
            if let Some(sample) = buffer.sample(at(base, time)) {
                if time >= warmup {
                    frames.push((time, sample));
                }
            }
        }
        frames
    }

    #[test]
    fn rides_out_jitter_and_two_lost_in_a_row() {
        let mut buffer = buffer();
        // 50 ± 20 ms one way, and twice a second two snapshots in a row lost.
        let arrivals = arrivals(10.0, 1, 0.05, 0.02, 11, |tick| {
            tick % 30 == 10 || tick % 30 == 11
        });
        let frames = play(&mut buffer, &arrivals, 10.0, 144.0, 2.0);
        let hitches = frames.iter().filter(|(_, s)| s.is_hitch()).count();
        assert_eq!(hitches, 0, "of {} frames", frames.len());
        for pair in frames.windows(2) {
            let ((t0, a), (t1, b)) = (&pair[0], &pair[1]);
            let advanced = (b.render_tick - a.render_tick) * TICK;
            let elapsed = t1 - t0;
            assert!(
                advanced >= elapsed * 0.9 - 1e-9 && advanced <= elapsed * 1.1 + 1e-9,
                "render time advanced {advanced} in {elapsed}"
            );
        }
        for (_, sample) in &frames {
            // Linear motion is reconstructed exactly by linear interpolation.
            let truth = sample.render_tick as f32 * SPEED;
            assert!(
                (sample.state - truth).abs() < 1e-3,
                "{} vs {truth}",
                sample.state
            );
        }
        let delay = buffer.delay().as_secs_f64();
        assert!((0.05..0.15).contains(&delay), "delay {delay}");
        assert!(buffer.len() <= 16, "held {}", buffer.len());
    }

    /// Profile D of the snapshot benchmark: 300 ± 75 ms one way, 6 % loss, 60 Hz. Only the
    /// snapshots newer than any before are pushed (as `SnapshotClient::receive` reports them);
    /// the overtaken ones are recorded as arrivals. The delay must cover the jitter and two
    /// lost snapshots: hardly any frame lacks a pair.
    #[test]
    fn covers_the_jitter_of_a_long_reordering_path() {
        let mut buffer = buffer();
        // A fixed pseudo-random 6 % of ticks lost.
        let lost = |tick: u64| (tick.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) % 100 < 6;
        let arrivals = arrivals(20.0, 1, 0.3, 0.075, 4, lost);
        let base = Instant::now();
        let mut next = arrivals.iter().peekable();
        let mut newest: Option<u64> = None;
        let (mut frames, mut hitches) = (0u32, 0u32);
        for frame in 0..(20.0 * 60.0) as u64 {
            let time = frame as f64 / 60.0;
            while let Some(&&(arrival, tick)) = next.peek() {
                if arrival > time {
                    break;
                }
                if newest.is_none_or(|n| tick > n) {
                    newest = Some(tick);
                    buffer.push(tick, tick as f32 * SPEED, at(base, arrival));
                } else {
                    buffer.record_arrival(tick, at(base, arrival));
                }
                next.next();
            }
            if let Some(sample) = buffer.sample(at(base, time)) {
                if time >= 3.0 {
                    frames += 1;
                    hitches += u32::from(sample.is_hitch());
                }
            }
        }
        let delay = buffer.delay().as_secs_f64();
        // Uniform ±75 ms: mean absolute deviation 37.5 ms (more around a wandering mean), so
        // 50 ms plus three times that, and not much more.
        assert!((0.13..0.25).contains(&delay), "delay {delay}");
        assert!(
            f64::from(hitches) < 0.005 * f64::from(frames),
            "{hitches} hitches in {frames} frames"
        );
    }

    #[test]
    fn delay_follows_snapshot_rate_and_jitter() {
        let mut steady = buffer();
        play(
            &mut steady,
            &arrivals(5.0, 3, 0.05, 0.0, 1, |_| false),
            5.0,
            60.0,
            0.0,
        );
        assert_eq!(
            steady.snapshot_interval(),
            Duration::from_secs_f64(3.0 * TICK)
        );
        let delay = steady.delay().as_secs_f64();
        assert!((delay - 0.15).abs() < 0.002, "20 Hz: {delay}");

        let mut jittery = buffer();
        let arrivals = arrivals(5.0, 3, 0.05, 0.04, 2, |_| false);
        let frames = play(&mut jittery, &arrivals, 5.0, 60.0, 2.0);
        assert!(frames.iter().all(|(_, s)| !s.is_hitch()));
        let jitter = jittery.jitter().as_secs_f64();
        assert!((0.01..0.03).contains(&jitter), "jitter {jitter}");
        let delay = jittery.delay().as_secs_f64();
        assert!(delay > 0.15 + 2.0 * jitter, "jittery 20 Hz: {delay}");
        let target = jittery.target_delay().as_secs_f64();
        assert!((delay - target).abs() < 0.02, "{delay} vs {target}");
    }

    #[test]
    fn extrapolation_is_capped_then_held() {
        let mut buffer = buffer();
        let base = Instant::now();
        for tick in 0..=20u64 {
            buffer.push(tick, tick as f32 * SPEED, at(base, tick as f64 * TICK));
        }
        // The newest tick (20) is rendered 50 ms after it arrived, then extrapolated for 100 ms.
        let newest_rendered_at = 20.0 * TICK + 0.05;
        let mut last_extrapolated = 0.0f32;
        for frame in 0..60 {
            let time = 20.0 * TICK + frame as f64 * 0.005;
            let sample = buffer.sample(at(base, time)).unwrap();
            let ahead = time - newest_rendered_at;
            match sample.kind {
                SampleKind::Interpolated => assert!(ahead <= 1e-9, "at {ahead}"),
                SampleKind::Extrapolated => {
                    assert!(ahead > -1e-9 && ahead <= 0.1 + 1e-9, "at {ahead}");
                    let truth = sample.render_tick as f32 * SPEED;
                    assert!((sample.state - truth).abs() < 1e-3);
                    last_extrapolated = sample.state;
                }
                SampleKind::Held => {
                    assert!(ahead > 0.1 - 1e-9, "at {ahead}");
                    // Frozen where extrapolation stopped: tick 26 (100 ms past 20).
                    assert!(
                        (sample.state - 26.0 * SPEED).abs() < 1e-3,
                        "{}",
                        sample.state
                    );
                }
                SampleKind::BeforeFirst => panic!("before first at {ahead}"),
            }
        }
        assert!(last_extrapolated > 25.0 * SPEED);
        assert_eq!(buffer.len(), 2);
    }

    #[test]
    fn reordered_and_duplicate_pushes() {
        let mut buffer = buffer();
        let base = Instant::now();
        let now = at(base, 0.0);
        assert_eq!(buffer.push(10, 10.0, now), PushOutcome::Inserted);
        assert_eq!(buffer.push(12, 12.0, now), PushOutcome::Inserted);
        assert_eq!(buffer.push(11, 11.0, now), PushOutcome::Inserted);
        assert_eq!(buffer.push(11, -1.0, now), PushOutcome::Duplicate);
        assert_eq!(buffer.push(9, 9.0, now), PushOutcome::Inserted);
        assert_eq!(buffer.newest_tick(), Some(12));
        assert_eq!(buffer.len(), 4);
        // Render time starts 3 ticks (50 ms) before tick 10; 70 ms later it is between ticks 11
        // and 12 (the slewing towards the grown delay moves it by at most 7 ms).
        let sample = buffer.sample(at(base, 0.07)).unwrap();
        assert_eq!(sample.kind, SampleKind::Interpolated);
        assert!(
            (11.0..12.0).contains(&sample.render_tick),
            "{}",
            sample.render_tick
        );
        assert!((sample.state - sample.render_tick as f32).abs() < 1e-4);
        // Ticks 9 and 10 were dropped as passed, so late copies are refused.
        assert_eq!(buffer.len(), 2);
        assert_eq!(buffer.push(10, 10.0, at(base, 0.07)), PushOutcome::TooOld);
        // A late tick still ahead of the render time is taken.
        assert_eq!(buffer.push(13, 13.0, at(base, 0.07)), PushOutcome::Inserted);
    }

    #[test]
    fn capacity_is_bounded() {
        let config = BufferConfig {
            capacity: 4,
            ..BufferConfig::default()
        };
        let mut buffer = SnapshotBuffer::new(config).unwrap();
        let now = Instant::now();
        for tick in 0..10u64 {
            assert_eq!(buffer.push(tick, 0.0, now), PushOutcome::Inserted);
        }
        assert_eq!(buffer.len(), 4);
        assert_eq!(buffer.push(2, 0.0, now), PushOutcome::TooOld);
        assert_eq!(buffer.newest_tick(), Some(9));
    }

    #[test]
    fn before_first_then_filling() {
        let mut buffer = buffer();
        let base = Instant::now();
        assert!(buffer.sample(base).is_none());
        assert_eq!(buffer.delay(), Duration::from_millis(50));
        buffer.push(100, 1.0, base);
        let sample = buffer.sample(base).unwrap();
        assert_eq!(sample.kind, SampleKind::BeforeFirst);
        assert_eq!(sample.state, 1.0);
        // With one snapshot and the render time past it, it is held.
        let sample = buffer.sample(at(base, 0.1)).unwrap();
        assert_eq!(sample.kind, SampleKind::Held);
        assert_eq!(sample.state, 1.0);
    }

    #[test]
    fn rejects_bad_config() {
        let bad = |f: fn(&mut BufferConfig)| {
            let mut c = BufferConfig::default();
            f(&mut c);
            SnapshotBuffer::<f32>::new(c).unwrap_err()
        };
        assert_eq!(
            bad(|c| c.tick_rate_hz = f64::INFINITY),
            BufferConfigError::TickRate
        );
        assert_eq!(
            bad(|c| c.min_delay = Duration::from_secs(2)),
            BufferConfigError::DelayBounds
        );
        assert_eq!(
            bad(|c| c.jitter_factor = -1.0),
            BufferConfigError::JitterFactor
        );
        assert_eq!(bad(|c| c.capacity = 1), BufferConfigError::Capacity);
        assert_eq!(bad(|c| c.max_time_warp = 1.0), BufferConfigError::TimeWarp);
    }
}
