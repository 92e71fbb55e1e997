//! Soak: 200 clients over real loopback sockets through a simulated link with 10 % loss and
//! 5 % duplication each way, reconnecting in rotation, for minutes. Ignored by default:
//!
//! ```text
//! cargo test --release -p tickwire-e2e --test soak -- --ignored --nocapture
//! TICKWIRE_SOAK_SECS=1800 cargo test --release -p tickwire-e2e --test soak -- --ignored --nocapture
//! ```
//!
//! Every second a rotating fifth of the clients (40) disconnects gracefully and connects again
//! with a new socket, so each client's sessions last 5 s. In every session a client sends 10
//! numbered messages a second on the reliable-ordered channel; the server checks that each
//! session's messages arrive exactly once and in order, and echoes them; the client checks the
//! echoes the same way, and before disconnecting waits until every message has come back.
//! The server's link conditioner (`DriverConfig::link`) drops 10 % and duplicates 5 % of the
//! datagrams in each direction. The server runs in its own process (this test binary started
//! again, see [`soak_server_process`]) so that its resident memory, sampled once a second from
//! `/proc/<pid>/status`, is its own: each client driver's socket buffers (2 MiB of receive
//! slots, 256 KiB of outbox) would otherwise dwarf it.
//!
//! Asserted: no panic (every task joins cleanly), no connect failure, no disconnect the client
//! did not ask for, on the server no disconnect other than the clients' own code, every message
//! delivered exactly once in order both ways, the server's connections back to zero at the end,
//! and the server's resident memory flat: after the first [`RSS_SETTLE_S`] seconds, the median of the last third of the once-a-second
//! samples at most [`RSS_MARGIN_RATIO`] above the first third's plus [`RSS_MARGIN_BYTES`].

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tickwire::sim::LinkConfig;
use tickwire::{ChannelId, Client, ConnectionId, DisconnectReason, DriverConfig, Event, Server};
use tokio::sync::watch;
use tokio::time::{timeout, Instant};

