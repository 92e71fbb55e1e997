//! Quantisation: floats to small integers of a known bit width, before change detection and
//! bit packing.
//!
//! The server quantises every field it sends and compares the quantised bits with the
//! baseline's, so a value that quantises to the same bits is unchanged and costs nothing. The
//! client sees only dequantised values; the server should simulate with them too where exact
//! agreement matters.
//!
//! Position in workload S1 (`cubes-901`): x, y ∈ [−256, 255] m and z ∈ [0, 32] m at 1/512 m,
//! which packs into 18 + 18 + 15 = 51 bits:
//!
//! ```
//! use tickwire::snapshot::{BitReader, BitWriter, BoundedFloat};
//!
//! let xy = BoundedFloat::new(-256.0, 255.0, 1.0 / 512.0)?;
//! let z = BoundedFloat::new(0.0, 32.0, 1.0 / 512.0)?;
//! assert_eq!((xy.bits(), z.bits()), (18, 15));
//!
//! let position = [12.345f32, -200.0, 3.5];
//! let mut buf = Vec::new();
//! let mut w = BitWriter::new(&mut buf);
//! for (axis, bounds) in position.iter().zip([xy, xy, z]) {
//!     bounds.write(&mut w, *axis);
//! }
//! assert_eq!(w.bit_len(), 51);
//!
//! let mut r = BitReader::new(&buf);
//! for (axis, bounds) in position.iter().zip([xy, xy, z]) {
//!     let got = bounds.read(&mut r).unwrap();
//!     assert!((got - axis).abs() <= bounds.resolution() / 2.0);
//! }
//! # Ok::<(), tickwire::snapshot::BoundedFloatError>(())
//! ```

use thiserror::Error;

use super::bits::{BitReader, BitWriter, SnapshotDecodeError};
use super::interpolate::Quat;

/// Why a [`BoundedFloat`] could not be built.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq, Hash)]
pub enum BoundedFloatError {
    /// `min`, `max` or `resolution` was NaN or infinite.
    #[error("bounds and resolution must be finite")]
    NotFinite,
    /// `min` was not below `max`.
    #[error("min must be below max")]
    EmptyRange,
    /// `resolution` was zero or negative.
    #[error("resolution must be positive")]
    NonPositiveResolution,
    /// The range holds more than 2³² steps of `resolution`.
    #[error("range / resolution needs more than 32 bits")]
    TooManySteps,
}

/// A float in `[min, max]` quantised to steps of `resolution` from `min`, sent as an integer of
/// [`bits()`](Self::bits) bits.
///
/// Values are rounded to the nearest step, so the round-trip error is at most
/// `resolution / 2`. Values outside the range are clamped to it; NaN quantises to `min`.
/// Halving the resolution costs one more bit per value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoundedFloat {
    min: f32,
    max: f32,
    resolution: f32,
    /// The quantised value of `max`: the largest one sent.
    max_quantized: u32,
    bits: u32,
}

impl BoundedFloat {
    /// Values in `[min, max]` at steps of `resolution` (same unit as the values).
    pub fn new(min: f32, max: f32, resolution: f32) -> Result<Self, BoundedFloatError> {
        if !(min.is_finite() && max.is_finite() && resolution.is_finite()) {
            return Err(BoundedFloatError::NotFinite);
        }
        if min >= max {
            return Err(BoundedFloatError::EmptyRange);
        }
        if resolution <= 0.0 {
            return Err(BoundedFloatError::NonPositiveResolution);
        }
        // Rounding (not ceiling) keeps every in-range value within half a step of a step that
        // is sent, and keeps `quantize(dequantize(q)) == q`.
        let steps = ((f64::from(max) - f64::from(min)) / f64::from(resolution)).round();
        if steps > f64::from(u32::MAX) {
            return Err(BoundedFloatError::TooManySteps);
        }
        let max_quantized = steps as u32;
        Ok(Self {
            min,
            max,
            resolution,
            max_quantized,
            bits: u32::BITS - max_quantized.leading_zeros(),
        })
    }

