//! The command line: `server`, `play`, `bots` and `local`.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use thiserror::Error;
use tickwire::ClientError;
use tokio::sync::watch;

use crate::bot::{run_bots, BotsConfig, BotsSummary};
use crate::client::{ClientConfig, GameClient};
use crate::local::{run_local, LocalConfig};
use crate::net::{driver_config, NetOptions, Role};
use crate::server::{GameServer, ServerConfig, ServerError};
use crate::tui::TuiError;

/// A multiplayer arena game in the terminal, on the Tickwire engine.
#[derive(Debug, Parser)]
#[command(name = "demo-game", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a game server; prints a status line each second.
    Server(ServerArgs),
    /// Join a server and play in this terminal.
    Play(PlayArgs),
    /// Run headless bots against a server; with --json, print one summary object at the end.
    Bots(BotsArgs),
    /// A server, bots and you, in one command.
    Local(LocalArgs),
}

/// Simulated network conditions on this side's socket (each direction).
#[derive(Clone, Copy, Debug, Default, Args)]
pub struct NetArgs {
    /// Added one-way latency in ms (each direction, so the RTT grows by twice this).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub lag_ms: u64,
    /// Added jitter in ms (uniform, ±N).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub jitter_ms: u64,
    /// Datagrams dropped, in percent (each direction).
    #[arg(long, default_value_t = 0.0, value_name = "PCT", value_parser = parse_percent)]
    pub loss: f64,
}

impl NetArgs {
    /// The network options these flags ask for.
    pub fn options(&self) -> NetOptions {
        NetOptions {
            lag_ms: self.lag_ms,
            jitter_ms: self.jitter_ms,
            loss_pct: self.loss,
            seed: 0,
        }
    }
}

/// `demo-game server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address and UDP port to listen on.
    #[arg(long, default_value = "0.0.0.0:7777", value_name = "ADDR:PORT")]
    pub bind: SocketAddr,
    /// Simulation ticks per second.
    #[arg(long, default_value_t = 60, value_name = "HZ")]
    pub tick_hz: u32,
    /// Snapshots per second to each client (at most the tick rate).
    #[arg(long, default_value_t = 30, value_name = "HZ")]
    pub snapshot_hz: u32,
    /// Most players at once.
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub max_players: usize,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "S")]
    pub duration_s: Option<u64>,
    /// At the end, print a JSON summary on stdout (status lines go to stderr).
    #[arg(long)]
    pub json: bool,
}

/// `demo-game play`.
#[derive(Debug, Args)]
pub struct PlayArgs {
    /// The server to join.
    #[arg(long, value_name = "HOST:PORT")]
    pub server: String,
    /// Your name on the scoreboard (up to 16 characters).
    #[arg(long, default_value = "player")]
    pub name: String,
    /// Simulated network.
    #[command(flatten)]
    pub net: NetArgs,
}

/// `demo-game bots`.
#[derive(Debug, Args)]
pub struct BotsArgs {
    /// The server to join.
    #[arg(long, value_name = "HOST:PORT")]
    pub server: String,
    /// How many bots.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub count: usize,
    /// How long each bot plays, in seconds.
    #[arg(long, default_value_t = 30, value_name = "S")]
    pub duration_s: u64,
    /// Print one JSON object with the results at the end.
    #[arg(long)]
    pub json: bool,
    /// Simulated network.
    #[command(flatten)]
    pub net: NetArgs,
}

/// `demo-game local`.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// How many bots play with you.
    #[arg(long, default_value_t = 7, value_name = "N")]
    pub bots: usize,
    /// Your name on the scoreboard.
    #[arg(long, default_value = "you")]
    pub name: String,
    /// Simulation ticks per second.
    #[arg(long, default_value_t = 60, value_name = "HZ")]
    pub tick_hz: u32,
    /// Snapshots per second.
    #[arg(long, default_value_t = 30, value_name = "HZ")]
    pub snapshot_hz: u32,
    /// Simulated network on your connection.
    #[command(flatten)]
    pub net: NetArgs,
}

/// Why a command failed; each message says what to do.
#[derive(Debug, Error)]
pub enum CliError {
    /// The server could not start.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The client could not connect.
    #[error(transparent)]
    Connect(#[from] ClientError),
    /// The server address did not resolve.
    #[error("cannot resolve {address:?}: {reason}; give HOST:PORT, for example 127.0.0.1:7777")]
    Resolve {
        /// What was given.
        address: String,
        /// Why.
        reason: String,
    },
    /// The terminal client failed.
    #[error(transparent)]
    Tui(#[from] TuiError),
    /// Some bots failed to connect or were dropped.
    #[error("{failed} of {bots} bots failed to connect or were dropped (first: {first})")]
    BotsFailed {
        /// Bots started.
        bots: usize,
        /// Bots that failed.
        failed: usize,
        /// The first failure.
        first: String,
    },
    /// The async runtime could not start.
    #[error("could not start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Parses the command line, runs the command and maps errors to a message and exit status 1
/// (clap exits with 2 on bad arguments).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => serve(args).await,
            Command::Play(args) => play(args).await,
            Command::Bots(args) => bots(args).await,
            Command::Local(args) => local(args).await,
        }
    })
}

