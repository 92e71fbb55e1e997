//! One QUIC connection carrying Tickwire channels, the same on both ends.
//!
//! Sending is synchronous, like the native driver's: a reliable message goes into its channel's
//! queue, drained by one writer task per channel that owns that channel's unidirectional stream;
//! unreliable and sequenced messages leave at once as DATAGRAM frames, the messages of one
//! `send_many` packed together up to the size quinn reports; one larger than that size is split
//! into fragment frames of that size (reassembled by the receiver, lost whole if one is lost),
//! except on channels with `notify_delivery`, whose large messages go on the fallback stream, as
//! everything does when the peer takes no datagrams.
//! Receiving is one task per connection (accepting streams), one for its datagrams, and one
//! reader task per incoming stream; all of them push [`Event`]s into the driver's bounded
//! [`EventQueue`], a batch per datagram or stream read, and the connection's
//! [`Event::Disconnected`] comes after every message it delivered. A last task acknowledges the
//! reliable messages received and the tagged payloads of channels with `notify_delivery` (on
//! the fallback stream), so that the sender counts `messages_acked` and reports
//! [`Event::Delivery`] as natively; a timer task declares lost the tagged payloads that stay
//! unacknowledged.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use quinn::{ConnectionError, RecvStream, SendDatagramError};
use tokio::sync::{mpsc, Notify};
use tokio::task::{JoinHandle, JoinSet};

use super::events::EventQueue;
use super::framing::{self, put_frame, take_frame, Acks, DatagramHeader, Mode, FALLBACK_STREAM};
use super::framing::{Packer, Payload, TagAcks, TAG_HEADER};
use crate::driver::Transport;
use crate::fragment::{Reassembly, ReassemblyBudget};
use crate::{
    ChannelConfig, ChannelId, ChannelKind, ConnectionId, ConnectionStats, DeliveryOutcome,
    DisconnectReason, Event, MessageId, RecvChannelStats, SendChannelStats, SendError,
};

/// Close code of a connection whose peer broke the QUIC mapping.
pub(super) const VIOLATION_CODE: u16 = 0xFFF3;
/// Close code of a server shutting down (the same as the native protocol's).
pub(super) const SHUTDOWN_CODE: u16 = 0xFFF2;
/// Longest the readers may take to hand over what quinn still holds once a connection closed.
const READER_DRAIN: Duration = Duration::from_millis(200);
/// A writer coalesces queued messages into one stream write up to about this many bytes.
const WRITE_BATCH: usize = 256 * 1024;
/// Bytes asked of quinn per stream read.
const READ_CHUNK: usize = 256 * 1024;
/// After sending acknowledgements, the ack task waits this long before the next ones, so that
/// a busy stream costs at most a few hundred small acks frames a second.
const ACK_INTERVAL: Duration = Duration::from_millis(2);
/// Largest frame on the fallback stream besides unreliable messages: a packed DATAGRAM payload
/// or an acks frame.
const MAX_ENGINE_FRAME: usize = u16::MAX as usize;
/// A tagged payload is declared lost once a payload sent this many tags later was acknowledged
/// (as QUIC's packet threshold, RFC 9002)...
const REORDER_THRESHOLD: u32 = 3;
/// ...or once it went unacknowledged for three round trips, and at least this long.
const MIN_LOSS_TIMEOUT: Duration = Duration::from_millis(50);
/// The loss timer waits at least this long between looks at unacknowledged tagged payloads.
const LOSS_CHECK: Duration = Duration::from_millis(10);
/// Tags received and not yet acknowledged beyond this many are not acknowledged (their sender
/// declares them lost): a bound on what a flooding peer makes this side hold.
const MAX_PENDING_TAGS: usize = 16 * 1024;
/// Fragmented messages reassembled at once; a new one beyond this many drops the oldest
/// (whose missing pieces were most likely lost).
const MAX_REASSEMBLING: usize = 32;

/// What a [`Session`] may send and hold.
pub(crate) struct SessionLimits {
    /// Whether to send DATAGRAM frames (when the peer takes them).
    pub(crate) datagrams: bool,
    /// Bytes of fragmented messages held for reassembly at most
    /// (`Config::max_reassembly_bytes`).
    pub(crate) reassembly_bytes: usize,
}

/// A Tickwire connection over QUIC.
pub(crate) struct Session {
    /// The id named in events; a hybrid session takes its native half's id once paired.
    id: AtomicU64,
    conn: quinn::Connection,
    mode: Mode,
    /// Channels this side sends on, and receives on.
    send_channels: Vec<ChannelConfig>,
    recv_channels: Vec<ChannelConfig>,
    datagrams: bool,
    /// The largest message body (`channel | [seq] | message`) of an unreliable or sequenced
    /// channel this side receives on: the most a fragmented message may reassemble to.
    max_fragmented: usize,
    events: Arc<EventQueue>,
    send: Mutex<SendState>,
    recv: Mutex<RecvState>,
    /// Notified (all waiters) whenever a writer has handed a batch to quinn.
    drained: Arc<Notify>,
    /// Notified when reliable messages arrived that the peer has not been told about.
    ack_due: Notify,
    /// Notified when a tagged payload was recorded while none was awaiting its acknowledgement.
    tracking: Notify,
}

struct SendState {
    channels: Vec<SendSlot>,
    /// Packs DATAGRAM payloads; empty between calls.
    packer: Packer,
    /// Tagged payloads (of channels with `notify_delivery`) not yet acknowledged, oldest first.
    tracked: VecDeque<Tracked>,
    /// The next payload tag (its low 32 bits go on the wire).
    next_tag: u64,
    /// The number of the next fragmented message.
    next_fragmented: u32,
    fallback: Option<Writer>,
    /// The application closed the connection: no more sends.
    closing: Option<u16>,
}

