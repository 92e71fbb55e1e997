//! The game rules, shared by the server (authoritative) and the client (prediction of its own
//! player): an arena, players that accelerate, bounce off walls and bump each other, and coins
//! that respawn elsewhere when collected.
//!
//! Every body is snapped to the snapshot's quantisation grid ([`Body::snapped`]) at the end of
//! each tick, on both sides. So the state a snapshot carries is exactly the server's state, and a
//! client that replays the same inputs from it gets bit for bit the same result: a prediction
//! only misses when something the client does not simulate happened (a bump, an input that
//! arrived late), which is what the correction counters measure.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tickwire::snapshot::{BoundedFloat, EntityId};

/// Arena width, in arena units (one unit is one terminal column at the default size).
pub const ARENA_WIDTH: f32 = 60.0;
/// Arena height, in arena units.
pub const ARENA_HEIGHT: f32 = 30.0;
/// Radius of a player.
pub const PLAYER_RADIUS: f32 = 0.9;
/// Radius of a coin.
pub const COIN_RADIUS: f32 = 0.6;
/// Coins in play at any time.
pub const COINS: u32 = 12;
/// Acceleration while a direction is held, units/s².
pub const ACCELERATION: f32 = 80.0;
/// Fraction of velocity lost per second to friction (so top speed is about
/// `ACCELERATION / FRICTION` = 13 units/s).
pub const FRICTION: f32 = 6.0;
/// Largest speed a body can have on either axis (bumps can push past the running top speed).
pub const MAX_AXIS_SPEED: f32 = 30.0;
/// Relative speed along the contact normal above which a bump steals a coin from the slower
/// player.
pub const STEAL_SPEED: f32 = 14.0;
/// Position resolution on the wire and in the simulation, units.
pub const POSITION_RESOLUTION: f32 = 1.0 / 64.0;
/// Velocity resolution on the wire and in the simulation, units/s.
pub const VELOCITY_RESOLUTION: f32 = 1.0 / 32.0;

/// The first entity id used by players; coins are `0..COINS`.
pub const FIRST_PLAYER_ID: u32 = COINS;

/// The keys a player holds during one tick: a bit per direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Input(u8);

impl Input {
    /// No key held.
    pub const NONE: Self = Self(0);
    const UP: u8 = 1;
    const DOWN: u8 = 2;
    const LEFT: u8 = 4;
    const RIGHT: u8 = 8;

    /// An input from the directions held.
    pub fn new(up: bool, down: bool, left: bool, right: bool) -> Self {
        let mut bits = 0;
        for (held, bit) in [
            (up, Self::UP),
            (down, Self::DOWN),
            (left, Self::LEFT),
            (right, Self::RIGHT),
        ] {
            if held {
                bits |= bit;
            }
        }
        Self(bits)
    }

    /// The input that pushes towards `(dx, dy)` (y grows downwards), with a dead zone of
    /// `dead` units per axis.
    pub fn towards(dx: f32, dy: f32, dead: f32) -> Self {
        Self::new(dy < -dead, dy > dead, dx < -dead, dx > dead)
    }

    /// The direction held, each axis in {-1, 0, 1} (y grows downwards).
    pub fn direction(self) -> (f32, f32) {
        let axis = |neg: u8, pos: u8| -> f32 {
            let n = self.0 & neg != 0;
            let p = self.0 & pos != 0;
            f32::from(u8::from(p)) - f32::from(u8::from(n))
        };
        (axis(Self::LEFT, Self::RIGHT), axis(Self::UP, Self::DOWN))
    }

    /// The raw bits (only the low four are meaningful).
    pub fn bits(self) -> u8 {
        self.0
    }

    /// An input from raw bits; unknown bits are ignored.
    pub fn from_bits(bits: u8) -> Self {
        Self(bits & 0x0f)
    }
}

/// Position and velocity of a player, in arena units (y grows downwards).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Body {
    /// Horizontal position.
    pub x: f32,
    /// Vertical position.
    pub y: f32,
    /// Horizontal velocity, units/s.
    pub vx: f32,
    /// Vertical velocity, units/s.
    pub vy: f32,
}

impl Body {
    /// A body at rest at `(x, y)`, on the grid.
    pub fn at(x: f32, y: f32) -> Self {
        Self {
            x,
            y,
            vx: 0.0,
            vy: 0.0,
        }
        .snapped()
    }