/// Simultaneous clients.
const CLIENTS: usize = 200;
/// Each client's session lasts this many seconds; a `1 / ROTATION_S` share of the clients
/// reconnects every second.
const ROTATION_S: u64 = 5;
/// Messages per second per client.
const RATE_HZ: u64 = 10;
/// Default length of the soak, in seconds; `TICKWIRE_SOAK_SECS` overrides it.
const DEFAULT_SECS: u64 = 180;
/// The channel under test: reliable-ordered in the default layout.
const CHANNEL: ChannelId = ChannelId(2);
/// The code clients close with; any other server-side disconnect is unexpected.
const CLIENT_CODE: u16 = 0x50;
/// Longest wait for a session's last echoes, for a handshake, and for the end.
const LIMIT: Duration = Duration::from_secs(20);
/// Memory samples from the first this many seconds (the first rotations, while every
/// structure grows to its working size) are left out of the flatness check.
const RSS_SETTLE_S: u64 = 2 * ROTATION_S;
/// Memory may end at most this much above where it started (ratio of the first third's
/// median) ...
const RSS_MARGIN_RATIO: f64 = 0.05;
/// ... plus this many bytes.
const RSS_MARGIN_BYTES: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: minutes long; run with --ignored (TICKWIRE_SOAK_SECS sets the length)"]
async fn soak_200_lossy_clients_reconnecting() {
    let secs = std::env::var("TICKWIRE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SECS);
    let server = ServerProcess::start();
    let (addr, pid) = (server.addr, server.child.id());
    let (stop_sampling, sampling) = watch::channel(false);
    let sampler = tokio::spawn(sample_rss(pid, sampling));

    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            // Spread the sessions' starts over one rotation, so reconnects are even over time.
            let first = start + Duration::from_secs(ROTATION_S) * i as u32 / CLIENTS as u32;
            tokio::spawn(client_loop(i as u32, addr, first, deadline))
        })
        .collect();
    let mut total = ClientReport::default();
    for client in clients {
        let report = timeout(Duration::from_secs(secs) + 4 * LIMIT, client)
            .await
            .expect("a client ended in time")
            .expect("a client task ended without panic");
        total.merge(report);
    }
    stop_sampling.send(true).expect("the sampler is running");
    let rss_samples = sampler.await.expect("the sampler ended without panic");
    let report = tokio::task::spawn_blocking(move || server.finish())
        .await
        .expect("the server process was read to its end");

    let settled = rss_samples.get(RSS_SETTLE_S as usize..).unwrap_or_default();
    let (first, last) = thirds(settled);
    let mib = |b: u64| b as f64 / 1048576.0;
    eprintln!(
        "soak {secs} s: {CLIENTS} clients, {} sessions, {} messages sent, {} echoed; \
         server process: {report}; RSS median first third {:.2} MiB, last third {:.2} MiB, \
         max {:.2} MiB ({} samples after the first {RSS_SETTLE_S} s)",
        total.sessions,
        total.sent,
        total.echoed,
        mib(first),
        mib(last),
        mib(rss_samples.iter().max().copied().unwrap_or(0)),
        settled.len(),
    );
    let kib: Vec<u64> = rss_samples.iter().map(|b| b >> 10).collect();
    eprintln!("server RSS once a second, KiB: {kib:?}");
    assert!(
        total.failures.is_empty(),
        "client failures: {:?}",
        total.failures
    );
    assert_eq!(total.order_errors, 0, "echoes out of order or duplicated");
    assert_eq!(
        total.sent, total.echoed,
        "every message echoed exactly once"
    );
    assert_eq!(
        report.get("order_errors"),
        0,
        "messages out of order or duplicated at the server"
    );
    assert_eq!(
        report.get("messages"),
        total.sent,
        "the server saw every message once"
    );
    assert_eq!(
        report.get("unexpected_disconnects"),
        0,
        "unexpected server-side disconnects"
    );
    assert_eq!(
        report.get("connects"),
        total.sessions,
        "one server connection per session"
    );
    assert_eq!(
        report.get("connections_at_end"),
        0,
        "connections back to zero"
    );
    assert!(total.sessions >= (CLIENTS as u64) * (secs / ROTATION_S).max(1) / 2);
    let allowed = first as f64 * (1.0 + RSS_MARGIN_RATIO) + RSS_MARGIN_BYTES as f64;
    assert!(
        last as f64 <= allowed,
        "server memory grew: first third {first} B, last third {last} B, allowed {allowed:.0} B"
    );
}

/// The server's half of the soak, run in its own process by [`ServerProcess`] (this same test
/// binary, started again with `TICKWIRE_SOAK_SERVER=1`), so that its memory is measured
/// apart from the clients'. Without that variable it does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "the soak's server process; does nothing unless started by the soak"]
async fn soak_server_process() {
    if std::env::var_os(SERVER_ROLE).is_none() {
        return;
    }
    let mut config = DriverConfig::server();
    config.link = Some(LinkConfig {
        loss: 0.10,
        duplicate: 0.05,
        ..LinkConfig::perfect()
    });
    config.link_seed = 11;
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("bind a loopback server");
    println!("{LINE_PREFIX} addr={}", server.local_addr());
    let (stop_tx, stop_rx) = watch::channel(false);
    // Any line on stdin (or its end) means stop.
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        let _ = stop_tx.send(true);
    });
    let report = serve(server, stop_rx).await;
    let unexpected: u64 = report
        .disconnects
        .iter()
        .filter(|(reason, _)| {
            **reason != format!("{:?}", DisconnectReason::Remote { code: CLIENT_CODE })
        })
        .map(|(_, n)| n)
        .sum();
    println!(
        "{LINE_PREFIX} report connects={} messages={} order_errors={} unexpected_disconnects={unexpected} \
         peak_connections={} connections_at_end={} disconnects={:?}",
        report.connects,
        report.messages,
        report.order_errors,
        report.peak_connections,
        report.connections_at_end,
        report.disconnects,
    );
}

/// Set in the server process's environment.
const SERVER_ROLE: &str = "TICKWIRE_SOAK_SERVER";
/// Starts the server process's lines on stdout (the test harness prints its own).
const LINE_PREFIX: &str = "SOAK";

