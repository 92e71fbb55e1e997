//! What a snapshot carries per entity ([`Thing`]: a coin or a player, quantised and
//! bit-packed), and what the client interpolates ([`Scene`]).

use std::time::Duration;

use tickwire::snapshot::{
    BitReader, BitWriter, EntityId, EntityState, Interpolate, Kinematic, SnapshotDecodeError, View,
};

use crate::world::{quantizer, Body};

/// One replicated entity, as quantised integers (equal bits compare equal, so an entity that
/// did not move costs nothing in a delta).
///
/// Full layout: 1 kind bit, then x (12 bits) and y (11 bits); players add vx and vy (11 bits
/// each). Delta: one "changed" bit per field, then the changed fields at full width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Thing {
    /// A coin.
    Coin {
        /// Quantised x.
        x: u32,
        /// Quantised y.
        y: u32,
    },
    /// A player.
    Player {
        /// Quantised x.
        x: u32,
        /// Quantised y.
        y: u32,
        /// Quantised horizontal velocity.
        vx: u32,
        /// Quantised vertical velocity.
        vy: u32,
    },
}

impl Thing {
    /// A coin at `(x, y)`.
    pub fn coin(x: f32, y: f32) -> Self {
        let q = quantizer();
        Self::Coin {
            x: q.x.quantize(x),
            y: q.y.quantize(y),
        }
    }

    /// A player's body.
    pub fn player(body: &Body) -> Self {
        let q = quantizer();
        Self::Player {
            x: q.x.quantize(body.x),
            y: q.y.quantize(body.y),
            vx: q.velocity.quantize(body.vx),
            vy: q.velocity.quantize(body.vy),
        }
    }

    /// The body this stands for (a coin is a body at rest).
    pub fn body(&self) -> Body {
        let q = quantizer();
        match *self {
            Self::Coin { x, y } => Body {
                x: q.x.dequantize(x),
                y: q.y.dequantize(y),
                vx: 0.0,
                vy: 0.0,
            },
            Self::Player { x, y, vx, vy } => Body {
                x: q.x.dequantize(x),
                y: q.y.dequantize(y),
                vx: q.velocity.dequantize(vx),
                vy: q.velocity.dequantize(vy),
            },
        }
    }

    /// Whether this is a player.
    pub fn is_player(&self) -> bool {
        matches!(self, Self::Player { .. })
    }

    fn fields(&self) -> [Option<u32>; 4] {
        match *self {
            Self::Coin { x, y } => [Some(x), Some(y), None, None],
            Self::Player { x, y, vx, vy } => [Some(x), Some(y), Some(vx), Some(vy)],
        }
    }
}

fn widths() -> [u32; 4] {
    let q = quantizer();
    [q.x.bits(), q.y.bits(), q.velocity.bits(), q.velocity.bits()]
}

fn read_field(r: &mut BitReader<'_>, bits: u32, max: u32) -> Result<u32, SnapshotDecodeError> {
    let value = r.read_bits(bits)? as u32;
    if value > max {
        return Err(SnapshotDecodeError::Malformed);
    }
    Ok(value)
}

fn read_fields(
    r: &mut BitReader<'_>,
    player: bool,
    base: Option<[Option<u32>; 4]>,
) -> Result<Thing, SnapshotDecodeError> {
    let q = quantizer();
    let maxes = [
        q.x.max_quantized(),
        q.y.max_quantized(),
        q.velocity.max_quantized(),
        q.velocity.max_quantized(),
    ];
    let count = if player { 4 } else { 2 };
    let mut values = [0u32; 4];
    for i in 0..count {
        let from_base = base.and_then(|b| b[i]);
        values[i] = match from_base {
            Some(old) if !r.read_bool()? => old,
            _ => read_field(r, widths()[i], maxes[i])?,
        };
    }
    Ok(if player {
        Thing::Player {
            x: values[0],
            y: values[1],
            vx: values[2],
            vy: values[3],
        }
    } else {
        Thing::Coin {
            x: values[0],
            y: values[1],
        }
    })
}

impl EntityState for Thing {
    fn write_full(&self, w: &mut BitWriter<'_>) {
        w.write_bool(self.is_player());
        for (value, bits) in self.fields().iter().zip(widths()) {
            if let Some(value) = value {
                w.write_bits(u64::from(*value), bits);
            }
        }
    }

    fn read_full(r: &mut BitReader<'_>) -> Result<Self, SnapshotDecodeError> {
        let player = r.read_bool()?;
        read_fields(r, player, None)
    }

    fn write_delta(&self, base: &Self, w: &mut BitWriter<'_>) {
        let same_kind = self.is_player() == base.is_player();
        w.write_bool(same_kind);
        if !same_kind {
            self.write_full(w);
            return;
        }
        for ((value, old), bits) in self.fields().iter().zip(base.fields()).zip(widths()) {
            if let Some(value) = value {
                let changed = Some(*value) != old;
                w.write_bool(changed);
                if changed {
                    w.write_bits(u64::from(*value), bits);
                }
            }
        }
    }

    fn read_delta(base: &Self, r: &mut BitReader<'_>) -> Result<Self, SnapshotDecodeError> {
        if !r.read_bool()? {
            return Self::read_full(r);
        }
        read_fields(r, base.is_player(), Some(base.fields()))
    }
}

/// The client's picture of the world at one server tick: every entity's body, sorted by id.
/// Interpolated by the snapshot buffer: players with their velocities (cubic Hermite), coins
/// and anything that jumped (a respawned coin) taken as they are.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scene {
    /// `(id, is a player, body)`, by ascending id.
    pub entities: Vec<(EntityId, bool, Body)>,
}

