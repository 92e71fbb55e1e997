//! The three baselines Tickwire is measured against, each a module with the four entry points of
//! the peer contract (see `report.rs`):
//!
//! - [`raw_udp`]: `tokio::net::UdpSocket`, one datagram per `send_to` / `recv_from` call. The
//!   unbatched limit. No reliability, so no T3; adds nothing to the payload, so T4 is zero.
//! - [`raw_batched`]: the same tokio socket driven through quinn-udp's `UdpSocketState`: GSO on
//!   send (equal-size segments, up to `max_gso_segments()` of them per `sendmsg`), `recvmmsg`
//!   with GRO on receive (`gro_segments()`; a coalesced buffer holds datagrams `stride` bytes
//!   apart). The batched limit of the kernel. No T3; T4 is zero.
//! - [`quinn_peer`]: plain quinn 0.11 over loopback with a self-signed certificate that the
//!   client trusts: DATAGRAM frames for T1, T2 and T4's unreliable phases, one unidirectional
//!   stream for T3 and T4's reliable phase. See [`quinn_peer`] for the transport settings.
//!
//! Every socket of every baseline (quinn's too) asks for the same `SO_RCVBUF` / `SO_SNDBUF`
//! (`socket_buffer_bytes` in the configs, `--socket-buffer` on the command line, 4 MiB by default
//! like Tickwire's driver), so that none of them is helped by a setting the others lack.

