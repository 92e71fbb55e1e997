//! A Reno-style congestion window over the bytes of ack-eliciting packets in flight.
//!
//! Slow start doubles the window every round trip until the first loss; then each loss (at
//! most once per window of packets) halves it and it grows by one datagram per round trip. A
//! reduction whose loss a late acknowledgement disproves (the packet was only reordered) is
//! undone.
//! The floor, [`MIN_WINDOW`], is far above what a game or a sensor has in flight, so only bulk
//! senders (floods, large transfers) ever wait on it: they are paced by the receiver's
//! acknowledgements instead of overrunning its socket.

/// The window at the start of a connection, in bytes.
pub(crate) const INITIAL_WINDOW: usize = 256 * 1024;
/// The window never shrinks below this, in bytes: real-time traffic under random loss on a long
/// path (3.4 Mbit/s at 600 ms RTT) is never throttled by it.
pub(crate) const MIN_WINDOW: usize = 256 * 1024;

#[derive(Clone, Debug)]
pub(crate) struct Congestion {
    window: usize,
    slow_start_threshold: usize,
    max: usize,
    datagram: usize,
    /// Losses of packets numbered below this belong to the reduction already made.
    recovery_from: u64,
    /// The last reduction: the packet whose loss made it, and the window and threshold
    /// before it, restored if that loss proves spurious.
    undo: Option<Undo>,
}

#[derive(Clone, Copy, Debug)]
struct Undo {
    trigger: u64,
    window: usize,
    slow_start_threshold: usize,
}

impl Congestion {
    pub(crate) fn new(max: usize, datagram: usize) -> Self {
        let max = max.max(MIN_WINDOW);
        Self {
            window: INITIAL_WINDOW.min(max),
            slow_start_threshold: max,
            max,
            datagram,
            recovery_from: 0,
            undo: None,
        }
    }

    /// Bytes that may be in flight.
    pub(crate) fn window(&self) -> usize {
        self.window
    }

    pub(crate) fn on_acked(&mut self, bytes: usize) {
        let growth = if self.window < self.slow_start_threshold {
            bytes
        } else {
            (self.datagram * bytes / self.window).max(1)
        };
        self.window = (self.window + growth).min(self.max);
    }

    /// A packet numbered `packet_number` was lost; `next` is the next packet number to send.
    pub(crate) fn on_lost(&mut self, packet_number: u64, next: u64) {
        if packet_number < self.recovery_from {
            return;
        }
        self.recovery_from = next;
        self.undo = Some(Undo {
            trigger: packet_number,
            window: self.window,
            slow_start_threshold: self.slow_start_threshold,
        });
        self.window = (self.window / 2).max(MIN_WINDOW);
        self.slow_start_threshold = self.window;
    }

    /// The packet numbered `packet_number`, declared lost, was acknowledged after all (it was
    /// only reordered or late). If its loss made the last reduction, the reduction is undone:
    /// reordering alone never shrinks the window.
    pub(crate) fn on_spurious(&mut self, packet_number: u64) {
        let Some(undo) = self.undo else {
            return;
        };
        if undo.trigger != packet_number {
            return;
        }
        self.undo = None;
        self.window = self.window.max(undo.window).min(self.max);
        self.slow_start_threshold = self.slow_start_threshold.max(undo.slow_start_threshold);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_then_halving_once_per_window() {
        let mut c = Congestion::new(1 << 20, 1200);
        let start = c.window();
        c.on_acked(300_000);
        assert_eq!(c.window(), start + 300_000);
        c.on_lost(5, 100);
        let halved = c.window();
        assert_eq!(halved, ((start + 300_000) / 2).max(MIN_WINDOW));
        c.on_lost(50, 120);
        assert_eq!(c.window(), halved, "a second loss from the same window");
        c.on_acked(1200);
        assert!(c.window() > halved && c.window() < halved + 1200);
        for i in 0..100 {
            c.on_lost(200 + i * 100, 300 + i * 100);
        }
        assert_eq!(c.window(), MIN_WINDOW);
    }

    #[test]
    fn a_spurious_loss_undoes_its_reduction_and_no_other() {
        let mut c = Congestion::new(4 << 20, 1200);
        c.on_acked(1 << 20);
        let before = c.window();
        c.on_lost(10, 40);
        assert!(c.window() < before);
        c.on_spurious(11); // not the packet that made the reduction
        assert!(c.window() < before);
        c.on_spurious(10);
        assert_eq!(c.window(), before);
        c.on_spurious(10); // at most once
        assert_eq!(c.window(), before);
        // A real loss after the undo still halves the window.
        c.on_lost(50, 80);
        assert!(c.window() < before);
    }
}
