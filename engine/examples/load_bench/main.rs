//! Load benchmark: workloads T5 and L1 of `shared/workloads.md`, with the server, the clients
//! and the flood in three processes.
//!
//! ```text
//! cargo run --release -p tickwire --example load_bench -- [--json] [--clients 1000] \
//!     [--rate-hz 30] [--phase-s 10] [--garbage-rate 100000] [--handshake-rate 50000]
//! ```
//!
//! This process starts itself again twice: once as the server (`serve`: an echo server, which
//! reports its counters on request over stdin/stdout) and, for L1, as the flood (`flood`:
//! garbage and forged handshakes from other loopback ports). It then connects the clients
//! (`tickwire::Client`, each its own socket and driver task, on this process's tokio runtime)
//! and runs, in one run:
//!
//! 1. **warmup** (`--warmup-s`): every client sends `--rate-hz` messages of `--message-len`
//!    bytes per second; not measured;
//! 2. **T5** (`--phase-s`): the same, measured: the baseline of L1;
//! 3. **L1** (`--phase-s`): the same with the flood running;
//! 4. **drain** (1 s): nothing sent, late echoes counted in the phase they were sent in.
//!
//! Per phase it reports the offered and delivered rates, round-trip latency percentiles, the
//! server's CPU-seconds per second (`utime + stime` of its process from `/proc`), the machine's
//! softirq time (loopback delivery is charged to no process on this kernel), the server's drop
//! counters by reason and its socket's kernel drops, its resident memory, and (L1) the flood's
//! achieved rates. Before the phases: the server's memory per connection ((RSS with the clients
//! connected − RSS before) ÷ clients). Client disconnects of any kind are counted and make the
//! run fail (exit status 1), as do connect failures.
//!
//! Layout: `clients.rs` (the clients), `serve.rs` (the server role), `flood.rs` (the flood
//! role), `children.rs` (starting and talking to the other two processes), `report.rs`
//! (snapshots, phase figures, output), `procfs.rs` (`/proc` readings).

mod children;
mod clients;
mod flood;
mod procfs;
mod report;
mod serve;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tickwire::ChannelId;

use children::{FloodProcess, ServerProcess};
use clients::{ClientPlan, ClientTally, Shared, DRAIN, PHASES, STOP};
use flood::{FloodArgs, FloodIo};
use report::{phase_figures, PhaseFigures, Snapshot};
use serve::ServeArgs;

/// T5 and L1: many clients against a server in its own process, then with a flood.
#[derive(Parser, Debug)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Role {
    /// The server process (started by a run; can be run by hand).
    Serve(ServeArgs),
    /// The flood process (started by a run; can be run by hand against any server).
    Flood(FloodArgs),
}

