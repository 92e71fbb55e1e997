//! The world and its per-client delta snapshots: [`SnapshotServer`] encodes, [`SnapshotClient`]
//! decodes, both agree on [`View`]s.
//!
//! ## How structural changes stay safe under loss
//!
//! Every snapshot is a delta against a whole [`View`]: the state of every entity as the client
//! holds it after decoding an earlier snapshot. The server keeps, per client, the views it sent
//! (the last `history` of them); the client keeps the views it decoded. The server encodes
//! against the newest view the client *acknowledged* (through the transport's delivery
//! notification), so the client always holds the baseline; if none is acknowledged, or it is
//! `history` snapshots old, the snapshot is full. The decoded result is again a whole view.
//!
//! - A **created** entity is sent with its full state, never as a delta, so it never appears
//!   without its initial value.
//! - A **removed** entity is listed as removed in every snapshot until the client acknowledges
//!   a view without it; a view never regains it unless the server creates it again. A stale
//!   snapshot that still has it is decoded (to keep its view as a baseline) but never rendered:
//!   [`SnapshotClient::receive`] reports only snapshots newer than the newest seen.
//! - Entities left out by the **bandwidth budget** keep their baseline state in the new view
//!   and are sent later; the priority accumulator makes sure starved ones catch up. An entity
//!   already carried since the baseline goes first until the snapshot that first carried it
//!   is acknowledged: left out before, the new view would step back to the baseline's state,
//!   however old; left out after, it falls back by at most a round trip (the baseline then
//!   holds the state it was carried with).
//! - **Interest**: an entity outside a client's filter is removed from that client's view;
//!   entering scope is a creation.
//!
//! ## Layout (bit-packed, [`BitWriter`])
//!
//! ```text
//! seq        varint   snapshot number for this client, from 1
//! tick       varint   the server's simulation tick
//! baseline   varint   0: full snapshot; n: delta against snapshot seq - n
//! predict    deltas only: up to 2 varints n > 0, each naming snapshot (the one named before,
//!            starting at the baseline) - n as a prediction view; a 0 ends the list early
//! removed    Exp-Golomb(0) count, then the ids ascending as Exp-Golomb(0) gaps
//! order      3 bits   k: the Exp-Golomb order of the entry id gaps, the encoder's choice
//! count      varint   number of entries
//! entries    count times, ids ascending:
//!              gap    Exp-Golomb(k) of (id - previous id - 1), previous starts at -1
//!              state  in the baseline: write_delta_predicted against it ([`Baseline`]);
//!                     not in it: created, write_full
//! ```
//!
//! ## Prediction
//!
//! A delta may also name up to two older acknowledged views, roughly as many ticks apart as
//! the snapshot is ahead of its baseline. [`EntityState::write_delta_predicted`] gets the
//! entity's state in them ([`Baseline::previous`], [`Baseline::older`]), so it can code the
//! error of a prediction (the baseline continued at its velocity, or with its acceleration)
//! instead of the change from the baseline: for smooth motion and a baseline one round trip
//! old, a few bits instead of a dozen per coordinate. The default implementation ignores them.
//!
//! ## Acknowledgements
//!
//! A snapshot becomes a baseline once the client has it. Two ways to learn that:
//! [`SnapshotServer::handle_ack`] with the number the client reports after decoding (exact; the
//! client sends [`Decoded::seq`] back, a few bytes), or [`SnapshotServer::handle_delivery`] with
//! the transport's delivery notification (no upstream bytes; but a fragmented snapshot whose
//! reassembly the client dropped still counts as delivered, so prefer `handle_ack` where
//! snapshots fragment on lossy paths).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::{
    exp_golomb_bits, Baseline, BitReader, BitWriter, EntityId, EntityState, SnapshotDecodeError,
};
use crate::{ConnectionId, DeliveryOutcome, MessageId};

/// Bits an entry's id gap is assumed to take when filling the budget (the exact size is
/// checked after).
const ENTRY_HEADER_ESTIMATE: usize = 6;
/// Rank added to changes in flight, above any waiting time.
const IN_FLIGHT_RANK: f32 = 1e30;
/// Highest Exp-Golomb order of entry id gaps (3 bits in the header).
const MAX_ID_ORDER: u32 = 7;
/// Ticks between one prediction view and the next newer one (or the baseline): about as many
/// as the snapshot is ahead of its baseline (longer spans average out quantisation noise,
/// shorter ones follow changes of motion), but at least this many...
const PREDICTION_SPAN_MIN: u64 = 3;
/// ...and at most this many (up to twice as many when no closer view was acknowledged).
const PREDICTION_SPAN_MAX: u64 = 16;
/// Older views a delta may name for prediction ([`Baseline::previous`], [`Baseline::older`]).
const PREDICTION_VIEWS: usize = 2;

