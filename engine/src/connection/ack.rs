//! Packet-number bookkeeping: what we received (for dedup and acks) and what we sent (for
//! loss detection and RTT).

use std::collections::VecDeque;
use std::time::Instant;

use crate::channel::SentRecord;

/// Packets remembered for duplicate detection; older ones are dropped as too old.
pub(crate) const DEDUP_WINDOW: u64 = 1024;

/// Packets acknowledged by the bitfield below the largest.
pub(crate) const ACK_BITS: u64 = 32;

/// Packets declared lost once this many later packets have been acknowledged, at first; the
/// threshold grows when a loss proves spurious (the packet was only reordered).
pub(crate) const PACKET_THRESHOLD: u64 = 3;

/// Ceiling of the adaptive reordering threshold.
const MAX_PACKET_THRESHOLD: u64 = 256;

/// Received packets awaiting an acknowledgement; beyond this the oldest go unreported (the
/// sender then retransmits what they carried, which is safe).
const MAX_UNREPORTED: usize = 4096;

/// Lost packets are remembered this many packets back, to detect spurious losses.
const SPURIOUS_MEMORY: u64 = 1024;

/// Sent packets tracked; the oldest is declared lost beyond this.
const MAX_TRACKED: usize = 8192;

/// Whether an incoming packet number is new.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arrival {
    New,
    Duplicate,
    TooOld,
    /// Below the window but new by the window before the last far jump (see
    /// [`ReceivedPackets::restore_previous`]).
    Behind,
}

/// Received packet numbers within [`DEDUP_WINDOW`] of the largest.
#[derive(Clone, Debug)]
pub(crate) struct ReceivedPackets {
    largest: Option<u64>,
    bits: [u64; (DEDUP_WINDOW / 64) as usize],
    /// Received and not yet covered by an acknowledgement we sent, with arrival times.
    unreported: VecDeque<(u64, Instant)>,
    /// The window as it was before the last jump of a whole window or more.
    previous: Option<(u64, [u64; (DEDUP_WINDOW / 64) as usize])>,
}

/// One acknowledgement block: a packet number and the 32 before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AckBlock {
    pub(crate) largest: u64,
    pub(crate) bits: u32,
    /// When `largest` arrived.
    pub(crate) arrived: Instant,
}

impl ReceivedPackets {
    pub(crate) fn new() -> Self {
        Self {
            largest: None,
            bits: [0; (DEDUP_WINDOW / 64) as usize],
            unreported: VecDeque::new(),
            previous: None,
        }
    }

    /// The value a 16-bit packet number is extended around.
    pub(crate) fn expected(&self) -> u64 {
        self.largest.map_or(0, |largest| largest + 1)
    }

    /// Goes back to the window before the last far jump, forgetting the jump: used when the
    /// jump proves to be forged (the real peer keeps sending below it).
    pub(crate) fn restore_previous(&mut self) {
        if let Some((largest, bits)) = self.previous.take() {
            self.largest = Some(largest);
            self.bits = bits;
            self.unreported.clear();
        }
    }

    /// Whether some received packet has not been acknowledged yet.
    pub(crate) fn has_unreported(&self) -> bool {
        !self.unreported.is_empty()
    }

    /// The next acknowledgement block to send: anchored at the highest unreported packet, and
    /// marking every packet it covers as reported.
    pub(crate) fn next_block(&mut self) -> Option<AckBlock> {
        let &(largest, arrived) = self.unreported.iter().max_by_key(|(pn, _)| *pn)?;
        let lowest = largest.saturating_sub(ACK_BITS);
        self.unreported
            .retain(|&(pn, _)| pn < lowest || pn > largest);
        Some(AckBlock {
            largest,
            bits: self.bits_below(largest),
            arrived,
        })
    }

    pub(crate) fn check(&self, pn: u64) -> Arrival {
        match self.largest {
            None => Arrival::New,
            Some(largest) if pn > largest => Arrival::New,
            Some(largest) if largest - pn >= DEDUP_WINDOW => match self.previous {
                Some((previous, _)) if pn > previous => Arrival::Behind,
                Some((previous, bits)) if previous - pn < DEDUP_WINDOW => {
                    if bit_in(&bits, pn) {
                        Arrival::Duplicate
                    } else {
                        Arrival::Behind
                    }
                }
                _ => Arrival::TooOld,
            },
            Some(_) => {
                if self.bit(pn) {
                    Arrival::Duplicate
                } else {
                    Arrival::New
                }
            }
        }
    }

