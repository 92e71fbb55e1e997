//! `ReliableOrdered` and `ReliableUnordered`: retransmitted until acknowledged, delivered once.
//!
//! Each message gets a 64-bit id (16 bits on the wire); a fragmented message is retransmitted
//! piece by piece. The sender never has more than [`RELIABLE_WINDOW`] messages between the oldest
//! unacknowledged one and the newest sent, so the receiver can always place an id, and never more
//! than `max_in_flight_bytes` sent from the oldest unacknowledged message on: that bounds what an
//! ordered receiver holds behind a gap, acknowledged or not. Retransmission happens when the
//! connection declares the carrying packet lost, or when a unit stays unacknowledged for the RTO.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{
    admit, message_cost, write_frame, ChannelEvent, Incoming, PacketCtx, SentRecord, Sizing,
};
use crate::config::{ChannelConfig, ChannelId, ChannelKind};
use crate::error::{SendError, Violation};
use crate::fragment::{fragment_count, FragmentError, Reassembly, ReassemblyBudget};
use crate::seq::{extend, truncate};
use crate::stats::{RecvChannelStats, SendChannelStats};
use crate::wire::FrameBody;
use crate::MessageId;

/// Messages that may be outstanding between the oldest unacknowledged and the newest sent.
pub(crate) const RELIABLE_WINDOW: u64 = 1024;

#[derive(Clone, Copy, Debug, Default)]
struct Unit {
    acked: bool,
    queued: bool,
    last_sent: Option<Instant>,
    last_packet: u64,
}

#[derive(Debug)]
enum Units {
    One(Unit),
    Many(Vec<Unit>),
}

impl Units {
    fn new(pieces: u32) -> Self {
        if pieces == 1 {
            Self::One(Unit::default())
        } else {
            Self::Many(vec![Unit::default(); pieces as usize])
        }
    }

    fn get_mut(&mut self, piece: u32) -> Option<&mut Unit> {
        match self {
            Self::One(unit) => (piece == 0).then_some(unit),
            Self::Many(units) => units.get_mut(piece as usize),
        }
    }
}

#[derive(Debug)]
struct Message {
    data: Bytes,
    pieces: u32,
    units: Units,
    acked: u32,
    first_sent: Option<Instant>,
}

/// Send half of a reliable channel.
#[derive(Debug)]
pub(crate) struct ReliableSend {
    id: u8,
    kind: ChannelKind,
    config: ChannelConfig,
    sizing: Sizing,
    /// Id of `messages[0]`.
    base: u64,
    messages: VecDeque<Message>,
    /// Next unit never sent.
    cursor: (u64, u32),
    resend: VecDeque<(u64, u32)>,
    /// Units in the order they were sent, for the retransmission timer.
    timeline: VecDeque<(Instant, u64, u32)>,
    /// Bytes sent of the messages from `base` on (acknowledged or not).
    window_bytes: usize,
    buffered: usize,
    stats: SendChannelStats,
}

impl ReliableSend {
    pub(crate) fn new(id: u8, config: &ChannelConfig, sizing: Sizing) -> Self {
        Self {
            id,
            kind: config.kind,
            config: config.clone(),
            sizing,
            base: 0,
            messages: VecDeque::new(),
            cursor: (0, 0),
            resend: VecDeque::new(),
            timeline: VecDeque::new(),
            window_bytes: 0,
            buffered: 0,
            stats: SendChannelStats::default(),
        }
    }

    pub(crate) fn send(&mut self, data: Bytes) -> Result<MessageId, SendError> {
        let data = admit(data, self.id, &self.config, self.buffered)?;
        let id = self.base + self.messages.len() as u64;
        let pieces = if data.len() > self.sizing.max_whole {
            fragment_count(data.len(), self.sizing.piece_size) as u32
        } else {
            1
        };
        self.buffered += message_cost(&data);
        self.stats.messages_sent += 1;
        self.stats.bytes_sent += data.len() as u64;
        self.messages.push_back(Message {
            data,
            pieces,
            units: Units::new(pieces),
            acked: 0,
            first_sent: None,
        });
        Ok(MessageId(id))
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.resend.is_empty() || self.can_send_new()
    }

    fn next_id(&self) -> u64 {
        self.base + self.messages.len() as u64
    }

    fn can_send_new(&self) -> bool {
        self.cursor.0 < self.next_id()
            && self.cursor.0 - self.base < RELIABLE_WINDOW
            && (self.window_bytes == 0 || self.window_bytes < self.config.max_in_flight_bytes)
    }

    pub(crate) fn buffered(&self) -> usize {
        self.buffered
    }

