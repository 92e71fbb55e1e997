//! Bit-level packing: [`BitWriter`] appends fields of any width to a caller-owned `Vec<u8>`,
//! [`BitReader`] reads them back and returns a [`SnapshotDecodeError`] instead of panicking
//! when the input is short or malformed.
//!
//! Bits are packed least-significant first: the first bit written is bit 0 of byte 0. The last
//! byte is padded with zero bits, and [`BitReader::finish`] checks that padding so that trailing
//! garbage is caught.

use thiserror::Error;

/// Why snapshot bits could not be decoded. Decoding hostile bytes yields one of these, never a
/// panic.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq, Hash)]
pub enum SnapshotDecodeError {
    /// A read needed more bits than were left in the input.
    #[error("snapshot truncated: needed {needed} bits, {remaining} left")]
    UnexpectedEnd {
        /// Bits the read asked for.
        needed: u32,
        /// Bits that were left.
        remaining: usize,
    },
    /// A read asked for more than 64 bits at once (a bit count taken from hostile input).
    #[error("cannot read {0} bits at once (at most 64)")]
    TooManyBits(u32),
    /// A varint ran longer than 10 groups or did not fit in 64 bits.
    #[error("varint longer than 64 bits")]
    VarintOverflow,
    /// A quantised value was above the largest one its encoding can produce.
    #[error("quantised value {value} above the maximum {max}")]
    OutOfRange {
        /// The value read.
        value: u64,
        /// The largest valid value.
        max: u64,
    },
    /// Whole bytes were left after the end, or the padding bits of the last byte were not zero.
    #[error("{0} bits left after the end of the snapshot")]
    TrailingBits(usize),
    /// An entity state's bytes did not decode as its type.
    #[error("entity state did not decode")]
    Malformed,
    /// A delta names a baseline snapshot this client does not hold.
    #[error("delta against snapshot {0}, which this client does not hold")]
    UnknownBaseline(u64),
    /// A delta changes or removes an entity its baseline does not have.
    #[error("delta names entity {0}, which its baseline does not have")]
    UnknownEntity(u32),
    /// More entities than the configured limit, or ids out of order.
    #[error("too many entities, or entity ids out of order")]
    TooManyEntities,
}

/// Appends bit fields to a caller-owned byte buffer.
///
/// The writer appends after whatever the buffer already holds, so a header can be written with
/// byte-level code first. Bits go least-significant first; the unused high bits of the last
/// byte stay zero. Writing never fails and never allocates beyond growing the buffer.
///
/// ```
/// use tickwire::snapshot::{BitReader, BitWriter};
///
/// let mut buf = Vec::new();
/// let mut w = BitWriter::new(&mut buf);
/// w.write_bits(5, 3);
/// w.write_bool(true);
/// w.write_varint(300);
/// w.write_varint_signed(-2);
/// assert_eq!(w.bit_len(), 3 + 1 + 16 + 8);
///
/// let mut r = BitReader::new(&buf);
/// assert_eq!(r.read_bits(3)?, 5);
/// assert!(r.read_bool()?);
/// assert_eq!(r.read_varint()?, 300);
/// assert_eq!(r.read_varint_signed()?, -2);
/// r.finish()?;
/// # Ok::<(), tickwire::snapshot::SnapshotDecodeError>(())
/// ```
#[derive(Debug)]
pub struct BitWriter<'a> {
    buf: &'a mut Vec<u8>,
    /// Bits written by this writer.
    bits: usize,
}

