//! The QUIC side of a [`Client`](crate::Client): the QUIC handshake, the hello, the session.

use std::net::SocketAddr;
use std::sync::Arc;

use quinn::{ConnectionError, TransportErrorCode};
use tokio::task::JoinHandle;

use super::events::EventQueue;
use super::framing::{Hello, Mode, ACCEPTED, PAIRED, PAIR_MAGIC, TOKEN_LEN};
use super::link::{self, LinkHandle};
use super::server::QUIC_ID_BIT;
use super::session::{Session, SessionLimits};
use super::tls::{self, Verifier};
use super::{quic_port, QuicError};
use crate::driver::{client_bind_addr, open_socket, ClientError, DriverConfig};
use crate::{ConnectionId, Event, RejectReason};

/// TLS alert `no_application_protocol` (RFC 8446), as a QUIC crypto error.
const NO_APPLICATION_PROTOCOL: u8 = 120;

/// A client's QUIC session with its endpoint.
pub(crate) struct QuicClient {
    endpoint: quinn::Endpoint,
    session: Arc<Session>,
    events: Arc<EventQueue>,
    task: JoinHandle<()>,
    local_addr: SocketAddr,
    /// Hybrid mode: the token to present on the native path, and the control stream on which
    /// the server confirms the pairing.
    pairing: Option<([u8; TOKEN_LEN], quinn::RecvStream)>,
    /// The simulated link under the endpoint, if `DriverConfig::link` was set.
    link: Option<LinkHandle>,
}

impl QuicClient {
    /// Connects to the QUIC port that goes with the native address `server` and completes the
    /// hello. `hybrid` asks for a session of reliable channels only, with a pairing token.
    pub(crate) async fn connect(
        server: SocketAddr,
        config: &DriverConfig,
        hybrid: bool,
    ) -> Result<Self, ClientError> {
        let quic = &config.quic;
        let port = quic_port(server.port(), quic).ok_or(QuicError::NoPort)?;
        let addr = SocketAddr::new(server.ip(), port);
        let streams = tls::stream_count(&config.endpoint.channels.server_to_client);
        let (client_config, verifier) = tls::client_config(quic, addr, streams)?;
        let socket = open_socket(client_bind_addr(addr), config.socket_buffer_bytes)?;
        let local_addr = socket
            .local_addr()
            .map_err(|e| crate::BindError::from_io(client_bind_addr(addr), e))?;
        let (endpoint, link) = link::endpoint(socket, None, quic.link.as_ref(), config.link_seed)
            .map_err(|e| crate::BindError::from_io(local_addr, e))?;
        let connecting = endpoint
            .connect_with(client_config, addr, &quic.server_name)
            .map_err(|source| QuicError::Connect {
                server: addr,
                source,
            })?;
        let hello = Hello {
            protocol_id: config.endpoint.protocol_id,
            layout: config.endpoint.channels.fingerprint(),
            mode: if hybrid { Mode::Hybrid } else { Mode::Full },
        };
        let handshake = async {
            let conn = connecting
                .await
                .map_err(|e| handshake_error(e, addr, &verifier))?;
            let lost = |e: ConnectionError| handshake_error(e, addr, &verifier);
            let (mut send, mut recv) = conn.open_bi().await.map_err(lost)?;
            let write = send.write_all(&hello.encode()).await;
            let mut status = [0u8; 1];
            let read = recv.read_exact(&mut status).await;
            if write.is_err() || read.is_err() {
                let source = conn
                    .close_reason()
                    .unwrap_or(ConnectionError::LocallyClosed);
                return Err(handshake_error(source, addr, &verifier));
            }
            if status[0] != ACCEPTED {
                conn.close(quinn::VarInt::from(0u32), b"");
                return Err(ClientError::Rejected {
                    server: addr,
                    reason: RejectReason::from_code(status[0]),
                });
            }
            let mut pairing = None;
            if hybrid {
                let mut token = [0u8; TOKEN_LEN];
                recv.read_exact(&mut token).await.map_err(|_| {
                    handshake_error(
                        conn.close_reason()
                            .unwrap_or(ConnectionError::LocallyClosed),
                        addr,
                        &verifier,
                    )
                })?;
                pairing = Some((token, recv));
            }
            let _ = send.finish();
            Ok((conn, pairing))
        };
        let (conn, pairing) = tokio::time::timeout(quic.handshake_timeout, handshake)
            .await
            .map_err(|_| QuicError::HandshakeTimeout {
                server: addr,
                after: quic.handshake_timeout,
            })??;
        let events = Arc::new(EventQueue::new(quic.event_queue_bytes));
        let session = Session::new(
            ConnectionId(QUIC_ID_BIT),
            conn,
            hello.mode,
            config.endpoint.channels.client_to_server.clone(),
            config.endpoint.channels.server_to_client.clone(),
            SessionLimits {
                datagrams: !quic.disable_datagrams,
                reassembly_bytes: config.endpoint.max_reassembly_bytes,
            },
            Arc::clone(&events),
        );
        let task = tokio::spawn({
            let (session, events) = (Arc::clone(&session), Arc::clone(&events));
            async move {
                session.run().await;
                events.close();
            }
        });
        Ok(Self {
            endpoint,
            session,
            events,
            task,
            local_addr,
            pairing,
            link,
        })
    }