/// Configuration of snapshots; the same values on server and client.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotConfig {
    /// Snapshots remembered per client on both sides; a baseline older than this many
    /// snapshots is not used (a full snapshot is sent instead). Size it to cover the round trip
    /// plus a margin at your snapshot rate. Default 64 (about a second at 60 Hz).
    pub history: usize,
    /// Largest snapshot in bytes: entities beyond it wait for the next one, by priority.
    /// Default 3000 (three fragments at the default payload budget).
    pub max_snapshot_bytes: usize,
    /// Bandwidth per client in bytes per second, as a token bucket refilled from `now`;
    /// `None`: only `max_snapshot_bytes` limits. Default `None`. Per client, and driven by
    /// measured RTT and loss: [`SnapshotServer::set_bandwidth`] with a
    /// [`RateController`](super::RateController).
    pub bandwidth: Option<u32>,
    /// Client side: most entities one view may hold; more is a decode error. Default 65,536.
    pub max_entities: usize,
    /// Server side: when nothing changed since the acknowledged baseline, produce no snapshot
    /// at all (sparse IoT state), instead of a header-only one. Default `false`.
    pub skip_unchanged: bool,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self {
            history: 64,
            max_snapshot_bytes: 3000,
            bandwidth: None,
            max_entities: 65_536,
            skip_unchanged: false,
        }
    }
}

/// The state of every entity a client sees, as of one snapshot; sorted by id.
#[derive(Debug)]
pub struct View<S> {
    entities: Vec<(EntityId, Arc<S>)>,
}

impl<S> View<S> {
    fn empty() -> Self {
        Self {
            entities: Vec::new(),
        }
    }

    /// An entity's state.
    pub fn get(&self, id: EntityId) -> Option<&S> {
        self.entities
            .binary_search_by_key(&id, |(id, _)| *id)
            .ok()
            .and_then(|index| self.entities.get(index))
            .map(|(_, state)| &**state)
    }

    /// Every entity, by ascending id.
    pub fn iter(&self) -> impl Iterator<Item = (EntityId, &S)> + '_ {
        self.entities.iter().map(|(id, state)| (*id, &**state))
    }

    /// Number of entities.
    pub fn len(&self) -> usize {
        self.entities.len()
    }

    /// Whether the view has no entity.
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }
}

/// Decides whether a client sees an entity.
pub type Interest<S> = Box<dyn Fn(EntityId, &S) -> bool + Send + Sync>;
/// How much an entity matters to a client, per snapshot it waits (default 1.0).
pub type Priority<S> = Box<dyn Fn(EntityId, &S) -> f32 + Send + Sync>;

struct Sent<S> {
    seq: u64,
    tick: u64,
    view: Arc<View<S>>,
    message: Option<MessageId>,
    /// The client reported it, or the transport acknowledged it: usable as a baseline.
    acked: bool,
}

struct ClientRecord<S> {
    next_seq: u64,
    sent: VecDeque<Sent<S>>,
    newest_acked: Option<u64>,
    interest: Option<Interest<S>>,
    priority: Option<Priority<S>>,
    waiting: HashMap<EntityId, f32>,
    /// Entities sent since the baseline: the snapshot that first carried each. Until that one
    /// is acknowledged the entity must be carried again, or the views after it would show
    /// the baseline's older state (a step back).
    in_flight: HashMap<EntityId, u64>,
    tokens: f64,
    refilled: Option<Instant>,
    /// Overrides `SnapshotConfig::bandwidth` for this client ([`SnapshotServer::set_bandwidth`]).
    bandwidth: Option<Option<u32>>,
}

/// What [`SnapshotServer::encode`] produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The snapshot's number for this client.
    pub seq: u64,
    /// The baseline it is a delta against (`None`: full).
    pub baseline: Option<u64>,
    /// Bytes written.
    pub bytes: usize,
    /// Entities changed, created or removed in it.
    pub entries: usize,
    /// Changes left for later by the budget.
    pub deferred: usize,
}

/// The server side: the world, and per client the snapshots it was sent.
///
/// Drive it once per snapshot tick: update entities with [`set`](Self::set) and
/// [`remove`](Self::remove), then for each client [`encode`](Self::encode) a snapshot, send it
/// on an unreliable channel with `notify_delivery`, tell the server its message id
/// ([`sent`](Self::sent)), and feed the transport's [`Event::Delivery`](crate::Event::Delivery)
/// back ([`handle_delivery`](Self::handle_delivery)).
pub struct SnapshotServer<S> {
    config: SnapshotConfig,
    world: BTreeMap<EntityId, Arc<S>>,
    clients: HashMap<ConnectionId, ClientRecord<S>>,
    scratch: Vec<u8>,
}