#[derive(Default)]
struct SendSlot {
    next_id: u64,
    next_seq: u64,
    writer: Option<Writer>,
    stats: SendChannelStats,
}

struct Writer {
    queue: mpsc::UnboundedSender<Bytes>,
    buffered: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

/// quinn's datagram limits, read once per batch of sends.
struct DatagramRoom {
    /// The largest datagram quinn takes now (`None`: use the fallback stream).
    max: Option<usize>,
    /// Bytes quinn's datagram send buffer still takes, less what this batch queued.
    space: usize,
}

/// A tagged payload awaiting its acknowledgement.
struct Tracked {
    tag: u32,
    sent: Instant,
    channel: ChannelId,
    messages: Vec<MessageId>,
}

/// The state of one `send` or `send_many` call: quinn's limits, read on the first datagram,
/// and the DATAGRAM payload being packed (with the session's packer, taken for the call so
/// that its buffer serves many calls).
struct SendBatch {
    room: Option<DatagramRoom>,
    packer: Packer,
    /// Messages in the packer whose fate the application wants to know.
    tracked: Vec<MessageId>,
}

impl SendBatch {
    fn take(state: &mut SendState) -> Self {
        Self {
            room: None,
            packer: std::mem::take(&mut state.packer),
            tracked: Vec::new(),
        }
    }

    /// Gives the packer back (flushed).
    fn put_back(self, state: &mut SendState) {
        state.packer = self.packer;
    }
}

struct RecvState {
    /// Per channel, the newest sequence number delivered (sequenced channels).
    latest: Vec<Option<u64>>,
    stats: Vec<RecvChannelStats>,
    malformed: u64,
    /// Kind bytes of the streams the peer opened: each at most once.
    opened: Vec<u8>,
    /// Per channel, the reliable messages received as last acknowledged to the peer.
    acked: Vec<u64>,
    /// Tags of received payloads not yet acknowledged.
    tags: Vec<u32>,
    /// Fragmented messages being reassembled, by the sender's number, oldest first.
    reassembling: VecDeque<(u32, Reassembly)>,
    /// Bytes held in `reassembling`, with the connection's cap (`Config::max_reassembly_bytes`).
    budget: ReassemblyBudget,
}

impl Session {
    pub(super) fn new(
        id: ConnectionId,
        conn: quinn::Connection,
        mode: Mode,
        send_channels: Vec<ChannelConfig>,
        recv_channels: Vec<ChannelConfig>,
        limits: SessionLimits,
        events: Arc<EventQueue>,
    ) -> Arc<Self> {
        let SessionLimits {
            datagrams,
            reassembly_bytes,
        } = limits;
        let max_fragmented = recv_channels
            .iter()
            .filter(|c| !c.kind.is_reliable())
            .map(|c| c.max_message_size + 3)
            .max()
            .unwrap_or(0);
        Arc::new(Self {
            id: AtomicU64::new(id.0),
            conn,
            mode,
            send: Mutex::new(SendState {
                channels: send_channels.iter().map(|_| SendSlot::default()).collect(),
                packer: Packer::default(),
                tracked: VecDeque::new(),
                next_tag: 0,
                next_fragmented: 0,
                fallback: None,
                closing: None,
            }),
            recv: Mutex::new(RecvState {
                latest: vec![None; recv_channels.len()],
                stats: vec![RecvChannelStats::default(); recv_channels.len()],
                malformed: 0,
                opened: Vec::new(),
                acked: vec![0; recv_channels.len()],
                tags: Vec::new(),
                reassembling: VecDeque::new(),
                budget: ReassemblyBudget::new(reassembly_bytes),
            }),
            send_channels,
            recv_channels,
            datagrams,
            max_fragmented,
            events,
            drained: Arc::new(Notify::new()),
            ack_due: Notify::new(),
            tracking: Notify::new(),
        })
    }

    /// The connection id named in this session's events.
    pub(crate) fn id(&self) -> ConnectionId {
        ConnectionId(self.id.load(Ordering::Acquire))
    }

    /// Hybrid mode: from now on, events name the native half's id.
    pub(crate) fn pair(&self, native: ConnectionId) {
        self.id.store(native.0, Ordering::Release);
    }

    /// The kind of a channel this side sends on.
    pub(crate) fn send_kind(&self, channel: ChannelId) -> Option<ChannelKind> {
        self.send_channels
            .get(usize::from(channel.0))
            .map(|c| c.kind)
    }

    /// `Quic`, or `Hybrid` for the QUIC half of a hybrid connection.
    pub(crate) fn transport(&self) -> Transport {
        match self.mode {
            Mode::Full => Transport::Quic,
            Mode::Hybrid => Transport::Hybrid,
        }
    }

    /// The peer's address.
    pub(crate) fn remote_addr(&self) -> std::net::SocketAddr {
        self.conn.remote_address()
    }

    /// The peer's IP address.
    pub(crate) fn remote_ip(&self) -> std::net::IpAddr {
        self.conn.remote_address().ip()
    }

    /// Whether the connection is open and not closing.
    pub(crate) fn is_open(&self) -> bool {
        self.conn.close_reason().is_none() && self.lock_send().closing.is_none()
    }

    /// Queues a message (see the module docs for where it goes).
    pub(crate) fn send(&self, channel: ChannelId, data: Bytes) -> Result<MessageId, SendError> {
        let Some(config) = self.send_channels.get(usize::from(channel.0)) else {
            return Err(SendError::UnknownChannel(channel, data));
        };
        let closed = self.conn.close_reason().is_some();
        let mut state = self.lock_send();
        let mut batch = SendBatch::take(&mut state);
        let result = self.send_one(&mut state, config, channel, data, closed, &mut batch);
        // A lost connection shows in the next send; the message itself is unreliable.
        let _ = self.flush(&mut state, &mut batch, config, channel);
        batch.put_back(&mut state);
        result
    }

