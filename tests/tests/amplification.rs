//! Amplification over real loopback sockets: for every packet kind an unvalidated address can
//! send to a running server (unsecured and secure), the bytes that come back to the sender's
//! socket are at most the bytes it sent, at most one datagram comes back per datagram sent, and
//! nothing arrives after the first reply (no retransmission to an unvalidated address).
//!
//! The measured ratios are listed in `engine/PROTOCOL.md`, "Amplification and spoofing".

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tickwire::{
    ClientId, Config, DriverConfig, PrivateKey, Security, Server, TokenSecurity, TokenSpec,
};

/// How long a probe listens for replies after its last datagram (and after each reply).
const QUIET: Duration = Duration::from_millis(100);
/// How long the valid request's probe listens: long enough to see a retransmission if the
/// server had a retransmission timer for unvalidated addresses (the client's resend interval
/// is shorter).
const LONG_QUIET: Duration = Duration::from_millis(1000);
/// At most this many replies are read per probe, whatever arrives.
const MAX_READS: usize = 4096;
/// Default layout fingerprint (`engine/PROTOCOL.md`, "Example").
const FINGERPRINT: u32 = 0x85c0_c859;
/// The cookie lifetime the servers under test use, so that an expired cookie is quick to get.
const COOKIE_LIFETIME: Duration = Duration::from_millis(400);
/// The issue's goal for the reply/request byte ratio.
const GOAL: f64 = 0.35;

/// What came back to one fresh socket for what it sent.
#[derive(Debug, Default)]
struct Probe {
    sent_datagrams: usize,
    sent_bytes: usize,
    replies: Vec<usize>,
}

impl Probe {
    fn ratio(&self) -> f64 {
        self.replies.iter().sum::<usize>() as f64 / self.sent_bytes.max(1) as f64
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A socket bound to a fresh loopback port with a short read timeout.
fn fresh_socket() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(QUIET)).unwrap();
    socket
}

/// Sends every datagram from `socket` to `server`, then reads replies until `QUIET` passes
/// without one (bounded by `MAX_READS`).
fn probe_from(socket: &UdpSocket, server: SocketAddr, datagrams: &[Vec<u8>]) -> Probe {
    let mut probe = Probe::default();
    for datagram in datagrams {
        socket.send_to(datagram, server).unwrap();
        probe.sent_datagrams += 1;
        probe.sent_bytes += datagram.len();
    }
    let mut buf = vec![0u8; 65_536];
    for _ in 0..MAX_READS {
        match socket.recv_from(&mut buf) {
            Ok((len, from)) => {
                assert_eq!(from, server);
                probe.replies.push(len);
            }
            Err(_) => break,
        }
    }
    probe
}

fn probe(server: SocketAddr, datagrams: &[Vec<u8>]) -> Probe {
    probe_from(&fresh_socket(), server, datagrams)
}

/// The three rules for one kind; returns the ratio.
fn check(kind: &str, probe: &Probe) -> f64 {
    let ratio = probe.ratio();
    eprintln!(
        "{kind:<40} in {:>6} B / {:>4} dgrams, out {:>5} B / {:>3} dgrams, ratio {ratio:.4}",
        probe.sent_bytes,
        probe.sent_datagrams,
        probe.replies.iter().sum::<usize>(),
        probe.replies.len()
    );
    assert!(ratio <= 1.0, "{kind}: amplification {ratio}");
    assert!(
        probe.replies.len() <= probe.sent_datagrams,
        "{kind}: {} replies to {} datagrams",
        probe.replies.len(),
        probe.sent_datagrams
    );
    ratio
}

fn be(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes);
}

/// A connect request header (unsecured `0x20` or secure `0x21`) without padding.
fn request_head(
    first: u8,
    version: u16,
    protocol_id: u64,
    fingerprint: u32,
    nonce: u64,
) -> Vec<u8> {
    let mut out = vec![first];
    be(&mut out, &version.to_be_bytes());
    be(&mut out, &protocol_id.to_be_bytes());
    be(&mut out, &fingerprint.to_be_bytes());
    be(&mut out, &nonce.to_be_bytes());
    out
}

fn padded(mut datagram: Vec<u8>, len: usize) -> Vec<u8> {
    datagram.resize(len.max(datagram.len()), 0);
    datagram
}

/// The unsecured connect response for `nonce` and `cookie`.
fn response(nonce: u64, cookie: &[u8]) -> Vec<u8> {
    let mut out = request_head(0x60, 1, Config::default().protocol_id, FINGERPRINT, nonce);
    be(&mut out, cookie);
    out
}

/// Every proper prefix (length 1 to len - 1) of `datagram`.
fn truncations(datagram: &[u8]) -> Vec<Vec<u8>> {
    (1..datagram.len())
        .map(|n| datagram[..n].to_vec())
        .collect()
}

/// Deterministic garbage: `count` datagrams of 1 to 1400 bytes.
fn garbage(count: usize, mut state: u64) -> Vec<Vec<u8>> {
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let len = 1 + (next() % 1400) as usize;
            (0..len).map(|_| next() as u8).collect()
        })
        .collect()
}

