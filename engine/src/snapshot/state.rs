//! What a snapshot carries per entity: [`EntityId`] and the [`EntityState`] trait, with a
//! serde adapter ([`SerdeState`]) for types that do not hand-pack their bits.

#[cfg(feature = "serde")]
use bytes::Bytes;

use super::{BitReader, BitWriter, SnapshotDecodeError};

/// A stable entity id, chosen by the application (dense small ids encode smallest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntityId(pub u32);

/// The replicated state of one entity: its components, already quantised.
///
/// Change detection is `PartialEq`: store quantised values (the integers of
/// [`BoundedFloat::quantize`](super::BoundedFloat::quantize), a [`QuantizedQuat`](super::QuantizedQuat))
/// so that a value that quantises to the same bits compares equal and costs nothing.
///
/// `write_delta`/`read_delta` encode the change from a baseline the client is known to hold;
/// the defaults send the full state. A good implementation writes one "changed" bit per field
/// and only the changed fields.
///
/// Decoding must never panic: hostile bytes give a [`SnapshotDecodeError`].
pub trait EntityState: Clone + PartialEq + Send + Sync + 'static {
    /// Writes the whole state.
    fn write_full(&self, w: &mut BitWriter<'_>);

    /// Reads a whole state written by [`write_full`](Self::write_full).
    fn read_full(r: &mut BitReader<'_>) -> Result<Self, SnapshotDecodeError>;

    /// Writes what changed from `base`. Called only when `self != base`.
    fn write_delta(&self, base: &Self, w: &mut BitWriter<'_>) {
        let _ = base;
        self.write_full(w);
    }

    /// Reads what [`write_delta`](Self::write_delta) wrote, against the same `base`.
    fn read_delta(base: &Self, r: &mut BitReader<'_>) -> Result<Self, SnapshotDecodeError> {
        let _ = base;
        Self::read_full(r)
    }

    /// Writes what changed from `baseline.state`, knowing also how far ahead of the baseline
    /// this snapshot is and, when the receiver holds one, the entity's state in an older view
    /// ([`Baseline::previous`]): enough to predict the state from the baseline's motion and
    /// code only the prediction's error. Called only when `self != baseline.state`.
    ///
    /// The default ignores the extra context and calls [`write_delta`](Self::write_delta).
    fn write_delta_predicted(&self, baseline: &Baseline<'_, Self>, w: &mut BitWriter<'_>) {
        self.write_delta(baseline.state, w);
    }

    /// Reads what [`write_delta_predicted`](Self::write_delta_predicted) wrote, against the
    /// same baseline (the decoder builds the identical [`Baseline`]).
    ///
    /// The default calls [`read_delta`](Self::read_delta).
    fn read_delta_predicted(
        baseline: &Baseline<'_, Self>,
        r: &mut BitReader<'_>,
    ) -> Result<Self, SnapshotDecodeError> {
        Self::read_delta(baseline.state, r)
    }
}

/// Largest tick distance a [`Baseline`] reports (2^16): distances come from ticks on the
/// wire, and this keeps products of a few of them within 64 bits.
pub const MAX_BASELINE_TICKS: u64 = 1 << 16;

/// What a delta is coded against: the entity's state in the baseline view, plus the context a
/// prediction needs. Server and client build the same one, so a state may code the error of
/// any deterministic prediction from it (integer arithmetic only: both sides must compute the
/// same bits).
#[derive(Debug)]
pub struct Baseline<'a, S> {
    /// The entity's state in the baseline view.
    pub state: &'a S,
    /// Server ticks from the baseline's snapshot to the one being coded, in
    /// 1..=[`MAX_BASELINE_TICKS`] (longer gaps are clamped, so arithmetic on it cannot
    /// overflow whatever ticks a peer sent).
    pub ticks_ahead: u64,
    /// The entity's state in an older view the receiver also holds, and how many server ticks
    /// before the baseline it is (in 1..=[`MAX_BASELINE_TICKS`]); `None` when there is no such
    /// view or the entity was not in it.
    pub previous: Option<(&'a S, u64)>,
    /// The entity's state in a view older still (before `previous`), and how many server ticks
    /// before the baseline it is (in 1..=[`MAX_BASELINE_TICKS`], usually more than
    /// `previous`'s, but check); `None` unless `previous` is `Some`
    /// and the entity was in that view too. With it, a state can predict from acceleration.
    pub older: Option<(&'a S, u64)>,
}

impl<'a, S> Baseline<'a, S> {
    /// The baseline of entity `id` at `state`, with the prediction views (seq, tick, view)
    /// newest first, each older than the last.
    pub(crate) fn new(
        state: &'a S,
        base_tick: u64,
        ticks_ahead: u64,
        predictors: &'a [(u64, u64, std::sync::Arc<super::View<S>>)],
        id: EntityId,
    ) -> Self {
        let lookup = |index: usize| {
            predictors.get(index).and_then(|(_, tick, view)| {
                view.get(id).map(|s| {
                    (
                        s,
                        base_tick.saturating_sub(*tick).clamp(1, MAX_BASELINE_TICKS),
                    )
                })
            })
        };
        let previous = lookup(0);
        let older = previous.and_then(|_| lookup(1));
        Self {
            state,
            ticks_ahead: ticks_ahead.clamp(1, MAX_BASELINE_TICKS),
            previous,
            older,
        }
    }
}

impl<S> Clone for Baseline<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Baseline<'_, S> {}

/// Largest serialised [`SerdeState`] accepted when decoding, in bytes.
pub const MAX_SERDE_STATE: usize = 64 * 1024;

/// Any serde type as an entity state, encoded with postcard; the delta sends one bit per byte
/// of the encoding and the bytes that changed, so unchanged fields cost a bit per byte.
/// Hand-packed [`EntityState`] implementations are smaller; this one needs no code.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use tickwire::snapshot::{BitReader, BitWriter, EntityState, SerdeState};
///
/// #[derive(Clone, PartialEq, Serialize, Deserialize)]
/// struct Sensor { reading: i32, battery: u8 }
///
/// let old = SerdeState::new(Sensor { reading: 20, battery: 90 }).unwrap();
/// let new = SerdeState::new(Sensor { reading: 21, battery: 90 }).unwrap();
/// let mut buf = Vec::new();
/// new.write_delta(&old, &mut BitWriter::new(&mut buf));
/// let back = SerdeState::<Sensor>::read_delta(&old, &mut BitReader::new(&buf)).unwrap();
/// assert_eq!(back.value().reading, 21);
/// ```
#[cfg(feature = "serde")]
#[derive(Clone, Debug)]
pub struct SerdeState<T> {
    value: T,
    encoded: Bytes,
}

#[cfg(feature = "serde")]
impl<T> SerdeState<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    /// Wraps a value, encoding it once.
    pub fn new(value: T) -> Result<Self, crate::typed::EncodeError> {
        let encoded = crate::typed::encode(&value)?;
        Ok(Self { value, encoded })
    }

    /// The value.
    pub fn value(&self) -> &T {
        &self.value
    }

    fn from_encoded(encoded: Vec<u8>) -> Result<Self, SnapshotDecodeError> {
        let value = crate::typed::decode(&encoded).map_err(|_| SnapshotDecodeError::Malformed)?;
        Ok(Self {
            value,
            encoded: Bytes::from(encoded),
        })
    }
}

#[cfg(feature = "serde")]
impl<T> PartialEq for SerdeState<T> {
    fn eq(&self, other: &Self) -> bool {
        self.encoded == other.encoded
    }
}

#[cfg(feature = "serde")]
impl<T> EntityState for SerdeState<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn write_full(&self, w: &mut BitWriter<'_>) {
        w.write_varint(self.encoded.len() as u64);
        for &byte in self.encoded.iter() {
            w.write_bits(u64::from(byte), 8);
        }
    }

    fn read_full(r: &mut BitReader<'_>) -> Result<Self, SnapshotDecodeError> {
        let len = r.read_varint()?;
        if len > MAX_SERDE_STATE as u64 || len * 8 > r.remaining_bits() as u64 {
            return Err(SnapshotDecodeError::Malformed);
        }
        let mut encoded = Vec::with_capacity(len as usize);
        for _ in 0..len {
            encoded.push(r.read_bits(8)? as u8);
        }
        Self::from_encoded(encoded)
    }

    fn write_delta(&self, base: &Self, w: &mut BitWriter<'_>) {
        if self.encoded.len() != base.encoded.len() {
            w.write_bool(false);
            self.write_full(w);
            return;
        }
        w.write_bool(true);
        for (new, old) in self.encoded.iter().zip(base.encoded.iter()) {
            if new == old {
                w.write_bool(false);
            } else {
                w.write_bool(true);
                w.write_bits(u64::from(*new), 8);
            }
        }
    }

    fn read_delta(base: &Self, r: &mut BitReader<'_>) -> Result<Self, SnapshotDecodeError> {
        if !r.read_bool()? {
            return Self::read_full(r);
        }
        let mut encoded = base.encoded.to_vec();
        for byte in &mut encoded {
            if r.read_bool()? {
                *byte = r.read_bits(8)? as u8;
            }
        }
        Self::from_encoded(encoded)
    }
}
