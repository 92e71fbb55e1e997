//! Helpers for the secure-session tests: a key, tokens, and secure configs.

use std::net::SocketAddr;
use std::time::Duration;

use tickwire::sim::LinkConfig;
use tickwire::{ClientId, Config, ConnectToken, PrivateKey, Security, TokenSecurity, TokenSpec};

use super::{client_addr, connected_pair, server_addr, Pair};

/// The Unix time the tests pretend it is when the server starts.
pub const UNIX_NOW: u64 = 1_700_000_000;

/// The server's key.
pub fn key() -> PrivateKey {
    PrivateKey::from_bytes([7; 32])
}

/// A token for `client` from `key`, valid for `servers`, issued at `unix_now` for 30 s.
pub fn token_with(
    key: &PrivateKey,
    client: u64,
    servers: Vec<SocketAddr>,
    unix_now: u64,
) -> ConnectToken {
    let spec = TokenSpec {
        user_data: b"player".to_vec(),
        ..TokenSpec::new(Config::default().protocol_id, ClientId(client), servers)
    };
    spec.issue(&key.clone(), unix_now).unwrap()
}

/// A good token for client 1.
pub fn token() -> ConnectToken {
    token_with(&key(), 1, vec![server_addr()], UNIX_NOW)
}

/// Makes a server config require tokens.
pub fn secure_server(config: &mut Config) {
    config.security = Security::Tokens(TokenSecurity::new(key(), vec![server_addr()], UNIX_NOW));
}

/// Makes a server config require tokens, and a client config present `token`.
pub fn secure(config: &mut Config, token: &ConnectToken) {
    if config.accept_incoming {
        secure_server(config);
    } else {
        config.connect_token = Some(token.clone());
    }
}

/// A secure pair connected on `link`.
pub fn secure_pair(link: LinkConfig, seed: u64) -> Pair {
    let token = token();
    let pair = connected_pair(link, seed, |c| secure(c, &token));
    assert!(pair.sim.endpoint(pair.server).is_secure(pair.to_client));
    assert!(pair.sim.endpoint(pair.client).is_secure(pair.to_server));
    assert_eq!(
        pair.sim
            .endpoint(pair.server)
            .remote_address(pair.to_client),
        Some(client_addr())
    );
    pair
}

/// The link most secure tests use: 10 ms one way, nothing else.
pub fn quiet_link() -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(10),
        ..LinkConfig::default()
    }
}

/// What became of a connection attempt against a secure server.
pub struct Attempt {
    /// The server's drop counters (endpoint-wide).
    pub dropped: tickwire::DropCounters,
    /// Connections the server holds at the end (handshaking ones included).
    pub server_connections: usize,
    /// Whether the client saw `Connected`.
    pub connected: bool,
    /// Datagrams the server sent.
    pub server_sent: u64,
}

/// A secure server (its config adjusted by `server_adjust`) and a client presenting `token`,
/// run for 2 s of virtual time.
pub fn attempt(token: &ConnectToken, server_adjust: impl Fn(&mut Config)) -> Attempt {
    let mut sim = tickwire::sim::Simulation::new(quiet_link(), 3).unwrap();
    let mut server_config = Config {
        seed: Some(4),
        ..Config::server()
    };
    secure_server(&mut server_config);
    server_adjust(&mut server_config);
    let client_config = Config {
        seed: Some(5),
        connect_token: Some(token.clone()),
        ..Config::client()
    };
    let server = sim.add_endpoint(server_addr(), server_config).unwrap();
    let client = sim.add_endpoint(client_addr(), client_config).unwrap();
    let now = sim.now();
    sim.endpoint_mut(client)
        .connect(server_addr(), now)
        .unwrap();
    let mut connected = false;
    sim.run_until(Duration::from_secs(2), |sim| {
        while let Some(event) = sim.poll_event(client) {
            connected |= matches!(event, tickwire::Event::Connected { .. });
        }
        connected
    })
    .unwrap();
    let endpoint = sim.endpoint(server);
    Attempt {
        dropped: endpoint.total_dropped(),
        server_connections: endpoint.connection_count(),
        connected,
        server_sent: endpoint.stats().datagrams_sent,
    }
}