    /// Queues several messages on one channel under one lock, asking quinn for the path's
    /// state once. Returns how many were queued and, if one was refused, why (the rest are not
    /// queued).
    pub(crate) fn send_many(
        &self,
        channel: ChannelId,
        messages: impl IntoIterator<Item = Bytes>,
    ) -> (usize, Option<SendError>) {
        let mut messages = messages.into_iter();
        let Some(config) = self.send_channels.get(usize::from(channel.0)) else {
            let refused = messages
                .next()
                .map(|data| SendError::UnknownChannel(channel, data));
            return (0, refused);
        };
        let closed = self.conn.close_reason().is_some();
        let mut state = self.lock_send();
        let mut batch = SendBatch::take(&mut state);
        let mut queued = 0;
        let mut refused = None;
        for data in messages {
            if let Err(error) = self.send_one(&mut state, config, channel, data, closed, &mut batch)
            {
                refused = Some(error);
                break;
            }
            queued += 1;
        }
        let _ = self.flush(&mut state, &mut batch, config, channel);
        batch.put_back(&mut state);
        (queued, refused)
    }

    /// One message, with the send lock held; `closed`: quinn reported the connection closed;
    /// `batch` caches quinn's datagram limits for the call (its space shrinks by what the call
    /// queued) and packs its datagrams.
    fn send_one(
        &self,
        state: &mut SendState,
        config: &ChannelConfig,
        channel: ChannelId,
        data: Bytes,
        closed: bool,
        batch: &mut SendBatch,
    ) -> Result<MessageId, SendError> {
        if data.len() > config.max_message_size {
            return Err(SendError::TooLarge {
                channel,
                size: data.len(),
                max: config.max_message_size,
                data,
            });
        }
        if closed || state.closing.is_some() {
            return Err(SendError::NotConnected(data));
        }
        let slot = &mut state.channels[usize::from(channel.0)];
        let len = data.len() as u64;
        match config.kind {
            ChannelKind::ReliableOrdered | ChannelKind::ReliableUnordered => {
                let writer = slot.writer.get_or_insert_with(|| {
                    Writer::spawn(self.conn.clone(), channel.0, Arc::clone(&self.drained))
                });
                writer.push(data, config.max_buffered_bytes, channel)?;
            }
            ChannelKind::Unreliable | ChannelKind::UnreliableSequenced => {
                let header_len = if config.kind == ChannelKind::UnreliableSequenced {
                    3
                } else {
                    1
                };
                let room = batch.room.get_or_insert_with(|| DatagramRoom {
                    max: if self.datagrams {
                        self.conn.max_datagram_size()
                    } else {
                        None
                    },
                    space: self.conn.datagram_send_buffer_space(),
                });
                let size = header_len + data.len();
                let datagram_max = room.max;
                // A channel with delivery notices tags its payloads.
                let tag_len = if config.notify_delivery {
                    TAG_HEADER
                } else {
                    0
                };
                let max = datagram_max
                    .map(|max| max.saturating_sub(tag_len))
                    .filter(|&max| size <= max);
                if let Some(max) = max {
                    if batch.packer.len_with(size) > max {
                        if let Err(lost) = self.flush(state, batch, config, channel) {
                            return Err(lost.with_data(data));
                        }
                    }
                    let room = batch.room.as_ref().map_or(0, |r| r.space);
                    if room < batch.packer.len_with(size) + tag_len {
                        // quinn would drop older queued datagrams to make room: push back
                        // instead, as the native driver does when its send buffer is full.
                        let _ = self.flush(state, batch, config, channel);
                        return Err(SendError::BufferFull { channel, data });
                    }
                } else if let Err(lost) = self.flush(state, batch, config, channel) {
                    return Err(lost.with_data(data));
                }
                // Too large for one datagram: fragments of the size quinn reports, unless the
                // channel wants delivery notices (one tag per message: the fallback stream).
                let fragment_into = datagram_max.filter(|&datagram| {
                    max.is_none()
                        && !config.notify_delivery
                        && framing::fragment_count(size, datagram).is_some()
                });
                if let Some(datagram) = fragment_into {
                    let space = batch.room.as_ref().map_or(0, |r| r.space);
                    if space < framing::fragmented_len(size, datagram) {
                        return Err(SendError::BufferFull { channel, data });
                    }
                }
                let slot = &mut state.channels[usize::from(channel.0)];
                let seq = (config.kind == ChannelKind::UnreliableSequenced).then(|| {
                    slot.next_seq += 1;
                    crate::seq::truncate(slot.next_seq - 1)
                });
                let header = DatagramHeader {
                    channel: channel.0,
                    seq,
                };
                let id = MessageId(slot.next_id);
                match (max, fragment_into) {
                    (Some(max), _) => {
                        batch.packer.push(header, &data, max);
                        if config.notify_delivery {
                            batch.tracked.push(id);
                        }
                    }
                    (None, Some(datagram)) => {
                        if self
                            .send_fragments(state, batch, &header.encode(&data), datagram)
                            .is_err()
                        {
                            return Err(SendError::NotConnected(data));
                        }
                    }
                    (None, None) => {
                        let mut body = header.encode(&data);
                        if config.notify_delivery {
                            let tag = self.track(state, channel, vec![id]);
                            body = framing::tag(tag, &body);
                        }
                        if self.push_fallback(state, body, config, channel).is_err() {
                            return Err(SendError::BufferFull { channel, data });
                        }
                    }
                }
            }
        }
        let slot = &mut state.channels[usize::from(channel.0)];
        let id = MessageId(slot.next_id);
        slot.next_id += 1;
        slot.stats.messages_sent += 1;
        slot.stats.bytes_sent += len;
        Ok(id)
    }