    /// The lower bound.
    pub fn min(&self) -> f32 {
        self.min
    }

    /// The upper bound.
    pub fn max(&self) -> f32 {
        self.max
    }

    /// The step between representable values.
    pub fn resolution(&self) -> f32 {
        self.resolution
    }

    /// Bits per value on the wire: enough for every step from `min` to `max`.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// The largest quantised value: `(max − min) / resolution`, rounded.
    pub fn max_quantized(&self) -> u32 {
        self.max_quantized
    }

    /// The step nearest `value`, clamped to the range. Equal outputs mean "unchanged".
    pub fn quantize(&self, value: f32) -> u32 {
        let steps = ((f64::from(value) - f64::from(self.min)) / f64::from(self.resolution)).round();
        // `as` saturates, and NaN becomes 0, which is `min`.
        (steps as u32).min(self.max_quantized)
    }

    /// The value of step `quantized`: `min + quantized · resolution`, with `quantized` first
    /// clamped to [`max_quantized`](Self::max_quantized).
    ///
    /// When the range is not a whole number of steps the top step lies up to half a step beyond
    /// `max` (or short of it); clamping it to `max` would break `quantize(dequantize(q)) == q`.
    pub fn dequantize(&self, quantized: u32) -> f32 {
        let quantized = quantized.min(self.max_quantized);
        (f64::from(self.min) + f64::from(quantized) * f64::from(self.resolution)) as f32
    }

    /// Quantises `value` and writes it in [`bits()`](Self::bits) bits.
    pub fn write(&self, w: &mut BitWriter<'_>, value: f32) {
        w.write_bits(u64::from(self.quantize(value)), self.bits);
    }

    /// Reads a value written by [`write`](Self::write), without dequantising it. Values above
    /// [`max_quantized`](Self::max_quantized) are [`SnapshotDecodeError::OutOfRange`].
    pub fn read_quantized(&self, r: &mut BitReader<'_>) -> Result<u32, SnapshotDecodeError> {
        let value = r.read_bits(self.bits)?;
        if value > u64::from(self.max_quantized) {
            return Err(SnapshotDecodeError::OutOfRange {
                value,
                max: u64::from(self.max_quantized),
            });
        }
        // Fits: at most `max_quantized`, a u32.
        Ok(value as u32)
    }

    /// Reads a value written by [`write`](Self::write) and dequantises it.
    pub fn read(&self, r: &mut BitReader<'_>) -> Result<f32, SnapshotDecodeError> {
        self.read_quantized(r).map(|q| self.dequantize(q))
    }
}

/// A unit quaternion in smallest-three form: the index of the largest component (2 bits) and
/// the other three, each in [−1/√2, 1/√2], at `bits` bits each.
///
/// The largest component is rebuilt from the unit-length constraint. Because `q` and `-q` are
/// the same rotation, the sign is chosen so the largest component is positive, and both
/// quantise to the same bits. At the default of 9 bits per component (workload S1) a rotation
/// costs 29 bits and comes back within about 0.4° (see the tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuantizedQuat {
    largest: u8,
    components: [u32; 3],
    bits: u8,
}