    /// Records `pn`; returns whether it arrived in order (one past the previous largest).
    /// Only ack-eliciting packets wait for an acknowledgement; the others are just remembered.
    pub(crate) fn insert(&mut self, pn: u64, now: Instant, eliciting: bool) -> bool {
        let in_order = match self.largest {
            None => true,
            Some(largest) if pn > largest => {
                let gap = pn - largest;
                if gap >= DEDUP_WINDOW {
                    self.previous = Some((largest, self.bits));
                    self.bits = [0; (DEDUP_WINDOW / 64) as usize];
                } else {
                    for cleared in largest + 1..pn {
                        self.set_bit(cleared, false);
                    }
                }
                gap == 1
            }
            Some(_) => false,
        };
        if self.largest.is_none_or(|largest| pn > largest) {
            self.largest = Some(pn);
        }
        self.set_bit(pn, true);
        if eliciting {
            if self.unreported.len() == MAX_UNREPORTED {
                self.unreported.pop_front();
            }
            self.unreported.push_back((pn, now));
        }
        in_order
    }

    /// Bit `i` set: `anchor - 1 - i` was received (as far as the dedup window still knows).
    fn bits_below(&self, anchor: u64) -> u32 {
        let Some(largest) = self.largest else {
            return 0;
        };
        let mut bits = 0u32;
        for i in 0..ACK_BITS {
            let Some(pn) = anchor.checked_sub(i + 1) else {
                break;
            };
            if largest - pn < DEDUP_WINDOW && self.bit(pn) {
                bits |= 1 << i;
            }
        }
        bits
    }

    fn bit(&self, pn: u64) -> bool {
        bit_in(&self.bits, pn)
    }

    fn set_bit(&mut self, pn: u64, on: bool) {
        let slot = (pn % DEDUP_WINDOW) as usize;
        if on {
            self.bits[slot / 64] |= 1 << (slot % 64);
        } else {
            self.bits[slot / 64] &= !(1 << (slot % 64));
        }
    }
}

fn bit_in(bits: &[u64; (DEDUP_WINDOW / 64) as usize], pn: u64) -> bool {
    let slot = (pn % DEDUP_WINDOW) as usize;
    bits[slot / 64] & (1 << (slot % 64)) != 0
}

/// Fate of a sent packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    InFlight,
    Acked,
    Lost,
}

#[derive(Debug)]
pub(crate) struct SentPacket {
    pub(crate) time: Instant,
    /// UDP payload bytes.
    pub(crate) size: usize,
    pub(crate) eliciting: bool,
    pub(crate) fate: Fate,
    pub(crate) records: Vec<SentRecord>,
}

/// Packets sent and not yet settled, indexed by packet number.
#[derive(Debug)]
pub(crate) struct SentPackets {
    /// Packet number of `packets[0]`.
    first: u64,
    packets: VecDeque<SentPacket>,
    pool: Vec<Vec<SentRecord>>,
    largest_acked: Option<u64>,
    /// Bytes of ack-eliciting packets in flight.
    in_flight: usize,
    /// Every packet below this one is settled (acknowledged, lost, or not ack-eliciting).
    scan_from: u64,
    /// Packets behind the largest acknowledged before one is declared lost; adapts upward.
    threshold: u64,
    /// Losses later disproved by an acknowledgement.
    spurious: u64,
    /// Packet numbers of the losses disproved since the last `take_disproved` (at most one
    /// per packet acknowledged).
    disproved: Vec<u64>,
}

/// A packet whose fate was just decided.
#[derive(Debug)]
pub(crate) struct Settled {
    pub(crate) packet_number: u64,
    /// UDP payload bytes of the packet.
    pub(crate) size: usize,
    pub(crate) fate: Fate,
    pub(crate) records: Vec<SentRecord>,
}

