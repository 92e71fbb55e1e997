//! `Unreliable` and `UnreliableSequenced`: sent once, never retransmitted.
//!
//! Duplicates never reach the application because the connection drops any packet number it has
//! already seen. The sequenced kind numbers its messages and drops anything not newer than the
//! newest delivered. Fragmented messages are delivered only whole; a lost piece means the message
//! is dropped once its reassembly expires or a newer one completes.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{
    admit, message_cost, write_frame, ChannelEvent, Incoming, PacketCtx, SentRecord, Sizing,
};
use crate::config::{ChannelConfig, ChannelId, ChannelKind};
use crate::error::{SendError, Violation};
use crate::fragment::{fragment_count, Reassembly, ReassemblyBudget};
use crate::seq::{extend, truncate};
use crate::stats::{RecvChannelStats, SendChannelStats};
use crate::wire::FrameBody;
use crate::{DeliveryOutcome, MessageId};

/// Incomplete fragmented messages kept per channel; the oldest is dropped beyond this (the
/// connection's reassembly budget bounds their bytes). Generous, because a message dropped
/// while its last pieces are still on the way is lost although every packet is acknowledged.
const MAX_ASSEMBLIES: usize = 64;

/// Stale sequenced message ids remembered so that each is counted as dropped once.
const COUNTED_STALE: usize = 16;

#[derive(Debug)]
struct Pending {
    id: u64,
    data: Bytes,
    next_piece: u32,
    pieces: u32,
}

/// Send half of an unreliable or sequenced channel.
#[derive(Debug)]
pub(crate) struct UnreliableSend {
    id: u8,
    config: ChannelConfig,
    sizing: Sizing,
    queue: VecDeque<Pending>,
    next_id: u64,
    buffered: usize,
    /// Notify channels: fragments of each message still unaccounted for.
    awaiting: HashMap<u64, u32>,
    stats: SendChannelStats,
}

impl UnreliableSend {
    pub(crate) fn new(id: u8, config: &ChannelConfig, sizing: Sizing) -> Self {
        Self {
            id,
            config: config.clone(),
            sizing,
            queue: VecDeque::new(),
            next_id: 0,
            buffered: 0,
            awaiting: HashMap::new(),
            stats: SendChannelStats::default(),
        }
    }

    pub(crate) fn send(&mut self, data: Bytes) -> Result<MessageId, SendError> {
        let data = admit(data, self.id, &self.config, self.buffered)?;
        let id = self.next_id;
        self.next_id += 1;
        let pieces = if data.len() > self.sizing.max_whole {
            fragment_count(data.len(), self.sizing.piece_size) as u32
        } else {
            1
        };
        if self.config.notify_delivery {
            self.awaiting.insert(id, pieces);
        }
        self.buffered += message_cost(&data);
        self.stats.messages_sent += 1;
        self.stats.bytes_sent += data.len() as u64;
        self.queue.push_back(Pending {
            id,
            data,
            next_piece: 0,
            pieces,
        });
        Ok(MessageId(id))
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.queue.is_empty()
    }

    pub(crate) fn buffered(&self) -> usize {
        self.buffered
    }

    pub(crate) fn write(&mut self, ctx: &mut PacketCtx<'_, '_>) {
        let kind = self.config.kind;
        while let Some(front) = self.queue.front_mut() {
            let wire_id = truncate(front.id);
            let written = if front.pieces == 1 {
                let id = if kind == ChannelKind::Unreliable {
                    0
                } else {
                    wire_id
                };
                let body = FrameBody::Message {
                    id,
                    payload: &front.data,
                };
                write_frame(ctx, self.id, kind, &body)
            } else {
                let start = front.next_piece as usize * self.sizing.piece_size;
                let end = (start + self.sizing.piece_size).min(front.data.len());
                let body = FrameBody::Fragment {
                    id: wire_id,
                    index: front.next_piece,
                    count: front.pieces,
                    payload: front.data.get(start..end).unwrap_or_default(),
                };
                write_frame(ctx, self.id, kind, &body)
            };
            if !written {
                return;
            }
            if self.config.notify_delivery {
                ctx.records.push(SentRecord::Notify {
                    channel: self.id,
                    id: front.id,
                });
            }
            front.next_piece += 1;
            if front.next_piece == front.pieces {
                self.buffered -= message_cost(&front.data);
                self.queue.pop_front();
            }
        }
    }

    pub(crate) fn on_acked(&mut self, record: &SentRecord, events: &mut Vec<ChannelEvent>) {
        let SentRecord::Notify { id, .. } = *record else {
            return;
        };
        let Some(remaining) = self.awaiting.get_mut(&id) else {
            return;
        };
        *remaining -= 1;
        if *remaining == 0 {
            self.awaiting.remove(&id);
            self.stats.messages_acked += 1;
            events.push(self.outcome(id, DeliveryOutcome::Acked));
        }
    }

    pub(crate) fn on_lost(&mut self, record: &SentRecord, events: &mut Vec<ChannelEvent>) {
        let SentRecord::Notify { id, .. } = *record else {
            return;
        };
        if self.awaiting.remove(&id).is_some() {
            self.stats.messages_lost += 1;
            events.push(self.outcome(id, DeliveryOutcome::Lost));
        }
    }

