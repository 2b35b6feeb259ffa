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

/// The parts of a circuit address `[<relay transport>]/p2p/RELAY/p2p-circuit/p2p/PEER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitAddr {
    /// The relay's address (transport part and `/p2p/RELAY`), when given.
    pub relay_addr: Option<Multiaddr>,
    /// The relay.
    pub relay: PeerId,
    /// The peer to reach through it.
    pub dst: PeerId,
}

/// Parses a circuit address; `None` if `addr` has no `/p2p-circuit` or is not of the
/// form above.
pub fn parse_circuit(addr: &Multiaddr) -> Option<CircuitAddr> {
    let parts: Vec<Protocol<'_>> = addr.iter().collect();
    let circuit = parts
        .iter()
        .position(|p| matches!(p, Protocol::P2pCircuit))?;
    let Some(Protocol::P2p(relay)) = circuit.checked_sub(1).map(|i| &parts[i]) else {
        return None;
    };
    let [Protocol::P2p(dst)] = &parts[circuit + 1..] else {
        return None;
    };
    let relay_addr = (circuit > 1).then(|| parts[..circuit].iter().cloned().collect());
    Some(CircuitAddr {
        relay_addr,
        relay: *relay,
        dst: *dst,
    })
}

/// Our address through a relay: the relay's address, `/p2p/RELAY` and `/p2p-circuit`.
pub fn relayed_listen_addr(relay_addr: &Multiaddr, relay: PeerId) -> Multiaddr {
    let mut addr: Multiaddr = relay_addr
        .iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect();
    addr.push(Protocol::P2p(relay));
    addr.push(Protocol::P2pCircuit);
    addr
}

/// Whether an address names a concrete IP (not `0.0.0.0` or `::`) and is not relayed.
pub fn is_dialable_direct(addr: &Multiaddr) -> bool {
    let mut iter = addr.iter();
    let concrete = match iter.next() {
        Some(Protocol::Ip4(ip)) => !ip.is_unspecified(),
        Some(Protocol::Ip6(ip)) => !ip.is_unspecified(),
        Some(Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_)) => true,
        _ => false,
    };
    concrete && !addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// The IP of a TCP or IP address.
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => Some(ip.into()),
        Some(Protocol::Ip6(ip)) => Some(ip.into()),
        _ => None,
    }
}

#[cfg(test)]
mod circuit_tests {
    use super::*;

    #[test]
    fn parses_circuit_addresses() {
        let relay = crate::identity::keypair_from_seed(1).public().to_peer_id();
        let dst = crate::identity::keypair_from_seed(2).public().to_peer_id();
        let a: Multiaddr = format!("/ip4/1.2.3.4/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{dst}")
            .parse()
            .unwrap();
        let c = parse_circuit(&a).unwrap();
        assert_eq!(c.relay, relay);
        assert_eq!(c.dst, dst);
        assert_eq!(
            c.relay_addr.unwrap().to_string(),
            format!("/ip4/1.2.3.4/tcp/4001/p2p/{relay}")
        );
        let bare: Multiaddr = format!("/p2p/{relay}/p2p-circuit/p2p/{dst}")
            .parse()
            .unwrap();
        assert_eq!(parse_circuit(&bare).unwrap().relay_addr, None);
        let no_dst: Multiaddr = format!("/p2p/{relay}/p2p-circuit").parse().unwrap();
        assert_eq!(parse_circuit(&no_dst), None);
        assert_eq!(
            relayed_listen_addr(&"/ip4/1.2.3.4/tcp/1".parse().unwrap(), relay).to_string(),
            format!("/ip4/1.2.3.4/tcp/1/p2p/{relay}/p2p-circuit")
        );
    }
}

/// The relay of one of our relayed listen addresses (`.../p2p/RELAY/p2p-circuit`).
pub fn parse_circuit_relay(addr: &Multiaddr) -> Option<PeerId> {
    let mut previous = None;
    for p in addr.iter() {
        match p {
            Protocol::P2pCircuit => return previous,
            Protocol::P2p(peer) => previous = Some(peer),
            _ => previous = None,
        }
    }
    None
}