/// Quantises a rotation to smallest-three form at `bits` bits per component (2 to 31; clamped
/// there). [`DEFAULT_QUAT_BITS`] is 9. The input is normalised first; a zero or non-finite
/// quaternion is treated as the identity.
///
/// ```
/// use tickwire::snapshot::{quantize_quat, Quat, DEFAULT_QUAT_BITS};
///
/// let q = Quat::from_axis_angle([0.3, 1.0, -0.2], 2.0);
/// let packed = quantize_quat(q, DEFAULT_QUAT_BITS);
/// assert_eq!(packed.bit_len(), 2 + 3 * 9);
/// assert!(packed.dequantize().angle_to(q) < 0.01);
/// // The same rotation with the opposite sign gives the same bits.
/// assert_eq!(quantize_quat(Quat(q.0.map(|c| -c)), 9), packed);
/// ```
pub fn quantize_quat(q: Quat, bits: u32) -> QuantizedQuat {
    let bits = bits.clamp(MIN_QUAT_BITS, MAX_QUAT_BITS);
    let q = q.normalized().0;
    let mut largest = 0;
    for i in 1..4 {
        if q[i].abs() > q[largest].abs() {
            largest = i;
        }
    }
    let sign = if q[largest] < 0.0 { -1.0 } else { 1.0 };
    let max_quantized = max_for_bits(bits);
    let mut components = [0u32; 3];
    for (slot, i) in components.iter_mut().zip(others(largest)) {
        let unit = (f64::from(q[i] * sign) + SMALLEST_BOUND) / (2.0 * SMALLEST_BOUND);
        *slot = ((unit * f64::from(max_quantized)).round() as u32).min(max_quantized);
    }
    QuantizedQuat {
        largest: largest as u8,
        components,
        bits: bits as u8,
    }
}

impl QuantizedQuat {
    /// The rotation these bits stand for, normalised.
    pub fn dequantize(&self) -> Quat {
        let max_quantized = f64::from(max_for_bits(u32::from(self.bits)));
        let mut q = [0.0f32; 4];
        let mut sum = 0.0f32;
        for (&c, i) in self
            .components
            .iter()
            .zip(others(usize::from(self.largest)))
        {
            let v = (f64::from(c) / max_quantized * 2.0 * SMALLEST_BOUND - SMALLEST_BOUND) as f32;
            q[i] = v;
            sum += v * v;
        }
        q[usize::from(self.largest)] = (1.0 - sum).max(0.0).sqrt();
        Quat(q).normalized()
    }

    /// Index (0 = x … 3 = w) of the component left out and rebuilt.
    pub fn largest(&self) -> u8 {
        self.largest
    }

    /// A quantised quaternion from its parts, as [`largest`](Self::largest) and
    /// [`components`](Self::components) return them (for codecs that code components apart,
    /// such as deltas from a prediction). `None` if `largest` is above 3, `bits` outside the
    /// supported 2 to 31, or a component does not fit in `bits`.
    pub fn from_parts(largest: u8, components: [u32; 3], bits: u32) -> Option<Self> {
        if largest > 3 || !(MIN_QUAT_BITS..=MAX_QUAT_BITS).contains(&bits) {
            return None;
        }
        if components.iter().any(|&c| u64::from(c) >= 1u64 << bits) {
            return None;
        }
        Some(Self {
            largest,
            components,
            bits: bits as u8,
        })
    }

    /// The three other components, quantised, in index order.
    pub fn components(&self) -> [u32; 3] {
        self.components
    }

    /// Bits per component.
    pub fn bits(&self) -> u32 {
        u32::from(self.bits)
    }

    /// Bits on the wire: 2 + 3 × [`bits()`](Self::bits).
    pub fn bit_len(&self) -> usize {
        2 + 3 * usize::from(self.bits)
    }

    /// Writes the 2-bit index then the three components.
    pub fn write(&self, w: &mut BitWriter<'_>) {
        w.write_bits(u64::from(self.largest), 2);
        for c in self.components {
            w.write_bits(u64::from(c), u32::from(self.bits));
        }
    }

    /// Reads a rotation written by [`write`](Self::write) with the same `bits` (clamped to 2 to
    /// 31 as in [`quantize_quat`]). Every bit pattern is a valid rotation, so only running out of
    /// input fails.
    pub fn read(r: &mut BitReader<'_>, bits: u32) -> Result<Self, SnapshotDecodeError> {
        let bits = bits.clamp(MIN_QUAT_BITS, MAX_QUAT_BITS);
        let largest = r.read_bits(2)? as u8;
        let mut components = [0u32; 3];
        for c in &mut components {
            // Fits: at most 31 bits.
            *c = r.read_bits(bits)? as u32;
        }
        Ok(Self {
            largest,
            components,
            bits: bits as u8,
        })
    }
}

