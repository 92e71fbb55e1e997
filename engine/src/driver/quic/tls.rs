//! TLS for the QUIC transport: the server's certificate (self-signed or PEM), the client's
//! verifier (pinned fingerprint, loopback-only self-signed, or WebPKI roots), and the quinn
//! configurations built from them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::{CertFingerprint, QuicConfig, QuicError, ServerCertificate, ServerVerification, ALPN};

/// The server's quinn configuration and the fingerprint of the certificate it presents.
pub(super) fn server_config(
    quic: &QuicConfig,
    uni_streams: u32,
) -> Result<(quinn::ServerConfig, CertFingerprint), QuicError> {
    let (chain, key) = match &quic.certificate {
        ServerCertificate::SelfSigned { names } => {
            let certified = rcgen::generate_simple_self_signed(names.clone())?;
            let key =
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
            (vec![certified.cert.der().clone()], key)
        }
        ServerCertificate::Pem { cert, key } => {
            fn pem<'a>(
                what: &'static str,
                path: &'a std::path::Path,
            ) -> impl Fn(rustls::pki_types::pem::Error) -> QuicError + 'a {
                move |source| QuicError::Pem {
                    what,
                    path: path.to_owned(),
                    source,
                }
            }
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(pem("certificate chain", cert))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(pem("certificate chain", cert))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(pem("private key", key))?;
            (chain, key)
        }
    };
    let fingerprint = chain
        .first()
        .map(|leaf| CertFingerprint::of_der(leaf))
        .ok_or_else(|| QuicError::Tls(rustls::Error::NoCertificatesPresented))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(QuicError::Tls)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(QuicError::Tls)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport_config(quic, uni_streams)));
    Ok((config, fingerprint))
}

/// The client's quinn configuration for `server`, and the verifier (which remembers why it
/// refused a certificate, for a typed error).
pub(super) fn client_config(
    quic: &QuicConfig,
    server: SocketAddr,
    uni_streams: u32,
) -> Result<(quinn::ClientConfig, Arc<Verifier>), QuicError> {
    let provider = provider();
    let policy = match &quic.verification {
        ServerVerification::LoopbackSelfSigned => {
            if !server.ip().is_loopback() {
                return Err(QuicError::Unverifiable(server));
            }
            tracing::warn!(
                %server,
                "accepting the QUIC server's certificate unverified (loopback only); pin it with --server-cert-sha256"
            );
            Policy::AnyFromLoopback
        }
        ServerVerification::Pinned(fingerprint) => Policy::Pinned(*fingerprint),
        ServerVerification::Ca { roots } => {
            let mut store = rustls::RootCertStore::empty();
            let pem = |source| QuicError::Pem {
                what: "CA certificates",
                path: roots.clone(),
                source,
            };
            for cert in CertificateDer::pem_file_iter(roots).map_err(pem)? {
                store.add(cert.map_err(pem)?).map_err(QuicError::Tls)?;
            }
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(store), Arc::clone(&provider))
                    .build()
                    .map_err(|source| QuicError::Roots {
                        path: roots.clone(),
                        source,
                    })?;
            Policy::WebPki(verifier)
        }
    };
    let verifier = Arc::new(Verifier {
        policy,
        provider: Arc::clone(&provider),
        failure: Mutex::new(None),
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(QuicError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::clone(&verifier) as Arc<dyn ServerCertVerifier>)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport_config(quic, uni_streams)));
    Ok((config, verifier))
}

/// Transport settings shared by both sides: datagrams enabled with the configured buffers,
/// windows raised so that they do not cap a loopback or LAN path, the idle timeout, and stream
/// limits that let the peer open only what the mapping uses: one bidirectional (control) stream
/// and `uni_streams` unidirectional ones (its reliable channels and the fallback stream).
pub(super) fn transport_config(quic: &QuicConfig, uni_streams: u32) -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(quic.idle_timeout)
        .unwrap_or_else(|_| quinn::IdleTimeout::from(quinn::VarInt::from_u32(10_000)));
    transport
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(1))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(uni_streams))
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(quic.idle_timeout.min(KEEPALIVE_MAX) / 3))
        .stream_receive_window(quinn::VarInt::from_u32(quic.stream_receive_window))
        .send_window(u64::from(quic.stream_receive_window) * 4)
        .datagram_receive_buffer_size(
            (!quic.disable_datagrams).then_some(quic.datagram_receive_buffer),
        )
        .datagram_send_buffer_size(quic.datagram_send_buffer);
    transport
}

/// Unidirectional streams a peer sending on `channels` may open: one per reliable channel, and
/// the fallback stream.
pub(super) fn stream_count(channels: &[crate::ChannelConfig]) -> u32 {
    channels.iter().filter(|c| c.kind.is_reliable()).count() as u32 + 1
}

/// Keep-alives go out at least this often, a third of the idle timeout at most.
const KEEPALIVE_MAX: Duration = Duration::from_secs(15);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why the client's verifier refused the server's certificate.
#[derive(Clone, Debug)]
pub(super) enum VerifyFailure {
    /// Not the pinned certificate.
    Mismatch {
        expected: CertFingerprint,
        got: CertFingerprint,
    },
    /// Refused by WebPKI verification.
    Refused(rustls::Error),
}

impl VerifyFailure {
    pub(super) fn into_error(self, server: SocketAddr) -> QuicError {
        match self {
            Self::Mismatch { expected, got } => QuicError::FingerprintMismatch {
                server,
                expected,
                got,
            },
            Self::Refused(reason) => QuicError::BadCertificate { server, reason },
        }
    }
}

#[derive(Debug)]
enum Policy {
    AnyFromLoopback,
    Pinned(CertFingerprint),
    WebPki(Arc<WebPkiServerVerifier>),
}

/// The client's certificate verifier; handshake signatures are always checked.
#[derive(Debug)]
pub(super) struct Verifier {
    policy: Policy,
    provider: Arc<CryptoProvider>,
    failure: Mutex<Option<VerifyFailure>>,
}

impl Verifier {
    /// Why the last certificate was refused, if one was.
    pub(super) fn failure(&self) -> Option<VerifyFailure> {
        self.failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn refuse(&self, failure: VerifyFailure, error: rustls::Error) -> rustls::Error {
        *self
            .failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(failure);
        error
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.policy {
            Policy::AnyFromLoopback => Ok(ServerCertVerified::assertion()),
            Policy::Pinned(expected) => {
                let got = CertFingerprint::of_der(end_entity);
                if got == *expected {
                    return Ok(ServerCertVerified::assertion());
                }
                Err(self.refuse(
                    VerifyFailure::Mismatch {
                        expected: *expected,
                        got,
                    },
                    rustls::Error::InvalidCertificate(
                        rustls::CertificateError::ApplicationVerificationFailure,
                    ),
                ))
            }
            Policy::WebPki(webpki) => webpki
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map_err(|e| self.refuse(VerifyFailure::Refused(e.clone()), e)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