async fn serve(args: ServerArgs) -> Result<(), CliError> {
    let config = ServerConfig {
        bind: args.bind,
        tick_hz: args.tick_hz,
        snapshot_hz: args.snapshot_hz,
        driver: driver_config(
            Role::Server {
                max_players: args.max_players,
            },
            &NetOptions::default(),
        ),
        ..ServerConfig::default()
    };
    let server = GameServer::start(config).await?;
    let mut status_out: Box<dyn Write + Send> = if args.json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let _ = writeln!(
        status_out,
        "demo-game server on {} ({} Hz tick, {} Hz snapshots); Ctrl-C stops",
        server.local_addr(),
        args.tick_hz,
        args.snapshot_hz
    );
    let deadline = args
        .duration_s
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut every_second = tokio::time::interval(Duration::from_secs(1));
    every_second.tick().await;
    loop {
        let until_deadline = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = every_second.tick() => {
                let s = server.status();
                let _ = writeln!(
                    status_out,
                    "tick {:>7} | players {:>3} | tick p50 {:>6.0} µs p99 {:>6.0} µs | out {:>8.1} kbps | in {:>7.1} kbps | snapshot {:>5.0} B",
                    s.tick,
                    s.players,
                    s.tick_us_p50,
                    s.tick_us_p99,
                    s.bytes_out_per_sec as f64 * 8.0 / 1000.0,
                    s.bytes_in_per_sec as f64 * 8.0 / 1000.0,
                    s.snapshot_bytes_mean,
                );
            }
            _ = tokio::signal::ctrl_c() => break,
            () = until_deadline => break,
        }
    }
    let summary = server.summary();
    server.shutdown().await;
    if args.json {
        let json = serde_json::json!({
            "ticks": summary.ticks,
            "busy_ticks": summary.busy_ticks,
            "tick_hz": args.tick_hz,
            "snapshot_hz": args.snapshot_hz,
            "tick_us_p50": summary.tick_us_p50,
            "tick_us_p99": summary.tick_us_p99,
            "max_players": summary.max_players,
            "bytes_out": summary.bytes_out,
            "bytes_in": summary.bytes_in,
            "late_inputs": summary.late_inputs,
        });
        println!("{json}");
    } else {
        println!(
            "stopped after {} ticks: tick p50 {:.0} µs, p99 {:.0} µs, up to {} players",
            summary.ticks, summary.tick_us_p50, summary.tick_us_p99, summary.max_players
        );
    }
    Ok(())
}

async fn play(args: PlayArgs) -> Result<(), CliError> {
    let server = resolve(&args.server)?;
    crate::tui::check_size()?;
    let client = GameClient::connect(ClientConfig {
        server,
        name: args.name,
        driver: driver_config(Role::Client, &args.net.options()),
        record_views: 0,
    })
    .await?;
    crate::tui::run(client).await?;
    Ok(())
}

async fn bots(args: BotsArgs) -> Result<(), CliError> {
    let server = resolve(&args.server)?;
    let mut config = BotsConfig::new(
        server,
        args.count,
        Some(Duration::from_secs(args.duration_s)),
    );
    config.net = args.net.options();
    let (_stop, stopped) = watch::channel(false);
    eprintln!(
        "{} bots against {server} for {} s...",
        args.count, args.duration_s
    );
    let run = run_bots(config, stopped);
    tokio::pin!(run);
    let mut progress = tokio::time::interval(Duration::from_secs(5));
    progress.tick().await;
    let mut elapsed = 0;
    let outcomes = loop {
        tokio::select! {
            outcomes = &mut run => break outcomes,
            _ = progress.tick() => {
                elapsed += 5;
                eprintln!("  {elapsed} s of {} s", args.duration_s);
            }
        }
    };
    let summary = BotsSummary::of(&outcomes);
    if args.json {
        match serde_json::to_string(&summary) {
            Ok(json) => println!("{json}"),
            Err(error) => eprintln!("error: could not write the summary: {error}"),
        }
    } else {
        println!(
            "{} of {} bots connected, {} dropped; {} snapshots; RTT p50 {:.1} ms p99 {:.1} ms; {:.1} kbps down, {:.1} kbps up per bot; {} corrections; longest without a snapshot {:.0} ms",
            summary.connected,
            summary.bots,
            summary.disconnects,
            summary.snapshots_received,
            summary.rtt_ms_p50,
            summary.rtt_ms_p99,
            summary.kbps_down_per_bot,
            summary.kbps_up_per_bot,
            summary.prediction_corrections,
            summary.max_snapshot_age_ms,
        );
    }
    if summary.ok() {
        return Ok(());
    }
    Err(CliError::BotsFailed {
        bots: summary.bots,
        failed: summary.failures.len(),
        first: summary.failures.first().cloned().unwrap_or_default(),
    })
}

async fn local(args: LocalArgs) -> Result<(), CliError> {
    crate::tui::check_size()?;
    run_local(LocalConfig {
        bots: args.bots,
        name: args.name,
        tick_hz: args.tick_hz,
        snapshot_hz: args.snapshot_hz,
        net: args.net.options(),
    })
    .await
}

fn resolve(address: &str) -> Result<SocketAddr, CliError> {
    let error = |reason: String| CliError::Resolve {
        address: address.to_owned(),
        reason,
    };
    address
        .to_socket_addrs()
        .map_err(|e| error(e.to_string()))?
        .next()
        .ok_or_else(|| error("no address found".into()))
}

fn parse_percent(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=100.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not a percentage between 0 and 100"))
    }
}
