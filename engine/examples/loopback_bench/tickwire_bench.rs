//! Tickwire's entries in the loopback benchmark, on the tokio driver (`Server`, `Client`).
//!
//! Each function follows the peer contract in `report.rs` and has the shape of `baselines.rs`'s
//! `quinn_peer`: the server binds `127.0.0.1:0` and waits for the client's `Connected`, the
//! client connects, both call `side.ready()`, and the hot loop runs inside
//! `side.until_stopped(..)`. Channels are the default layout: 0 unreliable, 2 reliable-ordered.
//! Every socket asks for the config's `socket_buffer_bytes`, as the baselines' do.

use std::time::Instant;

use bytes::Bytes;
use tickwire::{ChannelId, Client, ConnectionId, DriverConfig, Event, Server};
use tokio::sync::{mpsc, oneshot};

use crate::report::{
    overhead_per_message, run_pair, BenchError, Context, Side, T1Config, T1Result, T2Config,
    T2Result, T3Config, T3Result, T4Config, T4Result,
};
use crate::tickwire_secure::Mode;

const UNRELIABLE: ChannelId = ChannelId(0);
const RELIABLE: ChannelId = ChannelId(2);
/// Events taken from the driver per lock.
const EVENT_BATCH: usize = 1024;
/// Messages queued per lock in the flood.
const FLOOD_BATCH: usize = 64;

/// Ping-pong of 64-byte unreliable messages.
pub(crate) fn t1(cfg: &T1Config) -> Result<Option<T1Result>, BenchError> {
    t1_in(cfg, Mode::Plain)
}

/// [`t1`] in either mode.
pub(crate) fn t1_in(cfg: &T1Config, mode: Mode) -> Result<Option<T1Result>, BenchError> {
    let (msg_len, warmup, round_trips) = (cfg.msg_len, cfg.warmup, cfg.round_trips);
    let buffer = cfg.socket_buffer_bytes;
    let run = run_pair(
        cfg.timeout,
        move |side| async move {
            let (mut server, _) = accept(&side, buffer, mode).await?;
            side.ready().await?;
            side.finish();
            side.until_stopped(echo(&mut server))
                .await
                .unwrap_or(Ok(()))
        },
        move |side| async move {
            let mut client = connect(&side, buffer, mode).await?;
            side.ready().await?;
            let msg = message(msg_len, 0);
            let pings = async {
                let mut rtts = Vec::with_capacity(round_trips);
                for i in 0..warmup + round_trips {
                    let start = Instant::now();
                    client.send(UNRELIABLE, msg.clone()).ctx("send")?;
                    let echoed = next_message(&mut client).await?;
                    let rtt = start.elapsed();
                    if echoed.len() != msg_len {
                        return Err(incomplete("echo bytes", echoed.len(), msg_len));
                    }
                    if i >= warmup {
                        rtts.push(rtt);
                    }
                }
                Ok(rtts)
            };
            side.until_stopped(pings)
                .await
                .ok_or_else(|| side.interrupted())?
        },
    )?;
    T1Result::from_rtts(run.client).map(Some)
}

/// Unreliable flood: the client queues 64-byte messages as fast as the driver takes them
/// (waiting for room when the send buffer is full); many are packed per datagram.
pub(crate) fn t2(cfg: &T2Config) -> Result<Option<T2Result>, BenchError> {
    t2_in(cfg, Mode::Plain)
}

