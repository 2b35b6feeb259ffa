//! Unit tests of the NAT table: every dimension, every preset.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::packet::{Body, IcmpKind, Packet, Protocol, TcpFlags, TcpSegment};
use crate::time::SimTime;

const PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

fn sa(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), port)
}

fn inside() -> SocketAddrV4 {
    sa(10, 0, 0, 2, 4001)
}

fn r1() -> SocketAddrV4 {
    sa(203, 0, 113, 1, 443)
}

/// Same address as r1, another port.
fn r1_other_port() -> SocketAddrV4 {
    sa(203, 0, 113, 1, 444)
}

fn r2() -> SocketAddrV4 {
    sa(192, 0, 2, 7, 443)
}

fn udp(src: SocketAddrV4, dst: SocketAddrV4) -> Packet {
    Packet::udp(src, dst, Bytes::from_static(b"x"))
}

fn tcp(src: SocketAddrV4, dst: SocketAddrV4, flags: TcpFlags) -> Packet {
    Packet::tcp(src, dst, TcpSegment::control(flags, 100, 0))
}

fn at(ms: u64) -> SimTime {
    SimTime::from_millis(ms)
}

/// Sends a UDP packet out and returns its external source.
fn out(nat: &mut NatTable, now: SimTime, src: SocketAddrV4, dst: SocketAddrV4) -> SocketAddrV4 {
    match nat.outbound(now, udp(src, dst)) {
        NatAction::ToOutside(p) => {
            assert_eq!(p.dst, dst);
            p.src
        }
        other => panic!("outbound dropped: {other:?}"),
    }
}

/// Whether an inbound UDP packet is delivered (and to whom).
fn inbound(
    nat: &mut NatTable,
    now: SimTime,
    src: SocketAddrV4,
    dst: SocketAddrV4,
) -> Option<SocketAddrV4> {
    match nat.inbound(now, udp(src, dst)) {
        NatAction::ToInside(p) => Some(p.dst),
        _ => None,
    }
}

fn table(config: NatConfig) -> NatTable {
    NatTable::new(config, PUBLIC, 42)
}

#[test]
fn mapping_behaviour_of_every_preset() {
    for preset in NatPreset::ALL {
        let mut nat = table(preset.config());
        let e1 = out(&mut nat, at(0), inside(), r1());
        let e1b = out(&mut nat, at(1), inside(), r1_other_port());
        let e2 = out(&mut nat, at(2), inside(), r2());
        assert_eq!(*e1.ip(), PUBLIC);
        match preset.config().mapping {
            MappingBehavior::EndpointIndependent => {
                assert_eq!((e1, e1), (e1b, e2), "{preset}");
            }
            MappingBehavior::AddressAndPortDependent => {
                assert!(e1 != e1b && e1 != e2 && e1b != e2, "{preset}");
            }
            MappingBehavior::AddressDependent => unreachable!("no preset is ADM"),
        }
        // Sending again reuses the mapping in every case.
        assert_eq!(out(&mut nat, at(3), inside(), r1()), e1, "{preset}");
        nat.check_consistency().unwrap();
    }
}

#[test]
fn address_dependent_mapping() {
    let config = NatConfig {
        mapping: MappingBehavior::AddressDependent,
        ..NatConfig::full_cone()
    };
    let mut nat = table(config);
    let e1 = out(&mut nat, at(0), inside(), r1());
    assert_eq!(out(&mut nat, at(1), inside(), r1_other_port()), e1);
    assert_ne!(out(&mut nat, at(2), inside(), r2()), e1);
}

#[test]
fn filtering_behaviour_of_every_preset() {
    for preset in NatPreset::ALL {
        let config = preset.config();
        let mut nat = table(config);
        let e1 = out(&mut nat, at(0), inside(), r1());
        let from_r1 = inbound(&mut nat, at(1), r1(), e1);
        let from_r1_port = inbound(&mut nat, at(2), r1_other_port(), e1);
        let from_r2 = inbound(&mut nat, at(3), r2(), e1);
        assert_eq!(from_r1, Some(inside()), "{preset}");
        let (port, other) = match config.filtering {
            FilteringBehavior::EndpointIndependent => (true, true),
            FilteringBehavior::AddressDependent => (true, false),
            FilteringBehavior::AddressAndPortDependent => (false, false),
        };
        assert_eq!(from_r1_port.is_some(), port, "{preset}");
        assert_eq!(from_r2.is_some(), other, "{preset}");
        // Nothing reaches a port without a mapping.
        let unmapped = SocketAddrV4::new(PUBLIC, e1.port().wrapping_add(1));
        assert_eq!(inbound(&mut nat, at(4), r1(), unmapped), None, "{preset}");
    }
}

#[test]
fn port_allocation_of_every_preset() {
    for preset in NatPreset::ALL {
        let mut nat = table(preset.config());
        let e = out(&mut nat, at(0), inside(), r1());
        match preset.config().ports {
            PortAllocation::Preserve => assert_eq!(e.port(), inside().port(), "{preset}"),
            PortAllocation::Random => assert_ne!(e.port(), inside().port(), "{preset} (seeded)"),
            PortAllocation::Sequential => unreachable!("no preset is sequential"),
        }
    }
}

