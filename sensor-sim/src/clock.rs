//! Time: the wall clock, a simulated device clock with offset and drift, and the hub's
//! estimate of each sensor's clock from NTP-style pings.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

/// The hub's (and the simulation's true) clock: microseconds since the Unix epoch.
pub fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Whole seconds since the Unix epoch by the system clock (for connect tokens); `None` if the
/// clock reads before 1970.
pub fn unix_seconds() -> Option<u64> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// A simulated device clock: `device = true + offset + drift * (true - origin)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeviceClock {
    /// Offset from true time at `origin_us`, in microseconds.
    pub offset_us: i64,
    /// Rate error in parts per million (positive: the device clock runs fast).
    pub drift_ppm: f64,
    /// The true time at which the offset is `offset_us`, microseconds since the Unix epoch.
    pub origin_us: i64,
}

impl DeviceClock {
    /// The device's reading at true time `true_us`.
    pub fn device_at(&self, true_us: i64) -> i64 {
        let elapsed = (true_us - self.origin_us) as f64;
        true_us + self.offset_us + (elapsed * self.drift_ppm * 1e-6).round() as i64
    }

    /// The true time at which the device read `device_us` (the inverse of
    /// [`device_at`](Self::device_at)).
    pub fn true_at(&self, device_us: i64) -> i64 {
        let rate = 1.0 + self.drift_ppm * 1e-6;
        let since = (device_us - self.offset_us - self.origin_us) as f64;
        self.origin_us + (since / rate).round() as i64
    }

    /// The device clock minus true time at true time `true_us`, in microseconds.
    pub fn offset_at(&self, true_us: i64) -> i64 {
        self.device_at(true_us) - true_us
    }
}

/// One ping's result: when (hub time), the offset it measured, and its round trip.
#[derive(Clone, Copy, Debug)]
struct Sample {
    hub_us: i64,
    offset_us: f64,
    rtt_us: i64,
}

/// The hub's estimate of one sensor's clock: offset (device minus hub) and drift, fitted to
/// the samples with the shortest round trips (those whose one-way delays are most alike).
#[derive(Clone, Debug, Default)]
pub struct ClockEstimator {
    samples: VecDeque<Sample>,
    fit: Option<Fit>,
}

#[derive(Clone, Copy, Debug)]
struct Fit {
    ref_us: i64,
    offset_us: f64,
    drift_ppm: f64,
}

