//! Wrapping 16-bit sequence numbers on the wire, extended to 64 bits in memory.
//!
//! Every counter that goes on the wire (packet numbers, reliable message ids, sequenced message
//! numbers, fragment groups) is a `u64` in memory that never wraps, and its low 16 bits on the wire.
//! The receiver rebuilds the full value from the 16 bits and a nearby reference with [`extend`],
//! exactly as QUIC does for packet numbers. Comparing full values makes wraparound a non-event.

/// Rebuilds a full 64-bit counter from its low 16 bits `wire`, choosing the value closest to
/// `expected` (the next value the receiver expects). Values more than 2^15 away are ambiguous and
/// resolve to the nearer candidate; callers keep their windows well inside that.
pub(crate) fn extend(expected: u64, wire: u16) -> u64 {
    const SPAN: u64 = 1 << 16;
    const HALF: u64 = SPAN / 2;
    let candidate = (expected & !(SPAN - 1)) | u64::from(wire);
    if candidate + HALF <= expected && candidate <= u64::MAX - SPAN {
        candidate + SPAN
    } else if candidate > expected + HALF && candidate >= SPAN {
        candidate - SPAN
    } else {
        candidate
    }
}

/// The low 16 bits of a full counter, as sent on the wire.
pub(crate) fn truncate(full: u64) -> u16 {
    full as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_round_trips_near_the_reference() {
        for expected in [0u64, 1, 100, 65_535, 65_536, 65_537, 200_000, 1 << 40] {
            for delta in -30_000i64..30_000 {
                let full = expected as i64 + delta;
                if full < 0 {
                    continue;
                }
                let full = full as u64;
                assert_eq!(
                    extend(expected, truncate(full)),
                    full,
                    "expected {expected} delta {delta}"
                );
            }
        }
    }

    #[test]
    fn extend_never_goes_negative() {
        assert_eq!(extend(0, 65_535), 65_535);
        assert_eq!(extend(10, 65_000), 65_000);
    }
}
