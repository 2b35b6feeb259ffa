//! What a [`HolePunch`](super::HolePunch) is, asks for, and ends with.

use std::time::Duration;

use multiaddr::Multiaddr;

use super::message::DcutrError;

/// Our side of the relayed connection, which sets our part in DCUtR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The spec's B: we accepted the relayed connection (we are the peer behind the
    /// relay, holding a reservation). We open the stream, send CONNECT, measure the
    /// RTT, send SYNC and dial RTT/2 later, as the server of the security handshake.
    Initiator,
    /// The spec's A: we dialed the relayed connection. We answer CONNECT with CONNECT and
    /// dial when SYNC arrives, as the client of the security handshake.
    Responder,
}

/// What the node should do for a [`HolePunch`](super::HolePunch), in order.
///
/// Stream actions apply to the machine's current DCUtR stream on its relayed
/// connection: the one asked for by the last [`Action::OpenStream`], or the last inbound
/// stream it accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a `/libp2p/dcutr` stream on the relayed connection; answer with
    /// [`stream_opened`](super::HolePunch::stream_opened) once it is negotiated, or
    /// [`stream_closed`](super::HolePunch::stream_closed) if it fails.
    OpenStream,
    /// Write these bytes (one length-prefixed message) to the current stream.
    Send(Vec<u8>),
    /// Close our side of the current stream after what was written.
    CloseStream,
    /// Reset the current stream: the exchange on it was abandoned.
    ResetStream,
    /// Dial the peer directly at every one of `addrs`, at once, from the port we listen
    /// on. Report each address's failure, with `attempt`, to
    /// [`direct_dial_failed`](super::HolePunch::direct_dial_failed), and a direct
    /// connection to the peer (dialed or accepted) with
    /// [`direct_connected`](super::HolePunch::direct_connected).
    Dial {
        /// Where to dial: `/ip4|ip6/<ip>/tcp/<port>`, without `/p2p/`.
        addrs: Vec<Multiaddr>,
        /// The role to take in the security handshake of a connection this dial makes,
        /// whatever the socket says (a TCP simultaneous open looks outbound on both
        /// sides): `true` for the client (Noise initiator), `false` for the server.
        as_client: bool,
        /// The attempt this dial belongs to; `0` is the unilateral direct dial.
        attempt: u32,
    },
    /// The hole punch is over; no action follows.
    Done(Outcome),
}

/// How a hole punch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A direct connection to the peer exists.
    Success {
        /// The attempt during or after which it appeared; `0` for the unilateral direct
        /// dial (or a connection that appeared before any attempt).
        attempt: u32,
        /// The relay RTT measured in that attempt, if one was.
        rtt: Option<Duration>,
        /// Time from the machine's creation (the relayed connection) to the direct one.
        elapsed: Duration,
    },
    /// No direct connection; the relayed connection stays.
    Failure {
        /// CONNECT/SYNC exchanges made.
        attempts: u32,
        /// Why the last attempt failed, or why none was made.
        reason: FailureReason,
    },
}

impl Outcome {
    /// Whether a direct connection was made.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success { .. })
    }
}

/// Why a hole punch failed (the seed's hole punch errors, and protocol errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailureReason {
    /// No direct connection within `attempt_timeout` of the dial, or the exchange took
    /// longer than `sync_timeout` (seed: `ErrHolePunchTimeout`).
    #[error("hole punch timed out")]
    Timeout,
    /// Every dial of the attempt failed (seed: `ErrDirectDialFailed`).
    #[error("direct dial failed")]
    DirectDialFailed,
    /// One side has no address worth punching to, so no direct path can be tried
    /// (seed: `ErrNATTypeIncompatible`).
    #[error("no usable addresses on one side: NAT type incompatible")]
    NatIncompatible,
    /// Hole punching, DCUtR or every punchable transport is disabled
    /// (seed: `ErrHolePunchNotEnabled`).
    #[error("hole punching not enabled")]
    NotEnabled,
    /// The peer broke the protocol, or closed the stream mid-exchange.
    #[error("dcutr protocol error: {0}")]
    ProtocolError(DcutrError),
}

impl FailureReason {
    /// A short lowercase name, for events and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::DirectDialFailed => "direct_dial_failed",
            FailureReason::NatIncompatible => "nat_incompatible",
            FailureReason::NotEnabled => "not_enabled",
            FailureReason::ProtocolError(_) => "protocol_error",
        }
    }

    /// Whether the initiator makes another attempt after one failed for this reason.
    /// Protocol errors end its hole punch (as in go-libp2p and rust-libp2p), and so do
    /// missing addresses and disabled punching, which another attempt would not change.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            FailureReason::Timeout | FailureReason::DirectDialFailed
        )
    }
}
