//! UDP: datagrams to and from bound ports.
//!
//! A datagram to a port nobody bound is answered with ICMP port unreachable, as a
//! kernel does. ICMP errors arriving for UDP are ignored (unconnected sockets).

use std::net::SocketAddrV4;

use bytes::Bytes;

/// Something that happened to a UDP socket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UdpEvent {
    /// A datagram arrived on a bound port.
    Datagram {
        /// The local port it arrived on.
        local_port: u16,
        /// Its source as the host sees it (after NATs).
        from: SocketAddrV4,
        /// Its payload.
        bytes: Bytes,
    },
}