impl ClockEstimator {
    /// Adds a ping's four timestamps: hub send `t0`, device receive `t1`, device send `t2`,
    /// hub receive `t3`. Samples with a negative round trip (a broken reply) are ignored.
    pub fn add(&mut self, t0: i64, t1: i64, t2: i64, t3: i64) {
        let rtt_us = (t3 - t0) - (t2 - t1);
        if rtt_us < 0 {
            return;
        }
        let offset_us = ((t1 - t0) as f64 + (t2 - t3) as f64) / 2.0;
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample {
            hub_us: t0 + (t3 - t0) / 2,
            offset_us,
            rtt_us,
        });
        self.fit = self.refit();
    }

    /// How many samples are kept (at most 32, the latest).
    pub fn samples(&self) -> usize {
        self.samples.len()
    }

    /// The estimated offset (device minus hub) at hub time `hub_us`, in microseconds.
    pub fn offset_at(&self, hub_us: i64) -> Option<f64> {
        self.fit
            .map(|f| f.offset_us + f.drift_ppm * 1e-6 * (hub_us - f.ref_us) as f64)
    }

    /// The estimated drift in parts per million (0 until the samples span a few seconds).
    pub fn drift_ppm(&self) -> Option<f64> {
        self.fit.map(|f| f.drift_ppm)
    }

    /// The hub time at which the device read `device_us`; `None` before the first sample.
    pub fn correct(&self, device_us: i64) -> Option<i64> {
        // Solve hub = device - offset(hub), with offset(h) = a + b * (h - ref).
        let fit = self.fit?;
        let b = fit.drift_ppm * 1e-6;
        let since_ref = (device_us - fit.ref_us) as f64 - fit.offset_us;
        Some(fit.ref_us + (since_ref / (1.0 + b)).round() as i64)
    }

    /// The best (shortest) round trip seen, in microseconds.
    pub fn min_rtt_us(&self) -> Option<i64> {
        self.samples.iter().map(|s| s.rtt_us).min()
    }

    fn refit(&self) -> Option<Fit> {
        let min_rtt = self.min_rtt_us()?;
        let cutoff = min_rtt + (min_rtt / 2).max(GOOD_RTT_SLACK_US);
        let good: Vec<&Sample> = self.samples.iter().filter(|s| s.rtt_us <= cutoff).collect();
        let first = good.first()?.hub_us;
        let last = good.last()?.hub_us;
        let n = good.len() as f64;
        let mean_x = good.iter().map(|s| (s.hub_us - first) as f64).sum::<f64>() / n;
        let mean_y = good.iter().map(|s| s.offset_us).sum::<f64>() / n;
        let ref_us = first + mean_x.round() as i64;
        if good.len() < 4 || last - first < MIN_DRIFT_SPAN_US {
            return Some(Fit {
                ref_us,
                offset_us: mean_y,
                drift_ppm: 0.0,
            });
        }
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for s in &good {
            let dx = (s.hub_us - first) as f64 - mean_x;
            sxy += dx * (s.offset_us - mean_y);
            sxx += dx * dx;
        }
        let drift_ppm = if sxx > 0.0 {
            (sxy / sxx * 1e6).clamp(-MAX_DRIFT_PPM, MAX_DRIFT_PPM)
        } else {
            0.0
        };
        Some(Fit {
            ref_us,
            offset_us: mean_y,
            drift_ppm,
        })
    }
}

/// Samples kept per sensor.
const MAX_SAMPLES: usize = 32;
/// Samples whose round trip is within this much of the best one count as good.
const GOOD_RTT_SLACK_US: i64 = 2_000;
/// Drift is fitted only once the good samples span this long.
const MIN_DRIFT_SPAN_US: i64 = 5_000_000;
/// Fitted drift is clamped to this (real crystals stay within ±100 ppm).
const MAX_DRIFT_PPM: f64 = 500.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_clock_round_trips() {
        let clock = DeviceClock {
            offset_us: -4_200_000,
            drift_ppm: 37.5,
            origin_us: 1_700_000_000_000_000,
        };
        for t in [clock.origin_us, clock.origin_us + 3_600_000_000] {
            assert!((clock.true_at(clock.device_at(t)) - t).abs() <= 1);
        }
    }

    #[test]
    fn estimator_finds_offset_and_drift_despite_slow_replies() {
        let clock = DeviceClock {
            offset_us: 3_000_000,
            drift_ppm: -40.0,
            origin_us: 0,
        };
        let mut estimator = ClockEstimator::default();
        for i in 0..30i64 {
            let t0 = i * 1_000_000;
            // Every third reply is held up 30 ms on the way back (asymmetric), the rest are 1 ms each way.
            let back = if i % 3 == 0 { 30_000 } else { 1_000 };
            let t1 = clock.device_at(t0 + 1_000);
            let t2 = t1 + 50;
            let t3 = t0 + 1_000 + 50 + back;
            estimator.add(t0, t1, t2, t3);
        }
        let at = 29_000_000;
        let error = estimator.offset_at(at).unwrap() - clock.offset_at(at) as f64;
        assert!(error.abs() < 100.0, "offset error {error} µs");
        assert!((estimator.drift_ppm().unwrap() + 40.0).abs() < 5.0);
        let device = clock.device_at(at);
        assert!((estimator.correct(device).unwrap() - at).abs() < 100);
    }
}
