//! The `flood` role: workload L1's hostile traffic, from its own process and many loopback
//! ports, paced to a target rate for a bounded time.
//!
//! Two threads, each with its own sockets (so its own source ports):
//! - **garbage**: random bytes of random length (1 to 1,472), the first byte random too, so
//!   every packet kind appears, mostly malformed or from an unknown peer;
//! - **handshakes**: forged handshake packets built from a real client's request and response
//!   (taken from `tickwire::Endpoint` after one genuine probe), with [`HANDSHAKE_MIX`]:
//!   well-formed padded requests with a random nonce and random padding (the server answers
//!   each with a 33-byte challenge and keeps no state), requests with a wrong protocol id (a
//!   10-byte reject), undersized requests (dropped, `request_too_small`), and responses carrying
//!   a forged cookie whose issue time is current, so the server has to compute its MAC to refuse
//!   it (`cookie_invalid`).
//!
//! `--io send` sends one datagram per `sendto` (what traffic from many hosts looks like to the
//! server); `--io gso` hands runs of equal-sized datagrams to one `sendmsg` with UDP GSO
//! (quinn-udp). On loopback the kernel then delivers each run coalesced to a GRO socket such as
//! the server's, so the server reads the flood far more cheaply than it would from the network:
//! use it only to reach a rate `send` cannot. Replies from the server are read from the flood's
//! sockets and counted. At the end it prints one JSON line (see [`FloodReport`]).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tickwire::{Config, Endpoint};

/// Options of the `flood` role.
#[derive(Args, Debug, Clone)]
pub(crate) struct FloodArgs {
    /// The server under attack.
    #[arg(long)]
    pub(crate) server: SocketAddr,
    /// Garbage datagrams per second.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) garbage_rate: u64,
    /// Forged handshake datagrams per second.
    #[arg(long, default_value_t = 50_000)]
    pub(crate) handshake_rate: u64,
    /// How long to flood, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration_s: f64,
    /// Source sockets (ports) per thread.
    #[arg(long, default_value_t = 128)]
    pub(crate) sockets: usize,
    /// How datagrams leave: one `sendto` each, or GSO runs.
    #[arg(long, value_enum, default_value_t = FloodIo::Send)]
    pub(crate) io: FloodIo,
    /// Seed of the flood's randomness.
    #[arg(long, default_value_t = 8)]
    pub(crate) seed: u64,
}

/// How the flood's datagrams leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum FloodIo {
    /// One `sendto` per datagram.
    Send,
    /// Runs of equal-sized datagrams in one `sendmsg` with UDP GSO.
    Gso,
}

/// Shares of the forged handshakes, in percent: well-formed requests, wrong protocol id,
/// undersized requests, responses with forged cookies.
const HANDSHAKE_MIX: [(Forgery, u32); 4] = [
    (Forgery::Request, 70),
    (Forgery::WrongProtocol, 10),
    (Forgery::ShortRequest, 10),
    (Forgery::ForgedCookie, 10),
];

/// Largest UDP payload that fits a 1500-byte Ethernet frame over IPv4.
const MAX_GARBAGE_LEN: usize = 1472;
/// Datagrams built and sent per batch.
const BATCH: usize = 32;
/// Bytes of the random pool garbage and padding are cut from.
const POOL_BYTES: usize = 1 << 20;
/// Sockets whose replies are read per pacing round.
const REPLY_SOCKETS_PER_ROUND: usize = 4;

/// Kinds of forged handshake packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Forgery {
    Request,
    WrongProtocol,
    ShortRequest,
    ForgedCookie,
}

