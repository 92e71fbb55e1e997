//! The bounded event queue between QUIC sessions and the application.
//!
//! Sessions push [`Event`]s in batches (one lock per received datagram or stream read, not one
//! per message); the application drains them, one or many at a time. The queue holds at most
//! [`QuicConfig::event_queue_bytes`](super::QuicConfig::event_queue_bytes) of message payload
//! (plus [`EVENT_OVERHEAD`] per event): beyond it unreliable messages are dropped (and counted
//! by the session), while reliable stream readers wait for room, so QUIC flow control pushes
//! back on the sender. Connection events (`Connected`, `Disconnected`, `Delivery`) always go in.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::Event;

/// Bytes charged per queued event on top of its payload: about the size of an [`Event`], so
/// that a flood of empty messages is bounded too.
pub(super) const EVENT_OVERHEAD: usize = 64;

/// A multi-producer, single-consumer queue of events with a byte limit.
pub(crate) struct EventQueue {
    state: Mutex<State>,
    limit: usize,
    /// The application waits here for the queue to become non-empty (or closed).
    readable: Notify,
    /// Reliable readers wait here for the queue to drop below its limit.
    writable: Notify,
    /// No more events will come once the queue is empty (the client's session ended).
    closed: AtomicBool,
}

struct State {
    events: VecDeque<Event>,
    /// Charged bytes of the queued events.
    bytes: usize,
}

impl EventQueue {
    /// An empty queue holding up to about `limit` bytes.
    pub(super) fn new(limit: usize) -> Self {
        Self {
            state: Mutex::new(State {
                events: VecDeque::new(),
                bytes: 0,
            }),
            limit,
            readable: Notify::new(),
            writable: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// Queues an event whatever the limit (connection events, and reliable data after
    /// [`wait_room`](Self::wait_room)).
    pub(super) fn push(&self, event: Event) {
        let mut state = self.lock();
        let was_empty = state.events.is_empty();
        state.bytes += charge(&event);
        state.events.push_back(event);
        drop(state);
        if was_empty {
            self.readable.notify_one();
        }
    }

    /// Queues a batch of events whatever the limit, moving them out of `batch`.
    pub(super) fn push_all(&self, batch: &mut Vec<Event>) {
        if batch.is_empty() {
            return;
        }
        let mut state = self.lock();
        let was_empty = state.events.is_empty();
        state.bytes += batch.iter().map(charge).sum::<usize>();
        state.events.extend(batch.drain(..));
        drop(state);
        if was_empty {
            self.readable.notify_one();
        }
    }

    /// Queues unreliable messages while they fit under the limit, moving them out of `batch`:
    /// what is left in `batch` did not fit (the caller counts and drops it).
    pub(super) fn push_messages(&self, batch: &mut Vec<Event>) {
        if batch.is_empty() {
            return;
        }
        let mut state = self.lock();
        let was_empty = state.events.is_empty();
        let mut taken = 0;
        for event in batch.iter() {
            let cost = charge(event);
            if state.bytes + cost > self.limit {
                break;
            }
            state.bytes += cost;
            taken += 1;
        }
        state.events.extend(batch.drain(..taken));
        drop(state);
        if was_empty && taken > 0 {
            self.readable.notify_one();
        }
    }

    /// Waits until the queue holds less than its limit.
    pub(super) async fn wait_room(&self) {
        loop {
            let room = self.writable.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if self.lock().bytes < self.limit {
                return;
            }
            room.await;
        }
    }

    /// The oldest event, if any.
    pub(crate) fn try_pop(&self) -> Option<Event> {
        let mut state = self.lock();
        let event = state.events.pop_front()?;
        self.release(&mut state, charge(&event));
        Some(event)
    }

    /// Moves waiting events into `out` until it holds `max`; returns how many were moved.
    pub(crate) fn pop_into(&self, out: &mut Vec<Event>, max: usize) -> usize {
        let mut state = self.lock();
        let n = max.saturating_sub(out.len()).min(state.events.len());
        let mut freed = 0;
        for event in state.events.drain(..n) {
            freed += charge(&event);
            out.push(event);
        }
        self.release(&mut state, freed);
        n
    }

    /// The oldest event, waiting for one; `None` once the queue is closed and empty.
    pub(crate) async fn pop(&self) -> Option<Event> {
        loop {
            let readable = self.readable.notified();
            if let Some(event) = self.try_pop() {
                return Some(event);
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            readable.await;
        }
    }

    /// No more events will be pushed: [`pop`](Self::pop) returns `None` once the queue is empty.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.readable.notify_one();
        self.writable.notify_waiters();
    }

    fn release(&self, state: &mut State, freed: usize) {
        let was_full = state.bytes >= self.limit;
        state.bytes -= freed;
        if was_full && state.bytes < self.limit {
            self.writable.notify_waiters();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug elsewhere; the queue itself stays usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Bytes an event counts against the limit.
fn charge(event: &Event) -> usize {
    match event {
        Event::Message { data, .. } => EVENT_OVERHEAD + data.len(),
        _ => EVENT_OVERHEAD,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{ChannelId, ConnectionId};

    fn message(len: usize) -> Event {
        Event::Message {
            connection: ConnectionId(1),
            channel: ChannelId(0),
            data: Bytes::from(vec![0; len]),
        }
    }

    #[test]
    fn unreliable_messages_beyond_the_limit_are_refused() {
        let queue = EventQueue::new(3 * (EVENT_OVERHEAD + 10));
        let mut batch = vec![message(10), message(10)];
        queue.push_messages(&mut batch);
        assert!(batch.is_empty());
        let mut batch = vec![message(10), message(10), message(10)];
        queue.push_messages(&mut batch);
        assert_eq!(batch.len(), 2);
        let mut out = Vec::new();
        assert_eq!(queue.pop_into(&mut out, 8), 3);
        assert_eq!(queue.try_pop(), None);
        // Connection events go in whatever the limit.
        let mut batch = vec![message(1000)];
        queue.push_all(&mut batch);
        queue.push(Event::Disconnected {
            connection: ConnectionId(1),
            reason: crate::DisconnectReason::Shutdown,
        });
        assert_eq!(queue.pop_into(&mut out, 8), 2);
    }

    #[tokio::test]
    async fn a_full_queue_makes_room_waiters_wait_until_drained() {
        let queue = std::sync::Arc::new(EventQueue::new(EVENT_OVERHEAD + 10));
        queue.push(message(100));
        let waiter = tokio::spawn({
            let queue = std::sync::Arc::clone(&queue);
            async move { queue.wait_room().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert!(queue.try_pop().is_some());
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn pop_ends_once_closed_and_empty() {
        let queue = EventQueue::new(1 << 20);
        queue.push(message(1));
        queue.close();
        assert!(queue.pop().await.is_some());
        assert_eq!(queue.pop().await, None);
    }
}
