//! A snapshot bandwidth budget driven by the measured path: [`RateController`] turns round-trip
//! time and loss samples into bytes per second for
//! [`SnapshotServer::set_bandwidth`](super::SnapshotServer::set_bandwidth).
//!
//! Snapshots are real-time traffic: nothing is resent, so a budget above what the path carries
//! does not slow delivery down, it fills the bottleneck's queue (every snapshot arrives later)
//! and then drops them (every snapshot lost costs a baseline). The controller is a small
//! delay- and loss-based AIMD loop:
//!
//! - **Congestion** is a round-trip time above `min_rtt × rtt_inflation + rtt_slack` (a queue
//!   is building), or a loss rate above `loss_threshold` (random loss below it, as on Wi-Fi,
//!   is not taken for congestion). On congestion the rate is multiplied by `decrease`, at most
//!   once per round trip, so one episode is one cut.
//! - **Otherwise** the rate grows by `increase` of itself per round trip, up to
//!   `max_bytes_per_second`, but never beyond `headroom` times what the connection actually
//!   sent (when that is known): a budget that calm snapshots leave unused would otherwise grow
//!   without test, and the next burst of changes would flood the bottleneck.
//!
//! Sans-I/O like the rest of the core: the caller passes every sample with its `now`, taken
//! from [`ConnectionStats`](crate::ConnectionStats) (see [`LinkSample::from_stats`]) or from any
//! other estimate.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use tickwire::snapshot::{LinkSample, RateConfig, RateController};
//!
//! let mut rate = RateController::new(RateConfig::default())?;
//! let start = Instant::now(); // in a real server, the tick's time
//! let calm = LinkSample {
//!     rtt: Duration::from_millis(100),
//!     min_rtt: Duration::from_millis(100),
//!     loss_rate: 0.0,
//!     sent_bytes_per_second: 0, // unknown: no application limit
//! };
//! let queued = LinkSample { rtt: Duration::from_millis(400), ..calm };
//! for tick in 0..60u32 {
//!     rate.handle_sample(start + Duration::from_millis(100) * tick, calm);
//! }
//! let grown = rate.bytes_per_second();
//! assert!(grown > RateConfig::default().initial_bytes_per_second);
//! rate.handle_sample(start + Duration::from_secs(7), queued);
//! assert!(rate.bytes_per_second() < grown);
//! # Ok::<(), tickwire::snapshot::RateConfigError>(())
//! ```

use std::time::{Duration, Instant};

use thiserror::Error;

use crate::ConnectionStats;

/// Settings of a [`RateController`]; checked by [`RateController::new`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateConfig {
    /// Starting budget, bytes per second. Default 32,000 (256 kbps).
    pub initial_bytes_per_second: u32,
    /// The budget never goes below this, whatever the path does. Default 2,000 (16 kbps):
    /// enough for header-only snapshots and a trickle of changes.
    pub min_bytes_per_second: u32,
    /// The budget never goes above this. Default 250,000 (2 Mbps).
    pub max_bytes_per_second: u32,
    /// Loss rate (0 to 1) above which loss counts as congestion. Default 0.1: the random loss
    /// of a poor wireless link (a few percent) is not a reason to send less.
    pub loss_threshold: f64,
    /// A smoothed round-trip time above `min_rtt × rtt_inflation + rtt_slack` counts as a
    /// queue building up. Default 1.5.
    pub rtt_inflation: f64,
    /// Absolute margin of the delay test, so that jitter on a short path is no congestion.
    /// Default 20 ms.
    pub rtt_slack: Duration,
    /// Factor applied to the budget on congestion, in (0, 1). Default 0.7.
    pub decrease: f64,
    /// Growth per round trip without congestion, as a fraction of the budget, in (0, 1].
    /// Default 0.05 (doubling in about 14 round trips).
    pub increase: f64,
    /// The budget stays below this multiple of the bytes per second the connection sent
    /// ([`LinkSample::sent_bytes_per_second`], when not 0), at least 1. Default 1.5: room for
    /// a burst half again as large as what was tested.
    pub headroom: f64,
}

impl Default for RateConfig {
    fn default() -> Self {
        Self {
            initial_bytes_per_second: 32_000,
            min_bytes_per_second: 2_000,
            max_bytes_per_second: 250_000,
            loss_threshold: 0.1,
            rtt_inflation: 1.5,
            rtt_slack: Duration::from_millis(20),
            decrease: 0.7,
            increase: 0.05,
            headroom: 1.5,
        }
    }
}

