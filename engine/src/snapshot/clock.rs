//! Clock sync: [`ServerClock`] estimates the server's current tick from the ticks stamped on
//! received snapshots and the measured round-trip time, so that inputs can be stamped with the
//! tick at which they will reach the server.

use std::time::{Duration, Instant};

use thiserror::Error;

/// Settings of a [`ServerClock`]. Plain fields with safe defaults; checked by
/// [`ServerClock::new`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockConfig {
    /// Server ticks per second. Default 60.
    pub tick_rate_hz: f64,
    /// How much faster or slower than real time the estimate may run while correcting an
    /// error, as a fraction. Default 0.05 (±5 %): a 50 ms error is gone in about 1 s and the
    /// change of pace is hard to see. Larger corrects faster but makes inputs bunch up or thin
    /// out visibly. Must be in (0, 0.5].
    pub max_slew: f64,
    /// The time over which an error is corrected when it is small enough not to hit
    /// `max_slew`: the estimate runs at `1 + error / correction_time`. Default 1 s. Shorter
    /// follows the network's noise more closely; longer is smoother.
    pub correction_time: Duration,
    /// An error above this (for `snap_after` samples in a row) is fixed by jumping, not
    /// slewing: a server restart, a long stall, a wrong first sample. Default 250 ms, which
    /// slewing would take 5 s to remove. Single outliers above it are ignored.
    pub snap_threshold: Duration,
    /// Consecutive samples above `snap_threshold` before the estimate jumps. Default 3. Must be
    /// at least 1.
    pub snap_after: u32,
    /// Weight of each new sample in the smoothed error and RTT, in (0, 1]. Default 0.125, as in
    /// TCP's RTT estimator: about eight samples of memory.
    pub smoothing: f64,
    /// Safety margin added by [`ServerClock::input_tick`] so that inputs arrive before the
    /// server needs them despite jitter. Default 30 ms (two ticks at 60 Hz). Larger means fewer
    /// late inputs and more input latency.
    pub input_margin: Duration,
}

impl Default for ClockConfig {
    fn default() -> Self {
        Self {
            tick_rate_hz: 60.0,
            max_slew: 0.05,
            correction_time: Duration::from_secs(1),
            snap_threshold: Duration::from_millis(250),
            snap_after: 3,
            smoothing: 0.125,
            input_margin: Duration::from_millis(30),
        }
    }
}

/// Why a [`ClockConfig`] was refused.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq, Hash)]
pub enum ClockConfigError {
    /// `tick_rate_hz` was not a positive finite number.
    #[error("tick_rate_hz must be positive and finite")]
    TickRate,
    /// `max_slew` was outside (0, 0.5].
    #[error("max_slew must be in (0, 0.5]")]
    MaxSlew,
    /// `smoothing` was outside (0, 1].
    #[error("smoothing must be in (0, 1]")]
    Smoothing,
    /// `correction_time` was zero.
    #[error("correction_time must be positive")]
    CorrectionTime,
    /// `snap_after` was zero.
    #[error("snap_after must be at least 1")]
    SnapAfter,
}

