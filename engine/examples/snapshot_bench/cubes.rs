//! Workload S1, `cubes-901`: the world (900 cubes on a 30 × 30 grid and a player cube), its
//! seeded motion, and the bit-packed entity state the snapshots carry.
//!
//! The motion is a small kinematic model, not a physics engine: the player follows a smooth
//! random walk at up to 6 m/s; cubes within [`PUSH_RADIUS`] of it are pushed away, spin and hop,
//! then slow down by friction and go to sleep. Every [`BURST_PERIOD`] a [`BURST_LENGTH`] burst
//! shakes about half of them. The constants are tuned so that about 9 % of cubes change (after
//! quantisation) in any 100 ms window outside bursts.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tickwire::snapshot::{
    quantize_quat, Baseline, BitReader, BitWriter, BoundedFloat, EntityState, Interpolate,
    QuantizedQuat, Quat, SnapshotDecodeError, DEFAULT_QUAT_BITS,
};

/// Cubes on the grid.
pub(crate) const CUBES: usize = 900;
/// Cubes plus the player.
pub(crate) const ENTITIES: usize = CUBES + 1;
/// Simulation and snapshot rate.
pub(crate) const TICK_HZ: f64 = 60.0;
/// Time between bursts, in seconds.
pub(crate) const BURST_PERIOD: f64 = 30.0;
/// Length of a burst, in seconds.
pub(crate) const BURST_LENGTH: f64 = 2.0;

/// The quantisation of S1: position at 1/512 m, orientation smallest-three at 9 bits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Quantizer {
    xy: BoundedFloat,
    z: BoundedFloat,
}

impl Quantizer {
    /// x, y ∈ [−256, 255] m and z ∈ [0, 32] m at 1/512 m.
    pub(crate) fn new() -> Self {
        // Constant, valid bounds: finite, non-empty, positive resolution, < 2^32 steps.
        Self {
            xy: BoundedFloat::new(-256.0, 255.0, 1.0 / 512.0).expect("valid bounds"),
            z: BoundedFloat::new(0.0, 32.0, 1.0 / 512.0).expect("valid bounds"),
        }
    }

    /// The quantised state of a pose.
    pub(crate) fn quantize(&self, pose: &Pose, interacting: bool) -> CubeState {
        CubeState {
            position: [
                self.xy.quantize(pose.position[0]),
                self.xy.quantize(pose.position[1]),
                self.z.quantize(pose.position[2]),
            ],
            rotation: quantize_quat(pose.rotation, DEFAULT_QUAT_BITS),
            interacting,
        }
    }

    /// The pose a quantised state stands for.
    pub(crate) fn dequantize(&self, state: &CubeState) -> Pose {
        Pose {
            position: [
                self.xy.dequantize(state.position[0]),
                self.xy.dequantize(state.position[1]),
                self.z.dequantize(state.position[2]),
            ],
            rotation: state.rotation.dequantize(),
        }
    }
}

/// Position and orientation of one entity, unquantised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Pose {
    /// Metres.
    pub(crate) position: [f32; 3],
    /// Unit quaternion.
    pub(crate) rotation: Quat,
}

impl Interpolate for Pose {
    fn interpolate(&self, other: &Self, t: f32) -> Self {
        Pose {
            position: self.position.interpolate(&other.position, t),
            rotation: self.rotation.interpolate(&other.rotation, t),
        }
    }
}

/// The rendered world on the client: every entity's pose, by id.
#[derive(Clone, Debug)]
pub(crate) struct Frame(pub(crate) Vec<Pose>);

impl Interpolate for Frame {
    fn interpolate(&self, other: &Self, t: f32) -> Self {
        Frame(
            self.0
                .iter()
                .zip(&other.0)
                .map(|(a, b)| a.interpolate(b, t))
                .collect(),
        )
    }
}

