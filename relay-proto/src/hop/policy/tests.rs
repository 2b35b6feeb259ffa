//! Unit tests of the admission rules, each limit at its exact boundary.

use std::fmt::Debug;
use std::time::Duration;

use super::*;
use crate::hop::{AbuseConfig, AclConfig, HookMode, RateLimit, RateLimits};
use crate::identity::keypair_from_seed;

const UNIX: u64 = 1_700_000_000;
const SEC: Duration = Duration::from_secs(1);
const NS: Duration = Duration::from_nanos(1);

fn peer(n: u8) -> PeerId {
    keypair_from_seed(n).public().to_peer_id()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v4(n: u8) -> IpAddr {
    IpAddr::from([10, 0, 0, n])
}

/// Defaults with every limit lifted, so each test sets only the one it exercises.
fn open() -> RelayConfig {
    RelayConfig {
        max_circuits: 0,
        max_circuit_duration: Duration::ZERO,
        max_circuit_bytes: 0,
        max_reservations: 0,
        max_reservations_per_peer: 0,
        max_reservations_per_ip: 0,
        max_reservations_per_asn: 0,
        max_circuits_per_peer: 0,
        max_pending_asks: 0,
        rate: RateLimits::off(),
        abuse: AbuseConfig {
            refusals: RateLimit::OFF,
            ban: Duration::ZERO,
        },
        ..RelayConfig::default()
    }
}

fn policy(config: RelayConfig) -> RelayPolicy {
    RelayPolicy::new(config).unwrap()
}

fn granted<G: Debug>(a: Admission<G>) -> G {
    match a {
        Admission::Granted(g) => g,
        other => panic!("expected a grant, got {other:?}"),
    }
}

fn refused<G: Debug>(a: Admission<G>) -> Refusal {
    match a {
        Admission::Refused(r) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn asked<G: Debug>(a: Admission<G>) -> HookRequest {
    match a {
        Admission::Ask(r) => r,
        other => panic!("expected a hook request, got {other:?}"),
    }
}

fn events(p: &mut RelayPolicy) -> Vec<PolicyEvent> {
    std::iter::from_fn(|| p.poll_event()).collect()
}

#[test]
fn max_reservations_admits_n_and_refuses_the_next() {
    let t0 = crate::hop::test_base();
    let mut p = policy(RelayConfig {
        max_reservations: 3,
        ..open()
    });
    for n in 1..=3 {
        granted(p.reserve(t0, UNIX, peer(n), v4(n)));
    }
    let r = refused(p.reserve(t0, UNIX, peer(4), v4(4)));
    assert_eq!(r, Refusal::ReservationRefused(RefusalReason::Reservations));
    assert_eq!(r.status_code(), 200);
    // A holder may still refresh while the relay is full.
    assert!(granted(p.reserve(t0, UNIX, peer(1), v4(1))).refreshed);
    p.remove_reservation(&peer(2));
    granted(p.reserve(t0, UNIX, peer(4), v4(4)));
    assert_eq!(p.usage().reservations, 3);
}

#[test]
fn per_ip_limit_admits_n_and_groups_ipv6_by_prefix() {
    let t0 = crate::hop::test_base();
    let mut p = policy(RelayConfig {
        max_reservations_per_ip: 2,
        ..open()
    });
    granted(p.reserve(t0, UNIX, peer(1), v4(1)));
    granted(p.reserve(t0, UNIX, peer(2), v4(1)));
    let r = refused(p.reserve(t0, UNIX, peer(3), v4(1)));
    assert_eq!(
        r.reason(),
        RefusalReason::ReservationsForIp(IpKey::new(v4(1), 64))
    );
    assert_eq!(r.status_code(), 200);
    granted(p.reserve(t0, UNIX, peer(3), v4(2)));
    // IPv4-mapped IPv6 is the same IPv4 address.
    refused(p.reserve(t0, UNIX, peer(4), ip("::ffff:10.0.0.1")));
    // Two addresses of one /64 are one IP; the next /64 is another.
    granted(p.reserve(t0, UNIX, peer(5), ip("2001:db8:0:1::a")));
    granted(p.reserve(t0, UNIX, peer(6), ip("2001:db8:0:1::b")));
    refused(p.reserve(t0, UNIX, peer(7), ip("2001:db8:0:1:ffff::c")));
    granted(p.reserve(t0, UNIX, peer(7), ip("2001:db8:0:2::c")));
}

#[test]
fn per_asn_limit_admits_n_and_skips_unrouted_addresses() {
    let t0 = crate::hop::test_base();
    let table = AsnTable::parse(
        "10.0.0.0\t10.0.0.255\t100\tZZ\tA\n\
         10.0.1.0\t10.0.1.255\t100\tZZ\tA\n\
         10.9.0.0\t10.9.255.255\t0\tNone\tNot routed\n\
         2001:db8::\t2001:db8:ffff:ffff:ffff:ffff:ffff:ffff\t100\tZZ\tA\n",
    )
    .unwrap();
    let config = RelayConfig {
        max_reservations_per_asn: 3,
        ..open()
    };
    let mut p = policy(config.clone()).with_asn_table(table);
    granted(p.reserve(t0, UNIX, peer(1), v4(1)));
    granted(p.reserve(t0, UNIX, peer(2), ip("10.0.1.255")));
    granted(p.reserve(t0, UNIX, peer(3), ip("2001:db8::1")));
    let r = refused(p.reserve(t0, UNIX, peer(4), ip("10.0.0.255")));
    assert_eq!(
        r,
        Refusal::ReservationRefused(RefusalReason::ReservationsForAsn(100))
    );
    for n in 4..10 {
        granted(p.reserve(t0, UNIX, peer(n), IpAddr::from([10, 9, 0, n])));
        granted(p.reserve(t0, UNIX, peer(n + 10), IpAddr::from([10, 0, 2, n])));
    }
    assert_eq!(p.reservation(&peer(1)).unwrap().asn, Some(100));
    // Without a table there is no ASN limit.
    let mut q = policy(config);
    for n in 1..10 {
        granted(q.reserve(t0, UNIX, peer(n), v4(n)));
    }
}

#[test]
fn refresh_is_counted_once_and_extends_the_expiry() {
    let t0 = crate::hop::test_base();
    let mut p = policy(RelayConfig {
        max_reservations: 1,
        max_reservations_per_ip: 1,
        reservation_ttl: Duration::from_secs(600),
        ..open()
    });
    let first = granted(p.reserve(t0, UNIX, peer(1), v4(1)));
    assert!(!first.refreshed);
    assert_eq!(first.expires_at, t0 + SEC * 600);
    assert_eq!(first.expire_unix, UNIX + 600);
    for k in 1..=5u32 {
        let now = t0 + SEC * 10 * k;
        let g = granted(p.reserve(now, UNIX + 10 * u64::from(k), peer(1), v4(1)));
        assert!(g.refreshed);
        assert_eq!(g.expires_at, now + SEC * 600);
        assert_eq!(g.expire_unix, UNIX + 10 * u64::from(k) + 600);
    }
    let info = p.reservation(&peer(1)).unwrap();
    assert_eq!((info.granted_at, info.refreshes), (t0, 5));
    let u = p.usage();
    assert_eq!(
        (
            u.reservations,
            u.reservations_granted,
            u.reservations_refreshed
        ),
        (1, 1, 5)
    );
    assert_eq!(p.poll_timeout(), Some(t0 + SEC * 650));
    refused(p.reserve(t0 + SEC * 50, UNIX, peer(2), v4(2)));
}

#[test]
fn reconnecting_from_a_new_ip_moves_the_accounting() {
    let t0 = crate::hop::test_base();
    let table = AsnTable::parse("10.0.0.0\t10.0.0.255\t1\n10.0.1.0\t10.0.1.255\t2").unwrap();
    let mut p = policy(RelayConfig {
        max_reservations_per_ip: 1,
        max_reservations_per_asn: 1,
        ..open()
    })
    .with_asn_table(table);
    let (a, b) = (ip("10.0.0.1"), ip("10.0.1.1"));
    granted(p.reserve(t0, UNIX, peer(1), a));
    assert!(granted(p.reserve(t0 + SEC, UNIX, peer(1), b)).refreshed);
    let info = *p.reservation(&peer(1)).unwrap();
    assert_eq!((info.ip, info.asn), (b, Some(2)));
    // The old IP and ASN are free, the new ones taken.
    granted(p.reserve(t0 + SEC, UNIX, peer(2), a));
    let r = refused(p.reserve(t0 + SEC, UNIX, peer(3), b));
    assert_eq!(
        r.reason(),
        RefusalReason::ReservationsForIp(IpKey::new(b, 64))
    );
    assert_eq!(p.usage().reservations, 2);
}

#[test]
fn a_refused_refresh_leaves_the_reservation_alone() {
    let t0 = crate::hop::test_base();
    let mut p = policy(RelayConfig {
        max_reservations_per_ip: 1,
        ..open()
    });
    let g = granted(p.reserve(t0, UNIX, peer(1), v4(1)));
    granted(p.reserve(t0, UNIX, peer(2), v4(2)));
    refused(p.reserve(t0 + SEC, UNIX, peer(1), v4(2)));
    let info = p.reservation(&peer(1)).unwrap();
    assert_eq!(
        (info.ip, info.expires_at, info.refreshes),
        (v4(1), g.expires_at, 0)
    );
}

#[test]
fn reservations_expire_at_the_exact_instant() {
    let t0 = crate::hop::test_base();
    let ttl = Duration::from_secs(60);
    let mut p = policy(RelayConfig {
        reservation_ttl: ttl,
        max_reservations: 1,
        ..open()
    });
    granted(p.reserve(t0, UNIX, peer(1), v4(1)));
    let end = t0 + ttl;
    assert_eq!(p.poll_timeout(), Some(end));
    p.handle_timeout(end - NS);
    assert!(events(&mut p).is_empty());
    assert!(p.reservation(&peer(1)).is_some());
    granted(p.connect(end - NS, peer(2), v4(2), peer(1)));
    // At the instant itself the reservation is gone, even before the timer fires.
    let r = refused(p.connect(end, peer(3), v4(3), peer(1)));
    assert_eq!(r, Refusal::NoReservation(peer(1)));
    assert_eq!(r.status_code(), 204);
    match events(&mut p).as_slice() {
        [PolicyEvent::ReservationExpired(info)] => assert_eq!(info.peer, peer(1)),
        other => panic!("{other:?}"),
    }
    assert!(p.reservation(&peer(1)).is_none());
    assert_eq!(p.usage().reservations_expired, 1);
    // The expired slot is free for someone else.
    granted(p.reserve(end, UNIX, peer(2), v4(2)));
}

#[test]
fn expired_reservations_are_collected_by_the_timer() {
    let t0 = crate::hop::test_base();
    let mut p = policy(RelayConfig {
        reservation_ttl: Duration::from_secs(60),
        ..open()
    });
    for n in 1..=3 {
        granted(p.reserve(t0 + SEC * u32::from(n), UNIX, peer(n), v4(n)));
    }
    p.handle_timeout(t0 + SEC * 62);
    let expired: Vec<_> = events(&mut p)
        .into_iter()
        .map(|e| match e {
            PolicyEvent::ReservationExpired(info) => info.peer,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(expired, vec![peer(1), peer(2)]);
    assert_eq!(p.poll_timeout(), Some(t0 + SEC * 63));
    assert_eq!(p.reservations().count(), 1);
}

#[test]
fn connect_needs_a_live_reservation() {
    let t0 = crate::hop::test_base();
    let mut p = policy(open());
    let r = refused(p.connect(t0, peer(1), v4(1), peer(2)));
    assert_eq!(r, Refusal::NoReservation(peer(2)));
    assert_eq!(
        r.service_error(),
        crate::hop::ServiceError::InvalidReservation
    );
    granted(p.reserve(t0, UNIX, peer(2), v4(2)));
    let c = granted(p.connect(t0, peer(1), v4(1), peer(2)));
    assert_eq!((c.src, c.dst), (peer(1), peer(2)));
    p.remove_reservation(&peer(2));
    refused(p.connect(t0, peer(1), v4(1), peer(2)));
    // Open circuits outlive the reservation.
    assert!(p.circuit(c.id).is_some());
}

#[test]
fn max_circuits_admits_n_and_refuses_the_next() {
    let t0 = crate::hop::test_base();
    let mut p = policy(RelayConfig {
        max_circuits: 3,
        ..open()
    });
    granted(p.reserve(t0, UNIX, peer(9), v4(9)));
    let ids: Vec<_> = (1..=3)
        .map(|n| granted(p.connect(t0, peer(n), v4(n), peer(9))).id)
        .collect();
    let r = refused(p.connect(t0, peer(4), v4(4), peer(9)));
    assert_eq!(r, Refusal::ResourceLimitExceeded(RefusalReason::Circuits));
    assert_eq!(r.status_code(), 201);
    assert_eq!(
        r.service_error(),
        crate::hop::ServiceError::CircuitLimitReached
    );
    assert!(p.circuit_closed(ids[1]).is_some());
    assert!(p.circuit_closed(ids[1]).is_none());
    granted(p.connect(t0, peer(4), v4(4), peer(9)));
}

#[test]
fn circuits_per_peer_count_initiator_and_target() {
    let t0 = crate::hop::test_base();
    let mut p = policy(RelayConfig {
        max_circuits_per_peer: 2,
        ..open()
    });
    for n in 10..=13 {
        granted(p.reserve(t0, UNIX, peer(n), v4(n)));
    }
    // As initiator: two circuits, then refused.
    granted(p.connect(t0, peer(1), v4(1), peer(10)));
    granted(p.connect(t0, peer(1), v4(1), peer(11)));
    let r = refused(p.connect(t0, peer(1), v4(1), peer(12)));
    assert_eq!(
        r,
        Refusal::ResourceLimitExceeded(RefusalReason::CircuitsForPeer(peer(1)))
    );
    // As target: peer 10 already has one (from peer 1).
    granted(p.connect(t0, peer(2), v4(2), peer(10)));
    let r = refused(p.connect(t0, peer(3), v4(3), peer(10)));
    assert_eq!(
        r,
        Refusal::ResourceLimitExceeded(RefusalReason::CircuitsForPeer(peer(10)))
    );
    // A peer that is a target counts that against its own dials too.
    granted(p.connect(t0, peer(12), v4(12), peer(13)));
    granted(p.connect(t0, peer(4), v4(4), peer(12)));
    refused(p.connect(t0, peer(12), v4(12), peer(11)));
}

#[test]
fn data_is_limited_per_direction_through_the_policy() {
    let t0 = crate::hop::test_base();
    let mut p = policy(RelayConfig {
        max_circuit_bytes: 100,
        ..open()
    });
    granted(p.reserve(t0, UNIX, peer(2), v4(2)));
    let c = granted(p.connect(t0, peer(1), v4(1), peer(2)));
    assert_eq!(
        c.limit,
        Limit {
            duration: None,
            data: Some(100)
        }
    );
    assert_eq!(
        p.circuit_data(t0, c.id, Direction::SrcToDst, 100),
        Ok(Some(0))
    );
    assert_eq!(
        p.circuit_data(t0, c.id, Direction::DstToSrc, 99),
        Ok(Some(1))
    );
    assert_eq!(
        p.circuit_data(t0, c.id, Direction::DstToSrc, 1),
        Ok(Some(0))
    );
    let Err(CircuitError::LimitReached(hit)) = p.circuit_data(t0, c.id, Direction::SrcToDst, 10)
    else {
        panic!("over the limit");
    };
    assert_eq!(
        (hit.kind, hit.forwardable),
        (LimitKind::Data(Direction::SrcToDst), 0)
    );
    assert!(p.circuit(c.id).is_none());
    assert_eq!(
        p.circuit_data(t0, c.id, Direction::SrcToDst, 1),
        Err(CircuitError::Unknown(c.id))
    );
    let u = p.usage();
    assert_eq!(
        (u.circuits, u.circuits_limited, u.bytes_relayed),
        (0, 1, 200)
    );
}

#[test]
fn circuits_end_at_their_duration_deadline() {
    let t0 = crate::hop::test_base();
    let mut p = policy(RelayConfig {
        max_circuit_duration: Duration::from_secs(120),
        max_circuits: 1,
        ..open()
    });
    granted(p.reserve(t0, UNIX, peer(2), v4(2)));
    let c = granted(p.connect(t0, peer(1), v4(1), peer(2)));
    let end = t0 + SEC * 120;
    assert_eq!(c.deadline, Some(end));
    assert_eq!(c.limit.duration, Some(SEC * 120));
    assert_eq!(p.poll_timeout(), Some(end));
    p.handle_timeout(end - NS);
    assert!(events(&mut p).is_empty());
    assert_eq!(
        p.circuit_data(end - NS, c.id, Direction::SrcToDst, 5),
        Ok(None)
    );
    p.handle_timeout(end);
    match events(&mut p).as_slice() {
        [PolicyEvent::CircuitLimitReached(hit)] => {
            assert_eq!((hit.circuit.id, hit.kind), (c.id, LimitKind::Duration));
            assert_eq!(hit.circuit.bytes_src_to_dst, 5);
        }
        other => panic!("{other:?}"),
    }
    // The slot is free at once.
    granted(p.connect(end, peer(1), v4(1), peer(2)));
}

#[test]
fn zero_means_no_limit() {
    let t0 = crate::hop::test_base();
    let mut p = policy(open());
    for n in 1..=50 {
        granted(p.reserve(t0, UNIX, peer(n), v4(1)));
    }
    let c = granted(p.connect(t0, peer(1), v4(1), peer(2)));
    assert_eq!(c.limit, Limit::NONE);
    assert!(!c.limit.is_limited());
    assert_eq!(c.deadline, None);
    assert_eq!(
        p.circuit_data(t0, c.id, Direction::SrcToDst, u64::MAX),
        Ok(None)
    );
    assert_eq!(
        p.circuit_data(t0, c.id, Direction::SrcToDst, u64::MAX),
        Ok(None)
    );
    for _ in 0..100 {
        granted(p.connect(t0, peer(1), v4(1), peer(2)));
    }
}

#[test]
fn reservation_rate_limits_per_peer_and_per_ip() {
    let t0 = crate::hop::test_base();
    let mut p = policy(RelayConfig {
        rate: RateLimits {
            reservations_per_peer: RateLimit::new(2, SEC * 10),
            reservations_per_ip: RateLimit::new(3, SEC * 10),
            max_tracked_keys: 100,
            ..RateLimits::off()
        },
        ..open()
    });
    granted(p.reserve(t0, UNIX, peer(1), v4(1)));
    granted(p.reserve(t0, UNIX, peer(1), v4(1)));
    let r = refused(p.reserve(t0, UNIX, peer(1), v4(1)));
    assert_eq!(
        r,
        Refusal::ReservationRefused(RefusalReason::PeerRateLimited(peer(1)))
    );
    // The peer's refusal cost the IP no token: one left for another peer.
    granted(p.reserve(t0, UNIX, peer(2), v4(1)));
    let r = refused(p.reserve(t0, UNIX, peer(3), v4(1)));
    assert_eq!(
        r,
        Refusal::ReservationRefused(RefusalReason::IpRateLimited(IpKey::new(v4(1), 64)))
    );
    refused(p.reserve(t0 + SEC * 10 - NS, UNIX, peer(1), v4(1)));
    granted(p.reserve(t0 + SEC * 10, UNIX, peer(1), v4(1)));
    granted(p.reserve(t0 + SEC * 10, UNIX, peer(3), v4(2)));
}

#[test]
fn circuit_rate_limits_per_peer_and_per_ip() {
    let t0 = crate::hop::test_base();
    let mut p = policy(RelayConfig {
        rate: RateLimits {
            circuits_per_peer: RateLimit::new(2, SEC),
            circuits_per_ip: RateLimit::new(3, SEC),
            max_tracked_keys: 100,
            ..RateLimits::off()
        },
        ..open()
    });
    granted(p.reserve(t0, UNIX, peer(9), v4(9)));
    granted(p.connect(t0, peer(1), v4(1), peer(9)));
    granted(p.connect(t0, peer(1), v4(1), peer(9)));
    let r = refused(p.connect(t0, peer(1), v4(1), peer(9)));
    assert_eq!(
        r,
        Refusal::ResourceLimitExceeded(RefusalReason::PeerRateLimited(peer(1)))
    );
    assert_eq!(r.status_code(), 201);
    granted(p.connect(t0, peer(2), v4(1), peer(9)));
    let r = refused(p.connect(t0, peer(3), v4(1), peer(9)));
    assert_eq!(
        r.reason(),
        RefusalReason::IpRateLimited(IpKey::new(v4(1), 64))
    );
    granted(p.connect(t0 + SEC, peer(1), v4(1), peer(9)));
    // Requests refused before the rate check (no reservation) take no token.
    for _ in 0..10 {
        refused(p.connect(t0 + SEC, peer(4), v4(4), peer(8)));
    }
    granted(p.connect(t0 + SEC, peer(4), v4(4), peer(9)));
}

#[test]
fn acl_denies_and_allows_peers() {
    let t0 = crate::hop::test_base();
    let mut p = policy(RelayConfig {
        acl: AclConfig {
            allow_peers: vec![peer(1), peer(2), peer(3)],
            deny_peers: vec![peer(3)],
            ..AclConfig::default()
        },
        ..open()
    });
    granted(p.reserve(t0, UNIX, peer(1), v4(1)));
    let r = refused(p.reserve(t0, UNIX, peer(3), v4(3)));
    assert_eq!(
        r,
        Refusal::PermissionDenied(RefusalReason::DeniedPeer(peer(3)))
    );
    assert_eq!(r.status_code(), 202);
    let r = refused(p.reserve(t0, UNIX, peer(4), v4(4)));
    assert_eq!(
        r,
        Refusal::PermissionDenied(RefusalReason::PeerNotAllowed(peer(4)))
    );
    granted(p.connect(t0, peer(2), v4(2), peer(1)));
    let r = refused(p.connect(t0, peer(3), v4(3), peer(1)));
    assert_eq!(r.status_code(), 202);
    refused(p.connect(t0, peer(4), v4(4), peer(1)));
    // A denied target is denied before its (missing) reservation is looked at.
    let r = refused(p.connect(t0, peer(2), v4(2), peer(3)));
    assert_eq!(
        r,
        Refusal::PermissionDenied(RefusalReason::DeniedPeer(peer(3)))
    );
}

#[test]
fn acl_denies_and_allows_cidrs_v4_and_v6() {
    let t0 = crate::hop::test_base();
    let mut p = policy(RelayConfig {
        acl: AclConfig {
            allow_cidrs: vec![
                "192.168.0.0/16".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ],
            deny_cidrs: vec![
                "192.168.4.0/22".parse().unwrap(),
                "2001:db8:bad::/48".parse().unwrap(),
            ],
            ..AclConfig::default()
        },
        ..open()
    });
    let cases = [
        ("192.167.255.255", Some(202)),
        ("192.168.0.0", None),
        ("192.168.3.255", None),
        ("192.168.4.0", Some(202)),
        ("192.168.7.255", Some(202)),
        ("192.168.8.0", None),
        ("192.168.255.255", None),
        ("192.169.0.0", Some(202)),
        ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", Some(202)),
        ("2001:db8::", None),
        ("2001:db8:bac:ffff:ffff:ffff:ffff:ffff", None),
        ("2001:db8:bad::", Some(202)),
        ("2001:db8:bad:ffff:ffff:ffff:ffff:ffff", Some(202)),
        ("2001:db8:bae::", None),
        ("2001:db9::", Some(202)),
    ];
    for (n, (addr, want)) in cases.into_iter().enumerate() {
        let got = p
            .reserve(t0, UNIX, peer(n as u8), ip(addr))
            .refusal()
            .map(|r| r.status_code());
        assert_eq!(got, want, "{addr}");
    }
    let r = refused(p.connect(t0, peer(100), ip("192.168.5.5"), peer(1)));
    assert_eq!(
        r,
        Refusal::PermissionDenied(RefusalReason::DeniedIp(ip("192.168.5.5")))
    );
    let r = refused(p.connect(t0, peer(100), ip("8.8.8.8"), peer(1)));
    assert_eq!(
        r,
        Refusal::PermissionDenied(RefusalReason::IpNotAllowed(ip("8.8.8.8")))
    );
    granted(p.connect(t0, peer(100), ip("192.168.0.1"), peer(1)));
}

#[test]
fn hook_is_asked_and_answered() {
    let t0 = crate::hop::test_base();
    let mut p = policy(RelayConfig {
        acl: AclConfig {
            hook: HookMode::Both,
            ..AclConfig::default()
        },
        hop_timeout: SEC * 30,
        ..open()
    });
    let ask = asked(p.reserve(t0, UNIX, peer(1), v4(1)));
    assert_eq!(
        ask.query,
        HookQuery::Reserve {
            peer: peer(1),
            ip: v4(1)
        }
    );
    assert_eq!(ask.deadline, Some(t0 + SEC * 30));
    assert!(p.reservation(&peer(1)).is_none());
    assert_eq!(p.pending_asks().count(), 1);
    assert_eq!(p.poll_timeout(), Some(t0 + SEC * 30));
    let answered = p.answer(t0 + SEC, UNIX + 1, ask.ticket, true).unwrap();
    let Ok(Grant::Reservation(g)) = answered.outcome else {
        panic!("{answered:?}");
    };
    assert_eq!((g.peer, g.expire_unix), (peer(1), UNIX + 1 + 3600));
    assert!(p.reservation(&peer(1)).is_some());
    assert_eq!(
        p.answer(t0 + SEC, UNIX, ask.ticket, true),
        Err(UnknownTicket(ask.ticket))
    );

    // Circuits are asked about too; a "no" is PERMISSION_DENIED.
    let ask = asked(p.connect(t0 + SEC, peer(2), v4(2), peer(1)));
    let answered = p.answer(t0 + SEC, UNIX, ask.ticket, false).unwrap();
    assert_eq!(
        answered.outcome,
        Err(Refusal::PermissionDenied(RefusalReason::HookDenied))
    );
    let ask = asked(p.connect(t0 + SEC, peer(2), v4(2), peer(1)));
    let answered = p.answer(t0 + SEC, UNIX, ask.ticket, true).unwrap();
    let Ok(Grant::Circuit(c)) = answered.outcome else {
        panic!("{answered:?}");
    };
    assert!(p.circuit(c.id).is_some());

    // Requests refused before the hook never reach it.
    refused(p.connect(t0 + SEC, peer(2), v4(2), peer(7)));
    assert_eq!(p.pending_asks().count(), 0);
}

#[test]
fn hook_answers_recheck_limits_and_time_out() {
    let t0 = crate::hop::test_base();
    let mut p = policy(RelayConfig {
        acl: AclConfig {
            hook: HookMode::Reservations,
            ..AclConfig::default()
        },
        max_reservations: 1,
        hop_timeout: SEC * 30,
        ..open()
    });
    let a = asked(p.reserve(t0, UNIX, peer(1), v4(1)));
    let b = asked(p.reserve(t0, UNIX, peer(2), v4(2)));
    assert!(p.answer(t0, UNIX, a.ticket, true).unwrap().outcome.is_ok());
    let late = p.answer(t0, UNIX, b.ticket, true).unwrap();
    assert_eq!(
        late.outcome,
        Err(Refusal::ReservationRefused(RefusalReason::Reservations))
    );
    // Not answered in time: refused by the timer, and the ticket is gone.
    let c = asked(p.reserve(t0 + SEC, UNIX, peer(1), v4(1)));
    p.handle_timeout(t0 + SEC * 31 - NS);
    assert!(events(&mut p).is_empty());
    p.handle_timeout(t0 + SEC * 31);
    match events(&mut p).as_slice() {
        [PolicyEvent::AskExpired { request, refusal }] => {
            assert_eq!(request.ticket, c.ticket);
            assert_eq!(
                *refusal,
                Refusal::ReservationRefused(RefusalReason::HookTimedOut)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        p.answer(t0 + SEC * 31, UNIX, c.ticket, true),
        Err(UnknownTicket(c.ticket))
    );
    // The circuit side is not asked in this mode.
    granted(p.connect(t0 + SEC * 31, peer(3), v4(3), peer(1)));
}

#[test]
fn waiting_hook_requests_are_bounded() {
    let t0 = crate::hop::test_base();
    let mut p = policy(RelayConfig {
        acl: AclConfig {
            hook: HookMode::Both,
            ..AclConfig::default()
        },
        max_pending_asks: 3,
        max_reservations_per_peer: 2,
        max_circuits_per_peer: 1,
        ..open()
    });
    asked(p.reserve(t0, UNIX, peer(1), v4(1)));
    let second = asked(p.reserve(t0, UNIX, peer(1), v4(1)));
    let r = refused(p.reserve(t0, UNIX, peer(1), v4(1)));
    assert_eq!(
        r,
        Refusal::ReservationRefused(RefusalReason::PendingAsksForPeer(peer(1)))
    );
    asked(p.reserve(t0, UNIX, peer(2), v4(2)));
    let r = refused(p.reserve(t0, UNIX, peer(3), v4(3)));
    assert_eq!(r, Refusal::ReservationRefused(RefusalReason::PendingAsks));
    assert_eq!(
        p.cancel_ask(second.ticket).map(|a| a.ticket),
        Some(second.ticket)
    );
    asked(p.reserve(t0, UNIX, peer(3), v4(3)));
    assert_eq!(p.usage().pending_asks, 3);
}

#[test]
fn repeated_refusals_ban_for_a_while() {
    let t0 = crate::hop::test_base();
    let mut p = policy(RelayConfig {
        abuse: AbuseConfig {
            refusals: RateLimit::new(3, SEC * 60),
            ban: SEC * 30,
        },
        max_reservations: 1,
        ..open()
    });
    // Refusals caused by a full relay are not the requester's fault.
    granted(p.reserve(t0, UNIX, peer(9), v4(9)));
    for _ in 0..10 {
        refused(p.reserve(t0, UNIX, peer(1), v4(1)));
    }
    assert!(events(&mut p).is_empty());
    // Dialing peers without reservations is.
    for _ in 0..3 {
        assert_eq!(
            refused(p.connect(t0, peer(1), v4(1), peer(5))).status_code(),
            204
        );
    }
    assert!(events(&mut p).is_empty());
    refused(p.connect(t0, peer(1), v4(1), peer(5)));
    let until = t0 + SEC * 30;
    assert_eq!(
        events(&mut p),
        vec![
            PolicyEvent::AbuseDetected {
                key: AbuseKey::Peer(peer(1)),
                until
            },
            PolicyEvent::AbuseDetected {
                key: AbuseKey::Ip(IpKey::new(v4(1), 64)),
                until
            },
        ]
    );
    assert_eq!(p.abusive().count(), 2);
    let r = refused(p.connect(t0, peer(1), v4(1), peer(9)));
    assert_eq!(
        r,
        Refusal::PermissionDenied(RefusalReason::Banned(AbuseKey::Peer(peer(1))))
    );
    // The IP ban catches another peer behind it.
    let r = refused(p.connect(t0, peer(2), v4(1), peer(9)));
    assert_eq!(
        r.reason(),
        RefusalReason::Banned(AbuseKey::Ip(IpKey::new(v4(1), 64)))
    );
    assert_eq!(p.poll_timeout(), Some(until));
    p.handle_timeout(until);
    assert_eq!(p.abusive().count(), 0);
    granted(p.connect(until, peer(1), v4(1), peer(9)));
    assert_eq!(p.usage().banned, 0);
}

#[test]
fn usage_reports_counts_and_limits() {
    let t0 = crate::hop::test_base();
    let mut p = policy(RelayConfig::default());
    granted(p.reserve(t0, UNIX, peer(1), v4(1)));
    granted(p.reserve(t0, UNIX, peer(1), v4(1)));
    let c = granted(p.connect(t0, peer(2), v4(2), peer(1)));
    refused(p.connect(t0, peer(2), v4(2), peer(3)));
    p.circuit_data(t0, c.id, Direction::SrcToDst, 10).unwrap();
    p.circuit_data(t0, c.id, Direction::DstToSrc, 20).unwrap();
    let info = p.circuits().next().copied().unwrap();
    assert_eq!((info.src, info.dst, info.started), (peer(2), peer(1), t0));
    assert_eq!((info.bytes_src_to_dst, info.bytes_dst_to_src), (10, 20));
    assert_eq!(
        info.limit,
        Limit {
            duration: Some(SEC * 120),
            data: Some(1 << 20)
        }
    );
    let u = p.usage();
    assert_eq!(
        (
            u.reservations,
            u.max_reservations,
            u.circuits,
            u.max_circuits
        ),
        (1, 256, 1, 1000)
    );
    assert_eq!((u.reservations_granted, u.reservations_refreshed), (1, 1));
    assert_eq!(
        (u.circuits_granted, u.circuits_refused, u.bytes_relayed),
        (1, 1, 30)
    );
    assert!(u.tracked_keys > 0);
    assert!(p.config().validate().is_ok());
}

#[test]
fn bad_config_is_an_error() {
    let config = RelayConfig {
        reservation_ttl: Duration::ZERO,
        ..RelayConfig::default()
    };
    assert_eq!(
        RelayPolicy::new(config).err(),
        Some(ConfigError::ZeroReservationTtl)
    );
}
