//! Blending two states: the [`Interpolate`] trait that [`SnapshotBuffer`](super::SnapshotBuffer)
//! renders with, linear blending for `f32` and `[f32; 3]`, spherical blending for [`Quat`], and
//! cubic Hermite blending with velocities ([`hermite`], [`Kinematic`]).

use std::time::Duration;

/// Blends two states of the same thing.
///
/// `t = 0` gives `self`, `t = 1` gives `other`. The snapshot buffer also calls it with `t`
/// slightly above 1 to extrapolate for a short, capped time when snapshots stop arriving, so
/// implementations should continue the motion sensibly there (linear and slerp do). Fields
/// that cannot be blended (booleans, enums, ids) usually take `self`'s value for `t < 1` and
/// `other`'s from `t >= 1`, or always `other`'s: pick what looks right.
///
/// ```
/// use tickwire::snapshot::Interpolate;
///
/// #[derive(Clone)]
/// struct Cube { position: [f32; 3], interacting: bool }
///
/// impl Interpolate for Cube {
///     fn interpolate(&self, other: &Self, t: f32) -> Self {
///         Cube {
///             position: self.position.interpolate(&other.position, t),
///             interacting: if t < 1.0 { self.interacting } else { other.interacting },
///         }
///     }
/// }
///
/// let a = Cube { position: [0.0; 3], interacting: false };
/// let b = Cube { position: [2.0, 0.0, 4.0], interacting: true };
/// assert_eq!(a.interpolate(&b, 0.5).position, [1.0, 0.0, 2.0]);
/// ```
pub trait Interpolate: Sized {
    /// The state a fraction `t` of the way from `self` to `other`.
    fn interpolate(&self, other: &Self, t: f32) -> Self;

    /// As [`interpolate`](Self::interpolate), knowing that `span` of server time separates the two
    /// states. The default ignores `span`; types that carry velocities (see [`Kinematic`])
    /// override it to use them, since a velocity in units per second needs the span to be
    /// compared with a distance.
    fn interpolate_over(&self, other: &Self, t: f32, span: Duration) -> Self {
        let _ = span;
        self.interpolate(other, t)
    }
}

impl Interpolate for f32 {
    fn interpolate(&self, other: &Self, t: f32) -> Self {
        lerp(*self, *other, t)
    }
}

impl Interpolate for [f32; 3] {
    fn interpolate(&self, other: &Self, t: f32) -> Self {
        [
            lerp(self[0], other[0], t),
            lerp(self[1], other[1], t),
            lerp(self[2], other[2], t),
        ]
    }
}

impl Interpolate for Quat {
    fn interpolate(&self, other: &Self, t: f32) -> Self {
        slerp(*self, *other, t)
    }
}

/// A rotation as a unit quaternion, components in the order `[x, y, z, w]`.
///
/// `q` and `-q` are the same rotation; [`slerp`] and the smallest-three quantiser
/// ([`quantize_quat`](super::quantize_quat)) treat them alike.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quat(pub [f32; 4]);

impl Quat {
    /// The identity rotation `[0, 0, 0, 1]`.
    pub const IDENTITY: Self = Self([0.0, 0.0, 0.0, 1.0]);

    /// The rotation of `angle` radians about `axis` (which need not be unit length; a zero
    /// axis gives the identity).
    pub fn from_axis_angle(axis: [f32; 3], angle: f32) -> Self {
        let len = (axis[0] * axis[0] + axis[1] * axis[1] + axis[2] * axis[2]).sqrt();
        if len == 0.0 || !len.is_finite() {
            return Self::IDENTITY;
        }
        let (sin, cos) = (angle * 0.5).sin_cos();
        let s = sin / len;
        Self([axis[0] * s, axis[1] * s, axis[2] * s, cos])
    }

    /// The dot product of the four components.
    pub fn dot(self, other: Self) -> f32 {
        self.0.iter().zip(other.0).map(|(a, b)| a * b).sum()
    }

    /// This quaternion scaled to unit length; the identity if it is zero or not finite.
    pub fn normalized(self) -> Self {
        let len = self.dot(self).sqrt();
        if len == 0.0 || !len.is_finite() {
            return Self::IDENTITY;
        }
        Self(self.0.map(|c| c / len))
    }

    /// The angle in radians of the rotation taking `self` to `other` (0 to π), treating `q`
    /// and `-q` as equal. Both should be unit length.
    pub fn angle_to(self, other: Self) -> f32 {
        let sign = if self.dot(other) < 0.0 { -1.0 } else { 1.0 };
        let (mut apart, mut together) = (0.0f32, 0.0f32);
        for (a, b) in self.0.iter().zip(other.0) {
            apart += (a - sign * b) * (a - sign * b);
            together += (a + sign * b) * (a + sign * b);
        }
        // Twice the angle between the 4-vectors; atan2 stays precise near 0, where acos of the
        // dot product loses half its digits.
        4.0 * apart.sqrt().atan2(together.sqrt())
    }
}

