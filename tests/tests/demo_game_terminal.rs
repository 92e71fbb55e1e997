//! The demo-game terminal client under a pseudo-terminal: `demo-game local --bots 2` draws the
//! arena and the HUD, and quits cleanly (exit status 0) on `q`; in a terminal that is too small
//! it says the minimum size and exits with status 1. With `--transport quic` the HUD shows
//! `quic`.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portable_pty::{native_pty_system, CommandBuilder, PtySize};

const BINARY: &str = env!("CARGO_BIN_EXE_demo-game-under-test");

/// A child process on a pseudo-terminal, its output collected by a thread.
struct Session {
    output: mpsc::Receiver<Vec<u8>>,
    exited: mpsc::Receiver<u32>,
    writer: Box<dyn Write + Send>,
    seen: String,
    // Kept open until the session ends: closing the master hangs up the child's terminal.
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl Session {
    fn start(args: &[&str], cols: u16, rows: u16) -> Self {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("open a pty");
        let mut command = CommandBuilder::new(BINARY);
        command.args(args);
        command.env("TERM", "xterm-256color");
        let mut child = pair.slave.spawn_command(command).expect("start demo-game");
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().expect("pty reader");
        let writer = pair.master.take_writer().expect("pty writer");
        let (out_tx, output) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || out_tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let (exit_tx, exited) = mpsc::channel();
        std::thread::spawn(move || {
            let code = child.wait().map_or(u32::MAX, |status| status.exit_code());
            let _ = exit_tx.send(code);
        });
        Self {
            output,
            exited,
            writer,
            seen: String::new(),
            _master: pair.master,
        }
    }

    /// Waits (at most `timeout`) until the output contains every one of `needles`.
    fn wait_for(&mut self, needles: &[&str], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if needles.iter().all(|n| self.seen.contains(n)) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => self.seen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => return false,
            }
        }
    }

    /// Waits (at most `timeout`) for the exit status.
    fn exit_code(&mut self, timeout: Duration) -> Option<u32> {
        let code = self.exited.recv_timeout(timeout).ok();
        // Collect what was printed last.
        while let Ok(bytes) = self.output.recv_timeout(Duration::from_millis(200)) {
            self.seen.push_str(&String::from_utf8_lossy(&bytes));
        }
        code
    }
}

#[test]
fn renders_the_arena_and_quits_on_q() {
    let mut session = Session::start(&["local", "--bots", "2"], 100, 32);
    let drawn = session.wait_for(
        &["Tickwire arena", "score", "transport", "native"],
        Duration::from_secs(20),
    );
    assert!(
        drawn,
        "the arena never appeared; output so far:\n{}",
        session.seen
    );
    // Bots join the scoreboard once their hello arrives.
    assert!(
        session.wait_for(&["bot0", "bot1"], Duration::from_secs(10)),
        "no bots on the scoreboard:\n{}",
        session.seen
    );
    session.writer.write_all(b"q").expect("type q");
    session.writer.flush().expect("flush");
    let code = session.exit_code(Duration::from_secs(15));
    assert_eq!(code, Some(0), "output:\n{}", session.seen);
    assert!(!session.seen.contains("panicked"), "{}", session.seen);
    // The terminal was given back: the alternate screen was left.
    assert!(
        session.seen.contains("\u{1b}[?1049l"),
        "the alternate screen was not left"
    );
}

#[test]
fn the_hud_shows_quic_when_playing_over_quic() {
    let mut session = Session::start(&["local", "--bots", "1", "--transport", "quic"], 100, 32);
    let drawn = session.wait_for(
        &["Tickwire arena", "transport", "quic"],
        Duration::from_secs(20),
    );
    assert!(
        drawn,
        "no quic in the HUD; output so far:\n{}",
        session.seen
    );
    session.writer.write_all(b"q").expect("type q");
    session.writer.flush().expect("flush");
    let code = session.exit_code(Duration::from_secs(15));
    assert_eq!(code, Some(0), "output:\n{}", session.seen);
    assert!(!session.seen.contains("panicked"), "{}", session.seen);
}

#[test]
fn a_small_terminal_is_refused_with_the_minimum_size() {
    let mut session = Session::start(&["local", "--bots", "0"], 50, 12);
    let code = session.exit_code(Duration::from_secs(15));
    assert_eq!(code, Some(1), "output:\n{}", session.seen);
    assert!(
        session.seen.contains("needs at least 80x24"),
        "output:\n{}",
        session.seen
    );
}
