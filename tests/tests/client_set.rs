//! `ClientSet` over real loopback sockets: many clients on one thread connect to a tokio
//! `Server`, each gets its own message echoed back, the server tells them apart by address,
//! a graceful disconnect reaches the server, and an unanswered handshake ends in an event.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tickwire::{
    ChannelId, ClientKey, ClientSet, ClientSetError, DisconnectReason, DriverConfig, Event, Server,
    Transport,
};

/// Every wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(10);
const CLIENTS: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_on_one_thread_echo_and_disconnect() {
    let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), DriverConfig::server())
        .await
        .unwrap();
    let addr = server.local_addr();
    // Echo every message; count graceful disconnects.
    let echo = tokio::spawn(async move {
        let mut remote_closes = 0;
        while remote_closes < CLIENTS {
            match tokio::time::timeout(LIMIT, server.next_event()).await {
                Ok(Some(Event::Message {
                    connection,
                    channel,
                    data,
                })) => {
                    let _ = server.send(connection, channel, data);
                }
                Ok(Some(Event::Disconnected {
                    reason: DisconnectReason::Remote { code: 7 },
                    ..
                })) => remote_closes += 1,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        remote_closes
    });
    let clients = tokio::task::spawn_blocking(move || {
        let mut set = ClientSet::new().unwrap();
        let now = Instant::now();
        let keys: Vec<ClientKey> = (0..CLIENTS)
            .map(|_| set.connect(addr, DriverConfig::client(), now).unwrap())
            .collect();
        let ports: HashSet<u16> = keys
            .iter()
            .map(|&k| set.local_addr(k).unwrap().port())
            .collect();
        assert_eq!(ports.len(), CLIENTS, "each client has its own socket");
        let index: HashMap<ClientKey, usize> = keys.iter().copied().zip(0..).collect();
        let mut echoed = [false; CLIENTS];
        let deadline = Instant::now() + LIMIT;
        while echoed.iter().any(|e| !e) {
            assert!(Instant::now() < deadline, "every echo within {LIMIT:?}");
            set.wait(Some(Duration::from_millis(20))).unwrap();
            set.update(Instant::now()).unwrap();
            while let Some((key, event)) = set.poll_event() {
                let i = index[&key];
                match event {
                    Event::Connected { .. } => {
                        let message = Bytes::from((i as u32).to_be_bytes().to_vec());
                        set.send(key, ChannelId(2), message).unwrap();
                    }
                    Event::Message { data, .. } => {
                        assert_eq!(&data[..], &(i as u32).to_be_bytes(), "its own echo");
                        echoed[i] = true;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            set.flush(Instant::now()).unwrap();
        }
        assert!(keys.iter().all(|&k| set.is_connected(k)));
        let now = Instant::now();
        for &key in &keys {
            set.disconnect(key, 7, now);
        }
        // Closed clients leave the set once their goodbyes are out.
        let deadline = Instant::now() + LIMIT;
        while !set.is_empty() {
            assert!(
                Instant::now() < deadline,
                "closed clients removed within {LIMIT:?}"
            );
            let wait = set
                .next_deadline()
                .map(|at| at.saturating_duration_since(Instant::now()));
            set.wait(wait.map(|w| w.min(Duration::from_millis(50))))
                .unwrap();
            set.update(Instant::now()).unwrap();
            assert!(set.poll_event().is_none(), "no events after disconnect");
        }
        assert!(!set.contains(keys[0]));
    });
    clients.await.unwrap();
    assert_eq!(
        echo.await.unwrap(),
        CLIENTS,
        "every goodbye reached the server"
    );
}

#[test]
fn an_unanswered_handshake_ends_in_an_event_and_the_client_leaves() {
    // A bound socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut config = DriverConfig::client();
    config.endpoint.handshake_timeout = Duration::from_millis(300);
    let mut set = ClientSet::new().unwrap();
    let key = set
        .connect(silent.local_addr().unwrap(), config, Instant::now())
        .unwrap();
    let deadline = Instant::now() + LIMIT;
    let reason = loop {
        assert!(
            Instant::now() < deadline,
            "the handshake ends within {LIMIT:?}"
        );
        set.wait(Some(Duration::from_millis(50))).unwrap();
        set.update(Instant::now()).unwrap();
        if let Some((k, Event::Disconnected { reason, .. })) = set.poll_event() {
            assert_eq!(k, key);
            break reason;
        }
    };
    assert_eq!(reason, DisconnectReason::HandshakeTimeout);
    assert!(set.is_empty() && !set.contains(key));
    let refused = set.send(key, ChannelId(0), Bytes::from_static(b"x"));
    assert!(refused.is_err());
}

#[test]
fn quic_is_refused() {
    let mut set = ClientSet::new().unwrap();
    let config = DriverConfig {
        transport: Transport::Quic,
        ..DriverConfig::client()
    };
    let refused = set.connect("127.0.0.1:9".parse().unwrap(), config, Instant::now());
    assert!(matches!(
        refused,
        Err(ClientSetError::NotNative(Transport::Quic))
    ));
}
