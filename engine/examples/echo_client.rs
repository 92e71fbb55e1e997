//! Echo client: sends a message on each channel kind, waits for each echo, prints the RTT.
//!
//! ```text
//! cargo run -p tickwire --example echo_server -- 127.0.0.1:7777
//! cargo run -p tickwire --example echo_client -- 127.0.0.1:7777
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tickwire::{ChannelId, Client, DriverConfig, Event};

const NAMES: [&str; 4] = [
    "unreliable",
    "sequenced",
    "reliable ordered",
    "reliable unordered",
];

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7777".into());
    let Ok(server): Result<SocketAddr, _> = addr.parse() else {
        eprintln!("error: '{addr}' is not an address; give one like 127.0.0.1:7777");
        return ExitCode::from(2);
    };
    let mut client = match Client::connect(server, DriverConfig::client()).await {
        Ok(client) => client,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("connected to {server} from {}", client.local_addr());
    for (channel, name) in NAMES.iter().enumerate() {
        let text = format!("hello on the {name} channel");
        let started = Instant::now();
        if let Err(error) = client.send(ChannelId(channel as u8), Bytes::from(text)) {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
        let reply = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(event) = client.next_event().await {
                if let Event::Message { data, .. } = event {
                    return Some(data);
                }
            }
            None
        })
        .await;
        match reply {
            Ok(Some(data)) => println!(
                "{name:>18}: echo '{}' after {:.2} ms",
                String::from_utf8_lossy(&data),
                started.elapsed().as_secs_f64() * 1e3
            ),
            _ => println!("{name:>18}: no echo within 2 s (unreliable channels may lose it)"),
        }
    }
    if let Some(stats) = client.stats() {
        println!(
            "rtt {:.2} ms, {} packets sent, {} received",
            stats.rtt.as_secs_f64() * 1e3,
            stats.packets_sent,
            stats.packets_received
        );
    }
    client.disconnect(0).await;
    ExitCode::SUCCESS
}
