//! The QUIC transport: the same [`Server`](crate::Server) and [`Client`](crate::Client) API
//! over quinn, for networks that block or mangle unknown UDP and for users who want TLS.
//!
//! This module holds the configuration (plain data, always compiled) and, with the `quic`
//! feature, the driver: `tls.rs` (certificates and verifiers), `framing.rs` (the byte layouts of
//! `engine/PROTOCOL.md`'s "QUIC mapping"), `session.rs` (one QUIC connection carrying Tickwire
//! channels), `events.rs` (the bounded queue of received events), `link.rs` (the simulated link
//! under a QUIC socket), `server.rs` and `client.rs` (the two ends).
//!
//! Port layout: QUIC listens on its own UDP port, by default the native port + 1
//! ([`QuicConfig::port`] overrides it on both sides).

#[cfg(feature = "quic")]
mod client;
#[cfg(feature = "quic")]
mod error;
#[cfg(feature = "quic")]
mod events;
#[cfg(feature = "quic")]
mod framing;
#[cfg(feature = "quic")]
mod link;
#[cfg(feature = "quic")]
mod server;
#[cfg(feature = "quic")]
mod session;
#[cfg(feature = "quic")]
mod tls;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

#[cfg(feature = "quic")]
pub(crate) use client::QuicClient;
#[cfg(feature = "quic")]
pub use error::QuicError;
#[cfg(feature = "quic")]
pub(crate) use framing::pairing_token;
#[cfg(feature = "quic")]
pub(crate) use server::QuicServer;
#[cfg(feature = "quic")]
pub(crate) use session::Session;

/// The ALPN protocol id a Tickwire QUIC endpoint offers and requires.
pub const ALPN: &[u8] = b"tickwire/1";

/// Which transport carries a connection.
///
/// On a [`Client`](crate::Client) it is chosen in [`DriverConfig::transport`](crate::DriverConfig::transport);
/// on a [`Server`](crate::Server) it says what to listen for: `Native` (native UDP only, the
/// default), `Quic` (QUIC only), `Auto` or `Hybrid` (both, on two ports).
/// [`Client::transport`](crate::Client::transport) and
/// [`Server::transport_of`](crate::Server::transport_of) report `Native`, `Quic` or `Hybrid`,
/// never `Auto`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Tickwire's own protocol over plain UDP.
    #[default]
    Native,
    /// Every channel over one QUIC connection (TLS 1.3).
    Quic,
    /// Native first; QUIC if the native handshake gets no answer within
    /// [`QuicConfig::auto_fallback_after`].
    Auto,
    /// Reliable channels over QUIC streams, unreliable and sequenced channels over native UDP:
    /// one logical connection, one event stream, named by the native connection's id. The
    /// server pairs the two paths while its application drains events (`next_event`), as every
    /// server loop does; see `engine/PROTOCOL.md`, "Hybrid pairing".
    Hybrid,
}

impl Transport {
    /// The lowercase name used on command lines: `native`, `quic`, `auto`, `hybrid`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Quic => "quic",
            Self::Auto => "auto",
            Self::Hybrid => "hybrid",
        }
    }

    /// Whether a server with this setting listens for native UDP.
    #[cfg(feature = "quic")]
    pub(crate) fn serves_native(self) -> bool {
        self != Self::Quic
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Transport {
    type Err = ParseTransportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "native" | "udp" => Ok(Self::Native),
            "quic" => Ok(Self::Quic),
            "auto" => Ok(Self::Auto),
            "hybrid" => Ok(Self::Hybrid),
            _ => Err(ParseTransportError(s.to_owned())),
        }
    }
}

/// A transport name was not one of `native`, `quic`, `auto`, `hybrid`.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("unknown transport {0:?}: use native, quic, auto or hybrid")]
pub struct ParseTransportError(pub String);

/// The SHA-256 digest of a certificate's DER encoding, as pinned by clients.
///
/// Displays (and parses) as 64 hex digits; parsing also accepts `:` separators, as printed by
/// `openssl x509 -fingerprint -sha256`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertFingerprint(pub [u8; 32]);

impl CertFingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut bytes = [0; 32];
        bytes.copy_from_slice(digest.as_ref());
        Self(bytes)
    }
}

impl fmt::Display for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertFingerprint({self})")
    }
}

impl FromStr for CertFingerprint {
    type Err = ParseFingerprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits: Vec<u8> = s.bytes().filter(|b| *b != b':').collect();
        if digits.len() != 64 {
            return Err(ParseFingerprintError::Length(digits.len()));
        }
        let mut bytes = [0; 32];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            let hex = |d: u8| {
                (d as char)
                    .to_digit(16)
                    .ok_or(ParseFingerprintError::NotHex)
            };
            *byte = (hex(pair[0])? * 16 + hex(pair[1])?) as u8;
        }
        Ok(Self(bytes))
    }
}

/// A certificate fingerprint could not be parsed.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum ParseFingerprintError {
    /// Not 64 hex digits.
    #[error(
        "a SHA-256 fingerprint has 64 hex digits, this has {0}: copy it from the server's log"
    )]
    Length(usize),
    /// A character other than `0-9`, `a-f`, `A-F` or `:`.
    #[error("a SHA-256 fingerprint is hex digits (0-9, a-f), optionally with ':' separators")]
    NotHex,
}

/// The certificate a QUIC server presents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerCertificate {
    /// Generate a self-signed certificate at start (rcgen) for these DNS names; clients pin its
    /// fingerprint ([`Server::cert_sha256`](crate::Server::cert_sha256)). For development.
    SelfSigned {
        /// Subject alternative names. Default `["localhost"]`.
        names: Vec<String>,
    },
    /// Load a certificate chain and its private key from PEM files. For production.
    Pem {
        /// The certificate chain, leaf first.
        cert: PathBuf,
        /// The private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
}

