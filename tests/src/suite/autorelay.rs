//! AutoRelay through a runtime: the seed's service on the handle, relay candidates from
//! the application's peer source, and failover when a relay shuts down.

use std::time::Duration;

use futures::StreamExt;
use relay_proto::Event;
use relay_proto::autorelay::{Activation, AutoRelayConfig, Candidate, Event as AutoRelayEvent};
use relay_proto::hop::{RateLimits, RelayConfig};
use relay_proto::identity::{PeerId, keypair_from_seed};
use relay_proto::multiaddr::Protocol;
use relay_proto::node::Config;
use relay_runtime::{BoxFuture, Error, Handle, PeerSource, Runtime};

use super::{node, within};

/// A peer source that offers a fixed list.
struct Fixed(Vec<Candidate>);

impl PeerSource for Fixed {
    fn candidates(&self, limit: usize) -> BoxFuture<Vec<Candidate>> {
        let mut list = self.0.clone();
        list.truncate(limit);
        Box::pin(async move { list })
    }
}

fn relay_node<R: Runtime>(rt: &R, seed: u8) -> Handle {
    let config = Config {
        relay: Some(RelayConfig {
            rate: RateLimits::off(),
            ..RelayConfig::default()
        }),
        ..Config::default()
    };
    node(rt, seed, config)
}

/// Waits for AutoRelay to announce a set of `n` relays; returns it.
async fn relays_changed(
    events: &mut relay_runtime::futures_channel::UnboundedReceiver<Event>,
    n: usize,
) -> Vec<PeerId> {
    loop {
        if let Event::AutoRelay(AutoRelayEvent::RelaysChanged { current }) =
            events.next().await.expect("node running")
            && current.len() == n
        {
            return current;
        }
    }
}

/// Three relays offered by the peer source, two reservations kept; one relay shuts
/// down and the third replaces it; stop releases everything.
pub async fn auto_relay_with_peer_source<R: Runtime>(rt: R) {
    within(&rt, Duration::from_secs(60), async {
        let relays: Vec<Handle> = (0..3).map(|i| relay_node(&rt, 31 + i)).collect();
        let candidates = relays
            .iter()
            .map(|r| Candidate {
                peer: r.peer_id(),
                addrs: vec![r.listen_addrs()[0].clone().with(Protocol::P2p(r.peer_id()))],
            })
            .collect();
        let config = Config {
            auto_relay: Some(AutoRelayConfig {
                enabled: true,
                activation: Activation::Always,
                max_relay_peers: 2,
                boot_delay: Duration::ZERO,
                ..AutoRelayConfig::default()
            }),
            ..Config::default()
        };
        let client = relay_runtime::Builder::default()
            .keypair(keypair_from_seed(30))
            .config(config)
            .rng_seed([30; 32])
            .peer_source(Fixed(candidates))
            .start(rt.clone())
            .expect("node starts");
        let mut events = client.events().unwrap();
        client.auto_relay_start().await.expect("enabled");
        let held = relays_changed(&mut events, 2).await;
        assert_eq!(client.auto_relay_relays().await.unwrap(), held);

        let victim = relays
            .iter()
            .find(|r| r.peer_id() == held[0])
            .expect("one of ours");
        victim.shutdown().await;
        let now = relays_changed(&mut events, 2).await;
        assert!(!now.contains(&held[0]), "{now:?}");
        assert!(now.contains(&held[1]));

        let bad = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        assert!(matches!(
            client.auto_relay_add_static_relay(bad).await,
            Err(Error::AutoRelay(_))
        ));
        client.auto_relay_stop().await.unwrap();
        relays_changed(&mut events, 0).await;
        assert!(client.auto_relay_relays().await.unwrap().is_empty());
        client.shutdown().await;
        for relay in &relays {
            relay.shutdown().await;
        }
    })
    .await
}

/// A node without AutoRelay says so.
pub async fn auto_relay_not_enabled<R: Runtime>(rt: R) {
    within(&rt, Duration::from_secs(10), async {
        let a = node(&rt, 39, Config::default());
        assert!(matches!(
            a.auto_relay_start().await,
            Err(Error::AutoRelay(_))
        ));
        a.shutdown().await;
    })
    .await
}
