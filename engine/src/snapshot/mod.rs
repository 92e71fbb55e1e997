//! Building blocks of state snapshots: bit packing, quantisation, interpolation, the client's
//! snapshot buffer and clock sync.
//!
//! Like the rest of the core, nothing here opens a socket or reads a clock: time comes in as
//! `now: Instant` and bytes go into buffers the caller owns.
//!
//! ## Pieces
//!
//! | item | side | role |
//! |---|---|---|
//! | [`BitWriter`], [`BitReader`] | both | fields of any bit width, varints; decoding returns [`SnapshotDecodeError`], never panics |
//! | [`BoundedFloat`], [`quantize_quat`] / [`QuantizedQuat`] | both | floats to small integers at a chosen resolution; unit quaternions in smallest-three form |
//! | [`Interpolate`], [`lerp`], [`slerp`], [`hermite`], [`Quat`], [`Kinematic`] | client | blending two states of a component |
//! | [`SnapshotBuffer`] | client | holds snapshots by server tick; renders at server time minus an adaptive delay; capped extrapolation |
//! | [`RateController`] | server | a per-client bandwidth budget from measured RTT and loss, for [`SnapshotServer::set_bandwidth`] |
//! | [`ServerClock`] | client | smoothed estimate of the server's tick, slewed rather than jumped; the tick to stamp on inputs |
//!
//! ## How a world snapshot uses them
//!
//! On the server, each component field is quantised ([`BoundedFloat::quantize`],
//! [`quantize_quat`]) and the quantised integers are the state: change detection compares them
//! with those of the baseline the client acknowledged, so a field whose bits did not change
//! costs nothing (or one "unchanged" bit). The delta encoder then writes, with a
//! [`BitWriter`] into the connection's send buffer, the entity ids as varints (or gaps between
//! ids, [`BitWriter::write_varint`]), a changed-bit per field, and the changed fields at their
//! [`bits()`](BoundedFloat::bits) width, or as a zig-zag varint of the difference from the
//! baseline ([`BitWriter::write_varint_signed`]) when that is shorter.
//!
//! On the client, the decoder reads the same layout back with a [`BitReader`]; any truncated or
//! out-of-range field is a [`SnapshotDecodeError`] and the whole snapshot is dropped. The decoded
//! world state goes into a [`SnapshotBuffer`] keyed by its server tick (its type implements
//! [`Interpolate`], usually field by field with the helpers here), and each rendered frame
//! calls [`SnapshotBuffer::sample`]. The same ticks feed a [`ServerClock`], whose
//! [`input_tick`](ServerClock::input_tick) stamps the player's inputs.
//!
//! The world store and delta encoder are [`SnapshotServer`] and [`SnapshotClient`]: see
//! `world.rs` for how structural changes stay safe under loss, and the byte layout.

mod bits;
mod buffer;
mod clock;
mod interpolate;
mod quantize;
mod rate;
mod state;
mod world;

pub use bits::{
    exp_golomb_bits, zigzag_decode, zigzag_encode, BitReader, BitWriter, SnapshotDecodeError,
    MAX_EXP_GOLOMB_ORDER,
};
pub use buffer::{
    BufferConfig, BufferConfigError, PushOutcome, Sample, SampleKind, SnapshotBuffer,
};
pub use clock::{ClockConfig, ClockConfigError, ServerClock};
pub use interpolate::{hermite, lerp, slerp, Interpolate, Kinematic, Quat};
pub use quantize::{
    quantize_quat, BoundedFloat, BoundedFloatError, QuantizedQuat, DEFAULT_QUAT_BITS,
};
pub use rate::{LinkSample, RateConfig, RateConfigError, RateController};
#[cfg(feature = "serde")]
pub use state::SerdeState;
pub use state::{Baseline, EntityId, EntityState, MAX_BASELINE_TICKS, MAX_SERDE_STATE};
pub use world::{
    Decoded, Interest, Priority, SnapshotClient, SnapshotConfig, SnapshotInfo, SnapshotServer, View,
};
