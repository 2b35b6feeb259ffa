//! NATs in a world: chains, hairpinning, lifetimes, crashes, and invariants after
//! every step.

mod common;

use bytes::Bytes;
use common::*;
use simulator::nat::{NatConfig, Timeouts};
use simulator::{CloseReason, HostEvent, LinkParams, SimTime, TcpEvent, UdpEvent, World};
use std::time::Duration;

fn datagrams(
    events: &[(SimTime, simulator::HostId, HostEvent)],
) -> Vec<(simulator::HostId, std::net::SocketAddrV4)> {
    events
        .iter()
        .filter_map(|(_, h, e)| match e {
            HostEvent::Udp(UdpEvent::Datagram { from, .. }) => Some((*h, *from)),
            _ => None,
        })
        .collect()
}

#[test]
fn double_nat_translates_twice() {
    let mut world = World::new(1);
    let internet = world.add_network();
    let server = world
        .add_host(internet, ip(203, 0, 113, 1), LinkParams::new(ms(10)))
        .unwrap();
    let cgnat = world
        .add_nat(
            internet,
            ip(198, 51, 100, 1),
            LinkParams::new(ms(10)),
            NatConfig::full_cone(),
        )
        .unwrap();
    let isp = world.nat_inside_network(cgnat).unwrap();
    let home = world
        .add_nat(
            isp,
            ip(100, 64, 0, 2),
            LinkParams::new(ms(1)),
            NatConfig::port_restricted_cone(),
        )
        .unwrap();
    let lan = world.nat_inside_network(home).unwrap();
    let client = world
        .add_host(lan, ip(192, 168, 1, 2), LinkParams::new(ms(1)))
        .unwrap();
    world.udp_bind(server, 53).unwrap();
    world
        .udp_send(
            client,
            5353,
            sa(ip(203, 0, 113, 1), 53),
            Bytes::from_static(b"q"),
        )
        .unwrap();
    let events = run_collect(&mut world, SimTime::from_secs(1));
    // Both NATs preserve the port; the server sees the outer NAT's address.
    assert_eq!(
        datagrams(&events),
        vec![(server, sa(ip(198, 51, 100, 1), 5353))]
    );
    world
        .udp_send(
            server,
            53,
            sa(ip(198, 51, 100, 1), 5353),
            Bytes::from_static(b"a"),
        )
        .unwrap();
    let events = run_collect(&mut world, SimTime::from_secs(2));
    assert_eq!(
        datagrams(&events),
        vec![(client, sa(ip(203, 0, 113, 1), 53))]
    );
    assert_eq!(
        world.nat_table(cgnat).unwrap().mappings(world.now()).len(),
        1
    );
    assert_eq!(
        world.nat_table(home).unwrap().mappings(world.now()).len(),
        1
    );
}

/// Two hosts behind one NAT and a public relay.
fn shared_nat(config: NatConfig) -> (World, simulator::NatId, [simulator::HostId; 3]) {
    let mut world = World::new(2);
    let internet = world.add_network();
    let relay = world
        .add_host(internet, ip(203, 0, 113, 1), LinkParams::new(ms(10)))
        .unwrap();
    let nat = world
        .add_nat(
            internet,
            ip(198, 51, 100, 1),
            LinkParams::new(ms(10)),
            config,
        )
        .unwrap();
    let lan = world.nat_inside_network(nat).unwrap();
    let a = world
        .add_host(lan, ip(10, 0, 0, 2), LinkParams::new(ms(1)))
        .unwrap();
    let b = world
        .add_host(lan, ip(10, 0, 0, 3), LinkParams::new(ms(1)))
        .unwrap();
    (world, nat, [relay, a, b])
}