/// Why a [`RateConfig`] was refused.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq, Hash)]
pub enum RateConfigError {
    /// `min_bytes_per_second` was 0 or above `max_bytes_per_second`, or the initial rate was
    /// outside them.
    #[error("need 0 < min_bytes_per_second <= initial_bytes_per_second <= max_bytes_per_second")]
    Bounds,
    /// `loss_threshold` was outside [0, 1].
    #[error("loss_threshold must be in [0, 1]")]
    LossThreshold,
    /// `rtt_inflation` was below 1 or not finite.
    #[error("rtt_inflation must be finite and at least 1")]
    RttInflation,
    /// `decrease` was outside (0, 1).
    #[error("decrease must be in (0, 1)")]
    Decrease,
    /// `increase` was outside (0, 1].
    #[error("increase must be in (0, 1]")]
    Increase,
    /// `headroom` was below 1 or not finite.
    #[error("headroom must be finite and at least 1")]
    Headroom,
}

/// One measurement of the path, as the transport sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkSample {
    /// Smoothed round-trip time.
    pub rtt: Duration,
    /// Smallest round-trip time seen: the path without queueing.
    pub min_rtt: Duration,
    /// Share of packets lost recently, 0 to 1.
    pub loss_rate: f64,
    /// Bytes per second the connection sent recently (all traffic); 0 if unknown.
    pub sent_bytes_per_second: u64,
}

impl LinkSample {
    /// The sample a connection's statistics give (`rtt`, `min_rtt`, `loss_rate`,
    /// `send_bytes_per_sec`).
    pub fn from_stats(stats: &ConnectionStats) -> Self {
        Self {
            rtt: stats.rtt,
            min_rtt: stats.min_rtt,
            loss_rate: stats.loss_rate,
            sent_bytes_per_second: stats.send_bytes_per_sec,
        }
    }
}

/// A per-client snapshot budget from measured RTT and loss (the loop is described in the
/// source of `snapshot/rate.rs`: delay- and loss-based AIMD, application-limited growth).
///
/// Feed it with [`handle_sample`](Self::handle_sample) (every snapshot tick, or whenever new
/// statistics are at hand) and hand [`bytes_per_second`](Self::bytes_per_second) to
/// [`SnapshotServer::set_bandwidth`](super::SnapshotServer::set_bandwidth).
#[derive(Clone, Debug)]
pub struct RateController {
    config: RateConfig,
    rate: f64,
    /// When the rate was last cut; no second cut within a round trip of it.
    last_decrease: Option<Instant>,
    /// The time of the previous sample, for the growth since then.
    last_sample: Option<Instant>,
    congested: bool,
}

impl RateController {
    /// A controller at `initial_bytes_per_second`.
    pub fn new(config: RateConfig) -> Result<Self, RateConfigError> {
        if config.min_bytes_per_second == 0
            || config.min_bytes_per_second > config.initial_bytes_per_second
            || config.initial_bytes_per_second > config.max_bytes_per_second
        {
            return Err(RateConfigError::Bounds);
        }
        if !(0.0..=1.0).contains(&config.loss_threshold) {
            return Err(RateConfigError::LossThreshold);
        }
        if !(config.rtt_inflation.is_finite() && config.rtt_inflation >= 1.0) {
            return Err(RateConfigError::RttInflation);
        }
        if !(config.decrease > 0.0 && config.decrease < 1.0) {
            return Err(RateConfigError::Decrease);
        }
        if !(config.increase > 0.0 && config.increase <= 1.0) {
            return Err(RateConfigError::Increase);
        }
        if !(config.headroom.is_finite() && config.headroom >= 1.0) {
            return Err(RateConfigError::Headroom);
        }
        Ok(Self {
            config,
            rate: f64::from(config.initial_bytes_per_second),
            last_decrease: None,
            last_sample: None,
            congested: false,
        })
    }

    /// Takes in one measurement of the path at `now`.
    pub fn handle_sample(&mut self, now: Instant, sample: LinkSample) {
        let config = &self.config;
        let rtt = sample.rtt.max(Duration::from_millis(1));
        let elapsed = self
            .last_sample
            .map_or(Duration::ZERO, |last| now.saturating_duration_since(last));
        self.last_sample = Some(self.last_sample.map_or(now, |last| last.max(now)));

        let queueing = sample.rtt.as_secs_f64()
            > sample.min_rtt.as_secs_f64() * config.rtt_inflation + config.rtt_slack.as_secs_f64();
        let lossy = sample.loss_rate.is_finite() && sample.loss_rate > config.loss_threshold;
        self.congested = queueing || lossy;
        if self.congested {
            let cut_recently = self
                .last_decrease
                .is_some_and(|at| now.saturating_duration_since(at) < rtt);
            if !cut_recently {
                self.rate *= config.decrease;
                self.last_decrease = Some(now);
            }
        } else {
            // Growth proportional to the round trips elapsed (at most one per sample, so a
            // long silence does not jump the rate).
            let round_trips = (elapsed.as_secs_f64() / rtt.as_secs_f64()).min(1.0);
            let grown = self.rate * (1.0 + config.increase * round_trips);
            // Application-limited: no more than `headroom` times what was sent.
            self.rate = if sample.sent_bytes_per_second > 0 {
                grown.min(sample.sent_bytes_per_second as f64 * config.headroom)
            } else {
                grown
            };
        }
        self.rate = self.rate.clamp(
            f64::from(config.min_bytes_per_second),
            f64::from(config.max_bytes_per_second),
        );
    }