/// [`t2`] in either mode.
pub(crate) fn t2_in(cfg: &T2Config, mode: Mode) -> Result<Option<T2Result>, BenchError> {
    let (msg_len, duration, drain_idle) = (cfg.msg_len, cfg.duration, cfg.drain_idle);
    let buffer = cfg.socket_buffer_bytes;
    let run = run_pair(
        cfg.timeout,
        move |side| async move {
            let (mut server, _) = accept(&side, buffer, mode).await?;
            let opened = side.ready().await?;
            let mut delivered = 0u64;
            let mut last = opened;
            let mut events = Vec::with_capacity(EVENT_BATCH);
            tokio::select! {
                () = count(&mut server, msg_len, &mut delivered, &mut last, &mut events) => {}
                () = side.peer_finished() => {}
            }
            while Instant::now() < side.deadline() {
                let before = delivered;
                let counting = count(&mut server, msg_len, &mut delivered, &mut last, &mut events);
                let _ = tokio::time::timeout(drain_idle, counting).await;
                if delivered == before {
                    break;
                }
            }
            Ok((delivered, last.saturating_duration_since(opened)))
        },
        move |side| async move {
            let client = connect(&side, buffer, mode).await?;
            let opened = side.ready().await?;
            let msg = message(msg_len, 0);
            let flood = async {
                let mut sent = 0u64;
                while Instant::now() < opened + duration {
                    let (queued, refused) =
                        client.send_many(UNRELIABLE, std::iter::repeat_n(msg.clone(), FLOOD_BATCH));
                    sent += queued as u64;
                    if let Some(refused) = refused {
                        client
                            .send_wait(UNRELIABLE, refused.into_data())
                            .await
                            .ctx("send")?;
                        sent += 1;
                    }
                }
                Ok::<u64, BenchError>(sent)
            };
            let sent = side
                .until_stopped(flood)
                .await
                .ok_or_else(|| side.interrupted())??;
            side.finish();
            // Keep the driver running until the server has counted what is still queued.
            side.stopped().await;
            Ok(sent)
        },
    )?;
    let (delivered, elapsed) = run.server;
    T2Result::new(run.client, delivered, elapsed, run.window).map(Some)
}

/// Reliable-ordered bulk transfer in 1 KiB messages; the server checks the order.
pub(crate) fn t3(cfg: &T3Config) -> Result<Option<T3Result>, BenchError> {
    t3_in(cfg, Mode::Plain)
}

/// [`t3`] in either mode.
pub(crate) fn t3_in(cfg: &T3Config, mode: Mode) -> Result<Option<T3Result>, BenchError> {
    let (msg_len, total) = (cfg.msg_len, cfg.total_bytes);
    let buffer = cfg.socket_buffer_bytes;
    let run = run_pair(
        cfg.timeout,
        move |side| async move {
            let (mut server, _) = accept(&side, buffer, mode).await?;
            side.ready().await?;
            let read = async {
                let mut received = 0u64;
                let mut expected = 0u64;
                let mut events = Vec::with_capacity(EVENT_BATCH);
                while received < total {
                    events.clear();
                    if !server.next_events(&mut events, EVENT_BATCH).await {
                        break;
                    }
                    for event in events.drain(..) {
                        if let Event::Message { data, .. } = event {
                            if counter(&data) != Some(expected) {
                                return Err(incomplete("in-order message", expected as usize, 0));
                            }
                            expected += 1;
                            received += data.len() as u64;
                        }
                    }
                }
                Ok((received, Instant::now()))
            };
            let result = side
                .until_stopped(read)
                .await
                .ok_or_else(|| side.interrupted())?;
            side.finish();
            result
        },
        move |side| async move {
            let client = connect(&side, buffer, mode).await?;
            side.ready().await?;
            let start = Instant::now();
            let write = async {
                let mut remaining = total;
                let mut index = 0u64;
                while remaining > 0 {
                    let len = remaining.min(msg_len as u64) as usize;
                    let mut msg = vec![0u8; len.max(8)];
                    msg[..8].copy_from_slice(&index.to_be_bytes());
                    msg.truncate(len);
                    client
                        .send_wait(RELIABLE, Bytes::from(msg))
                        .await
                        .ctx("send")?;
                    remaining -= len as u64;
                    index += 1;
                }
                Ok::<(), BenchError>(())
            };
            side.until_stopped(write)
                .await
                .ok_or_else(|| side.interrupted())??;
            side.finish();
            // Keep the driver running (retransmissions) until the server has everything.
            side.stopped().await;
            Ok(start)
        },
    )?;
    let (received, end) = run.server;
    T3Result::new(cfg, received, end.saturating_duration_since(run.client)).map(Some)
}

/// Tags of the four T4 phases, in each message's first byte, and of the end marker.
const PHASE_ONE_WAY: u8 = 1;
const PHASE_ECHO: u8 = 2;
const PHASE_RELIABLE: u8 = 3;
const PHASE_TEN: u8 = 4;
const PHASE_DONE: u8 = 9;