impl Scene {
    /// The scene of a decoded view.
    pub fn of_view(view: &View<Thing>) -> Self {
        Self {
            entities: view
                .iter()
                .map(|(id, thing)| (id, thing.is_player(), thing.body()))
                .collect(),
        }
    }

    /// One entity's body.
    pub fn get(&self, id: EntityId) -> Option<&Body> {
        self.entities
            .binary_search_by_key(&id, |(id, _, _)| *id)
            .ok()
            .map(|i| &self.entities[i].2)
    }
}

impl Interpolate for Scene {
    fn interpolate(&self, other: &Self, t: f32) -> Self {
        self.interpolate_over(other, t, Duration::ZERO)
    }

    fn interpolate_over(&self, other: &Self, t: f32, span: Duration) -> Self {
        // Entities in both: blend. Only in one: shown from the side `t` is closer to the end of.
        let mut out = Vec::with_capacity(other.entities.len());
        let (mut i, mut j) = (0, 0);
        let (a, b) = (&self.entities, &other.entities);
        while i < a.len() || j < b.len() {
            match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) if x.0 == y.0 => {
                    out.push((x.0, y.1, blend(&x.2, &y.2, x.1 && y.1, t, span)));
                    i += 1;
                    j += 1;
                }
                (Some(x), Some(y)) if x.0 < y.0 => {
                    if t < 1.0 {
                        out.push(*x);
                    }
                    i += 1;
                }
                (Some(x), None) => {
                    if t < 1.0 {
                        out.push(*x);
                    }
                    i += 1;
                }
                (_, Some(y)) => {
                    if t >= 1.0 {
                        out.push(*y);
                    }
                    j += 1;
                }
                (None, None) => break,
            }
        }
        Self { entities: out }
    }
}

/// Farther than this between two snapshots is a teleport (a respawned coin), not motion.
const TELEPORT_DISTANCE: f32 = 4.0;

fn blend(a: &Body, b: &Body, moving: bool, t: f32, span: Duration) -> Body {
    if a.distance(b) > TELEPORT_DISTANCE || !moving {
        return if t < 1.0 { *a } else { *b };
    }
    let ka = Kinematic {
        position: [a.x, a.y, 0.0],
        velocity: [a.vx, a.vy, 0.0],
    };
    let kb = Kinematic {
        position: [b.x, b.y, 0.0],
        velocity: [b.vx, b.vy, 0.0],
    };
    let k = if span.is_zero() {
        ka.interpolate(&kb, t)
    } else {
        ka.interpolate_over(&kb, t, span)
    };
    Body {
        x: k.position[0],
        y: k.position[1],
        vx: k.velocity[0],
        vy: k.velocity[1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip_delta(new: &Thing, base: &Thing) -> (Thing, usize) {
        let mut buf = Vec::new();
        let mut w = BitWriter::new(&mut buf);
        new.write_delta(base, &mut w);
        let bits = w.bit_len();
        let back = Thing::read_delta(base, &mut BitReader::new(&buf)).unwrap();
        (back, bits)
    }

    #[test]
    fn full_and_delta_round_trip() {
        let player = Thing::player(&Body {
            x: 12.5,
            y: 7.25,
            vx: -3.0,
            vy: 10.0,
        });
        let mut buf = Vec::new();
        player.write_full(&mut BitWriter::new(&mut buf));
        assert_eq!(Thing::read_full(&mut BitReader::new(&buf)).unwrap(), player);

        let moved = Thing::player(&Body {
            x: 12.75,
            y: 7.25,
            vx: -3.0,
            vy: 10.0,
        });
        let (back, bits) = round_trip_delta(&moved, &player);
        assert_eq!(back, moved);
        assert_eq!(bits, 1 + 4 + 12, "kind + changed bits + x");

        let coin = Thing::coin(3.0, 4.0);
        let (back, _) = round_trip_delta(&moved, &coin);
        assert_eq!(back, moved);
    }

    #[test]
    fn hostile_bytes_are_errors() {
        for bytes in [&[][..], &[0xff; 3], &[0x80], &[0xff; 16]] {
            let _ = Thing::read_full(&mut BitReader::new(bytes));
            let _ = Thing::read_delta(&Thing::coin(1.0, 1.0), &mut BitReader::new(bytes));
        }
        // An out-of-range coordinate is refused.
        let mut buf = Vec::new();
        let mut w = BitWriter::new(&mut buf);
        w.write_bool(false);
        w.write_bits(
            u64::from(quantizer().x.max_quantized() + 1),
            quantizer().x.bits(),
        );
        w.write_bits(0, quantizer().y.bits());
        assert!(Thing::read_full(&mut BitReader::new(&buf)).is_err());
    }

    #[test]
    fn scenes_blend_players_and_snap_coins() {
        let p0 = Body {
            x: 10.0,
            y: 10.0,
            vx: 6.0,
            vy: 0.0,
        };
        let p1 = Body {
            x: 10.2,
            y: 10.0,
            vx: 6.0,
            vy: 0.0,
        };
        let a = Scene {
            entities: vec![
                (EntityId(0), false, Body::at(1.0, 1.0)),
                (EntityId(20), true, p0),
            ],
        };
        let b = Scene {
            entities: vec![
                (EntityId(0), false, Body::at(40.0, 20.0)),
                (EntityId(20), true, p1),
            ],
        };
        let mid = a.interpolate_over(&b, 0.5, Duration::from_secs_f32(1.0 / 30.0));
        assert_eq!(mid.get(EntityId(0)).unwrap().x, 1.0);
        assert!((mid.get(EntityId(20)).unwrap().x - 10.1).abs() < 1e-3);
    }
}
