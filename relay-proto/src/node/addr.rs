//! Conversions between multiaddrs and the socket addresses runtimes dial and bind.

use std::net::{IpAddr, SocketAddr};

use multiaddr::{Multiaddr, Protocol};

use crate::identity::PeerId;

/// Why an address cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// The address is not `/ip4|ip6/.../tcp/PORT` optionally followed by `/p2p/PEER`.
    #[error("unsupported address {0}: expected /ip4|ip6/<ip>/tcp/<port>[/p2p/<peer>]")]
    Unsupported(Multiaddr),
}

/// A TCP socket address and the peer expected there, parsed from a multiaddr.
pub fn parse_tcp(addr: &Multiaddr) -> Result<(SocketAddr, Option<PeerId>), AddrError> {
    let unsupported = || AddrError::Unsupported(addr.clone());
    let mut iter = addr.iter();
    let ip: IpAddr = match iter.next() {
        Some(Protocol::Ip4(ip)) => ip.into(),
        Some(Protocol::Ip6(ip)) => ip.into(),
        _ => return Err(unsupported()),
    };
    let Some(Protocol::Tcp(port)) = iter.next() else {
        return Err(unsupported());
    };
    let peer = match iter.next() {
        None => None,
        Some(Protocol::P2p(peer)) => Some(peer),
        Some(_) => return Err(unsupported()),
    };
    if iter.next().is_some() {
        return Err(unsupported());
    }
    Ok((SocketAddr::new(ip, port), peer))
}

/// The multiaddr `/ip4|ip6/<ip>/tcp/<port>` of a socket address.
pub fn tcp_multiaddr(addr: SocketAddr) -> Multiaddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) => Protocol::Ip4(ip),
        IpAddr::V6(ip) => Protocol::Ip6(ip),
    };
    Multiaddr::empty().with(ip).with(Protocol::Tcp(addr.port()))
}

/// The peer an address ends with, if it ends with `/p2p/PEER`.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_with_and_without_peer() {
        let peer = crate::identity::keypair_from_seed(1).public().to_peer_id();
        let a: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}")
            .parse()
            .unwrap();
        assert_eq!(
            parse_tcp(&a).unwrap(),
            ("127.0.0.1:4001".parse().unwrap(), Some(peer))
        );
        let b: Multiaddr = "/ip6/::1/tcp/1".parse().unwrap();
        assert_eq!(parse_tcp(&b).unwrap(), ("[::1]:1".parse().unwrap(), None));
        assert_eq!(tcp_multiaddr("[::1]:1".parse().unwrap()), b);
        let c: Multiaddr = "/ip4/1.2.3.4/udp/1/quic-v1".parse().unwrap();
        assert!(parse_tcp(&c).is_err());
    }
}