/// One cube's replicated state: quantised integers, so equal bits compare equal.
///
/// Full: 18 + 18 + 15 position bits, 29 orientation bits, 1 interacting bit = 81 bits.
///
/// Delta against a reference (see `DELTA LAYOUT` below). The reference is the baseline, or,
/// when the snapshot names prediction views, a prediction from them chosen per cube by a
/// selector in front: `1` the first candidate, `01`/`00` the others (with two older states:
/// constant acceleration, constant velocity, the baseline; with one: velocity, baseline).
///
/// ```text
/// selector      0 to 2 bits, as above (none without prediction views)
/// interacting   1 bit, the value itself (cheaper than a changed bit)
/// xy changed    1 bit (differs from the reference); if set: class 3 bits → width XY_WIDTHS[class], then dx, dy in two's
///               complement at that width (class 7: absolute 18-bit x and y)
/// z changed     1 bit; if set: class 2 bits → width Z_WIDTHS[class], then dz (class 3:
///               absolute 15-bit z)
/// rot changed   1 bit; if set: 1 bit "same largest component"; if same: class 2 bits →
///               width ROT_WIDTHS[class] and the three component deltas (class 3: the three
///               absolute 9-bit components); if not: the whole 29-bit rotation
/// ```
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CubeState {
    position: [u32; 3],
    rotation: QuantizedQuat,
    interacting: bool,
}

impl EntityState for CubeState {
    fn write_full(&self, w: &mut BitWriter<'_>) {
        w.write_bits(u64::from(self.position[0]), XY_BITS);
        w.write_bits(u64::from(self.position[1]), XY_BITS);
        w.write_bits(u64::from(self.position[2]), Z_BITS);
        self.rotation.write(w);
        w.write_bool(self.interacting);
    }

    fn read_full(r: &mut BitReader<'_>) -> Result<Self, SnapshotDecodeError> {
        let x = read_bounded(r, XY_BITS, XY_MAX)?;
        let y = read_bounded(r, XY_BITS, XY_MAX)?;
        let z = read_bounded(r, Z_BITS, Z_MAX)?;
        let rotation = QuantizedQuat::read(r, DEFAULT_QUAT_BITS)?;
        Ok(CubeState {
            position: [x, y, z],
            rotation,
            interacting: r.read_bool()?,
        })
    }

    fn write_delta(&self, base: &Self, w: &mut BitWriter<'_>) {
        self.write_against(&Reference::of(base), w);
    }

    fn read_delta(base: &Self, r: &mut BitReader<'_>) -> Result<Self, SnapshotDecodeError> {
        Self::read_against(&Reference::of(base), r)
    }

    /// With older views: a short code says whether the reference is the baseline, the
    /// baseline's velocity continued, or its velocity and acceleration continued (whichever
    /// codes shortest; a cube that stopped or was just pushed predicts badly).
    fn write_delta_predicted(&self, baseline: &Baseline<'_, Self>, w: &mut BitWriter<'_>) {
        let references = Reference::candidates(baseline);
        if references.len() < 2 {
            self.write_delta(baseline.state, w);
            return;
        }
        // Index 0 is the best guess (one bit), then the others.
        let (best, _) = references
            .iter()
            .enumerate()
            .map(|(i, r)| (i, self.bits_against(r) + selector_bits(i, references.len())))
            .min_by_key(|&(_, bits)| bits)
            .unwrap_or((0, 0));
        write_selector(w, best, references.len());
        self.write_against(&references[best], w);
    }

    fn read_delta_predicted(
        baseline: &Baseline<'_, Self>,
        r: &mut BitReader<'_>,
    ) -> Result<Self, SnapshotDecodeError> {
        let references = Reference::candidates(baseline);
        if references.len() < 2 {
            return Self::read_delta(baseline.state, r);
        }
        let index = read_selector(r, references.len())?;
        Self::read_against(&references[index], r)
    }
}

/// Selector of the reference among `n` (2 or 3): `1` for the first, then `0`, or `01`, `00`.
fn write_selector(w: &mut BitWriter<'_>, index: usize, n: usize) {
    match (index, n) {
        (0, _) => w.write_bool(true),
        (1, 2) => w.write_bool(false),
        (i, _) => w.write_bits(if i == 1 { 0b10 } else { 0b00 }, 2),
    }
}

