//! Packet-number bookkeeping: what we received (for dedup and acks) and what we sent (for
//! loss detection and RTT).

use std::collections::VecDeque;
use std::time::Instant;

use crate::channel::SentRecord;

/// Packets remembered for duplicate detection; older ones are dropped as too old.
pub(crate) const DEDUP_WINDOW: u64 = 1024;

/// Packets acknowledged by the bitfield below the largest.
pub(crate) const ACK_BITS: u64 = 32;

/// Packets declared lost once this many later packets have been acknowledged.
pub(crate) const PACKET_THRESHOLD: u64 = 3;

/// Sent packets tracked; the oldest is declared lost beyond this.
const MAX_TRACKED: usize = 8192;

/// Whether an incoming packet number is new.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arrival {
    New,
    Duplicate,
    TooOld,
}

/// Received packet numbers within [`DEDUP_WINDOW`] of the largest.
#[derive(Clone, Debug)]
pub(crate) struct ReceivedPackets {
    largest: Option<u64>,
    largest_at: Option<Instant>,
    bits: [u64; (DEDUP_WINDOW / 64) as usize],
}

impl ReceivedPackets {
    pub(crate) fn new() -> Self {
        Self {
            largest: None,
            largest_at: None,
            bits: [0; (DEDUP_WINDOW / 64) as usize],
        }
    }

    /// The value a 16-bit packet number is extended around.
    pub(crate) fn expected(&self) -> u64 {
        self.largest.map_or(0, |largest| largest + 1)
    }

    pub(crate) fn largest(&self) -> Option<u64> {
        self.largest
    }

    pub(crate) fn largest_at(&self) -> Option<Instant> {
        self.largest_at
    }

    pub(crate) fn check(&self, pn: u64) -> Arrival {
        match self.largest {
            None => Arrival::New,
            Some(largest) if pn > largest => Arrival::New,
            Some(largest) if largest - pn >= DEDUP_WINDOW => Arrival::TooOld,
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
    pub(crate) fn insert(&mut self, pn: u64, now: Instant) -> bool {
        let in_order = match self.largest {
            None => true,
            Some(largest) if pn > largest => {
                let gap = pn - largest;
                if gap >= DEDUP_WINDOW {
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
            self.largest_at = Some(now);
        }
        self.set_bit(pn, true);
        in_order
    }

    /// Bit `i` set: `largest - 1 - i` was received.
    pub(crate) fn ack_bits(&self) -> u32 {
        let Some(largest) = self.largest else {
            return 0;
        };
        let mut bits = 0u32;
        for i in 0..ACK_BITS {
            let Some(pn) = largest.checked_sub(i + 1) else {
                break;
            };
            if self.bit(pn) {
                bits |= 1 << i;
            }
        }
        bits
    }

    fn bit(&self, pn: u64) -> bool {
        let slot = (pn % DEDUP_WINDOW) as usize;
        self.bits[slot / 64] & (1 << (slot % 64)) != 0
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
}

/// A packet whose fate was just decided.
#[derive(Debug)]
pub(crate) struct Settled {
    pub(crate) packet_number: u64,
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
        self.packets.push_back(packet);
        if self.packets.len() > MAX_TRACKED {
            let pn = self.first;
            if let Some(front) = self.packets.front_mut() {
                if front.fate == Fate::InFlight && front.eliciting {
                    front.fate = Fate::Lost;
                    settled.push(Settled {
                        packet_number: pn,
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

    /// Marks `pn` acknowledged if it was in flight; returns whether it was.
    pub(crate) fn ack(&mut self, pn: u64, settled: &mut Vec<Settled>) -> bool {
        let Some(index) = pn.checked_sub(self.first) else {
            return false;
        };
        let Some(packet) = self.packets.get_mut(index as usize) else {
            return false;
        };
        if self.largest_acked.is_none_or(|largest| pn > largest) {
            self.largest_acked = Some(pn);
        }
        if packet.fate != Fate::InFlight {
            return false;
        }
        packet.fate = Fate::Acked;
        if packet.eliciting {
            settled.push(Settled {
                packet_number: pn,
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
        for (index, packet) in self.packets.iter_mut().enumerate() {
            let pn = self.first + index as u64;
            if packet.fate != Fate::InFlight || !packet.eliciting {
                continue;
            }
            let behind = largest.is_some_and(|largest| pn < largest);
            let lost = (behind
                && (largest.is_some_and(|l| l - pn >= PACKET_THRESHOLD)
                    || packet.time <= sent_before))
                || expired_before.is_some_and(|t| packet.time <= t);
            if !lost {
                if behind {
                    continue;
                }
                break;
            }
            packet.fate = Fate::Lost;
            settled.push(Settled {
                packet_number: pn,
                fate: Fate::Lost,
                records: std::mem::take(&mut packet.records),
            });
        }
        self.trim();
    }

    /// The earliest in-flight ack-eliciting packet's send time and whether it is below the
    /// largest acknowledged (subject to the time threshold).
    pub(crate) fn oldest_in_flight(&self) -> Option<(Instant, bool)> {
        self.packets
            .iter()
            .enumerate()
            .find(|(_, p)| p.fate == Fate::InFlight && p.eliciting)
            .map(|(index, p)| {
                let pn = self.first + index as u64;
                (p.time, self.largest_acked.is_some_and(|l| pn < l))
            })
    }

    fn trim(&mut self) {
        while let Some(front) = self.packets.front() {
            if front.fate == Fate::InFlight && front.eliciting {
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
        assert!(received.insert(0, now));
        assert!(received.insert(1, now));
        assert!(!received.insert(3, now));
        assert_eq!(received.check(1), Arrival::Duplicate);
        assert_eq!(received.check(2), Arrival::New);
        assert_eq!(received.ack_bits() & 0b111, 0b110);
        received.insert(3 + DEDUP_WINDOW, now);
        assert_eq!(received.check(3), Arrival::TooOld);
        assert_eq!(received.check(4), Arrival::New);
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
