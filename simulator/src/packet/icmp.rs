//! ICMP destination-unreachable errors, carrying the header of the packet they answer.

use std::fmt;
use std::net::SocketAddrV4;

use super::Protocol;

/// Bytes of an ICMP error: 8 of ICMP header, 20 of quoted IPv4 header, 8 of transport.
pub(crate) const ICMP_ERROR_LEN: usize = 36;

/// Why a destination was unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IcmpKind {
    /// Type 3 code 3: nothing listens on the port.
    PortUnreachable,
    /// Type 3 code 1: the host cannot be reached.
    HostUnreachable,
    /// Type 3 code 13: communication administratively prohibited (a filter).
    AdminProhibited,
}

/// The quoted header of the packet an ICMP error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OriginalHeader {
    /// Source of the offending packet.
    pub src: SocketAddrV4,
    /// Destination of the offending packet.
    pub dst: SocketAddrV4,
    /// Its transport protocol.
    pub protocol: Protocol,
}

/// An ICMP destination-unreachable error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IcmpError {
    /// The error.
    pub kind: IcmpKind,
    /// The packet it answers.
    pub original: OriginalHeader,
}

impl fmt::Display for IcmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} about {} {} -> {}",
            self.kind, self.original.protocol, self.original.src, self.original.dst
        )
    }
}