/// An estimate of the server's current tick, kept smooth.
///
/// Feed it with [`handle_sample`](Self::handle_sample) for every snapshot received (the tick
/// the server stamped on it, when it arrived, and the connection's current RTT); read it with
/// [`estimate`](Self::estimate) and [`input_tick`](Self::input_tick). The estimate assumes the
/// snapshot took half the RTT to arrive.
///
/// The estimate runs at the tick rate, sped up or slowed down by at most
/// [`ClockConfig::max_slew`] to absorb the smoothed error, so it never jumps and never goes
/// backwards, except when the error stays above [`ClockConfig::snap_threshold`], where it jumps.
///
/// ```
/// use std::time::{Duration, Instant};
/// use tickwire::snapshot::{ClockConfig, ServerClock};
///
/// let mut clock = ServerClock::new(ClockConfig::default())?;
/// let start = Instant::now(); // in a real client: the time the snapshot arrived
/// let rtt = Duration::from_millis(100);
/// clock.handle_sample(600, start, rtt);
/// // 50 ms after sending tick 600 the server is 3 ticks further at 60 Hz.
/// assert_eq!(clock.estimate(start), Some(603.0));
/// let later = start + Duration::from_millis(500);
/// assert_eq!(clock.estimate(later), Some(633.0));
/// // An input sent now reaches the server 50 ms + 30 ms margin later.
/// assert_eq!(clock.input_tick(later), Some(638));
/// # Ok::<(), tickwire::snapshot::ClockConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ServerClock {
    config: ClockConfig,
    /// A point of the estimate's line, moved to each sample's arrival time.
    anchor: Option<Anchor>,
    /// The estimate's pace relative to the tick rate, in `[1 − max_slew, 1 + max_slew]`.
    rate: f64,
    /// Smoothed error still to absorb, in ticks (positive: the server is ahead of us).
    error: f64,
    /// Smoothed RTT, in seconds.
    srtt: f64,
    /// Consecutive samples whose error exceeded the snap threshold.
    outliers: u32,
    /// Times the estimate jumped, including the first sample.
    snaps: u64,
}

