//! What every peer of the loopback benchmark shares: the workload configs, the result types, the
//! harness that runs a client and a server on their own threads, CPU measurement, percentiles,
//! and the JSON and table output.
//!
//! # The peer contract
//!
//! A peer (`raw_udp`, `raw_batched`, `quinn`, `tickwire`) is a module with four functions of
//! exactly these shapes, which `main.rs` calls through [`PeerFns`]:
//!
//! ```text
//! pub(crate) fn t1(cfg: &T1Config) -> Result<Option<T1Result>, BenchError>
//! pub(crate) fn t2(cfg: &T2Config) -> Result<Option<T2Result>, BenchError>
//! pub(crate) fn t3(cfg: &T3Config) -> Result<Option<T3Result>, BenchError>
//! pub(crate) fn t4(cfg: &T4Config) -> Result<Option<T4Result>, BenchError>
//! ```
//!
//! `Ok(Some(_))` is a measurement, `Ok(None)` means "this peer does not run this workload" (raw
//! UDP has no reliable channel, so no T3) and the cell is left out of the output, and `Err(_)`
//! is a failure that is printed and makes the process exit non-zero. Nothing is ever estimated.
//!
//! Every function builds its result with the constructor of the result type
//! ([`T1Result::from_rtts`], [`T2Result::new`], [`T3Result::new`], and [`overhead_per_message`]
//! for T4), so the arithmetic (percentiles, rates, units) is the same for every peer.
//!
//! # Running a pair
//!
//! [`run_pair`] starts a server thread and a client thread, each with its own current-thread
//! tokio runtime, and gives each side a [`Side`]. The protocol, which every peer follows:
//!
//! 1. The server binds `127.0.0.1:0` and calls [`Side::listening`]; the client awaits
//!    [`Side::server_addr`] and connects. Handshakes, certificates and warm-up happen here,
//!    outside the measured window.
//! 2. Both call [`Side::ready`]. When both are ready, the harness reads the process CPU time and
//!    the clock and opens the *window*; `ready` returns the instant it opened.
//! 3. Each side calls [`Side::finish`] when its measured part is over (returning from the side's
//!    future counts as finishing). A side that merely serves the other (an echo server) finishes
//!    at once and keeps serving until [`Side::stopped`]. When both have finished, the harness
//!    reads CPU and clock again and closes the window ([`Window`]).
//! 4. After the window closes [`Side::stopped`] resolves; sides tear down and return.
//!
//! A side whose runtime must keep running so that the other side can finish (a quinn client
//! whose queued datagrams are still being transmitted) calls `finish()` and then awaits
//! `stopped()` before returning. Threads stay alive until the window has closed, whatever they
//! do, so that their CPU time is counted (see [`process_cpu`]).
//!
//! Every wait ends at the pair's hard deadline (`timeout` from the config): [`Side::stopped`]
//! and [`Side::peer_finished`] resolve, and [`Side::ready`] and [`Side::server_addr`] return
//! [`BenchError::Timeout`]. If a side fails, the other side's waits return
//! [`BenchError::Aborted`] and `run_pair` reports the first real error. A thread that ignores
//! its deadline is left behind and the workload is reported as timed out.
//!
//! Sides may also exchange in-process values (a `quinn::Connection` clone, a tokio channel):
//! the harness is one process on purpose, and the figures only count what crosses the socket.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------------------------
// Workloads and peers
// ---------------------------------------------------------------------------------------------

/// A workload of `shared/workloads.md` that this benchmark runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum Workload {
    /// Ping-pong of 64-byte messages: round-trip time.
    #[value(name = "T1")]
    T1,
    /// Unreliable flood of 64-byte messages: delivered rate, loss, CPU.
    #[value(name = "T2")]
    T2,
    /// Reliable-ordered bulk transfer in 1 KiB messages: throughput.
    #[value(name = "T3")]
    T3,
    /// Bytes on the wire per 64-byte message.
    #[value(name = "T4")]
    T4,
}

impl Workload {
    /// Every workload, in run order.
    pub(crate) const ALL: [Workload; 4] = [Workload::T1, Workload::T2, Workload::T3, Workload::T4];

    /// The id used in `workloads.md` and as the JSON key.
    pub(crate) fn id(self) -> &'static str {
        match self {
            Workload::T1 => "T1",
            Workload::T2 => "T2",
            Workload::T3 => "T3",
            Workload::T4 => "T4",
        }
    }

    /// The fields the table shows, with their column labels; the first is the headline, whose
    /// ratios against the baselines the table prints.
    fn table_columns(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Workload::T1 => &[
                ("p50_us", "p50 µs"),
                ("p99_us", "p99 µs"),
                ("p999_us", "p99.9 µs"),
            ],
            Workload::T2 => &[
                ("delivered_per_s", "msg/s"),
                ("loss_pct", "loss %"),
                ("cpu_s_per_million", "CPU s/M"),
                ("softirq_s_per_million", "softirq s/M"),
            ],
            Workload::T3 => &[("mb_per_s", "MB/s"), ("wall_s", "wall s")],
            Workload::T4 => &[
                ("unreliable_overhead_bytes", "unreliable"),
                ("unreliable_with_acks_overhead_bytes", "unrel+acks"),
                ("reliable_overhead_bytes", "reliable"),
                ("ten_per_datagram_overhead_bytes", "10/dgram"),
                ("reliable_ack_bytes", "rel. acks"),
            ],
        }
    }

    /// The fields that get ratios against the baselines in the JSON.
    fn ratio_fields(self) -> &'static [&'static str] {
        match self {
            Workload::T1 => &["p50_us", "p99_us", "p999_us"],
            Workload::T2 => &[
                "delivered_per_s",
                "cpu_s_per_million",
                "softirq_s_per_million",
            ],
            Workload::T3 => &["mb_per_s", "wall_s"],
            Workload::T4 => &[
                "unreliable_overhead_bytes",
                "unreliable_with_acks_overhead_bytes",
                "reliable_overhead_bytes",
                "ten_per_datagram_overhead_bytes",
            ],
        }
    }
}

