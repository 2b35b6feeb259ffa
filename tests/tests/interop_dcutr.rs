//! DCUtR interop with rust-libp2p 0.57 on loopback: a rust-libp2p peer and ours, one
//! behind our relay, the other reaching it through the relay, upgrade the relayed
//! connection to a direct one.
//!
//! Loopback has no NAT, so the two punch dials need not meet in a simultaneous open:
//! whichever SYN arrives first is accepted by the other side's listener, and the other
//! dial finds the address pair taken. Both orders occur from run to run (rust-libp2p's
//! direct connection is sometimes its own dial in the listener role, sometimes ours,
//! accepted); ours takes the DCUtR role on an accepted connection, so both complete.
//! The NAT lab covers the simultaneous open itself.

use std::time::Duration;

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, Swarm, dcutr, identify, noise, ping, relay, tcp, yamux};
use relay_proto::Event;
use relay_proto::dcutr::HolePunchConfig;
use relay_proto::hop::{RateLimits, RelayConfig};
use relay_proto::identity::{Keypair, keypair_from_seed};
use relay_proto::node::Config;
use relay_tests::suite;
use relay_tokio::Tokio;
use tokio::sync::mpsc;

#[derive(NetworkBehaviour)]
struct Peer {
    relay: relay::client::Behaviour,
    identify: identify::Behaviour,
    dcutr: dcutr::Behaviour,
    ping: ping::Behaviour,
}

fn rust_peer(key: Keypair) -> Swarm<Peer> {
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
        .with_behaviour(|key, relay| Peer {
            relay,
            identify: identify::Behaviour::new(identify::Config::new(
                "/ipfs/0.1.0".into(),
                key.public(),
            )),
            dcutr: dcutr::Behaviour::new(key.public().to_peer_id()),
            ping: ping::Behaviour::new(ping::Config::new()),
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// Runs the swarm in a task: forwards its events, and dials what is sent on the
/// returned sender.
fn spawn(
    mut swarm: Swarm<Peer>,
) -> (
    mpsc::UnboundedReceiver<SwarmEvent<PeerEvent>>,
    mpsc::UnboundedSender<Multiaddr>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (dials, mut dial_rx) = mpsc::unbounded_channel::<Multiaddr>();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                event = swarm.select_next_some() => {
                    if tx.send(event).is_err() {
                        return;
                    }
                }
                Some(addr) = dial_rx.recv() => {
                    if let Err(error) = swarm.dial(addr) {
                        panic!("rust-libp2p dial: {error}");
                    }
                }
            }
        }
    });
    (rx, dials)
}

/// Listens on loopback first, so that rust-libp2p dials (the relay, the punch) go out
/// from that port; returns the listen address.
async fn listen_on_loopback(swarm: &mut Swarm<Peer>) -> Multiaddr {
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return address;
        }
    }
}

fn relay_config() -> Config {
    Config {
        relay: Some(RelayConfig {
            rate: RateLimits::off(),
            ..RelayConfig::default()
        }),
        ..Config::default()
    }
}

/// Our peers: loopback candidates allowed.
fn punch_config() -> Config {
    Config {
        hole_punch: HolePunchConfig {
            allow_loopback_addrs: true,
            ..HolePunchConfig::default()
        },
        ..Config::default()
    }
}

/// Waits for our node's hole punch outcome.
async fn our_outcome(events: &mut relay_tokio::UnboundedReceiver<Event>) -> Event {
    loop {
        let event = events.next().await.expect("node running");
        if matches!(
            event,
            Event::HolePunchSucceeded { .. } | Event::HolePunchFailed { .. }
        ) {
            return event;
        }
    }
}