    fn outcome(&self, id: u64, outcome: DeliveryOutcome) -> ChannelEvent {
        ChannelEvent::Delivery {
            channel: ChannelId(self.id),
            message: MessageId(id),
            outcome,
        }
    }

    pub(crate) fn stats(&self) -> &SendChannelStats {
        &self.stats
    }
}

/// Receive half of an unreliable or sequenced channel.
#[derive(Debug)]
pub(crate) struct UnreliableRecv {
    id: u8,
    sequenced: bool,
    max_message_size: usize,
    /// Sequenced: the newest id delivered.
    newest: Option<u64>,
    /// Reference for extending 16-bit ids: one past the highest id seen.
    expected: u64,
    assemblies: VecDeque<(u64, Reassembly)>,
    /// Sequenced: ids of stale messages already counted as dropped.
    counted_stale: VecDeque<u64>,
    stats: RecvChannelStats,
}

impl UnreliableRecv {
    pub(crate) fn new(id: u8, config: &ChannelConfig) -> Self {
        Self {
            id,
            sequenced: config.kind == ChannelKind::UnreliableSequenced,
            max_message_size: config.max_message_size,
            newest: None,
            expected: 0,
            assemblies: VecDeque::new(),
            counted_stale: VecDeque::new(),
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
        match frame {
            Incoming::Message { id, data } => {
                if data.len() > self.max_message_size {
                    self.stats.messages_dropped += 1;
                    return Err(Violation::MessageTooLarge);
                }
                let full = if self.sequenced {
                    self.extend_id(id)
                } else {
                    0
                };
                self.deliver(full, data, events, budget);
                Ok(())
            }
            Incoming::Fragment {
                id,
                index,
                count,
                data,
            } => {
                let full = self.extend_id(id);
                if self.sequenced && self.newest.is_some_and(|newest| full <= newest) {
                    self.count_stale(full);
                    return Ok(());
                }
                let position = self.assemblies.iter().position(|(id, _)| *id == full);
                let position = match position {
                    Some(position) => position,
                    None => {
                        if self.assemblies.len() == MAX_ASSEMBLIES {
                            if let Some((_, oldest)) = self.assemblies.pop_front() {
                                oldest.discard(budget);
                                self.stats.messages_dropped += 1;
                            }
                        }
                        self.assemblies
                            .push_back((full, Reassembly::new(count, now)));
                        self.assemblies.len() - 1
                    }
                };
                let Some((_, assembly)) = self.assemblies.get_mut(position) else {
                    return Ok(());
                };
                match assembly.insert(index, count, data, self.max_message_size, budget) {
                    Ok(false) => Ok(()),
                    Ok(true) => {
                        if let Some((_, assembly)) = self.assemblies.remove(position) {
                            let whole = assembly.assemble(budget);
                            self.deliver(full, whole, events, budget);
                        }
                        Ok(())
                    }
                    Err(error) => {
                        if let Some((_, assembly)) = self.assemblies.remove(position) {
                            assembly.discard(budget);
                        }
                        self.stats.messages_dropped += 1;
                        Err(Violation::Fragment(error))
                    }
                }
            }
        }
    }

    fn extend_id(&mut self, wire: u16) -> u64 {
        let full = extend(self.expected, wire);
        if full >= self.expected {
            self.expected = full + 1;
        }
        full
    }

    fn deliver(
        &mut self,
        full: u64,
        data: Bytes,
        events: &mut Vec<ChannelEvent>,
        budget: &mut ReassemblyBudget,
    ) {
        if self.sequenced {
            if self.newest.is_some_and(|newest| full <= newest) {
                self.stats.messages_dropped += 1;
                return;
            }
            self.newest = Some(full);
            // Older partial messages can never be delivered now.
            while let Some(index) = self.assemblies.iter().position(|(id, _)| *id < full) {
                if let Some((id, stale)) = self.assemblies.remove(index) {
                    stale.discard(budget);
                    self.count_stale(id);
                }
            }
        }
        self.stats.messages_delivered += 1;
        self.stats.bytes_delivered += data.len() as u64;
        events.push(ChannelEvent::Message {
            channel: ChannelId(self.id),
            data,
        });
    }

    /// Counts a stale sequenced message once, however many of its fragments arrive.
    fn count_stale(&mut self, id: u64) {
        if self.counted_stale.contains(&id) {
            return;
        }
        if self.counted_stale.len() == COUNTED_STALE {
            self.counted_stale.pop_front();
        }
        self.counted_stale.push_back(id);
        self.stats.messages_dropped += 1;
    }

    pub(crate) fn expire(
        &mut self,
        now: Instant,
        timeout: Duration,
        budget: &mut ReassemblyBudget,
    ) {
        while let Some((_, front)) = self.assemblies.front() {
            if now.saturating_duration_since(front.started()) < timeout {
                break;
            }
            if let Some((_, expired)) = self.assemblies.pop_front() {
                expired.discard(budget);
                self.stats.messages_dropped += 1;
            }
        }
    }

    pub(crate) fn next_expiry(&self, timeout: Duration) -> Option<Instant> {
        self.assemblies
            .front()
            .map(|(_, assembly)| assembly.started() + timeout)
    }

    pub(crate) fn stats(&self) -> &RecvChannelStats {
        &self.stats
    }
}
