//! Measurements of a run: snapshots of the server process at phase boundaries, the figures of
//! each phase computed from two snapshots and the clients' tallies, and the output.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::clients::PhaseTally;
use crate::procfs;

/// The server process and the machine at one instant.
pub(crate) struct Snapshot {
    pub(crate) at: Instant,
    pub(crate) server_cpu: Duration,
    pub(crate) server_rss: u64,
    pub(crate) server: Value,
    pub(crate) machine: procfs::MachineCpu,
    pub(crate) kernel_drops: u64,
    pub(crate) generator_cpu: Duration,
    pub(crate) load_average: f64,
}

impl Snapshot {
    /// Reads everything; `server` is the server's own `stats` line.
    pub(crate) fn take(server_pid: u32, server_port: u16, server: Value) -> Self {
        Self {
            at: Instant::now(),
            server_cpu: procfs::process_cpu(server_pid).unwrap_or_default(),
            server_rss: procfs::process_rss(server_pid).unwrap_or(0),
            server,
            machine: procfs::MachineCpu::read(),
            kernel_drops: procfs::udp_socket_drops(server_port).unwrap_or(0),
            generator_cpu: procfs::process_cpu(std::process::id()).unwrap_or_default(),
            load_average: procfs::load_average(),
        }
    }

    fn counter(&self, name: &str) -> u64 {
        self.server[name].as_u64().unwrap_or(0)
    }
}

/// The figures of one measured phase.
pub(crate) struct PhaseFigures {
    pub(crate) name: &'static str,
    pub(crate) json: Value,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
}

/// Computes a phase's figures from the snapshots at its start and end, the clients' tally of
/// the messages sent in it, and (L1) the flood's report.
pub(crate) fn phase_figures(
    name: &'static str,
    start: &Snapshot,
    end: &Snapshot,
    clients: &mut PhaseTally,
    flood: Option<&Value>,
) -> PhaseFigures {
    let secs = end.at.duration_since(start.at).as_secs_f64().max(1e-9);
    let per_s = |n: u64| n as f64 / secs;
    let delta = |field: &str| end.counter(field).saturating_sub(start.counter(field));
    clients.rtts_us.sort_unstable();
    let rtts = &clients.rtts_us;
    let pct = |p: f64| percentile(rtts, p);
    let machine = |f: fn(&procfs::MachineCpu) -> Duration| {
        round(
            f(&end.machine)
                .saturating_sub(f(&start.machine))
                .as_secs_f64()
                / secs,
        )
    };
    let drops = drops_delta(&start.server["dropped"], &end.server["dropped"]);
    let json = json!({
        "duration_s": round(secs),
        "offered_msgs_per_s": round(per_s(clients.sent)),
        "send_refused": clients.refused,
        "server_echoed_msgs_per_s": round(per_s(delta("messages_echoed"))),
        "server_echo_refused": delta("echo_refused"),
        "delivered_round_trips_per_s": round(per_s(clients.echoed)),
        "delivered_fraction": round(clients.echoed as f64 / clients.sent.max(1) as f64),
        "latency_us": {
            "samples": rtts.len(),
            "p50": pct(50.0),
            "p90": pct(90.0),
            "p99": pct(99.0),
            "p99_9": pct(99.9),
            "max": rtts.last().copied().unwrap_or(0),
        },
        "server_cpu_s_per_s": round(end.server_cpu.saturating_sub(start.server_cpu).as_secs_f64() / secs),
        "generator_cpu_s_per_s": round(end.generator_cpu.saturating_sub(start.generator_cpu).as_secs_f64() / secs),
        "machine_cpu_s_per_s": {
            "user_and_nice": machine(|m| m.user),
            "of_which_nice": machine(|m| m.nice),
            "system": machine(|m| m.system),
            "softirq": machine(|m| m.softirq),
            "idle": machine(|m| m.idle),
            "steal": machine(|m| m.steal),
        },
        "server_datagrams_received_per_s": round(per_s(delta("datagrams_received"))),
        "server_datagrams_sent_per_s": round(per_s(delta("datagrams_sent"))),
        "server_drops": drops,
        "server_kernel_socket_drops": end.kernel_drops.saturating_sub(start.kernel_drops),
        "server_rss_bytes": { "start": start.server_rss, "end": end.server_rss },
        "server_disconnects": end.server["disconnected"].clone(),
        "connections_live_end": end.counter("connections_live"),
        "load_average_1m": { "start": start.load_average, "end": end.load_average },
        "flood": flood.cloned().unwrap_or(Value::Null),
    });
    PhaseFigures {
        name,
        p50_us: pct(50.0) as f64,
        p99_us: pct(99.0) as f64,
        json,
    }
}

/// Nonzero differences of the server's drop counters.
fn drops_delta(start: &Value, end: &Value) -> BTreeMap<String, u64> {
    let Some(end) = end.as_object() else {
        return BTreeMap::new();
    };
    end.iter()
        .filter_map(|(reason, n)| {
            let d = n
                .as_u64()?
                .saturating_sub(start[reason].as_u64().unwrap_or(0));
            (d > 0).then(|| (reason.clone(), d))
        })
        .collect()
}

/// The `p`th percentile of sorted samples (nearest rank); 0 when empty.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Three decimals, or whole numbers from 1000 up.
pub(crate) fn round(v: f64) -> f64 {
    if v.abs() >= 1000.0 {
        v.round()
    } else {
        (v * 1000.0).round() / 1000.0
    }
}

/// A short human summary of a phase, for stderr.
pub(crate) fn describe(figures: &PhaseFigures) -> String {
    let j = &figures.json;
    format!(
        "{:<3} offered {:>7.0} msg/s  delivered {:>7.0} rt/s ({:.4})  p50 {:>6} us  p99 {:>7} us  server cpu {:.3} s/s  rss {} -> {} KiB  drops {}",
        figures.name,
        j["offered_msgs_per_s"].as_f64().unwrap_or(0.0),
        j["delivered_round_trips_per_s"].as_f64().unwrap_or(0.0),
        j["delivered_fraction"].as_f64().unwrap_or(0.0),
        j["latency_us"]["p50"],
        j["latency_us"]["p99"],
        j["server_cpu_s_per_s"].as_f64().unwrap_or(0.0),
        j["server_rss_bytes"]["start"].as_u64().unwrap_or(0) / 1024,
        j["server_rss_bytes"]["end"].as_u64().unwrap_or(0) / 1024,
        j["server_drops"],
    )
}
