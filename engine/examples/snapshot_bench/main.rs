//! Snapshot benchmark: workloads S1 (`cubes-901`) and S2 (sparse IoT state) of
//! `shared/workloads.md`, on the engine's seeded network simulator in virtual time.
//!
//! ```text
//! cargo run --release -p tickwire --example snapshot_bench -- [--json] [--quick] \
//!     [--seconds N] [--clients N] [--profiles A,B,C,D] [--seed N]
//! ```
//!
//! S1 runs on profiles A (100 ms RTT), B (A + 5 % loss + ±33 ms jitter), C (B + a 250 ms
//! blackout every 20 s, the first at 10 s or half the run) and D (300 ± 75 ms one way, 6 %
//! loss), 30 s each by default (`--quick`: 6 s), measured after a 2 s warm-up (1 s quick) in
//! which the first full state is sent. Then, on profile A, the plain delta codec (one changed
//! bit per field, full-width values) for comparison, and the world at rest. S2 runs on profile
//! D with and without `skip_unchanged`.
//!
//! Everything is seeded and runs in virtual time, so every figure except the timings
//! (`encode_us_*`, `decode_us_*`: wall time of `SnapshotServer::encode` and
//! `SnapshotClient::receive`) replays exactly.
//!
//! Layout: `cubes.rs` (the S1 world, its motion and the compact `EntityState`), `net.rs` (a
//! server and clients on a `SimNetwork`, with datagram sizes counted), `s1.rs` (one S1 run and
//! its measures), `iot.rs` (S2), `report.rs` (statistics and output).

mod cubes;
mod iot;
mod net;
mod plot;
mod report;
mod s1;

use std::time::Duration;

use clap::Parser;
use serde_json::{json, Map, Value};

use report::{print_table, Summary};
use s1::{Budget, RunConfig};

/// Snapshot bandwidth, CPU and smoothness on the simulator (workloads S1 and S2).
#[derive(Parser, Debug)]
struct Args {
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Short runs (6 s per profile) for a smoke test.
    #[arg(long)]
    quick: bool,
    /// Simulated seconds per S1 profile (default 30, or 6 with --quick).
    #[arg(long)]
    seconds: Option<u64>,
    /// Clients the server sends snapshots to (render figures are client 0's).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// S1 profiles to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_values = ["A", "B", "C", "D"])]
    profiles: Vec<String>,
    /// Seed of the worlds and the network.
    #[arg(long, default_value_t = 901)]
    seed: u64,
    /// `SnapshotConfig::history` for S1 (the engine's default is 64). Profile D also runs with
    /// `--history-d` as an extra column.
    #[arg(long, default_value_t = 64)]
    history: usize,
    /// The history of the extra profile D column (0: no extra column).
    #[arg(long, default_value_t = 128)]
    history_d: usize,
    /// Skip S2.
    #[arg(long)]
    no_s2: bool,
    /// Skip the extra S1 runs: profile A under a fixed 200 kbps budget, and profile E (A
    /// through a 300 kbps bottleneck) with the fixed cap and with the adaptive budget.
    #[arg(long)]
    no_extras: bool,
    /// Write one SVG per S1 run into this directory: kbps sent and hitched frames over time.
    #[arg(long, value_name = "DIR")]
    svg: Option<std::path::PathBuf>,
}

