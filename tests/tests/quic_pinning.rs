//! Certificate pinning: the right fingerprint connects, a wrong one is refused with an error
//! that names both fingerprints and says how to pin; without a pin, only loopback is accepted.

mod quic_common;

use quic_common::*;
use tickwire::{CertFingerprint, Client, ClientError, QuicError, ServerVerification, Transport};

#[tokio::test]
async fn the_pinned_fingerprint_connects() {
    let mut server = server(Transport::Quic).await;
    let fingerprint = server.cert_sha256().expect("QUIC is served");
    let mut config = client_config(Transport::Quic);
    config.quic.verification = ServerVerification::Pinned(fingerprint);
    let (client, _) = connect(&mut server, config).await;
    client.disconnect(0).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_wrong_fingerprint_is_refused_with_a_clear_error() {
    let server = server(Transport::Quic).await;
    let actual = server.cert_sha256().expect("QUIC is served");
    let wrong = CertFingerprint([0x42; 32]);
    let mut config = client_config(Transport::Quic);
    config.quic.verification = ServerVerification::Pinned(wrong);
    let error = tokio::time::timeout(LIMIT, Client::connect(server.local_addr(), config))
        .await
        .expect("refused within the limit")
        .err()
        .expect("a wrong pin must not connect");
    match &error {
        ClientError::Quic(QuicError::FingerprintMismatch { expected, got, .. }) => {
            assert_eq!((*expected, *got), (wrong, actual));
        }
        other => panic!("expected a fingerprint mismatch, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("--server-cert-sha256"), "{message}");
    assert!(message.contains(&actual.to_string()), "{message}");
    server.shutdown().await;
}

#[tokio::test]
async fn an_unpinned_non_loopback_server_is_refused_before_any_packet() {
    // TEST-NET-1: nothing is sent there, the refusal comes before the first packet.
    let error = Client::connect(
        "192.0.2.1:7777".parse().unwrap(),
        client_config(Transport::Quic),
    )
    .await
    .err()
    .expect("refused");
    assert!(
        matches!(error, ClientError::Quic(QuicError::Unverifiable(_))),
        "{error:?}"
    );
    assert!(error.to_string().contains("--server-cert-sha256"));
}
