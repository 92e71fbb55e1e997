//! `tickwire_secure`: Tickwire's own entries (`tickwire_bench.rs`) with connect tokens, so every
//! packet after the handshake is encrypted and authenticated (AES-256-GCM), measured in the
//! same run as unencrypted `tickwire`.
//!
//! The server binds a port picked just before (the token must name the server's address); the
//! client presents a token issued for it with a key fixed in this file.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use tickwire::{
    ClientId, Config, DriverConfig, PrivateKey, Security, TokenSecurity, TokenSpec, Transport,
};

use crate::report::{
    BenchError, Context, T1Config, T1Result, T2Config, T2Result, T3Config, T3Result, T4Config,
    T4Result,
};
use crate::tickwire_bench;

/// How a Tickwire entry runs: unsecured, with tokens and encryption, or over QUIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `Security::Unsecured`: the `tickwire` entry.
    Plain,
    /// `Security::Tokens`: the `tickwire_secure` entry.
    Secure,
    /// Unsecured, over the QUIC transport (`Transport::Quic`): the `tickwire_quic` entry.
    Quic,
}

impl Mode {
    /// The address to bind and the server's config in this mode.
    pub(crate) fn server(
        self,
        mut config: DriverConfig,
    ) -> Result<(SocketAddr, DriverConfig), BenchError> {
        let any: SocketAddr = "127.0.0.1:0".parse().ctx("address")?;
        match self {
            Mode::Plain => return Ok((any, config)),
            Mode::Quic => {
                config.transport = Transport::Quic;
                return Ok((any, config));
            }
            Mode::Secure => {}
        }
        let addr = std::net::UdpSocket::bind(any)
            .and_then(|s| s.local_addr())
            .ctx("pick a port")?;
        config.endpoint.security =
            Security::Tokens(TokenSecurity::new(key(), vec![addr], unix_now()));
        Ok((addr, config))
    }

    /// The client's config in this mode, for the server at `server`.
    pub(crate) fn client(
        self,
        mut config: DriverConfig,
        server: SocketAddr,
    ) -> Result<DriverConfig, BenchError> {
        if self == Mode::Quic {
            config.transport = Transport::Quic;
        }
        if self == Mode::Secure {
            let spec = TokenSpec::new(Config::default().protocol_id, ClientId(1), vec![server]);
            config.endpoint.connect_token = Some(spec.issue(&key(), unix_now()).ctx("token")?);
        }
        Ok(config)
    }
}

/// T1 encrypted.
pub(crate) fn t1(cfg: &T1Config) -> Result<Option<T1Result>, BenchError> {
    tickwire_bench::t1_in(cfg, Mode::Secure)
}

/// T2 encrypted.
pub(crate) fn t2(cfg: &T2Config) -> Result<Option<T2Result>, BenchError> {
    tickwire_bench::t2_in(cfg, Mode::Secure)
}

/// T3 encrypted.
pub(crate) fn t3(cfg: &T3Config) -> Result<Option<T3Result>, BenchError> {
    tickwire_bench::t3_in(cfg, Mode::Secure)
}

/// T4 encrypted.
pub(crate) fn t4(cfg: &T4Config) -> Result<Option<T4Result>, BenchError> {
    tickwire_bench::t4_in(cfg, Mode::Secure)
}

fn key() -> PrivateKey {
    PrivateKey::from_bytes([0x42; 32])
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
