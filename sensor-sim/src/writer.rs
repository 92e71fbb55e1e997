//! The hub's database writer: a thread that batches rows into transactions.
//!
//! The hub's event loop hands rows over without waiting. The writer commits whatever has
//! gathered at most [`COMMIT_INTERVAL`] after the first pending row (or at once when
//! [`MAX_ROWS`] have gathered, or when asked to flush), then reports what the transaction
//! stored. Alerts are confirmed to sensors only from that report, so a confirmed alert is
//! always in a committed transaction.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::store::{AlertRow, ReadingRow, Store, Written};

/// Longest a row waits before its transaction commits.
pub(crate) const COMMIT_INTERVAL: Duration = Duration::from_millis(50);
/// Commit at once when this many rows are pending.
const MAX_ROWS: usize = 50_000;
/// Wait before retrying a failed transaction.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// A request to the writer.
pub(crate) enum WriteOp {
    Reading(ReadingRow),
    Alert(AlertRow),
    /// Commit what is pending now and answer once it is committed.
    Flush(oneshot::Sender<()>),
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
    mut store: Store,
    results: mpsc::UnboundedSender<Result<Committed, String>>,
) -> (Sender<WriteOp>, JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("sensor-sim-db".into())
        .spawn(move || run(&mut store, &rx, &results))
        .expect("the OS refused to start the database thread");
    (tx, handle)
}

fn run(
    store: &mut Store,
    ops: &Receiver<WriteOp>,
    results: &mpsc::UnboundedSender<Result<Committed, String>>,
) {
    let mut readings = Vec::new();
    let mut alerts = Vec::new();
    let mut flushes = Vec::new();
    let mut first_pending: Option<Instant> = None;
    let mut open = true;
    let mut failures_closing = 0u32;
    while open || !readings.is_empty() || !alerts.is_empty() || !flushes.is_empty() {
        let wait = first_pending.map_or(Duration::from_secs(1), |t| {
            (t + COMMIT_INTERVAL).saturating_duration_since(Instant::now())
        });
        if open {
            match ops.recv_timeout(wait) {
                Ok(op) => {
                    let mut next = Some(op);
                    while let Some(op) = next {
                        match op {
                            WriteOp::Reading(r) => readings.push(r),
                            WriteOp::Alert(a) => alerts.push(a),
                            WriteOp::Flush(reply) => flushes.push(reply),
                        }
                        if readings.len() >= MAX_ROWS {
                            break;
                        }
                        next = ops.try_recv().ok();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        }
        let pending = !readings.is_empty() || !alerts.is_empty();
        if pending && first_pending.is_none() {
            first_pending = Some(Instant::now());
        }
        let due = first_pending.is_some_and(|t| t.elapsed() >= COMMIT_INTERVAL)
            || readings.len() >= MAX_ROWS
            || !flushes.is_empty()
            || !open;
        if !due {
            continue;
        }
        let started = Instant::now();
        match store.write(&readings, &alerts) {
            Ok(written) => {
                let committed = Committed {
                    alerts: alerts.iter().map(|a| (a.sensor_id, a.alert_id)).collect(),
                    written,
                    took: started.elapsed(),
                };
                readings.clear();
                alerts.clear();
                first_pending = None;
                for reply in flushes.drain(..) {
                    let _ = reply.send(());
                }
                if results.send(Ok(committed)).is_err() && !open {
                    return;
                }
            }
            Err(error) => {
                // Keep the rows and try again: nothing was confirmed for them. While closing,
                // give up after a few tries rather than hang the shutdown.
                let _ = results.send(Err(error.to_string()));
                failures_closing += u32::from(!open);
                if failures_closing >= 10 {
                    return;
                }
                std::thread::sleep(RETRY_AFTER);
            }
        }
    }
}
