//! A native fleet on one thread: every sensor is a client of one [`ClientSet`] (its own socket
//! and connection, so the hub still sees one peer per sensor), and one loop drives all of them.
//!
//! The same [`Sensor`] logic as the task-per-sensor path (`Sensor::run`), as a state machine:
//! each sensor is in a [`Phase`] and has one wake-up time in a shared heap (its next sampling
//! tick, the end of its sleep or backoff); events of its connection are handed to it as they
//! come. One round of the loop: wait for a datagram or the earliest wake-up, let the set read
//! and run the engine's timers, hand out the events, run the sensors that are due, flush.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use tickwire::{
    ChannelId, ClientKey, ClientSet, ConnectionStats, DriverConfig, Event, MessageId, SendError,
    Transport,
};
use tokio::time::Instant;

use super::{FleetConfig, Link, Sensor, SensorReport, Session, SessionEnd, SLEEP_SETTLE};

/// Runs `sensors` until each has finished (sampling, then delivering or the drain timeout).
/// Blocks the calling thread.
pub(super) fn run(sensors: Vec<Sensor>, config: &FleetConfig) -> Vec<SensorReport> {
    let mut set = match ClientSet::new() {
        Ok(set) => set,
        Err(e) => {
            eprintln!("error: cannot create the fleet's poller: {e}");
            return sensors.into_iter().map(Sensor::report).collect();
        }
    };
    let mut fleet = Fleet {
        members: Vec::with_capacity(sensors.len()),
        by_key: HashMap::with_capacity(sensors.len()),
        wakes: BinaryHeap::with_capacity(sensors.len()),
        running: sensors.len(),
    };
    for sensor in sensors {
        fleet.add(sensor, config);
    }
    while fleet.running > 0 {
        let now = Instant::now();
        let next = [
            fleet.next_wake(),
            set.next_deadline().map(Instant::from_std),
        ]
        .into_iter()
        .flatten()
        .min();
        let timeout = next.map_or(MAX_WAIT, |at| {
            at.saturating_duration_since(now).min(MAX_WAIT)
        });
        if let Err(e) = set.wait(Some(timeout)) {
            eprintln!("error: the fleet's poller failed: {e}");
            break;
        }
        let now = Instant::now();
        if let Err(e) = set.update(now.into_std()) {
            eprintln!("error: the fleet's sockets failed: {e}");
            break;
        }
        while let Some((key, event)) = set.poll_event() {
            fleet.handle_event(&mut set, key, event, config, now);
        }
        fleet.run_due(&mut set, config, now);
        if let Err(e) = set.flush(now.into_std()) {
            eprintln!("error: the fleet's sockets failed: {e}");
            break;
        }
    }
    fleet
        .members
        .into_iter()
        .map(|m| m.sensor.report())
        .collect()
}

/// Where a sensor is in its life.
enum Phase {
    /// Not connected (before the first connection, asleep, backing off): connects at its wake.
    Idle {
        /// Consecutive failed connection attempts.
        failures: u32,
    },
    /// Handshaking: the outcome comes as an event.
    Connecting { failures: u32 },
    /// Connected: the work tick runs at its wake.
    Session {
        key: ClientKey,
        session: Session,
        next_tick: Instant,
    },
    /// Going to sleep: waits (at most until `until`) for its reliable messages to be
    /// acknowledged, then disconnects.
    Settling {
        key: ClientKey,
        until: Instant,
        wake_in: Duration,
    },
    /// The run is over for it.
    Done,
}

struct Member {
    sensor: Sensor,
    driver: DriverConfig,
    phase: Phase,
    /// Its live wake-up (entries of the heap that differ are stale).
    wake: Option<Instant>,
}

struct Fleet {
    members: Vec<Member>,
    by_key: HashMap<ClientKey, usize>,
    /// `(at, member)`, earliest first; an entry counts only while it is the member's `wake`.
    wakes: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Members not `Done`.
    running: usize,
}

impl Fleet {
    fn add(&mut self, mut sensor: Sensor, config: &FleetConfig) {
        let driver = sensor.driver_config(config);
        let wake_at = sensor.first_wake(config);
        let index = self.members.len();
        self.members.push(Member {
            sensor,
            driver,
            phase: Phase::Idle { failures: 0 },
            wake: None,
        });
        self.idle(index, 0, wake_at, Instant::now());
    }

    fn next_wake(&self) -> Option<Instant> {
        self.wakes.peek().map(|Reverse((at, _))| *at)
    }

    fn set_wake(&mut self, index: usize, at: Instant) {
        self.members[index].wake = Some(at);
        self.wakes.push(Reverse((at, index)));
    }

    /// Not connected: sleeps until `wake_at` (bounded by the end of sampling or of the drain),
    /// or is done if the run is over for it.
    fn idle(&mut self, index: usize, failures: u32, wake_at: Instant, now: Instant) {
        let member = &mut self.members[index];
        if member.sensor.finished(now) {
            member.phase = Phase::Done;
            member.wake = None;
            self.running -= 1;
            return;
        }
        member.phase = Phase::Idle { failures };
        let at = member.sensor.sleep_until(wake_at, now);
        self.set_wake(index, at);
    }

    /// Runs every sensor whose wake-up is due.
    fn run_due(&mut self, set: &mut ClientSet, config: &FleetConfig, now: Instant) {
        while let Some(&Reverse((at, index))) = self.wakes.peek() {
            if at > now {
                break;
            }
            self.wakes.pop();
            if self.members[index].wake != Some(at) {
                continue;
            }
            self.members[index].wake = None;
            self.wake(set, index, config, now);
        }
    }

