//! One direction of a simulated link: latency, jitter, loss, duplication,
//! reordering and a bandwidth cap, driven only by a seed and the `now` the
//! caller passes in.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use tickwire::sim::{LinkConditioner, LinkConfig};
//!
//! let config = LinkConfig { latency: Duration::from_millis(50), ..LinkConfig::default() };
//! let mut link = LinkConditioner::new(config, 7)?;
//! let t0 = Instant::now();
//! link.send(t0, 3, "hi!");
//! assert_eq!(link.poll(t0), None); // still in flight
//! assert_eq!(link.next_delivery(), Some(t0 + Duration::from_millis(50)));
//! assert_eq!(link.poll(t0 + Duration::from_millis(50)), Some("hi!"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// Conditions of one direction of a link. `Default` (same as [`LinkConfig::perfect`]) is a
/// perfect link: no delay, no loss, no duplication, no reordering, unlimited bandwidth.
///
/// Set fields with struct update syntax:
/// `LinkConfig { loss: 0.05, ..LinkConfig::default() }`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// One-way base latency added to every datagram. Default 0. At most [`LinkConfig::MAX_DELAY`].
    pub latency: Duration,
    /// Each datagram's delay is `latency` plus a uniform offset in `[-jitter, +jitter]`, clamped
    /// at zero. Default 0. At most [`LinkConfig::MAX_DELAY`]. Jitter alone can already reorder
    /// datagrams sent closer together than `2 * jitter`, as on real networks.
    pub jitter: Duration,
    /// Probability in `0.0..=1.0` that a datagram is lost, independently of all others.
    /// Default 0. `1.0` is a blackout.
    pub loss: f64,
    /// Bursty (Gilbert-Elliott) loss, applied in addition to `loss`. Default `None`.
    pub burst_loss: Option<BurstLoss>,
    /// Probability in `0.0..=1.0` that a datagram is delivered twice. The copy draws its own
    /// jitter and reorder roll, and costs no extra bandwidth. Default 0.
    pub duplicate: f64,
    /// Probability in `0.0..=1.0` that a datagram is held back by an extra `reorder_delay`, so
    /// that later ones overtake it. Default 0.
    pub reorder: f64,
    /// Extra delay for datagrams picked by `reorder`. Default 20 ms: longer than the gap between
    /// packets of a 60 Hz game, so a held-back datagram really is overtaken. At most
    /// [`LinkConfig::MAX_DELAY`].
    pub reorder_delay: Duration,
    /// Bottleneck capacity in bytes per second, at least 1. Datagrams serialise one after the
    /// other through a queue before latency is added. Default `None`: unlimited.
    pub bandwidth: Option<u64>,
    /// When `bandwidth` is set, a datagram is tail-dropped if more than this many bytes are
    /// still waiting ahead of it. Bigger queues drop less but add delay (bufferbloat).
    /// Default 256 KiB. Unused without `bandwidth`.
    pub queue_limit: usize,
}

/// Gilbert-Elliott bursty loss: a two-state (good/bad) Markov chain that takes one step per
/// sent datagram. The chain starts good. Mean burst length is `1 / leave_bad` datagrams; the
/// chain spends `enter_bad / (enter_bad + leave_bad)` of the time bad.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurstLoss {
    /// Probability in `0.0..=1.0` of moving from good to bad at a step.
    pub enter_bad: f64,
    /// Probability in `0.0..=1.0` of moving from bad back to good at a step.
    pub leave_bad: f64,
    /// Probability in `0.0..=1.0` that a datagram sent while bad is lost (`1.0` = classic Gilbert).
    pub loss_in_bad: f64,
}

/// Why a [`LinkConfig`] was rejected.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum LinkConfigError {
    /// A probability was NaN or outside `0.0..=1.0`.
    #[error("`{field}` must be a probability in 0..=1, got {value}")]
    Probability {
        /// The offending field, e.g. `"loss"` or `"burst_loss.enter_bad"`.
        field: &'static str,
        /// The value it had.
        value: f64,
    },
    /// A delay was longer than [`LinkConfig::MAX_DELAY`].
    #[error("`{field}` is {value:?}, longer than the one-hour limit")]
    DelayTooLong {
        /// The offending field: `"latency"`, `"jitter"` or `"reorder_delay"`.
        field: &'static str,
        /// The value it had.
        value: Duration,
    },
    /// `bandwidth` was `Some(0)`. For a link that carries nothing, set `loss` to `1.0`.
    #[error("`bandwidth` must be at least 1 byte per second")]
    ZeroBandwidth,
}