impl<'a> BitWriter<'a> {
    /// A writer appending to `buf` (which may already hold bytes; they are kept).
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Self { buf, bits: 0 }
    }

    /// Bits written so far by this writer (not counting bytes the buffer held before).
    pub fn bit_len(&self) -> usize {
        self.bits
    }

    /// Bytes this writer has added to the buffer so far: `bit_len()` rounded up to whole bytes.
    pub fn byte_len(&self) -> usize {
        self.bits.div_ceil(8)
    }

    /// Writes the low `bits` bits of `value`; higher bits of `value` are ignored.
    ///
    /// # Panics
    /// If `bits > 64`: the width is chosen by the caller's code, so this is a bug, not input.
    pub fn write_bits(&mut self, value: u64, bits: u32) {
        assert!(bits <= 64, "write_bits: {bits} bits (at most 64)");
        if bits == 0 {
            return;
        }
        let used = (self.bits % 8) as u32;
        // The value shifted to its place in the current partial byte, then whole bytes.
        let mut pending = u128::from(low_bits(value, bits)) << used;
        let mut remaining = used + bits;
        if used > 0 {
            // A previous write left a partial byte at the end.
            if let Some(last) = self.buf.last_mut() {
                *last |= pending as u8;
            }
            pending >>= 8;
            remaining = remaining.saturating_sub(8);
        }
        while remaining > 0 {
            self.buf.push(pending as u8);
            pending >>= 8;
            remaining = remaining.saturating_sub(8);
        }
        self.bits += bits as usize;
    }

    /// Writes one bit.
    pub fn write_bool(&mut self, value: bool) {
        self.write_bits(u64::from(value), 1);
    }

    /// Writes an unsigned LEB128-style varint: groups of 7 bits, least significant first, each
    /// followed by a continuation bit. Costs 8 bits for values below 128, 16 below 16,384, and
    /// at most 80 bits. Prefer [`write_bits`](Self::write_bits) when the range is known and small.
    pub fn write_varint(&mut self, mut value: u64) {
        loop {
            let group = value & 0x7f;
            value >>= 7;
            self.write_bits(group, 7);
            self.write_bool(value != 0);
            if value == 0 {
                return;
            }
        }
    }

    /// Writes a signed varint: [`zigzag_encode`] then [`write_varint`](Self::write_varint), so
    /// small magnitudes of either sign stay short (−1 costs 8 bits, not 80).
    pub fn write_varint_signed(&mut self, value: i64) {
        self.write_varint(zigzag_encode(value));
    }

    /// Writes `value` in the Exp-Golomb code of order `k`: `value + 2^k` in its n significant
    /// bits, after n − 1 − k zero bits. Short for values below about `2^k` (k + 1 bits for
    /// those below `2^k`), and it grows by two bits each time the value doubles, so an
    /// occasional large value costs little. Order 0 is the Elias-gamma code of `value + 1`
    /// (1 bit for 0, 3 bits for 1 and 2). [`exp_golomb_bits`] gives the length.
    ///
    /// # Panics
    /// If `k > MAX_EXP_GOLOMB_ORDER` or `value ≥ 2^62` (chosen by the caller's code).
    pub fn write_exp_golomb(&mut self, value: u64, k: u32) {
        assert!(k <= MAX_EXP_GOLOMB_ORDER, "write_exp_golomb: order {k}");
        assert!(value < 1 << 62, "write_exp_golomb: value {value}");
        let shifted = value + (1 << k);
        let bits = 64 - shifted.leading_zeros();
        self.write_bits(0, bits - 1 - k);
        // Most significant bit first, so the reader knows the length from the zeros.
        self.write_bits(low_bits_reversed(shifted, bits), bits);
    }

    /// Writes a signed value as [`zigzag_encode`] then
    /// [`write_exp_golomb`](Self::write_exp_golomb): small magnitudes of either sign are short.
    pub fn write_exp_golomb_signed(&mut self, value: i64, k: u32) {
        self.write_exp_golomb(zigzag_encode(value), k);
    }
}

/// Highest order [`BitWriter::write_exp_golomb`] accepts.
pub const MAX_EXP_GOLOMB_ORDER: u32 = 32;

/// Bits [`BitWriter::write_exp_golomb`] writes for `value` at order `k`.
pub fn exp_golomb_bits(value: u64, k: u32) -> usize {
    let n = 64 - (value.saturating_add(1 << k.min(MAX_EXP_GOLOMB_ORDER))).leading_zeros() as usize;
    2 * n - k.min(MAX_EXP_GOLOMB_ORDER) as usize - 1
}

