//! Loopback benchmark: Tickwire against three baselines on workloads T1 to T4 of
//! `shared/workloads.md`, in one process, client and server on separate threads.
//!
//! ```text
//! cargo run --release -p tickwire --example loopback_bench -- [--json] [--quick] \
//!     [--only T1,T2] [--peers raw_udp,raw_batched,quinn,tickwire] [--runs 3]
//! ```
//!
//! Without `--json` it prints a table with each workload's headline figure as a ratio against
//! `raw_udp` and `quinn`; with `--json`, one object:
//! `{"machine", "command", "mode", "runs", "workload_notes", "workloads": {"T1": {"<peer>":
//! {...}}}, "ratios": {"T1": {"<peer>": {"<field>": {"vs_raw_udp", "vs_quinn"}}}}}`. A peer that
//! does not run a workload is left out; a failed one appears as `{"error": "..."}` and the process
//! exits with status 1. With `--runs N` every cell is the field-by-field median of N runs, and the
//! peers' order rotates from run to run. T1 is run in `--t1-slices` (10) slices per peer,
//! interleaved across peers, with the round trips pooled per peer (see `--help`).
//!
//! Layout: `report.rs` (configs, result types, the pair harness, CPU time, output; its docs state
//! the contract every peer implements), `baselines.rs` (`raw_udp`, `raw_batched`, `quinn`),
//! `tickwire_bench.rs` (Tickwire), `tickwire_secure.rs` (Tickwire with connect tokens and
//! encryption), `tickwire_quic_bench.rs` (Tickwire over QUIC).

mod baselines;
mod report;
mod tickwire_bench;
mod tickwire_quic_bench;
mod tickwire_secure;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

use report::{
    BenchError, Cell, Configs, Figures, Outcome, Peer, PeerFns, Report, T1Config, T1Result,
    Workload,
};