use std::net::{Ipv4Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::report::{BenchError, Context};

/// `tokio::net::UdpSocket`, one datagram per call.
pub(crate) mod raw_udp {
    use std::convert::Infallible;
    use std::time::{Duration, Instant};

    use tokio::net::UdpSocket;

    use super::{bind_local, message, MAX_DATAGRAM};
    use crate::report::{
        run_pair, BenchError, Context, T1Config, T1Result, T2Config, T2Result, T3Config, T3Result,
        T4Config, T4Result,
    };

    /// Echo ping-pong: one `send_to` and one `recv_from` per message on each side.
    pub(crate) fn t1(cfg: &T1Config) -> Result<Option<T1Result>, BenchError> {
        let (msg_len, warmup, round_trips) = (cfg.msg_len, cfg.warmup, cfg.round_trips);
        let buffer = cfg.socket_buffer_bytes;
        let run = run_pair(
            cfg.timeout,
            move |side| async move {
                let sock = bind_local(buffer)?;
                side.listening(sock.local_addr().ctx("local_addr")?);
                side.ready().await?;
                side.finish();
                side.until_stopped(echo(&sock)).await.unwrap_or(Ok(()))
            },
            move |side| async move {
                let sock = bind_local(buffer)?;
                let server = side.server_addr().await?;
                side.ready().await?;
                let pings = ping(&sock, server, msg_len, warmup, round_trips);
                side.until_stopped(pings)
                    .await
                    .ok_or_else(|| side.interrupted())?
            },
        )?;
        T1Result::from_rtts(run.client).map(Some)
    }

    /// Flood: the client calls `send_to` in a loop, the server `recv_from` and counts.
    pub(crate) fn t2(cfg: &T2Config) -> Result<Option<T2Result>, BenchError> {
        let (msg_len, duration, drain_idle) = (cfg.msg_len, cfg.duration, cfg.drain_idle);
        let buffer = cfg.socket_buffer_bytes;
        let run = run_pair(
            cfg.timeout,
            move |side| async move {
                let sock = bind_local(buffer)?;
                side.listening(sock.local_addr().ctx("local_addr")?);
                let opened = side.ready().await?;
                let mut buf = vec![0; MAX_DATAGRAM];
                let mut delivered = 0;
                tokio::select! {
                    result = count(&sock, &mut buf, msg_len, &mut delivered) => match result? {},
                    () = side.peer_finished() => {}
                }
                let mut last = Instant::now();
                while Instant::now() < side.deadline() {
                    match tokio::time::timeout(drain_idle, sock.recv_from(&mut buf)).await {
                        Ok(received) => {
                            if received.ctx("recv_from")?.0 == msg_len {
                                delivered += 1;
                                last = Instant::now();
                            }
                        }
                        Err(_idle) => break,
                    }
                }
                Ok((delivered, last.saturating_duration_since(opened)))
            },
            move |side| async move {
                let sock = bind_local(buffer)?;
                let server = side.server_addr().await?;
                let opened = side.ready().await?;
                let flood = flood(&sock, server, msg_len, opened + duration);
                side.until_stopped(flood)
                    .await
                    .ok_or_else(|| side.interrupted())?
            },
        )?;
        let (delivered, elapsed) = run.server;
        T2Result::new(run.client, delivered, elapsed, run.window).map(Some)
    }

    /// Raw UDP has no reliable channel.
    pub(crate) fn t3(_cfg: &T3Config) -> Result<Option<T3Result>, BenchError> {
        Ok(None)
    }

    /// Raw UDP sends the message as the datagram: zero overhead by definition.
    pub(crate) fn t4(_cfg: &T4Config) -> Result<Option<T4Result>, BenchError> {
        Ok(Some(T4Result::zero()))
    }

    async fn echo(sock: &UdpSocket) -> Result<(), BenchError> {
        let mut buf = vec![0; MAX_DATAGRAM];
        loop {
            let (len, from) = sock.recv_from(&mut buf).await.ctx("recv_from")?;
            sock.send_to(&buf[..len], from).await.ctx("send_to")?;
        }
    }

    async fn ping(
        sock: &UdpSocket,
        server: std::net::SocketAddr,
        msg_len: usize,
        warmup: usize,
        round_trips: usize,
    ) -> Result<Vec<Duration>, BenchError> {
        let msg = message(msg_len, 0);
        let mut buf = vec![0; MAX_DATAGRAM];
        let mut rtts = Vec::with_capacity(round_trips);
        for i in 0..warmup + round_trips {
            let start = Instant::now();
            sock.send_to(&msg, server).await.ctx("send_to")?;
            let (len, _) = sock.recv_from(&mut buf).await.ctx("recv_from")?;
            let rtt = start.elapsed();
            if len != msg_len {
                return Err(BenchError::Incomplete {
                    what: "echo bytes",
                    got: len as u64,
                    want: msg_len as u64,
                });
            }
            if i >= warmup {
                rtts.push(rtt);
            }
        }
        Ok(rtts)
    }

    async fn flood(
        sock: &UdpSocket,
        server: std::net::SocketAddr,
        msg_len: usize,
        until: Instant,
    ) -> Result<u64, BenchError> {
        let msg = message(msg_len, 0);
        let mut sent = 0;
        while Instant::now() < until {
            for _ in 0..CLOCK_EVERY {
                sock.send_to(&msg, server).await.ctx("send_to")?;
                sent += 1;
            }
        }
        Ok(sent)
    }

    async fn count(
        sock: &UdpSocket,
        buf: &mut [u8],
        msg_len: usize,
        delivered: &mut u64,
    ) -> Result<Infallible, BenchError> {
        loop {
            let (len, _) = sock.recv_from(buf).await.ctx("recv_from")?;
            if len == msg_len {
                *delivered += 1;
            }
        }
    }

    /// Sends between two looks at the clock.
    const CLOCK_EVERY: usize = 64;
}

/// quinn-udp: GSO, GRO and `recvmmsg` on a tokio socket.
pub(crate) mod raw_batched {
    use std::convert::Infallible;
    use std::io::{self, IoSliceMut};
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use quinn_udp::{RecvMeta, Transmit, UdpSocketState, BATCH_SIZE};
    use tokio::io::Interest;
    use tokio::net::UdpSocket;

    use super::{bind_local, message, MAX_DATAGRAM};
    use crate::report::{
        run_pair, BenchError, Context, T1Config, T1Result, T2Config, T2Result, T3Config, T3Result,
        T4Config, T4Result,
    };

    /// Echo ping-pong through `sendmsg` / `recvmmsg` (one datagram in flight, so no batching
    /// happens: this shows what the batched path costs when there is nothing to batch).
    pub(crate) fn t1(cfg: &T1Config) -> Result<Option<T1Result>, BenchError> {
        let (msg_len, warmup, round_trips) = (cfg.msg_len, cfg.warmup, cfg.round_trips);
        let buffer = cfg.socket_buffer_bytes;
        let run = run_pair(
            cfg.timeout,
            move |side| async move {
                let socket = BatchedSocket::bind(buffer)?;
                side.listening(socket.local_addr()?);
                side.ready().await?;
                side.finish();
                side.until_stopped(echo(&socket)).await.unwrap_or(Ok(()))
            },
            move |side| async move {
                let socket = BatchedSocket::bind(buffer)?;
                let server = side.server_addr().await?;
                side.ready().await?;
                let pings = ping(&socket, server, msg_len, warmup, round_trips);
                side.until_stopped(pings)
                    .await
                    .ok_or_else(|| side.interrupted())?
            },
        )?;
        T1Result::from_rtts(run.client).map(Some)
    }

    /// Flood: the client sends `max_gso_segments()` (at most 64) equal messages per `sendmsg`
    /// with `UDP_SEGMENT`; the server receives up to `BATCH_SIZE` (GRO-coalesced) buffers per
    /// `recvmmsg` and counts the datagrams in each (`len / stride`).
    pub(crate) fn t2(cfg: &T2Config) -> Result<Option<T2Result>, BenchError> {
        let (msg_len, duration, drain_idle) = (cfg.msg_len, cfg.duration, cfg.drain_idle);
        let buffer = cfg.socket_buffer_bytes;
        let run = run_pair(
            cfg.timeout,
            move |side| async move {
                let socket = BatchedSocket::bind(buffer)?;
                side.listening(socket.local_addr()?);
                let opened = side.ready().await?;
                let mut bufs = vec![vec![0; MAX_DATAGRAM]; BATCH_SIZE];
                let mut slices: Vec<IoSliceMut<'_>> =
                    bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
                let mut metas = vec![RecvMeta::default(); BATCH_SIZE];
                let mut delivered = 0;
                tokio::select! {
                    result = count(&socket, &mut slices, &mut metas, msg_len, &mut delivered) => {
                        match result? {}
                    }
                    () = side.peer_finished() => {}
                }
                let mut last = Instant::now();
                while Instant::now() < side.deadline() {
                    let recv = socket.recv(&mut slices, &mut metas);
                    match tokio::time::timeout(drain_idle, recv).await {
                        Ok(received) => {
                            let got = datagrams(&metas[..received?], msg_len);
                            if got > 0 {
                                delivered += got;
                                last = Instant::now();
                            }
                        }
                        Err(_idle) => break,
                    }
                }
                Ok((delivered, last.saturating_duration_since(opened)))
            },
            move |side| async move {
                let socket = BatchedSocket::bind(buffer)?;
                let server = side.server_addr().await?;
                let opened = side.ready().await?;
                let flood = flood(&socket, server, msg_len, opened + duration);
                side.until_stopped(flood)
                    .await
                    .ok_or_else(|| side.interrupted())?
            },
        )?;
        let (delivered, elapsed) = run.server;
        T2Result::new(run.client, delivered, elapsed, run.window).map(Some)
    }

    /// Raw UDP has no reliable channel.
    pub(crate) fn t3(_cfg: &T3Config) -> Result<Option<T3Result>, BenchError> {
        Ok(None)
    }

    /// GSO segments are datagrams of their own on the wire: zero overhead by definition.
    pub(crate) fn t4(_cfg: &T4Config) -> Result<Option<T4Result>, BenchError> {
        Ok(Some(T4Result::zero()))
    }

    /// A tokio UDP socket with quinn-udp's state (GRO enabled, GSO probed) on it.
    struct BatchedSocket {
        io: UdpSocket,
        state: UdpSocketState,
    }

    impl BatchedSocket {
        fn bind(buffer_bytes: usize) -> Result<BatchedSocket, BenchError> {
            let io = bind_local(buffer_bytes)?;
            let state = UdpSocketState::new((&io).into()).ctx("quinn-udp socket setup")?;
            Ok(BatchedSocket { io, state })
        }

        fn local_addr(&self) -> Result<SocketAddr, BenchError> {
            self.io.local_addr().ctx("local_addr")
        }

        /// One `sendmsg`, waiting while the socket buffer is full.
        async fn send(&self, transmit: &Transmit<'_>) -> Result<(), BenchError> {
            loop {
                let sent = self.io.try_io(Interest::WRITABLE, || {
                    self.state.try_send((&self.io).into(), transmit)
                });
                match sent {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.io.writable().await.ctx("writable")?;
                    }
                    Err(e) => return Err(e).ctx("sendmsg"),
                }
            }
        }

        /// One `recvmmsg` into `slices`, waiting until something arrives; returns how many
        /// entries of `metas` were filled.
        async fn recv(
            &self,
            slices: &mut [IoSliceMut<'_>],
            metas: &mut [RecvMeta],
        ) -> Result<usize, BenchError> {
            loop {
                let received = self.io.try_io(Interest::READABLE, || {
                    self.state.recv((&self.io).into(), slices, metas)
                });
                match received {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.io.readable().await.ctx("readable")?;
                    }
                    Err(e) => return Err(e).ctx("recvmmsg"),
                }
            }
        }
    }

    async fn echo(socket: &BatchedSocket) -> Result<(), BenchError> {
        let mut bufs = vec![vec![0; MAX_DATAGRAM]; BATCH_SIZE];
        let mut slices: Vec<IoSliceMut<'_>> = bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let mut metas = vec![RecvMeta::default(); BATCH_SIZE];
        loop {
            let n = socket.recv(&mut slices, &mut metas).await?;
            for (meta, slice) in metas[..n].iter().zip(&slices) {
                let transmit = Transmit {
                    destination: meta.addr,
                    ecn: None,
                    contents: &slice[..meta.len],
                    segment_size: (meta.len > meta.stride).then_some(meta.stride),
                    src_ip: None,
                };
                socket.send(&transmit).await?;
            }
        }
    }

    async fn ping(
        socket: &BatchedSocket,
        server: SocketAddr,
        msg_len: usize,
        warmup: usize,
        round_trips: usize,
    ) -> Result<Vec<Duration>, BenchError> {
        let msg = message(msg_len, 0);
        let transmit = Transmit {
            destination: server,
            ecn: None,
            contents: &msg,
            segment_size: None,
            src_ip: None,
        };
        let mut buf = vec![0; MAX_DATAGRAM];
        let mut slices = [IoSliceMut::new(&mut buf)];
        let mut metas = [RecvMeta::default()];
        let mut rtts = Vec::with_capacity(round_trips);
        for i in 0..warmup + round_trips {
            let start = Instant::now();
            socket.send(&transmit).await?;
            socket.recv(&mut slices, &mut metas).await?;
            let rtt = start.elapsed();
            if metas[0].len != msg_len {
                return Err(BenchError::Incomplete {
                    what: "echo bytes",
                    got: metas[0].len as u64,
                    want: msg_len as u64,
                });
            }
            if i >= warmup {
                rtts.push(rtt);
            }
        }
        Ok(rtts)
    }

    async fn flood(
        socket: &BatchedSocket,
        server: SocketAddr,
        msg_len: usize,
        until: Instant,
    ) -> Result<u64, BenchError> {
        let segments = socket
            .state
            .max_gso_segments()
            .clamp(1, MAX_SEGMENTS)
            .min(MAX_DATAGRAM / msg_len);
        let batch = message(msg_len, 0).repeat(segments);
        let transmit = Transmit {
            destination: server,
            ecn: None,
            contents: &batch,
            segment_size: (segments > 1).then_some(msg_len),
            src_ip: None,
        };
        let mut sent = 0;
        while Instant::now() < until {
            for _ in 0..CLOCK_EVERY {
                socket.send(&transmit).await?;
                sent += segments as u64;
            }
        }
        Ok(sent)
    }

    async fn count(
        socket: &BatchedSocket,
        slices: &mut [IoSliceMut<'_>],
        metas: &mut [RecvMeta],
        msg_len: usize,
        delivered: &mut u64,
    ) -> Result<Infallible, BenchError> {
        loop {
            let n = socket.recv(slices, metas).await?;
            *delivered += datagrams(&metas[..n], msg_len);
        }
    }

    /// Datagrams of `msg_len` bytes in received buffers (GRO puts several in one, `stride` apart).
    fn datagrams(metas: &[RecvMeta], msg_len: usize) -> u64 {
        metas
            .iter()
            .filter(|m| m.stride == msg_len)
            .map(|m| m.len.div_ceil(m.stride) as u64)
            .sum()
    }

    /// The most segments per GSO send: the kernel's `UDP_MAX_SEGMENTS` on older kernels and
    /// what quinn-udp reports on Linux.
    const MAX_SEGMENTS: usize = 64;

    /// GSO sends between two looks at the clock.
    const CLOCK_EVERY: usize = 8;
}

/// Plain quinn 0.11: DATAGRAM frames and one stream.
///
/// Transport settings, the same on both sides, changed from quinn's defaults (which assume a
/// 100 ms, 100 Mbit/s path) so that no window or buffer caps loopback throughput:
/// - `stream_receive_window` 16 MiB (default 1.25 MB), `send_window` 64 MiB (default 10 MB),
///   `receive_window` left at its default, unlimited;
/// - `datagram_receive_buffer_size` 16 MiB (default 1.25 MB), `datagram_send_buffer_size`
///   4 MiB (default 1 MiB).
///
/// Everything else is quinn's default: Cubic congestion control, MTU discovery up to 1452 bytes,
/// GSO/GRO through quinn-udp, TLS 1.3 with ring. T2 sends with `send_datagram_wait`, which waits
/// for buffer space instead of dropping the oldest queued datagram, so loss is what the network
/// path (or the receiver's buffer) drops, as for the other peers.
pub(crate) mod quinn_peer {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use quinn::{
        ClientConfig, Connection, Endpoint, EndpointConfig, ServerConfig, TokioRuntime,
        TransportConfig, VarInt,
    };
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::sync::{mpsc, oneshot};

    use super::{local_socket, message};
    use crate::report::{
        overhead_per_message, run_pair, BenchError, Context, Side, T1Config, T1Result, T2Config,
        T2Result, T3Config, T3Result, T4Config, T4Result,
    };

    /// Ping-pong of DATAGRAM frames.
    pub(crate) fn t1(cfg: &T1Config) -> Result<Option<T1Result>, BenchError> {
        let (server_config, client_config) = configs()?;
        let (msg_len, warmup, round_trips) = (cfg.msg_len, cfg.warmup, cfg.round_trips);
        let buffer = cfg.socket_buffer_bytes;
        let run = run_pair(
            cfg.timeout,
            move |side| async move {
                let (_endpoint, conn) = accept(&side, server_config, buffer).await?;
                side.ready().await?;
                side.finish();
                side.until_stopped(echo(&conn)).await.unwrap_or(Ok(()))
            },
            move |side| async move {
                let (_endpoint, conn) = connect(&side, client_config, buffer).await?;
                side.ready().await?;
                let pings = ping(&conn, msg_len, warmup, round_trips);
                side.until_stopped(pings)
                    .await
                    .ok_or_else(|| side.interrupted())?
            },
        )?;
        T1Result::from_rtts(run.client).map(Some)
    }

    /// Flood of DATAGRAM frames with `send_datagram_wait`; quinn packs several per packet.
    pub(crate) fn t2(cfg: &T2Config) -> Result<Option<T2Result>, BenchError> {
        let (server_config, client_config) = configs()?;
        let (msg_len, duration, drain_idle) = (cfg.msg_len, cfg.duration, cfg.drain_idle);
        let buffer = cfg.socket_buffer_bytes;
        let run = run_pair(
            cfg.timeout,
            move |side| async move {
                let (_endpoint, conn) = accept(&side, server_config, buffer).await?;
                let opened = side.ready().await?;
                let mut delivered = 0;
                tokio::select! {
                    result = count(&conn, msg_len, &mut delivered) => match result? {},
                    () = side.peer_finished() => {}
                }
                let mut last = Instant::now();
                while Instant::now() < side.deadline() {
                    match tokio::time::timeout(drain_idle, conn.read_datagram()).await {
                        Ok(received) => {
                            if received.ctx("read_datagram")?.len() == msg_len {
                                delivered += 1;
                                last = Instant::now();
                            }
                        }
                        Err(_idle) => break,
                    }
                }
                Ok((delivered, last.saturating_duration_since(opened)))
            },
            move |side| async move {
                let (_endpoint, conn) = connect(&side, client_config, buffer).await?;
                let opened = side.ready().await?;
                let flood = flood(&conn, msg_len, opened + duration);
                let sent = side
                    .until_stopped(flood)
                    .await
                    .ok_or_else(|| side.interrupted())??;
                side.finish();
                // Keep the connection driven until the server has counted what is still queued.
                side.stopped().await;
                Ok(sent)
            },
        )?;
        let (delivered, elapsed) = run.server;
        T2Result::new(run.client, delivered, elapsed, run.window).map(Some)
    }

    /// One unidirectional stream, written in `msg_len` writes, read with `read_chunk`.
    pub(crate) fn t3(cfg: &T3Config) -> Result<Option<T3Result>, BenchError> {
        let (server_config, client_config) = configs()?;
        let (msg_len, total) = (cfg.msg_len, cfg.total_bytes);
        let buffer = cfg.socket_buffer_bytes;
        let run = run_pair(
            cfg.timeout,
            move |side| async move {
                let (_endpoint, conn) = accept(&side, server_config, buffer).await?;
                side.ready().await?;
                let read = read_stream(&conn);
                side.until_stopped(read)
                    .await
                    .ok_or_else(|| side.interrupted())?
            },
            move |side| async move {
                let (_endpoint, conn) = connect(&side, client_config, buffer).await?;
                side.ready().await?;
                let start = Instant::now();
                let write = write_stream(&conn, msg_len, total);
                side.until_stopped(write)
                    .await
                    .ok_or_else(|| side.interrupted())??;
                side.finish();
                // Keep the connection driven (retransmissions, flow control) until the server has
                // read the last byte.
                side.stopped().await;
                Ok(start)
            },
        )?;
        let (received, end) = run.server;
        T3Result::new(cfg, received, end.saturating_duration_since(run.client)).map(Some)
    }

    /// Four phases on one warmed-up connection (see `T4Config`), counted with quinn's own
    /// per-connection statistics (`udp_tx.bytes`: UDP payload bytes handed to the socket). The
    /// client reads the server's statistics through a clone of the server's `Connection`.
    pub(crate) fn t4(cfg: &T4Config) -> Result<Option<T4Result>, BenchError> {
        let (server_config, client_config) = configs()?;
        let (msg_len, messages) = (cfg.msg_len, cfg.messages);
        let buffer = cfg.socket_buffer_bytes;
        let (conn_tx, conn_rx) = oneshot::channel();
        let (note_tx, note_rx) = mpsc::unbounded_channel();
        let run = run_pair(
            cfg.timeout,
            move |side| async move {
                let (_endpoint, conn) = accept(&side, server_config, buffer).await?;
                // The client only fails to take it if it already failed itself.
                let _ = conn_tx.send(conn.clone());
                side.ready().await?;
                side.finish();
                let serve = async {
                    tokio::try_join!(
                        t4_datagrams(&conn, &note_tx),
                        t4_stream(&conn, msg_len, &note_tx)
                    )
                };
                match side.until_stopped(serve).await {
                    None => Ok(()),
                    Some(Err(e)) => Err(e),
                    Some(Ok((never, _))) => match never {},
                }
            },
            move |side| async move {
                let (_endpoint, conn) = connect(&side, client_config, buffer).await?;
                let server_conn = side
                    .until_stopped(conn_rx)
                    .await
                    .ok_or_else(|| side.interrupted())?
                    .ctx("server connection handle")?;
                side.ready().await?;
                let phases = T4Phases {
                    conn: &conn,
                    server_conn: &server_conn,
                    note_rx,
                    msg_len,
                    messages,
                };
                side.until_stopped(phases.run())
                    .await
                    .ok_or_else(|| side.interrupted())?
            },
        )?;
        Ok(Some(run.client))
    }

    /// A self-signed certificate for "localhost", a server config presenting it, a client config
    /// trusting it (through a `RootCertStore`, with normal verification), both with [`transport`].
    fn configs() -> Result<(ServerConfig, ClientConfig), BenchError> {
        let certified = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])
            .ctx("generate self-signed certificate")?;
        let cert = certified.cert.der().clone();
        let key =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
        let transport = Arc::new(transport());

        let mut server =
            ServerConfig::with_single_cert(vec![cert.clone()], key).ctx("quinn server config")?;
        server.transport_config(Arc::clone(&transport));

        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).ctx("trust self-signed certificate")?;
        let mut client =
            ClientConfig::with_root_certificates(Arc::new(roots)).ctx("quinn client config")?;
        client.transport_config(transport);
        Ok((server, client))
    }

    /// Windows and datagram buffers raised for loopback; see the module docs.
    fn transport() -> TransportConfig {
        let mut transport = TransportConfig::default();
        transport
            .stream_receive_window(VarInt::from_u32(16 << 20))
            .send_window(64 << 20)
            .datagram_receive_buffer_size(Some(16 << 20))
            .datagram_send_buffer_size(4 << 20);
        transport
    }

    async fn accept(
        side: &Side,
        config: ServerConfig,
        buffer_bytes: usize,
    ) -> Result<(Endpoint, Connection), BenchError> {
        let endpoint = endpoint(Some(config), buffer_bytes)?;
        side.listening(endpoint.local_addr().ctx("local_addr")?);
        let incoming = side
            .until_stopped(endpoint.accept())
            .await
            .ok_or_else(|| side.interrupted())?
            .ok_or(BenchError::Incomplete {
                what: "incoming connections",
                got: 0,
                want: 1,
            })?;
        let conn = side
            .until_stopped(incoming)
            .await
            .ok_or_else(|| side.interrupted())?
            .ctx("quinn accept")?;
        Ok((endpoint, conn))
    }

    async fn connect(
        side: &Side,
        config: ClientConfig,
        buffer_bytes: usize,
    ) -> Result<(Endpoint, Connection), BenchError> {
        let endpoint = endpoint(None, buffer_bytes)?;
        let server = side.server_addr().await?;
        let connecting = endpoint
            .connect_with(config, server, SERVER_NAME)
            .ctx("quinn connect")?;
        let conn = side
            .until_stopped(connecting)
            .await
            .ok_or_else(|| side.interrupted())?
            .ctx("quinn handshake")?;
        Ok((endpoint, conn))
    }

    /// An endpoint on a [`local_socket`], the same kind of socket the other baselines use.
    fn endpoint(server: Option<ServerConfig>, buffer_bytes: usize) -> Result<Endpoint, BenchError> {
        let socket = local_socket(buffer_bytes)?;
        Endpoint::new(
            EndpointConfig::default(),
            server,
            socket,
            Arc::new(TokioRuntime),
        )
        .ctx("quinn endpoint")
    }

    async fn echo(conn: &Connection) -> Result<(), BenchError> {
        loop {
            let datagram = conn.read_datagram().await.ctx("read_datagram")?;
            conn.send_datagram(datagram).ctx("send_datagram")?;
        }
    }

    async fn ping(
        conn: &Connection,
        msg_len: usize,
        warmup: usize,
        round_trips: usize,
    ) -> Result<Vec<Duration>, BenchError> {
        let msg = Bytes::from(message(msg_len, TAG_ECHO));
        let mut rtts = Vec::with_capacity(round_trips);
        for i in 0..warmup + round_trips {
            let start = Instant::now();
            conn.send_datagram(msg.clone()).ctx("send_datagram")?;
            let echoed = conn.read_datagram().await.ctx("read_datagram")?;
            let rtt = start.elapsed();
            if echoed.len() != msg_len {
                return Err(BenchError::Incomplete {
                    what: "echo bytes",
                    got: echoed.len() as u64,
                    want: msg_len as u64,
                });
            }
            if i >= warmup {
                rtts.push(rtt);
            }
        }
        Ok(rtts)
    }

    async fn flood(conn: &Connection, msg_len: usize, until: Instant) -> Result<u64, BenchError> {
        let msg = Bytes::from(message(msg_len, 0));
        let mut sent = 0;
        while Instant::now() < until {
            for _ in 0..CLOCK_EVERY {
                conn.send_datagram_wait(msg.clone())
                    .await
                    .ctx("send_datagram_wait")?;
                sent += 1;
            }
        }
        Ok(sent)
    }

    async fn count(
        conn: &Connection,
        msg_len: usize,
        delivered: &mut u64,
    ) -> Result<Infallible, BenchError> {
        loop {
            if conn.read_datagram().await.ctx("read_datagram")?.len() == msg_len {
                *delivered += 1;
            }
        }
    }

    async fn write_stream(conn: &Connection, msg_len: usize, total: u64) -> Result<(), BenchError> {
        let mut stream = conn.open_uni().await.ctx("open_uni")?;
        let msg = message(msg_len, 0);
        let mut remaining = total;
        while remaining > 0 {
            let len = remaining.min(msg_len as u64) as usize;
            stream.write_all(&msg[..len]).await.ctx("stream write")?;
            remaining -= len as u64;
        }
        stream.finish().ctx("stream finish")?;
        Ok(())
    }

    /// Reads the client's stream to its end; returns the bytes and when the last one arrived.
    async fn read_stream(conn: &Connection) -> Result<(u64, Instant), BenchError> {
        let mut stream = conn.accept_uni().await.ctx("accept_uni")?;
        let mut received = 0;
        while let Some(chunk) = stream
            .read_chunk(usize::MAX, true)
            .await
            .ctx("read_chunk")?
        {
            received += chunk.bytes.len() as u64;
        }
        Ok((received, Instant::now()))
    }

    /// Server side of T4's datagram phases: echo, or tell the client (in-process) it arrived.
    async fn t4_datagrams(
        conn: &Connection,
        note_tx: &mpsc::UnboundedSender<()>,
    ) -> Result<Infallible, BenchError> {
        let mut tens = 0u64;
        loop {
            let datagram = conn.read_datagram().await.ctx("read_datagram")?;
            let notify = match datagram.first() {
                Some(&TAG_ECHO) => {
                    conn.send_datagram(datagram).ctx("send_datagram")?;
                    false
                }
                Some(&TAG_TEN) => {
                    tens += 1;
                    tens % 10 == 0
                }
                _ => true,
            };
            if notify {
                // The receiver lives as long as the client side; if it is gone, so is the run.
                let _ = note_tx.send(());
            }
        }
    }

    /// Server side of T4's reliable phase: read the stream message by message, telling the
    /// client (in-process) as each arrives.
    async fn t4_stream(
        conn: &Connection,
        msg_len: usize,
        note_tx: &mpsc::UnboundedSender<()>,
    ) -> Result<Infallible, BenchError> {
        let mut stream = conn.accept_uni().await.ctx("accept_uni")?;
        let mut buf = vec![0; msg_len];
        loop {
            stream.read_exact(&mut buf).await.ctx("stream read_exact")?;
            let _ = note_tx.send(());
        }
    }

    /// The client side of T4.
    struct T4Phases<'a> {
        conn: &'a Connection,
        server_conn: &'a Connection,
        note_rx: mpsc::UnboundedReceiver<()>,
        msg_len: usize,
        messages: usize,
    }

    impl T4Phases<'_> {
        async fn run(mut self) -> Result<T4Result, BenchError> {
            let (conn, n, msg_len) = (self.conn, self.messages as u64, self.msg_len);
            let echo = Bytes::from(message(msg_len, TAG_ECHO));
            let one = Bytes::from(message(msg_len, TAG_ONE));
            let ten = Bytes::from(message(msg_len, TAG_TEN));

            // Warm-up: handshake leftovers (HANDSHAKE_DONE, NEW_CONNECTION_ID) and MTU probes
            // go out before anything is counted.
            for _ in 0..T4_WARMUP {
                conn.send_datagram(echo.clone()).ctx("send_datagram")?;
                conn.read_datagram().await.ctx("read_datagram")?;
            }
            tokio::time::sleep(T4_SETTLE).await;

            let before = self.sent_bytes();
            for _ in 0..n {
                conn.send_datagram(one.clone()).ctx("send_datagram")?;
                self.arrived().await?;
            }
            let unreliable = self.sent_bytes().0 - before.0;

            let before = self.sent_bytes();
            for _ in 0..n {
                conn.send_datagram(echo.clone()).ctx("send_datagram")?;
                conn.read_datagram().await.ctx("read_datagram")?;
            }
            let after = self.sent_bytes();
            let with_acks = (after.0 - before.0) + (after.1 - before.1);

            let mut stream = conn.open_uni().await.ctx("open_uni")?;
            // The first message opens the stream; it is not counted.
            stream.write_all(&one).await.ctx("stream write")?;
            self.arrived().await?;
            let before = self.sent_bytes();
            for _ in 0..n {
                stream.write_all(&one).await.ctx("stream write")?;
                self.arrived().await?;
            }
            let after = self.sent_bytes();
            let (reliable, reliable_acks) = (after.0 - before.0, after.1 - before.1);

            let before = self.sent_bytes();
            for _ in 0..n {
                // Queued without yielding, so the connection packs all ten into one packet.
                for _ in 0..10 {
                    conn.send_datagram(ten.clone()).ctx("send_datagram")?;
                }
                self.arrived().await?;
            }
            let tens = self.sent_bytes().0 - before.0;

            Ok(T4Result {
                unreliable_overhead_bytes: overhead_per_message(unreliable, n, msg_len),
                unreliable_with_acks_overhead_bytes: overhead_per_message(
                    with_acks,
                    2 * n,
                    msg_len,
                ),
                reliable_overhead_bytes: overhead_per_message(reliable, n, msg_len),
                ten_per_datagram_overhead_bytes: overhead_per_message(tens, 10 * n, msg_len),
                reliable_ack_bytes: reliable_acks as f64 / n as f64,
            })
        }

        /// UDP payload bytes sent so far by (client, server).
        fn sent_bytes(&self) -> (u64, u64) {
            (
                self.conn.stats().udp_tx.bytes,
                self.server_conn.stats().udp_tx.bytes,
            )
        }

        async fn arrived(&mut self) -> Result<(), BenchError> {
            self.note_rx.recv().await.ok_or(BenchError::Aborted)
        }
    }

    /// The name in the certificate and the one the client asks for.
    const SERVER_NAME: &str = "localhost";
    /// First byte of a T4 datagram the server echoes (also T1's).
    const TAG_ECHO: u8 = b'E';
    /// First byte of a T4 one-way datagram.
    const TAG_ONE: u8 = b'1';
    /// First byte of a T4 datagram sent ten at a time.
    const TAG_TEN: u8 = b'T';
    /// Untimed echo round trips before T4 counts anything.
    const T4_WARMUP: usize = 100;
    /// Quiet time after the warm-up, for delayed acks and MTU probes to finish.
    const T4_SETTLE: Duration = Duration::from_millis(50);
    /// Sends between two looks at the clock.
    const CLOCK_EVERY: usize = 64;
}

