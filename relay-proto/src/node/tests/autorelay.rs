//! AutoRelay driven by the node, over the in-memory network: relays chosen and kept,
//! failover when a relay dies, refuses, or goes silent; our `/p2p-circuit` addresses
//! following the relays held; bounds; the same seed choosing the same relays; dynamic
//! candidates from identify and from the peer source; start, stop and reachability.

use std::collections::BTreeSet;
use std::time::Duration;

use multiaddr::{Multiaddr, Protocol};

use super::Net;
use crate::autorelay::{
    Activation, AutoRelayConfig, Candidate, Error, Event as AutoRelayEvent, FailureReason,
    Reachability, RemovalReason, SelectionPolicy,
};
use crate::hop::{RateLimits, RelayConfig};
use crate::identity::PeerId;
use crate::node::addr::parse_circuit_relay;
use crate::node::{Config, Event, Node, NodeConfigError};

const SECS: Duration = Duration::from_secs(1);

fn relay_config(f: impl FnOnce(&mut RelayConfig)) -> Config {
    let mut relay = RelayConfig {
        rate: RateLimits::off(),
        ..RelayConfig::default()
    };
    f(&mut relay);
    let mut config = Config {
        relay: Some(relay),
        ..Config::default()
    };
    config.ping.interval = None;
    config
}

/// A node with AutoRelay over `statics`, keeping `max` reservations, pinging every
/// second with a one second timeout: a silent relay is noticed within two seconds.
fn client_config(
    statics: Vec<Multiaddr>,
    max: usize,
    f: impl FnOnce(&mut AutoRelayConfig),
) -> Config {
    let mut auto = AutoRelayConfig {
        enabled: true,
        enable_dynamic: false,
        static_relay_peers: statics,
        max_relay_peers: max,
        ..AutoRelayConfig::default()
    };
    f(&mut auto);
    let mut config = Config {
        auto_relay: Some(auto),
        ..Config::default()
    };
    config.ping.interval = Some(SECS);
    config.ping.timeout = SECS;
    config
}

/// Relay nodes `0..relays` (relay `i` configured by `relay(i, ..)`), a client with
/// AutoRelay over all of them as static relays (index `relays`, keys and randomness
/// from `seed`), and a plain dialer (index `relays + 1`).
struct Tier2 {
    net: Net,
    relays: usize,
    client: usize,
    dialer: usize,
    max: usize,
}

impl Tier2 {
    fn new(
        relays: usize,
        max: usize,
        seed: u8,
        relay: impl Fn(usize, &mut RelayConfig),
        auto: impl FnOnce(&mut AutoRelayConfig),
    ) -> Self {
        let mut net = Net::new(Duration::from_millis(5));
        for i in 0..relays {
            net.add(1 + i as u8, relay_config(|r| relay(i, r)));
        }
        let statics = (0..relays).map(|i| net.full_addr(i)).collect();
        let client = net.add(seed, client_config(statics, max, auto));
        let mut dialer = Config::default();
        dialer.ping.interval = None;
        let dialer = net.add(200, dialer);
        Self {
            net,
            relays,
            client,
            dialer,
            max,
        }
    }

    fn plain(relays: usize, max: usize) -> Self {
        Self::new(relays, max, 100, |_, _| {}, |_| {})
    }

    fn client(&self) -> &Node {
        &self.net.nodes[self.client]
    }

    fn start(&mut self) {
        let now = self.net.now;
        self.net.nodes[self.client].auto_relay_start(now).unwrap();
    }

    fn current(&self) -> Vec<PeerId> {
        self.client().auto_relay_current_relays()
    }

    fn index_of(&self, peer: PeerId) -> usize {
        (0..self.relays)
            .find(|&i| self.net.peer(i) == peer)
            .expect("a relay")
    }

