//! Interop with rust-libp2p 0.57 from crates.io, both directions: TCP, Noise, Yamux,
//! identify and ping, a 16 MiB echo over one stream, 100 concurrent streams, and the
//! perf protocol.
//!
//! rust-libp2p's own perf crate does not build against 0.57, so the perf peer on its side
//! is written here from the spec, over libp2p-stream, independently of
//! `relay_runtime::perf`.

use std::time::Duration;

use futures::StreamExt;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{StreamProtocol, Swarm, identify, noise, ping, tcp, yamux};
use relay_proto::Event;
use relay_proto::identity::{Keypair, PeerId, keypair_from_seed};
use relay_runtime::perf::{self, PerfServed};
use relay_tests::suite::{self, ECHO};
use relay_tests::{echo, exchange, payload, sha256};
use relay_tokio::Tokio;
use tokio::sync::mpsc;

#[derive(NetworkBehaviour)]
struct Behaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    stream: libp2p_stream::Behaviour,
}

fn rust_swarm(key: Keypair) -> Swarm<Behaviour> {
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp transport")
        .with_behaviour(|key| Behaviour {
            identify: identify::Behaviour::new(identify::Config::new_with_signed_peer_record(
                "/ipfs/0.1.0".into(),
                key,
            )),
            ping: ping::Behaviour::new(
                ping::Config::new().with_interval(Duration::from_millis(500)),
            ),
            stream: libp2p_stream::Behaviour::new(),
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// Runs the swarm in a task, forwarding its behaviour events.
fn spawn_swarm(mut swarm: Swarm<Behaviour>) -> mpsc::UnboundedReceiver<BehaviourEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(event) = swarm.select_next_some().await
                && tx.send(event).is_err()
            {
                return;
            }
        }
    });
    rx
}

async fn rust_listener(key: Keypair) -> (Swarm<Behaviour>, libp2p::Multiaddr) {
    let mut swarm = rust_swarm(key);
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return (swarm, address);
        }
    }
}