/// Counters of what a link did, since it was created.
///
/// `sent + duplicated == delivered + dropped_random + dropped_burst + dropped_queue + in_flight`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams passed to `send`.
    pub sent: u64,
    /// Datagrams returned by `poll`, duplicates included.
    pub delivered: u64,
    /// Datagrams lost to the independent `loss` probability.
    pub dropped_random: u64,
    /// Datagrams lost to `burst_loss`.
    pub dropped_burst: u64,
    /// Datagrams tail-dropped by the bandwidth queue (or, with absurd sizes, whose delivery
    /// time does not fit in an `Instant`).
    pub dropped_queue: u64,
    /// Extra copies made by `duplicate`.
    pub duplicated: u64,
    /// Copies held back by `reorder`.
    pub reordered: u64,
}

/// A seeded conditioner for one direction of a link, carrying payloads of type `T`
/// (for instance `(SocketAddr, Bytes)`).
///
/// Inputs are [`send`](Self::send) calls; outputs are drained with [`poll`](Self::poll) until it
/// returns `None`, then [`next_delivery`](Self::next_delivery) says when to poll again. All time
/// comes from the `now` arguments, virtual or real (`Instant::now()`), and must not go backwards.
/// All randomness comes from the seed: the same seed and the same calls give bit-identical
/// results (for a given version of tickwire and `rand`). Every datagram draws the same amount of
/// randomness whatever the config, so changing one knob does not reshuffle the others' outcomes.
#[derive(Debug, Clone)]
pub struct LinkConditioner<T> {
    config: LinkConfig,
    rng: StdRng,
    /// Scheduled payloads by `(delivery time, scheduling order)`; keys are unique.
    pending: BTreeMap<(Instant, u64), T>,
    next_seq: u64,
    link_free_at: Option<Instant>,
    burst_bad: bool,
    stats: LinkStats,
}

impl LinkConfig {
    /// The longest `latency`, `jitter` or `reorder_delay` accepted: one hour.
    pub const MAX_DELAY: Duration = Duration::from_secs(3600);

    /// A perfect link; the same as `LinkConfig::default()`.
    pub const fn perfect() -> Self {
        Self {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            burst_loss: None,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: DEFAULT_REORDER_DELAY,
            bandwidth: None,
            queue_limit: DEFAULT_QUEUE_LIMIT,
        }
    }

    /// Checks that probabilities are in `0.0..=1.0`, delays at most [`Self::MAX_DELAY`] and
    /// `bandwidth` non-zero.
    pub fn validate(&self) -> Result<(), LinkConfigError> {
        let mut probabilities = vec![
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
        ];
        if let Some(burst) = &self.burst_loss {
            probabilities.push(("burst_loss.enter_bad", burst.enter_bad));
            probabilities.push(("burst_loss.leave_bad", burst.leave_bad));
            probabilities.push(("burst_loss.loss_in_bad", burst.loss_in_bad));
        }
        for (field, value) in probabilities {
            if !(0.0..=1.0).contains(&value) {
                return Err(LinkConfigError::Probability { field, value });
            }
        }
        for (field, value) in [
            ("latency", self.latency),
            ("jitter", self.jitter),
            ("reorder_delay", self.reorder_delay),
        ] {
            if value > Self::MAX_DELAY {
                return Err(LinkConfigError::DelayTooLong { field, value });
            }
        }
        if self.bandwidth == Some(0) {
            return Err(LinkConfigError::ZeroBandwidth);
        }
        Ok(())
    }
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self::perfect()
    }
}

impl<T: Clone> LinkConditioner<T> {
    /// Creates an empty link with the given conditions and RNG seed.
    pub fn new(config: LinkConfig, seed: u64) -> Result<Self, LinkConfigError> {
        config.validate()?;
        Ok(Self::with_valid_config(config, seed))
    }

    /// The current conditions.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Changes the conditions for datagrams sent from now on (those in flight keep their
    /// delivery times). Removing `burst_loss` resets its chain to good.
    pub fn set_config(&mut self, config: LinkConfig) -> Result<(), LinkConfigError> {
        config.validate()?;
        if config.burst_loss.is_none() {
            self.burst_bad = false;
        }
        self.config = config;
        Ok(())
    }

