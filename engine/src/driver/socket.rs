//! Batched datagram I/O for the tokio driver, through `quinn-udp`: an [`Outbox`] that sends runs
//! of equal-size datagrams to one destination in a single `sendmsg` (UDP GSO on Linux), and an
//! [`Inbox`] that reads many datagrams per `recvmmsg` (and GRO-coalesced groups of them).
//!
//! Neither holds a lock: the driver fills the outbox under the endpoint's lock, releases it, then
//! sends; it receives without the lock, then hands the whole batch over under it.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use quinn_udp::{RecvMeta, Transmit, UdpSocketState, BATCH_SIZE};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::polled::is_transient;
use crate::MAX_DATAGRAM_SIZE;

/// Datagrams collected for sending, back to back in one buffer.
///
/// Consecutive datagrams to the same destination whose sizes are equal (the last of a run may
/// be shorter) leave in one `sendmsg` with a GSO segment size: the kernel splits them into
/// ordinary datagrams, so the wire sees exactly what the endpoint built.
#[derive(Debug)]
pub(super) struct Outbox {
    /// The datagrams' bytes; `bytes[..end]` is in use. Allocated (and zeroed) once.
    bytes: Vec<u8>,
    end: usize,
    /// Destination and length of each datagram, in order.
    datagrams: Vec<(SocketAddr, usize)>,
    /// The first datagram not sent yet, and its offset in `bytes`.
    next: usize,
    next_offset: usize,
}

impl Outbox {
    pub(super) fn new() -> Self {
        Self {
            bytes: vec![0; OUTBOX_BYTES],
            end: 0,
            datagrams: Vec::new(),
            next: 0,
            next_offset: 0,
        }
    }

    /// Whether every datagram collected has been sent.
    pub(super) fn is_empty(&self) -> bool {
        self.next == self.datagrams.len()
    }

    /// Free space for the next datagram, if `size` bytes fit.
    pub(super) fn room(&mut self, size: usize) -> Option<&mut [u8]> {
        self.bytes.get_mut(self.end..self.end.checked_add(size)?)
    }

    /// Commits the first `len` bytes of [`room`](Self::room) as a datagram for `to`.
    pub(super) fn push(&mut self, to: SocketAddr, len: usize) {
        self.end += len;
        self.datagrams.push((to, len));
    }

    /// Copies a datagram in; returns `false` (and keeps nothing) when it does not fit.
    pub(super) fn push_copy(&mut self, to: SocketAddr, datagram: &[u8]) -> bool {
        let Some(room) = self.room(datagram.len()) else {
            return false;
        };
        room.copy_from_slice(datagram);
        self.push(to, datagram.len());
        true
    }

    /// Sends everything not sent yet. Returns `Ok(false)` when the socket buffer is full: the
    /// rest stays queued, to be sent once the socket is writable. A datagram refused for a
    /// reason that leaves the socket usable (see [`is_transient`]) is dropped, as UDP may.
    pub(super) fn send(&mut self, socket: &UdpSocket, state: &UdpSocketState) -> io::Result<bool> {
        while self.next < self.datagrams.len() {
            let (count, bytes) = self.run(state.max_gso_segments());
            let (destination, first_len) = self.datagrams[self.next];
            let contents = &self.bytes[self.next_offset..self.next_offset + bytes];
            let transmit = Transmit {
                destination,
                ecn: None,
                contents,
                segment_size: (count > 1).then_some(first_len),
                src_ip: None,
            };
            let sent = socket.try_io(Interest::WRITABLE, || {
                state.try_send(socket.into(), &transmit)
            });
            match sent {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                // The kernel or the device refused segmentation offload and quinn-udp turned it
                // off: the next round sends these datagrams in smaller runs.
                Err(_) if count > 1 && state.max_gso_segments() < count => continue,
                Err(e) if is_transient(&e) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("sending to {destination}: {e}"),
                    ))
                }
            }
            self.next += count;
            self.next_offset += bytes;
        }
        self.datagrams.clear();
        self.end = 0;
        self.next = 0;
        self.next_offset = 0;
        Ok(true)
    }

    /// The longest run from `next` that one GSO send may carry: same destination, same size
    /// (the last may be shorter), at most `max_segments` datagrams and one UDP payload's worth
    /// of bytes. Returns the number of datagrams and of bytes.
    fn run(&self, max_segments: usize) -> (usize, usize) {
        let (destination, size) = self.datagrams[self.next];
        let mut count = 1;
        let mut bytes = size;
        for &(to, len) in &self.datagrams[self.next + 1..] {
            if count >= max_segments || to != destination || len > size {
                break;
            }
            if bytes + len > MAX_DATAGRAM_SIZE {
                break;
            }
            count += 1;
            bytes += len;
            if len < size {
                break;
            }
        }
        (count, bytes)
    }
}

