//! A segment-level TCP, close enough to a kernel's that simultaneous open works or
//! fails as it would on Linux.
//!
//! Modelled: the RFC 9293 state machine with simultaneous open (SYN crossing SYN, and
//! Linux's acceptance of a crossed SYN-ACK in SYN_RCVD), RST for segments to closed
//! ports, RST and ICMP aborting a connect, SYN retransmission with exponential backoff
//! from a 1 s initial RTO, in-order data with Go-Back-N retransmission and an RFC 6298
//! RTO, FIN handshakes and TIME_WAIT. A host may listen on a port and connect from it
//! (SO_REUSEPORT, as TCP hole punching needs).
//!
//! Not modelled: congestion control (the link's bandwidth and queue limit the rate),
//! options (MSS is fixed, no window scaling, no timestamps, no SACK), delayed ACKs,
//! out-of-order buffering at the receiver, urgent data, zero-window probes.

pub(crate) mod conn;
mod seq;

use std::fmt;
use std::net::SocketAddrV4;
use std::time::Duration;

use bytes::Bytes;

use crate::net::HostId;

/// A TCP connection, unique in the world.
///
/// It names the host and the host's incarnation: after a host crashes, the ids of its
/// old connections are stale and every call with them fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId {
    pub(crate) host: HostId,
    pub(crate) incarnation: u32,
    pub(crate) index: u32,
}

impl ConnId {
    /// The host the connection belongs to.
    pub fn host(self) -> HostId {
        self.host
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}/conn{}", self.host, self.incarnation, self.index)
    }
}

/// The states of RFC 9293 (LISTEN is a property of the port, not of a connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TcpState {
    /// SYN sent, waiting for the peer's SYN.
    SynSent,
    /// SYN received and answered, waiting for its acknowledgment.
    SynReceived,
    /// Open in both directions.
    Established,
    /// Closed locally, FIN sent, not yet acknowledged.
    FinWait1,
    /// Closed locally, FIN acknowledged, waiting for the peer's FIN.
    FinWait2,
    /// The peer closed; the local side may still send.
    CloseWait,
    /// Both closed at once; waiting for the acknowledgment of our FIN.
    Closing,
    /// The peer closed first, then we did; waiting for the acknowledgment of our FIN.
    LastAck,
    /// Both closed; the tuple is held for a while against stray segments.
    TimeWait,
    /// Gone.
    Closed,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CloseReason {
    /// Both sides closed with FIN.
    Fin,
    /// The peer reset an open connection.
    Reset,
    /// Retransmissions ran out (connect or data).
    Timeout,
    /// The connect was answered by a RST.
    Refused,
    /// The connect was answered by an ICMP error.
    Unreachable,
}

/// Something that happened to a TCP socket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TcpEvent {
    /// A connection opened with `tcp_connect` is established (by a SYN-ACK, or by
    /// simultaneous open).
    Connected {
        /// The connection.
        conn: ConnId,
        /// The local endpoint.
        local: SocketAddrV4,
        /// The remote endpoint as the host sees it (after NATs).
        remote: SocketAddrV4,
    },
    /// A listener accepted a connection.
    Accepted {
        /// The new connection.
        conn: ConnId,
        /// The local endpoint.
        local: SocketAddrV4,
        /// The remote endpoint as the host sees it (after NATs).
        remote: SocketAddrV4,
    },
    /// Bytes arrived, in order.
    Data {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        bytes: Bytes,
    },
    /// The peer closed its side (FIN): no more data will arrive.
    Eof {
        /// The connection.
        conn: ConnId,
    },
    /// The connection ended; its id is no longer valid.
    ///
    /// Not reported for a connection the application aborted or closed before it was
    /// established.
    Closed {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
}

/// Tunables of the TCP model; the defaults are Linux's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpConfig {
    /// The RTO before any RTT sample, and for SYNs (Linux: 1 s).
    pub initial_rto: Duration,
    /// The smallest RTO (Linux: 200 ms).
    pub min_rto: Duration,
    /// The largest RTO (Linux: 120 s).
    pub max_rto: Duration,
    /// SYN retransmissions before a connect fails (Linux `tcp_syn_retries`: 6, about
    /// 127 s).
    pub syn_retries: u32,
    /// SYN-ACK retransmissions before a half-open connection is dropped (Linux
    /// `tcp_synack_retries`: 5).
    pub synack_retries: u32,
    /// Data retransmissions before an established connection times out (Linux
    /// `tcp_retries2`: 15).
    pub data_retries: u32,
    /// Maximum segment size in payload bytes.
    pub mss: u16,
    /// Maximum bytes in flight (the advertised window; no scaling).
    pub window: u16,
    /// How long TIME_WAIT holds a tuple (Linux: 60 s).
    pub time_wait: Duration,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(120),
            syn_retries: 6,
            synack_retries: 5,
            data_retries: 15,
            mss: 1460,
            window: u16::MAX,
            time_wait: Duration::from_secs(60),
        }
    }
}
