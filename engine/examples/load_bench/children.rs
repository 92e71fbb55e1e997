//! The child processes of a run: the server (`serve` role) and the flood (`flood` role), both
//! this same executable started again.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::flood::FloodArgs;
use crate::serve::ServeArgs;

/// The server process, answering `stats` on its stdin.
pub(crate) struct ServerProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub(crate) addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `<this executable> serve ...` (under `nice -n <nice>` unless `nice` is 0) and
    /// reads the address it bound.
    pub(crate) fn start(args: &ServeArgs, nice: i32) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
        let mut command = if nice == 0 {
            Command::new(exe)
        } else {
            let mut command = Command::new("nice");
            command.args(["-n", &nice.to_string()]).arg(exe);
            command
        };
        let mut child = command
            .arg("serve")
            .args(["--bind", &args.bind.to_string()])
            .args(["--max-connections", &args.max_connections.to_string()])
            .args(["--threads", &args.threads.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting the server process: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin to the server")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout from the server")?);
        let mut server = Self {
            child,
            stdin,
            stdout,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let hello = server.read_json()?;
        server.addr = hello["addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("the server's first line has no address: {hello}"))?;
        Ok(server)
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks for and reads one line of counters.
    pub(crate) fn stats(&mut self) -> Result<Value, String> {
        self.stdin
            .write_all(b"stats\n")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("asking the server for stats: {e}"))?;
        self.read_json()
    }

    /// Tells the server to quit and waits for it (at most `patience`, then kills it).
    pub(crate) fn stop(mut self, patience: Duration) {
        let _ = self.stdin.write_all(b"quit\n");
        drop(self.stdin);
        wait_or_kill(&mut self.child, patience);
    }

    fn read_json(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        let read = self
            .stdout
            .read_line(&mut line)
            .map_err(|e| format!("reading from the server: {e}"))?;
        if read == 0 {
            return Err("the server process ended".to_owned());
        }
        serde_json::from_str(&line).map_err(|e| format!("server line {line:?}: {e}"))
    }
}

/// The flood process, which prints its report when its time is up.
pub(crate) struct FloodProcess {
    child: Child,
}

impl FloodProcess {
    /// Starts `<this executable> flood ...`.
    pub(crate) fn start(args: &FloodArgs) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
        let child = Command::new(exe)
            .arg("flood")
            .args(["--server", &args.server.to_string()])
            .args(["--garbage-rate", &args.garbage_rate.to_string()])
            .args(["--handshake-rate", &args.handshake_rate.to_string()])
            .args(["--duration-s", &args.duration_s.to_string()])
            .args(["--sockets", &args.sockets.to_string()])
            .args(["--io", flood_io_name(args.io)])
            .args(["--seed", &args.seed.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting the flood process: {e}"))?;
        Ok(Self { child })
    }

    /// The flood's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the flood to end (at most `patience`) and parses its report.
    pub(crate) fn finish(mut self, patience: Duration) -> Result<Value, String> {
        if !wait_or_kill(&mut self.child, patience) {
            return Err("the flood process did not end in time and was killed".to_owned());
        }
        let mut out = String::new();
        if let Some(stdout) = self.child.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut out);
        }
        serde_json::from_str(&out).map_err(|e| format!("flood report {out:?}: {e}"))
    }
}

fn flood_io_name(io: crate::flood::FloodIo) -> &'static str {
    match io {
        crate::flood::FloodIo::Send => "send",
        crate::flood::FloodIo::Gso => "gso",
    }
}

/// Waits up to `patience` for `child` to exit; kills it after that. Returns whether it exited
/// by itself.
fn wait_or_kill(child: &mut Child, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}