fn main() {
    let args = Args::parse();
    let seconds = args
        .seconds
        .unwrap_or(if args.quick { 6 } else { 30 })
        .max(2);
    let run = Duration::from_secs(seconds);
    let warmup = Duration::from_secs(if args.quick { 1 } else { 2 }).min(run / 2);
    let config = RunConfig {
        run,
        warmup,
        clients: args.clients.max(1),
        seed: args.seed,
        moving: true,
        first_burst: 15.0_f64.min(seconds as f64 / 2.0),
        render: true,
        history: args.history,
        budget: Budget::Cap,
    };

    let mut s1: Vec<(String, Summary)> = Vec::new();
    for profile in s1::profiles(run) {
        if !args
            .profiles
            .iter()
            .any(|p| p.eq_ignore_ascii_case(profile.name))
        {
            continue;
        }
        eprintln!("snapshot_bench: S1 profile {}", profile.name);
        let summary = s1::run::<cubes::CubeState>(&profile, &config);
        s1.push((profile.name.to_string(), summary));
        if profile.name == "D" && args.history_d > 0 {
            let longer = RunConfig {
                history: args.history_d,
                ..config.clone()
            };
            let summary = s1::run::<cubes::CubeState>(&profile, &longer);
            s1.push((format!("D_history{}", args.history_d), summary));
        }
    }
    if !args.no_extras {
        let all = s1::profiles(run);
        let extras = [
            ("A_budget_200kbps", &all[0], Budget::Fixed(25_000)),
            ("E_cap", &all[4], Budget::Cap),
            ("E_adaptive", &all[4], Budget::Adaptive),
        ];
        for (name, profile, budget) in extras {
            let run = RunConfig {
                budget,
                ..config.clone()
            };
            eprintln!("snapshot_bench: S1 {name}");
            s1.push((name.to_string(), s1::run::<cubes::CubeState>(profile, &run)));
        }
    }
    if let Some(dir) = &args.svg {
        for (name, summary) in &s1 {
            let title = format!(
                "S1 cubes-901, {name}: moving fraction {:.1} %",
                100.0 * summary.get("moving_fraction").unwrap_or(f64::NAN)
            );
            match plot::write(dir, name, &title, &summary.timeline) {
                Ok(path) => eprintln!("snapshot_bench: wrote {path}"),
                Err(error) => {
                    eprintln!(
                        "snapshot_bench: {error}; check that the --svg directory is writable"
                    );
                    std::process::exit(1);
                }
            }
        }
    }
    let profile_a = s1::profiles(run).remove(0);
    let plain = s1::run::<cubes::PlainCube>(&profile_a, &config);
    let at_rest = s1::run::<cubes::CubeState>(
        &profile_a,
        &RunConfig {
            moving: false,
            ..config.clone()
        },
    );

    let s2 = (!args.no_s2).then(|| {
        let d = s1::profiles(run).remove(3).link;
        let (changing, quiet) = if args.quick {
            (Duration::from_secs(5), Duration::from_secs(3))
        } else {
            (Duration::from_secs(20), Duration::from_secs(10))
        };
        let skip = iot::run(&d, true, changing, quiet, args.seed);
        let no_skip = iot::run(&d, false, changing, quiet, args.seed);
        (skip, no_skip)
    });

    if args.json {
        let mut profiles = Map::new();
        for (name, summary) in &s1 {
            profiles.insert(name.clone(), summary.to_json());
        }
        let mut out = json!({
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "machine": machine(),
            "seconds_per_profile": seconds,
            "clients": config.clients,
            "seed": args.seed,
            "s1": {
                "workload": "cubes-901",
                "profiles": profiles,
                "plain_codec_profile_a": plain.to_json(),
                "at_rest": at_rest.to_json(),
                "at_rest_kbps": report::number(at_rest.get("kbps_per_client").unwrap_or(f64::NAN)),
                "at_rest_kbps_with_ip_udp": report::number(
                    at_rest.get("kbps_per_client_with_ip_udp").unwrap_or(f64::NAN)
                ),
            },
        });
        if let (Some((skip, no_skip)), Value::Object(map)) = (&s2, &mut out) {
            map.insert(
                "s2".to_string(),
                json!({
                    "workload": "sparse IoT, 10,000 entities, 10 Hz, 1 % change per tick, profile D",
                    "skip_unchanged": skip.to_json(),
                    "header_only": no_skip.to_json(),
                }),
            );
        }
        println!("{out}");
        return;
    }

    println!(
        "snapshot_bench: S1 cubes-901, {seconds} s per profile, {} client(s), seed {} ({})\n",
        config.clients,
        args.seed,
        machine()
    );
    let mut columns: Vec<(String, &Summary)> = s1.iter().map(|(n, s)| (n.clone(), s)).collect();
    columns.push(("A plain".to_string(), &plain));
    columns.push(("A at rest".to_string(), &at_rest));
    print_table(
        "S1 per profile (kbps = 1000 bit/s; payload = UDP payload)",
        &columns,
    );
    if let Some((skip, no_skip)) = &s2 {
        print_table(
            "S2 sparse IoT (profile D)",
            &[
                ("skip_unchanged".to_string(), skip),
                ("header-only".to_string(), no_skip),
            ],
        );
    }
}

/// `nproc` and the CPU model, for the record.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    format!("{cpus} CPUs, {model}")
}