impl<S: EntityState> SnapshotServer<S> {
    /// An empty world.
    pub fn new(config: SnapshotConfig) -> Self {
        Self {
            config,
            world: BTreeMap::new(),
            clients: HashMap::new(),
            scratch: Vec::new(),
        }
    }

    /// Creates or updates an entity. A state equal to the current one (same quantised values)
    /// is no change at all.
    pub fn set(&mut self, id: EntityId, state: S) {
        match self.world.get(&id) {
            Some(current) if **current == state => {}
            _ => {
                self.world.insert(id, Arc::new(state));
            }
        }
    }

    /// Removes an entity.
    pub fn remove(&mut self, id: EntityId) -> bool {
        self.world.remove(&id).is_some()
    }

    /// An entity's current state.
    pub fn get(&self, id: EntityId) -> Option<&S> {
        self.world.get(&id).map(|state| &**state)
    }

    /// Number of entities.
    pub fn len(&self) -> usize {
        self.world.len()
    }

    /// Whether the world is empty.
    pub fn is_empty(&self) -> bool {
        self.world.is_empty()
    }

    /// Every entity, by ascending id.
    pub fn iter(&self) -> impl Iterator<Item = (EntityId, &S)> + '_ {
        self.world.iter().map(|(id, state)| (*id, &**state))
    }

    /// Starts sending snapshots to a client (its first is full).
    pub fn add_client(&mut self, client: ConnectionId) {
        self.clients.insert(
            client,
            ClientRecord {
                next_seq: 1,
                sent: VecDeque::new(),
                newest_acked: None,
                interest: None,
                priority: None,
                waiting: HashMap::new(),
                in_flight: HashMap::new(),
                tokens: self.config.max_snapshot_bytes as f64,
                refilled: None,
                bandwidth: None,
            },
        );
    }

    /// Forgets a client.
    pub fn remove_client(&mut self, client: ConnectionId) {
        self.clients.remove(&client);
    }

    /// Sets which entities a client sees (`None`: all).
    pub fn set_interest(&mut self, client: ConnectionId, interest: Option<Interest<S>>) {
        if let Some(record) = self.clients.get_mut(&client) {
            record.interest = interest;
        }
    }

    /// Sets a client's bandwidth in bytes per second, overriding
    /// [`SnapshotConfig::bandwidth`] (`None`: only `max_snapshot_bytes` limits). Call it as often
    /// as the rate changes, for example each snapshot tick with
    /// [`RateController::bytes_per_second`](super::RateController::bytes_per_second).
    pub fn set_bandwidth(&mut self, client: ConnectionId, bytes_per_second: Option<u32>) {
        if let Some(record) = self.clients.get_mut(&client) {
            record.bandwidth = Some(bytes_per_second);
        }
    }

    /// Sets how much each entity matters to a client (`None`: all equal).
    pub fn set_priority(&mut self, client: ConnectionId, priority: Option<Priority<S>>) {
        if let Some(record) = self.clients.get_mut(&client) {
            record.priority = priority;
        }
    }

    /// Encodes the next snapshot for a client into `out` (appended). Returns `None` for an
    /// unknown client, or when `skip_unchanged` is set and there is nothing to say.
    pub fn encode(
        &mut self,
        client: ConnectionId,
        tick: u64,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Option<SnapshotInfo> {
        let config = &self.config;
        let record = self.clients.get_mut(&client)?;
        let seq = record.next_seq;
        let base = record
            .newest_acked
            .filter(|acked| seq - acked < config.history as u64)
            .and_then(|acked| record.sent.iter().find(|s| s.seq == acked));
        let base_seq = base.map(|b| b.seq);
        let base_tick = base.map_or(0, |b| b.tick);
        let base_view = base.map_or_else(|| Arc::new(View::empty()), |b| Arc::clone(&b.view));
        let ticks_ahead = tick.saturating_sub(base_tick).max(1);
        // The prediction views: up to two acknowledged snapshots a little older than the
        // baseline, each about `span` ticks before the next, newest first.
        let span = ticks_ahead.clamp(PREDICTION_SPAN_MIN, PREDICTION_SPAN_MAX);
        let mut predictors: Vec<(u64, u64, Arc<View<S>>)> = Vec::with_capacity(PREDICTION_VIEWS);
        // The client keeps the `history` newest views it decoded; snapshots overtaking this one
        // may push the oldest out, so prediction views stay clear of that edge.
        let predictor_window = (config.history - config.history / 4) as u64;
        if let Some(b) = base {
            let (mut after_seq, mut after_tick) = (b.seq, b.tick);
            while predictors.len() < PREDICTION_VIEWS {
                let target = after_tick.saturating_sub(span);
                let found = record
                    .sent
                    .iter()
                    .filter(|s| {
                        s.acked
                            && s.seq < after_seq
                            && s.tick < after_tick
                            && after_tick - s.tick <= span * 2
                            && seq - s.seq < predictor_window
                    })
                    .min_by_key(|s| s.tick.abs_diff(target));
                let Some(found) = found else {
                    break;
                };
                predictors.push((found.seq, found.tick, Arc::clone(&found.view)));
                (after_seq, after_tick) = (found.seq, found.tick);
            }
        }

        let changes = diff(&self.world, &base_view, record.interest.as_ref());
        if changes.is_empty() && base_seq.is_some() && config.skip_unchanged {
            return None;
        }

        // Budget: the token bucket and the size cap.
        let mut budget = config.max_snapshot_bytes;
        if let Some(rate) = record.bandwidth.unwrap_or(config.bandwidth) {
            let elapsed = record
                .refilled
                .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
            let cap = config.max_snapshot_bytes as f64;
            record.tokens = (record.tokens + elapsed * f64::from(rate)).min(cap);
            record.refilled = Some(now);
            budget = budget.min(record.tokens.max(0.0) as usize);
        }

        // Priority: removals first, then the changes in flight (carried since the baseline),
        // then by how long and how much each change has waited.
        let acked_seq = base_seq.unwrap_or(0);
        record.in_flight.retain(|_, first| *first > acked_seq);
        let mut ranked: Vec<(f32, usize)> = Vec::with_capacity(changes.len());
        for (index, change) in changes.iter().enumerate() {
            let rank = match change {
                Change::Removed(_) => f32::INFINITY,
                Change::Changed(id, state) | Change::Created(id, state) => {
                    let weight = record.priority.as_ref().map_or(1.0, |p| p(*id, state));
                    let waited = record.waiting.entry(*id).or_insert(0.0);
                    *waited += weight;
                    if record.in_flight.contains_key(id) {
                        IN_FLIGHT_RANK + *waited
                    } else {
                        *waited
                    }
                }
            };
            ranked.push((rank, index));
        }
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));

        // Measure each entry into one scratch buffer (each starts on a byte); take them, by
        // rank, while they fit.
        let header_bits = 8
            * (varint_bytes(seq)
                + varint_bytes(tick)
                + varint_bytes(base_seq.map_or(0, |b| seq - b))
                + base_seq.map_or(0, |_| predictors.len() + 1));
        let mut used_bits = header_bits;
        // (index into changes, byte offset in scratch, bits)
        let mut chosen: Vec<(usize, usize, usize)> = Vec::new();
        let scratch = &mut self.scratch;
        scratch.clear();
        for &(_, index) in &ranked {
            let change = &changes[index];
            let offset = scratch.len();
            let bits = {
                let mut w = BitWriter::new(scratch);
                match change {
                    Change::Changed(id, state) => match base_view.get(*id) {
                        Some(base_state) => {
                            let baseline =
                                Baseline::new(base_state, base_tick, ticks_ahead, &predictors, *id);
                            state.write_delta_predicted(&baseline, &mut w);
                        }
                        None => state.write_full(&mut w),
                    },
                    Change::Created(_, state) => state.write_full(&mut w),
                    Change::Removed(_) => {}
                }
                w.bit_len()
            };
            if (used_bits + ENTRY_HEADER_ESTIMATE + bits).div_ceil(8) > budget && !chosen.is_empty()
            {
                scratch.truncate(offset);
                continue;
            }
            used_bits += ENTRY_HEADER_ESTIMATE + bits;
            chosen.push((index, offset, bits));
        }
        // The estimate of the entry headers may have been low: drop the lowest-ranked entries
        // until the exact size fits (never below one entry).
        let mut layout = EntryLayout::choose(&changes, &chosen);
        while chosen.len() > 1 && (header_bits + layout.bits).div_ceil(8) > budget {
            let mut excess = header_bits + layout.bits - budget * 8;
            while chosen.len() > 1 && excess > 0 {
                let (_, _, bits) = chosen.pop().unwrap_or_default();
                excess = excess.saturating_sub(bits + ENTRY_HEADER_ESTIMATE);
            }
            layout = EntryLayout::choose(&changes, &chosen);
        }
        chosen.sort_by_key(|(index, _, _)| changes[*index].id());
        let deferred = changes.len() - chosen.len();

        // Write.
        let start = out.len();
        {
            let mut w = BitWriter::new(out);
            w.write_varint(seq);
            w.write_varint(tick);
            w.write_varint(base_seq.map_or(0, |b| seq - b));
            if let Some(base_seq) = base_seq {
                // No entries, nothing to predict: a single 0 (header-only snapshots at rest).
                let named = if chosen.len() == layout.removed {
                    &predictors[..0]
                } else {
                    &predictors[..]
                };
                let mut after = base_seq;
                for (seq, _, _) in named {
                    w.write_varint(after - seq);
                    after = *seq;
                }
                if named.len() < PREDICTION_VIEWS {
                    w.write_varint(0);
                }
            }
            let removed = chosen
                .iter()
                .filter(|(index, _, _)| matches!(changes[*index], Change::Removed(_)));
            w.write_exp_golomb(removed.clone().count() as u64, 0);
            let mut next_id: u64 = 0;
            for (index, _, _) in removed {
                let id = u64::from(changes[*index].id().0);
                w.write_exp_golomb(id - next_id, 0);
                next_id = id + 1;
            }
            w.write_bits(u64::from(layout.order), 3);
            w.write_varint((chosen.len() - layout.removed) as u64);
            let mut next_id: u64 = 0;
            for (index, offset, bits) in &chosen {
                if matches!(changes[*index], Change::Removed(_)) {
                    continue;
                }
                let id = u64::from(changes[*index].id().0);
                w.write_exp_golomb(id - next_id, layout.order);
                next_id = id + 1;
                append_bits(&mut w, &scratch[*offset..], *bits);
            }
        }
        let bytes = out.len() - start;

        // The view the client will hold once it decodes this snapshot.
        let view = apply(
            &base_view,
            chosen.iter().map(|(index, _, _)| &changes[*index]),
        );
        for (index, _, _) in &chosen {
            let id = changes[*index].id();
            record.waiting.remove(&id);
            record.in_flight.entry(id).or_insert(seq);
        }
        if record.bandwidth.unwrap_or(config.bandwidth).is_some() {
            record.tokens -= bytes as f64;
        }
        record.sent.push_back(Sent {
            seq,
            tick,
            view: Arc::new(view),
            message: None,
            acked: false,
        });
        while record.sent.len() > config.history {
            record.sent.pop_front();
        }
        record.next_seq += 1;
        Some(SnapshotInfo {
            seq,
            baseline: base_seq,
            bytes,
            entries: chosen.len(),
            deferred,
        })
    }

    /// Records which transport message carries snapshot `seq`.
    pub fn sent(&mut self, client: ConnectionId, seq: u64, message: MessageId) {
        if let Some(sent) = self
            .clients
            .get_mut(&client)
            .and_then(|r| r.sent.iter_mut().find(|s| s.seq == seq))
        {
            sent.message = Some(message);
        }
    }

    /// The client reports it decoded snapshot `seq` ([`Decoded::seq`]): it becomes a baseline.
    pub fn handle_ack(&mut self, client: ConnectionId, seq: u64) {
        let Some(record) = self.clients.get_mut(&client) else {
            return;
        };
        let Some(sent) = record.sent.iter_mut().find(|s| s.seq == seq) else {
            return;
        };
        sent.acked = true;
        if record.newest_acked.is_none_or(|acked| seq > acked) {
            record.newest_acked = Some(seq);
        }
    }

    /// Feeds a transport delivery outcome: an acknowledged snapshot becomes a baseline. See
    /// the module docs for when to prefer [`handle_ack`](Self::handle_ack).
    pub fn handle_delivery(
        &mut self,
        client: ConnectionId,
        message: MessageId,
        outcome: DeliveryOutcome,
    ) {
        if outcome != DeliveryOutcome::Acked {
            return;
        }
        let Some(record) = self.clients.get_mut(&client) else {
            return;
        };
        if let Some(sent) = record.sent.iter_mut().find(|s| s.message == Some(message)) {
            sent.acked = true;
            if record.newest_acked.is_none_or(|acked| sent.seq > acked) {
                record.newest_acked = Some(sent.seq);
            }
        }
    }

    /// The view a client holds once it decodes snapshot `seq` (while the server remembers it):
    /// for tests and diagnostics.
    pub fn sent_view(&self, client: ConnectionId, seq: u64) -> Option<Arc<View<S>>> {
        let record = self.clients.get(&client)?;
        record
            .sent
            .iter()
            .find(|s| s.seq == seq)
            .map(|s| Arc::clone(&s.view))
    }

    /// The view a client will hold after the newest snapshot it acknowledged, for tests.
    pub fn acked_view(&self, client: ConnectionId) -> Option<Arc<View<S>>> {
        let record = self.clients.get(&client)?;
        let acked = record.newest_acked?;
        record
            .sent
            .iter()
            .find(|s| s.seq == acked)
            .map(|s| Arc::clone(&s.view))
    }
}