/// The indices other than `largest`, in order.
fn others(largest: usize) -> impl Iterator<Item = usize> {
    (0..4).filter(move |&i| i != largest)
}

fn max_for_bits(bits: u32) -> u32 {
    (1u32 << bits) - 1
}

/// Bits per smallest-three component in workload S1 (`cubes-901`).
pub const DEFAULT_QUAT_BITS: u32 = 9;

const MIN_QUAT_BITS: u32 = 2;
const MAX_QUAT_BITS: u32 = 31;

/// The three smaller components of a unit quaternion lie within ±1/√2.
const SMALLEST_BOUND: f64 = std::f64::consts::FRAC_1_SQRT_2;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::{Config as ProptestConfig, RngSeed};

    use super::*;

    #[test]
    fn s1_position_bits() {
        let xy = BoundedFloat::new(-256.0, 255.0, 1.0 / 512.0).unwrap();
        let z = BoundedFloat::new(0.0, 32.0, 1.0 / 512.0).unwrap();
        assert_eq!(xy.max_quantized(), 511 * 512);
        assert_eq!(xy.bits(), 18);
        assert_eq!(z.max_quantized(), 32 * 512);
        assert_eq!(z.bits(), 15);
        assert_eq!(xy.quantize(-256.0), 0);
        assert_eq!(xy.dequantize(xy.quantize(255.0)), 255.0);
    }

    #[test]
    fn clamps_out_of_range_and_nan() {
        let b = BoundedFloat::new(0.0, 1.0, 0.1).unwrap();
        assert_eq!(b.quantize(-5.0), 0);
        assert_eq!(b.quantize(5.0), b.max_quantized());
        assert_eq!(b.quantize(f32::NAN), 0);
        assert_eq!(b.quantize(f32::INFINITY), b.max_quantized());
        assert_eq!(b.dequantize(u32::MAX), 1.0);
        assert_eq!(b.dequantize(b.max_quantized() + 1), 1.0);
    }

    #[test]
    fn range_not_a_multiple_of_resolution_covers_max() {
        let b = BoundedFloat::new(0.0, 1.0, 0.3).unwrap();
        assert_eq!(b.max_quantized(), 3);
        assert!((b.dequantize(b.quantize(1.0)) - 0.9).abs() < 1e-6);
        let b = BoundedFloat::new(0.0, 1.0, 0.375).unwrap();
        assert_eq!(b.max_quantized(), 3);
        assert_eq!(b.dequantize(b.quantize(1.0)), 1.125);
        for b in [b, BoundedFloat::new(0.0, 1.0, 0.3).unwrap()] {
            for q in 0..=b.max_quantized() {
                assert_eq!(b.quantize(b.dequantize(q)), q);
            }
        }
    }

    #[test]
    fn rejects_bad_bounds() {
        assert_eq!(
            BoundedFloat::new(1.0, 1.0, 0.1),
            Err(BoundedFloatError::EmptyRange)
        );
        assert_eq!(
            BoundedFloat::new(0.0, 1.0, 0.0),
            Err(BoundedFloatError::NonPositiveResolution)
        );
        assert_eq!(
            BoundedFloat::new(f32::NAN, 1.0, 0.1),
            Err(BoundedFloatError::NotFinite)
        );
        assert_eq!(
            BoundedFloat::new(-1e9, 1e9, 1e-3),
            Err(BoundedFloatError::TooManySteps)
        );
    }

    #[test]
    fn read_rejects_values_above_max() {
        let z = BoundedFloat::new(0.0, 32.0, 1.0 / 512.0).unwrap();
        let mut buf = Vec::new();
        BitWriter::new(&mut buf).write_bits(0x7fff, 15);
        assert_eq!(
            z.read(&mut BitReader::new(&buf)),
            Err(SnapshotDecodeError::OutOfRange {
                value: 0x7fff,
                max: 16_384
            })
        );
    }

    #[test]
    fn quat_wire_round_trip() {
        let q = Quat::from_axis_angle([1.0, -2.0, 0.5], 2.5);
        let packed = quantize_quat(q, DEFAULT_QUAT_BITS);
        let mut buf = Vec::new();
        let mut w = BitWriter::new(&mut buf);
        packed.write(&mut w);
        assert_eq!(w.bit_len(), 29);
        let mut r = BitReader::new(&buf);
        assert_eq!(QuantizedQuat::read(&mut r, DEFAULT_QUAT_BITS), Ok(packed));
        assert_eq!(
            QuantizedQuat::read(&mut r, DEFAULT_QUAT_BITS),
            Err(SnapshotDecodeError::UnexpectedEnd {
                needed: 9,
                remaining: 1
            })
        );
    }

    #[test]
    fn any_bits_dequantize_to_a_unit_quaternion() {
        for largest in 0..4 {
            for c in [0, 1, 255, 511] {
                let q = QuantizedQuat {
                    largest,
                    components: [c, 511 - c, c],
                    bits: 9,
                }
                .dequantize();
                assert!((q.dot(q) - 1.0).abs() < 1e-5, "{q:?}");
            }
        }
    }

    fn config(seed: u64) -> ProptestConfig {
        ProptestConfig {
            cases: 2_000,
            rng_seed: RngSeed::Fixed(seed),
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// Bounds with a resolution between 1/4096 and 1 and ranges up to 10,000 steps wide.
    fn bounds() -> impl Strategy<Value = BoundedFloat> {
        (-1000.0f32..1000.0, 0u32..13, 1u32..10_000).prop_map(|(min, shift, steps)| {
            let resolution = 1.0 / (1u32 << shift) as f32;
            BoundedFloat::new(min, min + steps as f32 * resolution, resolution).unwrap()
        })
    }

    fn quat() -> impl Strategy<Value = Quat> {
        prop::array::uniform4(-1.0f32..1.0)
            .prop_filter("non-zero", |q| q.iter().map(|c| c * c).sum::<f32>() > 1e-3)
            .prop_map(|q| Quat(q).normalized())
    }

    proptest! {
        #![proptest_config(config(0x7175_616e))]

        #[test]
        fn round_trip_error_within_half_a_step(b in bounds(), f in 0.0f32..=1.0) {
            let value = b.min() + (b.max() - b.min()) * f;
            let value = value.clamp(b.min(), b.max());
            let back = b.dequantize(b.quantize(value));
            // Half a step, plus the f32 rounding of the result.
            let slack = value.abs().max(1.0) * f32::EPSILON * 2.0;
            prop_assert!((back - value).abs() <= b.resolution() / 2.0 + slack,
                "{value} -> {back} with {b:?}");
        }

        #[test]
        fn quantizing_is_deterministic_and_stable(b in bounds(), value in -2000.0f32..2000.0) {
            let q = b.quantize(value);
            prop_assert_eq!(q, b.quantize(value));
            prop_assert!(u64::from(q) < 1u64 << b.bits());
            // What the client sees quantises back to the same bits.
            prop_assert_eq!(b.quantize(b.dequantize(q)), q);
        }

        #[test]
        fn quat_round_trip_is_close_and_sign_invariant(q in quat(), bits in 6u32..=16) {
            let packed = quantize_quat(q, bits);
            prop_assert_eq!(packed, quantize_quat(q, bits));
            prop_assert_eq!(packed, quantize_quat(Quat(q.0.map(|c| -c)), bits));
            // One step is √2 / (2^bits − 1) per component: the angle error stays within a few.
            let step = std::f32::consts::SQRT_2 / ((1u32 << bits) - 1) as f32;
            let angle = packed.dequantize().angle_to(q);
            prop_assert!(angle <= 2.5 * step + 1e-3, "angle {angle} at {bits} bits");
        }

        #[test]
        fn quat_at_default_bits_within_half_a_degree(q in quat()) {
            let angle = quantize_quat(q, DEFAULT_QUAT_BITS).dequantize().angle_to(q);
            prop_assert!(angle.to_degrees() < 0.5, "{angle}");
        }
    }
}
