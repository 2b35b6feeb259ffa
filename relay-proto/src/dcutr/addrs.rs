//! Which addresses are worth a hole punch: ours, sent in CONNECT, and the peer's,
//! received in CONNECT or from identify.
//!
//! A candidate is `/ip4|ip6/<ip>/tcp/<port>` with nothing after it: a trailing
//! `/p2p/<peer>` is removed (rust-libp2p appends its own), relayed (`/p2p-circuit`)
//! addresses, DNS names, other transports (QUIC comes later) and port 0 are dropped, as
//! are IPs no peer elsewhere can reach: unspecified, loopback, link-local, multicast,
//! broadcast, `0.0.0.0/8` and `240.0.0.0/4`. Private ranges (RFC 1918,
//! `100.64.0.0/10`, IPv6 unique local) count only when allowed. Documentation ranges
//! count, so that test networks can use them as "public". IPv4-mapped IPv6 addresses
//! are judged by their IPv4 address. Duplicates are removed, order kept, and at most
//! [`MAX_CANDIDATES`] are kept.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use multiaddr::{Multiaddr, Protocol};

/// Most addresses sent in or taken from one CONNECT.
pub const MAX_CANDIDATES: usize = 8;

/// The candidate form of `addr`, or `None` if it is not worth a hole punch.
pub fn candidate(addr: &Multiaddr, allow_private: bool) -> Option<Multiaddr> {
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
    if port == 0 || !reachable(ip, allow_private) {
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
    let mut out: Vec<Multiaddr> = Vec::new();
    for addr in addrs {
        if out.len() == MAX_CANDIDATES {
            break;
        }
        if let Some(c) = candidate(addr, allow_private)
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
pub(crate) fn remote_candidates(raw: &[Vec<u8>], allow_private: bool) -> Vec<Multiaddr> {
    let decoded: Vec<Multiaddr> = raw
        .iter()
        .take(4 * MAX_CANDIDATES)
        .filter_map(|bytes| Multiaddr::try_from(bytes.clone()).ok())
        .collect();
    filter_candidates(&decoded, allow_private)
}

/// Whether `ip` can be reached from elsewhere: not unspecified, loopback, link-local,
/// multicast or reserved, and not private unless allowed.
pub fn reachable(ip: IpAddr, allow_private: bool) -> bool {
    match ip {
        IpAddr::V4(ip) => reachable_v4(ip, allow_private),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => reachable_v4(v4, allow_private),
            None => reachable_v6(ip, allow_private),
        },
    }
}

fn reachable_v4(ip: Ipv4Addr, allow_private: bool) -> bool {
    let [a, b, ..] = ip.octets();
    let unroutable = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0
        || a >= 240;
    let private = ip.is_private() || (a == 100 && (64..128).contains(&b));
    !unroutable && (allow_private || !private)
}

fn reachable_v6(ip: Ipv6Addr, allow_private: bool) -> bool {
    let unroutable =
        ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_unicast_link_local();
    // Unique local (fc00::/7) and the deprecated site-local (fec0::/10).
    let private = ip.is_unique_local() || (ip.segments()[0] & 0xffc0) == 0xfec0;
    !unroutable && (allow_private || !private)
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
            remote_candidates(&raw, false),
            vec![ma("/ip4/198.51.100.1/tcp/1")]
        );
    }
}