/// Tickwire and its baselines over loopback UDP.
#[derive(Parser, Debug)]
struct Args {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Shrink every workload for a smoke run (T1 2,000 round trips, T2 0.5 s, T3 2 MiB, T4 200).
    #[arg(long)]
    quick: bool,
    /// Workloads to run, comma-separated.
    #[arg(long, value_delimiter = ',', ignore_case = true, default_values = ["T1", "T2", "T3", "T4"])]
    only: Vec<Workload>,
    /// Peers to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_values = ["raw_udp", "raw_batched", "quinn", "tickwire", "tickwire_secure", "tickwire_quic"]
    )]
    peers: Vec<Peer>,
    /// `SO_RCVBUF` and `SO_SNDBUF` to request for every baseline socket, in bytes (the kernel caps
    /// it at `net.core.rmem_max` / `wmem_max`); 0 keeps the OS default. The default matches
    /// Tickwire's driver default (`socket_buffer_bytes`, 4 MiB).
    #[arg(long, default_value_t = 4 << 20)]
    socket_buffer: usize,
    /// T1 is run in this many slices per peer, interleaved across peers (each slice a new
    /// connection with its share of the warm-up), and each peer's round trips are pooled: on a
    /// shared VM the wake-up latency drifts within seconds, and interleaving exposes every peer to
    /// the same drift. 1 runs T1 exactly as `workloads.md` states it.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    t1_slices: u32,
    /// Runs per workload and peer; each figure is the median.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=99))]
    runs: u32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let configs = if args.quick {
        Configs::quick(args.socket_buffer)
    } else {
        Configs::full(args.socket_buffer)
    };
    let workloads: Vec<Workload> = Workload::ALL
        .into_iter()
        .filter(|w| args.only.contains(w))
        .collect();
    let peers: Vec<Peer> = Peer::ALL
        .into_iter()
        .filter(|p| args.peers.contains(p))
        .collect();

    let mut outcomes: BTreeMap<(Workload, Peer), Vec<Outcome>> = BTreeMap::new();
    for run in 0..args.runs as usize {
        for &workload in &workloads {
            if workload == Workload::T1 {
                let slices = args.t1_slices as usize;
                for (peer, outcome) in run_t1_interleaved(&configs.t1, &peers, slices, run) {
                    eprintln!(
                        "run {}/{} T1 {:<12} {} slices  {}",
                        run + 1,
                        args.runs,
                        peer.name(),
                        slices,
                        describe(workload, &outcome)
                    );
                    outcomes.entry((workload, peer)).or_default().push(outcome);
                }
                continue;
            }
            for i in 0..peers.len() {
                let peer = peers[(i + run) % peers.len()];
                let started = Instant::now();
                let outcome = run_one(&configs, workload, peer);
                eprintln!(
                    "run {}/{} {} {:<12} {:>6.2} s  {}",
                    run + 1,
                    args.runs,
                    workload.id(),
                    peer.name(),
                    started.elapsed().as_secs_f64(),
                    describe(workload, &outcome)
                );
                outcomes.entry((workload, peer)).or_default().push(outcome);
            }
        }
    }

    let mut cells: BTreeMap<Workload, BTreeMap<Peer, Cell>> = BTreeMap::new();
    for ((workload, peer), runs) in outcomes {
        if let Some(cell) = Cell::from_runs(runs) {
            cells.entry(workload).or_default().insert(peer, cell);
        }
    }
    let report = Report {
        machine: report::machine(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        quick: args.quick,
        configs,
        runs: args.runs as usize,
        cells,
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    if report.has_failures() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs T1 for every peer in `slices` slices, interleaved (the order rotating from slice to slice
/// and run to run), and pools each peer's round trips. A peer that fails or does not run T1 is
/// not asked again.
fn run_t1_interleaved(
    cfg: &T1Config,
    peers: &[Peer],
    slices: usize,
    run: usize,
) -> Vec<(Peer, Outcome)> {
    let slice = T1Config {
        round_trips: cfg.round_trips.div_ceil(slices),
        warmup: cfg.warmup.div_ceil(slices),
        ..cfg.clone()
    };
    let mut pools: Vec<(Peer, Pool)> = peers
        .iter()
        .map(|&peer| (peer, Pool::Collecting(Vec::with_capacity(cfg.round_trips))))
        .collect();
    for s in 0..slices {
        for i in 0..pools.len() {
            let index = (i + s + run) % pools.len();
            let (peer, pool) = &mut pools[index];
            let Pool::Collecting(rtts) = pool else {
                continue;
            };
            match (peer_fns(*peer).t1)(&slice) {
                Ok(Some(result)) => rtts.extend(result.rtts),
                Ok(None) => *pool = Pool::NotRun,
                Err(e) => *pool = Pool::Failed(e),
            }
        }
    }
    pools
        .into_iter()
        .map(|(peer, pool)| {
            let outcome = match pool {
                Pool::Collecting(rtts) => T1Result::from_rtts(rtts).map(|r| Some(r.into())),
                Pool::NotRun => Ok(None),
                Pool::Failed(e) => Err(e),
            };
            (peer, outcome)
        })
        .collect()
}

/// One peer's T1 round trips, pooled over slices.
enum Pool {
    /// Every slice so far succeeded.
    Collecting(Vec<Duration>),
    /// The peer does not run T1.
    NotRun,
    /// A slice failed; the peer is not asked again.
    Failed(BenchError),
}

/// A progress line's verdict.
fn describe(workload: Workload, outcome: &Outcome) -> String {
    match outcome {
        Ok(Some(figures)) => format!("ok, {}", figures.headline(workload)),
        Ok(None) => "not run by this peer".to_owned(),
        Err(e) => format!("FAILED: {e}"),
    }
}

/// Runs one workload for one peer.
fn run_one(configs: &Configs, workload: Workload, peer: Peer) -> Outcome {
    let fns = peer_fns(peer);
    Ok(match workload {
        Workload::T1 => (fns.t1)(&configs.t1)?.map(Figures::from),
        Workload::T2 => (fns.t2)(&configs.t2)?.map(Figures::from),
        Workload::T3 => (fns.t3)(&configs.t3)?.map(Figures::from),
        Workload::T4 => (fns.t4)(&configs.t4)?.map(Figures::from),
    })
}

/// The entry points of each peer.
fn peer_fns(peer: Peer) -> PeerFns {
    match peer {
        Peer::RawUdp => PeerFns {
            t1: baselines::raw_udp::t1,
            t2: baselines::raw_udp::t2,
            t3: baselines::raw_udp::t3,
            t4: baselines::raw_udp::t4,
        },
        Peer::RawBatched => PeerFns {
            t1: baselines::raw_batched::t1,
            t2: baselines::raw_batched::t2,
            t3: baselines::raw_batched::t3,
            t4: baselines::raw_batched::t4,
        },
        Peer::Quinn => PeerFns {
            t1: baselines::quinn_peer::t1,
            t2: baselines::quinn_peer::t2,
            t3: baselines::quinn_peer::t3,
            t4: baselines::quinn_peer::t4,
        },
        Peer::Tickwire => PeerFns {
            t1: tickwire_bench::t1,
            t2: tickwire_bench::t2,
            t3: tickwire_bench::t3,
            t4: tickwire_bench::t4,
        },
        Peer::TickwireSecure => PeerFns {
            t1: tickwire_secure::t1,
            t2: tickwire_secure::t2,
            t3: tickwire_secure::t3,
            t4: tickwire_secure::t4,
        },
        Peer::TickwireQuic => PeerFns {
            t1: tickwire_quic_bench::t1,
            t2: tickwire_quic_bench::t2,
            t3: tickwire_quic_bench::t3,
            t4: tickwire_quic_bench::t4,
        },
    }
}
