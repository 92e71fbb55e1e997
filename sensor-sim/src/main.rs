//! `sensor-sim`: thousands of simulated sensors reporting to a hub over Tickwire.
//! See `sensor-sim --help` and the README.

use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use sensor_sim::protocol::Command as SensorCommand;
use sensor_sim::store::{ExportFormat, ExportQuery};
use sensor_sim::{run_fleet, Dashboard, FleetConfig, Hub, HubConfig, HubStatus, RunSummary, Store};
use tickwire::sim::LinkConfig;
use tickwire::{
    CertFingerprint, Client, ClientError, ClientId, PrivateKey, ServerVerification, TokenSpec,
    Transport,
};

#[derive(Parser)]
#[command(
    name = "sensor-sim",
    version,
    about = "Thousands of simulated IoT sensors reporting to a hub over Tickwire",
    long_about = "Thousands of simulated IoT sensors reporting to a hub over Tickwire: readings \
                  deduplicated by (sensor, seq), alerts confirmed only once committed to SQLite, \
                  sleepy sensors with store-and-forward backlogs, hub-side clock correction.\n\n\
                  Quick start: sensor-sim run --sensors 100 --duration-s 10"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the hub: accept sensors, store readings and alerts in SQLite, show their state.
    Hub(HubArgs),
    /// Run simulated sensors against a hub; prints a summary at the end.
    Sensors(SensorsArgs),
    /// Run a hub and sensors in one process and print the summary (counted from the database).
    Run(RunArgs),
    /// Print what a hub stored, as CSV or JSON lines.
    Query(QueryArgs),
    /// Queue a command for a sensor (change its rate or sleep interval), or list commands.
    ///
    /// The command goes into the hub's database, so it is held even while no hub runs or the
    /// sensor sleeps; a running hub on that data directory picks it up within 200 ms, sends it
    /// reliably when the sensor is awake, and records the sensor's acknowledgement.
    #[command(
        after_help = "Examples:\n  sensor-sim command --data-dir ./hub-data --sensor 7 set-rate 5\n  \
                      sensor-sim command --data-dir ./hub-data --sensor 7 --wait-s 30 set-sleep-interval 60\n  \
                      sensor-sim command --data-dir ./hub-data list"
    )]
    Command(CommandArgs),
    /// Secure mode's keys and tokens: make a hub key, or mint a sensor's connect token.
    ///
    /// A hub started with `--secure --key FILE` admits only sensors holding a token sealed
    /// with that key. `sensor-sim sensors --secure --key FILE` mints each sensor's token
    /// itself; `token mint` is what a separate provisioning service would do.
    #[command(after_help = "Examples:\n  sensor-sim token keygen --out hub.key\n  \
                      sensor-sim token mint --key hub.key --sensor 7 --hub 203.0.113.7:7878 > sensor7.token")]
    Token(TokenArgs),
}

#[derive(clap::Args)]
struct TokenArgs {
    #[command(subcommand)]
    action: TokenAction,
}