#[test]
fn hairpinning_lets_neighbours_use_their_observed_addresses() {
    for hairpinning in [true, false] {
        let (mut world, _, [relay, a, b]) =
            shared_nat(NatConfig::full_cone().with_hairpinning(hairpinning));
        world.tcp_listen(relay, 443).unwrap();
        world.tcp_listen(b, 4002).unwrap();
        world
            .tcp_connect(b, Some(4002), sa(ip(203, 0, 113, 1), 443))
            .unwrap();
        run_collect(&mut world, SimTime::from_secs(1));
        // b's observed address is 198.51.100.1:4002; a dials it.
        let conn = world
            .tcp_connect(a, Some(4001), sa(ip(198, 51, 100, 1), 4002))
            .unwrap();
        let events = run_collect(&mut world, SimTime::from_secs(10));
        let connected = events.iter().any(|(_, _, e)| matches!(e, HostEvent::Tcp(TcpEvent::Connected { conn: c, .. }) if *c == conn));
        assert_eq!(connected, hairpinning);
        if hairpinning {
            // b sees a's external endpoint, not its LAN address (RFC 4787 REQ-9).
            assert!(events.iter().any(|(_, h, e)| *h == b
                && matches!(e, HostEvent::Tcp(TcpEvent::Accepted { remote, .. }) if *remote == sa(ip(198, 51, 100, 1), 4001))));
        }
    }
}

#[test]
fn an_idle_udp_mapping_expires_and_stops_inbound_traffic() {
    let timeouts = Timeouts {
        udp: Duration::from_secs(30),
        ..Timeouts::RFC
    };
    let (mut world, _, [relay, a, _]) = shared_nat(NatConfig::full_cone().with_timeouts(timeouts));
    world.udp_bind(relay, 443).unwrap();
    world.udp_bind(a, 4001).unwrap();
    world
        .udp_send(
            a,
            4001,
            sa(ip(203, 0, 113, 1), 443),
            Bytes::from_static(b"hi"),
        )
        .unwrap();
    run_collect(&mut world, SimTime::from_secs(1));
    let observed = sa(ip(198, 51, 100, 1), 4001);
    // Within the lifetime: delivered (and refreshed).
    world.run_until(SimTime::from_secs(20));
    world
        .udp_send(relay, 443, observed, Bytes::from_static(b"1"))
        .unwrap();
    assert_eq!(
        datagrams(&run_collect(&mut world, SimTime::from_secs(21))).len(),
        1
    );
    // 30 s after the last packet: gone.
    world.run_until(SimTime::from_secs(52));
    world
        .udp_send(relay, 443, observed, Bytes::from_static(b"2"))
        .unwrap();
    assert!(datagrams(&run_collect(&mut world, SimTime::from_secs(53))).is_empty());
    world.check_invariants().unwrap();
}

#[test]
fn a_nat_crash_breaks_connections_through_it() {
    let (mut world, nat, [relay, a, _]) = shared_nat(NatConfig::port_restricted_cone());
    world.tcp_listen(relay, 443).unwrap();
    let conn = world
        .tcp_connect(a, None, sa(ip(203, 0, 113, 1), 443))
        .unwrap();
    let events = run_collect(&mut world, SimTime::from_secs(1));
    let relay_conn = events
        .iter()
        .find_map(|(_, _, e)| match e {
            HostEvent::Tcp(TcpEvent::Accepted { conn, .. }) => Some(*conn),
            _ => None,
        })
        .unwrap();
    world.crash_nat(nat).unwrap();
    world.restart_nat(nat).unwrap();
    assert!(
        world
            .nat_table(nat)
            .unwrap()
            .mappings(world.now())
            .is_empty()
    );
    // The relay's data meets an empty table and is dropped, again and again, until the
    // relay gives up; a, which sends nothing, never notices.
    world
        .tcp_send(relay_conn, Bytes::from_static(b"x"))
        .unwrap();
    let events = run_collect(&mut world, SimTime::from_secs(2000));
    assert!(events.iter().any(|(_, _, e)| *e
        == HostEvent::Tcp(TcpEvent::Closed {
            conn: relay_conn,
            reason: CloseReason::Timeout
        })));
    assert!(
        world.tcp_state(conn).is_some(),
        "a never heard of the trouble"
    );
}
