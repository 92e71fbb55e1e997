//! Client-side prediction of the local player, with reconciliation.
//!
//! The client simulates its own player ahead of the server (at the tick its inputs will reach
//! the server), remembering each tick's input and the state it predicted. When a snapshot
//! brings the authoritative state of tick `T`, the prediction for `T` is compared with it; if
//! they differ, that is a correction (counted, with its size), and the authoritative state is
//! taken and every input after `T` replayed on it. Since both sides run the same rule on the
//! same quantisation grid ([`Body::step`]), a prediction only misses when something happened
//! that the client does not simulate: a bump, or an input that reached the server late.

use std::collections::VecDeque;

use crate::world::{Body, Input};

/// Predicted ticks remembered; older inputs can no longer be replayed.
pub const HISTORY_TICKS: usize = 256;
/// A gap between the predicted tick and the wanted tick larger than this is jumped over rather
/// than simulated (the clock jumped).
pub const MAX_CATCH_UP: u64 = 30;
/// Position errors below this are not counted as corrections (units).
pub const CORRECTION_EPSILON: f32 = 1e-4;

/// The local player's predicted state and the inputs not yet confirmed.
#[derive(Clone, Debug)]
pub struct Predictor {
    dt: f32,
    tick: u64,
    body: Body,
    /// `(tick, input, state after the tick)`, ascending ticks.
    history: VecDeque<(u64, Input, Body)>,
    corrections: u64,
    reconciliations: u64,
    correction_sizes: Vec<f64>,
}

impl Predictor {
    /// Starts from the authoritative `body` at server tick `tick`.
    pub fn new(tick: u64, body: Body, tick_hz: u32) -> Self {
        Self {
            dt: 1.0 / tick_hz.max(1) as f32,
            tick,
            body,
            history: VecDeque::new(),
            corrections: 0,
            reconciliations: 0,
            correction_sizes: Vec::new(),
        }
    }

    /// The newest predicted tick.
    pub fn tick(&self) -> u64 {
        self.tick
    }

    /// The predicted state at [`tick`](Self::tick).
    pub fn body(&self) -> Body {
        self.body
    }

    /// Simulates up to `target` with `input` held; returns how many ticks were simulated.
    pub fn advance(&mut self, target: u64, input: Input) -> u64 {
        if target <= self.tick {
            return 0;
        }
        if target - self.tick > MAX_CATCH_UP {
            self.tick = target - 1;
        }
        let mut simulated = 0;
        while self.tick < target {
            self.tick += 1;
            self.body = self.body.step(input, self.dt);
            self.history.push_back((self.tick, input, self.body));
            simulated += 1;
        }
        while self.history.len() > HISTORY_TICKS {
            self.history.pop_front();
        }
        simulated
    }

    /// The last `n` inputs and the tick of the newest, for an input packet.
    pub fn recent_inputs(&self, n: usize) -> (u64, Vec<Input>) {
        let skip = self.history.len().saturating_sub(n);
        let inputs = self.history.iter().skip(skip).map(|(_, i, _)| *i).collect();
        (self.tick, inputs)
    }

    /// Takes in the authoritative state of tick `tick`; returns the position error of the
    /// prediction for that tick if it was corrected.
    pub fn reconcile(&mut self, tick: u64, authoritative: Body) -> Option<f32> {
        while self.history.front().is_some_and(|(t, _, _)| *t < tick) {
            self.history.pop_front();
        }
        let predicted = match self.history.front() {
            Some((t, _, body)) if *t == tick => *body,
            _ => {
                // Nothing predicted for that tick: the server is ahead of the prediction (or
                // the history ran out). Start over from its state.
                if tick >= self.tick {
                    self.tick = tick;
                    self.body = authoritative;
                    self.history.clear();
                }
                return None;
            }
        };
        self.reconciliations += 1;
        let error = predicted.distance(&authoritative);
        let same = predicted == authoritative;
        self.history.pop_front();
        if same {
            return None;
        }
        if error >= CORRECTION_EPSILON {
            self.corrections += 1;
            self.correction_sizes.push(f64::from(error));
            if self.correction_sizes.len() > MAX_SAMPLES {
                self.correction_sizes.remove(0);
            }
        }
        let mut body = authoritative;
        for (_, input, after) in &mut self.history {
            body = body.step(*input, self.dt);
            *after = body;
        }
        self.body = body;
        (error >= CORRECTION_EPSILON).then_some(error)
    }

    /// Predictions found wrong so far.
    pub fn corrections(&self) -> u64 {
        self.corrections
    }

    /// Predictions checked against the server so far.
    pub fn reconciliations(&self) -> u64 {
        self.reconciliations
    }

    /// Position errors of the corrected predictions (the last ones, at most a few thousand).
    pub fn correction_sizes(&self) -> &[f64] {
        &self.correction_sizes
    }
}

/// Correction sizes kept.
const MAX_SAMPLES: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    const HZ: u32 = 60;

    #[test]
    fn an_exact_prediction_needs_no_correction() {
        let start = Body::at(10.0, 10.0);
        let mut client = Predictor::new(100, start, HZ);
        let right = Input::new(false, false, false, true);
        client.advance(110, right);
        // The server applies the same inputs.
        let mut server = start;
        for _ in 0..5 {
            server = server.step(right, 1.0 / 60.0);
        }
        assert_eq!(client.reconcile(105, server), None);
        assert_eq!((client.corrections(), client.reconciliations()), (0, 1));
        assert_eq!(client.tick(), 110);
    }

    #[test]
    fn a_wrong_prediction_is_replayed_from_the_server_state() {
        let start = Body::at(10.0, 10.0);
        let mut client = Predictor::new(0, start, HZ);
        let down = Input::new(false, true, false, false);
        client.advance(10, down);
        // The server saw the player knocked elsewhere at tick 4.
        let knocked = Body::at(20.0, 10.0);
        let error = client.reconcile(4, knocked).unwrap();
        assert!(error > 9.0);
        let mut expected = knocked;
        for _ in 5..=10 {
            expected = expected.step(down, 1.0 / 60.0);
        }
        assert_eq!(client.body(), expected);
        assert_eq!(client.corrections(), 1);
        let (newest, inputs) = client.recent_inputs(8);
        assert_eq!((newest, inputs.len()), (10, 6));
    }
}
