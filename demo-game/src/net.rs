//! The one place where the game's network driver configuration is built from the command
//! line's network options, for the server, the player and the bots alike.
//!
//! The transport (native UDP, QUIC, or both / native-then-QUIC), the QUIC certificate pin and
//! the connect-token security are read here too.

use std::net::SocketAddr;
use std::time::Duration;

use tickwire::sim::LinkConfig;
use tickwire::{
    CertFingerprint, ClientError, Config, ConnectToken, DriverConfig, PrivateKey, QuicError,
    Security, ServerVerification, TokenSecurity, Transport,
};

use crate::protocol::endpoint_config;

/// Network options shared by every command: the transport, its security, and a simulated bad
/// network on this side's socket.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetOptions {
    /// Added one-way latency, each direction, ms.
    pub lag_ms: u64,
    /// Added jitter (uniform ±), ms.
    pub jitter_ms: u64,
    /// Datagrams lost, each direction, percent.
    pub loss_pct: f64,
    /// Seed of the simulated link.
    pub seed: u64,
    /// The transport: what a client dials, what a server serves (`Auto`: both). Default
    /// `Native`.
    pub transport: Transport,
    /// Client over QUIC: the server certificate's SHA-256 to accept. `None`: accept a
    /// self-signed certificate from a loopback address only.
    pub server_cert_sha256: Option<CertFingerprint>,
    /// Connect tokens: required by a server, presented by a client.
    pub access: Access,
}

/// Who may connect: everyone, or connect-token holders (a secure session, native transport).
///
/// Tokens are checked on the native transport only: a server that requires them should serve
/// `Transport::Native`, or QUIC clients would get in without one (the CLI refuses the mix).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Access {
    /// No tokens: the plain protocol.
    #[default]
    Open,
    /// Server: require tokens sealed with `key` that name one of `public_addresses`.
    RequireTokens {
        /// The key shared with whoever mints the tokens.
        key: PrivateKey,
        /// The addresses clients dial, as the tokens list them.
        public_addresses: Vec<SocketAddr>,
    },
    /// Client: present this token.
    Token(ConnectToken),
}

impl NetOptions {
    /// The simulated link these options ask for; `None` when they add nothing.
    pub fn link(&self) -> Option<LinkConfig> {
        if self.lag_ms == 0 && self.jitter_ms == 0 && self.loss_pct <= 0.0 {
            return None;
        }
        Some(LinkConfig {
            latency: Duration::from_millis(self.lag_ms),
            jitter: Duration::from_millis(self.jitter_ms),
            loss: (self.loss_pct / 100.0).clamp(0.0, 1.0),
            ..LinkConfig::default()
        })
    }
}

/// Which side a driver is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The game server.
    Server {
        /// Most players at once.
        max_players: usize,
    },
    /// A player or a bot.
    Client,
}

/// The driver configuration for `role` with `options`: the game's protocol id and channels,
/// the transport and its certificate pin, the connect-token security, and the simulated link
/// if any.
pub fn driver_config(role: Role, options: &NetOptions) -> DriverConfig {
    let (base, driver) = match role {
        Role::Server { max_players } => (
            Config {
                max_connections: max_players,
                ..Config::server()
            },
            DriverConfig::server(),
        ),
        Role::Client => (Config::client(), DriverConfig::client()),
    };
    let mut config = DriverConfig {
        endpoint: endpoint_config(base),
        link: options.link(),
        link_seed: options.seed,
        transport: options.transport,
        ..driver
    };
    if let Some(fingerprint) = options.server_cert_sha256 {
        config.quic.verification = ServerVerification::Pinned(fingerprint);
    }
    match &options.access {
        Access::Open => {}
        Access::RequireTokens {
            key,
            public_addresses,
        } => {
            config.endpoint.security = Security::Tokens(TokenSecurity::new(
                key.clone(),
                public_addresses.clone(),
                unix_now(),
            ));
        }
        Access::Token(token) => config.endpoint.connect_token = Some(token.clone()),
    }
    config
}

/// What to add to a connect failure's message, given the options dialled with: a secure
/// server drops what it does not accept in silence, so a bare timeout would mislead.
pub fn connect_hint(error: &ClientError, options: &NetOptions) -> Option<&'static str> {
    let timed_out = match error {
        ClientError::Timeout { .. } => true,
        ClientError::Quic(QuicError::HandshakeTimeout { .. }) => {
            options.transport == Transport::Auto
        }
        _ => false,
    };
    match (&options.access, timed_out) {
        (Access::Token(_), true) => Some(
            "a secure server silently drops tokens it does not accept: check that the token was minted with the server's key and for the address dialled",
        ),
        (Access::Open, true) => Some(
            "if the server runs with --secure, it needs a connect token: pass --token FILE (bots: --key FILE)",
        ),
        _ => None,
    }
}

/// The game's protocol id, which every connect token must carry.
pub fn protocol_id() -> u64 {
    endpoint_config(Config::client()).protocol_id
}

/// Seconds since the Unix epoch, read here in the application (the engine reads no clock).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The "bad network" the HUD's toggle key switches on: 100 ms each way, ±20 ms, 10 % loss.
pub fn bad_network() -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(100),
        jitter: Duration::from_millis(20),
        loss: 0.10,
        ..LinkConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_a_link() {
        assert_eq!(NetOptions::default().link(), None);
        let options = NetOptions {
            lag_ms: 80,
            loss_pct: 10.0,
            ..NetOptions::default()
        };
        let link = options.link().unwrap();
        assert_eq!(link.latency, Duration::from_millis(80));
        assert!((link.loss - 0.1).abs() < 1e-9);
        driver_config(Role::Client, &options).validate().unwrap();
        driver_config(Role::Server { max_players: 64 }, &options)
            .validate()
            .unwrap();
    }

    #[test]
    fn transport_pin_and_tokens_reach_the_driver() {
        let fingerprint = CertFingerprint([7; 32]);
        let client = driver_config(
            Role::Client,
            &NetOptions {
                transport: Transport::Quic,
                server_cert_sha256: Some(fingerprint),
                ..NetOptions::default()
            },
        );
        assert_eq!(client.transport, Transport::Quic);
        assert_eq!(
            client.quic.verification,
            ServerVerification::Pinned(fingerprint)
        );
        let key = PrivateKey::generate();
        let addr: SocketAddr = "127.0.0.1:7777".parse().unwrap();
        let server = driver_config(
            Role::Server { max_players: 8 },
            &NetOptions {
                access: Access::RequireTokens {
                    key: key.clone(),
                    public_addresses: vec![addr],
                },
                ..NetOptions::default()
            },
        );
        assert!(!server.endpoint.security.is_unsecured());
        server.validate().unwrap();
        let token = crate::tokens::mint(&key, addr, 1, Duration::from_secs(30)).unwrap();
        assert_eq!(token.protocol_id(), protocol_id());
        let client = driver_config(
            Role::Client,
            &NetOptions {
                access: Access::Token(token.clone()),
                ..NetOptions::default()
            },
        );
        assert_eq!(client.endpoint.connect_token, Some(token));
    }
}
