//! Scenarios every runtime adapter must pass, on loopback.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::channel::mpsc;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use relay_proto::Event;
use relay_proto::identity::keypair_from_seed;
use relay_proto::node::Config;
use relay_runtime::perf::{self, PerfServed};
use relay_runtime::{Error, Handle, Runtime};

use crate::{echo, exchange, payload, sha256};

mod autorelay;
pub use autorelay::{auto_relay_not_enabled, auto_relay_with_peer_source};

/// The echo protocol of the suite.
pub const ECHO: &str = "/echo/1.0.0";

const LOOPBACK: &str = "127.0.0.1:0";

/// Runs `future`, failing the test if it takes longer than `limit`.
pub async fn within<R: Runtime, T>(rt: &R, limit: Duration, future: impl Future<Output = T>) -> T {
    let timer = rt.sleep_until(Instant::now() + limit);
    futures::pin_mut!(future);
    match futures::future::select(future, timer).await {
        futures::future::Either::Left((value, _)) => value,
        futures::future::Either::Right(_) => panic!("scenario did not finish within {limit:?}"),
    }
}

/// Starts a node on loopback with a deterministic key.
pub fn node<R: Runtime>(rt: &R, seed: u8, config: Config) -> Handle {
    relay_runtime::Builder::default()
        .keypair(keypair_from_seed(seed))
        .config(config)
        .rng_seed([seed; 32])
        .listen(LOOPBACK.parse().expect("valid"))
        .start(rt.clone())
        .expect("node starts")
}

/// Serves the echo protocol on `node` until it stops.
pub fn serve_echo<R: Runtime>(rt: &R, node: &Handle) {
    let mut incoming = node.accept(ECHO).expect("running");
    let spawner = rt.clone();
    rt.spawn(Box::pin(async move {
        while let Some(stream) = incoming.next().await {
            spawner.spawn(Box::pin(async move {
                let _ = echo(stream).await;
            }));
        }
    }));
}

fn addr_of(node: &Handle) -> relay_proto::Multiaddr {
    let addr = node.listen_addrs()[0].clone();
    addr.with(relay_proto::multiaddr::Protocol::P2p(node.peer_id()))
}