impl SentPackets {
    pub(crate) fn new() -> Self {
        Self {
            first: 0,
            packets: VecDeque::new(),
            pool: Vec::new(),
            largest_acked: None,
            in_flight: 0,
            scan_from: 0,
            threshold: PACKET_THRESHOLD,
            spurious: 0,
            disproved: Vec::new(),
        }
    }

    /// The next packet number.
    pub(crate) fn next(&self) -> u64 {
        self.first + self.packets.len() as u64
    }

    /// A cleared record list from the pool.
    pub(crate) fn take_records(&mut self) -> Vec<SentRecord> {
        self.pool.pop().unwrap_or_default()
    }

    /// Returns a record list to the pool.
    pub(crate) fn recycle(&mut self, mut records: Vec<SentRecord>) {
        records.clear();
        if self.pool.len() < 64 {
            self.pool.push(records);
        }
    }

    /// Records packet `next()`; returns packets declared lost because too many are tracked.
    pub(crate) fn push(&mut self, packet: SentPacket, settled: &mut Vec<Settled>) {
        if packet.eliciting {
            self.in_flight += packet.size;
        }
        self.packets.push_back(packet);
        if self.packets.len() > MAX_TRACKED {
            let pn = self.first;
            if let Some(front) = self.packets.front_mut() {
                if front.fate == Fate::InFlight && front.eliciting {
                    front.fate = Fate::Lost;
                    self.in_flight -= front.size.min(self.in_flight);
                    settled.push(Settled {
                        packet_number: pn,
                        size: front.size,
                        fate: Fate::Lost,
                        records: std::mem::take(&mut front.records),
                    });
                }
            }
        }
        self.trim();
    }

    pub(crate) fn get(&self, pn: u64) -> Option<&SentPacket> {
        self.packets.get(pn.checked_sub(self.first)? as usize)
    }

    /// Marks `pn` acknowledged if it was in flight (or declared lost); returns whether the
    /// acknowledgement gives an RTT sample: `pn` was in flight, or it had been declared lost
    /// and is now the largest acknowledged. (A late acknowledgement still measures the path:
    /// without that sample, a sudden rise of the RTT gets every packet declared lost on the old
    /// estimate, and the estimate never recovers.)
    pub(crate) fn ack(&mut self, pn: u64, settled: &mut Vec<Settled>) -> bool {
        let Some(index) = pn.checked_sub(self.first) else {
            return false;
        };
        let Some(packet) = self.packets.get_mut(index as usize) else {
            return false;
        };
        let newly_largest = self.largest_acked.is_none_or(|largest| pn > largest);
        if newly_largest {
            self.largest_acked = Some(pn);
        }
        if packet.fate == Fate::Lost {
            // Only reordered or late: be more patient from now on.
            packet.fate = Fate::Acked;
            self.spurious += 1;
            self.disproved.push(pn);
            if let Some(largest) = self.largest_acked {
                let distance = largest.saturating_sub(pn) + 1;
                self.threshold = self.threshold.max(distance).min(MAX_PACKET_THRESHOLD);
            }
            return newly_largest;
        }
        if packet.fate != Fate::InFlight {
            return false;
        }
        packet.fate = Fate::Acked;
        if packet.eliciting {
            self.in_flight -= packet.size.min(self.in_flight);
            settled.push(Settled {
                packet_number: pn,
                size: packet.size,
                fate: Fate::Acked,
                records: std::mem::take(&mut packet.records),
            });
        }
        true
    }

    /// Declares lost the in-flight packets below the largest acknowledged that are
    /// [`PACKET_THRESHOLD`] behind it or were sent before `sent_before`, and any in-flight packet
    /// sent before `expired_before`.
    pub(crate) fn detect_lost(
        &mut self,
        sent_before: Instant,
        expired_before: Option<Instant>,
        settled: &mut Vec<Settled>,
    ) {
        let largest = self.largest_acked;
        let skip = self.scan_from.saturating_sub(self.first) as usize;
        for (index, packet) in self.packets.iter_mut().enumerate().skip(skip) {
            let pn = self.first + index as u64;
            if packet.fate != Fate::InFlight || !packet.eliciting {
                continue;
            }
            let behind = largest.is_some_and(|largest| pn < largest);
            let lost = (behind
                && (largest.is_some_and(|l| l - pn >= self.threshold)
                    || packet.time <= sent_before))
                || expired_before.is_some_and(|t| packet.time <= t);
            if !lost {
                if behind {
                    continue;
                }
                break;
            }
            packet.fate = Fate::Lost;
            self.in_flight -= packet.size.min(self.in_flight);
            settled.push(Settled {
                packet_number: pn,
                size: packet.size,
                fate: Fate::Lost,
                records: std::mem::take(&mut packet.records),
            });
        }
        self.trim();
    }

