//! Several clients in one room: a server relays every line to everyone on a reliable-ordered
//! channel. Runs a server and three scripted clients in one process by default; or run the
//! parts yourself:
//!
//! ```text
//! cargo run -p tickwire --example chat                         # demo: server + 3 bots
//! cargo run -p tickwire --example chat -- server 127.0.0.1:7878
//! cargo run -p tickwire --example chat -- client 127.0.0.1:7878 alice   # type lines; Ctrl-D quits
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tickwire::{typed, ChannelId, Client, DriverConfig, Event, Server};
use tokio::io::{AsyncBufReadExt, BufReader};

const CHAT: ChannelId = ChannelId(2);

#[derive(Serialize, Deserialize, Debug)]
struct Line {
    from: String,
    text: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None => demo().await,
        Some("server") => match parse(args.get(1)) {
            Ok(addr) => server(addr).await,
            Err(e) => Err(e),
        },
        Some("client") => {
            let name = args.get(2).cloned().unwrap_or_else(|| "anonymous".into());
            match parse(args.get(1)) {
                Ok(addr) => client(addr, name).await,
                Err(e) => Err(e),
            }
        }
        Some(other) => Err(format!(
            "unknown mode '{other}': use 'server ADDR' or 'client ADDR NAME'"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse(arg: Option<&String>) -> Result<SocketAddr, String> {
    let text = arg.map_or("127.0.0.1:7878", String::as_str);
    text.parse()
        .map_err(|_| format!("'{text}' is not an address like 127.0.0.1:7878"))
}

/// Relays every line to every client.
async fn run_server(mut server: Server) {
    while let Some(event) = server.next_event().await {
        match event {
            Event::Message { data, .. } => {
                server.broadcast(CHAT, &data);
            }
            Event::Connected {
                connection, remote, ..
            } => {
                eprintln!("[server] {connection} joined from {remote}")
            }
            Event::Disconnected { connection, reason } => {
                eprintln!("[server] {connection} left: {reason}")
            }
            Event::Delivery { .. } => {}
        }
    }
}

async fn server(addr: SocketAddr) -> Result<(), String> {
    let server = Server::bind(addr, DriverConfig::server())
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("chat server on {}", server.local_addr());
    run_server(server).await;
    Ok(())
}

async fn client(addr: SocketAddr, name: String) -> Result<(), String> {
    let mut client = Client::connect(addr, DriverConfig::client())
        .await
        .map_err(|e| e.to_string())?;
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = stdin.next_line() => match line {
                Ok(Some(text)) => {
                    let bytes = typed::encode(&Line { from: name.clone(), text }).map_err(|e| e.to_string())?;
                    client.send(CHAT, bytes).map_err(|e| e.to_string())?;
                }
                _ => break,
            },
            event = client.next_event() => match event {
                Some(Event::Message { data, .. }) => print_line(&data),
                Some(Event::Disconnected { reason, .. }) => return Err(format!("disconnected: {reason}")),
                Some(_) => {}
                None => break,
            },
        }
    }
    client.disconnect(0).await;
    Ok(())
}

fn print_line(data: &Bytes) {
    match typed::decode::<Line>(data) {
        Ok(line) => println!("<{}> {}", line.from, line.text),
        Err(error) => eprintln!("(unreadable message: {error})"),
    }
}

/// A server and three clients that each say two things and read what everyone said.
async fn demo() -> Result<(), String> {
    let server = Server::bind(
        "127.0.0.1:0".parse().map_err(|_| "address")?,
        DriverConfig::server(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let addr = server.local_addr();
    tokio::spawn(run_server(server));
    let names = ["alice", "bob", "carol"];
    let mut tasks = Vec::new();
    for name in names {
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr, DriverConfig::client())
                .await
                .map_err(|e| e.to_string())?;
            // Everyone joins before anyone speaks.
            tokio::time::sleep(Duration::from_millis(200)).await;
            for text in ["hi all", "bye"] {
                let line = Line {
                    from: name.into(),
                    text: text.into(),
                };
                client
                    .send(CHAT, typed::encode(&line).map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            }
            let mut heard = 0;
            while heard < names.len() * 2 {
                match tokio::time::timeout(Duration::from_secs(5), client.next_event()).await {
                    Ok(Some(Event::Message { data, .. })) => {
                        if name == "alice" {
                            print_line(&data);
                        }
                        heard += 1;
                    }
                    Ok(Some(_)) => {}
                    _ => return Err(format!("{name} heard only {heard} lines")),
                }
            }
            client.disconnect(0).await;
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    println!(
        "everyone heard all {} lines, in each sender's order",
        names.len() * 2
    );
    Ok(())
}