/// One implementation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum Peer {
    /// `tokio::net::UdpSocket`, one datagram per call: the unbatched limit.
    #[value(name = "raw_udp")]
    RawUdp,
    /// quinn-udp with GSO, GRO and `recvmmsg`: the batched limit of the kernel.
    #[value(name = "raw_batched")]
    RawBatched,
    /// Plain quinn: DATAGRAM frames for unreliable, one stream for reliable.
    #[value(name = "quinn")]
    Quinn,
    /// Tickwire through its tokio UDP driver.
    #[value(name = "tickwire")]
    Tickwire,
    /// Tickwire with connect tokens: every packet encrypted and authenticated.
    #[value(name = "tickwire_secure")]
    TickwireSecure,
    /// Tickwire's API over its QUIC transport (quinn underneath).
    #[value(name = "tickwire_quic")]
    TickwireQuic,
}

impl Peer {
    /// Every peer, in default run order.
    pub(crate) const ALL: [Peer; 6] = [
        Peer::RawUdp,
        Peer::RawBatched,
        Peer::Quinn,
        Peer::Tickwire,
        Peer::TickwireSecure,
        Peer::TickwireQuic,
    ];

    /// The JSON key and table label.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Peer::RawUdp => "raw_udp",
            Peer::RawBatched => "raw_batched",
            Peer::Quinn => "quinn",
            Peer::Tickwire => "tickwire",
            Peer::TickwireSecure => "tickwire_secure",
            Peer::TickwireQuic => "tickwire_quic",
        }
    }
}

/// The four entry points of one peer (see the module docs for the contract).
#[derive(Clone, Copy)]
pub(crate) struct PeerFns {
    /// T1 ping-pong.
    pub(crate) t1: fn(&T1Config) -> Result<Option<T1Result>, BenchError>,
    /// T2 unreliable flood.
    pub(crate) t2: fn(&T2Config) -> Result<Option<T2Result>, BenchError>,
    /// T3 reliable-ordered bulk.
    pub(crate) t3: fn(&T3Config) -> Result<Option<T3Result>, BenchError>,
    /// T4 wire overhead.
    pub(crate) t4: fn(&T4Config) -> Result<Option<T4Result>, BenchError>,
}

// ---------------------------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------------------------

/// The size of the messages of T1, T2 and T4, in bytes.
pub(crate) const SMALL_MESSAGE: usize = 64;

/// T1: the client sends one message, the server echoes it at once, the client times the round
/// trip; `warmup` round trips first, untimed, then `round_trips` timed ones.
#[derive(Clone, Debug)]
pub(crate) struct T1Config {
    /// Timed round trips (20,000; `--quick` 2,000).
    pub(crate) round_trips: usize,
    /// Untimed round trips before them (1,000; `--quick` 200).
    pub(crate) warmup: usize,
    /// Message size in bytes (64).
    pub(crate) msg_len: usize,
    /// `SO_RCVBUF` and `SO_SNDBUF` requested for every socket, in bytes; 0 keeps the OS default.
    pub(crate) socket_buffer_bytes: usize,
    /// Hard limit for the whole workload, setup included.
    pub(crate) timeout: Duration,
}

/// T2: the client sends unreliable messages as fast as it can for `duration`; the server counts
/// what it receives until the client has finished and nothing arrived for `drain_idle`.
#[derive(Clone, Debug)]
pub(crate) struct T2Config {
    /// How long the client sends, from the opening of the window (3 s; `--quick` 0.5 s).
    pub(crate) duration: Duration,
    /// Message size in bytes (64).
    pub(crate) msg_len: usize,
    /// The server stops counting once the client has finished and this long passed without a
    /// message (50 ms).
    pub(crate) drain_idle: Duration,
    /// `SO_RCVBUF` and `SO_SNDBUF` requested for every socket, in bytes; 0 keeps the OS default.
    pub(crate) socket_buffer_bytes: usize,
    /// Hard limit for the whole workload, setup included.
    pub(crate) timeout: Duration,
}

/// T3: the client sends `total_bytes` in `msg_len` messages on one reliable-ordered channel
/// (quinn: one stream); wall time runs from the client's first send to the server holding the
/// last byte. The server checks it received exactly `total_bytes`.
#[derive(Clone, Debug)]
pub(crate) struct T3Config {
    /// Bytes to transfer (20 MiB = 20,480 messages; `--quick` 2 MiB).
    pub(crate) total_bytes: u64,
    /// Message size in bytes (1,024).
    pub(crate) msg_len: usize,
    /// `SO_RCVBUF` and `SO_SNDBUF` requested for every socket, in bytes; 0 keeps the OS default.
    pub(crate) socket_buffer_bytes: usize,
    /// Hard limit for the whole workload, setup included.
    pub(crate) timeout: Duration,
}

/// T4: bytes on the wire per message, counted at the socket (UDP payload, without the 28 bytes of
/// IPv4 + UDP headers), in four phases of `messages` messages each on one warmed-up connection:
///
/// - unreliable one-way: one message per datagram, the next sent once the server has the
///   previous one; only the sender's bytes count (the receiver's acks, if any, do not);
/// - unreliable with acks: ping-pong, both sides send one message per datagram and piggyback
///   whatever acks they need; both sides' bytes count, over both sides' messages;
/// - reliable: one-way, one message per datagram, the next sent once the server has read the
///   previous one; the sender's bytes count, the receiver's (its acks) are reported separately;
/// - ten per datagram: unreliable one-way, ten messages sent back to back so that they share a
///   datagram; the sender's bytes over ten times `messages`.
#[derive(Clone, Debug)]
pub(crate) struct T4Config {
    /// Messages per phase (1,000; `--quick` 200).
    pub(crate) messages: usize,
    /// Message size in bytes (64).
    pub(crate) msg_len: usize,
    /// `SO_RCVBUF` and `SO_SNDBUF` requested for every socket, in bytes; 0 keeps the OS default.
    pub(crate) socket_buffer_bytes: usize,
    /// Hard limit for the whole workload, setup included.
    pub(crate) timeout: Duration,
}