/// Waits until rust-libp2p has identified `peer` and pinged it successfully.
async fn rust_saw_identify_and_ping(
    events: &mut mpsc::UnboundedReceiver<BehaviourEvent>,
    peer: PeerId,
) {
    let (mut identified, mut pinged) = (false, false);
    while !(identified && pinged) {
        match events.recv().await.expect("swarm running") {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                assert_eq!(peer_id, peer);
                assert!(
                    info.agent_version.starts_with("relay-rs/"),
                    "{}",
                    info.agent_version
                );
                assert!(
                    info.protocols
                        .iter()
                        .any(|p| p.as_ref() == "/ipfs/ping/1.0.0")
                );
                // Our signed peer record is in go's and js's form, which rust-libp2p's
                // identify does not read (see relay_proto::peer_record): it keeps the
                // plain listen addresses, as with go peers.
                assert!(info.signed_peer_record.is_none());
                identified = true;
            }
            BehaviourEvent::Identify(identify::Event::Error { error, .. }) => {
                panic!("identify: {error}")
            }
            BehaviourEvent::Ping(ping::Event {
                peer: p, result, ..
            }) => {
                assert_eq!(p, peer);
                result.expect("rust-libp2p pings us");
                pinged = true;
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_dial_rust_libp2p() {
    let rt = Tokio::current();
    suite::within(&rt, Duration::from_secs(120), async {
        let (swarm, addr) = rust_listener(keypair_from_seed(200)).await;
        let rust_peer = *swarm.local_peer_id();
        let mut control = swarm.behaviour().stream.new_control();
        let mut incoming = control.accept(StreamProtocol::new(ECHO)).unwrap();
        tokio::spawn(async move {
            while let Some((_, stream)) = incoming.next().await {
                tokio::spawn(echo(stream));
            }
        });
        let mut rust_events = spawn_swarm(swarm);

        let ours = suite::node(&rt, 201, Default::default());
        let mut events = ours.events().unwrap();
        let peer = ours
            .dial(addr.with(libp2p::multiaddr::Protocol::P2p(rust_peer)))
            .await
            .unwrap();
        assert_eq!(peer, rust_peer);
        loop {
            if let Event::Identified { info, .. } = events.next().await.unwrap() {
                assert!(
                    info.agent_version.starts_with("rust-libp2p"),
                    "{}",
                    info.agent_version
                );
                let record = info
                    .peer_record()
                    .expect("rust-libp2p's signed peer record");
                assert_eq!(record.peer, rust_peer);
                assert!(!record.addrs.is_empty(), "{record:?}");
                break;
            }
        }
        ours.ping(rust_peer).await.expect("we ping rust-libp2p");
        rust_saw_identify_and_ping(&mut rust_events, ours.peer_id()).await;

        let data = payload(16 << 20, 1);
        let stream = ours.open_stream(rust_peer, ECHO).await.unwrap();
        let back = exchange(stream, &data).await.unwrap();
        assert_eq!(sha256(&back), sha256(&data));

        // libp2p-stream drops inbound streams its acceptor has not taken yet, so each
        // stream is confirmed open with a one-byte echo before the next is opened; then
        // all 100 carry data at once.
        let mut open = Vec::new();
        for i in 0..100u8 {
            let mut stream = ours.open_stream(rust_peer, ECHO).await.unwrap();
            stream.write_all(&[i]).await.unwrap();
            let mut first = [0u8];
            stream.read_exact(&mut first).await.unwrap();
            assert_eq!(first, [i]);
            open.push(stream);
        }
        let streams = open.into_iter().enumerate().map(|(i, stream)| async move {
            let data = payload(32 * 1024, i as u64);
            assert_eq!(exchange(stream, &data).await.unwrap(), data);
        });
        futures::future::join_all(streams).await;
        ours.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_libp2p_dials_us() {
    let rt = Tokio::current();
    suite::within(&rt, Duration::from_secs(120), async {
        let ours = suite::node(&rt, 202, Default::default());
        suite::serve_echo(&rt, &ours);
        let our_addr = ours.listen_addrs()[0].clone();

        let mut swarm = rust_swarm(keypair_from_seed(203));
        let mut control = swarm.behaviour().stream.new_control();
        swarm
            .dial(our_addr.with(libp2p::multiaddr::Protocol::P2p(ours.peer_id())))
            .unwrap();
        let mut rust_events = spawn_swarm(swarm);
        rust_saw_identify_and_ping(&mut rust_events, ours.peer_id()).await;

        let data = payload(16 << 20, 2);
        let stream = control
            .open_stream(ours.peer_id(), StreamProtocol::new(ECHO))
            .await
            .unwrap();
        let back = exchange(stream, &data).await.unwrap();
        assert_eq!(sha256(&back), sha256(&data));

        let streams = (0..100u64).map(|i| {
            let mut control = control.clone();
            let peer = ours.peer_id();
            async move {
                let data = payload(32 * 1024, i);
                let stream = control
                    .open_stream(peer, StreamProtocol::new(ECHO))
                    .await
                    .unwrap();
                assert_eq!(exchange(stream, &data).await.unwrap(), data);
            }
        });
        futures::future::join_all(streams).await;
        ours.shutdown().await;
    })
    .await
}

const PERF: StreamProtocol = StreamProtocol::new(perf::PROTOCOL);

/// The perf client of the spec, on a rust-libp2p stream: returns (uploaded, received).
async fn spec_perf_client(
    mut stream: libp2p::Stream,
    upload: usize,
    download: u64,
) -> std::io::Result<(usize, usize)> {
    use futures::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(&download.to_be_bytes()).await?;
    stream.write_all(&payload(upload, 3)).await?;
    stream.close().await?;
    let mut back = Vec::new();
    stream.read_to_end(&mut back).await?;
    Ok((upload, back.len()))
}

/// The perf server of the spec, on a rust-libp2p stream: returns (uploaded, sent).
async fn spec_perf_server(mut stream: libp2p::Stream) -> std::io::Result<(usize, u64)> {
    use futures::{AsyncReadExt, AsyncWriteExt};
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await?;
    let requested = u64::from_be_bytes(header);
    let mut upload = Vec::new();
    stream.read_to_end(&mut upload).await?;
    let answer = vec![0x5a; usize::try_from(requested).expect("small in tests")];
    stream.write_all(&answer).await?;
    stream.close().await?;
    Ok((upload.len(), requested))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_libp2p_perf_client_against_our_server() {
    let rt = Tokio::current();
    suite::within(&rt, Duration::from_secs(60), async {
        let ours = suite::node(&rt, 204, Default::default());
        let mut served = suite::serve_perf(&rt, &ours);
        let our_addr = ours.listen_addrs()[0].clone();

        let mut swarm = rust_swarm(keypair_from_seed(205));
        let mut control = swarm.behaviour().stream.new_control();
        swarm
            .dial(our_addr.with(libp2p::multiaddr::Protocol::P2p(ours.peer_id())))
            .unwrap();
        let mut rust_events = spawn_swarm(swarm);
        rust_saw_identify_and_ping(&mut rust_events, ours.peer_id()).await;

        for (upload, download) in [(0, 0), (3 << 20, 5 << 20), (100_000, 1)] {
            let stream = control.open_stream(ours.peer_id(), PERF).await.unwrap();
            let (sent, received) = spec_perf_client(stream, upload, download).await.unwrap();
            assert_eq!((sent, received as u64), (upload, download));
            let server = served.next().await.expect("server running").unwrap();
            assert_eq!(
                server,
                PerfServed {
                    uploaded: upload as u64,
                    downloaded: download
                }
            );
        }
        ours.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_perf_client_against_rust_libp2p_server() {
    let rt = Tokio::current();
    suite::within(&rt, Duration::from_secs(60), async {
        let (swarm, addr) = rust_listener(keypair_from_seed(206)).await;
        let rust_peer = *swarm.local_peer_id();
        let mut control = swarm.behaviour().stream.new_control();
        let mut incoming = control.accept(PERF).unwrap();
        let (served_tx, mut served) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some((_, stream)) = incoming.next().await {
                let served_tx = served_tx.clone();
                tokio::spawn(async move {
                    let _ = served_tx.send(spec_perf_server(stream).await);
                });
            }
        });
        let _rust_events = spawn_swarm(swarm);

        let ours = suite::node(&rt, 207, Default::default());
        ours.dial(addr.with(libp2p::multiaddr::Protocol::P2p(rust_peer)))
            .await
            .unwrap();
        for (upload, download) in [(0, 0), (5 << 20, 3 << 20), (1, 100_000)] {
            let stream = ours.open_stream(rust_peer, perf::PROTOCOL).await.unwrap();
            let result = perf::run(stream, upload, download).await.unwrap();
            assert_eq!(
                (result.upload_bytes, result.download_bytes),
                (upload, download)
            );
            let (uploaded, sent) = served.recv().await.expect("server running").unwrap();
            assert_eq!((uploaded as u64, sent), (upload, download));
        }
        ours.shutdown().await;
    })
    .await
}

/// Signed peer records against rust-libp2p's own implementation (libp2p-core): ours in
/// the standard form (go-, js-libp2p) verify with its interop reader, and both of its
/// forms verify with ours.
#[test]
fn signed_peer_records_match_libp2p_core() {
    use libp2p::core::{PeerRecord as TheirRecord, SignedEnvelope};
    use relay_proto::peer_record::PeerRecord;

    let key = keypair_from_seed(210);
    let addrs: Vec<relay_proto::Multiaddr> = vec![
        "/ip4/198.51.100.9/tcp/4001".parse().unwrap(),
        "/ip6/2001:db8::9/tcp/4001".parse().unwrap(),
    ];
    let ours = PeerRecord {
        peer: key.public().to_peer_id(),
        seq: 42,
        addrs: addrs.clone(),
    }
    .sign(&key)
    .unwrap();
    let envelope = SignedEnvelope::from_protobuf_encoding(&ours).unwrap();
    let read = TheirRecord::from_signed_envelope_interop(envelope).expect("verifies");
    assert_eq!(read.peer_id(), key.public().to_peer_id());
    assert_eq!(read.seq(), 42);
    assert_eq!(read.addresses(), &addrs[..]);

    for theirs in [
        TheirRecord::new_interop(&key, addrs.clone()).unwrap(),
        TheirRecord::new(&key, addrs.clone()).unwrap(),
    ] {
        let seq = theirs.seq();
        let bytes = theirs.into_signed_envelope().into_protobuf_encoding();
        let read = PeerRecord::open(&bytes).expect("verifies");
        assert_eq!(
            (read.peer, read.seq, read.addrs),
            (key.public().to_peer_id(), seq, addrs.clone())
        );
    }
}
