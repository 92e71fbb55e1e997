//! A Reno-style congestion window over the bytes of ack-eliciting packets in flight.
//!
//! Slow start doubles the window every round trip until the first loss; then each loss (at
//! most once per window of packets) halves it and it grows by one datagram per round trip.
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
        self.window = (self.window / 2).max(MIN_WINDOW);
        self.slow_start_threshold = self.window;
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
}
