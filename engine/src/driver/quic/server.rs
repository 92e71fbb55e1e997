//! The QUIC listener of a [`Server`](crate::Server): accepts QUIC connections, checks each
//! client's hello, and runs a [`Session`] per client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::events::EventQueue;
use super::framing::{Hello, Mode, ACCEPTED, HELLO_LEN, PAIRED, TOKEN_LEN};
use super::link::{self, LinkHandle};
use super::session::{Session, SessionLimits, SHUTDOWN_CODE};
use super::{tls, CertFingerprint, QuicConfig};
use crate::driver::BindError;
use crate::{Config, ConnectionId, Event, RejectReason};

/// Connection ids of QUIC sessions have this bit set, so they never collide with the native
/// endpoint's (which count up from zero).
pub(crate) const QUIC_ID_BIT: u64 = ConnectionId::QUIC_BIT;
/// How long a refused client has to read the refusal before the connection is dropped.
const REJECT_LINGER: Duration = Duration::from_secs(1);

/// A QUIC endpoint serving Tickwire sessions.
pub(crate) struct QuicServer {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    events: Arc<EventQueue>,
    accept: JoinHandle<()>,
    fingerprint: CertFingerprint,
    local_addr: SocketAddr,
    /// The simulated link under the endpoint, if `DriverConfig::link` was set.
    link: Option<LinkHandle>,
}

/// A hybrid session waiting for its native half, with the control stream that will confirm the
/// pairing.
struct Pending {
    session: Arc<Session>,
    control: quinn::SendStream,
}

struct Shared {
    config: Config,
    quic: QuicConfig,
    sessions: Mutex<HashMap<ConnectionId, Arc<Session>>>,
    /// Hybrid sessions waiting for their native half, by pairing token.
    pending: Mutex<HashMap<[u8; TOKEN_LEN], Pending>>,
    next_id: AtomicU64,
    events: Arc<EventQueue>,
}

impl QuicServer {
    /// Serves on `socket` (already bound). Must be called within a tokio runtime.
    pub(crate) fn start(
        socket: std::net::UdpSocket,
        config: &Config,
        quic: &QuicConfig,
        link_seed: u64,
    ) -> Result<Self, BindError> {
        let addr = socket
            .local_addr()
            .map_err(|e| BindError::from_io(SocketAddr::from(([0, 0, 0, 0], 0)), e))?;
        let streams = tls::stream_count(&config.channels.client_to_server);
        let (server_config, fingerprint) = tls::server_config(quic, streams)?;
        let (endpoint, link) =
            link::endpoint(socket, Some(server_config), quic.link.as_ref(), link_seed)
                .map_err(|e| BindError::from_io(addr, e))?;
        let events = Arc::new(EventQueue::new(quic.event_queue_bytes));
        let shared = Arc::new(Shared {
            config: config.clone(),
            quic: quic.clone(),
            sessions: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            events: Arc::clone(&events),
        });
        let accept = tokio::spawn(accept_loop(endpoint.clone(), Arc::clone(&shared)));
        tracing::info!(%addr, sha256 = %fingerprint, "QUIC listening");
        Ok(Self {
            endpoint,
            shared,
            events,
            accept,
            fingerprint,
            local_addr: addr,
            link,
        })
    }

    /// The QUIC socket's address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The SHA-256 fingerprint of the certificate presented.
    pub(crate) fn fingerprint(&self) -> CertFingerprint {
        self.fingerprint
    }

    /// Changes the simulated link of the QUIC socket, if it has one.
    pub(crate) fn set_link(
        &self,
        config: Option<&crate::sim::LinkConfig>,
    ) -> Result<(), crate::sim::LinkConfigError> {
        self.link.as_ref().map_or(Ok(()), |link| link.set(config))
    }

    /// The session with this id, if it is live.
    pub(crate) fn session(&self, id: ConnectionId) -> Option<Arc<Session>> {
        self.shared.sessions().get(&id).cloned()
    }

    /// The live sessions' ids.
    pub(crate) fn connections(&self) -> Vec<ConnectionId> {
        self.shared.sessions().keys().copied().collect()
    }

    /// Pairs the hybrid session waiting for `token` with the native connection `native`, whose
    /// peer is at `native_ip`: from now on it is known by that id, and the client is told (one
    /// byte, [`PAIRED`], on the control stream). Returns the session, or `None` if no session
    /// waits for this token, or if the session's peer has another IP address (a copied token
    /// presented from elsewhere; the session keeps waiting for its own client).
    pub(crate) fn pair(
        &self,
        token: &[u8; TOKEN_LEN],
        native: ConnectionId,
        native_ip: std::net::IpAddr,
    ) -> Option<Arc<Session>> {
        let Pending {
            session,
            mut control,
        } = {
            let mut pending = self.shared.pending();
            if pending.get(token)?.session.remote_ip().to_canonical() != native_ip.to_canonical() {
                return None;
            }
            pending.remove(token)?
        };
        session.pair(native);
        self.shared.sessions().insert(native, Arc::clone(&session));
        tokio::spawn(async move {
            let _ = control.write_all(&[PAIRED]).await;
            let _ = control.finish();
        });
        Some(session)
    }

