//! Drives a client and a server through the seeded network simulator over a reliable-ordered
//! channel and prints one JSON object. Exits non-zero if any promise was broken.
//!
//! ```text
//! cargo run --release -p tickwire --example netsim -- --loss 0.2 --latency-ms 50 \
//!     --jitter-ms 30 --duplicate 0.05 --reorder 0.1 --messages 10000 --seed 7
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use tickwire::sim::{LinkConfig, Simulation};
use tickwire::{ChannelId, Config, Event};

/// Simulate a Tickwire client and server over a bad network, in virtual time.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Probability that a datagram is lost, each way (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// One-way latency in milliseconds.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Jitter in milliseconds: each datagram's delay varies by up to this much either way.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Probability that a datagram is delivered twice (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Probability that a datagram is held back so later ones overtake it (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Reliable-ordered messages the client sends to the server.
    #[arg(long, default_value_t = 10_000)]
    messages: u32,
    /// Size of each message in bytes (at least 4: a counter; larger ones are fragmented).
    #[arg(long, default_value_t = 64)]
    message_size: usize,
    /// Seed of the network and both endpoints: the same seed replays the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Give up after this much simulated time, in seconds.
    #[arg(long, default_value_t = 3_600)]
    max_simulated_s: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(ok) => {
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<bool, String> {
    let wall = Instant::now();
    let link = LinkConfig {
        latency: Duration::from_millis(args.latency_ms),
        jitter: Duration::from_millis(args.jitter_ms),
        loss: args.loss,
        duplicate: args.duplicate,
        reorder: args.reorder,
        ..LinkConfig::default()
    };
    let mut sim =
        Simulation::new(link, args.seed).map_err(|e| format!("bad link settings: {e}"))?;
    let server_addr = "10.0.0.1:7777".parse().map_err(|e| format!("{e}"))?;
    let client_addr = "10.0.0.2:40000".parse().map_err(|e| format!("{e}"))?;
    let server_config = Config {
        seed: Some(args.seed.wrapping_mul(3)),
        ..Config::server()
    };
    let client_config = Config {
        seed: Some(args.seed.wrapping_mul(5)),
        ..Config::client()
    };
    let server = sim
        .add_endpoint(server_addr, server_config)
        .map_err(|e| e.to_string())?;
    let client = sim
        .add_endpoint(client_addr, client_config)
        .map_err(|e| e.to_string())?;
    let now = sim.now();
    let conn = sim
        .endpoint_mut(client)
        .connect(server_addr, now)
        .map_err(|e| e.to_string())?;

    let channel = ChannelId(2);
    let size = args.message_size.max(4);
    let mut sent = 0u32;
    let mut delivered = 0u64;
    let mut duplicates = 0u64;
    let mut in_order = true;
    let mut seen = vec![false; args.messages as usize];
    let mut expected_next = 0u32;
    let mut connected = false;
    let mut failure = None;
    let limit = Duration::from_secs(args.max_simulated_s);
    sim.run_until(limit, |sim| {
        while let Some(event) = sim.poll_event(client) {
            match event {
                Event::Connected { .. } => connected = true,
                Event::Disconnected { reason, .. } => failure = Some(format!("client: {reason}")),
                _ => {}
            }
        }
        while connected && sent < args.messages {
            let mut payload = vec![0u8; size];
            payload[..4].copy_from_slice(&sent.to_be_bytes());
            match sim
                .endpoint_mut(client)
                .send(conn, channel, Bytes::from(payload))
            {
                Ok(_) => sent += 1,
                Err(_) => break,
            }
        }
        while let Some(event) = sim.poll_event(server) {
            match event {
                Event::Message { data, .. } => {
                    let Some(counter) = data.get(..4) else {
                        in_order = false;
                        continue;
                    };
                    let value =
                        u32::from_be_bytes([counter[0], counter[1], counter[2], counter[3]]);
                    delivered += 1;
                    match seen.get_mut(value as usize) {
                        Some(flag) if *flag => duplicates += 1,
                        Some(flag) => *flag = true,
                        None => in_order = false,
                    }
                    if value != expected_next {
                        in_order = false;
                    }
                    expected_next = value.wrapping_add(1);
                }
                Event::Disconnected { reason, .. } => failure = Some(format!("server: {reason}")),
                _ => {}
            }
        }
        failure.is_some() || delivered >= u64::from(args.messages)
    })
    .map_err(|e| e.to_string())?;

    let stats = sim.endpoint(client).connection_stats(conn);
    let (rtt_ms, loss_rate, bytes_sent) = stats.as_ref().map_or((0.0, 0.0, 0), |s| {
        (s.rtt.as_secs_f64() * 1e3, s.loss_rate, s.bytes_sent)
    });
    let packets_lost = stats
        .as_ref()
        .map_or(0, |s| s.packets_lost.saturating_sub(s.spurious_losses));
    let packets_acked = stats.as_ref().map_or(0, |s| s.packets_acked);
    let measured_loss = if packets_lost + packets_acked > 0 {
        packets_lost as f64 / (packets_lost + packets_acked) as f64
    } else {
        0.0
    };
    let payload_bytes = u64::from(sent) * size as u64;
    let overhead = if sent > 0 {
        (bytes_sent as f64 - payload_bytes as f64) / f64::from(sent)
    } else {
        0.0
    };
    let ok =
        failure.is_none() && delivered == u64::from(args.messages) && duplicates == 0 && in_order;
    let report = serde_json::json!({
        "sent": sent,
        "delivered": delivered,
        "in_order": in_order,
        "duplicates": duplicates,
        "simulated_ms": sim.elapsed().as_millis() as u64,
        "wall_ms": wall.elapsed().as_millis() as u64,
        "rtt_ms": (rtt_ms * 100.0).round() / 100.0,
        "loss_rate": (measured_loss * 1e4).round() / 1e4,
        "loss_rate_smoothed": (loss_rate * 1e4).round() / 1e4,
        "overhead_bytes_per_message": (overhead * 100.0).round() / 100.0,
        "spurious_losses": stats.as_ref().map_or(0, |s| s.spurious_losses),
        "packets_sent": stats.as_ref().map_or(0, |s| s.packets_sent),
        "retransmissions": stats.as_ref().map_or(0, |s| s.send_channels.get(2).map_or(0, |c| c.retransmissions)),
        "seed": args.seed,
        "ok": ok,
        "failure": failure,
    });
    println!("{report}");
    Ok(ok)
}