fn read_selector(r: &mut BitReader<'_>, n: usize) -> Result<usize, SnapshotDecodeError> {
    if r.read_bool()? {
        return Ok(0);
    }
    if n == 2 {
        return Ok(1);
    }
    Ok(if r.read_bool()? { 1 } else { 2 })
}

fn selector_bits(index: usize, n: usize) -> usize {
    if index == 0 || n == 2 {
        1
    } else {
        2
    }
}

/// Up to three references, best guess first, without a heap allocation per entity.
struct Candidates {
    references: [Reference; 3],
    len: usize,
}

impl Candidates {
    fn new(references: &[Reference]) -> Self {
        let mut out = Self {
            references: [references[0]; 3],
            len: references.len().min(3),
        };
        out.references[..out.len].copy_from_slice(&references[..out.len]);
        out
    }
}

impl std::ops::Deref for Candidates {
    type Target = [Reference];
    fn deref(&self) -> &[Reference] {
        &self.references[..self.len]
    }
}

/// What a delta is coded against: the baseline's quantised values, or a prediction of them.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Reference {
    position: [u32; 3],
    largest: u8,
    components: [u32; 3],
}

impl Reference {
    fn of(state: &CubeState) -> Self {
        Self {
            position: state.position,
            largest: state.rotation.largest(),
            components: state.rotation.components(),
        }
    }

    /// The references a delta may be coded against, best guess first: with two older states,
    /// constant acceleration, constant velocity, the baseline; with one, constant velocity and
    /// the baseline; with none, the baseline alone. Integer arithmetic only, so both sides
    /// compute the same bits; rotation components are continued only while the largest
    /// component stays the same.
    fn candidates(baseline: &Baseline<'_, CubeState>) -> Candidates {
        let base = baseline.state;
        let plain = Self::of(base);
        let Some((previous, s1)) = baseline.previous else {
            return Candidates::new(&[plain]);
        };
        let ahead = baseline.ticks_ahead.min(MAX_PREDICTION_TICKS) as i64;
        // Spans come from the peer's ticks: clamped, so the products below stay small.
        let s1 = s1.min(MAX_PREDICTION_TICKS * 4) as i64;
        let linear = Self::extend(base, previous, None, |y0, y1, _| {
            y0 + round_div((y0 - y1) * ahead, s1)
        });
        let Some((older, s2)) = baseline.older else {
            return Candidates::new(&[linear, plain]);
        };
        let s2 = s2.min(MAX_PREDICTION_TICKS * 8) as i64;
        if s2 <= s1 {
            return Candidates::new(&[linear, plain]);
        }
        // Lagrange through (0, y0), (−s1, y1), (−s2, y2), at `ahead`.
        let a = ahead;
        let quadratic = Self::extend(base, previous, Some(older), |y0, y1, y2| {
            let numerator = -(y1 - y0) * a * (a + s2) * s2 + (y2 - y0) * a * (a + s1) * s1;
            y0 + round_div(numerator, s1 * s2 * (s2 - s1))
        });
        Candidates::new(&[quadratic, linear, plain])
    }

    /// Applies `predict(y0, y1, y2)` to every coordinate and rotation component.
    fn extend(
        base: &CubeState,
        previous: &CubeState,
        older: Option<&CubeState>,
        predict: impl Fn(i64, i64, i64) -> i64,
    ) -> Self {
        let mut position = base.position;
        for (axis, max) in [XY_MAX, XY_MAX, Z_MAX].into_iter().enumerate() {
            let y2 = older.map_or(0, |o| i64::from(o.position[axis]));
            let value = predict(
                i64::from(base.position[axis]),
                i64::from(previous.position[axis]),
                y2,
            );
            position[axis] = value.clamp(0, i64::from(max)) as u32;
        }
        let mut components = base.rotation.components();
        let largest = base.rotation.largest();
        let same = previous.rotation.largest() == largest
            && older.is_none_or(|o| o.rotation.largest() == largest);
        if same {
            let was = previous.rotation.components();
            let before = older.map(|o| o.rotation.components());
            for (i, c) in components.iter_mut().enumerate() {
                let y2 = before.map_or(0, |b| i64::from(b[i]));
                let value = predict(i64::from(*c), i64::from(was[i]), y2);
                *c = value.clamp(0, i64::from(QUAT_MAX)) as u32;
            }
        }
        Self {
            position,
            largest,
            components,
        }
    }
}

