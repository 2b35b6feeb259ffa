//! relay-proto nodes on simulated hosts: reservation, relayed connection, ping, crash
//! and restart of the relay, a peer behind a NAT chain, determinism.

mod common;

use std::time::Duration;

use common::*;
use relay_proto::Event;
use relay_proto::hop::RelayConfig;
use relay_proto::identity::keypair_from_seed;
use relay_proto::multiaddr::Protocol;
use relay_proto::node::Config;
use simulator::nat::NatConfig;
use simulator::node::{NodeEvent, NodeSpec, NodeWorld, SimClock};
use simulator::{HostId, LinkParams, SimTime, World};

struct Net {
    nw: NodeWorld,
    relay: HostId,
    a: HostId,
    b: HostId,
    log: Vec<NodeEvent>,
}

/// A public relay, A behind a full cone NAT inside a port-restricted one, B public.
fn net(seed: u64, clock: SimClock) -> Net {
    let mut world = World::new(seed);
    let internet = world.add_network();
    let relay = world
        .add_host(internet, ip(203, 0, 113, 1), LinkParams::new(ms(10)))
        .unwrap();
    let outer = world
        .add_nat(
            internet,
            ip(198, 51, 100, 1),
            LinkParams::new(ms(15)),
            NatConfig::port_restricted_cone(),
        )
        .unwrap();
    let isp = world.nat_inside_network(outer).unwrap();
    let inner = world
        .add_nat(
            isp,
            ip(10, 1, 1, 2),
            LinkParams::new(ms(1)),
            NatConfig::full_cone(),
        )
        .unwrap();
    let lan = world.nat_inside_network(inner).unwrap();
    let a = world
        .add_host(lan, ip(10, 1, 2, 100), LinkParams::new(ms(1)))
        .unwrap();
    let b = world
        .add_host(internet, ip(192, 0, 2, 10), LinkParams::new(ms(20)))
        .unwrap();
    let mut nw = NodeWorld::new(world, clock);
    let relay_config = Config {
        relay: Some(RelayConfig::default()),
        ..Config::default()
    };
    nw.attach(
        relay,
        NodeSpec::new(relay_config, keypair_from_seed(1), 4001),
    )
    .unwrap();
    nw.attach(
        a,
        NodeSpec::new(Config::default(), keypair_from_seed(2), 4001),
    )
    .unwrap();
    nw.attach(
        b,
        NodeSpec::new(Config::default(), keypair_from_seed(3), 4001),
    )
    .unwrap();
    Net {
        nw,
        relay,
        a,
        b,
        log: Vec::new(),
    }
}

impl Net {
    /// Runs until `f` matches an event of `host`, within `limit`; checks the
    /// invariants after every step.
    fn wait<T>(
        &mut self,
        host: HostId,
        limit: Duration,
        mut f: impl FnMut(&Event) -> Option<T>,
    ) -> Option<T> {
        let end = self.nw.now() + limit;
        loop {
            while let Some(e) = self.nw.poll_event() {
                let found = if e.host == host { f(&e.event) } else { None };
                self.log.push(e);
                if found.is_some() {
                    return found;
                }
            }
            match self.nw.next_event_time() {
                Some(t) if t <= end => {
                    self.nw.step();
                    self.nw.check().expect("invariants hold");
                }
                _ => return None,
            }
        }
    }

    fn relay_addr(&self) -> relay_proto::Multiaddr {
        let peer = self.nw.node(self.relay).unwrap().peer_id();
        self.nw
            .listen_addr(self.relay)
            .unwrap()
            .with(Protocol::P2p(peer))
    }

