//! Floods over real loopback sockets against a running `tickwire::Server`: connection requests
//! from 10,000 different source ports (sockets opened and closed in batches). Each request
//! gets at most its one challenge, the server keeps no state for any of them, and the honest
//! client keeps exchanging messages between batches. (The flood of first fragments is in
//! `hostile_fragments.rs`; the hostile-flood load run of `../shared/workloads.md` L1 is a
//! separate benchmark.)

#[path = "support/hostile.rs"]
mod hostile;

use std::time::{Duration, Instant};

use hostile::{fingerprint, protocol_id, Target};
use tickwire::fuzzing::forge::{self, Reply};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

const SENDERS: usize = 10_000;
/// Sockets open at once (the test process may hold 20,000 file descriptors).
const BATCH: usize = 250;
/// How long each socket waits for its challenge.
const REPLY_WAIT: Duration = Duration::from_secs(2);
/// Livelock bound for the whole flood; the run takes a few seconds.
const FLOOD_LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_from_ten_thousand_ports_cost_no_state() {
    let mut target = Target::start().await;
    let server = target.addr;
    let start = Instant::now();
    let before = target.server.endpoint_stats();
    let mut challenges = 0usize;
    for batch in 0..SENDERS / BATCH {
        let mut sockets = Vec::with_capacity(BATCH);
        for _ in 0..BATCH {
            sockets.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        }
        let mut replies = JoinSet::new();
        for (i, socket) in sockets.into_iter().enumerate() {
            let nonce = ((batch * BATCH + i) as u64) << 1 | 1;
            let request =
                forge::request(forge::PROTOCOL_VERSION, protocol_id(), fingerprint(), nonce);
            socket.send_to(&request, server).await.unwrap();
            replies.spawn(async move {
                let mut buf = [0u8; 2048];
                let mut got = Vec::new();
                // The first reply, then a short listen for a second that must not come.
                let mut wait = REPLY_WAIT;
                while let Ok(Ok((len, from))) =
                    tokio::time::timeout(wait, socket.recv_from(&mut buf)).await
                {
                    assert_eq!(from, server);
                    got.push((forge::reply(&buf[..len]), len));
                    wait = Duration::from_millis(20);
                    if got.len() > 1 {
                        break;
                    }
                }
                (nonce, got)
            });
        }
        while let Some(result) = replies.join_next().await {
            let (nonce, got) = result.expect("a reply task panicked");
            assert!(got.len() <= 1, "{} replies to one request", got.len());
            if let Some((reply, len)) = got.first() {
                assert_eq!(*len, 33);
                assert!(
                    matches!(reply, Some(Reply::Challenge { nonce: n, .. }) if *n == nonce),
                    "{reply:?}"
                );
                challenges += 1;
            }
        }
        // The batch's sockets are closed here. No state anywhere, and the honest client is
        // served between batches.
        target.assert_connections(&[]);
        if batch % 8 == 0 {
            target.round_trip().await;
        }
        assert!(start.elapsed() < FLOOD_LIMIT, "the flood took too long");
    }
    let sent = SENDERS as u64;
    let after = target
        .stats_when(|s| s.datagrams_received >= before.datagrams_received + sent)
        .await;
    let refused = after.dropped.reply_queue_full - before.dropped.reply_queue_full;
    eprintln!(
        "{SENDERS} requests from {SENDERS} ports: {challenges} challenges, {refused} replies \
         dropped by the reply queue bound, {:?}",
        start.elapsed()
    );
    assert!(challenges as u64 + refused >= sent * 99 / 100);
    assert_eq!(after.connections_opened, before.connections_opened);
    target.assert_connections(&[]);
    target.round_trip().await;
    target.shutdown().await;
}
