//! The simulated link under a QUIC endpoint: a quinn [`AsyncUdpSocket`] that passes every
//! datagram through a [`LinkConditioner`] each way, as the native driver does
//! ([`QuicConfig::link`](super::QuicConfig::link)).
//!
//! Sends are queued in the outgoing conditioner and written by a pump task when due (no GSO
//! through the wrapper: one datagram per transmit). Received datagrams (GRO batches split by
//! their stride) go into the incoming conditioner and are handed to quinn when due, with a timer
//! waking quinn's receive task for the next one.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use quinn::udp::{EcnCodepoint, RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::sim::{LinkConditioner, LinkConfig, LinkConfigError};

/// Received batches taken from the real socket per `poll_recv`, at most (then what is due is
/// handed over, and the rest waits for the next poll).
const RECV_ROUNDS: usize = 16;

/// A UDP socket seen through a simulated link.
pub(crate) struct ConditionedSocket {
    shared: Arc<Shared>,
    pump: JoinHandle<()>,
}

/// The handle that changes a conditioned socket's link live.
#[derive(Clone)]
pub(crate) struct LinkHandle(Arc<Shared>);

struct Shared {
    inner: Arc<dyn AsyncUdpSocket>,
    state: Mutex<State>,
    /// Wakes the pump when a datagram was queued for sending.
    queued: Notify,
}

struct State {
    outgoing: LinkConditioner<Outgoing>,
    incoming: LinkConditioner<(RecvMeta, Bytes)>,
    /// Wakes quinn's receive task when the next incoming datagram is due.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// A datagram waiting in the outgoing direction.
#[derive(Clone)]
struct Outgoing {
    destination: SocketAddr,
    ecn: Option<EcnCodepoint>,
    src_ip: Option<IpAddr>,
    contents: Bytes,
}

impl ConditionedSocket {
    /// Wraps `inner`; must be called within a tokio runtime (it spawns the pump).
    pub(crate) fn new(
        inner: Arc<dyn AsyncUdpSocket>,
        config: &LinkConfig,
        seed: u64,
    ) -> Result<(Arc<Self>, LinkHandle), LinkConfigError> {
        let shared = Arc::new(Shared {
            inner,
            state: Mutex::new(State {
                outgoing: LinkConditioner::new(config.clone(), seed)?,
                incoming: LinkConditioner::new(config.clone(), seed ^ 0x9e37_79b9_7f4a_7c15)?,
                timer: None,
            }),
            queued: Notify::new(),
        });
        let pump = tokio::spawn(pump(Arc::clone(&shared)));
        let handle = LinkHandle(Arc::clone(&shared));
        Ok((Arc::new(Self { shared, pump }), handle))
    }
}

impl LinkHandle {
    /// Changes the conditions both ways; `None` makes the link perfect (datagrams still pass
    /// through the wrapper).
    pub(crate) fn set(&self, config: Option<&LinkConfig>) -> Result<(), LinkConfigError> {
        let config = config.cloned().unwrap_or_default();
        let mut state = self.0.lock();
        state.outgoing.set_config(config.clone())?;
        state.incoming.set_config(config)
    }
}

impl Drop for ConditionedSocket {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

impl fmt::Debug for ConditionedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionedSocket")
            .field("inner", &self.shared.inner)
            .finish_non_exhaustive()
    }
}

