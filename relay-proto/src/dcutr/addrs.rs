//! Which addresses are worth a hole punch: ours, sent in CONNECT, and the peer's,
//! received in CONNECT or from identify.
//!
//! A candidate is `/ip4|ip6/<ip>/tcp/<port>` with nothing after it: a trailing
//! `/p2p/<peer>` is removed (rust-libp2p appends its own), relayed (`/p2p-circuit`)
//! addresses, DNS names, other transports (QUIC comes later) and port 0 are dropped, as
//! are IPs no peer elsewhere can reach: unspecified, loopback, link-local, multicast,
//! broadcast, `0.0.0.0/8` and `240.0.0.0/4`. Private ranges (RFC 1918,
//! `100.64.0.0/10`, IPv6 unique local) count only when allowed, and loopback only in
//! the [`AddrScope::Loopback`] scope (peers on one host, as in tests). Documentation ranges
//! count, so that test networks can use them as "public". IPv4-mapped IPv6 addresses
//! are judged by their IPv4 address. Duplicates are removed, order kept, and at most
//! [`MAX_CANDIDATES`] are kept.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use multiaddr::{Multiaddr, Protocol};

/// Most addresses sent in or taken from one CONNECT.
pub const MAX_CANDIDATES: usize = 8;

/// Which IP ranges count as candidates; each scope includes the ones before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddrScope {
    /// Addresses reachable across the internet (documentation ranges included).
    #[default]
    Public,
    /// Also private ranges: RFC 1918, `100.64.0.0/10`, IPv6 unique local.
    Private,
    /// Also loopback: peers on one host, as in tests over `127.0.0.1`.
    Loopback,
}

impl AddrScope {
    /// [`AddrScope::Private`] if `allow_private`, else [`AddrScope::Public`].
    pub fn from_private(allow_private: bool) -> Self {
        if allow_private {
            AddrScope::Private
        } else {
            AddrScope::Public
        }
    }

    /// The narrowest scope that holds `ip`, if any (`None` for unspecified, link-local,
    /// multicast and reserved addresses).
    pub fn of(ip: IpAddr) -> Option<Self> {
        [AddrScope::Public, AddrScope::Private, AddrScope::Loopback]
            .into_iter()
            .find(|scope| reachable_in(ip, *scope))
    }
}

/// The candidate form of `addr`, or `None` if it is not worth a hole punch.
pub fn candidate(addr: &Multiaddr, allow_private: bool) -> Option<Multiaddr> {
    candidate_in(addr, AddrScope::from_private(allow_private))
}

/// The candidate form of `addr` within `scope`, or `None` if it is not worth a hole
/// punch.
pub fn candidate_in(addr: &Multiaddr, scope: AddrScope) -> Option<Multiaddr> {
    let mut iter = addr.iter();
    let ip: IpAddr = match iter.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    let Some(Protocol::Tcp(port)) = iter.next() else {
        return None;
    };
    match (iter.next(), iter.next()) {
        (None, _) | (Some(Protocol::P2p(_)), None) => {}
        _ => return None,
    }
    if port == 0 || !reachable_in(ip, scope) {
        return None;
    }
    Some(Multiaddr::empty().with(ip.into()).with(Protocol::Tcp(port)))
}

/// The candidates among `addrs`, in order, without duplicates, at most
/// [`MAX_CANDIDATES`].
pub fn filter_candidates<'a>(
    addrs: impl IntoIterator<Item = &'a Multiaddr>,
    allow_private: bool,
) -> Vec<Multiaddr> {
    filter_candidates_in(addrs, AddrScope::from_private(allow_private))
}

/// The candidates among `addrs` within `scope`, in order, without duplicates, at most
/// [`MAX_CANDIDATES`].
pub fn filter_candidates_in<'a>(
    addrs: impl IntoIterator<Item = &'a Multiaddr>,
    scope: AddrScope,
) -> Vec<Multiaddr> {
    let mut out: Vec<Multiaddr> = Vec::new();
    for addr in addrs {
        if out.len() == MAX_CANDIDATES {
            break;
        }
        if let Some(c) = candidate_in(addr, scope)
            && !out.contains(&c)
        {
            out.push(c);
        }
    }
    out
}

