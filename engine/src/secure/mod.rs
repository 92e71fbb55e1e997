//! Authenticated and encrypted sessions with connect tokens, after the ideas of netcode 1.02.
//!
//! A backend that holds the server's [`PrivateKey`] (a matchmaker, a device provisioning
//! service) issues each client a [`ConnectToken`] with [`TokenSpec::issue`]. The client passes
//! it to [`Endpoint::connect_with_token`](crate::Endpoint::connect_with_token) (or
//! [`Config::connect_token`](crate::Config::connect_token) for the drivers); a server configured
//! with [`Security::Tokens`] accepts only such clients. Every packet of the session after the
//! handshake is then encrypted and authenticated with AES-256-GCM (tokens are sealed with
//! ChaCha20-Poly1305).
//!
//! ```
//! use tickwire::{ClientId, ConnectToken, PrivateKey, TokenSpec};
//!
//! let key = PrivateKey::generate(); // held by the backend and the servers, never by clients
//! let spec = TokenSpec::new(0x5449_434b_5749_5245, ClientId(42), vec!["127.0.0.1:7777".parse().unwrap()]);
//! let token = spec.issue(&key, 1_700_000_000).unwrap(); // the caller reads the Unix time
//! let bytes = token.to_bytes(); // hand these to the client over TLS
//! assert_eq!(ConnectToken::from_bytes(&bytes).unwrap().client_id(), ClientId(42));
//! ```
//!
//! Layouts and rules: `engine/PROTOCOL.md`, sections "Connect tokens" and "Secure sessions".

mod guard;
mod key;
mod protect;
mod token;

use std::fmt;
use std::net::SocketAddr;

pub(crate) use guard::HandshakeGuard;
pub use key::{KeyFileError, KeyParseError, PrivateKey, KEY_LEN};
pub(crate) use protect::{PacketKeys, AEAD_TAG_LEN, SECURE_DATA_OVERHEAD};
pub(crate) use token::MAX_SEALED_LEN;
pub use token::{
    verify_token, ConnectToken, IssueError, TokenCheck, TokenError, TokenSpec, VerifiedToken,
    MAX_TOKEN_SERVERS, MAX_USER_DATA, TOKEN_VERSION,
};

/// Identifies a client across sessions and addresses: chosen by the backend, sealed in its
/// tokens. A secure server keys sessions by it: a new session with the same id replaces the old.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u64);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {}", self.0)
    }
}

/// Whether a server requires connect tokens ([`Config::security`](crate::Config::security)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Security {
    /// No tokens, no encryption: anyone who completes the cookie round trip connects, and data
    /// travels in the clear without authentication. For LANs, tests and trusted networks. The
    /// default.
    #[default]
    Unsecured,
    /// Only clients with a valid token connect, and every packet after the handshake is
    /// encrypted and authenticated.
    Tokens(TokenSecurity),
}

impl Security {
    /// Whether this is [`Security::Unsecured`].
    pub fn is_unsecured(&self) -> bool {
        matches!(self, Self::Unsecured)
    }
}

/// A secure server's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSecurity {
    /// The key tokens are sealed with.
    pub private_key: PrivateKey,
    /// The addresses clients reach this server at (as the backend lists them in tokens); a
    /// token that lists none of them is refused.
    pub public_addresses: Vec<SocketAddr>,
    /// Unix time in seconds at the instant given to [`Endpoint::new`](crate::Endpoint::new):
    /// the endpoint reads no clock, so the caller passes it (`SystemTime::now()` in a driver).
    pub unix_time: u64,
    /// Token decryptions allowed per second, over all clients (a global cap on the work a
    /// flood of handshakes can cause); requests beyond it are dropped. Default 10 000.
    pub max_handshakes_per_sec: u32,
}

impl TokenSecurity {
    /// Settings with the default rate cap.
    pub fn new(private_key: PrivateKey, public_addresses: Vec<SocketAddr>, unix_time: u64) -> Self {
        Self {
            private_key,
            public_addresses,
            unix_time,
            max_handshakes_per_sec: 10_000,
        }
    }
}
