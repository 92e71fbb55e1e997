//! The hub's database writer: a thread that batches rows into transactions and watches the
//! command queue.
//!
//! The hub's event loop hands rows over without waiting. The writer commits whatever has
//! gathered at most [`COMMIT_INTERVAL`] after the first pending row (or at once when
//! [`MAX_ROWS`] have gathered, or when asked to flush), then reports what the transaction
//! stored. Alerts are confirmed to sensors only from that report, so a confirmed alert is
//! always in a committed transaction.
//!
//! Commands live in the database: the writer reports every pending command when it starts,
//! then polls for new ones every [`COMMAND_POLL`] (queued by `sensor-sim command` from another
//! process, or by the hub's own API through [`WriteOp::QueueCommand`]), and records the
//! sensors' acknowledgements.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::clock::unix_micros;
use crate::protocol::Command;
use crate::store::{AlertRow, ReadingRow, Store, StoredCommand, Written};

/// Longest a row waits before its transaction commits.
pub(crate) const COMMIT_INTERVAL: Duration = Duration::from_millis(50);
/// How often the command queue is read for commands queued by other processes.
pub(crate) const COMMAND_POLL: Duration = Duration::from_millis(200);
/// Commit at once when this many rows are pending.
const MAX_ROWS: usize = 50_000;
/// Wait before retrying a failed transaction.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// A request to the writer.
pub(crate) enum WriteOp {
    /// Readings (of one batch of the hub's events).
    Readings(Vec<ReadingRow>),
    Alert(AlertRow),
    /// Put a command in the queue (it comes back in a [`Report::Commands`]).
    QueueCommand(u32, Command),
    /// A sensor acknowledged this command at this time (µs since the epoch).
    CommandAcked(u64, i64),
    /// Commit what is pending now and answer once it is committed.
    Flush(oneshot::Sender<()>),
}

/// What the writer tells the hub.
pub(crate) enum Report {
    /// A transaction committed; the flushes it answers, for the hub to reply to once it has
    /// taken the commit (and every report before it) into its state.
    Committed(Committed, Vec<oneshot::Sender<()>>),
    /// A transaction failed (its rows are kept and tried again).
    Failed(String),
    /// Commands that appeared in the queue, oldest first.
    Commands(Vec<StoredCommand>),
}

/// A committed transaction.
pub(crate) struct Committed {
    /// The alerts in it (new or already stored): they may be confirmed.
    pub(crate) alerts: Vec<(u32, u64)>,
    /// What it stored.
    pub(crate) written: Written,
    /// How long the commit took.
    pub(crate) took: Duration,
}

/// Starts the writer thread. It stops once every sender of ops is dropped, after committing
/// what is pending.
pub(crate) fn spawn(
    store: Store,
    results: mpsc::UnboundedSender<Report>,
) -> std::io::Result<(Sender<WriteOp>, JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("sensor-sim-db".into())
        .spawn(move || Writer::new(store, results).run(&rx))?;
    Ok((tx, handle))
}

struct Writer {
    store: Store,
    results: mpsc::UnboundedSender<Report>,
    readings: Vec<ReadingRow>,
    alerts: Vec<AlertRow>,
    acks: Vec<(u64, i64)>,
    flushes: Vec<oneshot::Sender<()>>,
    first_pending: Option<Instant>,
    /// The highest command id reported to the hub.
    last_command: u64,
    next_poll: Instant,
}

impl Writer {
    fn new(store: Store, results: mpsc::UnboundedSender<Report>) -> Self {
        Self {
            store,
            results,
            readings: Vec::new(),
            alerts: Vec::new(),
            acks: Vec::new(),
            flushes: Vec::new(),
            first_pending: None,
            last_command: 0,
            next_poll: Instant::now(),
        }
    }