/// The configs of all workloads for one mode.
#[derive(Clone, Debug)]
pub(crate) struct Configs {
    /// T1.
    pub(crate) t1: T1Config,
    /// T2.
    pub(crate) t2: T2Config,
    /// T3.
    pub(crate) t3: T3Config,
    /// T4.
    pub(crate) t4: T4Config,
}

impl Configs {
    /// The workloads as `workloads.md` defines them, every socket asking for
    /// `socket_buffer_bytes` of send and receive buffer (0: the OS default).
    pub(crate) fn full(socket_buffer_bytes: usize) -> Configs {
        Configs {
            t1: T1Config {
                round_trips: 20_000,
                warmup: 1_000,
                msg_len: SMALL_MESSAGE,
                socket_buffer_bytes,
                timeout: Duration::from_secs(60),
            },
            t2: T2Config {
                duration: Duration::from_secs(3),
                msg_len: SMALL_MESSAGE,
                drain_idle: Duration::from_millis(50),
                socket_buffer_bytes,
                timeout: Duration::from_secs(30),
            },
            t3: T3Config {
                total_bytes: 20 * MIB,
                msg_len: 1024,
                socket_buffer_bytes,
                timeout: Duration::from_secs(120),
            },
            t4: T4Config {
                messages: 1_000,
                msg_len: SMALL_MESSAGE,
                socket_buffer_bytes,
                timeout: Duration::from_secs(60),
            },
        }
    }

    /// Every workload shrunk for a CI smoke run (a few seconds in all).
    pub(crate) fn quick(socket_buffer_bytes: usize) -> Configs {
        let full = Configs::full(socket_buffer_bytes);
        Configs {
            t1: T1Config {
                round_trips: 2_000,
                warmup: 200,
                timeout: Duration::from_secs(20),
                ..full.t1
            },
            t2: T2Config {
                duration: Duration::from_millis(500),
                timeout: Duration::from_secs(20),
                ..full.t2
            },
            t3: T3Config {
                total_bytes: 2 * MIB,
                timeout: Duration::from_secs(30),
                ..full.t3
            },
            t4: T4Config {
                messages: 200,
                timeout: Duration::from_secs(20),
                ..full.t4
            },
        }
    }