enum Change<S> {
    Changed(EntityId, Arc<S>),
    Created(EntityId, Arc<S>),
    Removed(EntityId),
}

impl<S> Change<S> {
    fn id(&self) -> EntityId {
        match self {
            Self::Changed(id, _) | Self::Created(id, _) | Self::Removed(id) => *id,
        }
    }
}

/// What differs between the world (as the client may see it) and the client's baseline.
fn diff<S: EntityState>(
    world: &BTreeMap<EntityId, Arc<S>>,
    base: &View<S>,
    interest: Option<&Interest<S>>,
) -> Vec<Change<S>> {
    let mut changes = Vec::new();
    let mut base_iter = base.entities.iter().peekable();
    let visible = world
        .iter()
        .filter(|(id, state)| interest.is_none_or(|f| f(**id, state)));
    for (id, state) in visible {
        while let Some((base_id, _)) = base_iter.peek() {
            if base_id >= id {
                break;
            }
            changes.push(Change::Removed(*base_id));
            base_iter.next();
        }
        match base_iter.peek() {
            Some((base_id, base_state)) if base_id == id => {
                if !Arc::ptr_eq(base_state, state) && **base_state != **state {
                    changes.push(Change::Changed(*id, Arc::clone(state)));
                }
                base_iter.next();
            }
            _ => changes.push(Change::Created(*id, Arc::clone(state))),
        }
    }
    for (base_id, _) in base_iter {
        changes.push(Change::Removed(*base_id));
    }
    changes
}

