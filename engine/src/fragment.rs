//! Reassembly of fragmented messages, bounded in memory.
//!
//! A message larger than one datagram travels as `count` fragments. Every fragment but the last
//! carries the same number of bytes, so a receiver can check consistency as pieces arrive. Pieces
//! are held as zero-copy slices of their datagrams and copied once, into the whole message, when
//! the last piece arrives. Memory is charged to a per-connection [`ReassemblyBudget`] as pieces
//! arrive, never on the sender's say-so: a forged fragment count allocates nothing.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use thiserror::Error;

/// Why a fragment was refused.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub(crate) enum FragmentError {
    /// The fragment disagrees with earlier ones about the count or the piece size.
    #[error("fragment inconsistent with earlier fragments of the same message")]
    Inconsistent,
    /// The message would exceed the channel's maximum message size.
    #[error("fragmented message larger than the channel allows")]
    TooLarge,
    /// The connection's reassembly budget is exhausted.
    #[error("reassembly budget exhausted")]
    OverBudget,
}

/// Bytes held for reassembly on one connection, with its cap.
#[derive(Debug)]
pub(crate) struct ReassemblyBudget {
    pub(crate) used: usize,
    pub(crate) limit: usize,
}

impl ReassemblyBudget {
    pub(crate) fn new(limit: usize) -> Self {
        Self { used: 0, limit }
    }

    pub(crate) fn charge(&mut self, bytes: usize) -> Result<(), FragmentError> {
        let used = self.used.saturating_add(bytes);
        if used > self.limit {
            return Err(FragmentError::OverBudget);
        }
        self.used = used;
        Ok(())
    }

    pub(crate) fn release(&mut self, bytes: usize) {
        self.used = self.used.saturating_sub(bytes);
    }
}

/// One message being reassembled.
#[derive(Debug)]
pub(crate) struct Reassembly {
    count: u32,
    received: u32,
    /// Size of every piece but the last, learnt from the first non-last piece.
    piece_size: Option<usize>,
    bytes: usize,
    /// Pieces by index; grown only as far as the highest index received.
    pieces: Vec<Option<Bytes>>,
    started: Instant,
}

impl Reassembly {
    pub(crate) fn new(count: u32, now: Instant) -> Self {
        Self {
            count,
            received: 0,
            piece_size: None,
            bytes: 0,
            pieces: Vec::new(),
            started: now,
        }
    }

    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.received == self.count
    }

    /// Adds a piece; a duplicate piece is ignored. Returns whether the message is complete.
    pub(crate) fn insert(
        &mut self,
        index: u32,
        count: u32,
        piece: Bytes,
        max_message_size: usize,
        budget: &mut ReassemblyBudget,
    ) -> Result<bool, FragmentError> {
        if count != self.count || index >= count {
            return Err(FragmentError::Inconsistent);
        }
        let is_last = index + 1 == count;
        // The piece size a first non-last piece teaches, kept only once that piece is accepted.
        let mut learnt = None;
        if !is_last {
            match self.piece_size {
                None => {
                    if piece.is_empty() {
                        return Err(FragmentError::Inconsistent);
                    }
                    let total_min = piece.len().saturating_mul(count as usize - 1);
                    if total_min > max_message_size {
                        return Err(FragmentError::TooLarge);
                    }
                    learnt = Some(piece.len());
                }
                Some(size) if size != piece.len() => return Err(FragmentError::Inconsistent),
                Some(_) => {}
            }
        } else if let Some(size) = self.piece_size {
            if piece.len() > size {
                return Err(FragmentError::Inconsistent);
            }
        }
        let slot = index as usize;
        if self.pieces.get(slot).is_some_and(Option::is_some) {
            return Ok(self.is_complete());
        }
        if self.bytes.saturating_add(piece.len()) > max_message_size {
            return Err(FragmentError::TooLarge);
        }
        budget.charge(piece.len())?;
        if learnt.is_some() {
            self.piece_size = learnt;
        }
        if self.pieces.len() <= slot {
            self.pieces.resize(slot + 1, None);
        }
        self.bytes += piece.len();
        self.pieces[slot] = Some(piece);
        self.received += 1;
        Ok(self.is_complete())
    }

    /// The whole message; releases the budget. Call only when complete.
    pub(crate) fn assemble(self, budget: &mut ReassemblyBudget) -> Bytes {
        budget.release(self.bytes);
        let mut whole = BytesMut::with_capacity(self.bytes);
        for piece in self.pieces.into_iter().flatten() {
            whole.extend_from_slice(&piece);
        }
        whole.freeze()
    }

    /// Drops the pieces; releases the budget.
    pub(crate) fn discard(self, budget: &mut ReassemblyBudget) {
        budget.release(self.bytes);
    }
}