    /// Hands the packed DATAGRAM payload of `batch` to quinn (or, if quinn no longer takes it,
    /// to the fallback stream). Fails only if the connection is lost.
    fn flush(
        &self,
        state: &mut SendState,
        batch: &mut SendBatch,
        config: &ChannelConfig,
        channel: ChannelId,
    ) -> Result<(), Lost> {
        let Some(mut body) = batch.packer.finish() else {
            return Ok(());
        };
        if !batch.tracked.is_empty() {
            let tag = self.track(state, channel, std::mem::take(&mut batch.tracked));
            body = framing::tag(tag, &body);
        }
        let len = body.len();
        match self.conn.send_datagram(body.clone()) {
            Ok(()) => {
                if let Some(room) = &mut batch.room {
                    room.space = room.space.saturating_sub(len);
                }
                Ok(())
            }
            Err(SendDatagramError::ConnectionLost(_)) => Err(Lost),
            // The path shrank or the peer turned datagrams off: use the stream. Unreliable
            // messages refused there for want of room are dropped, as on a full link.
            Err(_) => {
                let _ = self.push_fallback(state, body, config, channel);
                Ok(())
            }
        }
    }

    /// Sends a message body too large for one DATAGRAM frame as fragment frames of at most
    /// `datagram` bytes (the caller checked that it fragments, and that quinn has room for all
    /// of them). Fails only if the connection is lost.
    fn send_fragments(
        &self,
        state: &mut SendState,
        batch: &mut SendBatch,
        body: &[u8],
        datagram: usize,
    ) -> Result<(), Lost> {
        let message = state.next_fragmented;
        state.next_fragmented = message.wrapping_add(1);
        let Some(frames) = framing::fragments(message, body, datagram) else {
            return Ok(());
        };
        for frame in frames {
            let len = frame.len();
            match self.conn.send_datagram(frame) {
                Ok(()) => {
                    if let Some(room) = &mut batch.room {
                        room.space = room.space.saturating_sub(len);
                    }
                }
                Err(SendDatagramError::ConnectionLost(_)) => return Err(Lost),
                // The path shrank under the message: the rest is not sent, the message is
                // lost whole, as on a lossy link.
                Err(_) => return Ok(()),
            }
        }
        Ok(())
    }

    /// Records a tagged payload carrying `messages`; returns its tag.
    fn track(&self, state: &mut SendState, channel: ChannelId, messages: Vec<MessageId>) -> u32 {
        let tag = state.next_tag as u32;
        state.next_tag += 1;
        if state.tracked.is_empty() {
            self.tracking.notify_one();
        }
        state.tracked.push_back(Tracked {
            tag,
            sent: Instant::now(),
            channel,
            messages,
        });
        tag
    }

    /// Queues a datagram payload on the fallback stream, within the channel's buffer limit.
    fn push_fallback(
        &self,
        state: &mut SendState,
        body: Bytes,
        config: &ChannelConfig,
        channel: ChannelId,
    ) -> Result<(), SendError> {
        let writer = state.fallback.get_or_insert_with(|| {
            Writer::spawn(
                self.conn.clone(),
                FALLBACK_STREAM,
                Arc::clone(&self.drained),
            )
        });
        writer.push(body, config.max_buffered_bytes, channel)
    }

    /// Sends, waiting while the channel's queue is full.
    pub(crate) async fn send_wait(
        &self,
        channel: ChannelId,
        mut data: Bytes,
    ) -> Result<MessageId, SendError> {
        loop {
            let drained = self.drained.notified();
            match self.send(channel, data) {
                Err(SendError::BufferFull { data: back, .. }) => {
                    data = back;
                    let datagram = self
                        .send_kind(channel)
                        .is_some_and(|kind| !kind.is_reliable());
                    if datagram {
                        return self.send_datagram_wait(channel, data).await;
                    }
                    tokio::select! {
                        () = drained => {}
                        _ = self.conn.closed() => return Err(SendError::NotConnected(data)),
                    }
                }
                other => return other,
            }
        }
    }

    /// A datagram refused for want of buffer room: numbered now, handed to quinn once it has
    /// room (quinn's own wait, without dropping older datagrams), as one DATAGRAM frame or as
    /// fragments; or, where it goes on the fallback stream, queued there once that has room.
    async fn send_datagram_wait(
        &self,
        channel: ChannelId,
        data: Bytes,
    ) -> Result<MessageId, SendError> {
        let Some(config) = self.send_channels.get(usize::from(channel.0)) else {
            return Err(SendError::UnknownChannel(channel, data));
        };
        let sequenced = config.kind == ChannelKind::UnreliableSequenced;
        let notify = config.notify_delivery;
        let datagram = if self.datagrams {
            self.conn.max_datagram_size()
        } else {
            None
        };
        let (body, id, route) = {
            let mut state = self.lock_send();
            if state.closing.is_some() {
                return Err(SendError::NotConnected(data));
            }
            let slot = &mut state.channels[usize::from(channel.0)];
            let seq = sequenced.then(|| {
                slot.next_seq += 1;
                crate::seq::truncate(slot.next_seq - 1)
            });
            let id = MessageId(slot.next_id);
            slot.next_id += 1;
            slot.stats.messages_sent += 1;
            slot.stats.bytes_sent += data.len() as u64;
            let header = DatagramHeader {
                channel: channel.0,
                seq,
            };
            let mut body = header.encode(&data);
            let route = match datagram {
                Some(max) if body.len() + if notify { TAG_HEADER } else { 0 } <= max => {
                    Route::Datagram
                }
                Some(max) if !notify && framing::fragment_count(body.len(), max).is_some() => {
                    let message = state.next_fragmented;
                    state.next_fragmented = message.wrapping_add(1);
                    Route::Fragments { message, max }
                }
                _ => Route::Fallback,
            };
            if notify {
                let tag = self.track(&mut state, channel, vec![id]);
                body = framing::tag(tag, &body);
            }
            (body, id, route)
        };
        let frames: Vec<Bytes> = match route {
            Route::Datagram => vec![body],
            Route::Fragments { message, max } => framing::fragments(message, &body, max)
                .map(Iterator::collect)
                .unwrap_or_default(),
            Route::Fallback => loop {
                let drained = self.drained.notified();
                match self.push_fallback(&mut self.lock_send(), body.clone(), config, channel) {
                    Ok(()) => return Ok(id),
                    Err(SendError::BufferFull { .. }) => {}
                    Err(_) => return Err(SendError::NotConnected(data)),
                }
                tokio::select! {
                    () = drained => {}
                    _ = self.conn.closed() => return Err(SendError::NotConnected(data)),
                }
            },
        };
        for frame in frames {
            match self.conn.send_datagram_wait(frame).await {
                Ok(()) => {}
                Err(SendDatagramError::ConnectionLost(_)) => {
                    return Err(SendError::NotConnected(data))
                }
                // The path shrank below it: unreliable, like a drop.
                Err(_) => break,
            }
        }
        Ok(id)
    }