impl CubeState {
    /// Bits [`write_against`](Self::write_against) writes, counted without writing.
    fn bits_against(&self, reference: &Reference) -> usize {
        let mut bits = 1;
        let [x, y, z] = self.position;
        let [bx, by, bz] = reference.position;
        bits += 1;
        if x != bx || y != by {
            let deltas = [i64::from(x) - i64::from(bx), i64::from(y) - i64::from(by)];
            bits += 3 + match class_for(&deltas, &XY_WIDTHS) {
                Some(class) => 2 * XY_WIDTHS[class] as usize,
                None => 2 * XY_BITS as usize,
            };
        }
        bits += 1;
        if z != bz {
            bits += 2 + match class_for(&[i64::from(z) - i64::from(bz)], &Z_WIDTHS) {
                Some(class) => Z_WIDTHS[class] as usize,
                None => Z_BITS as usize,
            };
        }
        bits += 1;
        let now = self.rotation.components();
        if self.rotation.largest() != reference.largest {
            bits += 1 + self.rotation.bit_len();
        } else if now != reference.components {
            let deltas = [0, 1, 2].map(|i| i64::from(now[i]) - i64::from(reference.components[i]));
            bits += 1
                + 2
                + match class_for(&deltas, &ROT_WIDTHS) {
                    Some(class) => 3 * ROT_WIDTHS[class] as usize,
                    None => 3 * DEFAULT_QUAT_BITS as usize,
                };
        }
        bits
    }

    fn write_against(&self, reference: &Reference, w: &mut BitWriter<'_>) {
        w.write_bool(self.interacting);

        let [x, y, z] = self.position;
        let [bx, by, bz] = reference.position;
        let xy_changed = x != bx || y != by;
        w.write_bool(xy_changed);
        if xy_changed {
            let deltas = [i64::from(x) - i64::from(bx), i64::from(y) - i64::from(by)];
            match class_for(&deltas, &XY_WIDTHS) {
                Some(class) => {
                    w.write_bits(class as u64, 3);
                    for d in deltas {
                        w.write_bits(d as u64, XY_WIDTHS[class]);
                    }
                }
                None => {
                    w.write_bits(XY_WIDTHS.len() as u64, 3);
                    w.write_bits(u64::from(x), XY_BITS);
                    w.write_bits(u64::from(y), XY_BITS);
                }
            }
        }
        w.write_bool(z != bz);
        if z != bz {
            let delta = [i64::from(z) - i64::from(bz)];
            match class_for(&delta, &Z_WIDTHS) {
                Some(class) => {
                    w.write_bits(class as u64, 2);
                    w.write_bits(delta[0] as u64, Z_WIDTHS[class]);
                }
                None => {
                    w.write_bits(Z_WIDTHS.len() as u64, 2);
                    w.write_bits(u64::from(z), Z_BITS);
                }
            }
        }

        let now = self.rotation.components();
        let rot_changed =
            self.rotation.largest() != reference.largest || now != reference.components;
        w.write_bool(rot_changed);
        if rot_changed {
            let same_largest = self.rotation.largest() == reference.largest;
            w.write_bool(same_largest);
            if !same_largest {
                self.rotation.write(w);
                return;
            }
            let deltas = [0, 1, 2].map(|i| i64::from(now[i]) - i64::from(reference.components[i]));
            match class_for(&deltas, &ROT_WIDTHS) {
                Some(class) => {
                    w.write_bits(class as u64, 2);
                    for d in deltas {
                        w.write_bits(d as u64, ROT_WIDTHS[class]);
                    }
                }
                None => {
                    w.write_bits(ROT_WIDTHS.len() as u64, 2);
                    for c in now {
                        w.write_bits(u64::from(c), DEFAULT_QUAT_BITS);
                    }
                }
            }
        }
    }