/// Number of fragments a message of `len` bytes needs with `piece_size`-byte pieces.
pub(crate) fn fragment_count(len: usize, piece_size: usize) -> usize {
    len.div_ceil(piece_size).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reassembles_in_any_order_and_ignores_duplicates() {
        let now = Instant::now();
        let mut budget = ReassemblyBudget::new(1000);
        let mut r = Reassembly::new(3, now);
        assert_eq!(
            r.insert(2, 3, Bytes::from_static(b"z"), 100, &mut budget),
            Ok(false)
        );
        assert_eq!(
            r.insert(0, 3, Bytes::from_static(b"xx"), 100, &mut budget),
            Ok(false)
        );
        assert_eq!(
            r.insert(0, 3, Bytes::from_static(b"xx"), 100, &mut budget),
            Ok(false)
        );
        assert_eq!(
            r.insert(1, 3, Bytes::from_static(b"yy"), 100, &mut budget),
            Ok(true)
        );
        assert_eq!(budget.used, 5);
        assert_eq!(&r.assemble(&mut budget)[..], b"xxyyz");
        assert_eq!(budget.used, 0);
    }

    #[test]
    fn refuses_inconsistent_and_oversized_pieces() {
        let now = Instant::now();
        let mut budget = ReassemblyBudget::new(1000);
        let mut r = Reassembly::new(4, now);
        r.insert(0, 4, Bytes::from_static(b"aaaa"), 100, &mut budget)
            .unwrap();
        assert_eq!(
            r.insert(1, 4, Bytes::from_static(b"bb"), 100, &mut budget),
            Err(FragmentError::Inconsistent)
        );
        assert_eq!(
            r.insert(3, 4, Bytes::from_static(b"ccccc"), 100, &mut budget),
            Err(FragmentError::Inconsistent)
        );
        assert_eq!(
            r.insert(1, 5, Bytes::from_static(b"bbbb"), 100, &mut budget),
            Err(FragmentError::Inconsistent)
        );
        let mut huge = Reassembly::new(60_000, now);
        assert_eq!(
            huge.insert(0, 60_000, Bytes::from_static(b"aaaa"), 1000, &mut budget),
            Err(FragmentError::TooLarge)
        );
        r.discard(&mut budget);
        assert_eq!(budget.used, 0);
    }

    #[test]
    fn a_refused_first_piece_does_not_fix_the_piece_size() {
        let now = Instant::now();
        let mut budget = ReassemblyBudget::new(6);
        let mut r = Reassembly::new(3, now);
        // Refused: over the budget. It must not teach its size.
        assert_eq!(
            r.insert(0, 3, Bytes::from_static(b"aaaaaaaa"), 100, &mut budget),
            Err(FragmentError::OverBudget)
        );
        assert_eq!(
            r.insert(0, 3, Bytes::from_static(b"aa"), 100, &mut budget),
            Ok(false)
        );
        assert_eq!(
            r.insert(1, 3, Bytes::from_static(b"bb"), 100, &mut budget),
            Ok(false)
        );
        assert_eq!(
            r.insert(2, 3, Bytes::from_static(b"c"), 100, &mut budget),
            Ok(true)
        );
    }

    #[test]
    fn budget_caps_memory() {
        let now = Instant::now();
        let mut budget = ReassemblyBudget::new(6);
        let mut r = Reassembly::new(3, now);
        r.insert(0, 3, Bytes::from_static(b"aaaa"), 100, &mut budget)
            .unwrap();
        assert_eq!(
            r.insert(1, 3, Bytes::from_static(b"bbbb"), 100, &mut budget),
            Err(FragmentError::OverBudget)
        );
    }
}