/// `a + (b − a)·t`; extrapolates for `t` outside `[0, 1]`.
pub fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

/// Spherical linear interpolation along the shorter arc: constant angular speed from `a`
/// (`t = 0`) to `b` (`t = 1`), continuing the same rotation for `t > 1`.
///
/// Inputs should be unit length; the result is normalised. Nearly equal rotations fall back to
/// normalised linear blending, which is indistinguishable there and avoids dividing by ~0.
///
/// ```
/// use tickwire::snapshot::{slerp, Quat};
///
/// let turn = Quat::from_axis_angle([0.0, 0.0, 1.0], 2.0);
/// let halfway = slerp(Quat::IDENTITY, turn, 0.5);
/// assert!(halfway.angle_to(Quat::from_axis_angle([0.0, 0.0, 1.0], 1.0)) < 1e-4);
/// ```
pub fn slerp(a: Quat, b: Quat, t: f32) -> Quat {
    let mut dot = a.dot(b);
    let mut b = b.0;
    if dot < 0.0 {
        dot = -dot;
        b = b.map(|c| -c);
    }
    let (wa, wb) = if dot > SLERP_LINEAR_THRESHOLD {
        (1.0 - t, t)
    } else {
        let theta = dot.min(1.0).acos();
        let sin = theta.sin();
        (((1.0 - t) * theta).sin() / sin, (t * theta).sin() / sin)
    };
    Quat([
        a.0[0] * wa + b[0] * wb,
        a.0[1] * wa + b[1] * wb,
        a.0[2] * wa + b[2] * wb,
        a.0[3] * wa + b[3] * wb,
    ])
    .normalized()
}

/// Cubic Hermite interpolation between positions `p0` and `p1` with velocities `v0` and `v1`
/// (units per second), `dt` seconds apart, at fraction `t` of the way.
///
/// Matches position and velocity at both ends, so motion with changing velocity (a thrown
/// object, a car braking) is reconstructed more closely than by [`lerp`] at the same snapshot
/// rate, at the cost of sending velocities. Works on any number of components (`[f32; 1]` for a
/// scalar). Extrapolating with `t > 1` follows the cubic, which diverges quickly: keep it short.
///
/// ```
/// use tickwire::snapshot::hermite;
///
/// // Falling from rest under gravity (−9.81 m/s²) for 0.1 s: Hermite is exact for parabolas.
/// let (g, dt) = (-9.81f32, 0.1f32);
/// let p = hermite([0.0], [0.0], [0.5 * g * dt * dt], [g * dt], 0.5, dt);
/// assert!((p[0] - 0.5 * g * 0.05 * 0.05).abs() < 1e-6);
/// ```
pub fn hermite<const N: usize>(
    p0: [f32; N],
    v0: [f32; N],
    p1: [f32; N],
    v1: [f32; N],
    t: f32,
    dt: f32,
) -> [f32; N] {
    let t2 = t * t;
    let t3 = t2 * t;
    let h00 = 2.0 * t3 - 3.0 * t2 + 1.0;
    let h10 = t3 - 2.0 * t2 + t;
    let h01 = -2.0 * t3 + 3.0 * t2;
    let h11 = t3 - t2;
    std::array::from_fn(|i| h00 * p0[i] + h10 * dt * v0[i] + h01 * p1[i] + h11 * dt * v1[i])
}

/// A position with its velocity, blended with [`hermite`] by
/// [`interpolate_over`](Interpolate::interpolate_over) (and linearly by plain
/// [`interpolate`](Interpolate::interpolate), which has no time span).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Kinematic {
    /// Position, in the application's length unit (metres in the examples).
    pub position: [f32; 3],
    /// Velocity, in length units per second.
    pub velocity: [f32; 3],
}

impl Interpolate for Kinematic {
    fn interpolate(&self, other: &Self, t: f32) -> Self {
        Self {
            position: self.position.interpolate(&other.position, t),
            velocity: self.velocity.interpolate(&other.velocity, t),
        }
    }

    fn interpolate_over(&self, other: &Self, t: f32, span: Duration) -> Self {
        let dt = span.as_secs_f32();
        if t > 1.0 {
            // The cubic diverges past its end: continue from `other` at its velocity instead.
            let ahead = (t - 1.0) * dt;
            return Self {
                position: std::array::from_fn(|i| other.position[i] + other.velocity[i] * ahead),
                velocity: other.velocity,
            };
        }
        Self {
            position: hermite(
                self.position,
                self.velocity,
                other.position,
                other.velocity,
                t,
                dt,
            ),
            velocity: self.velocity.interpolate(&other.velocity, t),
        }
    }
}

/// Above this dot product (about 2.6° apart) slerp blends linearly.
const SLERP_LINEAR_THRESHOLD: f32 = 0.9995;

#[cfg(test)]
mod tests {
    use std::f32::consts::{FRAC_PI_2, PI};

    use super::*;

