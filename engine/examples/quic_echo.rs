//! Tickwire over QUIC, server and client in one process: the server generates a self-signed
//! certificate and prints its SHA-256 fingerprint, the client pins it, sends one message on
//! every channel and prints the echoes.
//!
//! ```text
//! cargo run -p tickwire --example quic_echo                # QUIC for every channel
//! cargo run -p tickwire --example quic_echo -- hybrid      # reliable over QUIC, the rest native
//! ```

use std::process::ExitCode;
use std::time::Duration;

use tickwire::{ChannelId, Client, DriverConfig, Event, Server, ServerVerification, Transport};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let transport: Transport = match std::env::args().nth(1).unwrap_or("quic".into()).parse() {
        Ok(Transport::Native) | Ok(Transport::Auto) | Err(_) => {
            eprintln!("error: give `quic` or `hybrid` (or nothing)");
            return ExitCode::from(2);
        }
        Ok(transport) => transport,
    };
    match run(transport).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(transport: Transport) -> Result<(), Box<dyn std::error::Error>> {
    let server_config = DriverConfig {
        transport,
        ..DriverConfig::server()
    };
    let mut server = Server::bind("127.0.0.1:0".parse()?, server_config).await?;
    let fingerprint = server.cert_sha256().ok_or("the server serves no QUIC")?;
    println!(
        "server: native {} / QUIC {:?}, certificate sha256 {fingerprint}",
        server.local_addr(),
        server.quic_addr()
    );
    let server_addr = server.local_addr();
    let echo = tokio::spawn(async move {
        while let Some(event) = server.next_event().await {
            match event {
                Event::Connected {
                    connection,
                    remote,
                    transport,
                } => {
                    println!("server: {connection} connected from {remote} over {transport}");
                }
                Event::Message {
                    connection,
                    channel,
                    data,
                } => {
                    let _ = server.send(connection, channel, data);
                }
                Event::Disconnected { connection, reason } => {
                    println!("server: {connection} left: {reason}");
                    break;
                }
                Event::Delivery { .. } => {}
            }
        }
        server.shutdown().await;
    });

    let mut client_config = DriverConfig {
        transport,
        ..DriverConfig::client()
    };
    // What `--server-cert-sha256 HEX` does in the demos.
    client_config.quic.verification = ServerVerification::Pinned(fingerprint);
    let mut client = Client::connect(server_addr, client_config).await?;
    println!("client: connected over {}", client.transport());
    for channel in 0..4 {
        client.send(
            ChannelId(channel),
            format!("hello on channel {channel}").into(),
        )?;
    }
    let mut echoes = 0;
    while echoes < 4 {
        match tokio::time::timeout(Duration::from_secs(5), client.next_event()).await {
            Ok(Some(Event::Message { channel, data, .. })) => {
                println!(
                    "client: echo on {channel:?}: {}",
                    String::from_utf8_lossy(&data)
                );
                echoes += 1;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return Err("the echoes did not all come back".into()),
        }
    }
    client.disconnect(0).await;
    echo.await?;
    Ok(())
}