/// Reads bit fields from a byte slice written by [`BitWriter`].
///
/// Every read is bounds-checked: running past the end returns
/// [`SnapshotDecodeError::UnexpectedEnd`] and leaves the position unchanged.
#[derive(Clone, Debug)]
pub struct BitReader<'a> {
    bytes: &'a [u8],
    /// Position in bits from the start of `bytes`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// A reader at the first bit of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Bits read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bits left, including the zero padding of the last byte.
    pub fn remaining_bits(&self) -> usize {
        self.bytes.len() * 8 - self.pos
    }

    /// Reads `bits` bits (0 to 64) written by [`BitWriter::write_bits`].
    pub fn read_bits(&mut self, bits: u32) -> Result<u64, SnapshotDecodeError> {
        if bits > 64 {
            return Err(SnapshotDecodeError::TooManyBits(bits));
        }
        let remaining = self.remaining_bits();
        if (bits as usize) > remaining {
            return Err(SnapshotDecodeError::UnexpectedEnd {
                needed: bits,
                remaining,
            });
        }
        let mut value = 0u64;
        let mut done = 0u32;
        while done < bits {
            let offset = (self.pos % 8) as u32;
            let take = (8 - offset).min(bits - done);
            // In bounds: `bits <= remaining` was checked above.
            let byte = self.bytes[self.pos / 8];
            let chunk = low_bits(u64::from(byte >> offset), take);
            value |= chunk << done;
            done += take;
            self.pos += take as usize;
        }
        Ok(value)
    }

    /// Reads one bit.
    pub fn read_bool(&mut self) -> Result<bool, SnapshotDecodeError> {
        Ok(self.read_bits(1)? == 1)
    }

    /// Reads a varint written by [`BitWriter::write_varint`]. More than 10 groups, or bits
    /// beyond the 64th, are [`SnapshotDecodeError::VarintOverflow`].
    pub fn read_varint(&mut self) -> Result<u64, SnapshotDecodeError> {
        let mut value = 0u64;
        for group_index in 0..MAX_VARINT_GROUPS {
            let group = self.read_bits(7)?;
            let shift = group_index * 7;
            if shift == 63 && group > 1 {
                return Err(SnapshotDecodeError::VarintOverflow);
            }
            value |= group << shift;
            if !self.read_bool()? {
                return Ok(value);
            }
        }
        Err(SnapshotDecodeError::VarintOverflow)
    }

    /// Reads a signed varint written by [`BitWriter::write_varint_signed`].
    pub fn read_varint_signed(&mut self) -> Result<i64, SnapshotDecodeError> {
        self.read_varint().map(zigzag_decode)
    }

    /// Reads a value written by [`BitWriter::write_exp_golomb`] at order `k`. A code longer
    /// than 62 bits of value, or an order above [`MAX_EXP_GOLOMB_ORDER`], is
    /// [`SnapshotDecodeError::VarintOverflow`]; the run of zeros is bounded, so hostile input
    /// cannot make it loop long.
    pub fn read_exp_golomb(&mut self, k: u32) -> Result<u64, SnapshotDecodeError> {
        if k > MAX_EXP_GOLOMB_ORDER {
            return Err(SnapshotDecodeError::VarintOverflow);
        }
        let mut zeros = 0u32;
        while !self.read_bool()? {
            zeros += 1;
            if zeros + k >= 62 {
                return Err(SnapshotDecodeError::VarintOverflow);
            }
        }
        let rest = zeros + k;
        let low = self.read_bits(rest)?;
        let shifted = (1u64 << rest) | low_bits_reversed(low, rest);
        Ok(shifted - (1 << k))
    }

    /// Reads a value written by [`BitWriter::write_exp_golomb_signed`].
    pub fn read_exp_golomb_signed(&mut self, k: u32) -> Result<i64, SnapshotDecodeError> {
        self.read_exp_golomb(k).map(zigzag_decode)
    }

    /// Checks that only the zero padding of the last byte is left: fewer than 8 bits, all zero.
    /// Call after the last field so that trailing garbage is an error, not silently ignored.
    pub fn finish(self) -> Result<(), SnapshotDecodeError> {
        let remaining = self.remaining_bits();
        if remaining >= 8 {
            return Err(SnapshotDecodeError::TrailingBits(remaining));
        }
        let mut rest = self;
        if rest.read_bits(remaining as u32)? != 0 {
            return Err(SnapshotDecodeError::TrailingBits(remaining));
        }
        Ok(())
    }
}

