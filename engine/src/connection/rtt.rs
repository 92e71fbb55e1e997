//! Round-trip time estimation (RFC 6298, with QUIC's ack-delay correction).

use std::time::Duration;

/// Smoothed RTT and variation from acknowledgement samples.
#[derive(Clone, Debug)]
pub(crate) struct RttEstimator {
    smoothed: Option<Duration>,
    var: Duration,
    min: Duration,
    latest: Duration,
    initial: Duration,
}

impl RttEstimator {
    pub(crate) fn new(initial: Duration) -> Self {
        Self {
            smoothed: None,
            var: initial / 2,
            min: Duration::MAX,
            latest: initial,
            initial,
        }
    }

    /// Adds a sample: time from sending a packet to receiving its ack, and the delay the peer
    /// reported between receiving it and sending the ack.
    pub(crate) fn update(&mut self, sample: Duration, ack_delay: Duration) {
        self.latest = sample;
        self.min = self.min.min(sample);
        let adjusted = if sample >= self.min + ack_delay {
            sample - ack_delay
        } else {
            sample
        };
        match self.smoothed {
            None => {
                self.smoothed = Some(adjusted);
                self.var = adjusted / 2;
            }
            Some(smoothed) => {
                let deviation = smoothed.abs_diff(adjusted);
                self.var = (self.var * 3 + deviation) / 4;
                self.smoothed = Some((smoothed * 7 + adjusted) / 8);
            }
        }
    }

    pub(crate) fn smoothed(&self) -> Duration {
        self.smoothed.unwrap_or(self.initial)
    }

    pub(crate) fn var(&self) -> Duration {
        self.var
    }

    pub(crate) fn min(&self) -> Duration {
        if self.min == Duration::MAX {
            self.initial
        } else {
            self.min
        }
    }

    pub(crate) fn latest(&self) -> Duration {
        self.latest
    }

    /// Retransmission timeout: smoothed + max(4 × var, 1 ms) + the peer's ack delay, clamped.
    pub(crate) fn rto(
        &self,
        max_ack_delay: Duration,
        floor: Duration,
        ceiling: Duration,
    ) -> Duration {
        let rto = self.smoothed() + (self.var * 4).max(Duration::from_millis(1)) + max_ack_delay;
        rto.clamp(floor, ceiling)
    }

    /// How long after sending an earlier packet, once a later one was acknowledged, it is
    /// declared lost: 9/8 of the RTT (RFC 9002), stretched by the variation on jittery paths,
    /// where packets overtake each other.
    pub(crate) fn loss_delay(&self) -> Duration {
        let base = self.smoothed().max(self.latest) * 9 / 8;
        base.max(self.smoothed() + self.var * 4)
            .max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_on_a_steady_rtt() {
        let mut rtt = RttEstimator::new(Duration::from_millis(100));
        for _ in 0..100 {
            rtt.update(Duration::from_millis(40), Duration::ZERO);
        }
        assert!(rtt.smoothed().abs_diff(Duration::from_millis(40)) < Duration::from_micros(100));
        assert!(rtt.var() < Duration::from_millis(1));
        assert_eq!(rtt.min(), Duration::from_millis(40));
    }

    #[test]
    fn subtracts_ack_delay_but_not_below_min() {
        let mut rtt = RttEstimator::new(Duration::from_millis(100));
        rtt.update(Duration::from_millis(20), Duration::ZERO);
        rtt.update(Duration::from_millis(30), Duration::from_millis(10));
        assert_eq!(rtt.smoothed(), Duration::from_millis(20));
        rtt.update(Duration::from_millis(25), Duration::from_millis(10));
        assert!(rtt.smoothed() > Duration::from_millis(20));
    }
}
