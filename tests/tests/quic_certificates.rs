//! Production TLS: a server presenting a PEM certificate chain and key, a client verifying it
//! against CA roots from a PEM file. The CA that signed it connects; another CA, or a name the
//! certificate does not carry, is refused with `BadCertificate`, whose message says what to do.

mod quic_common;

use std::path::{Path, PathBuf};

use quic_common::*;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use tickwire::{
    Client, ClientError, DriverConfig, QuicError, Server, ServerCertificate, ServerVerification,
    Transport,
};

/// A CA certificate and its key.
fn new_ca() -> (Certificate, KeyPair) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    (params.self_signed(&key).expect("CA certificate"), key)
}

/// A directory of its own for one test's PEM files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tickwire-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// Writes a server certificate for `localhost` signed by `ca`, its key, and `roots` (the CA
/// certificate the client trusts) into `dir`; returns the three paths.
fn write_pems(dir: &Path, ca: &(Certificate, KeyPair), roots: &Certificate) -> [PathBuf; 3] {
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca.0, &ca.1).expect("sign");
    let paths = [
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    ];
    std::fs::write(&paths[0], cert.pem()).expect("write cert");
    std::fs::write(&paths[1], key.serialize_pem()).expect("write key");
    std::fs::write(&paths[2], roots.pem()).expect("write roots");
    paths
}

async fn pem_server(cert: PathBuf, key: PathBuf) -> Server {
    let mut config = DriverConfig {
        transport: Transport::Quic,
        ..DriverConfig::server()
    };
    config.quic.certificate = ServerCertificate::Pem { cert, key };
    Server::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("serve a PEM certificate")
}

fn ca_client(roots: PathBuf, name: &str) -> DriverConfig {
    let mut config = client_config(Transport::Quic);
    config.quic.verification = ServerVerification::Ca { roots };
    config.quic.server_name = name.to_owned();
    config
}

#[tokio::test]
async fn a_pem_certificate_verified_against_its_ca_connects() {
    let ca = new_ca();
    let dir = scratch("ca-ok");
    let [cert, key, roots] = write_pems(&dir, &ca, &ca.0);
    let mut server = pem_server(cert, key).await;
    let (client, _) = connect(&mut server, ca_client(roots, "localhost")).await;
    assert_eq!(client.transport(), Transport::Quic);
    client.disconnect(0).await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

async fn refused(test: &str, trusted_other_ca: bool, name: &str) -> ClientError {
    let ca = new_ca();
    let other = new_ca();
    let dir = scratch(test);
    let roots = if trusted_other_ca { &other.0 } else { &ca.0 };
    let [cert, key, roots] = write_pems(&dir, &ca, roots);
    let server = pem_server(cert, key).await;
    let result = tokio::time::timeout(
        LIMIT,
        Client::connect(server.local_addr(), ca_client(roots, name)),
    )
    .await
    .expect("refused within the limit");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
    result
        .err()
        .expect("an unverifiable certificate must not connect")
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_a_bad_certificate() {
    let error = refused("ca-other", true, "localhost").await;
    assert!(
        matches!(error, ClientError::Quic(QuicError::BadCertificate { .. })),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("--server-cert-sha256"), "{message}");
    assert!(message.contains("CA"), "{message}");
}

#[tokio::test]
async fn a_certificate_without_the_server_name_is_a_bad_certificate() {
    let error = refused("ca-name", false, "game.example").await;
    assert!(
        matches!(error, ClientError::Quic(QuicError::BadCertificate { .. })),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_missing_pem_file_is_a_typed_error_naming_it() {
    let dir = scratch("pem-missing");
    let mut config = DriverConfig {
        transport: Transport::Quic,
        ..DriverConfig::server()
    };
    config.quic.certificate = ServerCertificate::Pem {
        cert: dir.join("absent-cert.pem"),
        key: dir.join("absent-key.pem"),
    };
    let error = Server::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .err()
        .expect("no certificate, no server");
    let message = error.to_string();
    assert!(message.contains("absent-cert.pem"), "{message}");
    let _ = std::fs::remove_dir_all(dir);
}
