//! The command line: `server`, `play`, `bots`, `local`, `keygen` and `token`.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use thiserror::Error;
use tickwire::{CertFingerprint, ClientError, Transport};
use tokio::sync::watch;

use crate::bot::{run_bots, BotsConfig, BotsSummary};
use crate::client::{ClientConfig, GameClient};
use crate::local::{run_local, LocalConfig};
use crate::net::{connect_hint, driver_config, Access, NetOptions, Role};
use crate::server::{GameServer, ServerConfig, ServerError};
use crate::tokens::{self, TokenFileError};
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
    /// Write a fresh key for secure servers (`server --secure --key FILE`) and token minting.
    Keygen(KeygenArgs),
    /// Mint a connect token for one client of a secure server (`play --token FILE`).
    Token(TokenArgs),
}

/// What a server serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ServeTransport {
    /// Tickwire's own protocol on UDP port P.
    Native,
    /// QUIC only, on UDP port P + 1.
    Quic,
    /// Native on P and QUIC on P + 1.
    Both,
}

impl ServeTransport {
    /// The engine's setting for a server.
    pub fn transport(self) -> Transport {
        match self {
            Self::Native => Transport::Native,
            Self::Quic => Transport::Quic,
            Self::Both => Transport::Auto,
        }
    }
}

/// What a player or a bot dials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DialTransport {
    /// Tickwire's own protocol on UDP port P.
    Native,
    /// QUIC on UDP port P + 1.
    Quic,
    /// Native first; QUIC on P + 1 if native gets no answer within 1 s.
    Auto,
}

impl DialTransport {
    /// The engine's setting for a client.
    pub fn transport(self) -> Transport {
        match self {
            Self::Native => Transport::Native,
            Self::Quic => Transport::Quic,
            Self::Auto => Transport::Auto,
        }
    }
}

/// How a player or a bot reaches the server: transport, certificate pin, connect token.
#[derive(Clone, Debug, Args)]
pub struct DialArgs {
    /// Transport: native, quic, or auto (native, then QUIC on port + 1 if native gets no
    /// answer within 1 s). With --token, auto means native (tokens are a native-transport
    /// feature).
    #[arg(long, value_enum, default_value_t = DialTransport::Auto)]
    pub transport: DialTransport,
    /// Over QUIC, accept only the server certificate with this SHA-256 (64 hex digits, ':'
    /// allowed; the server prints it at start). Without it, a self-signed certificate is
    /// accepted from a loopback address only, with a warning.
    #[arg(long, value_name = "HEX")]
    pub server_cert_sha256: Option<CertFingerprint>,
    /// A connect token file for a secure server (from `demo-game token`).
    #[arg(long, value_name = "FILE")]
    pub token: Option<PathBuf>,
}

impl DialArgs {
    /// The transport and its security for dialling `server`, with the simulated network.
    fn options(&self, server: SocketAddr, net: &NetArgs) -> Result<NetOptions, CliError> {
        let mut options = NetOptions {
            transport: self.transport.transport(),
            server_cert_sha256: self.server_cert_sha256,
            ..net.options()
        };
        if let Some(path) = &self.token {
            options.access = Access::Token(tokens::load_token(path, server)?);
            options.transport = secure_client_transport(self.transport)?;
        }
        Ok(options)
    }
}