/// The server process: this test binary running only [`soak_server_process`].
struct ServerProcess {
    child: Child,
    lines: std::io::Lines<BufReader<ChildStdout>>,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start() -> Self {
        let exe = std::env::current_exe().expect("own test binary");
        let mut child = Command::new(exe)
            .args(["soak_server_process", "--exact", "--ignored", "--nocapture"])
            .env(SERVER_ROLE, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server process");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("the server process printed its address")
                .expect("read the server process");
            if let Some(addr) = line.strip_prefix(&format!("{LINE_PREFIX} addr=")) {
                break addr.parse().expect("a socket address");
            }
        };
        Self { child, lines, addr }
    }

    /// Tells the server to stop, reads its report and waits for it to exit.
    fn finish(mut self) -> ServerLine {
        let mut stdin = self.child.stdin.take().expect("piped stdin");
        stdin.write_all(b"stop\n").expect("tell the server to stop");
        drop(stdin);
        let prefix = format!("{LINE_PREFIX} report ");
        let report = self
            .lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
            .expect("the server process printed its report");
        let status = self.child.wait().expect("wait for the server process");
        assert!(status.success(), "the server process failed: {status}");
        ServerLine(report)
    }
}

/// The server's report line: `key=value` pairs.
struct ServerLine(String);

impl ServerLine {
    fn get(&self, key: &str) -> u64 {
        self.0
            .split_whitespace()
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in the server's report {:?}", self.0))
    }
}

impl std::fmt::Display for ServerLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Samples the resident memory of process `pid` once a second until `stop`.
async fn sample_rss(pid: u32, mut stop: watch::Receiver<bool>) -> Vec<u64> {
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => samples.push(resident_bytes(pid)),
            _ = stop.changed() => return samples,
        }
    }
}

/// What the server saw.
#[derive(Debug, Default)]
struct ServerReport {
    connects: u64,
    messages: u64,
    order_errors: u64,
    disconnects: BTreeMap<String, u64>,
    peak_connections: usize,
    connections_at_end: usize,
}

/// Echoes every message and checks each connection's sequence numbers; after `stop`, waits
/// (bounded) for the connections to be gone.
async fn serve(mut server: Server, mut stop: watch::Receiver<bool>) -> ServerReport {
    let mut report = ServerReport::default();
    let mut expected: HashMap<ConnectionId, u64> = HashMap::new();
    let mut events = Vec::with_capacity(256);
    let mut sample = tokio::time::interval(Duration::from_secs(1));
    let mut stopping_since: Option<Instant> = None;
    loop {
        tokio::select! {
            running = server.next_events(&mut events, 256) => {
                assert!(running, "the server's driver stopped");
                for event in events.drain(..) {
                    match event {
                        Event::Connected { connection, .. } => {
                            report.connects += 1;
                            expected.insert(connection, 0);
                        }
                        Event::Message { connection, channel, data } => {
                            report.messages += 1;
                            let next = expected.entry(connection).or_default();
                            if seq_of(&data) != Some(*next) {
                                report.order_errors += 1;
                            }
                            *next += 1;
                            server.send(connection, channel, data).expect("echo queued");
                        }
                        Event::Disconnected { connection, reason } => {
                            expected.remove(&connection);
                            *report.disconnects.entry(format!("{reason:?}")).or_default() += 1;
                        }
                        Event::Delivery { .. } => {}
                    }
                }
            }
            _ = sample.tick() => {
                let live = server.connections().len();
                report.peak_connections = report.peak_connections.max(live);
                if let Some(since) = stopping_since {
                    if live == 0 || since.elapsed() > LIMIT {
                        report.connections_at_end = live;
                        break;
                    }
                }
            }
            changed = stop.changed(), if stopping_since.is_none() => {
                assert!(changed.is_ok(), "the stop signal was dropped");
                stopping_since = Some(Instant::now());
            }
        }
    }
    server.shutdown().await;
    report
}