    /// Bytes of ack-eliciting packets neither acknowledged nor declared lost.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Losses later disproved by an acknowledgement.
    /// Hands the losses disproved since the last call to `f`, oldest first.
    pub(crate) fn take_disproved(&mut self, mut f: impl FnMut(u64)) {
        for pn in self.disproved.drain(..) {
            f(pn);
        }
    }

    pub(crate) fn spurious_losses(&self) -> u64 {
        self.spurious
    }

    /// The earliest in-flight ack-eliciting packet's send time and whether it is below the
    /// largest acknowledged (subject to the time threshold).
    pub(crate) fn oldest_in_flight(&self) -> Option<(Instant, bool)> {
        let skip = self.scan_from.saturating_sub(self.first) as usize;
        self.packets
            .iter()
            .enumerate()
            .skip(skip)
            .find(|(_, p)| p.fate == Fate::InFlight && p.eliciting)
            .map(|(index, p)| {
                let pn = self.first + index as u64;
                (p.time, self.largest_acked.is_some_and(|l| pn < l))
            })
    }

    /// Drops settled packets from the front. Lost ones stay for [`SPURIOUS_MEMORY`] packets,
    /// so that a late acknowledgement can still prove the loss spurious.
    fn trim(&mut self) {
        let next = self.next();
        self.scan_from = self.scan_from.max(self.first);
        while let Some(packet) = self.get(self.scan_from) {
            if packet.fate == Fate::InFlight && packet.eliciting {
                break;
            }
            self.scan_from += 1;
        }
        while let Some(front) = self.packets.front() {
            let keep = match front.fate {
                Fate::InFlight => front.eliciting,
                Fate::Lost => next - self.first <= SPURIOUS_MEMORY,
                Fate::Acked => false,
            };
            if keep {
                break;
            }
            if let Some(packet) = self.packets.pop_front() {
                self.first += 1;
                self.recycle(packet.records);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_and_ack_bits() {
        let now = Instant::now();
        let mut received = ReceivedPackets::new();
        assert_eq!(received.check(0), Arrival::New);
        assert!(received.insert(0, now, true));
        assert!(received.insert(1, now, true));
        assert!(!received.insert(3, now, true));
        assert_eq!(received.check(1), Arrival::Duplicate);
        assert_eq!(received.check(2), Arrival::New);
        let block = received.next_block().unwrap();
        assert_eq!((block.largest, block.bits & 0b111), (3, 0b110));
        assert!(!received.has_unreported());
        received.insert(3 + DEDUP_WINDOW, now, true);
        // After a whole-window jump the old window still catches duplicates.
        assert_eq!(received.check(3), Arrival::Duplicate);
        assert_eq!(received.check(2), Arrival::Behind);
        assert_eq!(received.check(4), Arrival::New);
        received.restore_previous();
        assert_eq!(received.check(3), Arrival::Duplicate);
        assert_eq!(received.check(2), Arrival::New);
    }

    #[test]
    fn loss_by_packet_threshold() {
        let now = Instant::now();
        let mut sent = SentPackets::new();
        let mut settled = Vec::new();
        for _ in 0..5 {
            sent.push(
                SentPacket {
                    time: now,
                    size: 100,
                    eliciting: true,
                    fate: Fate::InFlight,
                    records: Vec::new(),
                },
                &mut settled,
            );
        }
        assert!(sent.ack(4, &mut settled));
        assert!(!sent.ack(4, &mut settled));
        sent.detect_lost(now - std::time::Duration::from_secs(1), None, &mut settled);
        let lost: Vec<u64> = settled
            .iter()
            .filter(|s| s.fate == Fate::Lost)
            .map(|s| s.packet_number)
            .collect();
        assert_eq!(lost, vec![0, 1]);
    }
}