/// `demo-game keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the key (64 hex digits; replaced if it exists). Keep it secret: whoever
    /// holds it can mint tokens.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `demo-game token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The key file the server runs with (`server --secure --key FILE`).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The server address the client will dial, exactly as the server lists it (its --bind
    /// or --public-addr).
    #[arg(long, value_name = "HOST:PORT")]
    pub server: String,
    /// The client's id; the server keys sessions by it, so give each client its own.
    #[arg(long, value_name = "N")]
    pub client_id: u64,
    /// Seconds the token may be used to connect (a session outlives it).
    #[arg(long, default_value_t = 300, value_name = "S")]
    pub valid_s: u64,
    /// Where to write the token.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
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
            ..NetOptions::default()
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
    /// Transport served: native (UDP port P), quic (P + 1), or both. Default: both, or
    /// native with --secure.
    #[arg(long, value_enum)]
    pub transport: Option<ServeTransport>,
    /// Admit only clients with a connect token minted with --key (encrypted, authenticated
    /// sessions; native transport only).
    #[arg(long, requires = "key")]
    pub secure: bool,
    /// The key file for --secure (from `demo-game keygen`).
    #[arg(long, value_name = "FILE", requires = "secure")]
    pub key: Option<PathBuf>,
    /// With --secure: an address clients dial, as tokens list it (repeat for several).
    /// Default: --bind, if it names one address and port.
    #[arg(long, value_name = "HOST:PORT", requires = "secure")]
    pub public_addr: Vec<SocketAddr>,
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
    /// Transport and security.
    #[command(flatten)]
    pub dial: DialArgs,
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
    /// Transport and security (--token only with --count 1: tokens are per client).
    #[command(flatten)]
    pub dial: DialArgs,
    /// For a secure server: each bot mints its own token with this key file (a test and demo
    /// shortcut; real clients get tokens from a backend).
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    pub key: Option<PathBuf>,
    /// With --key: the client id of the first bot's token (bot i gets N + i).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub first_client_id: u64,
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
    /// The transport you and the bots dial (the server serves both): native, quic or auto.
    #[arg(long, value_enum, default_value_t = DialTransport::Native)]
    pub transport: DialTransport,
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
    /// A key or token file could not be made or used.
    #[error(transparent)]
    Tokens(#[from] TokenFileError),
    /// Secure sessions were asked for over QUIC.
    #[error("connect tokens secure the native transport only; QUIC (--transport {0}) would admit clients without one: use --transport native (the default with --secure / --token)")]
    SecureNeedsNative(&'static str),
    /// A secure server without an address for its tokens.
    #[error("--secure needs the address clients dial, to check tokens against: bind a fixed address and port (not {0}) or give --public-addr HOST:PORT")]
    NoPublicAddr(SocketAddr),
    /// One token for many bots.
    #[error("a token admits one client, so --token needs --count 1; for many bots give --key FILE and each bot mints its own")]
    TokenForManyBots,
    /// The client could not connect, with a hint about secure servers.
    #[error("{source}; {hint}")]
    ConnectHint {
        /// The driver's error.
        #[source]
        source: Box<ClientError>,
        /// What to check.
        hint: &'static str,
    },
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
            Command::Keygen(args) => keygen(&args),
            Command::Token(args) => token(&args),
        }
    })
}