    fn read_against(
        reference: &Reference,
        r: &mut BitReader<'_>,
    ) -> Result<Self, SnapshotDecodeError> {
        let interacting = r.read_bool()?;
        let [mut x, mut y, mut z] = reference.position;
        if r.read_bool()? {
            let class = r.read_bits(3)? as usize;
            match XY_WIDTHS.get(class) {
                Some(&width) => {
                    x = offset(x, read_signed(r, width)?, XY_MAX)?;
                    y = offset(y, read_signed(r, width)?, XY_MAX)?;
                }
                None => {
                    x = read_bounded(r, XY_BITS, XY_MAX)?;
                    y = read_bounded(r, XY_BITS, XY_MAX)?;
                }
            }
        }
        if r.read_bool()? {
            let class = r.read_bits(2)? as usize;
            z = match Z_WIDTHS.get(class) {
                Some(&width) => offset(z, read_signed(r, width)?, Z_MAX)?,
                None => read_bounded(r, Z_BITS, Z_MAX)?,
            };
        }
        let mut largest = reference.largest;
        let mut components = reference.components;
        if r.read_bool()? {
            if r.read_bool()? {
                let class = r.read_bits(2)? as usize;
                match ROT_WIDTHS.get(class) {
                    Some(&width) => {
                        for c in &mut components {
                            *c = offset(*c, read_signed(r, width)?, QUAT_MAX)?;
                        }
                    }
                    None => {
                        for c in &mut components {
                            *c = r.read_bits(DEFAULT_QUAT_BITS)? as u32;
                        }
                    }
                }
            } else {
                let rotation = QuantizedQuat::read(r, DEFAULT_QUAT_BITS)?;
                largest = rotation.largest();
                components = rotation.components();
            }
        }
        let rotation = QuantizedQuat::from_parts(largest, components, DEFAULT_QUAT_BITS)
            .ok_or(SnapshotDecodeError::Malformed)?;
        Ok(CubeState {
            position: [x, y, z],
            rotation,
            interacting,
        })
    }
}

/// `n / d` rounded to the nearest integer, halves away from zero (`d > 0`).
fn round_div(n: i64, d: i64) -> i64 {
    if n >= 0 {
        (n + d / 2) / d
    } else {
        -((-n + d / 2) / d)
    }
}

/// The same quantised state with the simplest delta the trait suggests: one changed bit per
/// field and the changed field at full width. Used to show what the compact layout saves.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PlainCube(pub CubeState);

impl EntityState for PlainCube {
    fn write_full(&self, w: &mut BitWriter<'_>) {
        self.0.write_full(w);
    }

    fn read_full(r: &mut BitReader<'_>) -> Result<Self, SnapshotDecodeError> {
        CubeState::read_full(r).map(PlainCube)
    }

    fn write_delta(&self, base: &Self, w: &mut BitWriter<'_>) {
        let (new, old) = (&self.0, &base.0);
        for (axis, bits) in [XY_BITS, XY_BITS, Z_BITS].into_iter().enumerate() {
            w.write_bool(new.position[axis] != old.position[axis]);
            if new.position[axis] != old.position[axis] {
                w.write_bits(u64::from(new.position[axis]), bits);
            }
        }
        w.write_bool(new.rotation != old.rotation);
        if new.rotation != old.rotation {
            new.rotation.write(w);
        }
        w.write_bool(new.interacting);
    }