    fn wake(&mut self, set: &mut ClientSet, index: usize, config: &FleetConfig, now: Instant) {
        let member = &mut self.members[index];
        match &mut member.phase {
            Phase::Idle { failures } => {
                let failures = *failures;
                member.sensor.take_samples(now);
                let driver = member.sensor.connect_config(config, &member.driver);
                match set.connect(config.hub, driver, now.into_std()) {
                    Ok(key) => {
                        member.phase = Phase::Connecting { failures };
                        self.by_key.insert(key, index);
                    }
                    Err(_) => {
                        let failures = failures + 1;
                        let backoff = member.sensor.connect_failed(failures);
                        self.idle(index, failures, now + backoff, now);
                    }
                }
            }
            Phase::Connecting { .. } | Phase::Done => {}
            Phase::Session {
                key,
                session,
                next_tick,
            } => {
                let key = *key;
                let mut link = SetLink { set, key };
                let end = member.sensor.tick(&mut link, session, now);
                if let Some(end) = end {
                    self.end_session(set, index, key, end, now);
                    return;
                }
                let period = member.sensor.tick_period();
                *next_tick = if std::mem::take(&mut session.retick) {
                    member.sensor.first_tick(now).max(now + period)
                } else {
                    // Skip missed ticks: keep to the sampling schedule after a late one.
                    let mut next = *next_tick + period;
                    while next <= now {
                        next += period;
                    }
                    next
                };
                let at = *next_tick;
                self.set_wake(index, at);
            }
            Phase::Settling {
                key,
                until,
                wake_in,
            } => {
                let (key, until, wake_in) = (*key, *until, *wake_in);
                let link = SetLink { set, key };
                if !link.set.contains(key) || member.sensor.reliable_acked(&link) || now >= until {
                    set.disconnect(key, 0, now.into_std());
                    self.by_key.remove(&key);
                    self.idle(index, 0, now + wake_in, now);
                } else {
                    // Again, in case the request or its answer was lost (see `Link`).
                    set.request_ack(key);
                    self.set_wake(index, (now + SETTLE_POLL).min(until));
                }
            }
        }
    }

    fn handle_event(
        &mut self,
        set: &mut ClientSet,
        key: ClientKey,
        event: Event,
        config: &FleetConfig,
        now: Instant,
    ) {
        let Some(&index) = self.by_key.get(&key) else {
            return;
        };
        let member = &mut self.members[index];
        match &mut member.phase {
            Phase::Connecting { failures, .. } => match event {
                Event::Connected { .. } => {
                    member.sensor.connected(Transport::Native, config);
                    let mut link = SetLink { set, key };
                    let session = member.sensor.start_session(&mut link);
                    let next_tick = member.sensor.first_tick(now);
                    member.phase = Phase::Session {
                        key,
                        session,
                        next_tick,
                    };
                    self.set_wake(index, next_tick);
                }
                Event::Disconnected { .. } => {
                    // The set has removed the client.
                    self.by_key.remove(&key);
                    let failures = *failures + 1;
                    let backoff = member.sensor.connect_failed(failures);
                    self.idle(index, failures, now + backoff, now);
                }
                _ => {}
            },
            Phase::Session { session, .. } => {
                let mut link = SetLink { set, key };
                if let Some(end) = member.sensor.handle_event(&mut link, session, event) {
                    self.end_session(set, index, key, end, now);
                    return;
                }
                if session.retick {
                    // Run the tick now: it picks up the new rate and re-arms.
                    self.set_wake(index, now);
                }
            }
            Phase::Settling { .. } => {
                if matches!(event, Event::Disconnected { .. }) {
                    self.set_wake(index, now);
                }
            }
            Phase::Idle { .. } | Phase::Done => {}
        }
    }

    fn end_session(
        &mut self,
        set: &mut ClientSet,
        index: usize,
        key: ClientKey,
        end: SessionEnd,
        now: Instant,
    ) {
        let member = &mut self.members[index];
        member.sensor.return_in_flight();
        match end {
            SessionEnd::Lost => {
                self.by_key.remove(&key);
                set.remove(key);
                let backoff = member.sensor.backoff(1);
                self.idle(index, 0, now + backoff, now);
            }
            SessionEnd::Sleep => {
                let mut link = SetLink { set, key };
                let wake_in = member.sensor.going_to_sleep(&mut link);
                member.phase = Phase::Settling {
                    key,
                    until: now + SLEEP_SETTLE,
                    wake_in,
                };
                self.set_wake(index, now + SETTLE_POLL);
            }
            SessionEnd::Done => {
                set.disconnect(key, 0, now.into_std());
                self.by_key.remove(&key);
                member.phase = Phase::Done;
                member.wake = None;
                self.running -= 1;
            }
        }
    }
}

/// One client of the set, as a sensor's [`Link`].
struct SetLink<'a> {
    set: &'a mut ClientSet,
    key: ClientKey,
}

impl Link for SetLink<'_> {
    fn send(&mut self, channel: ChannelId, data: Bytes) -> Result<MessageId, SendError> {
        self.set.send(self.key, channel, data)
    }

    fn stats(&self) -> Option<ConnectionStats> {
        self.set.stats(self.key)
    }

    fn datagrams_sent(&self) -> u64 {
        self.set
            .endpoint_stats(self.key)
            .map_or(0, |stats| stats.datagrams_sent)
    }

    fn request_ack(&mut self) {
        self.set.request_ack(self.key);
    }
}

/// Longest the loop sleeps without looking at the clock.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// How often a settling sensor checks its acknowledgements.
const SETTLE_POLL: Duration = Duration::from_millis(10);
