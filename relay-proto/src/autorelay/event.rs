//! What AutoRelay asks the node to do ([`Action`]) and tells the application ([`Event`]).

use multiaddr::Multiaddr;

use crate::identity::PeerId;

/// Something the node must do for AutoRelay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Ask `relay` for a reservation, dialing it at one of `addrs` if not connected, and
    /// keep it renewed. Report the outcome with
    /// [`reservation_accepted`](super::AutoRelay::reservation_accepted) or
    /// [`reservation_failed`](super::AutoRelay::reservation_failed).
    Reserve {
        /// The relay.
        relay: PeerId,
        /// Its known addresses, best first; empty if only a connection we hold reaches it.
        addrs: Vec<Multiaddr>,
    },
    /// Stop using `relay`: cancel the reservation attempt or the held reservation, and
    /// withdraw our addresses through it. AutoRelay has already forgotten the
    /// reservation; later reports about it are ignored.
    Release {
        /// The relay.
        relay: PeerId,
    },
    /// Ask the application's peer source for at most `limit` relay candidates, and pass
    /// them to [`peer_source_result`](super::AutoRelay::peer_source_result). Only one
    /// query is outstanding at a time; one not answered within `peer_source_timeout` is
    /// reported as [`Error::PeerSourceTimeout`].
    QueryPeerSource {
        /// Most candidates wanted.
        limit: usize,
    },
}

/// Something that happened, for the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A reservation on `relay` is held: addresses through it can be advertised.
    RelayAdded {
        /// The relay.
        relay: PeerId,
    },
    /// The reservation on `relay` is no longer held.
    RelayRemoved {
        /// The relay.
        relay: PeerId,
        /// Why.
        reason: RemovalReason,
    },
    /// The set of held relays changed; `current` is all of them, in the order they were
    /// granted. Advertise `/p2p-circuit` addresses through exactly these. Follows the
    /// `RelayAdded` and `RelayRemoved` events of one call.
    RelaysChanged {
        /// The relays now held.
        current: Vec<PeerId>,
    },
    /// Something went wrong; AutoRelay keeps trying.
    Error(Error),
}

/// Why a relay is no longer used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemovalReason {
    /// It failed; it backs off before it may be chosen again.
    Failed(FailureReason),
    /// A better candidate replaced it on refresh.
    Swapped,
    /// [`AutoRelay::stop`](super::AutoRelay::stop) was called.
    Stopped,
    /// The node became publicly reachable and AutoRelay runs only when it is not.
    Deactivated,
}

/// Why a reservation attempt failed or a held reservation was lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// The relay refused the reservation, or broke the protocol.
    Refused,
    /// The relay could not be dialed.
    Unreachable,
    /// The connection to the relay closed.
    ConnectionClosed,
    /// The relay refused to renew the reservation, or it expired unrenewed.
    NotRenewed,
    /// The relay stopped answering pings.
    HeartbeatTimeout,
    /// The attempt took longer than `discovery_timeout`.
    Timeout,
}

impl FailureReason {
    /// Whether the node already dropped the reservation when this happened, so that no
    /// [`Action::Release`] is needed.
    pub fn node_dropped_it(self) -> bool {
        matches!(
            self,
            Self::Refused | Self::Unreachable | Self::ConnectionClosed
        )
    }
}

/// The seed's AutoRelay errors, reported as [`Event::Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `start` was called while `enabled` is false (the seed's "relay not enabled").
    #[error("auto relay is not enabled")]
    NotEnabled,
    /// Dynamic discovery is disabled and no static relay is configured.
    #[error("no static relays configured")]
    NoStaticRelays,
    /// The peer source did not answer within `peer_source_timeout`.
    #[error("peer source timed out")]
    PeerSourceTimeout,
    /// Fewer than `min_relay_peers` reservations are held or requested, and no candidate
    /// passes the selection (none known, or none reaching `quality_threshold`).
    #[error("relay selection failed: no candidate passes")]
    RelaySelectionFailed,
    /// No reservation is held or requested, and every known candidate failed and is
    /// backing off.
    #[error("all relays failed")]
    AllRelaysFailed,
}
