//! A QUIC client written from `engine/PROTOCOL.md` ("QUIC mapping") alone, on plain quinn:
//! it completes the hello, sends DATAGRAM payloads by hand (plain, and fragmented), and mixes
//! in hostile ones (garbage, bad fragments, a flood of incomplete fragmented messages). The
//! server delivers the valid messages intact, counts each malformed payload, and stays up.
//! Also a hybrid session whose pairing token is presented from another address.

mod quic_common;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use quic_common::*;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use tickwire::{ChannelId, Config, DriverConfig, Server, ServerCertificate, Transport, ALPN};

/// The layout fingerprint of PROTOCOL.md, "Channel layout fingerprint", for the default layout
/// (4 channels each way, kinds 0 to 3, 256 KiB messages).
fn default_layout_fingerprint() -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    let mut feed = |byte: u8| {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    };
    for _direction in 0..2 {
        feed(4);
        for kind in 0..4u8 {
            feed(kind);
            for byte in (256u32 * 1024).to_be_bytes() {
                feed(byte);
            }
        }
        feed(0xff);
    }
    hash
}

/// `0xFF 0x04 | message u32 | index u16 | count u16 | piece`.
fn fragment(message: u32, index: u16, count: u16, piece: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_slice(&[0xFF, 0x04]);
    out.put_u32(message);
    out.put_u16(index);
    out.put_u16(count);
    out.put_slice(piece);
    out.freeze()
}

/// A server for `transport` with a CA-signed certificate (so that a stock client can verify
/// it), the CA certificate, and the directory of its PEM files.
async fn ca_server(transport: Transport, test: &str) -> (Server, Certificate, PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let dir = std::env::temp_dir().join(format!("tickwire-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    let mut config = DriverConfig {
        transport,
        ..DriverConfig::server()
    };
    config.quic.certificate = ServerCertificate::Pem {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("bind");
    (server, ca, dir)
}

/// A stock quinn client endpoint on `bind`: TLS 1.3 trusting `ca`, ALPN "tickwire/1",
/// DATAGRAM frames on.
fn stock_client(ca: &Certificate, bind: &str) -> quinn::Endpoint {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut client_config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.datagram_receive_buffer_size(Some(1 << 20));
    client_config.transport_config(Arc::new(transport));
    let mut endpoint = quinn::Endpoint::client(bind.parse().unwrap()).unwrap();
    endpoint.set_default_client_config(client_config);
    endpoint
}

/// The 17-byte hello: `"TWQ1" | protocol_id u64 | layout fingerprint u32 | mode u8`.
fn hello(mode: u8) -> Vec<u8> {
    let mut hello = b"TWQ1".to_vec();
    hello.extend_from_slice(&Config::default().protocol_id.to_be_bytes());
    hello.extend_from_slice(&default_layout_fingerprint().to_be_bytes());
    hello.push(mode);
    hello
}

#[tokio::test]
async fn a_client_built_from_the_protocol_document_is_served_and_hostile_payloads_are_counted() {
    assert_eq!(
        default_layout_fingerprint(),
        0x85c0_c859,
        "PROTOCOL.md's example"
    );
    let (mut server, ca, dir) = ca_server(Transport::Quic, "third-party").await;
    let quic_addr = server.quic_addr().expect("QUIC served");
    let endpoint = stock_client(&ca, "127.0.0.1:0");
    let conn = endpoint
        .connect(quic_addr, "localhost")
        .unwrap()
        .await
        .expect("QUIC handshake");

    // The hello on the first bidirectional stream; status 0 is accepted.
    let (mut control, mut status_stream) = conn.open_bi().await.unwrap();
    control.write_all(&hello(0)).await.unwrap();
    let mut status = [0xAAu8];
    status_stream.read_exact(&mut status).await.unwrap();
    assert_eq!(status[0], 0, "accepted");
    let id = loop {
        match tokio::time::timeout(LIMIT, server.next_event()).await {
            Ok(Some(tickwire::Event::Connected { connection, .. })) => break connection,
            Ok(Some(_)) => continue,
            other => panic!("no connection: {other:?}"),
        }
    };

    // Six malformed payloads, each counted once.
    let mut hostile = vec![
        Bytes::from_static(&[0xFF, 9]),      // unknown engine frame kind
        Bytes::from_static(&[200, 1, 2]),    // no channel 200
        fragment(1, 0, 1, b"x"),             // a count below 2
        fragment(1, 2, 2, b"x"),             // an index not below the count
        fragment(2, 1, 65_535, &[7; 1_000]), // would reassemble past the size limit
    ];
    // Two pieces that disagree about the piece size.
    hostile.push(fragment(3, 0, 3, &[7; 100]));
    hostile.push(fragment(3, 1, 3, &[7; 50]));
    // 40 fragmented messages that never complete: the oldest are dropped, none counted.
    for message in 100..140 {
        hostile.push(fragment(message, 0, 2, &[7; 500]));
    }
    for payload in hostile {
        conn.send_datagram(payload).unwrap();
    }
    // A valid fragmented message on channel 0 (body `channel | message`), then a plain one.
    let mut body = vec![0u8];
    body.extend((0..3_000u32).map(|i| i as u8));
    for (index, piece) in body.chunks(1_000).enumerate() {
        conn.send_datagram(fragment(9, index as u16, 4, piece))
            .unwrap();
    }
    conn.send_datagram(Bytes::from_static(b"\x00hello"))
        .unwrap();

    let (from, channel, data) = server_message(&mut server).await;
    assert_eq!((from, channel), (id, ChannelId(0)));
    assert_eq!(&data[..], &body[1..], "the fragmented message, whole");
    let (_, _, data) = server_message(&mut server).await;
    assert_eq!(&data[..], b"hello");
    let stats = server.stats(id).expect("still connected");
    assert_eq!(stats.dropped.malformed, 6, "{stats:?}");
    assert_eq!(stats.recv_channels[0].messages_delivered, 2);

    conn.close(0u32.into(), b"");
    endpoint.wait_idle().await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Hybrid pairing: a token presented on a native connection from another IP address than its
/// QUIC session's (here a session from 127.0.0.2, the native connection from 127.0.0.1) pairs
/// nothing; the message reaches the application as an ordinary one.
#[tokio::test]
async fn a_pairing_token_from_another_address_pairs_nothing() {
    let (mut server, ca, dir) = ca_server(Transport::Hybrid, "pair-elsewhere").await;
    let quic_addr = server.quic_addr().expect("QUIC served");
    let endpoint = stock_client(&ca, "127.0.0.2:0");
    let conn = endpoint
        .connect(quic_addr, "localhost")
        .unwrap()
        .await
        .expect("QUIC handshake");
    let (mut control, mut replies) = conn.open_bi().await.unwrap();
    control.write_all(&hello(1)).await.unwrap();
    let mut reply = [0u8; 17];
    replies.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply[0], 0, "accepted, with a token");
    let mut pairing = b"TWPAIR".to_vec();
    pairing.extend_from_slice(&reply[1..]);

    let (client, native) = connect(&mut server, client_config(Transport::Native)).await;
    client
        .send(ChannelId(2), Bytes::from(pairing.clone()))
        .expect("queue");
    let (from, channel, data) = server_message(&mut server).await;
    assert_eq!((from, channel), (native, ChannelId(2)));
    assert_eq!(&data[..], &pairing[..], "an ordinary message");
    assert_eq!(server.transport_of(native), Some(Transport::Native));
    client.disconnect(0).await;
    conn.close(0u32.into(), b"");
    endpoint.wait_idle().await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