/// The baseline with the changes applied (changes in ascending id order).
fn apply<'a, S: 'a>(base: &View<S>, changes: impl Iterator<Item = &'a Change<S>>) -> View<S> {
    let mut out = Vec::with_capacity(base.entities.len());
    let mut base_iter = base.entities.iter().peekable();
    for change in changes {
        let id = change.id();
        while let Some((base_id, state)) = base_iter.peek() {
            if *base_id >= id {
                break;
            }
            out.push((*base_id, Arc::clone(state)));
            base_iter.next();
        }
        if base_iter.peek().is_some_and(|(base_id, _)| *base_id == id) {
            base_iter.next();
        }
        match change {
            Change::Changed(id, state) | Change::Created(id, state) => {
                out.push((*id, Arc::clone(state)));
            }
            Change::Removed(_) => {}
        }
    }
    for (base_id, state) in base_iter {
        out.push((*base_id, Arc::clone(state)));
    }
    View { entities: out }
}

fn append_bits(w: &mut BitWriter<'_>, bytes: &[u8], bits: usize) {
    // Eight bytes at a time: bits are packed least significant first, so little-endian words
    // hold them in order.
    let mut left = bits;
    for chunk in bytes.chunks(8) {
        if left == 0 {
            break;
        }
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        let take = left.min(64);
        w.write_bits(u64::from_le_bytes(word), take as u32);
        left -= take;
    }
}