/// Our candidates: identify-observed addresses first (they carry the NAT's mapping),
/// then listen addresses.
pub fn local_candidates(
    observed: &[Multiaddr],
    listen: &[Multiaddr],
    allow_private: bool,
) -> Vec<Multiaddr> {
    filter_candidates(observed.iter().chain(listen), allow_private)
}

/// The peer's candidates from the binary multiaddrs of a CONNECT; undecodable ones are
/// skipped, as go-libp2p and rust-libp2p do.
pub(crate) fn remote_candidates(raw: &[Vec<u8>], scope: AddrScope) -> Vec<Multiaddr> {
    let decoded: Vec<Multiaddr> = raw
        .iter()
        .take(4 * MAX_CANDIDATES)
        .filter_map(|bytes| Multiaddr::try_from(bytes.clone()).ok())
        .collect();
    filter_candidates_in(&decoded, scope)
}

/// Whether `ip` can be reached from elsewhere: not unspecified, loopback, link-local,
/// multicast or reserved, and not private unless allowed.
pub fn reachable(ip: IpAddr, allow_private: bool) -> bool {
    reachable_in(ip, AddrScope::from_private(allow_private))
}

/// Whether `ip` is a candidate within `scope`: never unspecified, link-local, multicast
/// or reserved; private and loopback only in the scopes that include them.
pub fn reachable_in(ip: IpAddr, scope: AddrScope) -> bool {
    match ip {
        IpAddr::V4(ip) => reachable_v4(ip, scope),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => reachable_v4(v4, scope),
            None => reachable_v6(ip, scope),
        },
    }
}

fn reachable_v4(ip: Ipv4Addr, scope: AddrScope) -> bool {
    let [a, b, ..] = ip.octets();
    let unroutable = ip.is_unspecified()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0
        || a >= 240;
    let private = ip.is_private() || (a == 100 && (64..128).contains(&b));
    !unroutable && in_scope(scope, private, ip.is_loopback())
}

fn reachable_v6(ip: Ipv6Addr, scope: AddrScope) -> bool {
    let unroutable = ip.is_unspecified() || ip.is_multicast() || ip.is_unicast_link_local();
    // Unique local (fc00::/7) and the deprecated site-local (fec0::/10).
    let private = ip.is_unique_local() || (ip.segments()[0] & 0xffc0) == 0xfec0;
    !unroutable && in_scope(scope, private, ip.is_loopback())
}

