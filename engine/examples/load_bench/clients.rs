//! The load generator's clients: many `tickwire::Client`s (each its own socket and driver task)
//! sending fixed-size messages at a fixed rate and timing the server's echoes.
//!
//! A message carries its sequence number, its send time (nanoseconds since the generator's
//! epoch) and the phase it was sent in, so every echo is counted in the phase it was sent in,
//! however late it comes back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use tickwire::{ChannelId, Client, DriverConfig, Event};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

/// Phases of a run, in order; the index is what a message carries.
pub(crate) const PHASES: [&str; 4] = ["warmup", "T5", "L1", "drain"];
/// Index of the phase after which clients stop sending.
pub(crate) const DRAIN: u8 = 3;
/// Set when the clients must stop.
pub(crate) const STOP: u8 = u8::MAX;

/// Events taken per lock.
const EVENT_BATCH: usize = 64;
/// Bytes of a message header: sequence number, send time, phase.
const HEADER_LEN: usize = 17;

/// What all clients share: the epoch of send times and the current phase.
pub(crate) struct Shared {
    pub(crate) epoch: Instant,
    pub(crate) phase: AtomicU8,
}

impl Shared {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            phase: AtomicU8::new(0),
        })
    }

    pub(crate) fn set_phase(&self, phase: u8) {
        self.phase.store(phase, Ordering::Relaxed);
    }
}

/// How the clients behave.
#[derive(Clone, Debug)]
pub(crate) struct ClientPlan {
    pub(crate) server: SocketAddr,
    pub(crate) rate_hz: f64,
    pub(crate) message_len: usize,
    pub(crate) channel: ChannelId,
    pub(crate) socket_buffer_bytes: usize,
}

/// Per phase, what one client (or, summed, all) saw.
#[derive(Clone, Debug, Default)]
pub(crate) struct PhaseTally {
    pub(crate) sent: u64,
    pub(crate) refused: u64,
    pub(crate) echoed: u64,
    /// Round trips in microseconds.
    pub(crate) rtts_us: Vec<u32>,
}

/// What one client saw over the whole run.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClientTally {
    pub(crate) phases: [PhaseTally; PHASES.len()],
    /// Why the connection ended early, if it did.
    pub(crate) disconnected: Option<String>,
    /// Echoes that failed to parse (never expected).
    pub(crate) bad_echoes: u64,
}

impl ClientTally {
    /// Adds `other` into `self`.
    pub(crate) fn merge(&mut self, other: ClientTally) {
        for (mine, theirs) in self.phases.iter_mut().zip(other.phases) {
            mine.sent += theirs.sent;
            mine.refused += theirs.refused;
            mine.echoed += theirs.echoed;
            mine.rtts_us.extend(theirs.rtts_us);
        }
        self.bad_echoes += other.bad_echoes;
    }
}

/// Connects `count` clients, at most `parallel` handshakes at a time, printing progress.
/// Returns the connected clients and the connect errors.
pub(crate) async fn connect_all(
    plan: &ClientPlan,
    count: usize,
    parallel: usize,
) -> (Vec<Client>, Vec<String>) {
    let mut clients = Vec::with_capacity(count);
    let mut errors = Vec::new();
    let mut pending = JoinSet::new();
    let mut started = 0;
    let mut last_report = Instant::now();
    while clients.len() + errors.len() < count {
        while started < count && pending.len() < parallel.max(1) {
            let mut config = DriverConfig::client();
            config.socket_buffer_bytes = plan.socket_buffer_bytes;
            let server = plan.server;
            pending.spawn(async move { Client::connect(server, config).await });
            started += 1;
        }
        match pending.join_next().await {
            Some(Ok(Ok(client))) => clients.push(client),
            Some(Ok(Err(e))) => errors.push(e.to_string()),
            Some(Err(e)) => errors.push(format!("connect task failed: {e}")),
            None => break,
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            eprintln!("  connected {} / {count}", clients.len());
            last_report = Instant::now();
        }
    }
    (clients, errors)
}

/// Runs one client until the phase is [`STOP`]: a message every `1 / rate_hz`, starting at a
/// random offset within the first period (so the clients' sends spread over the period), and
/// every echo timed.
pub(crate) async fn run_client(
    mut client: Client,
    plan: ClientPlan,
    shared: Arc<Shared>,
    offset: Duration,
) -> ClientTally {
    let period = Duration::from_secs_f64(1.0 / plan.rate_hz);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
    // A starved generator sends late, not in bursts: the offered rate is what was sent.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut tally = ClientTally::default();
    let mut events = Vec::with_capacity(EVENT_BATCH);
    let mut seq = 0u64;
    let filler = vec![0x5au8; plan.message_len.saturating_sub(HEADER_LEN)];
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let phase = shared.phase.load(Ordering::Relaxed);
                if phase == STOP {
                    break;
                }
                if phase >= DRAIN {
                    continue;
                }
                let message = encode(seq, shared.epoch.elapsed(), phase, &filler);
                seq += 1;
                let slot = &mut tally.phases[usize::from(phase)];
                match client.send(plan.channel, message) {
                    Ok(_) => slot.sent += 1,
                    Err(_) => slot.refused += 1,
                }
            }
            running = client.next_events(&mut events, EVENT_BATCH) => {
                if !running {
                    tally.disconnected.get_or_insert_with(|| "driver stopped".to_owned());
                    break;
                }
                let now = shared.epoch.elapsed();
                for event in events.drain(..) {
                    match event {
                        Event::Message { data, .. } => match decode(&data) {
                            Some((sent_at, phase)) if usize::from(phase) < PHASES.len() => {
                                let slot = &mut tally.phases[usize::from(phase)];
                                slot.echoed += 1;
                                let rtt = now.saturating_sub(sent_at).as_micros();
                                slot.rtts_us.push(u32::try_from(rtt).unwrap_or(u32::MAX));
                            }
                            _ => tally.bad_echoes += 1,
                        },
                        Event::Disconnected { reason, .. } => {
                            tally.disconnected = Some(format!("{reason:?}"));
                        }
                        _ => {}
                    }
                }
                if tally.disconnected.is_some() {
                    break;
                }
            }
        }
    }
    tally
}

fn encode(seq: u64, sent_at: Duration, phase: u8, filler: &[u8]) -> Bytes {
    let mut message = BytesMut::with_capacity(HEADER_LEN + filler.len());
    message.put_u64(seq);
    message.put_u64(sent_at.as_nanos() as u64);
    message.put_u8(phase);
    message.put_slice(filler);
    message.freeze()
}

/// The send time and phase of an echo.
fn decode(data: &[u8]) -> Option<(Duration, u8)> {
    let header = data.get(..HEADER_LEN)?;
    let nanos = u64::from_be_bytes(header[8..16].try_into().ok()?);
    Some((Duration::from_nanos(nanos), header[16]))
}