    /// Sends a datagram of `size` bytes (used only for bandwidth accounting) at time `now`.
    pub fn send(&mut self, now: Instant, size: usize, payload: T) {
        self.stats.sent += 1;
        // Draw the same randomness whatever the config, in a fixed order.
        let [loss, burst_step, burst_loss, duplicate] = [(); 4].map(|()| self.rng.random::<f64>());
        let copies = [(); 2].map(|()| (self.rng.random::<f64>(), self.rng.next_u64()));
        let burst_drop = match self.config.burst_loss {
            Some(burst) => {
                let stay_or_enter = if self.burst_bad {
                    1.0 - burst.leave_bad
                } else {
                    burst.enter_bad
                };
                self.burst_bad = burst_step < stay_or_enter;
                self.burst_bad && burst_loss < burst.loss_in_bad
            }
            None => false,
        };
        if loss < self.config.loss {
            self.stats.dropped_random += 1;
            return;
        }
        if burst_drop {
            self.stats.dropped_burst += 1;
            return;
        }
        let Some(sent_at) = self.transmit(now, size) else {
            self.stats.dropped_queue += 1;
            return;
        };
        let copy = (duplicate < self.config.duplicate).then(|| payload.clone());
        self.schedule(sent_at, copies[0], payload);
        if let Some(copy) = copy {
            self.stats.duplicated += 1;
            self.schedule(sent_at, copies[1], copy);
        }
    }

    /// Returns the next payload due at or before `now`, in delivery-time order (ties in send
    /// order). Call until `None`.
    #[must_use]
    pub fn poll(&mut self, now: Instant) -> Option<T> {
        if self.next_delivery()? > now {
            return None;
        }
        self.stats.delivered += 1;
        self.pending.pop_first().map(|(_, payload)| payload)
    }

    /// The earliest pending delivery time, for virtual time to jump to; `None` if nothing is
    /// in flight.
    #[must_use]
    pub fn next_delivery(&self) -> Option<Instant> {
        self.pending.first_key_value().map(|(&(at, _), _)| at)
    }

    /// Number of payloads scheduled but not yet returned by `poll`.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Counters since creation.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// Like [`new`](Self::new), for a config the caller has already validated.
    pub(crate) fn with_valid_config(config: LinkConfig, seed: u64) -> Self {
        Self {
            config,
            rng: StdRng::seed_from_u64(seed),
            pending: BTreeMap::new(),
            next_seq: 0,
            link_free_at: None,
            burst_bad: false,
            stats: LinkStats::default(),
        }
    }

    /// The payload `poll` would return next and its delivery time.
    pub(crate) fn peek(&self) -> Option<(Instant, &T)> {
        self.pending
            .first_key_value()
            .map(|(&(at, _), payload)| (at, payload))
    }

    /// Runs a datagram through the bandwidth queue; returns when its last byte leaves, or
    /// `None` if it is tail-dropped.
    fn transmit(&mut self, now: Instant, size: usize) -> Option<Instant> {
        let Some(bandwidth) = self.config.bandwidth else {
            return Some(now);
        };
        let start = self.link_free_at.map_or(now, |free| free.max(now));
        // Saturating: `bandwidth` may have grown since `link_free_at` was computed.
        let queued_nanos = start.duration_since(now).as_nanos();
        let backlog = queued_nanos.saturating_mul(u128::from(bandwidth)) / NANOS_PER_SEC;
        if backlog > self.config.queue_limit as u128 {
            return None;
        }
        let nanos = (size as u128 * NANOS_PER_SEC).div_ceil(u128::from(bandwidth));
        let done = start.checked_add(Duration::from_nanos(u64::try_from(nanos).ok()?))?;
        self.link_free_at = Some(done);
        Some(done)
    }

    /// Schedules one copy; `reorder_roll` is uniform in `[0, 1)`, `jitter_roll` in `u64`.
    fn schedule(&mut self, sent_at: Instant, (reorder_roll, jitter_roll): (f64, u64), payload: T) {
        // Delays are at most MAX_DELAY (validated), so these u128 nanos cannot overflow.
        let jitter = self.config.jitter.as_nanos();
        let offset = (u128::from(jitter_roll) * (2 * jitter + 1)) >> 64; // uniform in 0..=2*jitter
        let nanos = (self.config.latency.as_nanos() + offset).saturating_sub(jitter);
        let mut delay = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        if reorder_roll < self.config.reorder {
            self.stats.reordered += 1;
            delay += self.config.reorder_delay;
        }
        let Some(deliver_at) = sent_at.checked_add(delay) else {
            self.stats.dropped_queue += 1;
            return;
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.insert((deliver_at, seq), payload);
    }
}

const NANOS_PER_SEC: u128 = 1_000_000_000;
const DEFAULT_REORDER_DELAY: Duration = Duration::from_millis(20);
const DEFAULT_QUEUE_LIMIT: usize = 256 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(x: u64) -> Duration {
        Duration::from_millis(x)
    }