#[test]
fn sequential_and_exhausted_ports() {
    let config = NatConfig {
        ports: PortAllocation::Sequential,
        port_range: PortRange::new(2000, 2001),
        ..NatConfig::symmetric()
    };
    let mut nat = table(config);
    assert_eq!(out(&mut nat, at(0), inside(), r1()).port(), 2000);
    assert_eq!(out(&mut nat, at(0), inside(), r2()).port(), 2001);
    assert_eq!(
        nat.outbound(at(0), udp(inside(), r1_other_port())),
        NatAction::Drop(NatDrop::PortsExhausted)
    );
}

#[test]
fn preservation_falls_back_when_another_host_holds_the_port() {
    let mut nat = table(NatConfig::linux_default());
    let a = out(&mut nat, at(0), inside(), r1());
    let other = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 3), inside().port());
    let b = out(&mut nat, at(0), other, r1());
    assert_eq!(a.port(), inside().port());
    assert_ne!(b.port(), a.port());
    assert_eq!(inbound(&mut nat, at(1), r1(), b), Some(other));
}

#[test]
fn hairpinning() {
    let peer = sa(10, 0, 0, 3, 4002);
    for preset in NatPreset::ALL {
        let config = preset.config();
        let mut nat = table(config);
        let e_peer = out(&mut nat, at(0), peer, r1());
        let e_inside = out(&mut nat, at(0), inside(), r1());
        // inside -> peer's external endpoint: the peer's filter decides.
        let first = nat.outbound(at(1), udp(inside(), e_peer));
        // peer -> inside's external endpoint: inside has just sent to e_peer.
        let second = nat.outbound(at(2), udp(peer, e_inside));
        if !config.hairpinning {
            assert_eq!(first, NatAction::Drop(NatDrop::HairpinDisabled), "{preset}");
            assert_eq!(
                second,
                NatAction::Drop(NatDrop::HairpinDisabled),
                "{preset}"
            );
            continue;
        }
        match (config.filtering, first) {
            (FilteringBehavior::EndpointIndependent, NatAction::ToInside(p)) => {
                assert_eq!(p.dst, peer)
            }
            (FilteringBehavior::EndpointIndependent, other) => panic!("{preset}: {other:?}"),
            (_, other) => assert_eq!(other, NatAction::Drop(NatDrop::Filtered), "{preset}"),
        }
        // The source is the sender's external endpoint (RFC 4787 REQ-9).
        let NatAction::ToInside(p) = second else {
            panic!("{preset}: {second:?}")
        };
        assert_eq!((p.src, p.dst), (e_peer, inside()), "{preset}");
    }
}

#[test]
fn udp_mapping_expires_after_its_idle_time() {
    let timeouts = Timeouts {
        udp: Duration::from_secs(30),
        tcp_established: Duration::from_secs(300),
        tcp_transitory: Duration::from_secs(60),
    };
    let mut nat = table(
        NatConfig::full_cone()
            .with_timeouts(timeouts)
            .with_ports(PortAllocation::Sequential),
    );
    let e = out(&mut nat, at(0), inside(), r1());
    // Inbound traffic refreshes too.
    assert!(inbound(&mut nat, SimTime::from_secs(20), r1(), e).is_some());
    assert!(inbound(&mut nat, SimTime::from_secs(50), r1(), e).is_some());
    assert_eq!(nat.mappings(SimTime::from_secs(80)).len(), 1);
    assert!(
        nat.mappings(SimTime::from_secs(80) + Duration::from_nanos(1))
            .is_empty()
    );
    assert_eq!(inbound(&mut nat, SimTime::from_secs(81), r1(), e), None);
    // A new mapping gets the next port.
    let e2 = out(&mut nat, SimTime::from_secs(82), inside(), r1());
    assert_ne!(e2, e);
    nat.check_consistency().unwrap();
}

#[test]
fn tcp_mapping_lifetime_depends_on_connection_state() {
    let timeouts = Timeouts {
        udp: Duration::from_secs(30),
        tcp_established: Duration::from_secs(1000),
        tcp_transitory: Duration::from_secs(100),
    };
    let mut nat = table(NatConfig::full_cone().with_timeouts(timeouts));
    let NatAction::ToOutside(syn) = nat.outbound(at(0), tcp(inside(), r1(), TcpFlags::SYN)) else {
        panic!("syn dropped")
    };
    let e = syn.src;
    // Only a SYN out: transitory.
    assert_eq!(nat.mappings(at(0))[0].expires_at, SimTime::from_secs(100));
    // SYN-ACK in: established.
    let synack = tcp(r1(), e, TcpFlags::SYN | TcpFlags::ACK);
    assert!(matches!(
        nat.inbound(at(10), synack),
        NatAction::ToInside(_)
    ));
    assert_eq!(
        nat.mappings(at(10))[0].expires_at,
        at(10) + Duration::from_secs(1000)
    );
    // FIN: transitory again.
    let fin = tcp(inside(), r1(), TcpFlags::FIN | TcpFlags::ACK);
    assert!(matches!(nat.outbound(at(20), fin), NatAction::ToOutside(_)));
    assert_eq!(
        nat.mappings(at(20))[0].expires_at,
        at(20) + Duration::from_secs(100)
    );
}