async fn serve(args: ServerArgs) -> Result<(), CliError> {
    let mut options = NetOptions::default();
    match (&args.key, args.transport) {
        (Some(key), None | Some(ServeTransport::Native)) => {
            let key = tokens::load_key(key)?;
            let public_addresses = if args.public_addr.is_empty() {
                if args.bind.ip().is_unspecified() || args.bind.port() == 0 {
                    return Err(CliError::NoPublicAddr(args.bind));
                }
                vec![args.bind]
            } else {
                args.public_addr.clone()
            };
            options.access = Access::RequireTokens {
                key,
                public_addresses,
            };
        }
        (Some(_), Some(other)) => {
            return Err(CliError::SecureNeedsNative(other.transport().name()));
        }
        (None, transport) => {
            options.transport = transport.unwrap_or(ServeTransport::Both).transport();
        }
    }
    let config = ServerConfig {
        bind: args.bind,
        tick_hz: args.tick_hz,
        snapshot_hz: args.snapshot_hz,
        driver: driver_config(
            Role::Server {
                max_players: args.max_players,
            },
            &options,
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
    if let (Some(quic), Some(cert)) = (server.quic_addr(), server.cert_sha256()) {
        let _ = writeln!(
            status_out,
            "QUIC on {quic}, certificate SHA-256 {cert}\n  clients pin it: --server-cert-sha256 {cert}"
        );
    }
    if args.secure {
        let _ = writeln!(
            status_out,
            "secure: only clients with a connect token minted with {} are admitted",
            args.key.as_deref().map_or(Path::new("?"), |p| p).display()
        );
    }
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
                    "tick {:>7} | players {:>3} ({:>3} quic) | tick p50 {:>6.0} µs p99 {:>6.0} µs | out {:>8.1} kbps | in {:>7.1} kbps | snapshot {:>5.0} B",
                    s.tick,
                    s.players,
                    s.quic_players,
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
    let options = args.dial.options(server, &args.net)?;
    crate::tui::check_size()?;
    let client = GameClient::connect(ClientConfig {
        server,
        name: args.name,
        driver: driver_config(Role::Client, &options),
        record_views: 0,
    })
    .await
    .map_err(|source| match connect_hint(&source, &options) {
        Some(hint) => CliError::ConnectHint {
            source: Box::new(source),
            hint,
        },
        None => CliError::Connect(source),
    })?;
    warn_unpinned(client.transport(), &options, server);
    crate::tui::run(client).await?;
    Ok(())
}

async fn bots(args: BotsArgs) -> Result<(), CliError> {
    let server = resolve(&args.server)?;
    if args.dial.token.is_some() && args.count != 1 {
        return Err(CliError::TokenForManyBots);
    }
    let mut config = BotsConfig::new(
        server,
        args.count,
        Some(Duration::from_secs(args.duration_s)),
    );
    config.net = args.dial.options(server, &args.net)?;
    if let Some(key) = &args.key {
        config.mint_tokens = Some(tokens::load_key(key)?);
        config.first_client_id = args.first_client_id;
        config.net.transport = secure_client_transport(args.dial.transport)?;
    }
    let (_stop, stopped) = watch::channel(false);
    eprintln!(
        "{} bots against {server} for {} s...",
        args.count, args.duration_s
    );
    let config_net = config.net.clone();
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
    if let Some(transport) = outcomes.iter().find_map(|o| o.transport) {
        warn_unpinned(transport, &config_net, server);
    }
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
        net: NetOptions {
            transport: args.transport.transport(),
            ..args.net.options()
        },
    })
    .await
}

fn keygen(args: &KeygenArgs) -> Result<(), CliError> {
    tokens::generate_key(&args.out)?;
    println!(
        "wrote a new key to {0}: run `demo-game server --secure --key {0}` and mint tokens with `demo-game token --key {0} ...`",
        args.out.display()
    );
    Ok(())
}

fn token(args: &TokenArgs) -> Result<(), CliError> {
    let server = resolve(&args.server)?;
    let key = tokens::load_key(&args.key)?;
    let token = tokens::mint(
        &key,
        server,
        args.client_id,
        Duration::from_secs(args.valid_s),
    )?;
    tokens::save_token(&token, &args.out)?;
    println!(
        "wrote a token for client {} to {}, valid {} s for {server}: `demo-game play --server {server} --token {}`",
        args.client_id,
        args.out.display(),
        args.valid_s,
        args.out.display()
    );
    Ok(())
}

/// The transport of a client with a connect token: native (auto falls back to nothing).
fn secure_client_transport(asked: DialTransport) -> Result<Transport, CliError> {
    match asked {
        DialTransport::Native | DialTransport::Auto => Ok(Transport::Native),
        DialTransport::Quic => Err(CliError::SecureNeedsNative("quic")),
    }
}

/// Says on stderr when a QUIC connection accepted an unverified (loopback) certificate.
fn warn_unpinned(used: Transport, options: &NetOptions, server: SocketAddr) {
    if used != Transport::Native && options.server_cert_sha256.is_none() {
        eprintln!(
            "warning: accepted {server}'s QUIC certificate without verifying it (allowed on loopback only); pin it with --server-cert-sha256 HEX (the server prints it at start)"
        );
    }
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