    /// A default config with `edit` applied.
    fn with(edit: impl FnOnce(&mut LinkConfig)) -> LinkConfig {
        let mut config = LinkConfig::default();
        edit(&mut config);
        config
    }

    fn link(config: LinkConfig, seed: u64) -> LinkConditioner<u32> {
        LinkConditioner::new(config, seed).unwrap()
    }

    /// Sends datagrams `0..count` of `size` bytes one per millisecond, polling as it goes,
    /// then drains the link. Returns `(delivery time, payload)` in delivery order.
    fn run(
        link: &mut LinkConditioner<u32>,
        t0: Instant,
        count: u32,
        size: usize,
    ) -> Vec<(Instant, u32)> {
        let mut out = Vec::new();
        for i in 0..count {
            let now = t0 + ms(1) * i;
            out.extend(std::iter::from_fn(|| link.poll(now)).map(|p| (now, p)));
            link.send(now, size, i);
        }
        while let Some(at) = link.next_delivery() {
            out.extend(std::iter::from_fn(|| link.poll(at)).map(|p| (at, p)));
        }
        out
    }

    fn messy() -> LinkConfig {
        with(|c| {
            (c.latency, c.jitter, c.loss, c.duplicate, c.reorder) =
                (ms(40), ms(15), 0.05, 0.05, 0.05);
            c.burst_loss = Some(BurstLoss {
                enter_bad: 0.02,
                leave_bad: 0.3,
                loss_in_bad: 0.8,
            });
            (c.bandwidth, c.queue_limit) = (Some(200_000), 2_000);
        })
    }

    #[test]
    fn same_seed_same_output_and_stats_add_up() {
        let t0 = Instant::now();
        let mut l = link(messy(), 42);
        let a = run(&mut l, t0, 5_000, 300);
        assert_eq!(a, run(&mut link(messy(), 42), t0, 5_000, 300));
        assert_ne!(a, run(&mut link(messy(), 43), t0, 5_000, 300));
        let s = *l.stats();
        assert!(s.dropped_random > 0 && s.dropped_burst > 0 && s.dropped_queue > 0);
        assert!(s.duplicated > 0 && s.reordered > 0 && s.delivered == a.len() as u64);
        let dropped = s.dropped_random + s.dropped_burst + s.dropped_queue;
        assert_eq!(s.sent + s.duplicated, s.delivered + dropped);
    }

    #[test]
    fn loss_rate_matches_config() {
        let mut l = link(with(|c| c.loss = 0.1), 7);
        let delivered = run(&mut l, Instant::now(), 100_000, 100).len();
        assert!((89_000..=91_000).contains(&delivered), "{delivered}");
        assert_eq!(l.stats().dropped_random, 100_000 - delivered as u64);
    }

    #[test]
    fn duplicates_at_most_twice() {
        for duplicate in [0.5, 1.0] {
            let mut l = link(with(|c| (c.duplicate, c.jitter) = (duplicate, ms(5))), 3);
            let mut copies = vec![0; 10_000];
            for (_, p) in run(&mut l, Instant::now(), 10_000, 100) {
                copies[p as usize] += 1;
            }
            assert!(copies.iter().all(|&c| c == 1 || c == 2));
            let doubled = copies.iter().filter(|&&c| c == 2).count() as u64;
            assert_eq!(doubled, l.stats().duplicated);
            assert!(duplicate < 1.0 || doubled == 10_000);
        }
    }

    #[test]
    fn reorder_lets_later_datagrams_overtake() {
        let mut l = link(with(|c| (c.latency, c.reorder) = (ms(10), 0.2)), 5);
        let t0 = Instant::now();
        let out = run(&mut l, t0, 1_000, 100);
        assert_eq!(out.len(), 1_000);
        let overtaken = out.windows(2).filter(|w| w[0].1 > w[1].1).count();
        assert!(overtaken > 100, "{overtaken}");
        for (at, p) in out {
            let delay = at - (t0 + ms(1) * p);
            assert!(delay == ms(10) || delay == ms(30), "{delay:?}");
        }
    }