#[test]
fn an_outbound_rst_creates_no_mapping() {
    let mut nat = table(NatConfig::full_cone());
    assert_eq!(
        nat.outbound(at(0), tcp(inside(), r1(), TcpFlags::RST)),
        NatAction::Drop(NatDrop::NoMapping)
    );
    assert!(nat.mappings(at(0)).is_empty());
}

#[test]
fn unsolicited_syn_policies() {
    let target = SocketAddrV4::new(PUBLIC, 5000);
    let syn = tcp(r1(), target, TcpFlags::SYN);
    let mut nat = table(NatConfig::full_cone().with_inbound_syn(InboundSynPolicy::Drop));
    assert_eq!(
        nat.inbound(at(0), syn.clone()),
        NatAction::Drop(NatDrop::NoMapping)
    );

    let mut nat = table(NatConfig::full_cone().with_inbound_syn(InboundSynPolicy::Rst));
    let NatAction::ToOutside(rst) = nat.inbound(at(0), syn.clone()) else {
        panic!("no rst")
    };
    assert_eq!((rst.src, rst.dst), (target, r1()));
    let seg = rst.tcp_segment().unwrap();
    assert!(seg.flags.rst() && seg.flags.ack());
    assert_eq!(seg.ack, 101);

    let mut nat = table(NatConfig::full_cone().with_inbound_syn(InboundSynPolicy::Icmp));
    let NatAction::ToOutside(icmp) = nat.inbound(at(0), syn.clone()) else {
        panic!("no icmp")
    };
    let Body::Icmp(err) = icmp.body else {
        panic!("not icmp")
    };
    assert_eq!(err.kind, IcmpKind::AdminProhibited);
    assert_eq!((err.original.src, err.original.dst), (r1(), target));

    // Only SYNs get an answer; a filtered SYN gets the same as an unmapped one.
    let mut nat = table(NatConfig::linux_default());
    let e = match nat.outbound(at(0), tcp(inside(), r1(), TcpFlags::SYN)) {
        NatAction::ToOutside(p) => p.src,
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        nat.inbound(at(1), tcp(r2(), e, TcpFlags::SYN)),
        NatAction::ToOutside(_)
    ));
    assert_eq!(
        nat.inbound(at(1), tcp(r2(), e, TcpFlags::ACK)),
        NatAction::Drop(NatDrop::Filtered)
    );
}

#[test]
fn icmp_errors_are_translated_back() {
    let mut nat = table(NatConfig::port_restricted_cone());
    let NatAction::ToOutside(syn) = nat.outbound(at(0), tcp(inside(), r1(), TcpFlags::SYN)) else {
        panic!()
    };
    let icmp = |src: SocketAddrV4, dst: SocketAddrV4| Packet {
        src: SocketAddrV4::new(*r1().ip(), 0),
        dst: SocketAddrV4::new(PUBLIC, 0),
        body: Body::Icmp(crate::packet::IcmpError {
            kind: IcmpKind::PortUnreachable,
            original: crate::packet::OriginalHeader {
                src,
                dst,
                protocol: Protocol::Tcp,
            },
        }),
    };
    let NatAction::ToInside(back) = nat.inbound(at(1), icmp(syn.src, r1())) else {
        panic!()
    };
    let Body::Icmp(err) = back.body else { panic!() };
    assert_eq!(err.original.src, inside());
    assert_eq!(*back.dst.ip(), *inside().ip());
    // About a packet to a remote the mapping never contacted: filtered.
    assert_eq!(
        nat.inbound(at(1), icmp(syn.src, r2())),
        NatAction::Drop(NatDrop::Filtered)
    );
}

#[test]
fn presets_are_what_their_names_say() {
    use FilteringBehavior as F;
    use MappingBehavior as M;
    let summary = |c: NatConfig| {
        (
            c.mapping,
            c.filtering,
            c.ports,
            c.hairpinning,
            c.inbound_syn,
        )
    };
    assert_eq!(
        summary(NatConfig::full_cone()),
        (
            M::EndpointIndependent,
            F::EndpointIndependent,
            PortAllocation::Preserve,
            true,
            InboundSynPolicy::Drop
        )
    );
    assert_eq!(NatConfig::restricted_cone().filtering, F::AddressDependent);
    assert_eq!(
        NatConfig::port_restricted_cone().filtering,
        F::AddressAndPortDependent
    );
    assert_eq!(
        summary(NatConfig::symmetric()),
        (
            M::AddressAndPortDependent,
            F::AddressAndPortDependent,
            PortAllocation::Random,
            false,
            InboundSynPolicy::Drop
        )
    );
    assert_eq!(
        summary(NatConfig::linux_default()),
        (
            M::EndpointIndependent,
            F::AddressAndPortDependent,
            PortAllocation::Preserve,
            false,
            InboundSynPolicy::Rst
        )
    );
}