/// The low `bits` bits of `value` in reverse order: bits read one by one, most significant
/// first, come out of [`BitReader::read_bits`] least significant first.
fn low_bits_reversed(value: u64, bits: u32) -> u64 {
    if bits == 0 {
        return 0;
    }
    (value << (64 - bits)).reverse_bits()
}

/// Maps signed integers to unsigned so that small magnitudes stay small:
/// 0 → 0, −1 → 1, 1 → 2, −2 → 3, …
///
/// ```
/// use tickwire::snapshot::{zigzag_decode, zigzag_encode};
/// assert_eq!(zigzag_encode(-1), 1);
/// assert_eq!(zigzag_encode(1), 2);
/// assert_eq!(zigzag_decode(zigzag_encode(i64::MIN)), i64::MIN);
/// ```
pub fn zigzag_encode(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// The inverse of [`zigzag_encode`].
pub fn zigzag_decode(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// The low `bits` bits of `value` (all of it for 64).
fn low_bits(value: u64, bits: u32) -> u64 {
    if bits >= 64 {
        value
    } else {
        value & ((1u64 << bits) - 1)
    }
}

/// A u64 needs at most ten 7-bit groups.
const MAX_VARINT_GROUPS: u32 = 10;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::{Config as ProptestConfig, RngSeed};

    use super::*;

    #[test]
    fn packs_least_significant_first() {
        let mut buf = Vec::new();
        let mut w = BitWriter::new(&mut buf);
        w.write_bits(0b101, 3);
        w.write_bits(0b11111, 5);
        w.write_bits(0x1ff, 9);
        assert_eq!(w.byte_len(), 3);
        assert_eq!(buf, vec![0b1111_1101, 0xff, 0x01]);
    }

    #[test]
    fn appends_after_existing_bytes() {
        let mut buf = vec![0xaa];
        let mut w = BitWriter::new(&mut buf);
        w.write_bits(1, 1);
        assert_eq!(buf, vec![0xaa, 0x01]);
    }

    #[test]
    fn full_width_and_zero_width() {
        let mut buf = Vec::new();
        let mut w = BitWriter::new(&mut buf);
        w.write_bits(u64::MAX, 64);
        w.write_bits(123, 0);
        w.write_bits(0x8000_0000_0000_0001, 64);
        let mut r = BitReader::new(&buf);
        assert_eq!(r.read_bits(64), Ok(u64::MAX));
        assert_eq!(r.read_bits(0), Ok(0));
        assert_eq!(r.read_bits(64), Ok(0x8000_0000_0000_0001));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn ignores_high_bits_of_value() {
        let mut buf = Vec::new();
        let mut w = BitWriter::new(&mut buf);
        w.write_bits(0xff, 4);
        w.write_bits(0, 4);
        assert_eq!(buf, vec![0x0f]);
    }

    #[test]
    fn reading_past_the_end_is_an_error_and_keeps_position() {
        let mut r = BitReader::new(&[0xff]);
        assert_eq!(r.read_bits(5), Ok(0x1f));
        assert_eq!(
            r.read_bits(4),
            Err(SnapshotDecodeError::UnexpectedEnd {
                needed: 4,
                remaining: 3
            })
        );
        assert_eq!(r.position(), 5);
        assert_eq!(r.read_bits(3), Ok(0x7));
        assert_eq!(
            r.read_bool(),
            Err(SnapshotDecodeError::UnexpectedEnd {
                needed: 1,
                remaining: 0
            })
        );
        assert_eq!(
            BitReader::new(&[0; 16]).read_bits(65),
            Err(SnapshotDecodeError::TooManyBits(65))
        );
    }

    #[test]
    fn varint_sizes() {
        for (value, bits) in [(0, 8), (127, 8), (128, 16), (16_383, 16), (u64::MAX, 80)] {
            let mut buf = Vec::new();
            let mut w = BitWriter::new(&mut buf);
            w.write_varint(value);
            assert_eq!(w.bit_len(), bits, "{value}");
        }
    }

    #[test]
    fn overlong_varint_is_an_error() {
        // Eleven groups, each with the continuation bit set.
        let mut buf = Vec::new();
        let mut w = BitWriter::new(&mut buf);
        for _ in 0..11 {
            w.write_bits(0x7f, 7);
            w.write_bool(true);
        }
        assert_eq!(
            BitReader::new(&buf).read_varint(),
            Err(SnapshotDecodeError::VarintOverflow)
        );
        // Ten groups whose last one carries bits beyond the 64th.
        let mut buf = Vec::new();
        let mut w = BitWriter::new(&mut buf);
        for _ in 0..9 {
            w.write_bits(0x7f, 7);
            w.write_bool(true);
        }
        w.write_bits(0x02, 7);
        w.write_bool(false);
        assert_eq!(
            BitReader::new(&buf).read_varint(),
            Err(SnapshotDecodeError::VarintOverflow)
        );
    }

    #[test]
    fn finish_rejects_trailing_bytes_and_dirty_padding() {
        let mut r = BitReader::new(&[0x01, 0x00]);
        assert_eq!(r.read_bits(1), Ok(1));
        assert_eq!(r.finish(), Err(SnapshotDecodeError::TrailingBits(15)));

        let mut r = BitReader::new(&[0x81]);
        assert_eq!(r.read_bits(1), Ok(1));
        assert_eq!(r.finish(), Err(SnapshotDecodeError::TrailingBits(7)));
    }

    #[test]
    fn zigzag_edges() {
        for v in [0, 1, -1, 2, -2, i64::MAX, i64::MIN] {
            assert_eq!(zigzag_decode(zigzag_encode(v)), v);
        }
        assert_eq!(zigzag_encode(i64::MIN), u64::MAX);
        assert_eq!(zigzag_encode(i64::MAX), u64::MAX - 1);
    }

    /// One field of a random bit stream.
    #[derive(Clone, Debug)]
    enum Field {
        Bits(u64, u32),
        Bool(bool),
        Varint(u64),
        Signed(i64),
    }

    fn field() -> impl Strategy<Value = Field> {
        prop_oneof![
            (any::<u64>(), 0u32..=64).prop_map(|(v, n)| Field::Bits(low_bits(v, n), n)),
            any::<bool>().prop_map(Field::Bool),
            any::<u64>().prop_map(Field::Varint),
            any::<i64>().prop_map(Field::Signed),
        ]
    }

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 1_000,
            rng_seed: RngSeed::Fixed(0x6269_7473),
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn fields_round_trip(fields in prop::collection::vec(field(), 0..40)) {
            let mut buf = Vec::new();
            let mut w = BitWriter::new(&mut buf);
            for f in &fields {
                match *f {
                    Field::Bits(v, n) => w.write_bits(v, n),
                    Field::Bool(b) => w.write_bool(b),
                    Field::Varint(v) => w.write_varint(v),
                    Field::Signed(v) => w.write_varint_signed(v),
                }
            }
            let bits = w.bit_len();
            prop_assert_eq!(buf.len(), bits.div_ceil(8));
            let mut r = BitReader::new(&buf);
            for f in &fields {
                match *f {
                    Field::Bits(v, n) => prop_assert_eq!(r.read_bits(n)?, v),
                    Field::Bool(b) => prop_assert_eq!(r.read_bool()?, b),
                    Field::Varint(v) => prop_assert_eq!(r.read_varint()?, v),
                    Field::Signed(v) => prop_assert_eq!(r.read_varint_signed()?, v),
                }
            }
            prop_assert_eq!(r.position(), bits);
            prop_assert_eq!(r.finish(), Ok(()));
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..32),
                                    widths in prop::collection::vec(0u32..=70, 0..40)) {
            let mut r = BitReader::new(&bytes);
            for (i, n) in widths.iter().enumerate() {
                let _ = match i % 3 {
                    0 => r.read_bits(*n),
                    1 => r.read_varint(),
                    _ => r.read_varint_signed().map(zigzag_encode),
                };
            }
            let _ = r.finish();
        }
    }
}
