//! A QUIC port that never answers fails with a typed handshake timeout that names the server and
//! says what to check.

mod quic_common;

use std::net::UdpSocket;
use std::time::Duration;

use quic_common::*;
use tickwire::{Client, ClientError, QuicConfig, QuicError, Transport};

#[tokio::test]
async fn a_silent_quic_port_is_a_handshake_timeout() {
    // A socket that reads nothing: datagrams to it vanish, as behind a firewall.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind a silent socket");
    let silent_addr = silent.local_addr().expect("address");
    let mut config = client_config(Transport::Quic);
    config.quic = QuicConfig {
        port: Some(silent_addr.port()),
        handshake_timeout: Duration::from_millis(300),
        ..QuicConfig::default()
    };
    let error = tokio::time::timeout(LIMIT, Client::connect(silent_addr, config))
        .await
        .expect("gives up within the limit")
        .err()
        .expect("nothing answers");
    match &error {
        ClientError::Quic(QuicError::HandshakeTimeout { server, after }) => {
            assert_eq!(*server, silent_addr);
            assert_eq!(*after, Duration::from_millis(300));
        }
        other => panic!("expected a handshake timeout, got {other:?}"),
    }
    assert!(error.to_string().contains("listening for QUIC"), "{error}");
}