    /// Runs until `done`, checking after every step that the bounds hold and that our
    /// addresses follow the relays held; returns whether `done` held within `limit`.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Node) -> bool) -> bool {
        let (client, max) = (self.client, self.max);
        let end = self.net.now + limit;
        self.net.run_until(end, |net| {
            let node = &net.nodes[client];
            check(node, max);
            done(node)
        })
    }

    /// Runs until `n` relays are held.
    fn hold(&mut self, n: usize, limit: Duration) {
        assert!(
            self.run_until(limit, |node| node.auto_relay_current_relays().len() == n),
            "{n} relays held within {limit:?}: {:?}",
            self.current()
        );
    }

    /// The AutoRelay events of the client, from the `from`th event on.
    fn auto_events(&self, from: usize) -> Vec<AutoRelayEvent> {
        self.net.events[self.client][from..]
            .iter()
            .filter_map(|e| match e {
                Event::AutoRelay(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    /// Dials the client through `relay`; whether the relayed connection came up.
    fn dial_through(&mut self, relay: usize) -> bool {
        let addr = self
            .net
            .full_addr(relay)
            .with(Protocol::P2pCircuit)
            .with(Protocol::P2p(self.net.peer(self.client)));
        let conn = self.net.nodes[self.dialer]
            .dial(self.net.now, addr)
            .expect("dial starts");
        self.net
            .wait_for(self.dialer, 30 * SECS, |e| match e {
                Event::ConnectionEstablished {
                    conn: c,
                    relayed: true,
                    ..
                } if *c == conn => Some(true),
                Event::DialFailed { conn: c, .. } if *c == conn => Some(false),
                _ => None,
            })
            .unwrap_or(false)
    }
}

/// The relays our `/p2p-circuit` addresses go through.
fn advertised(node: &Node) -> BTreeSet<PeerId> {
    node.relayed_addrs()
        .iter()
        .filter_map(parse_circuit_relay)
        .collect()
}

/// The invariants that hold after every step: at most `max` reservations held or asked
/// for; the relays AutoRelay holds are those the node has reservations on, and those
/// our addresses go through.
fn check(node: &Node, max: usize) {
    let machine = node.auto_relay().expect("configured");
    let held: BTreeSet<PeerId> = node.auto_relay_current_relays().into_iter().collect();
    assert!(
        held.len() + machine.reserving_relays().len() <= max,
        "more than {max} relays in use"
    );
    assert!(
        node.reservations().count() <= max,
        "more than {max} reservations"
    );
    let reserved: BTreeSet<PeerId> = node.reservations().map(|r| r.relay).collect();
    assert_eq!(held, reserved, "AutoRelay and the relay client agree");
    assert_eq!(
        held,
        advertised(node),
        "our addresses follow the relays held"
    );
}

#[test]
fn keeps_max_reservations_on_static_relays() {
    let mut t = Tier2::plain(3, 2);
    assert!(t.client().auto_relay_current_relays().is_empty());
    t.start();
    t.hold(2, 10 * SECS);
    assert_eq!(
        t.client().reachability(),
        Reachability::Private,
        "10.0.0.x only: guessed unreachable"
    );
    let current = t.current();
    let events = t.auto_events(0);
    for relay in &current {
        assert!(events.contains(&AutoRelayEvent::RelayAdded { relay: *relay }));
    }
    assert_eq!(
        events.last(),
        Some(&AutoRelayEvent::RelaysChanged {
            current: current.clone()
        })
    );
    // Nothing changes while the relays stay up; reservations are renewed.
    let before = t.net.events[t.client].len();
    assert!(!t.run_until(3 * 3600 * SECS, |_| false));
    assert_eq!(t.current(), current);
    assert!(
        t.auto_events(before).is_empty(),
        "no change in three hours: {:?}",
        t.auto_events(before)
    );
    let renewed = t.net.events[t.client][before..]
        .iter()
        .filter(|e| matches!(e, Event::ReservationAccepted { renewed: true, .. }))
        .count();
    assert!(renewed >= 2 * 3, "renewed hourly on both relays: {renewed}");
    for relay in current {
        assert!(t.dial_through(t.index_of(relay)));
    }
}

#[test]
fn failover_when_a_relay_dies() {
    let mut t = Tier2::plain(3, 2);
    t.start();
    t.hold(2, 10 * SECS);
    let held = t.current();
    let spare = (0..3)
        .map(|i| t.net.peer(i))
        .find(|p| !held.contains(p))
        .unwrap();
    let victim = t.index_of(held[0]);
    let before = t.net.events[t.client].len();
    let killed_at = t.net.now;
    t.net.kill(victim);
    let spare_held = |node: &Node| {
        let current = node.auto_relay_current_relays();
        current.len() == 2 && current.contains(&spare)
    };
    assert!(t.run_until(10 * SECS, spare_held));
    let took = t.net.now - killed_at;
    // End of file after one 5 ms hop, then dial, handshake and RESERVE to the spare.
    assert!(took < SECS, "new reservation {took:?} after the kill");
    assert_eq!(t.current(), vec![held[1], spare]);

    let events = t.auto_events(before);
    assert_eq!(
        events,
        vec![
            AutoRelayEvent::RelayRemoved {
                relay: held[0],
                reason: RemovalReason::Failed(FailureReason::ConnectionClosed),
            },
            AutoRelayEvent::RelaysChanged {
                current: vec![held[1]]
            },
            AutoRelayEvent::RelayAdded { relay: spare },
            AutoRelayEvent::RelaysChanged {
                current: vec![held[1], spare]
            },
        ]
    );
    assert!(t.net.events[t.client][before..].iter().any(|e| matches!(
        e,
        Event::ReservationLost { relay, .. } if *relay == held[0]
    )));

    // Identify pushes our new addresses to the peers connected.
    t.run_until(SECS, |_| false);
    let spare_index = t.index_of(spare);
    let client_peer = t.net.peer(t.client);
    let pushed = t.net.events[spare_index]
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Identified { peer, info, .. } if *peer == client_peer => Some(info.clone()),
            _ => None,
        })
        .expect("the client identified itself to the spare");
    let through: BTreeSet<PeerId> = pushed
        .listen_addrs
        .iter()
        .filter_map(parse_circuit_relay)
        .collect();
    assert_eq!(through, BTreeSet::from([held[1], spare]));
    // A signed peer record goes with it: the same addresses, a newer sequence number
    // than the first identify the spare had.
    let record = pushed.peer_record().expect("a signed peer record");
    assert_eq!(record.addrs, pushed.listen_addrs);
    let first = t.net.events[spare_index]
        .iter()
        .find_map(|e| match e {
            Event::Identified { peer, info, .. } if *peer == client_peer => info.peer_record(),
            _ => None,
        })
        .expect("a first record");
    assert!(record.seq > first.seq, "{} > {}", record.seq, first.seq);

    assert!(
        t.dial_through(spare_index),
        "reachable through the new relay"
    );
    assert!(!t.dial_through(victim), "not through the dead one");
}

#[test]
fn failover_when_a_relay_refuses() {
    // Round robin tries the static relays in order: 0 and 1 first. Relay 0 denies us.
    let client_peer = crate::identity::keypair_from_seed(100)
        .public()
        .to_peer_id();
    let mut t = Tier2::new(
        3,
        2,
        100,
        |i, r| {
            if i == 0 {
                r.acl.deny_peers = vec![client_peer];
            }
        },
        |a| a.selection_policy = SelectionPolicy::RoundRobin,
    );
    t.start();
    t.hold(2, 10 * SECS);
    assert_eq!(t.current(), vec![t.net.peer(1), t.net.peer(2)]);
    let refusals = |t: &Tier2| {
        t.net.events[t.client]
            .iter()
            .filter(
                |e| matches!(e, Event::ReservationRefused { relay, .. } if *relay == t.net.peer(0)),
            )
            .count()
    };
    assert_eq!(refusals(&t), 1);
    // The refusing relay backs off (30 s, then 60 s, ...): not asked again at once.
    t.run_until(20 * SECS, |_| false);
    assert_eq!(refusals(&t), 1);
    assert_eq!(t.current(), vec![t.net.peer(1), t.net.peer(2)]);
}

#[test]
fn failover_when_a_relay_goes_silent() {
    let mut t = Tier2::plain(3, 2);
    t.start();
    t.hold(2, 10 * SECS);
    let held = t.current();
    let spare = (0..3)
        .map(|i| t.net.peer(i))
        .find(|p| !held.contains(p))
        .unwrap();
    let victim = t.index_of(held[1]);
    let before = t.net.events[t.client].len();
    let frozen_at = t.net.now;
    t.net.freeze(victim);
    assert!(t.run_until(30 * SECS, |node| {
        node.auto_relay_current_relays().contains(&spare)
    }));
    let took = t.net.now - frozen_at;
    // Detection interval: ping interval + ping timeout = 2 s.
    let detection = 2 * SECS;
    assert!(
        took <= 2 * detection,
        "new reservation {took:?} after the relay froze"
    );
    let events = t.auto_events(before);
    assert_eq!(
        events[0],
        AutoRelayEvent::RelayRemoved {
            relay: held[1],
            reason: RemovalReason::Failed(FailureReason::HeartbeatTimeout),
        }
    );
    assert_eq!(t.current(), vec![held[0], spare]);
    assert!(t.dial_through(t.index_of(spare)));
}

#[test]
fn all_relays_failed_is_reported_then_recovered() {
    let mut t = Tier2::plain(1, 1);
    t.start();
    t.hold(1, 10 * SECS);
    let before = t.net.events[t.client].len();
    // The relay drops us: it closes its connection (it stays up).
    let client_peer = t.net.peer(t.client);
    let now = t.net.now;
    for conn in t.net.nodes[0].connections_to(&client_peer).to_vec() {
        t.net.nodes[0].close(now, conn);
    }
    t.net.drain(0);
    assert!(t.run_until(SECS, |node| node.auto_relay_current_relays().is_empty()));
    t.run_until(SECS, |_| false);
    assert!(
        t.auto_events(before)
            .contains(&AutoRelayEvent::Error(Error::AllRelaysFailed)),
        "{:?}",
        t.auto_events(before)
    );
    // After its backoff (30 s) the relay is asked again.
    t.hold(1, 40 * SECS);
}

#[test]
fn same_seed_same_choice() {
    let run = |seed: u8| {
        let mut t = Tier2::new(
            5,
            2,
            seed,
            |_, _| {},
            |a| a.selection_policy = SelectionPolicy::Random,
        );
        t.start();
        t.hold(2, 10 * SECS);
        // A failover too: the replacement is drawn from the same RNG.
        let victim = t.index_of(t.current()[0]);
        t.net.kill(victim);
        assert!(t.run_until(10 * SECS, |node| {
            let c = node.auto_relay_current_relays();
            c.len() == 2
                && !c.contains(
                    &crate::identity::keypair_from_seed(victim as u8 + 1)
                        .public()
                        .to_peer_id(),
                )
        }));
        (t.current(), t.auto_events(0))
    };
    let (relays, events) = run(10);
    assert_eq!(run(10), (relays.clone(), events));
    let choices: BTreeSet<Vec<PeerId>> = (10..20).map(|seed| run(seed).0).collect();
    assert!(choices.len() > 1, "the seed decides: {choices:?}");
}

#[test]
fn dynamic_candidate_from_identify() {
    let mut net = Net::new(Duration::from_millis(5));
    let relay = net.add(1, relay_config(|_| {}));
    let plain = net.add(2, Config::default());
    let client = net.add(
        100,
        client_config(Vec::new(), 2, |a| {
            a.enable_dynamic = true;
            a.boot_delay = Duration::ZERO;
        }),
    );
    let now = net.now;
    net.nodes[client].auto_relay_start(now).unwrap();
    // We meet a relay and a peer that is not one.
    for peer in [relay, plain] {
        let addr = net.full_addr(peer);
        net.nodes[client].dial(net.now, addr).unwrap();
    }
    let relay_peer = net.peer(relay);
    let end = net.now + 10 * SECS;
    assert!(
        net.run_until(end, |net| net.nodes[client].auto_relay_current_relays()
            == vec![relay_peer])
    );
    let machine = net.nodes[client].auto_relay().unwrap();
    assert!(machine.candidate(net.now, &net.peer(plain)).is_none());
    let candidate = machine.candidate(net.now, &relay_peer).unwrap();
    assert_eq!(candidate.source, crate::autorelay::Source::Hop);
    assert_eq!(candidate.addrs, vec![net.full_addr(relay)]);
    // Only one relay known: the peer source was asked for more.
    assert!(
        net.events[client]
            .iter()
            .any(|e| matches!(e, Event::AutoRelayPeerSourceQuery { .. }))
    );
}

#[test]
fn dynamic_candidates_from_the_peer_source() {
    let mut net = Net::new(Duration::from_millis(5));
    for i in 0..3 {
        net.add(1 + i, relay_config(|_| {}));
    }
    let client = net.add(
        100,
        client_config(Vec::new(), 2, |a| {
            a.enable_dynamic = true;
            a.boot_delay = Duration::ZERO;
            a.peer_source_timeout = 5 * SECS;
        }),
    );
    let now = net.now;
    net.nodes[client].auto_relay_start(now).unwrap();
    let limit = net
        .wait_for(client, SECS, |e| match e {
            Event::AutoRelayPeerSourceQuery { limit } => Some(*limit),
            _ => None,
        })
        .expect("the peer source is asked");
    assert_eq!(limit, 20, "max_candidates");
    // The application's peer source answers late: a timeout first, then still used.
    net.run_for(6 * SECS);
    assert!(
        net.events[client]
            .iter()
            .any(|e| *e == Event::AutoRelay(AutoRelayEvent::Error(Error::PeerSourceTimeout)))
    );
    let candidates = (0..3)
        .map(|i| Candidate {
            peer: net.peer(i),
            addrs: vec![net.addr(i)],
        })
        .collect();
    let now = net.now;
    net.nodes[client].auto_relay_peer_source_result(now, candidates);
    let end = net.now + 10 * SECS;
    assert!(net.run_until(
        end,
        |net| net.nodes[client].auto_relay_current_relays().len() == 2
    ));
    check(&net.nodes[client], 2);
}

#[test]
fn stop_releases_and_start_returns_to_the_same_relays() {
    let mut t = Tier2::plain(4, 2);
    t.start();
    t.hold(2, 10 * SECS);
    let held = t.current();
    let before = t.net.events[t.client].len();
    let now = t.net.now;
    t.net.nodes[t.client].auto_relay_stop(now);
    t.run_until(SECS, |_| false);
    assert!(t.current().is_empty());
    assert_eq!(t.client().reservations().count(), 0);
    assert!(t.client().relayed_addrs().is_empty());
    let removed: Vec<_> = t
        .auto_events(before)
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                AutoRelayEvent::RelayRemoved {
                    reason: RemovalReason::Stopped,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(removed.len(), 2);
    // Nothing is asked while stopped.
    t.run_until(60 * SECS, |_| false);
    assert!(t.current().is_empty());
    t.start();
    t.hold(2, 10 * SECS);
    assert_eq!(
        t.current().into_iter().collect::<BTreeSet<_>>(),
        held.into_iter().collect::<BTreeSet<_>>(),
        "the relays used last come back, so our addresses do"
    );
}

#[test]
fn add_static_relay_fills_a_free_slot() {
    let mut t = Tier2::new(3, 3, 100, |_, _| {}, |a| a.static_relay_peers.truncate(1));
    t.start();
    t.hold(1, 10 * SECS);
    let now = t.net.now;
    let (peer, addr) = (t.net.peer(2), t.net.full_addr(2));
    t.net.nodes[t.client]
        .auto_relay_add_static_relay(now, peer, vec![addr])
        .unwrap();
    t.hold(2, 10 * SECS);
    assert!(t.current().contains(&peer));
}

#[test]
fn a_public_node_reserves_only_once_it_is_private() {
    let mut net = Net::new(Duration::from_millis(5));
    for i in 0..2 {
        net.add(1 + i, relay_config(|_| {}));
    }
    let statics = (0..2).map(|i| net.full_addr(i)).collect();
    let mut config = client_config(statics, 2, |a| a.activation = Activation::WhenPrivate);
    config.external_addrs = vec!["/ip4/1.2.3.4/tcp/4001".parse().unwrap()];
    let client = net.add(100, config);
    let now = net.now;
    net.nodes[client].auto_relay_start(now).unwrap();
    net.run_for(10 * SECS);
    assert_eq!(net.nodes[client].reachability(), Reachability::Public);
    assert_eq!(net.nodes[client].reservations().count(), 0);

    let now = net.now;
    net.nodes[client].set_reachability(now, Reachability::Private);
    let end = net.now + 10 * SECS;
    assert!(net.run_until(end, |net| net.nodes[client].reservations().count() == 2));

    let now = net.now;
    net.nodes[client].set_reachability(now, Reachability::Public);
    net.run_for(SECS);
    assert_eq!(net.nodes[client].reservations().count(), 0);
    assert!(net.nodes[client].relayed_addrs().is_empty());
    assert!(net.events[client].iter().any(|e| matches!(
        e,
        Event::AutoRelay(AutoRelayEvent::RelayRemoved {
            reason: RemovalReason::Deactivated,
            ..
        })
    )));
}

#[test]
fn without_auto_relay_the_service_says_so() {
    let mut net = Net::new(Duration::from_millis(5));
    let node = net.add(1, Config::default());
    let now = net.now;
    assert_eq!(
        net.nodes[node].auto_relay_start(now),
        Err(Error::NotEnabled)
    );
    assert!(net.nodes[node].auto_relay().is_none());
    // Configured but not enabled.
    let mut config = client_config(Vec::new(), 1, |a| a.enabled = false);
    config.auto_relay.as_mut().unwrap().enable_dynamic = true;
    let node = net.add(2, config);
    assert_eq!(
        net.nodes[node].auto_relay_start(now),
        Err(Error::NotEnabled)
    );
    // Invalid settings are refused when the node is made.
    let config = client_config(Vec::new(), 0, |_| {});
    let error = Node::try_new(
        config,
        crate::identity::keypair_from_seed(3),
        [3; 32],
        now,
        1_800_000_000,
    )
    .unwrap_err();
    assert!(matches!(error, NodeConfigError::AutoRelay(_)), "{error}");
}