    fn run(mut self, ops: &Receiver<WriteOp>) {
        let mut open = true;
        let mut failures_closing = 0u32;
        while open || self.pending() || !self.flushes.is_empty() {
            if open && Instant::now() >= self.next_poll {
                self.poll_commands();
            }
            let commit_wait = self.first_pending.map_or(COMMAND_POLL, |t| {
                (t + COMMIT_INTERVAL).saturating_duration_since(Instant::now())
            });
            let wait = commit_wait.min(self.next_poll.saturating_duration_since(Instant::now()));
            if open {
                let first = if self.first_pending.is_some() {
                    // Rows are pending, so the next commit is due at a known time: sleep until
                    // then and take everything that came meanwhile at once, rather than waking
                    // (a futex round trip on both threads) for every message.
                    std::thread::sleep(wait);
                    ops.try_recv().map_err(|e| match e {
                        TryRecvError::Empty => RecvTimeoutError::Timeout,
                        TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                    })
                } else {
                    ops.recv_timeout(wait)
                };
                match first {
                    Ok(op) => {
                        let mut next = Some(op);
                        while let Some(op) = next {
                            self.take(op);
                            if self.readings.len() >= MAX_ROWS {
                                break;
                            }
                            next = ops.try_recv().ok();
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => open = false,
                }
            }
            if self.pending() && self.first_pending.is_none() {
                self.first_pending = Some(Instant::now());
            }
            let due = self
                .first_pending
                .is_some_and(|t| t.elapsed() >= COMMIT_INTERVAL)
                || self.readings.len() >= MAX_ROWS
                || !self.flushes.is_empty()
                || !open;
            if !due {
                continue;
            }
            if self.commit() {
                continue;
            }
            // Keep the rows and try again: nothing was confirmed for them. While closing,
            // give up after a few tries rather than hang the shutdown.
            failures_closing += u32::from(!open);
            if failures_closing >= 10 {
                return;
            }
            std::thread::sleep(RETRY_AFTER);
        }
    }

    fn pending(&self) -> bool {
        !self.readings.is_empty() || !self.alerts.is_empty() || !self.acks.is_empty()
    }

    fn take(&mut self, op: WriteOp) {
        match op {
            WriteOp::Readings(mut rows) => self.readings.append(&mut rows),
            WriteOp::Alert(a) => self.alerts.push(a),
            WriteOp::CommandAcked(id, at) => self.acks.push((id, at)),
            WriteOp::Flush(reply) => self.flushes.push(reply),
            WriteOp::QueueCommand(sensor_id, command) => {
                match self.store.queue_command(sensor_id, command, unix_micros()) {
                    Ok(_) => self.poll_commands(),
                    Err(error) => {
                        let _ = self.results.send(Report::Failed(error.to_string()));
                    }
                }
            }
        }
    }

    /// Reports commands queued since the last poll.
    fn poll_commands(&mut self) {
        self.next_poll = Instant::now() + COMMAND_POLL;
        match self.store.pending_commands(self.last_command) {
            Ok(commands) if commands.is_empty() => {}
            Ok(commands) => {
                self.last_command = commands.iter().map(|c| c.command_id).max().unwrap_or(0);
                let _ = self.results.send(Report::Commands(commands));
            }
            Err(error) => {
                let _ = self.results.send(Report::Failed(error.to_string()));
            }
        }
    }

    /// Commits what is pending; `false` if the transaction failed.
    fn commit(&mut self) -> bool {
        let started = Instant::now();
        if !self.acks.is_empty() {
            if let Err(error) = self.store.acknowledge_commands(&self.acks) {
                let _ = self.results.send(Report::Failed(error.to_string()));
                return false;
            }
            self.acks.clear();
        }
        match self.store.write(&self.readings, &self.alerts) {
            Ok(written) => {
                let committed = Committed {
                    alerts: self
                        .alerts
                        .iter()
                        .map(|a| (a.sensor_id, a.alert_id))
                        .collect(),
                    written,
                    took: started.elapsed(),
                };
                self.readings.clear();
                self.alerts.clear();
                self.first_pending = None;
                let flushes = std::mem::take(&mut self.flushes);
                let _ = self.results.send(Report::Committed(committed, flushes));
                true
            }
            Err(error) => {
                let _ = self.results.send(Report::Failed(error.to_string()));
                false
            }
        }
    }
}