    /// The budget, bytes per second.
    pub fn bytes_per_second(&self) -> u32 {
        // Clamped to the configured u32 bounds.
        self.rate.round() as u32
    }

    /// Whether the last sample looked like congestion (queueing delay or heavy loss).
    pub fn is_congested(&self) -> bool {
        self.congested
    }

    /// The configuration.
    pub fn config(&self) -> &RateConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rtt_ms: u64, loss: f64) -> LinkSample {
        LinkSample {
            rtt: Duration::from_millis(rtt_ms),
            min_rtt: Duration::from_millis(100),
            loss_rate: loss,
            sent_bytes_per_second: 0,
        }
    }

    #[test]
    fn grows_on_a_clean_path_up_to_the_maximum() {
        let mut rate = RateController::new(RateConfig::default()).unwrap();
        let start = Instant::now();
        for i in 0..2_000u32 {
            rate.handle_sample(start + Duration::from_millis(16) * i, sample(100, 0.0));
        }
        assert_eq!(rate.bytes_per_second(), 250_000);
        assert!(!rate.is_congested());
    }

    #[test]
    fn an_unused_budget_does_not_grow_past_the_headroom() {
        let mut rate = RateController::new(RateConfig::default()).unwrap();
        let start = Instant::now();
        let app_limited = LinkSample {
            sent_bytes_per_second: 10_000,
            ..sample(100, 0.0)
        };
        for i in 0..1_000u32 {
            rate.handle_sample(start + Duration::from_millis(16) * i, app_limited);
        }
        assert_eq!(rate.bytes_per_second(), 15_000);
    }

    #[test]
    fn random_loss_below_the_threshold_is_not_congestion() {
        let mut rate = RateController::new(RateConfig::default()).unwrap();
        let start = Instant::now();
        rate.handle_sample(start, sample(110, 0.06));
        assert!(!rate.is_congested());
        rate.handle_sample(start + Duration::from_millis(100), sample(110, 0.06));
        assert!(rate.bytes_per_second() > 32_000);
    }

    #[test]
    fn queueing_cuts_once_per_round_trip() {
        let mut rate = RateController::new(RateConfig::default()).unwrap();
        let start = Instant::now();
        // Ten samples within one 300 ms round trip: one cut.
        for i in 0..10u32 {
            rate.handle_sample(start + Duration::from_millis(16) * i, sample(300, 0.0));
        }
        assert!(rate.is_congested());
        assert_eq!(rate.bytes_per_second(), 22_400);
        // Still congested a round trip later: a second cut.
        rate.handle_sample(start + Duration::from_millis(400), sample(300, 0.0));
        assert_eq!(rate.bytes_per_second(), 15_680);
        // Heavy loss is congestion too; the floor holds.
        for i in 0..100u32 {
            rate.handle_sample(start + Duration::from_secs(1) * (i + 1), sample(100, 0.5));
        }
        assert_eq!(rate.bytes_per_second(), 2_000);
    }

    #[test]
    fn rejects_bad_config() {
        let bad = |f: fn(&mut RateConfig)| {
            let mut c = RateConfig::default();
            f(&mut c);
            RateController::new(c).unwrap_err()
        };
        assert_eq!(bad(|c| c.min_bytes_per_second = 0), RateConfigError::Bounds);
        assert_eq!(
            bad(|c| c.initial_bytes_per_second = 1_000_000),
            RateConfigError::Bounds
        );
        assert_eq!(
            bad(|c| c.loss_threshold = 2.0),
            RateConfigError::LossThreshold
        );
        assert_eq!(
            bad(|c| c.rtt_inflation = 0.5),
            RateConfigError::RttInflation
        );
        assert_eq!(bad(|c| c.decrease = 1.0), RateConfigError::Decrease);
        assert_eq!(bad(|c| c.increase = 0.0), RateConfigError::Increase);
        assert_eq!(bad(|c| c.headroom = 0.5), RateConfigError::Headroom);
    }
}