    /// One tick of movement under `input`: accelerate, apply friction, move, bounce off the
    /// walls, snap to the grid. The only rule client prediction runs.
    pub fn step(self, input: Input, dt: f32) -> Self {
        let (dx, dy) = input.direction();
        let norm = (dx * dx + dy * dy).sqrt();
        let (ax, ay) = if norm > 0.0 {
            (dx / norm * ACCELERATION, dy / norm * ACCELERATION)
        } else {
            (0.0, 0.0)
        };
        let keep = (1.0 - FRICTION * dt).max(0.0);
        let mut next = Self {
            vx: (self.vx + ax * dt) * keep,
            vy: (self.vy + ay * dt) * keep,
            ..self
        };
        next.x += next.vx * dt;
        next.y += next.vy * dt;
        next.bounce_off_walls();
        next.snapped()
    }

    /// Distance between two bodies' centres.
    pub fn distance(&self, other: &Self) -> f32 {
        ((self.x - other.x).powi(2) + (self.y - other.y).powi(2)).sqrt()
    }

    /// Rounded to the snapshot's quantisation grid (positions and velocities clamped to their
    /// ranges).
    pub fn snapped(self) -> Self {
        let q = quantizer();
        Self {
            x: q.x.dequantize(q.x.quantize(self.x)),
            y: q.y.dequantize(q.y.quantize(self.y)),
            vx: q.velocity.dequantize(q.velocity.quantize(self.vx)),
            vy: q.velocity.dequantize(q.velocity.quantize(self.vy)),
        }
    }

    fn bounce_off_walls(&mut self) {
        let (min_x, max_x) = (PLAYER_RADIUS, ARENA_WIDTH - PLAYER_RADIUS);
        let (min_y, max_y) = (PLAYER_RADIUS, ARENA_HEIGHT - PLAYER_RADIUS);
        if self.x < min_x {
            self.x = min_x;
            self.vx = self.vx.abs() * WALL_BOUNCE;
        } else if self.x > max_x {
            self.x = max_x;
            self.vx = -self.vx.abs() * WALL_BOUNCE;
        }
        if self.y < min_y {
            self.y = min_y;
            self.vy = self.vy.abs() * WALL_BOUNCE;
        } else if self.y > max_y {
            self.y = max_y;
            self.vy = -self.vy.abs() * WALL_BOUNCE;
        }
    }
}

/// The quantisers of positions and velocities, shared by the simulation and the snapshot codec.
#[derive(Clone, Copy, Debug)]
pub struct Quantizer {
    /// Horizontal positions, `[0, ARENA_WIDTH]`.
    pub x: BoundedFloat,
    /// Vertical positions, `[0, ARENA_HEIGHT]`.
    pub y: BoundedFloat,
    /// Velocities on either axis, `[-MAX_AXIS_SPEED, MAX_AXIS_SPEED]`.
    pub velocity: BoundedFloat,
}

/// The game's quantisers.
pub fn quantizer() -> &'static Quantizer {
    static QUANTIZER: OnceLock<Quantizer> = OnceLock::new();
    QUANTIZER.get_or_init(|| {
        // Constant bounds: finite, non-empty ranges with a positive resolution and few steps,
        // which `BoundedFloat::new` always accepts.
        let make = |min, max, resolution| {
            BoundedFloat::new(min, max, resolution).expect("constant, valid quantiser bounds")
        };
        Quantizer {
            x: make(0.0, ARENA_WIDTH, POSITION_RESOLUTION),
            y: make(0.0, ARENA_HEIGHT, POSITION_RESOLUTION),
            velocity: make(-MAX_AXIS_SPEED, MAX_AXIS_SPEED, VELOCITY_RESOLUTION),
        }
    })
}

/// A player on the server.
#[derive(Clone, Debug)]
pub struct Player {
    /// The name it joined with.
    pub name: String,
    /// Where it is and how fast it moves.
    pub body: Body,
    /// Coins collected, minus coins stolen by bumps.
    pub score: u32,
}

/// Something that happened during a tick, worth telling the players.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GameEvent {
    /// A player picked up a coin.
    Collected {
        /// Who.
        player: EntityId,
    },
    /// A hard bump moved a point from one player to another.
    Stole {
        /// The faster player.
        thief: EntityId,
        /// The player who lost a point.
        victim: EntityId,
    },
}

/// The authoritative world: players, coins and the tick counter.
#[derive(Clone, Debug)]
pub struct World {
    players: BTreeMap<EntityId, Player>,
    coins: Vec<(f32, f32)>,
    rng: StdRng,
    tick: u64,
}

