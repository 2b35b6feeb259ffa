//! The shape of the simulated network: identifiers, link properties, drop reasons.
//!
//! A network is a broadcast-free IPv4 segment: packets sent onto it go to the member
//! whose address they target, or to its gateway (the inside of the NAT that owns it)
//! when no member has that address. Each host and each side of each NAT is attached to
//! one network by a [`LinkParams`]-shaped link, which delays, drops and queues packets.

mod link;

pub use link::LinkParams;
pub(crate) use link::{Direction, LinkState};

use std::fmt;

use crate::nat::NatDrop;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub(crate) u32);

        impl $name {
            /// The index of this item in creation order.
            pub fn index(self) -> u32 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id!(
    /// A network segment.
    NetworkId,
    "net"
);
id!(
    /// A host.
    HostId,
    "host"
);
id!(
    /// A NAT box.
    NatId,
    "nat"
);
id!(
    /// A link between a host or a NAT side and a network.
    LinkId,
    "link"
);

/// Why the network discarded a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// The link was down when the packet was sent or went down while it was in flight.
    LinkDown,
    /// Random loss on the link.
    Loss,
    /// The link's queue was full.
    QueueFull,
    /// No member of the network has the destination address and there is no gateway.
    NoRoute,
    /// The destination host is crashed or removed.
    HostDown,
    /// The NAT on the path is crashed or removed.
    NatDown,
    /// The NAT refused the packet.
    Nat(NatDrop),
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::Nat(d) => write!(f, "nat {d:?}"),
            other => write!(f, "{other:?}"),
        }
    }
}
