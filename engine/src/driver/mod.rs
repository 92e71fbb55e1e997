//! Drivers: thin layers that own a UDP socket and a clock and drive an [`Endpoint`].
//!
//! - [`Server`] and [`Client`] (feature `tokio`, on by default): an async driver on a tokio
//!   UDP socket, with a background task per socket.
//!   [`DriverConfig::transport`] picks native UDP, QUIC (feature `quic`, on by default), or
//!   native with a fallback to QUIC; see `quic/`.
//! - [`PolledEndpoint`]: no async, no threads: a non-blocking std socket the application polls
//!   once per frame from its own game loop.
//! - [`ClientSet`] (feature `client-set`, on by default): many client connections, each on its
//!   own socket, driven from one thread through one OS poller: a load generator or a gateway of
//!   thousands of devices without a task, a lock and a timer per connection.
//!
//! Both can pass every datagram through a [`LinkConditioner`](crate::sim::LinkConditioner) in
//! each direction ([`DriverConfig::link`]), to run a real application as if over a bad network;
//! the QUIC path has its own ([`QuicConfig::link`]).
//!
//! [`Endpoint`]: crate::Endpoint

#[cfg(feature = "tokio")]
mod client;
#[cfg(feature = "client-set")]
mod client_set;
mod conditioner;
mod polled;
mod quic;
#[cfg(feature = "tokio")]
mod server;
#[cfg(feature = "tokio")]
mod socket;
#[cfg(feature = "tokio")]
mod udp;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;

use crate::sim::{LinkConfig, LinkConfigError};
use crate::{Config, ConfigError, DisconnectReason, RejectReason};

#[cfg(feature = "tokio")]
pub use client::Client;
#[cfg(feature = "client-set")]
pub use client_set::{ClientKey, ClientSet, ClientSetError};
pub use polled::{ClientSetupError, PolledEndpoint};
#[cfg(feature = "quic")]
pub use quic::QuicError;
pub use quic::{
    CertFingerprint, ParseFingerprintError, ParseTransportError, QuicConfig, ServerCertificate,
    ServerVerification, Transport, ALPN,
};
#[cfg(feature = "tokio")]
pub use server::Server;

/// Configuration of a driver: the endpoint's, plus what concerns the socket.
#[derive(Clone, Debug, PartialEq)]
pub struct DriverConfig {
    /// The protocol endpoint's configuration. [`Server`] forces `accept_incoming` on,
    /// [`Client`] off.
    pub endpoint: Config,
    /// Simulated network conditions applied to every datagram, independently in each direction
    /// (so a one-way latency of 50 ms here adds 100 ms of RTT). `None`: the network as it is.
    pub link: Option<LinkConfig>,
    /// Seed of the simulated link's randomness. Default 0.
    pub link_seed: u64,
    /// Kernel send and receive buffer sizes requested for the socket, in bytes. Default 4 MiB;
    /// the kernel may grant less (see `net.core.rmem_max`), except to a process with
    /// `CAP_NET_ADMIN` on Linux, which gets the size asked for.
    pub socket_buffer_bytes: usize,
    /// Which transport to use (client) or serve (server). Default [`Transport::Native`]. The
    /// simulated [`link`](Self::link) applies to the native path; the QUIC path has its own
    /// ([`QuicConfig::link`]), so that one can be blocked while the other works.
    pub transport: Transport,
    /// QUIC settings: port, certificate, verification, timeouts. Used unless `transport` is
    /// `Native`.
    pub quic: QuicConfig,
}

impl DriverConfig {
    /// Defaults for a server.
    pub fn server() -> Self {
        Self {
            endpoint: Config::server(),
            ..Self::default()
        }
    }

    /// Defaults for a client.
    pub fn client() -> Self {
        Self::default()
    }

    /// Checks the endpoint and link configuration.
    pub fn validate(&self) -> Result<(), DriverConfigError> {
        self.endpoint.validate()?;
        for link in [&self.link, &self.quic.link].into_iter().flatten() {
            link.validate()?;
        }
        if !cfg!(feature = "quic") && self.transport != Transport::Native {
            return Err(DriverConfigError::QuicUnavailable(self.transport));
        }
        Ok(())
    }
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            endpoint: Config::client(),
            link: None,
            link_seed: 0,
            socket_buffer_bytes: 4 * 1024 * 1024,
            transport: Transport::Native,
            quic: QuicConfig::default(),
        }
    }
}