/// Packets of kinds the server never accepts from an unvalidated address, and data packets.
fn stray_packets(nonce: u64) -> Vec<(&'static str, Vec<u8>)> {
    let n = nonce.to_be_bytes();
    let mut data_ping = vec![0x00, 0x00, 0x07, 0x80];
    let data_ack = {
        let mut d = vec![0x10, 0x00, 0x01, 0x00, 0x05, 0xff, 0xff, 0xff, 0xff, 0x80];
        d.extend_from_slice(&[0x41, 0x00, 0x01, 0x02, 0x01, 0x04, 1, 2, 3, 4]);
        d
    };
    let mut big_data = vec![0x00, 0x00, 0x09];
    big_data.extend(std::iter::repeat_n(0x80, 1497));
    let mut max_data = vec![0x00, 0x00, 0x0a];
    max_data.extend(std::iter::repeat_n(0x80, 65_504));
    data_ping.extend_from_slice(&[0x00, 0x05, b'h', b'i']);
    vec![
        ("data (ping + message)", data_ping),
        ("data (ack + fragment)", data_ack),
        ("data above the MTU (1500 B)", big_data),
        ("data at the maximum UDP size", max_data),
        ("challenge", [&[0x40][..], &n, &[7; 24]].concat()),
        ("accept", [&[0x80][..], &n].concat()),
        (
            "secure accept",
            [&[0x81][..], &n, &[1; 8], &[2; 16]].concat(),
        ),
        ("reject", [&[0xa0][..], &n, &[1]].concat()),
        ("disconnect", [&[0xc0][..], &n, &[0, 7]].concat()),
        (
            "secure disconnect",
            [&[0xc1][..], &n, &[0, 7], &[3; 16]].concat(),
        ),
        (
            "data naming a session (secure layout)",
            [&[0x04, 0x00, 0x0b][..], &n, &[0x80], &[9; 16]].concat(),
        ),
        (
            "no-session packet, padded",
            [&[0xe0][..], &n, &[0; 40]].concat(),
        ),
    ]
}

