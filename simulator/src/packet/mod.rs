//! Packets as structs: IPv4 with a TCP segment, a UDP datagram or an ICMP error.
//!
//! Nothing is serialized. A packet carries its endpoints and transport fields; its
//! [`Packet::wire_len`] is what it would occupy on a link, for the bandwidth model.

mod icmp;
mod tcp;

pub use icmp::{IcmpError, IcmpKind, OriginalHeader};
pub use tcp::{TcpFlags, TcpSegment};

use bytes::Bytes;
use std::fmt;
use std::net::SocketAddrV4;

/// Bytes of an IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// Bytes of a TCP header without options.
pub const TCP_HEADER_LEN: usize = 20;
/// Bytes of a UDP header.
pub const UDP_HEADER_LEN: usize = 8;

/// A transport protocol that NATs map and hosts demultiplex by port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// An IPv4 packet.
///
/// For ICMP the ports of `src` and `dst` are 0: ICMP has none.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Packet {
    /// Source address and port.
    pub src: SocketAddrV4,
    /// Destination address and port.
    pub dst: SocketAddrV4,
    /// The transport payload.
    pub body: Body,
}

/// What an IPv4 packet carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Body {
    /// A TCP segment.
    Tcp(TcpSegment),
    /// A UDP datagram's payload.
    Udp(Bytes),
    /// An ICMP destination-unreachable error about an earlier packet.
    Icmp(IcmpError),
}

impl Packet {
    /// A TCP packet.
    pub fn tcp(src: SocketAddrV4, dst: SocketAddrV4, segment: TcpSegment) -> Self {
        Self {
            src,
            dst,
            body: Body::Tcp(segment),
        }
    }

    /// A UDP packet.
    pub fn udp(src: SocketAddrV4, dst: SocketAddrV4, payload: Bytes) -> Self {
        Self {
            src,
            dst,
            body: Body::Udp(payload),
        }
    }

    /// The transport protocol, or `None` for ICMP.
    pub fn protocol(&self) -> Option<Protocol> {
        match self.body {
            Body::Tcp(_) => Some(Protocol::Tcp),
            Body::Udp(_) => Some(Protocol::Udp),
            Body::Icmp(_) => None,
        }
    }

    /// The TCP segment, if this is TCP.
    pub fn tcp_segment(&self) -> Option<&TcpSegment> {
        match &self.body {
            Body::Tcp(s) => Some(s),
            _ => None,
        }
    }

    /// The size of the packet on a link, headers included.
    pub fn wire_len(&self) -> usize {
        IPV4_HEADER_LEN
            + match &self.body {
                Body::Tcp(s) => TCP_HEADER_LEN + s.payload.len(),
                Body::Udp(p) => UDP_HEADER_LEN + p.len(),
                Body::Icmp(_) => icmp::ICMP_ERROR_LEN,
            }
    }
}

impl fmt::Display for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.body {
            Body::Tcp(s) => write!(f, "tcp {} -> {} {}", self.src, self.dst, s),
            Body::Udp(p) => write!(f, "udp {} -> {} len={}", self.src, self.dst, p.len()),
            Body::Icmp(e) => write!(f, "icmp {} -> {} {}", self.src.ip(), self.dst.ip(), e),
        }
    }
}