/// Two nodes connect, identify each other and ping.
pub async fn connect_identify_ping<R: Runtime>(rt: R) {
    within(&rt, Duration::from_secs(20), async {
        let a = node(&rt, 1, Config::default());
        let b = node(&rt, 2, Config::default());
        let mut events = a.events().unwrap();
        let peer = a.dial(addr_of(&b)).await.expect("dial succeeds");
        assert_eq!(peer, b.peer_id());
        loop {
            match events.next().await.expect("node running") {
                Event::Identified { peer, info, .. } => {
                    assert_eq!(peer, b.peer_id());
                    assert!(
                        info.protocols
                            .iter()
                            .any(|p| p == relay_proto::ping::PROTOCOL)
                    );
                    assert_eq!(info.listen_addrs, b.listen_addrs());
                    break;
                }
                Event::IdentifyFailed { error, .. } => panic!("identify failed: {error}"),
                _ => {}
            }
        }
        let rtt = a.ping(b.peer_id()).await.expect("ping succeeds");
        assert!(rtt < Duration::from_secs(5));
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
}

/// 16 MiB each way over one stream arrive intact.
pub async fn large_echo<R: Runtime>(rt: R) {
    within(&rt, Duration::from_secs(120), async {
        let a = node(&rt, 3, Config::default());
        let b = node(&rt, 4, Config::default());
        serve_echo(&rt, &b);
        a.dial(addr_of(&b)).await.unwrap();
        let stream = a.open_stream(b.peer_id(), ECHO).await.unwrap();
        let data = payload(16 << 20, 7);
        let back = exchange(stream, &data).await.unwrap();
        assert_eq!(back.len(), data.len());
        assert_eq!(sha256(&back), sha256(&data));
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
}

/// 100 streams at once on one connection.
pub async fn concurrent_streams<R: Runtime>(rt: R) {
    within(&rt, Duration::from_secs(60), async {
        let a = node(&rt, 5, Config::default());
        let b = node(&rt, 6, Config::default());
        serve_echo(&rt, &b);
        a.dial(addr_of(&b)).await.unwrap();
        let tasks = (0..100u64).map(|i| {
            let a = a.clone();
            let peer = b.peer_id();
            async move {
                let stream = a.open_stream(peer, ECHO).await.unwrap();
                let data = payload(64 * 1024 + i as usize, i);
                let back = exchange(stream, &data).await.unwrap();
                assert_eq!(back, data, "stream {i}");
            }
        });
        futures::future::join_all(tasks).await;
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
}

/// A protocol the peer does not serve is refused; the connection stays usable.
pub async fn unknown_protocol<R: Runtime>(rt: R) {
    within(&rt, Duration::from_secs(20), async {
        let a = node(&rt, 7, Config::default());
        let b = node(&rt, 8, Config::default());
        serve_echo(&rt, &b);
        a.dial(addr_of(&b)).await.unwrap();
        let error = a
            .open_stream(b.peer_id(), "/nobody/1.0.0")
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::Stream(ref e) if e.contains("not supported")),
            "{error}"
        );
        let mut stream = a.open_stream(b.peer_id(), ECHO).await.unwrap();
        stream.write_all(b"still here").await.unwrap();
        stream.close().await.unwrap();
        let mut back = Vec::new();
        stream.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"still here");
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
}

/// Dialing an address with the wrong `/p2p/` peer fails the handshake.
pub async fn wrong_peer_id<R: Runtime>(rt: R) {
    within(&rt, Duration::from_secs(20), async {
        let a = node(&rt, 9, Config::default());
        let b = node(&rt, 10, Config::default());
        let wrong = keypair_from_seed(99).public().to_peer_id();
        let addr = b.listen_addrs()[0]
            .clone()
            .with(relay_proto::multiaddr::Protocol::P2p(wrong));
        let error = a.dial(addr).await.unwrap_err();
        assert!(error.to_string().contains("peer"), "{error}");
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
}

/// Garbage and a peer that stalls mid-handshake are dropped; the node serves others.
pub async fn bad_peers_are_dropped<R: Runtime>(rt: R) {
    within(&rt, Duration::from_secs(30), async {
        let mut config = Config::default();
        config.connection.upgrade_timeout = Duration::from_millis(500);
        let b = node(&rt, 12, config);
        serve_echo(&rt, &b);
        let mut events = b.events().unwrap();
        let target: SocketAddr = socket_of(&b);

        // A peer that sends garbage instead of multistream-select.
        let (mut garbage, _) = rt.connect(target).await.unwrap();
        garbage.write_all(&[0xff; 64]).await.unwrap();
        // A peer that starts the handshake and stalls.
        let (mut stalled, _) = rt.connect(target).await.unwrap();
        stalled
            .write_all(b"\x13/multistream/1.0.0\n")
            .await
            .unwrap();

        let mut failures = 0;
        while failures < 2 {
            if let Event::InboundFailed { .. } = events.next().await.unwrap() {
                failures += 1;
            }
        }
        // Both sockets are closed by the node.
        let mut sink = Vec::new();
        garbage.read_to_end(&mut sink).await.unwrap_or_default();
        stalled.read_to_end(&mut sink).await.unwrap_or_default();

        // And a well-behaved peer is still served.
        let a = node(&rt, 11, Config::default());
        a.dial(addr_of(&b)).await.unwrap();
        let stream = a.open_stream(b.peer_id(), ECHO).await.unwrap();
        assert_eq!(exchange(stream, b"ok").await.unwrap(), b"ok");
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
}

/// Perf exchanges of several shapes: byte counts agree on both sides.
pub async fn perf_round_trip<R: Runtime>(rt: R) {
    within(&rt, Duration::from_secs(60), async {
        let a = node(&rt, 13, Config::default());
        let b = node(&rt, 14, Config::default());
        let mut served = serve_perf(&rt, &b);
        a.dial(addr_of(&b)).await.unwrap();
        let shapes = [
            (0, 0),
            (1, 0),
            (0, 1),
            (4 << 20, 8 << 20),
            (3 * perf::BUFFER as u64 + 5, 7),
        ];
        for (upload, download) in shapes {
            let stream = a.open_stream(b.peer_id(), perf::PROTOCOL).await.unwrap();
            let result = perf::run(stream, upload, download).await.unwrap();
            assert_eq!(
                (result.upload_bytes, result.download_bytes),
                (upload, download)
            );
            assert_eq!(result.total, result.upload_time + result.download_time);
            let server = served.next().await.expect("server running");
            assert_eq!(
                server.expect("server succeeds"),
                PerfServed {
                    uploaded: upload,
                    downloaded: download
                }
            );
        }
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
}

/// Serves the perf protocol on `node`; what each stream got is sent to the receiver.
pub fn serve_perf<R: Runtime>(
    rt: &R,
    node: &Handle,
) -> mpsc::UnboundedReceiver<std::io::Result<PerfServed>> {
    let mut incoming = node.accept(perf::PROTOCOL).expect("running");
    let (results, receiver) = mpsc::unbounded();
    let spawner = rt.clone();
    rt.spawn(Box::pin(async move {
        while let Some(stream) = incoming.next().await {
            let results = results.clone();
            spawner.spawn(Box::pin(async move {
                let _ = results.unbounded_send(perf::serve(stream).await);
            }));
        }
    }));
    receiver
}

fn socket_of(node: &Handle) -> SocketAddr {
    relay_proto::node::addr::parse_tcp(&node.listen_addrs()[0])
        .expect("tcp")
        .0
}

/// Hole punching on loopback: a listener behind a relay and a dialer that reached it
/// through the relay upgrade to a direct connection (no NAT here, so the punch dials
/// meet at once); pings and streams then take it, and the relayed connection closes
/// after its grace period.
pub async fn hole_punch_on_loopback<R: Runtime>(rt: R) {
    within(&rt, Duration::from_secs(60), async {
        let relay = node(&rt, 30, relay_config());
        let relay_addr = addr_of(&relay);
        let b = node(&rt, 31, punch_config());
        serve_echo(&rt, &b);
        let mut b_events = b.events().unwrap();
        b.reserve(relay_addr.clone()).await.expect("reservation");
        let a = node(&rt, 32, punch_config());
        let mut a_events = a.events().unwrap();
        let target = relay_addr
            .with(relay_proto::multiaddr::Protocol::P2pCircuit)
            .with(relay_proto::multiaddr::Protocol::P2p(b.peer_id()));
        let peer = a.dial(target).await.expect("relayed dial");
        assert_eq!(peer, b.peer_id());

        let (relayed, direct) = punch_outcome(&mut a_events).await;
        let (_, direct_b) = punch_outcome(&mut b_events).await;

        // The direct connection left from (or reached) each side's listen port.
        for (node, direct, listen) in [(&a, direct, socket_of(&a)), (&b, direct_b, socket_of(&b))] {
            let info = node
                .with_node(move |n, _| n.connection_info(direct))
                .await
                .unwrap()
                .expect("direct connection");
            assert_eq!(info.relay, None);
            let local = relay_proto::node::addr::parse_tcp(&info.local_addr.unwrap())
                .unwrap()
                .0;
            assert_eq!(local, listen);
        }
        // New streams and pings take the direct connection.
        let preferred = a
            .with_node(move |n, _| n.preferred_connection(&peer))
            .await
            .unwrap();
        assert_eq!(preferred, Some(direct));
        a.ping(peer).await.expect("ping over the direct connection");
        let stream = a.open_stream(peer, ECHO).await.unwrap();
        assert_eq!(stream.id().conn, direct);
        assert_eq!(exchange(stream, b"direct").await.unwrap(), b"direct");
        let stats = a.hole_punch_stats().await.unwrap();
        assert_eq!((stats.successes, stats.finished), (1, 1));

        // The relayed connection closes after its grace period.
        loop {
            match a_events.next().await.expect("node running") {
                Event::ConnectionClosed {
                    conn,
                    relayed: true,
                    ..
                } if conn == relayed => break,
                _ => {}
            }
        }
        a.ping(peer).await.expect("still connected directly");
        a.shutdown().await;
        b.shutdown().await;
        relay.shutdown().await;
    })
    .await
}

fn relay_config() -> Config {
    Config {
        relay: Some(relay_proto::hop::RelayConfig {
            rate: relay_proto::hop::RateLimits::off(),
            ..Default::default()
        }),
        ..Config::default()
    }
}

/// Loopback addresses count as hole punch candidates; a short grace period.
fn punch_config() -> Config {
    Config {
        hole_punch: relay_proto::dcutr::HolePunchConfig {
            allow_loopback_addrs: true,
            relayed_close_grace: Duration::from_millis(500),
            ..Default::default()
        },
        ..Config::default()
    }
}

/// Waits for a hole punch outcome; returns the relayed and the direct connection.
async fn punch_outcome(
    events: &mut mpsc::UnboundedReceiver<Event>,
) -> (relay_proto::ConnectionId, relay_proto::ConnectionId) {
    loop {
        match events.next().await.expect("node running") {
            Event::HolePunchSucceeded {
                relayed, direct, ..
            } => return (relayed, direct),
            Event::HolePunchFailed {
                attempts, reason, ..
            } => panic!("hole punch failed after {attempts} attempt(s): {reason}"),
            _ => {}
        }
    }
}
