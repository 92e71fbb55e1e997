//! A simulated link on a real socket: one [`LinkConditioner`] per direction.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::sim::{LinkConditioner, LinkConfig, LinkConfigError};

/// Datagrams held back by the simulated link, each way.
#[derive(Debug)]
pub(crate) struct Conditioner {
    outgoing: LinkConditioner<(SocketAddr, Bytes)>,
    incoming: LinkConditioner<(SocketAddr, Bytes)>,
}

impl Conditioner {
    pub(crate) fn new(config: &LinkConfig, seed: u64) -> Result<Self, LinkConfigError> {
        Ok(Self {
            outgoing: LinkConditioner::new(config.clone(), seed)?,
            incoming: LinkConditioner::new(config.clone(), seed ^ 0x9e37_79b9_7f4a_7c15)?,
        })
    }

    pub(crate) fn send(&mut self, now: Instant, to: SocketAddr, datagram: Bytes) {
        self.outgoing.send(now, datagram.len(), (to, datagram));
    }

    pub(crate) fn receive(&mut self, now: Instant, from: SocketAddr, datagram: Bytes) {
        self.incoming.send(now, datagram.len(), (from, datagram));
    }

    pub(crate) fn poll_outgoing(&mut self, now: Instant) -> Option<(SocketAddr, Bytes)> {
        self.outgoing.poll(now)
    }

    pub(crate) fn poll_incoming(&mut self, now: Instant) -> Option<(SocketAddr, Bytes)> {
        self.incoming.poll(now)
    }

    pub(crate) fn next_delivery(&self) -> Option<Instant> {
        match (self.outgoing.next_delivery(), self.incoming.next_delivery()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn set_config(&mut self, config: &LinkConfig) -> Result<(), LinkConfigError> {
        self.outgoing.set_config(config.clone())?;
        self.incoming.set_config(config.clone())
    }
}