/// Runs every probe against `server`; `request` builds a valid connect request for a nonce
/// (unsecured or secure), `response` a response for a nonce and cookie. Returns the largest
/// ratio seen, after asserting that it meets the goal.
fn probe_every_kind(
    server: SocketAddr,
    request: &dyn Fn(u64) -> Vec<u8>,
    response: &dyn Fn(u64, &[u8]) -> Vec<u8>,
) -> f64 {
    let mut ratios = Vec::new();
    let mut record =
        |kind: &str, probe: Probe| ratios.push((kind.to_string(), check(kind, &probe)));

    // A valid request: exactly one challenge, nothing after it. Keep its cookie.
    let holder = fresh_socket();
    let valid = request(0x1001);
    holder.set_read_timeout(Some(LONG_QUIET)).unwrap();
    let first = probe_from(&holder, server, std::slice::from_ref(&valid));
    holder.set_read_timeout(Some(QUIET)).unwrap();
    assert_eq!(first.replies.len(), 1, "a valid request gets one challenge");
    let mut buf = [0u8; 64];
    holder.send_to(&valid, server).unwrap();
    let (len, _) = holder.recv_from(&mut buf).unwrap();
    assert_eq!(len, 33);
    let cookie = buf[9..33].to_vec();
    let cookie_issued = Instant::now();
    record("request, valid (padded to 1200)", first);
    record(
        "request, padded to 1500",
        probe(server, &[padded(valid.clone(), 1500)]),
    );
    record(
        "request, at the maximum UDP size",
        probe(server, &[padded(valid.clone(), 65_507)]),
    );

    // Below the padded minimum: every length from 1 to 1199.
    record(
        "request, every truncation (1-1199 B)",
        probe(server, &truncations(&valid)),
    );
    let unpadded: Vec<u8> = valid.iter().copied().take(200).collect();
    record("request, unpadded 200 B", probe(server, &[unpadded]));

    // Refusals: one reject each, 10 B for 1200.
    let protocol_id = Config::default().protocol_id;
    let mut wrong_version = valid.clone();
    wrong_version[1..3].copy_from_slice(&9u16.to_be_bytes());
    record("request, wrong version", probe(server, &[wrong_version]));
    let mut wrong_protocol = valid.clone();
    wrong_protocol[3..11].copy_from_slice(&(protocol_id ^ 1).to_be_bytes());
    record(
        "request, wrong protocol id",
        probe(server, &[wrong_protocol]),
    );
    let mut wrong_layout = valid.clone();
    wrong_layout[11..15].copy_from_slice(&(FINGERPRINT ^ 1).to_be_bytes());
    record(
        "request, wrong layout fingerprint",
        probe(server, &[wrong_layout]),
    );

    // Responses with a bad cookie, and a good one from another address.
    let mut tampered = cookie.clone();
    tampered[20] ^= 0x01;
    record(
        "response, tampered cookie",
        probe(server, &[response(0x1001, &tampered)]),
    );
    record(
        "response, forged cookie",
        probe(server, &[response(0x1001, &[0x5a; 24])]),
    );
    let mut wrong_time = cookie.clone();
    wrong_time[7] ^= 0x01;
    record(
        "response, tampered issue time",
        probe(server, &[response(0x1001, &wrong_time)]),
    );
    record(
        "response, cookie of another nonce",
        probe(server, &[response(0x1003, &cookie)]),
    );
    record(
        "response, valid cookie from another address",
        probe(server, &[response(0x1001, &cookie)]),
    );
    record(
        "response, every truncation",
        probe(server, &truncations(&response(0x1001, &cookie))),
    );

    // Other kinds and data from an unknown address, and their truncations.
    for (kind, datagram) in stray_packets(0x1001) {
        let cut = truncations(&datagram[..datagram.len().min(64)]);
        record(kind, probe(server, &[datagram]));
        record(&format!("{kind}, truncations"), probe(server, &cut));
    }
    record("zero-length datagram", probe(server, &[Vec::new()]));
    record(
        "garbage (200 datagrams)",
        probe(server, &garbage(200, 0x9e37_79b9_7f4a_7c15)),
    );

    // An expired cookie, from the address it was issued to: wait (bounded) until it is.
    let mut spare = [0u8; 64];
    for _ in 0..40 {
        if cookie_issued.elapsed() > COOKIE_LIFETIME * 2 {
            break;
        }
        let _ = holder.recv_from(&mut spare);
    }
    assert!(cookie_issued.elapsed() > COOKIE_LIFETIME * 2);
    record(
        "response, expired cookie",
        probe_from(&holder, server, &[response(0x1001, &cookie)]),
    );

    let (worst_kind, worst) =
        ratios
            .iter()
            .cloned()
            .fold((String::new(), 0.0), |a, b| if b.1 > a.1 { b } else { a });
    eprintln!("largest ratio: {worst:.4} ({worst_kind}); goal {GOAL}");
    assert!(
        worst <= GOAL,
        "{worst_kind}: ratio {worst} above the goal {GOAL}"
    );
    worst
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn unsecured_server_never_amplifies() {
    let rt = runtime();
    let mut config = DriverConfig::server();
    config.endpoint.cookie_lifetime = COOKIE_LIFETIME;
    let server = rt
        .block_on(Server::bind("127.0.0.1:0".parse().unwrap(), config))
        .unwrap();
    let addr = server.local_addr();
    let protocol_id = Config::default().protocol_id;
    let request = |nonce: u64| padded(request_head(0x20, 1, protocol_id, FINGERPRINT, nonce), 1200);
    probe_every_kind(addr, &request, &response);
    let stats = server.endpoint_stats();
    assert!(server.connections().is_empty());
    assert!(stats.dropped.request_too_small >= 1199);
    assert!(stats.dropped.cookie_invalid >= 1);
    rt.block_on(server.shutdown());
}

#[test]
fn secure_server_never_amplifies() {
    let rt = runtime();
    let key = PrivateKey::generate();
    let addr = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = DriverConfig::server();
    config.endpoint.cookie_lifetime = COOKIE_LIFETIME;
    config.endpoint.security =
        Security::Tokens(TokenSecurity::new(key.clone(), vec![addr], unix_now()));
    let server = rt.block_on(Server::bind(addr, config)).unwrap();
    let protocol_id = Config::default().protocol_id;
    let token = TokenSpec::new(protocol_id, ClientId(5), vec![addr])
        .issue(&key, unix_now())
        .unwrap()
        .to_bytes();
    // Public part with one IPv4 server: 33 + 8 + 64 bytes, then the sealed length and part.
    let sealed = token[107..].to_vec();
    assert_eq!(
        u16::from_be_bytes([token[105], token[106]]) as usize,
        sealed.len()
    );
    let with_token = |mut out: Vec<u8>| {
        out.extend_from_slice(&(sealed.len() as u16).to_be_bytes());
        out.extend_from_slice(&sealed);
        out
    };
    let request = |nonce: u64| {
        padded(
            with_token(request_head(0x21, 1, protocol_id, FINGERPRINT, nonce)),
            1200,
        )
    };
    let response = |nonce: u64, cookie: &[u8]| {
        let mut out = request_head(0x61, 1, protocol_id, FINGERPRINT, nonce);
        out.extend_from_slice(cookie);
        with_token(out)
    };
    probe_every_kind(addr, &request, &response);
    // Unsecured handshakes and forged tokens get nothing either.
    let unsecured = padded(
        request_head(0x20, 1, protocol_id, FINGERPRINT, 0x2001),
        1200,
    );
    check(
        "unsecured request to a secure server",
        &probe(addr, &[unsecured]),
    );
    let mut forged = request(0x2003);
    forged[100] ^= 0x01;
    let forged_probe = probe(addr, &[forged]);
    check("request, tampered token", &forged_probe);
    assert!(forged_probe.replies.is_empty());
    assert!(server.connections().is_empty());
    rt.block_on(server.shutdown());
}