/// What one client saw over all its sessions.
#[derive(Debug, Default)]
struct ClientReport {
    sessions: u64,
    sent: u64,
    echoed: u64,
    order_errors: u64,
    failures: Vec<String>,
}

impl ClientReport {
    fn merge(&mut self, other: ClientReport) {
        self.sessions += other.sessions;
        self.sent += other.sent;
        self.echoed += other.echoed;
        self.order_errors += other.order_errors;
        self.failures.extend(other.failures);
    }
}

/// Sessions of `ROTATION_S` seconds, back to back, from `first` until `deadline`.
async fn client_loop(
    index: u32,
    server: SocketAddr,
    first: Instant,
    deadline: Instant,
) -> ClientReport {
    let mut report = ClientReport::default();
    tokio::time::sleep_until(first).await;
    let mut session_start = first;
    while session_start < deadline {
        let session_end = session_start + Duration::from_secs(ROTATION_S);
        if let Err(failure) = session(index, server, session_end, &mut report).await {
            report.failures.push(format!("client {index}: {failure}"));
            // One failure is enough to fail the test; stop this client.
            break;
        }
        report.sessions += 1;
        session_start = session_end.max(Instant::now());
    }
    report
}

/// One session: connect, send numbered messages until `end`, wait for every echo, disconnect.
async fn session(
    index: u32,
    server: SocketAddr,
    end: Instant,
    report: &mut ClientReport,
) -> Result<(), String> {
    let mut client = timeout(LIMIT, Client::connect(server, DriverConfig::client()))
        .await
        .map_err(|_| "connect took too long".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    let mut ticks = tokio::time::interval(Duration::from_millis(1000 / RATE_HZ));
    let (mut sent, mut echoed) = (0u64, 0u64);
    let mut events = Vec::with_capacity(64);
    let drained_by = end + LIMIT;
    loop {
        let now = Instant::now();
        if now >= end && echoed == sent {
            break;
        }
        if now >= drained_by {
            return Err(format!(
                "{} of {sent} echoes missing after {LIMIT:?}",
                sent - echoed
            ));
        }
        tokio::select! {
            _ = ticks.tick(), if now < end => {
                client
                    .send(CHANNEL, message(index, sent))
                    .map_err(|e| format!("send: {e}"))?;
                sent += 1;
            }
            running = client.next_events(&mut events, 64) => {
                if !running {
                    return Err("the client's driver stopped".to_owned());
                }
                for event in events.drain(..) {
                    match event {
                        Event::Message { data, .. } => {
                            if seq_of(&data) != Some(echoed) {
                                report.order_errors += 1;
                            }
                            echoed += 1;
                        }
                        Event::Disconnected { reason, .. } => {
                            return Err(format!("unexpected disconnect: {reason}"));
                        }
                        _ => {}
                    }
                }
            }
            () = tokio::time::sleep_until(end), if now < end => {}
            () = tokio::time::sleep_until(drained_by) => {}
        }
    }
    report.sent += sent;
    report.echoed += echoed;
    client.disconnect(CLIENT_CODE).await;
    Ok(())
}

/// A 32-byte message: the client's index, its sequence number, filler.
fn message(index: u32, seq: u64) -> Bytes {
    let mut m = BytesMut::with_capacity(32);
    m.put_u32(index);
    m.put_u64(seq);
    m.put_bytes(0xa5, 20);
    m.freeze()
}

fn seq_of(data: &[u8]) -> Option<u64> {
    let mut header = data.get(4..12)?;
    Some(header.get_u64())
}

/// Resident set size of process `pid` (`VmRSS` of `/proc/<pid>/status`), in bytes; 0 once it
/// has exited.
fn resident_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Medians of the first and last thirds of the samples.
fn thirds(samples: &[u64]) -> (u64, u64) {
    let third = (samples.len() / 3).max(1);
    let median = |part: &[u64]| {
        let mut part = part.to_vec();
        part.sort_unstable();
        part.get(part.len() / 2).copied().unwrap_or(0)
    };
    let first = median(&samples[..third.min(samples.len())]);
    let last = median(&samples[samples.len().saturating_sub(third)..]);
    (first, last)
}
