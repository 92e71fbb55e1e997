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
//!   and are sent later; the priority accumulator makes sure starved ones catch up.
//! - **Interest**: an entity outside a client's filter is removed from that client's view;
//!   entering scope is a creation.
//!
//! ## Layout (bit-packed, [`BitWriter`])
//!
//! ```text
//! seq        varint   snapshot number for this client, from 1
//! tick       varint   the server's simulation tick
//! baseline   varint   0: full snapshot; n: delta against snapshot seq - n
//! count      varint   number of entries
//! entries    count times, ids ascending:
//!              gap    Elias-gamma of (id - previous id), previous starts at -1
//!                     (1 bit for the next id, 3 bits for a gap of 2 or 3, ...)
//!              kind   0: changed (delta against the baseline's state)
//!                     10: created (full state)   11: removed
//!              state  entity's write_delta / write_full, for changed and created
//! ```
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

use super::{BitReader, BitWriter, EntityId, EntityState, SnapshotDecodeError};
use crate::{ConnectionId, DeliveryOutcome, MessageId};

/// Bits an entry's id gap and kind are assumed to take when filling the budget.
const ENTRY_HEADER_ESTIMATE: usize = 12;

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
    /// `None`: only `max_snapshot_bytes` limits. Default `None`.
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
    view: Arc<View<S>>,
    message: Option<MessageId>,
}

struct ClientRecord<S> {
    next_seq: u64,
    sent: VecDeque<Sent<S>>,
    newest_acked: Option<u64>,
    interest: Option<Interest<S>>,
    priority: Option<Priority<S>>,
    waiting: HashMap<EntityId, f32>,
    tokens: f64,
    refilled: Option<Instant>,
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
                tokens: self.config.max_snapshot_bytes as f64,
                refilled: None,
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
        let base_view = base.map_or_else(|| Arc::new(View::empty()), |b| Arc::clone(&b.view));

        let changes = diff(&self.world, &base_view, record.interest.as_ref());
        if changes.is_empty() && base_seq.is_some() && config.skip_unchanged {
            return None;
        }

        // Budget: the token bucket and the size cap.
        let mut budget = config.max_snapshot_bytes;
        if let Some(rate) = config.bandwidth {
            let elapsed = record
                .refilled
                .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
            let cap = config.max_snapshot_bytes as f64;
            record.tokens = (record.tokens + elapsed * f64::from(rate)).min(cap);
            record.refilled = Some(now);
            budget = budget.min(record.tokens.max(0.0) as usize);
        }

