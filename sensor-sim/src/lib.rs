//! # sensor-sim
//!
//! Thousands of simulated IoT sensors reporting to a hub over Tickwire, with nothing promised
//! ever lost. Built only on the engine's public API (`tickwire::{Server, Client}` and typed
//! messages); the `sensor-sim` binary is a thin command line over this library, and the
//! end-to-end tests in `tests/` drive the same library.
//!
//! ## What it promises
//!
//! - **Alerts are never lost once raised.** A sensor keeps each alert in its outbox, sends it
//!   on a reliable channel, sends it again in every new session, and forgets it only when the
//!   hub answers `AlertStored`, which the hub sends only after the transaction holding the
//!   alert committed. The database stores each `(sensor, alert_id)` once.
//! - **Readings are stored once.** Readings travel unreliably (several per datagram), each with
//!   the sensor's sequence number and device timestamp; the sensor puts the readings of a batch
//!   declared lost back into its backlog, and the database keeps each `(sensor, seq)` once.
//!   Over QUIC, which reports no datagram's fate, readings take a reliable stream instead
//!   (see [`protocol`]).
//! - **Timestamps are corrected.** Each sensor's clock has an offset and a drift; the hub
//!   estimates both from NTP-style pings and stores the device, corrected and receive times.
//! - **Sleepy sensors get their commands.** Commands wait in the hub's database (so across
//!   hub restarts) until the sensor wakes and acknowledges them.
//!
//! ## Layout
//!
//! | module | role |
//! |---|---|
//! | [`protocol`] | the messages, the channels they use, the driver configurations |
//! | [`certificate`] | the hub's QUIC certificate, kept in its data directory |
//! | [`clock`] | wall clock, simulated device clocks, the hub's offset and drift estimate |
//! | [`store`] | the SQLite database: schema, batched writes, queries, export |
//! | `writer` | the hub's database thread: transactions every 50 ms, commit reports, the command queue |
//! | [`hub`] | [`Hub`]: the server, per-sensor state, commands, clock pings, status |
//! | [`dashboard`] | [`Dashboard`]: the hub's live terminal view, drawn from a [`HubStatus`] |
//! | `signal` | what each kind of sensor measures, and its alert threshold |
//! | [`sensor`] | [`run_fleet`]: sensors with backlog, outbox, backoff and sleep |
//! | [`summary`] | [`RunSummary`]: what was sent, judged against what was stored |

pub mod certificate;
pub mod clock;
pub mod dashboard;
pub mod hub;
pub mod protocol;
pub mod sensor;
mod signal;
pub mod store;
pub mod summary;
mod writer;

pub use dashboard::Dashboard;
pub use hub::{Hub, HubConfig, HubError, HubStatus};
pub use sensor::{run_fleet, FleetConfig, FleetReport, SensorReport};
pub use store::{Store, StoreError};
pub use summary::RunSummary;