    /// The addresses of hybrid clients waiting for their native half.
    pub(crate) fn pending_ips(&self) -> Vec<std::net::IpAddr> {
        self.shared
            .pending()
            .values()
            .map(|p| p.session.remote_ip())
            .collect()
    }

    /// The next event; `None` never comes before shutdown.
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

    /// Closes every session (draining for at most `drain`) and the endpoint.
    pub(crate) async fn shutdown(self, drain: Duration) {
        self.accept.abort();
        let sessions: Vec<Arc<Session>> = self.shared.sessions().values().cloned().collect();
        let pending: Vec<Arc<Session>> = self
            .shared
            .pending()
            .drain()
            .map(|(_, p)| p.session)
            .collect();
        let closes = sessions
            .iter()
            .chain(&pending)
            .map(|session| session.close(SHUTDOWN_CODE, drain));
        for close in closes {
            close.await;
        }
        self.endpoint.close(quinn::VarInt::from(SHUTDOWN_CODE), b"");
        let _ =
            tokio::time::timeout(drain + Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

impl Drop for QuicServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Shared {
    fn sessions(&self) -> MutexGuard<'_, HashMap<ConnectionId, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<[u8; TOKEN_LEN], Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(serve(incoming, Arc::clone(&shared)));
    }
}

/// One client: the QUIC handshake, the hello, then the session until it closes.
async fn serve(incoming: quinn::Incoming, shared: Arc<Shared>) {
    let handshake = async {
        let conn = incoming.await.ok()?;
        let (send, mut recv) = conn.accept_bi().await.ok()?;
        let mut hello = [0; HELLO_LEN];
        recv.read_exact(&mut hello).await.ok()?;
        Some((conn, send, Hello::decode(&hello)))
    };
    let Ok(Some((conn, mut control, hello))) =
        tokio::time::timeout(shared.quic.handshake_timeout, handshake).await
    else {
        return;
    };
    let Ok(hello) = hello else {
        conn.close(
            quinn::VarInt::from(super::session::VIOLATION_CODE),
            b"bad hello",
        );
        return;
    };
    let refusal = if hello.protocol_id != shared.config.protocol_id {
        Some(RejectReason::ProtocolMismatch)
    } else if hello.layout != shared.config.channels.fingerprint() {
        Some(RejectReason::ChannelMismatch)
    } else if shared.sessions().len() + shared.pending().len() >= shared.config.max_connections {
        Some(RejectReason::ServerFull)
    } else {
        None
    };
    if let Some(reason) = refusal {
        let _ = control.write_all(&[reason.code()]).await;
        let _ = control.finish();
        let _ = tokio::time::timeout(REJECT_LINGER, conn.closed()).await;
        return;
    }
    let id = ConnectionId(QUIC_ID_BIT | shared.next_id.fetch_add(1, Ordering::Relaxed));
    let session = Session::new(
        id,
        conn.clone(),
        hello.mode,
        shared.config.channels.server_to_client.clone(),
        shared.config.channels.client_to_server.clone(),
        SessionLimits {
            datagrams: true,
            reassembly_bytes: shared.config.max_reassembly_bytes,
        },
        Arc::clone(&shared.events),
    );
    match hello.mode {
        Mode::Full => {
            if control.write_all(&[ACCEPTED]).await.is_err() {
                return;
            }
            let _ = control.finish();
            shared.sessions().insert(id, Arc::clone(&session));
            shared.events.push(Event::Connected {
                connection: id,
                remote: conn.remote_address(),
                transport: session.transport(),
            });
        }
        Mode::Hybrid => {
            let mut token = [0u8; TOKEN_LEN];
            if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut token).is_err()
            {
                conn.close(
                    quinn::VarInt::from(super::session::VIOLATION_CODE),
                    b"no randomness",
                );
                return;
            }
            let mut reply = [0u8; 1 + TOKEN_LEN];
            reply[0] = ACCEPTED;
            reply[1..].copy_from_slice(&token);
            if control.write_all(&reply).await.is_err() {
                return;
            }
            // No Connected yet: the native half's Connected stands for the pair.
            shared.pending().insert(
                token,
                Pending {
                    session: Arc::clone(&session),
                    control,
                },
            );
        }
    }
    Arc::clone(&session).run().await;
    shared.sessions().retain(|_, s| !Arc::ptr_eq(s, &session));
    shared
        .pending()
        .retain(|_, p| !Arc::ptr_eq(&p.session, &session));
}
