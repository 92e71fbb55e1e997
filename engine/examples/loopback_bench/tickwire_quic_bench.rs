//! `tickwire_quic`: Tickwire's own API (`Server`, `Client`) over its QUIC transport
//! (`DriverConfig::transport = Transport::Quic`), with the same code as `tickwire_bench.rs`:
//! T1 and T2 over DATAGRAM frames (unreliable channel 0), T3 over one QUIC stream (reliable
//! channel 2). The client accepts the server's self-signed certificate on loopback. T4 is not
//! run: the QUIC transport does not count UDP payload bytes per phase the way the native
//! endpoint does (quinn's own figures are in the `quinn` peer's T4).

use crate::report::{BenchError, T1Config, T1Result, T2Config, T2Result, T3Config, T3Result};
use crate::report::{T4Config, T4Result};
use crate::tickwire_bench;
use crate::tickwire_secure::Mode;

/// T1 ping-pong over QUIC datagrams.
pub(crate) fn t1(cfg: &T1Config) -> Result<Option<T1Result>, BenchError> {
    tickwire_bench::t1_in(cfg, Mode::Quic)
}

/// T2 unreliable flood over QUIC datagrams.
pub(crate) fn t2(cfg: &T2Config) -> Result<Option<T2Result>, BenchError> {
    tickwire_bench::t2_in(cfg, Mode::Quic)
}

/// T3 reliable-ordered bulk over a QUIC stream.
pub(crate) fn t3(cfg: &T3Config) -> Result<Option<T3Result>, BenchError> {
    tickwire_bench::t3_in(cfg, Mode::Quic)
}

/// Not run (see the module docs).
pub(crate) fn t4(_cfg: &T4Config) -> Result<Option<T4Result>, BenchError> {
    Ok(None)
}