    #[test]
    fn nothing_delivered_early() {
        let config = LinkConfig {
            latency: ms(50),
            jitter: ms(20),
            ..messy()
        };
        let mut l = link(config, 9);
        let t0 = Instant::now();
        for step in 0..3_000u32 {
            let now = t0 + ms(1) * step;
            let due = l.next_delivery();
            if let Some(p) = l.poll(now) {
                assert!(due.is_some_and(|due| due <= now));
                assert!(now >= t0 + ms(1) * p + ms(30));
            }
            if step < 2_000 {
                l.send(now, 100, step);
            }
        }
    }

    #[test]
    fn bandwidth_cap_respected() {
        let mut l = link(
            with(|c| (c.bandwidth, c.latency) = (Some(10_000), ms(20))),
            0,
        );
        let t0 = Instant::now();
        // Offer 100 kB/s, ten times the cap, for three seconds.
        let out = run(&mut l, t0, 3_000, 100);
        let second = t0 + ms(1_000)..t0 + ms(2_000);
        let bytes = out.iter().filter(|(at, _)| second.contains(at)).count() * 100;
        assert!((9_900..=10_100).contains(&bytes), "{bytes}");
    }

    #[test]
    fn full_queue_tail_drops() {
        let mut l = link(
            with(|c| (c.bandwidth, c.queue_limit) = (Some(1_000), 1_000)),
            0,
        );
        let t0 = Instant::now();
        for i in 0..50 {
            l.send(t0, 100, i);
        }
        // Datagram k waits behind 100 * k bytes: 0..=10 fit, the rest are dropped.
        assert_eq!((l.in_flight(), l.stats().dropped_queue), (11, 39));
        assert_eq!(l.next_delivery(), Some(t0 + ms(100)));
        l.send(t0 + ms(1_100), 100, 50);
        assert_eq!((l.in_flight(), l.stats().dropped_queue), (12, 39));
    }

    #[test]
    fn burst_loss_comes_in_runs() {
        let burst = BurstLoss {
            enter_bad: 0.01,
            leave_bad: 0.2,
            loss_in_bad: 1.0,
        };
        let mut l = link(with(|c| c.burst_loss = Some(burst)), 11);
        let out = run(&mut l, Instant::now(), 100_000, 100);
        let runs: Vec<u32> = out
            .windows(2)
            .map(|w| w[1].1 - w[0].1 - 1)
            .filter(|&gap| gap > 0)
            .collect();
        let lost: u32 = runs.iter().sum();
        assert_eq!(u64::from(lost), l.stats().dropped_burst);
        let mean_run = f64::from(lost) / runs.len() as f64;
        assert!((4.0..=6.0).contains(&mean_run), "{mean_run}"); // 1 / leave_bad = 5
        let rate = f64::from(lost) / 100_000.0;
        assert!((0.04..0.056).contains(&rate), "{rate}"); // enter / (enter + leave) = 0.048
    }

    #[test]
    fn set_config_takes_effect() {
        let mut l = link(LinkConfig::default(), 0);
        let t0 = Instant::now();
        l.send(t0, 10, 1);
        assert_eq!(l.poll(t0), Some(1));
        l.set_config(with(|c| c.loss = 1.0)).unwrap();
        (0..100).for_each(|i| l.send(t0, 10, i));
        assert_eq!((l.poll(t0), l.stats().dropped_random), (None, 100));
        l.set_config(with(|c| c.latency = ms(5))).unwrap();
        l.send(t0, 10, 2);
        assert_eq!(l.next_delivery(), Some(t0 + ms(5)));
    }

    #[test]
    fn invalid_config_rejected() {
        let nan = BurstLoss {
            enter_bad: 0.1,
            leave_bad: f64::NAN,
            loss_in_bad: 1.0,
        };
        let cases = [
            (with(|c| c.loss = 1.5), "loss"),
            (with(|c| c.reorder = -0.1), "reorder"),
            (with(|c| c.burst_loss = Some(nan)), "burst_loss.leave_bad"),
        ];
        for (config, name) in cases {
            let err = config.validate();
            assert!(
                matches!(err, Err(LinkConfigError::Probability { field, .. }) if field == name)
            );
        }
        let err = with(|c| c.jitter = ms(3_600_001)).validate();
        assert!(matches!(
            err,
            Err(LinkConfigError::DelayTooLong {
                field: "jitter",
                ..
            })
        ));
        let zero = with(|c| c.bandwidth = Some(0));
        assert_eq!(zero.validate(), Err(LinkConfigError::ZeroBandwidth));
        let mut l = link(LinkConfig::default(), 0);
        assert!(l.set_config(zero).is_err());
        assert_eq!(l.config(), &LinkConfig::perfect());
    }
}