#[derive(Subcommand)]
enum TokenAction {
    /// Generate a new random hub key and write it (64 hex digits) to FILE.
    Keygen {
        /// Where to write the key; refuses to overwrite an existing file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Print (as hex) a connect token for one sensor, sealed with the hub's key.
    Mint {
        /// The hub's key file (from `token keygen`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The sensor's id: the token's client id.
        #[arg(long)]
        sensor: u32,
        /// The hub's public address, HOST:PORT, as the sensor dials it (the token names it).
        #[arg(long)]
        hub: String,
        /// Seconds the token may be used to connect (a session outlives it).
        #[arg(long, default_value_t = 30)]
        valid_s: u64,
    },
}

/// `--secure` and `--key` of the hub and the sensors.
#[derive(clap::Args)]
struct SecureArgs {
    /// Secure mode (native transport only): sessions need a connect token sealed with the
    /// hub's key (authenticated, encrypted, replay-protected). Needs --key.
    #[arg(long, requires = "key")]
    secure: bool,
    /// The hub's key file, 64 hex digits (make one with `sensor-sim token keygen --out FILE`).
    /// Sensors mint their own token from it, one per sensor id.
    #[arg(long, value_name = "FILE", requires = "secure")]
    key: Option<PathBuf>,
}

/// `--server-cert-sha256` of the sensors.
#[derive(clap::Args)]
struct PinArgs {
    /// Over QUIC, accept only the hub certificate with this SHA-256 fingerprint (64 hex
    /// digits, `:` allowed; the hub prints it at start). Without it a self-signed certificate
    /// is accepted from a loopback hub only, with a warning.
    #[arg(long, value_name = "HEX", visible_alias = "hub-cert-sha256")]
    server_cert_sha256: Option<CertFingerprint>,
}

#[derive(clap::Args)]
struct CommandArgs {
    /// The hub's data directory (the database must exist: start the hub once first).
    #[arg(long)]
    data_dir: PathBuf,
    /// The sensor the command is for (with `list`: only its commands).
    #[arg(long)]
    sensor: Option<u32>,
    /// Wait up to this many seconds for the sensor to acknowledge the command (0: do not wait).
    #[arg(long, default_value_t = 0.0)]
    wait_s: f64,
    #[command(subcommand)]
    action: CommandAction,
}

#[derive(Subcommand)]
enum CommandAction {
    /// Sample at HZ samples per second.
    SetRate {
        /// Samples per second (above 0, at most 10000).
        hz: f64,
    },
    /// Sleepy sensors: sleep SECONDS between wakes.
    SetSleepInterval {
        /// Seconds between wakes (0.1 to 86400).
        seconds: f64,
    },
    /// List the commands in the database, pending and acknowledged.
    List,
}

#[derive(clap::Args)]
struct HubArgs {
    /// UDP address to listen on.
    #[arg(long, default_value = "0.0.0.0:7878")]
    bind: SocketAddr,
    /// Directory of the database (created if missing).
    #[arg(long, default_value = "./hub-data")]
    data_dir: PathBuf,
    /// Transport to serve: `native` (Tickwire over UDP on --bind), `quic` (QUIC on the next
    /// port only) or `both`. With QUIC the hub prints its QUIC address and certificate
    /// fingerprint at start.
    #[arg(long, value_enum, default_value_t = HubTransport::Native)]
    transport: HubTransport,
    #[command(flatten)]
    secure: SecureArgs,
    /// Secure mode: the address sensors dial, HOST:PORT, named in their tokens (needed when
    /// --bind is a wildcard like 0.0.0.0).
    #[arg(long, value_name = "HOST:PORT", requires = "secure")]
    public_addr: Option<String>,
    /// Print a status line each second (to stderr) instead of the dashboard, and a JSON
    /// summary (to stdout) on Ctrl-C or SIGTERM.
    #[arg(long)]
    headless: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HubTransport {
    /// Tickwire's own protocol over UDP.
    Native,
    /// QUIC (TLS 1.3) only, on the port after --bind's.
    Quic,
    /// Both, on two ports.
    Both,
}

impl HubTransport {
    fn engine(self) -> Transport {
        match self {
            Self::Native => Transport::Native,
            Self::Quic => Transport::Quic,
            Self::Both => Transport::Auto,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SensorTransport {
    /// Tickwire's own protocol over UDP.
    Native,
    /// QUIC (TLS 1.3), on the hub's port + 1.
    Quic,
    /// Native first, QUIC if native gets no answer within 1 s.
    Auto,
}

impl SensorTransport {
    fn engine(self) -> Transport {
        match self {
            Self::Native => Transport::Native,
            Self::Quic => Transport::Quic,
            Self::Auto => Transport::Auto,
        }
    }
}

#[derive(clap::Args)]
struct FleetArgs {
    /// Samples per second per sensor.
    #[arg(long, default_value_t = 10.0)]
    rate_hz: f64,
    /// Fraction of sensors (0 to 1) that sleep between wakes and send their backlog on waking.
    #[arg(long, default_value_t = 0.0)]
    sleepy_fraction: f64,
    /// Seconds a sleepy sensor sleeps between wakes.
    #[arg(long, default_value_t = 5.0)]
    wake_interval_s: f64,
    /// Seconds of sampling; then sensors deliver what they hold and stop.
    #[arg(long, default_value_t = 10.0)]
    duration_s: f64,
    /// Seed of everything random (signals, clocks, jitter, simulated loss).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated loss on each sensor's socket, in percent, in each direction.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Simulated one-way latency on each sensor's socket, in milliseconds.
    #[arg(long, default_value_t = 0)]
    lag_ms: u64,
    /// Simulated duplication on each sensor's socket, in percent of datagrams, each way.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Simulated reordering: this percent of datagrams is held back by --reorder-ms.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// How long a reordered datagram is held back, in milliseconds.
    #[arg(long, default_value_t = 100)]
    reorder_ms: u64,
    /// Also raise an alert on this fraction (0 to 1) of readings, at random (load tests).
    #[arg(long, default_value_t = 0.0)]
    alert_fraction: f64,
    /// Fraction of sensors (0 to 1) offline at the start: they sample into their backlog and
    /// all connect together after --offline-s.
    #[arg(long, default_value_t = 0.0)]
    offline_fraction: f64,
    /// Seconds the offline sensors stay offline.
    #[arg(long, default_value_t = 0.0)]
    offline_s: f64,
    /// Threads driving the sensors (native transport); 0 is one per core, at most one per
    /// 1,000 sensors.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Seconds over which the awake sensors first power on and connect, each at a random
    /// moment [default: 0.5, or 1 s per 2,500 sensors if longer].
    #[arg(long)]
    ramp_s: Option<f64>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct SensorsArgs {
    /// The hub's address, HOST:PORT.
    #[arg(long)]
    hub: String,
    /// How many sensors (each with its own socket).
    #[arg(long, default_value_t = 100)]
    count: u32,
    /// Id of the first sensor; the others follow. Use ids not yet in the hub's database.
    #[arg(long, default_value_t = 0)]
    first_id: u32,
    /// The hub's data directory, to count what was stored. Without it the summary's stored
    /// counts are null.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Transport: `native` (Tickwire over UDP), `quic` (QUIC on the hub's port + 1) or
    /// `auto` (native, falling back to QUIC).
    #[arg(long, value_enum, default_value_t = SensorTransport::Native)]
    transport: SensorTransport,
    #[command(flatten)]
    pin: PinArgs,
    #[command(flatten)]
    secure: SecureArgs,
    #[command(flatten)]
    fleet: FleetArgs,
}

#[derive(clap::Args)]
struct RunArgs {
    /// How many sensors.
    #[arg(long, default_value_t = 100)]
    sensors: u32,
    /// Directory of the database; default: a new directory under the system's temp dir.
    /// New sensor ids are picked above any already stored there.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Transport: `native`, `quic` (the hub serves QUIC only), or `auto` (the hub serves
    /// both, the sensors try native first).
    #[arg(long, value_enum, default_value_t = SensorTransport::Native)]
    transport: SensorTransport,
    /// Secure mode (native only): the hub requires connect tokens and each sensor mints its
    /// own. With --key, from that key file; without, from a fresh key for this run.
    #[arg(long)]
    secure: bool,
    /// With --secure: the key file (64 hex digits, from `sensor-sim token keygen`).
    #[arg(long, value_name = "FILE", requires = "secure")]
    key: Option<PathBuf>,
    #[command(flatten)]
    fleet: FleetArgs,
}

#[derive(clap::Args)]
struct QueryArgs {
    /// The hub's data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// Only this sensor.
    #[arg(long)]
    sensor: Option<u32>,
    /// Only rows whose corrected timestamp is at or after TIME: Unix seconds (e.g.
    /// 1767225600.5) or an age like 30s, 5m, 2h, 1d.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    format: Format,
    /// Print alerts instead of readings.
    #[arg(long)]
    alerts: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Csv,
    Jsonl,
}

/// An error for a person: what went wrong and what to do; and the exit code.
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
    }
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Self::new(error.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if matches!(cli.command, Commands::Hub(_)) {
        // The hub is two busy tasks (the engine's socket driver and the hub's state), and its
        // database writer has a thread of its own. On one worker the tasks hand events to each
        // other without waking a second thread; on two they bounced between workers, and in
        // H1 (10,000 sensors, 2 cores shared with the sensors' process) the hub fell behind
        // often enough to overflow its socket buffer: p99 203-291 ms with 10,000-15,000
        // datagrams dropped, against 35-39 ms and none on one worker.
        builder.worker_threads(1);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Commands::Hub(args) => hub(args).await,
            Commands::Sensors(args) => sensors(args).await,
            Commands::Run(args) => run(args).await,
            Commands::Query(args) => query(&args),
            Commands::Command(args) => command(&args).await,
            Commands::Token(args) => token(&args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

async fn hub(args: HubArgs) -> Result<(), Failure> {
    if !args.headless && !std::io::stdout().is_terminal() {
        return Err(Failure {
            message: "the live dashboard needs a terminal, but stdout is not one (a pipe, a file \
                      or a service): add --headless for a status line each second on stderr and \
                      a JSON summary on stdout at Ctrl-C or SIGTERM"
                .into(),
            code: 2,
        });
    }
    if args.secure.secure && args.transport != HubTransport::Native {
        return Err(secure_needs_native());
    }
    let key = load_key(&args.secure)?;
    let public_addr = args.public_addr.as_deref().map(resolve).transpose()?;
    // Kept in the data directory: a pinned fingerprint survives hub restarts.
    let certificate = if args.transport == HubTransport::Native {
        tickwire::ServerCertificate::default()
    } else {
        sensor_sim::certificate::persistent(&args.data_dir, &[])?
    };
    let config = HubConfig {
        bind: args.bind,
        data_dir: args.data_dir.clone(),
        transport: args.transport.engine(),
        certificate,
        key,
        public_addr,
        ..HubConfig::default()
    };
    let hub = Hub::start(config).await?;
    let database = args.data_dir.join(sensor_sim::store::DB_FILE);
    print_listening(&hub, args.secure.secure, &database);
    if !args.headless {
        dashboard(&hub, &database).await?;
        return print_hub_summary(&hub.shutdown().await);
    }
    let mut every_second = tokio::time::interval(Duration::from_secs(1));
    every_second.tick().await;
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = every_second.tick() => {
                if let Some(status) = hub.status().await {
                    eprintln!("{}", status_line(&status));
                }
            }
            () = &mut stop => break,
        }
    }
    eprintln!("stopping: committing what is pending");
    print_hub_summary(&hub.shutdown().await)
}

/// Where the hub listens, on stderr: the native port, and the QUIC port with the certificate
/// fingerprint sensors pin.
fn print_listening(hub: &Hub, secure: bool, database: &std::path::Path) {
    if hub.serves_native() {
        let mode = if secure { ", tokens required" } else { "" };
        eprintln!("hub listening on {} (native udp{mode})", hub.local_addr());
    }
    if let (Some(addr), Some(fingerprint)) = (hub.quic_addr(), hub.cert_sha256()) {
        eprintln!("hub listening on {addr} (quic), certificate SHA-256 {fingerprint}");
        eprintln!(
            "  sensors elsewhere pin it: --transport quic --server-cert-sha256 {fingerprint}"
        );
    }
    eprintln!("database {}", database.display());
}

/// The JSON summary the hub prints when it stops.
fn print_hub_summary(status: &HubStatus) -> Result<(), Failure> {
    let summary = serde_json::json!({
        "uptime_s": (status.uptime_s * 10.0).round() / 10.0,
        "totals": status.totals,
        "ingest_per_s": status.ingest_per_s,
        "worst_sensors": status.worst(10),
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

/// Runs the live dashboard until q, Esc, Ctrl-C or SIGTERM; the terminal is restored after.
async fn dashboard(hub: &Hub, database: &std::path::Path) -> Result<(), Failure> {
    let terminal_failed = |e: std::io::Error| {
        Failure::new(format!(
            "cannot drive the terminal ({e}): run with --headless instead"
        ))
    };
    // try_init also installs a panic hook that restores the terminal.
    let mut terminal = ratatui::try_init().map_err(terminal_failed)?;
    let result = dashboard_loop(hub, database, &mut terminal).await;
    ratatui::restore();
    eprintln!("stopping: committing what is pending");
    result.map_err(terminal_failed)
}

async fn dashboard_loop(
    hub: &Hub,
    database: &std::path::Path,
    terminal: &mut ratatui::DefaultTerminal,
) -> std::io::Result<()> {
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
    let listen = match hub.quic_addr() {
        Some(quic) if hub.serves_native() => format!("{} + quic {quic}", hub.local_addr()),
        Some(quic) => format!("quic {quic}"),
        None => hub.local_addr().to_string(),
    };
    let mut view = Dashboard {
        listen,
        database: database.display().to_string(),
        status: HubStatus::default(),
    };
    let mut redraw = tokio::time::interval(DASHBOARD_REFRESH);
    redraw.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = redraw.tick() => {}
            () = &mut stop => return Ok(()),
        }
        // Raw mode turns Ctrl-C into a key press: read keys without blocking the runtime.
        while event::poll(Duration::ZERO)? {
            if let Event::Key(key) = event::read()? {
                let ctrl_c =
                    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                if key.kind == KeyEventKind::Press
                    && (ctrl_c || matches!(key.code, KeyCode::Char('q') | KeyCode::Esc))
                {
                    return Ok(());
                }
            }
        }
        match hub.status().await {
            Some(status) => view.status = status,
            None => return Ok(()),
        }
        terminal.draw(|frame| view.render(frame))?;
    }
}

async fn sensors(args: SensorsArgs) -> Result<(), Failure> {
    let hub = resolve(&args.hub)?;
    let mut config = fleet_config(hub, args.count, &args.fleet)?;
    config.first_id = args.first_id;
    config.transport = args.transport.engine();
    config.key = load_key(&args.secure)?;
    if config.key.is_some() && config.transport != Transport::Native {
        return Err(secure_needs_native());
    }
    config.verification = match args.pin.server_cert_sha256 {
        Some(fingerprint) => ServerVerification::Pinned(fingerprint),
        None => ServerVerification::LoopbackSelfSigned,
    };
    if config.transport != Transport::Native
        && args.pin.server_cert_sha256.is_none()
        && hub.ip().is_loopback()
    {
        eprintln!(
            "warning: accepting the hub's QUIC certificate unverified because {hub} is a loopback \
             address; pin it with --server-cert-sha256 HEX (the hub prints it at start)"
        );
    }
    // Check the hub answers (and its certificate is trusted) before starting the fleet.
    probe(&config).await?;
    let store = match &args.data_dir {
        Some(dir) => Some(Store::open_read_only(dir)?),
        None => None,
    };
    if !args.fleet.json {
        eprintln!(
            "{} sensors ({} ids from {}) at {} Hz for {} s, reporting to {hub}",
            config.count, config.count, config.first_id, config.rate_hz, args.fleet.duration_s
        );
    }
    let fleet = run_fleet(config).await;
    let summary = match &store {
        Some(store) => {
            settle(store).await;
            RunSummary::from_store(&fleet, store)?
        }
        None => RunSummary::from_fleet(&fleet),
    };
    print_summary(&summary, args.fleet.json)
}

async fn run(args: RunArgs) -> Result<(), Failure> {
    let data_dir = args.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "sensor-sim-run-{}-{}",
            std::process::id(),
            sensor_sim::clock::unix_micros() / 1000
        ))
    });
    let transport = args.transport.engine();
    let key = match (&args.key, args.secure) {
        (Some(path), _) => Some(read_key(path)?),
        (None, true) => Some(PrivateKey::generate()),
        (None, false) => None,
    };
    if key.is_some() && transport != Transport::Native {
        return Err(secure_needs_native());
    }
    let hub = Hub::start(HubConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.clone(),
        // `Auto` sensors need a hub serving both, which `Auto` on a server means.
        transport,
        key: key.clone(),
        ..HubConfig::default()
    })
    .await?;
    let store = Store::open_read_only(&data_dir)?;
    let mut config = fleet_config(hub.local_addr(), args.sensors, &args.fleet)?;
    config.first_id = store.max_sensor_id()?.map_or(0, |m| m + 1);
    config.transport = transport;
    config.key = key;
    // The hub is this process's own, on loopback: pin its certificate anyway.
    if let Some(fingerprint) = hub.cert_sha256() {
        config.verification = ServerVerification::Pinned(fingerprint);
    }
    if !args.fleet.json {
        eprintln!(
            "hub on {} ({transport}{}) with database in {}; {} sensors at {} Hz for {} s",
            hub.quic_addr()
                .filter(|_| transport == Transport::Quic)
                .unwrap_or(hub.local_addr()),
            if config.key.is_some() { ", secure" } else { "" },
            data_dir.display(),
            config.count,
            config.rate_hz,
            args.fleet.duration_s
        );
    }
    let fleet = run_fleet(config).await;
    hub.flush().await;
    let summary = RunSummary::from_store(&fleet, &store)?;
    hub.shutdown().await;
    print_summary(&summary, args.fleet.json)?;
    if !args.fleet.json {
        eprintln!(
            "read it back: sensor-sim query --data-dir {}",
            data_dir.display()
        );
    }
    Ok(())
}

fn query(args: &QueryArgs) -> Result<(), Failure> {
    let store = Store::open_read_only(&args.data_dir)?;
    let since_us = args.since.as_deref().map(parse_since).transpose()?;
    let query = ExportQuery {
        sensor: args.sensor,
        since_us,
        alerts: args.alerts,
        format: match args.format {
            Format::Csv => ExportFormat::Csv,
            Format::Jsonl => ExportFormat::Jsonl,
        },
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match store.export(&query, &mut out) {
        Ok(_) => Ok(()),
        // `sensor-sim query ... | head` closes the pipe early: not an error.
        Err(sensor_sim::store::ExportError::Output(e))
            if e.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

async fn command(args: &CommandArgs) -> Result<(), Failure> {
    let store = Store::open_existing(&args.data_dir)?;
    let command = match args.action {
        CommandAction::List => return list_commands(&store, args.sensor),
        CommandAction::SetRate { hz } => {
            if !(hz > 0.0 && hz <= 10_000.0) {
                return Err(Failure::new(format!(
                    "set-rate {hz}: give a rate above 0 and at most 10000 samples per second"
                )));
            }
            SensorCommand::SetRate {
                rate_millihz: (hz * 1000.0).round().max(1.0) as u32,
            }
        }
        CommandAction::SetSleepInterval { seconds } => {
            if !(0.1..=86_400.0).contains(&seconds) {
                return Err(Failure::new(format!(
                    "set-sleep-interval {seconds}: give 0.1 to 86400 seconds"
                )));
            }
            SensorCommand::SetSleepInterval {
                interval_ms: (seconds * 1000.0).round() as u64,
            }
        }
    };
    let Some(sensor) = args.sensor else {
        return Err(Failure::new(
            "say which sensor the command is for: --sensor ID (see `sensor-sim command --data-dir DIR list`)",
        ));
    };
    if !(0.0..=86_400.0).contains(&args.wait_s) {
        return Err(Failure::new("--wait-s must be between 0 and 86400"));
    }
    let id = store.queue_command(sensor, command, sensor_sim::clock::unix_micros())?;
    eprintln!(
        "queued command {id} for sensor {sensor}: {}",
        describe_command(command)
    );
    if args.wait_s == 0.0 {
        eprintln!(
            "a hub on {} sends it when the sensor is awake; check with: sensor-sim command --data-dir {} --sensor {sensor} list",
            args.data_dir.display(),
            args.data_dir.display()
        );
        return Ok(());
    }
    eprintln!(
        "waiting up to {} s for sensor {sensor} to acknowledge it",
        args.wait_s
    );
    let deadline = Instant::now() + Duration::from_secs_f64(args.wait_s);
    loop {
        if let Some(stored) = store.command(id)? {
            if let Some(acked) = stored.acked_ts {
                let after = (acked - stored.queued_ts) as f64 / 1e6;
                println!("command {id} acknowledged by sensor {sensor} after {after:.1} s");
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(Failure {
                message: format!(
                    "command {id} not acknowledged within {} s: sensor {sensor} has not been awake \
                     on a hub using {} since. It stays queued and is sent when the sensor next \
                     connects; is the hub running (sensor-sim hub --data-dir {})?",
                    args.wait_s,
                    args.data_dir.display(),
                    args.data_dir.display()
                ),
                code: 3,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn list_commands(store: &Store, sensor: Option<u32>) -> Result<(), Failure> {
    let commands = store.commands(sensor)?;
    println!("id,sensor_id,command,queued_ts,acked_ts");
    for c in commands {
        println!(
            "{},{},{},{},{}",
            c.command_id,
            c.sensor_id,
            describe_command(c.command),
            c.queued_ts,
            c.acked_ts
                .map_or_else(|| "pending".to_string(), |t| t.to_string())
        );
    }
    Ok(())
}

fn describe_command(command: SensorCommand) -> String {
    match command {
        SensorCommand::SetRate { rate_millihz } => {
            format!("set-rate {} Hz", f64::from(rate_millihz) / 1000.0)
        }
        SensorCommand::SetSleepInterval { interval_ms } => {
            format!("set-sleep-interval {} s", interval_ms as f64 / 1000.0)
        }
    }
}

fn fleet_config(hub: SocketAddr, count: u32, args: &FleetArgs) -> Result<FleetConfig, Failure> {
    if !(0.0..=100.0).contains(&args.loss) {
        return Err(Failure::new(format!(
            "--loss {} is not a percentage: give a value from 0 to 100",
            args.loss
        )));
    }
    if !(0.0..=1.0).contains(&args.sleepy_fraction) {
        return Err(Failure::new(format!(
            "--sleepy-fraction {} is not a fraction: give a value from 0 to 1",
            args.sleepy_fraction
        )));
    }
    if !(args.rate_hz > 0.0 && args.rate_hz <= 10_000.0) {
        return Err(Failure::new("--rate-hz must be above 0 and at most 10000"));
    }
    if !(args.duration_s >= 0.0 && args.duration_s <= 86_400.0) {
        return Err(Failure::new("--duration-s must be between 0 and 86400"));
    }
    if !(args.wake_interval_s >= 0.1 && args.wake_interval_s <= 86_400.0) {
        return Err(Failure::new(
            "--wake-interval-s must be between 0.1 and 86400",
        ));
    }
    if count == 0 {
        return Err(Failure::new("give at least one sensor"));
    }
    for (name, pct) in [("--duplicate", args.duplicate), ("--reorder", args.reorder)] {
        if !(0.0..=100.0).contains(&pct) {
            return Err(Failure::new(format!(
                "{name} {pct} is not a percentage: give a value from 0 to 100"
            )));
        }
    }
    for (name, fraction) in [
        ("--alert-fraction", args.alert_fraction),
        ("--offline-fraction", args.offline_fraction),
    ] {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(Failure::new(format!(
                "{name} {fraction} is not a fraction: give a value from 0 to 1"
            )));
        }
    }
    if args.threads > 256 {
        return Err(Failure::new(
            "--threads must be at most 256 (0 picks one per core)",
        ));
    }
    if args.ramp_s.is_some_and(|r| !(0.0..=3_600.0).contains(&r)) {
        return Err(Failure::new("--ramp-s must be between 0 and 3600"));
    }
    if !(0.0..=86_400.0).contains(&args.offline_s) {
        return Err(Failure::new("--offline-s must be between 0 and 86400"));
    }
    if args.lag_ms > 10_000 || args.reorder_ms > 10_000 {
        return Err(Failure::new(
            "--lag-ms and --reorder-ms must be at most 10000",
        ));
    }
    let impaired = args.loss > 0.0 || args.lag_ms > 0 || args.duplicate > 0.0 || args.reorder > 0.0;
    let link = impaired.then(|| LinkConfig {
        loss: args.loss / 100.0,
        latency: Duration::from_millis(args.lag_ms),
        duplicate: args.duplicate / 100.0,
        reorder: args.reorder / 100.0,
        reorder_delay: Duration::from_millis(args.reorder_ms),
        ..LinkConfig::default()
    });
    Ok(FleetConfig {
        count,
        rate_hz: args.rate_hz,
        sleepy_fraction: args.sleepy_fraction,
        wake_interval: Duration::from_secs_f64(args.wake_interval_s),
        duration: Duration::from_secs_f64(args.duration_s),
        seed: args.seed,
        link,
        alert_fraction: args.alert_fraction,
        offline_fraction: args.offline_fraction,
        offline_for: Duration::from_secs_f64(args.offline_s),
        threads: args.threads,
        ramp: args.ramp_s.map(Duration::from_secs_f64),
        ..FleetConfig::new(hub)
    })
}

fn resolve(hub: &str) -> Result<SocketAddr, Failure> {
    let mut addrs = hub.to_socket_addrs().map_err(|e| {
        Failure::new(format!(
            "'{hub}' is not a usable HOST:PORT ({e}); for example --hub 127.0.0.1:7878"
        ))
    })?;
    addrs
        .next()
        .ok_or_else(|| Failure::new(format!("'{hub}' resolves to no address")))
}

/// Waits until the hub's database has stopped growing for 3 s, at most 20 s: the writer commits
/// every 50 ms when it has rows, but the hub holds a reconnected sensor's readings for up to 2 s
/// until it has estimated the sensor's clock (and a busy machine stalls it further).
async fn settle(store: &Store) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = store.totals().ok();
    let mut unchanged = 0;
    while Instant::now() < deadline && unchanged < 15 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = store.totals().ok();
        unchanged = if now == last { unchanged + 1 } else { 0 };
        last = now;
    }
}

fn print_summary(summary: &RunSummary, json: bool) -> Result<(), Failure> {
    if json {
        println!("{}", serde_json::to_string_pretty(summary)?);
        return Ok(());
    }
    let value = serde_json::to_value(summary)?;
    if let serde_json::Value::Object(fields) = value {
        for (key, value) in fields {
            println!("{key:>28}  {value}");
        }
    }
    Ok(())
}

fn status_line(status: &HubStatus) -> String {
    let t = &status.totals;
    format!(
        "[{:>6.0}s] sensors {} (awake {}: {} native, {} quic; asleep {}, stale {}) | readings {} stored, {}/s, {} dup, {} gaps | alerts {} stored, {} confirmed | commits {} (max {:.1} ms){} | commands pending {}",
        status.uptime_s,
        t.sensors,
        t.awake,
        t.awake_native,
        t.awake_quic,
        t.asleep,
        t.stale,
        t.readings_stored,
        t.readings_per_s,
        t.duplicates,
        t.gaps,
        t.alerts_stored,
        t.alerts_confirmed,
        t.commits,
        t.commit_ms_max,
        if t.db_errors > 0 {
            format!(", {} DB ERRORS: {}", t.db_errors, t.last_db_error.as_deref().unwrap_or(""))
        } else {
            String::new()
        },
        t.commands_pending,
    )
}

fn parse_since(text: &str) -> Result<i64, Failure> {
    let bad = || {
        Failure::new(format!(
            "--since '{text}' is neither Unix seconds (1767225600) nor an age (30s, 5m, 2h, 1d)"
        ))
    };
    if let Ok(seconds) = text.parse::<f64>() {
        return Ok((seconds * 1e6) as i64);
    }
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        "d" => number * 86_400.0,
        _ => return Err(bad()),
    };
    Ok(sensor_sim::clock::unix_micros() - (seconds * 1e6) as i64)
}

/// How often the dashboard redraws.
const DASHBOARD_REFRESH: Duration = Duration::from_millis(500);

fn secure_needs_native() -> Failure {
    Failure {
        message: "--secure (connect tokens) covers native sessions only; QUIC sessions are \
                  already encrypted by TLS (pin the hub with --server-cert-sha256): drop \
                  --secure or use --transport native"
            .into(),
        code: 2,
    }
}

/// Connects one client as the fleet's first sensor would and disconnects: a wrong address, a
/// hub not running, an untrusted certificate or a refused token fails here, once, with the
/// engine's explanation, rather than as thousands of silent retries.
async fn probe(config: &FleetConfig) -> Result<(), Failure> {
    let hub = config.hub;
    let mut driver = sensor_sim::protocol::sensor_config();
    driver.transport = config.transport;
    driver.quic.verification = config.verification.clone();
    if let Some(key) = &config.key {
        driver.endpoint.connect_token = Some(mint(key, config.first_id, hub, 30)?);
    }
    match Client::connect(hub, driver).await {
        Ok(probe) => {
            probe.disconnect(0).await;
            Ok(())
        }
        // Certificates, pins, ALPN: the engine's message says what to do.
        Err(ClientError::Quic(e)) => Err(Failure::new(format!("cannot reach the hub: {e}"))),
        Err(e @ ClientError::Timeout { .. }) if config.key.is_some() => Err(Failure::new(format!(
            "cannot reach the hub: {e}\n  a secure hub drops sessions without a valid token \
             silently: check that --key is the hub's key file and --hub the address the hub was \
             given as --public-addr (or --bind)"
        ))),
        Err(e) => Err(Failure::new(format!(
            "cannot reach the hub: {e}\n  start it with: sensor-sim hub --bind {hub}{}{}",
            match config.transport {
                Transport::Quic => " --transport quic",
                Transport::Auto => " --transport both",
                _ => "",
            },
            if config.transport == Transport::Quic {
                ""
            } else {
                "\n  (a hub started with --secure drops sensors without a token: add --secure --key FILE)"
            }
        ))),
    }
}

fn token(args: &TokenArgs) -> Result<(), Failure> {
    match &args.action {
        TokenAction::Keygen { out } => {
            if out.exists() {
                return Err(Failure::new(format!(
                    "{} exists: refusing to overwrite a key (sensors and hubs may use it); \
                     remove it first or choose another --out",
                    out.display()
                )));
            }
            PrivateKey::generate().save(out)?;
            eprintln!(
                "wrote a new hub key to {}: start the hub with --secure --key {}",
                out.display(),
                out.display()
            );
            Ok(())
        }
        TokenAction::Mint {
            key,
            sensor,
            hub,
            valid_s,
        } => {
            if !(1..=86_400).contains(valid_s) {
                return Err(Failure::new("--valid-s must be between 1 and 86400"));
            }
            let key = read_key(key)?;
            let token = mint(&key, *sensor, resolve(hub)?, *valid_s)?;
            let hex: String = token
                .to_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            println!("{hex}");
            Ok(())
        }
    }
}

/// A token for `sensor` at `hub`, valid `valid_s` seconds from now.
fn mint(
    key: &PrivateKey,
    sensor: u32,
    hub: SocketAddr,
    valid_s: u64,
) -> Result<tickwire::ConnectToken, Failure> {
    let unix_now = sensor_sim::clock::unix_seconds()
        .ok_or_else(|| Failure::new("the system clock reads before 1970: set the clock"))?;
    let mut spec = TokenSpec::new(
        sensor_sim::protocol::PROTOCOL_ID,
        ClientId(u64::from(sensor)),
        vec![hub],
    );
    spec.valid_for = Duration::from_secs(valid_s);
    Ok(spec.issue(key, unix_now)?)
}

/// The key of `--secure --key FILE`, if secure mode is on.
fn load_key(args: &SecureArgs) -> Result<Option<PrivateKey>, Failure> {
    match (&args.key, args.secure) {
        (Some(path), true) => read_key(path).map(Some),
        _ => Ok(None),
    }
}

fn read_key(path: &std::path::Path) -> Result<PrivateKey, Failure> {
    PrivateKey::load(path).map_err(|e| {
        Failure::new(format!(
            "{e}\n  make a key with: sensor-sim token keygen --out {}",
            path.display()
        ))
    })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
