//! What a simulated sensor measures: a slow cycle, noise, and rare spikes that cross the
//! kind's alert threshold.

use rand::rngs::SmallRng;
use rand::Rng;

use crate::protocol::SensorKind;

/// A kind's signal and alert rule.
#[derive(Clone, Debug)]
pub(crate) struct Signal {
    kind: SensorKind,
    phase: f64,
    above: bool,
}

impl Signal {
    pub(crate) fn new(kind: SensorKind, rng: &mut SmallRng) -> Self {
        Self {
            kind,
            phase: rng.random::<f64>() * std::f64::consts::TAU,
            above: false,
        }
    }

    /// The kind's alert threshold.
    pub(crate) fn threshold(&self) -> f32 {
        match self.kind {
            SensorKind::Temperature => 35.0,
            SensorKind::Humidity => 90.0,
            SensorKind::Vibration => 8.0,
            SensorKind::Pressure => 980.0,
        }
    }

    /// The value at `t` seconds since the sensor started, and whether it newly crossed the
    /// threshold (rising edge; for pressure, falling below).
    pub(crate) fn sample(&mut self, t: f64, rng: &mut SmallRng) -> (f32, bool) {
        let cycle = (t * std::f64::consts::TAU / CYCLE_S + self.phase).sin();
        let spike = rng.random::<f64>() < SPIKE_PROBABILITY;
        let noise = gaussian(rng);
        let value = match self.kind {
            SensorKind::Temperature => {
                22.0 + 6.0 * cycle + 0.2 * noise + if spike { 16.0 } else { 0.0 }
            }
            SensorKind::Humidity => 55.0 + 15.0 * cycle + noise + if spike { 40.0 } else { 0.0 },
            SensorKind::Vibration => 1.0 + 1.5 * noise.abs() * 0.5 + if spike { 10.0 } else { 0.0 },
            SensorKind::Pressure => {
                1013.0 + 8.0 * cycle + 0.3 * noise - if spike { 45.0 } else { 0.0 }
            }
        } as f32;
        let crossed = match self.kind {
            SensorKind::Pressure => value < self.threshold(),
            _ => value > self.threshold(),
        };
        let alert = crossed && !self.above;
        self.above = crossed;
        (value, alert)
    }
}

/// A standard normal sample (Box-Muller).
fn gaussian(rng: &mut SmallRng) -> f64 {
    let u1 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Period of the slow cycle, in seconds (short, so that a demo shows movement).
const CYCLE_S: f64 = 120.0;
/// Chance that a sample is a spike across the threshold.
const SPIKE_PROBABILITY: f64 = 0.005;

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn spikes_raise_alerts_at_about_the_spike_rate() {
        let mut rng = SmallRng::seed_from_u64(7);
        for kind in SensorKind::ALL {
            let mut signal = Signal::new(kind, &mut rng);
            let alerts = (0..20_000)
                .filter(|i| signal.sample(f64::from(*i) * 0.1, &mut rng).1)
                .count();
            assert!((40..=180).contains(&alerts), "{kind:?}: {alerts} alerts");
        }
    }
}
