//! Circuit relay v2 interop with rust-libp2p 0.57: our relay serving a rust-libp2p
//! listener and dialer, and a rust-libp2p relay serving our listener and dialer; pings
//! and a perf transfer through each circuit.

use std::time::Duration;

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, StreamProtocol, Swarm, identify, noise, ping, relay, tcp, yamux};
use relay_proto::hop::{RateLimits, RelayConfig};
use relay_proto::identity::{Keypair, keypair_from_seed};
use relay_proto::node::Config;
use relay_runtime::perf;
use relay_tests::suite;
use relay_tokio::Tokio;
use tokio::sync::mpsc;

#[derive(NetworkBehaviour)]
struct Client {
    relay: relay::client::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    stream: libp2p_stream::Behaviour,
}

#[derive(NetworkBehaviour)]
struct Server {
    relay: relay::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

fn identify_config(key: &libp2p::identity::Keypair) -> identify::Config {
    identify::Config::new("/ipfs/0.1.0".into(), key.public())
}

fn rust_client(key: Keypair) -> Swarm<Client> {
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .expect("relay client")
        .with_behaviour(|key, relay| Client {
            relay,
            identify: identify::Behaviour::new(identify_config(key)),
            ping: ping::Behaviour::new(
                ping::Config::new().with_interval(Duration::from_millis(300)),
            ),
            stream: libp2p_stream::Behaviour::new(),
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

fn spawn<B>(mut swarm: Swarm<B>) -> mpsc::UnboundedReceiver<SwarmEvent<B::ToSwarm>>
where
    B: NetworkBehaviour + Send + 'static,
    B::ToSwarm: Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let event = swarm.select_next_some().await;
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    rx
}

fn our_relay_config() -> Config {
    let relay = RelayConfig {
        rate: RateLimits::off(),
        ..RelayConfig::default()
    };
    Config {
        relay: Some(relay),
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_relay_serves_rust_libp2p_peers() {
    let rt = Tokio::current();
    suite::within(&rt, Duration::from_secs(60), async {
        let relay = suite::node(&rt, 210, our_relay_config());
        let relay_addr: Multiaddr = relay.listen_addrs()[0]
            .clone()
            .with(Protocol::P2p(relay.peer_id()));

        // A rust-libp2p listener reserves on our relay and serves perf.
        let mut listener = rust_client(keypair_from_seed(211));
        let listener_id = *listener.local_peer_id();
        let mut incoming = listener
            .behaviour()
            .stream
            .new_control()
            .accept(StreamProtocol::new(perf::PROTOCOL))
            .unwrap();
        tokio::spawn(async move {
            while let Some((_, stream)) = incoming.next().await {
                tokio::spawn(perf::serve(stream));
            }
        });
        listener
            .listen_on(relay_addr.clone().with(Protocol::P2pCircuit))
            .unwrap();
        let mut listener_events = spawn(listener);
        loop {
            if let SwarmEvent::Behaviour(ClientEvent::Relay(
                relay::client::Event::ReservationReqAccepted { relay_peer_id, .. },
            )) = listener_events.recv().await.unwrap()
            {
                assert_eq!(relay_peer_id, relay.peer_id());
                break;
            }
        }

        // A rust-libp2p dialer reaches it through our relay and pings it.
        let mut dialer = rust_client(keypair_from_seed(212));
        let mut control = dialer.behaviour().stream.new_control();
        let target = relay_addr
            .with(Protocol::P2pCircuit)
            .with(Protocol::P2p(listener_id));
        dialer.dial(target).unwrap();
        let mut dialer_events = spawn(dialer);
        let mut connected = false;
        loop {
            match dialer_events.recv().await.unwrap() {
                SwarmEvent::ConnectionEstablished {
                    peer_id, endpoint, ..
                } if peer_id == listener_id => {
                    assert!(endpoint.is_relayed());
                    connected = true;
                }
                SwarmEvent::Behaviour(ClientEvent::Ping(ping::Event { peer, result, .. }))
                    if peer == listener_id =>
                {
                    assert!(connected);
                    result.expect("ping through our relay");
                    break;
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => panic!("dial failed: {error}"),
                _ => {}
            }
        }

        // And measures throughput through the circuit with perf.
        let stream = control
            .open_stream(listener_id, StreamProtocol::new(perf::PROTOCOL))
            .await
            .unwrap();
        let result = perf::run(stream, 64 * 1024, 128 * 1024).await.unwrap();
        assert_eq!(
            (result.upload_bytes, result.download_bytes),
            (64 * 1024, 128 * 1024)
        );

        let circuits = relay
            .with_node(|n, _| n.relay_policy().map(|p| p.circuits().count()))
            .await
            .unwrap();
        assert_eq!(circuits, Some(1));
        relay.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_libp2p_relay_serves_our_peers() {
    let rt = Tokio::current();
    suite::within(&rt, Duration::from_secs(60), async {
        let key = keypair_from_seed(220);
        let mut server = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("tcp")
            .with_behaviour(|key| Server {
                relay: relay::Behaviour::new(key.public().to_peer_id(), relay::Config::default()),
                identify: identify::Behaviour::new(identify_config(key)),
                ping: ping::Behaviour::new(ping::Config::new()),
            })
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        server
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .unwrap();
        let addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = server.select_next_some().await {
                break address;
            }
        };
        server.add_external_address(addr.clone());
        let relay_id = *server.local_peer_id();
        let _server_events = spawn(server);
        let relay_addr = addr.with(Protocol::P2p(relay_id));

        // Our listener reserves on the rust-libp2p relay.
        let listener = suite::node(&rt, 221, Config::default());
        let mut perf_incoming = listener.accept(perf::PROTOCOL).unwrap();
        tokio::spawn(async move {
            while let Some(stream) = perf_incoming.next().await {
                tokio::spawn(perf::serve(stream));
            }
        });
        let reservation = listener
            .reserve(relay_addr.clone())
            .await
            .expect("reservation accepted");
        assert_eq!(reservation.relay, relay_id);
        assert!(
            reservation
                .addrs
                .iter()
                .all(|a| a.to_string().ends_with("/p2p-circuit"))
        );
        assert_eq!(
            reservation.limit.data,
            Some(1 << 17),
            "rust-libp2p's default circuit data limit"
        );

        // Our dialer reaches it through the rust-libp2p relay.
        let dialer = suite::node(&rt, 222, Config::default());
        let target = relay_addr
            .with(Protocol::P2pCircuit)
            .with(Protocol::P2p(listener.peer_id()));
        let peer = dialer
            .dial(target)
            .await
            .expect("circuit through rust-libp2p");
        assert_eq!(peer, listener.peer_id());
        dialer
            .ping(peer)
            .await
            .expect("ping through rust-libp2p's relay");
        // rust-libp2p counts both directions against its 128 KiB limit: stay well under.
        let stream = dialer.open_stream(peer, perf::PROTOCOL).await.unwrap();
        let result = perf::run(stream, 16 * 1024, 32 * 1024).await.unwrap();
        assert_eq!(
            (result.upload_bytes, result.download_bytes),
            (16 * 1024, 32 * 1024)
        );
        dialer.shutdown().await;
        listener.shutdown().await;
    })
    .await
}