    /// The session.
    pub(crate) fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Changes the simulated link of the QUIC socket, if it has one.
    pub(crate) fn set_link(
        &self,
        config: Option<&crate::sim::LinkConfig>,
    ) -> Result<(), crate::sim::LinkConfigError> {
        self.link.as_ref().map_or(Ok(()), |link| link.set(config))
    }

    /// The local QUIC socket's address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Hybrid mode: the pairing message to send on the native path.
    pub(crate) fn pairing_message(&self) -> Option<bytes::Bytes> {
        let (token, _) = self.pairing.as_ref()?;
        let mut message = PAIR_MAGIC.to_vec();
        message.extend_from_slice(token);
        Some(message.into())
    }

    /// Hybrid mode: waits until the server confirms that the native half presented the token,
    /// then names this session's events with the native connection's id.
    pub(crate) async fn paired(&mut self, native: ConnectionId) -> Result<(), ClientError> {
        let server = self.session.remote_addr();
        if let Some((_, mut control)) = self.pairing.take() {
            let mut byte = [0u8; 1];
            if control.read_exact(&mut byte).await.is_err() || byte[0] != PAIRED {
                return Err(ClientError::Failed {
                    server,
                    reason: crate::DisconnectReason::Timeout,
                });
            }
        }
        self.session.pair(native);
        Ok(())
    }

    /// The next event; `None` once the session has ended and every event was taken.
    pub(crate) async fn next_event(&mut self) -> Option<Event> {
        self.events.pop().await
    }

    /// The next event if one is waiting.
    pub(crate) fn try_event(&mut self) -> Option<Event> {
        self.events.try_pop()
    }

    /// Moves waiting events into `out` until it holds `max`.
    pub(crate) fn try_events(&mut self, out: &mut Vec<Event>, max: usize) {
        self.events.pop_into(out, max);
    }

    /// Closes gracefully (queued reliable data drained for at most `drain`) and waits for the
    /// close to reach the server.
    pub(crate) async fn disconnect(mut self, code: u16, drain: std::time::Duration) {
        self.session.close(code, drain).await;
        let _ = tokio::time::timeout(drain, self.endpoint.wait_idle()).await;
        let _ = (&mut self.task).await;
    }
}

impl Drop for QuicClient {
    fn drop(&mut self) {
        self.session.abort(0);
    }
}

/// A typed error for a connection that failed during the handshake.
fn handshake_error(error: ConnectionError, server: SocketAddr, verifier: &Verifier) -> ClientError {
    if let Some(failure) = verifier.failure() {
        return failure.into_error(server).into();
    }
    let alpn = TransportErrorCode::crypto(NO_APPLICATION_PROTOCOL);
    let quic = match &error {
        ConnectionError::ConnectionClosed(close) if close.error_code == alpn => {
            QuicError::AlpnMismatch { server }
        }
        ConnectionError::TransportError(e) if e.code == alpn => QuicError::AlpnMismatch { server },
        ConnectionError::ApplicationClosed(close)
            if close.error_code == quinn::VarInt::from(super::session::SHUTDOWN_CODE) =>
        {
            return ClientError::Failed {
                server,
                reason: crate::DisconnectReason::Shutdown,
            }
        }
        _ => QuicError::Connection {
            server,
            source: error,
        },
    };
    quic.into()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use quinn::crypto::rustls::QuicServerConfig;
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    use super::*;
    use crate::driver::Transport;

    /// A QUIC server that speaks another ALPN id is refused with `AlpnMismatch`.
    #[tokio::test]
    async fn another_alpn_is_an_alpn_mismatch() {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
        tls.alpn_protocols = vec![b"h3".to_vec()];
        let server_config =
            quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls).unwrap()));
        let endpoint =
            quinn::Endpoint::server(server_config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let quic_addr = endpoint.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            if let Some(incoming) = endpoint.accept().await {
                let _ = incoming.await;
            }
            endpoint
        });
        let mut config = DriverConfig {
            transport: Transport::Quic,
            ..DriverConfig::client()
        };
        config.quic.port = Some(quic_addr.port());
        let result = QuicClient::connect(quic_addr, &config, false).await;
        assert!(
            matches!(
                result,
                Err(ClientError::Quic(QuicError::AlpnMismatch { .. }))
            ),
            "{:?}",
            result.err()
        );
        accept.abort();
    }
}