impl World {
    /// An empty arena with [`COINS`] coins placed from `seed`.
    pub fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let coins = (0..COINS).map(|_| random_spot(&mut rng)).collect();
        Self {
            players: BTreeMap::new(),
            coins,
            rng,
            tick: 0,
        }
    }

    /// The last tick simulated (0 before the first).
    pub fn tick(&self) -> u64 {
        self.tick
    }

    /// Adds a player at a free random spot; returns its entity id (the smallest free one).
    pub fn join(&mut self, name: String) -> EntityId {
        let id = (FIRST_PLAYER_ID..)
            .map(EntityId)
            .find(|id| !self.players.contains_key(id))
            .unwrap_or(EntityId(u32::MAX));
        let (x, y) = random_spot(&mut self.rng);
        self.players.insert(
            id,
            Player {
                name,
                body: Body::at(x, y),
                score: 0,
            },
        );
        id
    }

    /// Removes a player.
    pub fn leave(&mut self, id: EntityId) -> Option<Player> {
        self.players.remove(&id)
    }

    /// A player.
    pub fn player(&self, id: EntityId) -> Option<&Player> {
        self.players.get(&id)
    }

    /// Every player, by id.
    pub fn players(&self) -> impl Iterator<Item = (EntityId, &Player)> + '_ {
        self.players.iter().map(|(id, p)| (*id, p))
    }

    /// Every coin's position, by coin id (`EntityId(index)`).
    pub fn coins(&self) -> &[(f32, f32)] {
        &self.coins
    }

    /// Simulates one tick of `dt` seconds with each player's input; returns what happened.
    pub fn step(&mut self, dt: f32, mut input: impl FnMut(EntityId) -> Input) -> Vec<GameEvent> {
        self.tick += 1;
        let mut events = Vec::new();
        for (id, player) in &mut self.players {
            player.body = player.body.step(input(*id), dt);
        }
        self.bump(&mut events);
        self.collect(&mut events);
        events
    }

    /// Pushes overlapping players apart and exchanges their momentum along the contact normal.
    fn bump(&mut self, events: &mut Vec<GameEvent>) {
        let ids: Vec<EntityId> = self.players.keys().copied().collect();
        let mut bodies: Vec<Body> = ids.iter().map(|id| self.players[id].body).collect();
        let mut steals = Vec::new();
        for i in 0..bodies.len() {
            for j in i + 1..bodies.len() {
                let (a, b) = (bodies[i], bodies[j]);
                let (dx, dy) = (b.x - a.x, b.y - a.y);
                let distance = (dx * dx + dy * dy).sqrt();
                if distance >= 2.0 * PLAYER_RADIUS {
                    continue;
                }
                let (nx, ny) = if distance > 1e-4 {
                    (dx / distance, dy / distance)
                } else {
                    (1.0, 0.0)
                };
                let push = (2.0 * PLAYER_RADIUS - distance) / 2.0;
                let closing = (b.vx - a.vx) * nx + (b.vy - a.vy) * ny;
                let mut a2 = Body {
                    x: a.x - nx * push,
                    y: a.y - ny * push,
                    ..a
                };
                let mut b2 = Body {
                    x: b.x + nx * push,
                    y: b.y + ny * push,
                    ..b
                };
                if closing < 0.0 {
                    let impulse = closing * BUMP_RESTITUTION;
                    a2.vx += impulse * nx;
                    a2.vy += impulse * ny;
                    b2.vx -= impulse * nx;
                    b2.vy -= impulse * ny;
                    if -closing > STEAL_SPEED {
                        // The one moving faster into the contact is the thief.
                        let a_in = a.vx * nx + a.vy * ny;
                        let b_in = -(b.vx * nx + b.vy * ny);
                        let (thief, victim) = if a_in >= b_in {
                            (ids[i], ids[j])
                        } else {
                            (ids[j], ids[i])
                        };
                        steals.push((thief, victim));
                    }
                }
                a2.bounce_off_walls();
                b2.bounce_off_walls();
                bodies[i] = a2.snapped();
                bodies[j] = b2.snapped();
            }
        }
        for (id, body) in ids.iter().zip(bodies) {
            if let Some(player) = self.players.get_mut(id) {
                player.body = body;
            }
        }
        for (thief, victim) in steals {
            let took = match self.players.get_mut(&victim) {
                Some(v) if v.score > 0 => {
                    v.score -= 1;
                    true
                }
                _ => false,
            };
            if took {
                if let Some(t) = self.players.get_mut(&thief) {
                    t.score += 1;
                }
                events.push(GameEvent::Stole { thief, victim });
            }
        }
    }

    /// Awards coins touched by a player and respawns them elsewhere.
    fn collect(&mut self, events: &mut Vec<GameEvent>) {
        for coin in 0..self.coins.len() {
            let (cx, cy) = self.coins[coin];
            let taker = self.players.iter_mut().find(|(_, p)| {
                (p.body.x - cx).powi(2) + (p.body.y - cy).powi(2)
                    < (PLAYER_RADIUS + COIN_RADIUS).powi(2)
            });
            if let Some((id, player)) = taker {
                player.score += 1;
                events.push(GameEvent::Collected { player: *id });
                self.coins[coin] = random_spot(&mut self.rng);
            }
        }
    }
}

