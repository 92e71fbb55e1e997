//! Channels: one send half and one receive half per delivery kind.
//!
//! `unreliable.rs` holds the `Unreliable` and `UnreliableSequenced` kinds (no retransmission),
//! `reliable.rs` the `ReliableOrdered` and `ReliableUnordered` kinds. The connection owns one
//! [`SendChannel`] per outgoing channel and one [`RecvChannel`] per incoming channel, asks the send
//! halves to fill packets, and tells them which packets were acknowledged or lost.

mod reliable;
mod unreliable;

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::{ChannelConfig, ChannelId, ChannelKind};
use crate::error::{SendError, Violation};
use crate::fragment::ReassemblyBudget;
use crate::stats::{RecvChannelStats, SendChannelStats};
use crate::wire::{FrameWriter, Writer};
use crate::{DeliveryOutcome, MessageId};

use reliable::{ReliableRecv, ReliableSend};
use unreliable::{UnreliableRecv, UnreliableSend};

/// The frames of one packet, as the send halves need to remember them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SentRecord {
    /// A reliable message or one fragment of it.
    Reliable { channel: u8, id: u64, fragment: u32 },
    /// An unreliable message (or fragment) whose fate the application asked to learn.
    Notify { channel: u8, id: u64 },
}

/// Something a channel has for the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ChannelEvent {
    Message {
        channel: ChannelId,
        data: Bytes,
    },
    Delivery {
        channel: ChannelId,
        message: MessageId,
        outcome: DeliveryOutcome,
    },
}

/// What a send half writes into: the packet under construction.
pub(crate) struct PacketCtx<'a, 'b> {
    pub(crate) writer: &'a mut Writer<'b>,
    pub(crate) frames: &'a mut FrameWriter,
    pub(crate) records: &'a mut Vec<SentRecord>,
    pub(crate) now: Instant,
    pub(crate) packet_number: u64,
}

/// Sizes every send half needs to split messages.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizing {
    /// Largest message sent whole, without fragmentation.
    pub(crate) max_whole: usize,
    /// Payload bytes per fragment.
    pub(crate) piece_size: usize,
}

/// The send half of a channel.
#[derive(Debug)]
pub(crate) enum SendChannel {
    Unreliable(UnreliableSend),
    Reliable(ReliableSend),
}

impl SendChannel {
    pub(crate) fn new(id: u8, config: &ChannelConfig, sizing: Sizing) -> Self {
        if config.kind.is_reliable() {
            Self::Reliable(ReliableSend::new(id, config, sizing))
        } else {
            Self::Unreliable(UnreliableSend::new(id, config, sizing))
        }
    }

    pub(crate) fn send(&mut self, data: Bytes) -> Result<MessageId, SendError> {
        match self {
            Self::Unreliable(c) => c.send(data),
            Self::Reliable(c) => c.send(data),
        }
    }

    /// Whether something is waiting that could be written now.
    pub(crate) fn has_pending(&self) -> bool {
        match self {
            Self::Unreliable(c) => c.has_pending(),
            Self::Reliable(c) => c.has_pending(),
        }
    }

    /// Writes frames while they fit.
    pub(crate) fn write(&mut self, ctx: &mut PacketCtx<'_, '_>) {
        match self {
            Self::Unreliable(c) => c.write(ctx),
            Self::Reliable(c) => c.write(ctx),
        }
    }

    pub(crate) fn on_acked(&mut self, record: &SentRecord, events: &mut Vec<ChannelEvent>) {
        match self {
            Self::Unreliable(c) => c.on_acked(record, events),
            Self::Reliable(c) => c.on_acked(record),
        }
    }

    pub(crate) fn on_lost(
        &mut self,
        record: &SentRecord,
        packet_number: u64,
        events: &mut Vec<ChannelEvent>,
    ) {
        match self {
            Self::Unreliable(c) => c.on_lost(record, events),
            Self::Reliable(c) => c.on_lost(record, packet_number),
        }
    }

    /// Queues retransmissions of reliable units unacknowledged for `rto`; returns whether any
    /// timed out.
    pub(crate) fn on_timeout(&mut self, now: Instant, rto: Duration) -> bool {
        match self {
            Self::Reliable(c) => c.on_timeout(now, rto),
            Self::Unreliable(_) => false,
        }
    }

