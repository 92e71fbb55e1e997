//! A seeded, virtual-time network simulator: test a game or device fleet against latency,
//! jitter, loss, duplication, reordering and bandwidth caps, in milliseconds of wall time.
//!
//! - [`LinkConditioner`] shapes one direction of a link (also usable on a real socket).
//! - [`SimNetwork`] routes datagrams between addresses through one conditioner per direction.
//! - [`Simulation`] drives [`Endpoint`](crate::Endpoint)s over a `SimNetwork`, jumping virtual
//!   time from one deadline to the next, with a step bound that fails a run which livelocks.
mod harness;
mod link;
mod network;

pub use harness::{NodeId, SimError, Simulation};
pub use link::{BurstLoss, LinkConditioner, LinkConfig, LinkConfigError, LinkStats};
pub use network::{Datagram, SimNetwork};