    fn read_delta(base: &Self, r: &mut BitReader<'_>) -> Result<Self, SnapshotDecodeError> {
        let mut state = base.0.clone();
        for (axis, (bits, max)) in [(XY_BITS, XY_MAX), (XY_BITS, XY_MAX), (Z_BITS, Z_MAX)]
            .into_iter()
            .enumerate()
        {
            if r.read_bool()? {
                state.position[axis] = read_bounded(r, bits, max)?;
            }
        }
        if r.read_bool()? {
            state.rotation = QuantizedQuat::read(r, DEFAULT_QUAT_BITS)?;
        }
        state.interacting = r.read_bool()?;
        Ok(PlainCube(state))
    }
}

/// The server's ground truth: every entity's pose and motion, stepped at [`TICK_HZ`].
pub(crate) struct CubeWorld {
    poses: Vec<Pose>,
    velocity: Vec<[f32; 3]>,
    spin: Vec<[f32; 3]>,
    interacting: Vec<bool>,
    awake: Vec<bool>,
    player_accel: [f32; 2],
    bursting: Vec<bool>,
    rng: StdRng,
    tick: u64,
    /// Whether the player moves at all (false: the world stays at rest).
    moving: bool,
}

impl CubeWorld {
    /// The grid at rest and the player in the middle. `moving: false` keeps everything still.
    pub(crate) fn new(seed: u64, moving: bool) -> Self {
        let mut poses = Vec::with_capacity(ENTITIES);
        for i in 0..CUBES {
            let (row, col) = ((i / 30) as f32, (i % 30) as f32);
            poses.push(Pose {
                position: [col - 14.5, row - 14.5, HALF_SIZE],
                rotation: Quat::IDENTITY,
            });
        }
        poses.push(Pose {
            position: [0.0, 0.0, HALF_SIZE],
            rotation: Quat::IDENTITY,
        });
        Self {
            poses,
            velocity: vec![[0.0; 3]; ENTITIES],
            spin: vec![[0.0; 3]; ENTITIES],
            interacting: vec![false; ENTITIES],
            awake: vec![false; ENTITIES],
            player_accel: [0.0; 2],
            bursting: vec![false; ENTITIES],
            rng: StdRng::seed_from_u64(seed),
            tick: 0,
            moving,
        }
    }

    /// Every entity's pose, by id.
    pub(crate) fn poses(&self) -> &[Pose] {
        &self.poses
    }

    /// Whether an entity is interacting (a cube near the player, or the player moving).
    pub(crate) fn interacting(&self, index: usize) -> bool {
        self.interacting[index]
    }

    /// Whether the simulation is inside a burst at `tick`.
    pub(crate) fn in_burst(tick: u64, first_burst: f64) -> bool {
        let t = tick as f64 / TICK_HZ - first_burst;
        t >= 0.0 && t.rem_euclid(BURST_PERIOD) < BURST_LENGTH
    }

    /// Advances one tick. `first_burst` is the time of the first burst in seconds.
    pub(crate) fn step(&mut self, first_burst: f64) {
        self.tick += 1;
        if !self.moving {
            return;
        }
        let dt = (1.0 / TICK_HZ) as f32;
        self.step_player(dt);
        let bursting = Self::in_burst(self.tick, first_burst);
        if bursting && !Self::in_burst(self.tick - 1, first_burst) {
            for b in self.bursting.iter_mut().take(CUBES) {
                *b = self.rng.random_bool(0.5);
            }
        }
        let player = self.poses[CUBES].position;
        for i in 0..CUBES {
            let p = self.poses[i].position;
            let (dx, dy) = (p[0] - player[0], p[1] - player[1]);
            let d = (dx * dx + dy * dy).sqrt();
            self.interacting[i] = d < PUSH_RADIUS;
            if d < PUSH_RADIUS {
                let strength = 1.0 - d / PUSH_RADIUS;
                let (nx, ny) = if d > 1e-4 {
                    (dx / d, dy / d)
                } else {
                    (1.0, 0.0)
                };
                let v = &mut self.velocity[i];
                v[0] += nx * PUSH_ACCEL * strength * dt;
                v[1] += ny * PUSH_ACCEL * strength * dt;
                // Spin about the horizontal axis across the push, as if rolled.
                let s = &mut self.spin[i];
                s[0] += -ny * SPIN_ACCEL * strength * dt;
                s[1] += nx * SPIN_ACCEL * strength * dt;
                if p[2] <= HALF_SIZE && self.rng.random_bool(f64::from(HOP_CHANCE * strength)) {
                    v[2] = HOP_SPEED * strength;
                }
                self.awake[i] = true;
            }
            if bursting && self.bursting[i] {
                let v = &mut self.velocity[i];
                v[0] += self.rng.random_range(-1.0..1.0) * BURST_ACCEL * dt;
                v[1] += self.rng.random_range(-1.0..1.0) * BURST_ACCEL * dt;
                let s = &mut self.spin[i];
                for c in s.iter_mut() {
                    *c += self.rng.random_range(-1.0..1.0) * BURST_SPIN * dt;
                }
                self.awake[i] = true;
            }
            if self.awake[i] {
                self.integrate_cube(i, dt);
            }
        }
    }