/// Four phases on one warmed-up connection, counted with the endpoints' own socket statistics
/// (`bytes_sent`: UDP payload bytes handed to the socket). The client counts its bytes at the
/// phase boundaries; the server counts its own from the first message of one phase to the first
/// of the next and reports them at the end.
pub(crate) fn t4(cfg: &T4Config) -> Result<Option<T4Result>, BenchError> {
    t4_in(cfg, Mode::Plain)
}

/// [`t4`] in either mode.
pub(crate) fn t4_in(cfg: &T4Config, mode: Mode) -> Result<Option<T4Result>, BenchError> {
    let (msg_len, messages) = (cfg.msg_len, cfg.messages);
    let buffer = cfg.socket_buffer_bytes;
    let (note_tx, mut note_rx) = mpsc::unbounded_channel::<()>();
    let (report_tx, report_rx) = oneshot::channel::<[u64; 4]>();
    let run = run_pair(
        cfg.timeout,
        move |side| async move {
            let (mut server, connection) = accept(&side, buffer, mode).await?;
            side.ready().await?;
            side.finish();
            let serve = async {
                let mut phase_start = [0u64; 4];
                let mut seen = [false; 4];
                let mut bytes = [0u64; 4];
                let mut current: Option<usize> = None;
                let mut events = Vec::with_capacity(EVENT_BATCH);
                loop {
                    events.clear();
                    if !server.next_events(&mut events, EVENT_BATCH).await {
                        return Ok(());
                    }
                    for event in events.drain(..) {
                        let Event::Message { channel, data, .. } = event else {
                            continue;
                        };
                        let tag = data.first().copied().unwrap_or(0);
                        let sent_now = server.endpoint_stats().bytes_sent;
                        if tag == PHASE_DONE {
                            if let Some(phase) = current {
                                bytes[phase] = sent_now - phase_start[phase];
                            }
                            let _ = report_tx.send(bytes);
                            return Ok(());
                        }
                        let phase = usize::from(tag.clamp(1, 4) - 1);
                        if !seen[phase] {
                            seen[phase] = true;
                            if let Some(previous) = current {
                                bytes[previous] = sent_now - phase_start[previous];
                            }
                            phase_start[phase] = sent_now;
                            current = Some(phase);
                        }
                        if tag == PHASE_ECHO {
                            server.send(connection, channel, data).ctx("echo")?;
                        } else {
                            let _ = note_tx.send(());
                        }
                    }
                }
            };
            match side.until_stopped(serve).await {
                None => Ok(()),
                Some(result) => result,
            }
        },
        move |side| async move {
            let mut client = connect(&side, buffer, mode).await?;
            side.ready().await?;
            let phases = async {
                let sent = |client: &Client| client.endpoint_stats().bytes_sent;
                let mut client_bytes = [0u64; 4];

                let start = sent(&client);
                for _ in 0..messages {
                    client
                        .send(UNRELIABLE, message(msg_len, PHASE_ONE_WAY))
                        .ctx("send")?;
                    note_rx.recv().await.ok_or(BenchError::Aborted)?;
                }
                client_bytes[0] = sent(&client) - start;

                let start = sent(&client);
                for _ in 0..messages {
                    client
                        .send(UNRELIABLE, message(msg_len, PHASE_ECHO))
                        .ctx("send")?;
                    next_message(&mut client).await?;
                }
                client_bytes[1] = sent(&client) - start;

                let start = sent(&client);
                for _ in 0..messages {
                    client
                        .send(RELIABLE, message(msg_len, PHASE_RELIABLE))
                        .ctx("send")?;
                    note_rx.recv().await.ok_or(BenchError::Aborted)?;
                }
                client_bytes[2] = sent(&client) - start;

                let start = sent(&client);
                for _ in 0..messages / 10 {
                    let batch = std::iter::repeat_n(message(msg_len, PHASE_TEN), 10);
                    if let (_, Some(refused)) = client.send_many(UNRELIABLE, batch) {
                        return Err(refused).ctx("send_many");
                    }
                    for _ in 0..10 {
                        note_rx.recv().await.ok_or(BenchError::Aborted)?;
                    }
                }
                client_bytes[3] = sent(&client) - start;

                client
                    .send(RELIABLE, message(msg_len, PHASE_DONE))
                    .ctx("send")?;
                let server_bytes = report_rx.await.ctx("server's byte counts")?;
                let n = messages as u64;
                let ten = (messages / 10 * 10) as u64;
                Ok(T4Result {
                    unreliable_overhead_bytes: overhead_per_message(client_bytes[0], n, msg_len),
                    unreliable_with_acks_overhead_bytes: overhead_per_message(
                        client_bytes[1] + server_bytes[1],
                        2 * n,
                        msg_len,
                    ),
                    reliable_overhead_bytes: overhead_per_message(client_bytes[2], n, msg_len),
                    ten_per_datagram_overhead_bytes: overhead_per_message(
                        client_bytes[3],
                        ten,
                        msg_len,
                    ),
                    reliable_ack_bytes: server_bytes[2] as f64 / n as f64,
                })
            };
            let result = side
                .until_stopped(phases)
                .await
                .ok_or_else(|| side.interrupted())?;
            side.finish();
            result
        },
    )?;
    Ok(Some(run.client))
}