    /// When a reliable unit next becomes due for retransmission.
    pub(crate) fn next_timeout(&self, rto: Duration) -> Option<Instant> {
        match self {
            Self::Unreliable(_) => None,
            Self::Reliable(c) => c.next_timeout(rto),
        }
    }

    /// When the oldest reliable message still unacknowledged was first sent.
    pub(crate) fn oldest_unacked(&self) -> Option<Instant> {
        match self {
            Self::Unreliable(_) => None,
            Self::Reliable(c) => c.oldest_unacked(),
        }
    }

    /// Bytes queued or in flight.
    pub(crate) fn buffered(&self) -> usize {
        match self {
            Self::Unreliable(c) => c.buffered(),
            Self::Reliable(c) => c.buffered(),
        }
    }

    pub(crate) fn stats(&self) -> &SendChannelStats {
        match self {
            Self::Unreliable(c) => c.stats(),
            Self::Reliable(c) => c.stats(),
        }
    }
}

/// The receive half of a channel.
#[derive(Debug)]
pub(crate) enum RecvChannel {
    Unreliable(UnreliableRecv),
    Reliable(ReliableRecv),
}

/// A frame handed to a receive half.
#[derive(Clone, Debug)]
pub(crate) enum Incoming {
    Message {
        id: u16,
        data: Bytes,
    },
    Fragment {
        id: u16,
        index: u32,
        count: u32,
        data: Bytes,
    },
}

impl RecvChannel {
    pub(crate) fn new(id: u8, config: &ChannelConfig) -> Self {
        match config.kind {
            ChannelKind::Unreliable | ChannelKind::UnreliableSequenced => {
                Self::Unreliable(UnreliableRecv::new(id, config))
            }
            ChannelKind::ReliableOrdered | ChannelKind::ReliableUnordered => {
                Self::Reliable(ReliableRecv::new(id, config))
            }
        }
    }

    pub(crate) fn receive(
        &mut self,
        frame: Incoming,
        now: Instant,
        budget: &mut ReassemblyBudget,
        events: &mut Vec<ChannelEvent>,
    ) -> Result<(), Violation> {
        match self {
            Self::Unreliable(c) => c.receive(frame, now, budget, events),
            Self::Reliable(c) => c.receive(frame, now, budget, events),
        }
    }

    /// Drops incomplete unreliable messages older than `timeout`.
    pub(crate) fn expire(
        &mut self,
        now: Instant,
        timeout: Duration,
        budget: &mut ReassemblyBudget,
    ) {
        if let Self::Unreliable(c) = self {
            c.expire(now, timeout, budget);
        }
    }

    /// When the oldest incomplete unreliable message expires.
    pub(crate) fn next_expiry(&self, timeout: Duration) -> Option<Instant> {
        match self {
            Self::Unreliable(c) => c.next_expiry(timeout),
            Self::Reliable(_) => None,
        }
    }

    pub(crate) fn stats(&self) -> &RecvChannelStats {
        match self {
            Self::Unreliable(c) => c.stats(),
            Self::Reliable(c) => c.stats(),
        }
    }
}

/// Writes one frame of `channel` if it fits; returns whether it did.
pub(crate) fn write_frame(
    ctx: &mut PacketCtx<'_, '_>,
    channel: u8,
    kind: ChannelKind,
    body: &crate::wire::FrameBody<'_>,
) -> bool {
    if FrameWriter::frame_len(channel, kind, body) > ctx.writer.remaining() {
        return false;
    }
    ctx.frames.write(ctx.writer, channel, kind, body).is_ok()
}

/// Bookkeeping charged per queued message on top of its bytes, so that empty messages cannot
/// grow a queue without bound.
pub(crate) const MESSAGE_COST: usize = 16;

/// Bytes a message counts for against `max_buffered_bytes`.
pub(crate) fn message_cost(data: &Bytes) -> usize {
    data.len() + MESSAGE_COST
}

/// Checks a message against the channel's size and buffer limits before queueing it.
pub(crate) fn admit(
    data: Bytes,
    channel: u8,
    config: &ChannelConfig,
    buffered: usize,
) -> Result<Bytes, SendError> {
    if data.len() > config.max_message_size {
        return Err(SendError::TooLarge {
            channel: ChannelId(channel),
            size: data.len(),
            max: config.max_message_size,
            data,
        });
    }
    if buffered.saturating_add(message_cost(&data)) > config.max_buffered_bytes {
        return Err(SendError::BufferFull {
            channel: ChannelId(channel),
            data,
        });
    }
    Ok(data)
}