    /// Closes gracefully: what was queued is written and acknowledged (for at most `drain`),
    /// then the connection closes with `code`.
    pub(crate) async fn close(&self, code: u16, drain: Duration) {
        let writers: Vec<Writer> = {
            let mut state = self.lock_send();
            if state.closing.is_some() {
                return;
            }
            state.closing = Some(code);
            let fallback = state.fallback.take();
            state
                .channels
                .iter_mut()
                .filter_map(|slot| slot.writer.take())
                .chain(fallback)
                .collect()
        };
        let finish = async {
            for writer in writers {
                drop(writer.queue);
                let _ = writer.task.await;
            }
        };
        let _ = tokio::time::timeout(drain, finish).await;
        self.conn.close(quinn::VarInt::from(code), b"");
    }

    /// Closes at once, without draining.
    pub(crate) fn abort(&self, code: u16) {
        self.lock_send().closing.get_or_insert(code);
        self.conn.close(quinn::VarInt::from(code), b"");
    }

    /// The connection's statistics: quinn's path figures and this session's channel counters.
    pub(crate) fn stats(&self) -> ConnectionStats {
        let quic = self.conn.stats();
        let send = self.lock_send();
        let recv = self.lock_recv();
        let packets_sent = quic.udp_tx.datagrams;
        ConnectionStats {
            transport: self.transport(),
            rtt: quic.path.rtt,
            latest_rtt: quic.path.rtt,
            min_rtt: quic.path.rtt,
            loss_rate: if packets_sent == 0 {
                0.0
            } else {
                quic.path.lost_packets as f64 / packets_sent as f64
            },
            packets_sent,
            packets_received: quic.udp_rx.datagrams,
            packets_lost: quic.path.lost_packets,
            bytes_sent: quic.udp_tx.bytes,
            bytes_received: quic.udp_rx.bytes,
            congestion_window: quic.path.cwnd as usize,
            dropped: crate::DropCounters {
                malformed: recv.malformed,
                ..Default::default()
            },
            send_channels: send.channels.iter().map(|s| s.stats.clone()).collect(),
            recv_channels: recv.stats.clone(),
            ..ConnectionStats::default()
        }
    }

    /// Hybrid mode: replaces the reliable channels' counters in the native half's `stats`
    /// with this session's, which carries them, and marks them `Hybrid`.
    pub(crate) fn overlay_reliable(&self, stats: &mut ConnectionStats) {
        stats.transport = Transport::Hybrid;
        let send = self.lock_send();
        for ((mine, theirs), config) in send
            .channels
            .iter()
            .zip(stats.send_channels.iter_mut())
            .zip(&self.send_channels)
        {
            if config.kind.is_reliable() {
                *theirs = mine.stats.clone();
            }
        }
        drop(send);
        let recv = self.lock_recv();
        for ((mine, theirs), config) in recv
            .stats
            .iter()
            .zip(stats.recv_channels.iter_mut())
            .zip(&self.recv_channels)
        {
            if config.kind.is_reliable() {
                *theirs = mine.clone();
            }
        }
        stats.dropped.malformed += recv.malformed;
    }

