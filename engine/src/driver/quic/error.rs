//! Why a QUIC connection or listener could not be set up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use super::CertFingerprint;

/// A QUIC transport failure, each with what to do about it.
#[derive(Debug, Error)]
pub enum QuicError {
    /// A PEM file could not be read or held no usable certificate or key.
    #[error("could not load {what} from {}: {source}: give a PEM file (e.g. from certbot or `openssl req -x509`)", .path.display())]
    Pem {
        /// "certificate chain" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The self-signed development certificate could not be generated.
    #[error("could not generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate, key or settings.
    #[error("TLS setup failed: {0}: check that the key belongs to the certificate")]
    Tls(#[source] rustls::Error),
    /// The CA file could not be turned into a verifier.
    #[error("could not use the CA roots in {}: {source}", .path.display())]
    Roots {
        /// The PEM file of roots.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::client::VerifierBuilderError,
    },
    /// No TLS 1.3 cipher suite usable for QUIC (a build without ring's AES-GCM).
    #[error("no TLS 1.3 cipher suite usable for QUIC")]
    CipherSuite(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// The server's certificate failed verification.
    #[error("the certificate of {server} was refused: {reason}: pin it with --server-cert-sha256 HEX (the server prints it at start) or give the CA that signed it")]
    BadCertificate {
        /// The server.
        server: SocketAddr,
        /// rustls's verdict.
        reason: rustls::Error,
    },
    /// The server's certificate is not the pinned one.
    #[error("{server} presented a certificate with SHA-256 {got}, but {expected} is pinned: if the server restarted with a new self-signed certificate, pin the new one with --server-cert-sha256 {got}; otherwise something is impersonating it")]
    FingerprintMismatch {
        /// The server.
        server: SocketAddr,
        /// The pinned fingerprint.
        expected: CertFingerprint,
        /// The presented certificate's fingerprint.
        got: CertFingerprint,
    },
    /// No way to verify the server: it is not on loopback and nothing is pinned.
    #[error("refusing an unverified certificate from {0}: it is not a loopback address; pin the server's certificate with --server-cert-sha256 HEX (the server prints it at start) or give a CA file")]
    Unverifiable(SocketAddr),
    /// The server does not speak Tickwire's ALPN id.
    #[error("{server} does not offer ALPN \"tickwire/1\": it is not a Tickwire server, or runs an incompatible version (check the address and the QUIC port)")]
    AlpnMismatch {
        /// The server.
        server: SocketAddr,
    },
    /// The QUIC handshake (or the Tickwire hello after it) did not finish in time.
    #[error("no QUIC handshake with {server} after {:.1} s: is the server listening for QUIC on that port (default: native port + 1), and does the network pass UDP to it?", .after.as_secs_f64())]
    HandshakeTimeout {
        /// The server's QUIC address.
        server: SocketAddr,
        /// How long the client tried.
        after: Duration,
    },
    /// The server closed the QUIC connection during the handshake.
    #[error("QUIC connection to {server} failed: {source}")]
    Connection {
        /// The server's QUIC address.
        server: SocketAddr,
        /// quinn's error.
        #[source]
        source: quinn::ConnectionError,
    },
    /// quinn refused to start the connection (e.g. an unusable address).
    #[error("cannot start a QUIC connection to {server}: {source}")]
    Connect {
        /// The server's QUIC address.
        server: SocketAddr,
        /// quinn's error.
        #[source]
        source: quinn::ConnectError,
    },
    /// Hybrid mode needs a client-to-server channel to present the pairing token on.
    #[error("hybrid transport needs at least one client-to-server channel")]
    NoPairingChannel,
    /// The server's QUIC port is not known: the native port is 65535 and no
    /// [`QuicConfig::port`](super::QuicConfig::port) is set.
    #[error("no QUIC port for native port 65535: set QuicConfig::port")]
    NoPort,
}
