//! Echo server: every message comes back on the channel it arrived on.
//!
//! ```text
//! cargo run -p tickwire --example echo_server -- 127.0.0.1:7777
//! cargo run -p tickwire --example echo_client -- 127.0.0.1:7777   # in another terminal
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

use tickwire::{DriverConfig, Event, Server};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7777".into());
    let addr: SocketAddr = match addr.parse() {
        Ok(addr) => addr,
        Err(_) => {
            eprintln!(
                "error: '{addr}' is not an address; give one like 127.0.0.1:7777 or [::1]:7777"
            );
            return ExitCode::from(2);
        }
    };
    let mut server = match Server::bind(addr, DriverConfig::server()).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("echo server listening on {}", server.local_addr());
    while let Some(event) = server.next_event().await {
        match event {
            Event::Connected {
                connection, remote, ..
            } => {
                println!("{connection} connected from {remote}")
            }
            Event::Message {
                connection,
                channel,
                data,
            } => {
                if let Err(error) = server.send(connection, channel, data) {
                    eprintln!("{connection}: could not echo: {error}");
                }
            }
            Event::Disconnected { connection, reason } => println!("{connection} left: {reason}"),
            Event::Delivery { .. } => {}
        }
    }
    ExitCode::SUCCESS
}