        // Priority: removals first, then by how long and how much each change has waited.
        let mut ranked: Vec<(f32, usize)> = Vec::with_capacity(changes.len());
        for (index, change) in changes.iter().enumerate() {
            let rank = match change {
                Change::Removed(_) => f32::INFINITY,
                Change::Changed(id, state) | Change::Created(id, state) => {
                    let weight = record.priority.as_ref().map_or(1.0, |p| p(*id, state));
                    let waited = record.waiting.entry(*id).or_insert(0.0);
                    *waited += weight;
                    *waited
                }
            };
            ranked.push((rank, index));
        }
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));

        // Measure each entry; take them while they fit.
        let header_bits = 3 * 8 * varint_bytes(seq.max(tick)) + 1;
        let mut used_bits = header_bits;
        let mut chosen: Vec<(usize, Vec<u8>, usize)> = Vec::new();
        let scratch = &mut self.scratch;
        for &(_, index) in &ranked {
            let change = &changes[index];
            scratch.clear();
            let bits = {
                let mut w = BitWriter::new(scratch);
                match change {
                    Change::Changed(id, state) => match base_view.get(*id) {
                        Some(base) => state.write_delta(base, &mut w),
                        None => state.write_full(&mut w),
                    },
                    Change::Created(_, state) => state.write_full(&mut w),
                    Change::Removed(_) => {}
                }
                w.bit_len()
            };
            if (used_bits + ENTRY_HEADER_ESTIMATE + bits).div_ceil(8) > budget && !chosen.is_empty()
            {
                continue;
            }
            used_bits += ENTRY_HEADER_ESTIMATE + bits;
            chosen.push((index, scratch.clone(), bits));
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
            w.write_varint(chosen.len() as u64);
            let mut next_id: u64 = 0;
            for (index, payload, bits) in &chosen {
                let change = &changes[*index];
                let id = change.id();
                write_gamma(&mut w, u64::from(id.0) - next_id + 1);
                next_id = u64::from(id.0) + 1;
                match change {
                    Change::Changed(id, _) if base_view.get(*id).is_some() => w.write_bool(false),
                    Change::Changed(..) | Change::Created(..) => w.write_bits(0b01, 2),
                    Change::Removed(_) => w.write_bits(0b11, 2),
                }
                append_bits(&mut w, payload, *bits);
            }
        }
        let bytes = out.len() - start;

        // The view the client will hold once it decodes this snapshot.
        let view = apply(
            &base_view,
            chosen.iter().map(|(index, _, _)| &changes[*index]),
        );
        for (index, _, _) in &chosen {
            record.waiting.remove(&changes[*index].id());
        }
        if config.bandwidth.is_some() {
            record.tokens -= bytes as f64;
        }
        record.sent.push_back(Sent {
            seq,
            view: Arc::new(view),
            message: None,
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
        if seq >= record.next_seq || !record.sent.iter().any(|s| s.seq == seq) {
            return;
        }
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
        if let Some(sent) = record.sent.iter().find(|s| s.message == Some(message)) {
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
    let mut left = bits;
    for &byte in bytes {
        if left == 0 {
            break;
        }
        let take = left.min(8);
        w.write_bits(u64::from(byte), take as u32);
        left -= take;
    }
}

/// Elias-gamma code of `value` (at least 1): n zero bits, then the n+1 significant bits of the
/// value from the top. Small values are short: 1 is one bit, 2 and 3 are three.
fn write_gamma(w: &mut BitWriter<'_>, value: u64) {
    let bits = 64 - value.leading_zeros();
    w.write_bits(0, bits - 1);
    for shift in (0..bits).rev() {
        w.write_bool((value >> shift) & 1 == 1);
    }
}

fn read_gamma(r: &mut BitReader<'_>) -> Result<u64, SnapshotDecodeError> {
    let mut zeros = 0u32;
    while !r.read_bool()? {
        zeros += 1;
        if zeros > 32 {
            return Err(SnapshotDecodeError::TooManyEntities);
        }
    }
    let mut value = 1u64;
    for _ in 0..zeros {
        value = value << 1 | u64::from(r.read_bool()?);
    }
    Ok(value)
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

    fn decode(&mut self, bytes: &[u8]) -> Result<Option<Decoded<S>>, SnapshotDecodeError> {
        let mut r = BitReader::new(bytes);
        let seq = r.read_varint()?;
        let tick = r.read_varint()?;
        let baseline = r.read_varint()?;
        if self.views.iter().any(|v| v.seq == seq) {
            return Ok(None);
        }
        let empty = Arc::new(View::empty());
        let base = if baseline == 0 {
            empty
        } else {
            let base_seq = seq
                .checked_sub(baseline)
                .ok_or(SnapshotDecodeError::UnknownBaseline(0))?;
            self.views
                .iter()
                .find(|v| v.seq == base_seq)
                .map(|v| Arc::clone(&v.view))
                .ok_or(SnapshotDecodeError::UnknownBaseline(base_seq))?
        };
        let mut out: Vec<(EntityId, Arc<S>)> = Vec::with_capacity(base.entities.len());
        let mut base_iter = base.entities.iter().peekable();
        let count = r.read_varint()?;
        // Each entry takes at least two bits: a hostile count cannot make us loop for long.
        if count > self.config.max_entities as u64 || count * 2 > r.remaining_bits() as u64 {
            return Err(SnapshotDecodeError::TooManyEntities);
        }
        let mut next_id: u64 = 0;
        for _ in 0..count {
            let gap = read_gamma(&mut r)?;
            let id = next_id + gap - 1;
            if id > u64::from(u32::MAX) {
                return Err(SnapshotDecodeError::TooManyEntities);
            }
            next_id = id + 1;
            let id = EntityId(id as u32);
            while let Some((base_id, state)) = base_iter.peek() {
                if *base_id >= id {
                    break;
                }
                out.push((*base_id, Arc::clone(state)));
                base_iter.next();
            }
            let in_base = match base_iter.peek() {
                Some((base_id, state)) if *base_id == id => {
                    base_iter.next();
                    Some(Arc::clone(state))
                }
                _ => None,
            };
            if !r.read_bool()? {
                let base_state = in_base.ok_or(SnapshotDecodeError::UnknownEntity(id.0))?;
                out.push((id, Arc::new(S::read_delta(&base_state, &mut r)?)));
            } else if !r.read_bool()? {
                out.push((id, Arc::new(S::read_full(&mut r)?)));
            } else if in_base.is_none() {
                return Err(SnapshotDecodeError::UnknownEntity(id.0));
            }
            if out.len() > self.config.max_entities {
                return Err(SnapshotDecodeError::TooManyEntities);
            }
        }
        r.finish()?;
        for (base_id, state) in base_iter {
            out.push((*base_id, Arc::clone(state)));
        }
        if out.len() > self.config.max_entities {
            return Err(SnapshotDecodeError::TooManyEntities);
        }
        let view = Arc::new(View { entities: out });
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