/// How the entries of one snapshot are laid out: the Exp-Golomb order of their id gaps, chosen
/// per snapshot as the one that makes them smallest.
struct EntryLayout {
    order: u32,
    removed: usize,
    /// Bits of the removal list, the order, the count and every entry (gap and state).
    bits: usize,
}

impl EntryLayout {
    /// The best order for the chosen entries (index into `changes`, offset, state bits).
    fn choose<S>(changes: &[Change<S>], chosen: &[(usize, usize, usize)]) -> Self {
        let mut removed_ids = Vec::new();
        let mut ids = Vec::with_capacity(chosen.len());
        let mut state_bits = 0;
        for (index, _, bits) in chosen {
            let change = &changes[*index];
            match change {
                Change::Removed(id) => removed_ids.push(id.0),
                _ => ids.push(change.id().0),
            }
            state_bits += bits;
        }
        removed_ids.sort_unstable();
        ids.sort_unstable();
        let gaps = |ids: &[u32]| {
            let mut next = 0u64;
            ids.iter()
                .map(|&id| {
                    let gap = u64::from(id) - next;
                    next = u64::from(id) + 1;
                    gap
                })
                .collect::<Vec<u64>>()
        };
        let removed_bits = exp_golomb_bits(removed_ids.len() as u64, 0)
            + gaps(&removed_ids)
                .iter()
                .map(|&g| exp_golomb_bits(g, 0))
                .sum::<usize>();
        let entry_gaps = gaps(&ids);
        let (order, gap_bits) = (0..=MAX_ID_ORDER)
            .map(|k| (k, entry_gaps.iter().map(|&g| exp_golomb_bits(g, k)).sum()))
            .min_by_key(|&(_, bits): &(u32, usize)| bits)
            .unwrap_or((0, 0));
        Self {
            order,
            removed: removed_ids.len(),
            bits: removed_bits + 3 + 8 * varint_bytes(ids.len() as u64) + gap_bits + state_bits,
        }
    }
}