    /// One line per workload saying what was run, for the table and the JSON.
    fn describe(&self, workload: Workload) -> String {
        match workload {
            Workload::T1 => format!(
                "ping-pong, {} B messages, {} round trips after {} warm-up; RTT in µs",
                self.t1.msg_len, self.t1.round_trips, self.t1.warmup
            ),
            Workload::T2 => format!(
                "unreliable flood, {} B messages for {:.1} s, socket buffers {}; CPU of the \
                 process's threads, softirq system-wide",
                self.t2.msg_len,
                self.t2.duration.as_secs_f64(),
                describe_buffer(self.t2.socket_buffer_bytes)
            ),
            Workload::T3 => format!(
                "reliable-ordered, {} MiB in {} B messages; MB = 2^20 bytes",
                self.t3.total_bytes / MIB,
                self.t3.msg_len
            ),
            Workload::T4 => format!(
                "UDP payload bytes per {} B message minus {}, {} messages per phase",
                self.t4.msg_len, self.t4.msg_len, self.t4.messages
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

/// T1 figures: round-trip time percentiles.
#[derive(Clone, Debug)]
pub(crate) struct T1Result {
    /// Median round trip in microseconds.
    pub(crate) p50_us: f64,
    /// 99th percentile in microseconds.
    pub(crate) p99_us: f64,
    /// 99.9th percentile in microseconds.
    pub(crate) p999_us: f64,
    /// Number of timed round trips.
    pub(crate) round_trips: usize,
    /// The timed round trips, sorted (so that runs can be pooled).
    pub(crate) rtts: Vec<Duration>,
}

impl T1Result {
    /// Percentiles (nearest rank) of the timed round trips; warm-up must not be included.
    pub(crate) fn from_rtts(mut rtts: Vec<Duration>) -> Result<T1Result, BenchError> {
        if rtts.is_empty() {
            return Err(BenchError::Incomplete {
                what: "round trips",
                got: 0,
                want: 1,
            });
        }
        rtts.sort_unstable();
        let us = |p: f64| percentile(&rtts, p).as_secs_f64() * 1e6;
        Ok(T1Result {
            p50_us: us(0.50),
            p99_us: us(0.99),
            p999_us: us(0.999),
            round_trips: rtts.len(),
            rtts,
        })
    }

    fn figures(&self) -> Figures {
        Figures(vec![
            ("p50_us", self.p50_us),
            ("p99_us", self.p99_us),
            ("p999_us", self.p999_us),
            ("round_trips", self.round_trips as f64),
        ])
    }
}

/// T2 figures: delivered rate, loss and CPU cost.
#[derive(Clone, Debug)]
pub(crate) struct T2Result {
    /// Messages counted at the server per second of `wall_s`.
    pub(crate) delivered_per_s: f64,
    /// Messages the client sent that the server never counted, in percent of those sent.
    pub(crate) loss_pct: f64,
    /// CPU-seconds of the process's threads inside the window per million delivered messages.
    pub(crate) cpu_s_per_million: f64,
    /// Softirq CPU-seconds of the whole machine inside the window per million delivered
    /// messages: loopback delivery work that the kernel does not charge to the threads.
    pub(crate) softirq_s_per_million: f64,
    /// Messages the client handed to the transport without an error.
    pub(crate) sent: u64,
    /// Messages the server received.
    pub(crate) delivered: u64,
    /// From the opening of the window to the server's last received message.
    pub(crate) wall_s: f64,
    /// CPU-seconds of the process's threads inside the window.
    pub(crate) cpu_s: f64,
    /// Softirq CPU-seconds of the machine inside the window.
    pub(crate) softirq_s: f64,
}

impl T2Result {
    /// `elapsed` runs from the opening of the window to the last message counted; `window` is
    /// [`PairRun::window`].
    pub(crate) fn new(
        sent: u64,
        delivered: u64,
        elapsed: Duration,
        window: Window,
    ) -> Result<T2Result, BenchError> {
        if delivered == 0 || elapsed.is_zero() {
            return Err(BenchError::Incomplete {
                what: "messages delivered",
                got: delivered,
                want: 1,
            });
        }
        let lost = sent.saturating_sub(delivered);
        Ok(T2Result {
            delivered_per_s: delivered as f64 / elapsed.as_secs_f64(),
            loss_pct: if sent == 0 {
                0.0
            } else {
                lost as f64 * 100.0 / sent as f64
            },
            cpu_s_per_million: window.cpu.as_secs_f64() / (delivered as f64 / 1e6),
            softirq_s_per_million: window.softirq.as_secs_f64() / (delivered as f64 / 1e6),
            sent,
            delivered,
            wall_s: elapsed.as_secs_f64(),
            cpu_s: window.cpu.as_secs_f64(),
            softirq_s: window.softirq.as_secs_f64(),
        })
    }

    fn figures(&self) -> Figures {
        Figures(vec![
            ("delivered_per_s", self.delivered_per_s),
            ("loss_pct", self.loss_pct),
            ("cpu_s_per_million", self.cpu_s_per_million),
            ("softirq_s_per_million", self.softirq_s_per_million),
            ("sent", self.sent as f64),
            ("delivered", self.delivered as f64),
            ("wall_s", self.wall_s),
            ("cpu_s", self.cpu_s),
            ("softirq_s", self.softirq_s),
        ])
    }
}

/// T3 figures: throughput of the reliable-ordered transfer.
#[derive(Clone, Debug)]
pub(crate) struct T3Result {
    /// Payload MiB (2^20 bytes) per second of `wall_s`.
    pub(crate) mb_per_s: f64,
    /// From the client's first send to the server holding the last byte, in seconds.
    pub(crate) wall_s: f64,
    /// Payload bytes the server received (equal to the config's `total_bytes`).
    pub(crate) bytes: u64,
}

impl T3Result {
    /// Checks that `received` is the whole transfer and computes the rate.
    pub(crate) fn new(
        cfg: &T3Config,
        received: u64,
        wall: Duration,
    ) -> Result<T3Result, BenchError> {
        if received != cfg.total_bytes || wall.is_zero() {
            return Err(BenchError::Incomplete {
                what: "bulk bytes",
                got: received,
                want: cfg.total_bytes,
            });
        }
        Ok(T3Result {
            mb_per_s: received as f64 / MIB as f64 / wall.as_secs_f64(),
            wall_s: wall.as_secs_f64(),
            bytes: received,
        })
    }

    fn figures(&self) -> Figures {
        Figures(vec![
            ("mb_per_s", self.mb_per_s),
            ("wall_s", self.wall_s),
            ("bytes", self.bytes as f64),
        ])
    }
}

/// T4 figures: UDP payload bytes per message beyond the message itself (see [`T4Config`] for
/// what each phase counts). Build each field with [`overhead_per_message`].
#[derive(Clone, Debug)]
pub(crate) struct T4Result {
    /// One-way unreliable, one message per datagram, sender's bytes.
    pub(crate) unreliable_overhead_bytes: f64,
    /// Unreliable ping-pong with piggybacked acks, both sides' bytes.
    pub(crate) unreliable_with_acks_overhead_bytes: f64,
    /// One-way reliable, one message per datagram, sender's bytes.
    pub(crate) reliable_overhead_bytes: f64,
    /// Ten unreliable messages per datagram, sender's bytes.
    pub(crate) ten_per_datagram_overhead_bytes: f64,
    /// In the reliable phase, the receiver's UDP payload bytes (its acks) per message.
    pub(crate) reliable_ack_bytes: f64,
}

impl T4Result {
    /// A transport that adds nothing to the payload (raw UDP): all zeros by definition.
    pub(crate) fn zero() -> T4Result {
        T4Result {
            unreliable_overhead_bytes: 0.0,
            unreliable_with_acks_overhead_bytes: 0.0,
            reliable_overhead_bytes: 0.0,
            ten_per_datagram_overhead_bytes: 0.0,
            reliable_ack_bytes: 0.0,
        }
    }

    fn figures(&self) -> Figures {
        Figures(vec![
            ("unreliable_overhead_bytes", self.unreliable_overhead_bytes),
            (
                "unreliable_with_acks_overhead_bytes",
                self.unreliable_with_acks_overhead_bytes,
            ),
            ("reliable_overhead_bytes", self.reliable_overhead_bytes),
            (
                "ten_per_datagram_overhead_bytes",
                self.ten_per_datagram_overhead_bytes,
            ),
            ("reliable_ack_bytes", self.reliable_ack_bytes),
        ])
    }
}

/// `udp_payload_bytes / messages - msg_len`: what the transport added per message.
pub(crate) fn overhead_per_message(udp_payload_bytes: u64, messages: u64, msg_len: usize) -> f64 {
    if messages == 0 {
        return f64::NAN;
    }
    udp_payload_bytes as f64 / messages as f64 - msg_len as f64
}

/// Anything a peer can return: a measurement's named numbers, in a fixed order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Figures(Vec<(&'static str, f64)>);

impl From<T1Result> for Figures {
    fn from(r: T1Result) -> Figures {
        r.figures()
    }
}

impl From<T2Result> for Figures {
    fn from(r: T2Result) -> Figures {
        r.figures()
    }
}

impl From<T3Result> for Figures {
    fn from(r: T3Result) -> Figures {
        r.figures()
    }
}

impl From<T4Result> for Figures {
    fn from(r: T4Result) -> Figures {
        r.figures()
    }
}

impl Figures {
    /// The field-by-field median of several runs of the same workload and peer.
    fn median(runs: &[Figures]) -> Figures {
        let Some(first) = runs.first() else {
            return Figures(Vec::new());
        };
        let fields = first
            .0
            .iter()
            .enumerate()
            .map(|(i, &(name, _))| {
                let values = runs.iter().filter_map(|r| r.0.get(i)).map(|f| f.1);
                (name, median(values.collect()).unwrap_or(f64::NAN))
            })
            .collect();
        Figures(fields)
    }

    /// The headline figure of `workload`, for progress lines: `"p50 µs 19.94"`.
    pub(crate) fn headline(&self, workload: Workload) -> String {
        let (field, label) = workload.table_columns()[0];
        let shown = self
            .value(field)
            .map_or_else(|| "-".to_owned(), format_value);
        format!("{label} {shown}")
    }

    fn value(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|f| f.0 == name).map(|f| f.1)
    }
}

/// The median (mean of the middle two for an even count); `None` if there are no values.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[mid]),
        _ => Some((values[mid - 1] + values[mid]) / 2.0),
    }
}

/// The nearest-rank percentile `p` (0 to 1) of sorted samples; `sorted` must not be empty.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why one workload of one peer produced no figures.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BenchError {
    /// An operation failed; `what` names it (`"bind"`, `"quinn connect"`).
    #[error("{what}: {source}")]
    Failed {
        /// The operation.
        what: &'static str,
        /// The underlying error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The workload did not finish before its hard deadline.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The other side failed, so this side gave up.
    #[error("aborted because the other side failed")]
    Aborted,
    /// Less arrived than the workload needs.
    #[error("incomplete {what}: got {got}, want {want}")]
    Incomplete {
        /// What was counted.
        what: &'static str,
        /// How many arrived.
        got: u64,
        /// How many were expected.
        want: u64,
    },
    /// A side's thread could not be started or panicked.
    #[error("{0} thread died")]
    ThreadDied(&'static str),
}

/// Turns any error into [`BenchError::Failed`] with the name of the operation.
pub(crate) trait Context<T> {
    /// Names the operation that failed.
    fn ctx(self, what: &'static str) -> Result<T, BenchError>;
}

impl<T, E> Context<T> for Result<T, E>
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn ctx(self, what: &'static str) -> Result<T, BenchError> {
        self.map_err(|e| BenchError::Failed {
            what,
            source: Box::new(e),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Running a pair
// ---------------------------------------------------------------------------------------------

/// What the harness measured between the opening and the closing of the window. Wall time is
/// not here: the window's edges include a wake-up delay, so peers time their own transfers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    /// CPU time of the process's threads while the window was open (see [`process_cpu`]).
    pub(crate) cpu: Duration,
    /// Softirq time of the whole machine while the window was open (see [`machine_softirq`]).
    pub(crate) softirq: Duration,
}

/// What [`run_pair`] returns: both sides' values and the window.
#[derive(Debug)]
pub(crate) struct PairRun<S, C> {
    /// The server side's value.
    pub(crate) server: S,
    /// The client side's value.
    pub(crate) client: C,
    /// The measured window.
    pub(crate) window: Window,
}

/// Runs `server` and `client` on two threads, each inside its own current-thread tokio runtime,
/// following the protocol in the module docs, and gives up after `timeout`.
pub(crate) fn run_pair<S, C, FS, FC, GS, GC>(
    timeout: Duration,
    server: FS,
    client: FC,
) -> Result<PairRun<S, C>, BenchError>
where
    FS: FnOnce(Side) -> GS + Send + 'static,
    GS: Future<Output = Result<S, BenchError>>,
    S: Send + 'static,
    FC: FnOnce(Side) -> GC + Send + 'static,
    GC: Future<Output = Result<C, BenchError>>,
    C: Send + 'static,
{
    let shared = Arc::new(PairShared {
        state: Mutex::new(PairState::default()),
        changed: Condvar::new(),
        wake: tokio::sync::Notify::new(),
        deadline: Instant::now() + timeout,
        timeout,
    });
    let (server_tx, server_rx) = mpsc::channel();
    let (client_tx, client_rx) = mpsc::channel();
    let server_thread = spawn_side(&shared, Role::Server, server, server_tx);
    let client_thread = spawn_side(&shared, Role::Client, client, client_tx);
    let (server_thread, client_thread) = match (server_thread, client_thread) {
        (Ok(s), Ok(c)) => (s, c),
        (s, c) => {
            abort(&shared);
            // The thread that did start sees the abort and ends on its own.
            drop((s, c));
            return Err(BenchError::ThreadDied("benchmark"));
        }
    };

    let window = measure_window(&shared);
    shared.update(|s| s.stop = true);

    // Collect both sides; a side that ignores the stop gets a short grace, then is left behind.
    let grace = shared.deadline.max(Instant::now()) + Duration::from_secs(2);
    let server_result = recv_until(&server_rx, grace);
    let client_result = recv_until(&client_rx, grace);
    if server_result.is_some() {
        let _ = server_thread.join();
    }
    if client_result.is_some() {
        let _ = client_thread.join();
    }

    let server = server_result.unwrap_or(Err(BenchError::Timeout(timeout)));
    let client = client_result.unwrap_or(Err(BenchError::Timeout(timeout)));
    match (window, server, client) {
        (Some(window), Ok(server), Ok(client)) => Ok(PairRun {
            server,
            client,
            window,
        }),
        (window, server, client) => {
            let mut errors: Vec<BenchError> =
                [server.err(), client.err()].into_iter().flatten().collect();
            if window.is_none() && errors.is_empty() {
                errors.push(BenchError::Timeout(timeout));
            }
            // Report the cause, not the other side's reaction to it.
            errors.sort_by_key(|e| matches!(e, BenchError::Aborted));
            Err(errors.swap_remove(0))
        }
    }
}

/// One side's handle on the pair: addresses, the window, and the deadline.
#[derive(Clone)]
pub(crate) struct Side {
    shared: Arc<PairShared>,
    role: Role,
}

impl Side {
    /// The hard deadline of the workload: every loop must end by then.
    pub(crate) fn deadline(&self) -> Instant {
        self.shared.deadline
    }

    /// Server: publishes the address the client should send to.
    pub(crate) fn listening(&self, addr: SocketAddr) {
        self.shared.update(|s| s.server_addr = Some(addr));
    }

    /// Client: waits for the server's address.
    pub(crate) async fn server_addr(&self) -> Result<SocketAddr, BenchError> {
        self.wait_for(|s| s.server_addr).await
    }

    /// Says this side is set up and waits until the window opens; returns the instant it opened.
    pub(crate) async fn ready(&self) -> Result<Instant, BenchError> {
        let role = self.role.index();
        self.shared.update(|s| s.ready[role] = true);
        self.wait_for(|s| s.opened_at).await
    }

    /// Says this side's measured part is over.
    pub(crate) fn finish(&self) {
        let role = self.role.index();
        self.shared.update(|s| s.finished[role] = true);
    }

    /// Resolves when the other side has finished, or at the deadline, or on abort.
    pub(crate) async fn peer_finished(&self) {
        let other = 1 - self.role.index();
        let _ = self.wait_for(|s| s.finished[other].then_some(())).await;
    }

    /// Resolves when the window has closed, or at the deadline, or on abort: time to tear down.
    pub(crate) async fn stopped(&self) {
        let _ = self.wait_for(|s| s.stop.then_some(())).await;
    }

    /// Runs `work` until it completes or the pair stops (window closed, abort, deadline);
    /// `None` if it was cut short. Race a whole hot loop against this once, rather than
    /// creating a stop future per message.
    pub(crate) async fn until_stopped<F: IntoFuture>(&self, work: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            output = work.into_future() => Some(output),
            () = self.stopped() => None,
        }
    }

    /// The error for work cut short by [`Side::until_stopped`]: the deadline or an abort.
    pub(crate) fn interrupted(&self) -> BenchError {
        if Instant::now() >= self.shared.deadline {
            BenchError::Timeout(self.shared.timeout)
        } else {
            BenchError::Aborted
        }
    }

    /// Waits until `check` returns a value, the pair is aborted, or the deadline passes.
    async fn wait_for<T>(&self, check: impl Fn(&PairState) -> Option<T>) -> Result<T, BenchError> {
        let deadline = tokio::time::Instant::from_std(self.shared.deadline);
        let wait = async {
            loop {
                let notified = self.shared.wake.notified();
                tokio::pin!(notified);
                // Register before checking, so that an update in between is not missed.
                notified.as_mut().enable();
                {
                    let state = self.shared.lock();
                    if let Some(value) = check(&state) {
                        return Ok(value);
                    }
                    if state.aborted {
                        return Err(BenchError::Aborted);
                    }
                }
                notified.await;
            }
        };
        match tokio::time::timeout_at(deadline, wait).await {
            Ok(result) => result,
            Err(_) => Err(BenchError::Timeout(self.shared.timeout)),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Role {
    Server,
    Client,
}

impl Role {
    fn index(self) -> usize {
        match self {
            Role::Server => 0,
            Role::Client => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
        }
    }
}

#[derive(Debug, Default)]
struct PairState {
    server_addr: Option<SocketAddr>,
    ready: [bool; 2],
    finished: [bool; 2],
    failed: bool,
    opened_at: Option<Instant>,
    stop: bool,
    aborted: bool,
}

struct PairShared {
    state: Mutex<PairState>,
    /// Wakes blocking waiters: the coordinating thread, and side threads waiting to exit.
    changed: Condvar,
    /// Wakes async waiters on the sides' runtimes.
    wake: tokio::sync::Notify,
    deadline: Instant,
    /// What `deadline` was set from, for error messages.
    timeout: Duration,
}

impl PairShared {
    fn lock(&self) -> MutexGuard<'_, PairState> {
        // A panicking side cannot leave the state half-updated: every update is one assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, change: impl FnOnce(&mut PairState)) {
        change(&mut self.lock());
        self.changed.notify_all();
        self.wake.notify_waiters();
    }

    /// Blocks until `done` holds or `until` passes; says whether `done` held.
    fn wait_blocking(&self, until: Instant, done: impl Fn(&PairState) -> bool) -> bool {
        let mut state = self.lock();
        loop {
            if done(&state) {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

fn abort(shared: &PairShared) {
    shared.update(|s| {
        s.stop = true;
        s.aborted = true;
    });
}

/// Opens the window when both sides are ready and closes it when both have finished; `None` on
/// a failure or the deadline (the pair is then aborted).
fn measure_window(shared: &PairShared) -> Option<Window> {
    let both_ready =
        shared.wait_blocking(shared.deadline, |s| s.failed || (s.ready[0] && s.ready[1]));
    if !both_ready || shared.lock().failed {
        abort(shared);
        return None;
    }
    let cpu_start = process_cpu();
    let softirq_start = machine_softirq();
    let opened = Instant::now();
    shared.update(|s| s.opened_at = Some(opened));

    let both_finished = shared.wait_blocking(shared.deadline, |s| {
        s.failed || (s.finished[0] && s.finished[1])
    });
    let cpu_end = process_cpu();
    let softirq_end = machine_softirq();
    if !both_finished || shared.lock().failed {
        abort(shared);
        return None;
    }
    Some(Window {
        cpu: cpu_end.saturating_sub(cpu_start),
        softirq: softirq_end.saturating_sub(softirq_start),
    })
}

fn spawn_side<T, F, G>(
    shared: &Arc<PairShared>,
    role: Role,
    body: F,
    result_tx: mpsc::Sender<Result<T, BenchError>>,
) -> Result<thread::JoinHandle<()>, BenchError>
where
    F: FnOnce(Side) -> G + Send + 'static,
    G: Future<Output = Result<T, BenchError>>,
    T: Send + 'static,
{
    let side = Side {
        shared: Arc::clone(shared),
        role,
    };
    thread::Builder::new()
        .name(format!("bench-{}", role.name()))
        .spawn(move || {
            let shared = Arc::clone(&side.shared);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let result = match &runtime {
                // A panic (already printed by the panic hook) fails this side like an error.
                Ok(rt) => panic::catch_unwind(AssertUnwindSafe(|| rt.block_on(body(side))))
                    .unwrap_or(Err(BenchError::ThreadDied(role.name()))),
                Err(e) => Err(BenchError::Failed {
                    what: "tokio runtime",
                    source: Box::new(std::io::Error::new(e.kind(), e.to_string())),
                }),
            };
            let index = role.index();
            let failed = result.is_err();
            shared.update(|s| {
                // Returning is finishing; returning an error fails the pair.
                s.ready[index] = true;
                s.finished[index] = true;
                s.failed |= failed;
            });
            // Stay alive (sockets open, CPU counted) until the window has closed.
            shared.wait_blocking(shared.deadline + Duration::from_secs(1), |s| s.stop);
            drop(runtime);
            let _ = result_tx.send(result);
        })
        .map_err(|_| BenchError::ThreadDied(role.name()))
}

fn recv_until<T>(rx: &mpsc::Receiver<T>, until: Instant) -> Option<T> {
    rx.recv_timeout(until.saturating_duration_since(Instant::now()))
        .ok()
}

// ---------------------------------------------------------------------------------------------
// CPU time
// ---------------------------------------------------------------------------------------------

/// CPU time (user + system) consumed so far by the threads of this process.
///
/// Source, in order of preference:
/// 1. The sum over `/proc/self/task/*/schedstat` of the first field: each thread's
///    `sum_exec_runtime`, in nanoseconds, exact and up to date even for a running thread. It
///    only covers live threads, which is why [`run_pair`] keeps both side threads alive until
///    the window has closed; the harness spawns no other threads (current-thread runtimes, no
///    blocking pool in use), and the coordinating thread sleeps in the window.
/// 2. If schedstat is unavailable: `utime + stime` from `/proc/self/stat` (fields 14 and 15,
///    which include exited threads), in clock ticks of 10 ms (`CLK_TCK` = 100 on Linux), so
///    each reading may be up to 10 ms short.
///
/// Without `unsafe` there is no `getrusage`, hence `/proc`.
pub(crate) fn process_cpu() -> Duration {
    schedstat_cpu().or_else(stat_cpu).unwrap_or_default()
}

fn schedstat_cpu() -> Option<Duration> {
    let mut total_ns: u64 = 0;
    let mut threads = 0;
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        // A thread may exit between the listing and the read; it is then simply not counted.
        let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
        total_ns += ns;
        threads += 1;
    }
    (threads > 0).then(|| Duration::from_nanos(total_ns))
}

fn stat_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace();
    // After the ')' the first field is field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis(
        (utime + stime) * 1000 / CLOCK_TICKS_PER_S,
    ))
}

/// Softirq time of all CPUs since boot: the `softirq` column of the `cpu` line of `/proc/stat`,
/// in 10 ms clock ticks.
///
/// With `CONFIG_IRQ_TIME_ACCOUNTING` (as on this kernel), the time a CPU spends in softirq is not
/// charged to the thread it interrupted, so loopback delivery (which runs in the sender's softirq)
/// is missing from [`process_cpu`]. This reading fills that gap, but it is system-wide: it is the
/// benchmark's own only when nothing else on the machine is moving packets.
pub(crate) fn machine_softirq() -> Duration {
    let ticks = std::fs::read_to_string("/proc/stat").ok().and_then(|stat| {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        // cpu user nice system idle iowait irq softirq ...
        line.split_whitespace().nth(7)?.parse::<u64>().ok()
    });
    Duration::from_millis(ticks.unwrap_or(0) * 1000 / CLOCK_TICKS_PER_S)
}

/// `sysconf(_SC_CLK_TCK)`, fixed at 100 by the Linux ABI for `/proc`.
const CLOCK_TICKS_PER_S: u64 = 100;

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

/// What one run of one workload by one peer gave: figures, nothing (not run by the peer), or
/// an error.
pub(crate) type Outcome = Result<Option<Figures>, BenchError>;

/// One cell of the output: a workload run by a peer.
#[derive(Debug)]
pub(crate) enum Cell {
    /// Measured in every run.
    Measured {
        /// The field-by-field median of the runs.
        figures: Figures,
        /// Each run's figures, in run order (for same-run ratios).
        runs: Vec<Figures>,
    },
    /// At least one run failed.
    Failed(String),
}

impl Cell {
    /// Folds the outcomes of several runs: `None` if the peer does not run the workload.
    pub(crate) fn from_runs(runs: Vec<Outcome>) -> Option<Cell> {
        let mut measured = Vec::new();
        for run in runs {
            match run {
                Ok(Some(figures)) => measured.push(figures),
                Ok(None) => {}
                Err(e) => return Some(Cell::Failed(e.to_string())),
            }
        }
        if measured.is_empty() {
            return None;
        }
        Some(Cell::Measured {
            figures: Figures::median(&measured),
            runs: measured,
        })
    }
}

/// Everything the run produced.
#[derive(Debug)]
pub(crate) struct Report {
    /// `"<nproc> x <cpu model>"`.
    pub(crate) machine: String,
    /// The command line.
    pub(crate) command: String,
    /// Whether `--quick` shrank the workloads.
    pub(crate) quick: bool,
    /// The configs the workloads ran with.
    pub(crate) configs: Configs,
    /// Runs per cell (medians are reported).
    pub(crate) runs: usize,
    /// Cells by workload, then peer.
    pub(crate) cells: BTreeMap<Workload, BTreeMap<Peer, Cell>>,
}

impl Report {
    /// Whether any cell failed.
    pub(crate) fn has_failures(&self) -> bool {
        self.cells
            .values()
            .flat_map(BTreeMap::values)
            .any(|c| matches!(c, Cell::Failed(_)))
    }

    /// The JSON object described in issue 3, plus `command`, `mode`, `runs`, `workload_notes`.
    pub(crate) fn to_json(&self) -> Value {
        let mut workloads = Map::new();
        let mut ratios = Map::new();
        let mut notes = Map::new();
        for (&workload, peers) in &self.cells {
            let mut by_peer = Map::new();
            for (&peer, cell) in peers {
                let value = match cell {
                    Cell::Measured { figures, .. } => Value::Object(
                        figures
                            .0
                            .iter()
                            .map(|&(name, v)| (name.to_owned(), json_number(v)))
                            .collect(),
                    ),
                    Cell::Failed(error) => json!({ "error": error }),
                };
                by_peer.insert(peer.name().to_owned(), value);
            }
            workloads.insert(workload.id().to_owned(), Value::Object(by_peer));
            notes.insert(
                workload.id().to_owned(),
                Value::String(self.configs.describe(workload)),
            );

            let mut ratio_peers = Map::new();
            for &peer in peers.keys() {
                let mut ratio_fields = Map::new();
                for &field in workload.ratio_fields() {
                    let mut against = Map::new();
                    for base in [Peer::RawUdp, Peer::Quinn] {
                        if let Some(r) = self.ratio(workload, peer, base, field) {
                            against.insert(format!("vs_{}", base.name()), json_number(r));
                        }
                    }
                    if !against.is_empty() {
                        ratio_fields.insert(field.to_owned(), Value::Object(against));
                    }
                }
                if !ratio_fields.is_empty() {
                    ratio_peers.insert(peer.name().to_owned(), Value::Object(ratio_fields));
                }
            }
            if !ratio_peers.is_empty() {
                ratios.insert(workload.id().to_owned(), Value::Object(ratio_peers));
            }
        }
        json!({
            "machine": self.machine,
            "command": self.command,
            "mode": if self.quick { "quick" } else { "full" },
            "runs": self.runs,
            "workload_notes": notes,
            "workloads": workloads,
            "ratios": ratios,
        })
    }

    /// A readable table per workload, with the headline field's ratios against raw_udp and quinn.
    pub(crate) fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Tickwire loopback benchmark: {} ({} mode, median of {} run(s))",
            self.machine,
            if self.quick { "quick" } else { "full" },
            self.runs
        );
        for (&workload, peers) in &self.cells {
            let _ = writeln!(
                out,
                "\n{}: {}",
                workload.id(),
                self.configs.describe(workload)
            );
            let columns = workload.table_columns();
            let (headline, headline_label) = columns[0];
            let _ = write!(out, "  {:<12}", "peer");
            for &(_, label) in columns {
                let _ = write!(out, " {label:>COLUMN$}");
            }
            let _ = writeln!(out, " {:>COLUMN$} {:>COLUMN$}", "vs raw_udp", "vs quinn");
            for (&peer, cell) in peers {
                let _ = write!(out, "  {:<12}", peer.name());
                let figures = match cell {
                    Cell::Failed(e) => {
                        let _ = writeln!(out, " FAILED: {e}");
                        continue;
                    }
                    Cell::Measured { figures, .. } => figures,
                };
                for &(field, _) in columns {
                    let shown = figures
                        .value(field)
                        .map_or_else(|| "-".to_owned(), format_value);
                    let _ = write!(out, " {shown:>COLUMN$}");
                }
                for base in [Peer::RawUdp, Peer::Quinn] {
                    let shown = self
                        .ratio(workload, peer, base, headline)
                        .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x"));
                    let _ = write!(out, " {shown:>COLUMN$}");
                }
                let _ = writeln!(out);
            }
            let _ = writeln!(
                out,
                "  (ratios: {headline_label} of the peer / of the baseline in the same run, median \
                 over runs; all fields in --json)"
            );
        }
        out
    }

    /// `peer`'s `field` over `base`'s: the median over runs of the ratio within each run (as
    /// `workloads.md` asks: ratios against a baseline of the same run, then the median), when
    /// both were measured in every run and the ratios are finite.
    fn ratio(&self, workload: Workload, peer: Peer, base: Peer, field: &str) -> Option<f64> {
        if peer == base {
            return None;
        }
        let runs = |p: Peer| match self.cells.get(&workload)?.get(&p)? {
            Cell::Measured { runs, .. } => Some(runs),
            Cell::Failed(_) => None,
        };
        let (peer_runs, base_runs) = (runs(peer)?, runs(base)?);
        if peer_runs.len() != base_runs.len() {
            return None;
        }
        let ratios: Option<Vec<f64>> = peer_runs
            .iter()
            .zip(base_runs)
            .map(|(p, b)| {
                let ratio = p.value(field)? / b.value(field)?;
                ratio.is_finite().then_some(ratio)
            })
            .collect();
        median(ratios?)
    }
}

/// `"<nproc> x <model name>"` from `available_parallelism` (what `nproc` prints) and
/// `/proc/cpuinfo`.
pub(crate) fn machine() -> String {
    let nproc = thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{nproc} x {model}")
}

/// Rounds to what the measurement can support; non-finite values become `null`.
fn json_number(v: f64) -> Value {
    let rounded = if v.abs() >= 1000.0 {
        v.round()
    } else {
        (v * 1000.0).round() / 1000.0
    };
    if rounded.fract() == 0.0 && rounded.abs() < 1e15 {
        // Counts, and figures rounded to a whole number, print without a fraction.
        return Value::from(rounded as i64);
    }
    serde_json::Number::from_f64(rounded).map_or(Value::Null, Value::Number)
}

fn describe_buffer(bytes: usize) -> String {
    if bytes == 0 {
        "OS default".to_owned()
    } else {
        format!("{} KiB requested", bytes / 1024)
    }
}

fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return "-".to_owned();
    }
    if v.abs() >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v.abs() >= 1e4 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() < 1.0 {
        format!("{v:.4}")
    } else {
        format!("{v:.2}")
    }
}

/// Width of a table column.
const COLUMN: usize = 11;

const MIB: u64 = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=1000).map(Duration::from_micros).collect();
        assert_eq!(percentile(&samples, 0.5), Duration::from_micros(500));
        assert_eq!(percentile(&samples, 0.99), Duration::from_micros(990));
        assert_eq!(percentile(&samples, 0.999), Duration::from_micros(999));
        assert_eq!(percentile(&samples[..1], 0.999), Duration::from_micros(1));
    }

    #[test]
    fn median_of_runs_is_per_field() {
        let runs = vec![
            Figures(vec![("a", 3.0), ("b", 10.0)]),
            Figures(vec![("a", 1.0), ("b", 30.0)]),
            Figures(vec![("a", 2.0), ("b", 20.0)]),
        ];
        assert_eq!(
            Figures::median(&runs),
            Figures(vec![("a", 2.0), ("b", 20.0)])
        );
    }
}