/// A tokio UDP socket on an ephemeral port of 127.0.0.1 (see [`local_socket`]); must be
/// called inside the runtime.
fn bind_local(buffer_bytes: usize) -> Result<UdpSocket, BenchError> {
    UdpSocket::from_std(local_socket(buffer_bytes)?).ctx("register socket with tokio")
}

/// A non-blocking UDP socket bound to an ephemeral port of 127.0.0.1, asking for `buffer_bytes`
/// of receive and send buffer (0: the OS default; the kernel caps larger requests at
/// `net.core.rmem_max` / `wmem_max`, which is not an error).
fn local_socket(buffer_bytes: usize) -> Result<std::net::UdpSocket, BenchError> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).ctx("socket")?;
    if buffer_bytes > 0 {
        socket.set_recv_buffer_size(buffer_bytes).ctx("SO_RCVBUF")?;
        socket.set_send_buffer_size(buffer_bytes).ctx("SO_SNDBUF")?;
    }
    socket
        .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .ctx("bind 127.0.0.1:0")?;
    socket.set_nonblocking(true).ctx("set_nonblocking")?;
    Ok(socket.into())
}

/// A message of `len` bytes starting with `tag`, the rest a fixed pattern.
fn message(len: usize, tag: u8) -> Vec<u8> {
    let mut msg: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    if let Some(first) = msg.first_mut() {
        *first = tag;
    }
    msg
}

/// Receive buffer size: the largest UDP payload (also the largest GRO-coalesced buffer).
const MAX_DATAGRAM: usize = 65_535;