impl ServerClock {
    /// A clock with no samples yet.
    pub fn new(config: ClockConfig) -> Result<Self, ClockConfigError> {
        if !(config.tick_rate_hz.is_finite() && config.tick_rate_hz > 0.0) {
            return Err(ClockConfigError::TickRate);
        }
        if !(config.max_slew > 0.0 && config.max_slew <= 0.5) {
            return Err(ClockConfigError::MaxSlew);
        }
        if !(config.smoothing > 0.0 && config.smoothing <= 1.0) {
            return Err(ClockConfigError::Smoothing);
        }
        if config.correction_time.is_zero() {
            return Err(ClockConfigError::CorrectionTime);
        }
        if config.snap_after == 0 {
            return Err(ClockConfigError::SnapAfter);
        }
        Ok(Self {
            config,
            anchor: None,
            rate: 1.0,
            error: 0.0,
            srtt: 0.0,
            outliers: 0,
            snaps: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClockConfig {
        &self.config
    }

    /// Takes in one sample: a snapshot stamped `server_tick` by the server arrived at
    /// `received_at`, with the connection's RTT at that time.
    pub fn handle_sample(&mut self, server_tick: u64, received_at: Instant, rtt: Duration) {
        let rtt = rtt.as_secs_f64();
        let alpha = self.config.smoothing;
        let Some(anchor) = self.anchor else {
            self.srtt = rtt;
            self.snap(server_tick, received_at);
            return;
        };
        self.srtt += alpha * (rtt - self.srtt);

        // The correction applied since the anchor is no longer owed.
        let elapsed = seconds_between(anchor.at, received_at).max(0.0);
        self.error -= (self.rate - 1.0) * elapsed * self.config.tick_rate_hz;

        let estimate = anchor.tick_at(received_at, self.rate, self.config.tick_rate_hz);
        let measured = self.observed_tick(server_tick) - estimate;
        let threshold = self.config.snap_threshold.as_secs_f64() * self.config.tick_rate_hz;
        if measured.abs() > threshold {
            self.outliers += 1;
            if self.outliers >= self.config.snap_after {
                self.snap(server_tick, received_at);
            }
            return;
        }
        self.outliers = 0;
        self.error += alpha * (measured - self.error);

        if received_at > anchor.at {
            self.anchor = Some(Anchor {
                at: received_at,
                tick: estimate,
            });
        }
        let wanted =
            self.error / (self.config.correction_time.as_secs_f64() * self.config.tick_rate_hz);
        self.rate = 1.0 + wanted.clamp(-self.config.max_slew, self.config.max_slew);
    }

    /// The server's tick now, fractional; `None` before the first sample.
    pub fn estimate(&self, now: Instant) -> Option<f64> {
        let anchor = self.anchor?;
        Some(anchor.tick_at(now, self.rate, self.config.tick_rate_hz))
    }

    /// The tick to stamp on an input sent now: the tick the server will be at when it arrives
    /// (estimate + RTT/2 + [`ClockConfig::input_margin`]), rounded up. `None` before the first
    /// sample.
    pub fn input_tick(&self, now: Instant) -> Option<u64> {
        let ahead =
            (self.srtt / 2.0 + self.config.input_margin.as_secs_f64()) * self.config.tick_rate_hz;
        let tick = (self.estimate(now)? + ahead).ceil();
        // `as` saturates: a negative estimate stamps tick 0.
        Some(tick as u64)
    }

    /// Whether at least one sample has been taken in.
    pub fn is_synced(&self) -> bool {
        self.anchor.is_some()
    }

    /// The current pace relative to the tick rate: 1.0 when in sync, up to `1 ± max_slew`
    /// while correcting.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The smoothed error still being corrected, in ticks (positive: the estimate is behind).
    pub fn error(&self) -> f64 {
        self.error
    }

    /// The smoothed RTT; `None` before the first sample.
    pub fn rtt(&self) -> Option<Duration> {
        self.anchor.map(|_| Duration::from_secs_f64(self.srtt))
    }

    /// Times the estimate jumped instead of slewing, counting the first sample.
    pub fn snaps(&self) -> u64 {
        self.snaps
    }

    /// Where a sample says the server was when it arrived.
    fn observed_tick(&self, server_tick: u64) -> f64 {
        server_tick as f64 + self.srtt / 2.0 * self.config.tick_rate_hz
    }

    fn snap(&mut self, server_tick: u64, received_at: Instant) {
        self.anchor = Some(Anchor {
            at: received_at,
            tick: self.observed_tick(server_tick),
        });
        self.rate = 1.0;
        self.error = 0.0;
        self.outliers = 0;
        self.snaps += 1;
    }
}

/// A point on the estimate's line.
#[derive(Clone, Copy, Debug)]
struct Anchor {
    at: Instant,
    tick: f64,
}

impl Anchor {
    fn tick_at(&self, now: Instant, rate: f64, tick_rate_hz: f64) -> f64 {
        self.tick + seconds_between(self.at, now) * rate * tick_rate_hz
    }
}

/// `to − from` in seconds, negative when `to` is earlier.
fn seconds_between(from: Instant, to: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(d) => d.as_secs_f64(),
        None => -from.duration_since(to).as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    const TICK: f64 = 1.0 / 60.0;

    fn at(base: Instant, secs: f64) -> Instant {
        base + Duration::from_secs_f64(secs)
    }

    /// Runs a server whose tick 0 is at local time `-offset` seconds, sending every tick with
    /// one-way delays of `delay ± jitter` and reporting an RTT of twice `delay`. Calls `check`
    /// after every sample with the clock and the true tick at that moment.
    fn run(
        clock: &mut ServerClock,
        seconds: f64,
        offset: f64,
        delay: f64,
        jitter: f64,
        seed: u64,
        mut check: impl FnMut(&ServerClock, Instant, f64),
    ) {
        let base = Instant::now();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut arrivals: Vec<(f64, u64)> = (0..(seconds / TICK) as u64)
            .map(|tick| {
                let sent = tick as f64 * TICK - offset;
                (sent + delay + rng.random_range(-jitter..=jitter), tick)
            })
            .filter(|(arrival, _)| *arrival >= 0.0)
            .collect();
        arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
        let rtt = Duration::from_secs_f64(2.0 * delay);
        for (arrival, tick) in arrivals {
            let now = at(base, arrival);
            clock.handle_sample(tick, now, rtt);
            check(clock, now, (arrival + offset) / TICK);
        }
    }

    #[test]
    fn converges_under_jitter() {
        let mut clock = ServerClock::new(ClockConfig::default()).unwrap();
        let mut worst_late = 0.0f64;
        run(&mut clock, 20.0, 3.0, 0.05, 0.02, 7, |clock, now, truth| {
            if truth > (3.0 + 5.0) / TICK {
                let err = clock.estimate(now).unwrap() - truth;
                worst_late = worst_late.max(err.abs());
            }
        });
        assert!(worst_late < 0.6, "error {worst_late} ticks after 5 s");
        assert_eq!(clock.snaps(), 1);
        assert!((clock.rtt().unwrap().as_secs_f64() - 0.1).abs() < 1e-9);
    }

    #[test]
    fn slews_without_going_backwards() {
        let config = ClockConfig::default();
        let mut clock = ServerClock::new(config).unwrap();
        let base = Instant::now();
        let rtt = Duration::from_millis(100);
        // The first sample says 3 ticks (50 ms) less than the truth: the estimate catches up by
        // running fast.
        clock.handle_sample(100, base, rtt);
        let mut last = clock.estimate(base).unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        for frame in 1..600 {
            let now = at(base, frame as f64 * 0.01);
            if frame % 2 == 0 {
                // Truth: 6 ticks (100 ms) ahead of the first sample's view, ±1 tick of noise.
                let truth = 100.0 + 6.0 + frame as f64 * 0.01 / TICK;
                let stamped = truth - 3.0 + rng.random_range(-1.0..=1.0);
                clock.handle_sample(stamped as u64, now, rtt);
            }
            let estimate = clock.estimate(now).unwrap();
            let step = estimate - last;
            let nominal = 0.01 / TICK;
            assert!(step > 0.0, "went backwards at frame {frame}");
            assert!(
                step <= nominal * (1.0 + config.max_slew) + 1e-9
                    && step >= nominal * (1.0 - config.max_slew) - 1e-9,
                "step {step} at frame {frame}"
            );
            last = estimate;
        }
        assert_eq!(clock.snaps(), 1);
        let truth = 106.0 + 5.99 / TICK;
        assert!((last - truth).abs() < 1.5, "{last} vs {truth}");
    }

    #[test]
    fn snaps_on_a_large_offset_but_not_on_one_outlier() {
        let mut clock = ServerClock::new(ClockConfig::default()).unwrap();
        let base = Instant::now();
        let rtt = Duration::ZERO;
        for tick in 0..60u64 {
            clock.handle_sample(tick, at(base, tick as f64 * TICK), rtt);
        }
        // One sample 10 s off is ignored.
        clock.handle_sample(60 + 600, at(base, 60.0 * TICK), rtt);
        clock.handle_sample(60, at(base, 60.0 * TICK), rtt);
        assert_eq!(clock.snaps(), 1);
        assert!((clock.estimate(at(base, 1.0)).unwrap() - 60.0).abs() < 0.01);
        // The server restarts at tick 0: three samples later the estimate follows.
        for (i, tick) in (0..3u64).enumerate() {
            clock.handle_sample(tick, at(base, 1.0 + (i as f64 + 1.0) * TICK), rtt);
        }
        assert_eq!(clock.snaps(), 2);
        assert!((clock.estimate(at(base, 1.0 + 3.0 * TICK)).unwrap() - 2.0).abs() < 0.01);
        assert!((clock.rate() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn input_tick_leads_by_half_rtt_and_margin() {
        let config = ClockConfig {
            input_margin: Duration::ZERO,
            ..ClockConfig::default()
        };
        let mut clock = ServerClock::new(config).unwrap();
        let base = Instant::now();
        assert_eq!(clock.estimate(base), None);
        assert_eq!(clock.input_tick(base), None);
        clock.handle_sample(1000, base, Duration::from_millis(200));
        // Server at 1006 now; an input takes 100 ms (6 ticks) more.
        assert_eq!(clock.input_tick(base), Some(1012));
    }

    #[test]
    fn rejects_bad_config() {
        let bad = |f: fn(&mut ClockConfig)| {
            let mut c = ClockConfig::default();
            f(&mut c);
            ServerClock::new(c).unwrap_err()
        };
        assert_eq!(bad(|c| c.tick_rate_hz = 0.0), ClockConfigError::TickRate);
        assert_eq!(bad(|c| c.max_slew = 0.0), ClockConfigError::MaxSlew);
        assert_eq!(bad(|c| c.smoothing = f64::NAN), ClockConfigError::Smoothing);
        assert_eq!(
            bad(|c| c.correction_time = Duration::ZERO),
            ClockConfigError::CorrectionTime
        );
        assert_eq!(bad(|c| c.snap_after = 0), ClockConfigError::SnapAfter);
    }
}