    /// Receives until the connection closes, then reports [`Event::Disconnected`].
    pub(super) async fn run(self: Arc<Self>) {
        // Datagrams in a task of their own: each one costs a single poll of quinn's queue,
        // without re-arming the stream accept alongside it.
        let mut readers = JoinSet::new();
        readers.spawn(Arc::clone(&self).read_datagrams());
        if !self.recv_channels.is_empty() {
            readers.spawn(Arc::clone(&self).send_acks());
        }
        if self.send_channels.iter().any(|c| c.notify_delivery) {
            readers.spawn(Arc::clone(&self).expire_tracked());
        }
        loop {
            tokio::select! {
                stream = self.conn.accept_uni() => match stream {
                    Ok(stream) => {
                        readers.spawn(Arc::clone(&self).read_stream(stream));
                    }
                    Err(_) => break,
                },
                Some(_) = readers.join_next() => {}
            }
        }
        let drain = async { while readers.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(READER_DRAIN, drain).await;
        readers.abort_all();
        if self.mode == Mode::Hybrid {
            // The native half's end is the logical connection's end.
            return;
        }
        let reason = self.disconnect_reason();
        self.events.push(Event::Disconnected {
            connection: self.id(),
            reason,
        });
    }

    fn disconnect_reason(&self) -> DisconnectReason {
        let local = self.lock_send().closing;
        match self.conn.close_reason() {
            Some(ConnectionError::ApplicationClosed(close)) => DisconnectReason::Remote {
                code: u16::try_from(close.error_code.into_inner()).unwrap_or(u16::MAX),
            },
            Some(ConnectionError::LocallyClosed) | None => match local {
                Some(SHUTDOWN_CODE) => DisconnectReason::Shutdown,
                Some(code) => DisconnectReason::Local { code },
                None => DisconnectReason::Shutdown,
            },
            Some(_) => DisconnectReason::Timeout,
        }
    }

    /// Reads DATAGRAM frames until the connection closes.
    async fn read_datagrams(self: Arc<Self>) {
        let mut batch = Vec::new();
        while let Ok(datagram) = self.conn.read_datagram().await {
            self.on_payload(datagram, &mut batch);
        }
    }

    /// Tells the peer, on the fallback stream, how many reliable messages arrived per channel,
    /// whenever more did (at most once per [`ACK_INTERVAL`]), until the connection closes.
    async fn send_acks(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = self.ack_due.notified() => {}
                _ = self.conn.closed() => return,
            }
            let (acks, tags): (Vec<(u8, u64)>, Vec<u32>) = {
                let mut recv = self.lock_recv();
                let recv = &mut *recv;
                let acks = recv
                    .acked
                    .iter_mut()
                    .zip(&recv.stats)
                    .enumerate()
                    .filter(|(_, (acked, stats))| stats.messages_delivered > **acked)
                    .map(|(channel, (acked, stats))| {
                        *acked = stats.messages_delivered;
                        (channel as u8, *acked)
                    })
                    .collect();
                (acks, std::mem::take(&mut recv.tags))
            };
            if acks.is_empty() && tags.is_empty() {
                continue;
            }
            {
                let mut state = self.lock_send();
                if state.closing.is_some() {
                    return;
                }
                let writer = state.fallback.get_or_insert_with(|| {
                    Writer::spawn(
                        self.conn.clone(),
                        FALLBACK_STREAM,
                        Arc::clone(&self.drained),
                    )
                });
                if !acks.is_empty() {
                    writer.push_unlimited(Acks::encode(acks.into_iter()));
                }
                for tags in tags.chunks(MAX_ENGINE_FRAME / 4 - 1) {
                    writer.push_unlimited(TagAcks::encode(tags));
                }
            }
            tokio::time::sleep(ACK_INTERVAL).await;
        }
    }

    /// Reads one incoming stream: its kind byte, then length-prefixed frames.
    async fn read_stream(self: Arc<Self>, mut stream: RecvStream) {
        let mut kind = [0u8; 1];
        if stream.read_exact(&mut kind).await.is_err() {
            return;
        }
        let kind = kind[0];
        let max = if kind == FALLBACK_STREAM {
            self.recv_channels
                .iter()
                .filter(|c| !c.kind.is_reliable())
                .map(|c| c.max_message_size + 3)
                .max()
                .map_or(Some(MAX_ENGINE_FRAME), |max| {
                    Some(max.max(MAX_ENGINE_FRAME))
                })
        } else {
            self.recv_channels
                .get(usize::from(kind))
                .filter(|c| c.kind.is_reliable())
                .map(|c| c.max_message_size)
        };
        let Some(max) = max else {
            return self.violation();
        };
        {
            let mut recv = self.lock_recv();
            if recv.opened.contains(&kind) {
                // A second stream for one channel would break its order.
                drop(recv);
                return self.violation();
            }
            recv.opened.push(kind);
        }
        let mut buf = BytesMut::new();
        let mut batch = Vec::new();
        loop {
            let mut frames = Vec::new();
            loop {
                match take_frame(&mut buf, max) {
                    Ok(Some(frame)) if kind == FALLBACK_STREAM => {
                        self.on_payload(frame, &mut batch);
                    }
                    Ok(Some(frame)) => frames.push(frame),
                    Ok(None) => break,
                    Err(_) => return self.violation(),
                }
            }
            if !frames.is_empty() {
                // Reliable data waits for room in the queue: QUIC flow control then pushes
                // back on the sender.
                self.events.wait_room().await;
                self.deliver(kind, frames, &mut batch);
            }
            match stream.read_chunk(READ_CHUNK, true).await {
                Ok(Some(chunk)) if buf.is_empty() => buf = BytesMut::from(chunk.bytes),
                Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
                Ok(None) | Err(_) => return,
            }
        }
    }

    /// A DATAGRAM payload, from a DATAGRAM frame or the fallback stream: its messages go into
    /// the event queue as one batch (`batch` is scratch space, left empty).
    fn on_payload(&self, body: Bytes, batch: &mut Vec<Event>) {
        let connection = self.id();
        let mut payload = Payload::classify(body);
        let mut tagged = None;
        if let Ok(Payload::Tagged { tag, inner }) = payload {
            tagged = Some(tag);
            payload = Payload::classify(inner);
        }
        let mut recv = self.lock_recv();
        match payload {
            Ok(Payload::Message(body)) => self.decode_message(&mut recv, connection, body, batch),
            Ok(Payload::Packed(bodies)) => {
                for body in bodies {
                    match body {
                        Ok(body) => self.decode_message(&mut recv, connection, body, batch),
                        Err(_) => recv.malformed += 1,
                    }
                }
            }
            Ok(Payload::Acks(acks)) if tagged.is_none() => {
                drop(recv);
                return self.on_acks(acks);
            }
            Ok(Payload::TagAcks(tags)) if tagged.is_none() => {
                drop(recv);
                return self.on_tag_acks(tags);
            }
            Ok(Payload::Fragment {
                message,
                index,
                count,
                piece,
            }) if tagged.is_none() => {
                let Some(body) = self.reassemble(&mut recv, message, index, count, piece) else {
                    return;
                };
                self.decode_message(&mut recv, connection, body, batch);
            }
            // Broken, or a tag around something other than messages.
            _ => {
                recv.malformed += 1;
                return;
            }
        }
        if let Some(tag) = tagged {
            if recv.tags.len() < MAX_PENDING_TAGS {
                recv.tags.push(tag);
            }
            self.ack_due.notify_one();
        }
        self.events.push_messages(batch);
        // What did not fit is dropped: the application is not keeping up.
        for event in batch.drain(..) {
            if let Event::Message { channel, data, .. } = event {
                let stats = &mut recv.stats[usize::from(channel.0)];
                stats.messages_delivered -= 1;
                stats.bytes_delivered -= data.len() as u64;
                stats.messages_dropped += 1;
            }
        }
    }