impl AsyncUdpSocket for ConditionedSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        // Sends never block: the conditioner takes them (or drops them, as a full link would).
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let now = Instant::now();
        let segment = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        let mut state = self.shared.lock();
        for contents in transmit.contents.chunks(segment) {
            let datagram = Outgoing {
                destination: transmit.destination,
                ecn: transmit.ecn,
                src_ip: transmit.src_ip,
                contents: Bytes::copy_from_slice(contents),
            };
            state.outgoing.send(now, contents.len(), datagram);
        }
        drop(state);
        self.shared.queued.notify_one();
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let now = Instant::now();
        // Everything the real socket holds goes into the incoming conditioner first.
        let mut registered = false;
        for _ in 0..RECV_ROUNDS {
            let received = match self.shared.inner.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    registered = true;
                    break;
                }
            };
            let mut state = self.shared.lock();
            for (buf, meta) in bufs.iter().zip(meta.iter()).take(received) {
                let len = meta.len.min(buf.len());
                let stride = meta.stride.max(1);
                for datagram in buf[..len].chunks(stride) {
                    let single = RecvMeta {
                        len: datagram.len(),
                        stride: datagram.len(),
                        ..*meta
                    };
                    let datagram = Bytes::copy_from_slice(datagram);
                    state.incoming.send(now, datagram.len(), (single, datagram));
                }
            }
        }
        if !registered {
            // The real socket still holds datagrams: poll again soon, whatever is due now.
            cx.waker().wake_by_ref();
        }
        let mut state = self.shared.lock();
        let delivered = deliver_due(&mut state, now, bufs, meta);
        if delivered > 0 {
            return Poll::Ready(Ok(delivered));
        }
        let Some(at) = state.incoming.next_delivery() else {
            return Poll::Pending;
        };
        let timer = state
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at.into())));
        timer.as_mut().reset(at.into());
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // Due already (the clock moved on since `now`).
        let delivered = deliver_due(&mut state, Instant::now(), bufs, meta);
        if delivered == 0 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Ok(delivered))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.inner.local_addr()
    }

    fn max_receive_segments(&self) -> usize {
        // quinn sizes its receive buffers by this; GRO batches are split before delivery.
        self.shared.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.shared.inner.may_fragment()
    }
}

/// Copies the incoming datagrams due at `now` into quinn's buffers; returns how many.
fn deliver_due(
    state: &mut State,
    now: Instant,
    bufs: &mut [IoSliceMut<'_>],
    meta: &mut [RecvMeta],
) -> usize {
    let mut delivered = 0;
    while delivered < bufs.len().min(meta.len()) {
        let Some((datagram_meta, datagram)) = state.incoming.poll(now) else {
            break;
        };
        let buf = &mut bufs[delivered];
        if datagram.len() > buf.len() {
            // Cannot happen with quinn's buffers (sized for a GRO batch); dropped as oversized.
            continue;
        }
        buf[..datagram.len()].copy_from_slice(&datagram);
        meta[delivered] = datagram_meta;
        delivered += 1;
    }
    delivered
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug elsewhere; the state itself stays usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes outgoing datagrams to the real socket when the link delivers them.
async fn pump(shared: Arc<Shared>) {
    loop {
        let queued = shared.queued.notified();
        let next = {
            let now = Instant::now();
            let mut state = shared.lock();
            while let Some(datagram) = state.outgoing.poll(now) {
                let transmit = Transmit {
                    destination: datagram.destination,
                    ecn: datagram.ecn,
                    contents: &datagram.contents,
                    segment_size: None,
                    src_ip: datagram.src_ip,
                };
                // A full socket buffer drops the datagram, as a congested link would.
                let _ = shared.inner.try_send(&transmit);
            }
            state.outgoing.next_delivery()
        };
        match next {
            Some(at) => tokio::select! {
                () = queued => {}
                () = tokio::time::sleep_until(at.into()) => {}
            },
            None => queued.await,
        }
    }
}

/// A poller that always reports the socket writable (see `create_io_poller`).
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A quinn endpoint on `socket`, seen through the simulated `link` if there is one (then with the
/// handle that changes it live).
pub(super) fn endpoint(
    socket: std::net::UdpSocket,
    server: Option<quinn::ServerConfig>,
    link: Option<&LinkConfig>,
    seed: u64,
) -> io::Result<(quinn::Endpoint, Option<LinkHandle>)> {
    let runtime = Arc::new(quinn::TokioRuntime);
    let config = quinn::EndpointConfig::default();
    let Some(link) = link else {
        return Ok((quinn::Endpoint::new(config, server, socket, runtime)?, None));
    };
    let inner = quinn::Runtime::wrap_udp_socket(&*runtime, socket)?;
    // `DriverConfig::validate` checked the link already.
    let (socket, handle) = ConditionedSocket::new(inner, link, seed ^ QUIC_SEED)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let endpoint = quinn::Endpoint::new_with_abstract_socket(config, server, socket, runtime)?;
    Ok((endpoint, Some(handle)))
}

/// Mixed into the link seed so that the QUIC path's randomness differs from the native path's.
const QUIC_SEED: u64 = 0x5155_4943_5155_4943;
