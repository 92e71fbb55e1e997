//! The JSON summary of a run: what the sensors sent, judged against what the database holds.

use std::collections::HashSet;

use serde::Serialize;

use crate::sensor::FleetReport;
use crate::store::{Store, StoreError};

/// The summary printed by `sensors --json` and `run --json`.
///
/// `readings_stored` and `alerts_stored` are counted in the database, not from messages seen.
/// Fields that need the database are `null` when it was not available.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunSummary {
    /// Sensors run.
    pub sensors: usize,
    /// Of which sleepy.
    pub sleepy_sensors: usize,
    /// Wall time of the fleet, in seconds.
    pub elapsed_s: f64,
    /// The transport the sensors' last sessions used: `native`, `quic`, or `mixed` (some of
    /// each); `null` if none connected.
    pub transport: Option<&'static str>,
    /// Samples taken and sent.
    pub readings_sent: u64,
    /// Of those, stored in the database (distinct `(sensor, seq)`).
    pub readings_stored: Option<u64>,
    /// `readings_sent - readings_stored`.
    pub readings_lost: Option<u64>,
    /// Rows for a `(sensor, seq)` already stored (0 unless the uniqueness rule broke).
    pub duplicates_stored: Option<u64>,
    /// Alerts raised.
    pub alerts_raised: u64,
    /// Of those, stored in the database.
    pub alerts_stored: Option<u64>,
    /// Raised and not stored.
    pub alerts_lost: Option<u64>,
    /// Alerts stored more than once (0 unless the uniqueness rule broke).
    pub alerts_stored_twice: Option<u64>,
    /// Alerts the hub confirmed to the sensors.
    pub alerts_confirmed: u64,
    /// Median delay from sampling (true time) to the hub receiving it, awake sensors only, ms.
    pub latency_ms_p50: Option<f64>,
    /// 99th percentile of the same.
    pub latency_ms_p99: Option<f64>,
    /// Median delay from the sample that raised an alert (true time) to the sensor receiving
    /// the hub's confirmation that the alert is stored durably, awake sensors only, ms.
    pub alert_latency_ms_p50: Option<f64>,
    /// 99th percentile of the same.
    pub alert_latency_ms_p99: Option<f64>,
    /// 99th percentile of |corrected timestamp - true sampling time| over stored readings, ms.
    pub clock_offset_error_ms_p99: Option<f64>,
    /// Largest such error, ms.
    pub clock_offset_error_ms_max: Option<f64>,
    /// Successful connections beyond each sensor's first.
    pub reconnects: u64,
    /// Commands applied by sensors.
    pub commands_applied: u64,
}

impl RunSummary {
    /// The fleet's own numbers, without the database.
    pub fn from_fleet(fleet: &FleetReport) -> Self {
        let s = &fleet.sensors;
        let mut alert_latency: Vec<f64> = s
            .iter()
            .filter(|r| !r.sleepy)
            .flat_map(|r| r.alert_confirm_ms.iter().map(|&ms| f64::from(ms)))
            .collect();
        alert_latency.sort_by(f64::total_cmp);
        Self {
            sensors: s.len(),
            alert_latency_ms_p50: percentile(&alert_latency, 0.50),
            alert_latency_ms_p99: percentile(&alert_latency, 0.99),
            sleepy_sensors: s.iter().filter(|r| r.sleepy).count(),
            elapsed_s: fleet.elapsed_s,
            transport: fleet_transport(fleet),
            readings_sent: s.iter().map(|r| r.readings_sent).sum(),
            alerts_raised: s.iter().map(|r| r.alerts_raised.len() as u64).sum(),
            alerts_confirmed: s.iter().map(|r| r.alerts_confirmed).sum(),
            reconnects: s.iter().map(|r| r.sessions.saturating_sub(1)).sum(),
            commands_applied: s.iter().map(|r| r.commands.len() as u64).sum(),
            ..Self::default()
        }
    }

    /// The fleet's numbers judged against the database.
    pub fn from_store(fleet: &FleetReport, store: &Store) -> Result<Self, StoreError> {
        let mut summary = Self::from_fleet(fleet);
        let (Some(first), Some(last)) = (
            fleet.sensors.iter().map(|r| r.sensor_id).min(),
            fleet.sensors.iter().map(|r| r.sensor_id).max(),
        ) else {
            return Ok(summary);
        };
        let by_id: std::collections::HashMap<u32, &crate::sensor::SensorReport> =
            fleet.sensors.iter().map(|r| (r.sensor_id, r)).collect();
        let mut seen = HashSet::new();
        let (mut rows, mut stored) = (0u64, 0u64);
        let mut latency = Vec::new();
        let mut error = Vec::new();
        store.for_each_reading(first, last, |row| {
            let Some(sensor) = by_id.get(&row.sensor_id) else {
                return;
            };
            rows += 1;
            if !seen.insert((row.sensor_id, row.seq)) || row.seq >= sensor.readings_sent {
                return;
            }
            stored += 1;
            let true_us = sensor.clock.true_at(row.device_ts);
            error.push((row.corrected_ts - true_us).abs() as f64 / 1000.0);
            if !sensor.sleepy {
                latency.push((row.received_ts - true_us) as f64 / 1000.0);
            }
        })?;
        summary.readings_stored = Some(stored);
        summary.readings_lost = Some(summary.readings_sent.saturating_sub(stored));
        summary.duplicates_stored = Some(rows - seen.len() as u64);
        let counts = store.alert_counts(first, last)?;
        let (mut found, mut twice) = (0u64, 0u64);
        for sensor in &fleet.sensors {
            for &alert_id in &sensor.alerts_raised {
                if let Some(&n) = counts.get(&(sensor.sensor_id, alert_id)) {
                    found += 1;
                    twice += n.saturating_sub(1);
                }
            }
        }
        summary.alerts_stored = Some(found);
        summary.alerts_lost = Some(summary.alerts_raised - found);
        summary.alerts_stored_twice = Some(twice);
        latency.sort_by(f64::total_cmp);
        error.sort_by(f64::total_cmp);
        summary.latency_ms_p50 = percentile(&latency, 0.50);
        summary.latency_ms_p99 = percentile(&latency, 0.99);
        summary.clock_offset_error_ms_p99 = percentile(&error, 0.99);
        summary.clock_offset_error_ms_max = error.last().copied();
        Ok(summary)
    }
}

/// The `p` quantile of sorted values (nearest rank), rounded to 0.01.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some((sorted[rank - 1] * 100.0).round() / 100.0)
}

/// `native`, `quic` or `mixed`: what the sensors' last sessions ran over.
fn fleet_transport(fleet: &FleetReport) -> Option<&'static str> {
    let mut seen = fleet.sensors.iter().filter_map(|r| r.transport);
    let first = seen.next()?;
    Some(if seen.all(|t| t == first) {
        first
    } else {
        "mixed"
    })
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