    /// Adds a fragment to its message; returns the message body once it is whole. Makes room
    /// by dropping the oldest incomplete messages (count, then bytes); a fragment that
    /// contradicts its message's others drops that message and counts as malformed.
    fn reassemble(
        &self,
        recv: &mut RecvState,
        message: u32,
        index: u16,
        count: u16,
        piece: Bytes,
    ) -> Option<Bytes> {
        let RecvState {
            reassembling,
            budget,
            malformed,
            ..
        } = recv;
        let older = |reassembling: &VecDeque<(u32, Reassembly)>| {
            reassembling.front().is_some_and(|(m, _)| *m != message)
        };
        while budget.used.saturating_add(piece.len()) > budget.limit && older(reassembling) {
            if let Some((_, oldest)) = reassembling.pop_front() {
                oldest.discard(budget);
            }
        }
        let at = match reassembling.iter().position(|(m, _)| *m == message) {
            Some(at) => at,
            None => {
                if reassembling.len() >= MAX_REASSEMBLING {
                    if let Some((_, oldest)) = reassembling.pop_front() {
                        oldest.discard(budget);
                    }
                }
                reassembling.push_back((message, Reassembly::new(count.into(), Instant::now())));
                reassembling.len() - 1
            }
        };
        let (_, entry) = reassembling.get_mut(at)?;
        let inserted = entry.insert(
            index.into(),
            count.into(),
            piece,
            self.max_fragmented,
            budget,
        );
        match inserted {
            Ok(false) => None,
            Ok(true) => reassembling
                .remove(at)
                .map(|(_, whole)| whole.assemble(budget)),
            Err(_) => {
                if let Some((_, broken)) = reassembling.remove(at) {
                    broken.discard(budget);
                }
                *malformed += 1;
                None
            }
        }
    }

    /// One message body of a datagram payload, checked and counted, appended to `batch`.
    fn decode_message(
        &self,
        recv: &mut RecvState,
        connection: ConnectionId,
        body: Bytes,
        batch: &mut Vec<Event>,
    ) {
        let channels = &self.recv_channels;
        let decoded = DatagramHeader::decode(body, |channel| {
            match channels.get(usize::from(channel))?.kind {
                ChannelKind::Unreliable => Some(false),
                ChannelKind::UnreliableSequenced => Some(true),
                _ => None,
            }
        });
        let Ok((header, payload)) = decoded else {
            recv.malformed += 1;
            return;
        };
        let index = usize::from(header.channel);
        if payload.len() > channels[index].max_message_size {
            recv.malformed += 1;
            return;
        }
        if let Some(wire) = header.seq {
            let latest = recv.latest[index];
            let full = crate::seq::extend(latest.map_or(0, |l| l + 1), wire);
            if latest.is_some_and(|l| full <= l) {
                recv.stats[index].messages_dropped += 1;
                return;
            }
            recv.latest[index] = Some(full);
        }
        let stats = &mut recv.stats[index];
        stats.messages_delivered += 1;
        stats.bytes_delivered += payload.len() as u64;
        batch.push(Event::Message {
            connection,
            channel: ChannelId(header.channel),
            data: payload,
        });
    }

    /// The peer's acknowledgements of reliable messages this side sent.
    fn on_acks(&self, acks: Acks) {
        let mut state = self.lock_send();
        let mut bogus = false;
        for (channel, received) in acks {
            let reliable = self
                .send_channels
                .get(usize::from(channel))
                .is_some_and(|c| c.kind.is_reliable());
            let Some(slot) = state.channels.get_mut(usize::from(channel)) else {
                bogus = true;
                continue;
            };
            if !reliable || received > slot.stats.messages_sent {
                bogus = true;
                continue;
            }
            slot.stats.messages_acked = slot.stats.messages_acked.max(received);
        }
        drop(state);
        if bogus {
            self.lock_recv().malformed += 1;
        }
    }

    /// The peer's acknowledgements of tagged payloads: their messages are delivered; payloads
    /// sent [`REORDER_THRESHOLD`] tags before an acknowledged one are lost.
    fn on_tag_acks(&self, tags: TagAcks) {
        let mut events = Vec::new();
        let mut state = self.lock_send();
        for tag in tags {
            // The deque is in tag order (wrapping): binary search by distance from the oldest.
            // Unknown tags were already declared lost (or are bogus): nothing to do.
            let Some(oldest) = state.tracked.front().map(|t| t.tag) else {
                break;
            };
            let distance = tag.wrapping_sub(oldest);
            let at = state
                .tracked
                .partition_point(|t| t.tag.wrapping_sub(oldest) < distance);
            if state.tracked.get(at).is_none_or(|t| t.tag != tag) {
                continue;
            }
            if let Some(acked) = state.tracked.remove(at) {
                self.settle(&mut state, acked, DeliveryOutcome::Acked, &mut events);
            }
            while let Some(front) = state.tracked.front() {
                let behind = tag.wrapping_sub(front.tag);
                if !(REORDER_THRESHOLD..1 << 31).contains(&behind) {
                    break;
                }
                if let Some(lost) = state.tracked.pop_front() {
                    self.settle(&mut state, lost, DeliveryOutcome::Lost, &mut events);
                }
            }
        }
        drop(state);
        self.events.push_all(&mut events);
    }