/// Runs the flood and prints its report.
pub(crate) fn flood(args: &FloodArgs) -> ExitCode {
    match run(args) {
        Ok(report) => {
            println!("{}", report.to_json());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("flood: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What one flood thread did.
#[derive(Clone, Debug, Default)]
struct ThreadTally {
    sent: u64,
    bytes_sent: u64,
    /// `sendto` refused with `WouldBlock` (the socket buffer was full): not sent.
    would_block: u64,
    replies: u64,
    reply_bytes: u64,
    elapsed: Duration,
}

/// The flood's report: per thread, datagrams and bytes sent, refusals, replies read, and the
/// achieved rate over the thread's own elapsed time.
struct FloodReport {
    io: FloodIo,
    garbage: ThreadTally,
    handshakes: ThreadTally,
    mix: Vec<(&'static str, u32)>,
}

impl FloodReport {
    fn to_json(&self) -> serde_json::Value {
        let thread = |t: &ThreadTally| {
            let secs = t.elapsed.as_secs_f64().max(1e-9);
            json!({
                "sent": t.sent,
                "bytes_sent": t.bytes_sent,
                "would_block": t.would_block,
                "replies_read": t.replies,
                "reply_bytes_read": t.reply_bytes,
                "elapsed_s": t.elapsed.as_secs_f64(),
                "rate_per_s": t.sent as f64 / secs,
            })
        };
        let cpu = crate::procfs::process_cpu(std::process::id()).unwrap_or_default();
        let secs = self
            .garbage
            .elapsed
            .max(self.handshakes.elapsed)
            .as_secs_f64();
        json!({
            "io": format!("{:?}", self.io).to_lowercase(),
            "cpu_s_per_s": cpu.as_secs_f64() / secs.max(1e-9),
            "garbage": thread(&self.garbage),
            "handshakes": thread(&self.handshakes),
            "handshake_mix_percent": self.mix.iter().map(|(k, p)| (k.to_string(), *p)).collect::<std::collections::BTreeMap<_, _>>(),
        })
    }
}

fn run(args: &FloodArgs) -> Result<FloodReport, Box<dyn std::error::Error>> {
    let templates = Templates::probe(args.server, args.seed)?;
    let duration = Duration::from_secs_f64(args.duration_s.max(0.0));
    let start = Instant::now();
    let spawn = |kind: ThreadKind, rate: u64, seed: u64| {
        let sockets = open_sockets(args.sockets)?;
        let templates = templates.clone();
        let (server, io) = (args.server, args.io);
        io::Result::Ok(std::thread::spawn(move || {
            let mut thread = FloodThread::new(kind, server, sockets, templates, io, seed);
            thread.run(rate, start, duration)
        }))
    };
    let garbage = spawn(ThreadKind::Garbage, args.garbage_rate, args.seed)?;
    let handshakes = spawn(
        ThreadKind::Handshakes,
        args.handshake_rate,
        args.seed ^ 0x5eed,
    )?;
    let garbage = garbage
        .join()
        .map_err(|_| "the garbage thread panicked")??;
    let handshakes = handshakes
        .join()
        .map_err(|_| "the handshake thread panicked")??;
    Ok(FloodReport {
        io: args.io,
        garbage,
        handshakes,
        mix: HANDSHAKE_MIX.iter().map(|(k, p)| (k.name(), *p)).collect(),
    })
}

impl Forgery {
    fn name(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::WrongProtocol => "wrong_protocol",
            Self::ShortRequest => "short_request",
            Self::ForgedCookie => "forged_cookie",
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum ThreadKind {
    Garbage,
    Handshakes,
}

/// A genuine connect request and connect response for this server, to forge from.
#[derive(Clone)]
struct Templates {
    request: Vec<u8>,
    response: Vec<u8>,
    /// The issue time (ms since the server's epoch) of the genuine cookie, and when it was read.
    cookie_issued_ms: u64,
    cookie_read_at: Instant,
}

/// Offsets in the handshake layouts (engine/PROTOCOL.md, "Handshake and disconnect packets").
const PROTOCOL_ID_AT: usize = 3;
const NONCE_AT: usize = 15;
const PADDING_AT: usize = 23;
const COOKIE_AT: usize = 23;
const COOKIE_MAC_AT: usize = 31;
const RESPONSE_LEN: usize = 47;

impl Templates {
    /// A client endpoint builds a request; one probe socket sends it and reads the challenge,
    /// from which the endpoint builds the response (which is never sent as is).
    fn probe(server: SocketAddr, seed: u64) -> Result<Self, Box<dyn std::error::Error>> {
        let now = Instant::now();
        let config = Config {
            seed: Some(seed),
            ..Config::client()
        };
        let mut endpoint = Endpoint::new(config, now)?;
        endpoint.connect(server, now)?;
        let mut buf = vec![0u8; endpoint.transmit_buffer_size()];
        let transmit = endpoint
            .poll_transmit(now, &mut buf)
            .ok_or("the client endpoint built no request")?;
        let request = buf[..transmit.size].to_vec();

        let probe = UdpSocket::bind("127.0.0.1:0")?;
        probe.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut reply = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(3);
        let challenge = loop {
            if Instant::now() >= deadline {
                return Err("the server sent no challenge to the probe within 3 s".into());
            }
            probe.send_to(&request, server)?;
            match probe.recv_from(&mut reply) {
                Ok((len, from)) if from == server => break reply[..len].to_vec(),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        };
        let cookie_read_at = Instant::now();
        // The probe's own request came from another socket: the endpoint only checks the nonce.
        endpoint.handle_datagram(cookie_read_at, server, Bytes::from(challenge));
        let transmit = endpoint
            .poll_transmit(cookie_read_at, &mut buf)
            .ok_or("the client endpoint built no response to the challenge")?;
        let response = buf[..transmit.size].to_vec();
        if response.len() != RESPONSE_LEN {
            return Err(format!("unexpected response length {}", response.len()).into());
        }
        let mut issued = [0u8; 8];
        issued.copy_from_slice(&response[COOKIE_AT..COOKIE_AT + 8]);
        Ok(Self {
            request,
            response,
            cookie_issued_ms: u64::from_be_bytes(issued),
            cookie_read_at,
        })
    }
}

fn open_sockets(count: usize) -> io::Result<Vec<UdpSocket>> {
    (0..count.max(1))
        .map(|_| {
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            socket.set_nonblocking(true)?;
            Ok(socket)
        })
        .collect()
}

/// One flood thread: its sockets, its randomness and its counters.
struct FloodThread {
    kind: ThreadKind,
    server: SocketAddr,
    sockets: Vec<UdpSocket>,
    gso: Vec<quinn_udp::UdpSocketState>,
    templates: Templates,
    io: FloodIo,
    rng: StdRng,
    pool: Vec<u8>,
    /// The batch being built: datagrams back to back, all `segment` bytes long.
    batch: Vec<u8>,
    next_socket: usize,
    next_reply_socket: usize,
    tally: ThreadTally,
}

impl FloodThread {
    fn new(
        kind: ThreadKind,
        server: SocketAddr,
        sockets: Vec<UdpSocket>,
        templates: Templates,
        io: FloodIo,
        seed: u64,
    ) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut pool = vec![0u8; POOL_BYTES + MAX_GARBAGE_LEN * BATCH];
        rng.fill(&mut pool[..]);
        let gso = match io {
            FloodIo::Gso => sockets
                .iter()
                .filter_map(|s| quinn_udp::UdpSocketState::new(s.into()).ok())
                .collect(),
            FloodIo::Send => Vec::new(),
        };
        Self {
            kind,
            server,
            sockets,
            gso,
            templates,
            io,
            rng,
            pool,
            batch: Vec::with_capacity(MAX_GARBAGE_LEN * BATCH),
            next_socket: 0,
            next_reply_socket: 0,
            tally: ThreadTally::default(),
        }
    }

    /// Sends `rate` datagrams per second from `start` for `duration`, as fast as it can when
    /// behind; then reads the last replies.
    fn run(&mut self, rate: u64, start: Instant, duration: Duration) -> io::Result<ThreadTally> {
        loop {
            let elapsed = start.elapsed();
            if elapsed >= duration {
                break;
            }
            let due = (rate as f64 * elapsed.as_secs_f64()) as u64;
            let attempted = self.tally.sent + self.tally.would_block;
            if attempted >= due {
                self.read_replies(REPLY_SOCKETS_PER_ROUND);
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            let count = ((due - attempted) as usize).min(BATCH);
            let segment = self.build(count);
            self.send(segment, count)?;
        }
        self.tally.elapsed = start.elapsed();
        self.read_replies(self.sockets.len());
        Ok(self.tally.clone())
    }

    /// Builds up to `count` datagrams of one size into `batch`; returns their size.
    fn build(&mut self, count: usize) -> usize {
        self.batch.clear();
        match self.kind {
            ThreadKind::Garbage => {
                let len = self.rng.random_range(1..=MAX_GARBAGE_LEN);
                let at = self.rng.random_range(0..POOL_BYTES);
                self.batch
                    .extend_from_slice(&self.pool[at..at + len * count]);
                len
            }
            ThreadKind::Handshakes => {
                let forgery = self.pick_forgery();
                let short_len = self
                    .rng
                    .random_range(PADDING_AT..self.templates.request.len());
                for _ in 0..count {
                    self.forge(forgery, short_len);
                }
                self.batch.len() / count
            }
        }
    }

    fn pick_forgery(&mut self) -> Forgery {
        let mut roll = self.rng.random_range(0..100u32);
        for (forgery, share) in HANDSHAKE_MIX {
            if roll < share {
                return forgery;
            }
            roll -= share;
        }
        Forgery::Request
    }

    /// Appends one forged handshake datagram to `batch`.
    fn forge(&mut self, forgery: Forgery, short_len: usize) {
        let start = self.batch.len();
        let nonce = (self.rng.random::<u64>() | 1).to_be_bytes();
        match forgery {
            Forgery::Request | Forgery::WrongProtocol | Forgery::ShortRequest => {
                let len = match forgery {
                    Forgery::ShortRequest => short_len,
                    _ => self.templates.request.len(),
                };
                self.batch
                    .extend_from_slice(&self.templates.request[..PADDING_AT]);
                let padding = len - PADDING_AT;
                let at = self.rng.random_range(0..POOL_BYTES);
                self.batch.extend_from_slice(&self.pool[at..at + padding]);
                self.batch[start + NONCE_AT..start + NONCE_AT + 8].copy_from_slice(&nonce);
                if forgery == Forgery::WrongProtocol {
                    let id = self.rng.random::<u64>().to_be_bytes();
                    self.batch[start + PROTOCOL_ID_AT..start + PROTOCOL_ID_AT + 8]
                        .copy_from_slice(&id);
                }
            }
            Forgery::ForgedCookie => {
                self.batch.extend_from_slice(&self.templates.response);
                self.batch[start + NONCE_AT..start + NONCE_AT + 8].copy_from_slice(&nonce);
                // A current issue time: the server cannot refuse it by its window alone.
                let age = self.templates.cookie_read_at.elapsed().as_millis() as u64;
                let issued = (self.templates.cookie_issued_ms + age).to_be_bytes();
                self.batch[start + COOKIE_AT..start + COOKIE_AT + 8].copy_from_slice(&issued);
                let mac = self.rng.random::<u128>().to_be_bytes();
                self.batch[start + COOKIE_MAC_AT..start + RESPONSE_LEN].copy_from_slice(&mac);
            }
        }
    }

    /// Sends the `count` datagrams of `segment` bytes in `batch`.
    fn send(&mut self, segment: usize, count: usize) -> io::Result<()> {
        match self.io {
            FloodIo::Send => {
                for i in 0..count {
                    let socket = &self.sockets[self.next_socket];
                    self.next_socket = (self.next_socket + 1) % self.sockets.len();
                    let datagram = &self.batch[i * segment..(i + 1) * segment];
                    match socket.send_to(datagram, self.server) {
                        Ok(_) => {
                            self.tally.sent += 1;
                            self.tally.bytes_sent += segment as u64;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            self.tally.would_block += 1;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            FloodIo::Gso => {
                if self.gso.len() != self.sockets.len() {
                    return Err(io::Error::other("quinn-udp could not set up every socket"));
                }
                let index = self.next_socket;
                self.next_socket = (self.next_socket + 1) % self.sockets.len();
                let (socket, state) = (&self.sockets[index], &self.gso[index]);
                let per_send = state.max_gso_segments().max(1);
                for run in self.batch.chunks(segment * per_send) {
                    let transmit = quinn_udp::Transmit {
                        destination: self.server,
                        ecn: None,
                        contents: run,
                        segment_size: (run.len() > segment).then_some(segment),
                        src_ip: None,
                    };
                    let datagrams = run.len().div_ceil(segment) as u64;
                    match state.try_send(socket.into(), &transmit) {
                        Ok(()) => {
                            self.tally.sent += datagrams;
                            self.tally.bytes_sent += run.len() as u64;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            self.tally.would_block += datagrams;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads every waiting reply on the next `sockets` sockets.
    fn read_replies(&mut self, sockets: usize) {
        let mut buf = [0u8; 2048];
        for _ in 0..sockets.min(self.sockets.len()) {
            let socket = &self.sockets[self.next_reply_socket];
            self.next_reply_socket = (self.next_reply_socket + 1) % self.sockets.len();
            while let Ok(len) = socket.recv(&mut buf) {
                self.tally.replies += 1;
                self.tally.reply_bytes += len as u64;
            }
        }
    }
}