impl Default for ServerCertificate {
    fn default() -> Self {
        Self::SelfSigned {
            names: vec!["localhost".to_owned()],
        }
    }
}

/// How a QUIC client decides to trust the server's certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ServerVerification {
    /// Accept any certificate, but only from a loopback address (logged as a warning); refuse
    /// other addresses with [`QuicError::Unverifiable`] that says how to pin. The default, for
    /// development on one machine.
    #[default]
    LoopbackSelfSigned,
    /// Accept exactly the certificate with this SHA-256 fingerprint (the demos'
    /// `--server-cert-sha256 HEX`).
    Pinned(CertFingerprint),
    /// Normal WebPKI verification of the chain and of [`QuicConfig::server_name`] against the CA
    /// certificates in this PEM file.
    Ca {
        /// PEM file of trusted root certificates.
        roots: PathBuf,
    },
}

/// QUIC settings of a [`DriverConfig`](crate::DriverConfig). Used only when
/// [`DriverConfig::transport`](crate::DriverConfig::transport) is not `Native`.
#[derive(Clone, Debug, PartialEq)]
pub struct QuicConfig {
    /// The UDP port QUIC listens on (server) or dials (client). Default `None`: the native
    /// port + 1.
    pub port: Option<u16>,
    /// Server: the certificate to present. Default: a self-signed one for `localhost`.
    pub certificate: ServerCertificate,
    /// Client: how to verify the server. Default: self-signed accepted from loopback only.
    pub verification: ServerVerification,
    /// Client: the name the certificate must carry (and the TLS SNI). Default `"localhost"`.
    pub server_name: String,
    /// Client: the longest the QUIC and Tickwire handshakes may take before
    /// [`QuicError::HandshakeTimeout`]. Default 5 s.
    pub handshake_timeout: Duration,
    /// Client with [`Transport::Auto`]: how long the native handshake may go unanswered before
    /// switching to QUIC. Default 1 s.
    pub auto_fallback_after: Duration,
    /// QUIC idle timeout: a silent peer is dropped after this long. Default 10 s.
    pub idle_timeout: Duration,
    /// Bytes of received DATAGRAM frames quinn buffers before dropping. Default 8 MiB.
    pub datagram_receive_buffer: usize,
    /// Bytes of DATAGRAM frames quinn queues for sending before dropping the oldest.
    /// Default 4 MiB.
    pub datagram_send_buffer: usize,
    /// Flow-control window per stream, in bytes. Default 16 MiB: a reliable channel may have
    /// that much unread at the receiver.
    pub stream_receive_window: u32,
    /// Bytes of received messages (payload plus 64 per message) waiting for the application
    /// (`next_event`) before the QUIC transport pushes back: further unreliable messages are
    /// dropped and counted in [`RecvChannelStats::messages_dropped`](crate::RecvChannelStats),
    /// reliable streams stop being read, so QUIC flow control slows their sender. One queue per
    /// server (all its QUIC connections) or client. Default 8 MiB; a lagging reader holds at
    /// most about this much (plus quinn's own buffers), a higher limit rides out longer stalls.
    pub event_queue_bytes: usize,
    /// Simulated network conditions of the QUIC socket, each way, like
    /// [`DriverConfig::link`](crate::DriverConfig::link) for the native one (seeded from
    /// `link_seed` too). Default `None`: the network as it is.
    pub link: Option<crate::sim::LinkConfig>,
    /// Client: never send DATAGRAM frames; unreliable channels use the fallback stream as if
    /// the server lacked datagram support. Default `false`; for tests of the fallback.
    pub disable_datagrams: bool,
}

impl Default for QuicConfig {
    fn default() -> Self {
        Self {
            port: None,
            certificate: ServerCertificate::default(),
            verification: ServerVerification::default(),
            server_name: "localhost".to_owned(),
            handshake_timeout: Duration::from_secs(5),
            auto_fallback_after: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(10),
            datagram_receive_buffer: 8 << 20,
            datagram_send_buffer: 4 << 20,
            stream_receive_window: 16 << 20,
            event_queue_bytes: 8 << 20,
            link: None,
            disable_datagrams: false,
        }
    }
}

/// The QUIC port that goes with a native address (see [`QuicConfig::port`]).
#[cfg(feature = "quic")]
pub(crate) fn quic_port(native_port: u16, config: &QuicConfig) -> Option<u16> {
    match config.port {
        Some(port) => Some(port),
        None => native_port.checked_add(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_round_trip_through_hex() {
        let fingerprint = CertFingerprint::of_der(b"certificate");
        let text = fingerprint.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<CertFingerprint>(), Ok(fingerprint));
        let colons: Vec<String> = fingerprint.0.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(colons.join(":").parse::<CertFingerprint>(), Ok(fingerprint));
        assert_eq!(
            "abc".parse::<CertFingerprint>(),
            Err(ParseFingerprintError::Length(3))
        );
        assert_eq!(
            "zz".repeat(32).parse::<CertFingerprint>(),
            Err(ParseFingerprintError::NotHex)
        );
    }

    #[test]
    fn transports_parse_by_name() {
        for transport in [
            Transport::Native,
            Transport::Quic,
            Transport::Auto,
            Transport::Hybrid,
        ] {
            assert_eq!(transport.name().parse::<Transport>(), Ok(transport));
        }
        assert!("tcp".parse::<Transport>().is_err());
    }
}