    fn step_player(&mut self, dt: f32) {
        // An Ornstein-Uhlenbeck acceleration: smooth, random, mean zero.
        for a in &mut self.player_accel {
            *a += -*a * 1.5 * dt + self.rng.random_range(-1.0..1.0) * 30.0 * dt.sqrt();
        }
        let p = self.poses[CUBES].position;
        let v = &mut self.velocity[CUBES];
        for axis in 0..2 {
            // Stay over the grid: a soft pull back beyond 11 m from its centre.
            let pull = if p[axis].abs() > 11.0 {
                -p[axis].signum() * 6.0
            } else {
                0.0
            };
            v[axis] += (self.player_accel[axis] + pull) * dt;
        }
        let speed = (v[0] * v[0] + v[1] * v[1]).sqrt();
        if speed > PLAYER_SPEED {
            v[0] *= PLAYER_SPEED / speed;
            v[1] *= PLAYER_SPEED / speed;
        }
        let (vx, vy) = (v[0], v[1]);
        let pose = &mut self.poses[CUBES];
        pose.position[0] += vx * dt;
        pose.position[1] += vy * dt;
        if speed > 0.1 {
            pose.rotation = Quat::from_axis_angle([0.0, 0.0, 1.0], vy.atan2(vx));
        }
        self.interacting[CUBES] = speed > 0.5;
    }

    fn integrate_cube(&mut self, i: usize, dt: f32) {
        let pose = &mut self.poses[i];
        let v = &mut self.velocity[i];
        let s = &mut self.spin[i];
        let grounded = pose.position[2] <= HALF_SIZE && v[2] <= 0.0;
        let drag = (-if grounded { FRICTION } else { AIR_DRAG } * dt).exp();
        v[0] *= drag;
        v[1] *= drag;
        for c in s.iter_mut() {
            *c *= (-SPIN_FRICTION * dt).exp();
        }
        if !grounded {
            v[2] -= GRAVITY * dt;
        }
        for (p, v) in pose.position.iter_mut().zip(v.iter()) {
            *p += v * dt;
        }
        pose.position[0] = pose.position[0].clamp(-250.0, 250.0);
        pose.position[1] = pose.position[1].clamp(-250.0, 250.0);
        if pose.position[2] < HALF_SIZE {
            pose.position[2] = HALF_SIZE;
            v[2] = if v[2] < -1.0 { -v[2] * 0.3 } else { 0.0 };
        }
        // q' = q + ½ ω q dt, renormalised.
        let q = pose.rotation.0;
        let w = [s[0], s[1], s[2], 0.0];
        let product = [
            w[3] * q[0] + w[0] * q[3] + w[1] * q[2] - w[2] * q[1],
            w[3] * q[1] - w[0] * q[2] + w[1] * q[3] + w[2] * q[0],
            w[3] * q[2] + w[0] * q[1] - w[1] * q[0] + w[2] * q[3],
            w[3] * q[3] - w[0] * q[0] - w[1] * q[1] - w[2] * q[2],
        ];
        pose.rotation = Quat([0, 1, 2, 3].map(|k| q[k] + 0.5 * product[k] * dt)).normalized();

        let horizontal = (v[0] * v[0] + v[1] * v[1]).sqrt();
        let angular = (s[0] * s[0] + s[1] * s[1] + s[2] * s[2]).sqrt();
        if horizontal < REST_SPEED && angular < REST_SPIN && pose.position[2] <= HALF_SIZE {
            *v = [0.0; 3];
            *s = [0.0; 3];
            self.awake[i] = false;
        }
    }
}