    pub(crate) fn write(&mut self, ctx: &mut PacketCtx<'_, '_>) {
        while let Some(&(id, piece)) = self.resend.front() {
            match self.write_unit(ctx, id, piece) {
                Some(true) => self.stats.retransmissions += 1,
                Some(false) => return,
                None => {}
            }
            self.resend.pop_front();
        }
        while self.can_send_new() {
            let (id, piece) = self.cursor;
            let Some(len) = self.piece_len(id, piece) else {
                return;
            };
            if self.window_bytes > 0 && self.window_bytes + len > self.config.max_in_flight_bytes {
                return;
            }
            if self.write_unit(ctx, id, piece) != Some(true) {
                return;
            }
            self.window_bytes += len;
            let pieces = self.message(id).map_or(1, |m| m.pieces);
            self.cursor = if piece + 1 < pieces {
                (id, piece + 1)
            } else {
                (id + 1, 0)
            };
        }
    }

    /// Writes one unit. `None`: nothing to write (already acknowledged); `Some(false)`: no room.
    fn write_unit(&mut self, ctx: &mut PacketCtx<'_, '_>, id: u64, piece: u32) -> Option<bool> {
        let (channel, kind, piece_size) = (self.id, self.kind, self.sizing.piece_size);
        let index = id.checked_sub(self.base)? as usize;
        let message = self.messages.get_mut(index)?;
        let pieces = message.pieces;
        let unit = *message.units.get_mut(piece)?;
        if unit.acked {
            return None;
        }
        let written = if pieces == 1 {
            let body = FrameBody::Message {
                id: truncate(id),
                payload: &message.data,
            };
            write_frame(ctx, channel, kind, &body)
        } else {
            let start = piece as usize * piece_size;
            let end = (start + piece_size).min(message.data.len());
            let body = FrameBody::Fragment {
                id: truncate(id),
                index: piece,
                count: pieces,
                payload: message.data.get(start..end).unwrap_or_default(),
            };
            write_frame(ctx, channel, kind, &body)
        };
        if !written {
            return Some(false);
        }
        message.first_sent.get_or_insert(ctx.now);
        if let Some(unit) = message.units.get_mut(piece) {
            unit.queued = false;
            unit.last_sent = Some(ctx.now);
            unit.last_packet = ctx.packet_number;
        }
        ctx.records.push(SentRecord::Reliable {
            channel,
            id,
            fragment: piece,
        });
        self.timeline.push_back((ctx.now, id, piece));
        Some(true)
    }

    fn message(&self, id: u64) -> Option<&Message> {
        self.messages.get(id.checked_sub(self.base)? as usize)
    }

    fn piece_len(&self, id: u64, piece: u32) -> Option<usize> {
        let message = self.message(id)?;
        if message.pieces == 1 {
            return Some(message.data.len());
        }
        let start = piece as usize * self.sizing.piece_size;
        Some((message.data.len() - start.min(message.data.len())).min(self.sizing.piece_size))
    }

    pub(crate) fn on_acked(&mut self, record: &SentRecord) {
        let SentRecord::Reliable { id, fragment, .. } = *record else {
            return;
        };
        let Some(index) = id.checked_sub(self.base) else {
            return;
        };
        let Some(message) = self.messages.get_mut(index as usize) else {
            return;
        };
        let Some(unit) = message.units.get_mut(fragment) else {
            return;
        };
        if unit.acked {
            return;
        }
        unit.acked = true;
        message.acked += 1;
        if message.acked == message.pieces {
            self.stats.messages_acked += 1;
            self.buffered -= message_cost(&message.data).min(self.buffered);
        }
        while self
            .messages
            .front()
            .is_some_and(|front| front.acked == front.pieces)
        {
            if let Some(done) = self.messages.pop_front() {
                self.window_bytes -= done.data.len().min(self.window_bytes);
            }
            self.base += 1;
        }
    }

    pub(crate) fn on_lost(&mut self, record: &SentRecord, packet_number: u64) {
        let SentRecord::Reliable { id, fragment, .. } = *record else {
            return;
        };
        let Some(index) = id.checked_sub(self.base) else {
            return;
        };
        let Some(unit) = self
            .messages
            .get_mut(index as usize)
            .and_then(|m| m.units.get_mut(fragment))
        else {
            return;
        };
        if unit.acked || unit.queued || unit.last_packet != packet_number {
            return;
        }
        unit.queued = true;
        self.resend.push_back((id, fragment));
    }

    pub(crate) fn on_timeout(&mut self, now: Instant, rto: Duration) -> bool {
        let mut fired = false;
        while let Some(&(sent, id, piece)) = self.timeline.front() {
            if sent + rto > now {
                return fired;
            }
            self.timeline.pop_front();
            let Some(index) = id.checked_sub(self.base) else {
                continue;
            };
            let Some(unit) = self
                .messages
                .get_mut(index as usize)
                .and_then(|m| m.units.get_mut(piece))
            else {
                continue;
            };
            if unit.acked || unit.queued || unit.last_sent != Some(sent) {
                continue;
            }
            unit.queued = true;
            self.resend.push_back((id, piece));
            fired = true;
        }
        fired
    }