    /// Declares lost the tagged payloads unacknowledged for three round trips, until the
    /// connection closes. Sleeps while none is awaiting its acknowledgement.
    async fn expire_tracked(self: Arc<Self>) {
        let mut events = Vec::new();
        loop {
            let timeout = (self.conn.rtt() * 3 + ACK_INTERVAL).max(MIN_LOSS_TIMEOUT);
            let oldest = self.lock_send().tracked.front().map(|t| t.sent);
            let wake = async {
                match oldest {
                    // At the oldest one's deadline, but no more often than every LOSS_CHECK.
                    Some(sent) => {
                        let at = (sent + timeout).max(Instant::now() + LOSS_CHECK);
                        tokio::time::sleep_until(at.into()).await;
                    }
                    None => self.tracking.notified().await,
                }
            };
            tokio::select! {
                () = wake => {}
                _ = self.conn.closed() => return,
            }
            let now = Instant::now();
            let mut state = self.lock_send();
            while state
                .tracked
                .front()
                .is_some_and(|t| now.duration_since(t.sent) >= timeout)
            {
                if let Some(lost) = state.tracked.pop_front() {
                    self.settle(&mut state, lost, DeliveryOutcome::Lost, &mut events);
                }
            }
            drop(state);
            self.events.push_all(&mut events);
        }
    }

    /// Counts the fate of a tagged payload's messages and appends their delivery events.
    fn settle(
        &self,
        state: &mut SendState,
        payload: Tracked,
        outcome: DeliveryOutcome,
        events: &mut Vec<Event>,
    ) {
        let connection = self.id();
        if let Some(slot) = state.channels.get_mut(usize::from(payload.channel.0)) {
            let n = payload.messages.len() as u64;
            match outcome {
                DeliveryOutcome::Acked => slot.stats.messages_acked += n,
                DeliveryOutcome::Lost => slot.stats.messages_lost += n,
            }
        }
        events.extend(payload.messages.into_iter().map(|message| Event::Delivery {
            connection,
            channel: payload.channel,
            message,
            outcome,
        }));
    }

    /// Reliable messages of one stream read, counted and queued as one batch.
    fn deliver(&self, channel: u8, frames: Vec<Bytes>, batch: &mut Vec<Event>) {
        let connection = self.id();
        if let Some(stats) = self.lock_recv().stats.get_mut(usize::from(channel)) {
            stats.messages_delivered += frames.len() as u64;
            stats.bytes_delivered += frames.iter().map(|f| f.len() as u64).sum::<u64>();
        }
        batch.extend(frames.into_iter().map(|data| Event::Message {
            connection,
            channel: ChannelId(channel),
            data,
        }));
        self.events.push_all(batch);
        self.ack_due.notify_one();
    }

    /// The peer broke the mapping: count it and close the connection.
    fn violation(&self) {
        self.lock_recv().malformed += 1;
        self.abort(VIOLATION_CODE);
    }

    fn lock_send(&self) -> MutexGuard<'_, SendState> {
        // A panic while holding the lock is a bug elsewhere; the state itself stays usable.
        self.send.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_recv(&self) -> MutexGuard<'_, RecvState> {
        self.recv.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Writer {
    /// A writer for a new unidirectional stream that starts with `kind`.
    fn spawn(conn: quinn::Connection, kind: u8, drained: Arc<Notify>) -> Self {
        let (queue, messages) = mpsc::unbounded_channel();
        let buffered = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(write_stream(
            conn,
            kind,
            messages,
            Arc::clone(&buffered),
            drained,
        ));
        Self {
            queue,
            buffered,
            task,
        }
    }

    /// Queues a frame body whatever is waiting (the engine's own small frames).
    fn push_unlimited(&self, data: Bytes) {
        self.buffered.fetch_add(data.len(), Ordering::AcqRel);
        let _ = self.queue.send(data);
    }

    /// Queues a frame body unless `limit` bytes are already waiting.
    fn push(&self, data: Bytes, limit: usize, channel: ChannelId) -> Result<(), SendError> {
        let len = data.len();
        if self.buffered.load(Ordering::Acquire) + len > limit {
            return Err(SendError::BufferFull { channel, data });
        }
        self.buffered.fetch_add(len, Ordering::AcqRel);
        self.queue
            .send(data)
            .map_err(|refused| SendError::NotConnected(refused.0))
    }
}

/// Writes one stream: the kind byte, then each queued body as a length-prefixed frame, several
/// per write; finishes the stream (and waits for the peer to acknowledge it) once the queue
/// closes.
async fn write_stream(
    conn: quinn::Connection,
    kind: u8,
    mut messages: mpsc::UnboundedReceiver<Bytes>,
    buffered: Arc<AtomicUsize>,
    drained: Arc<Notify>,
) {
    let Ok(mut stream) = conn.open_uni().await else {
        return;
    };
    let mut buf = BytesMut::with_capacity(WRITE_BATCH + framing::LENGTH_PREFIX);
    buf.extend_from_slice(&[kind]);
    while let Some(first) = messages.recv().await {
        let mut taken = first.len();
        put_frame(&mut buf, &first);
        while buf.len() < WRITE_BATCH {
            let Ok(next) = messages.try_recv() else {
                break;
            };
            taken += next.len();
            put_frame(&mut buf, &next);
        }
        let result = stream.write_chunk(buf.split().freeze()).await;
        buffered.fetch_sub(taken, Ordering::AcqRel);
        drained.notify_waiters();
        if result.is_err() {
            return;
        }
    }
    let _ = stream.finish();
    let _ = stream.stopped().await;
}

/// Where [`Session::send_datagram_wait`] sends a message.
enum Route {
    /// One DATAGRAM frame.
    Datagram,
    /// Fragment frames of at most `max` bytes, numbered `message`.
    Fragments { message: u32, max: usize },
    /// The fallback stream.
    Fallback,
}

/// The connection was lost while sending.
struct Lost;

impl Lost {
    /// The refusal of the message that was being sent.
    fn with_data(self, data: Bytes) -> SendError {
        SendError::NotConnected(data)
    }
}
