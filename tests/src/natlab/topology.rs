//! The lab's hosts, links and address plan (drawn in the natlab module doc).
//! Nothing here touches the system.

use std::net::Ipv4Addr;

/// One network namespace of the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// The private host behind [`Host::RouterA`].
    A,
    /// The private host behind [`Host::RouterB`].
    B,
    /// A's NAT router: `lan` faces A, `wan` faces the internet.
    RouterA,
    /// B's NAT router.
    RouterB,
    /// The public host where a relay runs.
    Relay,
    /// A second public host: the third party of filtering tests and the address
    /// reflector of [`Lab::observed_addr`](super::Lab::observed_addr).
    Observer,
    /// The public core: a router between the relay, the observer and both NAT routers.
    Internet,
}

impl Host {
    /// Every host, in the order the lab creates them.
    pub const ALL: [Host; 7] = [
        Host::Internet,
        Host::Relay,
        Host::Observer,
        Host::RouterA,
        Host::RouterB,
        Host::A,
        Host::B,
    ];

    /// A short lowercase name, used in namespace names and messages.
    pub fn name(self) -> &'static str {
        match self {
            Host::A => "a",
            Host::B => "b",
            Host::RouterA => "router-a",
            Host::RouterB => "router-b",
            Host::Relay => "relay",
            Host::Observer => "observer",
            Host::Internet => "internet",
        }
    }

    /// The NAT router in front of a private host, or `None` for any other host.
    pub fn router(self) -> Option<Host> {
        match self {
            Host::A => Some(Host::RouterA),
            Host::B => Some(Host::RouterB),
            _ => None,
        }
    }

    /// The private host behind a NAT router, or `None` for any other host.
    pub fn lan_host(self) -> Option<Host> {
        match self {
            Host::RouterA => Some(Host::A),
            Host::RouterB => Some(Host::B),
            _ => None,
        }
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The interface name of a router's side facing its private host.
pub(crate) const LAN_IF: &str = "lan";
/// The interface name of a router's side facing the internet.
pub(crate) const WAN_IF: &str = "wan";
/// The interface name of a leaf host (A, B, relay, observer).
pub(crate) const HOST_IF: &str = "eth0";

/// One veth pair. `outer` is the side nearer the internet; `inner` gets its default
/// route through `outer_addr`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Link {
    pub(crate) outer: Host,
    pub(crate) outer_if: &'static str,
    pub(crate) outer_addr: Ipv4Addr,
    pub(crate) inner: Host,
    pub(crate) inner_if: &'static str,
    pub(crate) inner_addr: Ipv4Addr,
    pub(crate) prefix_len: u8,
}

/// The lab's links, in creation order.
pub(crate) const LINKS: [Link; 6] = [
    Link {
        outer: Host::Internet,
        outer_if: "relay",
        outer_addr: Ipv4Addr::new(10, 77, 1, 1),
        inner: Host::Relay,
        inner_if: HOST_IF,
        inner_addr: Ipv4Addr::new(10, 77, 1, 2),
        prefix_len: 24,
    },
    Link {
        outer: Host::Internet,
        outer_if: "router-a",
        outer_addr: Ipv4Addr::new(10, 77, 2, 1),
        inner: Host::RouterA,
        inner_if: WAN_IF,
        inner_addr: Ipv4Addr::new(10, 77, 2, 2),
        prefix_len: 24,
    },
    Link {
        outer: Host::Internet,
        outer_if: "router-b",
        outer_addr: Ipv4Addr::new(10, 77, 3, 1),
        inner: Host::RouterB,
        inner_if: WAN_IF,
        inner_addr: Ipv4Addr::new(10, 77, 3, 2),
        prefix_len: 24,
    },
    Link {
        outer: Host::Internet,
        outer_if: "observer",
        outer_addr: Ipv4Addr::new(10, 77, 4, 1),
        inner: Host::Observer,
        inner_if: HOST_IF,
        inner_addr: Ipv4Addr::new(10, 77, 4, 2),
        prefix_len: 24,
    },
    Link {
        outer: Host::RouterA,
        outer_if: LAN_IF,
        outer_addr: Ipv4Addr::new(172, 31, 77, 1),
        inner: Host::A,
        inner_if: HOST_IF,
        inner_addr: Ipv4Addr::new(172, 31, 77, 2),
        prefix_len: 28,
    },
    Link {
        outer: Host::RouterB,
        outer_if: LAN_IF,
        outer_addr: Ipv4Addr::new(172, 31, 77, 17),
        inner: Host::B,
        inner_if: HOST_IF,
        inner_addr: Ipv4Addr::new(172, 31, 77, 18),
        prefix_len: 28,
    },
];

/// A host's own address: for the routers their `wan` address, for the internet its
/// address on the relay's link, for every other host the one address it has.
pub(crate) fn addr(host: Host) -> Ipv4Addr {
    let link = LINKS
        .iter()
        .find(|l| l.inner == host)
        .or_else(|| LINKS.iter().find(|l| l.outer == host));
    match link {
        Some(l) if l.inner == host => l.inner_addr,
        Some(l) => l.outer_addr,
        None => Ipv4Addr::UNSPECIFIED,
    }
}

/// The address the internet sees a host at: its router's `wan` address for A and B.
pub(crate) fn public_addr(host: Host) -> Ipv4Addr {
    addr(host.router().unwrap_or(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_host_has_an_address() {
        for host in Host::ALL {
            assert_ne!(addr(host), Ipv4Addr::UNSPECIFIED, "{host}");
        }
        assert_eq!(public_addr(Host::A), Ipv4Addr::new(10, 77, 2, 2));
        assert_eq!(public_addr(Host::B), Ipv4Addr::new(10, 77, 3, 2));
        assert_eq!(public_addr(Host::Relay), Ipv4Addr::new(10, 77, 1, 2));
    }
}