/// A [`DriverConfig`] was refused.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum DriverConfigError {
    /// The endpoint configuration is invalid.
    #[error("invalid endpoint configuration: {0}")]
    Endpoint(#[from] ConfigError),
    /// The simulated link configuration is invalid.
    #[error("invalid simulated link: {0}")]
    Link(#[from] LinkConfigError),
    /// A QUIC transport was asked of a build without the `quic` feature.
    #[error("transport {0} needs QUIC: build tickwire with the `quic` feature (on by default)")]
    QuicUnavailable(Transport),
}

/// A socket could not be opened.
#[derive(Debug, Error)]
pub enum BindError {
    /// Another program (or another Tickwire server) already uses this port.
    #[error("port {} is already in use on {}: stop the other program or choose another port", .0.port(), .0.ip())]
    AddrInUse(SocketAddr),
    /// The address is not one of this machine's.
    #[error(
        "{0} is not an address of this machine: bind to 0.0.0.0, [::] or a local interface address"
    )]
    AddrNotAvailable(SocketAddr),
    /// Not allowed to bind there (ports below 1024 need privileges).
    #[error("not allowed to bind {0}: ports below 1024 need privileges; choose a port above 1024")]
    PermissionDenied(SocketAddr),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] DriverConfigError),
    /// The QUIC listener could not be set up (certificate, key).
    #[cfg(feature = "quic")]
    #[error(transparent)]
    Quic(#[from] QuicError),
    /// Any other I/O error.
    #[error("could not open a UDP socket on {addr}: {source}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl BindError {
    pub(crate) fn from_io(addr: SocketAddr, source: io::Error) -> Self {
        match source.kind() {
            io::ErrorKind::AddrInUse => Self::AddrInUse(addr),
            io::ErrorKind::AddrNotAvailable => Self::AddrNotAvailable(addr),
            io::ErrorKind::PermissionDenied => Self::PermissionDenied(addr),
            _ => Self::Io { addr, source },
        }
    }
}

/// A client could not connect.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The local socket could not be opened.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The server address is not usable.
    #[error(transparent)]
    Connect(#[from] crate::ConnectError),
    /// The server did not answer within the handshake timeout.
    #[error("no answer from {server} after {:.1} s: is the server running, and are the address and port right? (a firewall may also drop UDP)", .after.as_secs_f64())]
    Timeout {
        /// The server's address.
        server: SocketAddr,
        /// How long the client tried.
        after: Duration,
    },
    /// The QUIC connection failed: certificate, fingerprint, ALPN, handshake timeout.
    #[cfg(feature = "quic")]
    #[error(transparent)]
    Quic(#[from] QuicError),
    /// The server refused the connection.
    #[error("{server} refused the connection: {reason}")]
    Rejected {
        /// The server's address.
        server: SocketAddr,
        /// Why.
        reason: RejectReason,
    },
    /// The connection ended during the handshake for another reason.
    #[error("connection to {server} failed: {reason}")]
    Failed {
        /// The server's address.
        server: SocketAddr,
        /// Why.
        reason: DisconnectReason,
    },
}

/// Opens a non-blocking UDP socket with the requested buffer sizes, mapping errors to
/// actionable ones.
pub(crate) fn open_socket(
    addr: SocketAddr,
    buffer_bytes: usize,
) -> Result<std::net::UdpSocket, BindError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| BindError::from_io(addr, e))?;
    set_buffer_sizes(&socket, buffer_bytes);
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    socket
        .bind(&addr.into())
        .map_err(|e| BindError::from_io(addr, e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| BindError::from_io(addr, e))?;
    Ok(socket.into())
}

/// Requests `bytes` of kernel send and receive buffer. The kernel caps a request at
/// `net.core.rmem_max` / `wmem_max` and that is fine; on Linux a process with `CAP_NET_ADMIN`
/// (a server run as root, say) may go past the cap, and gets what it asked for: a busy server's
/// receive buffer is what absorbs a moment off the CPU without dropping datagrams.
fn set_buffer_sizes(socket: &socket2::Socket, bytes: usize) {
    let _ = socket.set_recv_buffer_size(bytes);
    let _ = socket.set_send_buffer_size(bytes);
    #[cfg(target_os = "linux")]
    {
        // Linux reports twice the requested size (it counts its bookkeeping).
        if socket
            .recv_buffer_size()
            .is_ok_and(|granted| granted < bytes)
        {
            let _ = rustix::net::sockopt::set_socket_recv_buffer_size_force(socket, bytes);
        }
        if socket
            .send_buffer_size()
            .is_ok_and(|granted| granted < bytes)
        {
            let _ = rustix::net::sockopt::set_socket_send_buffer_size_force(socket, bytes);
        }
    }
}

/// The endpoint and, if configured, the simulated link of a driver about to start.
fn endpoint_and_link(
    config: DriverConfig,
) -> Result<(crate::Endpoint, Option<conditioner::Conditioner>), BindError> {
    let conditioner = match &config.link {
        Some(link) => Some(
            conditioner::Conditioner::new(link, config.link_seed)
                .map_err(|e| BindError::Config(e.into()))?,
        ),
        None => None,
    };
    let endpoint = crate::Endpoint::new(config.endpoint, std::time::Instant::now())
        .map_err(|e| BindError::Config(e.into()))?;
    Ok((endpoint, conditioner))
}

/// The wildcard address of the same family as `server`, for a client socket.
pub(crate) fn client_bind_addr(server: SocketAddr) -> SocketAddr {
    if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    }
}

#[cfg(test)]
mod tests {
    use super::open_socket;

    /// Linux reports twice the size set (it counts its bookkeeping): a request past
    /// `net.core.rmem_max` is either granted in full (a privileged process, as CI's) or capped.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_buffer_past_the_cap_is_granted_in_full_or_capped() {
        let cap: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(212_992);
        let asked = cap * 2 + 4096;
        let socket = open_socket("127.0.0.1:0".parse().unwrap(), asked).unwrap();
        let granted = socket2::SockRef::from(&socket).recv_buffer_size().unwrap();
        assert!(
            granted >= asked || granted == cap * 2,
            "asked {asked}, cap {cap}, granted {granted}"
        );
    }
}