fn in_scope(scope: AddrScope, private: bool, loopback: bool) -> bool {
    if loopback {
        scope >= AddrScope::Loopback
    } else if private {
        scope >= AddrScope::Private
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ma(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    fn peer() -> crate::identity::PeerId {
        crate::identity::keypair_from_seed(9).public().to_peer_id()
    }

    #[test]
    fn keeps_public_tcp_without_peer_suffix() {
        let with_peer = ma(&format!("/ip4/203.0.113.7/tcp/4001/p2p/{}", peer()));
        assert_eq!(
            candidate(&with_peer, false),
            Some(ma("/ip4/203.0.113.7/tcp/4001"))
        );
        assert_eq!(
            candidate(&ma("/ip6/2001:db8::1/tcp/1"), false),
            Some(ma("/ip6/2001:db8::1/tcp/1"))
        );
    }

    #[test]
    fn drops_relayed_other_transports_and_unroutable() {
        let relay = peer();
        let dropped = [
            format!("/ip4/203.0.113.7/tcp/4001/p2p/{relay}/p2p-circuit"),
            format!("/ip4/203.0.113.7/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{relay}"),
            "/ip4/203.0.113.7/udp/4001/quic-v1".into(),
            "/ip4/203.0.113.7/tcp/4001/ws".into(),
            "/dns4/example.com/tcp/4001".into(),
            "/ip4/203.0.113.7/tcp/0".into(),
            "/ip4/0.0.0.0/tcp/4001".into(),
            "/ip4/127.0.0.1/tcp/4001".into(),
            "/ip4/169.254.1.1/tcp/4001".into(),
            "/ip4/224.0.0.1/tcp/4001".into(),
            "/ip4/255.255.255.255/tcp/4001".into(),
            "/ip4/0.1.2.3/tcp/4001".into(),
            "/ip4/240.0.0.1/tcp/4001".into(),
            "/ip6/::/tcp/4001".into(),
            "/ip6/::1/tcp/4001".into(),
            "/ip6/fe80::1/tcp/4001".into(),
            "/ip6/ff02::1/tcp/4001".into(),
            "/ip6/::ffff:127.0.0.1/tcp/4001".into(),
        ];
        for a in dropped {
            assert_eq!(candidate(&ma(&a), true), None, "{a}");
        }
    }

    #[test]
    fn private_ranges_only_when_allowed() {
        for a in [
            "/ip4/10.1.2.3/tcp/1",
            "/ip4/172.16.0.1/tcp/1",
            "/ip4/192.168.1.1/tcp/1",
            "/ip4/100.64.0.1/tcp/1",
            "/ip6/fd00::1/tcp/1",
            "/ip6/fec0::1/tcp/1",
            "/ip6/::ffff:10.0.0.1/tcp/1",
        ] {
            assert_eq!(candidate(&ma(a), false), None, "{a}");
            assert!(candidate(&ma(a), true).is_some(), "{a}");
        }
        // Just outside the ranges.
        assert!(candidate(&ma("/ip4/100.128.0.1/tcp/1"), false).is_some());
        assert!(candidate(&ma("/ip4/172.32.0.1/tcp/1"), false).is_some());
    }

    #[test]
    fn dedups_keeps_order_and_bounds() {
        let observed = vec![
            ma("/ip4/198.51.100.1/tcp/4001"),
            ma(&format!("/ip4/198.51.100.1/tcp/4001/p2p/{}", peer())),
            ma("/ip4/192.168.0.2/tcp/4001"),
        ];
        let listen = vec![ma("/ip4/0.0.0.0/tcp/4001"), ma("/ip4/203.0.113.9/tcp/4001")];
        assert_eq!(
            local_candidates(&observed, &listen, false),
            vec![
                ma("/ip4/198.51.100.1/tcp/4001"),
                ma("/ip4/203.0.113.9/tcp/4001")
            ]
        );
        let many: Vec<Multiaddr> = (1..=20)
            .map(|p| ma(&format!("/ip4/198.51.100.1/tcp/{p}")))
            .collect();
        let kept = filter_candidates(&many, false);
        assert_eq!(kept.len(), MAX_CANDIDATES);
        assert_eq!(kept[0], many[0]);
    }

    #[test]
    fn remote_bytes_are_decoded_leniently() {
        let raw = vec![
            b"garbage".to_vec(),
            ma("/ip4/198.51.100.1/tcp/1").to_vec(),
            vec![],
            ma("/ip4/127.0.0.1/tcp/1").to_vec(),
        ];
        assert_eq!(
            remote_candidates(&raw, AddrScope::Public),
            vec![ma("/ip4/198.51.100.1/tcp/1")]
        );
    }

    #[test]
    fn loopback_only_in_its_scope() {
        for a in [
            "/ip4/127.0.0.1/tcp/1",
            "/ip4/127.9.9.9/tcp/1",
            "/ip6/::1/tcp/1",
        ] {
            assert_eq!(candidate_in(&ma(a), AddrScope::Private), None, "{a}");
            assert_eq!(
                candidate_in(&ma(a), AddrScope::Loopback),
                Some(ma(a)),
                "{a}"
            );
        }
        // The loopback scope holds private and public addresses too, never unroutable ones.
        assert!(candidate_in(&ma("/ip4/10.0.0.1/tcp/1"), AddrScope::Loopback).is_some());
        assert!(candidate_in(&ma("/ip4/203.0.113.1/tcp/1"), AddrScope::Loopback).is_some());
        assert_eq!(
            candidate_in(&ma("/ip4/0.0.0.0/tcp/1"), AddrScope::Loopback),
            None
        );
        assert_eq!(
            candidate_in(&ma("/ip6/fe80::1/tcp/1"), AddrScope::Loopback),
            None
        );
        let of = |s: &str| AddrScope::of(s.parse().unwrap());
        assert_eq!(of("203.0.113.1"), Some(AddrScope::Public));
        assert_eq!(of("192.168.1.1"), Some(AddrScope::Private));
        assert_eq!(of("127.0.0.1"), Some(AddrScope::Loopback));
        assert_eq!(of("0.0.0.0"), None);
    }
}