/// Buffers for receiving many datagrams per system call.
#[derive(Debug)]
pub(super) struct Inbox {
    /// One slot per datagram (or GRO-coalesced group) a `recvmmsg` may return.
    slots: Vec<u8>,
    metas: Vec<RecvMeta>,
    /// Received datagrams are copied here and split off as `Bytes` that share it.
    arena: BytesMut,
    /// The datagrams of the last receive, with their senders.
    pub(super) received: Vec<(SocketAddr, Bytes)>,
}

impl Inbox {
    pub(super) fn new() -> Self {
        Self {
            slots: vec![0; BATCH_SIZE * SLOT],
            metas: vec![RecvMeta::default(); BATCH_SIZE],
            arena: BytesMut::new(),
            received: Vec::new(),
        }
    }

    /// Reads what is waiting with one `recvmmsg` (without blocking) into
    /// [`received`](Self::received). Errors that leave the socket usable (an ICMP error
    /// reported on a later read) are skipped. Returns whether every slot was filled, so more
    /// is probably waiting.
    pub(super) fn recv(&mut self, socket: &UdpSocket, state: &UdpSocketState) -> io::Result<bool> {
        let mut count = 0;
        let read = {
            let mut chunks = self.slots.chunks_mut(SLOT);
            let mut slices: [IoSliceMut<'_>; BATCH_SIZE] =
                std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
            let metas = &mut self.metas;
            socket.try_io(Interest::READABLE, || {
                count = state.recv(socket.into(), &mut slices, metas)?;
                if count < BATCH_SIZE {
                    // Fewer datagrams than slots: the queue was empty when the call returned.
                    // Saying "would block" clears tokio's readiness now and saves the
                    // `recvmmsg` that would only find the queue empty; a datagram arriving since
                    // then raises readiness again (tokio tracks that race).
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(())
            })
        };
        match read {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if is_transient(&e) => return Ok(false),
            Err(e) => return Err(e),
        }
        let full = count == BATCH_SIZE;
        for (meta, slot) in self.metas.iter().take(count).zip(self.slots.chunks(SLOT)) {
            let Some(data) = slot.get(..meta.len) else {
                continue;
            };
            if data.is_empty() {
                // An empty datagram: the endpoint counts it as malformed.
                self.received.push((meta.addr, Bytes::new()));
                continue;
            }
            if self.arena.capacity() < data.len() {
                // Reuses the allocation when every datagram split off it has been dropped.
                self.arena.reserve(ARENA_BYTES.max(data.len()));
            }
            self.arena.extend_from_slice(data);
            let mut group = self.arena.split();
            // A GRO group holds datagrams of `stride` bytes (the last may be shorter).
            let stride = meta.stride.max(1);
            while !group.is_empty() {
                let datagram = group.split_to(stride.min(group.len()));
                self.received.push((meta.addr, datagram.freeze()));
            }
        }
        Ok(full)
    }
}

/// Bytes the outbox holds: datagrams collected per lock of the endpoint. 256 KiB is about
/// 200 full datagrams, four full GSO sends.
const OUTBOX_BYTES: usize = 256 * 1024;
/// One receive slot: the largest UDP payload or GRO group.
const SLOT: usize = 64 * 1024;
/// Receive arena chunk; datagrams split off it share the allocation.
const ARENA_BYTES: usize = 256 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn outbox(datagrams: &[(u16, usize)]) -> Outbox {
        let mut outbox = Outbox::new();
        for &(port, len) in datagrams {
            assert!(outbox.push_copy(addr(port), &vec![7; len]));
        }
        outbox
    }

    #[test]
    fn runs_group_equal_sizes_to_one_destination() {
        let outbox = outbox(&[(1, 100), (1, 100), (1, 100), (1, 40), (1, 100)]);
        assert_eq!(outbox.run(64), (4, 340));
    }

    #[test]
    fn a_run_stops_at_a_larger_datagram_or_another_destination() {
        assert_eq!(outbox(&[(1, 100), (1, 101)]).run(64), (1, 100));
        assert_eq!(outbox(&[(1, 100), (2, 100)]).run(64), (1, 100));
    }

    #[test]
    fn a_run_respects_the_segment_and_byte_limits() {
        let outbox_ = outbox(&[(1, 1000); 80]);
        assert_eq!(outbox_.run(64), (64, 64_000));
        assert_eq!(outbox_.run(1), (1, 1000));
        let big = outbox(&[(1, 30_000); 3]);
        assert_eq!(big.run(64), (2, 60_000));
    }

    #[test]
    fn the_outbox_refuses_what_does_not_fit() {
        let mut outbox = Outbox::new();
        assert!(outbox.push_copy(addr(1), &vec![0; OUTBOX_BYTES - 10]));
        assert!(outbox.room(11).is_none());
        assert!(!outbox.push_copy(addr(1), &[0; 11]));
        assert!(outbox.push_copy(addr(1), &[0; 10]));
    }
}
