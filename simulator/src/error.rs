//! Errors of the world's building and socket calls.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::net::{HostId, LinkId, NatId, NetworkId};
use crate::tcp::ConnId;

/// Why a call on the world failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// No such network.
    #[error("unknown network {0}")]
    UnknownNetwork(NetworkId),
    /// No such host (or it was removed).
    #[error("unknown host {0}")]
    UnknownHost(HostId),
    /// No such NAT (or it was removed).
    #[error("unknown nat {0}")]
    UnknownNat(NatId),
    /// No such link.
    #[error("unknown link {0}")]
    UnknownLink(LinkId),
    /// The host is crashed.
    #[error("{0} is down")]
    HostDown(HostId),
    /// Another member of the network has this address, or it is unusable.
    #[error("address {addr} unavailable on {network}")]
    AddressInUse {
        /// The network.
        network: NetworkId,
        /// The address.
        addr: Ipv4Addr,
    },
    /// The port (or tuple) is taken, or is 0.
    #[error("port {port} unavailable on {host}")]
    PortInUse {
        /// The host.
        host: HostId,
        /// The port.
        port: u16,
    },
    /// Every ephemeral port is taken.
    #[error("no free ephemeral port on {0}")]
    NoFreePort(HostId),
    /// A remote address with port 0 or address 0.0.0.0.
    #[error("invalid remote address {0}")]
    InvalidAddress(SocketAddrV4),
    /// The connection does not exist (closed, or its host restarted).
    #[error("unknown connection {0}")]
    UnknownConn(ConnId),
    /// The connection no longer accepts data (closing or closed).
    #[error("connection {0} is not writable")]
    NotWritable(ConnId),
}