    /// B reserves on the relay; A dials B through it. Returns A's relayed connection.
    fn reserve_and_dial(&mut self) -> relay_proto::ConnectionId {
        let relay_addr = self.relay_addr();
        self.nw
            .command(self.b, |n, now| n.reserve(now, relay_addr.clone()))
            .unwrap()
            .unwrap();
        self.wait(self.b, Duration::from_secs(10), |e| {
            matches!(e, Event::ReservationAccepted { .. }).then_some(())
        })
        .expect("reservation accepted");
        let b_peer = self.nw.node(self.b).unwrap().peer_id();
        let circuit = relay_addr
            .with(Protocol::P2pCircuit)
            .with(Protocol::P2p(b_peer));
        let conn = self
            .nw
            .command(self.a, |n, now| n.dial(now, circuit))
            .unwrap()
            .unwrap();
        self.wait(self.a, Duration::from_secs(10), |e| match e {
            Event::ConnectionEstablished {
                conn: c, relayed, ..
            } if *c == conn => Some(*relayed),
            _ => None,
        })
        .map(|relayed| assert!(relayed))
        .expect("relayed connection");
        conn
    }
}

#[test]
fn relayed_connection_through_nats_and_ping() {
    let mut n = net(7, SimClock::start());
    let conn = n.reserve_and_dial();
    n.nw.command(n.a, |node, now| node.ping(now, conn, 2))
        .unwrap()
        .unwrap();
    let mut rtts = Vec::new();
    while rtts.len() < 2 {
        let rtt = n
            .wait(n.a, Duration::from_secs(10), |e| match e {
                Event::Ping {
                    conn: c,
                    result: Ok(rtt),
                    ..
                } if *c == conn => Some(*rtt),
                _ => None,
            })
            .expect("pong");
        rtts.push(rtt);
    }
    // A to B through the relay: A's LAN hops, 15 + 10 ms to the relay, 10 + 20 ms to B.
    let floor = Duration::from_millis(2 * (1 + 1 + 15 + 10 + 10 + 20));
    assert!(rtts.iter().all(|r| *r >= floor), "{rtts:?}");
    let relay = n.nw.node(n.relay).unwrap().relay_policy().unwrap().usage();
    assert!(relay.bytes_relayed > 0);
    assert_eq!(relay.reservations, 1);
}

#[test]
fn reservation_is_lost_when_the_relay_crashes_and_renewed_after_restart() {
    let mut n = net(3, SimClock::start());
    n.reserve_and_dial();
    n.nw.crash(n.relay).unwrap();
    n.nw.run_until(n.nw.now() + Duration::from_secs(1));
    n.nw.restart(n.relay).unwrap();
    // B's next bytes to the relay (a ping) meet a fresh stack: reset, reservation lost.
    n.wait(n.b, Duration::from_secs(120), |e| {
        matches!(e, Event::ReservationLost { .. }).then_some(())
    })
    .expect("reservation lost");
    let relay_addr = n.relay_addr();
    n.nw.command(n.b, |node, now| node.reserve(now, relay_addr))
        .unwrap()
        .unwrap();
    n.wait(n.b, Duration::from_secs(10), |e| {
        matches!(e, Event::ReservationAccepted { .. }).then_some(())
    })
    .expect("reserved again");
    assert_eq!(n.nw.incarnation(n.relay), Some(1));
}

/// Runs the same setup twice with different base instants: the event logs, with times
/// relative to the start, are identical.
#[test]
fn same_seed_same_run_whatever_the_base_instant() {
    let render = |clock: SimClock| {
        let mut n = net(11, clock);
        n.reserve_and_dial();
        n.nw.run_until(SimTime::from_secs(60));
        while let Some(e) = n.nw.poll_event() {
            n.log.push(e);
        }
        let trace = n.nw.world().trace_hash();
        let log: Vec<String> = n
            .log
            .iter()
            .map(|e| format!("{} {} {:?}", e.at, e.host, e.event))
            .collect();
        (trace, log)
    };
    let base = SimClock::start();
    let later = SimClock::new(base.base() + Duration::from_secs(12_345));
    let (t1, l1) = render(base);
    let (t2, l2) = render(later);
    assert_eq!(t1, t2);
    assert_eq!(l1, l2);
    assert!(l1.len() > 10);
}
