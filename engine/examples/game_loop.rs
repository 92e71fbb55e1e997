//! Embedding Tickwire in a game loop that is not async: a fixed 60 Hz tick polls a
//! [`PolledEndpoint`] once per frame. No runtime, no threads for the networking.
//!
//! Runs a server and a client in one process, each with its own loop on its own thread (as two
//! programs would), for a few seconds over a simulated bad network:
//!
//! ```text
//! cargo run -p tickwire --example game_loop
//! ```

use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tickwire::sim::LinkConfig;
use tickwire::{ChannelId, DriverConfig, Event, PolledEndpoint};

const TICK: Duration = Duration::from_micros(16_667);
const STATE: ChannelId = ChannelId(1); // sequenced: latest position wins
const INPUT: ChannelId = ChannelId(2); // reliable ordered

fn main() -> ExitCode {
    let mut server = match PolledEndpoint::server(
        DriverConfig::server(),
        "127.0.0.1:0".parse().expect("literal"),
    ) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let addr = server.local_addr();
    let server_thread = thread::spawn(move || {
        // The authoritative position, moved by client inputs and broadcast every tick.
        let mut position: i32 = 0;
        let end = Instant::now() + Duration::from_secs(4);
        while Instant::now() < end {
            let frame = Instant::now();
            if server.update(frame).is_err() {
                break;
            }
            while let Some(event) = server.poll_event() {
                if let Event::Message {
                    channel: INPUT,
                    data,
                    ..
                } = event
                {
                    position += i32::from(data.first().copied().unwrap_or(0) as i8);
                }
            }
            let connections: Vec<_> = server.endpoint().connections().collect();
            for connection in connections {
                let _ = server.send(
                    connection,
                    STATE,
                    Bytes::copy_from_slice(&position.to_be_bytes()),
                );
            }
            let _ = server.flush(frame);
            thread::sleep(TICK.saturating_sub(frame.elapsed()));
        }
        position
    });

    // The client plays over 40 ms each way and 5 % loss.
    let mut config = DriverConfig::client();
    config.link = Some(LinkConfig {
        latency: Duration::from_millis(40),
        loss: 0.05,
        ..LinkConfig::default()
    });
    let mut client = match PolledEndpoint::client(config, addr) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut seen = 0;
    let mut inputs_sent = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let frame = Instant::now();
        if let Err(error) = client.update(frame) {
            eprintln!("error: socket: {error}");
            return ExitCode::FAILURE;
        }
        while let Some(event) = client.poll_event() {
            if let Event::Message {
                channel: STATE,
                data,
                ..
            } = event
            {
                if let Ok(bytes) = <[u8; 4]>::try_from(&data[..]) {
                    seen = i32::from_be_bytes(bytes);
                }
            }
        }
        if let Some(connection) = client.connection().filter(|c| client.is_connected(*c)) {
            // Move right one unit per tick for two seconds.
            if inputs_sent < 120
                && client
                    .send(connection, INPUT, Bytes::from_static(&[1]))
                    .is_ok()
            {
                inputs_sent += 1;
            }
        }
        let _ = client.flush(frame);
        thread::sleep(TICK.saturating_sub(frame.elapsed()));
    }
    let rtt = client
        .connection()
        .and_then(|c| client.stats(c))
        .map_or(0.0, |s| s.rtt.as_secs_f64() * 1e3);
    if let Some(connection) = client.connection() {
        client.disconnect(connection, 0);
        let _ = client.flush(Instant::now());
    }
    let final_position = server_thread.join().unwrap_or(-1);
    println!(
        "sent {inputs_sent} inputs; server position {final_position}; client saw {seen}; rtt {rtt:.1} ms"
    );
    if final_position == inputs_sent {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: the server applied {final_position} of {inputs_sent} inputs");
        ExitCode::FAILURE
    }
}