    pub(crate) fn next_timeout(&self, rto: Duration) -> Option<Instant> {
        self.timeline.front().map(|&(sent, _, _)| sent + rto)
    }

    pub(crate) fn oldest_unacked(&self) -> Option<Instant> {
        self.messages.front().and_then(|m| m.first_sent)
    }

    pub(crate) fn stats(&self) -> &SendChannelStats {
        &self.stats
    }
}

#[derive(Debug)]
enum Slot {
    Empty,
    Partial(Reassembly),
    Complete(Bytes),
    Delivered,
}

/// Receive half of a reliable channel.
#[derive(Debug)]
pub(crate) struct ReliableRecv {
    id: u8,
    ordered: bool,
    max_message_size: usize,
    /// Lowest id not yet delivered; `slots[0]` holds it.
    next: u64,
    slots: VecDeque<Slot>,
    stats: RecvChannelStats,
}

impl ReliableRecv {
    pub(crate) fn new(id: u8, config: &ChannelConfig) -> Self {
        Self {
            id,
            ordered: config.kind == ChannelKind::ReliableOrdered,
            max_message_size: config.max_message_size,
            next: 0,
            slots: VecDeque::new(),
            stats: RecvChannelStats::default(),
        }
    }

    pub(crate) fn receive(
        &mut self,
        frame: Incoming,
        now: Instant,
        budget: &mut ReassemblyBudget,
        events: &mut Vec<ChannelEvent>,
    ) -> Result<(), Violation> {
        let wire_id = match &frame {
            Incoming::Message { id, .. } | Incoming::Fragment { id, .. } => *id,
        };
        let full = extend(self.next, wire_id);
        if full < self.next {
            self.stats.duplicates += 1;
            return Ok(());
        }
        let offset = full - self.next;
        if offset >= RELIABLE_WINDOW {
            return Err(Violation::OutsideWindow);
        }
        let offset = offset as usize;
        if self.slots.len() <= offset {
            self.slots.resize_with(offset + 1, || Slot::Empty);
        }
        let Some(slot) = self.slots.get_mut(offset) else {
            return Ok(());
        };
        let whole = match (frame, &mut *slot) {
            (_, Slot::Complete(_) | Slot::Delivered) => {
                self.stats.duplicates += 1;
                return Ok(());
            }
            (Incoming::Message { data, .. }, Slot::Empty) => {
                if data.len() > self.max_message_size {
                    return Err(Violation::MessageTooLarge);
                }
                data
            }
            (Incoming::Message { .. }, Slot::Partial(_)) => {
                return Err(Violation::Fragment(FragmentError::Inconsistent));
            }
            (
                Incoming::Fragment {
                    index, count, data, ..
                },
                slot,
            ) => {
                if let Slot::Empty = slot {
                    *slot = Slot::Partial(Reassembly::new(count, now));
                }
                let Slot::Partial(assembly) = slot else {
                    return Ok(());
                };
                if !assembly.insert(index, count, data, self.max_message_size, budget)? {
                    return Ok(());
                }
                let Slot::Partial(assembly) = std::mem::replace(slot, Slot::Empty) else {
                    return Ok(());
                };
                assembly.assemble(budget)
            }
        };
        if self.ordered && offset > 0 {
            budget.charge(whole.len())?;
            *slot = Slot::Complete(whole);
            return Ok(());
        }
        *slot = Slot::Delivered;
        self.deliver(whole, events);
        self.advance(budget, events);
        Ok(())
    }

    fn deliver(&mut self, data: Bytes, events: &mut Vec<ChannelEvent>) {
        self.stats.messages_delivered += 1;
        self.stats.bytes_delivered += data.len() as u64;
        events.push(ChannelEvent::Message {
            channel: ChannelId(self.id),
            data,
        });
    }

    fn advance(&mut self, budget: &mut ReassemblyBudget, events: &mut Vec<ChannelEvent>) {
        loop {
            match self.slots.front() {
                Some(Slot::Delivered) => {}
                Some(Slot::Complete(_)) => {
                    if let Some(Slot::Complete(data)) = self.slots.pop_front() {
                        budget.release(data.len());
                        self.deliver(data, events);
                    }
                    self.next += 1;
                    continue;
                }
                _ => return,
            }
            self.slots.pop_front();
            self.next += 1;
        }
    }

    pub(crate) fn stats(&self) -> &RecvChannelStats {
        &self.stats
    }
}
