//! The `serve` role: a Tickwire echo server in its own process, driven by its parent over
//! stdin/stdout.
//!
//! It prints one line `{"addr": "127.0.0.1:PORT"}` once bound, then answers every `stats` line
//! on stdin with one JSON line of counters (see [`stats_json`]); it exits at `quit` or when
//! stdin closes. Every message is echoed on its channel, unchanged, so the client measures the
//! round trip from the send time it wrote into the payload.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;
use serde_json::{json, Value};
use tickwire::{DriverConfig, DropCounters, Event, Server};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Options of the `serve` role.
#[derive(Args, Debug, Clone)]
pub(crate) struct ServeArgs {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub(crate) bind: SocketAddr,
    /// `Config::max_connections`.
    #[arg(long, default_value_t = 1024)]
    pub(crate) max_connections: usize,
    /// Worker threads of the server's tokio runtime; 1 runs a current-thread runtime (driver
    /// task and echo loop on one thread).
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
}

/// Events taken from the driver per lock.
const EVENT_BATCH: usize = 1024;

/// Runs the server until stdin says `quit` or closes.
pub(crate) fn serve(args: &ServeArgs) -> ExitCode {
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("serve: no tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the echo loop counted.
#[derive(Default)]
struct Tally {
    messages_echoed: u64,
    echo_refused: u64,
    connected: u64,
    disconnected: BTreeMap<String, u64>,
}

async fn run(args: &ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = DriverConfig::server();
    config.endpoint.max_connections = args.max_connections;
    let mut server = Server::bind(args.bind, config).await?;
    let mut stdout = tokio::io::stdout();
    let hello = json!({ "addr": server.local_addr().to_string() });
    stdout.write_all(format!("{hello}\n").as_bytes()).await?;
    stdout.flush().await?;

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut events = Vec::with_capacity(EVENT_BATCH);
    let mut tally = Tally::default();
    loop {
        tokio::select! {
            running = server.next_events(&mut events, EVENT_BATCH) => {
                if !running {
                    return Err("the server's driver stopped".into());
                }
                for event in events.drain(..) {
                    echo(&server, event, &mut tally);
                }
            }
            line = lines.next_line() => {
                match line?.as_deref().map(str::trim) {
                    Some("stats") => {
                        let stats = stats_json(&server, &tally);
                        stdout.write_all(format!("{stats}\n").as_bytes()).await?;
                        stdout.flush().await?;
                    }
                    Some("quit") | None => break,
                    Some(other) => eprintln!("serve: unknown command {other:?}"),
                }
            }
        }
    }
    // No graceful shutdown: it would wait for every client to drain (up to `ack_timeout`), and
    // the parent is done measuring.
    Ok(())
}

fn echo(server: &Server, event: Event, tally: &mut Tally) {
    match event {
        Event::Message {
            connection,
            channel,
            data,
        } => match server.send(connection, channel, data) {
            Ok(_) => tally.messages_echoed += 1,
            Err(_) => tally.echo_refused += 1,
        },
        Event::Connected { .. } => tally.connected += 1,
        Event::Disconnected { reason, .. } => {
            *tally.disconnected.entry(format!("{reason:?}")).or_default() += 1;
        }
        Event::Delivery { .. } => {}
    }
}

/// `{"messages_echoed", "echo_refused", "connected_events", "disconnected": {reason: n},
/// "connections_live", "connections_opened", "datagrams_received", "datagrams_sent",
/// "bytes_received", "bytes_sent", "dropped": {reason: n}}`.
fn stats_json(server: &Server, tally: &Tally) -> Value {
    let stats = server.endpoint_stats();
    json!({
        "messages_echoed": tally.messages_echoed,
        "echo_refused": tally.echo_refused,
        "connected_events": tally.connected,
        "disconnected": tally.disconnected,
        "connections_live": stats.connections_live,
        "connections_opened": stats.connections_opened,
        "datagrams_received": stats.datagrams_received,
        "datagrams_sent": stats.datagrams_sent,
        "bytes_received": stats.bytes_received,
        "bytes_sent": stats.bytes_sent,
        "dropped": drop_map(&stats.dropped),
    })
}

/// Every drop counter by its field name.
fn drop_map(d: &DropCounters) -> BTreeMap<&'static str, u64> {
    BTreeMap::from([
        ("malformed", d.malformed),
        ("duplicate", d.duplicate),
        ("too_old", d.too_old),
        ("unknown_peer", d.unknown_peer),
        ("unexpected", d.unexpected),
        ("request_too_small", d.request_too_small),
        ("version_mismatch", d.version_mismatch),
        ("protocol_mismatch", d.protocol_mismatch),
        ("channel_mismatch", d.channel_mismatch),
        ("cookie_invalid", d.cookie_invalid),
        ("cookie_expired", d.cookie_expired),
        ("server_full", d.server_full),
        ("bogus_ack", d.bogus_ack),
        ("reply_queue_full", d.reply_queue_full),
        ("oversized", d.oversized),
        ("violation", d.violation),
        ("token_missing", d.token_missing),
        ("token_invalid", d.token_invalid),
        ("token_expired", d.token_expired),
        ("token_wrong_server", d.token_wrong_server),
        ("token_reused", d.token_reused),
        ("handshake_rate_limited", d.handshake_rate_limited),
        ("decrypt_failed", d.decrypt_failed),
    ])
}
