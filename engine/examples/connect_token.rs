//! Connect tokens end to end: make a key, issue a token, inspect it, and run a secure session
//! over loopback with it.
//!
//! ```text
//! cargo run -p tickwire --example connect_token -- keygen server.key
//! cargo run -p tickwire --example connect_token -- issue --key server.key --client-id 42 \
//!     --server 127.0.0.1:7777 --out client.token
//! cargo run -p tickwire --example connect_token -- inspect client.token
//! cargo run -p tickwire --example connect_token -- demo       # a secure echo over loopback
//! ```
//!
//! A real deployment issues tokens in a backend (matchmaker, provisioning service) that holds
//! the key and hands them to clients over TLS; servers hold the same key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use tickwire::{
    ChannelId, Client, ClientId, Config, ConnectToken, DriverConfig, Event, PrivateKey, Security,
    Server, TokenSecurity, TokenSpec,
};

#[derive(Parser)]
#[command(about = "Issue and use Tickwire connect tokens")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes a fresh private key (64 hex digits) to a file.
    Keygen {
        /// Where to write it (replaced if it exists).
        path: PathBuf,
    },
    /// Issues a token from a key file.
    Issue {
        /// The server's key file.
        #[arg(long)]
        key: PathBuf,
        /// The client's id.
        #[arg(long)]
        client_id: u64,
        /// A server address the token is valid for (repeat for several).
        #[arg(long = "server", required = true)]
        servers: Vec<SocketAddr>,
        /// Seconds the token may be used to connect.
        #[arg(long, default_value_t = 30)]
        valid_for: u64,
        /// Where to write the token.
        #[arg(long)]
        out: PathBuf,
    },
    /// Prints a token's public part.
    Inspect {
        /// A token file written by `issue`.
        path: PathBuf,
    },
    /// Runs a secure server and client on loopback and echoes one message.
    Demo,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Args::parse().command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Keygen { path } => {
            PrivateKey::generate()
                .save(&path)
                .map_err(|e| e.to_string())?;
            println!("wrote a new key to {}", path.display());
        }
        Command::Issue {
            key,
            client_id,
            servers,
            valid_for,
            out,
        } => {
            let key = PrivateKey::load(&key).map_err(|e| e.to_string())?;
            let spec = TokenSpec {
                valid_for: Duration::from_secs(valid_for),
                ..TokenSpec::new(Config::default().protocol_id, ClientId(client_id), servers)
            };
            let token = spec.issue(&key, unix_now()).map_err(|e| e.to_string())?;
            std::fs::write(&out, token.to_bytes())
                .map_err(|e| format!("could not write {}: {e}", out.display()))?;
            println!(
                "wrote a token for {} to {}",
                token.client_id(),
                out.display()
            );
        }
        Command::Inspect { path } => {
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("could not read {}: {e}", path.display()))?;
            let token =
                ConnectToken::from_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            let left = token.expires().saturating_sub(unix_now());
            println!("{token:?}");
            println!("{} bytes, {left} s of validity left", bytes.len());
        }
        Command::Demo => demo().await?,
    }
    Ok(())
}

async fn demo() -> Result<(), String> {
    let key = PrivateKey::generate();
    // Find a free port, so that the token can name the server's address before it starts.
    let addr = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map_err(|e| e.to_string())?;
    let mut server_config = DriverConfig::server();
    server_config.endpoint.security =
        Security::Tokens(TokenSecurity::new(key.clone(), vec![addr], unix_now()));
    let mut server = Server::bind(addr, server_config)
        .await
        .map_err(|e| e.to_string())?;

    let token = TokenSpec::new(Config::default().protocol_id, ClientId(42), vec![addr])
        .issue(&key, unix_now())
        .map_err(|e| e.to_string())?;
    let mut client_config = DriverConfig::client();
    client_config.endpoint.connect_token = Some(token);
    let mut client = Client::connect(addr, client_config)
        .await
        .map_err(|e| e.to_string())?;
    client
        .send(ChannelId(2), "hello, securely".into())
        .map_err(|e| e.to_string())?;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let event = tokio::time::timeout_at(deadline, server.next_event())
            .await
            .map_err(|_| "the server got nothing within 5 s".to_string())?;
        match event {
            Some(Event::Connected { remote, .. }) => {
                println!("server: secure session from {remote}")
            }
            Some(Event::Message {
                connection,
                channel,
                data,
            }) => {
                println!("server: got {:?}", String::from_utf8_lossy(&data));
                server
                    .send(connection, channel, data)
                    .map_err(|e| e.to_string())?;
                break;
            }
            Some(_) => {}
            None => return Err("the server stopped".into()),
        }
    }
    loop {
        let event = tokio::time::timeout_at(deadline, client.next_event())
            .await
            .map_err(|_| "the echo did not come back within 5 s".to_string())?;
        if let Some(Event::Message { data, .. }) = event {
            println!("client: echo {:?}", String::from_utf8_lossy(&data));
            break;
        }
    }
    client.disconnect(0).await;
    server.shutdown().await;
    Ok(())
}

/// The Unix time, read here in the application: the engine's core reads no clock.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