fn driver_config(server: bool, buffer_bytes: usize) -> DriverConfig {
    let mut config = if server {
        DriverConfig::server()
    } else {
        DriverConfig::client()
    };
    if buffer_bytes > 0 {
        config.socket_buffer_bytes = buffer_bytes;
    }
    config
}

/// Binds the server, publishes its address, and waits for the client's connection.
async fn accept(
    side: &Side,
    buffer_bytes: usize,
    mode: Mode,
) -> Result<(Server, ConnectionId), BenchError> {
    let (addr, config) = mode.server(driver_config(true, buffer_bytes))?;
    let mut server = Server::bind(addr, config).await.ctx("bind")?;
    side.listening(server.local_addr());
    let connected = async {
        while let Some(event) = server.next_event().await {
            if let Event::Connected { connection, .. } = event {
                return Some(connection);
            }
        }
        None
    };
    let connection = side
        .until_stopped(connected)
        .await
        .ok_or_else(|| side.interrupted())?
        .ok_or(BenchError::Incomplete {
            what: "incoming connections",
            got: 0,
            want: 1,
        })?;
    Ok((server, connection))
}

async fn connect(side: &Side, buffer_bytes: usize, mode: Mode) -> Result<Client, BenchError> {
    let server = side.server_addr().await?;
    let config = mode.client(driver_config(false, buffer_bytes), server)?;
    let connecting = Client::connect(server, config);
    side.until_stopped(connecting)
        .await
        .ok_or_else(|| side.interrupted())?
        .ctx("connect")
}

/// Echoes every message back on its channel.
async fn echo(server: &mut Server) -> Result<(), BenchError> {
    let mut events = Vec::with_capacity(EVENT_BATCH);
    loop {
        events.clear();
        if !server.next_events(&mut events, EVENT_BATCH).await {
            return Ok(());
        }
        for event in events.drain(..) {
            if let Event::Message {
                connection,
                channel,
                data,
            } = event
            {
                server.send(connection, channel, data).ctx("echo")?;
            }
        }
    }
}

/// Counts `msg_len`-byte messages until the server stops (or the caller stops polling).
async fn count(
    server: &mut Server,
    msg_len: usize,
    delivered: &mut u64,
    last: &mut Instant,
    events: &mut Vec<Event>,
) {
    loop {
        events.clear();
        if !server.next_events(events, EVENT_BATCH).await {
            return;
        }
        let before = *delivered;
        for event in events.drain(..) {
            if let Event::Message { data, .. } = event {
                if data.len() == msg_len {
                    *delivered += 1;
                }
            }
        }
        // One clock read per batch: its messages were taken at the same time.
        if *delivered > before {
            *last = Instant::now();
        }
    }
}

async fn next_message(client: &mut Client) -> Result<Bytes, BenchError> {
    loop {
        match client.next_event().await {
            Some(Event::Message { data, .. }) => return Ok(data),
            Some(Event::Disconnected { .. }) | None => return Err(BenchError::Aborted),
            Some(_) => {}
        }
    }
}

fn message(len: usize, tag: u8) -> Bytes {
    let mut msg: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    if let Some(first) = msg.first_mut() {
        *first = tag;
    }
    Bytes::from(msg)
}

/// The counter in a T3 message's first eight bytes.
fn counter(data: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = data.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

fn incomplete(what: &'static str, got: usize, want: usize) -> BenchError {
    BenchError::Incomplete {
        what,
        got: got as u64,
        want: want as u64,
    }
}
