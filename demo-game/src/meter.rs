//! Rolling network figures of one connection for the HUD and the bots' report: RTT, loss and
//! kbps each way, sampled a few times a second, with the last seconds kept for sparklines.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tickwire::ConnectionStats;

/// How often a sample is taken.
pub const SAMPLE_PERIOD: Duration = Duration::from_millis(250);
/// Samples kept for the sparklines (15 s).
pub const SAMPLES_KEPT: usize = 60;

/// The connection's recent figures.
#[derive(Clone, Debug, Default)]
pub struct NetMeter {
    last: Option<(Instant, u64, u64)>,
    first: Option<(Instant, u64, u64)>,
    /// kbps received (UDP payload), one per sample, oldest first.
    pub down_kbps: VecDeque<u64>,
    /// kbps sent.
    pub up_kbps: VecDeque<u64>,
    /// Smoothed RTT at each sample, ms.
    pub rtt_ms: VecDeque<u64>,
    /// Every RTT sample since the start, ms (for percentiles; bounded).
    pub all_rtt_ms: Vec<f64>,
    /// The connection's loss estimate at the last sample, 0 to 1.
    pub loss: f64,
    /// The smoothed RTT at the last sample.
    pub rtt: Duration,
}

impl NetMeter {
    /// Whether a sample is due at `now` (so the caller can skip fetching the statistics).
    pub fn due(&self, now: Instant) -> bool {
        self.last
            .is_none_or(|(at, _, _)| now.saturating_duration_since(at) >= SAMPLE_PERIOD)
    }

    /// Takes a sample if one is due.
    pub fn sample(&mut self, now: Instant, stats: &ConnectionStats) {
        let current = (now, stats.bytes_received, stats.bytes_sent);
        self.first.get_or_insert(current);
        let Some((at, down, up)) = self.last else {
            self.last = Some(current);
            return;
        };
        let elapsed = now.saturating_duration_since(at);
        if elapsed < SAMPLE_PERIOD {
            return;
        }
        let secs = elapsed.as_secs_f64();
        let kbps = |bytes: u64| (bytes as f64 * 8.0 / 1000.0 / secs).round() as u64;
        push(
            &mut self.down_kbps,
            kbps(stats.bytes_received.saturating_sub(down)),
        );
        push(&mut self.up_kbps, kbps(stats.bytes_sent.saturating_sub(up)));
        let rtt_ms = stats.rtt.as_secs_f64() * 1e3;
        push(&mut self.rtt_ms, rtt_ms.round() as u64);
        if self.all_rtt_ms.len() < MAX_RTT_SAMPLES {
            self.all_rtt_ms.push(rtt_ms);
        }
        self.loss = stats.loss_rate;
        self.rtt = stats.rtt;
        self.last = Some(current);
    }

    /// Mean kbps (down, up) since the first sample.
    pub fn mean_kbps(&self) -> (f64, f64) {
        match (self.first, self.last) {
            (Some((t0, d0, u0)), Some((t1, d1, u1))) if t1 > t0 => {
                let secs = (t1 - t0).as_secs_f64();
                let kbps = |bytes: u64| bytes as f64 * 8.0 / 1000.0 / secs;
                (kbps(d1.saturating_sub(d0)), kbps(u1.saturating_sub(u0)))
            }
            _ => (0.0, 0.0),
        }
    }
}

fn push(series: &mut VecDeque<u64>, value: u64) {
    series.push_back(value);
    while series.len() > SAMPLES_KEPT {
        series.pop_front();
    }
}

/// RTT samples kept for percentiles (an hour at four a second).
const MAX_RTT_SAMPLES: usize = 14_400;