/// Options of a run.
#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Print one JSON object on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Clients.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Messages per second per client.
    #[arg(long, default_value_t = 30.0)]
    rate_hz: f64,
    /// Bytes per message (at least 17: sequence number, send time, phase).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(17..=1100))]
    message_len: u16,
    /// Channel of the default layout: 0 unreliable, 1 sequenced, 2 reliable-ordered, 3
    /// reliable-unordered.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=3))]
    channel: u8,
    /// Length of each measured phase (T5, L1), in seconds.
    #[arg(long, default_value_t = 10.0)]
    phase_s: f64,
    /// Length of the unmeasured warm-up, in seconds.
    #[arg(long, default_value_t = 2.0)]
    warmup_s: f64,
    /// Skip the L1 phase (no flood).
    #[arg(long)]
    no_flood: bool,
    /// L1: garbage datagrams per second.
    #[arg(long, default_value_t = 100_000)]
    garbage_rate: u64,
    /// L1: forged handshake datagrams per second.
    #[arg(long, default_value_t = 50_000)]
    handshake_rate: u64,
    /// L1: how the flood sends (see `flood --help`).
    #[arg(long, value_enum, default_value_t = FloodIo::Send)]
    flood_io: FloodIo,
    /// L1: source sockets per flood thread.
    #[arg(long, default_value_t = 128)]
    flood_sockets: usize,
    /// Handshakes in progress at once while connecting.
    #[arg(long, default_value_t = 64)]
    connect_parallel: usize,
    /// Worker threads of the clients' tokio runtime.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Worker threads of the server's tokio runtime (1: current-thread).
    #[arg(long, default_value_t = 1)]
    server_threads: usize,
    /// Scheduling niceness of the server process (`nice -n`; below 0 needs root). On a machine
    /// where the clients and the flood share the server's cores, a negative value stands for
    /// the server having its CPU to itself, as it would with the load coming from elsewhere.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    server_nice: i32,
    /// Kernel socket buffer requested per client socket, in bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    client_socket_buffer: usize,
    /// Seed of the send offsets and of the flood.
    #[arg(long, default_value_t = 5)]
    seed: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.role {
        Some(Role::Serve(args)) => return serve::serve(args),
        Some(Role::Flood(args)) => return flood::flood(args),
        None => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.run.client_threads.max(1))
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("no tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli.run)) {
        Ok(report) => {
            let failed = report["failed"].as_bool().unwrap_or(true);
            if cli.run.json {
                println!("{report:#}");
            }
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("load_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Blocking I/O with a child process, allowed on this multi-threaded runtime.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

async fn run(args: &RunArgs) -> Result<Value, String> {
    let load_before = procfs::load_average();
    let serve_args = ServeArgs {
        bind: "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
        max_connections: args.clients + 64,
        threads: args.server_threads,
    };
    let mut server = ServerProcess::start(&serve_args, args.server_nice)?;
    let (pid, addr) = (server.pid(), server.addr);
    eprintln!("server pid {pid} on {addr}; load average {load_before}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = blocking(|| server.stats().map(|s| Snapshot::take(pid, addr.port(), s)))?;

    let plan = ClientPlan {
        server: addr,
        rate_hz: args.rate_hz,
        message_len: usize::from(args.message_len),
        channel: ChannelId(args.channel),
        socket_buffer_bytes: args.client_socket_buffer,
    };
    eprintln!("connecting {} clients ...", args.clients);
    let connect_started = Instant::now();
    let (connected, connect_errors) =
        clients::connect_all(&plan, args.clients, args.connect_parallel).await;
    let connect_s = connect_started.elapsed().as_secs_f64();
    eprintln!(
        "connected {} in {connect_s:.2} s, {} failed",
        connected.len(),
        connect_errors.len()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_clients = blocking(|| server.stats().map(|s| Snapshot::take(pid, addr.port(), s)))?;
    let client_count = connected.len();
    let generator_rss = procfs::process_rss(std::process::id()).unwrap_or(0);

    let shared = Shared::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let period = 1.0 / args.rate_hz;
    let mut tasks = tokio::task::JoinSet::new();
    for client in connected {
        let offset = Duration::from_secs_f64(rng.random_range(0.0..period));
        tasks.spawn(clients::run_client(
            client,
            plan.clone(),
            Arc::clone(&shared),
            offset,
        ));
    }

    eprintln!("warmup {:.1} s", args.warmup_s);
    tokio::time::sleep(Duration::from_secs_f64(args.warmup_s)).await;
    let phase_len = Duration::from_secs_f64(args.phase_s);
    let mut snapshots = Vec::new();
    let mut flood_report = None;
    let mut flood_error = None;

    shared.set_phase(1);
    snapshots.push(blocking(|| {
        server.stats().map(|s| Snapshot::take(pid, addr.port(), s))
    })?);
    eprintln!(
        "T5: {} clients x {} msg/s, {:.1} s",
        client_count, args.rate_hz, args.phase_s
    );
    tokio::time::sleep(phase_len).await;

    if !args.no_flood {
        let flood_args = FloodArgs {
            server: addr,
            garbage_rate: args.garbage_rate,
            handshake_rate: args.handshake_rate,
            duration_s: args.phase_s,
            sockets: args.flood_sockets,
            io: args.flood_io,
            seed: args.seed,
        };
        shared.set_phase(2);
        snapshots.push(blocking(|| {
            server.stats().map(|s| Snapshot::take(pid, addr.port(), s))
        })?);
        let flood = FloodProcess::start(&flood_args)?;
        eprintln!(
            "L1: the same plus {} garbage/s and {} forged handshakes/s (flood pid {}), {:.1} s",
            args.garbage_rate,
            args.handshake_rate,
            flood.pid(),
            args.phase_s
        );
        tokio::time::sleep(phase_len).await;
        shared.set_phase(DRAIN);
        snapshots.push(blocking(|| {
            server.stats().map(|s| Snapshot::take(pid, addr.port(), s))
        })?);
        match blocking(|| flood.finish(Duration::from_secs(10))) {
            Ok(report) => flood_report = Some(report),
            Err(e) => flood_error = Some(e),
        }
    } else {
        shared.set_phase(DRAIN);
        snapshots.push(blocking(|| {
            server.stats().map(|s| Snapshot::take(pid, addr.port(), s))
        })?);
    }

    eprintln!("drain 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
    shared.set_phase(STOP);
    let mut tally = ClientTally::default();
    let mut disconnects: Vec<String> = Vec::new();
    let collect = async {
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(client) => {
                    if let Some(reason) = &client.disconnected {
                        disconnects.push(reason.clone());
                    }
                    tally.merge(client);
                }
                Err(e) => disconnects.push(format!("client task failed: {e}")),
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), collect)
        .await
        .is_err()
    {
        return Err("client tasks did not stop within 10 s".to_owned());
    }
    let last = blocking(|| server.stats().map(|s| Snapshot::take(pid, addr.port(), s)))?;
    blocking(|| server.stop(Duration::from_secs(5)));

    let mut phases: Vec<PhaseFigures> = Vec::new();
    let names = if args.no_flood {
        &["T5"][..]
    } else {
        &["T5", "L1"][..]
    };
    for (i, name) in names.iter().enumerate() {
        let slot = &mut tally.phases[i + 1];
        let flood = (*name == "L1").then_some(flood_report.as_ref()).flatten();
        let figures = phase_figures(PHASES[i + 1], &snapshots[i], &snapshots[i + 1], slot, flood);
        eprintln!("{}", report::describe(&figures));
        phases.push(figures);
    }

    let rss_per_connection =
        (with_clients.server_rss as f64 - idle.server_rss as f64) / client_count.max(1) as f64;
    let mut disconnect_reasons = std::collections::BTreeMap::<String, u64>::new();
    for reason in &disconnects {
        *disconnect_reasons.entry(reason.clone()).or_default() += 1;
    }
    let rise = match (phases.first(), phases.get(1)) {
        (Some(t5), Some(l1)) => json!({
            "p50_us": l1.p50_us - t5.p50_us,
            "p99_us": l1.p99_us - t5.p99_us,
            "p99_ratio": report::round(l1.p99_us / t5.p99_us.max(1.0)),
        }),
        _ => Value::Null,
    };
    let failed = !disconnects.is_empty()
        || !connect_errors.is_empty()
        || flood_error.is_some()
        || tally.bad_echoes > 0;
    eprintln!(
        "server memory per connection {:.0} B; client disconnects {}; connect failures {}; L1 p99 rise {}",
        rss_per_connection,
        disconnects.len(),
        connect_errors.len(),
        rise
    );
    Ok(json!({
        "workloads": ["T5", "L1"],
        "machine": procfs::machine(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "config": {
            "clients": args.clients,
            "rate_hz": args.rate_hz,
            "message_len": args.message_len,
            "channel": args.channel,
            "phase_s": args.phase_s,
            "warmup_s": args.warmup_s,
            "garbage_rate": args.garbage_rate,
            "handshake_rate": args.handshake_rate,
            "flood_io": format!("{:?}", args.flood_io).to_lowercase(),
            "flood_sockets_per_thread": args.flood_sockets,
            "client_threads": args.client_threads,
            "server_threads": args.server_threads,
            "server_nice": args.server_nice,
            "seed": args.seed,
        },
        "load_average_1m": { "before": load_before, "after": procfs::load_average() },
        "connect": {
            "connected": client_count,
            "failed": connect_errors.len(),
            "errors": connect_errors.iter().take(5).collect::<Vec<_>>(),
            "seconds": report::round(connect_s),
        },
        "server_memory": {
            "rss_before_clients": idle.server_rss,
            "rss_with_clients": with_clients.server_rss,
            "rss_end": last.server_rss,
            "bytes_per_connection": report::round(rss_per_connection),
            "generator_rss_with_clients": generator_rss,
        },
        "phases": phases
            .iter()
            .map(|p| (p.name.to_owned(), p.json.clone()))
            .collect::<serde_json::Map<String, Value>>(),
        "l1_latency_rise": rise,
        "client_disconnects": disconnects.len(),
        "client_disconnect_reasons": disconnect_reasons,
        "bad_echoes": tally.bad_echoes,
        "flood_error": flood_error,
        "server_end": last.server,
        "failed": failed,
    }))
}