/// A random spot on the position grid, away from the walls.
fn random_spot(rng: &mut StdRng) -> (f32, f32) {
    let margin = 2.0;
    let x = rng.random_range(margin..ARENA_WIDTH - margin);
    let y = rng.random_range(margin..ARENA_HEIGHT - margin);
    let q = quantizer();
    (
        q.x.dequantize(q.x.quantize(x)),
        q.y.dequantize(q.y.quantize(y)),
    )
}

/// Share of the normal speed kept when bouncing off a wall.
const WALL_BOUNCE: f32 = 0.6;
/// How much of the closing speed is exchanged in a bump (1.0 would be a perfectly elastic
/// exchange of equal masses; a bit more makes bumps lively).
const BUMP_RESTITUTION: f32 = 1.1;

#[cfg(test)]
mod tests {
    use super::*;

    const DT: f32 = 1.0 / 60.0;

    #[test]
    fn input_directions_and_bits() {
        let input = Input::new(true, false, false, true);
        assert_eq!(input.direction(), (1.0, -1.0));
        assert_eq!(Input::from_bits(0xff).bits(), 0x0f);
        assert_eq!(Input::towards(-3.0, 0.1, 0.5).direction(), (-1.0, 0.0));
    }

    #[test]
    fn holding_a_key_reaches_top_speed_and_stays_on_the_grid() {
        let mut body = Body::at(10.0, 10.0);
        let right = Input::new(false, false, false, true);
        for _ in 0..120 {
            body = body.step(right, DT);
            assert_eq!(body, body.snapped());
        }
        assert!(body.vx > 10.0 && body.vx < 14.0, "{body:?}");
        assert_eq!(body.vy, 0.0);
    }

    #[test]
    fn replaying_inputs_reproduces_the_state_exactly() {
        let inputs: Vec<Input> = (0..200u8).map(|i| Input::from_bits(i % 11)).collect();
        let run = |start: Body| inputs.iter().fold(start, |b, i| b.step(*i, DT));
        let start = Body::at(30.0, 15.0);
        assert_eq!(run(start), run(start));
    }

    #[test]
    fn walls_hold_players_inside() {
        let mut body = Body::at(1.0, 1.0);
        let up_left = Input::new(true, false, true, false);
        for _ in 0..300 {
            body = body.step(up_left, DT);
            assert!(body.x >= PLAYER_RADIUS - POSITION_RESOLUTION);
            assert!(body.y >= PLAYER_RADIUS - POSITION_RESOLUTION);
        }
    }

    #[test]
    fn bumps_separate_players_and_hard_bumps_steal() {
        let mut world = World::new(1);
        let a = world.join("a".into());
        let b = world.join("b".into());
        world.players.get_mut(&a).unwrap().body = Body {
            x: 20.0,
            y: 10.0,
            vx: 20.0,
            vy: 0.0,
        };
        world.players.get_mut(&b).unwrap().body = Body {
            x: 21.0,
            y: 10.0,
            vx: -5.0,
            vy: 0.0,
        };
        world.players.get_mut(&b).unwrap().score = 3;
        world.coins.iter_mut().for_each(|c| *c = (50.0, 25.0));
        let events = world.step(DT, |_| Input::NONE);
        let (pa, pb) = (world.player(a).unwrap(), world.player(b).unwrap());
        assert!(pa.body.distance(&pb.body) >= 2.0 * PLAYER_RADIUS - 0.05);
        assert!(pa.body.vx < pb.body.vx);
        assert_eq!(
            events,
            vec![GameEvent::Stole {
                thief: a,
                victim: b
            }]
        );
        assert_eq!((pa.score, pb.score), (1, 2));
    }

    #[test]
    fn touching_a_coin_scores_and_respawns_it() {
        let mut world = World::new(2);
        let a = world.join("a".into());
        let spot = world.coins[0];
        world.players.get_mut(&a).unwrap().body = Body::at(spot.0, spot.1);
        let events = world.step(DT, |_| Input::NONE);
        assert!(events.contains(&GameEvent::Collected { player: a }));
        assert_eq!(world.player(a).unwrap().score, 1);
        assert_ne!(world.coins[0], spot);
    }
}