/// The smallest class whose two's-complement width holds every delta.
fn class_for(deltas: &[i64], widths: &[u32]) -> Option<usize> {
    let widest = deltas
        .iter()
        .map(|&d| 65 - (if d < 0 { !d } else { d }).leading_zeros())
        .max()
        .unwrap_or(1);
    widths.iter().position(|&w| w >= widest)
}

/// A two's-complement value of `width` bits.
fn read_signed(r: &mut BitReader<'_>, width: u32) -> Result<i64, SnapshotDecodeError> {
    let raw = r.read_bits(width)?;
    let shift = 64 - width;
    Ok(((raw << shift) as i64) >> shift)
}

/// `base + delta`, which must land in `0..=max`.
fn offset(base: u32, delta: i64, max: u32) -> Result<u32, SnapshotDecodeError> {
    let value = i64::from(base) + delta;
    if !(0..=i64::from(max)).contains(&value) {
        return Err(SnapshotDecodeError::OutOfRange {
            value: value as u64,
            max: u64::from(max),
        });
    }
    Ok(value as u32)
}

fn read_bounded(r: &mut BitReader<'_>, bits: u32, max: u32) -> Result<u32, SnapshotDecodeError> {
    let value = r.read_bits(bits)?;
    if value > u64::from(max) {
        return Err(SnapshotDecodeError::OutOfRange {
            value,
            max: u64::from(max),
        });
    }
    Ok(value as u32)
}

// DELTA LAYOUT: widths of the delta classes; one more class than listed means "absolute".
const XY_WIDTHS: [u32; 7] = [2, 3, 4, 5, 7, 9, 11];
const Z_WIDTHS: [u32; 3] = [3, 6, 9];
const ROT_WIDTHS: [u32; 3] = [3, 5, 7];

/// Ticks a prediction looks ahead at most (a baseline older than this is continued no further).
const MAX_PREDICTION_TICKS: u64 = 30;

const XY_BITS: u32 = 18;
const Z_BITS: u32 = 15;
/// (255 − (−256)) × 512.
const XY_MAX: u32 = 511 * 512;
/// 32 × 512.
const Z_MAX: u32 = 32 * 512;
const QUAT_MAX: u32 = (1 << DEFAULT_QUAT_BITS) - 1;

/// Cubes are 1 m: their centre rests 0.5 m above the ground.
const HALF_SIZE: f32 = 0.5;
const PLAYER_SPEED: f32 = 6.0;
/// Cubes closer than this to the player (horizontally) are pushed, in metres.
pub(crate) const PUSH_RADIUS: f32 = 3.0;
const PUSH_ACCEL: f32 = 19.5;
const SPIN_ACCEL: f32 = 12.0;
const HOP_CHANCE: f32 = 0.01;
const HOP_SPEED: f32 = 2.5;
const FRICTION: f32 = 1.6;
const AIR_DRAG: f32 = 0.2;
const SPIN_FRICTION: f32 = 1.6;
const GRAVITY: f32 = 9.81;
const REST_SPEED: f32 = 0.05;
const REST_SPIN: f32 = 0.1;
const BURST_ACCEL: f32 = 30.0;
const BURST_SPIN: f32 = 30.0;