/// A rust-libp2p listener behind our relay (the spec's B, which starts the upgrade) and
/// our dialer (A).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_libp2p_listener_upgrades_with_our_dialer() {
    let rt = Tokio::current();
    suite::within(&rt, Duration::from_secs(60), async {
        let relay = suite::node(&rt, 230, relay_config());
        let relay_addr: Multiaddr = relay.listen_addrs()[0]
            .clone()
            .with(Protocol::P2p(relay.peer_id()));

        let mut listener = rust_peer(keypair_from_seed(231));
        let listener_id = *listener.local_peer_id();
        listen_on_loopback(&mut listener).await;
        listener
            .listen_on(relay_addr.clone().with(Protocol::P2pCircuit))
            .unwrap();
        let (mut rust_events, _dials) = spawn(listener);
        loop {
            if let SwarmEvent::Behaviour(PeerEvent::Relay(
                relay::client::Event::ReservationReqAccepted { .. },
            )) = rust_events.recv().await.unwrap()
            {
                break;
            }
        }

        let dialer = suite::node(&rt, 232, punch_config());
        let mut events = dialer.events().unwrap();
        let target = relay_addr
            .with(Protocol::P2pCircuit)
            .with(Protocol::P2p(listener_id));
        let peer = dialer.dial(target).await.expect("relayed connection");
        assert_eq!(peer, listener_id);

        let outcome = our_outcome(&mut events).await;
        let Event::HolePunchSucceeded {
            attempt, direct, ..
        } = outcome
        else {
            panic!("our dialer: {outcome:?}")
        };
        assert!(attempt >= 1, "a DCUtR exchange, not a plain dial");
        // rust-libp2p sees a direct connection to us too.
        loop {
            match rust_events.recv().await.unwrap() {
                SwarmEvent::ConnectionEstablished {
                    peer_id, endpoint, ..
                } if peer_id == dialer.peer_id() && !endpoint.is_relayed() => break,
                _ => {}
            }
        }
        let info = dialer
            .with_node(move |n, _| n.connection_info(direct))
            .await
            .unwrap()
            .expect("direct connection");
        assert_eq!(info.relay, None);
        assert_eq!(
            dialer
                .with_node(move |n, _| n.preferred_connection(&peer))
                .await
                .unwrap(),
            Some(direct)
        );
        dialer
            .ping(peer)
            .await
            .expect("ping over the direct connection");
        dialer.shutdown().await;
        relay.shutdown().await;
    })
    .await
}

/// Our listener behind our relay (B, which starts the upgrade) and a rust-libp2p dialer
/// (A).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_listener_upgrades_with_a_rust_libp2p_dialer() {
    let rt = Tokio::current();
    suite::within(&rt, Duration::from_secs(60), async {
        let relay = suite::node(&rt, 240, relay_config());
        let relay_addr: Multiaddr = relay.listen_addrs()[0]
            .clone()
            .with(Protocol::P2p(relay.peer_id()));
        let listener = suite::node(&rt, 241, punch_config());
        let mut events = listener.events().unwrap();
        listener
            .reserve(relay_addr.clone())
            .await
            .expect("reservation");

        let mut dialer = rust_peer(keypair_from_seed(242));
        let dialer_id = *dialer.local_peer_id();
        listen_on_loopback(&mut dialer).await;
        let (mut rust_events, dials) = spawn(dialer);
        // To the relay first: identify tells the dialer its observed address, which is
        // its hole punch candidate.
        dials.send(relay_addr.clone()).unwrap();
        loop {
            if let SwarmEvent::Behaviour(PeerEvent::Identify(identify::Event::Received {
                peer_id,
                ..
            })) = rust_events.recv().await.unwrap()
                && peer_id == relay.peer_id()
            {
                break;
            }
        }
        dials
            .send(
                relay_addr
                    .with(Protocol::P2pCircuit)
                    .with(Protocol::P2p(listener.peer_id())),
            )
            .unwrap();

        let outcome = our_outcome(&mut events).await;
        let Event::HolePunchSucceeded {
            attempt, direct, ..
        } = outcome
        else {
            panic!("our listener: {outcome:?}")
        };
        assert!(attempt >= 1, "a DCUtR exchange, not a plain dial");
        loop {
            match rust_events.recv().await.unwrap() {
                SwarmEvent::ConnectionEstablished {
                    peer_id, endpoint, ..
                } if peer_id == listener.peer_id() && !endpoint.is_relayed() => break,
                _ => {}
            }
        }
        let info = listener
            .with_node(move |n, _| n.connection_info(direct))
            .await
            .unwrap()
            .expect("direct connection");
        assert_eq!(info.relay, None);
        listener
            .ping(dialer_id)
            .await
            .expect("ping over the direct connection");
        listener.shutdown().await;
        relay.shutdown().await;
    })
    .await
}