    #[test]
    fn lerp_ends_and_extrapolation() {
        assert_eq!(1.0f32.interpolate(&3.0, 0.0), 1.0);
        assert_eq!(1.0f32.interpolate(&3.0, 1.0), 3.0);
        assert_eq!(1.0f32.interpolate(&3.0, 1.5), 4.0);
        assert_eq!(
            [0.0, 1.0, 2.0].interpolate(&[2.0, 1.0, 0.0], 0.25),
            [0.5, 1.0, 1.5]
        );
    }

    #[test]
    fn slerp_has_constant_angular_speed() {
        let axis = [1.0, 2.0, -0.5];
        let a = Quat::from_axis_angle(axis, 0.2);
        let b = Quat::from_axis_angle(axis, 1.7);
        for i in 0..=10 {
            let t = i as f32 / 10.0;
            let got = slerp(a, b, t);
            let want = Quat::from_axis_angle(axis, 0.2 + 1.5 * t);
            assert!(got.angle_to(want) < 1e-3, "t={t}");
        }
        // Extrapolation continues the same rotation.
        let got = slerp(a, b, 1.2);
        assert!(got.angle_to(Quat::from_axis_angle(axis, 2.0)) < 1e-3);
    }

    #[test]
    fn slerp_takes_the_short_way_and_ignores_sign() {
        let a = Quat::from_axis_angle([0.0, 1.0, 0.0], 0.0);
        let b = Quat::from_axis_angle([0.0, 1.0, 0.0], FRAC_PI_2);
        let neg_b = Quat(b.0.map(|c| -c));
        let mid = slerp(a, b, 0.5);
        let mid_neg = slerp(a, neg_b, 0.5);
        assert!(mid.angle_to(mid_neg) < 1e-5);
        assert!(mid.angle_to(Quat::from_axis_angle([0.0, 1.0, 0.0], PI / 4.0)) < 1e-4);
    }

    #[test]
    fn slerp_of_nearly_equal_rotations_is_finite() {
        let a = Quat::from_axis_angle([0.0, 0.0, 1.0], 1.0);
        let b = Quat::from_axis_angle([0.0, 0.0, 1.0], 1.0 + 1e-6);
        let q = slerp(a, b, 0.5);
        assert!(q.0.iter().all(|c| c.is_finite()));
        assert!(q.angle_to(a) < 1e-3);
        assert_eq!(slerp(a, a, 0.3).angle_to(a), 0.0);
    }

    #[test]
    fn hermite_matches_ends_and_cubic_motion() {
        let p0 = [1.0, 0.0, -2.0];
        let v0 = [3.0, -1.0, 0.5];
        let p1 = [2.0, 4.0, -1.0];
        let v1 = [0.0, 2.0, 0.0];
        assert_eq!(hermite(p0, v0, p1, v1, 0.0, 0.5), p0);
        assert_eq!(hermite(p0, v0, p1, v1, 1.0, 0.5), p1);

        // x(s) = s³ over s in [0, 2]: Hermite with exact end velocities reproduces it.
        let x = |s: f32| s * s * s;
        let v = |s: f32| 3.0 * s * s;
        for i in 0..=8 {
            let t = i as f32 / 8.0;
            let got = hermite([x(0.0)], [v(0.0)], [x(2.0)], [v(2.0)], t, 2.0);
            assert!((got[0] - x(2.0 * t)).abs() < 1e-4, "t={t}");
        }
    }

    #[test]
    fn kinematic_uses_velocities_over_the_span() {
        // Braking car: 10 m/s to 0 over 1 s, 5 m travelled. Halfway it has gone 3.75 m.
        let a = Kinematic {
            position: [0.0; 3],
            velocity: [10.0, 0.0, 0.0],
        };
        let b = Kinematic {
            position: [5.0, 0.0, 0.0],
            velocity: [0.0; 3],
        };
        let mid = a.interpolate_over(&b, 0.5, Duration::from_secs(1));
        assert!((mid.position[0] - 3.75).abs() < 1e-5);
        assert_eq!(a.interpolate(&b, 0.5).position[0], 2.5);
        // Past the end it holds the last velocity instead of following the cubic.
        let c = Kinematic {
            position: [5.0, 0.0, 0.0],
            velocity: [2.0, 0.0, 0.0],
        };
        let ahead = a.interpolate_over(&c, 1.5, Duration::from_secs(1));
        assert_eq!(ahead.position[0], 6.0);
    }

    #[test]
    fn quat_helpers() {
        assert_eq!(Quat([0.0; 4]).normalized(), Quat::IDENTITY);
        assert_eq!(Quat::from_axis_angle([0.0; 3], 1.0), Quat::IDENTITY);
        let q = Quat([1.0, 1.0, 1.0, 1.0]).normalized();
        assert!((q.dot(q) - 1.0).abs() < 1e-6);
        assert!(
            (Quat::IDENTITY.angle_to(Quat::from_axis_angle([1.0, 0.0, 0.0], 1.0)) - 1.0).abs()
                < 1e-5
        );
    }
}