fn varint_bytes(value: u64) -> usize {
    (64 - value.leading_zeros() as usize).max(1).div_ceil(7)
}

struct Received<S> {
    seq: u64,
    tick: u64,
    view: Arc<View<S>>,
}

/// The client side: decodes snapshots against the views it holds.
pub struct SnapshotClient<S> {
    config: SnapshotConfig,
    views: VecDeque<Received<S>>,
    newest: Option<u64>,
    errors: u64,
    last_decoded_tick: Option<u64>,
}

/// A snapshot newer than any before it, ready to render.
#[derive(Debug)]
pub struct Decoded<S> {
    /// Its number.
    pub seq: u64,
    /// The server tick it describes.
    pub tick: u64,
    /// Every entity the client sees.
    pub view: Arc<View<S>>,
}

impl<S: EntityState> SnapshotClient<S> {
    /// A client holding no view yet.
    pub fn new(config: SnapshotConfig) -> Self {
        Self {
            config,
            views: VecDeque::new(),
            newest: None,
            errors: 0,
            last_decoded_tick: None,
        }
    }

    /// Decodes a snapshot. Returns it if it is the newest so far (stale ones are decoded and
    /// kept as possible baselines, but not returned). Hostile bytes give an error, never a
    /// panic, and leave the client unchanged.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<Option<Decoded<S>>, SnapshotDecodeError> {
        match self.decode(bytes) {
            Ok(decoded) => Ok(decoded),
            Err(error) => {
                self.errors += 1;
                Err(error)
            }
        }
    }

    /// The newest view.
    pub fn view(&self) -> Option<Arc<View<S>>> {
        let newest = self.newest?;
        self.views
            .iter()
            .find(|r| r.seq == newest)
            .map(|r| Arc::clone(&r.view))
    }

    /// The tick of the newest view.
    pub fn tick(&self) -> Option<u64> {
        let newest = self.newest?;
        self.views.iter().find(|r| r.seq == newest).map(|r| r.tick)
    }

    /// Snapshots that failed to decode.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// The server tick of the last snapshot [`receive`](Self::receive) decoded, stale or a
    /// duplicate or not.
    /// When `receive` returns `Ok(None)` for a stale snapshot, pass this to
    /// [`SnapshotBuffer::record_arrival`](super::SnapshotBuffer::record_arrival) so that the
    /// buffer's jitter estimate sees late arrivals too.
    pub fn last_decoded_tick(&self) -> Option<u64> {
        self.last_decoded_tick
    }

    fn decode(&mut self, bytes: &[u8]) -> Result<Option<Decoded<S>>, SnapshotDecodeError> {
        let mut r = BitReader::new(bytes);
        let seq = r.read_varint()?;
        let tick = r.read_varint()?;
        let baseline = r.read_varint()?;
        if self.views.iter().any(|v| v.seq == seq) {
            // A duplicate: it still arrived.
            self.last_decoded_tick = Some(tick);
            return Ok(None);
        }
        let find = |seq: u64| {
            self.views
                .iter()
                .find(|v| v.seq == seq)
                .map(|v| (Arc::clone(&v.view), v.tick))
                .ok_or(SnapshotDecodeError::UnknownBaseline(seq))
        };
        let mut predictors: Vec<(u64, u64, Arc<View<S>>)> = Vec::new();
        let (base, base_tick) = if baseline == 0 {
            (Arc::new(View::empty()), 0)
        } else {
            let base_seq = seq
                .checked_sub(baseline)
                .ok_or(SnapshotDecodeError::UnknownBaseline(0))?;
            let (base, base_tick) = find(base_seq)?;
            let (mut after_seq, mut after_tick) = (base_seq, base_tick);
            while predictors.len() < PREDICTION_VIEWS {
                let back = r.read_varint()?;
                if back == 0 {
                    break;
                }
                let found_seq = after_seq
                    .checked_sub(back)
                    .ok_or(SnapshotDecodeError::UnknownBaseline(0))?;
                let (view, found_tick) = find(found_seq)?;
                if found_tick >= after_tick {
                    return Err(SnapshotDecodeError::Malformed);
                }
                predictors.push((found_seq, found_tick, view));
                (after_seq, after_tick) = (found_seq, found_tick);
            }
            (base, base_tick)
        };
        let ticks_ahead = tick.saturating_sub(base_tick).max(1);

        // Removals: ids ascending, each in the baseline.
        let removed_count = r.read_exp_golomb(0)?;
        if removed_count > base.entities.len() as u64 || removed_count > r.remaining_bits() as u64 {
            return Err(SnapshotDecodeError::TooManyEntities);
        }
        let mut removed: Vec<EntityId> = Vec::with_capacity(removed_count as usize);
        let mut next_id: u64 = 0;
        for _ in 0..removed_count {
            let id = next_id + r.read_exp_golomb(0)?;
            if id > u64::from(u32::MAX) {
                return Err(SnapshotDecodeError::TooManyEntities);
            }
            next_id = id + 1;
            let id = EntityId(id as u32);
            if base.get(id).is_none() {
                return Err(SnapshotDecodeError::UnknownEntity(id.0));
            }
            removed.push(id);
        }

        let order = r.read_bits(3)? as u32;
        let count = r.read_varint()?;
        // Each entry takes at least one bit: a hostile count cannot make us loop for long.
        if count > self.config.max_entities as u64 || count > r.remaining_bits() as u64 {
            return Err(SnapshotDecodeError::TooManyEntities);
        }
        let mut out: Vec<(EntityId, Arc<S>)> = Vec::with_capacity(base.entities.len());
        let mut base_iter = base.entities.iter().peekable();
        let mut removed_iter = removed.iter().peekable();
        let mut next_id: u64 = 0;
        // Copies the baseline's entities below `id` (all of them for `None`), leaving out the
        // removed ones.
        let mut copy_below =
            |out: &mut Vec<(EntityId, Arc<S>)>,
             base_iter: &mut std::iter::Peekable<std::slice::Iter<'_, (EntityId, Arc<S>)>>,
             id: Option<EntityId>| {
                while let Some((base_id, state)) = base_iter.peek() {
                    if id.is_some_and(|id| *base_id >= id) {
                        break;
                    }
                    if removed_iter.peek().is_some_and(|r| *r == base_id) {
                        removed_iter.next();
                    } else {
                        out.push((*base_id, Arc::clone(state)));
                    }
                    base_iter.next();
                }
            };
        for _ in 0..count {
            let id = next_id + r.read_exp_golomb(order)?;
            if id > u64::from(u32::MAX) {
                return Err(SnapshotDecodeError::TooManyEntities);
            }
            next_id = id + 1;
            let id = EntityId(id as u32);
            copy_below(&mut out, &mut base_iter, Some(id));
            let in_base = match base_iter.peek() {
                Some((base_id, state)) if *base_id == id => {
                    base_iter.next();
                    Some(state)
                }
                _ => None,
            };
            match in_base {
                Some(base_state) => {
                    if removed.binary_search(&id).is_ok() {
                        return Err(SnapshotDecodeError::Malformed);
                    }
                    let baseline =
                        Baseline::new(&**base_state, base_tick, ticks_ahead, &predictors, id);
                    out.push((id, Arc::new(S::read_delta_predicted(&baseline, &mut r)?)));
                }
                None => out.push((id, Arc::new(S::read_full(&mut r)?))),
            }
            if out.len() > self.config.max_entities {
                return Err(SnapshotDecodeError::TooManyEntities);
            }
        }
        r.finish()?;
        copy_below(&mut out, &mut base_iter, None);
        if out.len() > self.config.max_entities {
            return Err(SnapshotDecodeError::TooManyEntities);
        }
        let view = Arc::new(View { entities: out });
        self.last_decoded_tick = Some(tick);
        self.views.push_back(Received {
            seq,
            tick,
            view: Arc::clone(&view),
        });
        // Keep the `history` highest sequence numbers.
        while self.views.len() > self.config.history {
            let Some(oldest) = self
                .views
                .iter()
                .enumerate()
                .min_by_key(|(_, v)| v.seq)
                .map(|(i, _)| i)
            else {
                break;
            };
            self.views.remove(oldest);
        }
        if self.newest.is_some_and(|newest| seq <= newest) {
            return Ok(None);
        }
        self.newest = Some(seq);
        Ok(Some(Decoded { seq, tick, view }))
    }
}
