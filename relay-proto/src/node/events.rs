//! What a node tells its application.

use std::time::Duration;

use bytes::Bytes;
use multiaddr::Multiaddr;

use super::{ConnectionId, DialError, ReservationLoss, StreamRef};
use crate::circuit::limit::Limit;
use crate::conn::connection::{ConnectionError, Endpoint, OpenError};
use crate::dcutr::FailureReason;
use crate::hop::{AbuseKey, CircuitId, HookRequest, LimitKind, Refusal};
use crate::identify::{self, IdentifyError};
use crate::identity::PeerId;
use crate::ping::PingError;
use crate::wire::proto::Status;

/// Why a relayed circuit ended, as the relay server saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitEnd {
    /// Both sides finished.
    Closed,
    /// One side reset its stream, or its connection closed.
    Reset,
    /// A duration or data limit was reached.
    Limit(LimitKind),
}

/// What happened, for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A connection is authenticated and multiplexed.
    ConnectionEstablished {
        /// The connection.
        conn: ConnectionId,
        /// The remote peer.
        peer: PeerId,
        /// Whether we dialed or accepted.
        endpoint: Endpoint,
        /// The remote's address (a `/p2p-circuit` address when relayed).
        remote_addr: Multiaddr,
        /// Whether the connection runs through a relay.
        relayed: bool,
    },
    /// An established connection ended.
    ConnectionClosed {
        /// The connection.
        conn: ConnectionId,
        /// The remote peer.
        peer: PeerId,
        /// Whether we dialed or accepted.
        endpoint: Endpoint,
        /// Whether the connection ran through a relay.
        relayed: bool,
        /// Why.
        error: ConnectionError,
    },
    /// A dial failed before the connection was established.
    DialFailed {
        /// The connection that was being dialed.
        conn: ConnectionId,
        /// The dialed address.
        addr: Multiaddr,
        /// Why.
        error: DialError,
    },
    /// An accepted connection failed before it was established.
    InboundFailed {
        /// The connection.
        conn: ConnectionId,
        /// The remote's address.
        remote_addr: Multiaddr,
        /// Why.
        error: ConnectionError,
    },
    /// A peer told us about itself.
    Identified {
        /// The connection it spoke on.
        conn: ConnectionId,
        /// The peer.
        peer: PeerId,
        /// What it said.
        info: Box<identify::Info>,
    },
    /// A peer sent an identify message we could not accept.
    IdentifyFailed {
        /// The connection.
        conn: ConnectionId,
        /// The peer.
        peer: PeerId,
        /// Why.
        error: IdentifyError,
    },
    /// A ping completed or failed.
    Ping {
        /// The connection.
        conn: ConnectionId,
        /// The peer.
        peer: PeerId,
        /// The round trip, or why there was none.
        result: Result<Duration, PingError>,
    },
    /// The remote opened a stream with a protocol the application registered.
    InboundStream {
        /// The stream.
        stream: StreamRef,
        /// The remote peer.
        peer: PeerId,
        /// The agreed protocol.
        protocol: String,
    },
    /// A stream opened with [`super::Node::open_stream`] is ready.
    StreamOpened {
        /// The stream.
        stream: StreamRef,
        /// The remote peer.
        peer: PeerId,
        /// The agreed protocol.
        protocol: String,
    },
    /// A stream opened with [`super::Node::open_stream`] failed; it is gone.
    StreamOpenFailed {
        /// The stream.
        stream: StreamRef,
        /// Why.
        error: OpenError,
    },
    /// Bytes arrived on an application stream. Report them with
    /// [`super::Node::stream_consumed`] once processed: that reopens the peer's window.
    StreamData {
        /// The stream.
        stream: StreamRef,
        /// The bytes.
        data: Bytes,
    },
    /// The remote finished writing on an application stream.
    StreamFinished {
        /// The stream.
        stream: StreamRef,
    },
    /// An application stream was reset; it is gone.
    StreamReset {
        /// The stream.
        stream: StreamRef,
    },
    /// An application stream whose write was short can take more bytes.
    StreamWritable {
        /// The stream.
        stream: StreamRef,
    },

    // ----- relay client -----
    /// A relay granted or renewed our reservation.
    ReservationAccepted {
        /// The relay.
        relay: PeerId,
        /// When it expires, in Unix seconds.
        expire_unix: u64,
        /// Our addresses through the relay (`.../p2p/RELAY/p2p-circuit`).
        addrs: Vec<Multiaddr>,
        /// The limit of each relayed connection.
        limit: Limit,
        /// Whether this renewed a reservation we held.
        renewed: bool,
    },
    /// A relay refused a reservation request.
    ReservationRefused {
        /// The relay.
        relay: PeerId,
        /// Its answer.
        status: Status,
    },
    /// A reservation we held is gone; our addresses through the relay are withdrawn.
    ReservationLost {
        /// The relay.
        relay: PeerId,
        /// Why.
        reason: ReservationLoss,
    },
    /// A relayed connection of ours reached the relay's limit and was closed by it.
    RelayedLimitReached {
        /// The relayed connection.
        conn: ConnectionId,
        /// The remote peer.
        peer: PeerId,
        /// Which limit.
        kind: LimitKind,
    },

    // ----- hole punching -----
    /// A hole punch of a relayed connection began an attempt: `0` is the direct dial
    /// to the peer's public addresses, `1..` the DCUtR exchanges.
    HolePunchStarted {
        /// The relayed connection being upgraded.
        relayed: ConnectionId,
        /// The remote peer.
        peer: PeerId,
        /// The attempt.
        attempt: u32,
    },
    /// A hole punch made a direct connection: new streams to the peer take it, and the
    /// relayed connection closes after the grace period
    /// ([`HolePunchConfig::relayed_close_grace`](crate::dcutr::HolePunchConfig)).
    HolePunchSucceeded {
        /// The relayed connection it upgraded.
        relayed: ConnectionId,
        /// The remote peer.
        peer: PeerId,
        /// The attempt that made it; `0` for the direct dial before any exchange.
        attempt: u32,
        /// Time from the start of the hole punch to the direct connection.
        elapsed: Duration,
        /// The relay round trip measured in that attempt, if one was.
        rtt: Option<Duration>,
        /// The direct connection.
        direct: ConnectionId,
        /// The peer's address on the direct connection, `/ip4|ip6/.../tcp/PORT`.
        addr: Multiaddr,
    },
    /// A hole punch ended without a direct connection; the relayed connection stays.
    HolePunchFailed {
        /// The relayed connection.
        relayed: ConnectionId,
        /// The remote peer.
        peer: PeerId,
        /// DCUtR exchanges made.
        attempts: u32,
        /// Why the last attempt failed, or why none was made.
        reason: FailureReason,
    },

    // ----- auto relay -----
    /// AutoRelay took or dropped a relay, its set of relays changed, or it reports one
    /// of the seed's errors. The reservation events above tell the same story relay by
    /// relay; [`RelaysChanged`](crate::autorelay::Event::RelaysChanged) gives the whole
    /// set, which is what our `/p2p-circuit` addresses go through.
    AutoRelay(crate::autorelay::Event),
    /// AutoRelay wants at most `limit` relay candidates from the application's peer
    /// source: answer with [`super::Node::auto_relay_peer_source_result`] (an answer
    /// after `peer_source_timeout` is reported as an error, then still used).
    AutoRelayPeerSourceQuery {
        /// Most candidates wanted.
        limit: usize,
    },

    // ----- relay server -----
    /// We granted or renewed a reservation.
    RelayReservationAccepted {
        /// The reserving peer.
        peer: PeerId,
        /// When it expires, in Unix seconds.
        expire_unix: u64,
        /// Whether it renewed one the peer held.
        renewed: bool,
    },
    /// We refused a reservation.
    RelayReservationRefused {
        /// The peer.
        peer: PeerId,
        /// Why.
        refusal: Refusal,
    },
    /// A reservation expired or its holder disconnected.
    RelayReservationEnded {
        /// The peer.
        peer: PeerId,
    },
    /// We spliced a circuit between two peers.
    RelayCircuitOpened {
        /// The circuit.
        circuit: CircuitId,
        /// The initiator.
        src: PeerId,
        /// The target.
        dst: PeerId,
    },
    /// We refused a circuit, or the target did not accept it.
    RelayCircuitRefused {
        /// The initiator.
        src: PeerId,
        /// The requested target.
        dst: PeerId,
        /// The status answered to the initiator.
        status: Status,
        /// The policy's refusal, when it refused.
        refusal: Option<Refusal>,
    },
    /// A circuit ended.
    RelayCircuitClosed {
        /// The circuit.
        circuit: CircuitId,
        /// The initiator.
        src: PeerId,
        /// The target.
        dst: PeerId,
        /// Bytes relayed from initiator to target.
        bytes_src_to_dst: u64,
        /// Bytes relayed from target to initiator.
        bytes_dst_to_src: u64,
        /// How long it was open.
        duration: Duration,
        /// Why it ended.
        reason: CircuitEnd,
    },
    /// The relay's decision hook must decide: answer with [`super::Node::relay_answer`].
    RelayAsk {
        /// The request.
        request: HookRequest,
    },
    /// A peer or IP was refused too often and is banned for a while.
    RelayAbuse {
        /// What is banned.
        key: AbuseKey,
        /// For how long from now.
        ban: Duration,
    },
}
